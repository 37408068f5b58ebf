//! `sigil serve` basics: health, readiness, metrics, graceful stop on SIGTERM.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, ok, TokenDir};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(t: &TokenDir) -> Server {
    let port = free_port();
    let child = t
        .sigil()
        .env("SIGIL_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("SIGIL_SERVER_WORKERS", "2")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sigil serve");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::blocking::get(format!("{}/healthz", server.base)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("sigil serve did not come up on {}", server.base);
}

#[test]
fn health_readiness_metrics_and_sigterm() {
    let t = TokenDir::new();
    ok(&t.run(&["init", "--ca-key", "p256"]));
    let mut s = start(&t);
    let health = reqwest::blocking::get(format!("{}/healthz", s.base)).unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::blocking::get(format!("{}/readyz", s.base)).unwrap();
    assert_eq!(ready.status(), 200);
    assert!(ready.text().unwrap().contains("\"ready\""));
    let metrics = reqwest::blocking::get(format!("{}/metrics", s.base)).unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().unwrap();
    for needle in [
        "sigil_hsm_operations_total{op=\"sign\",outcome=\"ok\"}",
        "sigil_hsm_operation_seconds_bucket{op=\"sign\"",
        "sigil_hsm_pool_size 4",
        "sigil_hsm_pool_waiters",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from /metrics:\n{text}"
        );
    }
    let missing = reqwest::blocking::get(format!("{}/nothing-here", s.base)).unwrap();
    assert_eq!(missing.status(), 404);

    // SIGTERM: graceful stop, exit status 0.
    let pid = s.child.id() as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe {
        assert_eq!(libc_kill(pid, 15), 0);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            assert!(
                status.success(),
                "sigil serve exited with {status:?} after SIGTERM"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sigil serve did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn readiness_fails_when_the_token_cannot_sign() {
    let t = TokenDir::new();
    ok(&t.run(&["init", "--ca-key", "p256"]));
    let s = start(&t);
    let ready = reqwest::blocking::get(format!("{}/readyz", s.base)).unwrap();
    assert_eq!(ready.status(), 200);
    // Another process deletes the CA key from the token underneath the running server.
    let pin = std::fs::read_to_string(t.path().join("user.pin")).unwrap();
    ok(&std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", t.path().join("softhsm2.conf"))
        .args([
            "--module",
            crate::common::MODULE,
            "--token-label",
            "sigil",
            "--login",
            "--pin",
        ])
        .arg(pin.trim())
        .args([
            "--delete-object",
            "--type",
            "privkey",
            "--label",
            "sigil-ca",
        ])
        .output()
        .unwrap());
    // After the readiness cache expires, /readyz says 503 with the reason; /healthz stays 200.
    std::thread::sleep(Duration::from_millis(2100));
    let ready = reqwest::blocking::get(format!("{}/readyz", s.base)).unwrap();
    assert_eq!(ready.status(), 503);
    let body = ready.text().unwrap();
    assert!(body.contains("sigil-ca"), "{body}");
    let health = reqwest::blocking::get(format!("{}/healthz", s.base)).unwrap();
    assert_eq!(health.status(), 200);
}
