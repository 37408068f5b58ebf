//! Pre-produced OCSP answers (RFC 5019): what one stored answer states, so an answer whose
//! statement is no longer its certificate's is never served.

use super::CertStatus;

/// Which certificates need an answer made: those of `issuer` in force at `now` whose answer
/// is missing, produced before `before`, or states another status than theirs.
#[derive(Debug, Clone, Copy)]
pub struct OcspDue<'a> {
    /// The CA's issuer text.
    pub issuer: &'a str,
    /// Now (Unix seconds): certificates ended by then need none.
    pub now: i64,
    /// Answers produced before this are refreshed.
    pub before: i64,
    /// Only certificates stored since then (a cheap look at new ones).
    pub created_since: Option<i64>,
    /// Only serials after this one (the next page: pages come in serial order).
    pub after_serial: Option<&'a str>,
    /// At most this many.
    pub limit: usize,
}

/// One signed single-certificate OCSP answer, produced ahead of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspAnswer {
    /// The certificate's serial (hex, as the certificates table has it).
    pub serial: String,
    /// The status the answer states.
    pub status: CertStatus,
    /// The revocation time it states, if revoked.
    pub revoked_at: Option<i64>,
    /// The OCSPResponse (DER).
    pub der: Vec<u8>,
    /// Its producedAt (Unix seconds).
    pub produced_at: i64,
    /// Its nextUpdate (Unix seconds).
    pub next_update: i64,
}

/// A column list `a, b` as `c.a, c.b` (the certificates table joined as `c`).
pub(super) fn prefixed(columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("c.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
