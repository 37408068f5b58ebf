//! The SCEP codec on its own: parse a recorded pkiMessage (macOS's PKCSReq, from micromdm's
//! test vectors) and build CertReps with the private-key operations stubbed out, so the ASN.1
//! and allocation costs show without the token's or OpenSSL's RSA time.
//!
//! `cargo bench --bench codec`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sigil::scep::{
    CertRep, ContentCipher, DigestAlg, KeyTransport, Nonce, Outcome, PkiMessage, RaKey, ScepError,
    TransactionId,
};

/// Signs with a fixed 256-byte value: no RSA.
struct StubKey;

impl RaKey for StubKey {
    fn decrypt_key(&self, _: KeyTransport, _: &[u8]) -> Result<Vec<u8>, ScepError> {
        Ok(vec![0u8; 16])
    }

    fn sign(&self, _: DigestAlg, _: &[u8]) -> Result<Vec<u8>, ScepError> {
        Ok(vec![0x5a; 256])
    }
}

fn vector(path: &str) -> Vec<u8> {
    let full = format!("{}/testdata/scep/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn codec(c: &mut Criterion) {
    let request = vector("micromdm-scep/PKCSReq.der");
    let ca = openssl::x509::X509::from_pem(&vector("micromdm-scep/testca/ca.crt"))
        .unwrap()
        .to_der()
        .unwrap();
    c.bench_function("parse PKCSReq (macOS)", |b| {
        b.iter(|| PkiMessage::parse(black_box(&request)).unwrap())
    });
    let msg = PkiMessage::parse(&request).unwrap();
    c.bench_function("parse the envelope", |b| b.iter(|| msg.envelope().unwrap()));
    let tid = TransactionId(msg.transaction_id.0.clone());
    let nonce = Nonce(msg.sender_nonce.0.clone());
    let build = |outcome: Outcome| {
        CertRep {
            transaction_id: &tid,
            recipient_nonce: &nonce,
            outcome,
            requester_cert: &msg.signer_cert,
            cipher: ContentCipher::Aes128Cbc,
            digest: DigestAlg::Sha256,
            ra_cert: &ca,
            extra_certs: &[],
        }
        .build(&StubKey)
        .unwrap()
    };
    c.bench_function("CertRep PENDING (stub signature)", |b| {
        b.iter(|| build(Outcome::Pending))
    });
    c.bench_function("CertRep FAILURE (stub signature)", |b| {
        b.iter(|| {
            build(Outcome::Failure {
                info: sigil::scep::FailInfo::BadRequest,
                text: "the challenge password is wrong".into(),
            })
        })
    });
    // SUCCESS seals the certificate to the requester: one RSA public-key encryption and AES.
    c.bench_function("CertRep SUCCESS (stub signature, real envelope)", |b| {
        b.iter(|| {
            build(Outcome::Success {
                certs: vec![ca.clone()],
                crls: Vec::new(),
            })
        })
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
