//! The pkcsPKIEnvelope: EnvelopedData with one key-transport recipient. Opening asks the RA
//! key (on the token) to decrypt the content-encryption key, then decrypts the content with it
//! in software; sealing encrypts a reply to the requester's certificate.

use cms::content_info::{CmsVersion, ContentInfo};
use der::asn1::Any;
use der::{Decode, Encode, Sequence, Tagged};
use spki::AlgorithmIdentifierOwned;

use super::asn1::{self, oid, ContentCipher, DigestAlg};
use super::reply::tlv;
use super::{KeyTransport, RaKey, ScepError};

/// A certificate named by issuer and serial or by key identifier: who an envelope is for, or
/// who signed a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// Issuer name (DER) and serial (big-endian bytes).
    IssuerSerial {
        /// DER of the issuer Name.
        issuer: Vec<u8>,
        /// Serial bytes as encoded.
        serial: Vec<u8>,
    },
    /// Subject key identifier.
    Ski(Vec<u8>),
}

impl Recipient {
    /// True when `cert_der` is this recipient.
    pub fn matches(&self, cert_der: &[u8]) -> bool {
        let Ok((_, c)) = x509_parser::parse_x509_certificate(cert_der) else {
            return false;
        };
        match self {
            Recipient::IssuerSerial { issuer, serial } => {
                c.tbs_certificate.issuer.as_raw() == issuer.as_slice()
                    && strip_zeros(c.tbs_certificate.raw_serial()) == strip_zeros(serial)
            }
            Recipient::Ski(ski) => c.extensions().iter().any(|e| {
                matches!(e.parsed_extension(), x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) if k.0 == ski.as_slice())
            }),
        }
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|x| **x == 0).count();
    &b[n..]
}

/// The one answer for every failure between key transport and reading the content: the
/// stages must not be told apart (see [`Envelope::open`]).
pub const UNREADABLE: &str = "the request could not be decrypted and read";

/// One key-transport recipient of an envelope.
#[derive(Debug, Clone)]
pub struct KeyTransportRecipient {
    /// Who it is for.
    pub recipient: Recipient,
    /// Key transport algorithm.
    pub transport: KeyTransport,
    /// The encrypted content-encryption key.
    pub encrypted_key: Vec<u8>,
}

/// A parsed pkcsPKIEnvelope.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Key-transport recipients (clients may encrypt to every certificate of GetCACert).
    pub recipients: Vec<KeyTransportRecipient>,
    /// Content cipher (`Err` holds the OID text when unsupported).
    pub cipher: Result<ContentCipher, String>,
    /// IV.
    pub iv: Vec<u8>,
    /// Encrypted content.
    pub ciphertext: Vec<u8>,
}

/// EnvelopedData as SCEP clients send it. The encrypted content is read as raw TLV and
/// flattened here: clients send it as a constructed [0] in chunks (Go's pkcs7, iOS), which the
/// `der` crate does not reassemble for IMPLICIT tags.
#[derive(Sequence)]
struct EnvelopedDataLenient {
    version: CmsVersion,
    recip_infos: Any,
    encrypted_content: EncryptedContentInfoLenient,
    unprotected_attrs: Option<Any>,
}

#[derive(Sequence)]
struct EncryptedContentInfoLenient {
    content_type: der::asn1::ObjectIdentifier,
    content_enc_alg: AlgorithmIdentifierOwned,
    encrypted_content: Option<Any>,
}

/// RSAES-OAEP-params (RFC 4055), all defaults SHA-1.
#[derive(Sequence)]
struct OaepParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    hash: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    mgf: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    psource: Option<Any>,
}

fn transport_of(alg: &AlgorithmIdentifierOwned) -> Result<KeyTransport, ScepError> {
    match alg.oid {
        oid::RSA_ENCRYPTION => Ok(KeyTransport::RsaPkcs1v15),
        oid::RSAES_OAEP => {
            let hash = match &alg.parameters {
                None => DigestAlg::Sha1,
                Some(p) => {
                    let der = p.to_der().map_err(ScepError::encode)?;
                    let params = OaepParams::from_ber(&der).map_err(|e| {
                        ScepError::Malformed(crate::reason::Reason::context(
                            "RSAES-OAEP parameters",
                            e,
                        ))
                    })?;
                    match params.hash {
                        None => DigestAlg::Sha1,
                        Some(h) => DigestAlg::from_oid(&h.oid).ok_or_else(|| {
                            ScepError::UnsupportedAlgorithm(format!("OAEP hash {}", h.oid))
                        })?,
                    }
                }
            };
            Ok(KeyTransport::RsaOaep(hash))
        }
        other => Err(ScepError::UnsupportedAlgorithm(format!(
            "key transport {other}"
        ))),
    }
}

impl Envelope {
    /// Parse a pkcsPKIEnvelope (a ContentInfo holding EnvelopedData), BER or DER.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, ScepError> {
        let ci: ContentInfo = asn1::from_ber(bytes, "pkcsPKIEnvelope")?;
        if ci.content_type != oid::ENVELOPED_DATA {
            return Err(ScepError::Malformed(
                format!(
                    "pkcsPKIEnvelope content type is {}, not envelopedData",
                    ci.content_type
                )
                .into(),
            ));
        }
        let inner = ci.content.to_der().map_err(ScepError::encode)?;
        let ed: EnvelopedDataLenient = asn1::from_ber(&inner, "EnvelopedData")?;
        let _ = (
            ed.version,
            &ed.unprotected_attrs,
            &ed.encrypted_content.content_type,
        );
        // Read by hand: a recipient certificate may have a serial longer than 20 octets.
        let mut recipients = Vec::new();
        for r in asn1::children(ed.recip_infos.value())? {
            if r.tag() != der::Tag::Sequence {
                continue; // kari, kekri, pwri, ori: not key transport
            }
            let f = asn1::children(r.value())?;
            let [_version, rid, alg, ek] = f.as_slice() else {
                return Err(ScepError::Malformed(
                    "KeyTransRecipientInfo has the wrong shape".into(),
                ));
            };
            let recipient = if rid.tag() == der::Tag::Sequence {
                let parts = asn1::children(rid.value())?;
                let [issuer, serial] = parts.as_slice() else {
                    return Err(ScepError::Malformed(
                        "recipient issuerAndSerialNumber".into(),
                    ));
                };
                Recipient::IssuerSerial {
                    issuer: issuer.to_der().map_err(ScepError::encode)?,
                    serial: serial.value().to_vec(),
                }
            } else {
                Recipient::Ski(rid.value().to_vec())
            };
            let alg_der = alg.to_der().map_err(ScepError::encode)?;
            let alg: AlgorithmIdentifierOwned = asn1::from_ber(&alg_der, "keyEncryptionAlgorithm")?;
            recipients.push(KeyTransportRecipient {
                recipient,
                transport: transport_of(&alg)?,
                encrypted_key: asn1::octet_string_contents(ek)?,
            });
        }
        if recipients.is_empty() {
            return Err(ScepError::UnsupportedAlgorithm(
                "no key-transport recipient in the envelope".into(),
            ));
        }
        let eci = &ed.encrypted_content;
        let cipher = ContentCipher::from_oid(&eci.content_enc_alg.oid)
            .ok_or_else(|| eci.content_enc_alg.oid.to_string());
        let iv = match &eci.content_enc_alg.parameters {
            Some(p) => asn1::octet_string_contents(p)?,
            None => Vec::new(),
        };
        let ciphertext = match &eci.encrypted_content {
            Some(any)
                if any.tag()
                    == der::Tag::ContextSpecific {
                        constructed: false,
                        number: der::TagNumber(0),
                    }
                    || any.tag()
                        == der::Tag::ContextSpecific {
                            constructed: true,
                            number: der::TagNumber(0),
                        } =>
            {
                asn1::octet_string_contents(any)?
            }
            Some(other) => {
                return Err(ScepError::Malformed(
                    format!("encryptedContent has tag {}, not [0]", other.tag()).into(),
                ))
            }
            None => {
                return Err(ScepError::Malformed(
                    "the envelope has no encrypted content".into(),
                ))
            }
        };
        Ok(Envelope {
            recipients,
            cipher,
            iv,
            ciphertext,
        })
    }

    /// The recipient entry for `cert_der`, if the envelope was encrypted to it.
    pub fn recipient_for(&self, cert_der: &[u8]) -> Option<&KeyTransportRecipient> {
        self.recipients
            .iter()
            .find(|r| r.recipient.matches(cert_der))
    }

    /// Decrypt for the holder of `cert_der`: the content-encryption key through `key` (the
    /// token), then the content. Single DES is refused unless `allow_des`.
    pub fn open(
        &self,
        key: &dyn RaKey,
        cert_der: &[u8],
        allow_des: bool,
    ) -> Result<Vec<u8>, ScepError> {
        let r = self.recipient_for(cert_der).ok_or_else(|| {
            ScepError::Decrypt("the message is encrypted to another certificate".into())
        })?;
        let cipher = self
            .cipher
            .clone()
            .map_err(|o| ScepError::UnsupportedAlgorithm(format!("content cipher {o}")))?;
        if cipher == ContentCipher::DesCbc && !allow_des {
            return Err(ScepError::UnsupportedAlgorithm(
                "single DES is refused (enable legacy algorithms on the profile to accept it)"
                    .into(),
            ));
        }
        if self.iv.len() != cipher.iv_len() {
            return Err(ScepError::Malformed(
                format!("{} IV of {} bytes", cipher.name(), self.iv.len()).into(),
            ));
        }
        // Implicit rejection: a key transport that fails, or yields a key of the wrong size,
        // continues with a random key, so the answer is the same as for bad padding and
        // reveals nothing about the RA key (Bleichenbacher) or the plaintext (padding oracle).
        let cek = match key.decrypt_key(r.transport, &r.encrypted_key) {
            Ok(k) if k.len() == cipher.key_len() => k,
            Err(ScepError::Token(t)) => return Err(ScepError::Token(t)),
            _ => {
                let mut k = vec![0u8; cipher.key_len()];
                openssl::rand::rand_bytes(&mut k)
                    .map_err(|e| ScepError::Crypto(crate::reason::Reason::caused_by(e)))?;
                k
            }
        };
        openssl::symm::decrypt(cipher.cipher(), &cek, Some(&self.iv), &self.ciphertext)
            .map_err(|_| ScepError::Decrypt(UNREADABLE.into()))
    }
}

/// Encrypt `plain` to the RSA key of `recipient_cert`; returns the DER pkcsPKIEnvelope.
pub fn seal(
    plain: &[u8],
    recipient_cert: &[u8],
    cipher: ContentCipher,
) -> Result<Vec<u8>, ScepError> {
    // Encoded by hand: the requester's certificate may carry a serial longer than RFC 5280's
    // 20 octets (certmonger's are 32), which the typed CMS structures refuse.
    let (_, parsed) = x509_parser::parse_x509_certificate(recipient_cert).map_err(|e| {
        ScepError::Malformed(crate::reason::Reason::context("recipient certificate", e))
    })?;
    let rsa = super::request::rsa_public_key(parsed.public_key()).ok_or_else(|| {
        ScepError::UnsupportedAlgorithm(
            "the requester's certificate has no RSA key to encrypt the reply to".into(),
        )
    })?;
    let mut cek = vec![0u8; cipher.key_len()];
    let mut iv = vec![0u8; cipher.iv_len()];
    openssl::rand::rand_bytes(&mut cek)
        .map_err(|e| ScepError::Crypto(crate::reason::Reason::caused_by(e)))?;
    openssl::rand::rand_bytes(&mut iv)
        .map_err(|e| ScepError::Crypto(crate::reason::Reason::caused_by(e)))?;
    let ciphertext = openssl::symm::encrypt(cipher.cipher(), &cek, Some(&iv), plain)
        .map_err(|e| ScepError::Crypto(crate::reason::Reason::caused_by(e)))?;
    let mut ek = vec![0u8; rsa.size() as usize];
    let n = rsa
        .public_encrypt(&cek, &mut ek, openssl::rsa::Padding::PKCS1)
        .map_err(|e| ScepError::Crypto(crate::reason::Reason::caused_by(e)))?;
    ek.truncate(n);
    let mut isn = parsed.tbs_certificate.issuer.as_raw().to_vec();
    isn.extend(tlv(0x02, parsed.tbs_certificate.raw_serial()));
    let rsa_alg = AlgorithmIdentifierOwned {
        oid: oid::RSA_ENCRYPTION,
        parameters: Some(Any::null()),
    }
    .to_der()
    .map_err(ScepError::encode)?;
    let mut ktri = tlv(0x02, &[0]);
    ktri.extend(tlv(0x30, &isn));
    ktri.extend(rsa_alg);
    ktri.extend(tlv(0x04, &ek));
    let content_alg = AlgorithmIdentifierOwned {
        oid: cipher.oid(),
        parameters: Some(asn1::octets(&iv)?),
    }
    .to_der()
    .map_err(ScepError::encode)?;
    let mut eci = oid::DATA.to_der().map_err(ScepError::encode)?;
    eci.extend(content_alg);
    eci.extend(tlv(0x80, &ciphertext));
    let mut ed = tlv(0x02, &[0]);
    ed.extend(tlv(0x31, &tlv(0x30, &ktri)));
    ed.extend(tlv(0x30, &eci));
    let mut ci = oid::ENVELOPED_DATA.to_der().map_err(ScepError::encode)?;
    ci.extend(tlv(0xa0, &tlv(0x30, &ed)));
    Ok(tlv(0x30, &ci))
}
