//! `/api/v1/audit`: the audit log, read only.

// Handlers return a ready HttpResponse as their error.
#![allow(clippy::result_large_err)]

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::query;
use super::{authorize, unavailable};
use crate::http::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<i64>,
    limit: Option<usize>,
}

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
