//! The conformance suites run against each engine: SQLite on a temporary file, PostgreSQL in
//! a schema of its own in the database named by `SIGIL_TEST_DATABASE_URL`
//! (`softhsm-tests/run.sh` starts PostgreSQL 15 and sets it); and what only a server
//! database does (leadership, CRL numbers from two nodes).

use std::sync::Arc;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_engine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sigil.db");
    let s = Arc::new(SqliteStore::open(&path).await.unwrap());
    super::conformance::suite(s.clone()).await;
    super::conformance_records::registrations(s.clone()).await;
    super::conformance_records::expiry(s.clone()).await;
    super::conformance_records::identity(s.clone()).await;
    super::conformance_pushes::pushes(s.clone()).await;
    super::conformance_records::crl_listings(s.clone()).await;
    super::conformance_pushes::push_follow_ups(s.clone()).await;
    super::conformance_ocsp::ocsp_answers(s.clone()).await;
    super::conformance_ocsp::imported_certificates(s.clone()).await;
    super::conformance_reports::spans_and_expiring_order(s.clone()).await;
    super::conformance_reports::newest_audit_records(s.clone()).await;
    super::conformance_concurrency::concurrent_issuances(s).await;
    // Opening again applies nothing new; a newer schema is refused, and an open store sees
    // the migration another program made.
    let running = SqliteStore::open(&path).await.unwrap();
    assert_eq!(running.schema_version().await.unwrap(), SCHEMA_VERSION);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute("INSERT INTO schema_version (version) VALUES (99)", [])
        .unwrap();
    assert_eq!(running.schema_version().await.unwrap(), 99);
    let e = SqliteStore::open(&path).await.err().unwrap();
    assert!(e.to_string().contains("newer than this sigil"), "{e}");
}

/// A schema of its own in the test database, so runs and tests do not meet.
pub(super) async fn postgres_url() -> String {
    let base = std::env::var("SIGIL_TEST_DATABASE_URL").expect(
        "SIGIL_TEST_DATABASE_URL is not set: run softhsm-tests/run.sh (it starts PostgreSQL 15)",
    );
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let schema = format!("conf_{}_{}_{n}", std::process::id(), now() % 100_000);
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_engine() {
    let url = postgres_url().await;
    let s = Arc::new(PostgresStore::connect(&url, 8).await.unwrap());
    super::conformance::suite(s.clone()).await;
    super::conformance_records::registrations(s.clone()).await;
    super::conformance_records::expiry(s.clone()).await;
    super::conformance_records::identity(s.clone()).await;
    super::conformance_pushes::pushes(s.clone()).await;
    super::conformance_records::crl_listings(s.clone()).await;
    super::conformance_pushes::push_follow_ups(s.clone()).await;
    super::conformance_ocsp::ocsp_answers(s.clone()).await;
    super::conformance_ocsp::imported_certificates(s.clone()).await;
    super::conformance_reports::spans_and_expiring_order(s.clone()).await;
    super::conformance_reports::newest_audit_records(s.clone()).await;
    super::conformance_concurrency::concurrent_issuances(s.clone()).await;
    // Another node does not lead the same task while the first lives.
    let other = PostgresStore::connect(&url, 2).await.unwrap();
    assert!(!other.lead("task").await.unwrap());
    // Concurrent CRL numbers from two nodes never repeat.
    let a = PostgresStore::connect(&url, 4).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            s.crl_listing("CN=Nobody", None).await.unwrap().0
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 20);
    // When the leader goes away, the other node takes the task over.
    drop(s);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !other.lead("task").await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "no failover");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let running = PostgresStore::connect(&url, 2).await.unwrap();
    assert_eq!(running.schema_version().await.unwrap(), SCHEMA_VERSION);
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute("INSERT INTO schema_version (version) VALUES (99)", &[])
        .await
        .unwrap();
    assert_eq!(running.schema_version().await.unwrap(), 99);
    let e = PostgresStore::connect(&url, 2).await.err().unwrap();
    assert!(e.to_string().contains("newer than this sigil"), "{e}");
}

#[test]
fn both_engines_migrate_to_the_schema_version() {
    for m in [super::sqlite::MIGRATIONS, super::postgres::MIGRATIONS] {
        let versions: Vec<i64> = m.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    }
}
