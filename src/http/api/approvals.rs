//! `/api/v1/approvals`: one queue of PENDING enrollments and filed registrations, and the
//! officers' decisions on them.

// Handlers return a ready HttpResponse as their error.
#![allow(clippy::result_large_err)]

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{authorize, error, unavailable};
use crate::authority::ApprovalError;
use crate::http::AppState;

pub(super) async fn list_approvals(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(req, state, "GET", "/api/v1/approvals");
    let ra = &state.ra;
    let pending = match ra.pending_enrollments().await {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
    let registrations = match ra.registrations_of(None, 0).await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    // One queue: enrollments waiting on an approval profile, and filed registrations. An
    // enrollment shows the whole name the certificate will carry and who made it possible.
    let mut queue: Vec<serde_json::Value> = Vec::with_capacity(pending.len());
    for t in &pending {
        match ra.pending_view(t).await {
            Ok(v) => queue.push(json!(v)),
            Err(e) => return unavailable(e),
        }
    }
    queue.extend(
        registrations
            .iter()
            .filter(|r| r.state == crate::authority::RegistrationState::Requested)
            .map(|r| {
                let mut v = crate::http::registrations::registration_json(r);
                v["kind"] = json!("registration");
                v
            }),
    );
    HttpResponse::Ok().json(queue)
}

use crate::http::registrations::decision;

fn approval_error(e: ApprovalError) -> HttpResponse {
    match e {
        ApprovalError::NotFound => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        ApprovalError::Forbidden(_) => error(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
        ApprovalError::NotPending => error(StatusCode::CONFLICT, "not_pending", e.to_string()),
        ApprovalError::Busy => error(StatusCode::CONFLICT, "busy", e.to_string()),
        ApprovalError::Refused(_) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "refused", e.to_string())
        }
        ApprovalError::Unavailable(_) => unavailable(e),
    }
}

pub(super) async fn approve(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    decide(req, state, id, body, true).await
}

pub(super) async fn reject(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    decide(req, state, id, body, false).await
}

/// Approve or reject an enrollment (a transaction ID) or a registration (`reg_…`).
async fn decide(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
    approve: bool,
) -> HttpResponse {
    let pattern = if approve {
        "/api/v1/approvals/{id}/approve"
    } else {
        "/api/v1/approvals/{id}/reject"
    };
    let caller = guard!(req, state, "POST", pattern);
    let d = match decision(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let ra = &state.ra;
    if id.starts_with("reg_") {
        return crate::http::registrations::answer(
            ra.decide_registration(&caller, &id, approve, &d.comment)
                .await,
            StatusCode::OK,
        );
    }
    let actor = caller.actor();
    if approve {
        return match ra.approve(&id, &caller).await {
            Ok(serial) => {
                tracing::info!(by = %caller.actor, transaction = %id, comment = %d.comment, "approval");
                HttpResponse::Ok().json(json!({"id": *id, "state": "issued", "serial": serial}))
            }
            Err(e) => approval_error(e),
        };
    }
    let reason = if d.comment.trim().is_empty() {
        "rejected by an officer".to_string()
    } else {
        format!("rejected by an officer: {}", d.comment.trim())
    };
    match ra.reject(&id, &reason, &actor).await {
        Ok(()) => {
            tracing::info!(by = %caller.actor, transaction_id = %id, "rejection");
            HttpResponse::Ok().json(json!({"id": *id, "state": "rejected"}))
        }
        Err(e) => approval_error(e),
    }
}
