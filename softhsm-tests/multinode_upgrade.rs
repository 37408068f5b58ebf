//! Upgrades of a cluster: nodes of two versions never share a PostgreSQL store unnoticed.

use std::time::{Duration, Instant};

use crate::multinode::{pg_lock, runtime, Cluster};

#[test]
fn serving_nodes_stop_when_a_newer_node_migrates_their_store() {
    let _pg = pg_lock();
    let mut c = Cluster::start(2);
    // What a newer sigil's migration leaves behind: the next schema version.
    let next = sigil::store::SCHEMA_VERSION + 1;
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(&c.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .execute("INSERT INTO schema_version (version) VALUES ($1)", &[&next])
            .await
            .unwrap();
    });
    // Both nodes notice within a check or two, stop gracefully and say why, with a failure
    // status a service manager sees.
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..2 {
        let status = loop {
            let child = c.nodes[i].child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} still serves a store at schema {next}: {}",
                c.log(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        c.nodes[i].child = None;
        assert!(!status.success(), "node {i} stopped with {status}");
        let log = c.log(i);
        assert!(
            log.contains(&format!("migrated to schema {next} by a newer sigil"))
                && log.contains("upgrade it"),
            "{log}"
        );
    }
    // Started again, the old version refuses the store at once.
    let out = c.sigil().arg("serve").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("newer than this sigil"), "{err}");
}
