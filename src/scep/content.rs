//! The decrypted message contents other than a CSR: CertPoll's IssuerAndSubject and the
//! IssuerAndSerialNumber of GetCert and GetCRL.

use der::asn1::Any;
use der::{Decode, Encode, Sequence, Tagged};

use super::ScepError;

#[derive(Sequence)]
struct IssuerAndSubjectAsn1 {
    issuer: Any,
    subject: Any,
}

#[derive(Sequence)]
struct IssuerAndSerialAsn1 {
    issuer: Any,
    serial: Any,
}

/// CertPoll content (RFC 8894 §3.3.3): the issuer and the requested subject, DER names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerAndSubject {
    /// DER Name of the CA.
    pub issuer: Vec<u8>,
    /// DER Name the requester asked for.
    pub subject: Vec<u8>,
}

impl IssuerAndSubject {
    /// Decode.
    pub fn parse(bytes: &[u8]) -> Result<Self, ScepError> {
        let v = IssuerAndSubjectAsn1::from_ber(bytes).map_err(|e| {
            ScepError::Malformed(crate::reason::Reason::context("IssuerAndSubject", e))
        })?;
        Ok(IssuerAndSubject {
            issuer: v.issuer.to_der().map_err(ScepError::encode)?,
            subject: v.subject.to_der().map_err(ScepError::encode)?,
        })
    }
}

/// GetCert / GetCRL content: issuer Name (DER) and serial (big-endian bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerAndSerial {
    /// DER Name of the issuer.
    pub issuer: Vec<u8>,
    /// Serial number bytes, leading zero stripped.
    pub serial: Vec<u8>,
}

impl IssuerAndSerial {
    /// Decode.
    pub fn parse(bytes: &[u8]) -> Result<Self, ScepError> {
        let v = IssuerAndSerialAsn1::from_ber(bytes).map_err(|e| {
            ScepError::Malformed(crate::reason::Reason::context("IssuerAndSerialNumber", e))
        })?;
        if v.serial.tag() != der::Tag::Integer {
            return Err(ScepError::Malformed("serial is not an INTEGER".into()));
        }
        let raw = v.serial.value();
        let lead = raw.iter().take_while(|b| **b == 0).count();
        Ok(IssuerAndSerial {
            issuer: v.issuer.to_der().map_err(ScepError::encode)?,
            serial: raw[lead..].to_vec(),
        })
    }
}
