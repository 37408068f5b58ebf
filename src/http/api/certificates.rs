//! `/api/v1/certificates` and `/api/v1/devices/{id}/revoke`: issued certificates, read and
//! revoked.

// Handlers return a ready HttpResponse as their error.
#![allow(clippy::result_large_err)]

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::bodies::{
    ApiError, CertQuery, CertificateRevoked, CertificateView, DeviceRevoked, Revocation,
};
use super::query;
use super::{authorize, error, unavailable};
use crate::authority::{CertFilter, CertStatus, RevokeError, Revoker};
use crate::http::AppState;

/// The longest text a search takes (SQLite refuses LIKE patterns past 50,000 bytes; no
/// subject is near this).
const MAX_SEARCH_TEXT: usize = 256;

/// List certificates
///
/// Newest first (valid ones soonest ending first with `expiring_within`), filtered by
/// profile, status, expiry, subject text or device.
#[utoipa::path(get, path = "/certificates", tag = "certificates", params(CertQuery),
    responses((status = 200, description = "The certificates (without PEM)", body = Vec<CertificateView>),
              (status = 400, description = "A bad filter", body = ApiError)))]
pub(super) async fn list_certificates(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> HttpResponse {
    guard!(req, state, "GET", "/api/v1/certificates");
    let q: CertQuery = match query(&req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let status = match q.status.as_deref() {
        None => None,
        Some("valid") => Some(CertStatus::Valid),
        Some("revoked") => Some(CertStatus::Revoked),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_status",
                "status is valid or revoked",
            )
        }
    };
    let expiring = match q.expiring_within.as_deref().map(crate::clock::parse_span) {
        None => None,
        Some(Some(s)) => Some(s),
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_span",
                "expiring_within is like 30d, 12h or 45m",
            )
        }
    };
    if expiring.is_some() && status == Some(CertStatus::Revoked) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_filter",
            "expiring_within lists valid certificates: it cannot be combined with status=revoked",
        );
    }
    if q.subject
        .as_ref()
        .is_some_and(|t| t.len() > MAX_SEARCH_TEXT)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_subject",
            "subject is a text of at most 256 bytes to search for",
        );
    }
    let filter = CertFilter {
        profile: q.profile.clone(),
        status,
        expiring_within_secs: expiring,
        subject_contains: q.subject.clone(),
        device_id: q.device.clone(),
        limit: q.limit.unwrap_or(1000).clamp(1, 10_000),
        ..Default::default()
    };
    let ra = &state.ra;
    match ra.certificates(&filter).await {
        Ok(certs) => HttpResponse::Ok().json(
            certs
                .iter()
                .map(|c| CertificateView::of(c, false))
                .collect::<Vec<_>>(),
        ),
        Err(e) => unavailable(e),
    }
}

/// One certificate
///
/// With the certificate itself in PEM.
#[utoipa::path(get, path = "/certificates/{serial}", tag = "certificates",
    params(("serial" = String, Path, description = "Serial number, hex")),
    responses((status = 200, description = "The certificate", body = CertificateView),
              (status = 404, description = "No certificate with this serial", body = ApiError)))]
pub(super) async fn get_certificate(
    req: HttpRequest,
    state: web::Data<AppState>,
    serial: web::Path<String>,
) -> HttpResponse {
    guard!(req, state, "GET", "/api/v1/certificates/{serial}");
    let ra = &state.ra;
    let serial = serial.trim().to_ascii_lowercase();
    match ra.certificate(&serial).await {
        Ok(Some(c)) => HttpResponse::Ok().json(CertificateView::of(&c, true)),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no certificate with this serial",
        ),
        Err(e) => unavailable(e),
    }
}

/// The RFC 5280 reason code of a `{"reason": …}` body.
pub(crate) fn revocation_reason(body: &[u8]) -> Result<i32, HttpResponse> {
    let r: Revocation = super::parse_json(body)?;
    crate::pki::parse_revocation_reason(&r.reason).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_reason",
            format!(
                "reason is one of: {}",
                crate::pki::REVOCATION_REASONS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// Revoke a device
///
/// Every valid certificate issued to a device (its MDM device ID); one new CRL is published.
#[utoipa::path(post, path = "/devices/{id}/revoke", tag = "certificates",
    params(("id" = String, Path, description = "The MDM's device ID")), request_body = Revocation,
    responses((status = 200, description = "The certificates revoked", body = DeviceRevoked),
              (status = 400, description = "A bad reason", body = ApiError),
              (status = 404, description = "No valid certificate was issued to this device", body = ApiError)))]
pub(super) async fn revoke_device(
    req: HttpRequest,
    state: web::Data<AppState>,
    device: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let caller = guard!(req, state, "POST", "/api/v1/devices/{id}/revoke");
    let reason = match revocation_reason(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let ra = &state.ra;
    match ra
        .revoke_device(&device, reason, Revoker::Person(&caller))
        .await
    {
        Ok(serials) if serials.is_empty() => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no valid certificate was issued to this device",
        ),
        Ok(serials) => HttpResponse::Ok().json(DeviceRevoked {
            device_id: device.into_inner(),
            revoked: serials,
            reason: crate::pki::revocation_reason_name(reason),
        }),
        Err(e) => revoke_error(e),
    }
}

/// Revoke a certificate
///
/// A new CRL is published and OCSP answers `revoked` within a second on every node.
#[utoipa::path(post, path = "/certificates/{serial}/revoke", tag = "certificates",
    params(("serial" = String, Path, description = "Serial number, hex")), request_body = Revocation,
    responses((status = 200, description = "Revoked", body = CertificateRevoked),
              (status = 400, description = "A bad reason", body = ApiError),
              (status = 404, description = "No valid certificate with this serial", body = ApiError)))]
pub(super) async fn revoke_certificate(
    req: HttpRequest,
    state: web::Data<AppState>,
    serial: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let caller = guard!(req, state, "POST", "/api/v1/certificates/{serial}/revoke");
    let reason = match revocation_reason(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let ra = &state.ra;
    match ra.revoke(&serial, reason, Revoker::Person(&caller)).await {
        Ok(true) => HttpResponse::Ok().json(CertificateRevoked {
            serial: serial.to_ascii_lowercase(),
            status: "revoked",
            reason: crate::pki::revocation_reason_name(reason),
        }),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no valid certificate with this serial",
        ),
        Err(e) => revoke_error(e),
    }
}

/// A revocation that did not happen: the caller's role (403), or the store (503).
fn revoke_error(e: RevokeError) -> HttpResponse {
    match e {
        RevokeError::Forbidden(why) => error(StatusCode::FORBIDDEN, "forbidden", why),
        RevokeError::Unavailable(_) => unavailable(e),
    }
}
