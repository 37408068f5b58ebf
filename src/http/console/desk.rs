//! The officer's desk: the queue (registrations and PENDING enrollments, with what will be
//! certified and who made it possible), search by email or device, decisions, revocation.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::authority::{RevokeError, Revoker};

use super::self_service::{refused, registration_view};
use super::{field, message, render, see_other, unavailable, when, Visit};
use crate::authority::access::Role;
use crate::authority::{ApprovalError, CertFilter, RegistrationState};
use crate::http::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Search {
    email: String,
    device: String,
}

/// `/console/desk`.
pub(super) async fn desk(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let visit = match Visit::open(&req, &state, &[Role::Officer]).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let search: Search = web::Query::<Search>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let ra = &state.ra;
    let pending = match ra.pending_enrollments().await {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
    let mut enrollments = Vec::new();
    for t in &pending {
        let v = match ra.pending_view(t).await {
            Ok(v) => v,
            Err(e) => return unavailable(e),
        };
        let minter = match &v.challenge_minted_by {
            Some(a) => match ra.person_of(a).await {
                Ok(p) => Some(p),
                Err(e) => return unavailable(e),
            },
            None => None,
        };
        let blocked = minter
            .as_ref()
            .is_some_and(|p| p.same_as(&visit.caller.person))
            .then_some("You made this request possible (you minted its challenge), so another officer must decide.");
        let mut j = json!(v);
        j["blocked"] = json!(blocked);
        j["minted_by"] = json!(minter.map(|p| p.name));
        enrollments.push(j);
    }
    let registrations = match ra.registrations_of(None, 0).await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    let mut waiting = Vec::new();
    for r in registrations
        .iter()
        .filter(|r| r.state == RegistrationState::Requested)
    {
        let mut v = registration_view(r);
        if let Some(filer) = &r.requested_by {
            match ra.person_of(filer).await {
                Ok(p) => v["filed_by"] = json!(p.name),
                Err(e) => return unavailable(e),
            }
        }
        waiting.push(v);
    }
    // Search: a person's registrations and certificates, or a device's certificates.
    let email = search.email.trim().to_ascii_lowercase();
    let device = search.device.trim().to_string();
    let mut found_registrations = Vec::new();
    let mut found_certificates = Vec::new();
    if !email.is_empty() {
        match ra.registrations_of(Some(&email), 200).await {
            Ok(list) => found_registrations = list.iter().map(registration_view).collect(),
            Err(e) => return unavailable(e),
        }
        let serials: Vec<String> = registrations
            .iter()
            .filter(|r| r.email == email)
            .filter_map(|r| r.serial.clone())
            .collect();
        for s in serials {
            match ra.certificate(&s).await {
                Ok(Some(c)) => found_certificates.push(c),
                Ok(None) => {}
                Err(e) => return unavailable(e),
            }
        }
    }
    if !device.is_empty() {
        let filter = CertFilter {
            device_id: Some(device.clone()),
            limit: 200,
            ..CertFilter::default()
        };
        match ra.certificates(&filter).await {
            Ok(list) => found_certificates.extend(list),
            Err(e) => return unavailable(e),
        }
    }
    let certificates: Vec<_> = found_certificates
        .iter()
        .map(|c| {
            json!({
                "serial": c.serial, "subject": c.subject, "profile": c.profile,
                "device_id": c.device_id,
                "status": if c.revoked_at.is_some() { "revoked" } else { "valid" },
                "not_after": when(c.not_after),
            })
        })
        .collect();
    render(
        StatusCode::OK,
        "desk.html",
        "Officer's desk",
        Some(&visit),
        json!({
            "enrollments": enrollments,
            "registrations": waiting,
            "search": {"email": email, "device": device},
            "searched": !email.is_empty() || !device.is_empty(),
            "found_registrations": found_registrations,
            "certificates": certificates,
            "reasons": crate::pki::REVOCATION_REASONS,
        }),
    )
}

/// Approve, reject, withdraw or revoke a registration.
pub(super) async fn registration_action(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (id, action) = path.into_inner();
    let (visit, form) = match Visit::form(&req, &state, &[Role::Officer], &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let back = format!("/console/registrations/{id}");
    let caller = visit.acting(Role::Officer);
    let ra = &state.ra;
    let comment = field(&form, "comment");
    let done = match action.as_str() {
        "approve" => ra
            .decide_registration(&caller, &id, true, comment)
            .await
            .map(|_| ()),
        "reject" => ra
            .decide_registration(&caller, &id, false, comment)
            .await
            .map(|_| ()),
        "withdraw" => ra
            .cancel_registration(&caller, &id, comment)
            .await
            .map(|_| ()),
        "revoke" => {
            let Some(reason) = crate::pki::parse_revocation_reason(field(&form, "reason")) else {
                return message(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(&visit),
                    "Not accepted",
                    "Choose a revocation reason from the list.",
                    &back,
                );
            };
            ra.revoke_registration(&caller, &id, reason)
                .await
                .map(|_| ())
        }
        _ => {
            return message(
                StatusCode::NOT_FOUND,
                Some(&visit),
                "Not found",
                "There is no such action.",
                &back,
            )
        }
    };
    match done {
        Ok(()) => see_other(&back),
        Err(e) => refused(&visit, e, &back),
    }
}

/// Approve or reject a PENDING enrollment.
pub(super) async fn enrollment_action(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (id, action) = path.into_inner();
    let (visit, form) = match Visit::form(&req, &state, &[Role::Officer], &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let caller = visit.acting(Role::Officer);
    let ra = &state.ra;
    let done = match action.as_str() {
        "approve" => ra.approve(&id, &caller).await.map(|_| ()),
        "reject" => {
            let comment = field(&form, "comment");
            let reason = if comment.is_empty() {
                "rejected by an officer".to_string()
            } else {
                format!("rejected by an officer: {comment}")
            };
            ra.reject(&id, &reason, &caller).await
        }
        _ => {
            return message(
                StatusCode::NOT_FOUND,
                Some(&visit),
                "Not found",
                "There is no such action.",
                "/console/desk",
            )
        }
    };
    match done {
        Ok(()) => see_other("/console/desk"),
        Err(e) => {
            let status = match &e {
                ApprovalError::NotFound => StatusCode::NOT_FOUND,
                ApprovalError::Forbidden(_) => StatusCode::FORBIDDEN,
                ApprovalError::NotPending | ApprovalError::Busy => StatusCode::CONFLICT,
                ApprovalError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ApprovalError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::warn!(actor = %caller.actor, error = %e, "console: enrollment decision refused");
            message(
                status,
                Some(&visit),
                "Not done",
                &e.to_string(),
                "/console/desk",
            )
        }
    }
}

fn reason_of(visit: &Visit, form: &super::Form, back: &str) -> Result<i32, HttpResponse> {
    crate::pki::parse_revocation_reason(field(form, "reason")).ok_or_else(|| {
        message(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(visit),
            "Not accepted",
            "Choose a revocation reason from the list.",
            back,
        )
    })
}

/// Revoke one certificate.
pub(super) async fn revoke_certificate(
    req: HttpRequest,
    state: web::Data<AppState>,
    serial: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (visit, form) = match Visit::form(&req, &state, &[Role::Officer], &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let reason = match reason_of(&visit, &form, "/console/desk") {
        Ok(r) => r,
        Err(r) => return r,
    };
    match state
        .ra
        .revoke(
            &serial,
            reason,
            Revoker::Person(&visit.acting(Role::Officer)),
        )
        .await
    {
        Ok(true) => see_other("/console/desk"),
        Ok(false) => message(
            StatusCode::NOT_FOUND,
            Some(&visit),
            "Not found",
            "No valid certificate has this serial number (it may be revoked already).",
            "/console/desk",
        ),
        Err(e) => revoke_error(&visit, e),
    }
}

/// Revoke every certificate of a device.
pub(super) async fn revoke_device(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let (visit, form) = match Visit::form(&req, &state, &[Role::Officer], &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let reason = match reason_of(&visit, &form, "/console/desk") {
        Ok(r) => r,
        Err(r) => return r,
    };
    let device = field(&form, "device_id");
    if device.is_empty() {
        return message(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&visit),
            "Not accepted",
            "Name the device.",
            "/console/desk",
        );
    }
    match state
        .ra
        .revoke_device(
            device,
            reason,
            Revoker::Person(&visit.acting(Role::Officer)),
        )
        .await
    {
        Ok(_) => see_other(&format!("/console/desk?device={}", urlencoded(device))),
        Err(e) => revoke_error(&visit, e),
    }
}

fn urlencoded(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|x| x.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

/// A revocation that did not happen: the caller's role (a page that says so), or the store.
fn revoke_error(visit: &Visit, e: RevokeError) -> HttpResponse {
    match e {
        RevokeError::Forbidden(why) => message(
            StatusCode::FORBIDDEN,
            Some(visit),
            "Not allowed",
            &why,
            "/console/desk",
        ),
        RevokeError::Unavailable(_) => unavailable(e),
    }
}
