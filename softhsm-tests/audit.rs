//! The audit log as evidence: every committed batch sealed by the audit key on the token,
//! each seal written to an append-only file outside the database and to syslog, and `sigil
//! audit verify --heads FILE` catching what a database writer does to the latest records.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::enroll_with;
use crate::scep::{ScepServer, CHALLENGE};

fn heads(s: &ScepServer) -> Vec<Value> {
    std::fs::read_to_string(s.token.data().join("audit-heads.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn head_seq(db: &std::path::Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT seq FROM audit_head", [], |r| r.get(0))
        .unwrap()
}

/// Wait until the heads file seals record `seq` (the sealer looks every 250 ms).
fn sealed(s: &ScepServer, seq: i64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = heads(s);
        if h.last().and_then(|v| v["seq"].as_i64()) == Some(seq) {
            return h;
        }
        assert!(Instant::now() < deadline, "record {seq} not sealed: {h:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_batch_is_sealed_outside_the_database_and_a_rewrite_of_the_latest_is_caught() {
    let socket_dir = tempfile::tempdir().unwrap();
    let socket = socket_dir.path().join("log");
    let syslog = UnixDatagram::bind(&socket).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let s = ScepServer::start_with(&format!("[audit]\nsyslog = \"{}\"\n", socket.display()));
    let db = s.token.data().join("sigil.db");
    let cli = |args: &[&str]| {
        s.token
            .sigil()
            .env("SIGIL_CONFIG", s.token.path().join("sigil.toml"))
            .args(args)
            .output()
            .unwrap()
    };
    // Each enrollment commits records; each commit is sealed within moments, not at the next
    // background round.
    for n in 0..3 {
        let (_, _, r) = enroll_with(&s, "default", &format!("sealed-{n}"), CHALLENGE);
        assert_eq!(r.status, sigil::scep::PkiStatus::Success);
        sealed(&s, head_seq(&db));
    }
    let h = heads(&s);
    assert!(h.len() >= 4, "{h:?}");
    let seqs: Vec<i64> = h.iter().map(|v| v["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The same seals reached syslog, as RFC 5424 messages from sigil-audit.
    let mut buf = vec![0u8; 4096];
    let n = syslog.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        msg.starts_with("<86>1 ") && msg.contains(" sigil-audit "),
        "{msg}"
    );
    let first: Value = serde_json::from_str(msg.split(" - ").last().unwrap()).unwrap();
    assert_eq!(first, h[0]);
    // The seals verify with the audit key on the token (not the RA key).
    let file = s.token.data().join("audit-heads.jsonl");
    let file_arg = file.to_str().unwrap();
    let out = crate::common::ok(&cli(&["audit", "verify", "--heads", file_arg]));
    assert!(
        out.contains(&format!("{} seals of", h.len())) && out.contains("sealed by the audit key"),
        "{out}"
    );
    // A database writer rewrites the latest record and its head consistently, and removes
    // the seal kept in the store: the chain alone holds, the heads file does not.
    let seq = head_seq(&db);
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        let (prev, at, actor, action, details): (String, i64, String, String, String) = c
            .query_row(
                "SELECT prev_hash, at, actor, action, details FROM audit_log WHERE seq = ?1",
                [seq],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        let forged = sigil::store::audit_hash(&prev, seq, at, &actor, &action, "forged", &details);
        c.execute(
            "UPDATE audit_log SET subject = 'forged', hash = ?1 WHERE seq = ?2",
            rusqlite::params![forged, seq],
        )
        .unwrap();
        c.execute("UPDATE audit_head SET hash = ?1", [&forged])
            .unwrap();
    }
    let out = cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains(&format!(
            "broken at record {seq}: the log was rewritten after the stored seal"
        )),
        "{err}"
    );
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM ca_state WHERE name = 'audit_head_sealed'", [])
        .unwrap();
    // Without the store's seal, the plain check says so (the audit key exists).
    let out = cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no readable seal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["audit", "verify", "--heads", file_arg]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains(&format!("broken at record {seq}")) && err.contains("of the heads sealed it"),
        "{err}"
    );
    // A forged line in the heads file is named too; a missing file is a clear error.
    let mut forged_line = h[0].clone();
    forged_line["hash"] = "00".repeat(32).into();
    let forged_file = socket_dir.path().join("forged.jsonl");
    std::fs::write(&forged_file, format!("{forged_line}\n")).unwrap();
    let out = cli(&["audit", "verify", "--heads", forged_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1 of the heads"));
    let out = cli(&["audit", "verify", "--heads", "/nonexistent/heads.jsonl"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/heads.jsonl"));
}

#[test]
fn the_audit_key_cannot_be_the_ca_or_ra_key() {
    let token = crate::common::TokenDir::new();
    let out = token
        .sigil()
        .env("SIGIL_AUDIT_KEY", "sigil-ra")
        .args(["config", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("audit.key must be a key of its own"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
