//! The SCEP codec (RFC 8894): pure functions over bytes.
//!
//! * [`PkiMessage::parse`] reads a request (DER or BER), [`PkiMessage::verify_signature`]
//!   checks the requester's signature, [`Envelope::open`] decrypts the pkcsPKIEnvelope.
//! * [`CertRep`] builds the signed answer; [`degenerate`] the certs-only SignedData of
//!   GetCACert.
//!
//! The module does no I/O and knows nothing of HTTP or storage. The two private-key operations
//! go through the [`RaKey`] trait, which the server implements with the token; tests
//! implement it with software keys. Everything else (digests, symmetric ciphers, the
//! requester's public-key operations) is done here with OpenSSL.

pub mod asn1;
pub mod client;
mod content;
mod envelope;
mod reply;
mod request;
mod types;

pub use asn1::{ContentCipher, DigestAlg};
pub use content::{IssuerAndSerial, IssuerAndSubject};
pub use envelope::{seal, Envelope, KeyTransportRecipient, Recipient, UNREADABLE};
pub use reply::{degenerate, next_ca_response, signed_content, CertRep, Outcome, SignFn};
pub use request::{certificate_public_key, readers_agree, spki_sha256, PkiMessage};
pub use types::{FailInfo, MessageType, Nonce, PkiStatus, TransactionId};

/// Key transport of the content-encryption key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTransport {
    /// RSAES-PKCS1-v1_5.
    RsaPkcs1v15,
    /// RSAES-OAEP with this hash (and MGF1 with the same hash).
    RsaOaep(DigestAlg),
}

/// The RA's private-key operations, provided by the caller (the token, in the server).
pub trait RaKey {
    /// Decrypt a content-encryption key sent to the RA.
    fn decrypt_key(&self, transport: KeyTransport, encrypted: &[u8]) -> Result<Vec<u8>, ScepError>;
    /// Sign `data` (the DER signed attributes) with RSASSA-PKCS1-v1_5 and `digest`.
    fn sign(&self, digest: DigestAlg, data: &[u8]) -> Result<Vec<u8>, ScepError>;
}

/// Why a message could not be read or answered.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ScepError {
    /// Not the structure SCEP requires.
    #[error("malformed message: {0}")]
    Malformed(#[source] crate::reason::Reason),
    /// A messageType Sigil does not know.
    #[error("unknown messageType `{0}`")]
    UnknownMessageType(String),
    /// An algorithm Sigil does not accept.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The requester's signature is wrong.
    #[error("bad signature: {0}")]
    BadSignature(#[source] crate::reason::Reason),
    /// The envelope does not decrypt.
    #[error("cannot decrypt: {0}")]
    Decrypt(#[source] crate::reason::Reason),
    /// The RA key operation failed on the token.
    #[error("RA key operation failed: {0}")]
    Token(#[source] crate::reason::Reason),
    /// Encoding or crypto library failure.
    #[error("internal crypto error: {0}")]
    Crypto(#[source] crate::reason::Reason),
}

impl ScepError {
    pub(crate) fn encode(e: impl std::error::Error + Send + Sync + 'static) -> ScepError {
        ScepError::Malformed(crate::reason::Reason::caused_by(e))
    }

    /// The failInfo a CertRep should carry for this error.
    pub fn fail_info(&self) -> FailInfo {
        match self {
            ScepError::UnsupportedAlgorithm(_) => FailInfo::BadAlg,
            ScepError::BadSignature(_) | ScepError::Decrypt(_) => FailInfo::BadMessageCheck,
            _ => FailInfo::BadRequest,
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_readers;
