//! `/api/v1/registrations`: the derived-credential flow over HTTP (see
//! [`crate::authority::registration`]). Handlers authenticate, parse and translate; the RA decides.

// Handlers return a ready HttpResponse as their error: boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::api::bodies::{
    ApiError, DecisionBody, DeviceChoice, NewRegistration, PushView, RegistrationQuery,
    RegistrationRevoked, RegistrationView,
};
use super::api::{authorize, error, parse_json, query, unavailable};
use super::AppState;
use crate::authority::access::{Caller, Role};
use crate::authority::registration::RegistrationError;
use crate::authority::registration::{CredentialView, ScepPayload};
use crate::authority::Authority;
use crate::authority::RegistrationRecord;

/// A registration error as an HTTP answer.
pub fn registration_error(e: RegistrationError) -> HttpResponse {
    match e {
        RegistrationError::NotFound => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        RegistrationError::Forbidden(_) => error(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
        RegistrationError::WrongState(_) => {
            error(StatusCode::CONFLICT, "wrong_state", e.to_string())
        }
        RegistrationError::Invalid(_) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
        }
        RegistrationError::Unavailable(_) => unavailable(e),
    }
}

async fn ready(
    req: &HttpRequest,
    state: &AppState,
    method: &str,
    pattern: &str,
) -> Result<(Caller, Authority), HttpResponse> {
    let caller = authorize(req, state, method, pattern).await?;
    let ra = state.ra.clone();
    Ok((caller, ra))
}

macro_rules! enter {
    ($req:expr, $state:expr, $method:expr, $pattern:expr) => {
        match ready(&$req, &$state, $method, $pattern).await {
            Ok(x) => x,
            Err(resp) => return resp,
        }
    };
}

/// A registration, or why not, as the API answers it.
pub(crate) fn answer(
    r: Result<RegistrationRecord, RegistrationError>,
    status: StatusCode,
) -> HttpResponse {
    match r {
        Ok(r) => HttpResponse::build(status).json(RegistrationView::from(&r)),
        Err(e) => registration_error(e),
    }
}

/// Start a registration
///
/// Sigil asks the credential's MDM directory for the person's devices (a user: their own
/// email only).
#[utoipa::path(post, path = "/registrations", tag = "registrations", request_body = NewRegistration,
    responses((status = 201, description = "The registration, with the devices found", body = RegistrationView),
              (status = 400, description = "No email", body = ApiError),
              (status = 403, description = "Not this person's", body = ApiError),
              (status = 422, description = "An unknown credential or a bad email", body = ApiError)))]
pub(super) async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let (caller, ra) = enter!(req, state, "POST", "/api/v1/registrations");
    let n: NewRegistration = match parse_json(&body) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let Some(email) = n
        .email
        .clone()
        .or_else(|| (caller.role == Role::User).then(|| caller.name.clone()))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_email",
            "email: whose registration this is",
        );
    };
    answer(
        ra.register(&caller, &email, &n.credential).await,
        StatusCode::CREATED,
    )
}

/// List registrations
///
/// Newest first (a user: their own only).
#[utoipa::path(get, path = "/registrations", tag = "registrations", params(RegistrationQuery),
    responses((status = 200, description = "The registrations", body = Vec<RegistrationView>),
              (status = 400, description = "A bad filter", body = ApiError)))]
pub(super) async fn list(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (caller, ra) = enter!(req, state, "GET", "/api/v1/registrations");
    let q: RegistrationQuery = match query(&req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Some(s) = &q.state {
        if crate::authority::RegistrationState::parse(s).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_query",
                "state is open, requested, approved, rejected, issued or expired",
            );
        }
    }
    match ra.registrations(&caller, q.email.as_deref()).await {
        Ok(list) => HttpResponse::Ok().json(
            list.iter()
                .filter(|r| q.state.as_deref().is_none_or(|s| r.state.as_str() == s))
                .map(RegistrationView::from)
                .collect::<Vec<_>>(),
        ),
        Err(e) => registration_error(e),
    }
}

/// One registration
///
/// With its pushes to the MDM (a user: their own only).
#[utoipa::path(get, path = "/registrations/{id}", tag = "registrations",
    params(("id" = String, Path, description = "The registration's id")),
    responses((status = 200, description = "The registration", body = RegistrationView),
              (status = 404, description = "No such registration (or not yours)", body = ApiError)))]
pub(super) async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let (caller, ra) = enter!(req, state, "GET", "/api/v1/registrations/{id}");
    let r = match ra.registration(&caller, &id).await {
        Ok(r) => r,
        Err(e) => return registration_error(e),
    };
    let pushes = match ra.registration_pushes(&r.id).await {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
    HttpResponse::Ok().json(RegistrationView {
        pushes: Some(pushes.iter().map(PushView::from).collect()),
        ..RegistrationView::from(&r)
    })
}

/// Ask the MDM again
///
/// Fetch the device list again, for an open registration (a user: their own).
#[utoipa::path(post, path = "/registrations/{id}/refresh", tag = "registrations",
    params(("id" = String, Path, description = "The registration's id")),
    responses((status = 200, description = "The registration", body = RegistrationView),
              (status = 404, description = "No such registration", body = ApiError),
              (status = 409, description = "Not open", body = ApiError),
              (status = 422, description = "The credential is no longer configured", body = ApiError)))]
pub(super) async fn refresh(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let (caller, ra) = enter!(req, state, "POST", "/api/v1/registrations/{id}/refresh");
    answer(ra.refresh_devices(&caller, &id).await, StatusCode::OK)
}

/// File the request
///
/// For one of the registration's devices; the subject and SANs are built from the directory's
/// facts now (a user: their own).
#[utoipa::path(post, path = "/registrations/{id}/request", tag = "registrations",
    params(("id" = String, Path, description = "The registration's id")), request_body = DeviceChoice,
    responses((status = 200, description = "The registration, requested", body = RegistrationView),
              (status = 400, description = "A body that is not a device choice", body = ApiError),
              (status = 404, description = "No such registration", body = ApiError),
              (status = 409, description = "Not open", body = ApiError),
              (status = 422, description = "The device is not one of the person's, or not eligible", body = ApiError)))]
pub(super) async fn request(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (caller, ra) = enter!(req, state, "POST", "/api/v1/registrations/{id}/request");
    let d: DeviceChoice = match parse_json(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    answer(ra.request(&caller, &id, &d.device_id).await, StatusCode::OK)
}

/// An optional `{"comment": …}` body (empty: no comment).
pub(crate) fn decision(body: &[u8]) -> Result<DecisionBody, HttpResponse> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(DecisionBody::default())
    } else {
        parse_json(body)
    }
}

async fn decide(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
    approve: bool,
) -> HttpResponse {
    let pattern = if approve {
        "/api/v1/registrations/{id}/approve"
    } else {
        "/api/v1/registrations/{id}/reject"
    };
    let (caller, ra) = enter!(req, state, "POST", pattern);
    let d = match decision(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    answer(
        ra.decide_registration(&caller, &id, approve, &d.comment)
            .await,
        StatusCode::OK,
    )
}

/// Approve a registration
///
/// Not by the officer who filed it, nor by the person it is for: the MDM may then collect the
/// SCEP payload, and a configured push delivers it.
#[utoipa::path(post, path = "/registrations/{id}/approve", tag = "registrations", operation_id = "approve_registration",
    params(("id" = String, Path, description = "The registration's id")), request_body(content = Option<DecisionBody>),
    responses((status = 200, description = "The registration, approved", body = RegistrationView),
              (status = 400, description = "A body that is not a decision", body = ApiError),
              (status = 403, description = "The two-person rule refuses this officer", body = ApiError),
              (status = 404, description = "No such registration", body = ApiError),
              (status = 409, description = "Not requested", body = ApiError),
              (status = 422, description = "The credential is no longer configured", body = ApiError)))]
pub(super) async fn approve(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    decide(req, state, id, body, true).await
}

/// Reject a registration
///
/// With a comment the person sees.
#[utoipa::path(post, path = "/registrations/{id}/reject", tag = "registrations", operation_id = "reject_registration",
    params(("id" = String, Path, description = "The registration's id")), request_body(content = Option<DecisionBody>),
    responses((status = 200, description = "The registration, rejected", body = RegistrationView),
              (status = 400, description = "A body that is not a decision", body = ApiError),
              (status = 403, description = "Not this officer's to decide", body = ApiError),
              (status = 404, description = "No such registration", body = ApiError),
              (status = 409, description = "Not requested", body = ApiError),
              (status = 422, description = "The credential is no longer configured", body = ApiError)))]
pub(super) async fn reject(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    decide(req, state, id, body, false).await
}

/// Where devices reach this server: `server.public_url`, else the scheme and Host header of
/// this request (never X-Forwarded-*, which a caller could set to steer devices elsewhere).
pub(crate) fn request_base(req: &HttpRequest, state: &AppState) -> String {
    let scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    state.ra.public_base(&format!("{scheme}://{host}"))
}

/// The SCEP payload
///
/// SCEP settings for the approved device, with a fresh one-time challenge bound to the device
/// and identity (an `mdm` token: of the directories in its scope). Each call replaces the
/// challenge. For an issued registration inside its renewal window, the challenge renews the
/// certificate it holds (the device enrolls with a new key; the registration follows).
#[utoipa::path(get, path = "/registrations/{id}/scep-payload", tag = "registrations",
    params(("id" = String, Path, description = "The registration's id")),
    responses((status = 200, description = "The payload", body = ScepPayload),
              (status = 404, description = "No such registration", body = ApiError),
              (status = 409, description = "Not approved, or issued and outside its renewal window", body = ApiError),
              (status = 422, description = "The credential or its profile is no longer configured", body = ApiError)))]
pub(super) async fn scep_payload(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let (caller, ra) = enter!(req, state, "GET", "/api/v1/registrations/{id}/scep-payload");
    let base = request_base(&req, &state);
    match ra.scep_payload(&caller, &id, &base).await {
        Ok(p) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(p),
        Err(e) => registration_error(e),
    }
}

/// Revoke a registration's credential
///
/// Its certificate and every other valid certificate of its device.
#[utoipa::path(post, path = "/registrations/{id}/revoke", tag = "registrations",
    params(("id" = String, Path, description = "The registration's id")), request_body = super::api::bodies::Revocation,
    responses((status = 200, description = "The certificates revoked", body = RegistrationRevoked),
              (status = 400, description = "A bad reason", body = ApiError),
              (status = 404, description = "No such registration", body = ApiError),
              (status = 409, description = "Not issued", body = ApiError)))]
pub(super) async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (caller, ra) = enter!(req, state, "POST", "/api/v1/registrations/{id}/revoke");
    let reason = match super::api::revocation_reason(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match ra.revoke_registration(&caller, &id, reason).await {
        Ok(serials) => HttpResponse::Ok().json(RegistrationRevoked {
            registration: id.into_inner(),
            revoked: serials,
            reason: crate::pki::revocation_reason_name(reason),
        }),
        Err(e) => registration_error(e),
    }
}

/// Withdraw a registration
///
/// One not issued yet (open, requested or approved): it ends rejected with the comment, and
/// an approved one's challenge stops working.
#[utoipa::path(post, path = "/registrations/{id}/withdraw", tag = "registrations",
    params(("id" = String, Path, description = "The registration's id")), request_body(content = Option<DecisionBody>),
    responses((status = 200, description = "The registration, withdrawn", body = RegistrationView),
              (status = 400, description = "A body that is not a decision", body = ApiError),
              (status = 404, description = "No such registration", body = ApiError),
              (status = 409, description = "Already issued, rejected or expired", body = ApiError)))]
pub(super) async fn withdraw(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (caller, ra) = enter!(req, state, "POST", "/api/v1/registrations/{id}/withdraw");
    let d = match decision(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    answer(
        ra.cancel_registration(&caller, &id, &d.comment).await,
        StatusCode::OK,
    )
}

/// The credentials
///
/// What a registration may ask for.
#[utoipa::path(get, path = "/credentials", tag = "registrations",
    responses((status = 200, description = "The credentials", body = Vec<CredentialView>)))]
pub(super) async fn credentials(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (_, ra) = enter!(req, state, "GET", "/api/v1/credentials");
    HttpResponse::Ok().json(ra.credential_list())
}

/// Register the routes (inside the `/api/v1` scope).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/credentials", web::get().to(credentials))
        .route("/registrations", web::post().to(create))
        .route("/registrations", web::get().to(list))
        .route("/registrations/{id}", web::get().to(get))
        .route("/registrations/{id}/refresh", web::post().to(refresh))
        .route("/registrations/{id}/request", web::post().to(request))
        .route("/registrations/{id}/approve", web::post().to(approve))
        .route("/registrations/{id}/reject", web::post().to(reject))
        .route("/registrations/{id}/revoke", web::post().to(revoke))
        .route("/registrations/{id}/withdraw", web::post().to(withdraw))
        .route(
            "/registrations/{id}/scep-payload",
            web::get().to(scep_payload),
        );
}
