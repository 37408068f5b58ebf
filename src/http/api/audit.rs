//! `/api/v1/audit`: the audit log, read only.

// Handlers return a ready HttpResponse as their error.
#![allow(clippy::result_large_err)]

use actix_web::{web, HttpRequest, HttpResponse};

use super::query;
use super::{authorize, unavailable};
use crate::http::AppState;

use super::bodies::{ApiError, AuditQuery};
use crate::authority::AuditRecord;

/// The audit log
///
/// Oldest first, each record chained to the one before by its hash. Read-only: nothing in the
/// API edits or deletes it.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "The records", body = Vec<AuditRecord>),
              (status = 400, description = "A bad filter", body = ApiError)))]
pub(super) async fn audit(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(req, state, "GET", "/api/v1/audit");
    let q: AuditQuery = match query(&req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let ra = &state.ra;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    match ra.audit_records(q.after.unwrap_or(0), limit).await {
        Ok(records) => HttpResponse::Ok().json(records),
        Err(e) => unavailable(e),
    }
}
