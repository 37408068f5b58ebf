//! CA rollover: `sigil ca rollover` prepares the next CA on the token, GetCACaps advertises
//! GetNextCACert and GetNextCACert offers it (signed by the current RA, with the link
//! certificate); `sigil ca activate` switches issuance after a restart; certificates of the old
//! CA still verify, still get OCSP answers and CRLs, and renew into the new CA.

use std::path::Path;
use std::process::Command;

use openssl::x509::X509;
use serde_json::json;
use sigil::scep::client::read_degenerate;
use sigil::scep::{ContentCipher, DigestAlg, MessageType, Nonce, PkiStatus};

use crate::api::{call, enroll_with, new_token};
use crate::common::{openssl, write_pem};
use crate::scep::{new_device, ScepServer, CHALLENGE};

fn subject(der: &[u8]) -> String {
    let x = X509::from_der(der).unwrap();
    x.subject_name()
        .entries()
        .map(|e| {
            e.data()
                .as_slice()
                .iter()
                .map(|b| *b as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn serial(der: &[u8]) -> String {
    hex::encode(
        X509::from_der(der)
            .unwrap()
            .serial_number()
            .to_bn()
            .unwrap()
            .to_vec(),
    )
}

fn ocsp(s: &ScepServer, issuer: &Path, cert: &Path) -> String {
    let (ok, out) = openssl(&[
        "ocsp",
        "-issuer",
        issuer.to_str().unwrap(),
        "-cert",
        cert.to_str().unwrap(),
        "-url",
        &format!("{}/ocsp", s.base),
        "-CAfile",
        issuer.to_str().unwrap(),
    ]);
    assert!(
        ok && out.contains("Response verify OK"),
        "{out}\n{}",
        s.log()
    );
    out
}

fn crl_of(s: &ScepServer, dir: &Path, name: &str, ca: &Path) -> String {
    let url = format!("{}/crl/{name}.crl", s.base);
    crate::crl_partitions::fetch_crl(s, &url, ca, dir, name).0
}

#[test]
fn rollover_offers_the_next_ca_then_switches_and_the_old_one_keeps_answering() {
    let mut s = ScepServer::start();
    let dir = s.token.path().join("rollover-test");
    std::fs::create_dir_all(&dir).unwrap();
    let (officer, _) = new_token(&s, "officer", "officer");
    let old_ca = s.ca.clone();
    let old_pem = write_pem(&dir, "old-ca.pem", &old_ca);
    // Two devices of the first CA: one will be revoked, one will renew.
    let (_, _, a) = enroll_with(&s, "default", "old-laptop", CHALLENGE);
    assert_eq!(a.status, PkiStatus::Success);
    let a_pem = write_pem(&dir, "a.pem", &a.certs[0]);
    let (mut b_dev, _, b) = enroll_with(&s, "renewable", "old-phone", CHALLENGE);
    assert_eq!(b.status, PkiStatus::Success);

    // No rollover yet.
    assert_eq!(s.get("/scep?operation=GetNextCACert").0, 404);
    let caps = String::from_utf8(s.get("/scep?operation=GetCACaps").2).unwrap();
    assert!(!caps.contains("GetNextCACert"), "{caps}");
    // Activation without a rollover is refused.
    assert!(!s.sigil(&["ca", "activate"]).status.success());

    // Prepare the next CA while serving.
    let out = s.sigil(&["ca", "rollover", "--ca-days", "3650"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("next CA: sigil-ca-g2"), "{text}");
    // A second rollover before activation is refused.
    assert!(!s.sigil(&["ca", "rollover"]).status.success());
    let caps = String::from_utf8(s.get("/scep?operation=GetCACaps").2).unwrap();
    assert!(caps.contains("GetNextCACert"), "{caps}");

    // GetNextCACert: signed by the current RA (trusted through the current CA), holding the
    // next CA, its RA certificate and the link certificate.
    let (status, ct, body) = s.get("/scep?operation=GetNextCACert");
    assert_eq!(status, 200);
    assert_eq!(ct, "application/x-x509-next-ca-cert");
    let next_der = dir.join("next.der");
    std::fs::write(&next_der, &body).unwrap();
    let inner = dir.join("inner.der");
    let (ok, out) = openssl(&[
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        next_der.to_str().unwrap(),
        "-CAfile",
        old_pem.to_str().unwrap(),
        "-purpose",
        "any",
        "-out",
        inner.to_str().unwrap(),
    ]);
    assert!(
        ok,
        "GetNextCACert does not verify against the current CA: {out}"
    );
    let (certs, _) = read_degenerate(&std::fs::read(&inner).unwrap()).unwrap();
    let next_ca = certs
        .iter()
        .find(|c| {
            let x = X509::from_der(c).unwrap();
            x.subject_name_hash() == x.issuer_name_hash()
        })
        .expect("the next CA certificate")
        .clone();
    assert!(
        subject(&next_ca).contains("Test SCEP CA G2"),
        "{}",
        subject(&next_ca)
    );
    let next_pem = write_pem(&dir, "next-ca.pem", &next_ca);
    let link = certs
        .iter()
        .find(|c| {
            let x = X509::from_der(c).unwrap();
            x.issuer_name_hash() == X509::from_der(&old_ca).unwrap().subject_name_hash()
                && x.subject_name_hash() == X509::from_der(&next_ca).unwrap().subject_name_hash()
        })
        .expect("the link certificate (old signs new)");
    let link_pem = write_pem(&dir, "link.pem", link);
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        old_pem.to_str().unwrap(),
        link_pem.to_str().unwrap(),
    ]);
    assert!(
        ok,
        "the link certificate does not chain to the old CA: {out}"
    );
    let next_ra = certs
        .iter()
        .find(|c| {
            let x = X509::from_der(c).unwrap();
            x.issuer_name_hash() == X509::from_der(&next_ca).unwrap().subject_name_hash()
                && x.subject_name_hash() != x.issuer_name_hash()
        })
        .expect("the next RA certificate");
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        next_pem.to_str().unwrap(),
        write_pem(&dir, "next-ra.pem", next_ra).to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    // A real client: PyScep asks for GetCACaps, GetCACert and GetNextCACert, checks the
    // answer's signature with the RA certificate it just got, and returns the new CA.
    let out = Command::new("bash")
        .arg(crate::common::root().join("softhsm-tests/pyscep.sh"))
        .arg(format!("{}/scep", s.base))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PyScep failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(py["rollover_supported"], true, "{py}");
    let got: Vec<Vec<u8>> = py["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| hex::decode(c["der"].as_str().unwrap()).unwrap())
        .collect();
    assert!(
        got.contains(&next_ca),
        "PyScep did not get the next CA: {py}"
    );
    assert!(got.contains(next_ra), "{py}");

    // Until activation, issuance stays with the old CA.
    let (_, _, c) = enroll_with(&s, "default", "still-old", CHALLENGE);
    assert_eq!(
        X509::from_der(&c.certs[0]).unwrap().issuer_name_hash(),
        X509::from_der(&old_ca).unwrap().subject_name_hash()
    );

    // Activate and restart: the new CA issues; GetCACert serves it and its RA certificate.
    s.stop();
    let out = s.sigil(&["ca", "activate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.restart();
    assert_eq!(s.ca, next_ca, "GetCACert serves the new CA");
    assert_eq!(&s.ra, next_ra, "and the RA certificate it issued");
    assert_eq!(s.get("/scep?operation=GetNextCACert").0, 404);
    let (_, _, d) = enroll_with(&s, "default", "new-laptop", CHALLENGE);
    assert_eq!(d.status, PkiStatus::Success, "{:?}", d.fail_text);
    let d_pem = write_pem(&dir, "d.pem", &d.certs[0]);
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        next_pem.to_str().unwrap(),
        d_pem.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(
        String::from_utf8(X509::from_der(&d.certs[0]).unwrap().to_text().unwrap())
            .unwrap()
            .contains("/crl/sigil-ca-g2/"),
        "new certificates point at the new CA's CRL"
    );

    // The old CA's certificates still verify and get OCSP answers, signed by the old CA.
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        old_pem.to_str().unwrap(),
        a_pem.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(ocsp(&s, &old_pem, &a_pem).contains(": good"));
    assert!(ocsp(&s, &next_pem, &d_pem).contains(": good"));
    let r = call(
        &s,
        "POST",
        &format!("/api/v1/certificates/{}/revoke", serial(&a.certs[0])),
        Some(&officer),
        Some(json!({"reason": "cessationOfOperation"})),
    );
    assert_eq!(r.status(), 200);
    assert!(ocsp(&s, &old_pem, &a_pem).contains(": revoked"));
    // Each CA has its CRL, each listing only its own certificates.
    let old_crl = crl_of(&s, &dir, "sigil-ca", &old_pem);
    assert!(
        old_crl.contains(&serial(&a.certs[0]).to_ascii_uppercase()),
        "{old_crl}"
    );
    let new_crl = crl_of(&s, &dir, "sigil-ca-g2", &next_pem);
    assert!(new_crl.contains("No Revoked Certificates"), "{new_crl}");
    // A's own CRL partition is the retired CA's too, signed by it and listing A.
    let a_point = X509::from_der(&a.certs[0])
        .unwrap()
        .crl_distribution_points()
        .unwrap()[0]
        .distpoint()
        .unwrap()
        .fullname()
        .unwrap()[0]
        .uri()
        .unwrap()
        .to_string();
    let part = a_point
        .strip_prefix(&format!("{}/crl/", s.base))
        .and_then(|p| p.strip_suffix(".crl"))
        .unwrap();
    assert!(part.starts_with("sigil-ca/"), "{a_point}");
    std::fs::create_dir_all(dir.join("sigil-ca")).unwrap();
    let old_part = crl_of(&s, &dir, part, &old_pem);
    assert!(
        old_part.contains(&serial(&a.certs[0]).to_ascii_uppercase()),
        "{old_part}"
    );

    // SCEP GetCRL about an old-CA certificate answers with the old CA's CRL.
    let old_subject = X509::from_der(&old_ca)
        .unwrap()
        .subject_name()
        .to_der()
        .unwrap();
    let a_serial = X509::from_der(&a.certs[0])
        .unwrap()
        .serial_number()
        .to_bn()
        .unwrap()
        .to_vec();
    let msg = b_dev
        .request(
            MessageType::GetCrl,
            "rollover-getcrl",
            &Nonce::random().unwrap(),
            &sigil::scep::client::issuer_and_serial(&old_subject, &a_serial),
            &s.ra,
            ContentCipher::Aes128Cbc,
            DigestAlg::Sha256,
        )
        .unwrap();
    let r = b_dev.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    let crl = openssl::x509::X509Crl::from_der(&r.crls[0]).unwrap();
    assert_eq!(
        crl.issuer_name().to_der().unwrap(),
        old_subject,
        "the old CA's CRL"
    );

    // A device of the old CA renews into the new one.
    let b_cert = b.certs[0].clone();
    b_dev.sign_with(b_cert);
    let fresh = new_device("old-phone");
    let csr = fresh.csr("old-phone", None, &[]).unwrap();
    let msg = b_dev
        .request(
            MessageType::RenewalReq,
            "rollover-renewal",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            ContentCipher::Aes128Cbc,
            DigestAlg::Sha256,
        )
        .unwrap();
    let r = b_dev.read(&s.pki("renewable", msg, false)).unwrap();
    assert_eq!(
        r.status,
        PkiStatus::Success,
        "{:?}\n{}",
        r.fail_text,
        s.log()
    );
    assert_eq!(
        X509::from_der(&r.certs[0]).unwrap().issuer_name_hash(),
        X509::from_der(&next_ca).unwrap().subject_name_hash()
    );
    // The audit log has both steps.
    let audit: serde_json::Value =
        call(&s, "GET", "/api/v1/audit?limit=10000", Some(&s.admin), None)
            .json()
            .unwrap();
    for action in ["ca_rollover", "ca_activated"] {
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["action"] == action),
            "{action}"
        );
    }
}
