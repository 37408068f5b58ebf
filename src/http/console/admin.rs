//! Administration (integration tokens, the configuration read-only, the CA) and the audit log
//! with its verification.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{expiry_days, field, message, render, see_other, token_made, unavailable, when, Visit};
use crate::authority::access::Role;
use crate::authority::audit_runs::AuditRun;
use crate::authority::{AuditQuery, TokenError};
use crate::http::api::tokens::{make_token, NewToken};
use crate::http::AppState;

/// `/console/admin`.
pub(super) async fn admin(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let visit = match Visit::open(&req, &state, &[Role::Admin]).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ra = &state.ra;
    let tokens = match ra.tokens().await {
        Ok(t) => t,
        Err(e) => return unavailable(e),
    };
    let mut rows = Vec::new();
    for t in tokens.iter().filter(|t| t.revoked_at.is_none()) {
        let owner = match &t.owner {
            Some(o) => match ra.person_of(o).await {
                Ok(p) => p.name,
                Err(e) => return unavailable(e),
            },
            None => String::new(),
        };
        rows.push(json!({
            "id": t.id, "name": t.name, "role": t.role,
            "owner": owner,
            "profiles": t.scope.profiles, "directories": t.scope.directories,
            "awaiting_approval": t.awaiting_approval,
            "created_at": when(t.created_at),
            "last_used_at": t.last_used_at.map(when),
            "expires_at": t.expires_at.map(when),
        }));
    }
    let ca = match ra.ca_overview().await {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let summary = |c: &crate::authority::CertSummary| json!({"subject": c.subject, "sha256": c.sha256, "not_after": when(c.not_after)});
    let ca = json!({
        "chain": ca.chain.iter().map(summary).collect::<Vec<_>>(),
        "responder": summary(&ca.responder),
        "crl_number": ca.crl_number,
        "crl_this_update": ca.crl_this_update.map(when),
        "crl_age_minutes": ca.crl_this_update.map(|t| (crate::clock::now() - t).max(0) / 60),
        "crl_next_update": ca.crl_next_update.map(when),
        "next_ca": ca.next_ca.iter().map(summary).collect::<Vec<_>>(),
        "retired": ca.retired,
    });
    let (profiles, directories) = ra.scope_names();
    render(
        StatusCode::OK,
        "admin.html",
        "Administration",
        Some(&visit),
        json!({
            "tokens": rows,
            "ca": ca,
            "profiles": ra.profile_list(),
            "credentials": ra.credential_list(),
            "scope_profiles": profiles,
            "scope_directories": directories,
        }),
    )
}

/// `/console/admin/profiles/{name}`: what an Intune or Workspace ONE SCEP profile for Android
/// and Windows needs, as values to type in (the same as `GET
/// /api/v1/profiles/{name}/scep-values`).
pub(super) async fn profile_values(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> HttpResponse {
    let visit = match Visit::open(&req, &state, &[Role::Admin, Role::Auditor]).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let base = state
        .ra
        .public_base(&crate::http::registrations::request_base(&req, &state));
    let url = format!("{base}/scep/{name}");
    let values = match crate::profiles::scep_values(&state.ra, &name, &url) {
        Ok(v) => v,
        Err(crate::authority::RequestError::UnknownProfile(_)) => {
            return message(
                StatusCode::NOT_FOUND,
                Some(&visit),
                "No such profile",
                &format!("There is no certificate profile named `{name}`; the administration page lists them."),
                "/console/admin",
            )
        }
        Err(e) => return unavailable(e),
    };
    render(
        StatusCode::OK,
        "profile.html",
        &format!("Enrollment values for profile {name}"),
        Some(&visit),
        json!({"v": values}),
    )
}

/// Make an integration (or another) token; the secret is shown once.
pub(super) async fn create_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let (visit, form) = match Visit::form(&req, &state, &[Role::Admin], &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let list = |name: &str| -> Vec<String> {
        field(&form, name)
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let Ok(expires_in_days) = expiry_days(&form) else {
        return message(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&visit),
            "Not accepted",
            "Expiry: a whole number of days.",
            "/console/admin",
        );
    };
    let asked = NewToken {
        role: field(&form, "role").to_string(),
        name: field(&form, "name").to_string(),
        expires_in_days,
        profiles: list("profiles"),
        directories: list("directories"),
    };
    let caller = visit.acting(Role::Admin);
    match make_token(&state, &caller, asked).await {
        Ok((secret, rec)) => token_made(&visit, "Token made", &secret, &rec, json!({})),
        Err((status, _, why)) => message(status, Some(&visit), "Not made", &why, "/console/admin"),
    }
}

/// Revoke a token, or approve one another admin asked for.
pub(super) async fn token_action(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (id, action) = path.into_inner();
    let (visit, _) = match Visit::form(&req, &state, &[Role::Admin], &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let caller = visit.acting(Role::Admin);
    match action.as_str() {
        "revoke" => match state.ra.revoke_token(&id, &caller.actor()).await {
            Ok(true) => see_other("/console/admin"),
            Ok(false) => message(
                StatusCode::NOT_FOUND,
                Some(&visit),
                "Not found",
                "No active token has this id.",
                "/console/admin",
            ),
            Err(e) => unavailable(e),
        },
        // A replacement with the same role, name, scope and lifetime, shown once; the old
        // token works until it is revoked, so the MDM can move over without a gap.
        "rotate" => {
            let old = match state.ra.tokens().await {
                Ok(t) => t.into_iter().find(|t| t.id == id && t.revoked_at.is_none()),
                Err(e) => return unavailable(e),
            };
            let Some(old) = old else {
                return message(
                    StatusCode::NOT_FOUND,
                    Some(&visit),
                    "Not found",
                    "No active token has this id.",
                    "/console/admin",
                );
            };
            let asked = NewToken {
                role: old.role.clone(),
                name: old.name.clone(),
                // A token that expired after so many days is replaced by one that does too.
                expires_in_days: old.expires_at.map(|end| {
                    u32::try_from(((end - old.created_at).max(0) + 86_399) / 86_400)
                        .map(|d| d.max(1))
                        .unwrap_or(u32::MAX)
                }),
                profiles: old.scope.profiles.clone(),
                directories: old.scope.directories.clone(),
            };
            match make_token(&state, &caller, asked).await {
                Ok((secret, rec)) => token_made(
                    &visit,
                    "Replacement token made",
                    &secret,
                    &rec,
                    json!({"replaces": old.id}),
                ),
                Err((status, _, why)) => {
                    message(status, Some(&visit), "Not made", &why, "/console/admin")
                }
            }
        }
        "approve" => match state.ra.approve_token(&caller, &id).await {
            Ok(()) => see_other("/console/admin"),
            Err(TokenError::Forbidden(why)) => message(
                StatusCode::FORBIDDEN,
                Some(&visit),
                "Not allowed",
                &why,
                "/console/admin",
            ),
            Err(TokenError::NotFound) => message(
                StatusCode::NOT_FOUND,
                Some(&visit),
                "Not found",
                "No token with this id waits for approval.",
                "/console/admin",
            ),
            Err(TokenError::Store(e)) => unavailable(e),
        },
        _ => message(
            StatusCode::NOT_FOUND,
            Some(&visit),
            "Not found",
            "There is no such action.",
            "/console/admin",
        ),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AuditFilter {
    action: String,
    actor: String,
    subject: String,
}

/// A verification run younger than this is shown rather than run again; "Verify now" runs
/// one at once.
const VERIFIED_WITHIN: std::time::Duration = std::time::Duration::from_secs(600);

/// `/console/audit/verify`: a verification run now, shown at once (by the node that ran it:
/// behind a load balancer, a redirect could land on a node with an older run of its own).
pub(super) async fn verify_audit(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let (visit, _) = match Visit::form(&req, &state, &[Role::Admin, Role::Auditor], &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let run = state.ra.audit_verification(std::time::Duration::ZERO).await;
    tracing::info!(actor = %visit.caller.actor, records = run.check.records,
        problem = ?run.check.problem, took_ms = millis(&run),
        "audit log verified from the console");
    // A review of the log by a person is itself on the record (who, when, what it found).
    let details = json!({
        "records": run.check.records,
        "head_seq": run.check.head_seq,
        "signed_head_seq": run.check.signed_head_seq,
        "problem": run.check.problem,
    });
    if let Err(e) = state
        .ra
        .audit_event(&visit.caller.actor, "audit_verified", "audit_log", &details)
        .await
    {
        tracing::warn!(error = %e, "the verification run could not be recorded");
    }
    audit_page(&state, visit, AuditFilter::default(), run).await
}

/// `/console/audit`: the newest records, filtered, and the chain checked (by the latest
/// verification run, at most `VERIFIED_WITHIN` old).
pub(super) async fn audit(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let visit = match Visit::open(&req, &state, &[Role::Admin, Role::Auditor]).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let f: AuditFilter = web::Query::<AuditFilter>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let run = state.ra.audit_verification(VERIFIED_WITHIN).await;
    audit_page(&state, visit, f, run).await
}

fn millis(run: &AuditRun) -> u64 {
    u64::try_from(run.took.as_millis()).unwrap_or(u64::MAX)
}

async fn audit_page(state: &AppState, visit: Visit, f: AuditFilter, run: AuditRun) -> HttpResponse {
    let ra = &state.ra;
    // The newest 200 that match, read from the end of the log by the store.
    // A search text is at most 256 characters (SQLite refuses LIKE patterns past 50,000
    // bytes): what is longer is cut, not refused.
    let cut = |t: &str| t.chars().take(256).collect::<String>();
    let query = AuditQuery {
        action: cut(&f.action),
        actor: cut(&f.actor),
        subject: cut(&f.subject),
    };
    let records = match ra.audit_newest(&query, 200).await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    let shown: Vec<_> = records
        .iter()
        .map(|r| {
            json!({"seq": r.seq, "at": when(r.at), "actor": r.actor, "action": r.action,
                   "subject": r.subject, "details": r.details})
        })
        .collect();
    render(
        StatusCode::OK,
        "audit.html",
        "Audit log",
        Some(&visit),
        json!({
            "check": &run.check,
            "checked_at": when(run.at),
            "checked_in_ms": millis(&run),
            "fresh_minutes": VERIFIED_WITHIN.as_secs() / 60,
            "records": shown,
            "filter": {"action": f.action, "actor": f.actor, "subject": f.subject},
        }),
    )
}
