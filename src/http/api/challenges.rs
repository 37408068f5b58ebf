//! `/api/v1/challenges` and the NDES-compatible `/certsrv/mscep_admin` page: one-time
//! challenges for MDM integrations.

// Handlers return a ready HttpResponse as their error.
#![allow(clippy::result_large_err)]

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{act_in_role, source, token_caller};
use super::{authorize, error, unavailable};
use crate::authority::access::Caller;
use crate::authority::access::Role;
use crate::authority::challenge::Bindings;
use crate::clock::rfc3339;
use crate::http::AppState;
use actix_web::http::header;
use base64::Engine;

use super::bodies::{ApiError, ChallengeIssued, NewChallenge};

pub(super) async fn issue_challenge(
    state: &AppState,
    caller: &Caller,
    c: NewChallenge,
) -> Result<ChallengeIssued, HttpResponse> {
    let ra = &state.ra;
    let profile = match ra.profile(c.profile.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "unknown_profile",
                format!("{e}; profiles: {}", ra.profile_names().join(", ")),
            ))
        }
    };
    let profile = profile.name.clone();
    let minutes = c.ttl_minutes.unwrap_or(60);
    if !(1..=7 * 24 * 60).contains(&minutes) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "bad_ttl",
            "ttl_minutes is 1 to 10080",
        ));
    }
    let ttl = i64::from(minutes) * 60;
    let bindings = Bindings {
        cn: c.cn,
        sans: c.sans,
        device_id: c.device_id,
        ..Bindings::default()
    };
    if let Err(why) = crate::authority::challenge::validate(&bindings) {
        return Err(error(StatusCode::BAD_REQUEST, "bad_bindings", why));
    }
    let actor = caller.actor();
    match ra
        .mint_challenge(&profile, Some(caller), &bindings, ttl, &actor)
        .await
    {
        Ok(m) => {
            tracing::info!(by = %caller.actor, %profile, challenge_id = %m.id, "one-time challenge issued");
            Ok(ChallengeIssued {
                challenge: m.challenge,
                id: m.id,
                expires_at: rfc3339(m.expires_at),
                profile: m.profile,
            })
        }
        Err(crate::authority::MintError::NotAllowed(why)) => {
            tracing::warn!(by = %caller.actor, %profile, %why, "challenge refused");
            Err(error(StatusCode::FORBIDDEN, "not_allowed", why))
        }
        Err(crate::authority::MintError::Store(e)) => Err(unavailable(e)),
    }
}

/// A one-time challenge
///
/// For the profile asked (an empty body: the default profile), optionally bound to a name,
/// SANs and a device. A profile of the registration flow refuses: its challenges come only
/// from an approved registration. An `mdm` token mints only for the profiles in its scope.
#[utoipa::path(post, path = "/challenges", tag = "challenges", request_body(content = Option<NewChallenge>),
    responses((status = 201, description = "The challenge, shown once", body = ChallengeIssued),
              (status = 400, description = "An unknown profile, bad bindings or TTL", body = ApiError),
              (status = 403, description = "The profile is not open to this token", body = ApiError)))]
pub(super) async fn create_challenge(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let caller = guard!(req, state, "POST", "/api/v1/challenges");
    // An empty body means the default profile.
    let c: NewChallenge = if body.iter().all(u8::is_ascii_whitespace) {
        NewChallenge::default()
    } else {
        match super::parse_json(&body) {
            Ok(c) => c,
            Err(resp) => return resp,
        }
    };
    match issue_challenge(&state, &caller, c).await {
        Ok(v) => HttpResponse::Created()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(v),
        Err(resp) => resp,
    }
}

/// `GET /certsrv/mscep_admin/`: the NDES page Workspace ONE, MobileIron and Fleet read, with
/// HTTP Basic authentication (any user name; an `mdm` token as the password). UTF-16LE HTML.
/// `/certsrv/mscep_admin/json` answers the same as JSON (webhook-style MDMs).
pub(super) async fn mscep_admin(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let ip = source(&req);
    let password = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|up| up.split_once(':').map(|(_, p)| p.to_owned()));
    let Some(password) = password else {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"Sigil NDES\""))
            .body("HTTP Basic authentication with an mdm token as the password\n");
    };
    let caller = match token_caller(&req, &state, &password, ip).await {
        Ok(c) => match act_in_role(&req, &state, c, &[Role::Mdm]).await {
            Ok(c) => c,
            Err(resp) => return resp,
        },
        Err(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"Sigil NDES\""))
                .body("the token is unknown, revoked or expired\n");
        }
        Err(resp) => return resp,
    };
    // NDES clients cannot name a profile: `?profile=` when the URL carries one, else the
    // token's only profile, else the default profile.
    let profile =
        crate::wire::query_param(req.query_string(), "profile").or_else(|| {
            match caller.scope.profiles.as_slice() {
                [one] if one != "*" => Some(one.clone()),
                _ => None,
            }
        });
    let asked = NewChallenge {
        profile,
        ..NewChallenge::default()
    };
    let value = match issue_challenge(&state, &caller, asked).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if req.path().ends_with("/json") {
        return HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(value);
    }
    let challenge = &value.challenge;
    let html = format!(
        "<HTML><Head><Meta HTTP-Equiv=\"Content-Type\" Content=\"text/html; charset=UTF-16\">\r\n\
         <Title>Network Device Enrollment Service</Title></Head>\r\n<Body BgColor=#FFFFFF>\r\n\
         <P> The enrollment challenge password is: <B> {challenge} </B>\r\n\
         <P> This password can be used only once and will expire within 60 minutes.\r\n\
         <P> Each enrollment requires a new challenge password.\r\n</Body></HTML>\r\n"
    );
    let mut bytes = vec![0xff, 0xfe];
    for u in html.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-16")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(bytes)
}
