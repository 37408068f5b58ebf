//! Sign-in and sessions in the browser: the OpenID Connect redirect and callback, PIV/CAC
//! sign-in from the TLS client certificate, sign-out, and who is signed in. A session is a
//! random value in an HttpOnly, Secure, SameSite=Strict cookie (the server keeps its hash);
//! every state-changing request made with it carries the session's CSRF token
//! (`X-CSRF-Token`, or a `csrf` form field).
//!
//! The OIDC round trip keeps its PKCE verifier and nonce server-side under the `state`, and
//! binds it to the browser that started it with a short-lived SameSite=Lax cookie (the
//! provider's redirect back is a cross-site navigation, which Strict cookies do not follow).
//! The callback answers with a page that moves on to the console itself, so the first
//! request with the new session is a same-site one.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::authority::access::{Caller, Person, Role};
use crate::authority::SignIn;
use crate::identity::{as_given, no_role, roles_for, Assertion, RoleMap, SignInError};

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "__Host-sigil_session";
/// The cookie binding an OIDC sign-in to the browser that started it.
const LOGIN_COOKIE: &str = "__Host-sigil_login";
/// Sign-ins one source (an IPv4 address, an IPv6 /64) may start in a minute.
const SIGN_IN_STARTS_PER_MINUTE: u32 = 120;
/// How long a sign-in may take at the identity provider.
const LOGIN_TTL_SECS: i64 = 600;

/// Register the routes.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/oidc/login", web::get().to(oidc_login))
        .route("/auth/oidc/callback", web::get().to(oidc_callback))
        .route("/auth/piv", web::get().to(piv))
        .route("/auth/logout", web::post().to(logout))
        .route("/auth/session", web::get().to(whoami));
}

/// The session cookie a request carries.
pub(crate) fn session_cookie(req: &HttpRequest) -> Option<String> {
    req.cookie(SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

/// The caller a session cookie makes; a request that changes anything must carry the
/// session's CSRF token.
pub(crate) async fn session_caller(
    req: &HttpRequest,
    state: &AppState,
    cookie: &str,
) -> Result<Caller, HttpResponse> {
    let session = match state.ra.session(cookie).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(super::api::error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "your session has ended (signed out, idle too long, or too old): sign in again",
            ))
        }
        Err(e) => return Err(super::api::unavailable(e)),
    };
    let safe = matches!(req.method().as_str(), "GET" | "HEAD");
    if !safe {
        let given = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if session.csrf.is_empty() || !ct_eq(given.as_bytes(), session.csrf.as_bytes()) {
            tracing::warn!(actor = %session.caller.actor, path = %req.path(), "CSRF token missing or wrong");
            return Err(super::api::error(
                StatusCode::FORBIDDEN,
                "csrf",
                "this request needs the session's CSRF token (X-CSRF-Token); reload the page",
            ));
        }
    }
    Ok(session.caller)
}

/// A small page (sign-in results, refusals): server-rendered, no script.
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    body: &str,
    refresh_to: Option<&str>,
) -> HttpResponse {
    let refresh = refresh_to
        .map(|u| {
            format!(
                "<meta http-equiv=\"refresh\" content=\"0;url={}\">",
                escape(u)
            )
        })
        .unwrap_or_default();
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("referrer-policy", "no-referrer"))
        .body(format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · Sigil</title>{refresh}</head>\
             <body><main><h1>{t}</h1>{body}</main></body></html>\n",
            t = escape(title)
        ))
}

/// HTML text escaping.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a person with a card is told when the check of the card cannot be made (most often
/// its revocation status cannot be learned).
const PIV_UNKNOWN: &str = "Your card certificate cannot be checked right now (most often its \
revocation status cannot be learned), so sign-in is refused: Sigil fails closed. Try again in \
a minute; if it goes on, tell the administrator (the cause is in Sigil's audit log, action \
sign_in_refused).";

fn refusal_page(e: &SignInError, again: &str) -> HttpResponse {
    let status = match e {
        SignInError::Refused(_) => StatusCode::UNAUTHORIZED,
        SignInError::NoRole(_) => StatusCode::FORBIDDEN,
        SignInError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    page(
        status,
        "Sign-in refused",
        &format!(
            "<p class=\"reason\">{}</p><p><a href=\"{}\">Try again</a></p>",
            escape(&e.to_string()),
            escape(again)
        ),
        None,
    )
}

/// An error code of an authorization response as OAuth 2.0 (RFC 6749 §4.1.2.1) and OpenID
/// Connect Core (§3.1.2.6) define them; anything else is not repeated to the visitor.
fn oauth_error_code(given: &str) -> Option<&'static str> {
    const CODES: &[&str] = &[
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "interaction_required",
        "login_required",
        "account_selection_required",
        "consent_required",
        "invalid_request_uri",
        "invalid_request_object",
        "request_not_supported",
        "request_uri_not_supported",
        "registration_not_supported",
    ];
    CODES.iter().copied().find(|c| *c == given)
}

/// Where to go after signing in: a path on this server, never elsewhere.
fn next_path(given: Option<&str>) -> String {
    match given {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            p.into()
        }
        _ => "/console/".into(),
    }
}

fn random_hex(n: usize) -> Option<String> {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b).ok()?;
    Some(hex::encode(b))
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn oidc_login(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(oidc) = state.oidc.clone() else {
        return page(
            StatusCode::NOT_FOUND,
            "No identity provider",
            "<p>This Sigil has no identity provider configured ([identity.oidc]).</p>",
            None,
        );
    };
    // Each start stores its state (PKCE verifier, nonce) until the provider sends the person
    // back: a source gets a generous number a minute (a whole office behind one address signs
    // in at nine), not an unbounded number of rows.
    let ip = super::api::source(&req);
    if !state.sign_in_starts.within(ip, SIGN_IN_STARTS_PER_MINUTE) {
        tracing::warn!(source = %ip, "too many sign-ins started from this address");
        let mut r = page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ins",
            "<p>Too many sign-ins were started from this address in the last minute. Wait a minute and try again.</p>",
            None,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        return r;
    }
    let next = web::Query::<LoginQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.next.clone());
    let start = match oidc.begin().await {
        Ok(s) => s,
        Err(e) => return refusal_page(&e, "/auth/oidc/login"),
    };
    let Some(binding) = random_hex(16) else {
        return super::api::unavailable("random");
    };
    let data = json!({
        "verifier": start.verifier,
        "nonce": start.nonce,
        "binding": binding,
        "next": next_path(next.as_deref()),
    });
    if let Err(e) = state
        .ra
        .begin_login(&start.state, &data, LOGIN_TTL_SECS)
        .await
    {
        return super::api::unavailable(e);
    }
    // `__Host-` (Path=/, no Domain): a sibling subdomain cannot plant its own binding and
    // sign the visitor in as someone else.
    let cookie = Cookie::build(LOGIN_COOKIE, binding)
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(LOGIN_TTL_SECS))
        .finish();
    HttpResponse::Found()
        .insert_header((header::LOCATION, start.url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(cookie)
        .finish()
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn oidc_callback(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let again = "/auth/oidc/login";
    let ip = super::api::source(&req);
    let Some(oidc) = state.oidc.clone() else {
        return page(StatusCode::NOT_FOUND, "No identity provider", "", None);
    };
    let Ok(q) = web::Query::<Callback>::from_query(req.query_string()) else {
        return refusal_page(
            &SignInError::Refused("the sign-in answer does not read".into()),
            again,
        );
    };
    if let Some(err) = &q.error {
        // Anyone can send a browser here with any text in the query: the page names the
        // error only by a code the standards define, and the provider's own words go to the
        // record, not to the page (where they could pose as this server's instructions).
        // The record keeps what the link said, shortened and without invisible characters,
        // and says it is unverified: this answer comes before the sign-in's state is checked.
        let known = oauth_error_code(err);
        let code = known.unwrap_or("an error code the standards do not define");
        let said = match (known, q.error_description.as_deref()) {
            (Some(_), None) => String::new(),
            (known, d) => format!(
                " (as given in the link, unverified: {}{})",
                if known.is_some() {
                    String::new()
                } else {
                    format!("error `{}` ", as_given(err, 64))
                },
                d.map(|d| as_given(d, 200)).unwrap_or_default()
            ),
        };
        let shown = format!("the identity provider ended the sign-in: {code}");
        refused(&state, ip, "oidc", oidc.issuer(), &format!("{shown}{said}")).await;
        return refusal_page(&SignInError::Refused(shown), again);
    }
    let (Some(code), Some(st)) = (q.code.as_deref(), q.state.as_deref()) else {
        return refusal_page(
            &SignInError::Refused("the sign-in answer has no code or state".into()),
            again,
        );
    };
    let data = match state.ra.take_login(st).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            let why = "this sign-in link was already used or has expired (a replayed or stale answer): sign in again";
            refused(&state, ip, "oidc", oidc.issuer(), why).await;
            return refusal_page(&SignInError::Refused(why.into()), again);
        }
        Err(e) => return super::api::unavailable(e),
    };
    let binding = req
        .cookie(LOGIN_COOKIE)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    let want = data["binding"].as_str().unwrap_or_default();
    if want.is_empty() || !ct_eq(binding.as_bytes(), want.as_bytes()) {
        let why = "this sign-in was started in another browser: sign in again here";
        refused(&state, ip, "oidc", oidc.issuer(), why).await;
        return refusal_page(&SignInError::Refused(why.into()), again);
    }
    let assertion = match oidc
        .finish(
            code,
            q.iss.as_deref(),
            data["verifier"].as_str().unwrap_or_default(),
            data["nonce"].as_str().unwrap_or_default(),
        )
        .await
    {
        Ok(a) => a,
        Err(e) => {
            refused(&state, ip, "oidc", oidc.issuer(), &e.to_string()).await;
            return refusal_page(&e, again);
        }
    };
    let next = data["next"].as_str().unwrap_or("/console/").to_string();
    let mut resp = open_session(&state, ip, assertion, oidc.roles(), "oidc", &next, again).await;
    // The binding cookie has done its job.
    let mut gone = Cookie::build(LOGIN_COOKIE, "")
        .path("/")
        .secure(true)
        .http_only(true)
        .finish();
    gone.make_removal();
    let _ = resp.add_cookie(&gone);
    resp
}

/// Map the assertion to roles and open a session; the answer sets the cookie and moves on
/// to `next`.
async fn open_session(
    state: &AppState,
    ip: std::net::IpAddr,
    a: Assertion,
    map: &RoleMap,
    method: &'static str,
    next: &str,
    again: &str,
) -> HttpResponse {
    let roles: Vec<Role> = roles_for(map, &a.memberships)
        .iter()
        .filter_map(|r| Role::parse(r))
        .collect();
    if roles.is_empty() {
        let e = no_role(&a, map, method == "piv");
        refused(state, ip, method, &a.id, &e.to_string()).await;
        // The provider says in full that this person holds no role now: their sessions
        // end, and the tokens they made go too. A provider that left the groups out (Entra
        // past 200 groups) said nothing, and nothing is taken.
        if a.stated {
            let person = Person {
                id: a.id.clone(),
                email: a.email.clone(),
                name: a.name.clone(),
            };
            if let Err(err) = state.ra.note_no_role(&person).await {
                tracing::warn!(error = %err, actor = %a.id, "could not withdraw the roles and tokens of a person who holds none now");
            }
        }
        return refusal_page(&e, again);
    }
    let who = a.email.clone().unwrap_or_else(|| a.name.clone());
    let signed = state
        .ra
        .sign_in(SignIn {
            person: Person {
                id: a.id,
                email: a.email,
                name: a.name,
            },
            roles,
            method,
            stated: a.stated,
        })
        .await;
    let (cookie, session) = match signed {
        Ok(s) => s,
        Err(e) => return super::api::unavailable(e),
    };
    tracing::info!(actor = %session.caller.actor, method, "signed in");
    let c = Cookie::build(SESSION_COOKIE, cookie)
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .finish();
    let mut resp = page(
        StatusCode::OK,
        "Signed in",
        &format!(
            "<p>Signed in as {} ({}).</p><p><a href=\"{}\">Continue</a></p>",
            escape(&who),
            escape(
                &session
                    .caller
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            escape(next)
        ),
        Some(next),
    );
    let _ = resp.add_cookie(&c);
    resp
}

async fn piv(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let again = "/auth/piv";
    let ip = super::api::source(&req);
    let Some(mtls) = state.mtls.clone() else {
        return page(
            StatusCode::NOT_FOUND,
            "No card sign-in",
            "<p>This Sigil has no client-certificate sign-in configured ([identity.mtls]).</p>",
            None,
        );
    };
    let Some(peer) = req.conn_data::<super::PeerCertificate>().cloned() else {
        return refusal_page(
            &SignInError::Refused(
                "no client certificate was presented: insert your PIV card and choose its authentication certificate (this needs HTTPS to this server)".into(),
            ),
            again,
        );
    };
    let next = web::Query::<LoginQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.next.clone());
    match mtls.check(&peer.der, &peer.chain).await {
        Ok(a) => {
            open_session(
                &state,
                ip,
                a,
                mtls.roles(),
                "piv",
                &next_path(next.as_deref()),
                again,
            )
            .await
        }
        Err(e) => {
            // The certificate may be anyone's self-signed one: its name is only a claim.
            let claimed = format!("unverified:{}", as_given(&peer.common_name, 64));
            refused(&state, ip, "piv", &claimed, &e.to_string()).await;
            // Why the status could not be learned (the responder's or the CRL's address, the
            // error underneath) is for the operator: it is in the audit record just written.
            let e = match e {
                SignInError::Unavailable(r) => SignInError::Unavailable(r.with_text(PIV_UNKNOWN)),
                e => e,
            };
            refusal_page(&e, again)
        }
    }
}

async fn logout(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(cookie) = session_cookie(&req) else {
        return page(
            StatusCode::OK,
            "Signed out",
            "<p>You are not signed in.</p>",
            None,
        );
    };
    let caller = match session_caller(&req, &state, &cookie).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    if let Err(e) = state.ra.sign_out(&cookie, &caller.actor()).await {
        return super::api::unavailable(e);
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "")
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    gone.make_removal();
    let mut resp = page(
        StatusCode::OK,
        "Signed out",
        "<p>You are signed out.</p><p><a href=\"/console/\">Sign in again</a></p>",
        None,
    );
    let _ = resp.add_cookie(&gone);
    resp
}

/// `/auth/session`: who is signed in.
#[derive(serde::Serialize)]
struct SessionView {
    /// How the person appears in the audit log (`oidc:…`, `piv:…`).
    actor: String,
    /// Their email, when known.
    email: Option<String>,
    /// Their name.
    name: String,
    /// Their roles.
    roles: Vec<&'static str>,
    /// The CSRF token state-changing requests send back (`X-CSRF-Token`).
    csrf: String,
    /// When the session ends at the latest (RFC 3339).
    expires_at: String,
}

async fn whoami(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(cookie) = session_cookie(&req) else {
        return super::api::error(StatusCode::UNAUTHORIZED, "unauthenticated", "not signed in");
    };
    match state.ra.session(&cookie).await {
        Ok(Some(s)) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(SessionView {
                roles: s.caller.roles.iter().map(|r| r.as_str()).collect(),
                expires_at: crate::clock::rfc3339(s.expires_at),
                actor: s.caller.actor,
                email: s.caller.person.email,
                name: s.caller.person.name,
                csrf: s.csrf,
            }),
        Ok(None) => super::api::error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "your session has ended: sign in again",
        ),
        Err(e) => super::api::unavailable(e),
    }
}

/// Record a refused sign-in: in the audit chain while its source stays within the failure
/// budget of the window (20 a minute), in the log after that, so an anonymous client cannot
/// grow the audit chain without bound.
async fn refused(state: &AppState, ip: std::net::IpAddr, method: &str, who: &str, reason: &str) {
    if state.sign_in_refusals.within_budget(ip) {
        state.ra.refuse_sign_in(method, who, reason).await;
    } else {
        tracing::warn!(%ip, method, who, reason, "sign-in refused again from this source (counted, not audited)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(next_path(Some("/console/queue")), "/console/queue");
        assert_eq!(next_path(Some("//evil.example/")), "/console/");
        assert_eq!(next_path(Some("https://evil.example/")), "/console/");
        assert_eq!(next_path(Some("/\\evil")), "/console/");
        // Browsers drop tabs and newlines from URLs: `/<TAB>/evil` would be `//evil`.
        assert_eq!(next_path(Some("/\t/evil.example")), "/console/");
        assert_eq!(next_path(Some("/\n/evil.example")), "/console/");
        assert_eq!(next_path(None), "/console/");
        assert_eq!(oauth_error_code("access_denied"), Some("access_denied"));
        assert_eq!(oauth_error_code("Call 555-0100 to reset"), None);
        assert_eq!(oauth_error_code("ACCESS_DENIED"), None);
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
