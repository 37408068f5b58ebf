//! `/api/v1/tokens`: API tokens (admin).

// Handlers return a ready HttpResponse as their error.
#![allow(clippy::result_large_err)]

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{authorize, error, unavailable};
use crate::authority::access::{self, Role};
use crate::authority::TokenError;
use crate::http::AppState;

/// A token asked for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    pub(crate) role: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) expires_in_days: Option<u32>,
    /// mdm tokens: the profiles it may mint challenges for (`*`: all open to integrations).
    #[serde(default)]
    pub(crate) profiles: Vec<String>,
    /// mdm tokens: the directories whose SCEP payloads it may collect (`*`: all).
    #[serde(default)]
    pub(crate) directories: Vec<String>,
}

/// Why a token was not made: the status, a code, and the reason in words.
pub(crate) type Refusal = (StatusCode, &'static str, String);

/// Make a token as `caller` asks (the API's and the console's one path): the role, name,
/// expiry and scope checked, then the authority's grant rules.
pub(crate) async fn make_token(
    state: &AppState,
    caller: &crate::authority::access::Caller,
    body: NewToken,
) -> Result<(String, crate::authority::TokenRecord), Refusal> {
    let Some(role) = Role::parse(&body.role) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "bad_role",
            "role must be admin, officer, auditor, mdm or user".into(),
        ));
    };
    if body.expires_in_days == Some(0) {
        return Err((
            StatusCode::BAD_REQUEST,
            "bad_expiry",
            "expires_in_days is at least 1".into(),
        ));
    }
    if body.name.trim().is_empty() || body.name.len() > 100 {
        return Err((
            StatusCode::BAD_REQUEST,
            "bad_name",
            "name must be 1 to 100 characters".into(),
        ));
    }
    let ra = &state.ra;
    let scope = crate::authority::TokenScope {
        profiles: body.profiles,
        directories: body.directories,
    };
    let (profiles, directories) = ra.scope_names();
    if let Err(why) = access::check_scope(role, &scope, &profiles, &directories) {
        return Err((StatusCode::BAD_REQUEST, "bad_scope", why));
    }
    let ttl = body.expires_in_days.map(|d| i64::from(d) * 86_400);
    match ra
        .create_token_for(caller, role, body.name.trim(), ttl, scope)
        .await
    {
        Ok((secret, rec)) => {
            tracing::info!(by = %caller.actor, token = %rec.id, role = role.as_str(), awaiting_approval = rec.awaiting_approval, "token created");
            Ok((secret, rec))
        }
        Err(TokenError::Forbidden(why)) => Err((StatusCode::FORBIDDEN, "forbidden", why)),
        Err(e) => {
            tracing::error!(error = %e, "token not made");
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("temporarily unavailable: {e}"),
            ))
        }
    }
}

pub(super) async fn create_token(
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
    match make_token(&state, &caller, body).await {
        Ok((secret, rec)) => HttpResponse::Created()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({
                "token": secret,
                "id": rec.id,
                "name": rec.name,
                "role": rec.role,
                "expires_at": rec.expires_at.map(crate::clock::rfc3339),
                "scope": rec.scope,
                "owner": rec.owner,
                "awaiting_approval": rec.awaiting_approval,
                "note": if rec.awaiting_approval {
                    "this token grants power: it works once a second admin approves it (POST /api/v1/tokens/{id}/approve)"
                } else {
                    ""
                },
            })),
        Err((status, code, why)) => error(status, code, why),
    }
}

pub(super) async fn approve_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let caller = guard!(req, state, "POST", "/api/v1/tokens/{id}/approve");
    match state.ra.approve_token(&caller, &id).await {
        Ok(()) => {
            tracing::info!(by = %caller.actor, token = %id, "token approved");
            HttpResponse::NoContent().finish()
        }
        Err(TokenError::Forbidden(why)) => error(StatusCode::FORBIDDEN, "forbidden", why),
        Err(TokenError::NotFound) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such token waits for approval",
        ),
        Err(TokenError::Store(e)) => unavailable(e),
    }
}

pub(super) async fn list_tokens(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(req, state, "GET", "/api/v1/tokens");
    let ra = &state.ra;
    match ra.tokens().await {
        Ok(tokens) => HttpResponse::Ok().json(
            tokens
                .iter()
                .map(|t| {
                    json!({
                        "id": t.id, "name": t.name, "role": t.role,
                        "created_at": crate::clock::rfc3339(t.created_at),
                        "expires_at": t.expires_at.map(crate::clock::rfc3339),
                        "revoked_at": t.revoked_at.map(crate::clock::rfc3339),
                        "last_used_at": t.last_used_at.map(crate::clock::rfc3339),
                        "scope": t.scope,
                        "owner": t.owner,
                        "awaiting_approval": t.awaiting_approval,
                        "approved_by": t.approved_by,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        Err(e) => unavailable(e),
    }
}

pub(super) async fn revoke_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let caller = guard!(req, state, "DELETE", "/api/v1/tokens/{id}");
    let ra = &state.ra;
    match ra.revoke_token(&id, &caller.actor()).await {
        Ok(true) => {
            tracing::info!(by = %caller.actor, token = %id, "token revoked");
            HttpResponse::NoContent().finish()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "not_found", "no such active token"),
        Err(e) => unavailable(e),
    }
}
