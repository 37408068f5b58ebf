//! SCEP message vocabulary (RFC 8894 §3.2.1): message types, status, failure reasons, nonces
//! and transaction IDs, with their wire spellings.

use std::fmt;

/// `messageType` (signed attribute 2.16.840.1.113733.1.9.2, a decimal PrintableString).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 3: the server's answer.
    CertRep,
    /// 17: renewal, signed with a certificate from this CA.
    RenewalReq,
    /// 18: an old name for an update request; treated as PKCSReq.
    UpdateReq,
    /// 19: enrolment.
    PkcsReq,
    /// 20: poll for a pending request (GetCertInitial).
    CertPoll,
    /// 21: fetch a certificate by issuer and serial.
    GetCert,
    /// 22: fetch the CRL.
    GetCrl,
}

impl MessageType {
    /// Parse the decimal text.
    pub fn from_text(s: &str) -> Option<Self> {
        Some(match s.trim().parse::<u32>().ok()? {
            3 => MessageType::CertRep,
            17 => MessageType::RenewalReq,
            18 => MessageType::UpdateReq,
            19 => MessageType::PkcsReq,
            20 => MessageType::CertPoll,
            21 => MessageType::GetCert,
            22 => MessageType::GetCrl,
            _ => return None,
        })
    }

    /// The decimal number.
    pub fn number(self) -> u32 {
        match self {
            MessageType::CertRep => 3,
            MessageType::RenewalReq => 17,
            MessageType::UpdateReq => 18,
            MessageType::PkcsReq => 19,
            MessageType::CertPoll => 20,
            MessageType::GetCert => 21,
            MessageType::GetCrl => 22,
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            MessageType::CertRep => "CertRep",
            MessageType::RenewalReq => "RenewalReq",
            MessageType::UpdateReq => "UpdateReq",
            MessageType::PkcsReq => "PKCSReq",
            MessageType::CertPoll => "CertPoll",
            MessageType::GetCert => "GetCert",
            MessageType::GetCrl => "GetCRL",
        };
        write!(f, "{name}({})", self.number())
    }
}

/// `pkiStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkiStatus {
    /// 0.
    Success,
    /// 2.
    Failure,
    /// 3.
    Pending,
}

impl PkiStatus {
    /// The decimal text.
    pub fn text(self) -> &'static str {
        match self {
            PkiStatus::Success => "0",
            PkiStatus::Failure => "2",
            PkiStatus::Pending => "3",
        }
    }

    /// Parse the decimal text.
    pub fn from_text(s: &str) -> Option<Self> {
        match s.trim() {
            "0" => Some(PkiStatus::Success),
            "2" => Some(PkiStatus::Failure),
            "3" => Some(PkiStatus::Pending),
            _ => None,
        }
    }
}

/// `failInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailInfo {
    /// 0: unrecognised or unsupported algorithm.
    BadAlg,
    /// 1: integrity check (signature, decryption) failed.
    BadMessageCheck,
    /// 2: transaction not permitted or supported.
    BadRequest,
    /// 3: signingTime too far from the server's clock.
    BadTime,
    /// 4: no certificate matches.
    BadCertId,
}

impl FailInfo {
    /// The decimal text.
    pub fn text(self) -> &'static str {
        match self {
            FailInfo::BadAlg => "0",
            FailInfo::BadMessageCheck => "1",
            FailInfo::BadRequest => "2",
            FailInfo::BadTime => "3",
            FailInfo::BadCertId => "4",
        }
    }

    /// Parse the decimal text.
    pub fn from_text(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "0" => FailInfo::BadAlg,
            "1" => FailInfo::BadMessageCheck,
            "2" => FailInfo::BadRequest,
            "3" => FailInfo::BadTime,
            "4" => FailInfo::BadCertId,
            _ => return None,
        })
    }
}

impl fmt::Display for FailInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            FailInfo::BadAlg => "badAlg",
            FailInfo::BadMessageCheck => "badMessageCheck",
            FailInfo::BadRequest => "badRequest",
            FailInfo::BadTime => "badTime",
            FailInfo::BadCertId => "badCertId",
        };
        f.write_str(name)
    }
}

/// A transaction ID as the client sent it (hex, base64 text, decimals, free text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(pub String);

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sender or recipient nonce (16 bytes from conformant clients; macOS sends 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(pub Vec<u8>);

impl Nonce {
    /// A fresh random 16-byte nonce.
    pub fn random() -> Result<Nonce, super::ScepError> {
        let mut n = vec![0u8; 16];
        openssl::rand::rand_bytes(&mut n).map_err(|e| {
            super::ScepError::Crypto(crate::reason::Reason::context("random nonce", e))
        })?;
        Ok(Nonce(n))
    }
}
