//! The OCSP fast path's pure parts: reading an RFC 5019 request (SHA-1 CertID, no nonce, as
//! `openssl ocsp` and RADIUS servers send it), matching its issuer and reading its serial,
//! building the ResponseData a signature covers, the freshness of a signed answer (read once
//! when a node takes an answer in, for the caching headers of GET answers), and naming the
//! CRL partition a request path asks for.
//!
//! `cargo bench --bench ocsp`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use openssl::ocsp::{OcspCertId, OcspRequest};
use openssl::x509::X509;
use sigil::pki::ocsp::{
    freshness, parse_request, response_data, serial_hex, signed_response, IssuerHashes, Status,
};
use sigil::pki::CrlPartition;

fn ocsp(c: &mut Criterion) {
    let pem = std::fs::read(format!(
        "{}/testdata/scep/micromdm-scep/testca/ca.crt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let ca = X509::from_pem(&pem).unwrap();
    let id = OcspCertId::from_cert(openssl::hash::MessageDigest::sha1(), &ca, &ca).unwrap();
    let mut req = OcspRequest::new().unwrap();
    req.add_id(id).unwrap();
    let der = req.to_der().unwrap();
    let issuer = IssuerHashes::new(
        ca.subject_name().to_der().unwrap().as_slice(),
        ca.public_key()
            .unwrap()
            .rsa()
            .unwrap()
            .public_key_to_der_pkcs1()
            .unwrap()
            .as_slice(),
    );
    c.bench_function("parse an RFC 5019 OCSP request", |b| {
        b.iter(|| parse_request(black_box(&der)).unwrap())
    });
    let q = parse_request(&der).unwrap();
    c.bench_function("issuer match and serial of its CertID", |b| {
        b.iter(|| {
            let id = &q.cert_ids[0];
            (issuer.matches(black_box(id)), serial_hex(id))
        })
    });
    let answers = vec![(q.cert_ids[0].clone(), Status::Good)];
    c.bench_function("ResponseData for one certificate", |b| {
        b.iter(|| response_data(&[7u8; 20], 1_700_000_000, 1_700_003_600, &answers, None).unwrap())
    });
    // sha256WithRSAEncryption, a signature of the right size (freshness does not verify it),
    // and the CA certificate standing in for the responder's.
    let tbs = response_data(&[7u8; 20], 1_700_000_000, 1_700_003_600, &answers, None).unwrap();
    let alg = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
    ];
    let signed = signed_response(&tbs, &alg, &[1u8; 256], &[ca.to_der().unwrap()]).unwrap();
    assert!(freshness(&signed).is_some());
    c.bench_function("freshness of a signed answer", |b| {
        b.iter(|| freshness(black_box(&signed)).unwrap())
    });
    c.bench_function("CRL partition of a request path", |b| {
        b.iter(|| {
            let name = black_box("2027-W23.crl").strip_suffix(".crl").unwrap();
            CrlPartition::parse(name).unwrap().window()
        })
    });
}

criterion_group!(benches, ocsp);
criterion_main!(benches);
