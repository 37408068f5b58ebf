//! The REST API and the NDES challenge page, over HTTP against a real `sigil serve`: the role
//! matrix, token rotation, the MDM flow with one-time challenges (scepclient and Sigil's own
//! client), the NDES page, approvals, and bad input.
//!
//! Over 800 lines: the role matrix and the MDM flows need one live server and shared HTTP
//! helpers; splitting them would copy those.

use std::process::Command;

use openssl::x509::X509;
use reqwest::blocking::{RequestBuilder, Response};
use serde_json::{json, Value};
use sigil::authority::access::Role;
use sigil::http::api::ROUTES;
use sigil::scep::client::{issuer_and_subject, Device};
use sigil::scep::{ContentCipher, DigestAlg, FailInfo, MessageType, Nonce, PkiStatus};

use crate::scep::{new_device, ScepServer, CHALLENGE};

fn auth(r: RequestBuilder, token: Option<&str>) -> RequestBuilder {
    match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

pub(crate) fn call(
    s: &ScepServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Response {
    let url = format!("{}{path}", s.base);
    let r = match method {
        "GET" => s.http.get(url),
        "POST" => s.http.post(url),
        "DELETE" => s.http.delete(url),
        other => panic!("{other}"),
    };
    let r = auth(r, token);
    let r = match body {
        Some(b) => r.json(&b),
        None => r,
    };
    r.send().unwrap()
}

/// A token of `role`. An mdm token is made by the admin (approved by the second) and scoped
/// to every profile and directory open to integrations; a person's token is made on the host,
/// so that each is a person of its own (tokens an admin makes are the admin's).
pub(crate) fn new_token(s: &ScepServer, role: &str, name: &str) -> (String, String) {
    if role == "mdm" {
        new_token_with(
            s,
            json!({"role": role, "name": name, "profiles": ["*"], "directories": ["*"]}),
        )
    } else {
        s.host_token(role, name)
    }
}

/// A token asked for by an admin (made on the host: the break-glass token asks for no token a
/// second person approves) from a request body; one that grants power is approved by the
/// second admin.
pub(crate) fn new_token_with(s: &ScepServer, body: Value) -> (String, String) {
    let (asker, _) = s.host_token("admin", "asking admin");
    let r = call(s, "POST", "/api/v1/tokens", Some(&asker), Some(body));
    assert_eq!(r.status(), 201);
    let v: Value = r.json().unwrap();
    if v["awaiting_approval"] == true {
        let path = format!("/api/v1/tokens/{}/approve", v["id"].as_str().unwrap());
        let r = call(s, "POST", &path, Some(&s.second_admin), None);
        assert_eq!(r.status(), 204, "{}", r.text().unwrap());
    }
    (
        v["token"].as_str().unwrap().to_owned(),
        v["id"].as_str().unwrap().to_owned(),
    )
}

fn challenge(s: &ScepServer, mdm: &str, body: Value) -> String {
    let r = call(s, "POST", "/api/v1/challenges", Some(mdm), Some(body));
    assert_eq!(r.status(), 201);
    let v: Value = r.json().unwrap();
    assert!(v["expires_at"].as_str().is_some());
    v["challenge"].as_str().unwrap().to_owned()
}

/// PKCSReq with Sigil's own client; returns the device and its reply.
pub(crate) fn enroll_with(
    s: &ScepServer,
    profile: &str,
    cn: &str,
    challenge: &str,
) -> (Device, String, sigil::scep::client::Reply) {
    let d = new_device(cn);
    let csr = d.csr(cn, Some(challenge), &[]).unwrap();
    let tid = hex::encode(openssl::sha::sha1(&d.key.public_key_to_der().unwrap()));
    let msg = d
        .request(
            MessageType::PkcsReq,
            &tid,
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            ContentCipher::Aes128Cbc,
            DigestAlg::Sha256,
        )
        .unwrap();
    let reply = d.read(&s.pki(profile, msg, false)).unwrap();
    (d, tid, reply)
}

#[test]
fn every_route_checks_every_role() {
    let s = ScepServer::start();
    let mut tokens = vec![(None, "no token")];
    let made: Vec<(Role, String)> = Role::ALL
        .iter()
        .map(|r| {
            (
                *r,
                new_token(&s, r.as_str(), &format!("matrix-{}", r.as_str())).0,
            )
        })
        .collect();
    for (r, t) in &made {
        tokens.push((Some(t.as_str()), r.as_str()));
    }
    let mut checked = 0;
    for (method, pattern, allowed) in ROUTES {
        let path = pattern
            .replace("{id}", "does-not-exist")
            .replace("{serial}", "00");
        for (token, who) in &tokens {
            let body = (*method == "POST").then(|| json!({}));
            let status = call(&s, method, &path, *token, body).status().as_u16();
            let expected_allowed = made
                .iter()
                .any(|(r, t)| Some(t.as_str()) == *token && allowed.contains(r));
            match (token, expected_allowed) {
                (None, _) => assert_eq!(status, 401, "{method} {path} without a token"),
                (Some(_), false) => assert_eq!(status, 403, "{method} {path} as {who}"),
                // The token routes are open to people for their own tokens, signed in: a
                // non-admin *token* is refused by the core (own_tokens.rs has both sides).
                (Some(_), true) if pattern.starts_with("/api/v1/tokens") && *who != "admin" => {
                    assert!(
                        status != 401,
                        "{method} {path} as {who} was refused with {status}"
                    )
                }
                (Some(_), true) => assert!(
                    status != 401 && status != 403,
                    "{method} {path} as {who} was refused with {status}"
                ),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * (Role::ALL.len() + 1));
    // A wrong token is a 401 and says nothing about why beyond that.
    let r = call(&s, "GET", "/api/v1/tokens", Some("sigil_0000"), None);
    assert_eq!(r.status(), 401);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"], "unauthenticated");
    // The OpenAPI document is public and names every route.
    let doc: Value = call(&s, "GET", "/api/v1/openapi.json", None, None)
        .json()
        .unwrap();
    for (_, pattern, _) in ROUTES {
        let p = pattern.trim_start_matches("/api/v1");
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from openapi.json"
        );
    }
    // ...and every documented operation has its roles in the matrix (a route missing there
    // would refuse everyone).
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if path == "/openapi.json" {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            let full = format!("/api/v1{path}");
            assert!(
                ROUTES
                    .iter()
                    .any(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == full),
                "{method} {full} is documented but has no roles in ROUTES"
            );
        }
    }
}

#[test]
fn mdm_tokens_rotate_and_challenges_work_once() {
    let s = ScepServer::start();
    let (mdm_a, id_a) = new_token(&s, "mdm", "mdm-a");
    let (mdm_b, _) = new_token(&s, "mdm", "mdm-b");
    // Both active tokens work; after revoking one, it gets 401 and the other still works.
    challenge(&s, &mdm_a, json!({}));
    challenge(&s, &mdm_b, json!({}));
    assert_eq!(
        call(
            &s,
            "DELETE",
            &format!("/api/v1/tokens/{id_a}"),
            Some(&s.admin),
            None
        )
        .status(),
        204
    );
    assert_eq!(
        call(
            &s,
            "POST",
            "/api/v1/challenges",
            Some(&mdm_a),
            Some(json!({}))
        )
        .status(),
        401
    );
    challenge(&s, &mdm_b, json!({}));
    let listed: Value = call(&s, "GET", "/api/v1/tokens", Some(&s.admin), None)
        .json()
        .unwrap();
    let text = listed.to_string();
    assert!(
        !text.contains(&mdm_b) && !text.contains("hash"),
        "secrets must not be listed"
    );

    // scepclient enrolls with a one-time challenge (legacy profile: it uses DES); a second use
    // of the same challenge gets FAILURE badRequest.
    crate::common::ensure_tool("scepclient", "scep");
    let otp = challenge(&s, &mdm_b, json!({"profile": "legacy"}));
    assert!(
        otp.bytes().all(|c| c.is_ascii_alphanumeric()),
        "PrintableString-safe: {otp}"
    );
    let ra_fp = hex::encode(openssl::sha::sha256(&s.ra));
    let run = |dir: &str| {
        let dir = s.token.path().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("scepclient")
            .current_dir(&dir)
            .args(["-server-url", &format!("{}/scep/legacy", s.base)])
            .args([
                "-challenge",
                &otp,
                "-cn",
                "mdm-device",
                "-ca-fingerprint",
                &ra_fp,
            ])
            .args(["-private-key", "k.pem", "-certificate", "c.pem"])
            .output()
            .unwrap();
        (out, dir)
    };
    let (out, dir) = run("otp-1");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    crate::common::openssl_verify(&s.ca_pem(), &dir.join("c.pem"));
    let (out, dir) = run("otp-2");
    assert!(!dir.join("c.pem").exists());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("badRequest"), "{all}");
    assert!(s.log().contains("the one-time challenge was already used"));

    // An expired challenge fails the same way.
    let out = s
        .token
        .sigil()
        .env("SIGIL_CONFIG", s.token.path().join("sigil.toml"))
        .args(["challenge", "create", "--ttl", "1s"])
        .output()
        .unwrap();
    let short = crate::common::ok(&out).trim().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (_, _, r) = enroll_with(&s, "default", "late", &short);
    assert_eq!(r.fail_info, Some(FailInfo::BadRequest));
    assert!(r.fail_text.unwrap().contains("expired"));

    // A challenge bound to CN dev-1 refuses a CSR for dev-2, and serves dev-1.
    let bound = challenge(&s, &mdm_b, json!({"cn": "dev-1", "ttl_minutes": 5}));
    let (_, _, r) = enroll_with(&s, "default", "dev-2", &bound);
    assert_eq!(r.fail_info, Some(FailInfo::BadRequest));
    assert!(r.fail_text.unwrap().contains("bound to CN `dev-1`"));
    // Bindings are exact: dev-1 with an extra SAN is refused too.
    let d = new_device("dev-1");
    let csr = d
        .csr("dev-1", Some(&bound), &["dns:admin.corp.example"])
        .unwrap();
    let msg = d
        .request(
            MessageType::PkcsReq,
            "bound-extra-san",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            ContentCipher::Aes128Cbc,
            DigestAlg::Sha256,
        )
        .unwrap();
    let r = d.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.fail_info, Some(FailInfo::BadRequest));
    let (_, _, r) = enroll_with(&s, "default", "dev-1", &bound);
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    // Bindings that can never match are refused when the challenge is made.
    let r = call(
        &s,
        "POST",
        "/api/v1/challenges",
        Some(&mdm_b),
        Some(json!({"sans": ["dev-1"]})),
    );
    assert_eq!(r.status(), 400);
}

#[test]
fn ndes_challenge_page() {
    let s = ScepServer::start();
    let (mdm, _) = new_token(&s, "mdm", "workspace-one");
    let page = |password: Option<&str>| {
        let r = s.http.get(format!("{}/certsrv/mscep_admin/", s.base));
        match password {
            Some(p) => r.basic_auth("anyone", Some(p)),
            None => r,
        }
        .send()
        .unwrap()
    };
    assert_eq!(page(None).status(), 401);
    assert_eq!(page(Some("wrong")).status(), 401);
    assert_eq!(page(Some(&s.admin)).status(), 403, "only mdm tokens");
    let r = page(Some(&mdm));
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().unwrap();
    // UTF-16LE with a byte-order mark, as NDES sends it.
    assert_eq!(&bytes[..2], &[0xff, 0xfe]);
    let units: Vec<u16> = bytes[2..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let html = String::from_utf16(&units).unwrap();
    let challenge = html
        .split("The enrollment challenge password is: <B> ")
        .nth(1)
        .and_then(|rest| rest.split(" </B>").next())
        .expect("challenge in the NDES page")
        .to_owned();
    let (_, _, r) = enroll_with(&s, "default", "ndes-device", &challenge);
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    // The JSON variant.
    let v: Value = s
        .http
        .get(format!("{}/certsrv/mscep_admin/json", s.base))
        .basic_auth("x", Some(&mdm))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["challenge"].as_str().unwrap().len(), 32);
}

#[test]
fn officers_approve_and_reject_pending_enrollments() {
    let s = ScepServer::start();
    let (officer, _) = new_token(&s, "officer", "security-officer");
    let (mdm, _) = new_token(&s, "mdm", "mdm");
    let poll = |d: &Device, tid: &str| {
        let ca = X509::from_der(&s.ca)
            .unwrap()
            .subject_name()
            .to_der()
            .unwrap();
        let msg = d
            .request(
                MessageType::CertPoll,
                tid,
                &Nonce::random().unwrap(),
                &issuer_and_subject(&ca, &ca),
                &s.ra,
                ContentCipher::Aes128Cbc,
                DigestAlg::Sha256,
            )
            .unwrap();
        d.read(&s.pki("approval", msg, false)).unwrap()
    };
    let (d1, t1, r) = enroll_with(&s, "approval", "approve-me", CHALLENGE);
    assert_eq!(r.status, PkiStatus::Pending);
    let (d2, t2, r) = enroll_with(&s, "approval", "reject-me", CHALLENGE);
    assert_eq!(r.status, PkiStatus::Pending);
    let queue: Value = call(&s, "GET", "/api/v1/approvals", Some(&officer), None)
        .json()
        .unwrap();
    let ids: Vec<&str> = queue
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["transaction_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&t1.as_str()) && ids.contains(&t2.as_str()),
        "{queue}"
    );
    assert_eq!(
        call(
            &s,
            "POST",
            &format!("/api/v1/approvals/{t1}/approve"),
            Some(&mdm),
            None
        )
        .status(),
        403
    );
    let r = call(
        &s,
        "POST",
        &format!("/api/v1/approvals/{t1}/approve"),
        Some(&officer),
        Some(json!({"comment": "device checked"})),
    );
    assert_eq!(r.status(), 200);
    let r = poll(&d1, &t1);
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    assert!(X509::from_der(&r.certs[0])
        .unwrap()
        .public_key()
        .unwrap()
        .public_eq(&d1.key));
    let r = call(
        &s,
        "POST",
        &format!("/api/v1/approvals/{t2}/reject"),
        Some(&officer),
        Some(json!({"comment": "unknown device"})),
    );
    assert_eq!(r.status(), 200);
    let r = poll(&d2, &t2);
    assert_eq!(r.status, PkiStatus::Failure);
    assert!(r.fail_text.unwrap().contains("unknown device"));
    // Twice is a conflict; unknown is 404.
    assert_eq!(
        call(
            &s,
            "POST",
            &format!("/api/v1/approvals/{t1}/approve"),
            Some(&officer),
            None
        )
        .status(),
        409
    );
    assert_eq!(
        call(
            &s,
            "POST",
            "/api/v1/approvals/nope/reject",
            Some(&officer),
            None
        )
        .status(),
        404
    );
    // The issued certificate is readable through the API.
    let certs: Value = call(
        &s,
        "GET",
        "/api/v1/certificates?profile=approval",
        Some(&officer),
        None,
    )
    .json()
    .unwrap();
    assert_eq!(certs.as_array().unwrap().len(), 1);
    let serial = certs[0]["serial"].as_str().unwrap();
    let one: Value = call(
        &s,
        "GET",
        &format!("/api/v1/certificates/{serial}"),
        Some(&officer),
        None,
    )
    .json()
    .unwrap();
    assert!(one["pem"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let s = ScepServer::start();
    let tokens_before = call(&s, "GET", "/api/v1/tokens", Some(&s.admin), None)
        .json::<Value>()
        .unwrap()
        .as_array()
        .unwrap()
        .len();
    let raw = |body: &str| {
        s.http
            .post(format!("{}/api/v1/tokens", s.base))
            .bearer_auth(&s.admin)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap()
    };
    for (body, want) in [
        ("{not json", 400),
        (r#"{"role": "mdm", "name": "x", "colour": "blue"}"#, 400),
        (r#"{"role": "mdm", "name": 42}"#, 400),
        (r#"{"role": "emperor", "name": "x"}"#, 400),
        (r#"{"role": "mdm", "name": ""}"#, 400),
    ] {
        let r = raw(body);
        assert_eq!(r.status(), want, "{body}");
        let v: Value = r.json().unwrap();
        assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
    }
    let huge = format!(
        r#"{{"role": "mdm", "name": "{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    assert_eq!(raw(&huge).status(), 413);
    let r = call(
        &s,
        "POST",
        "/api/v1/challenges",
        Some(&s.admin),
        Some(json!({"profile": "no-such"})),
    );
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("no-such"));
    let r = call(
        &s,
        "POST",
        "/api/v1/challenges",
        Some(&s.admin),
        Some(json!({"ttl_minutes": "soon"})),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(
        call(
            &s,
            "GET",
            "/api/v1/certificates?status=maybe",
            Some(&s.admin),
            None
        )
        .status(),
        400
    );
    // Filters that cannot hold together, or a search text past its bound: 400, with why.
    let long = "a".repeat(257);
    for (path, code) in [
        (
            "/api/v1/certificates?status=revoked&expiring_within=30d".to_string(),
            "bad_filter",
        ),
        (
            format!("/api/v1/certificates?subject={long}"),
            "bad_subject",
        ),
    ] {
        let r = call(&s, "GET", &path, Some(&s.admin), None);
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(r.json::<Value>().unwrap()["error"], code, "{path}");
    }
    assert_eq!(
        call(&s, "GET", "/api/v1/nothing", Some(&s.admin), None).status(),
        404
    );
    // A NUL character in the address or in a JSON string: 400 with why (PostgreSQL refuses
    // it, which would otherwise read as the store being down: a 503 asking for a retry).
    for path in [
        "/api/v1/certificates/%00",
        "/api/v1/certificates?subject=a%00b",
        "/api/v1/registrations/reg_%00",
    ] {
        let r = call(&s, "GET", path, Some(&s.admin), None);
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(
            r.json::<Value>().unwrap()["error"],
            "nul_character",
            "{path}"
        );
    }
    let r = raw(r#"{"role": "auditor", "name": "a\u0000b"}"#);
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["error"], "nul_character");
    let r = s
        .http
        .get(format!(
            "{}/scep/default?operation=GetCACert&message=%00",
            s.base
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("NUL character"));
    let tokens_after = call(&s, "GET", "/api/v1/tokens", Some(&s.admin), None)
        .json::<Value>()
        .unwrap()
        .as_array()
        .unwrap()
        .len();
    assert_eq!(tokens_before, tokens_after, "nothing written");
    assert!(!s.log().contains("\" 500 "), "{}", s.log());
}

#[test]
fn the_audit_log_records_decisions_and_exposes_tampering() {
    let s = ScepServer::start();
    let (auditor, _) = new_token(&s, "auditor", "auditor");
    let (mdm, _) = new_token(&s, "mdm", "mdm");
    let otp = challenge(&s, &mdm, json!({}));
    let (_, _, r) = enroll_with(&s, "default", "audited", &otp);
    assert_eq!(r.status, PkiStatus::Success);
    // A requester that proved nothing is refused in the server log only: an anonymous flood
    // cannot fill the audit chain.
    let (_, _, r) = enroll_with(&s, "default", "anonymous-refusal", "wrong challenge");
    assert_eq!(r.status, PkiStatus::Failure);
    // One with a valid challenge whose binding it breaks is refused in the audit log.
    let bound = challenge(&s, &mdm, json!({"cn": "bound-name"}));
    let (_, _, r) = enroll_with(&s, "default", "other-name", &bound);
    assert_eq!(r.status, PkiStatus::Failure);
    assert_eq!(
        call(&s, "GET", "/api/v1/tokens", Some("sigil_bogus"), None).status(),
        401
    );
    // The auditor reads the log; the mdm role may not.
    assert_eq!(
        call(&s, "GET", "/api/v1/audit", Some(&mdm), None).status(),
        403
    );
    let log: Value = call(&s, "GET", "/api/v1/audit", Some(&auditor), None)
        .json()
        .unwrap();
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for a in [
        "token_created",
        "challenge_created",
        "issued",
        "refused",
        "login_failed",
    ] {
        assert!(actions.contains(&a), "no {a} in {actions:?}");
    }
    assert!(
        log.to_string().contains("bound to CN"),
        "the authenticated refusal says why"
    );
    assert!(
        !log.to_string().contains("challenge password is wrong"),
        "an unauthenticated refusal is not in the audit chain"
    );
    assert!(
        !log.to_string().contains("sigil_bogus"),
        "a failed token is not recorded"
    );
    // Nothing in the API edits or deletes it.
    assert!(matches!(
        s.http
            .delete(format!("{}/api/v1/audit", s.base))
            .bearer_auth(&s.admin)
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404 | 405
    ));
    let cli = |args: &[&str]| {
        s.token
            .sigil()
            .env("SIGIL_CONFIG", s.token.path().join("sigil.toml"))
            .args(args)
            .output()
            .unwrap()
    };
    // The sealer seals the head with the audit key within moments of each commit.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let ok_out = crate::common::ok(&cli(&["audit", "verify"]));
    assert!(
        ok_out.contains("audit log intact") && ok_out.contains("sealed by the audit key"),
        "{ok_out}"
    );
    let export = crate::common::ok(&cli(&["audit", "export"]));
    assert_eq!(export.lines().count(), actions.len());
    // To a file: the same lines, renamed into place whole (no partial file left beside it).
    let file = s.token.path().join("audit.jsonl");
    crate::common::ok(&cli(&["audit", "export", "--out", file.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), export);
    assert!(!s.token.path().join("audit.jsonl.partial").exists());
    // Edit one record directly in the database: verify fails and names it.
    let db = s.token.data().join("sigil.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("UPDATE audit_log SET subject = 'forged' WHERE seq = 3", [])
            .unwrap();
    }
    let out = cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("record 3"), "{err}");
    // Put it back, then delete the last record: the stored head notices.
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        let original: String = serde_json::from_str::<Value>(export.lines().nth(2).unwrap())
            .unwrap()["subject"]
            .as_str()
            .unwrap()
            .to_owned();
        c.execute(
            "UPDATE audit_log SET subject = ?1 WHERE seq = 3",
            [original],
        )
        .unwrap();
    }
    crate::common::ok(&cli(&["audit", "verify"]));
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute(
            "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)",
            [],
        )
        .unwrap();
    }
    let out = cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("head"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn revocation_reaches_the_crl() {
    let s = ScepServer::start();
    let (officer, _) = new_token(&s, "officer", "officer");
    let (d, _, r) = enroll_with(&s, "default", "lost-device", CHALLENGE);
    assert_eq!(r.status, PkiStatus::Success);
    let cert = X509::from_der(&r.certs[0]).unwrap();
    let serial = hex::encode(cert.serial_number().to_bn().unwrap().to_vec());
    let (_, _, r2) = enroll_with(&s, "default", "stolen-device", CHALLENGE);
    let serial2 = hex::encode(
        X509::from_der(&r2.certs[0])
            .unwrap()
            .serial_number()
            .to_bn()
            .unwrap()
            .to_vec(),
    );
    let path = format!("/api/v1/certificates/{serial}/revoke");
    assert_eq!(
        call(
            &s,
            "POST",
            &path,
            Some(&officer),
            Some(json!({"reason": "sometimes"}))
        )
        .status(),
        400
    );
    assert_eq!(
        call(
            &s,
            "POST",
            &path,
            Some(&officer),
            Some(json!({"reason": "keyCompromise"}))
        )
        .status(),
        200
    );
    assert_eq!(
        call(
            &s,
            "POST",
            &path,
            Some(&officer),
            Some(json!({"reason": "keyCompromise"}))
        )
        .status(),
        404
    );
    let one: Value = call(
        &s,
        "GET",
        &format!("/api/v1/certificates/{serial}"),
        Some(&officer),
        None,
    )
    .json()
    .unwrap();
    assert_eq!(one["status"], "revoked");
    // And by the command line, for the second one.
    let out = s
        .token
        .sigil()
        .env("SIGIL_CONFIG", s.token.path().join("sigil.toml"))
        .args(["cert", "revoke", &serial2, "--reason", "superseded"])
        .output()
        .unwrap();
    crate::common::ok(&out);
    // GetCRL over SCEP: both serials, signed by the CA, with their reasons.
    let ca = X509::from_der(&s.ca).unwrap();
    let q = sigil::scep::client::issuer_and_serial(&ca.subject_name().to_der().unwrap(), &[1]);
    let msg = d
        .request(
            MessageType::GetCrl,
            "crl-after-revoke",
            &Nonce::random().unwrap(),
            &q,
            &s.ra,
            ContentCipher::Aes128Cbc,
            DigestAlg::Sha256,
        )
        .unwrap();
    let reply = d.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(reply.status, PkiStatus::Success);
    let crl = openssl::x509::X509Crl::from_der(&reply.crls[0]).unwrap();
    assert!(crl.verify(&ca.public_key().unwrap()).unwrap());
    let text = String::from_utf8(
        Command::new("openssl")
            .args(["crl", "-inform", "DER", "-noout", "-text"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(&reply.crls[0])?;
                c.wait_with_output()
            })
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        text.to_uppercase().contains(&serial.to_uppercase()),
        "{text}"
    );
    assert!(
        text.to_uppercase().contains(&serial2.to_uppercase()),
        "{text}"
    );
    assert!(
        text.contains("Key Compromise") && text.contains("Superseded"),
        "{text}"
    );
}
