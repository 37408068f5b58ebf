//! Where Sigil keeps what it decided: issued certificates, SCEP transactions, one-time
//! challenges and CA state.
//!
//! One trait, [`Store`], and two engines: [`SqliteStore`] (embedded, a file in the data
//! directory, WAL mode) and [`PostgresStore`] (a connection pool; several `sigil serve` nodes
//! may share one database). Both apply the versioned migrations in `migrations/` when opened and
//! refuse a database whose schema is newer than the program. The invariants live in the schema
//! and in database transactions: a serial is unique; a transactionID has one requester key and
//! one outcome; a one-time challenge is consumed in the same transaction that records the
//! certificate (or the PENDING request); the certificate is committed before its CertRep is
//! built. The same conformance tests (`conformance.rs`) run against both engines.

mod listing;
mod ocsp;
mod postgres;
mod push;
mod registration;
mod sqlite;
mod traits;
mod transaction_keys;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod conformance_concurrency;
#[cfg(test)]
mod conformance_engines;
#[cfg(test)]
mod conformance_ocsp;
#[cfg(test)]
mod conformance_pushes;
#[cfg(test)]
mod conformance_records;
#[cfg(test)]
mod conformance_reports;

use std::sync::Arc;

pub use ocsp::{OcspAnswer, OcspDue};

/// The audit details of a certificate import.
pub(crate) fn import_details(
    loaded: usize,
    revoked: usize,
    certs: &[CertificateRecord],
) -> serde_json::Value {
    serde_json::json!({
        "loaded": loaded,
        "revoked": revoked,
        "offered": certs.len(),
        "first": certs.first().map(|c| c.serial.as_str()),
        "last": certs.last().map(|c| c.serial.as_str()),
    })
}
pub use postgres::PostgresStore;
pub use push::{PushAction, PushRecord, PushState};
pub use registration::{RegistrationRecord, RegistrationState, EXPIRED_REASON};
pub use sqlite::SqliteStore;
pub use traits::{
    AuditStore, CaStateStore, CertificateStore, ChallengeStore, ClusterStore, IdentityStore,
    OcspStore, PushStore, RegistrationStore, Store, TokenStore, TransactionStore,
};

/// The schema version this program writes.
pub const SCHEMA_VERSION: i64 = 13;

/// How long a reservation ([`Store::reserve`]) holds a transaction while its certificate is
/// signed, unless configured otherwise (`scep.reservation_secs`). A node that dies mid-way
/// leaves one behind: once this has passed, the device's resend takes it over, and a poll or
/// the upkeep round drops it ([`TransactionStore::abandon_lapsed`]). Long enough for a slow
/// token under load, so a live reservation is not taken over while its certificate is
/// signed.
pub const RESERVATION_SECS: i64 = 90;

/// The state of a SCEP transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionState {
    /// Reserved: its certificate is being signed (until the Unix time given, after which a
    /// resend of the same request may take the reservation over).
    Issuing {
        /// End of the reservation (Unix seconds).
        until: i64,
    },
    /// Waiting for an officer.
    Pending,
    /// Issued: the serial (hex) of the certificate.
    Issued {
        /// Serial, lower-case hex without leading zeros.
        serial: String,
    },
    /// Refused by an officer.
    Rejected {
        /// Why, sent as failInfoText.
        reason: String,
    },
}

/// A SCEP transaction: one transactionID of one requester, one requested key, one outcome.
///
/// A transactionID is not global: clients pick short ones ("16") and derive others from the
/// key, so a record is found by [`TransactionRecord::key`] of the transactionID, the key that
/// signed the request and, for a renewal, the serial renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRecord {
    /// The record's key: [`TransactionRecord::key`] of the fields below. URL-safe (hex).
    pub id: String,
    /// transactionID as sent.
    pub transaction_id: String,
    /// The serial of the certificate this request renews (it signed the request), if any.
    pub renews: Option<String>,
    /// Profile name.
    pub profile: String,
    /// SHA-256 (hex) of the requested public key (the CSR's SubjectPublicKeyInfo).
    pub key_sha256: String,
    /// SHA-256 (hex) of the public key that signed the request: only it may poll.
    pub signer_sha256: String,
    /// State.
    pub state: TransactionState,
    /// The CSR (DER) while the transaction waits for approval; empty once decided (it may
    /// carry the challenge password, which is not kept at rest).
    pub csr: Vec<u8>,
    /// The one-time challenge (its id) that made the request possible, if one did.
    pub challenge_id: Option<String>,
    /// Who holds the transaction's reservation (or an approval's claim of it): a token
    /// the holder made. Only the holder records the issuance or gives the reservation up, so
    /// a holder whose reservation lapsed and was taken over records nothing.
    pub holder: Option<String>,
}

impl TransactionRecord {
    /// The key a transaction is recorded under: SHA-256 over the transactionID, the SHA-256 of
    /// the key that signed the request, and the serial it renews (empty for a new
    /// enrollment), 32 hex digits. Two devices may use the same transactionID; nobody can
    /// claim another requester's record, nor a renewal's record before it happens.
    pub fn key(transaction_id: &str, signer_sha256: &str, renews: Option<&str>) -> String {
        use sha2::Digest;
        let d = sha2::Sha256::digest(
            format!(
                "{transaction_id}\n{signer_sha256}\n{}",
                renews.unwrap_or("")
            )
            .as_bytes(),
        );
        hex::encode(&d[..16])
    }
}

/// Whether a certificate is still good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Not revoked.
    Valid,
    /// Revoked.
    Revoked,
}

impl CertStatus {
    fn as_str(self) -> &'static str {
        match self {
            CertStatus::Valid => "valid",
            CertStatus::Revoked => "revoked",
        }
    }

    fn parse(s: &str) -> CertStatus {
        if s == "revoked" {
            CertStatus::Revoked
        } else {
            CertStatus::Valid
        }
    }
}

/// A revoked certificate as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlEntry {
    /// Serial, lower-case hex.
    pub serial: String,
    /// When it was revoked (Unix seconds).
    pub revoked_at: Option<i64>,
    /// RFC 5280 reason code.
    pub reason: Option<i32>,
}

/// An issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Serial, lower-case hex without leading zeros.
    pub serial: String,
    /// The certificate (DER).
    pub der: Vec<u8>,
    /// Subject, one line.
    pub subject: String,
    /// Subject alternative names, one line.
    pub sans: String,
    /// Issuer, one line.
    pub issuer: String,
    /// notBefore (Unix seconds).
    pub not_before: i64,
    /// notAfter (Unix seconds).
    pub not_after: i64,
    /// Profile name.
    pub profile: String,
    /// Status.
    pub status: CertStatus,
    /// Revocation time (Unix seconds).
    pub revoked_at: Option<i64>,
    /// RFC 5280 reason code.
    pub revocation_reason: Option<i32>,
    /// The transaction it came from.
    pub transaction_id: String,
    /// The device it was issued to, when known.
    pub device_id: Option<String>,
    /// The serial of the certificate that renewed this one, once it was renewed (a
    /// certificate renews once).
    pub renewed_by: Option<String>,
}

/// A one-time challenge: stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    /// Public identifier (`chl_…`): in the audit records of its creation and of the
    /// certificate it made possible.
    pub id: String,
    /// SHA-256 (hex) of the challenge.
    pub hash: String,
    /// Who minted it (`token:<id>`, `cli`, or the registration step's actor).
    pub created_by: String,
    /// The profile it is for.
    pub profile: String,
    /// Bindings (JSON: expected subject CN, SANs, device ID).
    pub bindings: String,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// When it was used, if it was.
    pub used_at: Option<i64>,
}

/// An API token: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public identifier (shown in lists, used to revoke).
    pub id: String,
    /// A name for people ("intune-prod-2026").
    pub name: String,
    /// admin, officer, auditor or mdm.
    pub role: String,
    /// SHA-256 (hex) of the secret.
    pub hash: String,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Expiry (Unix seconds), if any.
    pub expires_at: Option<i64>,
    /// Revoked (Unix seconds), if it was.
    pub revoked_at: Option<i64>,
    /// Last successful use (Unix seconds).
    pub last_used_at: Option<i64>,
    /// What an `mdm` token may do: the profiles it mints challenges for and the directories
    /// whose registrations' SCEP payloads it collects (`*`: all). Empty for other roles.
    pub scope: TokenScope,
    /// The person who made it (a `people` id, or the token that made it), or `break-glass`
    /// for the admin token of `sigil init`; `None` for tokens made before owners.
    pub owner: Option<String>,
    /// A token that grants power waits for a second admin before it works.
    pub awaiting_approval: bool,
    /// Who approved it (actor), if it needed approval.
    pub approved_by: Option<String>,
}

/// The owner of the break-glass admin token that `sigil init` prints.
pub const BREAK_GLASS: &str = "break-glass";

/// A person who signed in (see [`IdentityStore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRecord {
    /// `oidc:<issuer>#<subject>` or `piv:<UPN or email>`.
    pub id: String,
    /// Email, lower case, when the identity provider or the certificate gave one.
    pub email: Option<String>,
    /// Display name.
    pub name: String,
    /// Roles at the last sign-in.
    pub roles: Vec<String>,
    /// First sign-in (Unix seconds).
    pub first_seen: i64,
    /// Last sign-in (Unix seconds).
    pub last_seen: i64,
}

/// What a session row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A signed-in browser.
    Session,
    /// A sign-in in progress (an OpenID Connect authorization request awaiting its callback).
    Login,
}

impl SessionKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionKind::Session => "session",
            SessionKind::Login => "login",
        }
    }
}

/// A browser session or a sign-in in progress, server-side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 (hex) of the value the browser holds (the cookie, or the OIDC `state`).
    pub id: String,
    /// Session or sign-in.
    pub kind: SessionKind,
    /// The person (a session's).
    pub person: Option<String>,
    /// What goes with it (JSON): a session's roles and CSRF token; a sign-in's PKCE verifier,
    /// nonce and browser binding.
    pub data: String,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Last used (Unix seconds).
    pub last_seen: i64,
    /// Ends at the latest (Unix seconds).
    pub expires_at: i64,
}

/// The scope of an integration token.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenScope {
    /// Profiles it may mint one-time challenges for (`*`: every profile open to
    /// integrations).
    pub profiles: Vec<String>,
    /// Directories whose registrations' SCEP payloads it may collect (`*`: all).
    pub directories: Vec<String>,
}

impl TokenScope {
    /// Stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// Read the stored form (an unreadable scope allows nothing).
    pub fn from_json(s: &str) -> TokenScope {
        serde_json::from_str(s).unwrap_or_default()
    }

    /// May mint challenges for `profile`?
    pub fn allows_profile(&self, profile: &str) -> bool {
        self.profiles.iter().any(|p| p == "*" || p == profile)
    }

    /// May collect payloads of registrations from `directory`?
    pub fn allows_directory(&self, directory: &str) -> bool {
        self.directories.iter().any(|d| d == "*" || d == directory)
    }
}

/// Texts the newest audit records are searched by ([`Store::audit_newest`]): each matches
/// records whose field contains it, ASCII case not minding; an empty text matches any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// In the action.
    pub action: String,
    /// In the actor.
    pub actor: String,
    /// In the subject.
    pub subject: String,
}

/// One record of the audit log. In JSON `at` is RFC 3339 (whole seconds, so the hash can be
/// recomputed from it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Position in the log, from 1.
    pub seq: i64,
    /// When (Unix seconds; RFC 3339 in JSON).
    #[serde(serialize_with = "rfc3339_seconds")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    /// Who: `ra` for SCEP decisions, `token:<id>` for API callers, `cli` for the command line.
    pub actor: String,
    /// What: issued, pending, rejected, approved, revoked, token_created, …
    pub action: String,
    /// What it is about (a serial, a transaction, a token id).
    pub subject: String,
    /// Details, JSON.
    pub details: String,
    /// The previous record's hash ("" for the first).
    pub prev_hash: String,
    /// SHA-256 over this record and `prev_hash`.
    pub hash: String,
}

/// One issuance to record: the arguments of [`Store::record_issued`], owned, for the engines'
/// issuance writers (which write several in one database transaction).
pub(super) struct Issuance {
    pub(super) tx: TransactionRecord,
    pub(super) cert: CertificateRecord,
    pub(super) challenge: Option<String>,
    pub(super) actor: String,
}

/// Where a certificate came from, for its `issued` audit record: the one-time challenge that
/// made it possible (whose `challenge_created` record names the token that minted it), and
/// the certificate it renews.
fn provenance(tx: &TransactionRecord) -> serde_json::Value {
    serde_json::json!({
        "transaction_id": tx.transaction_id, "transaction": tx.id,
        "challenge_id": tx.challenge_id, "renews": tx.renews,
    })
}

impl Issuance {
    pub(super) fn new(
        tx: &TransactionRecord,
        cert: &CertificateRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Issuance {
        Issuance {
            tx: tx.clone(),
            cert: cert.clone(),
            challenge: challenge.map(str::to_owned),
            actor: actor.to_owned(),
        }
    }

    /// The audit record's action ("issued", or "approved" when it moved a PENDING
    /// transaction) and details.
    pub(super) fn audit(&self, approved: bool) -> (&'static str, serde_json::Value) {
        let (tx, cert) = (&self.tx, &self.cert);
        let mut details = provenance(tx);
        details["profile"] = cert.profile.clone().into();
        details["subject"] = cert.subject.clone().into();
        details["sans"] = cert.sans.clone().into();
        details["not_after"] = cert.not_after.into();
        details["device_id"] = cert.device_id.clone().into();
        (if approved { "approved" } else { "issued" }, details)
    }
}

/// The hash of an audit record: SHA-256 (hex) over the JSON array
/// `[prev_hash, seq, at, actor, action, subject, details]`.
pub fn audit_hash(
    prev_hash: &str,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    subject: &str,
    details: &str,
) -> String {
    use sha2::Digest;
    let canonical = serde_json::json!([prev_hash, seq, at, actor, action, subject, details]);
    hex::encode(sha2::Sha256::digest(canonical.to_string().as_bytes()))
}

/// Check an audit log read in order against its stored head. `Err((seq, why))` names the
/// first record that is wrong (or the head).
pub fn verify_audit(records: &[AuditRecord], head: (i64, &str)) -> Result<(), (i64, String)> {
    let mut chain = ChainCheck::default();
    for r in records {
        chain.push(r)?;
    }
    chain.finish(head)
}

/// A check of the audit chain fed one record at a time, oldest first, so a log of any length
/// is checked in constant memory (`sigil audit verify` reads it a page at a time).
#[derive(Debug, Default, Clone)]
pub struct ChainCheck {
    last_seq: i64,
    last_hash: String,
}

impl ChainCheck {
    /// The next record. `Err((seq, why))` names the first record that is wrong.
    pub fn push(&mut self, r: &AuditRecord) -> Result<(), (i64, String)> {
        let expected_seq = self.last_seq + 1;
        if r.seq != expected_seq {
            return Err((expected_seq, format!("record {expected_seq} is missing")));
        }
        if r.prev_hash != self.last_hash {
            return Err((
                r.seq,
                "its prev_hash is not the previous record's hash".into(),
            ));
        }
        let h = audit_hash(
            &r.prev_hash,
            r.seq,
            r.at,
            &r.actor,
            &r.action,
            &r.subject,
            &r.details,
        );
        if h != r.hash {
            return Err((r.seq, "its content does not match its hash (edited)".into()));
        }
        self.last_seq = r.seq;
        self.last_hash = h;
        Ok(())
    }

    /// The last record checked: its sequence number (0 before any) and hash.
    pub fn last(&self) -> (i64, &str) {
        (self.last_seq, &self.last_hash)
    }

    /// The end of the log: it must be the stored head.
    pub fn finish(&self, head: (i64, &str)) -> Result<(), (i64, String)> {
        if self.last() != head {
            return Err((
                head.0,
                format!(
                    "the log ends at record {} but the stored head says {} (records deleted or head edited)",
                    self.last_seq, head.0
                ),
            ));
        }
        Ok(())
    }
}

/// A CA's "CRL out of date" mark: how many revocations its published CRL lacks at most, and
/// since when (the first of them).
///
/// `revisions` counts every revocation of the issuer and only grows; `covered` is the count
/// the last published CRL was built after. A CRL that read the mark publishes `covered =
/// max(covered, its revisions)`, so a slow builder never clears revocations it did not see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlMark {
    /// The issuer (certificates' issuer text).
    pub issuer: String,
    /// Revocations of this issuer, ever.
    pub revisions: i64,
    /// How many of them the published CRL covers.
    pub covered: i64,
    /// When the first revocation the published CRL lacks was committed (Unix seconds;
    /// meaningful only while some are lacking).
    pub since: i64,
}

impl CrlMark {
    /// How many revocations the published CRL lacks (0: it is current).
    pub fn lacking(&self) -> i64 {
        (self.revisions - self.covered).max(0)
    }
}

/// Which time of a certificate [`Store::counts_per_span`] counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanOf {
    /// A valid certificate's notAfter: what ends when.
    ValidEnding,
    /// When the certificate was stored: issued here, or imported (`sigil bench fill`, a
    /// migration) on the day it was loaded.
    Stored,
}

impl SpanOf {
    /// The aggregate of [`Store::counts_per_span`], the same text on both engines: `$1` the
    /// start, `$2` the width, `$3` the end (SQLite numbers `$N` parameters in order of first
    /// appearance, which is this order). Each reads one index alone: (status, notAfter,
    /// profile) or (created_at, profile).
    pub(crate) fn query(self) -> &'static str {
        match self {
            SpanOf::ValidEnding => {
                "SELECT (not_after - $1) / $2 AS span, profile, COUNT(*) FROM certificates \
                 WHERE status = 'valid' AND not_after >= $1 AND not_after < $3 \
                 GROUP BY span, profile ORDER BY span, profile"
            }
            SpanOf::Stored => {
                "SELECT (created_at - $1) / $2 AS span, profile, COUNT(*) FROM certificates \
                 WHERE created_at >= $1 AND created_at < $3 \
                 GROUP BY span, profile ORDER BY span, profile"
            }
        }
    }

    /// The query's parameters for `spans` spans of `width` seconds from `start`: the start,
    /// the width (at least a second) and the end, saturating.
    pub(crate) fn bounds(start: i64, width: i64, spans: u32) -> (i64, i64, i64) {
        let width = width.max(1);
        (
            start,
            width,
            start.saturating_add(width.saturating_mul(i64::from(spans))),
        )
    }
}

/// How many certificates of one profile fall in one span (see [`Store::counts_per_span`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanCount {
    /// The span, from 0.
    pub span: u32,
    /// The profile.
    pub profile: String,
    /// Certificates.
    pub count: i64,
}

/// Filters for [`Store::certificates`].
#[derive(Debug, Clone, Default)]
pub struct CertFilter {
    /// Only this profile.
    pub profile: Option<String>,
    /// Only this status.
    pub status: Option<CertStatus>,
    /// Only valid certificates expiring within this many seconds from now (and not yet
    /// expired); listed soonest ending first instead of newest first. The window is the
    /// charts' and the expiry scan's: notAfter from now (still valid at its notAfter, RFC
    /// 5280 §4.1.2.5) up to, not including, now + the seconds.
    pub expiring_within_secs: Option<i64>,
    /// Only subjects containing this text.
    pub subject_contains: Option<String>,
    /// Only certificates issued to this device.
    pub device_id: Option<String>,
    /// Only certificates of this issuer (its text, as recorded).
    pub issuer: Option<String>,
    /// Only certificates whose notAfter is in this window (Unix seconds, start inclusive,
    /// end exclusive): a CRL partition.
    pub not_after_in: Option<(i64, i64)>,
    /// At most this many (newest first, or soonest ending first when expiring); 0: no limit.
    pub limit: usize,
}

/// Storage failures.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The write breaks an invariant (transaction taken by another key, serial reused, state
    /// already final, challenge used or expired).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The one-time challenge is used, expired, or for another profile; nothing was written.
    #[error("the one-time challenge was already used or has expired")]
    ChallengeSpent,
    /// What the write depended on changed meanwhile (the certificate being renewed was
    /// revoked or renewed by another request); nothing was written.
    #[error("{0}")]
    Stale(String),
    /// The certificate's serial is already recorded (a collision of random serials): sign
    /// again with another; nothing was written.
    #[error("the certificate serial is already recorded")]
    SerialTaken,
    /// The database cannot be reached or failed; retry later.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] crate::reason::Reason),
    /// The database schema is newer than this program, or the data is not what it should be.
    #[error("{0}")]
    Invalid(#[source] crate::reason::Reason),
}

/// A number kept in `ca_state` (absent: 0).
pub(crate) fn parse_number(v: Option<Vec<u8>>, name: &str) -> Result<i64, StoreError> {
    match v {
        None => Ok(0),
        Some(bytes) => String::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| {
                StoreError::Invalid(format!("ca_state `{name}` is not a number").into())
            }),
    }
}

pub use crate::clock::now;

fn rfc3339_seconds<S: serde::Serializer>(at: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::clock::rfc3339(*at))
}

/// RFC 3339 text of a time, for audit details.
pub(super) fn now_text(unix: i64) -> String {
    crate::clock::rfc3339(unix)
}

/// The details of a `challenge_created` record.
pub(super) fn challenge_details(ch: &ChallengeRecord) -> serde_json::Value {
    serde_json::json!({
        "profile": ch.profile,
        "bindings": serde_json::from_str::<serde_json::Value>(&ch.bindings)
            .unwrap_or_else(|_| ch.bindings.clone().into()),
        "expires_at": crate::clock::rfc3339(ch.expires_at),
    })
}

/// The details of a `token_created` record.
pub(super) fn token_details(t: &TokenRecord) -> serde_json::Value {
    serde_json::json!({
        "name": t.name, "role": t.role,
        "expires_at": t.expires_at.map(crate::clock::rfc3339),
        "scope": t.scope, "owner": t.owner, "awaiting_approval": t.awaiting_approval,
    })
}

/// The details of a `revoked` record: the reason by name (and its RFC 5280 code).
pub(super) fn revocation_details(reason: i32, reason_name: &str) -> serde_json::Value {
    serde_json::json!({"reason": reason_name, "reason_code": reason})
}

/// Where the store is: a PostgreSQL URL (with its pool size and the CA of its TLS
/// certificate), else the SQLite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// PostgreSQL URL; empty: SQLite.
    pub database_url: String,
    /// PostgreSQL connections.
    pub pool_size: usize,
    /// PEM CA certificate(s) for the PostgreSQL server's TLS certificate.
    pub ca_file: Option<std::path::PathBuf>,
    /// The SQLite file.
    pub sqlite_path: std::path::PathBuf,
}

/// How [`open`] may treat the store it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read and write an existing store whose schema is exactly this program's (tools).
    Existing,
    /// An existing store; pending migrations are applied (`serve`, `db migrate`).
    Migrate,
    /// Create the store when there is none (`sigil init`, `sigil db migrate --create`), and
    /// migrate.
    Create,
}

/// Open the store the configuration names: PostgreSQL when `database.url` is set, else SQLite
/// at `<data_dir>/sigil.db`. A store is never created implicitly: without
/// [`OpenMode::Create`], a missing SQLite file or an empty PostgreSQL database is refused with
/// the fix (a second, empty store would serve the same CA without its revocations). Without
/// [`OpenMode::Migrate`], a schema that is not exactly this program's is refused, so a tool
/// never changes a shared database behind the servers' backs.
pub async fn open(settings: &StoreSettings, mode: OpenMode) -> Result<Arc<dyn Store>, StoreError> {
    if settings.database_url.is_empty() {
        let migrate = mode != OpenMode::Existing;
        let path = settings.sqlite_path.clone();
        if mode != OpenMode::Create && !path.exists() {
            return Err(StoreError::Invalid(format!(
                "no store at {}: a store is made only by `sigil init` (with the CA) or `sigil db migrate --create`; if this CA's store is elsewhere, set server.data_dir (SIGIL_SERVER_DATA_DIR) or database.url to it",
                path.display()
            ).into()));
        }
        Ok(Arc::new(SqliteStore::open_with(&path, migrate).await?))
    } else {
        Ok(Arc::new(
            PostgresStore::connect_tls(
                &settings.database_url,
                settings.pool_size,
                mode,
                settings.ca_file.as_deref(),
            )
            .await?,
        ))
    }
}

fn check_version(current: i64, migrate: bool) -> Result<(), StoreError> {
    if current > SCHEMA_VERSION {
        return Err(StoreError::Invalid(format!(
            "the database schema is version {current}, newer than this sigil (version {SCHEMA_VERSION}): upgrade sigil"
        ).into()));
    }
    if !migrate && current < SCHEMA_VERSION {
        return Err(StoreError::Invalid(format!(
            "the database schema is version {current}; this sigil needs {SCHEMA_VERSION}: run `sigil db migrate`"
        ).into()));
    }
    Ok(())
}

fn state_from(
    state: &str,
    serial: Option<String>,
    reason: Option<String>,
    reserved_until: Option<i64>,
) -> TransactionState {
    match state {
        "issued" => TransactionState::Issued {
            serial: serial.unwrap_or_default(),
        },
        "rejected" => TransactionState::Rejected {
            reason: reason.unwrap_or_default(),
        },
        "issuing" => TransactionState::Issuing {
            until: reserved_until.unwrap_or(0),
        },
        _ => TransactionState::Pending,
    }
}
