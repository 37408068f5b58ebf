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
