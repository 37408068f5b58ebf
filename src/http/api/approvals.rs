//! `/api/v1/approvals`: one queue of PENDING enrollments and filed registrations, and the
//! officers' decisions on them.

// Handlers return a ready HttpResponse as their error.
#![allow(clippy::result_large_err)]

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::bodies::{
    ApiError, Decided, DecisionBody, EnrollmentDecided, QueueItem, RegistrationView,
};
use super::{authorize, error, unavailable};
use crate::authority::ApprovalError;
use crate::http::AppState;

/// The approval queue
///
/// Enrollments waiting on approval profiles (`kind: enrollment`), with the whole name the
/// certificate will carry and who minted the challenge, and filed registrations
/// (`kind: registration`).
#[utoipa::path(get, path = "/approvals", tag = "approvals",
    responses((status = 200, description = "The queue", body = Vec<QueueItem>)))]
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
    let mut queue: Vec<QueueItem> = Vec::with_capacity(pending.len());
    for t in &pending {
        match ra.pending_view(t).await {
            Ok(v) => queue.push(QueueItem::Enrollment(v)),
            Err(e) => return unavailable(e),
        }
    }
    queue.extend(
        registrations
            .iter()
            .filter(|r| r.state == crate::authority::RegistrationState::Requested)
            .map(|r| {
                QueueItem::Registration(RegistrationView {
                    kind: Some("registration"),
                    ..RegistrationView::from(r)
                })
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

/// Approve
///
/// An enrollment: the certificate is issued and the device gets it at its next CertPoll. A
/// registration (`reg_…`): the MDM may collect its SCEP payload. Never by the person who
/// minted the challenge or filed the request.
#[utoipa::path(post, path = "/approvals/{id}/approve", tag = "approvals",
    params(("id" = String, Path, description = "The enrollment's or the registration's id")),
    request_body(content = Option<DecisionBody>),
    responses((status = 200, description = "Issued (an enrollment), or the registration approved", body = Decided),
              (status = 400, description = "A body that is not a decision", body = ApiError),
              (status = 403, description = "The two-person rule refuses this officer", body = ApiError),
              (status = 404, description = "No such enrollment or registration", body = ApiError),
              (status = 409, description = "Not pending, or decided meanwhile", body = ApiError),
              (status = 422, description = "The request no longer passes the profile", body = ApiError)))]
pub(super) async fn approve(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    decide(req, state, id, body, true).await
}

/// Reject
///
/// An enrollment: the device gets FAILURE at its next CertPoll. A registration ends rejected
/// with the comment.
#[utoipa::path(post, path = "/approvals/{id}/reject", tag = "approvals",
    params(("id" = String, Path, description = "The enrollment's or the registration's id")),
    request_body(content = Option<DecisionBody>),
    responses((status = 200, description = "Rejected (an enrollment), or the registration rejected", body = Decided),
              (status = 403, description = "Not this officer's to decide", body = ApiError),
              (status = 404, description = "No such enrollment or registration", body = ApiError),
              (status = 400, description = "A body that is not a decision", body = ApiError),
              (status = 409, description = "Not pending", body = ApiError),
              (status = 422, description = "Not one enrollment, or the registration's credential is no longer configured", body = ApiError)))]
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
        return match ra
            .decide_registration(&caller, &id, approve, &d.comment)
            .await
        {
            Ok(r) => {
                HttpResponse::Ok().json(Decided::Registration(Box::new(RegistrationView::from(&r))))
            }
            Err(e) => crate::http::registrations::registration_error(e),
        };
    }
    if approve {
        return match ra.approve(&id, &caller).await {
            Ok(serial) => {
                tracing::info!(by = %caller.actor, transaction = %id, comment = %d.comment, "approval");
                HttpResponse::Ok().json(Decided::Enrollment(EnrollmentDecided {
                    id: id.into_inner(),
                    state: "issued",
                    serial: Some(serial),
                }))
            }
            Err(e) => approval_error(e),
        };
    }
    let reason = if d.comment.trim().is_empty() {
        "rejected by an officer".to_string()
    } else {
        format!("rejected by an officer: {}", d.comment.trim())
    };
    match ra.reject(&id, &reason, &caller).await {
        Ok(()) => {
            tracing::info!(by = %caller.actor, transaction_id = %id, "rejection");
            HttpResponse::Ok().json(Decided::Enrollment(EnrollmentDecided {
                id: id.into_inner(),
                state: "rejected",
                serial: None,
            }))
        }
        Err(e) => approval_error(e),
    }
}
