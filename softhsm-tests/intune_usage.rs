//! Intune's SCEP challenge, Microsoft's test matrix rows on names and usages
//! (`src/CsrValidation/doc/TestMatrix.csv`): subject formats (common name as email, serial
//! number, IMEI), SANs (UPN, email and UPN), key usage (digital signature, key encipherment,
//! both) and EKU (client authentication, IPsec tunnel), each checked in the issued
//! certificate; Intune refusing a mismatch with its code; Sigil's profile refusing what it
//! does not allow, and telling Intune.

use openssl::x509::X509;
use sigil::scep::client::{Device, Reply};
use sigil::scep::{DigestAlg, PkiStatus};

use crate::fake_intune::{self, Expect, CLIENT_SECRET};
use crate::intune::{failed, server, subject_text};
use crate::scep::ScepServer;

/// A PKCSReq that asks for key usage and extended key usage, as an Intune SCEP profile makes
/// a device do.
fn send_requesting(
    s: &ScepServer,
    d: &Device,
    subject: &[(&str, &str)],
    challenge: &str,
    sans: &[&str],
    usage: (&[&str], &[&str]),
    tid: &str,
) -> Reply {
    let ku: Vec<_> = usage
        .0
        .iter()
        .map(|k| sigil::pki::key_usage(k).unwrap())
        .collect();
    let eku: Vec<_> = usage
        .1
        .iter()
        .map(|k| sigil::pki::extended_key_usage(k).unwrap())
        .collect();
    let csr = d
        .csr_requesting(subject, Some(challenge), sans, &ku, &eku)
        .unwrap();
    crate::intune::pkcs_req(s, d, &csr, DigestAlg::Sha256, tid).0
}

/// The line after `heading` in `openssl x509 -text`, trimmed.
fn extension_line(cert: &X509, heading: &str) -> String {
    let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
    let mut lines = text.lines();
    lines.find(|l| l.contains(heading));
    lines.next().unwrap_or("").trim().to_string()
}

#[test]
fn intunes_subject_san_key_usage_and_eku_rows_reach_the_certificate() {
    let fake = fake_intune::start();
    let dir = tempfile::tempdir().unwrap();
    let s = server(&fake, dir.path(), CLIENT_SECRET);
    let vouch =
        |challenge: &str, subject: &[(&str, &str)], sans: &[&str], ku: &[&str], eku: &[&str]| {
            fake.expect(
                challenge,
                Expect {
                    subject: subject_text(subject),
                    sans: sans.iter().map(|s| s.to_string()).collect(),
                    min_bits: 2048,
                    key_usage: ku.iter().map(|s| s.to_string()).collect(),
                    extended_key_usage: eku.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                },
            );
        };
    type Row<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<&'a str>,
        Vec<&'a str>,
        Vec<&'a str>,
    );
    // (challenge, subject, SANs, key usage, EKU) and what the certificate must then say.
    let rows: Vec<(Row, &str, &str, &str)> = vec![
        // SN format: common name as email; SAN: UPN; KU: digital signature.
        (
            (
                "r-1",
                vec![("CN", "ann@contoso.test")],
                vec!["upn:ann@contoso.test"],
                vec!["digitalSignature"],
                vec!["clientAuth"],
            ),
            "Digital Signature",
            "TLS Web Client Authentication",
            "othername: UPN::ann@contoso.test",
        ),
        // SN format: serial number; SAN: email and UPN; KU: key encipherment.
        (
            (
                "r-2",
                vec![("CN", "F2LXK1ABCD")],
                vec!["email:ann@contoso.test", "upn:ann@contoso.test"],
                vec!["keyEncipherment"],
                vec!["clientAuth"],
            ),
            "Key Encipherment",
            "TLS Web Client Authentication",
            "email:ann@contoso.test, othername: UPN::ann@contoso.test",
        ),
        // SN format: IMEI; KU: both; EKU: IPsec tunnel.
        (
            (
                "r-3",
                vec![("CN", "356938035643809")],
                vec![],
                vec!["digitalSignature", "keyEncipherment"],
                vec!["1.3.6.1.5.5.7.3.6"],
            ),
            "Digital Signature, Key Encipherment",
            "IPSec Tunnel",
            "",
        ),
        // A profile that asks for no usage at all gets Sigil's profile's.
        (
            (
                "r-4",
                vec![("CN", "ann"), ("E", "ann@contoso.test")],
                vec![],
                vec![],
                vec![],
            ),
            "Digital Signature, Key Encipherment",
            "TLS Web Client Authentication, IPSec Tunnel",
            "",
        ),
    ];
    for ((challenge, subject, sans, ku, eku), want_ku, want_eku, want_san) in &rows {
        vouch(challenge, subject, sans, ku, eku);
        let d = Device::rsa(2048, "ann").unwrap();
        let r = send_requesting(
            &s,
            &d,
            subject,
            challenge,
            sans,
            (ku, eku),
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
        assert_eq!(
            &extension_line(&cert, "X509v3 Key Usage"),
            want_ku,
            "{challenge}"
        );
        assert_eq!(
            &extension_line(&cert, "X509v3 Extended Key Usage"),
            want_eku,
            "{challenge}"
        );
        if !want_san.is_empty() {
            assert_eq!(
                &extension_line(&cert, "X509v3 Subject Alternative Name"),
                want_san,
                "{challenge}"
            );
        }
        let cert_subject = sigil::pki::certificate_identity(&r.certs[0]).unwrap().0;
        assert_eq!(
            sigil::pki::name_text(&cert_subject),
            subject_text(subject),
            "{challenge}"
        );
    }

    // Intune refuses a request whose usages differ from its profile's, with its code.
    let d = Device::rsa(2048, "ann").unwrap();
    vouch(
        "m-1",
        &[("CN", "ann")],
        &[],
        &["digitalSignature"],
        &["clientAuth"],
    );
    let r = send_requesting(
        &s,
        &d,
        &[("CN", "ann")],
        "m-1",
        &[],
        (&["keyEncipherment"], &["clientAuth"]),
        "tid-m1",
    );
    failed(&r, "KeyUsageMismatch");
    vouch(
        "m-2",
        &[("CN", "ann")],
        &[],
        &["digitalSignature"],
        &["clientAuth"],
    );
    let r = send_requesting(
        &s,
        &d,
        &[("CN", "ann")],
        "m-2",
        &[],
        (&["digitalSignature"], &["1.3.6.1.5.5.7.3.6"]),
        "tid-m2",
    );
    failed(&r, "EnhancedKeyUsageMismatch");

    // Intune vouches, but Sigil's profile does not allow what is asked (a server-auth EKU):
    // nothing issued, Intune told why.
    vouch("p-1", &[("CN", "ann")], &[], &[], &["serverAuth"]);
    let r = send_requesting(
        &s,
        &d,
        &[("CN", "ann")],
        "p-1",
        &[],
        (&[], &["serverAuth"]),
        "tid-p1",
    );
    failed(
        &r,
        "extended key usage serverAuth, which profile `intune` does not allow",
    );
    let notes = fake.state.notifications.lock().unwrap().clone();
    let f = notes
        .iter()
        .find(|(a, n)| a == "failureNotification" && n["transactionId"] == "tid-p1")
        .unwrap_or_else(|| panic!("no failure notification: {notes:?}"));
    assert!(f.1["errorDescription"].as_str().unwrap().len() <= 255);
    assert!(
        !notes.iter().any(|(a, n)| a == "successNotification"
            && n["transactionId"]
                .as_str()
                .is_some_and(|t| t.starts_with("tid-m") || t.starts_with("tid-p"))),
        "nothing refused was reported as issued"
    );
}
