//! SCEP over HTTP (RFC 8894 §4): `GET|POST /scep[/{profile}]?operation=…`, with the paths
//! clients hard-code (`/cgi-bin/pkiclient.exe`, `/certsrv/mscep/mscep.dll`) as aliases of the
//! default profile. Handlers only translate HTTP: decisions are the RA's.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use tracing::Instrument;

use super::AppState;
use crate::authority::RequestError;

/// Register the SCEP routes.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    for path in [
        "/scep",
        "/cgi-bin/pkiclient.exe",
        "/certsrv/mscep/mscep.dll",
    ] {
        cfg.route(path, web::get().to(scep_default))
            .route(path, web::post().to(scep_default));
    }
    cfg.route("/scep/{profile}", web::get().to(scep_profile))
        .route("/scep/{profile}", web::post().to(scep_profile));
}

// The query and base64 readers are shared with the gateway (compiled in both builds).
pub(super) use crate::wire::{lenient_base64, query_param};

fn bad_request(reason: impl Into<String>) -> HttpResponse {
    let reason = reason.into();
    tracing::warn!(%reason, "SCEP request refused");
    HttpResponse::BadRequest()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{reason}\n"))
}

fn error_response(e: RequestError) -> HttpResponse {
    match e {
        RequestError::UnknownProfile(_) => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!("{e}\n")),
        RequestError::Malformed(_) => bad_request(e.to_string()),
        RequestError::Unavailable(_) => {
            // The detail (database or token error text) is logged, not sent.
            tracing::error!(error = %e, "SCEP request could not be answered");
            HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "10"))
                .content_type("text/plain; charset=utf-8")
                .body("temporarily unavailable (certificate store or HSM); retry later\n")
        }
    }
}

async fn scep_default(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(req, None, body, state).await
}

async fn scep_profile(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(req, Some(path.into_inner()), body, state).await
}

/// A request ID from the gateway (`X-Request-Id`), when it looks like one.
fn request_id(req: &HttpRequest) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .unwrap_or("")
        .to_string()
}

async fn handle(
    req: HttpRequest,
    profile: Option<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    // SCEP only through a gateway, when so configured.
    if !state.gateway_names.is_empty() {
        let peer = req
            .conn_data::<super::PeerCertificate>()
            .filter(|p| p.verified)
            .map(|p| p.common_name.clone());
        if !peer
            .as_ref()
            .is_some_and(|cn| state.gateway_names.contains(cn))
        {
            let why = match &peer {
                // A gateway whose certificate name was not listed: say so, to the gateway.
                Some(cn) => format!(
                    "the client certificate `{cn}` is not one of server.gateway_names ({}): SCEP is answered here only through a listed gateway\n",
                    state.gateway_names.join(", ")
                ),
                None => "SCEP is answered here only through the gateway\n".to_string(),
            };
            tracing::warn!(peer = ?peer, source = %super::api::source(&req), "SCEP refused: not from a listed gateway");
            return HttpResponse::Forbidden()
                .content_type("text/plain; charset=utf-8")
                .body(why);
        }
    }
    let span = tracing::info_span!(
        "request",
        request_id = %request_id(&req),
        // The device's address: the gateway's X-Forwarded-For when the gateway is one of
        // `server.trusted_proxies`, else the connection's.
        client = %super::api::source(&req),
    );
    handle_scep(req, profile, body, state)
        .instrument(span)
        .await
}

async fn handle_scep(
    req: HttpRequest,
    profile: Option<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let ra = &state.scep;
    let profile = match ra.profile(profile.as_deref()) {
        Ok(p) => p,
        Err(e) => return error_response(e),
    };
    let query = req.query_string();
    let Some(operation) = query_param(query, "operation") else {
        return bad_request(
            "missing operation= (GetCACaps, GetCACert, GetNextCACert or PKIOperation)",
        );
    };
    match operation.as_str() {
        "GetCACaps" => HttpResponse::Ok()
            .content_type("text/plain")
            .body(ra.ca_caps(profile).await),
        "GetCACert" => match ra.ca_certs() {
            Ok((ct, bytes)) => HttpResponse::Ok().content_type(ct).body(bytes),
            Err(e) => error_response(e),
        },
        "GetNextCACert" => match ra.next_ca_certs().await {
            Ok(Some(bytes)) => HttpResponse::Ok()
                .content_type("application/x-x509-next-ca-cert")
                .body(bytes),
            Ok(None) => HttpResponse::NotFound()
                .content_type("text/plain; charset=utf-8")
                .body("no next CA certificate: no CA rollover is in progress\n"),
            Err(e) => error_response(e),
        },
        "PKIOperation" => {
            let message = if req.method() == actix_web::http::Method::POST {
                if body.is_empty() {
                    return bad_request("PKIOperation by POST needs the pkiMessage as the body");
                }
                // A few clients POST base64 text instead of DER.
                if body.first() == Some(&0x30) {
                    body.to_vec()
                } else {
                    match std::str::from_utf8(&body).ok().and_then(lenient_base64) {
                        Some(b) => b,
                        None => return bad_request("the body is neither DER nor base64"),
                    }
                }
            } else {
                let Some(text) = query_param(query, "message") else {
                    return bad_request("PKIOperation by GET needs message=<base64 pkiMessage>");
                };
                match lenient_base64(&text) {
                    Some(b) => b,
                    None => return bad_request("message= is not base64"),
                }
            };
            match ra.pki_operation(profile, &message).await {
                Ok(reply) => HttpResponse::Ok()
                    .content_type("application/x-pki-message")
                    .body(reply),
                Err(e) => error_response(e),
            }
        }
        other => bad_request(format!(
            "unknown operation `{other}` (GetCACaps, GetCACert, GetNextCACert or PKIOperation)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_plus_and_decodes_escapes() {
        let q = "operation=PKIOperation&message=ab+c/d%2Be%3D";
        assert_eq!(query_param(q, "message").as_deref(), Some("ab+c/d+e="));
        assert_eq!(query_param(q, "operation").as_deref(), Some("PKIOperation"));
        assert_eq!(query_param(q, "nothing"), None);
        assert_eq!(query_param("message=%", "message").as_deref(), Some("%"));
        assert_eq!(query_param("message=%4", "message").as_deref(), Some("%4"));
    }

    #[test]
    fn base64_is_lenient() {
        assert_eq!(lenient_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(lenient_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(lenient_base64("aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(
            lenient_base64("-_8").unwrap(),
            lenient_base64("+/8").unwrap()
        );
        assert!(lenient_base64("!!!").is_none());
    }
}
