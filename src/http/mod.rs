//! HTTP front of `sigil serve` (actix-web): health, readiness and metrics now; SCEP, the REST
//! API, CRL and OCSP as they land. Handlers translate HTTP to calls into the core; they hold no
//! policy.
//!
//! `serve` stops gracefully on SIGTERM: it stops accepting, lets in-flight requests finish
//! (up to `server.shutdown_timeout_secs`), then closes the token sessions.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};

pub mod api;
mod auth;
mod console;
mod limits;
mod nul;
mod pki;
pub mod registrations;
mod scep;

use crate::authority::Authority;
use crate::config::Config;

/// How long a readiness result is reused, so probes cannot flood the token.
const READY_CACHE: Duration = Duration::from_secs(2);

/// State shared by the handlers.
pub struct AppState {
    ready: Mutex<Option<(Instant, Result<(), crate::reason::Reason>)>>,
    ra: Authority,
    scep: crate::scep_service::ScepService,
    limiter: api::AuthLimiter,
    /// Refused sign-ins per source: the first of a window is audited, the rest logged.
    sign_in_refusals: api::AuthLimiter,
    /// Sign-ins started per source: each stores its login state for ten minutes.
    sign_in_starts: api::AuthLimiter,
    /// Gateway certificate names allowed to forward SCEP; empty: SCEP is open.
    gateway_names: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client.
    proxies: crate::client_address::TrustedProxies,
    /// Sign-in with the identity provider, when configured.
    oidc: Option<std::sync::Arc<crate::identity::oidc::Oidc>>,
    /// Sign-in with a client certificate, when configured.
    mtls: Option<std::sync::Arc<crate::identity::mtls::Mtls>>,
}

/// The verified TLS client certificate of a connection, when it presented one.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    /// Subject common name.
    pub common_name: String,
    /// Whether it chains to `server.client_ca` (the gateways' CA). A certificate from
    /// another CA still reaches the handlers (a PIV card, checked against its own CAs).
    pub verified: bool,
    /// The certificate (DER).
    pub der: Vec<u8>,
    /// What else the client sent (DER), issuers first from the leaf.
    pub chain: Vec<Vec<u8>>,
}

impl AppState {
    /// State for serving `ra` (the API and the console) and SCEP on top of it.
    pub fn new(ra: Authority) -> Self {
        AppState {
            ready: Mutex::new(None),
            scep: crate::scep_service::ScepService::new(ra.clone()),
            ra,
            limiter: api::AuthLimiter::default(),
            sign_in_refusals: api::AuthLimiter::default(),
            sign_in_starts: api::AuthLimiter::default(),
            gateway_names: Vec::new(),
            proxies: crate::client_address::TrustedProxies::default(),
            oidc: None,
            mtls: None,
        }
    }

    /// Let people sign in as `[identity]` says (the identity provider is discovered when
    /// first needed; the PIV CA bundle is read now). `client_key` signs the OIDC client's
    /// `private_key_jwt` assertions when `identity.oidc.client_key` is set.
    pub fn with_identity(
        mut self,
        identity: &crate::identity::IdentitySettings,
        public_url: &str,
        client_key: Option<std::sync::Arc<dyn crate::identity::client_assertion::ClientKey>>,
    ) -> Result<Self, crate::reason::Reason> {
        if let Some(o) = &identity.oidc {
            self.oidc = Some(std::sync::Arc::new(crate::identity::oidc::Oidc::new(
                o, public_url, client_key,
            )?));
        }
        if let Some(m) = &identity.mtls {
            self.mtls = Some(std::sync::Arc::new(crate::identity::mtls::Mtls::new(m)?));
        }
        Ok(self)
    }

    /// Answer SCEP only to TLS clients whose certificate has one of these common names.
    pub fn with_gateways(mut self, names: Vec<String>) -> Self {
        self.gateway_names = names;
        self
    }

    /// Believe these proxies' `X-Forwarded-For` about who the client is.
    pub fn with_trusted_proxies(mut self, proxies: crate::client_address::TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    async fn check_ready(&self) -> Result<(), crate::reason::Reason> {
        if let Some((at, r)) = self
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if at.elapsed() < READY_CACHE {
                return r.clone();
            }
        }
        let r = self.ra.ready().await;
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), r.clone()));
        r
    }
}

/// `/healthz` and `/readyz` answers.
#[derive(serde::Serialize)]
struct Health {
    /// `ok`, `ready` or `not ready`.
    status: &'static str,
    /// The token the node signs with (ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// Each CA's published CRL against its revocations (ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    crl: Option<Vec<CrlState>>,
    /// What an operator should know though the node is ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<Vec<&'static str>>,
    /// Why the node is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl Health {
    fn status(status: &'static str) -> Health {
        Health {
            status,
            token: None,
            crl: None,
            warnings: None,
            reason: None,
        }
    }
}

/// One CA's CRL in `/readyz`, or why it could not be read.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum CrlState {
    Known {
        ca: String,
        current: bool,
        missing_revocations: i64,
        stale_since: Option<String>,
    },
    Unknown {
        error: String,
    },
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health::status("ok"))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.check_ready().await {
        Ok(()) => {
            // Whether each CA's published CRL lacks a committed revocation (it is made again
            // every few seconds until it does not): said, not fatal, since enrollment and
            // OCSP are unaffected.
            let crl = match state.ra.crl_status().await {
                Ok(marks) => marks
                    .into_iter()
                    .map(|(ca, m)| CrlState::Known {
                        ca,
                        current: m.lacking() == 0,
                        missing_revocations: m.lacking(),
                        stale_since: (m.lacking() > 0).then(|| crate::clock::rfc3339(m.since)),
                    })
                    .collect::<Vec<_>>(),
                Err(e) => vec![CrlState::Unknown {
                    error: e.to_string(),
                }],
            };
            let stale = crl
                .iter()
                .any(|c| matches!(c, CrlState::Known { current: false, .. }));
            HttpResponse::Ok().json(Health {
                token: Some(state.ra.token_name().to_string()),
                crl: Some(crl),
                warnings: Some(if stale {
                    vec!["a published CRL is older than the newest revocation; a new one is being made"]
                } else {
                    Vec::new()
                }),
                ..Health::status("ready")
            })
        }
        Err(reason) => {
            tracing::warn!(%reason, "readiness check failed");
            HttpResponse::ServiceUnavailable().json(Health {
                reason: Some(reason.to_string()),
                ..Health::status("not ready")
            })
        }
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::render_metrics())
}

/// Register the routes of `sigil serve` on an actix `App`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(pki::first_routes)
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .configure(scep::routes)
        .configure(pki::routes)
        .configure(auth::routes)
        .configure(console::routes)
        .configure(api::routes);
}

/// The TLS acceptor of `[server] tls_*`: the server chain and key, and client certificates
/// requested (not required) and verified against `client_ca`. A certificate that does not
/// chain there is let through, marked unverified, so a PIV sign-in can say what is wrong with
/// it (its own CAs are `identity.mtls.ca_file`, named in the handshake too); only verified
/// certificates count as gateways.
fn tls_acceptor(config: &Config) -> std::io::Result<openssl::ssl::SslAcceptorBuilder> {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
    let io = |what: &str, e: openssl::error::ErrorStack| {
        std::io::Error::other(format!("TLS {what}: {e}"))
    };
    let s = &config.server;
    let mut b =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(|e| io("setup", e))?;
    b.set_certificate_chain_file(&s.tls_cert)
        .map_err(|e| io(&format!("certificate `{}`", s.tls_cert), e))?;
    b.set_private_key_file(&s.tls_key, SslFiletype::PEM)
        .map_err(|e| io(&format!("key `{}`", s.tls_key), e))?;
    b.check_private_key()
        .map_err(|e| io("key and certificate", e))?;
    let ca = if s.client_ca.is_empty() {
        s.data_dir.join("ca.pem")
    } else {
        std::path::PathBuf::from(&s.client_ca)
    };
    b.set_ca_file(&ca)
        .map_err(|e| io(&format!("client CA `{}`", ca.display()), e))?;
    // The issuers clients are asked for: the gateways' CA and the people's.
    let mut names = openssl::stack::Stack::new().map_err(|e| io("setup", e))?;
    let mut add_names = |pem: &[u8]| -> std::io::Result<()> {
        for c in openssl::x509::X509::stack_from_pem(pem).unwrap_or_default() {
            if let Ok(n) = c.subject_name().to_owned() {
                names.push(n).map_err(|e| io("client CA names", e))?;
            }
        }
        Ok(())
    };
    add_names(&std::fs::read(&ca).unwrap_or_default())?;
    if let Some(m) = &config.identity.mtls {
        add_names(&std::fs::read(&m.ca_file).unwrap_or_default())?;
    }
    b.set_client_ca_list(names);
    if config.identity.mtls.is_some() {
        // People sign in with certificates of other CAs (and some of them revoked or from
        // the wrong CA): the handshake lets every certificate through so that the sign-in
        // page can say why it is refused; the PIV chain is verified by the sign-in, and SCEP
        // still admits only a certificate that verified against the gateways' CA.
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    } else {
        // No certificate sign-in: a certificate that does not verify ends the handshake.
        b.set_verify(SslVerifyMode::PEER);
    }
    Ok(b)
}

/// Remember the verified client certificate of a TLS connection for the handlers.
fn on_connect(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    type Tls = actix_tls::accept::openssl::TlsStream<actix_web::rt::net::TcpStream>;
    if let Some(tls) = conn.downcast_ref::<Tls>() {
        let ssl = tls.ssl();
        if let Some(cert) = ssl.peer_certificate() {
            let cn = cert
                .subject_name()
                .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                .next()
                .and_then(|e| String::from_utf8(e.data().as_slice().to_vec()).ok())
                .unwrap_or_default();
            let chain = ssl
                .peer_cert_chain()
                .map(|s| s.iter().filter_map(|c| c.to_der().ok()).collect())
                .unwrap_or_default();
            ext.insert(PeerCertificate {
                common_name: cn,
                verified: ssl.verify_result() == openssl::x509::X509VerifyResult::OK,
                der: cert.to_der().unwrap_or_default(),
                chain,
            });
        }
    }
}

/// Serve until SIGTERM / SIGINT, or until `until` completes (a graceful stop, as on SIGTERM).
pub async fn serve(
    config: &Config,
    state: AppState,
    until: impl std::future::Future<Output = ()> + 'static,
) -> std::io::Result<()> {
    let state = web::Data::new(state);
    let app_state = state.clone();
    let max = config.scep.max_message_bytes;
    let body_timeout = Duration::from_secs(config.server.body_timeout_secs);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(web::PayloadConfig::new(max))
            .wrap(
                actix_web::middleware::Logger::new("%{client}xi \"%r\" %s %b %Dms")
                    .custom_request_replace("client", |req| api::source(req.request()).to_string())
                    .log_target("sigil::http"),
            )
            .wrap_fn(move |mut req, srv| {
                use futures_util::future::{ready, Either, FutureExt};
                crate::telemetry::http_request();
                let address = req.uri().path_and_query().map_or("", |p| p.as_str());
                if nul::in_address(address) {
                    tracing::warn!(path = %req.path(), "refused: a NUL character in the address");
                    let resp = if req.path().starts_with("/api/") {
                        nul::refused_json()
                    } else {
                        nul::refused_text()
                    };
                    return Either::Left(ready(Ok(req.into_response(resp).map_into_right_body())));
                }
                limits::time_body(&mut req, body_timeout);
                Either::Right(
                    actix_web::dev::Service::call(srv, req)
                        .map(|r| r.map(actix_web::dev::ServiceResponse::map_into_left_body)),
                )
            })
            .configure(routes)
    })
    .on_connect(on_connect)
    .client_request_timeout(Duration::from_secs(config.server.header_timeout_secs))
    .shutdown_timeout(config.server.shutdown_timeout_secs);
    server = if config.server.tls_cert.is_empty() {
        server.bind(&config.server.listen)?
    } else {
        server.bind_openssl(&config.server.listen, tls_acceptor(config)?)?
    };
    if config.server.workers > 0 {
        server = server.workers(config.server.workers);
    }
    tracing::info!(
        listen = %config.server.listen,
        tls = !config.server.tls_cert.is_empty(),
        "sigil serve is listening"
    );
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        until.await;
        handle.stop(true).await;
    });
    let result = server.await;
    tracing::info!("shut down; closing token sessions");
    state.ra.close();
    result
}
