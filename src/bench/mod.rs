//! `sigil bench`: a SCEP load generator, and `sigil bench hsm`: the token's own floor.
//!
//! The load generator works against any SCEP server (Sigil, micromdm's scepserver). Before the
//! clock starts it reads GetCACaps and GetCACert, makes a pool of device keys, and (for a fixed
//! count) builds every PKCSReq: a fresh CSR, transactionID and nonce each. The clock then
//! covers only HTTP: C workers over keep-alive connections. After the clock every CertRep is
//! checked: signed by the RA certificate from GetCACert, recipientNonce equal to the request's
//! senderNonce, decrypted with the device key, SUCCESS, the certificate's key equal to the
//! requested one, the certificate signed by the CA, and no serial issued twice. Given the
//! server's PID, its CPU time (from `/proc/PID/stat`) per enrollment and its peak RSS (VmHWM)
//! are reported too, and, when the server is a Sigil (its `/metrics` beside the SCEP URL), the
//! part of that CPU spent inside PKCS#11 calls (`sigil_hsm_cpu_seconds_total`): the token's,
//! and the rest, the host's. The result is one JSON line.

pub mod fill;
pub mod hsm;

use anyhow::Context;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::x509::X509;
use serde::Serialize;

use crate::scep::client::{read_degenerate, Device};
use crate::scep::{ContentCipher, DigestAlg, MessageType, Nonce, PkiStatus};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// SCEP URL (`http://127.0.0.1:8080/scep`).
    pub url: String,
    /// Challenge password for the CSRs.
    pub challenge: String,
    /// Parallel requests.
    pub concurrency: usize,
    /// Requests to send (fixed count), or…
    pub requests: usize,
    /// …run for this long instead (requests built as they go).
    pub duration: Option<Duration>,
    /// RSA key size of the devices.
    pub key_bits: u32,
    /// Distinct device keys (each request still gets its own CSR and transactionID).
    pub key_pool: usize,
    /// The server's PID, for CPU and memory figures.
    pub server_pid: Option<u32>,
}

/// The result, printed as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// The URL driven.
    pub url: String,
    /// Parallel requests.
    pub concurrency: usize,
    /// Requests sent.
    pub requests: usize,
    /// Enrollments that passed every check.
    pub ok: usize,
    /// Failures by reason.
    pub failed: BTreeMap<String, usize>,
    /// Seconds on the clock.
    pub elapsed_s: f64,
    /// Checked enrollments per second.
    pub enrollments_per_s: f64,
    /// Latency percentiles (ms).
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Serials seen more than once.
    pub duplicate_serials: usize,
    /// The server's CPU time (user + system) per checked enrollment, when its PID was given.
    pub server_cpu_ms_per_enrollment: Option<f64>,
    /// The server's CPU time per request answered (checked or not), when its PID was given.
    pub server_cpu_ms_per_request: Option<f64>,
    /// The server's peak resident memory (VmHWM), when its PID was given.
    pub server_peak_rss_mb: Option<f64>,
    /// Of the server's CPU per checked enrollment, the time inside PKCS#11 calls (a Sigil
    /// server with its PID given): on a hardware HSM this work leaves the host.
    pub server_token_cpu_ms_per_enrollment: Option<f64>,
    /// The rest of it: what the host spends per checked enrollment besides the token.
    pub server_host_cpu_ms_per_enrollment: Option<f64>,
}

struct Prepared {
    device: Arc<Device>,
    message: Vec<u8>,
    nonce: Nonce,
}

struct Outcome {
    prepared: Prepared,
    latency: Duration,
    answer: Result<Vec<u8>, String>,
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The `/metrics` URL of the server behind a SCEP URL (`http://h:p/scep/x` → `http://h:p/metrics`).
fn metrics_url(scep_url: &str) -> Option<String> {
    let (scheme, rest) = scep_url.split_once("://")?;
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}/metrics"))
}

/// The sum of `sigil_hsm_cpu_seconds_total` over its operations in a Prometheus text page;
/// `None` when the page has no such series (not a Sigil).
fn token_cpu_seconds(page: &str) -> Option<f64> {
    let values: Vec<f64> = page
        .lines()
        .filter(|l| {
            l.strip_prefix("sigil_hsm_cpu_seconds_total")
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

async fn server_token_cpu(http: &reqwest::Client, url: Option<&str>) -> Option<f64> {
    let page = http.get(url?).send().await.ok()?.text().await.ok()?;
    token_cpu_seconds(&page)
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// The server's certificates and capabilities, as a device learns them.
struct Server {
    recipient: Vec<u8>,
    ca: X509,
    cipher: ContentCipher,
    digest: DigestAlg,
}

async fn discover(http: &reqwest::Client, url: &str) -> anyhow::Result<Server> {
    let caps = http
        .get(format!("{url}?operation=GetCACaps"))
        .send()
        .await
        .context("GetCACaps")?
        .text()
        .await
        .context("GetCACaps")?;
    let has = |c: &str| caps.lines().any(|l| l.trim().eq_ignore_ascii_case(c));
    let r = http
        .get(format!("{url}?operation=GetCACert"))
        .send()
        .await
        .context("GetCACert")?;
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r.bytes().await.context("GetCACert")?;
    let certs: Vec<Vec<u8>> = if ct.contains("x-x509-ca-ra-cert") {
        read_degenerate(&body)
            .context("GetCACert's certificates")?
            .0
    } else {
        vec![body.to_vec()]
    };
    let parsed: Vec<X509> = certs
        .iter()
        .map(|c| X509::from_der(c))
        .collect::<Result<_, _>>()
        .context("a certificate from GetCACert")?;
    let ca_index = parsed
        .iter()
        .position(|c| c.issuer_name_hash() == c.subject_name_hash())
        .unwrap_or(parsed.len().saturating_sub(1));
    let ca = parsed
        .get(ca_index)
        .cloned()
        .context("GetCACert returned no certificate")?;
    // The RA certificate when there is one (it is not a CA); else the CA itself.
    let recipient = parsed
        .iter()
        .zip(&certs)
        .find(|(c, _)| c.issuer_name_hash() != c.subject_name_hash())
        .map(|(_, d)| d.clone())
        .unwrap_or_else(|| certs[ca_index].clone());
    Ok(Server {
        recipient,
        ca,
        cipher: if has("AES") {
            ContentCipher::Aes128Cbc
        } else {
            ContentCipher::Des3Cbc
        },
        digest: if has("SHA-256") {
            DigestAlg::Sha256
        } else {
            DigestAlg::Sha1
        },
    })
}

fn prepare(
    device: &Arc<Device>,
    server: &Server,
    challenge: &str,
    n: usize,
) -> anyhow::Result<Prepared> {
    let mut id = [0u8; 16];
    openssl::rand::rand_bytes(&mut id).context("randomness")?;
    let tid = hex::encode(id);
    let cn = format!("bench-{n}-{}", &tid[..8]);
    let csr = device
        .csr(&cn, Some(challenge), &[])
        .context("the device's CSR")?;
    let nonce = Nonce::random().context("a nonce")?;
    let message = device
        .request(
            MessageType::PkcsReq,
            &tid,
            &nonce,
            &csr,
            &server.recipient,
            server.cipher,
            server.digest,
        )
        .context("the PKCSReq")?;
    Ok(Prepared {
        device: device.clone(),
        message,
        nonce,
    })
}

/// Check one answer; the serial on success.
fn check(o: &Outcome, server: &Server) -> Result<Vec<u8>, String> {
    let body = o.answer.as_ref().map_err(|e| e.clone())?;
    let reply = o
        .prepared
        .device
        .read(body)
        .map_err(|e| format!("unreadable CertRep: {e}"))?;
    if reply.signer_cert != server.recipient {
        return Err("signed by another certificate than the RA's".into());
    }
    if reply.recipient_nonce != o.prepared.nonce {
        return Err("recipientNonce is not the request's senderNonce".into());
    }
    match reply.status {
        PkiStatus::Success => {}
        PkiStatus::Pending => return Err("PENDING".into()),
        PkiStatus::Failure => {
            return Err(format!(
                "FAILURE {}",
                reply.fail_info.map(|f| f.to_string()).unwrap_or_default()
            ))
        }
    }
    let cert = reply
        .certs
        .first()
        .and_then(|c| X509::from_der(c).ok())
        .ok_or("no certificate in SUCCESS")?;
    let key_ok = cert
        .public_key()
        .map(|k| k.public_eq(&o.prepared.device.key))
        .unwrap_or(false);
    if !key_ok {
        return Err("the certificate is for another key".into());
    }
    let chain_ok = server
        .ca
        .public_key()
        .and_then(|k| cert.verify(&k))
        .unwrap_or(false);
    if !chain_ok {
        return Err("the certificate is not signed by the CA".into());
    }
    cert.serial_number()
        .to_bn()
        .map(|b| b.to_vec())
        .map_err(|e| e.to_string())
}

/// Run the load and check every answer.
pub async fn run(opts: &LoadOptions) -> anyhow::Result<LoadReport> {
    let url = opts.url.trim_end_matches('/').to_string();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.concurrency.max(1))
        .timeout(Duration::from_secs(120))
        .build()
        .context("the HTTP client")?;
    let server = Arc::new(discover(&http, &url).await?);
    // Keys before the clock.
    let pool_size = opts.key_pool.max(1);
    let bits = opts.key_bits;
    let devices: Vec<Arc<Device>> = tokio::task::spawn_blocking(move || {
        (0..pool_size)
            .map(|i| Device::rsa(bits, &format!("bench-device-{i}")).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .context("the key maker stopped")?
    .context("a device key")?;
    let devices = Arc::new(devices);
    // Fixed count: every request built before the clock as well.
    let prebuilt: Option<Arc<Vec<std::sync::Mutex<Option<Prepared>>>>> = if opts.duration.is_none()
    {
        let (d, s, c, n) = (
            devices.clone(),
            server.clone(),
            opts.challenge.clone(),
            opts.requests,
        );
        let list = tokio::task::spawn_blocking(move || {
            (0..n)
                .map(|i| {
                    prepare(&d[i % d.len()], &s, &c, i).map(|p| std::sync::Mutex::new(Some(p)))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .context("the request maker stopped")??;
        Some(Arc::new(list))
    } else {
        None
    };
    let metrics = opts.server_pid.and_then(|_| metrics_url(&url));
    let token_before = server_token_cpu(&http, metrics.as_deref()).await;
    let cpu_before = opts.server_pid.and_then(cpu_ticks);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = opts.duration.map(|d| start + d);
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (http, url, next, prebuilt, devices, server, challenge, total) = (
            http.clone(),
            url.clone(),
            next.clone(),
            prebuilt.clone(),
            devices.clone(),
            server.clone(),
            opts.challenge.clone(),
            opts.requests,
        );
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let prepared = match (&prebuilt, deadline) {
                    (Some(list), _) => match list.get(i) {
                        Some(slot) => match slot.lock().ok().and_then(|mut s| s.take()) {
                            Some(p) => p,
                            None => continue,
                        },
                        None => break,
                    },
                    (None, Some(end)) => {
                        if Instant::now() >= end {
                            break;
                        }
                        let (d, s, c) = (
                            devices[i % devices.len()].clone(),
                            server.clone(),
                            challenge.clone(),
                        );
                        match tokio::task::spawn_blocking(move || prepare(&d, &s, &c, i)).await {
                            Ok(Ok(p)) => p,
                            _ => break,
                        }
                    }
                    (None, None) => {
                        if i >= total {
                            break;
                        }
                        continue;
                    }
                };
                let t = Instant::now();
                let answer = match http
                    .post(format!("{url}?operation=PKIOperation"))
                    .header("content-type", "application/x-pki-message")
                    .body(prepared.message.clone())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r
                        .bytes()
                        .await
                        .map(|b| b.to_vec())
                        .map_err(|e| format!("reading the answer: {e}")),
                    Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                    Err(e) => Err(if e.is_timeout() {
                        "timeout".to_string()
                    } else {
                        "transport error".to_string()
                    }),
                };
                done.push(Outcome {
                    prepared,
                    latency: t.elapsed(),
                    answer,
                });
            }
            done
        }));
    }
    let mut outcomes = Vec::new();
    for w in workers {
        outcomes.extend(w.await.context("a load worker stopped")?);
    }
    let elapsed = start.elapsed();
    let cpu_after = opts.server_pid.and_then(cpu_ticks);
    let token_after = server_token_cpu(&http, metrics.as_deref()).await;
    // Checks after the clock.
    let s = server.clone();
    let checked = tokio::task::spawn_blocking(move || {
        outcomes
            .iter()
            .map(|o| (o.latency, check(o, &s)))
            .collect::<Vec<_>>()
    })
    .await
    .context("the answer checker stopped")?;
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut serials = HashSet::new();
    let mut duplicates = 0;
    let mut ok = 0;
    for (latency, result) in &checked {
        match result {
            Ok(serial) => {
                ok += 1;
                latencies.push(*latency);
                if !serials.insert(serial.clone()) {
                    duplicates += 1;
                }
            }
            Err(reason) => *failed.entry(reason.clone()).or_default() += 1,
        }
    }
    latencies.sort();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu_ms = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) if ok > 0 => {
            Some((b.saturating_sub(a)) as f64 * 1000.0 / ticks / ok as f64)
        }
        _ => None,
    };
    let cpu_ms_request = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) if !checked.is_empty() => {
            Some((b.saturating_sub(a)) as f64 * 1000.0 / ticks / checked.len() as f64)
        }
        _ => None,
    };
    let token_ms = match (token_before, token_after) {
        (Some(a), Some(b)) if ok > 0 => Some((b - a).max(0.0) * 1000.0 / ok as f64),
        _ => None,
    };
    let host_ms = cpu_ms.zip(token_ms).map(|(all, token)| all - token);
    Ok(LoadReport {
        url,
        concurrency: opts.concurrency,
        requests: checked.len(),
        ok,
        failed,
        elapsed_s: elapsed.as_secs_f64(),
        enrollments_per_s: ok as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: percentile(&latencies, 0.50),
        p95_ms: percentile(&latencies, 0.95),
        p99_ms: percentile(&latencies, 0.99),
        duplicate_serials: duplicates,
        server_cpu_ms_per_enrollment: cpu_ms,
        server_cpu_ms_per_request: cpu_ms_request,
        server_peak_rss_mb: opts.server_pid.and_then(peak_rss_mb),
        server_token_cpu_ms_per_enrollment: token_ms,
        server_host_cpu_ms_per_enrollment: host_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_cpu_is_read_from_a_metrics_page() {
        assert_eq!(
            metrics_url("http://127.0.0.1:8080/scep/derived").as_deref(),
            Some("http://127.0.0.1:8080/metrics")
        );
        assert_eq!(
            metrics_url("https://h/scep").as_deref(),
            Some("https://h/metrics")
        );
        assert_eq!(metrics_url("no-scheme"), None);
        let page = "# HELP sigil_hsm_cpu_seconds_total CPU\n\
                    # TYPE sigil_hsm_cpu_seconds_total counter\n\
                    sigil_hsm_cpu_seconds_total{op=\"sign\"} 1.5\n\
                    sigil_hsm_cpu_seconds_total{op=\"decrypt\"} 0.25\n\
                    sigil_hsm_cpu_seconds_total_other 9\n\
                    sigil_hsm_operations_total{op=\"sign\",outcome=\"ok\"} 7\n";
        assert_eq!(token_cpu_seconds(page), Some(1.75));
        assert_eq!(token_cpu_seconds("sigil_http_requests_total 3\n"), None);
    }

    #[test]
    fn percentiles_and_proc_parsing() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 0.5).round(), 51.0);
        assert_eq!(percentile(&d, 0.99).round(), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(peak_rss_mb(me).unwrap() > 1.0);
        assert!(cpu_ticks(u32::MAX).is_none());
    }
}
