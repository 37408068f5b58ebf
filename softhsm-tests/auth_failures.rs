//! Guessing API tokens: failed authentications are limited per source, a valid token still
//! gets through from that source, and the audit chain records the source once per window.

use serde_json::Value;

use crate::api::{call, new_token};
use crate::scep::ScepServer;

#[test]
fn failed_authentications_are_limited_per_source_and_recorded_once() {
    let s = ScepServer::start();
    let (auditor, _) = new_token(&s, "auditor", "auditor");
    // Twenty wrong tokens in a minute are each told 401; from the next one on, 429.
    for i in 0..25 {
        let r = call(
            &s,
            "GET",
            "/api/v1/tokens",
            Some(&format!("sigil_guess{i}")),
            None,
        );
        if i < 20 {
            assert_eq!(r.status(), 401, "guess {i}");
        } else {
            assert_eq!(r.status(), 429, "guess {i}");
            let body: Value = r.json().unwrap();
            assert_eq!(body["error"], "too_many_failures", "{body}");
        }
    }
    // Without trusted proxies, X-Forwarded-For is the client's own word: it does not buy a
    // fresh budget.
    let spoofed = s
        .http
        .get(format!("{}/api/v1/tokens", s.base))
        .bearer_auth("sigil_guess_spoofed")
        .header("X-Forwarded-For", "198.51.100.200")
        .send()
        .unwrap();
    assert_eq!(spoofed.status(), 429);
    // The limit is on failures: the valid tokens of that address still work.
    assert_eq!(
        call(&s, "GET", "/api/v1/tokens", Some(&s.admin), None).status(),
        200
    );
    // One audit record for the source in this window, however many guesses.
    let log: Value = call(&s, "GET", "/api/v1/audit", Some(&auditor), None)
        .json()
        .unwrap();
    let failed: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "login_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["actor"].as_str().unwrap().starts_with("source:"),
        "{failed:?}"
    );
}

/// Behind a load balancer (`server.trusted_proxies`), each client has its own budget, named by
/// the proxy's `X-Forwarded-For`, and the audit names the client, not the proxy.
#[test]
fn behind_a_trusted_proxy_each_client_has_its_own_budget() {
    let s = ScepServer::start_with("\n[server]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let (auditor, _) = new_token(&s, "auditor", "auditor");
    let guess = |xff: &str, i: usize| {
        s.http
            .get(format!("{}/api/v1/tokens", s.base))
            .bearer_auth(format!("sigil_guess{i}"))
            // What the client claimed, then what the proxy appended.
            .header("X-Forwarded-For", format!("10.9.9.9, {xff}"))
            .send()
            .unwrap()
            .status()
    };
    for i in 0..21 {
        let want = if i < 20 { 401 } else { 429 };
        assert_eq!(guess("198.51.100.7", i), want, "guess {i}");
    }
    // Another client behind the same proxy is not held up by the first one's guesses.
    assert_eq!(guess("198.51.100.8", 99), 401);
    let log: Value = call(&s, "GET", "/api/v1/audit", Some(&auditor), None)
        .json()
        .unwrap();
    let sources: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "login_failed")
        .map(|r| r["actor"].as_str().unwrap())
        .collect();
    assert!(sources.contains(&"source:198.51.100.7"), "{sources:?}");
    assert!(sources.contains(&"source:198.51.100.8"), "{sources:?}");
    assert!(
        !sources
            .iter()
            .any(|s| s.contains("127.0.0.1") || s.contains("10.9.9.9")),
        "{sources:?}"
    );
    // The access log names the client too.
    assert!(
        s.log().contains("198.51.100.8 \"GET /api/v1/tokens"),
        "{}",
        s.log()
    );
    // The console needs TLS to the client: through the trusted proxy, only its word that the
    // client reached it over TLS counts (this host being the proxy does not make it private).
    let console = |proto: Option<&str>| {
        let mut r = s
            .http
            .get(format!("{}/console/", s.base))
            .header("X-Forwarded-For", "198.51.100.9");
        if let Some(p) = proto {
            r = r.header("X-Forwarded-Proto", p);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(console(None), 403);
    assert_eq!(console(Some("http")), 403);
    assert_eq!(console(Some("https, http")), 403, "the client's own claim");
    assert_ne!(console(Some("https")), 403);
}
