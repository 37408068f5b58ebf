//! `/api/v1/registrations`: the derived-credential flow over HTTP (see
//! [`crate::authority::registration`]). Handlers authenticate, parse and translate; the RA decides.

// Handlers return a ready HttpResponse as their error: boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::api::{authorize, error, parse_json, query, unavailable};
use super::AppState;
use crate::authority::access::{Caller, Role};
use crate::authority::registration::RegistrationError;
use crate::authority::Authority;
use crate::authority::RegistrationRecord;
use crate::clock::rfc3339;

/// The JSON form of a registration.
pub fn registration_json(r: &RegistrationRecord) -> serde_json::Value {
    let devices: serde_json::Value = serde_json::from_str(&r.devices).unwrap_or_else(|_| json!([]));
    let device: serde_json::Value = r
        .device
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(serde_json::Value::Null);
    json!({
        "id": r.id,
        "email": r.email,
        "credential": r.credential,
        "state": r.state.as_str(),
        "devices": devices,
        "directory_error": r.directory_error,
        "device_id": r.device_id,
        "device": device,
        "subject": r.subject,
        "sans": r.sans,
        "created_by": r.created_by,
        "requested_by": r.requested_by,
        "decided_by": r.decided_by,
        "comment": r.comment,
        "serial": r.serial,
        "created_at": rfc3339(r.created_at),
        "updated_at": rfc3339(r.updated_at),
        "expires_at": rfc3339(r.expires_at),
    })
}

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
        Ok(r) => HttpResponse::build(status).json(registration_json(&r)),
        Err(e) => registration_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRegistration {
    /// Whose registration; a signed-in person or a user token may leave it out (their own).
    email: Option<String>,
    credential: String,
}

async fn create(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    email: Option<String>,
    state: Option<String>,
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (caller, ra) = enter!(req, state, "GET", "/api/v1/registrations");
    let q: ListQuery = match query(&req) {
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
                .map(registration_json)
                .collect::<Vec<_>>(),
        ),
        Err(e) => registration_error(e),
    }
}

async fn get(req: HttpRequest, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let (caller, ra) = enter!(req, state, "GET", "/api/v1/registrations/{id}");
    let r = match ra.registration(&caller, &id).await {
        Ok(r) => r,
        Err(e) => return registration_error(e),
    };
    let pushes = match ra.registration_pushes(&r.id).await {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
    let mut body = registration_json(&r);
    body["pushes"] = pushes_json(&pushes);
    HttpResponse::Ok().json(body)
}

/// The JSON form of a registration's pushes to its MDM.
pub fn pushes_json(pushes: &[crate::authority::PushRecord]) -> serde_json::Value {
    pushes
        .iter()
        .map(|p| {
            json!({
                "action": p.action.as_str(),
                "key": p.key,
                "state": p.state.as_str(),
                "attempts": p.attempts,
                "message": p.message,
                "next_attempt_at": (p.state == crate::authority::PushState::Pending).then(|| rfc3339(p.next_at)),
                "created_at": rfc3339(p.created_at),
                "updated_at": rfc3339(p.updated_at),
            })
        })
        .collect()
}

async fn refresh(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let (caller, ra) = enter!(req, state, "POST", "/api/v1/registrations/{id}/refresh");
    answer(ra.refresh_devices(&caller, &id).await, StatusCode::OK)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceChoice {
    device_id: String,
}

async fn request(
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Decision {
    /// The officer's comment.
    pub(crate) comment: String,
}

/// An optional `{"comment": …}` body (empty: no comment).
pub(crate) fn decision(body: &[u8]) -> Result<Decision, HttpResponse> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Decision::default())
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

async fn approve(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    decide(req, state, id, body, true).await
}

async fn reject(
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

async fn scep_payload(
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

async fn revoke(
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
        Ok(serials) => HttpResponse::Ok().json(json!({"registration": *id, "revoked": serials,
                "reason": crate::pki::revocation_reason_name(reason)})),
        Err(e) => registration_error(e),
    }
}

async fn withdraw(
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

async fn credentials(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
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
