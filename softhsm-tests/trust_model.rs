//! The trust model, each rule a test that tries to break it (issue "close the holes an agency
//! auditor would find first"): who may mint what, the whole name bound, provenance from a
//! certificate to the token that made it possible, two people for enrollment approvals, no
//! renewal from a revoked or renewed certificate, transactionIDs per requester, the CA key
//! signing each certificate once, replays answered from memory, and the core's own limits.
//!
//! Over 800 lines: one test per trust rule, each a whole scenario against a live server; they
//! share the server set-up and the attack helpers kept here.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use openssl::x509::X509;
use serde_json::{json, Value};
use sigil::scep::client::{issuer_and_serial, Device};
use sigil::scep::{ContentCipher, DigestAlg, FailInfo, MessageType, Nonce, PkiStatus};

use crate::api::{call, new_token, new_token_with};
use crate::scep::{new_device, ScepServer, CHALLENGE};

const AES: ContentCipher = ContentCipher::Aes128Cbc;
const SHA: DigestAlg = DigestAlg::Sha256;

fn post(s: &ScepServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = call(s, "POST", path, Some(token), Some(body));
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn get(s: &ScepServer, path: &str, token: &str) -> (u16, Value) {
    let r = call(s, "GET", path, Some(token), None);
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// A PKCSReq of `device` for `csr` under `tid`, and the reply.
fn pkcsreq(
    s: &ScepServer,
    profile: &str,
    device: &Device,
    tid: &str,
    csr: &[u8],
) -> (Vec<u8>, sigil::scep::client::Reply) {
    let msg = device
        .request(
            MessageType::PkcsReq,
            tid,
            &Nonce::random().unwrap(),
            csr,
            &s.ra,
            AES,
            SHA,
        )
        .unwrap();
    let reply = device.read(&s.pki(profile, msg.clone(), false)).unwrap();
    (msg, reply)
}

fn issued(r: &sigil::scep::client::Reply) -> X509 {
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    X509::from_der(&r.certs[0]).unwrap()
}

fn serial(c: &X509) -> String {
    hex::encode(c.serial_number().to_bn().unwrap().to_vec())
}

/// The subject as OpenSSL prints it (`CN=a, O=b`).
fn subject_text(c: &X509) -> String {
    let text = String::from_utf8(c.to_text().unwrap()).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Subject: ").map(str::to_owned))
        .unwrap_or_default()
        .replace(" = ", "=")
}

fn audit(s: &ScepServer) -> Vec<Value> {
    let (_, v) = get(s, "/api/v1/audit?limit=100000", &s.admin);
    v.as_array().unwrap().clone()
}

fn details(record: &Value) -> Value {
    serde_json::from_str(record["details"].as_str().unwrap_or("{}")).unwrap_or(Value::Null)
}

#[test]
fn a_bound_name_is_the_whole_name_and_a_certificate_leads_to_its_token() {
    let s = ScepServer::start();
    let (mdm, mdm_id) = new_token(&s, "mdm", "intune-prod");
    let (st, minted) = post(&s, "/api/v1/challenges", &mdm, json!({"cn": "dev-1"}));
    assert_eq!(st, 201, "{minted}");
    let challenge_id = minted["id"].as_str().unwrap().to_string();
    assert!(challenge_id.starts_with("chl_"), "{minted}");
    // The CSR adds emailAddress, UID and OU to the bound CN: none reaches the certificate.
    let d = new_device("dev-1");
    let csr = d
        .csr_named(
            &[
                ("CN", "dev-1"),
                ("E", "ceo@agency.gov"),
                ("UID", "root"),
                ("OU", "Domain Admins"),
            ],
            Some(minted["challenge"].as_str().unwrap()),
            &[],
        )
        .unwrap();
    let (_, r) = pkcsreq(&s, "default", &d, "bound-1", &csr);
    let cert = issued(&r);
    assert_eq!(subject_text(&cert), "CN=dev-1");
    // SANs bound alone: the CN must be one of them, and nothing else of the CSR's subject.
    let (st, minted2) = post(
        &s,
        "/api/v1/challenges",
        &mdm,
        json!({"sans": ["dns:host.example"]}),
    );
    assert_eq!(st, 201);
    let d2 = new_device("host.example");
    let csr2 = d2
        .csr_named(
            &[("CN", "host.example"), ("O", "Evil Corp")],
            Some(minted2["challenge"].as_str().unwrap()),
            &["dns:host.example"],
        )
        .unwrap();
    let (_, r) = pkcsreq(&s, "default", &d2, "bound-2", &csr2);
    assert_eq!(subject_text(&issued(&r)), "CN=host.example");

    // Provenance: certificate -> its `issued` record -> challenge id -> the `challenge_created`
    // record -> the token that minted it.
    let log = audit(&s);
    let issued_rec = log
        .iter()
        .find(|a| a["action"] == "issued" && a["subject"] == serial(&cert).as_str())
        .expect("an issued record for the certificate");
    assert_eq!(details(issued_rec)["challenge_id"], challenge_id.as_str());
    let created = log
        .iter()
        .find(|a| a["action"] == "challenge_created" && a["subject"] == challenge_id.as_str())
        .expect("a challenge_created record under the challenge id");
    assert_eq!(created["actor"], format!("token:{mdm_id}"));
}

#[test]
fn two_people_for_enrollment_approvals_and_bindings_survive_pending() {
    let s = ScepServer::start();
    // One person, two tokens with names that differ only in case: the admin token mints the
    // challenge, the officer token tries to approve what it made possible.
    let (admin_alice, _) = new_token(&s, "admin", "a.smith@agency.gov");
    let (officer_alice, _) = new_token(&s, "officer", "A.Smith@Agency.gov");
    let (oscar, _) = new_token(&s, "officer", "oscar@agency.gov");
    let (st, minted) = post(
        &s,
        "/api/v1/challenges",
        &admin_alice,
        json!({"profile": "approval", "cn": "pend-1", "device_id": "dev-77"}),
    );
    assert_eq!(st, 201, "{minted}");
    let d = new_device("pend-1");
    let csr = d
        .csr_named(
            &[("CN", "pend-1"), ("OU", "Lab")],
            Some(minted["challenge"].as_str().unwrap()),
            &[],
        )
        .unwrap();
    let (_, r) = pkcsreq(&s, "approval", &d, "pend-1/+=", &csr);
    assert_eq!(r.status, PkiStatus::Pending, "{:?}", r.fail_text);
    // The queue shows the whole name the certificate will carry, what was asked, and who
    // minted the challenge; the id is URL-safe.
    let (_, queue) = get(&s, "/api/v1/approvals", &oscar);
    let item = queue
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["transaction_id"] == "pend-1/+=")
        .expect("in the queue")
        .clone();
    assert_eq!(item["subject"], "CN=pend-1");
    assert_eq!(item["requested_subject"], "CN=pend-1,OU=Lab");
    assert_eq!(item["device_id"], "dev-77");
    assert_eq!(item["challenge_minted_by_name"], "a.smith@agency.gov");
    let id = item["id"].as_str().unwrap().to_string();
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    // The minter cannot approve, by either route or either form of the id.
    for path in [
        format!("/api/v1/approvals/{id}/approve"),
        "/api/v1/approvals/pend-1%2F%2B%3D/approve".to_string(),
    ] {
        let (st, v) = post(&s, &path, &officer_alice, json!({}));
        assert_eq!(st, 403, "{path}: {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("minted the challenge"),
            "{v}"
        );
    }
    assert!(audit(&s)
        .iter()
        .any(|a| a["action"] == "approval_refused" && a["subject"] == id.as_str()));
    // Another officer approves; the bound device survived the wait.
    let (st, v) = post(
        &s,
        &format!("/api/v1/approvals/{id}/approve"),
        &oscar,
        json!({"comment": "ok"}),
    );
    assert_eq!(st, 200, "{v}");
    let serial = v["serial"].as_str().unwrap().to_string();
    let (_, cert) = get(&s, &format!("/api/v1/certificates/{serial}"), &oscar);
    assert_eq!(cert["device_id"], "dev-77", "{cert}");
    assert!(cert["subject"].as_str().unwrap().contains("pend-1"));
    assert!(!cert["subject"].as_str().unwrap().contains("Lab"), "{cert}");
    // So revoking the device reaches it.
    let (st, v) = post(
        &s,
        "/api/v1/devices/dev-77/revoke",
        &oscar,
        json!({"reason": "keyCompromise"}),
    );
    assert_eq!(st, 200, "{v}");
    assert!(v.to_string().contains(&serial), "{v}");
}

#[test]
fn a_revoked_held_or_renewed_certificate_renews_nothing() {
    let s = ScepServer::start_with(
        "\n[profiles.superseding]\nchallenge_sha256 = \"{h}\"\nrenewal_days = 400\nrevoke_superseded = true\n"
            .replace(
                "{h}",
                &hex::encode(openssl::sha::sha256(CHALLENGE.as_bytes())),
            )
            .as_str(),
    );
    let (officer, _) = new_token(&s, "officer", "olivia@agency.gov");
    let enrolled = |profile: &str, cn: &str| {
        let d = new_device(cn);
        let csr = d.csr(cn, Some(CHALLENGE), &[]).unwrap();
        let (_, r) = pkcsreq(&s, profile, &d, &format!("first-{cn}"), &csr);
        let c = issued(&r);
        let mut d = d;
        d.sign_with(c.to_der().unwrap());
        (d, c)
    };
    // A renewal request signed by `d` (RenewalReq, no challenge), with a new key.
    let renew = |d: &Device, profile: &str, cn: &str, tid: &str| {
        let csr = new_device(cn).csr(cn, None, &[]).unwrap();
        let msg = d
            .request(
                MessageType::RenewalReq,
                tid,
                &Nonce::random().unwrap(),
                &csr,
                &s.ra,
                AES,
                SHA,
            )
            .unwrap();
        d.read(&s.pki(profile, msg, false)).unwrap()
    };
    let revoke = |c: &X509, reason: &str| {
        let (st, v) = post(
            &s,
            &format!("/api/v1/certificates/{}/revoke", serial(c)),
            &officer,
            json!({"reason": reason}),
        );
        assert_eq!(st, 200, "{v}");
    };
    // Revoked (a stolen device key): no renewal.
    let (d, c) = enrolled("renewable", "stolen");
    revoke(&c, "keyCompromise");
    let r = renew(&d, "renewable", "stolen", "renew-stolen");
    assert_eq!(r.fail_info, Some(FailInfo::BadRequest));
    assert!(r.fail_text.unwrap().contains("is revoked"));
    // ...nor a PKCSReq signed by it without a challenge.
    let csr = new_device("stolen").csr("stolen", None, &[]).unwrap();
    let (_, r) = pkcsreq(&s, "renewable", &d, "pkcs-stolen", &csr);
    assert_eq!(r.status, PkiStatus::Failure);
    // On hold.
    let (d, c) = enrolled("renewable", "held");
    revoke(&c, "certificateHold");
    let r = renew(&d, "renewable", "held", "renew-held");
    assert!(r.fail_text.unwrap().contains("on hold"));
    // Renewed once: not twice.
    let (d, _) = enrolled("renewable", "twice");
    issued(&renew(&d, "renewable", "twice", "renew-twice-1"));
    let r = renew(&d, "renewable", "twice", "renew-twice-2");
    assert!(r.fail_text.unwrap().contains("already renewed"));
    // Superseded (revoked as such by its renewal): not again.
    let (d, c) = enrolled("superseding", "superseded");
    issued(&renew(&d, "superseding", "superseded", "renew-sup-1"));
    let (_, old) = get(
        &s,
        &format!("/api/v1/certificates/{}", serial(&c)),
        &officer,
    );
    assert_eq!(old["status"], "revoked", "{old}");
    let r = renew(&d, "superseding", "superseded", "renew-sup-2");
    let text = r.fail_text.unwrap();
    assert!(
        text.contains("superseded") || text.contains("already renewed"),
        "{text}"
    );
}

#[test]
fn transaction_ids_belong_to_their_requester_and_each_certificate_is_signed_once() {
    let s = ScepServer::start();
    // Two devices, one short decimal transactionID: both enroll.
    let a = new_device("dev-a");
    let b = new_device("dev-b");
    let ca = issued(
        &pkcsreq(
            &s,
            "renewable",
            &a,
            "16",
            &a.csr("dev-a", Some(CHALLENGE), &[]).unwrap(),
        )
        .1,
    );
    let cb = issued(
        &pkcsreq(
            &s,
            "renewable",
            &b,
            "16",
            &b.csr("dev-b", Some(CHALLENGE), &[]).unwrap(),
        )
        .1,
    );
    assert_ne!(serial(&ca), serial(&cb));
    // Nobody pre-claims another device's renewal: `16~renew~<serial>` was the key of a's
    // future renewal record; a third device sends it as a plain transactionID first.
    let c = new_device("dev-c");
    let claim = format!("16~renew~{}", serial(&ca));
    issued(
        &pkcsreq(
            &s,
            "renewable",
            &c,
            &claim,
            &c.csr("dev-c", Some(CHALLENGE), &[]).unwrap(),
        )
        .1,
    );
    let mut a = a;
    a.sign_with(ca.to_der().unwrap());
    let renewal = new_device("dev-a").csr("dev-a", None, &[]).unwrap();
    let msg = a
        .request(
            MessageType::RenewalReq,
            "16",
            &Nonce::random().unwrap(),
            &renewal,
            &s.ra,
            AES,
            SHA,
        )
        .unwrap();
    issued(&a.read(&s.pki("renewable", msg, false)).unwrap());

    // Eight copies of one request at once: the CA key signs one certificate, and every copy
    // gets it.
    let d = new_device("racer");
    let csr = d.csr("racer", Some(CHALLENGE), &[]).unwrap();
    let msg = d
        .request(
            MessageType::PkcsReq,
            "race-tx",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            AES,
            SHA,
        )
        .unwrap();
    let before = s.metric("sigil_certificates_signed_total");
    let token_cpu = |op: &str| s.metric(&format!("sigil_hsm_cpu_seconds_total{{op=\"{op}\"}}"));
    let (signing, decrypting) = (token_cpu("sign"), token_cpu("decrypt"));
    let replies: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| s.pki("default", msg.clone(), false)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let serials: std::collections::HashSet<String> = replies
        .iter()
        .map(|r| serial(&issued(&d.read(r).unwrap())))
        .collect();
    assert_eq!(serials.len(), 1, "copies got different certificates");
    assert_eq!(
        s.metric("sigil_certificates_signed_total") - before,
        1.0,
        "the CA key signed more than once"
    );
    // The token's share of the CPU is counted (what `sigil bench` subtracts to give the
    // host's): the RA decrypted eight copies and signed their answers on the token.
    assert!(token_cpu("sign") > signing, "signatures' CPU counted");
    assert!(
        token_cpu("decrypt") > decrypting,
        "decryptions' CPU counted"
    );

    // A replayed GetCert costs no new signature: the same bytes get the same answer.
    let ca_subject = X509::from_der(&s.ca)
        .unwrap()
        .subject_name()
        .to_der()
        .unwrap();
    let q = issuer_and_serial(&ca_subject, &cb.serial_number().to_bn().unwrap().to_vec());
    let getcert = b
        .request(
            MessageType::GetCert,
            "getcert-replay",
            &Nonce::random().unwrap(),
            &q,
            &s.ra,
            AES,
            SHA,
        )
        .unwrap();
    let replays = s.metric("sigil_scep_replays_total");
    let first = s.pki("default", getcert.clone(), false);
    let second = s.pki("default", getcert, false);
    assert_eq!(
        first, second,
        "a replay was answered anew (fresh senderNonce)"
    );
    assert_eq!(s.metric("sigil_scep_replays_total") - replays, 1.0);
    assert_eq!(serial(&issued(&b.read(&first).unwrap())), serial(&cb));
}

#[test]
fn the_core_cuts_off_oversized_and_slow_requests() {
    let s = ScepServer::start_with("\n[server]\nheader_timeout_secs = 1\nbody_timeout_secs = 1\n");
    let addr = s.base.trim_start_matches("http://").to_string();
    // Larger than scep.max_message_bytes (1 MiB in the test servers).
    let big = vec![0x30u8; 2 * 1024 * 1024];
    let (st, _) = s.post("/scep?operation=PKIOperation", big);
    assert_eq!(st, 413);
    // A body that never comes: cut off with a reason, not held open.
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "POST /scep?operation=PKIOperation HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-pki-message\r\nContent-Length: 1000\r\n\r\nabc"
    )
    .unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(started.elapsed() < Duration::from_secs(8), "held open");
    assert!(
        answer.starts_with("HTTP/1.1 4"),
        "a slow body gets a 4xx: {answer}"
    );
    // A head that never ends: the connection is closed.
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(8), "held open");
    // The server still answers everyone else.
    assert_eq!(s.get("/healthz").0, 200);
    let _ = new_token_with;
}

/// A server with a derived-credential profile (named by a credential, so registration-only),
/// an Intune-shaped directory, and a credential needing 3072-bit keys.
fn registration_server(mdm_url: &str, secret: &std::path::Path) -> ScepServer {
    ScepServer::start_with(&format!(
        r#"
[profiles.derived]
allowed_sans = ["email", "upn", "uri"]

[profiles.wifi]
challenge_sha256 = "{h}"

[directories.intune]
kind = "intune"
base_url = "{mdm_url}"
token_url = "{mdm_url}/tenant-1/oauth2/v2.0/token"
tenant_id = "tenant-1"
client_id = "{client}"
client_secret_file = "{secret}"
timeout_secs = 2
retries = 1

[directories.jamf]
kind = "generic"
auth = "none"
devices_url = "http://127.0.0.1:9/devices?email={{email}}"
fields = {{ id = "/id" }}

[credentials.piv-derived]
profile = "derived"
directory = "intune"
subject = "CN={{user}} {{serial_number}},O=Agency"
sans = ["email:{{email}}"]
key_size = 3072
"#,
        h = hex::encode(openssl::sha::sha256(CHALLENGE.as_bytes())),
        client = crate::fake_mdm::CLIENT_ID,
        secret = secret.display(),
    ))
}

/// The NDES page's challenge (UTF-16LE HTML).
fn ndes_challenge(s: &ScepServer, token: &str, query: &str) -> (u16, String) {
    let r = s
        .http
        .get(format!("{}/certsrv/mscep_admin/{query}", s.base))
        .basic_auth("any", Some(token))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().unwrap();
    if status != 200 {
        return (status, String::from_utf8_lossy(&bytes).into_owned());
    }
    let units: Vec<u16> = bytes[2..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let html = String::from_utf16(&units).unwrap();
    let challenge = html
        .split("The enrollment challenge password is: <B> ")
        .nth(1)
        .and_then(|rest| rest.split(" </B>").next())
        .unwrap_or("")
        .to_owned();
    (status, challenge)
}

#[test]
fn registration_only_profiles_scoped_tokens_and_credential_key_rules() {
    let alice = "alice@agency.gov";
    let mdm = crate::fake_mdm::intune(
        vec![crate::fake_mdm::intune_device(
            "iphone-1",
            alice,
            "Alice's iPhone",
            "iOS",
            "compliant",
            "F2LXK1",
            "00008110-001A2B3C4D5E6F70",
        )],
        5,
    );
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("graph-secret");
    std::fs::write(&secret, crate::fake_mdm::CLIENT_SECRET).unwrap();
    let s = registration_server(&mdm.url, &secret);
    let wide = new_token(&s, "mdm", "wide").0;

    // Nobody mints a challenge for a registration-only profile: not an admin, not an
    // integration scoped to every profile, not the NDES page, not the command line.
    let director = json!({"profile": "derived", "sans": ["upn:director@agency.gov"]});
    for token in [&s.admin, &wide] {
        let (st, v) = post(&s, "/api/v1/challenges", token, director.clone());
        assert_eq!(st, 403, "{v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("issues only through registrations"),
            "{v}"
        );
    }
    let (st, body) = ndes_challenge(&s, &wide, "?profile=derived");
    assert_eq!(st, 403, "{body}");
    let out = s.sigil(&["challenge", "create", "--profile", "derived"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("issues only through registrations"));

    // Integration tokens carry a scope, set at creation, shown and audited.
    let (asker, _) = s.host_token("admin", "asking admin");
    let r = call(
        &s,
        "POST",
        "/api/v1/tokens",
        Some(&asker),
        Some(json!({"role": "mdm", "name": "unscoped"})),
    );
    assert_eq!(r.status(), 400, "an mdm token needs a scope");
    let r = call(
        &s,
        "POST",
        "/api/v1/tokens",
        Some(&asker),
        Some(json!({"role": "mdm", "name": "x", "profiles": ["derived"]})),
    );
    assert_eq!(
        r.status(),
        400,
        "no token may mint for a registration-only profile"
    );
    let (wifi_only, wifi_id) = new_token_with(
        &s,
        json!({"role": "mdm", "name": "wifi-connector", "profiles": ["wifi"]}),
    );
    let (_, tokens) = get(&s, "/api/v1/tokens", &s.admin);
    let listed = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == wifi_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["scope"]["profiles"], json!(["wifi"]), "{listed}");
    assert!(audit(&s).iter().any(|a| a["action"] == "token_created"
        && a["subject"] == wifi_id.as_str()
        && details(a)["scope"]["profiles"] == json!(["wifi"])));
    let (st, _) = post(
        &s,
        "/api/v1/challenges",
        &wifi_only,
        json!({"profile": "default"}),
    );
    assert_eq!(st, 403, "out of scope");
    let (st, _) = post(
        &s,
        "/api/v1/challenges",
        &wifi_only,
        json!({"profile": "wifi"}),
    );
    assert_eq!(st, 201);
    // Its NDES page mints for its one profile: an enrollment there works.
    let (st, ch) = ndes_challenge(&s, &wifi_only, "");
    assert_eq!(st, 200, "{ch}");
    let d = new_device("ndes-wifi");
    let csr = d.csr("ndes-wifi", Some(&ch), &[]).unwrap();
    issued(&pkcsreq(&s, "wifi", &d, "ndes-wifi", &csr).1);

    // A registration, approved by a second officer.
    let (olivia, _) = new_token(&s, "officer", "olivia@agency.gov");
    let (oscar, _) = new_token(&s, "officer", "oscar@agency.gov");
    let (st, reg) = post(
        &s,
        "/api/v1/registrations",
        &olivia,
        json!({"email": alice, "credential": "piv-derived"}),
    );
    assert_eq!(st, 201, "{reg}");
    let id = reg["id"].as_str().unwrap().to_string();
    let (st, v) = post(
        &s,
        &format!("/api/v1/registrations/{id}/request"),
        &olivia,
        json!({"device_id": "iphone-1"}),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = post(
        &s,
        &format!("/api/v1/registrations/{id}/approve"),
        &oscar,
        json!({}),
    );
    assert_eq!(st, 200, "{v}");
    // Only a token scoped to the registration's directory collects its payload; a refused
    // collection voids nothing.
    let payload_path = format!("/api/v1/registrations/{id}/scep-payload");
    let (jamf_only, _) = new_token_with(
        &s,
        json!({"role": "mdm", "name": "jamf-connector", "directories": ["jamf"]}),
    );
    let (st, payload) = get(&s, &payload_path, &wide);
    assert_eq!(st, 200, "{payload}");
    let (st, v) = get(&s, &payload_path, &jamf_only);
    assert_eq!(st, 403, "{v}");
    // Nor does an admin: the challenge enrolls as the registered person, and an admin acting
    // as an integration would skip the second admin an integration token needs.
    let (st, v) = get(&s, &payload_path, &s.admin);
    assert_eq!(st, 403, "{v}");
    let _ = get(&s, &payload_path, &wifi_only);
    let challenge = payload["challenge"].as_str().unwrap();
    // The credential's key rules hold at enrollment: a 2048-bit key is refused...
    let small = new_device("small");
    let csr = small.csr("phone", Some(challenge), &[]).unwrap();
    let (_, r) = pkcsreq(&s, "derived", &small, "small-key", &csr);
    assert_eq!(r.status, PkiStatus::Failure);
    assert!(r.fail_text.unwrap().contains("at least 3072 bits"));
    // ...a 3072-bit one gets the registration's identity with the same challenge.
    let big = Device::rsa(3072, "phone").unwrap();
    let csr = big.csr("phone", Some(challenge), &[]).unwrap();
    let cert = issued(&pkcsreq(&s, "derived", &big, "big-key", &csr).1);
    assert_eq!(subject_text(&cert), "CN=alice F2LXK1, O=Agency");
}

#[test]
fn a_registration_only_profile_with_a_static_challenge_does_not_start() {
    let t = crate::common::TokenDir::new();
    let cfg = t.path().join("sigil.toml");
    std::fs::write(
        &cfg,
        r#"
[profiles.default]

[profiles.derived]
challenge_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[directories.mdm]
kind = "generic"
auth = "none"
devices_url = "http://127.0.0.1:9/devices?email={email}"
fields = { id = "/id" }

[credentials.piv]
profile = "derived"
directory = "mdm"
"#,
    )
    .unwrap();
    let out = t
        .sigil()
        .env("SIGIL_CONFIG", &cfg)
        .args(["config", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("issues only through registrations") && err.contains("challenge_sha256"),
        "{err}"
    );
}

#[test]
fn ocsp_is_signed_by_the_delegated_responder_not_the_ca_key() {
    let s = ScepServer::start();
    let d = new_device("ocsp-dev");
    let cert = issued(
        &pkcsreq(
            &s,
            "default",
            &d,
            "ocsp-dev",
            &d.csr("ocsp-dev", Some(CHALLENGE), &[]).unwrap(),
        )
        .1,
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::common::write_pem(dir.path(), "ca.pem", &s.ca);
    let leaf = crate::common::write_pem(dir.path(), "leaf.pem", &cert.to_der().unwrap());
    let resp = dir.path().join("resp.der");
    let (ok, out) = crate::common::openssl(&[
        "ocsp",
        "-issuer",
        ca.to_str().unwrap(),
        "-cert",
        leaf.to_str().unwrap(),
        "-url",
        &format!("{}/ocsp", s.base),
        "-CAfile",
        ca.to_str().unwrap(),
        "-respout",
        resp.to_str().unwrap(),
        "-resp_text",
    ]);
    assert!(ok && out.contains("Response verify OK"), "{out}");
    assert!(out.contains(": good"), "{out}");
    // The signer is the responder certificate carried in the answer: OCSP signing only,
    // no revocation check of its own, issued by the CA, and not the CA.
    assert!(out.contains("OCSP Signing"), "{out}");
    assert!(out.contains("OCSP No Check"), "{out}");
    assert!(out.contains("OCSP Responder"), "{out}");
    let ca_key_id = {
        let x = X509::from_der(&s.ca).unwrap();
        let bits = x
            .public_key()
            .unwrap()
            .rsa()
            .unwrap()
            .public_key_to_der_pkcs1()
            .unwrap();
        hex::encode_upper(openssl::sha::sha1(&bits))
    };
    let responder_id = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Responder Id: "))
        .expect("a responder ID by key")
        .replace(':', "")
        .to_ascii_uppercase();
    assert_ne!(responder_id, ca_key_id, "signed by the CA key: {out}");
}

#[test]
fn a_revocation_whose_crl_could_not_be_made_is_published_within_seconds() {
    let s = ScepServer::start();
    let d = new_device("late-crl");
    let cert = issued(
        &pkcsreq(
            &s,
            "default",
            &d,
            "late-crl",
            &d.csr("late-crl", Some(CHALLENGE), &[]).unwrap(),
        )
        .1,
    );
    let (_, _, body) = s.get("/readyz");
    let ready: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ready["crl"][0]["current"], true, "{ready}");
    // A revocation committed by a node that died before it could make the CRL: the row and
    // the mark, written in one transaction as the store writes them.
    let db = rusqlite::Connection::open(s.token.data().join("sigil.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute_batch(&format!(
        "BEGIN IMMEDIATE; \
         UPDATE certificates SET status = 'revoked', revoked_at = strftime('%s','now'), \
           revocation_reason = 1 WHERE serial = '{s}'; \
         INSERT INTO crl_marks (issuer, revisions, since) \
           SELECT issuer, 1, strftime('%s','now') FROM certificates WHERE serial = '{s}' \
           ON CONFLICT (issuer) DO UPDATE SET revisions = crl_marks.revisions + 1; \
         COMMIT;",
        s = serial(&cert)
    ))
    .unwrap();
    // The background round (every second here; every 5 s at most) publishes a CRL that
    // lists it, and the mark clears.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, crl) = s.get("/crl/sigil-ca.crl");
        let listed = openssl::x509::X509Crl::from_der(&crl)
            .ok()
            .and_then(|c| {
                c.get_revoked().map(|r| {
                    r.iter().any(|e| {
                        hex::encode(e.serial_number().to_bn().unwrap().to_vec()) == serial(&cert)
                    })
                })
            })
            .unwrap_or(false);
        let (_, _, body) = s.get("/readyz");
        let ready: Value = serde_json::from_slice(&body).unwrap();
        if listed && ready["crl"][0]["current"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never published: {ready}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(s.metric("sigil_crl_stale_seconds{ca=\"sigil-ca\"}") == 0.0);
}

#[test]
fn a_postgres_url_without_sslmode_says_why_it_failed_and_how_to_fix_it() {
    let base = std::env::var("SIGIL_TEST_DATABASE_URL").unwrap();
    // Debian's cluster has TLS on with a self-signed certificate: libpq's default sslmode
    // (prefer) would fall back; Sigil verifies and must say what to do.
    let url = base.replace("?sslmode=disable", "");
    let t = crate::common::TokenDir::new();
    let out = t
        .sigil()
        .env("SIGIL_DATABASE_URL", &url)
        .args(["cert", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sslmode=disable") && err.contains("does not name the host"),
        "{err}"
    );
    let password = base
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('@').next())
        .and_then(|userinfo| userinfo.split(':').nth(1))
        .unwrap();
    assert!(!err.contains(password), "the password was shown: {err}");
    // A wrong password: the server's own words and the setting to fix.
    let wrong = base.replace(password, "not-the-password");
    let out = t
        .sigil()
        .env("SIGIL_DATABASE_URL", &wrong)
        .args(["cert", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("password authentication failed")
            && err.contains("user name or password in database.url is wrong"),
        "{err}"
    );
}
