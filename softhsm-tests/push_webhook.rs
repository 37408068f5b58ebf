//! Delivery through a signed webhook, end to end with a real SCEP client: the payload the
//! device enrolls with, retries with a fresh challenge each, the HMAC signature as a receiver
//! checks it, the renewal push and the challenge it carries for an Apple device's new key, a
//! renewal over SCEP that the registration follows, and the withdrawal when the certificate is
//! revoked.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::api::new_token;
use crate::fake_push;
use crate::push::{approve, desk, enroll, get, post, pushes_until, state_of, ALICE, PROFILE};
use crate::scep::ScepServer;

/// The device `enroll` made renews over SCEP (RenewalReq signed with the certificate it
/// holds, for its own key, with the same subject and SANs); scepclient cannot put SANs in
/// its request.
fn renew_over_scep(s: &ScepServer, name: &str, subject: &[(&str, &str)], sans: &[&str]) {
    use sigil::scep::{client::Device, ContentCipher, DigestAlg, MessageType, Nonce};
    let dir = s.token.path().join(name);
    let cert =
        openssl::x509::X509::from_pem(&std::fs::read(dir.join("device.pem")).unwrap()).unwrap();
    let key =
        openssl::pkey::PKey::private_key_from_pem(&std::fs::read(dir.join("device.key")).unwrap())
            .unwrap();
    let mut d = Device::from_key(key, name).unwrap();
    d.sign_with(cert.to_der().unwrap());
    let csr = d.csr_named(subject, None, sans).unwrap();
    let msg = d
        .request(
            MessageType::RenewalReq,
            &format!("{name}-renewal"),
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            ContentCipher::Aes128Cbc,
            DigestAlg::Sha256,
        )
        .unwrap();
    let reply = d.read(&s.pki("derived", msg, false)).unwrap();
    assert_eq!(
        reply.status,
        sigil::scep::PkiStatus::Success,
        "{:?}\n{}",
        reply.fail_text,
        s.log()
    );
    // The device keeps what it got, for its next renewal.
    let new = openssl::x509::X509::from_der(&reply.certs[0]).unwrap();
    std::fs::write(dir.join("device.pem"), new.to_pem().unwrap()).unwrap();
}

/// HMAC-SHA-256 as the receiver computes it, with the openssl command, not Sigil's code.
fn receiver_signature(secret: &str, timestamp: &str, body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("msg");
    std::fs::write(&msg, format!("{timestamp}.{body}")).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-r"])
        .arg(&msg)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    format!("v1={}", text.split_whitespace().next().unwrap())
}

/// A server whose `laptop` credential (an inventory file holding Alice's Mac `mac-7`) pushes
/// to the webhook `hook`, every certificate inside the renewal window from its first day.
fn webhook_server(hook: &crate::fake_mdm::FakeMdm) -> (ScepServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("devices.json");
    std::fs::write(
        &inventory,
        json!([{"id": "mac-7", "user": ALICE, "name": "Alice's Mac", "serial_number": "C02X7",
                "compliance": "compliant", "last_check_in": "2026-12-01T10:00:00Z"}])
        .to_string(),
    )
    .unwrap();
    let secret = dir.path().join("hook-secret");
    std::fs::write(&secret, "whsec-test-1").unwrap();
    let s = ScepServer::start_with(&format!(
        r#"{PROFILE}validity_days = 365
renewal_days = 400
revoke_superseded = true

[directories.inventory]
kind = "file"
path = "{inventory}"

[credentials.laptop]
profile = "derived"
directory = "inventory"
subject = "CN={{user}} {{serial_number}},O=Agency,C=US"
sans = ["email:{{email}}"]

[credentials.laptop.push]
webhook_url = "{hook}/sigil-events"
secret_file = "{secret}"
retry_secs = 1
renew_within_days = 3650
"#,
        inventory = inventory.display(),
        hook = hook.url,
        secret = secret.display(),
    ));
    (s, dir)
}

#[test]
fn a_signed_webhook_delivers_the_payload_the_device_enrolls_with_then_renewal_and_revocation() {
    crate::common::ensure_tool("scepclient", "scep");
    let hook = fake_push::webhook(1);
    let (s, _dir) = webhook_server(&hook);
    let d = desk(&s);
    let id = approve(&s, &d, "laptop", "mac-7");
    // The receiver was restarting at first (503): retried, then delivered.
    let pushes = pushes_until(&s, &d.filer, &id, "webhook delivery", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    assert_eq!(pushes[0]["attempts"], 2, "{pushes:?}");
    let seen = hook.seen("/sigil-events");
    let last = seen.last().unwrap();
    // A retry is the same push, but each attempt at a delivery carries a fresh challenge
    // that voids the last: the idempotency key names the attempt, so a receiver that
    // deduplicates keeps the newest challenge.
    assert_eq!(seen.len(), 2);
    let first: Value = serde_json::from_str(&seen[0].body).unwrap();
    let key = |r: &crate::fake_mdm::Req| r.header("idempotency-key").unwrap().to_string();
    assert_eq!(
        key(&seen[0]),
        format!("{}.1", first["target"]["push"].as_str().unwrap())
    );
    assert_eq!(
        key(last),
        format!("{}.2", first["target"]["push"].as_str().unwrap())
    );
    assert!(key(last).starts_with("push_"));
    // What is kept of the failed attempt names neither the URL nor the receiver's words.
    let (auditor, _) = new_token(&s, "auditor", "hook-assessor");
    let log = get(&s, "/api/v1/audit", &auditor).to_string();
    assert!(log.contains("the receiver answered HTTP 503"), "{log}");
    assert!(!log.contains(&hook.url) && !log.contains("receiver restarting"));
    // The signature is HMAC-SHA-256 over "<timestamp>.<body>" with the shared secret.
    let ts = last.header("x-sigil-timestamp").unwrap();
    assert!((ts.parse::<i64>().unwrap() - sigil::clock::now()).abs() < 60);
    assert_eq!(
        last.header("x-sigil-signature").unwrap(),
        receiver_signature("whsec-test-1", ts, &last.body)
    );
    assert_ne!(
        receiver_signature("whsec-test-1", ts, &last.body.replace("mac-7", "mac-8")),
        last.header("x-sigil-signature").unwrap(),
        "a changed body does not verify"
    );
    let event: Value = serde_json::from_str(&last.body).unwrap();
    assert_eq!(event["event"], "deliver");
    assert_eq!(event["target"]["push"], first["target"]["push"]);
    assert_eq!(event["target"]["attempt"], 2);
    assert_ne!(
        event["target"]["scep_payload"]["challenge"], first["target"]["scep_payload"]["challenge"],
        "each attempt mints its own challenge"
    );
    assert_eq!(event["target"]["device_id"], "mac-7");
    assert_eq!(event["target"]["email"], ALICE);
    let payload = &event["target"]["scep_payload"];
    assert_eq!(payload["subject"], "CN=alice C02X7,O=Agency,C=US");
    // The device enrolls with the challenge the webhook carried.
    enroll(&s, payload, "mac");
    let reg = get(&s, &format!("/api/v1/registrations/{id}"), &d.filer);
    assert_eq!(reg["state"], "issued");
    let serial = reg["serial"].as_str().unwrap().to_string();
    // Its certificate is inside the renewal window (renew_within_days is longer than its
    // life): the receiver is asked to re-push, once for this certificate.
    pushes_until(&s, &d.filer, &id, "renewal", |p| {
        state_of(p, "renew") == Some("delivered")
    });
    let renew: Value =
        serde_json::from_str(&hook.seen("/sigil-events").last().unwrap().body).unwrap();
    assert_eq!(renew["event"], "renew");
    assert_eq!(renew["target"]["serial"], serial.as_str());
    // It carries the challenge that renews the certificate (an Apple device enrolls again,
    // with a new key, when its MDM installs the profile again; see the test below), so each
    // attempt is new content with its own key.
    assert_eq!(
        renew["target"]["scep_payload"]["subject"],
        "CN=alice C02X7,O=Agency,C=US"
    );
    assert_eq!(
        hook.seen("/sigil-events")
            .last()
            .unwrap()
            .header("idempotency-key")
            .unwrap(),
        format!(
            "{}.{}",
            renew["target"]["push"].as_str().unwrap(),
            renew["target"]["attempt"]
        ),
    );
    std::thread::sleep(Duration::from_millis(2500));
    let reg = get(&s, &format!("/api/v1/registrations/{id}"), &d.filer);
    assert_eq!(
        reg["pushes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["action"] == "renew")
            .count(),
        1,
        "one renewal push per certificate"
    );
    // The device renews over SCEP, signing with the certificate it holds: the registration
    // moves to the new certificate, and the old one, revoked as superseded, takes nothing
    // back. The receiver is down meanwhile, so the new certificate's renewal push waits.
    let down = |on: bool| {
        hook.faults
            .broken
            .store(on, std::sync::atomic::Ordering::SeqCst)
    };
    down(true);
    renew_over_scep(
        &s,
        "mac",
        &[("CN", "alice C02X7"), ("O", "Agency"), ("C", "US")],
        &[&format!("email:{ALICE}")],
    );
    let reg = get(&s, &format!("/api/v1/registrations/{id}"), &d.filer);
    assert_eq!(reg["state"], "issued");
    let renewed = reg["serial"].as_str().unwrap().to_string();
    assert_ne!(renewed, serial, "the registration follows the renewal");
    let old = get(&s, &format!("/api/v1/certificates/{serial}"), &d.filer);
    assert_eq!(old["status"], "revoked", "{old}");
    let log = get(&s, "/api/v1/audit", &auditor).to_string();
    assert!(log.contains("registration_renewed"), "{log}");
    // The new certificate is inside the window too: a renewal push of its own, failing while
    // the receiver is down.
    pushes_until(&s, &d.filer, &id, "second renewal, tried", |p| {
        p.iter().any(|p| {
            p["action"] == "renew" && p["state"] == "pending" && p["attempts"].as_i64() >= Some(1)
        })
    });
    // The device renews again before that push got through: the push for the certificate it
    // no longer holds is not sent; the newest certificate gets its own.
    renew_over_scep(
        &s,
        "mac",
        &[("CN", "alice C02X7"), ("O", "Agency"), ("C", "US")],
        &[&format!("email:{ALICE}")],
    );
    let newest = get(&s, &format!("/api/v1/registrations/{id}"), &d.filer)["serial"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(newest, renewed);
    down(false);
    let pushes = pushes_until(&s, &d.filer, &id, "third renewal", |p| {
        let renews = |state: &str| {
            p.iter()
                .filter(|p| p["action"] == "renew" && p["state"] == state)
                .count()
        };
        renews("delivered") == 2 && renews("failed") == 1
    });
    let stale = pushes
        .iter()
        .find(|p| p["action"] == "renew" && p["state"] == "failed")
        .unwrap();
    assert!(
        stale["message"].as_str().unwrap().contains("superseded"),
        "{stale}"
    );
    assert!(
        !pushes.iter().any(|p| p["action"] == "withdraw"),
        "a superseded certificate withdraws nothing: {pushes:?}"
    );
    let renew: Value =
        serde_json::from_str(&hook.seen("/sigil-events").last().unwrap().body).unwrap();
    assert_eq!(renew["event"], "renew");
    assert_eq!(renew["target"]["serial"], newest.as_str());
    let renewed = newest;
    // Revoked: the receiver is told to take it back.
    let (st, v) = post(
        &s,
        &format!("/api/v1/registrations/{id}/revoke"),
        &d.filer,
        json!({"reason": "affiliationChanged"}),
    );
    assert_eq!(st, 200, "{v}");
    pushes_until(&s, &d.filer, &id, "withdrawal", |p| {
        state_of(p, "withdraw") == Some("delivered")
    });
    let last: Value =
        serde_json::from_str(&hook.seen("/sigil-events").last().unwrap().body).unwrap();
    assert_eq!(last["event"], "withdraw");
    assert_eq!(last["target"]["serial"], renewed.as_str());
}

/// Registrations approved before their credential pushed: the push round delivers the one
/// whose deliver was never queued, but not the one whose payload the MDM already collected,
/// since a webhook deliver mints a new challenge and would void the one the device holds.
#[test]
fn a_payload_the_mdm_collected_before_push_was_configured_is_not_voided_by_a_deliver() {
    crate::common::ensure_tool("scepclient", "scep");
    let hook = fake_push::webhook(0);
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("devices.json");
    std::fs::write(
        &inventory,
        json!([
            {"id": "mac-1", "user": ALICE, "name": "Alice's Mac", "serial_number": "C02A1",
             "compliance": "compliant", "last_check_in": "2026-12-01T10:00:00Z"},
            {"id": "mac-2", "user": ALICE, "name": "Alice's other Mac", "serial_number": "C02A2",
             "compliance": "compliant", "last_check_in": "2026-12-01T10:00:00Z"}
        ])
        .to_string(),
    )
    .unwrap();
    let secret = dir.path().join("hook-secret");
    std::fs::write(&secret, "whsec-test-2").unwrap();
    let mut s = ScepServer::start_with(&format!(
        r#"{PROFILE}
[directories.inventory]
kind = "file"
path = "{inventory}"

[credentials.laptop]
profile = "derived"
directory = "inventory"
subject = "CN={{user}} {{serial_number}},O=Agency,C=US"
"#,
        inventory = inventory.display(),
    ));
    let d = desk(&s);
    let collected = approve(&s, &d, "laptop", "mac-1");
    let waiting = approve(&s, &d, "laptop", "mac-2");
    let (connector, _) = crate::api::new_token_with(
        &s,
        json!({"role": "mdm", "name": "inventory-glue", "directories": ["inventory"]}),
    );
    let payload = get(
        &s,
        &format!("/api/v1/registrations/{collected}/scep-payload"),
        &connector,
    );
    assert!(payload["challenge"].is_string(), "{payload}");
    // Now the credential pushes through a webhook.
    let cfg = s.token.path().join("sigil.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[credentials.laptop.push]\nwebhook_url = \"{}/sigil-events\"\nsecret_file = \"{}\"\nretry_secs = 1\n",
        hook.url,
        secret.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    s.restart();
    // The round delivers the registration nobody collected...
    pushes_until(&s, &d.filer, &waiting, "the lost deliver", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    // ...and, rounds later, still not the collected one, whose challenge still enrolls.
    std::thread::sleep(Duration::from_secs(2));
    let reg = get(&s, &format!("/api/v1/registrations/{collected}"), &d.filer);
    assert_eq!(reg["pushes"], json!([]), "{reg}");
    enroll(&s, &payload, "mac-1");
    let reg = get(&s, &format!("/api/v1/registrations/{collected}"), &d.filer);
    assert_eq!(reg["state"], "issued", "{reg}");
    let events: Vec<Value> = hook
        .seen("/sigil-events")
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .all(|e| e["target"]["registration"] == json!(waiting)),
        "{events:?}"
    );
}

/// An Apple device does not renew over SCEP by itself: its MDM installs the profile again, and
/// the device enrolls with a new key. The renewal push carries a challenge for that: the new
/// certificate renews the one the registration holds (which is revoked as superseded), and the
/// registration follows it. An integration collects such a challenge itself while the
/// certificate is in its window, and never once it is revoked.
#[test]
fn an_apple_device_renews_with_the_challenge_its_renewal_push_carries() {
    crate::common::ensure_tool("scepclient", "scep");
    let hook = fake_push::webhook(0);
    let (s, _dir) = webhook_server(&hook);
    let d = desk(&s);
    let id = approve(&s, &d, "laptop", "mac-7");
    let last_event = || -> Value {
        serde_json::from_str(&hook.seen("/sigil-events").last().unwrap().body).unwrap()
    };
    pushes_until(&s, &d.filer, &id, "delivery", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    enroll(&s, &last_event()["target"]["scep_payload"], "mac");
    let first = get(&s, &format!("/api/v1/registrations/{id}"), &d.filer)["serial"]
        .as_str()
        .unwrap()
        .to_string();
    pushes_until(&s, &d.filer, &id, "renewal push", |p| {
        state_of(p, "renew") == Some("delivered")
    });
    let renew = last_event();
    assert_eq!(renew["event"], "renew");
    assert_eq!(renew["target"]["serial"], first.as_str());
    // The device enrolls again, a new key, with the challenge the renewal carried.
    enroll(&s, &renew["target"]["scep_payload"], "mac-again");
    let reg = get(&s, &format!("/api/v1/registrations/{id}"), &d.filer);
    assert_eq!(reg["state"], "issued", "{reg}");
    let second = reg["serial"].as_str().unwrap().to_string();
    assert_ne!(
        second, first,
        "the registration follows the new certificate"
    );
    let old = get(&s, &format!("/api/v1/certificates/{first}"), &d.filer);
    assert_eq!(old["status"], "revoked", "superseded: {old}");
    let new = get(&s, &format!("/api/v1/certificates/{second}"), &d.filer);
    assert_eq!(new["subject"], "CN=alice C02X7, O=Agency, C=US", "{new}");
    let (auditor, _) = new_token(&s, "auditor", "renewal-assessor");
    let log = get(&s, "/api/v1/audit", &auditor);
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "registration_renewed"
                && r["details"].to_string().contains(&first)),
        "{log}"
    );
    // An integration scoped to the directory collects a renewal challenge itself.
    let (mdm, _) = crate::api::new_token_with(
        &s,
        json!({"role": "mdm", "name": "renewals", "profiles": [], "directories": ["inventory"]}),
    );
    let collect = || {
        crate::api::call(
            &s,
            "GET",
            &format!("/api/v1/registrations/{id}/scep-payload"),
            Some(&mdm),
            None,
        )
    };
    let r = collect();
    assert_eq!(r.status(), 200);
    let collected: Value = r.json().unwrap();
    assert!(collected["challenge"].is_string());
    // Revoked, it renews nothing: a challenge collected before is refused when used after,
    // and none is given out any more.
    let (st, v) = post(
        &s,
        &format!("/api/v1/registrations/{id}/revoke"),
        &d.filer,
        json!({"reason": "affiliationChanged"}),
    );
    assert_eq!(st, 200, "{v}");
    let device = s.token.path().join("mac-late");
    std::fs::create_dir_all(&device).unwrap();
    let out = Command::new("scepclient")
        .current_dir(&device)
        .args(["-server-url", collected["url"].as_str().unwrap()])
        .args(["-challenge", collected["challenge"].as_str().unwrap()])
        .args(["-cn", "mac-late", "-ca-fingerprint"])
        .arg(hex::encode(openssl::sha::sha256(&s.ra)))
        .args(["-private-key", "device.key", "-certificate", "device.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a revoked credential renewed");
    let reg = get(&s, &format!("/api/v1/registrations/{id}"), &d.filer);
    assert_eq!(reg["serial"], second.as_str(), "{reg}");
    let r = collect();
    assert_eq!(r.status(), 409);
    assert!(r.json::<Value>().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("revoked"),);
}
