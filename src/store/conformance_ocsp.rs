//! Conformance of the pre-produced OCSP answers, on both engines: an answer is served only
//! while it states its certificate's status and is fresh; the producer's list names the
//! certificates without a current answer; an older answer never replaces a newer one. And
//! certificates imported in bulk (what fills a store for measurements).

use std::sync::Arc;

use super::conformance::{cert, issue, tx_issuing};
use super::*;

fn due_query(issuer: &str, before: i64, created_since: Option<i64>) -> OcspDue<'_> {
    OcspDue {
        issuer,
        now: now(),
        before,
        created_since,
        after_serial: None,
        limit: 100,
    }
}

fn answer(serial: &str, status: CertStatus, revoked_at: Option<i64>, at: i64) -> OcspAnswer {
    OcspAnswer {
        serial: serial.into(),
        status,
        revoked_at,
        der: format!("answer {serial} {at}").into_bytes(),
        produced_at: at,
        next_update: at + 3600,
    }
}

pub(super) async fn ocsp_answers(s: Arc<dyn Store>) {
    let t0 = now();
    let issuer = "CN=Test CA";
    for (serial, tid) in [("0c5a01", "ocsp-t1"), ("0c5a02", "ocsp-t2")] {
        issue(
            &*s,
            &tx_issuing(tid, tid),
            &cert(serial, tid, "CN=o", t0 + 86_400),
            None,
        )
        .await
        .unwrap();
    }
    let mut gone = cert("0c5a03", "ocsp-t3", "CN=o", t0 - 1);
    gone.not_before = t0 - 100;
    issue(&*s, &tx_issuing("ocsp-t3", "ocsp-t3"), &gone, None)
        .await
        .unwrap();
    // Nothing produced yet: both certificates in force are due, not the expired one.
    let due = |before: i64| {
        let s = s.clone();
        async move {
            let mut v: Vec<String> = s
                .ocsp_due(&due_query(issuer, before, None))
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.serial)
                .filter(|c| c.starts_with("0c5a"))
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(due(t0).await, vec!["0c5a01", "0c5a02"]);
    assert_eq!(s.ocsp_answer("0c5a01", t0).await.unwrap(), None);
    // Produced: served while fresh, and no longer due.
    let good = answer("0c5a01", CertStatus::Valid, None, t0);
    s.put_ocsp_answers(std::slice::from_ref(&good))
        .await
        .unwrap();
    assert_eq!(
        s.ocsp_answer("0c5a01", t0).await.unwrap(),
        Some(good.clone())
    );
    assert_eq!(
        s.ocsp_answer("0c5a01", t0 + 3600).await.unwrap(),
        None,
        "stale"
    );
    assert_eq!(due(t0).await, vec!["0c5a02"]);
    // Older than the refresh point: due again.
    assert_eq!(due(t0 + 1).await, vec!["0c5a01", "0c5a02"]);
    // An older answer does not replace a newer one.
    s.put_ocsp_answers(&[answer("0c5a01", CertStatus::Valid, None, t0 - 10)])
        .await
        .unwrap();
    assert_eq!(s.ocsp_answer("0c5a01", t0).await.unwrap(), Some(good));
    // Revoked: the "good" answer is never served again, and the certificate is due.
    assert!(s
        .revoke_certificate("0c5a01", 1, "keyCompromise", "test")
        .await
        .unwrap());
    assert_eq!(s.ocsp_answer("0c5a01", t0).await.unwrap(), None);
    assert_eq!(due(t0).await, vec!["0c5a01", "0c5a02"]);
    let at = s.certificate("0c5a01").await.unwrap().unwrap().revoked_at;
    let revoked = answer("0c5a01", CertStatus::Revoked, at, t0 + 1);
    s.put_ocsp_answers(std::slice::from_ref(&revoked))
        .await
        .unwrap();
    assert_eq!(s.ocsp_answer("0c5a01", t0).await.unwrap(), Some(revoked));
    // A revocation time that differs from the certificate's is not its answer.
    s.put_ocsp_answers(&[answer("0c5a02", CertStatus::Revoked, Some(t0), t0 + 2)])
        .await
        .unwrap();
    assert_eq!(s.ocsp_answer("0c5a02", t0).await.unwrap(), None);
    assert_eq!(due(t0).await, vec!["0c5a02"]);
    // Only this issuer's certificates.
    assert!(s
        .ocsp_due(&due_query("CN=Other CA", t0 + 10, None))
        .await
        .unwrap()
        .is_empty());
    // Several at once, in one transaction: all or none.
    let both = [
        answer("0c5a02", CertStatus::Valid, None, t0 + 3),
        answer("ffff", CertStatus::Valid, None, t0 + 3),
    ];
    assert!(s.put_ocsp_answers(&both).await.is_err());
    assert_eq!(
        s.ocsp_answer("0c5a02", t0).await.unwrap(),
        None,
        "rolled back"
    );
    // An answer for a certificate the store does not have is refused.
    assert!(s
        .put_ocsp_answers(&[answer("ffff", CertStatus::Valid, None, t0)])
        .await
        .is_err());
}

/// Certificates issued elsewhere: loaded in one transaction, a taken serial skipped, the
/// revoked ones counted in the CRL mark, one audit record.
pub(super) async fn imported_certificates(s: Arc<dyn Store>) {
    let t0 = now();
    let issuer = "CN=Imported CA";
    let mark = s.crl_mark(issuer).await.unwrap().revisions;
    let mut batch: Vec<CertificateRecord> = (0..3)
        .map(|i| {
            let mut c = cert(&format!("1a0{i}"), "import", "CN=i", t0 + 86_400);
            c.issuer = issuer.into();
            c
        })
        .collect();
    batch[1].status = CertStatus::Revoked;
    batch[1].revoked_at = Some(t0 - 60);
    batch[1].revocation_reason = Some(1);
    assert_eq!(s.import_certificates(&batch, "bench").await.unwrap(), 3);
    // Again, with one new one: only that one is loaded.
    let mut again = batch.clone();
    let mut fresh = cert("1a09", "import", "CN=i", t0 + 86_400);
    fresh.issuer = issuer.into();
    again.push(fresh);
    assert_eq!(s.import_certificates(&again, "bench").await.unwrap(), 1);
    assert_eq!(s.crl_mark(issuer).await.unwrap().revisions, mark + 1);
    let revoked = s.certificate("1a01").await.unwrap().unwrap();
    assert_eq!(revoked.status, CertStatus::Revoked);
    assert_eq!(revoked.revoked_at, Some(t0 - 60));
    let due = s.ocsp_due(&due_query(issuer, t0, None)).await.unwrap();
    assert_eq!(due.len(), 4);
    // Only those stored since a time: none stored in the future.
    let later = s
        .ocsp_due(&due_query(issuer, t0, Some(now() + 60)))
        .await
        .unwrap();
    assert!(later.is_empty());
    let since = s
        .ocsp_due(&due_query(issuer, t0, Some(t0 - 60)))
        .await
        .unwrap();
    assert_eq!(since.len(), 4);
    // Pages in serial order.
    let first = s
        .ocsp_due(&OcspDue {
            limit: 2,
            ..due_query(issuer, t0, None)
        })
        .await
        .unwrap();
    let serials: Vec<_> = first.iter().map(|c| c.serial.as_str()).collect();
    assert_eq!(serials, ["1a00", "1a01"]);
    let rest = s
        .ocsp_due(&OcspDue {
            after_serial: Some("1a01"),
            ..due_query(issuer, t0, None)
        })
        .await
        .unwrap();
    let serials: Vec<_> = rest.iter().map(|c| c.serial.as_str()).collect();
    assert_eq!(serials, ["1a02", "1a09"]);
    let (head, _) = s.audit_head().await.unwrap();
    let last = s.audit_records(head - 1, 0).await.unwrap();
    assert_eq!(last[0].action, "certificates_imported");
    assert_eq!(last[0].actor, "bench");
    assert!(
        last[0].details.contains("\"loaded\":1"),
        "{}",
        last[0].details
    );
}
