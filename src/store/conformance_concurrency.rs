//! Conformance under concurrency: issuances racing each other, written in shared groups by
//! both engines, and the PostgreSQL writer outliving its first caller's runtime.

use std::sync::Arc;

use super::conformance::{cert, challenge, issue, tx_issuing};
use super::conformance_engines::postgres_url;
use super::*;

/// Many issuances at once, some of them doomed (a serial taken twice, a challenge spent
/// five times, a transaction claimed by three keys). PostgreSQL writes them in shared groups:
/// each must still get its own answer, and the losers must leave nothing behind.
pub(super) async fn concurrent_issuances(s: Arc<dyn Store>) {
    s.insert_challenge(&challenge("race", now() + 3600), "test")
        .await
        .unwrap();
    let before = s.audit_head().await.unwrap().0;
    let far = now() + 86_400;
    // (label, transaction, key, serial, challenge)
    let mut jobs: Vec<(String, String, String, String, Option<&'static str>)> = Vec::new();
    for i in 0..30 {
        jobs.push((
            format!("good{i}"),
            format!("cg{i}"),
            format!("kg{i}"),
            format!("c0a{i:02}"),
            None,
        ));
    }
    for i in 0..4 {
        for side in ["a", "b"] {
            jobs.push((
                format!("dup{i}"),
                format!("cd{side}{i}"),
                format!("kd{side}{i}"),
                format!("c0d{i}"),
                None,
            ));
        }
    }
    for i in 0..5 {
        jobs.push((
            "challenge".into(),
            format!("cc{i}"),
            format!("kc{i}"),
            format!("c0c{i}"),
            Some("race"),
        ));
    }
    for i in 0..3 {
        jobs.push((
            "taken".into(),
            "ct".into(),
            format!("kt{i}"),
            format!("c0t{i}"),
            None,
        ));
    }
    let mut tasks = Vec::new();
    for (label, tid, key, serial, ch) in jobs {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let r = issue(
                s.as_ref(),
                &tx_issuing(&tid, &key),
                &cert(&serial, &tid, "CN=race", far),
                ch,
            )
            .await;
            (label, tid, serial, r)
        }));
    }
    let mut won: std::collections::HashMap<String, usize> = Default::default();
    let mut winners = Vec::new();
    for t in tasks {
        let (label, tid, serial, r) = t.await.unwrap();
        match (&r, label.as_str()) {
            (Ok(()), _) => {
                *won.entry(label.clone()).or_default() += 1;
                winners.push((tid, serial));
            }
            (Err(StoreError::ChallengeSpent), "challenge") => {}
            (Err(StoreError::Conflict(_)), "taken") => {}
            (Err(StoreError::SerialTaken), l) if l.starts_with("dup") => {}
            (other, l) => panic!("{l}: unexpected {other:?}"),
        }
    }
    for i in 0..30 {
        assert_eq!(won.get(&format!("good{i}")), Some(&1), "good{i}");
    }
    for i in 0..4 {
        assert_eq!(won.get(&format!("dup{i}")), Some(&1), "one of dup{i} wins");
    }
    assert_eq!(won.get("challenge"), Some(&1), "the challenge issues once");
    assert_eq!(won.get("taken"), Some(&1), "the transaction issues once");
    // Every winner is stored as sent; nothing of the losers is.
    for (tid, serial) in &winners {
        let c = s.certificate(serial).await.unwrap().unwrap();
        assert_eq!(&c.transaction_id, tid);
        let t = s.transaction(tid).await.unwrap().unwrap();
        assert_eq!(
            t.state,
            TransactionState::Issued {
                serial: serial.clone()
            }
        );
    }
    for i in 0..5 {
        let tid = format!("cc{i}");
        if !winners.iter().any(|(t, _)| *t == tid) {
            assert!(
                s.transaction(&tid).await.unwrap().is_none(),
                "{tid} left a row"
            );
            assert!(s.certificate(&format!("c0c{i}")).await.unwrap().is_none());
        }
    }
    // One audit record per winner, chained without a gap.
    let head = s.audit_head().await.unwrap();
    assert_eq!(head.0 - before, winners.len() as i64);
    verify_audit(&s.audit_records(0, 0).await.unwrap(), (head.0, &head.1)).unwrap();
}

/// The PostgreSQL issuance writer does not depend on the runtime of its first caller: when
/// that runtime is gone (a CLI command's, a restarted worker's), issuances still go through.
#[test]
fn postgres_issuance_writer_outlives_its_runtime() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = runtime();
    let url = first.block_on(postgres_url());
    let s = first.block_on(PostgresStore::connect(&url, 2)).unwrap();
    first
        .block_on(issue(
            &s,
            &tx_issuing("rt1", "k1"),
            &cert("0a01", "rt1", "CN=a", now() + 60),
            None,
        ))
        .unwrap();
    drop(first);
    let second = runtime();
    second
        .block_on(issue(
            &s,
            &tx_issuing("rt2", "k2"),
            &cert("0a02", "rt2", "CN=b", now() + 60),
            None,
        ))
        .unwrap();
    let found = second.block_on(s.certificate("0a02")).unwrap();
    assert_eq!(found.map(|c| c.transaction_id).as_deref(), Some("rt2"));
}
