//! PIV/CAC sign-in: client certificates from a test CA (made here with rcgen, as an agency's
//! PIV issuing CA would make them: the person's UPN in the subject alternative names), checked
//! by Sigil against `[identity.mtls]`, revocation by CRL and by a real OCSP responder
//! (`openssl ocsp`), failing closed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::common::free_port;
use crate::scep::ScepServer;
use crate::web_client::Browser;

const UPN: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 20, 2, 3];

struct TestCa {
    cert_pem: String,
    key: KeyPair,
    params: CertificateParams,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            key,
            params,
        }
    }

    /// A person's authentication certificate (serial `serial`), with their UPN unless
    /// `upn` is `None`.
    fn person(&self, cn: &str, upn: Option<&str>, serial: u64) -> (String, String) {
        self.person_for(
            cn,
            upn,
            serial,
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            vec![KeyUsagePurpose::DigitalSignature],
        )
    }

    /// A CA certificate (basic constraints cA) that otherwise looks like a person's.
    fn person_ca(&self, cn: &str, upn: Option<&str>, serial: u64) -> (String, String) {
        self.issue(
            cn,
            (upn, None),
            serial,
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            vec![KeyUsagePurpose::DigitalSignature],
            true,
        )
    }

    /// A person's authentication certificate that also carries an email.
    fn person_with_email(&self, cn: &str, upn: &str, email: &str, serial: u64) -> (String, String) {
        self.issue(
            cn,
            (Some(upn), Some(email)),
            serial,
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            vec![KeyUsagePurpose::DigitalSignature],
            false,
        )
    }

    /// A person's certificate with these extended key usages and key usages (empty: the
    /// extension is left out).
    fn person_for(
        &self,
        cn: &str,
        upn: Option<&str>,
        serial: u64,
        ekus: Vec<ExtendedKeyUsagePurpose>,
        kus: Vec<KeyUsagePurpose>,
    ) -> (String, String) {
        self.issue(cn, (upn, None), serial, ekus, kus, false)
    }

    /// A certificate for `cn` with the UPN and email of `names` (each when given).
    fn issue(
        &self,
        cn: &str,
        (upn, email): (Option<&str>, Option<&str>),
        serial: u64,
        ekus: Vec<ExtendedKeyUsagePurpose>,
        kus: Vec<KeyUsagePurpose>,
        is_ca: bool,
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serial_number = Some(SerialNumber::from(serial));
        p.extended_key_usages = ekus;
        p.key_usages = kus;
        if is_ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        if let Some(u) = upn {
            p.subject_alt_names
                .push(SanType::OtherName((UPN.to_vec(), u.into())));
        }
        if let Some(e) = email {
            p.subject_alt_names
                .push(SanType::Rfc822Name(e.try_into().unwrap()));
        }
        let issuer = Issuer::new(self.params.clone(), &self.key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A CRL listing `revoked`, valid from `from` for `days` days.
    fn crl(&self, revoked: &[u64], from: OffsetDateTime, days: i64) -> Vec<u8> {
        let issuer = Issuer::new(self.params.clone(), &self.key);
        CertificateRevocationListParams {
            this_update: from,
            next_update: from + time::Duration::days(days),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: from,
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap()
        .der()
        .to_vec()
    }
}

fn identity(cert: &str, key: &str) -> reqwest::Identity {
    reqwest::Identity::from_pkcs8_pem(cert.as_bytes(), key.as_bytes()).unwrap()
}

fn mtls_config(dir: &Path, revocation: &str) -> String {
    format!(
        r#"
[identity.mtls]
ca_file = "{ca}"
person_from = "upn"
{revocation}

[identity.mtls.roles]
officer = ["oscar@agency.test", "olga@agency.test"]
user = ["*"]

[identity.mtls.emails]
"1234567890@mil" = "Olga@Agency.test"
"#,
        ca = dir.join("piv-ca.pem").display()
    )
}

/// Sign in at `/auth/piv` with `id` (or no certificate).
fn piv_sign_in(s: &ScepServer, id: Option<reqwest::Identity>) -> (u16, String, Browser) {
    let mut b = Browser::new(s, id);
    let page = b.get(&format!("{}/auth/piv", s.base));
    (page.status, page.body, b)
}

/// The cases every revocation method must get right.
fn check_people(s: &ScepServer, ca: &TestCa, other: &TestCa, revoked_serial: u64) {
    let (cert, key) = ca.person("Oscar Officer", Some("Oscar@Agency.test"), 10);
    let (status, body, b) = piv_sign_in(s, Some(identity(&cert, &key)));
    assert_eq!(status, 200, "{body}\n{}", s.log());
    let who = b.session(&s.base).unwrap();
    assert_eq!(who["actor"], "piv:oscar@agency.test");
    let mut roles: Vec<&str> = who["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    roles.sort();
    assert_eq!(roles, ["officer", "user"]);

    let (cert, key) = ca.person("Rita Revoked", Some("rita@agency.test"), revoked_serial);
    let (status, body, b) = piv_sign_in(s, Some(identity(&cert, &key)));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("revoked"), "{body}");
    assert_eq!(b.session(&s.base).unwrap_err(), 401);

    let (cert, key) = other.person("Mallory", Some("mallory@agency.test"), 12);
    let (status, body, _) = piv_sign_in(s, Some(identity(&cert, &key)));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not from a CA trusted for sign-in"), "{body}");

    let (cert, key) = ca.person("Nobody", None, 13);
    let (status, body, _) = piv_sign_in(s, Some(identity(&cert, &key)));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("names no person"), "{body}");

    let (status, body, _) = piv_sign_in(s, None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("no client certificate"), "{body}");

    // The card's other certificates, from the same CA and naming the same person, do not
    // sign in: one for email (protection only), one for encryption (key usage without
    // signatures), the digital-signature one (non-repudiation, no extended key usage), the
    // card-authentication one (usable without the PIN).
    let upn = Some("oscar@agency.test");
    for (ekus, kus, why) in [
        (
            vec![ExtendedKeyUsagePurpose::EmailProtection],
            vec![KeyUsagePurpose::DigitalSignature],
            "extended key usage",
        ),
        (
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            vec![KeyUsagePurpose::KeyEncipherment],
            "key usage does not allow digital signatures",
        ),
        (
            vec![],
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ],
            "non-repudiation",
        ),
        (
            vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::Other(vec![2, 16, 840, 1, 101, 3, 6, 8]),
            ],
            vec![KeyUsagePurpose::DigitalSignature],
            "card authentication",
        ),
    ] {
        let (cert, key) = ca.person_for("Oscar Officer", upn, 14, ekus, kus);
        let (status, body, b) = piv_sign_in(s, Some(identity(&cert, &key)));
        assert_eq!(status, 401, "{body}");
        assert!(
            body.contains("not one for signing in") && body.contains(why),
            "{body}"
        );
        assert_eq!(b.session(&s.base).unwrap_err(), 401);
    }
    // A CA certificate of the trusted hierarchy naming the person does not sign in either.
    let (cert, key) = ca.person_ca("Oscar Officer", upn, 15);
    let (status, body, _) = piv_sign_in(s, Some(identity(&cert, &key)));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("it is a CA certificate"), "{body}");
    // A PIV authentication certificate asserting smart card logon only, and one with neither
    // extension (any purpose), do.
    for (ekus, kus) in [
        (
            vec![ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 4, 1, 311, 20, 2, 2,
            ])],
            vec![KeyUsagePurpose::DigitalSignature],
        ),
        (vec![], vec![]),
    ] {
        let (cert, key) = ca.person_for("Oscar Officer", upn, 10, ekus, kus);
        let (status, body, _) = piv_sign_in(s, Some(identity(&cert, &key)));
        assert_eq!(status, 200, "{body}");
    }
}

fn write_ca(dir: &Path, ca: &TestCa) {
    std::fs::write(dir.join("piv-ca.pem"), &ca.cert_pem).unwrap();
}

#[test]
fn piv_sign_in_checks_the_chain_the_person_and_the_crl_failing_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other) = (
        TestCa::new("Agency PIV CA"),
        TestCa::new("Someone Else's CA"),
    );
    write_ca(dir.path(), &ca);
    let crl = dir.path().join("piv.crl");
    let now = OffsetDateTime::now_utc();
    std::fs::write(&crl, ca.crl(&[11], now - time::Duration::minutes(5), 1)).unwrap();
    let d = dir.path().to_path_buf();
    let s = ScepServer::start_tls_with(|_, _| {
        mtls_config(
            &d,
            &format!("revocation = \"crl\"\ncrl_file = \"{}\"", crl.display()),
        )
    });
    check_people(&s, &ca, &other, 11);
    // A CAC whose UPN is no address and which carries no email: the administrator's list says
    // whose it is, so she is the same person as by the identity provider (one email), and the
    // role list may name her by it.
    let (cert, key) = ca.person("Olga Officer", Some("1234567890@MIL"), 20);
    let (status, body, b) = piv_sign_in(&s, Some(identity(&cert, &key)));
    assert_eq!(status, 200, "{body}");
    let who = b.session(&s.base).unwrap();
    assert_eq!(who["email"], "olga@agency.test", "{who}");
    assert!(
        who["roles"].as_array().unwrap().contains(&"officer".into()),
        "{who}"
    );
    // A card not on the list: its UPN is all Sigil knows of it, and what it is known by.
    let (cert, key) = ca.person("Ivan", Some("2222222222@mil"), 21);
    let (status, body, b) = piv_sign_in(&s, Some(identity(&cert, &key)));
    assert_eq!(status, 200, "{body}");
    let who = b.session(&s.base).unwrap();
    assert_eq!(who["email"], "2222222222@mil", "{who}");
    assert_eq!(who["roles"], serde_json::json!(["user"]), "{who}");
    // A card that carries Olga's email but another UPN, not on the list: its email is the
    // person's for the two-person rule, but the role lists name people by UPN or by the list,
    // never by an email a certificate carries (another card could carry it too).
    let (cert, key) = ca.person_with_email("Not Olga", "3333333333@mil", "olga@agency.test", 22);
    let (status, body, b) = piv_sign_in(&s, Some(identity(&cert, &key)));
    assert_eq!(status, 200, "{body}");
    let who = b.session(&s.base).unwrap();
    assert_eq!(who["email"], "olga@agency.test", "{who}");
    assert_eq!(who["roles"], serde_json::json!(["user"]), "{who}");
    // A CRL past its nextUpdate says nothing about today: nobody signs in (fail closed).
    std::fs::write(&crl, ca.crl(&[11], now - time::Duration::days(3), 1)).unwrap();
    let (cert, key) = ca.person("Oscar Officer", Some("oscar@agency.test"), 10);
    let (status, body, _) = piv_sign_in(&s, Some(identity(&cert, &key)));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("fails closed"), "{body}");
    // Every refusal is on the record.
    let audit = s.audit_log();
    let refused = audit
        .iter()
        .filter(|r| r["action"] == "sign_in_refused")
        .count();
    assert!(refused >= 4, "{audit:?}");
    // What a refused card calls itself is recorded as a claim, never as a person.
    assert!(
        audit
            .iter()
            .filter(|r| r["action"] == "sign_in_refused")
            .any(|r| r["subject"]
                .as_str()
                .unwrap_or("")
                .starts_with("unverified:")),
        "{audit:?}"
    );
    // A client that keeps trying cannot grow the audit chain: past 20 refusals a minute from
    // one source, refusals are counted in the log, not recorded.
    let (cert, key) = other.person("Mallory", Some("mallory@agency.test"), 12);
    for _ in 0..30 {
        assert_eq!(piv_sign_in(&s, Some(identity(&cert, &key))).0, 401);
    }
    let audit = s.audit_log();
    let refused = audit
        .iter()
        .filter(|r| r["action"] == "sign_in_refused")
        .count();
    assert!(refused <= 20, "{refused} refusals recorded");
    assert!(s.log().contains("counted, not audited"));
}

/// `openssl ocsp` as the PIV CA's responder, answering from an index.
struct Responder(Child);

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ocsp_responder(dir: &Path, ca: &TestCa, good: &[u64], revoked: &[u64]) -> (Responder, String) {
    let exp = "301231235959Z";
    let mut index = String::new();
    for s in good {
        index.push_str(&format!("V\t{exp}\t\t{s:02X}\tunknown\t/CN=person{s}\n"));
    }
    for s in revoked {
        index.push_str(&format!(
            "R\t{exp}\t240101000000Z,keyCompromise\t{s:02X}\tunknown\t/CN=person{s}\n"
        ));
    }
    let p = |n: &str| -> PathBuf { dir.join(n) };
    std::fs::write(p("index.txt"), index).unwrap();
    std::fs::write(p("ca.key"), ca.key.serialize_pem()).unwrap();
    let port = free_port();
    let child = Command::new("openssl")
        .args(["ocsp", "-index"])
        .arg(p("index.txt"))
        .arg("-CA")
        .arg(p("piv-ca.pem"))
        .arg("-rsigner")
        .arg(p("piv-ca.pem"))
        .arg("-rkey")
        .arg(p("ca.key"))
        .args(["-port", &port.to_string(), "-nmin", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A bare TCP probe wedges the single-threaded responder (it waits forever for
    // the request line), so readiness is its own "waiting" line on stderr.
    let mut child = child;
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("waiting for OCSP client connections") => break,
            Some(Ok(_)) => continue,
            other => panic!("openssl ocsp did not start: {other:?}"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Responder(child), format!("http://127.0.0.1:{port}"))
}

#[test]
fn piv_sign_in_asks_an_ocsp_responder_and_fails_closed_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other) = (
        TestCa::new("Agency PIV CA"),
        TestCa::new("Someone Else's CA"),
    );
    write_ca(dir.path(), &ca);
    let (responder, url) = ocsp_responder(dir.path(), &ca, &[10, 12, 13], &[11]);
    let d = dir.path().to_path_buf();
    let s = ScepServer::start_tls_with(|_, _| {
        mtls_config(&d, &format!("revocation = \"ocsp\"\nocsp_url = \"{url}\""))
    });
    check_people(&s, &ca, &other, 11);
    // The responder is gone: nobody signs in.
    drop(responder);
    let (cert, key) = ca.person("Oscar Officer", Some("oscar@agency.test"), 10);
    let (status, body, _) = piv_sign_in(&s, Some(identity(&cert, &key)));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("fails closed"), "{body}");
    // The responder's address and the error underneath are for the operator, in the audit
    // record; the person is told what happened and what to do.
    let responder_at = url.trim_start_matches("http://");
    assert!(!body.contains(responder_at), "{body}");
    let audit = s.audit_log();
    let last = audit
        .iter()
        .rev()
        .find(|r| r["action"] == "sign_in_refused")
        .unwrap();
    assert!(last.to_string().contains(responder_at), "{last}");
}

/// One human, two sign-ins: Oscar is an officer by his CAC (whose UPN is no address) and staff
/// at the identity provider. The administrator's `emails` list links the card to his address,
/// so the two-person rule sees one person: signed in by card, he cannot approve the credential
/// a colleague filed for him.
#[test]
fn a_card_linked_to_an_email_is_the_same_person_as_at_the_identity_provider() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Agency PIV CA");
    write_ca(dir.path(), &ca);
    let crl = dir.path().join("piv.crl");
    let now = OffsetDateTime::now_utc();
    std::fs::write(&crl, ca.crl(&[], now - time::Duration::minutes(5), 1)).unwrap();
    let d = dir.path().to_path_buf();
    let idp_cell: std::cell::RefCell<Option<crate::idp::Idp>> = std::cell::RefCell::new(None);
    let s = ScepServer::start_tls_with(|_, port| {
        let idp =
            crate::idp::Idp::start(&d, &format!("https://127.0.0.1:{port}/auth/oidc/callback"));
        let cfg = format!(
            r#"{oidc}
[identity.mtls]
ca_file = "{ca}"
revocation = "crl"
crl_file = "{crl}"

[identity.mtls.roles]
officer = ["1234567890@mil"]

[identity.mtls.emails]
"1234567890@mil" = "oscar@agency.test"
"#,
            oidc = crate::identity::identity_config(&d, &idp.issuer),
            ca = d.join("piv-ca.pem").display(),
            crl = crl.display()
        );
        *idp_cell.borrow_mut() = Some(idp);
        cfg
    });
    let _idp = idp_cell.into_inner().unwrap();
    let base = s.base.clone();
    // Olga, an officer at the provider, files a registration for Oscar's phone.
    let (olga, olga_csrf) = crate::identity::signed_in(&s, "olga");
    let (status, reg) = olga.api(
        "POST",
        &format!("{base}/api/v1/registrations"),
        Some(&olga_csrf),
        Some(serde_json::json!({"email": "oscar@agency.test", "credential": "derived"})),
    );
    assert_eq!(status, 201, "{reg}");
    let rid = reg["id"].as_str().unwrap().to_string();
    let (status, r) = olga.api(
        "POST",
        &format!("{base}/api/v1/registrations/{rid}/request"),
        Some(&olga_csrf),
        Some(serde_json::json!({"device_id": "oscar-phone"})),
    );
    assert_eq!(status, 200, "{r}");
    // Oscar by his card: an officer, and the person the credential is for.
    let (cert, key) = ca.person("Oscar Officer", Some("1234567890@mil"), 30);
    let (status, body, card) = piv_sign_in(&s, Some(identity(&cert, &key)));
    assert_eq!(status, 200, "{body}");
    let who = card.session(&base).unwrap();
    assert_eq!(who["actor"], "piv:1234567890@mil", "{who}");
    assert_eq!(who["email"], "oscar@agency.test", "{who}");
    let csrf = who["csrf"].as_str().unwrap().to_string();
    for path in [
        format!("{base}/api/v1/registrations/{rid}/approve"),
        format!("{base}/api/v1/approvals/{rid}/approve"),
    ] {
        let (status, why) = card.api("POST", &path, Some(&csrf), Some(serde_json::json!({})));
        assert_eq!(status, 403, "{path}: {why}");
        assert!(
            why["message"].as_str().unwrap().contains("own credential"),
            "{why}"
        );
    }
    // What he files at the provider (an officer there too) for a colleague, he cannot approve
    // by card: the filer and the approver are one person, by the email the list links.
    let (oscar, oscar_csrf) = crate::identity::signed_in(&s, "oscar");
    let (status, reg) = oscar.api(
        "POST",
        &format!("{base}/api/v1/registrations"),
        Some(&oscar_csrf),
        Some(serde_json::json!({"email": "ursula@agency.test", "credential": "derived"})),
    );
    assert_eq!(status, 201, "{reg}");
    let filed = reg["id"].as_str().unwrap().to_string();
    let (status, r) = oscar.api(
        "POST",
        &format!("{base}/api/v1/registrations/{filed}/request"),
        Some(&oscar_csrf),
        Some(serde_json::json!({"device_id": "ursula-phone"})),
    );
    assert_eq!(status, 200, "{r}");
    let (status, why) = card.api(
        "POST",
        &format!("{base}/api/v1/approvals/{filed}/approve"),
        Some(&csrf),
        Some(serde_json::json!({})),
    );
    assert_eq!(status, 403, "{why}");
    assert!(why["message"].as_str().unwrap().contains("filed"), "{why}");
    // Olga, another person, approves it.
    let (status, done) = olga.api(
        "POST",
        &format!("{base}/api/v1/approvals/{filed}/approve"),
        Some(&olga_csrf),
        Some(serde_json::json!({})),
    );
    assert_eq!(status, 200, "{done}");
}
