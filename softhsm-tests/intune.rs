//! Intune's SCEP challenge against the local Intune (`fake_intune.rs`): Microsoft's test
//! matrix (`src/CsrValidation/doc/TestMatrix.csv`: subject formats, SANs, key sizes, SHA-1
//! and SHA-2, renewal, challenge failures, validate and success notification failing,
//! authentication failing), the contract's faults (discovery down, a token expiring mid-run,
//! 429 with Retry-After) and the revocation feed end to end.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use openssl::x509::X509;
use serde_json::json;
use sigil::scep::client::{Device, Reply};
use sigil::scep::{ContentCipher, DigestAlg, MessageType, Nonce, PkiStatus};

use crate::console::{crl_lists, ocsp_revoked};
use crate::fake_intune::{self, Expect, FakeIntune, CLIENT_ID, CLIENT_SECRET, TENANT};
use crate::scep::ScepServer;

pub(crate) fn server(fake: &FakeIntune, dir: &Path, secret: &str) -> ScepServer {
    let file = dir.join("intune-secret");
    std::fs::write(&file, secret).unwrap();
    ScepServer::start_with(&format!(
        r#"
[profiles.intune]
challenge = "intune"
intune = "contoso"
allowed_sans = ["email", "upn", "uri"]
renewal_days = 400
validity_days = 365
key_usage = ["digitalSignature", "keyEncipherment"]
# clientAuth and IPsec tunnel (Intune's "IP security tunnel termination")
extended_key_usage = ["clientAuth", "1.3.6.1.5.5.7.3.6"]

[intune.contoso]
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret_file = "{file}"
login_url = "{url}"
graph_url = "{url}"
timeout_secs = 5
retries = 2
revocation_interval_minutes = 0
"#,
        file = file.display(),
        url = fake.url(),
    ))
}

/// A PKCSReq to the Intune profile.
fn send(
    s: &ScepServer,
    d: &Device,
    subject: &[(&str, &str)],
    challenge: &str,
    sans: &[&str],
    digest: DigestAlg,
    tid: &str,
) -> (Reply, Vec<u8>) {
    let csr = d.csr_named(subject, Some(challenge), sans).unwrap();
    pkcs_req(s, d, &csr, digest, tid)
}

/// A PKCSReq carrying `csr` to the `intune` profile: the reply and the message sent.
pub(crate) fn pkcs_req(
    s: &ScepServer,
    d: &Device,
    csr: &[u8],
    digest: DigestAlg,
    tid: &str,
) -> (Reply, Vec<u8>) {
    let msg = d
        .request(
            MessageType::PkcsReq,
            tid,
            &Nonce::random().unwrap(),
            csr,
            &s.ra,
            ContentCipher::Aes128Cbc,
            digest,
        )
        .unwrap();
    (d.read(&s.pki("intune", msg.clone(), false)).unwrap(), msg)
}

/// The subject text Intune compares, from a CSR with this subject.
pub(crate) fn subject_text(subject: &[(&str, &str)]) -> String {
    thread_local! {
        static KEY: Device = Device::rsa(2048, "x").unwrap();
    }
    let csr = KEY.with(|d| d.csr_named(subject, None, &[]).unwrap());
    sigil::pki::name_text(&sigil::pki::parse_csr(&csr).unwrap().subject)
}

fn expect(fake: &FakeIntune, challenge: &str, subject: &[(&str, &str)], sans: &[&str]) {
    fake.expect(
        challenge,
        Expect {
            subject: subject_text(subject),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            min_bits: 2048,
            expired: false,
            ..Default::default()
        },
    );
}

pub(crate) fn failed(r: &Reply, code: &str) {
    assert_eq!(r.status, PkiStatus::Failure, "{:?}", r.fail_text);
    let text = r.fail_text.clone().unwrap_or_default();
    assert!(text.contains(code), "`{code}` not in: {text}");
}

/// A row of the matrix: challenge, subject, SANs, key size, digest.
type Case = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<&'static str>,
    u32,
    DigestAlg,
);

const SID: &str =
    "uri:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348-1177238915-682003330-1001";

#[test]
fn intune_vouches_and_is_told_across_microsofts_test_matrix() {
    let fake = fake_intune::start();
    let dir = tempfile::tempdir().unwrap();
    let s = server(&fake, dir.path(), CLIENT_SECRET);

    // Subject formats, SANs (email, the strong-mapping SID URI), key sizes, SHA-1 and SHA-2.
    let cases: Vec<Case> = vec![
        (
            "c-1",
            vec![("CN", "ann")],
            vec!["email:ann@contoso.test"],
            2048,
            DigestAlg::Sha256,
        ),
        (
            "c-2",
            vec![("CN", "ann"), ("O", "Contoso"), ("OU", "Sales")],
            vec!["email:ann@contoso.test", SID],
            3072,
            DigestAlg::Sha256,
        ),
        (
            "c-3",
            vec![("CN", "f1a2b3c4-device"), ("E", "ann@contoso.test")],
            vec![],
            2048,
            DigestAlg::Sha1,
        ),
        (
            "c-4",
            vec![("CN", "ann")],
            vec![SID],
            4096,
            DigestAlg::Sha512,
        ),
    ];
    let mut issued = Vec::new();
    for (challenge, subject, sans, bits, digest) in &cases {
        expect(&fake, challenge, subject, sans);
        let d = Device::rsa(*bits, "ann").unwrap();
        let (r, _) = send(
            &s,
            &d,
            subject,
            challenge,
            sans,
            *digest,
            &format!("tid-{challenge}"),
        );
        assert_eq!(
            r.status,
            PkiStatus::Success,
            "{challenge}: {:?}\n{}",
            r.fail_text,
            s.log()
        );
        let cert = X509::from_der(&r.certs[0]).unwrap();
        let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
        if sans.contains(&SID) {
            assert!(
                text.contains("URI:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348"),
                "the strong mapping reaches the certificate: {text}"
            );
        }
        issued.push((challenge.to_string(), r.certs[0].clone(), d));
    }
    // Intune was told of each, with the certificate's thumbprint and serial.
    let notes = fake.state.notifications.lock().unwrap().clone();
    for (challenge, der, _) in &issued {
        let thumb = hex::encode_upper(openssl::sha::sha1(der));
        let n = notes
            .iter()
            .find(|(a, n)| a == "successNotification" && n["certificateThumbprint"] == thumb)
            .unwrap_or_else(|| panic!("{challenge}: no success notification: {notes:?}"));
        let serial = hex::encode_upper(
            X509::from_der(der)
                .unwrap()
                .serial_number()
                .to_bn()
                .unwrap()
                .to_vec(),
        );
        assert_eq!(n.1["certificateSerialNumber"], serial);
        assert_eq!(n.1["transactionId"], format!("tid-{challenge}"));
        assert!(n.1["certificateExpirationDateUtc"]
            .as_str()
            .unwrap()
            .ends_with(".000Z"));
        assert!(n.1["callerInfo"].as_str().unwrap().starts_with("Sigil/"));
    }
    // Every call carried the contract's headers (the fake refuses calls without them).
    for r in fake.seen("/ScepActions/") {
        assert_eq!(r.header("api-version"), Some("2018-02-20"));
    }

    // A device's resend of an issued request is answered from the store: Intune is not
    // asked again.
    let before = fake.seen("validateRequest").len();
    let (challenge, _, d) = &issued[0];
    let (r, _) = send(
        &s,
        d,
        &[("CN", "ann")],
        challenge,
        &["email:ann@contoso.test"],
        DigestAlg::Sha256,
        &format!("tid-{challenge}"),
    );
    assert_eq!(r.status, PkiStatus::Success);
    assert_eq!(fake.seen("validateRequest").len(), before);

    // Renewal (short validity, inside the window): signed by the certificate, no challenge
    // for Intune to check.
    let (_, der, mut renewing) = issued.swap_remove(0);
    let before = fake.seen("validateRequest").len();
    renewing.sign_with(der);
    let csr = renewing
        .csr("ann", None, &["email:ann@contoso.test"])
        .unwrap();
    let msg = renewing
        .request(
            MessageType::RenewalReq,
            "tid-renew",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            ContentCipher::Aes128Cbc,
            DigestAlg::Sha256,
        )
        .unwrap();
    let renewed = renewing.read(&s.pki("intune", msg, false)).unwrap();
    assert_eq!(
        renewed.status,
        PkiStatus::Success,
        "{:?}",
        renewed.fail_text
    );
    assert_eq!(fake.seen("validateRequest").len(), before);

    // Challenge failures, each with Intune's code in the CertRep's text; nothing issued.
    fake.expect(
        "expired",
        Expect {
            subject: subject_text(&[("CN", "ann")]),
            sans: vec![],
            min_bits: 2048,
            expired: true,
            ..Default::default()
        },
    );
    let d = Device::rsa(2048, "ann").unwrap();
    let (r, _) = send(
        &s,
        &d,
        &[("CN", "ann")],
        "expired",
        &[],
        DigestAlg::Sha256,
        "tid-x1",
    );
    failed(&r, "ChallengeExpired");
    expect(&fake, "subject", &[("CN", "ann")], &[]);
    let (r, _) = send(
        &s,
        &d,
        &[("CN", "mallory")],
        "subject",
        &[],
        DigestAlg::Sha256,
        "tid-x2",
    );
    failed(&r, "SubjectNameMismatch");
    let (r, _) = send(
        &s,
        &d,
        &[("CN", "ann")],
        "subject",
        &["email:boss@contoso.test"],
        DigestAlg::Sha256,
        "tid-x3",
    );
    failed(&r, "SubjectAltNameMismatch");
    fake.expect(
        "big",
        Expect {
            subject: subject_text(&[("CN", "ann")]),
            sans: vec![],
            min_bits: 3072,
            expired: false,
            ..Default::default()
        },
    );
    let (r, _) = send(
        &s,
        &d,
        &[("CN", "ann")],
        "big",
        &[],
        DigestAlg::Sha256,
        "tid-x4",
    );
    failed(&r, "KeyLengthMismatch");
    let (r, _) = send(
        &s,
        &d,
        &[("CN", "ann")],
        "made-up",
        &[],
        DigestAlg::Sha256,
        "tid-x5",
    );
    failed(&r, "ChallengeDecryptionError");

    // Intune vouches, but Sigil's profile refuses (a DNS name it does not allow): Intune is
    // told of the failure with an HRESULT.
    expect(&fake, "dns", &[("CN", "ann")], &["dns:ann.contoso.test"]);
    let (r, _) = send(
        &s,
        &d,
        &[("CN", "ann")],
        "dns",
        &["ann.contoso.test"],
        DigestAlg::Sha256,
        "tid-x6",
    );
    assert_eq!(r.status, PkiStatus::Failure);
    let notes = fake.state.notifications.lock().unwrap().clone();
    let f = notes
        .iter()
        .find(|(a, n)| a == "failureNotification" && n["transactionId"] == "tid-x6")
        .expect("a failure notification");
    assert_eq!(f.1["hResult"], json!(-2147467259));
    assert!(f.1["errorDescription"].as_str().unwrap().len() <= 255);
}

#[test]
fn intune_faults_never_issue_a_certificate_it_was_not_told_of() {
    let fake = fake_intune::start();
    let dir = tempfile::tempdir().unwrap();
    // Discovery down at first: no certificate, and the answer says where it failed.
    fake.state.discovery_broken.store(true, Ordering::SeqCst);
    let s = server(&fake, dir.path(), CLIENT_SECRET);
    let d = Device::rsa(2048, "bob").unwrap();
    expect(&fake, "k1", &[("CN", "bob")], &[]);
    let (r, _) = send(
        &s,
        &d,
        &[("CN", "bob")],
        "k1",
        &[],
        DigestAlg::Sha256,
        "f-1",
    );
    failed(&r, "endpoint discovery");
    fake.state.discovery_broken.store(false, Ordering::SeqCst);

    // 429 with Retry-After: the same activity tries again after it, with the same
    // client-request-id.
    fake.state.throttle.store(1, Ordering::SeqCst);
    let before = fake.seen("validateRequest").len();
    let t = Instant::now();
    let (r, _) = send(
        &s,
        &d,
        &[("CN", "bob")],
        "k1",
        &[],
        DigestAlg::Sha256,
        "f-2",
    );
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "Retry-After is honoured"
    );
    let calls = fake.seen("validateRequest");
    assert_eq!(calls.len(), before + 2);
    assert_eq!(
        calls[before].header("client-request-id"),
        calls[before + 1].header("client-request-id")
    );

    // A token that stops working mid-run: a new one is fetched and the request goes through.
    let issued = fake.state.tokens_issued.load(Ordering::SeqCst);
    fake.state.valid_tokens.lock().unwrap().clear();
    let d2 = Device::rsa(2048, "bob").unwrap();
    let (r, _) = send(
        &s,
        &d2,
        &[("CN", "bob")],
        "k1",
        &[],
        DigestAlg::Sha256,
        "f-3",
    );
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    assert!(fake.state.tokens_issued.load(Ordering::SeqCst) > issued);

    // validateRequest failing (500, every retry): no certificate.
    fake.state.validate_broken.store(true, Ordering::SeqCst);
    let before = fake.seen("validateRequest").len();
    let d3 = Device::rsa(2048, "bob").unwrap();
    let (r, _) = send(
        &s,
        &d3,
        &[("CN", "bob")],
        "k1",
        &[],
        DigestAlg::Sha256,
        "f-4",
    );
    failed(&r, "could not be asked");
    assert_eq!(
        fake.seen("validateRequest").len(),
        before + 3,
        "one try and two retries"
    );
    fake.state.validate_broken.store(false, Ordering::SeqCst);

    // successNotification failing: the certificate is not handed out (it is revoked), and
    // the device's resend gets the same answer without a second validation.
    fake.state.success_broken.store(true, Ordering::SeqCst);
    let d4 = Device::rsa(2048, "bob").unwrap();
    let (r, msg) = send(
        &s,
        &d4,
        &[("CN", "bob")],
        "k1",
        &[],
        DigestAlg::Sha256,
        "f-5",
    );
    failed(&r, "withdrawn");
    assert!(r.certs.is_empty());
    let validations = fake.seen("validateRequest").len();
    let again = d4.read(&s.pki("intune", msg, false)).unwrap();
    failed(&again, "withdrawn");
    assert_eq!(fake.seen("validateRequest").len(), validations);
    let certs: serde_json::Value = s
        .http
        .get(format!(
            "{}/api/v1/certificates?profile=intune&status=revoked",
            s.base
        ))
        .bearer_auth(&s.admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(certs.as_array().unwrap().len(), 1, "{certs}");
    fake.state.success_broken.store(false, Ordering::SeqCst);

    // A wrong client secret: no certificate, and `sigil intune check` says why.
    let bad_dir = tempfile::tempdir().unwrap();
    let bad = server(&fake, bad_dir.path(), "not-the-secret");
    let (r, _) = send(
        &bad,
        &d,
        &[("CN", "bob")],
        "k1",
        &[],
        DigestAlg::Sha256,
        "f-6",
    );
    failed(&r, "invalid_client");
    let out = bad
        .cli()
        .args(["intune", "check", "contoso"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AADSTS7000215"), "{err}");
    // The good one is ready; without admin consent on Graph, the check says what is missing.
    let out = s
        .cli()
        .args(["intune", "check", "contoso"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("ScepRequestValidationFEService"), "{said}");
    assert!(said.contains("is ready"), "{said}");
    fake.state.no_consent.store(true, Ordering::SeqCst);
    let out = s
        .cli()
        .args(["intune", "check", "contoso"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Application.Read.All"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn intunes_revocation_feed_revokes_and_reports_back() {
    let fake = fake_intune::start();
    let dir = tempfile::tempdir().unwrap();
    let s = server(&fake, dir.path(), CLIENT_SECRET);
    expect(&fake, "r1", &[("CN", "carol")], &[]);
    let d = Device::rsa(2048, "carol").unwrap();
    let (r, _) = send(
        &s,
        &d,
        &[("CN", "carol")],
        "r1",
        &[],
        DigestAlg::Sha256,
        "r-1",
    );
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    let cert = X509::from_der(&r.certs[0]).unwrap();
    let serial = cert.serial_number().to_bn().unwrap().to_vec();
    assert!(!ocsp_revoked(&s, &cert));
    // A certificate of the same CA that Intune did not vouch for (another profile's).
    let (_, other) = crate::scep::enroll(
        &s,
        "default",
        "bystander",
        Some(crate::scep::CHALLENGE),
        ContentCipher::Aes128Cbc,
        DigestAlg::Sha256,
        false,
    );
    assert_eq!(other.status, PkiStatus::Success, "{:?}", other.fail_text);
    let other = X509::from_der(&other.certs[0]).unwrap();
    let other_serial = other.serial_number().to_bn().unwrap().to_vec();
    // The device is wiped: Intune queues a revocation request (and one for a certificate
    // this CA never issued, and one for that bystander).
    fake.state.revocations.lock().unwrap().extend([
        json!({"requestContext": "ctx-wiped", "serialNumber": hex::encode_upper(&serial),
               "issuerName": "Test SCEP CA", "caConfiguration": "sigil"}),
        json!({"requestContext": "ctx-stranger", "serialNumber": "DEADBEEF01",
               "issuerName": null, "caConfiguration": null}),
        json!({"requestContext": "ctx-bystander", "serialNumber": hex::encode_upper(&other_serial),
               "issuerName": "Test SCEP CA", "caConfiguration": "sigil"}),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while fake.state.uploaded.lock().unwrap().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "no results uploaded\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let up = fake.state.uploaded.lock().unwrap().clone();
    let wiped = up
        .iter()
        .find(|r| r["requestContext"] == "ctx-wiped")
        .unwrap();
    assert_eq!(wiped["succeeded"], true);
    assert_eq!(wiped["errorCode"], "None");
    let stranger = up
        .iter()
        .find(|r| r["requestContext"] == "ctx-stranger")
        .unwrap();
    assert_eq!(stranger["succeeded"], false);
    // Intune revokes only what it vouched for: the bystander stays valid.
    let bystander = up
        .iter()
        .find(|r| r["requestContext"] == "ctx-bystander")
        .unwrap();
    assert_eq!(bystander["succeeded"], false, "{bystander}");
    assert!(!ocsp_revoked(&s, &other), "another profile's certificate");
    // Revoked: OCSP at once, the CRL within seconds; the audit log says who asked.
    assert!(ocsp_revoked(&s, &cert));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !crl_lists(&s, &serial) {
        assert!(Instant::now() < deadline, "the CRL does not list it");
        std::thread::sleep(Duration::from_millis(250));
    }
    let audit = s.audit_log();
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "external_revocations" && r["actor"] == "intune:contoso"),
        "{audit:?}"
    );
}

/// For regulated tenants: Sigil proves itself to Entra ID with a certificate whose key is on
/// the token (`private_key_jwt`), no client secret anywhere.
#[test]
fn intune_with_a_certificate_credential_on_the_token() {
    let fake = fake_intune::start();
    let url = fake.url().to_string();
    let state = fake.state.clone();
    let s = ScepServer::start_tls_with(|token, _| {
        let out = token
            .sigil()
            .args(["identity", "client-key", "--label", "sigil-intune"])
            .output()
            .unwrap();
        let jwks: serde_json::Value = serde_json::from_str(&crate::common::ok(&out)).unwrap();
        *state.client_jwks.lock().unwrap() = Some(jwks);
        format!(
            r#"
[profiles.intune]
challenge = "intune"
intune = "contoso"

[intune.contoso]
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_key = "sigil-intune"
login_url = "{url}"
graph_url = "{url}"
timeout_secs = 5
retries = 1
"#
        )
    });
    expect(&fake, "pk1", &[("CN", "dana")], &[]);
    let d = Device::rsa(2048, "dana").unwrap();
    let (r, _) = send(
        &s,
        &d,
        &[("CN", "dana")],
        "pk1",
        &[],
        DigestAlg::Sha256,
        "pk-1",
    );
    assert_eq!(
        r.status,
        PkiStatus::Success,
        "{:?}\n{}",
        r.fail_text,
        s.log()
    );
    let tokens = fake.seen("/oauth2/v2.0/token");
    assert!(!tokens.is_empty());
    for t in &tokens {
        let form = t.form();
        assert!(!form.contains_key("client_secret"), "no secret is sent");
        assert!(form.contains_key("client_assertion"));
    }
    // Another key registered with the app: Entra refuses, and nothing is issued.
    *fake.state.client_jwks.lock().unwrap() = Some(json!({"keys": []}));
    fake.state.valid_tokens.lock().unwrap().clear();
    let d2 = Device::rsa(2048, "dana").unwrap();
    let (r, _) = send(
        &s,
        &d2,
        &[("CN", "dana")],
        "pk1",
        &[],
        DigestAlg::Sha256,
        "pk-2",
    );
    failed(&r, "invalid_client");
}
