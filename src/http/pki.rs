//! Relying-party endpoints: the CRL at `/crl/{ca}.crl` (the URL to put in issued
//! certificates' CRL distribution point) and the OCSP responder at `/ocsp` (POST with a DER
//! body, or GET with the base64 request in the path, RFC 6960 appendix A).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::AppState;
use crate::authority::{Authority, OcspOutcome, RequestError};

/// Register the routes.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/crl/{file}", web::get().to(crl))
        .route("/ocsp", web::post().to(ocsp_post))
        .route("/ocsp/{request:.*}", web::get().to(ocsp_get));
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
    match crl {
        Ok(der) => HttpResponse::Ok()
            .content_type("application/pkix-crl")
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .body(der),
        Err(RequestError::Unavailable(why)) => {
            tracing::warn!(%why, "CRL unavailable");
            HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "5"))
                .body(format!("temporarily unavailable: {why}\n"))
        }
        Err(e) => HttpResponse::InternalServerError().body(format!("{e}\n")),
    }
}

async fn answer(ra: &Authority, body: &[u8]) -> HttpResponse {
    let (der, outcome) = ra.ocsp(body).await;
    crate::telemetry::ocsp_outcome(match outcome {
        OcspOutcome::Signed => "signed",
        OcspOutcome::Cached => "cached",
        OcspOutcome::Prepared => "prepared",
        OcspOutcome::Malformed => "malformed",
        OcspOutcome::TryLater => "try_later",
        OcspOutcome::Unauthorized => "unauthorized",
    });
    // OCSP errors are OCSP responses too (RFC 6960 §2.3): always 200.
    HttpResponse::Ok()
        .content_type("application/ocsp-response")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(der)
}

async fn ocsp_post(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let ra = &state.ra;
    answer(ra, &body).await
}

async fn ocsp_get(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let ra = &state.ra;
    // The raw path: base64 may hold `/` and `+`, percent-escaped or not.
    let raw = req.uri().path().trim_start_matches("/ocsp/");
    let decoded = super::scep::query_param(&format!("r={raw}"), "r").unwrap_or_default();
    let body = super::scep::lenient_base64(&decoded).unwrap_or_default();
    answer(ra, &body).await
}
