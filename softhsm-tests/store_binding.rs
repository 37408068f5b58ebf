//! One CA, one store: `sigil serve` refuses a store it was not bound to, never creates one by
//! itself, and a token refuses a second store (issue: a `serve` started elsewhere once made an
//! empty store and served the CA without its revocations).

use std::process::Output;

use crate::common::{ok, TokenDir};

/// Exit status 2 and one `error:` line holding every needle.
fn refused(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "not refused:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    for n in needles {
        assert!(errors[0].contains(n), "`{n}` not in `{}`", errors[0]);
    }
}

/// `sigil serve` with its data in `data`: it must stop at start-up (these are refusals).
fn serve_in(t: &TokenDir, data: &std::path::Path) -> Output {
    t.sigil()
        .env("SIGIL_SERVER_DATA_DIR", data)
        .env("SIGIL_SERVER_LISTEN", "127.0.0.1:0")
        .arg("serve")
        .output()
        .unwrap()
}

#[test]
fn a_store_serves_only_its_own_ca_and_is_never_made_implicitly() {
    let t = TokenDir::new();
    ok(&t.run(&["init", "--ca-key", "p256"]));
    // The data directory is the owner's only, whatever the umask; the database file too.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&t.data()), 0o700);
    assert_eq!(mode(&t.data().join("sigil.db")), 0o600);

    // Started elsewhere (the quickstart's environment, another directory): no empty store.
    let elsewhere = t.path().join("elsewhere");
    refused(
        &serve_in(&t, &elsewhere),
        &["no store at", "sigil init", "sigil db migrate --create"],
    );
    assert!(!elsewhere.join("sigil.db").exists(), "a store was made");
    let plain_migrate = t
        .sigil()
        .env("SIGIL_SERVER_DATA_DIR", &elsewhere)
        .args(["db", "migrate"])
        .output()
        .unwrap();
    refused(&plain_migrate, &["no store at", "--create"]);

    // A second store for the same token is refused: the token knows its store.
    let second = t
        .sigil()
        .env("SIGIL_SERVER_DATA_DIR", &elsewhere)
        .args(["db", "migrate", "--create"])
        .output()
        .unwrap();
    refused(&second, &["already belongs to store", "--replace-store"]);

    // Another CA's store is refused too.
    let other = TokenDir::new();
    ok(&other.run(&["init", "--ca-key", "p256"]));
    refused(
        &serve_in(&t, &other.data()),
        &["belongs to another CA", "SHA-256"],
    );

    // The store made by `init` serves.
    let port = crate::common::free_port();
    let mut child = t
        .sigil()
        .env("SIGIL_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .arg("serve")
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while reqwest::blocking::get(&url).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // A store lost for good is replaced on purpose; the old one is then refused.
    ok(&t
        .sigil()
        .env("SIGIL_SERVER_DATA_DIR", &elsewhere)
        .args(["db", "migrate", "--create", "--replace-store"])
        .output()
        .unwrap());
    refused(
        &serve_in(&t, &t.data()),
        &["belongs to store", "this is store"],
    );
    let audit = ok(&t
        .sigil()
        .env("SIGIL_SERVER_DATA_DIR", &elsewhere)
        .args(["audit", "export"])
        .output()
        .unwrap());
    assert!(audit.contains("store_rebound"), "{audit}");
}

#[test]
fn an_empty_postgres_database_is_not_made_a_store_by_serve() {
    let t = TokenDir::new();
    ok(&t.run(&["init", "--ca-key", "p256"]));
    let url = crate::multinode::pg_schema_url();
    let out = t
        .sigil()
        .env("SIGIL_DATABASE_URL", &url)
        .env("SIGIL_SERVER_LISTEN", "127.0.0.1:0")
        .arg("serve")
        .output()
        .unwrap();
    refused(&out, &["no Sigil schema", "sigil db migrate --create"]);
    // The token already has its store (the SQLite one `init` made).
    let out = t
        .sigil()
        .env("SIGIL_DATABASE_URL", &url)
        .args(["db", "migrate", "--create"])
        .output()
        .unwrap();
    refused(&out, &["already belongs to store"]);
}
