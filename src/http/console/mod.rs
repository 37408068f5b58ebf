//! The console at `/console`: a person's self-service (`self_service.rs`), the officer's desk
//! (`desk.rs`), administration and the audit log (`admin.rs`), a person's own API tokens
//! (`tokens.rs`), and reports with server-drawn charts (`reports.rs`, `charts.rs`).
//!
//! Server-rendered HTML from minijinja templates compiled into the binary (auto-escaped), no
//! script at all, one stylesheet served from here. Every page carries a strict
//! Content-Security-Policy (nothing inline, `frame-ancestors 'none'`), `no-store`, and no
//! referrer; every form carries the session's CSRF token; the console answers only over TLS
//! or on loopback. Each action calls the same authority functions as the REST API, so the
//! rules and the audit records are the same.

// Handlers return a ready HttpResponse as their error.
#![allow(clippy::result_large_err)]

mod admin;
mod charts;
mod desk;
mod reports;
mod self_service;
mod tokens;

use std::collections::HashMap;
use std::sync::OnceLock;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::Environment;
use serde_json::{json, Value};

use super::AppState;
use crate::authority::access::{Caller, Role};

/// The policy every console page is served with.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Register the routes.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(home))
        .route("/console/", web::get().to(home))
        .route("/console/static/console.css", web::get().to(stylesheet))
        .route("/console/sign-out", web::post().to(sign_out))
        .route("/console/me", web::get().to(self_service::me))
        .route(
            "/console/me/registrations",
            web::post().to(self_service::start),
        )
        .route(
            "/console/registrations/{id}",
            web::get().to(self_service::registration),
        )
        .route(
            "/console/registrations/{id}/request",
            web::post().to(self_service::request),
        )
        .route(
            "/console/registrations/{id}/{action}",
            web::post().to(desk::registration_action),
        )
        .route("/console/desk", web::get().to(desk::desk))
        .route(
            "/console/enrollments/{id}/{action}",
            web::post().to(desk::enrollment_action),
        )
        .route(
            "/console/certificates/{serial}/revoke",
            web::post().to(desk::revoke_certificate),
        )
        .route(
            "/console/devices/revoke",
            web::post().to(desk::revoke_device),
        )
        .route("/console/tokens", web::get().to(tokens::tokens))
        .route("/console/tokens", web::post().to(tokens::create))
        .route(
            "/console/tokens/{id}/revoke",
            web::post().to(tokens::revoke),
        )
        .route("/console/admin", web::get().to(admin::admin))
        .route("/console/admin/tokens", web::post().to(admin::create_token))
        .route(
            "/console/admin/profiles/{name}",
            web::get().to(admin::profile_values),
        )
        .route(
            "/console/admin/tokens/{id}/{action}",
            web::post().to(admin::token_action),
        )
        .route("/console/audit", web::get().to(admin::audit))
        .route("/console/audit/verify", web::post().to(admin::verify_audit))
        .route("/console/reports", web::get().to(reports::reports));
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in [
            ("base.html", include_str!("templates/base.html")),
            ("home.html", include_str!("templates/home.html")),
            ("message.html", include_str!("templates/message.html")),
            ("me.html", include_str!("templates/me.html")),
            (
                "registration.html",
                include_str!("templates/registration.html"),
            ),
            ("desk.html", include_str!("templates/desk.html")),
            ("admin.html", include_str!("templates/admin.html")),
            ("profile.html", include_str!("templates/profile.html")),
            ("token_made.html", include_str!("templates/token_made.html")),
            ("audit.html", include_str!("templates/audit.html")),
            ("reports.html", include_str!("templates/reports.html")),
            ("tokens.html", include_str!("templates/tokens.html")),
        ] {
            if let Err(e) = env.add_template(name, text) {
                // A template that does not compile is a build mistake the unit tests catch.
                tracing::error!(template = name, error = %e, "console template");
            }
        }
        env
    })
}

/// A console answer with the security headers.
fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("referrer-policy", "no-referrer"))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header((
            "permissions-policy",
            "camera=(), microphone=(), geolocation=()",
        ))
        .body(body)
}

/// Render `template` with `ctx` (plus the page title, the person and the CSRF token).
fn render(
    status: StatusCode,
    template: &str,
    title: &str,
    visit: Option<&Visit>,
    mut ctx: Value,
) -> HttpResponse {
    if let Some(o) = ctx.as_object_mut() {
        o.insert("title".into(), json!(title));
        if let Some(v) = visit {
            o.insert("me".into(), v.me());
            o.insert("csrf".into(), json!(v.csrf));
        }
    }
    let out = environment()
        .get_template(template)
        .and_then(|t| t.render(minijinja::Value::from_serialize(&ctx)));
    match out {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(template, error = %e, "console page could not be rendered");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!DOCTYPE html><html lang=\"en\"><head><title>Error · Sigil</title></head><body><main><h1>This page could not be shown</h1></main></body></html>".into(),
            )
        }
    }
}

/// The page that shows a token just made, its secret this once (`more`: what else the page
/// says, such as the token it replaces or where to go back to).
fn token_made(
    visit: &Visit,
    title: &str,
    secret: &str,
    rec: &crate::authority::TokenRecord,
    more: Value,
) -> HttpResponse {
    let mut ctx = json!({"secret": secret, "id": rec.id, "name": rec.name, "role": rec.role,
                         "awaiting_approval": rec.awaiting_approval,
                         "expires_at": rec.expires_at.map(when)});
    if let (Some(o), Value::Object(more)) = (ctx.as_object_mut(), more) {
        o.extend(more);
    }
    render(
        StatusCode::CREATED,
        "token_made.html",
        title,
        Some(visit),
        ctx,
    )
}

/// A page that says what happened and where to go next.
fn message(
    status: StatusCode,
    visit: Option<&Visit>,
    title: &str,
    text: &str,
    back: &str,
) -> HttpResponse {
    render(
        status,
        "message.html",
        title,
        visit,
        json!({"text": text, "back": back}),
    )
}

/// Where a form's answer sends the browser (POST → redirect → GET).
fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// A signed-in person's request to the console.
pub(crate) struct Visit {
    caller: Caller,
    csrf: String,
    cookie: String,
}

/// A form's fields.
pub(crate) type Form = HashMap<String, String>;

impl Visit {
    /// The person making the request, acting in the strongest of `roles` they hold.
    async fn open(
        req: &HttpRequest,
        state: &AppState,
        roles: &[Role],
    ) -> Result<Visit, HttpResponse> {
        if !transport_is_private(req) {
            return Err(message(
                StatusCode::FORBIDDEN,
                None,
                "Use HTTPS",
                "The console answers only over HTTPS (or on this machine's loopback address).",
                "/console/",
            ));
        }
        let Some(cookie) = super::auth::session_cookie(req) else {
            return Err(if req.method() == actix_web::http::Method::GET {
                see_other("/console/")
            } else {
                message(
                    StatusCode::UNAUTHORIZED,
                    None,
                    "Not signed in",
                    "Your session has ended, so nothing was done. Sign in and try again.",
                    "/console/",
                )
            });
        };
        let session = match state.ra.session(&cookie).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(message(
                    StatusCode::UNAUTHORIZED,
                    None,
                    "Not signed in",
                    "Your session has ended (signed out, idle too long, or too old), so nothing was done. Sign in again.",
                    "/console/",
                ))
            }
            Err(e) => return Err(unavailable(e)),
        };
        let mut visit = Visit {
            caller: session.caller,
            csrf: session.csrf,
            cookie,
        };
        if !roles.is_empty() {
            let Some(role) = visit
                .caller
                .roles
                .iter()
                .copied()
                .filter(|r| roles.contains(r))
                .max_by_key(|r| r.rank())
            else {
                tracing::warn!(actor = %visit.caller.actor, path = %req.path(), "console page forbidden");
                let wanted: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                return Err(message(
                    StatusCode::FORBIDDEN,
                    Some(&visit),
                    "Not for your role",
                    &format!(
                        "This page is for: {}. Your roles: {}.",
                        wanted.join(", "),
                        visit.role_names().join(", ")
                    ),
                    "/console/",
                ));
            };
            visit.caller.role = role;
        }
        Ok(visit)
    }

    /// As [`Visit::open`] for a form post: the body read, and its CSRF token checked.
    async fn form(
        req: &HttpRequest,
        state: &AppState,
        roles: &[Role],
        body: &[u8],
    ) -> Result<(Visit, Form), HttpResponse> {
        let visit = Visit::open(req, state, roles).await?;
        let fields: Vec<(String, String)> = match serde_urlencoded::from_bytes(body) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(actor = %visit.caller.actor, error = %e, "console form does not read");
                return Err(message(
                    StatusCode::BAD_REQUEST,
                    Some(&visit),
                    "The form did not arrive whole",
                    "Nothing was done. Go back, reload the page and try again.",
                    "/console/",
                ));
            }
        };
        if fields
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            tracing::warn!(actor = %visit.caller.actor, "refused: a NUL character in a console form");
            return Err(message(
                StatusCode::BAD_REQUEST,
                Some(&visit),
                "The form holds a character Sigil does not accept",
                "Nothing was done: a field held a NUL character (%00). Go back, correct it and try again.",
                "/console/",
            ));
        }
        let mut form = Form::new();
        for (k, v) in fields {
            if form.insert(k.clone(), v).is_some() {
                return Err(message(
                    StatusCode::BAD_REQUEST,
                    Some(&visit),
                    "The form was changed",
                    &format!("The field `{k}` came twice, so nothing was done."),
                    "/console/",
                ));
            }
        }
        let given = form.get("csrf").map(String::as_str).unwrap_or("");
        if visit.csrf.is_empty()
            || given.len() != visit.csrf.len()
            || !openssl::memcmp::eq(given.as_bytes(), visit.csrf.as_bytes())
        {
            tracing::warn!(actor = %visit.caller.actor, path = %req.path(), "console form with a missing or wrong CSRF token");
            return Err(message(
                StatusCode::FORBIDDEN,
                Some(&visit),
                "This form is not from your session",
                "Nothing was done: the form did not carry this session's security token (it may be out of date, or it did not come from Sigil's console). Reload the page and try again.",
                "/console/",
            ));
        }
        Ok((visit, form))
    }

    fn role_names(&self) -> Vec<&'static str> {
        self.caller.roles.iter().map(|r| r.as_str()).collect()
    }

    fn me(&self) -> Value {
        json!({
            "name": self.caller.person.name,
            "email": self.caller.person.email,
            "roles": self.role_names(),
        })
    }

    /// The caller acting as `role` (which they hold).
    fn acting(&self, role: Role) -> Caller {
        let mut c = self.caller.clone();
        c.role = role;
        c
    }
}

/// Over TLS; through a trusted proxy that says the client reached it over TLS
/// (`X-Forwarded-Proto: https`); or from this machine, when that is not a trusted proxy (a
/// proxy on this host forwards other machines' requests).
fn transport_is_private(req: &HttpRequest) -> bool {
    if req.app_config().secure() {
        return true;
    }
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return false;
    };
    let state = req.app_data::<web::Data<AppState>>();
    if let Some(proxies) = state.map(|s| &s.proxies).filter(|p| p.trusts(peer)) {
        return proxies.forwarded_https_from_header(
            peer,
            req.headers()
                .get_all("x-forwarded-proto")
                .map(|v| v.as_bytes()),
        );
    }
    peer.is_loopback()
}

fn unavailable(e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "console: store or token unavailable");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "Temporarily unavailable",
        "Sigil cannot reach its database or token just now; nothing was changed. Try again in a minute.",
        "/console/",
    )
}

/// A form field, trimmed; empty when missing.
fn field<'a>(form: &'a Form, name: &str) -> &'a str {
    form.get(name).map(|s| s.trim()).unwrap_or("")
}

/// A form's `expires_in_days`: none when left empty; `Err` when not a whole number of days.
fn expiry_days(form: &Form) -> Result<Option<u32>, std::num::ParseIntError> {
    match field(form, "expires_in_days") {
        "" => Ok(None),
        days => days.parse::<u32>().map(Some),
    }
}

async fn home(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !transport_is_private(&req) {
        return message(
            StatusCode::FORBIDDEN,
            None,
            "Use HTTPS",
            "The console answers only over HTTPS (or on this machine's loopback address).",
            "/console/",
        );
    }
    let visit = match super::auth::session_cookie(&req) {
        Some(_) => Visit::open(&req, &state, &[]).await.ok(),
        None => None,
    };
    render(
        StatusCode::OK,
        "home.html",
        if visit.is_some() {
            "Sigil console"
        } else {
            "Sign in to Sigil"
        },
        visit.as_ref(),
        json!({
            "oidc": state.oidc.is_some(),
            "piv": state.mtls.is_some(),
        }),
    )
}

async fn sign_out(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let (visit, _) = match Visit::form(&req, &state, &[], &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = state
        .ra
        .sign_out(&visit.cookie, &visit.caller.actor())
        .await
    {
        return unavailable(e);
    }
    let mut gone = actix_web::cookie::Cookie::build(super::auth::SESSION_COOKIE, "")
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(actix_web::cookie::SameSite::Strict)
        .finish();
    gone.make_removal();
    let mut resp = message(
        StatusCode::OK,
        None,
        "Signed out",
        "You are signed out of Sigil.",
        "/console/",
    );
    let _ = resp.add_cookie(&gone);
    resp
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(include_str!("static/console.css"))
}

/// A Unix time as the console shows it.
fn when(t: i64) -> String {
    crate::clock::rfc3339(t)
        .replace('T', " ")
        .replace('Z', " UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_escapes() {
        let env = environment();
        // Every file in templates/, so a new template left out of the list (or one that does
        // not compile) fails here rather than as a 500 on its page.
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/console/templates");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(env.get_template(&name).is_ok(), "{name}");
            seen += 1;
        }
        assert!(seen >= 11, "{seen}");
        let out = env
            .get_template("message.html")
            .unwrap()
            .render(minijinja::context! {
                title => "<script>alert(1)</script>", text => "a & b", back => "/console/"
            })
            .unwrap();
        assert!(out.contains("&lt;script&gt;"), "{out}");
        assert!(!out.contains("<script>"), "{out}");
    }
}
