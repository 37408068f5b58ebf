//! What the gateway refuses before anything reaches a core: routes and methods outside the
//! public set, operations outside SCEP's, query strings and bodies over the limits, base64 that
//! does not decode, messages that are not DER, and sources over their rate. Pure functions and
//! a token bucket, so each rule is tested on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::wire::{is_der_sequence, lenient_base64, query_param};

/// The public routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/scep`, `/scep/{profile}`, `/cgi-bin/pkiclient.exe`, `/certsrv/mscep/mscep.dll`.
    Scep,
    /// `/crl/{name}.crl`.
    Crl,
    /// `/ocsp` (POST) and `/ocsp/{base64}` (GET).
    Ocsp,
    /// `/healthz`: the gateway's own.
    Health,
}

/// Why a request is refused: an HTTP status and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Why (sent to the client and logged).
    pub reason: String,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Which public route a path and method are, or why not.
pub fn route(method: &str, path: &str) -> Result<Route, Refusal> {
    let get_post = matches!(method, "GET" | "POST");
    let scep = matches!(
        path,
        "/scep" | "/cgi-bin/pkiclient.exe" | "/certsrv/mscep/mscep.dll"
    ) || path
        .strip_prefix("/scep/")
        .is_some_and(|p| name_ok(p) && !p.contains('.'));
    if scep {
        return if get_post {
            Ok(Route::Scep)
        } else {
            Err(refuse(
                405,
                format!("{method} is not a SCEP method (GET or POST)"),
            ))
        };
    }
    if let Some(file) = path.strip_prefix("/crl/") {
        // `<ca>.crl`, or a partition's `<ca>/<YYYY-Www>.crl`.
        let (ca, file) = match file.split_once('/') {
            Some((ca, file)) => (Some(ca), file),
            None => (None, file),
        };
        if !ca.is_none_or(name_ok) || !file.strip_suffix(".crl").is_some_and(name_ok) {
            return Err(refuse(404, "no such CRL"));
        }
        return if method == "GET" {
            Ok(Route::Crl)
        } else {
            Err(refuse(405, "CRLs are fetched with GET"))
        };
    }
    if path == "/ocsp" {
        return if method == "POST" {
            Ok(Route::Ocsp)
        } else {
            Err(refuse(405, "OCSP at /ocsp is POST; GET is /ocsp/<base64>"))
        };
    }
    if path.starts_with("/ocsp/") {
        return if method == "GET" {
            Ok(Route::Ocsp)
        } else {
            Err(refuse(405, "OCSP by GET only at /ocsp/<base64>"))
        };
    }
    if path == "/healthz" && method == "GET" {
        return Ok(Route::Health);
    }
    Err(refuse(
        404,
        "not a public route (SCEP, /crl/<ca>.crl, /crl/<ca>/<week>.crl, /ocsp)",
    ))
}

/// Check a SCEP request: the operation, and for PKIOperation the message (query or body).
pub fn scep(method: &str, query: &str, body: &[u8]) -> Result<(), Refusal> {
    let Some(op) = query_param(query, "operation") else {
        return Err(refuse(400, "missing operation="));
    };
    match op.as_str() {
        "GetCACaps" | "GetCACert" | "GetNextCACert" => {
            if method != "GET" {
                return Err(refuse(405, format!("{op} is a GET")));
            }
            Ok(())
        }
        "PKIOperation" => {
            let message = if method == "POST" {
                if body.is_empty() {
                    return Err(refuse(400, "PKIOperation by POST needs a body"));
                }
                if body[0] == 0x30 {
                    body.to_vec()
                } else {
                    std::str::from_utf8(body)
                        .ok()
                        .and_then(lenient_base64)
                        .ok_or_else(|| refuse(400, "the body is neither DER nor base64"))?
                }
            } else {
                let text = query_param(query, "message")
                    .ok_or_else(|| refuse(400, "PKIOperation by GET needs message="))?;
                lenient_base64(&text).ok_or_else(|| refuse(400, "message= is not base64"))?
            };
            if !is_der_sequence(&message) {
                return Err(refuse(400, "the pkiMessage is not a DER SEQUENCE"));
            }
            Ok(())
        }
        other => Err(refuse(
            400,
            format!("`{other}` is not a SCEP operation (GetCACaps, GetCACert, GetNextCACert, PKIOperation)"),
        )),
    }
}

/// Check an OCSP request: a DER body (POST) or base64 in the path (GET).
pub fn ocsp(method: &str, path: &str, body: &[u8]) -> Result<(), Refusal> {
    let der = if method == "POST" {
        body.to_vec()
    } else {
        let raw = path.trim_start_matches("/ocsp/");
        let text = query_param(&format!("r={raw}"), "r").unwrap_or_default();
        lenient_base64(&text).ok_or_else(|| refuse(400, "the OCSP request is not base64"))?
    };
    if der.len() > 16 * 1024 || !is_der_sequence(&der) {
        return Err(refuse(
            400,
            "not an OCSP request (a DER SEQUENCE up to 16 KiB)",
        ));
    }
    Ok(())
}

/// Sources tracked at most; beyond, idle ones are forgotten first.
const MAX_SOURCES: usize = 100_000;

/// The bucket newcomers share while the table is full of busy sources (no client sends from
/// the unspecified address).
const OVERFLOW: IpAddr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

/// A token bucket per source address (IPv6 by /64).
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` tokens a second, at most `burst` saved.
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take a token for `ip`; `Err(seconds)` until one is there.
    pub fn take(&self, ip: IpAddr) -> Result<(), u64> {
        let key = match ip {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
            v4 => v4,
        };
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SOURCES && !map.contains_key(&key) {
            let full = self.burst;
            let rate = self.rate;
            map.retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < full);
        }
        // Still full of sources that are all busy: a new one shares one bucket with every
        // other newcomer (none gets a fresh budget, and none that has one loses it), until
        // some source has been quiet long enough to be forgotten.
        let key = if map.len() >= MAX_SOURCES && !map.contains_key(&key) {
            OVERFLOW
        } else {
            key
        };
        let e = map.entry(key).or_insert((self.burst, now));
        e.0 = (e.0 + now.duration_since(e.1).as_secs_f64() * self.rate).min(self.burst);
        e.1 = now;
        if e.0 >= 1.0 {
            e.0 -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - e.0) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn a_full_table_gives_no_one_a_fresh_budget() {
        let limiter = RateLimiter::new(0.0001, 1);
        let source = |i: usize| IpAddr::from((0x0a00_0000u32 + i as u32).to_be_bytes());
        for i in 0..MAX_SOURCES {
            assert!(limiter.take(source(i)).is_ok());
        }
        // Every source has spent its budget; none is forgotten, none starts over.
        assert!(limiter.take(source(7)).is_err());
        // Newcomers share one bucket: the first gets its request, the next waits.
        assert!(limiter.take(IpAddr::from([192, 0, 2, 1])).is_ok());
        assert!(limiter.take(IpAddr::from([192, 0, 2, 2])).is_err());
        assert!(limiter.take(source(8)).is_err());
    }

    #[test]
    fn query_escapes_never_split_a_character() {
        // A `%` before a multibyte character is kept as is, not sliced through.
        assert_eq!(
            query_param("message=%a\u{e9}b", "message").as_deref(),
            Some("%a\u{e9}b")
        );
        assert_eq!(
            query_param("message=%\u{e9}", "message").as_deref(),
            Some("%\u{e9}")
        );
        // Only two hex digits make an escape: a sign is not a digit.
        assert_eq!(
            query_param("message=%+1", "message").as_deref(),
            Some("%+1")
        );
        assert_eq!(
            query_param("message=a%2Bb%2", "message").as_deref(),
            Some("a+b%2")
        );
    }

    #[test]
    fn only_public_routes_and_methods_pass() {
        assert_eq!(route("GET", "/scep"), Ok(Route::Scep));
        assert_eq!(route("POST", "/scep/devices"), Ok(Route::Scep));
        assert_eq!(route("GET", "/certsrv/mscep/mscep.dll"), Ok(Route::Scep));
        assert_eq!(route("GET", "/cgi-bin/pkiclient.exe"), Ok(Route::Scep));
        assert_eq!(route("GET", "/crl/sigil-ca.crl"), Ok(Route::Crl));
        assert_eq!(route("GET", "/crl/sigil-ca/2027-W49.crl"), Ok(Route::Crl));
        assert_eq!(route("POST", "/ocsp"), Ok(Route::Ocsp));
        assert_eq!(route("GET", "/ocsp/MEUwQzBB"), Ok(Route::Ocsp));
        assert_eq!(route("PUT", "/scep").unwrap_err().status, 405);
        assert_eq!(route("DELETE", "/crl/x.crl").unwrap_err().status, 405);
        for p in [
            "/api/v1/tokens",
            "/metrics",
            "/certsrv/mscep_admin/",
            "/crl/../etc/passwd",
            "/crl/../x.crl",
            "/crl/./x.crl",
            "/crl/ca/../x.crl",
            "/crl/ca/2027-W49/x.crl",
            "/crl/ca/2027-W49",
            "/crl//x.crl",
            "/crl/...crl",
            "/scep/../api",
            "/readyz",
        ] {
            assert_eq!(route("GET", p).unwrap_err().status, 404, "{p}");
        }
    }

    #[test]
    fn scep_operations_and_messages_are_checked() {
        let der = [0x30, 0x03, 0x02, 0x01, 0x00];
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        assert!(scep("GET", "operation=GetCACaps", b"").is_ok());
        assert!(scep("POST", "operation=PKIOperation", &der).is_ok());
        assert!(scep("POST", "operation=PKIOperation", b64.as_bytes()).is_ok());
        assert!(scep("GET", &format!("operation=PKIOperation&message={b64}"), b"").is_ok());
        for (m, q, body, status) in [
            ("GET", "", &b""[..], 400),
            ("GET", "operation=DeleteCA", b"", 400),
            ("POST", "operation=GetCACert", b"", 405),
            ("POST", "operation=PKIOperation", b"", 400),
            ("POST", "operation=PKIOperation", b"%%% not base64 %%%", 400),
            ("GET", "operation=PKIOperation&message=!!!", b"", 400),
            ("GET", "operation=PKIOperation", b"", 400),
            (
                "POST",
                "operation=PKIOperation",
                &[0x30, 0x09, 0x01][..],
                400,
            ),
        ] {
            assert_eq!(scep(m, q, body).unwrap_err().status, status, "{m} {q}");
        }
    }

    #[test]
    fn buckets_refill_at_the_rate() {
        let l = RateLimiter::new(1000.0, 2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.take(ip).is_ok() && l.take(ip).is_ok());
        assert!(l.take(ip).is_err());
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(l.take(ip).is_ok(), "refilled");
        let slow = RateLimiter::new(0.1, 1);
        assert!(slow.take(ip).is_ok());
        assert_eq!(slow.take(ip), Err(10));
        assert!(
            slow.take("192.0.2.2".parse().unwrap()).is_ok(),
            "per source"
        );
    }
}
