//! The client side of SCEP, for tests, interop checks and the load generator: build a request
//! as a device would (its own software key), and read a CertRep (check the RA's signature,
//! decrypt with the device key).
//!
//! Device keys live in the device: holding them in memory here is what a client does. Nothing
//! here is used by the server for its own keys.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::revocation::RevocationInfoChoice;
use cms::signed_data::SignedData;
use der::Encode;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Padding;
use openssl::sign::Signer;

use super::asn1::{self, attr, oid, printable, ContentCipher, DigestAlg};
use super::envelope::seal;
use super::reply::{printable_or_utf8, signed_message, tlv};
use super::types::{FailInfo, MessageType, Nonce, PkiStatus, TransactionId};
use super::{KeyTransport, PkiMessage, RaKey, ScepError};

/// A private key in process memory, for the client side and tests.
pub struct SoftKey(pub PKey<Private>);

impl RaKey for SoftKey {
    fn decrypt_key(&self, transport: KeyTransport, encrypted: &[u8]) -> Result<Vec<u8>, ScepError> {
        let rsa = self
            .0
            .rsa()
            .map_err(|e| ScepError::Decrypt(crate::reason::Reason::context("not an RSA key", e)))?;
        let padding = match transport {
            KeyTransport::RsaPkcs1v15 => Padding::PKCS1,
            KeyTransport::RsaOaep(DigestAlg::Sha1) => Padding::PKCS1_OAEP,
            KeyTransport::RsaOaep(_) => {
                return Err(ScepError::UnsupportedAlgorithm(
                    "OAEP with SHA-2 in software".into(),
                ))
            }
        };
        let mut out = vec![0u8; rsa.size() as usize];
        let n = rsa
            .private_decrypt(encrypted, &mut out, padding)
            .map_err(|_| ScepError::Decrypt("key transport does not decrypt".into()))?;
        out.truncate(n);
        Ok(out)
    }

    fn sign(&self, digest: DigestAlg, data: &[u8]) -> Result<Vec<u8>, ScepError> {
        let mut s = Signer::new(digest.md(), &self.0)
            .map_err(|e| ScepError::Crypto(crate::reason::Reason::caused_by(e)))?;
        s.update(data)
            .map_err(|e| ScepError::Crypto(crate::reason::Reason::caused_by(e)))?;
        s.sign_to_vec()
            .map_err(|e| ScepError::Crypto(crate::reason::Reason::caused_by(e)))
    }
}

/// A request as a device builds it.
pub struct ClientRequest<'a> {
    /// PKCSReq, RenewalReq, CertPoll, GetCert, GetCRL.
    pub message_type: MessageType,
    /// transactionID.
    pub transaction_id: TransactionId,
    /// senderNonce.
    pub sender_nonce: Nonce,
    /// The plaintext to put in the envelope (CSR DER, IssuerAndSubject, IssuerAndSerial).
    pub content: &'a [u8],
    /// The RA (or CA) certificate to encrypt to.
    pub recipient_cert: &'a [u8],
    /// Content cipher.
    pub cipher: ContentCipher,
    /// Digest of the signature.
    pub digest: DigestAlg,
    /// The device's signer certificate (self-signed, or the one being renewed).
    pub signer_cert: &'a [u8],
    /// The device key.
    pub signer_key: &'a PKey<Private>,
}

impl ClientRequest<'_> {
    /// Encode, encrypt and sign.
    pub fn build(&self) -> Result<Vec<u8>, ScepError> {
        let envelope = seal(self.content, self.recipient_cert, self.cipher)?;
        self.sign_envelope(envelope)
    }

    /// Sign `content` as given, taken to be a pkcsPKIEnvelope already (for tests that send
    /// tampered envelopes).
    pub fn build_presealed(&self) -> Result<Vec<u8>, ScepError> {
        self.sign_envelope(self.content.to_vec())
    }

    fn sign_envelope(&self, envelope: Vec<u8>) -> Result<Vec<u8>, ScepError> {
        let attrs = vec![
            attr(
                oid::MESSAGE_TYPE,
                printable(&self.message_type.number().to_string())?,
            )?,
            attr(
                oid::TRANSACTION_ID,
                printable_or_utf8(&self.transaction_id.0)?,
            )?,
            attr(oid::SENDER_NONCE, asn1::octets(&self.sender_nonce.0)?)?,
        ];
        let sig_alg = if self.signer_key.id() == Id::EC {
            match self.digest {
                DigestAlg::Sha384 => oid::ECDSA_SHA384,
                DigestAlg::Sha512 => oid::ECDSA_SHA512,
                _ => oid::ECDSA_SHA256,
            }
        } else {
            oid::RSA_ENCRYPTION
        };
        let key = SoftKey(self.signer_key.clone());
        signed_message(
            envelope,
            attrs,
            self.digest,
            sig_alg,
            &[self.signer_cert.to_vec()],
            &|data| key.sign(self.digest, data),
        )
    }
}

/// A CertRep as the device reads it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// pkiStatus.
    pub status: PkiStatus,
    /// failInfo (FAILURE).
    pub fail_info: Option<FailInfo>,
    /// failInfoText (FAILURE).
    pub fail_text: Option<String>,
    /// transactionID.
    pub transaction_id: TransactionId,
    /// senderNonce of the server.
    pub sender_nonce: Nonce,
    /// recipientNonce (must equal the request's senderNonce).
    pub recipient_nonce: Nonce,
    /// The RA certificate that signed the reply.
    pub signer_cert: Vec<u8>,
    /// Certificates returned (SUCCESS), issued certificate first as sent.
    pub certs: Vec<Vec<u8>>,
    /// CRLs returned (GetCRL).
    pub crls: Vec<Vec<u8>>,
}

/// Read a CertRep: check its signature, and with SUCCESS decrypt it with the device key
/// (`device_cert` is the certificate the request was signed with).
pub fn read_reply(
    bytes: &[u8],
    device_cert: &[u8],
    device_key: &PKey<Private>,
) -> Result<Reply, ScepError> {
    let msg = PkiMessage::parse(bytes)?;
    if msg.message_type != MessageType::CertRep {
        return Err(ScepError::Malformed(
            format!("expected CertRep, got {}", msg.message_type).into(),
        ));
    }
    msg.verify_signature()?;
    let status = msg
        .attr_text(oid::PKI_STATUS)
        .and_then(|s| PkiStatus::from_text(&s))
        .ok_or_else(|| ScepError::Malformed("pkiStatus missing or unknown".into()))?;
    let mut reply = Reply {
        status,
        fail_info: msg
            .attr_text(oid::FAIL_INFO)
            .and_then(|s| FailInfo::from_text(&s)),
        fail_text: msg.attr_text(oid::FAIL_INFO_TEXT),
        transaction_id: msg.transaction_id.clone(),
        sender_nonce: msg.sender_nonce.clone(),
        recipient_nonce: Nonce(msg.attr_bytes(oid::RECIPIENT_NONCE).unwrap_or_default()),
        signer_cert: msg.signer_cert.clone(),
        certs: Vec::new(),
        crls: Vec::new(),
    };
    if status == PkiStatus::Success {
        let inner = msg
            .envelope()?
            .open(&SoftKey(device_key.clone()), device_cert, true)?;
        let (certs, crls) = read_degenerate(&inner)?;
        reply.certs = certs;
        reply.crls = crls;
    }
    Ok(reply)
}

/// DER certificates and DER CRLs.
pub type CertsAndCrls = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The certificates and CRLs of a degenerate SignedData (GetCACert, CertRep payload).
pub fn read_degenerate(bytes: &[u8]) -> Result<CertsAndCrls, ScepError> {
    let ci: ContentInfo = asn1::from_ber(bytes, "certs-only ContentInfo")?;
    let inner = ci.content.to_der().map_err(ScepError::encode)?;
    let sd: SignedData = asn1::from_ber(&inner, "certs-only SignedData")?;
    let mut certs = Vec::new();
    if let Some(set) = &sd.certificates {
        for c in set.0.iter() {
            if let CertificateChoices::Certificate(c) = c {
                certs.push(c.to_der().map_err(ScepError::encode)?);
            }
        }
    }
    let mut crls = Vec::new();
    if let Some(set) = &sd.crls {
        for c in set.0.iter() {
            if let RevocationInfoChoice::Crl(c) = c {
                crls.push(c.to_der().map_err(ScepError::encode)?);
            }
        }
    }
    Ok((certs, crls))
}

/// A simulated device: its own key (generated in memory, as on a device), a self-signed signer
/// certificate, and the requests it sends. Used by the tests and the load generator.
pub struct Device {
    /// The device key.
    pub key: PKey<Private>,
    /// The certificate that signs requests: self-signed at first, the issued one for renewal.
    pub signer_cert: Vec<u8>,
    rcgen_key: rcgen::KeyPair,
}

fn dev_err(e: impl std::error::Error + Send + Sync + 'static) -> ScepError {
    ScepError::Crypto(crate::reason::Reason::caused_by(e))
}

impl Device {
    /// A device with a fresh RSA key and a self-signed signer certificate `CN=<cn>`.
    pub fn rsa(bits: u32, cn: &str) -> Result<Device, ScepError> {
        let key =
            PKey::from_rsa(openssl::rsa::Rsa::generate(bits).map_err(dev_err)?).map_err(dev_err)?;
        Self::from_key(key, cn)
    }

    /// A device with the given key (RSA or EC P-256/P-384).
    pub fn from_key(key: PKey<Private>, cn: &str) -> Result<Device, ScepError> {
        let pem =
            String::from_utf8(key.private_key_to_pem_pkcs8().map_err(dev_err)?).map_err(dev_err)?;
        let alg = if key.id() == Id::EC {
            if key.bits() > 256 {
                &rcgen::PKCS_ECDSA_P384_SHA384
            } else {
                &rcgen::PKCS_ECDSA_P256_SHA256
            }
        } else {
            &rcgen::PKCS_RSA_SHA256
        };
        let rcgen_key = rcgen::KeyPair::from_pem_and_sign_algo(&pem, alg).map_err(dev_err)?;
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let mut serial = [0u8; 16];
        openssl::rand::rand_bytes(&mut serial).map_err(dev_err)?;
        serial[0] &= 0x7f;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let signer_cert = p.self_signed(&rcgen_key).map_err(dev_err)?.der().to_vec();
        Ok(Device {
            key,
            signer_cert,
            rcgen_key,
        })
    }

    /// A PKCS#10 request for this device's key, with a challengePassword (PrintableString
    /// when it fits, else UTF8String) and SANs (`dns:…`, `email:…`, `uri:…`).
    pub fn csr(
        &self,
        cn: &str,
        challenge: Option<&str>,
        sans: &[&str],
    ) -> Result<Vec<u8>, ScepError> {
        self.csr_named(&[("CN", cn)], challenge, sans)
    }

    /// As [`Device::csr`] with a subject of several attributes, in order: `CN`, `O`, `OU`, `C`,
    /// `E` (emailAddress), `UID`, `serialNumber`.
    pub fn csr_named(
        &self,
        subject: &[(&str, &str)],
        challenge: Option<&str>,
        sans: &[&str],
    ) -> Result<Vec<u8>, ScepError> {
        self.csr_requesting(subject, challenge, sans, &[], &[])
    }

    /// As [`Device::csr_named`], asking for key usage and extended key usage as an MDM's SCEP
    /// profile makes a device do.
    pub fn csr_requesting(
        &self,
        subject: &[(&str, &str)],
        challenge: Option<&str>,
        sans: &[&str],
        key_usage: &[rcgen::KeyUsagePurpose],
        extended_key_usage: &[rcgen::ExtendedKeyUsagePurpose],
    ) -> Result<Vec<u8>, ScepError> {
        let mut p = rcgen::CertificateParams::default();
        p.key_usages = key_usage.to_vec();
        p.extended_key_usages = extended_key_usage.to_vec();
        for (k, v) in subject {
            let ty = match *k {
                "CN" => rcgen::DnType::CommonName,
                "O" => rcgen::DnType::OrganizationName,
                "OU" => rcgen::DnType::OrganizationalUnitName,
                "C" => rcgen::DnType::CountryName,
                "E" => rcgen::DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
                "UID" => rcgen::DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
                "serialNumber" => rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
                other => {
                    return Err(ScepError::Malformed(
                        format!("unknown subject attribute {other}").into(),
                    ))
                }
            };
            p.distinguished_name.push(ty, *v);
        }
        for s in sans {
            let (kind, v) = s.split_once(':').unwrap_or(("dns", s));
            let ia5 = rcgen::string::Ia5String::try_from(v.to_string()).map_err(dev_err)?;
            p.subject_alt_names.push(match kind {
                "upn" => rcgen::SanType::OtherName((
                    vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
                    rcgen::OtherNameValue::Utf8String(v.to_string()),
                )),
                "email" => rcgen::SanType::Rfc822Name(ia5),
                "uri" => rcgen::SanType::URI(ia5),
                _ => rcgen::SanType::DnsName(ia5),
            });
        }
        let mut attrs = Vec::new();
        if let Some(c) = challenge {
            let value = printable(c)
                .or_else(|_| {
                    der::asn1::Any::new(der::Tag::Utf8String, c.as_bytes().to_vec())
                        .map_err(ScepError::encode)
                })?
                .to_der()
                .map_err(ScepError::encode)?;
            let mut set = vec![0x31, value.len() as u8];
            if value.len() >= 0x80 {
                return Err(ScepError::Malformed("challenge too long".into()));
            }
            set.extend(value);
            attrs.push(rcgen::Attribute {
                oid: &[1, 2, 840, 113549, 1, 9, 7],
                values: set,
            });
        }
        let csr = p
            .serialize_request_with_attributes(&self.rcgen_key, attrs)
            .map_err(dev_err)?;
        Ok(csr.der().to_vec())
    }

    /// Sign future requests with `cert` (the issued certificate), as a renewing device does.
    pub fn sign_with(&mut self, cert: Vec<u8>) {
        self.signer_cert = cert;
    }

    /// A request of `message_type` carrying `content`, encrypted to `ra_cert`.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        message_type: MessageType,
        transaction_id: &str,
        nonce: &Nonce,
        content: &[u8],
        ra_cert: &[u8],
        cipher: ContentCipher,
        digest: DigestAlg,
    ) -> Result<Vec<u8>, ScepError> {
        ClientRequest {
            message_type,
            transaction_id: TransactionId(transaction_id.into()),
            sender_nonce: nonce.clone(),
            content,
            recipient_cert: ra_cert,
            cipher,
            digest,
            signer_cert: &self.signer_cert,
            signer_key: &self.key,
        }
        .build()
    }

    /// Read the server's answer to a request this device signed.
    pub fn read(&self, reply: &[u8]) -> Result<Reply, ScepError> {
        read_reply(reply, &self.signer_cert, &self.key)
    }
}

/// DER IssuerAndSerialNumber for GetCert / GetCRL.
pub fn issuer_and_serial(issuer_der: &[u8], serial: &[u8]) -> Vec<u8> {
    let mut int = serial.to_vec();
    if int.first().is_some_and(|b| b & 0x80 != 0) {
        int.insert(0, 0);
    }
    let mut body = issuer_der.to_vec();
    body.extend(tlv(0x02, &int));
    tlv(0x30, &body)
}

/// DER IssuerAndSubject for CertPoll.
pub fn issuer_and_subject(issuer_der: &[u8], subject_der: &[u8]) -> Vec<u8> {
    let mut body = issuer_der.to_vec();
    body.extend_from_slice(subject_der);
    tlv(0x30, &body)
}
