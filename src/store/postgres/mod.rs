//! The PostgreSQL engine: a pool of connections (deadpool), TLS when the URL asks for it, and
//! migrations serialised between nodes by an advisory lock. Connection failures are
//! `Unavailable` (the server answers 503 and the pool reconnects by itself when the database
//! returns); constraint violations are `Conflict`.

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

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::error::SqlState;

use super::{
    now, state_from, CertStatus, CertificateRecord, StoreError, TokenRecord, TransactionRecord,
    TransactionState,
};
use crate::reason::Reason;

pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres_0001_initial.sql")),
    (2, include_str!("../migrations/postgres_0002_tokens.sql")),
    (3, include_str!("../migrations/postgres_0003_audit.sql")),
    (
        4,
        include_str!("../migrations/postgres_0004_registrations.sql"),
    ),
    (5, include_str!("../migrations/postgres_0005_expiry.sql")),
    (6, include_str!("../migrations/postgres_0006_trust.sql")),
    (7, include_str!("../migrations/postgres_0007_identity.sql")),
    (8, include_str!("../migrations/postgres_0008_pushes.sql")),
    (9, include_str!("../migrations/postgres_0009_ocsp.sql")),
    (
        10,
        include_str!("../migrations/postgres_0010_expiry_index.sql"),
    ),
    (
        11,
        include_str!("../migrations/postgres_0011_profile_index.sql"),
    ),
    (
        12,
        include_str!("../migrations/postgres_0012_registration_serial.sql"),
    ),
    (
        13,
        include_str!("../migrations/postgres_0013_registration_device.sql"),
    ),
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
    issues: std::sync::Arc<issue::IssueQueue>,
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
            Some(db) => {
                let text = format!("PostgreSQL: {}", db.message());
                StoreError::Unavailable(Reason::caused_by(e).with_text(text))
            }
            None => {
                let text = format!("PostgreSQL: {}", chain(&e));
                StoreError::Unavailable(Reason::caused_by(e).with_text(text))
            }
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
    StoreError::Unavailable(Reason::caused_by(e).with_text(format!("PostgreSQL: {text}")))
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
        holder: r.get(12),
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
    "id, name, role, hash, created_at, expires_at, revoked_at, last_used_at, scope, owner, \
     awaiting_approval, approved_by";

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
        scope: crate::store::TokenScope::from_json(&r.get::<_, String>(8)),
        owner: r.get(9),
        awaiting_approval: r.get(10),
        approved_by: r.get(11),
    }
}

pub(super) const TX_COLUMNS: &str = "id, transaction_id, renews, profile, key_sha256, \
     signer_sha256, state, serial, reason, csr, challenge_id, reserved_until, holder";
/// The columns [`cert_from_row`] reads.
pub(super) const CERT_COLUMNS: &str =
    "serial, der, subject, sans, issuer, not_before, not_after, profile, \
     status, revoked_at, revocation_reason, transaction_id, device_id, renewed_by";

impl PostgresStore {
    /// A reservation's insert found a record: take it over, inside `t`, if it is a lapsed
    /// reservation of the same key (its node died), letting go of the challenge it claimed
    /// unless that is `challenge` (the caller claims that one next); else return it.
    async fn take_over(
        &self,
        t: &deadpool_postgres::Transaction<'_>,
        tx: &TransactionRecord,
        challenge: Option<&str>,
        until: i64,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        let taken = t
            .execute(
                "UPDATE transactions SET reserved_until = $1, challenge_id = $2, updated_at = $3, \
                 holder = $6, renews = $7 \
                 WHERE id = $4 AND state = 'issuing' AND reserved_until <= $3 \
                 AND key_sha256 = $5",
                &[
                    &until,
                    &tx.challenge_id,
                    &now(),
                    &tx.id,
                    &tx.key_sha256,
                    &tx.holder,
                    &tx.renews,
                ],
            )
            .await
            .map_err(err)?;
        if taken == 1 {
            t.execute(
                "UPDATE challenges SET reserved_by = NULL, reserved_until = NULL \
                 WHERE reserved_by = $1 AND used_at IS NULL AND ($2::TEXT IS NULL OR hash <> $2)",
                &[&tx.id, &challenge],
            )
            .await
            .map_err(err)?;
            return Ok(None);
        }
        let row = t
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
        Self::connect_tls(url, pool_size, crate::store::OpenMode::Create, None).await
    }

    /// Connect as `mode` says (see [`super::open`]), trusting the CA certificates in
    /// `ca_file` for the server's TLS certificate (else the system's trust store).
    pub async fn connect_tls(
        url: &str,
        pool_size: usize,
        mode: crate::store::OpenMode,
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
            .map_err(|e| StoreError::Invalid(crate::reason::Reason::context("TLS", e)))?;
        builder.set_verify(openssl::ssl::SslVerifyMode::PEER);
        if let Some(ca) = ca_file {
            builder.set_ca_file(ca).map_err(|e| {
                StoreError::Invalid(crate::reason::Reason::context(
                    format!("database.ca_file `{}`", ca.display()),
                    e,
                ))
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
                .map_err(|e| {
                    StoreError::Invalid(crate::reason::Reason::context("database pool", e))
                })
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
            issues: std::sync::Arc::new(issue::IssueQueue::new(writer_pool)),
        };
        store.migrate(mode).await.map_err(|e| match e {
            StoreError::Unavailable(m) => {
                let hinted = connect_hint(m.text(), &cfg_hint, &described);
                StoreError::Unavailable(m.with_text(hinted))
            }
            other => other,
        })?;
        Ok(store)
    }

    async fn migrate(&self, mode: crate::store::OpenMode) -> Result<(), StoreError> {
        let apply = mode != crate::store::OpenMode::Existing;
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
        if current == 0 && mode != crate::store::OpenMode::Create {
            return Err(StoreError::Invalid(
                "the database has no Sigil schema: a store is made only by `sigil init` (with the CA) or `sigil db migrate --create`; if this CA's store is another database, fix database.url (SIGIL_DATABASE_URL)".into(),
            ));
        }
        crate::store::check_version(current, apply)?;
        for (version, sql) in MIGRATIONS {
            if *version > current {
                t.batch_execute(sql).await.map_err(err)?;
                if *version == 6 {
                    crate::store::transaction_keys::postgres(&t).await?;
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
