//! Registration of derived credentials end to end: a person's devices from an Intune-shaped
//! MDM, a request, the two-person rule, approval, the SCEP payload, a real `scepclient`
//! enrollment, and the certificate carrying the registration's identity; plus the approval
//! queue's expiry of enrollments nobody decided.

use std::process::Command;
use std::time::{Duration, Instant};

use openssl::x509::X509;
use serde_json::{json, Value};
use sigil::scep::client::issuer_and_subject;
use sigil::scep::{ContentCipher, DigestAlg, MessageType, Nonce, PkiStatus};

use crate::api::{enroll_with, new_token};
use crate::fake_mdm::{self, CLIENT_ID, CLIENT_SECRET};
use crate::scep::{ScepServer, CHALLENGE};

const ALICE: &str = "alice@agency.gov";
/// id-fpki-common-derived-pivAuth.
const DERIVED_PIV_AUTH: &str = "2.16.840.1.101.3.2.1.3.40";

fn server(mdm_url: &str, secret_file: &std::path::Path) -> ScepServer {
    ScepServer::start_with(&format!(
        r#"
# Derived PIV authentication: only one-time challenges from registrations. scepclient 2.1
# signs with SHA-1 and encrypts with single DES, hence `legacy`.
[profiles.derived]
allowed_sans = ["email", "upn", "uri"]
policy_oids = ["{DERIVED_PIV_AUTH}"]
legacy = true

[profiles.approval-short]
challenge_sha256 = "{h}"
approval = true
approval_expires = "2s"

[directories.intune]
kind = "intune"
base_url = "{mdm_url}"
token_url = "{mdm_url}/tenant-1/oauth2/v2.0/token"
tenant_id = "tenant-1"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
timeout_secs = 2
retries = 1
page_size = 1

[credentials.piv-derived]
description = "Derived PIV authentication"
profile = "derived"
directory = "intune"
subject = "CN={{user}} {{serial_number}},OU=Devices,O=Agency,C=US"
sans = ["email:{{email}}", "upn:{{email}}", "uri:urn:uuid:{{udid}}"]
require_compliant = true
request_ttl = "1h"
challenge_ttl = "10m"
"#,
        h = hex::encode(openssl::sha::sha256(CHALLENGE.as_bytes())),
        secret = secret_file.display(),
    ))
}

/// Every answer of these flows is checked against the OpenAPI document the server serves.
fn post(s: &ScepServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    crate::api_schema::checked_call(s, "POST", path, Some(token), Some(body))
}

fn get(s: &ScepServer, path: &str, token: &str) -> (u16, Value) {
    crate::api_schema::checked_call(s, "GET", path, Some(token), None)
}

#[test]
fn a_derived_credential_is_registered_approved_and_enrolled() {
    // Seconds from a registration's `from` time to its expiry.
    let waits = |r: &serde_json::Value, from: &str| {
        let t = |k: &str| {
            time::OffsetDateTime::parse(
                r[k].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
            .unix_timestamp()
        };
        t("expires_at") - t(from)
    };
    crate::common::ensure_tool("scepclient", "scep");
    let iphone = "0f5b1c2e-iphone";
    let mdm = fake_mdm::intune(
        vec![
            fake_mdm::intune_device(
                iphone,
                ALICE,
                "Alice's iPhone",
                "iOS",
                "compliant",
                "F2LXK1",
                "00008110-001A2B3C4D5E6F70",
            ),
            fake_mdm::intune_device(
                "7c1d-laptop",
                ALICE,
                "ALICE-LT",
                "Windows",
                "noncompliant",
                "5CD1234",
                "",
            ),
            fake_mdm::intune_device(
                "bob-phone",
                "bob@agency.gov",
                "Bob",
                "iOS",
                "compliant",
                "B1",
                "U-B",
            ),
        ],
        1,
    );
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("graph-secret");
    std::fs::write(&secret_file, CLIENT_SECRET).unwrap();
    let s = server(&mdm.url, &secret_file);
    let (alice, _) = new_token(&s, "user", ALICE);
    let (olivia, _) = new_token(&s, "officer", "olivia@agency.gov");
    let (oscar, _) = new_token(&s, "officer", "oscar@agency.gov");
    let (intune, _) = new_token(&s, "mdm", "intune-connector");
    let (auditor, _) = new_token(&s, "auditor", "audit");

    let (st, creds) = get(&s, "/api/v1/credentials", &alice);
    assert_eq!(st, 200);
    assert_eq!(creds[0]["name"], "piv-derived");

    // Self-service: Alice registers herself (not Bob), and sees her managed devices.
    let (st, v) = post(
        &s,
        "/api/v1/registrations",
        &alice,
        json!({"email": "bob@agency.gov", "credential": "piv-derived"}),
    );
    assert_eq!(st, 403, "{v}");
    let (st, reg) = post(
        &s,
        "/api/v1/registrations",
        &alice,
        json!({"email": "Alice@Agency.gov", "credential": "piv-derived"}),
    );
    assert_eq!(st, 201, "{reg}");
    let id = reg["id"].as_str().unwrap().to_string();
    assert_eq!(reg["state"], "open");
    // Each step waits `request_ttl` (an hour here) for the next.
    assert_eq!(waits(&reg, "created_at"), 3600, "{reg}");
    // Another user does not see it, not even by its id; an officer does.
    let (bob, _) = new_token(&s, "user", "bob@agency.gov");
    assert_eq!(get(&s, &format!("/api/v1/registrations/{id}"), &bob).0, 404);
    let (st, theirs) = get(&s, "/api/v1/registrations", &bob);
    assert_eq!((st, theirs), (200, json!([])));
    assert_eq!(reg["email"], ALICE);
    assert!(reg["directory_error"].is_null(), "{reg}");
    let devices = reg["devices"].as_array().unwrap();
    assert_eq!(
        devices.len(),
        2,
        "both of Alice's devices, one page each: {reg}"
    );
    let phone = devices.iter().find(|d| d["id"] == iphone).unwrap();
    assert_eq!(phone["model"], "Apple iPhone 15");
    assert_eq!(phone["os"], "iOS");
    assert_eq!(phone["os_version"], "18.1");
    assert_eq!(phone["serial_number"], "F2LXK1");
    assert_eq!(phone["udid"], "00008110-001A2B3C4D5E6F70");
    assert_eq!(phone["imei"], "356938035643809");
    assert_eq!(phone["compliance"], "compliant");
    assert!(phone["last_check_in"].as_str().is_some());
    let laptop = devices.iter().find(|d| d["id"] == "7c1d-laptop").unwrap();
    assert!(
        laptop["flags"].to_string().contains("non-compliant"),
        "flagged, not hidden: {laptop}"
    );
    // Bad input: unknown credential, not an email, unknown fields.
    for body in [
        json!({"email": ALICE, "credential": "nope"}),
        json!({"email": "alice", "credential": "piv-derived"}),
    ] {
        let (st, v) = post(&s, "/api/v1/registrations", &olivia, body);
        assert_eq!(st, 422, "{v}");
    }
    let (st, _) = post(
        &s,
        "/api/v1/registrations",
        &olivia,
        json!({"email": ALICE, "credential": "piv-derived", "admin": true}),
    );
    assert_eq!(st, 400);

    // The non-compliant laptop cannot be requested under this credential; a stranger's
    // device is not on the list.
    let req_path = format!("/api/v1/registrations/{id}/request");
    let (st, v) = post(&s, &req_path, &olivia, json!({"device_id": "7c1d-laptop"}));
    assert_eq!(st, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("compliant"), "{v}");
    let (st, _) = post(&s, &req_path, &olivia, json!({"device_id": "bob-phone"}));
    assert_eq!(st, 422);
    // Olivia files the request for the iPhone; the identity comes from the directory facts.
    let (st, reg) = post(&s, &req_path, &olivia, json!({"device_id": iphone}));
    assert_eq!(st, 200, "{reg}");
    assert_eq!(reg["state"], "requested");
    assert_eq!(waits(&reg, "updated_at"), 3600, "{reg}");
    let requested_until = reg["expires_at"].as_str().unwrap().to_string();
    let subject = "CN=alice F2LXK1,OU=Devices,O=Agency,C=US";
    assert_eq!(reg["subject"], subject);
    assert_eq!(
        reg["sans"],
        json!([
            format!("email:{ALICE}"),
            format!("upn:{ALICE}"),
            "uri:urn:uuid:00008110-001A2B3C4D5E6F70"
        ])
    );
    // It is in the officers' queue.
    let (_, queue) = get(&s, "/api/v1/approvals", &oscar);
    assert!(
        queue
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["kind"] == "registration" && q["id"] == id.as_str()),
        "{queue}"
    );
    // No payload before approval.
    let payload_path = format!("/api/v1/registrations/{id}/scep-payload");
    assert_eq!(get(&s, &payload_path, &intune).0, 409);
    // Two people: Olivia filed it, so she cannot approve it; Alice is no officer.
    let approve = format!("/api/v1/registrations/{id}/approve");
    let (st, v) = post(&s, &approve, &olivia, json!({"comment": "looks fine"}));
    assert_eq!(st, 403, "{v}");
    assert!(v["message"].as_str().unwrap().contains("two people"), "{v}");
    assert_eq!(post(&s, &approve, &alice, json!({})).0, 403);
    // Oscar approves, through the shared queue's route (a second later: the device's hour
    // starts at the approval).
    std::thread::sleep(Duration::from_millis(1100));
    let (st, reg) = post(
        &s,
        &format!("/api/v1/approvals/{id}/approve"),
        &oscar,
        json!({"comment": "device facts checked against the asset register"}),
    );
    assert_eq!(st, 200, "{reg}");
    assert_eq!(reg["state"], "approved");
    assert_eq!(
        waits(&reg, "updated_at"),
        3600,
        "the device has an hour to enroll: {reg}"
    );
    assert!(
        reg["expires_at"].as_str().unwrap() > requested_until.as_str(),
        "{reg}"
    );
    assert_eq!(
        reg["comment"],
        "device facts checked against the asset register"
    );
    assert_eq!(post(&s, &approve, &oscar, json!({})).0, 409, "decided once");

    // The MDM collects the payload; a user may not.
    assert_eq!(get(&s, &payload_path, &alice).0, 403);
    let (st, first) = get(&s, &payload_path, &intune);
    assert_eq!(st, 200, "{first}");
    let (st, payload) = get(&s, &payload_path, &intune);
    assert_eq!(st, 200, "{payload}");
    assert_ne!(
        first["challenge"], payload["challenge"],
        "each collection mints anew"
    );
    assert_eq!(payload["url"], format!("{}/scep/derived", s.base));
    assert_eq!(payload["subject"], subject);
    assert_eq!(payload["key_size"], 2048);
    assert_eq!(payload["device_id"], iphone);
    let chain = payload["ca_chain_pem"].as_array().unwrap();
    assert_eq!(
        X509::from_pem(chain[0].as_str().unwrap().as_bytes())
            .unwrap()
            .to_der()
            .unwrap(),
        s.ca
    );
    assert_eq!(
        payload["ca_fingerprint_sha256"],
        hex::encode(openssl::sha::sha256(&s.ca))
    );

    // The device enrolls with scepclient, asking for another name: it gets the
    // registration's. The first (replaced) challenge no longer works.
    let ra_fp = hex::encode(openssl::sha::sha256(&s.ra));
    let scepclient = |dir: &str, challenge: &str| {
        let dir = s.token.path().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("scepclient")
            .current_dir(&dir)
            .args(["-server-url", payload["url"].as_str().unwrap()])
            .args([
                "-challenge",
                challenge,
                "-cn",
                "iPhone",
                "-ca-fingerprint",
                &ra_fp,
            ])
            .args(["-private-key", "device.key", "-certificate", "device.pem"])
            .output()
            .unwrap();
        (out, dir)
    };
    let (out, _) = scepclient("stale", first["challenge"].as_str().unwrap());
    assert!(
        !out.status.success(),
        "the replaced challenge must not enroll"
    );
    let (out, dir) = scepclient("device", payload["challenge"].as_str().unwrap());
    assert!(
        out.status.success(),
        "scepclient failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    crate::common::openssl_verify(&s.ca_pem(), &dir.join("device.pem"));
    let cert = X509::from_pem(&std::fs::read(dir.join("device.pem")).unwrap()).unwrap();
    let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
    assert!(
        text.contains("Subject: CN=alice F2LXK1, OU=Devices, O=Agency, C=US"),
        "{text}"
    );
    assert!(text.contains(&format!("email:{ALICE}")), "{text}");
    assert!(
        text.contains("URI:urn:uuid:00008110-001A2B3C4D5E6F70"),
        "{text}"
    );
    assert!(text.contains("othername: UPN"), "{text}");
    assert!(text.contains(DERIVED_PIV_AUTH), "{text}");
    assert!(!text.contains("CN=iPhone"), "{text}");

    // The registration is issued and linked; the certificate names the device.
    let (_, reg) = get(&s, &format!("/api/v1/registrations/{id}"), &alice);
    assert_eq!(reg["state"], "issued", "{reg}");
    let serial = reg["serial"].as_str().unwrap().to_string();
    assert_eq!(
        serial,
        hex::encode(cert.serial_number().to_bn().unwrap().to_vec())
    );
    // The same challenge does not enroll a second device.
    let (out, _) = scepclient("second", payload["challenge"].as_str().unwrap());
    assert!(!out.status.success());

    // Revoking the registration revokes its credential, and no other device's.
    let (_, _, bystander) = enroll_with(&s, "default", "bystander", CHALLENGE);
    assert_eq!(bystander.status, PkiStatus::Success);
    let bystander = crate::multinode::serial_of(&bystander.certs[0]);
    assert_eq!(
        post(
            &s,
            &format!("/api/v1/registrations/{id}/revoke"),
            &alice,
            json!({"reason": "keyCompromise"})
        )
        .0,
        403
    );
    let (st, v) = post(
        &s,
        &format!("/api/v1/registrations/{id}/revoke"),
        &oscar,
        json!({"reason": "affiliationChanged"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["revoked"], json!([serial.clone()]));
    let (_, c) = get(&s, &format!("/api/v1/certificates/{serial}"), &olivia);
    assert_eq!(c["status"], "revoked");
    assert_eq!(c["device_id"], format!("intune:{iphone}"));
    let (_, c) = get(&s, &format!("/api/v1/certificates/{bystander}"), &olivia);
    assert_eq!(c["status"], "valid", "{c}");

    // Alice sees only her own registrations; Olivia sees them all.
    let (_, mine) = get(&s, "/api/v1/registrations", &alice);
    assert!(mine.as_array().unwrap().iter().all(|r| r["email"] == ALICE));
    let (_, by_state) = get(&s, "/api/v1/registrations?state=issued", &olivia);
    assert_eq!(by_state.as_array().unwrap().len(), 1);

    // The audit log has every step, with who did it.
    let (_, tokens) = get(&s, "/api/v1/tokens", &s.admin);
    let token_of = |name: &str| {
        let t = tokens
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap();
        format!("token:{}", t["id"].as_str().unwrap())
    };
    let (_, audit) = get(&s, "/api/v1/audit?limit=10000", &auditor);
    let steps: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["subject"] == id.as_str() || a["subject"] == serial.as_str())
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                a["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (action, actor) in [
        ("registration_created", token_of(ALICE)),
        ("requested", token_of("olivia@agency.gov")),
        ("approval_refused", token_of("olivia@agency.gov")),
        ("registration_approved", token_of("oscar@agency.gov")),
        ("scep_payload_collected", token_of("intune-connector")),
        ("issued", "ra".to_string()),
        ("registration_issued", "ra".to_string()),
        ("registration_revoked", token_of("oscar@agency.gov")),
        ("revoked", token_of("oscar@agency.gov")),
    ] {
        assert!(
            steps.contains(&(action.to_string(), actor.clone())),
            "{action} by {actor} missing from {steps:?}"
        );
    }
}

#[test]
fn the_mdm_being_down_keeps_the_registration_open_with_the_reason() {
    let mdm = fake_mdm::intune(
        vec![fake_mdm::intune_device(
            "d1",
            ALICE,
            "iPhone",
            "iOS",
            "compliant",
            "S1",
            "U1",
        )],
        10,
    );
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("graph-secret");
    std::fs::write(&secret_file, CLIENT_SECRET).unwrap();
    let s = server(&mdm.url, &secret_file);
    let (officer, _) = new_token(&s, "officer", "olivia@agency.gov");
    mdm.faults
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (st, reg) = post(
        &s,
        "/api/v1/registrations",
        &officer,
        json!({"email": ALICE, "credential": "piv-derived"}),
    );
    assert_eq!(st, 201, "{reg}");
    assert_eq!(reg["state"], "open");
    assert!(
        reg["directory_error"].as_str().unwrap().contains("500"),
        "{reg}"
    );
    assert_eq!(reg["devices"], json!([]));
    let id = reg["id"].as_str().unwrap();
    // Nothing to request yet.
    let (st, _) = post(
        &s,
        &format!("/api/v1/registrations/{id}/request"),
        &officer,
        json!({"device_id": "d1"}),
    );
    assert_eq!(st, 422);
    // The MDM is back: refresh, and the device is there.
    mdm.faults
        .broken
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (st, reg) = post(
        &s,
        &format!("/api/v1/registrations/{id}/refresh"),
        &officer,
        json!({}),
    );
    assert_eq!(st, 200, "{reg}");
    assert!(reg["directory_error"].is_null());
    assert_eq!(reg["devices"].as_array().unwrap().len(), 1);
    assert!(s.log().contains("device list could not be fetched"));
}

#[test]
fn an_undecided_enrollment_expires_and_its_poll_fails() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("s");
    std::fs::write(&secret, "x").unwrap();
    let s = server("http://127.0.0.1:9", &secret);
    let (officer, _) = new_token(&s, "officer", "olivia@agency.gov");
    let (d, tid, r) = enroll_with(&s, "approval-short", "never-decided", CHALLENGE);
    assert_eq!(r.status, PkiStatus::Pending);
    let poll = || {
        let ca = X509::from_der(&s.ca)
            .unwrap()
            .subject_name()
            .to_der()
            .unwrap();
        let msg = d
            .request(
                MessageType::CertPoll,
                &tid,
                &Nonce::random().unwrap(),
                &issuer_and_subject(&ca, &ca),
                &s.ra,
                ContentCipher::Aes128Cbc,
                DigestAlg::Sha256,
            )
            .unwrap();
        d.read(&s.pki("approval-short", msg, false)).unwrap()
    };
    // Background rounds run every second; approval_expires is 2 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        let r = poll();
        if r.status != PkiStatus::Pending {
            break r;
        }
        assert!(Instant::now() < deadline, "never expired:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(r.status, PkiStatus::Failure);
    assert!(r.fail_text.unwrap().contains("expired"));
    // Gone from the queue; an officer can no longer approve it.
    let (_, queue) = get(&s, "/api/v1/approvals", &officer);
    assert!(!queue.to_string().contains(&tid), "{queue}");
    assert_eq!(
        post(
            &s,
            &format!("/api/v1/approvals/{tid}/approve"),
            &officer,
            json!({})
        )
        .0,
        409
    );
    let (_, audit) = get(&s, "/api/v1/audit?limit=10000", &s.admin);
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "expired"
            && a["subject"] == tid.as_str()
            && a["actor"] == "sigil"));
}

/// An officer withdraws an approved registration: its collected challenge stops working at
/// once, and the registration ends rejected with the comment.
#[test]
fn a_withdrawn_registration_leaves_no_working_challenge() {
    let mdm = fake_mdm::intune(
        vec![fake_mdm::intune_device(
            "ipad-9",
            ALICE,
            "iPad",
            "iOS",
            "compliant",
            "SER9",
            "UDID9",
        )],
        10,
    );
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("graph-secret");
    std::fs::write(&secret_file, CLIENT_SECRET).unwrap();
    let s = server(&mdm.url, &secret_file);
    let (olivia, _) = new_token(&s, "officer", "olivia@agency.gov");
    let (oscar, _) = new_token(&s, "officer", "oscar@agency.gov");
    let (intune, _) = new_token(&s, "mdm", "intune-connector");
    let (_, reg) = post(
        &s,
        "/api/v1/registrations",
        &olivia,
        json!({"email": ALICE, "credential": "piv-derived"}),
    );
    let id = reg["id"].as_str().unwrap().to_string();
    assert_eq!(
        post(
            &s,
            &format!("/api/v1/registrations/{id}/request"),
            &olivia,
            json!({"device_id": "ipad-9"})
        )
        .0,
        200
    );
    assert_eq!(
        post(
            &s,
            &format!("/api/v1/registrations/{id}/approve"),
            &oscar,
            json!({})
        )
        .0,
        200
    );
    let (_, payload) = get(
        &s,
        &format!("/api/v1/registrations/{id}/scep-payload"),
        &intune,
    );
    let challenge = payload["challenge"].as_str().unwrap().to_string();
    // The MDM may not withdraw; an officer may.
    assert_eq!(
        post(
            &s,
            &format!("/api/v1/registrations/{id}/withdraw"),
            &intune,
            json!({})
        )
        .0,
        403
    );
    let (st, v) = post(
        &s,
        &format!("/api/v1/registrations/{id}/withdraw"),
        &oscar,
        json!({"comment": "device reported lost before enrollment"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "rejected");
    assert!(v["comment"].as_str().unwrap().contains("reported lost"));
    assert_eq!(
        post(
            &s,
            &format!("/api/v1/registrations/{id}/withdraw"),
            &oscar,
            json!({})
        )
        .0,
        409,
        "only live registrations are withdrawn"
    );
    // The challenge the MDM already holds no longer enrolls.
    let (_, _, r) = enroll_with(&s, "derived", "iPad", &challenge);
    assert_eq!(r.status, PkiStatus::Failure, "{:?}", r.fail_text);
    let (_, audit) = get(&s, "/api/v1/audit?limit=10000", &s.admin);
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "registration_withdrawn" && a["subject"] == id.as_str()));
}
