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
use super::reply::{printable_or_utf8, signed_message};
use super::types::{FailInfo, MessageType, Nonce, PkiStatus, TransactionId};
use super::{KeyTransport, PkiMessage, RaKey, ScepError};

/// A private key in process memory, for the client side and tests.
pub struct SoftKey(pub PKey<Private>);

impl RaKey for SoftKey {
    fn decrypt_key(&self, transport: KeyTransport, encrypted: &[u8]) -> Result<Vec<u8>, ScepError> {
        let rsa = self
            .0
            .rsa()
            .map_err(|e| ScepError::Decrypt(format!("not an RSA key: {e}")))?;
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
        let mut s =
            Signer::new(digest.md(), &self.0).map_err(|e| ScepError::Crypto(e.to_string()))?;
        s.update(data)
            .map_err(|e| ScepError::Crypto(e.to_string()))?;
        s.sign_to_vec()
            .map_err(|e| ScepError::Crypto(e.to_string()))
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
        return Err(ScepError::Malformed(format!(
            "expected CertRep, got {}",
            msg.message_type
        )));
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
