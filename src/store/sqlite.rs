//! The embedded engine: one SQLite file in WAL mode, written by one connection at a time on
//! blocking threads.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::sqlite_expiry as expiry;
use super::sqlite_registrations as reg;
use super::{
    now, state_from, AuditRecord, CertFilter, CertStatus, CertificateRecord, ChallengeRecord,
    CrlMark, RegistrationRecord, RegistrationState, Store, StoreError, TokenRecord,
    TransactionRecord, TransactionState,
};

/// Escape `%`, `_` and `\` for LIKE … ESCAPE '\'.
pub(crate) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/sqlite_0001_initial.sql")),
    (2, include_str!("migrations/sqlite_0002_tokens.sql")),
    (3, include_str!("migrations/sqlite_0003_audit.sql")),
    (4, include_str!("migrations/sqlite_0004_registrations.sql")),
    (5, include_str!("migrations/sqlite_0005_expiry.sql")),
    (6, include_str!("migrations/sqlite_0006_trust.sql")),
];

/// SQLite engine.
#[derive(Clone)]
pub struct SqliteStore {
    pub(super) conn: Arc<Mutex<Connection>>,
    /// Issuances waiting to share a commit (see `sqlite_issue`).
    issues: Arc<super::sqlite_issue::IssueQueue>,
}

pub(super) fn err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn migrate(conn: &mut Connection, apply: bool) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(err)?;
    let tx = conn.transaction().map_err(err)?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    super::check_version(current, apply)?;
    for (version, sql) in MIGRATIONS {
        if *version > current {
            tx.execute_batch(sql).map_err(err)?;
            if *version == 6 {
                super::transaction_keys::sqlite(&tx)?;
            }
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [version],
            )
            .map_err(err)?;
            tracing::info!(version, "applied SQLite migration");
        }
    }
    tx.commit().map_err(err)
}

pub(super) fn tx_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TransactionRecord> {
    Ok(TransactionRecord {
        id: r.get(0)?,
        transaction_id: r.get(1)?,
        renews: r.get(2)?,
        profile: r.get(3)?,
        key_sha256: r.get(4)?,
        signer_sha256: r.get(5)?,
        state: state_from(&r.get::<_, String>(6)?, r.get(7)?, r.get(8)?, r.get(11)?),
        csr: r.get::<_, Option<Vec<u8>>>(9)?.unwrap_or_default(),
        challenge_id: r.get(10)?,
    })
}

pub(super) const TOKEN_COLUMNS: &str =
    "id, name, role, hash, created_at, expires_at, revoked_at, last_used_at, scope";

pub(super) fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        hash: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
        last_used_at: r.get(7)?,
        scope: super::TokenScope::from_json(&r.get::<_, String>(8)?),
    })
}

pub(super) const TX_COLUMNS: &str = "id, transaction_id, renews, profile, key_sha256, \
     signer_sha256, state, serial, reason, csr, challenge_id, reserved_until";
/// The columns a new certificate row is written with (and `created_at`).
pub(super) const CERT_INSERT_COLUMNS: &str =
    "serial, der, subject, sans, issuer, not_before, not_after, profile, \
     status, revoked_at, revocation_reason, transaction_id, device_id";
/// The columns [`cert_from_row`] reads.
pub(super) const CERT_COLUMNS: &str =
    "serial, der, subject, sans, issuer, not_before, not_after, profile, \
     status, revoked_at, revocation_reason, transaction_id, device_id, renewed_by";

pub(super) fn cert_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CertificateRecord> {
    Ok(CertificateRecord {
        serial: r.get(0)?,
        der: r.get(1)?,
        subject: r.get(2)?,
        sans: r.get(3)?,
        issuer: r.get(4)?,
        not_before: r.get(5)?,
        not_after: r.get(6)?,
        profile: r.get(7)?,
        status: CertStatus::parse(&r.get::<_, String>(8)?),
        revoked_at: r.get(9)?,
        revocation_reason: r.get(10)?,
        transaction_id: r.get(11)?,
        device_id: r.get(12)?,
        renewed_by: r.get(13)?,
    })
}

/// Append an audit record inside `t`, after the head (locked by the IMMEDIATE transaction).
pub(super) fn append_audit(
    t: &Connection,
    actor: &str,
    action: &str,
    subject: &str,
    details: &serde_json::Value,
) -> Result<(), StoreError> {
    let (seq, prev): (i64, String) = t
        .prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(err)?;
    let (seq, at, details) = (seq + 1, now(), details.to_string());
    let hash = super::audit_hash(&prev, seq, at, actor, action, subject, &details);
    t.prepare_cached(
        "INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            seq, at, actor, action, subject, details, prev, hash
        ])
    })
    .map_err(err)?;
    t.prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")
        .and_then(|mut s| s.execute(params![seq, hash]))
        .map_err(err)?;
    Ok(())
}

/// Consume a one-time challenge inside `tx` for transaction record `record`: exactly one
/// unused row, either claimed by that record's reservation or unclaimed (or claimed by a
/// reservation that lapsed) and unexpired.
pub(super) fn consume(
    tx: &Connection,
    hash: &str,
    profile: &str,
    record: &str,
    by: &str,
) -> Result<(), StoreError> {
    let at = now();
    let n = tx
        .prepare_cached(
            "UPDATE challenges SET used_at = ?1, used_by = ?2, reserved_by = NULL, \
             reserved_until = NULL \
             WHERE hash = ?3 AND profile = ?4 AND used_at IS NULL AND (reserved_by = ?5 \
             OR (expires_at > ?1 AND (reserved_by IS NULL OR reserved_until <= ?1)))",
        )
        .and_then(|mut s| s.execute(params![at, by, hash, profile, record]))
        .map_err(err)?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::ChallengeSpent)
    }
}

/// Claim a challenge for a reservation: unused, unexpired, and not claimed by another live
/// reservation.
fn claim(
    t: &Connection,
    hash: &str,
    profile: &str,
    record: &str,
    until: i64,
) -> Result<(), StoreError> {
    let at = now();
    let n = t
        .prepare_cached(
            "UPDATE challenges SET reserved_by = ?1, reserved_until = ?2 \
             WHERE hash = ?3 AND profile = ?4 AND used_at IS NULL AND expires_at > ?5 \
             AND (reserved_by IS NULL OR reserved_by = ?1 OR reserved_until <= ?5)",
        )
        .and_then(|mut s| s.execute(params![record, until, hash, profile, at]))
        .map_err(err)?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::ChallengeSpent)
    }
}

pub(super) fn reserve_rows(
    t: &Connection,
    rec: &TransactionRecord,
    challenge: Option<&str>,
    lease_secs: i64,
) -> Result<Option<TransactionRecord>, StoreError> {
    let at = now();
    let until = at + lease_secs.max(1);
    let existing = t
        .prepare_cached(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE id = ?1"
        ))
        .and_then(|mut s| s.query_row([&rec.id], tx_from_row).optional())
        .map_err(err)?;
    let take_over = match &existing {
        None if rec.state == TransactionState::Pending => {
            return Err(StoreError::Conflict(format!(
                "transaction {} is not pending",
                rec.transaction_id
            )))
        }
        None => false,
        // An approval claims the PENDING record, unless another approval holds it.
        Some(old)
            if old.state == TransactionState::Pending
                && rec.state == TransactionState::Pending
                && old.key_sha256 == rec.key_sha256 =>
        {
            let n = t
                .prepare_cached(
                    "UPDATE transactions SET reserved_until = ?1 WHERE id = ?2 \
                     AND state = 'pending' AND (reserved_until IS NULL OR reserved_until <= ?3)",
                )
                .and_then(|mut s| s.execute(params![until, rec.id, at]))
                .map_err(err)?;
            return Ok(if n == 1 { None } else { existing });
        }
        Some(old) => match old.state {
            // A reservation of the same key that lapsed (its node died mid-way): take it.
            TransactionState::Issuing { until }
                if until <= at && old.key_sha256 == rec.key_sha256 =>
            {
                true
            }
            _ => return Ok(existing),
        },
    };
    if let Some(h) = challenge {
        claim(t, h, &rec.profile, &rec.id, until)?;
    }
    if take_over {
        t.prepare_cached(
            "UPDATE transactions SET reserved_until = ?1, challenge_id = ?2, updated_at = ?3 \
             WHERE id = ?4 AND state = 'issuing'",
        )
        .and_then(|mut s| s.execute(params![until, rec.challenge_id, at, rec.id]))
        .map_err(err)?;
    } else {
        t.prepare_cached(
            "INSERT INTO transactions (id, transaction_id, renews, profile, key_sha256, \
             signer_sha256, state, csr, challenge_id, reserved_until, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'issuing', ?7, ?8, ?9, ?10, ?10)",
        )
        .and_then(|mut s| {
            s.execute(params![
                rec.id,
                rec.transaction_id,
                rec.renews,
                rec.profile,
                rec.key_sha256,
                rec.signer_sha256,
                rec.csr,
                rec.challenge_id,
                until,
                at
            ])
        })
        .map_err(err)?;
    }
    Ok(None)
}

/// Make the database file, if it is not there, readable by its owner only, in a directory
/// only its owner can enter, whatever the umask (SQLite gives the `-wal` and `-shm` files the
/// database file's permissions).
fn private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |what: &str, p: &Path, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot {what} {}: {e}", p.display()))
    };
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("restrict", dir, e))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io("create", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("restrict", path, e))
}

impl SqliteStore {
    /// Open (creating) the database file and apply migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, true).await
    }

    /// Open; apply migrations only with `migrate` (see [`super::open`]).
    pub async fn open_with(path: &Path, migrate_schema: bool) -> Result<SqliteStore, StoreError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            private_file(&path)?;
            let mut conn = Connection::open(&path).map_err(|e| {
                StoreError::Unavailable(format!("cannot open {}: {e}", path.display()))
            })?;
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
            )
            .map_err(err)?;
            // Take the write lock when a transaction begins: a read that later upgrades to a
            // write would fail at once with SQLITE_BUSY when another process (the CLI, another
            // tool) writes, without waiting for busy_timeout.
            conn.set_transaction_behavior(TransactionBehavior::Immediate);
            migrate(&mut conn, migrate_schema)?;
            Ok(SqliteStore {
                conn: Arc::new(Mutex::new(conn)),
                issues: Default::default(),
            })
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    pub(super) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn transaction(&self, id: &str) -> Result<Option<TransactionRecord>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TX_COLUMNS} FROM transactions WHERE id = ?1"
            ))
            .and_then(|mut s| s.query_row([id], tx_from_row).optional())
            .map_err(err)
        })
        .await
    }

    async fn transactions_named(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let tid = transaction_id.to_owned();
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {TX_COLUMNS} FROM transactions WHERE transaction_id = ?1 \
                     ORDER BY created_at, id"
                ))
                .map_err(err)?;
            let rows = stmt.query_map([tid], tx_from_row).map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }

    async fn reserve(
        &self,
        tx: &TransactionRecord,
        challenge: Option<&str>,
        lease_secs: i64,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        let job = super::sqlite_issue::Write::Reserve {
            tx: Box::new(tx.clone()),
            challenge: challenge.map(str::to_owned),
            lease_secs,
        };
        let (conn, issues) = (self.conn.clone(), self.issues.clone());
        match tokio::task::spawn_blocking(move || issues.write(&conn, job))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??
        {
            super::sqlite_issue::Written::Reserved(existing) => Ok(existing.map(|b| *b)),
            super::sqlite_issue::Written::Issued => Err(StoreError::Unavailable(
                "the writer answered another request".into(),
            )),
        }
    }

    async fn release(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            t.execute(
                "UPDATE challenges SET reserved_by = NULL, reserved_until = NULL \
                 WHERE reserved_by = ?1 AND used_at IS NULL",
                [&id],
            )
            .map_err(err)?;
            t.execute(
                "DELETE FROM transactions WHERE id = ?1 AND state = 'issuing'",
                [&id],
            )
            .map_err(err)?;
            t.execute(
                "UPDATE transactions SET reserved_until = NULL WHERE id = ?1 AND state = 'pending'",
                [&id],
            )
            .map_err(err)?;
            t.commit().map_err(err)
        })
        .await
    }

    async fn insert_pending(
        &self,
        tx: &TransactionRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let (tx_rec, challenge, actor) =
            (tx.clone(), challenge.map(str::to_owned), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            if let Some(h) = &challenge {
                consume(&t, h, &tx_rec.profile, &tx_rec.id, &tx_rec.transaction_id)?;
            }
            let at = now();
            t.execute(
                "INSERT INTO transactions (id, transaction_id, renews, profile, key_sha256, \
                 signer_sha256, state, csr, challenge_id, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9, ?9)",
                params![
                    tx_rec.id,
                    tx_rec.transaction_id,
                    tx_rec.renews,
                    tx_rec.profile,
                    tx_rec.key_sha256,
                    tx_rec.signer_sha256,
                    tx_rec.csr,
                    tx_rec.challenge_id,
                    at
                ],
            )
            .map_err(err)?;
            let mut details = super::provenance(&tx_rec);
            details["profile"] = tx_rec.profile.clone().into();
            append_audit(&t, &actor, "pending", &tx_rec.transaction_id, &details)?;
            t.commit().map_err(err)
        })
        .await
    }

    async fn record_issued(
        &self,
        tx: &TransactionRecord,
        cert: &CertificateRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let job = super::sqlite_issue::Write::Issue(Box::new(super::Issuance::new(
            tx, cert, challenge, actor,
        )));
        let (conn, issues) = (self.conn.clone(), self.issues.clone());
        tokio::task::spawn_blocking(move || issues.write(&conn, job))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .map(|_| ())
    }

    async fn reject(&self, id: &str, reason: &str, actor: &str) -> Result<(), StoreError> {
        let (id, reason, actor) = (id.to_owned(), reason.to_owned(), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let tid: Option<String> = t
                .query_row(
                    "UPDATE transactions SET state = 'rejected', reason = ?1, csr = NULL, \
                     updated_at = ?2 WHERE id = ?3 AND state = 'pending' \
                     RETURNING transaction_id",
                    params![reason, now(), id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            let Some(tid) = tid else {
                return Err(StoreError::Conflict(format!(
                    "transaction {id} is not pending"
                )));
            };
            append_audit(
                &t,
                &actor,
                "rejected",
                &tid,
                &serde_json::json!({"reason": reason, "transaction": id}),
            )?;
            t.commit().map_err(err)
        })
        .await
    }

    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let serial = serial.to_owned();
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = ?1"),
                [serial],
                cert_from_row,
            )
            .optional()
            .map_err(err)
        })
        .await
    }

    async fn certificates(
        &self,
        filter: &CertFilter,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let f = filter.clone();
        self.with(move |c| {
            let at = now();
            let mut sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(p) = &f.profile {
                args.push(p.clone().into());
                sql.push_str(&format!(" AND profile = ?{}", args.len()));
            }
            if let Some(s) = f.status {
                args.push(s.as_str().to_string().into());
                sql.push_str(&format!(" AND status = ?{}", args.len()));
            }
            if let Some(w) = f.expiring_within_secs {
                args.push(at.into());
                sql.push_str(&format!(" AND not_after > ?{}", args.len()));
                args.push((at + w).into());
                sql.push_str(&format!(" AND not_after <= ?{}", args.len()));
            }
            if let Some(s) = &f.subject_contains {
                args.push(format!("%{s}%").into());
                sql.push_str(&format!(" AND subject LIKE ?{}", args.len()));
            }
            if let Some(d) = &f.device_id {
                args.push(d.clone().into());
                sql.push_str(&format!(" AND device_id = ?{}", args.len()));
            }
            sql.push_str(" ORDER BY created_at DESC, serial");
            if f.limit > 0 {
                sql.push_str(&format!(" LIMIT {}", f.limit));
            }
            let mut stmt = c.prepare(&sql).map_err(err)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), cert_from_row)
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }

    async fn pending(&self) -> Result<Vec<TransactionRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {TX_COLUMNS} FROM transactions WHERE state = 'pending' \
                     ORDER BY created_at, id"
                ))
                .map_err(err)?;
            let rows = stmt.query_map([], tx_from_row).map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }

    async fn insert_challenge(&self, ch: &ChallengeRecord, actor: &str) -> Result<(), StoreError> {
        self.insert_challenge_impl(ch, actor).await
    }

    async fn challenge(&self, hash: &str) -> Result<Option<ChallengeRecord>, StoreError> {
        self.challenge_impl("hash", hash).await
    }

    async fn challenge_by_id(&self, id: &str) -> Result<Option<ChallengeRecord>, StoreError> {
        self.challenge_impl("id", id).await
    }

    async fn lead(&self, _task: &str) -> Result<bool, StoreError> {
        self.lead_impl(_task).await
    }

    async fn state(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.state_impl(name).await
    }

    async fn set_state(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.set_state_impl(name, value).await
    }

    async fn next_crl_number(&self) -> Result<i64, StoreError> {
        self.next_crl_number_impl().await
    }

    async fn insert_token(&self, tok: &TokenRecord, actor: &str) -> Result<(), StoreError> {
        self.insert_token_impl(tok, actor).await
    }

    async fn revoke_certificate(
        &self,
        serial: &str,
        reason: i32,
        actor: &str,
    ) -> Result<bool, StoreError> {
        self.revoke_certificate_impl(serial, reason, actor).await
    }

    async fn use_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.use_token_impl(hash).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.tokens_impl().await
    }

    async fn revoke_token(&self, id: &str, actor: &str) -> Result<bool, StoreError> {
        self.revoke_token_impl(id, actor).await
    }

    async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.audit_impl(actor, action, subject, details).await
    }

    async fn audit_records(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_records_impl(after_seq, limit).await
    }

    async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        self.audit_head_impl().await
    }

    async fn publish_crl(
        &self,
        ca: &str,
        number: i64,
        der: &[u8],
        covers: &CrlMark,
    ) -> Result<bool, StoreError> {
        let (crl_key, number_key) = (format!("crl:{ca}"), format!("crl_published_number:{ca}"));
        let (der, covers) = (der.to_vec(), covers.clone());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let published: Option<Vec<u8>> = t
                .query_row(
                    "SELECT value FROM ca_state WHERE name = ?1",
                    [&number_key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            if super::parse_number(published, &number_key)? >= number {
                return Ok(false);
            }
            for (name, value) in [
                (number_key.as_str(), number.to_string().into_bytes()),
                (crl_key.as_str(), der.clone()),
            ] {
                t.execute(
                    "INSERT INTO ca_state (name, value) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    params![name, value],
                )
                .map_err(err)?;
            }
            // Revocations that came after the list was read keep the mark.
            t.execute(
                "DELETE FROM crl_marks WHERE issuer = ?1 AND revisions = ?2",
                params![covers.issuer, covers.revisions],
            )
            .map_err(err)?;
            t.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn crl_mark(&self, issuer: &str) -> Result<CrlMark, StoreError> {
        let issuer = issuer.to_owned();
        self.with(move |c| {
            let found: Option<(i64, i64)> = c
                .query_row(
                    "SELECT revisions, since FROM crl_marks WHERE issuer = ?1",
                    [&issuer],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(err)?;
            let (revisions, since) = found.unwrap_or((0, 0));
            Ok(CrlMark {
                issuer,
                revisions,
                since,
            })
        })
        .await
    }

    async fn insert_registration(
        &self,
        r: &RegistrationRecord,
        actor: &str,
    ) -> Result<(), StoreError> {
        let (r, actor) = (r.clone(), actor.to_owned());
        self.with(move |c| reg::insert(c, &r, &actor)).await
    }

    async fn registration(&self, id: &str) -> Result<Option<RegistrationRecord>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| reg::get(c, &id)).await
    }

    async fn registrations(
        &self,
        email: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        let email = email.map(str::to_owned);
        self.with(move |c| reg::list(c, email.as_deref(), limit))
            .await
    }

    async fn update_registration(
        &self,
        r: &RegistrationRecord,
        from: RegistrationState,
        action: &str,
        actor: &str,
        details: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let (r, action, actor, details) = (
            r.clone(),
            action.to_owned(),
            actor.to_owned(),
            details.clone(),
        );
        self.with(move |c| reg::update(c, &r, from, &action, &actor, &details))
            .await
    }

    async fn registration_challenge(
        &self,
        id: &str,
        challenge: &ChallengeRecord,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let (id, ch, actor) = (id.to_owned(), challenge.clone(), actor.to_owned());
        self.with(move |c| reg::challenge(c, &id, &ch, &actor))
            .await
    }

    async fn expire(
        &self,
        at: i64,
        pending: &[(String, i64)],
    ) -> Result<(usize, usize), StoreError> {
        let pending = pending.to_vec();
        self.with(move |c| reg::expire(c, at, &pending)).await
    }

    async fn expiring_counts(
        &self,
        at: i64,
        within_secs: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(move |c| expiry::counts(c, at, within_secs)).await
    }

    async fn expiring_unannounced(
        &self,
        at: i64,
        within_secs: i64,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        self.with(move |c| expiry::unannounced(c, at, within_secs, limit))
            .await
    }

    async fn expiry_announced(&self, serial: &str, actor: &str) -> Result<(), StoreError> {
        let (serial, actor) = (serial.to_owned(), actor.to_owned());
        self.with(move |c| expiry::announced(c, &serial, &actor))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(err))
            .await
    }
}
