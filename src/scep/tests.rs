//! Codec tests: recorded messages from real clients, round trips with a software client, and
//! bad input.

use openssl::pkey::PKey;

use super::client::{read_reply, ClientRequest, SoftKey};
use super::*;

pub(super) fn vector(path: &str) -> Vec<u8> {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/scep/").to_string() + path;
    let raw = std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    if raw.starts_with(b"-----") || path.ends_with(".b64") || path.ends_with(".pem") {
        use base64::Engine;
        let text = String::from_utf8(raw).unwrap();
        let b64: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
            .split_whitespace()
            .collect();
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
    }
    if path.ends_with(".pkcs7") && raw[0] != 0x30 {
        use base64::Engine;
        let s: String = String::from_utf8(raw).unwrap().split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    }
    raw
}

/// (file, messageType, transactionID prefix, digest)
pub(super) const REQUESTS: &[(&str, MessageType, &str, DigestAlg)] = &[
    (
        "micromdm-scep/PKCSReq.der",
        MessageType::PkcsReq,
        "",
        DigestAlg::Sha1,
    ),
    (
        "jscep-samples-cryptlib/scep_req2.der",
        MessageType::PkcsReq,
        "7XXEY-ERLPU-2JDR9",
        DigestAlg::Sha256,
    ),
    (
        "jscep-mvnlog-2012/jscep_PKCSReq_19.ber",
        MessageType::PkcsReq,
        "",
        DigestAlg::Sha1,
    ),
    (
        "jscep-mvnlog-2012/jscep_CertPoll_20.ber",
        MessageType::CertPoll,
        "",
        DigestAlg::Sha1,
    ),
    (
        "jscep-mvnlog-2012/jscep_GetCert_21.ber",
        MessageType::GetCert,
        "17",
        DigestAlg::Sha1,
    ),
    (
        "jscep-mvnlog-2012/jscep_GetCRL_22.ber",
        MessageType::GetCrl,
        "16",
        DigestAlg::Sha1,
    ),
    (
        "rustcrypto-formats/scep_der.bin",
        MessageType::PkcsReq,
        "",
        DigestAlg::Sha256,
    ),
    (
        "smallstep-pkcs7/windows_pkcsreq.der",
        MessageType::PkcsReq,
        "",
        DigestAlg::Sha1,
    ),
    (
        "go-smime/ios_pkcsreq_ber_2016.ber",
        MessageType::PkcsReq,
        "",
        DigestAlg::Sha256,
    ),
    (
        "ruby-openssl/ruby_ios_pkcsreq_2012.pem",
        MessageType::PkcsReq,
        "",
        DigestAlg::Sha1,
    ),
    (
        "onelogin-scep-gem/sample-scep-request.pkcs7",
        MessageType::PkcsReq,
        "",
        DigestAlg::Sha1,
    ),
];

#[test]
fn recorded_requests_parse_and_their_signatures_verify() {
    for (file, mt, tid, digest) in REQUESTS {
        let msg = PkiMessage::parse(&vector(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(msg.message_type, *mt, "{file}");
        assert!(
            msg.transaction_id.0.starts_with(tid),
            "{file}: {}",
            msg.transaction_id
        );
        assert_eq!(msg.digest, *digest, "{file}");
        msg.verify_signature()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let env = msg
            .envelope()
            .unwrap_or_else(|e| panic!("{file}: envelope: {e}"));
        assert!(!env.ciphertext.is_empty(), "{file}");
        assert!(env.cipher.is_ok(), "{file}: {:?}", env.cipher);
    }
}

#[test]
fn certmonger_signers_with_long_serials_parse_and_verify() {
    for file in [
        "certmonger/pkcsreq_sha256_32octet_signer_serial.der",
        "certmonger/pkcsreq_sha1_21octet_signer_serial.der",
        "certmonger/pkcsreq_rekey_signed_by_issued_cert.der",
    ] {
        let msg = PkiMessage::parse(&vector(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(msg.message_type, MessageType::PkcsReq);
        msg.verify_signature()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        msg.envelope().unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let msg = PkiMessage::parse(&vector(
        "certmonger/pkcsreq_sha256_32octet_signer_serial.der",
    ))
    .unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&msg.signer_cert).unwrap();
    assert_eq!(c.tbs_certificate.raw_serial().len(), 32);
    // The reply can be sealed to such a certificate, and the holder can open it.
    let long = party_with_serial("certmonger-like", &[0x9c; 32]);
    let sealed = seal(b"reply", &long.cert, ContentCipher::Aes256Cbc).unwrap();
    let env = Envelope::parse(&sealed).unwrap();
    assert_eq!(
        env.open(&SoftKey(long.key.clone()), &long.cert, false)
            .unwrap(),
        b"reply"
    );
    // And OpenSSL reads the envelope as well.
    openssl::pkcs7::Pkcs7::from_der(&sealed).unwrap();
}

#[test]
fn macos_request_decrypts_with_the_test_ca_key() {
    let msg = PkiMessage::parse(&vector("micromdm-scep/PKCSReq.der")).unwrap();
    // macOS: 8-byte senderNonce, 40 upper-case hex transactionID.
    assert_eq!(msg.sender_nonce.0.len(), 8);
    assert_eq!(msg.transaction_id.0.len(), 40);
    let env = msg.envelope().unwrap();
    assert_eq!(env.cipher, Ok(ContentCipher::Des3Cbc));
    assert_eq!(env.recipients[0].transport, KeyTransport::RsaPkcs1v15);
    let ca = vector("micromdm-scep/testca/ca.crt");
    let ca = openssl::x509::X509::from_der(&ca)
        .unwrap()
        .to_der()
        .unwrap();
    assert!(env.recipient_for(&ca).is_some());
    let key_pem = vector("micromdm-scep/derived/ca.key.unencrypted.pkcs8.pem");
    let key = PKey::private_key_from_der(&key_pem).unwrap();
    let csr = env.open(&SoftKey(key), &ca, false).unwrap();
    assert_eq!(csr, vector("micromdm-scep/derived/PKCSReq.csr.der"));
}

#[test]
fn cryptlib_request_content_is_the_recorded_envelope() {
    let msg = PkiMessage::parse(&vector("jscep-samples-cryptlib/scep_req2.der")).unwrap();
    assert_eq!(msg.content, vector("jscep-samples-cryptlib/scep_req1.der"));
    assert_eq!(msg.sender_nonce.0.len(), 16);
}

#[test]
fn windows_request_uses_oaep_with_sha1_defaults() {
    let msg = PkiMessage::parse(&vector("smallstep-pkcs7/windows_pkcsreq.der")).unwrap();
    let env = msg.envelope().unwrap();
    assert_eq!(
        env.recipients[0].transport,
        KeyTransport::RsaOaep(DigestAlg::Sha1)
    );
    assert_eq!(env.cipher, Ok(ContentCipher::Aes128Cbc));
}

#[test]
fn chunked_ber_ciphertext_equals_its_der_reencoding() {
    let msg = PkiMessage::parse(&vector("ruby-openssl/ruby_ios_pkcsreq_2012.pem")).unwrap();
    let ber = msg.envelope().unwrap();
    let der = Envelope::parse(&vector(
        "ruby-openssl/ruby_ios_pkcsreq_2012_inner_envelope_reencoded.pem",
    ))
    .unwrap();
    assert_eq!(ber.ciphertext.len(), 536);
    assert_eq!(ber.ciphertext, der.ciphertext);
    assert_eq!(
        ber.recipients[0].encrypted_key,
        der.recipients[0].encrypted_key
    );
    assert_eq!(ber.iv, der.iv);
}

#[test]
fn recorded_server_replies_parse() {
    // NDES: no certificates in the SignedData; the RA certificate comes from GetCACert.
    let ndes = PkiMessage::parse(&vector(
        "micromdm-scep/testca2/CertRep_NoCertificatesForSigners.der",
    ));
    assert!(
        ndes.is_err(),
        "a message without its signer certificate cannot be checked"
    );
    for file in [
        "micromdm-scep/CertRep.der",
        "jscep-samples-cryptlib/scep_resp2.der",
    ] {
        let msg = PkiMessage::parse(&vector(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(msg.message_type, MessageType::CertRep);
        msg.verify_signature()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(msg.attr_text(asn1::oid::PKI_STATUS).as_deref(), Some("0"));
    }
    let (certs, _) =
        client::read_degenerate(&vector("jscep-samples-cryptlib/scep_resp0.der")).unwrap();
    assert_eq!(certs.len(), 1);
}

// ---- round trips with a software client and a software RA ----

pub(super) struct Party {
    pub(super) key: PKey<openssl::pkey::Private>,
    pub(super) cert: Vec<u8>,
}

pub(super) fn party(cn: &str, bits: u32) -> Party {
    party_with_serial_bits(cn, bits, &[7])
}

fn party_with_serial(cn: &str, serial: &[u8]) -> Party {
    party_with_serial_bits(cn, 2048, serial)
}

fn party_with_serial_bits(cn: &str, bits: u32, serial: &[u8]) -> Party {
    use openssl::asn1::Asn1Time;
    use openssl::x509::{X509NameBuilder, X509};
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(bits).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = openssl::bn::BigNum::from_slice(serial)
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    b.sign(&key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    Party {
        cert: b.build().to_der().unwrap(),
        key,
    }
}

pub(super) fn request(
    client: &Party,
    ra: &Party,
    cipher: ContentCipher,
    digest: DigestAlg,
    content: &[u8],
) -> Vec<u8> {
    ClientRequest {
        message_type: MessageType::PkcsReq,
        transaction_id: TransactionId("tx-1".into()),
        sender_nonce: Nonce(vec![5; 16]),
        content,
        recipient_cert: &ra.cert,
        cipher,
        digest,
        signer_cert: &client.cert,
        signer_key: &client.key,
    }
    .build()
    .unwrap()
}

#[test]
fn request_round_trip_every_cipher_and_digest() {
    let (client, ra) = (party("device", 2048), party("ra", 2048));
    for cipher in [
        ContentCipher::Aes128Cbc,
        ContentCipher::Aes192Cbc,
        ContentCipher::Aes256Cbc,
        ContentCipher::Des3Cbc,
    ] {
        for digest in [
            DigestAlg::Sha1,
            DigestAlg::Sha256,
            DigestAlg::Sha384,
            DigestAlg::Sha512,
        ] {
            let bytes = request(&client, &ra, cipher, digest, b"csr bytes");
            let msg = PkiMessage::parse(&bytes).unwrap();
            msg.verify_signature().unwrap();
            assert_eq!(msg.digest, digest);
            let env = msg.envelope().unwrap();
            assert!(env.recipient_for(&ra.cert).is_some());
            assert!(env.recipient_for(&client.cert).is_none());
            assert_eq!(
                env.open(&SoftKey(ra.key.clone()), &ra.cert, false).unwrap(),
                b"csr bytes"
            );
        }
    }
    // Single DES only with the legacy switch.
    let des = request(&client, &ra, ContentCipher::DesCbc, DigestAlg::Sha256, b"x");
    let env = PkiMessage::parse(&des).unwrap().envelope().unwrap();
    assert!(matches!(
        env.open(&SoftKey(ra.key.clone()), &ra.cert, false),
        Err(ScepError::UnsupportedAlgorithm(_))
    ));
    assert_eq!(
        env.open(&SoftKey(ra.key.clone()), &ra.cert, true).unwrap(),
        b"x"
    );
}

/// The SignedData in a ContentInfo, read with the typed CMS structures.
fn typed_signed_data(bytes: &[u8]) -> cms::signed_data::SignedData {
    use der::Decode;
    let ci = cms::content_info::ContentInfo::from_der(bytes).unwrap();
    ci.content.decode_as().unwrap()
}

/// `bytes` is canonical DER: the typed CMS structures decode it and encode it again byte for
/// byte (lengths minimal, SETs sorted). One correction to that oracle: the `cms` crate orders
/// a certificate set by its own comparison (it compares each certificate's encoding as a
/// SEQUENCE OF INTEGER, so the order follows how many bytes are over 0x7f), not as octet
/// strings as X.690 §11.6 asks; its certificate run is put in octet order before comparing.
fn assert_canonical_signed_data(bytes: &[u8]) {
    use der::{Decode, Encode};
    let ci = cms::content_info::ContentInfo::from_der(bytes).unwrap();
    let sd: cms::signed_data::SignedData = ci.content.decode_as().unwrap();
    let mut certs: Vec<Vec<u8>> = sd
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .map(|c| c.to_der().unwrap())
        .collect();
    let crate_order = certs.concat();
    certs.sort();
    let octet_order = certs.concat();
    let mut expected = cms::content_info::ContentInfo {
        content_type: ci.content_type,
        content: der::asn1::Any::encode_from(&sd).unwrap(),
    }
    .to_der()
    .unwrap();
    if !crate_order.is_empty() {
        let at = expected
            .windows(crate_order.len())
            .position(|w| w == crate_order.as_slice())
            .unwrap();
        expected[at..at + crate_order.len()].copy_from_slice(&octet_order);
    }
    assert_eq!(expected, bytes);
}

#[test]
fn cert_rep_round_trip_and_openssl_agrees() {
    let (client, ra) = (party("device", 2048), party("ra", 2048));
    let issued = party("issued", 2048).cert;
    let chain = [party("ca", 2048).cert, party("root", 2048).cert];
    let tid = TransactionId("ABC123".into());
    let nonce = Nonce(vec![9; 16]);
    for outcome in [
        Outcome::Success {
            certs: vec![issued.clone()],
            crls: vec![],
        },
        Outcome::Pending,
        Outcome::Failure {
            info: FailInfo::BadRequest,
            text: "challenge password is wrong".into(),
        },
    ] {
        let bytes = CertRep {
            transaction_id: &tid,
            recipient_nonce: &nonce,
            outcome: outcome.clone(),
            requester_cert: &client.cert,
            cipher: ContentCipher::Aes128Cbc,
            digest: DigestAlg::Sha256,
            ra_cert: &ra.cert,
            extra_certs: &chain,
        }
        .build(&SoftKey(ra.key.clone()))
        .unwrap();
        // Canonical DER, as the typed CMS structures write it: decoded and encoded again
        // (SETs sorted, lengths minimal), the same bytes.
        assert_eq!(typed_signed_data(&bytes).certificates.unwrap().0.len(), 3);
        assert_canonical_signed_data(&bytes);
        let reply = read_reply(&bytes, &client.cert, &client.key).unwrap();
        assert_eq!(reply.transaction_id, tid);
        assert_eq!(reply.recipient_nonce, nonce);
        assert_eq!(reply.sender_nonce.0.len(), 16);
        assert_ne!(reply.sender_nonce, nonce, "senderNonce must be fresh");
        assert_eq!(reply.signer_cert, ra.cert);
        match outcome {
            Outcome::Success { .. } => {
                assert_eq!(reply.status, PkiStatus::Success);
                assert_eq!(reply.certs, vec![issued.clone()]);
            }
            Outcome::Pending => assert_eq!(reply.status, PkiStatus::Pending),
            Outcome::Failure { .. } => {
                assert_eq!(reply.status, PkiStatus::Failure);
                assert_eq!(reply.fail_info, Some(FailInfo::BadRequest));
                assert_eq!(
                    reply.fail_text.as_deref(),
                    Some("challenge password is wrong")
                );
            }
        }
        // OpenSSL, as an independent oracle, verifies the RA's signature.
        let p7 = openssl::pkcs7::Pkcs7::from_der(&bytes).unwrap();
        let store = openssl::x509::store::X509StoreBuilder::new()
            .unwrap()
            .build();
        let certs = openssl::stack::Stack::new().unwrap();
        p7.verify(
            &certs,
            &store,
            None,
            None,
            openssl::pkcs7::Pkcs7Flags::NOVERIFY,
        )
        .unwrap();
    }
}

/// A signed configuration profile is larger than 64 KiB when it carries a Wi-Fi payload and a
/// long chain: lengths in three octets, and the same canonical DER as the typed structures.
#[test]
fn large_signed_content_is_canonical_der_and_verifies() {
    let signer = party("profile signer", 2048);
    let chain = vec![signer.cert.clone(), party("ca", 2048).cert];
    let content = vec![b'p'; 70_000];
    let key = SoftKey(signer.key.clone());
    let bytes = signed_content(content.clone(), &chain, &|data| {
        key.sign(DigestAlg::Sha256, data)
    })
    .unwrap();
    let sd = typed_signed_data(&bytes);
    assert_eq!(sd.version, cms::content_info::CmsVersion::V1);
    assert_eq!(
        sd.signer_infos.0.get(0).unwrap().version,
        cms::content_info::CmsVersion::V1
    );
    assert_canonical_signed_data(&bytes);
    let p7 = openssl::pkcs7::Pkcs7::from_der(&bytes).unwrap();
    let store = openssl::x509::store::X509StoreBuilder::new()
        .unwrap()
        .build();
    let mut out = Vec::new();
    p7.verify(
        &openssl::stack::Stack::new().unwrap(),
        &store,
        None,
        Some(&mut out),
        openssl::pkcs7::Pkcs7Flags::NOVERIFY,
    )
    .unwrap();
    assert_eq!(out, content);
}

#[test]
fn degenerate_signed_data_reads_back_in_openssl() {
    let a = party("a", 2048).cert;
    let b = party("b", 2048).cert;
    for order in [[a.clone(), b.clone()], [b.clone(), a.clone()]] {
        let bytes = degenerate(&order, &[]).unwrap();
        let p7 = openssl::pkcs7::Pkcs7::from_der(&bytes).unwrap();
        let certs = p7.signed().unwrap().certificates().unwrap();
        assert_eq!(certs.len(), 2);
        // The order given is kept (clients take the first certificate as theirs).
        assert_eq!(certs.get(0).unwrap().to_der().unwrap(), order[0]);
        let (read, crls) = client::read_degenerate(&bytes).unwrap();
        assert_eq!(read, order.to_vec());
        assert!(crls.is_empty());
    }
    assert!(degenerate(&[b"not a certificate".to_vec()], &[]).is_err());
}

// ---- bad input ----

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let (client, ra) = (party("device", 2048), party("ra", 2048));
    let good = request(
        &client,
        &ra,
        ContentCipher::Aes128Cbc,
        DigestAlg::Sha256,
        b"csr",
    );
    assert!(PkiMessage::parse(&[]).is_err());
    assert!(PkiMessage::parse(b"not DER at all").is_err());
    for cut in [1, 10, good.len() / 2, good.len() - 1] {
        assert!(
            PkiMessage::parse(&good[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    // A flipped bit in the signature: parses, but does not verify.
    let mut bad_sig = good.clone();
    let n = bad_sig.len();
    bad_sig[n - 10] ^= 0x01;
    let msg = PkiMessage::parse(&bad_sig).unwrap();
    assert!(matches!(
        msg.verify_signature(),
        Err(ScepError::BadSignature(_))
    ));
    // Encrypted to someone else: the RA key cannot open it.
    let other = party("other-ra", 2048);
    let msg = PkiMessage::parse(&request(
        &client,
        &other,
        ContentCipher::Aes128Cbc,
        DigestAlg::Sha256,
        b"x",
    ))
    .unwrap();
    let env = msg.envelope().unwrap();
    assert!(env.recipient_for(&ra.cert).is_none());
    assert!(env.open(&SoftKey(ra.key.clone()), &ra.cert, false).is_err());
    // Even with the other RA's certificate named, our key cannot open it.
    assert!(env
        .open(&SoftKey(ra.key.clone()), &other.cert, false)
        .is_err());
}

#[test]
fn unknown_message_type_is_named() {
    let (client, ra) = (party("device", 2048), party("ra", 2048));
    let bytes = ClientRequest {
        message_type: MessageType::CertRep,
        transaction_id: TransactionId("t".into()),
        sender_nonce: Nonce(vec![1; 16]),
        content: b"x",
        recipient_cert: &ra.cert,
        cipher: ContentCipher::Aes128Cbc,
        digest: DigestAlg::Sha256,
        signer_cert: &client.cert,
        signer_key: &client.key,
    }
    .build()
    .unwrap();
    // A CertRep sent to the server parses (it is a valid pkiMessage): the RA refuses it by type.
    assert_eq!(
        PkiMessage::parse(&bytes).unwrap().message_type,
        MessageType::CertRep
    );
    assert_eq!(MessageType::from_text("99"), None);
    assert_eq!(MessageType::from_text("18"), Some(MessageType::UpdateReq));
}

mod fuzz {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The parser never panics on arbitrary bytes.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = super::PkiMessage::parse(&bytes);
            let _ = super::Envelope::parse(&bytes);
        }

        /// Nor on a real message with bytes mutated.
        #[test]
        fn mutated_real_message(idx in 0usize..1400, val in any::<u8>(), cut in 0usize..1500) {
            let mut m = super::vector("micromdm-scep/PKCSReq.der");
            let i = idx % m.len();
            m[i] = val;
            m.truncate(cut.max(1).min(m.len()));
            if let Ok(msg) = super::PkiMessage::parse(&m) {
                let _ = msg.verify_signature();
                let _ = msg.envelope();
            }
        }
    }
}

/// The innermost error under `e` that is not a sentence of Sigil's own (`Reason` or a Sigil
/// error type), if any.
fn library_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut at = e.source();
    let mut found = None;
    while let Some(c) = at {
        if c.downcast_ref::<crate::reason::Reason>().is_none()
            && c.downcast_ref::<ScepError>().is_none()
        {
            found = Some(format!("{c:?}"));
        }
        at = c.source();
    }
    found
}

#[test]
fn unreadable_input_keeps_the_decoders_error_as_its_cause() {
    // Not SignedData at all: both readers refuse, and the library's own error stays under
    // the sentence (an operator's log and a caller's downcast see it), not only its text.
    let e = PkiMessage::parse(&[0x30, 0x03, 0x02, 0x01, 0x05]).unwrap_err();
    assert!(matches!(e, ScepError::Malformed(_)), "{e:?}");
    assert!(library_cause(&e).is_some(), "no cause under {e:?}");
    // A truncated recorded request.
    let full = vector("micromdm-scep/PKCSReq.der");
    let e = PkiMessage::parse(&full[..full.len() / 2]).unwrap_err();
    assert!(library_cause(&e).is_some(), "no cause under {e:?}");
    // The typed reader of a SCEP structure.
    let e = asn1::from_ber::<der::asn1::OctetString>(&[0x04, 0x05, 0x01], "the test's octets")
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("malformed message: the test's octets: "),
        "{e}"
    );
    let cause = library_cause(&e).expect("der's error kept");
    assert!(cause.contains("Error") || cause.contains("kind"), "{cause}");
}
