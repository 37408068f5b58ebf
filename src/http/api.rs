//! The REST API under `/api/v1` (JSON in and out) and the NDES-compatible challenge page.
//!
//! Every call but the OpenAPI document needs a bearer token, and each route names the roles
//! it allows ([`ROUTES`], which the role-matrix test walks). Errors are
//! `{"error": code, "message": text}` with the matching status. Failed authentications are
//! logged without the token and limited per source address. Handlers translate HTTP to calls
//! into `ra`; they decide nothing themselves.

// Handlers return a ready HttpResponse as their error: boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::config::rfc3339;
use crate::ra::access::{self, Caller, Role};
use crate::ra::challenge::Bindings;
use crate::ra::ApprovalError;
use crate::store::{CertFilter, CertStatus, CertificateRecord};

/// Method, path pattern, allowed roles: the API's access matrix.
pub const ROUTES: &[(&str, &str, &[Role])] = &[
    ("POST", "/api/v1/tokens", &[Role::Admin]),
    ("GET", "/api/v1/tokens", &[Role::Admin]),
    ("DELETE", "/api/v1/tokens/{id}", &[Role::Admin]),
    ("POST", "/api/v1/challenges", &[Role::Mdm, Role::Admin]),
    (
        "GET",
        "/api/v1/certificates",
        &[Role::Admin, Role::Officer, Role::Auditor],
    ),
    (
        "GET",
        "/api/v1/certificates/{serial}",
        &[Role::Admin, Role::Officer, Role::Auditor],
    ),
    (
        "POST",
        "/api/v1/certificates/{serial}/revoke",
        &[Role::Officer],
    ),
    ("POST", "/api/v1/devices/{id}/revoke", &[Role::Officer]),
    ("GET", "/api/v1/approvals", &[Role::Officer, Role::Admin]),
    ("POST", "/api/v1/approvals/{id}/approve", &[Role::Officer]),
    ("POST", "/api/v1/approvals/{id}/reject", &[Role::Officer]),
    ("GET", "/api/v1/audit", &[Role::Auditor, Role::Admin]),
    ("GET", "/api/v1/credentials", &Role::ALL),
    (
        "POST",
        "/api/v1/registrations",
        &[Role::User, Role::Officer],
    ),
    (
        "GET",
        "/api/v1/registrations",
        &[Role::User, Role::Officer, Role::Admin, Role::Auditor],
    ),
    (
        "GET",
        "/api/v1/registrations/{id}",
        &[Role::User, Role::Officer, Role::Admin, Role::Auditor],
    ),
    (
        "POST",
        "/api/v1/registrations/{id}/refresh",
        &[Role::User, Role::Officer],
    ),
    (
        "POST",
        "/api/v1/registrations/{id}/request",
        &[Role::User, Role::Officer],
    ),
    (
        "POST",
        "/api/v1/registrations/{id}/approve",
        &[Role::Officer],
    ),
    (
        "POST",
        "/api/v1/registrations/{id}/reject",
        &[Role::Officer],
    ),
    (
        "POST",
        "/api/v1/registrations/{id}/revoke",
        &[Role::Officer],
    ),
    (
        "GET",
        "/api/v1/registrations/{id}/scep-payload",
        &[Role::Mdm, Role::Admin],
    ),
];

fn allowed(method: &str, pattern: &str) -> &'static [Role] {
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == pattern)
        .map(|(_, _, r)| *r)
        .unwrap_or(&[])
}

/// A JSON error answer.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": code, "message": message.into()}))
}

/// Failed authentications per source: at most this many per window.
const AUTH_FAILURES_PER_WINDOW: u32 = 20;
const AUTH_WINDOW: Duration = Duration::from_secs(60);

/// Per-source counter of failed authentications.
#[derive(Default)]
pub struct AuthLimiter {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthLimiter {
    fn blocked(&self, ip: IpAddr) -> bool {
        let ip = source_key(ip);
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip).is_some_and(|(start, n)| {
            start.elapsed() < AUTH_WINDOW && *n >= AUTH_FAILURES_PER_WINDOW
        })
    }

    /// Count a failure; true when it is the first of its source in the current window.
    fn fail(&self, ip: IpAddr) -> bool {
        let ip = source_key(ip);
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= 100_000 {
            map.retain(|_, (start, _)| start.elapsed() < AUTH_WINDOW);
            if map.len() >= 100_000 {
                // Still full of fresh sources: start over rather than grow without bound.
                map.clear();
            }
        }
        let e = map.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= AUTH_WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
        e.1 == 1
    }
}

/// Sources are counted per IPv4 address and per IPv6 /64 (one host can hold a whole /64).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        v4 => v4,
    }
}

fn source(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Authenticate the bearer token and check the route's roles.
pub(super) async fn authorize(
    req: &HttpRequest,
    state: &AppState,
    method: &str,
    pattern: &str,
) -> Result<Caller, HttpResponse> {
    let ip = source(req);
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(secret) = bearer else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send `Authorization: Bearer <token>`",
        ));
    };
    caller_for(req, state, secret, ip, allowed(method, pattern)).await
}

async fn caller_for(
    req: &HttpRequest,
    state: &AppState,
    secret: &str,
    ip: IpAddr,
    roles: &[Role],
) -> Result<Caller, HttpResponse> {
    let Some(ra) = state.ra.as_ref() else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no store",
        ));
    };
    let caller = access::authenticate(ra.store().as_ref(), secret)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "token check failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is unavailable; retry later",
            )
        })?;
    let Some(caller) = caller else {
        // A valid token always gets through; only failures count, and a source over the
        // limit gets 429 for its failures.
        let first_in_window = state.limiter.fail(ip);
        tracing::warn!(source = %ip, path = %req.path(), "authentication failed");
        if state.limiter.blocked(ip) {
            return Err(error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                "too many failed authentications from this address; wait a minute",
            ));
        }
        // Recorded without the token, once per source per window, so unauthenticated
        // traffic cannot flood the audit chain.
        if first_in_window {
            if let Err(e) = ra
                .store()
                .audit(
                    &format!("source:{}", source_key(ip)),
                    "login_failed",
                    req.path(),
                    &json!({"method": req.method().as_str()}),
                )
                .await
            {
                tracing::warn!(error = %e, "could not record a failed login");
            }
        }
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the token is unknown, revoked or expired",
        ));
    };
    if !roles.contains(&caller.role) {
        tracing::warn!(token = %caller.token_id, role = caller.role.as_str(), path = %req.path(), "forbidden");
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "role `{}` may not do this; allowed: {}",
                caller.role.as_str(),
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(caller)
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "API request could not be served");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the store is unavailable; retry later",
    )
}

macro_rules! guard {
    ($req:expr, $state:expr, $method:expr, $pattern:expr) => {
        match authorize(&$req, &$state, $method, $pattern).await {
            Ok(c) => c,
            Err(resp) => return resp,
        }
    };
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    role: String,
    name: String,
    #[serde(default)]
    expires_in_days: Option<u32>,
}

async fn create_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    // Authenticate before reading the body: an anonymous caller learns nothing about it.
    let caller = guard!(req, state, "POST", "/api/v1/tokens");
    let body: NewToken = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()),
    };
    let Some(role) = Role::parse(&body.role) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_role",
            "role must be admin, officer, auditor or mdm",
        );
    };
    if body.expires_in_days == Some(0) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_expiry",
            "expires_in_days is at least 1",
        );
    }
    if body.name.trim().is_empty() || body.name.len() > 100 {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_name",
            "name must be 1 to 100 characters",
        );
    }
    let Some(ra) = state.ra.as_ref() else {
        return unavailable("no RA");
    };
    let ttl = body.expires_in_days.map(|d| i64::from(d) * 86_400);
    let actor = format!("token:{}", caller.token_id);
    match access::create_token(ra.store().as_ref(), role, body.name.trim(), ttl, &actor).await {
        Ok((secret, rec)) => {
            tracing::info!(by = %caller.token_id, token = %rec.id, role = role.as_str(), "token created");
            HttpResponse::Created()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(json!({
                    "token": secret,
                    "id": rec.id,
                    "name": rec.name,
                    "role": rec.role,
                    "expires_at": rec.expires_at,
                }))
        }
        Err(e) => unavailable(e),
    }
}

async fn list_tokens(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(req, state, "GET", "/api/v1/tokens");
    let Some(ra) = state.ra.as_ref() else {
        return unavailable("no RA");
    };
    match ra.store().tokens().await {
        Ok(tokens) => HttpResponse::Ok().json(
            tokens
                .iter()
                .map(|t| {
                    json!({
                        "id": t.id, "name": t.name, "role": t.role, "created_at": t.created_at,
                        "expires_at": t.expires_at, "revoked_at": t.revoked_at,
                        "last_used_at": t.last_used_at,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        Err(e) => unavailable(e),
    }
}

async fn revoke_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let caller = guard!(req, state, "DELETE", "/api/v1/tokens/{id}");
    let Some(ra) = state.ra.as_ref() else {
        return unavailable("no RA");
    };
    match ra
        .store()
        .revoke_token(&id, &format!("token:{}", caller.token_id))
        .await
    {
        Ok(true) => {
            tracing::info!(by = %caller.token_id, token = %id, "token revoked");
            HttpResponse::NoContent().finish()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "not_found", "no such active token"),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct NewChallenge {
    profile: Option<String>,
    cn: Option<String>,
    sans: Vec<String>,
    device_id: Option<String>,
    ttl_minutes: Option<u32>,
}

async fn issue_challenge(
    state: &AppState,
    caller: &Caller,
    c: NewChallenge,
) -> Result<serde_json::Value, HttpResponse> {
    let Some(ra) = state.ra.as_ref() else {
        return Err(unavailable("no RA"));
    };
    let profile = match ra.profile(c.profile.as_deref()) {
        Ok(p) => p.name.clone(),
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "unknown_profile",
                format!("{e}; profiles: {}", ra.profile_names().join(", ")),
            ))
        }
    };
    let minutes = c.ttl_minutes.unwrap_or(60);
    if !(1..=7 * 24 * 60).contains(&minutes) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "bad_ttl",
            "ttl_minutes is 1 to 10080",
        ));
    }
    let ttl = i64::from(minutes) * 60;
    let bindings = Bindings {
        cn: c.cn,
        sans: c.sans,
        device_id: c.device_id,
        ..Bindings::default()
    };
    if let Err(why) = crate::ra::challenge::validate(&bindings) {
        return Err(error(StatusCode::BAD_REQUEST, "bad_bindings", why));
    }
    let actor = format!("token:{}", caller.token_id);
    match crate::ra::challenge::create(ra.store().as_ref(), &profile, &bindings, ttl, &actor).await
    {
        Ok((challenge, expires_at)) => {
            tracing::info!(by = %caller.token_id, %profile, "one-time challenge issued");
            Ok(json!({
                "challenge": challenge,
                "expires_at": rfc3339(expires_at),
                "profile": profile,
            }))
        }
        Err(e) => Err(unavailable(e)),
    }
}

async fn create_challenge(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let caller = guard!(req, state, "POST", "/api/v1/challenges");
    // An empty body means the default profile.
    let c: NewChallenge = if body.iter().all(u8::is_ascii_whitespace) {
        NewChallenge::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(c) => c,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()),
        }
    };
    match issue_challenge(&state, &caller, c).await {
        Ok(v) => HttpResponse::Created()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(v),
        Err(resp) => resp,
    }
}

/// `GET /certsrv/mscep_admin/`: the NDES page Workspace ONE, MobileIron and Fleet read, with
/// HTTP Basic authentication (any user name; an `mdm` token as the password). UTF-16LE HTML.
/// `/certsrv/mscep_admin/json` answers the same as JSON (webhook-style MDMs).
async fn mscep_admin(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let ip = source(&req);
    let password = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|up| up.split_once(':').map(|(_, p)| p.to_owned()));
    let Some(password) = password else {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"Sigil NDES\""))
            .body("HTTP Basic authentication with an mdm token as the password\n");
    };
    let caller = match caller_for(&req, &state, &password, ip, &[Role::Mdm]).await {
        Ok(c) => c,
        Err(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"Sigil NDES\""))
                .body("the token is unknown, revoked or expired\n");
        }
        Err(resp) => return resp,
    };
    let value = match issue_challenge(&state, &caller, NewChallenge::default()).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if req.path().ends_with("/json") {
        return HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(value);
    }
    let challenge = value["challenge"].as_str().unwrap_or_default();
    let html = format!(
        "<HTML><Head><Meta HTTP-Equiv=\"Content-Type\" Content=\"text/html; charset=UTF-16\">\r\n\
         <Title>Network Device Enrollment Service</Title></Head>\r\n<Body BgColor=#FFFFFF>\r\n\
         <P> The enrollment challenge password is: <B> {challenge} </B>\r\n\
         <P> This password can be used only once and will expire within 60 minutes.\r\n\
         <P> Each enrollment requires a new challenge password.\r\n</Body></HTML>\r\n"
    );
    let mut bytes = vec![0xff, 0xfe];
    for u in html.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-16")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(bytes)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertQuery {
    profile: Option<String>,
    status: Option<String>,
    expiring_within: Option<String>,
    subject: Option<String>,
    device: Option<String>,
    limit: Option<usize>,
}

fn cert_json(c: &CertificateRecord, with_pem: bool) -> serde_json::Value {
    let mut v = json!({
        "serial": c.serial, "subject": c.subject, "sans": c.sans, "issuer": c.issuer,
        "not_before": rfc3339(c.not_before), "not_after": rfc3339(c.not_after),
        "profile": c.profile,
        "status": if c.status == CertStatus::Valid { "valid" } else { "revoked" },
        "transaction_id": c.transaction_id,
        "device_id": c.device_id,
        "revoked_at": c.revoked_at.map(rfc3339),
        "revocation_reason": c.revocation_reason,
    });
    if with_pem {
        v["pem"] = json!(crate::pki::to_pem(&c.der));
    }
    v
}

/// Parse the query string after authentication (an extractor would answer anonymous callers
/// first).
pub(super) fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, HttpResponse> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_query", e.to_string()))
}

/// Parse a JSON body (read after authentication).
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))
}

async fn list_certificates(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
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
    let expiring = match q.expiring_within.as_deref().map(crate::config::parse_span) {
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
    let filter = CertFilter {
        profile: q.profile.clone(),
        status,
        expiring_within_secs: expiring,
        subject_contains: q.subject.clone(),
        device_id: q.device.clone(),
        limit: q.limit.unwrap_or(1000).clamp(1, 10_000),
    };
    let Some(ra) = state.ra.as_ref() else {
        return unavailable("no RA");
    };
    match ra.store().certificates(&filter).await {
        Ok(certs) => HttpResponse::Ok().json(
            certs
                .iter()
                .map(|c| cert_json(c, false))
                .collect::<Vec<_>>(),
        ),
        Err(e) => unavailable(e),
    }
}

async fn get_certificate(
    req: HttpRequest,
    state: web::Data<AppState>,
    serial: web::Path<String>,
) -> HttpResponse {
    guard!(req, state, "GET", "/api/v1/certificates/{serial}");
    let Some(ra) = state.ra.as_ref() else {
        return unavailable("no RA");
    };
    let serial = serial.trim().to_ascii_lowercase();
    match ra.store().certificate(&serial).await {
        Ok(Some(c)) => HttpResponse::Ok().json(cert_json(&c, true)),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no certificate with this serial",
        ),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Revocation {
    reason: String,
}

/// The RFC 5280 reason code of a `{"reason": …}` body.
pub(super) fn revocation_reason(body: &[u8]) -> Result<i32, HttpResponse> {
    let r: Revocation = serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))?;
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

async fn revoke_device(
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
    let Some(ra) = state.ra.as_ref() else {
        return unavailable("no RA");
    };
    match ra.revoke_device(&device, reason, &caller.actor()).await {
        Ok(serials) if serials.is_empty() => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no valid certificate was issued to this device",
        ),
        Ok(serials) => HttpResponse::Ok()
            .json(json!({"device_id": *device, "revoked": serials, "reason": reason})),
        Err(e) => unavailable(e),
    }
}

async fn revoke_certificate(
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
    let Some(ra) = state.ra.as_ref() else {
        return unavailable("no RA");
    };
    match ra
        .revoke(&serial, reason, &format!("token:{}", caller.token_id))
        .await
    {
        Ok(true) => HttpResponse::Ok().json(
            json!({"serial": serial.to_ascii_lowercase(), "status": "revoked", "reason": reason}),
        ),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no valid certificate with this serial",
        ),
        Err(e) => unavailable(e),
    }
}

async fn list_approvals(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(req, state, "GET", "/api/v1/approvals");
    let Some(ra) = state.ra.as_ref() else {
        return unavailable("no RA");
    };
    let pending = match ra.store().pending().await {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
    let registrations = match ra.store().registrations(None, 0).await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    // One queue: enrollments waiting on an approval profile, and filed registrations.
    let mut queue: Vec<serde_json::Value> = pending
        .iter()
        .map(|t| {
            let csr = crate::pki::parse_csr(&t.csr).ok();
            json!({
                "kind": "enrollment",
                "id": t.transaction_id,
                "transaction_id": t.transaction_id,
                "profile": t.profile,
                "subject_cn": csr.as_ref().and_then(|c| c.common_name().map(str::to_owned)),
                "sans": csr.map(|c| c.sans.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>()),
            })
        })
        .collect();
    queue.extend(
        registrations
            .iter()
            .filter(|r| r.state == crate::store::RegistrationState::Requested)
            .map(|r| {
                let mut v = super::registrations::registration_json(r);
                v["kind"] = json!("registration");
                v
            }),
    );
    HttpResponse::Ok().json(queue)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Decision {
    comment: String,
}

fn approval_error(e: ApprovalError) -> HttpResponse {
    match e {
        ApprovalError::NotFound => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        ApprovalError::NotPending => error(StatusCode::CONFLICT, "not_pending", e.to_string()),
        ApprovalError::Refused(_) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "refused", e.to_string())
        }
        ApprovalError::Unavailable(_) => unavailable(e),
    }
}

fn decision(body: &web::Bytes) -> Result<Decision, HttpResponse> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Decision::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))
}

async fn approve(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let caller = guard!(req, state, "POST", "/api/v1/approvals/{id}/approve");
    let d = match decision(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Some(ra) = state.ra.as_ref() else {
        return unavailable("no RA");
    };
    if id.starts_with("reg_") {
        return match ra.decide_registration(&caller, &id, true, &d.comment).await {
            Ok(r) => HttpResponse::Ok().json(super::registrations::registration_json(&r)),
            Err(e) => super::registrations::registration_error(e),
        };
    }
    match ra.approve(&id, &format!("token:{}", caller.token_id)).await {
        Ok(serial) => {
            tracing::info!(by = %caller.token_id, transaction_id = %id, comment = %d.comment, "approval");
            HttpResponse::Ok()
                .json(json!({"transaction_id": *id, "state": "issued", "serial": serial}))
        }
        Err(e) => approval_error(e),
    }
}

async fn reject(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let caller = guard!(req, state, "POST", "/api/v1/approvals/{id}/reject");
    let d = match decision(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Some(ra) = state.ra.as_ref() else {
        return unavailable("no RA");
    };
    if id.starts_with("reg_") {
        return match ra
            .decide_registration(&caller, &id, false, &d.comment)
            .await
        {
            Ok(r) => HttpResponse::Ok().json(super::registrations::registration_json(&r)),
            Err(e) => super::registrations::registration_error(e),
        };
    }
    let reason = if d.comment.trim().is_empty() {
        "rejected by an officer".to_string()
    } else {
        format!("rejected by an officer: {}", d.comment.trim())
    };
    match ra
        .reject(&id, &reason, &format!("token:{}", caller.token_id))
        .await
    {
        Ok(()) => {
            tracing::info!(by = %caller.token_id, transaction_id = %id, "rejection");
            HttpResponse::Ok().json(json!({"transaction_id": *id, "state": "rejected"}))
        }
        Err(e) => approval_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<i64>,
    limit: Option<usize>,
}

async fn audit(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(req, state, "GET", "/api/v1/audit");
    let q: AuditQuery = match query(&req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let Some(ra) = state.ra.as_ref() else {
        return unavailable("no RA");
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    match ra.store().audit_records(q.after.unwrap_or(0), limit).await {
        Ok(records) => HttpResponse::Ok().json(records),
        Err(e) => unavailable(e),
    }
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(include_str!("../../docs/openapi.json"))
}

/// Register the API routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let json = web::JsonConfig::default()
        .limit(64 * 1024)
        .error_handler(|e, _| {
            let status = match &e {
                actix_web::error::JsonPayloadError::Overflow { .. }
                | actix_web::error::JsonPayloadError::OverflowKnownLength { .. } => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                _ => StatusCode::BAD_REQUEST,
            };
            let message = e.to_string();
            actix_web::error::InternalError::from_response(e, error(status, "bad_json", message))
                .into()
        });
    let query = web::QueryConfig::default().error_handler(|e, _| {
        let message = e.to_string();
        actix_web::error::InternalError::from_response(
            e,
            error(StatusCode::BAD_REQUEST, "bad_query", message),
        )
        .into()
    });
    cfg.service(
        web::scope("/api/v1")
            .app_data(json)
            .app_data(query)
            .app_data(web::PayloadConfig::new(64 * 1024))
            .route("/openapi.json", web::get().to(openapi))
            .route("/tokens", web::post().to(create_token))
            .route("/tokens", web::get().to(list_tokens))
            .route("/tokens/{id}", web::delete().to(revoke_token))
            .route("/challenges", web::post().to(create_challenge))
            .route("/certificates", web::get().to(list_certificates))
            .route("/certificates/{serial}", web::get().to(get_certificate))
            .route(
                "/certificates/{serial}/revoke",
                web::post().to(revoke_certificate),
            )
            .route("/devices/{id}/revoke", web::post().to(revoke_device))
            .route("/approvals", web::get().to(list_approvals))
            .route("/approvals/{id}/approve", web::post().to(approve))
            .route("/approvals/{id}/reject", web::post().to(reject))
            .route("/audit", web::get().to(audit))
            .configure(super::registrations::routes)
            .default_service(web::to(|| async {
                error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such API route (see /api/v1/openapi.json)",
                )
            })),
    )
    .route("/certsrv/mscep_admin/", web::get().to(mscep_admin))
    .route("/certsrv/mscep_admin", web::get().to(mscep_admin))
    .route("/certsrv/mscep_admin/json", web::get().to(mscep_admin));
}
