//! `sigil init` and `sigil ca import` against fresh tokens, checked with `openssl verify` and
//! `pkcs11-tool`.

use std::process::Command;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509NameBuilder, X509Req, X509};

use crate::common::{ok, openssl_verify, TokenDir, MODULE};

fn cert(path: &std::path::Path) -> X509 {
    X509::from_pem(&std::fs::read(path).expect("read pem")).expect("parse pem")
}

fn key_usage_text(c: &X509) -> String {
    let text = String::from_utf8(c.to_text().unwrap()).unwrap();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.contains("X509v3 Key Usage") {
            return lines.next().unwrap_or("").trim().to_owned();
        }
    }
    String::new()
}

#[test]
fn init_makes_a_root_and_an_ra_certificate_that_verify() {
    for ca_key in ["rsa3072", "p384"] {
        let t = TokenDir::new();
        let out = ok(&t.run(&[
            "init",
            "--ca-key",
            ca_key,
            "--ca-subject",
            "CN=Test Root,O=Sigil Tests,C=US",
        ]));
        assert!(
            out.contains("CA key: pkcs11:token=sigil;object=sigil-ca"),
            "{out}"
        );
        assert!(out.contains("SHA-256 fingerprint"), "{out}");
        let ca = t.data().join("ca.pem");
        let ra = t.data().join("ra.pem");
        openssl_verify(&ca, &ca);
        openssl_verify(&ca, &ra);
        let ra_cert = cert(&ra);
        let ku = key_usage_text(&ra_cert);
        assert!(
            ku.contains("Digital Signature") && ku.contains("Key Encipherment"),
            "{ku}"
        );
        let ca_cert = cert(&ca);
        assert!(key_usage_text(&ca_cert).contains("Certificate Sign"));
        // The serial is random and positive, 16 octets.
        let serial = ca_cert.serial_number().to_bn().unwrap();
        assert_eq!(serial.num_bytes(), 16);
        // The certificates are on the token next to their keys.
        let listing = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", t.path().join("softhsm2.conf"))
            .args([
                "--module",
                MODULE,
                "--token-label",
                "sigil",
                "--login",
                "--pin",
            ])
            .arg(
                std::fs::read_to_string(t.path().join("user.pin"))
                    .unwrap()
                    .trim(),
            )
            .arg("--list-objects")
            .output()
            .expect("pkcs11-tool");
        let listing = ok(&listing);
        for needle in [
            "Certificate Object",
            "Private Key Object",
            "label:      sigil-ca",
            "label:      sigil-ra",
            // The delegated OCSP responder's key and certificate: the CA key signs no OCSP.
            "label:      sigil-ca-ocsp",
        ] {
            assert!(listing.contains(needle), "{needle} missing in:\n{listing}");
        }
        // pkcs11-tool sees the private keys (CA, RA, OCSP responder) as sensitive and never
        // extractable.
        let private_blocks: Vec<&str> = listing.split("Private Key Object").skip(1).collect();
        assert_eq!(private_blocks.len(), 3, "{listing}");
        for block in private_blocks {
            let access = block.lines().find(|l| l.contains("Access:")).unwrap_or("");
            assert!(
                access.contains("never extractable") && access.contains("always sensitive"),
                "{access}"
            );
        }
        // `ca show` reads them back from the token.
        let show = ok(&t.run(&["ca", "show"]));
        assert!(show.contains("CN=Test Root"), "{show}");
    }
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let t = TokenDir::new();
    ok(&t.run(&["init", "--ca-key", "p256"]));
    let first = std::fs::read(t.data().join("ca.pem")).unwrap();
    let again = t.run(&["init", "--ca-key", "p256"]);
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(t.data().join("ca.pem")).unwrap(),
        first,
        "ca.pem was touched"
    );
    ok(&t.run(&["init", "--ca-key", "p256", "--force"]));
    assert_ne!(std::fs::read(t.data().join("ca.pem")).unwrap(), first);
    openssl_verify(&t.data().join("ca.pem"), &t.data().join("ra.pem"));
}

#[test]
fn separate_ra_signing_and_decryption_keys() {
    let t = TokenDir::new();
    let out = ok(&t
        .sigil()
        .env("SIGIL_HSM_RA_DECRYPT_KEY", "sigil-ra-decrypt")
        .args(["init", "--ca-key", "p256"])
        .output()
        .unwrap());
    assert!(
        out.contains("RA signing key") && out.contains("RA decryption key"),
        "{out}"
    );
    let ca = t.data().join("ca.pem");
    let sign = cert(&t.data().join("ra-sign.pem"));
    let dec = cert(&t.data().join("ra-decrypt.pem"));
    openssl_verify(&ca, &t.data().join("ra-sign.pem"));
    openssl_verify(&ca, &t.data().join("ra-decrypt.pem"));
    assert_eq!(key_usage_text(&sign), "Digital Signature");
    assert_eq!(key_usage_text(&dec), "Key Encipherment");
}

#[test]
fn csr_for_an_existing_root_then_import() {
    let t = TokenDir::new();
    let csr_path = t.path().join("ca.csr");
    let out = ok(&t.run(&[
        "init",
        "--ca-key",
        "p384",
        "--ca-subject",
        "CN=Issuing CA,O=Agency",
        "--csr",
        csr_path.to_str().unwrap(),
    ]));
    assert!(out.contains("sigil ca import"), "{out}");
    let req = X509Req::from_pem(&std::fs::read(&csr_path).unwrap()).unwrap();
    let req_key = req.public_key().unwrap();
    assert!(
        req.verify(&req_key).unwrap(),
        "the CSR signature (made on the token) is bad"
    );

    // An external root, in software: it is the test's, not Sigil's.
    let root_key = PKey::from_ec_key(
        EcKey::generate(&EcGroup::from_curve_name(Nid::SECP384R1).unwrap()).unwrap(),
    )
    .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "External Root").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&root_key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(3650).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.sign(&root_key, MessageDigest::sha384()).unwrap();
    let root = b.build();

    let sign_ca = |req_key: &PKey<openssl::pkey::Public>, ca: bool| {
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(2).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(req.subject_name()).unwrap();
        b.set_issuer_name(root.subject_name()).unwrap();
        b.set_pubkey(req_key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1825).unwrap())
            .unwrap();
        if ca {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
        }
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .digital_signature()
                .build()
                .unwrap(),
        )
        .unwrap();
        b.sign(&root_key, MessageDigest::sha384()).unwrap();
        b.build()
    };
    let root_pem = t.path().join("root.pem");
    std::fs::write(&root_pem, root.to_pem().unwrap()).unwrap();

    // A certificate that is not a CA certificate is refused.
    let not_ca = t.path().join("not-ca.pem");
    std::fs::write(&not_ca, sign_ca(&req_key, false).to_pem().unwrap()).unwrap();
    let refused = t.run(&[
        "ca",
        "import",
        "--cert",
        not_ca.to_str().unwrap(),
        "--chain",
        root_pem.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a CA certificate"));

    // A certificate for another key is refused.
    let other = PKey::from_ec_key(
        EcKey::generate(&EcGroup::from_curve_name(Nid::SECP384R1).unwrap()).unwrap(),
    )
    .unwrap();
    let other_pub = PKey::public_key_from_der(&other.public_key_to_der().unwrap()).unwrap();
    let wrong = t.path().join("wrong.pem");
    std::fs::write(&wrong, sign_ca(&other_pub, true).to_pem().unwrap()).unwrap();
    let refused = t.run(&[
        "ca",
        "import",
        "--cert",
        wrong.to_str().unwrap(),
        "--chain",
        root_pem.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not the CA key"));

    let signed = t.path().join("signed.pem");
    std::fs::write(&signed, sign_ca(&req_key, true).to_pem().unwrap()).unwrap();
    let out = ok(&t.run(&[
        "ca",
        "import",
        "--cert",
        signed.to_str().unwrap(),
        "--chain",
        root_pem.to_str().unwrap(),
    ]));
    assert!(out.contains("RA key"), "{out}");
    // Root → issuing CA (on the token) → RA.
    let ra = t.data().join("ra.pem");
    let status = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root_pem)
        .arg("-untrusted")
        .arg(t.data().join("ca.pem"))
        .arg(&ra)
        .output()
        .unwrap();
    ok(&status);
    assert!(
        std::fs::read_to_string(t.data().join("chain.pem"))
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count()
            == 2
    );
}
