//! `/api/v1/tokens`: API tokens (admin).

// Handlers return a ready HttpResponse as their error.
#![allow(clippy::result_large_err)]

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::{authorize, error, unavailable};
use crate::authority::access::{self, Role};
use crate::authority::TokenError;
use crate::http::AppState;

pub(crate) use super::bodies::NewToken;
use super::bodies::{ApiError, CreatedToken, Scope, TokenView};

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

/// Create a token
///
/// An admin makes any token; a person signed in makes their own, in a role they hold (a user
/// token named by their own email). An `mdm` token carries its scope (the profiles and
/// directories it serves); a token that grants power (admin, officer, mdm) works once a second
/// admin approves it.
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, description = "The token, with its secret shown this once", body = CreatedToken),
              (status = 400, description = "A bad role, name, expiry or scope", body = ApiError)))]
pub(super) async fn create_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    // Authenticate before reading the body: an anonymous caller learns nothing about it.
    let caller = guard!(req, state, "POST", "/api/v1/tokens");
    let body: NewToken = match super::parse_json(&body) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match make_token(&state, &caller, body).await {
        Ok((secret, rec)) => HttpResponse::Created()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(CreatedToken {
                token: secret,
                expires_at: rec.expires_at.map(crate::clock::rfc3339),
                scope: Scope::from(&rec.scope),
                awaiting_approval: rec.awaiting_approval,
                note: if rec.awaiting_approval {
                    "this token grants power: it works once a second admin approves it (POST /api/v1/tokens/{id}/approve)".into()
                } else {
                    String::new()
                },
                id: rec.id,
                name: rec.name,
                role: rec.role,
                owner: rec.owner,
            }),
        Err((status, code, why)) => error(status, code, why),
    }
}

/// Approve a token
///
/// A token that grants power (admin, officer or integration), asked for by another admin;
/// never by the person who asked.
#[utoipa::path(post, path = "/tokens/{id}/approve", tag = "tokens",
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 204, description = "Approved: the token works from now"),
              (status = 404, description = "No such token waits for approval", body = ApiError)))]
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

/// List tokens
///
/// Every token (an admin) or the caller's own, with its owner, scope and last use; never a
/// secret.
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    responses((status = 200, description = "The tokens", body = Vec<TokenView>)))]
pub(super) async fn list_tokens(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let caller = guard!(req, state, "GET", "/api/v1/tokens");
    let ra = &state.ra;
    match ra.tokens_for(&caller).await {
        Ok(tokens) => {
            HttpResponse::Ok().json(tokens.iter().map(TokenView::from).collect::<Vec<_>>())
        }
        Err(TokenError::Forbidden(why)) => error(StatusCode::FORBIDDEN, "forbidden", why),
        Err(e) => unavailable(e),
    }
}

/// Revoke a token
///
/// It stops working at once. An admin revokes any token; a person their own.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 204, description = "Revoked"),
              (status = 404, description = "No such active token", body = ApiError)))]
pub(super) async fn revoke_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let caller = guard!(req, state, "DELETE", "/api/v1/tokens/{id}");
    let ra = &state.ra;
    match ra.revoke_token_for(&caller, &id).await {
        Ok(true) => {
            tracing::info!(by = %caller.actor, token = %id, "token revoked");
            HttpResponse::NoContent().finish()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "not_found", "no such active token"),
        Err(TokenError::Forbidden(why)) => error(StatusCode::FORBIDDEN, "forbidden", why),
        Err(e) => unavailable(e),
    }
}
