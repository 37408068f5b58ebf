//! Reading a pkiMessage: the SignedData around the pkcsPKIEnvelope, its SCEP attributes, the
//! requester's certificate, and the check of the requester's signature.
//!
//! BER (indefinite lengths, constructed OCTET STRINGs) is read as well as DER. The signature is
//! checked over the DER encoding of the signed attributes, and the messageDigest attribute
//! against the content, as RFC 5652 §5.4 requires.
//!
//! Two readers give the same answers: a DER message with its signer named by issuer and serial
//! (what clients send) is read and checked here with `der`; anything else goes through
//! OpenSSL's PKCS#7 reader, which is much slower. The codec tests hold them to the same
//! verdicts on every recorded message.

use cms::content_info::ContentInfo;
use der::asn1::Any;
use der::asn1::ObjectIdentifier as Oid;
use der::{Decode, Encode, Tagged};
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
    /// Set when the message was read without OpenSSL (see [`Direct`]).
    direct: Option<Direct>,
}

/// What checking the signature needs, when the message could be read without OpenSSL: DER
/// signed attributes, a signer found by the exact bytes of its issuer and serial, a primitive
/// eContent. Anything else (BER, a subjectKeyIdentifier, two candidate signers) goes through
/// OpenSSL's PKCS#7 reader, which costs more than the rest of the request's non-token work.
#[derive(Debug, Clone)]
struct Direct {
    /// The signed attributes as signed: DER, tagged SET OF.
    signed_attrs: Vec<u8>,
    /// The signature value.
    signature: Vec<u8>,
}

/// A certificate's public key for OpenSSL. RSA keys are read straight from the
/// SubjectPublicKeyInfo (PKCS#1): OpenSSL 3's generic decoders (`X509::from_der`, `d2i_PUBKEY`)
/// cost more than everything else Sigil does with a request besides the token's work. Other
/// key types go through the certificate.
pub fn certificate_public_key(cert_der: &[u8]) -> Result<PKey<Public>, ScepError> {
    if let Ok((_, c)) = x509_parser::parse_x509_certificate(cert_der) {
        if let Some(k) = rsa_public_key(c.public_key()).and_then(|r| PKey::from_rsa(r).ok()) {
            return Ok(k);
        }
    }
    X509::from_der(cert_der)
        .and_then(|c| c.public_key())
        .map_err(|e| ScepError::Malformed(crate::reason::Reason::context("signer certificate", e)))
}

/// The RSA key of a SubjectPublicKeyInfo, read straight from its PKCS#1 bits (1 µs, against
/// hundreds for OpenSSL 3's generic decoder); `None` for another kind of key or bits that do
/// not read.
pub(crate) fn rsa_public_key(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Option<openssl::rsa::Rsa<Public>> {
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
        return None;
    }
    openssl::rsa::Rsa::public_key_from_der_pkcs1(&spki.subject_public_key.data).ok()
}

/// SHA-256 (hex) of a certificate's SubjectPublicKeyInfo, read without OpenSSL.
pub fn spki_sha256(cert_der: &[u8]) -> Option<String> {
    use sha2::Digest;
    let (_, c) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(hex::encode(sha2::Sha256::digest(c.public_key().raw)))
}

fn parse_p7(bytes: &[u8]) -> Result<openssl::pkcs7::Pkcs7, ScepError> {
    openssl::pkcs7::Pkcs7::from_der(bytes).map_err(|e| {
        ScepError::Malformed(crate::reason::Reason::context("SignedData (OpenSSL)", e))
    })
}

/// The certificate OpenSSL finds for the (single) signerInfo, as DER.
fn openssl_signer(p7: &openssl::pkcs7::Pkcs7Ref) -> Result<Vec<u8>, ScepError> {
    let none = openssl::stack::Stack::new()
        .map_err(|e| ScepError::Crypto(crate::reason::Reason::caused_by(e)))?;
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
        .map_err(|e| ScepError::Crypto(crate::reason::Reason::caused_by(e)))?
        .build();
    let certs = openssl::stack::Stack::new()
        .map_err(|e| ScepError::Crypto(crate::reason::Reason::caused_by(e)))?;
    let mut flags = Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY;
    if !verify {
        flags |= Pkcs7Flags::NOSIGS;
    }
    let mut out = Vec::new();
    p7.verify(&certs, &store, None, Some(&mut out), flags)
        .map_err(|e| {
            if verify {
                ScepError::BadSignature(crate::reason::Reason::context(
                    "the requester's signature does not verify",
                    e,
                ))
            } else {
                ScepError::Malformed(crate::reason::Reason::context("SignedData content", e))
            }
        })?;
    Ok(out)
}

/// The one certificate whose issuer Name and serial are byte for byte the signer's
/// issuerAndSerialNumber. None when the signer is named otherwise, or when no certificate or
/// more than one has that serial (then OpenSSL's canonical matching decides).
fn direct_signer(certs: &[Vec<u8>], issuer_serial: Option<&(Vec<u8>, Vec<u8>)>) -> Option<Vec<u8>> {
    let (issuer, serial) = issuer_serial?;
    let mut found = None;
    for c in certs {
        // A certificate that does not read here might be the one OpenSSL picks.
        let (_, x) = x509_parser::parse_x509_certificate(c).ok()?;
        if x.tbs_certificate.raw_serial() == serial.as_slice() {
            if found.is_some() {
                return None;
            }
            found = Some((c, x.issuer().as_raw() == issuer.as_slice()));
        }
    }
    match found {
        Some((c, true)) => Some(c.clone()),
        _ => None,
    }
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
    /// issuerAndSerialNumber as (issuer Name DER, serial INTEGER contents), when the signer
    /// is named that way.
    issuer_serial: Option<(Vec<u8>, Vec<u8>)>,
    /// The signed attributes re-tagged as SET OF, when they were sent in DER.
    signed_der: Option<Vec<u8>>,
    /// The signature, when it is a primitive OCTET STRING.
    signature: Option<Vec<u8>>,
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
    let mut reencoded = Vec::new();
    for a in asn1::children(signed.value())? {
        let der = a.to_der().map_err(ScepError::encode)?;
        let attr = asn1::from_ber::<x509_cert::attr::Attribute>(&der, "signed attribute")?;
        reencoded.extend(attr.to_der().map_err(ScepError::encode)?);
        attrs.push(attr);
    }
    // What is signed is the DER of the attributes in the order sent, tagged SET OF (RFC 5652
    // §5.4). When the bytes received are already exactly that, they can be checked as they
    // are.
    let signed_der = (signed.tag().is_constructed() && reencoded == signed.value())
        .then(|| {
            Any::new(der::Tag::Set, reencoded)
                .and_then(|a| a.to_der())
                .ok()
        })
        .flatten();
    let issuer_serial = (f[1].tag() == der::Tag::Sequence)
        .then(|| asn1::children(f[1].value()).ok())
        .flatten()
        .and_then(|p| match p.as_slice() {
            [issuer, serial] if serial.tag() == der::Tag::Integer => {
                Some((issuer.to_der().ok()?, serial.value().to_vec()))
            }
            _ => None,
        });
    let sig_alg_pos = f
        .iter()
        .position(|a| a.tag().is_context_specific() && a.tag().number().value() == 0)
        .map(|p| p + 1)
        .unwrap_or(3);
    let signature_alg = alg_oid(
        f.get(sig_alg_pos)
            .ok_or_else(|| malformed("no signatureAlgorithm"))?,
    )?;
    let signature = f
        .get(sig_alg_pos + 1)
        .filter(|a| a.tag() == der::Tag::OctetString)
        .map(|a| a.value().to_vec());
    Ok(SignerParts {
        digest_alg,
        attrs,
        signature_alg,
        issuer_serial,
        signed_der,
        signature,
    })
}

impl PkiMessage {
    /// Parse a pkiMessage (DER or BER). Fails when it is not a SignedData with one signer, the
    /// signer's certificate, and the SCEP attributes messageType and transactionID.
    pub fn parse(bytes: &[u8]) -> Result<PkiMessage, ScepError> {
        Self::parse_with(bytes, true)
    }

    /// As [`PkiMessage::parse`]; `direct` allows reading without OpenSSL when the message
    /// permits (tests compare both ways).
    fn parse_with(bytes: &[u8], direct: bool) -> Result<PkiMessage, ScepError> {
        if bytes.is_empty() {
            return Err(ScepError::Malformed("empty message".into()));
        }
        let ci: ContentInfo = asn1::from_ber(bytes, "pkiMessage ContentInfo")?;
        if ci.content_type != oid::SIGNED_DATA {
            return Err(ScepError::Malformed(
                format!(
                    "pkiMessage content type is {}, not signedData",
                    ci.content_type
                )
                .into(),
            ));
        }
        let sd = asn1::children(ci.content.value())?;
        // version, digestAlgorithms, encapContentInfo, [0] certificates?, [1] crls?, signerInfos
        if sd.len() < 4 {
            return Err(malformed("SignedData is too short"));
        }
        let encap = asn1::children(sd[2].value())?;
        let econtent_present = encap.len() > 1;
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
        // The eContent, when it is one primitive OCTET STRING ([0] EXPLICIT); strict DER, so a
        // constructed (chunked) one does not read here. Without eContent (a detached
        // signature) OpenSSL decides.
        let plain_content = match encap.as_slice() {
            [_, e]
                if e.tag().is_context_specific()
                    && e.tag().is_constructed()
                    && e.tag().number().value() == 0 =>
            {
                der::asn1::OctetString::from_der(e.value())
                    .ok()
                    .map(|o| o.as_bytes().to_vec())
            }
            _ => None,
        };
        // OpenSSL digests the content with each algorithm of digestAlgorithms and fails a
        // signer whose algorithm is not among them.
        let listed = asn1::children(sd[1].value())
            .map(|algs| {
                algs.iter().any(|a| {
                    asn1::children(a.value())
                        .ok()
                        .and_then(|p| p.first().and_then(|o| o.decode_as::<Oid>().ok()))
                        == Some(signer.digest_alg)
                })
            })
            .unwrap_or(false);
        // The direct reader takes only what decodes as CMS in strict DER, tags and lengths
        // included; anything looser is OpenSSL's to judge.
        let strict = direct
            && ContentInfo::from_der(bytes)
                .ok()
                .filter(|ci| ci.content_type == oid::SIGNED_DATA)
                .and_then(|ci| ci.content.decode_as::<cms::signed_data::SignedData>().ok())
                .is_some();
        let direct_signer = if strict && listed {
            direct_signer(&certs, signer.issuer_serial.as_ref())
        } else {
            None
        };
        let read = match (
            direct_signer,
            plain_content,
            signer.signed_der.clone(),
            signer.signature.clone(),
        ) {
            (Some(cert), Some(content), Some(signed_attrs), Some(signature)) => (
                cert,
                content,
                Some(Direct {
                    signed_attrs,
                    signature,
                }),
            ),
            _ => {
                // The signer certificate is the one OpenSSL will verify the signature with
                // (it matches issuer names canonically), so what is verified and what is
                // acted on cannot differ.
                let p7 = parse_p7(bytes)?;
                let cert = openssl_signer(&p7)?;
                if !certs.contains(&cert) {
                    return Err(malformed("the signer's certificate is not in the message"));
                }
                let content = if econtent_present {
                    openssl_content(&p7, false)?
                } else {
                    Vec::new()
                };
                (cert, content, None)
            }
        };
        let (signer_cert, content, direct) = read;
        let attr_list = signer.attrs;
        let text = |o: Oid, name: &str| -> Result<String, ScepError> {
            let v = find_attr(&attr_list, o)
                .ok_or_else(|| ScepError::Malformed(format!("{name} attribute missing").into()))?;
            asn1::any_to_string(v)
                .ok_or_else(|| ScepError::Malformed(format!("{name} is not a string").into()))
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
            direct,
        })
    }

    /// Parse through OpenSSL's PKCS#7 reader only (to compare with direct reading).
    pub(crate) fn parse_openssl_only(bytes: &[u8]) -> Result<PkiMessage, ScepError> {
        Self::parse_with(bytes, false)
    }

    /// Was the message read without OpenSSL's PKCS#7 reader?
    #[cfg(test)]
    pub(crate) fn read_directly(&self) -> bool {
        self.direct.is_some()
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
        if let Some(d) = &self.direct {
            return self.verify_direct(d, &key);
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

    /// RFC 5652 §5.4 on a message read directly: the messageDigest attribute is the digest
    /// of the content, and the signature over the signed attributes verifies with the
    /// signer's key, using the signerInfo's digest algorithm as OpenSSL does.
    fn verify_direct(&self, d: &Direct, key: &PKey<Public>) -> Result<(), ScepError> {
        let stated = find_attr(&self.attrs, oid::MESSAGE_DIGEST)
            .filter(|v| v.tag() == der::Tag::OctetString)
            .map(|v| v.value())
            .ok_or_else(|| {
                ScepError::BadSignature(
                    "the messageDigest attribute is missing or not an OCTET STRING".into(),
                )
            })?;
        if stated != self.digest.digest(&self.content)?.as_slice() {
            return Err(ScepError::BadSignature(
                "the messageDigest attribute does not match the content".into(),
            ));
        }
        let verified = openssl::sign::Verifier::new(self.digest.md(), key)
            .and_then(|mut v| {
                v.update(&d.signed_attrs)?;
                v.verify(&d.signature)
            })
            .unwrap_or(false);
        if !verified {
            return Err(ScepError::BadSignature(
                "the requester's signature does not verify".into(),
            ));
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

/// The fuzzing oracle of the two pkiMessage readers (direct DER, and OpenSSL's PKCS#7):
/// neither panics, and when both read a message and both find its signature good, they agree
/// on the signer, the content, the transactionID, the senderNonce and the digest. (One reader
/// may refuse what the other reads only inside the requester's certificate, outside its key:
/// see `tests_readers.rs`.) `Err` names the first disagreement.
pub fn readers_agree(bytes: &[u8]) -> Result<(), String> {
    let (Ok(a), Ok(b)) = (
        PkiMessage::parse(bytes),
        PkiMessage::parse_openssl_only(bytes),
    ) else {
        return Ok(());
    };
    if a.verify_signature().is_err() || b.verify_signature().is_err() {
        return Ok(());
    }
    let checks: [(&str, bool); 5] = [
        ("signer", a.signer_cert == b.signer_cert),
        ("content", a.content == b.content),
        ("transactionID", a.transaction_id == b.transaction_id),
        ("senderNonce", a.sender_nonce == b.sender_nonce),
        ("digest", a.digest == b.digest),
    ];
    match checks.iter().find(|(_, same)| !same) {
        Some((what, _)) => Err(format!("{what} differs")),
        None => Ok(()),
    }
}
