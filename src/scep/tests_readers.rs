//! The two pkiMessage readers (direct, and OpenSSL's PKCS#7 reader) held to the same
//! verdicts: on every recorded message, and on every single-byte change to a request.

use super::tests::{party, request, vector, REQUESTS};
use super::*;

/// Every recorded message, read directly and through OpenSSL's PKCS#7 reader: the same
/// signer, attributes and content, and the same verdict on the signature, also after a bit of
/// the signature or of the content is flipped.
#[test]
fn direct_reading_agrees_with_openssl_on_every_recorded_message() {
    let mut files: Vec<&str> = REQUESTS.iter().map(|r| r.0).collect();
    files.extend([
        "certmonger/pkcsreq_sha256_32octet_signer_serial.der",
        "certmonger/pkcsreq_sha1_21octet_signer_serial.der",
        "certmonger/pkcsreq_rekey_signed_by_issued_cert.der",
        "micromdm-scep/CertRep.der",
    ]);
    let mut direct = 0;
    for file in files {
        let bytes = vector(file);
        let a = PkiMessage::parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let b = PkiMessage::parse_openssl_only(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        direct += usize::from(a.read_directly());
        assert!(!b.read_directly());
        assert_eq!(a.signer_cert, b.signer_cert, "{file}");
        assert_eq!(a.content, b.content, "{file}");
        assert_eq!(a.transaction_id, b.transaction_id, "{file}");
        assert_eq!(a.sender_nonce, b.sender_nonce, "{file}");
        assert_eq!(a.digest, b.digest, "{file}");
        assert_eq!(
            a.verify_signature().is_ok(),
            b.verify_signature().is_ok(),
            "{file}"
        );
        // Flip one bit at a time near the end (signature) and in the middle (content).
        for at in [bytes.len() - 5, bytes.len() / 2] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            let (a, b) = (
                PkiMessage::parse(&bad),
                PkiMessage::parse_openssl_only(&bad),
            );
            let verdict = |m: Result<PkiMessage, ScepError>| m.and_then(|m| m.verify_signature());
            assert_eq!(
                verdict(a).is_ok(),
                verdict(b).is_ok(),
                "{file}, bit flipped at {at}"
            );
        }
    }
    assert!(direct >= 6, "only {direct} messages were read directly");
}

/// Every single-byte change to a request, read both ways: the direct reader accepts exactly
/// what OpenSSL's accepts (signature and content checked), whatever byte was hit (an
/// attribute, digestAlgorithms, a tag or a length). One difference is allowed: inside the
/// requester's self-signed certificate, outside its key, x509-parser reads some names OpenSSL
/// refuses (another string tag). Nothing there is relied on: the key is what verifies, and a
/// renewal's certificate is checked by OpenSSL against the CA.
#[test]
fn any_changed_byte_gets_the_same_verdict_from_both_readers() {
    let (client, ra) = (party("device", 1024), party("ra", 1024));
    let good = request(
        &client,
        &ra,
        ContentCipher::Aes128Cbc,
        DigestAlg::Sha256,
        b"a CSR would be here",
    );
    let cert_at = good
        .windows(client.cert.len())
        .position(|w| w == client.cert)
        .unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&client.cert).unwrap();
    let key = parsed.public_key().raw;
    let key_at = cert_at
        + client
            .cert
            .windows(key.len())
            .position(|w| w == key)
            .unwrap();
    let lenient = |at: usize| {
        (cert_at..cert_at + client.cert.len()).contains(&at)
            && !(key_at..key_at + key.len()).contains(&at)
    };
    let verdict = |m: Result<PkiMessage, ScepError>| {
        m.and_then(|m| m.verify_signature().map(|()| (m.signer_cert, m.content)))
            .ok()
    };
    assert!(PkiMessage::parse(&good).unwrap().read_directly());
    let mut refused = 0;
    for at in 0..good.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = good.clone();
            bad[at] ^= flip;
            let (a, b) = (
                verdict(PkiMessage::parse(&bad)),
                verdict(PkiMessage::parse_openssl_only(&bad)),
            );
            refused += usize::from(a.is_none());
            if lenient(at) && a.is_some() {
                assert!(b.is_none() || a == b, "byte {at} ^ {flip:#04x}");
                continue;
            }
            assert_eq!(
                a.is_some(),
                b.is_some(),
                "byte {at} ^ {flip:#04x}: direct {}, OpenSSL {}",
                a.is_some(),
                b.is_some()
            );
            assert_eq!(a, b, "byte {at} ^ {flip:#04x}");
        }
    }
    // Outside the certificate, every change is refused by both.
    assert!(
        refused >= 2 * (good.len() - client.cert.len()),
        "{refused} refused"
    );
}
