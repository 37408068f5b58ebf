//! The cores behind the gateway: a mutual-TLS client (the gateway's certificate, the cores'
//! CA), round robin over the healthy ones, failover to the next on a transport error or a 5xx,
//! and a health check of each every few seconds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::config::GatewayConfig;
use crate::reason::Reason;

/// Largest answer passed back from a core.
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// One core.
pub(super) struct Upstream {
    /// Base URL (`https://core-1:8443`).
    pub url: String,
    healthy: AtomicBool,
}

/// A request to pass on.
pub(super) struct Forward<'a> {
    /// Method.
    pub method: &'a str,
    /// Path and query as received.
    pub path_and_query: &'a str,
    /// Content-Type, if any.
    pub content_type: Option<&'a str>,
    /// Body.
    pub body: Vec<u8>,
    /// The client's address.
    pub client: String,
    /// The request ID the core logs.
    pub request_id: String,
}

/// A core's answer.
pub(super) struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Headers passed back (content type, cache control, retry-after).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Which core answered.
    pub upstream: String,
}

/// The set of cores.
pub(super) struct Upstreams {
    list: Vec<Upstream>,
    next: AtomicUsize,
    client: reqwest::Client,
    health: reqwest::Client,
}

/// Why no core answered.
#[derive(Debug, thiserror::Error)]
#[error("no core answered: {0}")]
pub(super) struct Unavailable(#[source] pub Reason);

impl Upstreams {
    /// The client identity and trust from the configuration.
    pub(super) fn new(c: &GatewayConfig) -> Result<Upstreams, Reason> {
        let read = |what: &str, p: &str| {
            std::fs::read(p).map_err(|e| Reason::context(format!("gateway.{what} `{p}`"), e))
        };
        let identity = reqwest::Identity::from_pkcs8_pem(
            &read("client_cert", &c.client_cert)?,
            &read("client_key", &c.client_key)?,
        )
        .map_err(|e| Reason::context("gateway client certificate and key (PKCS#8 PEM)", e))?;
        let ca = reqwest::Certificate::from_pem_bundle(&read("upstream_ca", &c.upstream_ca)?)
            .map_err(|e| Reason::context("gateway.upstream_ca", e))?;
        let build = |timeout: Duration| {
            let mut b = reqwest::Client::builder()
                .use_native_tls()
                .identity(identity.clone())
                .tls_built_in_root_certs(false)
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(3)))
                .redirect(reqwest::redirect::Policy::none())
                .pool_idle_timeout(Duration::from_secs(30));
            for cert in &ca {
                b = b.add_root_certificate(cert.clone());
            }
            b.build()
                .map_err(|e| Reason::context("gateway HTTP client", e))
        };
        Ok(Upstreams {
            list: c
                .upstreams
                .iter()
                .map(|u| Upstream {
                    url: u.trim_end_matches('/').to_string(),
                    healthy: AtomicBool::new(true),
                })
                .collect(),
            next: AtomicUsize::new(0),
            client: build(Duration::from_secs(c.upstream_timeout_secs))?,
            health: build(Duration::from_secs(2))?,
        })
    }

    /// The cores and whether each is healthy.
    pub(super) fn states(&self) -> Vec<(String, bool)> {
        self.list
            .iter()
            .map(|u| (u.url.clone(), u.healthy.load(Ordering::Relaxed)))
            .collect()
    }

    /// Send to the healthy cores in turn (all of them when none is healthy) until one
    /// answers with less than 500. SCEP is safe to resend: a core answers a repeated
    /// transaction with what it recorded.
    pub(super) async fn forward(&self, f: &Forward<'_>) -> Result<Answer, Unavailable> {
        let n = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut order: Vec<&Upstream> = (0..n).map(|i| &self.list[(start + i) % n]).collect();
        order.sort_by_key(|u| !u.healthy.load(Ordering::Relaxed));
        let mut last_err = Reason::new("no core is configured");
        let mut last_5xx = None;
        for u in order {
            let url = format!("{}{}", u.url, f.path_and_query);
            let mut r = self
                .client
                .request(
                    reqwest::Method::from_bytes(f.method.as_bytes())
                        .unwrap_or(reqwest::Method::GET),
                    &url,
                )
                .header("X-Forwarded-For", &f.client)
                .header("X-Request-Id", &f.request_id)
                .body(f.body.clone());
            if let Some(ct) = f.content_type {
                r = r.header(reqwest::header::CONTENT_TYPE, ct);
            }
            match r.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let mut headers = Vec::new();
                    for name in ["content-type", "cache-control", "retry-after"] {
                        if let Some(v) = resp.headers().get(name).and_then(|v| v.to_str().ok()) {
                            headers.push((name.to_string(), v.to_string()));
                        }
                    }
                    let body = match read_capped(resp).await {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::warn!(upstream = %u.url, error = %e, "core answer unreadable; trying the next");
                            last_err = e;
                            continue;
                        }
                    };
                    let a = Answer {
                        status,
                        headers,
                        body,
                        upstream: u.url.clone(),
                    };
                    if status >= 500 {
                        tracing::warn!(upstream = %u.url, status, "core failed; trying the next");
                        last_5xx = Some(a);
                        continue;
                    }
                    return Ok(a);
                }
                Err(e) => {
                    u.healthy.store(false, Ordering::Relaxed);
                    let why = explain(&e);
                    tracing::warn!(upstream = %u.url, error = %why, "core unreachable; trying the next");
                    last_err = Reason::caused_by(e).with_text(why);
                }
            }
        }
        match last_5xx {
            Some(a) => Ok(a),
            None => Err(Unavailable(last_err)),
        }
    }

    /// Check every core's `/healthz` once, and log changes with the reason.
    pub(super) async fn check(&self) {
        for u in &self.list {
            let (ok, why) = match self.health.get(format!("{}/healthz", u.url)).send().await {
                Ok(r) if r.status().is_success() => (true, String::new()),
                Ok(r) => (false, format!("its /healthz answered {}", r.status())),
                Err(e) => (false, explain(&e)),
            };
            let was = u.healthy.swap(ok, Ordering::Relaxed);
            if was != ok {
                if ok {
                    tracing::info!(upstream = %u.url, "core is back");
                } else {
                    tracing::warn!(upstream = %u.url, reason = %why, "core is unreachable");
                }
            }
        }
    }
}

/// What went wrong reaching a core, with the cause the HTTP client buries under "error
/// sending request", and the setting to look at for TLS failures.
fn explain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate verify failed")
        || lower.contains("self signed")
        || lower.contains("self-signed")
        || lower.contains("unable to get local issuer")
    {
        format!("TLS verification of the core's certificate failed (gateway.upstream_ca must hold the transport CA that issued it, the ca.pem of `sigil gateway-cert`): {text}")
    } else if lower.contains("hostname mismatch")
        || lower.contains("ip address mismatch")
        || lower.contains("does not match")
    {
        format!("the core's certificate does not name the host in gateway.upstreams (issue it with `sigil gateway-cert --core-name` for that name): {text}")
    } else if lower.contains("handshake") || lower.contains("alert") {
        format!("the TLS handshake with the core failed (is this gateway's client certificate from the core's server.client_ca?): {text}")
    } else {
        text
    }
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, Reason> {
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.map_err(Reason::caused_by)? {
        if out.len() + c.len() > MAX_ANSWER {
            return Err(Reason::new("answer too large"));
        }
        out.extend_from_slice(&c);
    }
    Ok(out)
}
