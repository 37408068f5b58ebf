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
use serde_json::json;

use super::AppState;
use crate::authority::access::{Caller, Role};

/// Method, path pattern, allowed roles: the API's access matrix.
pub const ROUTES: &[(&str, &str, &[Role])] = &[
    // An admin: any token; a person signed in: their own (the core checks which).
    (
        "POST",
        "/api/v1/tokens",
        &[Role::Admin, Role::Officer, Role::Auditor, Role::User],
    ),
    (
        "GET",
        "/api/v1/tokens",
        &[Role::Admin, Role::Officer, Role::Auditor, Role::User],
    ),
    (
        "DELETE",
        "/api/v1/tokens/{id}",
        &[Role::Admin, Role::Officer, Role::Auditor, Role::User],
    ),
    ("POST", "/api/v1/tokens/{id}/approve", &[Role::Admin]),
    ("POST", "/api/v1/challenges", &[Role::Mdm, Role::Admin]),
    (
        "GET",
        "/api/v1/profiles/{name}/mobileconfig",
        &[Role::Mdm, Role::Admin],
    ),
    (
        "GET",
        "/api/v1/profiles/{name}/ddm",
        &[Role::Mdm, Role::Admin],
    ),
    (
        "GET",
        "/api/v1/registrations/{id}/mobileconfig",
        &[Role::Mdm],
    ),
    (
        "GET",
        "/api/v1/profiles/{name}/scep-values",
        &[Role::Mdm, Role::Admin],
    ),
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
        "POST",
        "/api/v1/registrations/{id}/withdraw",
        &[Role::Officer],
    ),
    (
        "GET",
        "/api/v1/registrations/{id}/scep-payload",
        &[Role::Mdm],
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
    HttpResponse::build(status).json(bodies::ApiError {
        error: code.to_string(),
        message: message.into(),
    })
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
    /// Whether `ip`'s source has failed more than `AUTH_FAILURES_PER_WINDOW` times in the
    /// current window (the failures up to that many are answered as failures, not 429).
    fn blocked(&self, ip: IpAddr) -> bool {
        let ip = source_key(ip);
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip).is_some_and(|(start, n)| {
            start.elapsed() < AUTH_WINDOW && *n > AUTH_FAILURES_PER_WINDOW
        })
    }

    /// Count a failure; true while its source has had at most `AUTH_FAILURES_PER_WINDOW`
    /// in the current window.
    pub(crate) fn within_budget(&self, ip: IpAddr) -> bool {
        self.count(ip) <= AUTH_FAILURES_PER_WINDOW
    }

    /// Count an event of `ip`'s source; true while its source has had at most `budget` in
    /// the current window.
    pub(crate) fn within(&self, ip: IpAddr, budget: u32) -> bool {
        self.count(ip) <= budget
    }

    /// Count a failure; true when it is the first of its source in the current window.
    fn fail(&self, ip: IpAddr) -> bool {
        self.count(ip) == 1
    }

    /// Count a failure of `ip`'s source; how many in the current window.
    fn count(&self, ip: IpAddr) -> u32 {
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
        e.1
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

/// The client's address: the connection's, or the one a trusted proxy names (see
/// [`crate::client_address`]).
pub(crate) fn source(req: &HttpRequest) -> IpAddr {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => state.proxies.client_from_header(
            peer,
            req.headers()
                .get_all("x-forwarded-for")
                .map(|v| v.as_bytes()),
        ),
        None => peer,
    }
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
    let roles = allowed(method, pattern);
    let caller = match bearer {
        Some(secret) => token_caller(req, state, secret, ip).await?,
        None => match crate::http::auth::session_cookie(req) {
            Some(cookie) => crate::http::auth::session_caller(req, state, &cookie).await?,
            None => return Err(error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send `Authorization: Bearer <token>`, or sign in (/auth/oidc/login, /auth/piv)",
            )),
        },
    };
    act_in_role(req, state, caller, roles).await
}

/// The role a request acts in: the strongest of the caller's that the route allows.
pub(super) async fn act_in_role(
    req: &HttpRequest,
    state: &AppState,
    mut caller: Caller,
    roles: &[Role],
) -> Result<Caller, HttpResponse> {
    let Some(role) = caller
        .roles
        .iter()
        .copied()
        .filter(|r| roles.contains(r))
        .max_by_key(|r| r.rank())
    else {
        tracing::warn!(actor = %caller.actor, role = caller.role.as_str(), path = %req.path(), "forbidden");
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "role `{}` may not do this; allowed: {}",
                caller
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    caller.role = role;
    if caller.break_glass {
        state
            .ra
            .note_break_glass(&caller, &format!("{} {}", req.method(), req.path()))
            .await;
    }
    Ok(caller)
}

/// The caller a bearer token names; failures counted per source.
pub(super) async fn token_caller(
    req: &HttpRequest,
    state: &AppState,
    secret: &str,
    ip: IpAddr,
) -> Result<Caller, HttpResponse> {
    let ra = &state.ra;
    let caller = ra.authenticate(secret).await.map_err(|e| {
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
                .audit_event(
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
            "the token is unknown, revoked, expired, or waits for a second admin's approval",
        ));
    };
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

mod approvals;
mod audit;
pub mod bodies;
mod certificates;
mod challenges;
pub mod openapi;
mod profiles;
pub(crate) mod tokens;

pub(crate) use certificates::revocation_reason;

/// Parse the query string after authentication (an extractor would answer anonymous callers
/// first).
pub(super) fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, HttpResponse> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_query", e.to_string()))
}

/// Parse a JSON body (read after authentication).
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    if super::nul::in_json(body) {
        tracing::warn!("refused: a NUL character in a JSON body");
        return Err(super::nul::refused_json());
    }
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))
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
            .route("/openapi.json", web::get().to(openapi::serve))
            .route("/tokens", web::post().to(tokens::create_token))
            .route("/tokens", web::get().to(tokens::list_tokens))
            .route("/tokens/{id}", web::delete().to(tokens::revoke_token))
            .route(
                "/tokens/{id}/approve",
                web::post().to(tokens::approve_token),
            )
            .route("/challenges", web::post().to(challenges::create_challenge))
            .route(
                "/profiles/{name}/mobileconfig",
                web::get().to(profiles::mobileconfig),
            )
            .route("/profiles/{name}/ddm", web::get().to(profiles::ddm))
            .route(
                "/profiles/{name}/scep-values",
                web::get().to(profiles::scep_values),
            )
            .route(
                "/registrations/{id}/mobileconfig",
                web::get().to(profiles::registration_mobileconfig),
            )
            .route(
                "/certificates",
                web::get().to(certificates::list_certificates),
            )
            .route(
                "/certificates/{serial}",
                web::get().to(certificates::get_certificate),
            )
            .route(
                "/certificates/{serial}/revoke",
                web::post().to(certificates::revoke_certificate),
            )
            .route(
                "/devices/{id}/revoke",
                web::post().to(certificates::revoke_device),
            )
            .route("/approvals", web::get().to(approvals::list_approvals))
            .route(
                "/approvals/{id}/approve",
                web::post().to(approvals::approve),
            )
            .route("/approvals/{id}/reject", web::post().to(approvals::reject))
            .route("/audit", web::get().to(audit::audit))
            .configure(super::registrations::routes)
            .default_service(web::to(|| async {
                error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such API route (see /api/v1/openapi.json)",
                )
            })),
    )
    .route(
        "/certsrv/mscep_admin/",
        web::get().to(challenges::mscep_admin),
    )
    .route(
        "/certsrv/mscep_admin",
        web::get().to(challenges::mscep_admin),
    )
    .route(
        "/certsrv/mscep_admin/json",
        web::get().to(challenges::mscep_admin),
    );
}
