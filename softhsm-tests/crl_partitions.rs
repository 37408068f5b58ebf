//! CRL partitions seen by a relying party: each certificate names the CRL of the ISO week its
//! validity ends in, that CRL lists only that week's revocations and says so in a critical
//! issuing distribution point, and `openssl verify -crl_check` (which matches the point
//! against the certificate's) takes it for its own certificates only.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::x509::X509;
use serde_json::json;
use sigil::pki::CrlPartition;
use sigil::scep::PkiStatus;

use crate::api::{call, enroll_with, new_token};
use crate::common::{openssl, write_pem};
use crate::multinode::serial_of;
use crate::scep::{sha256_hex, ScepServer, CHALLENGE};

/// The only URI of a certificate's CRL distribution point.
fn crl_point(der: &[u8]) -> String {
    let x = X509::from_der(der).unwrap();
    let points = x
        .crl_distribution_points()
        .expect("a CRL distribution point");
    assert_eq!(points.len(), 1);
    let names = points[0].distpoint().unwrap().fullname().unwrap();
    assert_eq!(names.len(), 1);
    names[0].uri().unwrap().to_string()
}

/// The partition a certificate's notAfter falls in, computed from the certificate.
fn partition_of(der: &[u8]) -> CrlPartition {
    let x = X509::from_der(der).unwrap();
    let epoch = Asn1Time::from_unix(0).unwrap();
    let d = epoch.diff(x.not_after()).unwrap();
    let secs = i64::from(d.days) * 86_400 + i64::from(d.secs);
    CrlPartition::of(time::OffsetDateTime::from_unix_timestamp(secs).unwrap())
}

/// GET a CRL (200, `application/pkix-crl`): `openssl crl -text -verify` of it against `ca`,
/// and the CRL written as PEM under `dir` for `openssl verify -CRLfile`.
/// Revoke a certificate through the API as `officer`.
fn revoke(s: &ScepServer, officer: &str, serial: &str, reason: &str) {
    let path = format!("/api/v1/certificates/{serial}/revoke");
    let r = call(
        s,
        "POST",
        &path,
        Some(officer),
        Some(json!({ "reason": reason })),
    );
    assert_eq!(r.status(), 200, "{}", s.log());
}

pub(crate) fn fetch_crl(
    s: &ScepServer,
    url: &str,
    ca: &Path,
    dir: &Path,
    name: &str,
) -> (String, PathBuf) {
    let r = s.http.get(url).send().unwrap();
    assert_eq!(r.status(), 200, "{url}: {}", s.log());
    assert_eq!(r.headers()["content-type"], "application/pkix-crl");
    let der = dir.join(format!("{name}.der"));
    std::fs::write(&der, r.bytes().unwrap()).unwrap();
    let pem = dir.join(format!("{name}.pem"));
    let (ok, text) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        der.to_str().unwrap(),
        "-CAfile",
        ca.to_str().unwrap(),
        "-noout",
        "-text",
        "-verify",
    ]);
    assert!(ok && text.contains("verify OK"), "{text}");
    let (ok, out) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        der.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    (text, pem)
}

fn crl_number(text: &str) -> u64 {
    let line = text
        .lines()
        .skip_while(|l| !l.contains("X509v3 CRL Number"))
        .nth(1)
        .unwrap_or_else(|| panic!("no CRL number in {text}"));
    line.trim().parse().unwrap()
}

/// `openssl verify -crl_check` of `cert` with only `crl`.
pub(crate) fn verify_with_crl(ca: &Path, crl: &Path, cert: &Path) -> (bool, String) {
    openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        ca.to_str().unwrap(),
        "-CRLfile",
        crl.to_str().unwrap(),
        cert.to_str().unwrap(),
    ])
}

#[test]
fn certificates_name_their_weeks_crl_and_each_partition_lists_only_its_own() {
    let h = sha256_hex(CHALLENGE);
    let s = ScepServer::start_with(&format!(
        "\n[profiles.month]\nchallenge_sha256 = \"{h}\"\nvalidity_days = 30\n"
    ));
    let dir = s.token.path().join("relying-party");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = write_pem(&dir, "ca.pem", &s.ca);
    let (officer, _) = new_token(&s, "officer", "officer");
    let enroll = |profile: &str, device: &str| {
        let (_, _, r) = enroll_with(&s, profile, device, CHALLENGE);
        assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
        r.certs[0].clone()
    };
    let a = &enroll("default", "year-a");
    // B in A's week (a second try if the two straddled Monday 00:00 UTC).
    let mut b = enroll("default", "year-b");
    if partition_of(&b) != partition_of(a) {
        b = enroll("default", "year-b2");
    }
    let c = &enroll("month", "month-c");
    let b = &b;
    let pem = |name: &str, der: &[u8]| write_pem(&dir, name, der);
    let (a_pem, b_pem, c_pem) = (pem("a.pem", a), pem("b.pem", b), pem("c.pem", c));

    // Each certificate names its week's CRL on this server; a year's and a month's differ.
    let url_of = |der: &[u8]| format!("{}/crl/sigil-ca/{}.crl", s.base, partition_of(der).name());
    for der in [a, b, c] {
        assert_eq!(crl_point(der), url_of(der));
    }
    assert_eq!(crl_point(a), crl_point(b));
    assert_ne!(crl_point(a), crl_point(c));
    let (year_url, month_url) = (crl_point(a), crl_point(c));

    // Before: the year's partition lists nothing, names itself in a critical issuing
    // distribution point for end-entity certificates only, and is kept, not re-signed.
    let (text, before) = fetch_crl(&s, &year_url, &ca, &dir, "year-before");
    assert!(text.contains("No Revoked Certificates"), "{text}");
    assert!(
        text.contains("X509v3 Issuing Distribution Point: critical"),
        "{text}"
    );
    assert!(text.contains(&format!("URI:{year_url}")), "{text}");
    assert!(text.contains("Only User Certificates"), "{text}");
    let first_number = crl_number(&text);
    let (again, _) = fetch_crl(&s, &year_url, &ca, &dir, "year-again");
    assert_eq!(
        crl_number(&again),
        first_number,
        "a held partition is served as it is"
    );
    assert!(verify_with_crl(&ca, &before, &a_pem).0);
    let raw = |url: &str| {
        let r = s.http.get(url).send().unwrap();
        assert_eq!(r.status(), 200, "{url}");
        r.bytes().unwrap().to_vec()
    };
    let month_before = raw(&month_url);

    // Revoke A.
    let serial_a = serial_of(a);
    revoke(&s, &officer, &serial_a, "keyCompromise");

    // After: A's partition is made again, once, whoever asks at the same moment.
    let bodies: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let asks: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    let r = s.http.get(&year_url).send().unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().unwrap().to_vec()
                })
            })
            .collect();
        asks.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "one CRL made");
    // It lists A; B (same week) still verifies with it.
    let (text, year) = fetch_crl(&s, &year_url, &ca, &dir, "year-after");
    assert!(
        text.to_ascii_lowercase()
            .contains(&serial_a.to_ascii_lowercase()),
        "{text}"
    );
    assert!(crl_number(&text) > first_number, "{text}");
    let (ok, out) = verify_with_crl(&ca, &year, &a_pem);
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    assert!(verify_with_crl(&ca, &year, &b_pem).0);

    // The month's partition does not list A, and is not A's CRL: a relying party holding
    // only it cannot check A at all (its point is not A's), rather than finding A good.
    // A's revocation is not in the month's week: its CRL is kept as it was, not signed again.
    assert_eq!(raw(&month_url), month_before, "the month's CRL is kept");
    let (text, month) = fetch_crl(&s, &month_url, &ca, &dir, "month");
    assert!(text.contains("No Revoked Certificates"), "{text}");
    assert!(verify_with_crl(&ca, &month, &c_pem).0);
    let (ok, out) = verify_with_crl(&ca, &month, &a_pem);
    assert!(!ok && out.contains("different CRL scope"), "{out}");
    // And the year's partition is not C's.
    let (ok, out) = verify_with_crl(&ca, &year, &c_pem);
    assert!(!ok && out.contains("different CRL scope"), "{out}");

    // The full CRL still lists A, with no issuing distribution point: good for every
    // certificate.
    let (text, full) = fetch_crl(
        &s,
        &format!("{}/crl/sigil-ca.crl", s.base),
        &ca,
        &dir,
        "full",
    );
    assert!(!text.contains("Issuing Distribution Point"), "{text}");
    assert!(!verify_with_crl(&ca, &full, &a_pem).0);
    assert!(verify_with_crl(&ca, &full, &c_pem).0);

    // Names that are not a partition of a CA here: 404 with the reason. A week in which no
    // certificate ends costs a lookup, not a signature.
    let empty_week = format!(
        "/crl/sigil-ca/{}.crl",
        CrlPartition::of(time::OffsetDateTime::now_utc() + time::Duration::days(3 * 365)).name()
    );
    for (path, reason) in [
        ("/crl/sigil-ca/2027-W54.crl", "not a CRL partition"),
        ("/crl/sigil-ca/2027-W49.pem", "not a CRL partition"),
        ("/crl/sigil-ca/2027-12-06.crl", "not a CRL partition"),
        ("/crl/sigil-ca/2027-W49", "not a CRL partition"),
        ("/crl/sigil-ca/1999-W01.crl", "outside the CA's validity"),
        (&empty_week, "no certificate of sigil-ca ends in"),
        ("/crl/nobody/2027-W01.crl", "no CA is called"),
    ] {
        let r = s.http.get(format!("{}{path}", s.base)).send().unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body = r.text().unwrap();
        assert!(body.contains(reason), "{path}: {body}");
    }
    let r = s
        .http
        .get(format!("{}/crl/sigil-ca/2027-W49/x.crl", s.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);

    // A revocation in the month's week after it was kept: made again, listing C.
    let serial_c = serial_of(c);
    revoke(&s, &officer, &serial_c, "superseded");
    let (text, month) = fetch_crl(&s, &month_url, &ca, &dir, "month-after");
    assert!(
        text.to_ascii_lowercase()
            .contains(&serial_c.to_ascii_lowercase()),
        "{text}"
    );
    let (ok, out) = verify_with_crl(&ca, &month, &c_pem);
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    // C is not in the year's week: the year's CRL, which lists A, is kept as it was.
    assert_eq!(raw(&year_url), bodies[0], "the year's CRL is kept");
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

#[test]
fn a_moved_public_url_keeps_the_certificates_issued_before_in_scope() {
    let mut s = ScepServer::start();
    let dir = s.token.path().join("relying-party");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = write_pem(&dir, "ca.pem", &s.ca);
    let (officer, _) = new_token(&s, "officer", "officer");
    let enroll = |s: &ScepServer, device: &str| {
        let (_, _, r) = enroll_with(s, "default", device, CHALLENGE);
        assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
        r.certs[0].clone()
    };
    let old = enroll(&s, "before-the-move");
    let old_url = crl_point(&old);
    assert!(old_url.starts_with("http://127.0.0.1:"), "{old_url}");
    // The partition is made and held under the first URL.
    let (text, _) = fetch_crl(&s, &old_url, &ca, &dir, "before");
    assert!(text.contains(&format!("URI:{old_url}")), "{text}");

    // The same server, now reached as localhost.
    let moved = format!("http://localhost:{}", s.port);
    s.restart_at(&moved);
    let mut new = enroll(&s, "after-the-move");
    if partition_of(&new) != partition_of(&old) {
        new = enroll(&s, "after-the-move-2");
    }
    let new_url = crl_point(&new);
    assert!(new_url.starts_with(&moved), "{new_url}");
    // The held CRL named only the first URL: it is made again, naming both.
    let (text, _) = fetch_crl(&s, &new_url, &ca, &dir, "moved");
    assert!(text.contains(&format!("URI:{old_url}")), "{text}");
    assert!(text.contains(&format!("URI:{new_url}")), "{text}");
    revoke(&s, &officer, &serial_of(&old), "superseded");

    // After a revocation, one CRL for the week, named by both URLs: each certificate finds
    // it in scope.
    let (text, crl) = fetch_crl(&s, &new_url, &ca, &dir, "after");
    assert!(text.contains(&format!("URI:{old_url}")), "{text}");
    assert!(text.contains(&format!("URI:{new_url}")), "{text}");
    let (old_pem, new_pem) = (
        write_pem(&dir, "old.pem", &old),
        write_pem(&dir, "new.pem", &new),
    );
    let (ok, out) = verify_with_crl(&ca, &crl, &old_pem);
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = verify_with_crl(&ca, &crl, &new_pem);
    assert!(ok, "{out}");
}
