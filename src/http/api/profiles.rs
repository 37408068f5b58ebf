//! `/api/v1/profiles/{name}/mobileconfig|ddm` and `/api/v1/registrations/{id}/mobileconfig`:
//! what an MDM pushes to a device. Each carries a fresh one-time challenge (minted with the
//! same scope rules as `POST /api/v1/challenges`, or the registration's), the CA's whole
//! chain, and is signed on the token (see `crate::profiles`).

// Handlers return a ready HttpResponse as their error.
#![allow(clippy::result_large_err)]

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::bodies::{ApiError, NewChallenge};
use super::challenges::issue_challenge;
use super::{authorize, error, unavailable};
use crate::http::AppState;
use crate::profiles::ScepProfile;

/// What a profile's challenge is bound to.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub(super) struct ProfileQuery {
    /// The device's name: the challenge is bound to it and the profile asks for it as CN.
    cn: Option<String>,
    /// Minutes until the challenge expires (1 to 10080, default 60).
    ttl_minutes: Option<u32>,
}

/// The profile for `name` with a one-time challenge minted for it.
async fn profile_for(
    req: &HttpRequest,
    state: &AppState,
    caller: &crate::authority::access::Caller,
    name: &str,
) -> Result<ScepProfile, HttpResponse> {
    let q: ProfileQuery = super::query(req)?;
    let base = crate::http::registrations::request_base(req, state);
    let subject =
        q.cn.as_deref()
            .map(|cn| format!("CN={}", crate::pki::escape_dn_value(cn)))
            .unwrap_or_default();
    // The profile first: when it cannot be written (a RADIUS CA file gone), no challenge is
    // minted for nothing.
    let mut profile = crate::profiles::for_profile(
        &state.ra,
        name,
        &format!("{base}/scep/{name}"),
        &subject,
        None,
    )
    .map_err(profile_error)?;
    let minted = issue_challenge(
        state,
        caller,
        NewChallenge {
            profile: Some(name.to_string()),
            cn: q.cn.clone(),
            ttl_minutes: q.ttl_minutes,
            ..NewChallenge::default()
        },
    )
    .await?;
    profile.challenge = Some(minted.challenge);
    Ok(profile)
}

/// A profile that cannot be written: unknown (404), or what it needs is unreadable (503).
fn profile_error(e: crate::authority::RequestError) -> HttpResponse {
    match e {
        crate::authority::RequestError::UnknownProfile(_) => {
            error(StatusCode::NOT_FOUND, "unknown_profile", e.to_string())
        }
        e => {
            tracing::error!(error = %e, "profile not written");
            unavailable(e)
        }
    }
}

async fn signed(state: &AppState, p: ScepProfile) -> HttpResponse {
    let ra = state.ra.clone();
    let id = p.identifier.clone();
    match tokio::task::spawn_blocking(move || crate::profiles::signed_blocking(&ra, &p)).await {
        Ok(Ok(der)) => HttpResponse::Ok()
            .content_type("application/x-apple-aspen-config")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.mobileconfig\""),
            ))
            .body(der),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "profile not signed");
            unavailable(e)
        }
        Err(e) => unavailable(e),
    }
}

/// A signed Apple profile
///
/// An Apple configuration profile for this certificate profile, CMS-signed on the token: the
/// CA's whole chain and a SCEP payload with a fresh one-time challenge (an `mdm` token: within
/// its scope).
#[utoipa::path(get, path = "/profiles/{name}/mobileconfig", tag = "profiles",
    params(("name" = String, Path, description = "The certificate profile"), ProfileQuery),
    responses((status = 200, description = "The signed profile", content_type = "application/x-apple-aspen-config", body = super::bodies::SignedProfile),
              (status = 400, description = "A bad query, TTL or name", body = ApiError),
              (status = 403, description = "The profile is not open to this token", body = ApiError),
              (status = 404, description = "No such profile", body = ApiError)))]
pub(super) async fn mobileconfig(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> HttpResponse {
    let caller = guard!(req, state, "GET", "/api/v1/profiles/{name}/mobileconfig");
    match profile_for(&req, &state, &caller, &name).await {
        Ok(p) => signed(&state, p).await,
        Err(r) => r,
    }
}

/// A declarative credential asset
///
/// The `com.apple.credential.scep` asset document of Apple's declarative device management,
/// with a fresh one-time challenge (an `mdm` token: within its scope).
#[utoipa::path(get, path = "/profiles/{name}/ddm", tag = "profiles",
    params(("name" = String, Path, description = "The certificate profile"), ProfileQuery),
    responses((status = 200, description = "The asset document (Apple's schema)", body = Object),
              (status = 400, description = "A bad query, TTL or name", body = ApiError),
              (status = 403, description = "The profile is not open to this token", body = ApiError),
              (status = 404, description = "No such profile", body = ApiError)))]
pub(super) async fn ddm(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> HttpResponse {
    let caller = guard!(req, state, "GET", "/api/v1/profiles/{name}/ddm");
    match profile_for(&req, &state, &caller, &name).await {
        Ok(p) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(crate::profiles::ddm_asset(&p)),
        Err(r) => r,
    }
}

/// A registration's signed Apple profile
///
/// For an approved registration's device, with its one-time challenge and bound name (an
/// `mdm` token scoped to the credential's directory); each call mints a new challenge. For an
/// issued registration inside its renewal window, the challenge renews its certificate.
#[utoipa::path(get, path = "/registrations/{id}/mobileconfig", tag = "profiles",
    params(("id" = String, Path, description = "The registration's id")),
    responses((status = 200, description = "The signed profile", content_type = "application/x-apple-aspen-config", body = super::bodies::SignedProfile),
              (status = 403, description = "Not in this token's scope", body = ApiError),
              (status = 404, description = "No such registration", body = ApiError),
              (status = 409, description = "Not approved, or issued and outside its renewal window", body = ApiError),
              (status = 422, description = "The credential or its profile is no longer configured", body = ApiError)))]
pub(super) async fn registration_mobileconfig(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let caller = guard!(req, state, "GET", "/api/v1/registrations/{id}/mobileconfig");
    let base = crate::http::registrations::request_base(&req, &state);
    // Who may collect it first (404, 409, 403), then whether its profile's networks can be
    // written (a RADIUS CA file gone: 503), and only then a new challenge: the device's
    // current one is not replaced by one nobody receives.
    let registration = match state.ra.payload_collectable(&caller, &id).await {
        Ok(r) => r,
        Err(e) => return crate::http::registrations::registration_error(e),
    };
    if let Some(profile) = state.ra.credential_profile(&registration.credential) {
        if let Err(e) = crate::profiles::networks_readable(&state.ra, profile) {
            return profile_error(e);
        }
    }
    match state.ra.scep_payload(&caller, &id, &base).await {
        Ok(payload) => match crate::profiles::for_registration(&state.ra, &payload) {
            Ok(p) => signed(&state, p).await,
            Err(e) => profile_error(e),
        },
        Err(e) => crate::http::registrations::registration_error(e),
    }
}

/// Values for Android and Windows
///
/// What an Intune or Workspace ONE SCEP profile needs: URL, key size and usages, hash,
/// validity, the root's and intermediates' thumbprints, subject and SAN variables.
#[utoipa::path(get, path = "/profiles/{name}/scep-values", tag = "profiles",
    params(("name" = String, Path, description = "The certificate profile")),
    responses((status = 200, description = "The values", body = crate::profiles::ScepValues),
              (status = 404, description = "No such profile", body = ApiError)))]
pub(super) async fn scep_values(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> HttpResponse {
    guard!(req, state, "GET", "/api/v1/profiles/{name}/scep-values");
    let base = crate::http::registrations::request_base(&req, &state);
    match crate::profiles::scep_values(&state.ra, &name, &format!("{base}/scep/{name}")) {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(e) => error(StatusCode::NOT_FOUND, "unknown_profile", e.to_string()),
    }
}
