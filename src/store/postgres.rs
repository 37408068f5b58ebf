//! The PostgreSQL engine: a pool of connections (deadpool), TLS when the URL asks for it, and
//! migrations serialised between nodes by an advisory lock. Connection failures are
//! `Unavailable` (the server answers 503 and the pool reconnects by itself when the database
//! returns); constraint violations are `Conflict`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::postgres_expiry as expiry;
use super::postgres_registrations as reg;
use super::{
    now, state_from, AuditRecord, CertFilter, CertStatus, CertificateRecord, ChallengeRecord,
    CrlMark, RegistrationRecord, RegistrationState, Store, StoreError, TokenRecord,
    TransactionRecord, TransactionState,
};

pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/postgres_0001_initial.sql")),
    (2, include_str!("migrations/postgres_0002_tokens.sql")),
    (3, include_str!("migrations/postgres_0003_audit.sql")),
    (
        4,
        include_str!("migrations/postgres_0004_registrations.sql"),
    ),
    (5, include_str!("migrations/postgres_0005_expiry.sql")),
    (6, include_str!("migrations/postgres_0006_trust.sql")),
];

/// Advisory lock key serialising migrations across nodes ("sigilmig").
const MIGRATION_LOCK: i64 = 0x7369_6769_6c6d_6967;

/// PostgreSQL engine.
#[derive(Clone)]
pub struct PostgresStore {
    pub(super) pool: Pool,
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: postgres_openssl::MakeTlsConnector,
    /// Connections holding a background task's advisory lock, by task.
    pub(super) leases: std::sync::Arc<
        tokio::sync::Mutex<std::collections::HashMap<String, tokio_postgres::Client>>,
    >,
    /// Issuances, written in groups by one writer task (see `postgres_issue`).
    issues: std::sync::Arc<super::postgres_issue::IssueQueue>,
}

/// The advisory lock key of a background task.
pub(super) fn task_key(task: &str) -> i64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("sigil-task:{task}"));
    i64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

pub(super) fn err(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c)
            if *c == SqlState::UNIQUE_VIOLATION
                || *c == SqlState::FOREIGN_KEY_VIOLATION
                || *c == SqlState::CHECK_VIOLATION
                || *c == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            StoreError::Conflict(e.to_string())
        }
        _ => match e.as_db_error() {
            // "db error" alone says nothing: add the server's message.
            Some(db) => StoreError::Unavailable(format!("PostgreSQL: {}", db.message())),
            None => StoreError::Unavailable(format!("PostgreSQL: {}", chain(&e))),
        },
    }
}

pub(super) fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    // The pool's own text hides the server's: say what the server said.
    let text = match &e {
        deadpool_postgres::PoolError::Backend(b) => match b.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => chain(b),
        },
        other => other.to_string(),
    };
    StoreError::Unavailable(format!("PostgreSQL: {text}"))
}

/// An error with its causes, `: `-joined (tokio-postgres's own text is often just "error
/// performing TLS handshake", with the reason one level down).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

/// What the connection settings say, to explain a failure.
struct ConnectHint {
    sslmode: Option<String>,
    loopback: bool,
    ca_file: bool,
}

/// A parameter of a `postgres://` URL's query string.
fn url_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// A connection failure with its cause named and the setting that fixes it.
fn connect_hint(message: &str, hint: &ConnectHint, described: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let fix = if lower.contains("hostname mismatch") || lower.contains("ip address mismatch") {
        Some("the server's TLS certificate does not name the host in database.url (Debian's cluster uses a \"snakeoil\" certificate for `localhost`, so `127.0.0.1` fails and `localhost` passes): connect by a name the certificate carries, or on loopback add sslmode=disable".to_string())
    } else if lower.contains("certificate verify failed")
        || lower.contains("self-signed certificate")
        || lower.contains("unable to get local issuer")
    {
        Some(if hint.ca_file {
            "the server's TLS certificate does not chain to database.ca_file: set it to the CA that issued the server's certificate".to_string()
        } else {
            "the server's TLS certificate is not trusted: set database.ca_file to the CA that issued it, or on loopback add sslmode=disable to database.url".to_string()
        })
    } else if lower.contains("tls handshake") || lower.contains("ssl") {
        Some(match (&hint.sslmode, hint.loopback) {
            (None, true) => "database.url has no sslmode, so TLS is tried and verified (libpq's default is prefer, which does not verify): on loopback add ?sslmode=disable, or set database.ca_file to the CA of the server's certificate".to_string(),
            _ => "set database.ca_file to the CA of the server's certificate, or sslmode=disable in database.url if the link needs no TLS".to_string(),
        })
    } else if lower.contains("password authentication failed") {
        Some("the user name or password in database.url is wrong".to_string())
    } else if lower.contains("does not exist") && lower.contains("database") {
        Some("create the database (createdb) or fix its name in database.url".to_string())
    } else if lower.contains("connection refused") {
        Some("no PostgreSQL server listens there: start it, or fix the host and port in database.url".to_string())
    } else {
        None
    };
    match fix {
        Some(f) => format!("{message} ({described}): {f}"),
        None => format!("{message} ({described})"),
    }
}

/// The database a configuration points at, without the password: `user@host:port/db`.
fn describe(cfg: &tokio_postgres::Config) -> String {
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres {}@{host}:{port}/{}",
        cfg.get_user().unwrap_or("?"),
        cfg.get_dbname().unwrap_or("?")
    )
}

pub(super) fn tx_from_row(r: &tokio_postgres::Row) -> TransactionRecord {
    TransactionRecord {
        id: r.get(0),
        transaction_id: r.get(1),
        renews: r.get(2),
        profile: r.get(3),
        key_sha256: r.get(4),
        signer_sha256: r.get(5),
        state: state_from(&r.get::<_, String>(6), r.get(7), r.get(8), r.get(11)),
        csr: r.get::<_, Option<Vec<u8>>>(9).unwrap_or_default(),
        challenge_id: r.get(10),
    }
}

pub(super) fn cert_from_row(r: &tokio_postgres::Row) -> CertificateRecord {
    CertificateRecord {
        serial: r.get(0),
        der: r.get(1),
        subject: r.get(2),
        sans: r.get(3),
        issuer: r.get(4),
        not_before: r.get(5),
        not_after: r.get(6),
        profile: r.get(7),
        status: CertStatus::parse(&r.get::<_, String>(8)),
        revoked_at: r.get(9),
        revocation_reason: r.get(10),
        transaction_id: r.get(11),
        device_id: r.get(12),
        renewed_by: r.get(13),
    }
}

pub(super) const TOKEN_COLUMNS: &str =
    "id, name, role, hash, created_at, expires_at, revoked_at, last_used_at, scope";

pub(super) fn token_from_row(r: &tokio_postgres::Row) -> TokenRecord {
    TokenRecord {
        id: r.get(0),
        name: r.get(1),
        role: r.get(2),
        hash: r.get(3),
        created_at: r.get(4),
        expires_at: r.get(5),
        revoked_at: r.get(6),
        last_used_at: r.get(7),
        scope: super::TokenScope::from_json(&r.get::<_, String>(8)),
    }
}

pub(super) const TX_COLUMNS: &str = "id, transaction_id, renews, profile, key_sha256, \
     signer_sha256, state, serial, reason, csr, challenge_id, reserved_until";
/// The columns [`cert_from_row`] reads.
pub(super) const CERT_COLUMNS: &str =
    "serial, der, subject, sans, issuer, not_before, not_after, profile, \
     status, revoked_at, revocation_reason, transaction_id, device_id, renewed_by";

/// Append an audit record inside `t`, after locking the head.
pub(super) async fn append_audit(
    t: &deadpool_postgres::Transaction<'_>,
    actor: &str,
    action: &str,
    subject: &str,
    details: &serde_json::Value,
) -> Result<(), StoreError> {
    super::postgres_issue::append_audits(
        t,
        &[super::postgres_issue::AuditEntry {
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            details: details.clone(),
        }],
    )
    .await
}

/// Spend a one-time challenge inside `t` for transaction record `record`: unused, and either
/// claimed by that record's reservation or unclaimed (or its claim lapsed) and unexpired.
/// `ChallengeSpent` otherwise.
pub(super) async fn consume(
    t: &deadpool_postgres::Transaction<'_>,
    hash: &str,
    profile: &str,
    record: &str,
    by: &str,
) -> Result<(), StoreError> {
    let n = t
        .execute(
            "UPDATE challenges SET used_at = $1, used_by = $2, reserved_by = NULL, \
             reserved_until = NULL \
             WHERE hash = $3 AND profile = $4 AND used_at IS NULL AND (reserved_by = $5 \
             OR (expires_at > $1 AND (reserved_by IS NULL OR reserved_until <= $1)))",
            &[&now(), &by, &hash, &profile, &record],
        )
        .await
        .map_err(err)?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::ChallengeSpent)
    }
}

impl PostgresStore {
    /// A reservation's insert found a record: take it over if it is a lapsed reservation of
    /// the same key (its node died), else return it.
    async fn take_over(
        &self,
        c: &deadpool_postgres::Client,
        tx: &TransactionRecord,
        until: i64,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        let taken = c
            .execute(
                "UPDATE transactions SET reserved_until = $1, challenge_id = $2, updated_at = $3 \
                 WHERE id = $4 AND state = 'issuing' AND reserved_until <= $3 \
                 AND key_sha256 = $5",
                &[&until, &tx.challenge_id, &now(), &tx.id, &tx.key_sha256],
            )
            .await
            .map_err(err)?;
        if taken == 1 {
            return Ok(None);
        }
        let row = c
            .query_opt(
                &format!("SELECT {TX_COLUMNS} FROM transactions WHERE id = $1"),
                &[&tx.id],
            )
            .await
            .map_err(err)?;
        match row.as_ref().map(tx_from_row) {
            Some(old) => Ok(Some(old)),
            // Released meanwhile: the caller may try again.
            None => Ok(Some(TransactionRecord {
                state: TransactionState::Issuing { until: now() },
                ..tx.clone()
            })),
        }
    }

    /// Connect (a pool of `pool_size`), creating the schema if the database has none, and
    /// apply migrations.
    pub async fn connect(url: &str, pool_size: usize) -> Result<PostgresStore, StoreError> {
        Self::connect_tls(url, pool_size, super::OpenMode::Create, None).await
    }

    /// Connect as `mode` says (see [`super::open`]), trusting the CA certificates in
    /// `ca_file` for the server's TLS certificate (else the system's trust store).
    pub async fn connect_tls(
        url: &str,
        pool_size: usize,
        mode: super::OpenMode,
        ca_file: Option<&std::path::Path>,
    ) -> Result<PostgresStore, StoreError> {
        let mut cfg = tokio_postgres::Config::from_str(url).map_err(|_| {
            StoreError::Invalid(
                "database.url does not parse (postgres://user:password@host/db?sslmode=…)".into(),
            )
        })?;
        // A half-open connection (partition, frozen host) must fail in seconds, not after the
        // kernel's retransmission timeout: requests then get 503 and the pool reconnects.
        cfg.connect_timeout(Duration::from_secs(5))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(Duration::from_secs(10));
        // A statement waits at most 5 s for a row lock held elsewhere (another node, an open
        // session): then it fails, the request gets 503, and the node's one issuance writer
        // moves on. Options in the URL come after this one, so they win.
        let options = match cfg.get_options() {
            Some(o) => format!("-c lock_timeout=5s {o}"),
            None => "-c lock_timeout=5s".to_string(),
        };
        cfg.options(&options);
        let described = describe(&cfg);
        let cfg_hint = ConnectHint {
            sslmode: url_param(url, "sslmode"),
            loopback: cfg.get_hosts().iter().all(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => {
                    name == "localhost" || name.starts_with("127.") || name == "::1"
                }
                tokio_postgres::config::Host::Unix(_) => true,
            }),
            ca_file: ca_file.is_some(),
        };
        let mut builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
            .map_err(|e| StoreError::Invalid(format!("TLS: {e}")))?;
        builder.set_verify(openssl::ssl::SslVerifyMode::PEER);
        if let Some(ca) = ca_file {
            builder.set_ca_file(ca).map_err(|e| {
                StoreError::Invalid(format!("database.ca_file `{}`: {e}", ca.display()))
            })?;
        }
        let tls = postgres_openssl::MakeTlsConnector::new(builder.build());
        let pool_of = |size: usize| {
            let mgr = Manager::from_config(
                cfg.clone(),
                tls.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(mgr)
                .max_size(size)
                .runtime(Runtime::Tokio1)
                .timeouts(Timeouts {
                    wait: Some(Duration::from_secs(5)),
                    create: Some(Duration::from_secs(5)),
                    recycle: Some(Duration::from_secs(5)),
                })
                .build()
                .map_err(|e| StoreError::Invalid(format!("database pool: {e}")))
        };
        let pool = pool_of(pool_size.max(1))?;
        // The issuance writer's own connections, driven by its own thread: a connection is
        // served by the runtime that opened it, so sharing the request pool would send every
        // round trip of the writer through a request worker's thread.
        let writer_pool = pool_of(1)?;
        let store = PostgresStore {
            pool,
            config: cfg,
            tls,
            leases: Default::default(),
            issues: std::sync::Arc::new(super::postgres_issue::IssueQueue::new(writer_pool)),
        };
        store.migrate(mode).await.map_err(|e| match e {
            StoreError::Unavailable(m) => {
                StoreError::Unavailable(connect_hint(&m, &cfg_hint, &described))
            }
            other => other,
        })?;
        Ok(store)
    }

    async fn migrate(&self, mode: super::OpenMode) -> Result<(), StoreError> {
        let apply = mode != super::OpenMode::Existing;
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        // Another node may be migrating: wait for it as long as it takes.
        t.batch_execute("SET LOCAL lock_timeout = 0")
            .await
            .map_err(err)?;
        t.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(err)?;
        t.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .await
            .map_err(err)?;
        let current: i64 = t
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await
            .map_err(err)?
            .get(0);
        if current == 0 && mode != super::OpenMode::Create {
            return Err(StoreError::Invalid(
                "the database has no Sigil schema: a store is made only by `sigil init` (with the CA) or `sigil db migrate --create`; if this CA's store is another database, fix database.url (SIGIL_DATABASE_URL)".into(),
            ));
        }
        super::check_version(current, apply)?;
        for (version, sql) in MIGRATIONS {
            if *version > current {
                t.batch_execute(sql).await.map_err(err)?;
                if *version == 6 {
                    super::transaction_keys::postgres(&t).await?;
                }
                t.execute(
                    "INSERT INTO schema_version (version) VALUES ($1)",
                    &[version],
                )
                .await
                .map_err(err)?;
                tracing::info!(version, "applied PostgreSQL migration");
            }
        }
        t.commit().await.map_err(err)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn transaction(&self, id: &str) -> Result<Option<TransactionRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        // Every enrollment asks (resend detection): prepared once per connection.
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {TX_COLUMNS} FROM transactions WHERE id = $1"
            ))
            .await
            .map_err(err)?;
        let row = c.query_opt(&stmt, &[&id]).await.map_err(err)?;
        Ok(row.as_ref().map(tx_from_row))
    }

    async fn transactions_named(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                &format!(
                    "SELECT {TX_COLUMNS} FROM transactions WHERE transaction_id = $1 \
                     ORDER BY created_at, id"
                ),
                &[&transaction_id],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(tx_from_row).collect())
    }

    async fn reserve(
        &self,
        tx: &TransactionRecord,
        challenge: Option<&str>,
        lease_secs: i64,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let at = now();
        let until = at + lease_secs.max(1);
        let insert = c
            .prepare_cached(
                "INSERT INTO transactions (id, transaction_id, renews, profile, key_sha256, \
                 signer_sha256, state, csr, challenge_id, reserved_until, created_at, \
                 updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'issuing', $7, $8, $9, $10, $10) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(err)?;
        let args: [&(dyn ToSql + Sync); 10] = [
            &tx.id,
            &tx.transaction_id,
            &tx.renews,
            &tx.profile,
            &tx.key_sha256,
            &tx.signer_sha256,
            &tx.csr,
            &tx.challenge_id,
            &until,
            &at,
        ];
        if tx.state == TransactionState::Pending {
            // An approval claims the PENDING record, unless another approval holds it.
            let claimed = c
                .execute(
                    "UPDATE transactions SET reserved_until = $1 WHERE id = $2 \
                     AND state = 'pending' AND key_sha256 = $3 \
                     AND (reserved_until IS NULL OR reserved_until <= $4)",
                    &[&until, &tx.id, &tx.key_sha256, &at],
                )
                .await
                .map_err(err)?;
            if claimed == 1 {
                return Ok(None);
            }
            let row = c
                .query_opt(
                    &format!("SELECT {TX_COLUMNS} FROM transactions WHERE id = $1"),
                    &[&tx.id],
                )
                .await
                .map_err(err)?;
            return match row.as_ref().map(tx_from_row) {
                Some(old) => Ok(Some(old)),
                None => Err(StoreError::Conflict(format!(
                    "transaction {} is not pending",
                    tx.transaction_id
                ))),
            };
        }
        let Some(hash) = challenge else {
            // No challenge to claim: one statement.
            if c.execute(&insert, &args).await.map_err(err)? == 1 {
                return Ok(None);
            }
            return self.take_over(&c, tx, until).await;
        };
        let t = c.transaction().await.map_err(err)?;
        if t.execute(&insert, &args).await.map_err(err)? == 0 {
            drop(t);
            return self.take_over(&c, tx, until).await;
        }
        let claimed = t
            .execute(
                "UPDATE challenges SET reserved_by = $1, reserved_until = $2 \
                 WHERE hash = $3 AND profile = $4 AND used_at IS NULL AND expires_at > $5 \
                 AND (reserved_by IS NULL OR reserved_by = $1 OR reserved_until <= $5)",
                &[&tx.id, &until, &hash, &tx.profile, &at],
            )
            .await
            .map_err(err)?;
        if claimed != 1 {
            // Dropping the transaction rolls the reservation back.
            return Err(StoreError::ChallengeSpent);
        }
        t.commit().await.map_err(err)?;
        Ok(None)
    }

    async fn release(&self, id: &str) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        t.execute(
            "UPDATE challenges SET reserved_by = NULL, reserved_until = NULL \
             WHERE reserved_by = $1 AND used_at IS NULL",
            &[&id],
        )
        .await
        .map_err(err)?;
        t.execute(
            "DELETE FROM transactions WHERE id = $1 AND state = 'issuing'",
            &[&id],
        )
        .await
        .map_err(err)?;
        t.execute(
            "UPDATE transactions SET reserved_until = NULL WHERE id = $1 AND state = 'pending'",
            &[&id],
        )
        .await
        .map_err(err)?;
        t.commit().await.map_err(err)
    }

    async fn insert_pending(
        &self,
        tx: &TransactionRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        if let Some(h) = challenge {
            consume(&t, h, &tx.profile, &tx.id, &tx.transaction_id).await?;
        }
        let at = now();
        t.execute(
            "INSERT INTO transactions (id, transaction_id, renews, profile, key_sha256, \
             signer_sha256, state, csr, challenge_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $9)",
            &[
                &tx.id,
                &tx.transaction_id,
                &tx.renews,
                &tx.profile,
                &tx.key_sha256,
                &tx.signer_sha256,
                &tx.csr,
                &tx.challenge_id,
                &at,
            ],
        )
        .await
        .map_err(err)?;
        let mut details = super::provenance(tx);
        details["profile"] = tx.profile.clone().into();
        append_audit(&t, actor, "pending", &tx.transaction_id, &details).await?;
        t.commit().await.map_err(err)
    }

    async fn record_issued(
        &self,
        tx: &TransactionRecord,
        cert: &CertificateRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError> {
        self.issues.record(tx, cert, challenge, actor).await
    }

    async fn reject(&self, id: &str, reason: &str, actor: &str) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        let row = t
            .query_opt(
                "UPDATE transactions SET state = 'rejected', reason = $1, csr = NULL, \
                 updated_at = $2 WHERE id = $3 AND state = 'pending' RETURNING transaction_id",
                &[&reason, &now(), &id],
            )
            .await
            .map_err(err)?;
        let Some(row) = row else {
            return Err(StoreError::Conflict(format!(
                "transaction {id} is not pending"
            )));
        };
        let tid: String = row.get(0);
        append_audit(
            &t,
            actor,
            "rejected",
            &tid,
            &serde_json::json!({"reason": reason, "transaction": id}),
        )
        .await?;
        t.commit().await.map_err(err)
    }

    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = $1"),
                &[&serial],
            )
            .await
            .map_err(err)?;
        Ok(row.as_ref().map(cert_from_row))
    }

    async fn certificates(
        &self,
        filter: &CertFilter,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let at = now();
        let mut sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE TRUE");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(p) = &filter.profile {
            args.push(Box::new(p.clone()));
            sql.push_str(&format!(" AND profile = ${}", args.len()));
        }
        if let Some(s) = filter.status {
            args.push(Box::new(s.as_str().to_string()));
            sql.push_str(&format!(" AND status = ${}", args.len()));
        }
        if let Some(w) = filter.expiring_within_secs {
            args.push(Box::new(at));
            sql.push_str(&format!(" AND not_after > ${}", args.len()));
            args.push(Box::new(at + w));
            sql.push_str(&format!(" AND not_after <= ${}", args.len()));
        }
        if let Some(s) = &filter.subject_contains {
            args.push(Box::new(format!("%{}%", super::sqlite::like_escape(s))));
            sql.push_str(&format!(
                " AND lower(subject) LIKE lower(${}) ESCAPE '\\'",
                args.len()
            ));
        }
        if let Some(d) = &filter.device_id {
            args.push(Box::new(d.clone()));
            sql.push_str(&format!(" AND device_id = ${}", args.len()));
        }
        sql.push_str(" ORDER BY created_at DESC, serial");
        if filter.limit > 0 {
            sql.push_str(&format!(" LIMIT {}", filter.limit));
        }
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = c.query(&sql, &params).await.map_err(err)?;
        Ok(rows.iter().map(cert_from_row).collect())
    }

    async fn pending(&self) -> Result<Vec<TransactionRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                &format!(
                    "SELECT {TX_COLUMNS} FROM transactions WHERE state = 'pending' \
                     ORDER BY created_at, id"
                ),
                &[],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(tx_from_row).collect())
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

    async fn lead(&self, task: &str) -> Result<bool, StoreError> {
        self.lead_impl(task).await
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
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        t.execute(
            "INSERT INTO ca_state (name, value) VALUES ($1, '0') ON CONFLICT DO NOTHING",
            &[&number_key],
        )
        .await
        .map_err(err)?;
        let published: Vec<u8> = t
            .query_one(
                "SELECT value FROM ca_state WHERE name = $1 FOR UPDATE",
                &[&number_key],
            )
            .await
            .map_err(err)?
            .get(0);
        if super::parse_number(Some(published), &number_key)? >= number {
            return Ok(false);
        }
        for (name, value) in [
            (number_key.as_str(), number.to_string().into_bytes()),
            (crl_key.as_str(), der.to_vec()),
        ] {
            t.execute(
                "INSERT INTO ca_state (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&name, &value],
            )
            .await
            .map_err(err)?;
        }
        // Revocations that came after the list was read keep the mark.
        t.execute(
            "DELETE FROM crl_marks WHERE issuer = $1 AND revisions = $2",
            &[&covers.issuer, &covers.revisions],
        )
        .await
        .map_err(err)?;
        t.commit().await.map_err(err)?;
        Ok(true)
    }

    async fn crl_mark(&self, issuer: &str) -> Result<CrlMark, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT revisions, since FROM crl_marks WHERE issuer = $1",
                &[&issuer],
            )
            .await
            .map_err(err)?;
        let (revisions, since) = row.map(|r| (r.get(0), r.get(1))).unwrap_or((0, 0));
        Ok(CrlMark {
            issuer: issuer.to_owned(),
            revisions,
            since,
        })
    }

    async fn insert_registration(
        &self,
        r: &RegistrationRecord,
        actor: &str,
    ) -> Result<(), StoreError> {
        reg::insert(&self.pool, r, actor).await
    }

    async fn registration(&self, id: &str) -> Result<Option<RegistrationRecord>, StoreError> {
        reg::get(&self.pool, id).await
    }

    async fn registrations(
        &self,
        email: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        reg::list(&self.pool, email, limit).await
    }

    async fn update_registration(
        &self,
        r: &RegistrationRecord,
        from: RegistrationState,
        action: &str,
        actor: &str,
        details: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        reg::update(&self.pool, r, from, action, actor, details).await
    }

    async fn registration_challenge(
        &self,
        id: &str,
        challenge: &ChallengeRecord,
        actor: &str,
    ) -> Result<bool, StoreError> {
        reg::challenge(&self.pool, id, challenge, actor).await
    }

    async fn expire(
        &self,
        at: i64,
        pending: &[(String, i64)],
    ) -> Result<(usize, usize), StoreError> {
        reg::expire(&self.pool, at, pending).await
    }

    async fn expiring_counts(
        &self,
        at: i64,
        within_secs: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        expiry::counts(&self.pool, at, within_secs).await
    }

    async fn expiring_unannounced(
        &self,
        at: i64,
        within_secs: i64,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        expiry::unannounced(&self.pool, at, within_secs, limit).await
    }

    async fn expiry_announced(&self, serial: &str, actor: &str) -> Result<(), StoreError> {
        expiry::announced(&self.pool, serial, actor).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute("SELECT 1", &[]).await.map(|_| ()).map_err(err)
    }
}
