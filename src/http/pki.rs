//! Relying-party endpoints: the full CRL at `/crl/{ca}.crl`, a CRL partition at
//! `/crl/{ca}/{YYYY-Www}.crl` (the URL Sigil puts in issued certificates' CRL distribution
//! point) and the OCSP responder at `/ocsp` (POST with a DER
//! body, or GET with the base64 request in the path, RFC 6960 appendix A).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::AppState;
use crate::authority::{Authority, Caching, OcspOutcome, RequestError};

/// Register the OCSP routes: first of all, since relying parties ask on every connection and
/// actix tries routes in order (each dynamic pattern before them would cost every request a
/// regular-expression match): POST `/ocsp` as a static path, then GET `/ocsp/{request}` under
/// the static prefix `/ocsp`.
pub(super) fn first_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ocsp", web::post().to(ocsp_post))
        .service(web::scope("/ocsp").default_service(web::to(ocsp_get)));
}

/// Register the CRL routes.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/crl/{file}", web::get().to(crl))
        .route("/crl/{ca}/{file}", web::get().to(partition_crl));
}

fn not_found(ra: &Authority) -> HttpResponse {
    let mut names = vec![ra.ca_name().to_string()];
    names.extend(ra.retired_ca_names());
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body(format!(
            "no such CRL; this server has {}\n",
            names
                .iter()
                .map(|n| format!("/crl/{n}.crl"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
}

async fn crl(state: web::Data<AppState>, file: web::Path<String>) -> HttpResponse {
    let ra = &state.ra;
    let Some(label) = file.strip_suffix(".crl") else {
        return not_found(ra);
    };
    let crl = if label == ra.ca_name() {
        ra.crl().await
    } else {
        match ra.retired_crl(label).await {
            Ok(Some(der)) => Ok(der),
            Ok(None) => return not_found(ra),
            Err(e) => Err(e),
        }
    };
    crl_answer(crl)
}

async fn partition_crl(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (ca, file) = path.into_inner();
    match state.ra.partition_crl(&ca, &file).await {
        Ok(Ok(der)) => crl_answer(Ok(der)),
        Ok(Err(missing)) => {
            tracing::debug!(?ca, ?file, reason = ?missing, "no such CRL partition");
            HttpResponse::NotFound()
                .content_type("text/plain; charset=utf-8")
                .body(format!("no such CRL: {missing}\n"))
        }
        Err(e) => crl_answer(Err(e)),
    }
}

fn crl_answer(crl: Result<Vec<u8>, RequestError>) -> HttpResponse {
    match crl {
        Ok(der) => HttpResponse::Ok()
            .content_type("application/pkix-crl")
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .body(der),
        Err(RequestError::Unavailable(why)) => {
            // The detail (database or token error text) is logged, not sent: anyone may ask.
            tracing::warn!(%why, "CRL unavailable");
            HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "5"))
                .content_type("text/plain; charset=utf-8")
                .body("temporarily unavailable (certificate store or HSM); retry later\n")
        }
        // Not produced by the CRL paths today; answered for what they say, never as a 500.
        Err(e @ RequestError::UnknownProfile(_)) => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!("{e}\n")),
        Err(e @ RequestError::Malformed(_)) => HttpResponse::BadRequest()
            .content_type("text/plain; charset=utf-8")
            .body(format!("{e}\n")),
    }
}

/// How long an HTTP cache in front of Sigil may keep a GET answer (seconds, at most): a
/// revocation reaches Sigil's own answers within a second, and those behind a cache within
/// this.
const OCSP_MAX_AGE: i64 = 60;

async fn answer(ra: &Authority, body: &[u8], get: bool) -> HttpResponse {
    let reply = ra.ocsp(body).await;
    crate::telemetry::ocsp_outcome(match reply.outcome {
        OcspOutcome::Signed => "signed",
        OcspOutcome::Cached => "cached",
        OcspOutcome::Prepared => "prepared",
        OcspOutcome::Malformed => "malformed",
        OcspOutcome::TryLater => "try_later",
        OcspOutcome::Unauthorized => "unauthorized",
    });
    // OCSP errors are OCSP responses too (RFC 6960 §2.3): always 200.
    let mut http = HttpResponse::Ok();
    http.content_type("application/ocsp-response");
    // A GET answer without a nonce may be kept by HTTP caches (RFC 5019 §6.2), briefly; POST
    // answers are not cached by HTTP caches anyway, and are not parsed again here. A held
    // answer's caching facts were worked out when it was taken in.
    let caching = if get {
        reply
            .caching
            .or_else(|| Caching::of(&reply.der))
            .map(|c| (c, crate::clock::now()))
    } else {
        None
    };
    match caching.filter(|(c, at)| c.fresh.next_update > *at) {
        Some((c, at)) => {
            let date = |unix: i64| {
                header::HttpDate::from(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64),
                )
            };
            let max_age = (c.fresh.next_update - at).min(OCSP_MAX_AGE);
            http.insert_header((
                header::CACHE_CONTROL,
                format!("max-age={max_age}, public, no-transform, must-revalidate"),
            ))
            .insert_header((header::LAST_MODIFIED, date(c.fresh.produced_at)))
            .insert_header((header::EXPIRES, date(at + max_age)))
            .insert_header((header::ETAG, c.etag.as_ref()));
        }
        None => {
            http.insert_header((header::CACHE_CONTROL, "no-cache"));
        }
    }
    http.body(reply.der)
}

async fn ocsp_post(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let ra = &state.ra;
    answer(ra, &body, false).await
}

/// GET (or HEAD) `/ocsp/{request}`; any other method under `/ocsp` is not allowed (405,
/// saying which are).
async fn ocsp_get(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    use actix_web::http::Method;
    let ra = &state.ra;
    let not_allowed = |allow: &'static str| {
        HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, allow))
            .content_type("text/plain; charset=utf-8")
            .body("an OCSP request is a POST to /ocsp or a GET of /ocsp/{base64 request}\n")
    };
    // The raw path: base64 may hold `/` and `+`, percent-escaped or not.
    let Some(raw) = req.uri().path().strip_prefix("/ocsp/") else {
        // `/ocsp` itself: a POST is routed before this.
        return not_allowed("POST");
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return not_allowed("GET, HEAD");
    }
    let decoded = super::scep::query_param(&format!("r={raw}"), "r").unwrap_or_default();
    let body = super::scep::lenient_base64(&decoded).unwrap_or_default();
    answer(ra, &body, true).await
}
