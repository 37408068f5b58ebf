//! The certificate lifecycle seen by relying parties: the CRL at the URL put into issued
//! certificates and the OCSP responder at their AIA URL, checked with the `openssl` command
//! line (`openssl crl -verify`, `openssl verify -crl_check`, `openssl ocsp`) before and after
//! a revocation; OCSP by GET, nonces, the cache, malformed requests.
//!
//! Over 800 lines: each scenario drives a live server and the `openssl` tools end to end;
//! the CRL and OCSP checks share the set-up and command helpers kept here.

use std::path::Path;
use std::process::Command;

use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspFlag, OcspResponse, OcspResponseStatus};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;
use serde_json::json;
use sigil::scep::PkiStatus;

use crate::api::{call, enroll_with, new_token};
use crate::common::{openssl, write_pem};
use crate::scep::{ScepServer, CHALLENGE};

fn ext_text(cert: &[u8]) -> String {
    String::from_utf8(X509::from_der(cert).unwrap().to_text().unwrap()).unwrap()
}

/// `openssl ocsp` against the server for one certificate: its status line.
fn ocsp_status(s: &ScepServer, ca: &Path, cert: &Path) -> String {
    let (ok, out) = openssl(&[
        "ocsp",
        "-issuer",
        ca.to_str().unwrap(),
        "-cert",
        cert.to_str().unwrap(),
        "-url",
        &format!("{}/ocsp", s.base),
        "-CAfile",
        ca.to_str().unwrap(),
    ]);
    assert!(ok, "openssl ocsp failed: {out}\n{}", s.log());
    assert!(out.contains("Response verify OK"), "{out}");
    out
}

#[test]
fn crl_and_ocsp_agree_with_the_store_before_and_after_a_revocation() {
    let s = ScepServer::start();
    let dir = s.token.path().join("relying-party");
    std::fs::create_dir_all(&dir).unwrap();
    let (officer, _) = new_token(&s, "officer", "officer");
    let ca = write_pem(&dir, "ca.pem", &s.ca);
    let (_, _, ra) = enroll_with(&s, "default", "laptop-a", CHALLENGE);
    assert_eq!(ra.status, PkiStatus::Success);
    let (_, _, rb) = enroll_with(&s, "default", "laptop-b", CHALLENGE);
    let a = write_pem(&dir, "a.pem", &ra.certs[0]);
    let b = write_pem(&dir, "b.pem", &rb.certs[0]);
    let serial_a = hex::encode(
        X509::from_der(&ra.certs[0])
            .unwrap()
            .serial_number()
            .to_bn()
            .unwrap()
            .to_vec(),
    );

    // The certificates point at this server's CRL (their partition's, see
    // `crl_partitions`) and OCSP responder. The full CRL is checked here.
    let crl_url = format!("{}/crl/sigil-ca.crl", s.base);
    let text = ext_text(&ra.certs[0]);
    assert!(
        text.contains(&format!("URI:{}/crl/sigil-ca/", s.base)),
        "{text}"
    );
    assert!(
        text.contains(&format!("OCSP - URI:{}/ocsp", s.base)),
        "{text}"
    );

    let fetch_crl = |name: &str| crate::crl_partitions::fetch_crl(&s, &crl_url, &ca, &dir, name);
    let verify = |cert: &Path, crl: &Path| crate::crl_partitions::verify_with_crl(&ca, crl, cert);

    // Before: the CRL lists nothing, both verify, OCSP says good; a serial never issued is
    // unknown.
    let (text, crl) = fetch_crl("before.crl");
    assert!(text.contains("No Revoked Certificates"), "{text}");
    assert!(text.contains("X509v3 CRL Number"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    assert!(verify(&a, &crl).0 && verify(&b, &crl).0);
    assert!(ocsp_status(&s, &ca, &a).contains(": good"));
    let (ok, out) = openssl(&[
        "ocsp",
        "-issuer",
        ca.to_str().unwrap(),
        "-serial",
        "0x5eed5eed5eed",
        "-url",
        &format!("{}/ocsp", s.base),
        "-CAfile",
        ca.to_str().unwrap(),
    ]);
    assert!(ok && out.contains(": unknown"), "{out}");
    // Another CA's certificate: not this responder's business (unauthorized, unsigned).
    let other = dir.join("other-ca.pem");
    let (ok, _) = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        dir.join("other.key").to_str().unwrap(),
        "-subj",
        "/CN=Other CA",
        "-days",
        "2",
        "-out",
        other.to_str().unwrap(),
    ]);
    assert!(ok);
    let (ok, out) = openssl(&[
        "ocsp",
        "-issuer",
        other.to_str().unwrap(),
        "-serial",
        &format!("0x{serial_a}"),
        "-url",
        &format!("{}/ocsp", s.base),
        "-CAfile",
        ca.to_str().unwrap(),
        "-noverify",
    ]);
    assert!(out.contains("unauthorized"), "{ok} {out}");

    // Revoke A.
    let r = call(
        &s,
        "POST",
        &format!("/api/v1/certificates/{serial_a}/revoke"),
        Some(&officer),
        Some(json!({"reason": "keyCompromise"})),
    );
    assert_eq!(r.status(), 200);

    // After: the CRL lists A with its reason, verify refuses A and accepts B, OCSP agrees.
    let (text, crl) = fetch_crl("after.crl");
    assert!(
        text.to_ascii_lowercase()
            .contains(&serial_a.to_ascii_lowercase()),
        "{text}"
    );
    assert!(text.contains("Key Compromise"), "{text}");
    let (ok, out) = verify(&a, &crl);
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    assert!(verify(&b, &crl).0);
    let out = ocsp_status(&s, &ca, &a);
    assert!(out.contains(": revoked"), "{out}");
    assert!(out.contains("keyCompromise"), "{out}");
    assert!(ocsp_status(&s, &ca, &b).contains(": good"));
    // An unknown CRL name is 404 with the right one named.
    let r = s
        .http
        .get(format!("{}/crl/other.crl", s.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().contains("/crl/sigil-ca.crl"));
}

#[test]
fn ocsp_by_get_with_nonces_caching_and_bad_requests() {
    let s = ScepServer::start();
    let dir = s.token.path().join("ocsp");
    std::fs::create_dir_all(&dir).unwrap();
    let (officer, _) = new_token(&s, "officer", "officer");
    let ca = write_pem(&dir, "ca.pem", &s.ca);
    let (_, _, r) = enroll_with(&s, "default", "phone", CHALLENGE);
    let cert_pem = write_pem(&dir, "phone.pem", &r.certs[0]);
    let cert = X509::from_der(&r.certs[0]).unwrap();
    let ca_x = X509::from_der(&s.ca).unwrap();
    // Requests made by openssl: with and without a nonce.
    let req = |name: &str, nonce: bool| {
        let p = dir.join(name);
        let mut args = vec![
            "ocsp",
            "-issuer",
            ca.to_str().unwrap(),
            "-cert",
            cert_pem.to_str().unwrap(),
            "-reqout",
            p.to_str().unwrap(),
        ];
        if !nonce {
            args.push("-no_nonce");
        }
        let (ok, out) = openssl(&args);
        assert!(ok, "{out}");
        std::fs::read(p).unwrap()
    };
    let with_nonce = req("nonce.der", true);
    let plain = req("plain.der", false);
    let post = |body: &[u8]| {
        let r = s
            .http
            .post(format!("{}/ocsp", s.base))
            .header("content-type", "application/ocsp-request")
            .body(body.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/ocsp-response");
        assert_eq!(
            r.headers()["cache-control"],
            "no-cache",
            "HTTP caches do not keep POST answers"
        );
        r.bytes().unwrap().to_vec()
    };
    let status_of = |der: &[u8]| {
        let resp = OcspResponse::from_der(der).unwrap();
        assert_eq!(resp.status(), OcspResponseStatus::SUCCESSFUL);
        let basic = resp.basic().unwrap();
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(ca_x.clone()).unwrap();
        let store = store.build();
        let mut certs = Stack::new().unwrap();
        certs.push(ca_x.clone()).unwrap();
        basic.verify(&certs, &store, OcspFlag::empty()).unwrap();
        let id = OcspCertId::from_cert(openssl::hash::MessageDigest::sha1(), &cert, &ca_x).unwrap();
        let st = basic.find_status(&id).unwrap();
        st.check_validity(300, None).unwrap();
        st.status
    };
    // GET: base64 in the path, as RFC 6960 appendix A has it (here percent-escaped).
    use base64::Engine;
    // Base64 in the path, percent-escaped.
    let in_path = |der: &[u8]| {
        base64::engine::general_purpose::STANDARD
            .encode(der)
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    };
    let escaped = in_path(&plain);
    let r = s
        .http
        .get(format!("{}/ocsp/{escaped}", s.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // An answer without a nonce, by GET, may be kept by an HTTP cache (RFC 5019 §6.2), for a
    // minute at most; its ETag is the SHA-1 of the response, Last-Modified its producedAt.
    let header = |r: &reqwest::blocking::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let cache_control = header(&r, "cache-control");
    let max_age: i64 = cache_control
        .strip_prefix("max-age=")
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{cache_control}"));
    assert!((1..=60).contains(&max_age), "{cache_control}");
    assert!(
        cache_control.ends_with(", public, no-transform, must-revalidate"),
        "{cache_control}"
    );
    let time = |name: &str| {
        let text = header(&r, name);
        let at: actix_web::http::header::HttpDate =
            text.parse().unwrap_or_else(|_| panic!("{name}: {text}"));
        std::time::SystemTime::from(at)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let (expires, date, modified) = (time("expires"), time("date"), time("last-modified"));
    // Expires is now + max-age; the server's Date header is refreshed about twice a second,
    // so it may trail by one.
    assert!((1..=61).contains(&(expires - date)), "{expires} {date}");
    assert!(
        modified <= date + 1 && date - modified < 600,
        "{modified} {date}"
    );
    let etag = header(&r, "etag");
    let modified_text = header(&r, "last-modified");
    let got = r.bytes().unwrap();
    assert_eq!(
        etag,
        format!("\"{}\"", hex::encode(openssl::sha::sha1(&got)))
    );
    assert_eq!(status_of(&got), OcspCertStatus::GOOD);
    // Asked again, the answer comes from memory with the caching facts worked out when it
    // was taken in: the same bytes, the same tag.
    let prepared = "sigil_ocsp_answers_total{outcome=\"prepared\"}";
    let before = s.metric(prepared);
    let again = s
        .http
        .get(format!("{}/ocsp/{escaped}", s.base))
        .send()
        .unwrap();
    assert_eq!(header(&again, "etag"), etag);
    assert_eq!(header(&again, "last-modified"), modified_text);
    assert_eq!(again.bytes().unwrap(), got);
    assert_eq!(s.metric(prepared), before + 1.0, "answered from memory");
    // With a nonce the answer is for that request alone: not to be cached.
    let escaped_nonce = in_path(&with_nonce);
    let r = s
        .http
        .get(format!("{}/ocsp/{escaped_nonce}", s.base))
        .send()
        .unwrap();
    assert_eq!(header(&r, "cache-control"), "no-cache");
    assert!(header(&r, "etag").is_empty());
    assert_eq!(status_of(&r.bytes().unwrap()), OcspCertStatus::GOOD);
    // Without a nonce the signed answer is reused (kept as the pre-produced answer); with
    // one, each answer is new.
    let one = post(&plain);
    let two = post(&plain);
    assert_eq!(one, two, "the same signed answer, from the cache");
    let n1 = post(&with_nonce);
    assert_eq!(status_of(&n1), OcspCertStatus::GOOD);
    assert_ne!(
        n1, one,
        "a request with a nonce gets its own answer, not the cached one"
    );
    // The nonce comes back (openssl checks it).
    let (ok, out) = openssl(&[
        "ocsp",
        "-issuer",
        ca.to_str().unwrap(),
        "-cert",
        cert_pem.to_str().unwrap(),
        "-url",
        &format!("{}/ocsp", s.base),
        "-CAfile",
        ca.to_str().unwrap(),
    ]);
    assert!(ok && !out.contains("WARNING: no nonce"), "{out}");
    // A revocation is answered at once, cache or not.
    let serial = hex::encode(cert.serial_number().to_bn().unwrap().to_vec());
    assert_eq!(
        call(
            &s,
            "POST",
            &format!("/api/v1/certificates/{serial}/revoke"),
            Some(&officer),
            Some(json!({"reason": "superseded"})),
        )
        .status(),
        200
    );
    let revoked = post(&plain);
    assert_eq!(status_of(&revoked), OcspCertStatus::REVOKED);
    assert_eq!(
        post(&plain),
        revoked,
        "the revoked answer is kept and reused"
    );
    // Nonsense: malformedRequest, as an OCSP response, never a 500.
    for bad in [
        &b""[..],
        &b"hello"[..],
        &plain[..plain.len() - 4],
        &vec![0x30u8; 20_000][..],
    ] {
        let r = OcspResponse::from_der(&post(bad)).unwrap();
        assert_eq!(r.status(), OcspResponseStatus::MALFORMED_REQUEST);
    }
    let r = s
        .http
        .get(format!("{}/ocsp/not-base64!!", s.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "no-cache",
        "errors are not cached"
    );
    assert_eq!(
        OcspResponse::from_der(&r.bytes().unwrap())
            .unwrap()
            .status(),
        OcspResponseStatus::MALFORMED_REQUEST
    );
    // Under /ocsp, only a POST to /ocsp and a GET of /ocsp/{request}: anything else is told
    // what is, not answered as an OCSP request.
    let r = s.http.get(format!("{}/ocsp", s.base)).send().unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert!(r.text().unwrap().contains("POST to /ocsp"));
    let r = s
        .http
        .put(format!("{}/ocsp/{escaped}", s.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    // HEAD is GET without the body.
    let r = s
        .http
        .head(format!("{}/ocsp/{escaped}", s.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "application/ocsp-response");
    assert!(s.metric(prepared) > 0.0);
    assert!(s.metric("sigil_ocsp_answers_total{outcome=\"malformed\"}") >= 5.0);
}

/// 1,000 issuances on a profile with `validity_jitter = 0.2` and 100 days: every notAfter lies
/// in the last 20 days of the validity, and they spread evenly over it (each of ten equal
/// slices holds about a tenth, by a chi-square test that a uniform draw fails once in a million).
#[test]
fn validity_jitter_spreads_not_after_over_the_configured_range() {
    use sigil::hsm::{KeySpec, KeyUsage};
    let _slot = crate::common::shared_slot();
    let hsm = crate::common::shared_hsm();
    let label = "jitter-ca";
    let _ = hsm.destroy_blocking(label);
    hsm.generate_blocking(
        KeySpec::Rsa(2048),
        label,
        KeyUsage {
            sign: true,
            decrypt: false,
        },
    )
    .unwrap();
    let uri = sigil::hsm::KeyUri::labelled(hsm.token(), label);
    let key = sigil::hsm::TokenKey::open(hsm, &uri).unwrap();
    let dn = sigil::pki::parse_dn("CN=Jitter CA").unwrap();
    let ca = sigil::pki::self_signed_ca(&key, &sigil::pki::ca_params(dn, 3650).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca.clone().into(), key).unwrap();
    let ca_not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    let profile = sigil::config::ProfileSettings {
        validity_days: 100,
        validity_jitter: 0.2,
        allow_without_challenge: true,
        ..Default::default()
    }
    .cert_profile("fleet")
    .unwrap();
    let device = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let mut req = openssl::x509::X509ReqBuilder::new().unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "fleet-device").unwrap();
    req.set_subject_name(&name.build()).unwrap();
    req.set_pubkey(&device).unwrap();
    req.sign(&device, openssl::hash::MessageDigest::sha256())
        .unwrap();
    let csr = sigil::pki::parse_csr(&req.build().to_der().unwrap()).unwrap();

    let start = time::OffsetDateTime::now_utc().unix_timestamp();
    let n = 1000;
    let mut ends = Vec::with_capacity(n);
    for _ in 0..n {
        let der = profile.issue(&csr, None, &issuer, ca_not_after).unwrap();
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        ends.push(c.validity().not_after.timestamp());
    }
    let end = time::OffsetDateTime::now_utc().unix_timestamp();
    let full = 100 * 86_400;
    let range = 20 * 86_400;
    let (lo, hi) = (start + full - range, end + full);
    assert!(
        ends.iter().all(|t| (lo..=hi).contains(t)),
        "outside [{lo}, {hi}]"
    );
    let min = *ends.iter().min().unwrap();
    let max = *ends.iter().max().unwrap();
    assert!(
        max - min > range * 9 / 10,
        "spread {} s of {range}",
        max - min
    );
    let mut slices = [0u32; 10];
    for t in &ends {
        let i = (((t - (start + full - range)) * 10) / range).clamp(0, 9) as usize;
        slices[i] += 1;
    }
    // Pearson's chi-square against ten equal slices (9 degrees of freedom): a uniform draw
    // exceeds 45 about once in a million runs, while a draw that favours part of the range
    // (a triangle, a half range, a clumped generator) lands in the hundreds.
    let chi2: f64 = slices
        .iter()
        .map(|&c| (f64::from(c) - 100.0).powi(2) / 100.0)
        .sum();
    assert!(chi2 < 45.0, "uneven: {slices:?} (chi-square {chi2:.1})");
    let mut distinct = ends.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 990, "{} distinct of {n}", distinct.len());
}

fn scepclient(s: &ScepServer, dir: &Path, profile: &str, challenge: &str) -> (bool, String) {
    std::fs::create_dir_all(dir).unwrap();
    let ra_fp = hex::encode(openssl::sha::sha256(&s.ra));
    let out = Command::new("scepclient")
        .current_dir(dir)
        .args(["-server-url", &format!("{}/scep/{profile}", s.base)])
        .args([
            "-challenge",
            challenge,
            "-cn",
            "renewing-mac",
            "-ca-fingerprint",
            &ra_fp,
        ])
        .args(["-private-key", "device.key", "-certificate", "device.pem"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn serial_of(path: &Path) -> String {
    let c = X509::from_pem(&std::fs::read(path).unwrap()).unwrap();
    hex::encode(c.serial_number().to_bn().unwrap().to_vec())
}

/// scepclient renews the way macOS does: a PKCSReq signed with its current certificate and
/// key. Inside the window it gets a new certificate and the old one is revoked as superseded;
/// too early, the server refuses and says when the window opens.
#[test]
fn scepclient_renews_inside_the_window_and_is_refused_before_it() {
    crate::common::ensure_tool("scepclient", "scep");
    let h = hex::encode(openssl::sha::sha256(CHALLENGE.as_bytes()));
    // scepclient 2.1 signs with SHA-1 and encrypts with DES: legacy profiles.
    let s = ScepServer::start_with(&format!(
        r#"
[profiles.renew-now]
challenge_sha256 = "{h}"
legacy = true
validity_days = 365
renewal_days = 400
revoke_superseded = true

[profiles.renew-later]
legacy = true
validity_days = 365
renewal_days = 30
"#
    ));
    let (officer, _) = new_token(&s, "officer", "officer");
    let (mdm, _) = new_token(&s, "mdm", "mdm");

    let dir = s.token.path().join("renew-now");
    let (ok, err) = scepclient(&s, &dir, "renew-now", CHALLENGE);
    assert!(ok, "{err}\n{}", s.log());
    let first = serial_of(&dir.join("device.pem"));
    // Again, from the same directory: scepclient signs with device.pem and device.key.
    let (ok, err) = scepclient(&s, &dir, "renew-now", CHALLENGE);
    assert!(ok, "{err}\n{}", s.log());
    let second = serial_of(&dir.join("device.pem"));
    assert_ne!(first, second, "a new certificate");
    assert!(s.log().contains("renewal of a certificate from this CA"));
    let old: serde_json::Value = call(
        &s,
        "GET",
        &format!("/api/v1/certificates/{first}"),
        Some(&officer),
        None,
    )
    .json()
    .unwrap();
    assert_eq!(old["status"], "revoked", "{old}");
    let new: serde_json::Value = call(
        &s,
        "GET",
        &format!("/api/v1/certificates/{second}"),
        Some(&officer),
        None,
    )
    .json()
    .unwrap();
    assert_eq!(new["status"], "valid");
    let crl = s
        .http
        .get(format!("{}/crl/sigil-ca.crl", s.base))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let crl = openssl::x509::X509Crl::from_der(&crl).unwrap();
    let revoked: Vec<String> = crl
        .get_revoked()
        .map(|r| {
            r.iter()
                .map(|x| hex::encode(x.serial_number().to_bn().unwrap().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    assert!(revoked.contains(&first), "{revoked:?}");

    // Too early: a one-time challenge enrolled the device; the second run (renewal, the spent
    // challenge still in its CSR) is refused with the date the window opens.
    let r = call(
        &s,
        "POST",
        "/api/v1/challenges",
        Some(&mdm),
        Some(json!({"profile": "renew-later"})),
    );
    assert_eq!(r.status(), 201);
    let once: serde_json::Value = r.json().unwrap();
    let dir = s.token.path().join("renew-later");
    let (ok, err) = scepclient(&s, &dir, "renew-later", once["challenge"].as_str().unwrap());
    assert!(ok, "{err}\n{}", s.log());
    let kept = serial_of(&dir.join("device.pem"));
    let (ok, _) = scepclient(&s, &dir, "renew-later", once["challenge"].as_str().unwrap());
    assert!(!ok, "renewal before the window must fail");
    assert!(
        s.log()
            .contains("too early to renew: the renewal window opens on"),
        "{}",
        s.log()
    );
    let (_, audit) = (
        (),
        call(&s, "GET", "/api/v1/audit?limit=10000", Some(&s.admin), None)
            .json::<serde_json::Value>()
            .unwrap(),
    );
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "refused"
                && a["details"]
                    .as_str()
                    .unwrap_or("")
                    .contains("too early to renew")),
        "{audit}"
    );
    let still: serde_json::Value = call(
        &s,
        "GET",
        &format!("/api/v1/certificates/{kept}"),
        Some(&officer),
        None,
    )
    .json()
    .unwrap();
    assert_eq!(still["status"], "valid");
}

/// Certificates entering their last days are counted per profile in /metrics and announced
/// once each to the webhook, with the device to re-push.
#[test]
fn expiring_certificates_are_counted_and_announced_once() {
    use crate::fake_mdm::{FakeMdm, Resp};
    let hook = FakeMdm::start(|req, _| {
        if req.path == "/hooks/sigil" && req.bearer() == Some("hook-secret") {
            Resp::json(202, json!({"accepted": true}))
        } else {
            Resp::json(401, json!({"error": "who are you"}))
        }
    });
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("hook");
    std::fs::write(&secret, "hook-secret\n").unwrap();
    let h = hex::encode(openssl::sha::sha256(CHALLENGE.as_bytes()));
    let s = ScepServer::start_with(&format!(
        r#"
[profiles.short]
challenge_sha256 = "{h}"
validity_days = 10

[notify]
webhook_url = "{}/hooks/sigil"
secret_file = "{}"
within_days = 30
"#,
        hook.url,
        secret.display()
    ));
    let mut serials = Vec::new();
    for cn in ["kiosk-1", "kiosk-2"] {
        let (_, _, r) = enroll_with(&s, "short", cn, CHALLENGE);
        assert_eq!(r.status, PkiStatus::Success);
        serials.push(hex::encode(
            X509::from_der(&r.certs[0])
                .unwrap()
                .serial_number()
                .to_bn()
                .unwrap()
                .to_vec(),
        ));
    }
    let (_, _, r) = enroll_with(&s, "default", "laptop", CHALLENGE);
    assert_eq!(r.status, PkiStatus::Success);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while hook.seen("/hooks/sigil").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no webhook call:\n{}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Two more background rounds: nothing is announced twice.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let calls = hook.seen("/hooks/sigil");
    assert_eq!(calls.len(), 2);
    let mut announced: Vec<String> = calls
        .iter()
        .map(|c| {
            let v: serde_json::Value = serde_json::from_str(&c.body).unwrap();
            assert_eq!(v["event"], "certificate.expiring");
            assert_eq!(v["profile"], "short");
            assert_eq!(v["scep_url"], format!("{}/scep/short", s.base));
            v["serial"].as_str().unwrap().to_string()
        })
        .collect();
    announced.sort();
    serials.sort();
    assert_eq!(announced, serials);
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("sigil_certificates_expiring{profile=\"short\",within=\"30d\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sigil_certificates_expiring{profile=\"short\",within=\"7d\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sigil_certificates_expiring{profile=\"default\",within=\"30d\"} 0"),
        "{metrics}"
    );
}

/// Revoking a device revokes every valid certificate issued to it (device IDs come from
/// one-time challenges bound to a device, or from registrations), with one new CRL.
#[test]
fn revoking_a_device_revokes_all_its_certificates() {
    let s = ScepServer::start();
    let (officer, _) = new_token(&s, "officer", "officer");
    let (mdm, _) = new_token(&s, "mdm", "mdm");
    let mut serials = Vec::new();
    for cn in ["ipad-7-wifi", "ipad-7-vpn"] {
        let r = call(
            &s,
            "POST",
            "/api/v1/challenges",
            Some(&mdm),
            Some(json!({"cn": cn, "device_id": "ipad-7"})),
        );
        assert_eq!(r.status(), 201);
        let c: serde_json::Value = r.json().unwrap();
        let (_, _, reply) = enroll_with(&s, "default", cn, c["challenge"].as_str().unwrap());
        assert_eq!(reply.status, PkiStatus::Success);
        serials.push(hex::encode(
            X509::from_der(&reply.certs[0])
                .unwrap()
                .serial_number()
                .to_bn()
                .unwrap()
                .to_vec(),
        ));
    }
    let (_, _, other) = enroll_with(&s, "default", "someone-else", CHALLENGE);
    assert_eq!(other.status, PkiStatus::Success);
    let listed: serde_json::Value = call(
        &s,
        "GET",
        "/api/v1/certificates?device=ipad-7",
        Some(&officer),
        None,
    )
    .json()
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(listed[0]["device_id"] == "ipad-7");
    // Bad reason, wrong role, then the revocation.
    assert_eq!(
        call(
            &s,
            "POST",
            "/api/v1/devices/ipad-7/revoke",
            Some(&officer),
            Some(json!({"reason": "lost"}))
        )
        .status(),
        400
    );
    assert_eq!(
        call(
            &s,
            "POST",
            "/api/v1/devices/ipad-7/revoke",
            Some(&mdm),
            Some(json!({"reason": "keyCompromise"}))
        )
        .status(),
        403
    );
    let r = call(
        &s,
        "POST",
        "/api/v1/devices/ipad-7/revoke",
        Some(&officer),
        Some(json!({"reason": "keyCompromise"})),
    );
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    let mut revoked: Vec<String> = v["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    revoked.sort();
    serials.sort();
    assert_eq!(revoked, serials);
    assert_eq!(
        call(
            &s,
            "POST",
            "/api/v1/devices/ipad-7/revoke",
            Some(&officer),
            Some(json!({"reason": "keyCompromise"}))
        )
        .status(),
        404,
        "nothing valid is left"
    );
    let crl = s
        .http
        .get(format!("{}/crl/sigil-ca.crl", s.base))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let crl = openssl::x509::X509Crl::from_der(&crl).unwrap();
    let listed: Vec<String> = crl
        .get_revoked()
        .unwrap()
        .iter()
        .map(|x| hex::encode(x.serial_number().to_bn().unwrap().to_vec()))
        .collect();
    for s in &serials {
        assert!(listed.contains(s));
    }
    assert_eq!(
        listed.len(),
        2,
        "the other device's certificate is untouched"
    );
}

/// A renewal keeps the device its certificate was issued to, so revoking the device later
/// also revokes the renewed certificate.
#[test]
fn renewals_keep_their_device() {
    use sigil::scep::{ContentCipher, DigestAlg, MessageType, Nonce};
    let s = ScepServer::start();
    let (officer, _) = new_token(&s, "officer", "officer");
    let (mdm, _) = new_token(&s, "mdm", "mdm");
    let r = call(
        &s,
        "POST",
        "/api/v1/challenges",
        Some(&mdm),
        Some(json!({"profile": "renewable", "cn": "tablet-3", "device_id": "tablet-3"})),
    );
    assert_eq!(r.status(), 201);
    let c: serde_json::Value = r.json().unwrap();
    let (mut d, _, first) = enroll_with(
        &s,
        "renewable",
        "tablet-3",
        c["challenge"].as_str().unwrap(),
    );
    assert_eq!(first.status, PkiStatus::Success);
    d.sign_with(first.certs[0].clone());
    let csr = d.csr("tablet-3", None, &[]).unwrap();
    let msg = d
        .request(
            MessageType::RenewalReq,
            "tablet-3-renewal",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            ContentCipher::Aes128Cbc,
            DigestAlg::Sha256,
        )
        .unwrap();
    let renewed = d.read(&s.pki("renewable", msg, false)).unwrap();
    assert_eq!(
        renewed.status,
        PkiStatus::Success,
        "{:?}",
        renewed.fail_text
    );
    let listed: serde_json::Value = call(
        &s,
        "GET",
        "/api/v1/certificates?device=tablet-3",
        Some(&officer),
        None,
    )
    .json()
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let r = call(
        &s,
        "POST",
        "/api/v1/devices/tablet-3/revoke",
        Some(&officer),
        Some(json!({"reason": "cessationOfOperation"})),
    );
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["revoked"].as_array().unwrap().len(), 2, "{v}");
}
