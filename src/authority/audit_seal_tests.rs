//! Tests of the audit seals and the log check (beside `audit_seal.rs`, which they would push
//! past 800 lines).

use super::*;

fn key() -> (PKey<openssl::pkey::Private>, PKey<Public>) {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let private = PKey::from_rsa(rsa).unwrap();
    let public = PKey::public_key_from_der(&private.public_key_to_der().unwrap()).unwrap();
    (private, public)
}

fn seal(k: &PKey<openssl::pkey::Private>, seq: i64, hash: &str) -> Seal {
    let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), k).unwrap();
    s.update(Seal::message(seq, hash, 7).as_bytes()).unwrap();
    Seal {
        seq,
        hash: hash.into(),
        at: 7,
        key_sha256: String::new(),
        signature: base64::engine::general_purpose::STANDARD.encode(s.sign_to_vec().unwrap()),
    }
}

#[test]
fn a_seal_verifies_only_as_signed() {
    let (private, public) = key();
    let good = seal(&private, 3, "abc");
    assert!(good.verifies(&public));
    let line = good.to_line();
    let back: Seal = serde_json::from_str(&line).unwrap();
    assert_eq!(back, good);
    for forged in [
        Seal {
            seq: 4,
            ..good.clone()
        },
        Seal {
            hash: "abd".into(),
            ..good.clone()
        },
        Seal {
            at: 8,
            ..good.clone()
        },
        Seal {
            signature: "!!".into(),
            ..good.clone()
        },
    ] {
        assert!(!forged.verifies(&public), "{forged:?}");
    }
    let (_, other) = key();
    assert!(!good.verifies(&other));
}

#[test]
fn a_heads_file_reads_line_by_line_and_names_the_bad_line() {
    let (private, _) = key();
    let dir = std::env::temp_dir().join(format!("sigil-seals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("heads.jsonl");
    let text = format!(
        "{}\n\n{}\nnot json\n",
        seal(&private, 1, "a").to_line(),
        seal(&private, 2, "b").to_line()
    );
    std::fs::write(&path, text).unwrap();
    let read: Vec<_> = read_seals(&path).unwrap().collect();
    assert_eq!(read.len(), 3);
    assert_eq!(read[0].as_ref().unwrap().0, 1);
    assert_eq!(read[1].as_ref().unwrap().0, 3);
    let err = read[2].as_ref().unwrap_err().to_string();
    assert!(err.contains("line 4"), "{err}");
    assert!(read_seals(&dir.join("absent")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_line_cut_short_by_a_crash_does_not_swallow_the_next_seal() {
    let (private, _) = key();
    let dir = tempfile::tempdir().unwrap();
    let outlets = SealOutlets::new(&SealSettings::default(), dir.path());
    std::fs::write(&outlets.heads_file, "{\"seq\": 1, \"ha").unwrap();
    outlets.append(&seal(&private, 2, "b")).unwrap();
    let read: Vec<_> = read_seals(&outlets.heads_file).unwrap().collect();
    assert_eq!(read.len(), 2);
    assert!(read[0].is_err(), "the cut line is named");
    assert_eq!(read[1].as_ref().unwrap().1.seq, 2);
}

#[test]
fn settings_default_to_a_file_in_the_data_directory() {
    let s = SealSettings::default();
    assert_eq!(
        s.heads_path(Path::new("/var/lib/sigil")),
        Path::new("/var/lib/sigil/audit-heads.jsonl")
    );
    let s = SealSettings {
        heads_file: "/srv/heads".into(),
        ..s
    };
    assert_eq!(s.heads_path(Path::new("/x")), Path::new("/srv/heads"));
}

/// Records appended while the log is read (a busy server) are not a break: the check
/// follows the head. Records past a head that did not move still are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_during_a_check_are_followed_not_reported() {
    use crate::store::{AuditRecord, AuditStore, SqliteStore, StoreError};
    /// The real store, appending two records while the first page is read.
    struct Busy(SqliteStore, std::sync::atomic::AtomicBool);
    #[async_trait::async_trait]
    impl AuditStore for Busy {
        async fn audit(
            &self,
            a: &str,
            b: &str,
            c: &str,
            d: &serde_json::Value,
        ) -> Result<(), StoreError> {
            self.0.audit(a, b, c, d).await
        }
        async fn audit_records(
            &self,
            after: i64,
            limit: usize,
        ) -> Result<Vec<AuditRecord>, StoreError> {
            if !self.1.swap(true, std::sync::atomic::Ordering::SeqCst) {
                for i in 0..2 {
                    self.0
                        .audit("test", "late", "x", &serde_json::json!({ "i": i }))
                        .await?;
                }
            }
            self.0.audit_records(after, limit).await
        }
        async fn audit_newest(
            &self,
            query: &crate::store::AuditQuery,
            limit: usize,
        ) -> Result<Vec<AuditRecord>, StoreError> {
            self.0.audit_newest(query, limit).await
        }
        async fn audit_head(&self) -> Result<(i64, String), StoreError> {
            self.0.audit_head().await
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sigil.db");
    let store = SqliteStore::open(&path).await.unwrap();
    for i in 0..5 {
        store
            .audit("test", "early", "x", &serde_json::json!({ "i": i }))
            .await
            .unwrap();
    }
    for page in [2, 3, 100] {
        let busy = Busy(store.clone(), Default::default());
        let check = check_log(&busy, None, false, None, None, page)
            .await
            .unwrap();
        assert_eq!(check.problem, None, "page {page}");
        assert!(check.records >= 7, "page {page}: {}", check.records);
        assert_eq!(check.head_seq, store.audit_head().await.unwrap().0);
    }
    // A record past the head that never moves (written around the head's bookkeeping)
    // is still reported.
    let (seq, _) = store.audit_head().await.unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute(
        "UPDATE audit_head SET seq = ?1 - 1, hash = (SELECT hash FROM audit_log WHERE seq = ?1 - 1)",
        [seq],
    )
    .unwrap();
    drop(c);
    let check = check_log(&store, None, false, None, None, 3).await.unwrap();
    assert!(check.problem.is_some());
}

/// The log read a page at a time gives the same verdicts at every page size, and the
/// seals catch what the chain alone cannot: the latest records rewritten consistently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_checked_a_page_at_a_time_against_its_seals() {
    use crate::store::{AuditStore, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sigil.db");
    let store = SqliteStore::open(&path).await.unwrap();
    // An empty log needs no seal, even once the audit key exists.
    let (_, any_key) = key();
    let empty = check_log(&store, None, true, Some(&any_key), None, 3)
        .await
        .unwrap();
    assert_eq!((empty.problem, empty.records), (None, 0));
    for i in 0..11 {
        store
            .audit(
                "test",
                "refused",
                &format!("t-{i}"),
                &serde_json::json!({"i": i}),
            )
            .await
            .unwrap();
    }
    let (private, public) = key();
    let records = store.audit_records(0, 0).await.unwrap();
    let seals: Vec<Seal> = [2usize, 2, 7, 11]
        .iter()
        .map(|&n| seal(&private, n as i64, &records[n - 1].hash))
        .collect();
    let lines = |seals: &[Seal]| -> Vec<Result<(usize, Seal), SealError>> {
        seals
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, s)| Ok((i + 1, s)))
            .collect()
    };
    for page in [1, 3, 4, 11, PAGE] {
        let mut heads = lines(&seals).into_iter();
        let check = check_log(
            &store,
            Some(seals[3].clone()),
            false,
            Some(&public),
            Some(&mut heads),
            page,
        )
        .await
        .unwrap();
        assert_eq!(check.problem, None, "page {page}");
        assert_eq!((check.records, check.heads_checked), (11, 4), "page {page}");
        assert_eq!(check.signed_head_seq, Some(11));
    }
    // Out of order, or signed by another key: named.
    let mut heads = lines(&[seals[2].clone(), seals[0].clone()]).into_iter();
    let check = check_log(&store, None, false, Some(&public), Some(&mut heads), 4)
        .await
        .unwrap();
    assert!(check.problem.unwrap().contains("out of order"));
    let (other, _) = key();
    let mut heads = lines(&[seal(&other, 2, &records[1].hash)]).into_iter();
    let check = check_log(&store, None, false, Some(&public), Some(&mut heads), 4)
        .await
        .unwrap();
    assert!(check.problem.unwrap().contains("does not verify"));
    // Rewrite the last record and its head consistently: the chain alone is content, the
    // seals are not.
    let c = rusqlite::Connection::open(&path).unwrap();
    let last = &records[10];
    let forged = crate::store::audit_hash(
        &last.prev_hash,
        last.seq,
        last.at,
        &last.actor,
        &last.action,
        "forged",
        &last.details,
    );
    c.execute(
        "UPDATE audit_log SET subject = 'forged', hash = ?1 WHERE seq = 11",
        [&forged],
    )
    .unwrap();
    c.execute("UPDATE audit_head SET hash = ?1", [&forged])
        .unwrap();
    let plain = check_log(&store, None, false, Some(&public), None, 3)
        .await
        .unwrap();
    assert_eq!(plain.problem, None, "the chain alone cannot tell");
    let stored = check_log(
        &store,
        Some(seals[3].clone()),
        false,
        Some(&public),
        None,
        3,
    )
    .await
    .unwrap();
    assert!(stored
        .problem
        .unwrap()
        .starts_with("broken at record 11: the log was rewritten"));
    let mut heads = lines(&seals).into_iter();
    let check = check_log(&store, None, false, Some(&public), Some(&mut heads), 3)
        .await
        .unwrap();
    assert!(check.problem.unwrap().contains("line 4 of the heads"));
    // Delete the last record and move the head back: the seal of record 11 remains.
    c.execute("DELETE FROM audit_log WHERE seq = 11", [])
        .unwrap();
    c.execute(
        "UPDATE audit_head SET seq = 10, hash = ?1",
        [&records[9].hash],
    )
    .unwrap();
    let mut heads = lines(&seals[..3]).into_iter();
    let check = check_log(&store, None, false, Some(&public), Some(&mut heads), 3)
        .await
        .unwrap();
    assert_eq!(check.problem, None, "{check:?}");
    let mut heads = lines(&seals).into_iter();
    let check = check_log(&store, None, false, Some(&public), Some(&mut heads), 3)
        .await
        .unwrap();
    assert!(check.problem.unwrap().contains("records deleted"));
    // The store's seal: one of an earlier record is fine (and says how many came after);
    // one beyond the end means records were deleted; none at all, while the audit key
    // exists, means it was deleted.
    let older = check_log(&store, Some(seals[2].clone()), true, Some(&public), None, 3)
        .await
        .unwrap();
    assert_eq!((older.problem, older.unsealed), (None, 3));
    let beyond = check_log(&store, Some(seals[3].clone()), true, Some(&public), None, 3)
        .await
        .unwrap();
    assert!(beyond.problem.unwrap().contains("records deleted"));
    let gone = check_log(&store, None, true, Some(&public), None, 3)
        .await
        .unwrap();
    assert!(gone.problem.unwrap().contains("no readable seal"));
    let not_yet = check_log(&store, None, false, None, None, 3).await.unwrap();
    assert_eq!(not_yet.problem, None);
}
