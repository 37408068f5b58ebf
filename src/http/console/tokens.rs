//! A person's own API tokens (for their scripts): make one in a role they hold, see and revoke
//! their own. The rules are the authority's (`Authority::create_token_for`, `tokens_for`,
//! `revoke_token_for`), the same as `POST /api/v1/tokens` with a session: here a person acts
//! for themselves, never as an admin, whatever roles they hold (an admin makes tokens for
//! others and for integrations on the administration page).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{expiry_days, field, message, render, see_other, token_made, unavailable, when, Visit};
use crate::authority::access::{Caller, Role};
use crate::authority::TokenError;
use crate::http::api::tokens::{make_token, NewToken};
use crate::http::AppState;

const PAGE: &str = "/console/tokens";

/// The roles a person makes their own tokens in: those they hold, but admin and integration
/// tokens are made by an admin on the administration page, and with `identity.grants = idp`
/// officer and auditor tokens are not made at all.
fn own_roles(state: &AppState, caller: &Caller) -> Vec<Role> {
    let idp_only = state.ra.roles_from_identity_provider_only();
    caller
        .roles
        .iter()
        .copied()
        .filter(|r| match r {
            Role::Officer | Role::Auditor => !idp_only,
            r => r.personal(),
        })
        .collect()
}

/// The visitor acting for themselves in `role`, not as an admin.
fn for_myself(visit: &Visit, role: Role) -> Caller {
    let mut caller = visit.caller.clone();
    caller.role = role;
    caller
}

/// `/console/tokens`: my tokens, and a form to make one.
pub(super) async fn tokens(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let visit = match Visit::open(&req, &state, &[]).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mine = match state.ra.tokens_for(&for_myself(&visit, Role::User)).await {
        Ok(t) => t,
        Err(e) => return unavailable(e),
    };
    let now = crate::clock::now();
    let rows: Vec<_> = mine
        .iter()
        .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|at| at > now))
        .map(|t| {
            json!({
                "id": t.id, "name": t.name, "role": t.role,
                "awaiting_approval": t.awaiting_approval,
                "created_at": when(t.created_at),
                "last_used_at": t.last_used_at.map(when),
                "expires_at": t.expires_at.map(when),
            })
        })
        .collect();
    let roles: Vec<&str> = own_roles(&state, &visit.caller)
        .iter()
        .map(|r| r.as_str())
        .collect();
    render(
        StatusCode::OK,
        "tokens.html",
        "My API tokens",
        Some(&visit),
        json!({"tokens": rows, "roles": roles}),
    )
}

/// Make a token for myself; the secret is shown once.
pub(super) async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let (visit, form) = match Visit::form(&req, &state, &[], &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let refused = |status, why: &str| message(status, Some(&visit), "Not made", why, PAGE);
    let role = match Role::parse(field(&form, "role")) {
        Some(r) if r.personal() => r,
        Some(r) => {
            return refused(
                StatusCode::FORBIDDEN,
                &format!(
                    "You make tokens only for yourself here; an admin makes {} tokens on the administration page.",
                    r.as_str()
                ),
            )
        }
        None => return refused(StatusCode::UNPROCESSABLE_ENTITY, "Choose a role you hold."),
    };
    let Ok(expires_in_days) = expiry_days(&form) else {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Expiry: a whole number of days.",
        );
    };
    // A user token acts for the email it is named after: named by mine unless I said.
    let name = match (field(&form, "name"), role, &visit.caller.person.email) {
        ("", Role::User, Some(email)) => email.clone(),
        ("", Role::User, None) => {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "A user token acts for your email, and your identity provider gives no email address for you. Ask your administrator to release the email claim to Sigil.",
            )
        }
        (name, _, _) => name.to_string(),
    };
    let asked = NewToken {
        role: role.as_str().to_string(),
        name,
        expires_in_days,
        profiles: Vec::new(),
        directories: Vec::new(),
    };
    match make_token(&state, &for_myself(&visit, role), asked).await {
        Ok((secret, rec)) => token_made(&visit, "Token made", &secret, &rec, json!({"back": PAGE})),
        Err((status, _, why)) => refused(status, &why),
    }
}

/// Revoke one of my tokens.
pub(super) async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (visit, _) = match Visit::form(&req, &state, &[], &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match state
        .ra
        .revoke_token_for(&for_myself(&visit, Role::User), &id)
        .await
    {
        Ok(true) => {
            tracing::info!(actor = %visit.caller.actor, token = %id, "token revoked by its maker");
            see_other(PAGE)
        }
        Ok(false) => message(
            StatusCode::NOT_FOUND,
            Some(&visit),
            "Not found",
            "None of your active tokens has this id.",
            PAGE,
        ),
        Err(TokenError::Forbidden(why)) => message(
            StatusCode::FORBIDDEN,
            Some(&visit),
            "Not allowed",
            &why,
            PAGE,
        ),
        Err(e) => unavailable(e),
    }
}
