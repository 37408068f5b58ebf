//! What the enrollment core is asked and what it answers, in no protocol's terms: a protocol
//! adapter (SCEP today; EST, ACME or a console action later) turns its message into an
//! [`EnrollRequest`] and the [`Decision`] into its own answer.

use super::Profile;

/// Who sent an enrollment request, as the protocol established it.
#[derive(Debug, Clone)]
pub struct Requester {
    /// SHA-256 (hex) of the public key that proved itself (SCEP: the key that signed the
    /// message; a TLS protocol: the client certificate's). Only it may ask about the request
    /// later.
    pub key_sha256: String,
    /// The certificate that key came with (DER), if any: one of this CA's, valid and not
    /// revoked, makes the request a renewal.
    pub certificate: Option<Vec<u8>>,
}

/// One request for a certificate.
#[derive(Debug, Clone)]
pub struct EnrollRequest<'a> {
    /// The profile asked for.
    pub profile: &'a Profile,
    /// The requester's name for this request (SCEP transactionID); with the requester's key
    /// it finds the request again (resends, polls).
    pub transaction_id: String,
    /// The certificate request (PKCS#10, DER) as received: it may not parse.
    pub csr: Vec<u8>,
    /// Who asks.
    pub requester: Requester,
    /// The protocol says this must be a renewal (SCEP RenewalReq): refused if it is not.
    pub renewal_only: bool,
}

/// What kind of refusal, for the protocol to name it in its own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Policy says no (challenge, names, renewal rules, an officer's rejection).
    Policy,
    /// The request does not read (a CSR that does not parse or verify). Says no more, so
    /// it is no oracle on how the request was carried.
    Unreadable,
    /// The certificate or transaction asked about is not known for this requester.
    Unknown,
    /// An algorithm the profile does not accept.
    Algorithm,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What kind.
    pub kind: RefusalKind,
    /// Why, in words the requester's administrator can act on.
    pub reason: String,
}

/// The answer to an enrollment request or a question about one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Issued (now, or earlier for a resend or a poll): the certificate (DER).
    Issued {
        /// The certificate.
        certificate: Vec<u8>,
    },
    /// Waiting for an officer (or for a copy of this request being signed right now): ask
    /// again later.
    Pending,
    /// Refused.
    Refused(Refusal),
}

impl Decision {
    /// A refusal.
    pub fn refused(kind: RefusalKind, reason: impl Into<String>) -> Decision {
        Decision::Refused(Refusal {
            kind,
            reason: reason.into(),
        })
    }

    /// Refused because the request does not read.
    pub fn unreadable() -> Decision {
        Decision::refused(RefusalKind::Unreadable, UNREADABLE)
    }
}

/// The one text for a request that does not read, whatever the cause.
pub const UNREADABLE: &str = "the request could not be read";
