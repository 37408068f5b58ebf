//! The storage interface, one small trait per topic. Each engine implements every one; a
//! service takes the traits it uses, or [`Store`] (all of them).

use async_trait::async_trait;

use super::{
    AuditQuery, AuditRecord, CertFilter, CertificateRecord, ChallengeRecord, CrlEntry, CrlMark,
    OcspAnswer, OcspDue, PersonRecord, PushRecord, RegistrationRecord, RegistrationState,
    SessionRecord, SpanCount, SpanOf, StoreError, TokenRecord, TransactionRecord,
};

/// SCEP transactions: reserved before the CA signs, PENDING, issued with their certificate, rejected.
#[async_trait]
pub trait TransactionStore: Send + Sync {
    /// The transaction with this record key ([`TransactionRecord::key`]), if any.
    async fn transaction(&self, id: &str) -> Result<Option<TransactionRecord>, StoreError>;
    /// Every transaction with this transactionID (several requesters may use one), oldest
    /// first.
    async fn transactions_named(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<TransactionRecord>, StoreError>;
    /// Reserve a transaction before its certificate is signed, so the CA key signs each
    /// certificate once: the record is written `issuing` for `lease_secs`, held by
    /// `tx.holder`, without its CSR (which may carry a challenge password), and `challenge`
    /// (hash), when given, is claimed for it (not yet spent). A `tx` in state PENDING is an
    /// approval: it claims the PENDING record instead. `Ok(None)`: reserved (or a lapsed
    /// reservation of the same key taken over). `Ok(Some(record))`: a record under this key
    /// exists (another reservation still running, PENDING and claimed, final, or another
    /// key's); nothing was written. `ChallengeSpent` when the challenge is used, expired, for
    /// another profile or claimed by another live reservation.
    async fn reserve(
        &self,
        tx: &TransactionRecord,
        challenge: Option<&str>,
        lease_secs: i64,
    ) -> Result<Option<TransactionRecord>, StoreError>;
    /// Give up a reservation that will not be issued (the certificate could not be made):
    /// the record goes and its challenge is free again (an approval's claim is let go).
    /// Only the reservation's `holder` can; anyone else's call changes nothing.
    async fn release(&self, id: &str, holder: &str) -> Result<(), StoreError>;
    /// Drop reservations that lapsed (their node stopped before recording anything): the one
    /// under key `id`, or all of them. Their challenges are free again; each dropped
    /// reservation is recorded in the audit chain (`reservation_abandoned`). Returns how many.
    async fn abandon_lapsed(&self, id: Option<&str>, actor: &str) -> Result<u64, StoreError>;
    /// Record a new PENDING transaction, consuming `challenge` (hash) in the same database
    /// transaction when given. Conflict when the ID exists or the challenge is used up.
    async fn insert_pending(
        &self,
        tx: &TransactionRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError>;
    /// Record an issued certificate and mark its transaction issued, atomically, consuming
    /// `challenge` when given (claimed by the reservation; it must be the one the record
    /// names) and, for a renewal (`tx.renews`), marking the renewed certificate as renewed by
    /// this one. The transaction moves from its reservation, or its claimed PENDING record,
    /// held by `tx.holder`. `Conflict` when there is neither for this key and holder;
    /// `SerialTaken` when the serial exists; `ChallengeSpent`; `Stale` when the renewed
    /// certificate is no longer valid or already renewed. Nothing is written on error.
    async fn record_issued(
        &self,
        tx: &TransactionRecord,
        cert: &CertificateRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError>;
    /// Mark a PENDING transaction rejected.
    async fn reject(&self, id: &str, reason: &str, actor: &str) -> Result<(), StoreError>;
    /// PENDING transactions, oldest first.
    async fn pending(&self) -> Result<Vec<TransactionRecord>, StoreError>;
}

/// Issued certificates: lookup, listing, revocation (with its CRL mark), expiry.
#[async_trait]
pub trait CertificateStore: Send + Sync {
    /// The certificate with this serial (hex), if any.
    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;
    /// Certificates matching `filter`, newest first.
    async fn certificates(&self, filter: &CertFilter)
        -> Result<Vec<CertificateRecord>, StoreError>;
    /// Revoke a valid certificate with an RFC 5280 reason code (and its name, for the record); false when there is no valid
    /// certificate with this serial. Audited, and its issuer's CRL marked out of date
    /// ([`Store::crl_mark`]), in the same transaction.
    async fn revoke_certificate(
        &self,
        serial: &str,
        reason: i32,
        reason_name: &str,
        actor: &str,
    ) -> Result<bool, StoreError>;
    /// Load certificates issued elsewhere (a migration; `sigil bench fill`) in one database
    /// transaction: a serial already stored is skipped; the CRL marks of their issuers count
    /// the revoked ones; one audit record `certificates_imported` (how many, how many revoked,
    /// first and last serial). Returns how many were loaded.
    async fn import_certificates(
        &self,
        certs: &[CertificateRecord],
        actor: &str,
    ) -> Result<usize, StoreError>;
    /// The "CRL out of date" mark of the CA whose certificates have issuer `issuer`: set by
    /// every revocation, cleared by the CRL publication that covers it.
    async fn crl_mark(&self, issuer: &str) -> Result<CrlMark, StoreError>;
    /// Valid certificates that end within `within_secs` of `at` (notAfter in
    /// `[at, at + within_secs)`, the window of every expiry query), counted per profile.
    async fn expiring_counts(
        &self,
        at: i64,
        within_secs: i64,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Certificates counted per profile in `spans` consecutive spans of `width` seconds from
    /// `start`, by the time `by` names: one aggregate query, whatever the fleet's size. Only
    /// the spans and profiles with certificates, in span then profile order.
    async fn counts_per_span(
        &self,
        by: SpanOf,
        start: i64,
        width: i64,
        spans: u32,
    ) -> Result<Vec<SpanCount>, StoreError>;
    /// Valid certificates ending within `within_secs` of `at` that the expiry webhook has not
    /// announced, soonest first, at most `limit`.
    async fn expiring_unannounced(
        &self,
        at: i64,
        within_secs: i64,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError>;
    /// Mark a certificate's expiry as announced (audited as `expiry_announced`, once).
    async fn expiry_announced(&self, serial: &str, actor: &str) -> Result<(), StoreError>;
}

/// One-time challenges, kept as hashes.
#[async_trait]
pub trait ChallengeStore: Send + Sync {
    /// Store a new one-time challenge (its hash).
    async fn insert_challenge(&self, c: &ChallengeRecord, actor: &str) -> Result<(), StoreError>;
    /// The challenge with this hash, if any (used or not).
    async fn challenge(&self, hash: &str) -> Result<Option<ChallengeRecord>, StoreError>;
    /// The challenge with this id, if any (used or not).
    async fn challenge_by_id(&self, id: &str) -> Result<Option<ChallengeRecord>, StoreError>;
}

/// API tokens, kept as hashes.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Store a new API token (its hash).
    async fn insert_token(&self, t: &TokenRecord, actor: &str) -> Result<(), StoreError>;
    /// The active token (not revoked, not expired) with this hash; marks it used.
    async fn use_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every token, newest first (hashes included; callers must not show them).
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Revoke a token by id; false when there is no such active token.
    async fn revoke_token(&self, id: &str, actor: &str) -> Result<bool, StoreError>;
    /// A second admin approves a token that waits for approval; false when there is no such
    /// token waiting.
    async fn approve_token(&self, id: &str, actor: &str) -> Result<bool, StoreError>;
}

/// People who signed in, and browser sessions and sign-ins in progress.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Record a sign-in: the person is added, or their email, name, roles and last sign-in
    /// updated.
    async fn upsert_person(&self, p: &PersonRecord) -> Result<(), StoreError>;
    /// The person with this id.
    async fn person(&self, id: &str) -> Result<Option<PersonRecord>, StoreError>;
    /// Store a new session or sign-in.
    async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError>;
    /// The live session with this id, its last use now; `None` when there is none, or it
    /// passed its end or was idle longer than `idle_secs` (then it is removed).
    async fn session(&self, id: &str, idle_secs: i64) -> Result<Option<SessionRecord>, StoreError>;
    /// End a session; false when there was none.
    async fn delete_session(&self, id: &str) -> Result<bool, StoreError>;
    /// Take a sign-in in progress (once: it is removed), unless it has expired.
    async fn take_login(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Remove ended sessions and sign-ins; returns how many.
    async fn purge_sessions(&self) -> Result<u64, StoreError>;
}

/// The hash-chained audit log. Every write method of the other traits appends its own record in its own database transaction; this appends records for decisions that change no other data.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Append a record to the audit log for a decision that changes no other data (a refused
    /// request, a failed login). Every write method above appends its own record in the same
    /// database transaction as its change.
    async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &serde_json::Value,
    ) -> Result<(), StoreError>;
    /// Audit records after `after_seq`, oldest first, at most `limit` (0: all).
    async fn audit_records(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// The newest audit records matching `query`, newest first, at most `limit`: read from the
    /// end of the log, so a page of the newest costs the same whatever the log's length.
    async fn audit_newest(
        &self,
        query: &AuditQuery,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// The stored head of the audit log: the last sequence number and hash.
    async fn audit_head(&self) -> Result<(i64, String), StoreError>;
}

/// Registrations of derived credentials, and the expiry of what waited too long.
#[async_trait]
pub trait RegistrationStore: Send + Sync {
    /// Store a new registration (audited as `registration_created`).
    async fn insert_registration(
        &self,
        r: &RegistrationRecord,
        actor: &str,
    ) -> Result<(), StoreError>;
    /// The registration with this ID, if any.
    async fn registration(&self, id: &str) -> Result<Option<RegistrationRecord>, StoreError>;
    /// Registrations, newest first: all, or one person's (by email); at most `limit`.
    async fn registrations(
        &self,
        email: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RegistrationRecord>, StoreError>;
    /// One device's registrations for one credential, newest first (the device as its
    /// directory names it).
    async fn device_registrations(
        &self,
        credential: &str,
        device_id: &str,
    ) -> Result<Vec<RegistrationRecord>, StoreError>;
    /// Write the mutable fields of `r` if the stored state is still `from` (compare and set),
    /// with an audit record `action` by `actor` in the same database transaction. False when
    /// the registration moved on meanwhile (nothing written).
    async fn update_registration(
        &self,
        r: &RegistrationRecord,
        from: RegistrationState,
        action: &str,
        actor: &str,
        details: &serde_json::Value,
    ) -> Result<bool, StoreError>;
    /// For an approved registration (or an issued one, whose challenge then renews the
    /// certificate it holds): store a new one-time challenge, void the previous one, and
    /// remember the new one's hash, atomically (audited as `scep_payload_collected`). False
    /// when the registration is neither.
    async fn registration_challenge(
        &self,
        id: &str,
        challenge: &ChallengeRecord,
        actor: &str,
    ) -> Result<bool, StoreError>;
    /// Expire what waited too long: live registrations past their `expires_at` (their unused
    /// challenge is voided), and PENDING enrollments of each `(profile, created_before)` (they
    /// become rejected with [`EXPIRED_REASON`]). Each is audited as `expired`. Returns how many
    /// registrations and how many enrollments expired.
    async fn expire(
        &self,
        at: i64,
        pending: &[(String, i64)],
    ) -> Result<(usize, usize), StoreError>;
}

/// Deliveries to the MDM: one per registration and purpose, retried with backoff until
/// delivered or failed for good.
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Queue `p` unless the registration already has a push with its key (audited as
    /// `push_queued`). True when queued.
    async fn queue_push(&self, p: &PushRecord, actor: &str) -> Result<bool, StoreError>;
    /// Take push `id` if it is pending and due at `now`; it is not due again before
    /// `lease_until`, so two nodes never send it at once. True when taken.
    async fn claim_push(&self, id: &str, now: i64, lease_until: i64) -> Result<bool, StoreError>;
    /// Record an attempt's outcome (state, attempts, next_at, message), audited as `action`
    /// by `actor` in the same database transaction, if the push is still held under the
    /// claim `claimed_until` (the `lease_until` of [`PushStore::claim_push`]): a node whose
    /// lease ran out, and another node took the push, records nothing. True when recorded.
    async fn settle_push(
        &self,
        p: &PushRecord,
        claimed_until: i64,
        action: &str,
        actor: &str,
    ) -> Result<bool, StoreError>;
    /// Pending pushes due at `now`, oldest first, at most `limit`.
    async fn due_pushes(&self, now: i64, limit: usize) -> Result<Vec<PushRecord>, StoreError>;
    /// Registrations whose delivery may need a follow-up: delivered (a `deliver` push that
    /// did not fail), never withdrawn, of a credential in `windows`, and either ended
    /// (rejected, expired, their certificate revoked) or holding a certificate valid at `now`
    /// that ends within its credential's window (`windows`: credential and window in seconds;
    /// 0, no renewals) with no renewal push for it yet. Their ids, in order. One query: the
    /// push round no longer reads every push and every registration.
    async fn push_follow_ups(
        &self,
        now: i64,
        windows: &[(String, i64)],
    ) -> Result<Vec<String>, StoreError>;
    /// The pushes of one registration (oldest first), or every push (newest first, at most
    /// `limit`).
    async fn pushes(
        &self,
        registration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PushRecord>, StoreError>;
}

/// Pre-produced OCSP answers (RFC 5019), shared by every node.
#[async_trait]
pub trait OcspStore: Send + Sync {
    /// The stored answer for `serial`, if it still states the certificate's status and its
    /// nextUpdate is after `fresh_until`.
    async fn ocsp_answer(
        &self,
        serial: &str,
        fresh_until: i64,
    ) -> Result<Option<OcspAnswer>, StoreError>;
    /// Store answers (in one database transaction), each replacing its certificate's
    /// previous one unless that one is newer.
    async fn put_ocsp_answers(&self, answers: &[OcspAnswer]) -> Result<(), StoreError>;
    /// The certificates [`OcspDue`] describes, in serial order.
    async fn ocsp_due(&self, q: &OcspDue<'_>) -> Result<Vec<CertificateRecord>, StoreError>;
}

/// Named pieces of CA state (certificates, generations, the binding, CRLs) and CRL numbering.
#[async_trait]
pub trait CaStateStore: Send + Sync {
    /// A named piece of CA state (the current CRL, for example).
    async fn state(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Set a named piece of CA state.
    async fn set_state(&self, name: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Set a named piece of CA state only if it is still `expected` (None: not set), so that
    /// two nodes adding to one list cannot lose each other's addition. True when set; false
    /// when it had changed (read it again and retry).
    async fn replace_state(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, StoreError>;
    /// The next CRL number (one more than any before, across all nodes) and the revoked
    /// certificates of `issuer` (only those whose
    /// notAfter is in `not_after_in`, when given), read after the number is taken and before
    /// anyone, on any node or process, can take the next one: a CRL numbered after another
    /// lists at least what that one did (RFC 5280 §3.3: an entry leaves a scope's CRLs only
    /// once the certificate has expired).
    async fn crl_listing(
        &self,
        issuer: &str,
        not_after_in: Option<(i64, i64)>,
    ) -> Result<(i64, Vec<CrlEntry>), StoreError>;
    /// Publish a CRL as the current one of CA `ca` (state `crl:<ca>`), unless a CRL with a
    /// higher number was published for it meanwhile (by another node): the published number
    /// never goes backwards. True when published. `covers` is the issuer's mark as read
    /// before the CRL's revocation list ([`Store::crl_mark`]): the mark is cleared if no
    /// revocation came since.
    async fn publish_crl(
        &self,
        ca: &str,
        number: i64,
        der: &[u8],
        covers: &CrlMark,
    ) -> Result<bool, StoreError>;
}

/// What several nodes share: leadership of background tasks, and a cheap liveness check.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Is this node the one that runs background task `task`? With PostgreSQL the first node
    /// to ask takes a session advisory lock and keeps it while it lives; when it dies, another
    /// node's next call takes over. With SQLite (one node) always true.
    async fn lead(&self, task: &str) -> Result<bool, StoreError>;
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The schema version the database is at now (another node may have migrated it since
    /// this one opened it).
    async fn schema_version(&self) -> Result<i64, StoreError>;
}

/// Every topic: what an engine is, and what the authority holds.
pub trait Store:
    IdentityStore
    + OcspStore
    + PushStore
    + TransactionStore
    + CertificateStore
    + ChallengeStore
    + TokenStore
    + AuditStore
    + RegistrationStore
    + CaStateStore
    + ClusterStore
{
}

impl<T> Store for T where
    T: IdentityStore
        + OcspStore
        + PushStore
        + TransactionStore
        + CertificateStore
        + ChallengeStore
        + TokenStore
        + AuditStore
        + RegistrationStore
        + CaStateStore
        + ClusterStore
{
}
