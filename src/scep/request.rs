//! Reading a pkiMessage: the SignedData around the pkcsPKIEnvelope, its SCEP attributes, the
//! requester's certificate, and the check of the requester's signature.
//!
//! BER (indefinite lengths, constructed OCTET STRINGs) is read as well as DER. The signature is
//! checked over the DER encoding of the signed attributes, and the messageDigest attribute
//! against the content, as RFC 5652 §5.4 requires.

use cms::content_info::ContentInfo;
use der::asn1::Any;
use der::asn1::ObjectIdentifier as Oid;
use der::{Encode, Tagged};
use openssl::pkey::{Id, PKey, Public};
use openssl::x509::X509;

use super::asn1::{self, find_attr, oid, DigestAlg};

use super::envelope::Envelope;
use super::types::{MessageType, Nonce, TransactionId};
use super::ScepError;

/// A parsed (not yet verified) pkiMessage.
#[derive(Debug, Clone)]
pub struct PkiMessage {
    /// messageType.
    pub message_type: MessageType,
    /// transactionID.
    pub transaction_id: TransactionId,
    /// senderNonce (empty when the client sent none).
    pub sender_nonce: Nonce,
    /// The requester's certificate that signed the message (DER).
    pub signer_cert: Vec<u8>,
    /// The digest algorithm of the signature.
    pub digest: DigestAlg,
    /// The pkcsPKIEnvelope bytes (may be empty).
    pub content: Vec<u8>,
    attrs: Vec<x509_cert::attr::Attribute>,
    raw: Vec<u8>,
    signature_alg: Oid,
}

/// A certificate's public key for OpenSSL. RSA keys are read straight from the
/// SubjectPublicKeyInfo (PKCS#1): OpenSSL 3's generic decoders (`X509::from_der`, `d2i_PUBKEY`)
/// cost more than everything else Sigil does with a request besides the token's work. Other
/// key types go through the certificate.
pub fn certificate_public_key(cert_der: &[u8]) -> Result<PKey<Public>, ScepError> {
    const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
    if let Ok((_, c)) = x509_parser::parse_x509_certificate(cert_der) {
        let spki = c.public_key();
        if spki.algorithm.algorithm.to_id_string() == RSA_ENCRYPTION {
            if let Ok(k) =
                openssl::rsa::Rsa::public_key_from_der_pkcs1(&spki.subject_public_key.data)
                    .and_then(PKey::from_rsa)
            {
                return Ok(k);
            }
        }
    }
    X509::from_der(cert_der)
        .and_then(|c| c.public_key())
        .map_err(|e| ScepError::Malformed(format!("signer certificate: {e}")))
}

/// SHA-256 (hex) of a certificate's SubjectPublicKeyInfo, read without OpenSSL.
pub fn spki_sha256(cert_der: &[u8]) -> Option<String> {
    use sha2::Digest;
    let (_, c) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(hex::encode(sha2::Sha256::digest(c.public_key().raw)))
}

fn parse_p7(bytes: &[u8]) -> Result<openssl::pkcs7::Pkcs7, ScepError> {
    openssl::pkcs7::Pkcs7::from_der(bytes)
        .map_err(|e| ScepError::Malformed(format!("SignedData (OpenSSL): {e}")))
}

/// The certificate OpenSSL finds for the (single) signerInfo, as DER.
fn openssl_signer(p7: &openssl::pkcs7::Pkcs7Ref) -> Result<Vec<u8>, ScepError> {
    let none = openssl::stack::Stack::new().map_err(|e| ScepError::Crypto(e.to_string()))?;
    let signers = p7
        .signers(&none, openssl::pkcs7::Pkcs7Flags::empty())
        .map_err(|_| malformed("the signer's certificate is not in the message"))?;
    if signers.len() != 1 {
        return Err(malformed("a pkiMessage has exactly one signer"));
    }
    signers
        .get(0)
        .and_then(|c| c.to_der().ok())
        .ok_or_else(|| malformed("the signer's certificate is not in the message"))
}

/// The eContent of a SignedData, read by OpenSSL (which reads BER, constructed OCTET STRINGs
/// included). With `verify`, OpenSSL also checks the signer's signature and the messageDigest
/// attribute, using the signer certificate in the message and no chain.
fn openssl_content(p7: &openssl::pkcs7::Pkcs7Ref, verify: bool) -> Result<Vec<u8>, ScepError> {
    use openssl::pkcs7::Pkcs7Flags;
    let store = openssl::x509::store::X509StoreBuilder::new()
        .map_err(|e| ScepError::Crypto(e.to_string()))?
        .build();
    let certs = openssl::stack::Stack::new().map_err(|e| ScepError::Crypto(e.to_string()))?;
    let mut flags = Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY;
    if !verify {
        flags |= Pkcs7Flags::NOSIGS;
    }
    let mut out = Vec::new();
    p7.verify(&certs, &store, None, Some(&mut out), flags)
        .map_err(|e| {
            if verify {
                ScepError::BadSignature(format!("the requester's signature does not verify ({e})"))
            } else {
                ScepError::Malformed(format!("SignedData content: {e}"))
            }
        })?;
    Ok(out)
}

fn malformed(what: &str) -> ScepError {
    ScepError::Malformed(what.into())
}

/// What the server needs from a SignerInfo, read leniently (a signer certificate's serial may
/// be longer than RFC 5280's 20 octets: certmonger makes 32-octet ones).
struct SignerParts {
    digest_alg: Oid,
    attrs: Vec<x509_cert::attr::Attribute>,
    signature_alg: Oid,
}

fn signer_parts(si: &Any) -> Result<SignerParts, ScepError> {
    let f = asn1::children(si.value())?;
    if f.len() < 5 {
        return Err(malformed("signerInfo is too short"));
    }
    let alg_oid = |a: &Any| -> Result<Oid, ScepError> {
        let parts = asn1::children(a.value())?;
        parts
            .first()
            .and_then(|o| o.decode_as::<Oid>().ok())
            .ok_or_else(|| malformed("bad AlgorithmIdentifier"))
    };
    let digest_alg = alg_oid(&f[2])?;
    let signed = f
        .iter()
        .find(|a| a.tag().is_context_specific() && a.tag().number().value() == 0)
        .ok_or_else(|| malformed("signerInfo has no signed attributes"))?;
    let mut attrs = Vec::new();
    for a in asn1::children(signed.value())? {
        let der = a.to_der().map_err(ScepError::encode)?;
        attrs.push(asn1::from_ber::<x509_cert::attr::Attribute>(
            &der,
            "signed attribute",
        )?);
    }
    let sig_alg_pos = f
        .iter()
        .position(|a| a.tag().is_context_specific() && a.tag().number().value() == 0)
        .map(|p| p + 1)
        .unwrap_or(3);
    let signature_alg = alg_oid(
        f.get(sig_alg_pos)
            .ok_or_else(|| malformed("no signatureAlgorithm"))?,
    )?;
    Ok(SignerParts {
        digest_alg,
        attrs,
        signature_alg,
    })
}

impl PkiMessage {
    /// Parse a pkiMessage (DER or BER). Fails when it is not a SignedData with one signer, the
    /// signer's certificate, and the SCEP attributes messageType and transactionID.
    pub fn parse(bytes: &[u8]) -> Result<PkiMessage, ScepError> {
        if bytes.is_empty() {
            return Err(ScepError::Malformed("empty message".into()));
        }
        let ci: ContentInfo = asn1::from_ber(bytes, "pkiMessage ContentInfo")?;
        if ci.content_type != oid::SIGNED_DATA {
            return Err(ScepError::Malformed(format!(
                "pkiMessage content type is {}, not signedData",
                ci.content_type
            )));
        }
        let sd = asn1::children(ci.content.value())?;
        // version, digestAlgorithms, encapContentInfo, [0] certificates?, [1] crls?, signerInfos
        if sd.len() < 4 {
            return Err(malformed("SignedData is too short"));
        }
        let econtent_present = asn1::children(sd[2].value())?.len() > 1;
        let certs: Vec<Vec<u8>> = match sd
            .iter()
            .find(|a| a.tag().is_context_specific() && a.tag().number().value() == 0)
        {
            Some(set) => asn1::children(set.value())?
                .iter()
                .map(|c| c.to_der().map_err(ScepError::encode))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let signer_infos = sd.last().ok_or_else(|| malformed("no signerInfos"))?;
        let mut infos = asn1::children(signer_infos.value())?.into_iter();
        let first = infos
            .next()
            .ok_or_else(|| malformed("SignedData has no signerInfo"))?;
        if infos.next().is_some() {
            return Err(malformed("a pkiMessage has exactly one signerInfo"));
        }
        let signer = signer_parts(&first)?;
        // The signer certificate is the one OpenSSL will verify the signature with (it matches
        // issuer names canonically), so what is verified and what is acted on cannot differ.
        let p7 = parse_p7(bytes)?;
        let signer_cert = openssl_signer(&p7)?;
        if !certs.contains(&signer_cert) {
            return Err(malformed("the signer's certificate is not in the message"));
        }
        let attr_list = signer.attrs;
        let text = |o: Oid, name: &str| -> Result<String, ScepError> {
            let v = find_attr(&attr_list, o)
                .ok_or_else(|| ScepError::Malformed(format!("{name} attribute missing")))?;
            asn1::any_to_string(v)
                .ok_or_else(|| ScepError::Malformed(format!("{name} is not a string")))
        };
        let mt_text = text(oid::MESSAGE_TYPE, "messageType")?;
        let message_type =
            MessageType::from_text(&mt_text).ok_or(ScepError::UnknownMessageType(mt_text))?;
        let transaction_id = TransactionId(text(oid::TRANSACTION_ID, "transactionID")?);
        if transaction_id.0.is_empty() || transaction_id.0.len() > 256 {
            return Err(ScepError::Malformed(
                "transactionID is empty or too long".into(),
            ));
        }
        let sender_nonce = find_attr(&attr_list, oid::SENDER_NONCE)
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        if find_attr(&attr_list, oid::MESSAGE_DIGEST).is_none() {
            return Err(ScepError::Malformed(
                "messageDigest attribute missing".into(),
            ));
        }
        let digest = DigestAlg::from_oid(&signer.digest_alg).ok_or_else(|| {
            ScepError::UnsupportedAlgorithm(format!("digest {}", signer.digest_alg))
        })?;
        let content = if econtent_present {
            openssl_content(&p7, false)?
        } else {
            Vec::new()
        };
        Ok(PkiMessage {
            message_type,
            transaction_id,
            sender_nonce: Nonce(sender_nonce),
            signer_cert,
            digest,
            content,
            attrs: attr_list.clone(),
            raw: bytes.to_vec(),
            signature_alg: signer.signature_alg,
        })
    }

    /// A signed attribute's value as text (any string type), if present.
    pub fn attr_text(&self, which: Oid) -> Option<String> {
        find_attr(&self.attrs, which).and_then(asn1::any_to_string)
    }

    /// A signed attribute's raw value bytes (OCTET STRING contents), if present.
    pub fn attr_bytes(&self, which: Oid) -> Option<Vec<u8>> {
        find_attr(&self.attrs, which).map(|v| v.value().to_vec())
    }

    /// The signer certificate's public key.
    pub fn signer_public_key(&self) -> Result<PKey<Public>, ScepError> {
        certificate_public_key(&self.signer_cert)
    }

    /// Check the requester's signature and the messageDigest attribute.
    pub fn verify_signature(&self) -> Result<(), ScepError> {
        let key = self.signer_public_key()?;
        let fits = match self.signature_alg {
            oid::RSA_ENCRYPTION
            | oid::SHA1_WITH_RSA
            | oid::SHA256_WITH_RSA
            | oid::SHA384_WITH_RSA
            | oid::SHA512_WITH_RSA => key.id() == Id::RSA,
            oid::ECDSA_SHA256 | oid::ECDSA_SHA384 | oid::ECDSA_SHA512 => key.id() == Id::EC,
            other => {
                return Err(ScepError::UnsupportedAlgorithm(format!(
                    "signature algorithm {other}"
                )))
            }
        };
        if !fits {
            return Err(ScepError::BadSignature(
                "the signature algorithm does not fit the signer's key".into(),
            ));
        }
        // One more parse of the same bytes: OpenSSL verifies with the signer it found at
        // parse time (same bytes, same signer), so what is verified is what is acted on.
        let p7 = parse_p7(&self.raw)?;
        let verified = openssl_content(&p7, true)?;
        if verified != self.content {
            return Err(ScepError::BadSignature("the signed content changed".into()));
        }
        Ok(())
    }

    /// Parse the pkcsPKIEnvelope.
    pub fn envelope(&self) -> Result<Envelope, ScepError> {
        if self.content.is_empty() {
            return Err(ScepError::Malformed(
                "the message carries no envelope".into(),
            ));
        }
        Envelope::parse(&self.content)
    }
}
