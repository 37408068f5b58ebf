//! `sigil gateway`: the segmented SCEP front. It listens for the public routes only (SCEP and
//! its NDES and pkiclient.exe aliases, `/crl/…`, `/ocsp`), refuses what is malformed or
//! abusive before it reaches a core ([`guard`]), and forwards the rest to one or more
//! `sigil serve` nodes over mutual TLS ([`upstream`]), with `X-Forwarded-For` (the client:
//! the connection's address, or the one a proxy in `gateway.trusted_proxies` names, see
//! [`crate::client_address`]) and an `X-Request-Id` the core logs with the SCEP transaction.
//!
//! It holds no token PIN, no database URL and no CA or RA key, and serves no admin route; a
//! build without the `core` feature (`cargo build --no-default-features`) contains this
//! module and not `hsm` or `store`.

pub mod config;
pub mod guard;
mod upstream;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;

pub use config::GatewayConfig;

use crate::client_address::TrustedProxies;
use guard::{RateLimiter, Refusal, Route};
use upstream::{Forward, Upstreams};

struct State {
    config: GatewayConfig,
    proxies: TrustedProxies,
    limiter: RateLimiter,
    upstreams: Upstreams,
}

fn refused(r: Refusal, client: IpAddr, path: &str) -> HttpResponse {
    tracing::warn!(%client, path, status = r.status, reason = %r.reason, "refused at the gateway");
    HttpResponse::build(StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST))
        .content_type("text/plain; charset=utf-8")
        .body(format!("{}\n", r.reason))
}

fn request_id() -> String {
    let mut b = [0u8; 12];
    if openssl::rand::rand_bytes(&mut b).is_err() {
        return String::new();
    }
    hex::encode(b)
}

/// Read the body within the limit and the time allowed.
async fn body(
    mut payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, Refusal> {
    let read = async {
        let mut out = Vec::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| Refusal {
                status: 400,
                reason: format!("reading the body: {e}"),
            })?;
            if out.len() + chunk.len() > limit {
                return Err(Refusal {
                    status: 413,
                    reason: format!("the body is larger than {limit} bytes"),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Refusal {
            status: 408,
            reason: format!("the body did not arrive within {}s", timeout.as_secs()),
        })?
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<Arc<State>>,
) -> HttpResponse {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    // A trusted proxy's word on who the client is.
    let client = state.proxies.client_from_header(
        peer,
        req.headers()
            .get_all("x-forwarded-for")
            .map(|v| v.as_bytes()),
    );
    let path = req.path().to_string();
    let method = req.method().as_str().to_string();
    let c = &state.config;
    let route = match guard::route(&method, &path) {
        Ok(r) => r,
        Err(r) => return refused(r, client, &path),
    };
    if route == Route::Health {
        let ups = state.upstreams.states();
        let any = ups.iter().any(|(_, ok)| *ok);
        return HttpResponse::build(if any {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        })
        // Public: how many cores answer, never where they are.
        .json(serde_json::json!({
            "status": if any { "ok" } else { "no core reachable" },
            "cores": ups.len(),
            "healthy": ups.iter().filter(|(_, ok)| *ok).count(),
        }));
    }
    let query = req.query_string().to_string();
    if query.len() > c.max_query_bytes {
        return refused(
            Refusal {
                status: 414,
                reason: format!(
                    "the query string is longer than {} bytes",
                    c.max_query_bytes
                ),
            },
            client,
            &path,
        );
    }
    if let Err(wait) = state.limiter.take(client) {
        tracing::warn!(%client, path, "rate limited at the gateway");
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", wait.to_string()))
            .content_type("text/plain; charset=utf-8")
            .body("too many requests from this address; retry later\n");
    }
    let body = match body(
        payload,
        c.max_body_bytes,
        Duration::from_secs(c.body_timeout_secs),
    )
    .await
    {
        Ok(b) => b,
        Err(r) => return refused(r, client, &path),
    };
    let checked = match route {
        Route::Scep => guard::scep(&method, &query, &body),
        Route::Ocsp => guard::ocsp(&method, &path, &body),
        _ => Ok(()),
    };
    if let Err(r) = checked {
        return refused(r, client, &path);
    }
    let id = request_id();
    let path_and_query = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let forward = Forward {
        method: &method,
        path_and_query: &path_and_query,
        content_type: req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        body,
        client: client.to_string(),
        request_id: id.clone(),
    };
    match state.upstreams.forward(&forward).await {
        Ok(a) => {
            tracing::info!(%client, path, request_id = %id, upstream = %a.upstream, status = a.status, "forwarded");
            let mut r = HttpResponse::build(
                StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY),
            );
            for (k, v) in &a.headers {
                r.insert_header((k.as_str(), v.as_str()));
            }
            r.insert_header(("X-Request-Id", id.as_str()));
            r.body(a.body)
        }
        Err(e) => {
            tracing::warn!(%client, path, request_id = %id, error = %e, "no core available");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "10"))
                .content_type("text/plain; charset=utf-8")
                .body("the service is temporarily unavailable; retry later\n")
        }
    }
}

/// Why `sigil gateway` stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayExit {
    /// The `[gateway]` configuration is wrong.
    #[error(transparent)]
    Config(#[from] config::GatewayConfigError),
    /// The server could not start or failed.
    #[error("gateway: {0}")]
    Serve(#[from] std::io::Error),
}

/// `sigil gateway`, as both binaries run it: read `[gateway]` from `config` (and
/// `SIGIL_GATEWAY_*`), start logging (`log_format` "json" or human; `log_level`, default
/// info), and serve until SIGTERM / SIGINT on a runtime of its own.
pub fn run_command(
    config: Option<&std::path::Path>,
    log_format: Option<&str>,
    log_level: Option<&str>,
) -> Result<(), GatewayExit> {
    // The gateway reads only its own section: its host has no HSM or database settings.
    let config = GatewayConfig::load(config, std::env::vars())?;
    crate::telemetry::init_logging(
        if log_format == Some("json") {
            crate::telemetry::LogFormat::Json
        } else {
            crate::telemetry::LogFormat::Human
        },
        log_level.unwrap_or("info"),
    );
    actix_web::rt::System::new().block_on(run(config))?;
    Ok(())
}

/// Run the gateway until SIGTERM / SIGINT.
pub async fn run(config: GatewayConfig) -> std::io::Result<()> {
    let upstreams = Upstreams::new(&config).map_err(std::io::Error::other)?;
    let state = Arc::new(State {
        proxies: config.proxies().map_err(std::io::Error::other)?,
        limiter: RateLimiter::new(config.rate_per_second, config.burst),
        upstreams,
        config: config.clone(),
    });
    let checker = state.clone();
    let interval = Duration::from_secs(config.health_interval_secs);
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            checker.upstreams.check().await;
        }
    });
    let data = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(handle))
    })
    .client_request_timeout(Duration::from_secs(config.header_timeout_secs))
    .shutdown_timeout(10);
    server = if config.tls_cert.is_empty() {
        server.bind(&config.listen)?
    } else {
        use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())
            .map_err(std::io::Error::other)?;
        b.set_certificate_chain_file(&config.tls_cert)
            .map_err(std::io::Error::other)?;
        b.set_private_key_file(&config.tls_key, SslFiletype::PEM)
            .map_err(std::io::Error::other)?;
        server.bind_openssl(&config.listen, b)?
    };
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    tracing::info!(listen = %config.listen, upstreams = ?config.upstreams, "sigil gateway is listening");
    server.run().await
}
