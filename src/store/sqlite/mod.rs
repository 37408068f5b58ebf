//! The embedded engine: one SQLite file in WAL mode, written by one connection at a time on
//! blocking threads. Searches and lookups that only read (certificate listings, the audit
//! log, pre-produced OCSP answers, named CA state such as the CRLs) go through a second,
//! read-only connection: in WAL mode a reader sees the last commit and neither waits for the
//! writer nor holds it up, so a long search does not stall issuance and a burst of writes
//! does not stall a search. Background scans (the OCSP producer's look for answers to make,
//! which at a million certificates reads them all once per pass, and the expiry gauges and
//! announcements) have a read-only connection of their own, so no search or lookup, and no
//! issuance, waits behind them.

mod audit;
mod ca_state;
mod certificates;
mod challenges;
mod cluster;
mod identity;
mod import;
mod issue;
mod ocsp;
mod pushes;
mod registrations;
mod tokens;
mod transactions;

use audit::append_audit;
use transactions::consume;
use transactions::reserve_rows;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, TransactionBehavior};

use super::{
    now, state_from, CertStatus, CertificateRecord, StoreError, TokenRecord, TransactionRecord,
};
use crate::reason::Reason;

pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite_0001_initial.sql")),
    (2, include_str!("../migrations/sqlite_0002_tokens.sql")),
    (3, include_str!("../migrations/sqlite_0003_audit.sql")),
    (
        4,
        include_str!("../migrations/sqlite_0004_registrations.sql"),
    ),
    (5, include_str!("../migrations/sqlite_0005_expiry.sql")),
    (6, include_str!("../migrations/sqlite_0006_trust.sql")),
    (7, include_str!("../migrations/sqlite_0007_identity.sql")),
    (8, include_str!("../migrations/sqlite_0008_pushes.sql")),
    (9, include_str!("../migrations/sqlite_0009_ocsp.sql")),
    (
        10,
        include_str!("../migrations/sqlite_0010_expiry_index.sql"),
    ),
    (
        11,
        include_str!("../migrations/sqlite_0011_profile_index.sql"),
    ),
    (
        12,
        include_str!("../migrations/sqlite_0012_registration_serial.sql"),
    ),
    (
        13,
        include_str!("../migrations/sqlite_0013_registration_device.sql"),
    ),
];

/// SQLite engine.
#[derive(Clone)]
pub struct SqliteStore {
    pub(super) conn: Arc<Mutex<Connection>>,
    /// The read-only connection (see the module's header).
    reader: Arc<Mutex<Connection>>,
    /// The read-only connection of background scans (see the module's header).
    background: Arc<Mutex<Connection>>,
    /// Issuances waiting to share a commit (see `sqlite_issue`).
    issues: Arc<issue::IssueQueue>,
}

pub(super) fn err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(e.to_string())
        }
        _ => StoreError::Unavailable(Reason::caused_by(e)),
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
    crate::store::check_version(current, apply)?;
    for (version, sql) in MIGRATIONS {
        if *version > current {
            tx.execute_batch(sql).map_err(err)?;
            if *version == 6 {
                crate::store::transaction_keys::sqlite(&tx)?;
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
        holder: r.get(12)?,
    })
}

pub(super) const TOKEN_COLUMNS: &str =
    "id, name, role, hash, created_at, expires_at, revoked_at, last_used_at, scope, owner, \
     awaiting_approval, approved_by";

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
        scope: crate::store::TokenScope::from_json(&r.get::<_, String>(8)?),
        owner: r.get(9)?,
        awaiting_approval: r.get(10)?,
        approved_by: r.get(11)?,
    })
}

pub(super) const TX_COLUMNS: &str = "id, transaction_id, renews, profile, key_sha256, \
     signer_sha256, state, serial, reason, csr, challenge_id, reserved_until, holder";
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

/// Make the database file, if it is not there, readable by its owner only, in a directory
/// only its owner can enter, whatever the umask (SQLite gives the `-wal` and `-shm` files the
/// database file's permissions).
fn private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |what: &str, p: &Path, e: std::io::Error| {
        StoreError::Unavailable(Reason::context(format!("cannot {what} {}", p.display()), e))
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
                StoreError::Unavailable(Reason::context(format!("cannot open {}", path.display()), e))
            })?;
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(err)?;
            if !mode.eq_ignore_ascii_case("wal") {
                // Readers then wait for the writer (and it for them); correct, but slower.
                tracing::warn!(%mode, path = %path.display(), "SQLite is not in WAL mode on this file system: searches and issuance wait for each other");
            }
            conn.execute_batch(
                "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
            )
            .map_err(err)?;
            // Take the write lock when a transaction begins: a read that later upgrades to a
            // write would fail at once with SQLITE_BUSY when another process (the CLI, another
            // tool) writes, without waiting for busy_timeout.
            conn.set_transaction_behavior(TransactionBehavior::Immediate);
            migrate(&mut conn, migrate_schema)?;
            // Once migrated (an index built over millions of rows sorts through temporary
            // files, not memory), temp_store = MEMORY keeps the statement journal of each
            // issuance's savepoint in memory: on files, a group of issuances that outgrew
            // 64 KiB of it created, wrote and deleted a temporary file per commit. That
            // journal only ever rolls a savepoint back; the durable record is the WAL. It also
            // keeps this connection's temporary tables and sorts in memory: the writer runs
            // none larger than a group of writes.
            conn.execute_batch("PRAGMA temp_store = MEMORY;")
                .map_err(err)?;
            let read_only = || -> Result<Connection, StoreError> {
                let c = Connection::open_with_flags(
                    &path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| {
                    StoreError::Unavailable(Reason::context(
                        format!("cannot open {} to read", path.display()),
                        e,
                    ))
                })?;
                c.execute_batch("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;")
                    .map_err(err)?;
                Ok(c)
            };
            Ok(SqliteStore {
                conn: Arc::new(Mutex::new(conn)),
                reader: Arc::new(Mutex::new(read_only()?)),
                background: Arc::new(Mutex::new(read_only()?)),
                issues: Default::default(),
            })
        })
        .await
        .map_err(|e| StoreError::Unavailable(Reason::caused_by(e)))?
    }

    /// Run `f` on the read-only connection (a blocking thread): for queries that write
    /// nothing and need no lock the writer holds.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        on(self.reader.clone(), move |c| f(c)).await
    }

    /// Run `f` on the background scans' read-only connection (a blocking thread): for a
    /// long read that nothing waits for but its own task.
    pub(super) async fn background_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        on(self.background.clone(), move |c| f(c)).await
    }

    /// Run `f` on the writing connection (a blocking thread).
    pub(super) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        on(self.conn.clone(), f).await
    }
}

/// Run `f` on a blocking thread holding `conn`.
async fn on<T: Send + 'static>(
    conn: Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(move || {
        let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c)
    })
    .await
    .map_err(|e| StoreError::Unavailable(Reason::caused_by(e)))?
}

/// The plan SQLite makes of `sql` (its `detail` lines), with `args` bound, or 0 for every
/// parameter when `args` is empty: the plan tests beside each query.
#[cfg(test)]
pub(super) async fn query_plan(
    store: &SqliteStore,
    sql: String,
    args: Vec<rusqlite::types::Value>,
) -> String {
    store
        .read(move |c| {
            let mut st = c
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .map_err(err)?;
            let args = if args.is_empty() {
                vec![0i64.into(); st.parameter_count()]
            } else {
                args
            };
            let rows = st
                .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
        .map(|lines| lines.join("\n"))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditStore, CertFilter, CertificateStore};

    /// An engine's failure keeps the engine's error as its cause, not only its text: a
    /// caller (or an operator's tool) can walk to it and tell a full disk from a corrupt file.
    #[tokio::test]
    async fn a_failure_keeps_the_engines_error() {
        use std::error::Error as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        std::fs::write(
            &path,
            b"not a database, and long enough to be read as a header: ".repeat(200),
        )
        .unwrap();
        let e = SqliteStore::open(&path)
            .await
            .err()
            .expect("a file that is no database fails");
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        let mut causes = Vec::new();
        let mut next = e.source();
        while let Some(c) = next {
            causes.push(c);
            next = c.source();
        }
        assert!(
            causes
                .iter()
                .any(|c| c.downcast_ref::<rusqlite::Error>().is_some()),
            "{e:?}"
        );
        assert!(e.to_string().contains("not a database"), "{e}");
    }

    /// Searches go through the read-only connection: they see every commit, they complete
    /// while the writer's connection is held (were they on it, this test would hang until the
    /// 60-second guard, a deadlock detector rather than a timing), and that connection cannot
    /// write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::await_holding_lock)] // holding the writer's lock across the reads is the point
    async fn searches_read_beside_the_writer_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        store
            .audit("cli", "test_event", "s", &serde_json::json!({"n": 1}))
            .await
            .unwrap();
        let writer = store.conn.clone();
        let held = writer.lock().unwrap();
        let read = async {
            let records = store.audit_records(0, 0).await.unwrap();
            let certs = store
                .certificates(&CertFilter {
                    limit: 10,
                    ..CertFilter::default()
                })
                .await
                .unwrap();
            (records, certs)
        };
        let (records, certs) = tokio::time::timeout(std::time::Duration::from_secs(60), read)
            .await
            .expect("a search waited for the writer's connection");
        drop(held);
        assert!(records.iter().any(|r| r.action == "test_event"));
        assert!(certs.is_empty());
        assert!(store.certificate("01").await.unwrap().is_none());
        let reader = store.reader.lock().unwrap();
        assert!(reader.execute("DELETE FROM audit_log", []).is_err());
    }
}
