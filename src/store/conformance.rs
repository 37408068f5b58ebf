//! The conformance suite of the enrollment records (transactions and their reservations,
//! certificates, challenges, tokens, the audit chain, CA state): the same checks against
//! every engine (run by `conformance_engines.rs`), and the helpers the other suites share.

use std::sync::Arc;

use super::*;

/// A PENDING transaction record (the store treats the record key as opaque: here the
/// transactionID itself).
pub(super) fn tx(id: &str, key: &str) -> TransactionRecord {
    TransactionRecord {
        id: id.into(),
        transaction_id: id.into(),
        renews: None,
        profile: "default".into(),
        key_sha256: key.into(),
        signer_sha256: format!("signer-{key}"),
        state: TransactionState::Pending,
        csr: vec![1, 2, 3],
        challenge_id: None,
        holder: Some(format!("holder-{key}")),
    }
}

/// A transaction about to be issued from a reservation.
pub(super) fn tx_issuing(id: &str, key: &str) -> TransactionRecord {
    TransactionRecord {
        state: TransactionState::Issuing { until: 0 },
        csr: Vec::new(),
        ..tx(id, key)
    }
}

/// Reserve, then record: what an enrollment does. A reservation that finds a record is a
/// conflict here.
pub(super) async fn issue(
    s: &dyn Store,
    t: &TransactionRecord,
    c: &CertificateRecord,
    challenge: Option<&str>,
) -> Result<(), StoreError> {
    if let Some(existing) = s.reserve(t, challenge, RESERVATION_SECS).await? {
        return Err(StoreError::Conflict(format!(
            "{} exists: {:?}",
            existing.id, existing.state
        )));
    }
    s.record_issued(t, c, challenge, "test").await
}

pub(super) fn cert(serial: &str, tid: &str, subject: &str, not_after: i64) -> CertificateRecord {
    CertificateRecord {
        serial: serial.into(),
        der: vec![0x30, 0x00],
        subject: subject.into(),
        sans: String::new(),
        issuer: "CN=Test CA".into(),
        not_before: now() - 60,
        not_after,
        profile: "default".into(),
        status: CertStatus::Valid,
        revoked_at: None,
        revocation_reason: None,
        transaction_id: tid.into(),
        device_id: None,
        renewed_by: None,
    }
}

pub(super) fn challenge(hash: &str, expires_at: i64) -> ChallengeRecord {
    ChallengeRecord {
        id: format!("chl_{hash}"),
        hash: hash.into(),
        created_by: "token:minter".into(),
        profile: "default".into(),
        bindings: "{}".into(),
        expires_at,
        used_at: None,
    }
}

pub(super) fn conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(
        matches!(r, Err(StoreError::Conflict(_))),
        "expected a conflict, got {r:?}"
    );
}

pub(super) fn stale<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(
        matches!(r, Err(StoreError::Stale(_))),
        "expected a stale write, got {r:?}"
    );
}

pub(super) fn serial_taken<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(
        matches!(r, Err(StoreError::SerialTaken)),
        "expected a serial collision, got {r:?}"
    );
}

pub(super) fn spent<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(
        matches!(r, Err(StoreError::ChallengeSpent)),
        "expected a spent challenge, got {r:?}"
    );
}

pub(super) async fn suite(s: Arc<dyn Store>) {
    let year = now() + 365 * 86400;
    s.ping().await.unwrap();

    // API tokens: found by hash while active; revoked and expired ones are not.
    let token = |id: &str, hash: &str, expires_at: Option<i64>| TokenRecord {
        id: id.into(),
        name: format!("name-{id}"),
        role: "mdm".into(),
        hash: hash.into(),
        created_at: now(),
        expires_at,
        revoked_at: None,
        last_used_at: None,
        scope: TokenScope {
            profiles: vec!["default".into()],
            directories: vec!["*".into()],
        },
        owner: Some("oidc:https://idp#alice".into()),
        awaiting_approval: false,
        approved_by: None,
    };
    s.insert_token(&token("tok1", "hash1", None), "test")
        .await
        .unwrap();
    s.insert_token(&token("tok2", "hash2", Some(now() + 3600)), "test")
        .await
        .unwrap();
    s.insert_token(&token("tok3", "hash3", Some(now() - 1)), "test")
        .await
        .unwrap();
    conflict(s.insert_token(&token("tok4", "hash1", None), "test").await);
    let used = s.use_token("hash1").await.unwrap().unwrap();
    assert_eq!(used.id, "tok1");
    assert!(s.use_token("hash2").await.unwrap().is_some());
    assert!(s.use_token("hash3").await.unwrap().is_none(), "expired");
    assert!(s.use_token("nope").await.unwrap().is_none());
    assert!(s.revoke_token("tok1", "test").await.unwrap());
    assert!(!s.revoke_token("tok1", "test").await.unwrap());
    assert!(s.use_token("hash1").await.unwrap().is_none(), "revoked");
    assert!(
        s.use_token("hash2").await.unwrap().is_some(),
        "the other still works"
    );
    // A token that grants power works only once a second admin approved it.
    let mut waiting = token("tok5", "hash5", None);
    waiting.awaiting_approval = true;
    s.insert_token(&waiting, "oidc:https://idp#alice")
        .await
        .unwrap();
    assert!(
        s.use_token("hash5").await.unwrap().is_none(),
        "awaiting approval"
    );
    assert!(s
        .approve_token("tok5", "oidc:https://idp#bob")
        .await
        .unwrap());
    assert!(
        !s.approve_token("tok5", "oidc:https://idp#bob")
            .await
            .unwrap(),
        "once"
    );
    let approved = s.use_token("hash5").await.unwrap().unwrap();
    assert_eq!(
        (approved.owner.as_deref(), approved.approved_by.as_deref()),
        (Some("oidc:https://idp#alice"), Some("oidc:https://idp#bob"))
    );
    assert!(s.revoke_token("tok5", "test").await.unwrap());
    let listed = s.tokens().await.unwrap();
    assert_eq!(listed.len(), 4);
    assert!(listed
        .iter()
        .any(|t| t.id == "tok2" && t.last_used_at.is_some()));
    assert!(
        listed
            .iter()
            .all(|t| t.scope.profiles == ["default"] && t.scope.allows_directory("any")),
        "the scope is kept"
    );

    // CA state and the CRL counter.
    assert!(s.state("crl").await.unwrap().is_none());
    s.set_state("crl", b"one").await.unwrap();
    s.set_state("crl", b"two").await.unwrap();
    assert_eq!(s.state("crl").await.unwrap().as_deref(), Some(&b"two"[..]));
    super::conformance_records::replace_state(&s).await;
    assert_eq!(s.crl_listing("CN=Nobody", None).await.unwrap().0, 1);
    assert_eq!(s.crl_listing("CN=Nobody", None).await.unwrap().0, 2);
    assert!(s.lead("task").await.unwrap());
    assert!(s.lead("task").await.unwrap(), "a leader stays the leader");
    // Publication is fenced: an older CRL never replaces a newer one.
    assert!(s
        .publish_crl("test-ca", 5, b"crl five", &CrlMark::default())
        .await
        .unwrap());
    assert!(!s
        .publish_crl("test-ca", 4, b"crl four", &CrlMark::default())
        .await
        .unwrap());
    assert!(!s
        .publish_crl("test-ca", 5, b"crl five again", &CrlMark::default())
        .await
        .unwrap());
    assert_eq!(
        s.state("crl:test-ca").await.unwrap().as_deref(),
        Some(&b"crl five"[..])
    );
    assert!(s
        .publish_crl("test-ca", 6, b"crl six", &CrlMark::default())
        .await
        .unwrap());
    assert_eq!(
        s.state("crl:test-ca").await.unwrap().as_deref(),
        Some(&b"crl six"[..])
    );
    // Each CA's CRL is fenced on its own: another CA's lower number still publishes.
    assert!(s
        .publish_crl("other-ca", 3, b"other three", &CrlMark::default())
        .await
        .unwrap());
    assert_eq!(
        s.state("crl:test-ca").await.unwrap().as_deref(),
        Some(&b"crl six"[..])
    );

    // Issue: the transaction (reserved first) and the certificate, together.
    issue(
        s.as_ref(),
        &tx_issuing("t1", "k1"),
        &cert("01", "t1", "CN=one", year),
        None,
    )
    .await
    .unwrap();
    let t1 = s.transaction("t1").await.unwrap().unwrap();
    assert_eq!(
        t1.state,
        TransactionState::Issued {
            serial: "01".into()
        }
    );
    assert!(t1.csr.is_empty(), "the CSR is not kept once decided");
    assert_eq!(
        s.certificate("01").await.unwrap().unwrap().subject,
        "CN=one"
    );
    // A reservation finds the record: resends of a decided transaction are answered from it.
    let again = s
        .reserve(&tx_issuing("t1", "k1"), None, RESERVATION_SECS)
        .await
        .unwrap();
    assert!(matches!(
        again.map(|t| t.state),
        Some(TransactionState::Issued { .. })
    ));
    // One outcome per transaction, one key per transaction, one use per serial.
    conflict(
        s.record_issued(
            &tx_issuing("t1", "k1"),
            &cert("02", "t1", "CN=x", year),
            None,
            "test",
        )
        .await,
    );
    conflict(
        s.record_issued(
            &tx_issuing("t1", "k9"),
            &cert("03", "t1", "CN=x", year),
            None,
            "test",
        )
        .await,
    );
    serial_taken(
        issue(
            s.as_ref(),
            &tx_issuing("t2", "k2"),
            &cert("01", "t2", "CN=x", year),
            None,
        )
        .await,
    );
    assert!(
        matches!(
            s.transaction("t2").await.unwrap().map(|t| t.state),
            Some(TransactionState::Issuing { .. })
        ),
        "the reservation stays until given up"
    );
    s.release("t2", "holder-k2").await.unwrap();
    assert!(
        s.transaction("t2").await.unwrap().is_none(),
        "no half-written transaction"
    );
    assert!(
        s.certificate("02").await.unwrap().is_none(),
        "no half-written certificate"
    );
    // Issuing needs a reservation (or a PENDING record) of the same key.
    conflict(
        s.record_issued(
            &tx_issuing("t-unreserved", "ku"),
            &cert("0d", "t-unreserved", "CN=x", year),
            None,
            "test",
        )
        .await,
    );
    // A live reservation is another request's: a second one finds it.
    assert!(s
        .reserve(&tx_issuing("t-live", "kl"), None, RESERVATION_SECS)
        .await
        .unwrap()
        .is_none());
    let live = s
        .reserve(&tx_issuing("t-live", "kl"), None, RESERVATION_SECS)
        .await
        .unwrap();
    assert!(matches!(
        live.map(|t| t.state),
        Some(TransactionState::Issuing { until }) if until > now()
    ));
    s.release("t-live", "holder-kl").await.unwrap();
    // A reservation whose node died lapses, and a resend of the same key takes it over (with
    // the challenge it claimed).
    s.insert_challenge(&challenge("h-lapse", now() + 3600), "test")
        .await
        .unwrap();
    assert!(s
        .reserve(&tx_issuing("t-lapse", "kx"), Some("h-lapse"), 3)
        .await
        .unwrap()
        .is_none());
    spent(
        s.reserve(
            &tx_issuing("t-other", "ko"),
            Some("h-lapse"),
            RESERVATION_SECS,
        )
        .await,
    );
    // (A lease of three seconds: a loaded machine can take one between two calls.)
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await;
    assert!(
        s.reserve(&tx_issuing("t-lapse", "ky"), None, RESERVATION_SECS)
            .await
            .unwrap()
            .is_some(),
        "another key does not take it over"
    );
    // The resend holds it now: the holder that lapsed records nothing and releases nothing.
    let mut resend = tx_issuing("t-lapse", "kx");
    resend.holder = Some("holder-resend".into());
    resend.challenge_id = Some("chl_h-lapse".into());
    assert!(s
        .reserve(&resend, Some("h-lapse"), RESERVATION_SECS)
        .await
        .unwrap()
        .is_none());
    let mut late = resend.clone();
    late.holder = Some("holder-kx".into());
    conflict(
        s.record_issued(
            &late,
            &cert("0a1", "t-lapse", "CN=x", year),
            Some("h-lapse"),
            "test",
        )
        .await,
    );
    s.release("t-lapse", "holder-kx").await.unwrap();
    assert!(
        s.transaction("t-lapse").await.unwrap().is_some(),
        "only the holder gives a reservation up"
    );
    // A reservation made with a challenge is issued only by spending that challenge.
    spent(
        s.record_issued(&resend, &cert("0a2", "t-lapse", "CN=x", year), None, "test")
            .await,
    );
    s.insert_challenge(&challenge("h-second", now() + 3600), "test")
        .await
        .unwrap();
    spent(
        s.record_issued(
            &resend,
            &cert("0a3", "t-lapse", "CN=x", year),
            Some("h-second"),
            "test",
        )
        .await,
    );
    assert!(s.certificate("0a2").await.unwrap().is_none());
    assert!(s.certificate("0a3").await.unwrap().is_none());
    s.release("t-lapse", "holder-resend").await.unwrap();
    assert!(s.transaction("t-lapse").await.unwrap().is_none());
    // A lapsed reservation nobody resends is dropped, its challenge freed, on the record.
    assert!(s
        .reserve(&tx_issuing("t-gone", "kg"), Some("h-lapse"), 1)
        .await
        .unwrap()
        .is_none());
    assert!(
        s.transaction("t-gone")
            .await
            .unwrap()
            .unwrap()
            .csr
            .is_empty(),
        "a reservation keeps no CSR (it may carry a challenge password)"
    );
    assert_eq!(
        s.abandon_lapsed(None, "test").await.unwrap(),
        0,
        "still live"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(s.abandon_lapsed(None, "test").await.unwrap(), 1);
    assert!(s.transaction("t-gone").await.unwrap().is_none());
    assert!(s
        .reserve(
            &tx_issuing("t-again", "ka"),
            Some("h-lapse"),
            RESERVATION_SECS
        )
        .await
        .unwrap()
        .is_none());
    s.release("t-again", "holder-ka").await.unwrap();
    let abandoned = s.audit_records(0, 0).await.unwrap();
    assert!(abandoned
        .iter()
        .any(|r| r.action == "reservation_abandoned" && r.subject == "t-gone"));

    // Pending, then issued; pending, then rejected.
    s.insert_pending(&tx("t3", "k3"), None, "test")
        .await
        .unwrap();
    conflict(s.insert_pending(&tx("t3", "k3"), None, "test").await);
    assert_eq!(
        s.transaction("t3").await.unwrap().unwrap().csr,
        vec![1, 2, 3]
    );
    s.insert_pending(&tx("t4", "k4"), None, "test")
        .await
        .unwrap();
    let pending: Vec<String> = s
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.transaction_id)
        .collect();
    assert_eq!(pending, vec!["t3".to_string(), "t4".to_string()]);
    assert_eq!(s.transactions_named("t3").await.unwrap().len(), 1);
    assert!(s.transactions_named("none").await.unwrap().is_empty());
    // An approval claims the PENDING record first, so two officers cannot both sign.
    assert!(s
        .reserve(&tx("t3", "k3"), None, RESERVATION_SECS)
        .await
        .unwrap()
        .is_none());
    assert!(
        s.reserve(&tx("t3", "k3"), None, RESERVATION_SECS)
            .await
            .unwrap()
            .is_some(),
        "claimed by the first approval"
    );
    s.record_issued(
        &tx("t3", "k3"),
        &cert("04", "t3", "CN=three", year),
        None,
        "test",
    )
    .await
    .unwrap();
    s.reject("t4", "officer said no", "test").await.unwrap();
    conflict(s.reject("t4", "again", "test").await);
    conflict(s.reject("nope", "x", "test").await);
    assert_eq!(
        s.transaction("t4").await.unwrap().unwrap().state,
        TransactionState::Rejected {
            reason: "officer said no".into()
        }
    );
    conflict(
        s.record_issued(
            &tx("t4", "k4"),
            &cert("05", "t4", "CN=x", year),
            None,
            "test",
        )
        .await,
    );
    assert!(s.pending().await.unwrap().is_empty());

    // One-time challenges: claimed by the reservation, consumed with the certificate, once,
    // before expiry, for its profile; found by hash and by id, with their minter.
    s.insert_challenge(&challenge("h1", now() + 3600), "test")
        .await
        .unwrap();
    conflict(
        s.insert_challenge(&challenge("h1", now() + 3600), "test")
            .await,
    );
    let by_id = s.challenge_by_id("chl_h1").await.unwrap().unwrap();
    assert_eq!(
        (by_id.hash.as_str(), by_id.created_by.as_str()),
        ("h1", "token:minter")
    );
    // A released reservation frees its challenge.
    assert!(s
        .reserve(&tx_issuing("t5", "k5"), Some("h1"), RESERVATION_SECS)
        .await
        .unwrap()
        .is_none());
    spent(
        s.reserve(&tx_issuing("t5b", "k5b"), Some("h1"), RESERVATION_SECS)
            .await,
    );
    s.release("t5", "holder-k5").await.unwrap();
    issue(
        s.as_ref(),
        &tx_issuing("t6", "k6"),
        &cert("06", "t6", "CN=six", year),
        Some("h1"),
    )
    .await
    .unwrap();
    assert!(s.challenge("h1").await.unwrap().unwrap().used_at.is_some());
    spent(
        issue(
            s.as_ref(),
            &tx_issuing("t7", "k7"),
            &cert("07", "t7", "CN=x", year),
            Some("h1"),
        )
        .await,
    );
    assert!(
        s.certificate("07").await.unwrap().is_none(),
        "nothing written when the challenge is spent"
    );
    assert!(s.transaction("t7").await.unwrap().is_none());
    s.insert_challenge(&challenge("h-old", now() - 1), "test")
        .await
        .unwrap();
    spent(
        issue(
            s.as_ref(),
            &tx_issuing("t8", "k8"),
            &cert("08", "t8", "CN=x", year),
            Some("h-old"),
        )
        .await,
    );
    let mut other_profile = challenge("h-other", now() + 3600);
    other_profile.profile = "servers".into();
    s.insert_challenge(&other_profile, "test").await.unwrap();
    spent(
        issue(
            s.as_ref(),
            &tx_issuing("t9", "k9"),
            &cert("09", "t9", "CN=x", year),
            Some("h-other"),
        )
        .await,
    );
    s.insert_challenge(&challenge("h-pending", now() + 3600), "test")
        .await
        .unwrap();
    s.insert_pending(&tx("t10", "k10"), Some("h-pending"), "test")
        .await
        .unwrap();
    spent(
        s.insert_pending(&tx("t11", "k11"), Some("h-pending"), "test")
            .await,
    );
    assert!(s.challenge("missing").await.unwrap().is_none());

    // A certificate renews once, and only while it is valid.
    let mut renewal = tx_issuing("t-renew", "kr");
    renewal.renews = Some("06".into());
    issue(
        s.as_ref(),
        &renewal,
        &cert("0e", "t-renew", "CN=six", year),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        s.certificate("06")
            .await
            .unwrap()
            .unwrap()
            .renewed_by
            .as_deref(),
        Some("0e")
    );
    let mut twice = tx_issuing("t-renew2", "kr2");
    twice.renews = Some("06".into());
    stale(
        issue(
            s.as_ref(),
            &twice,
            &cert("0f", "t-renew2", "CN=six", year),
            None,
        )
        .await,
    );
    assert!(s.certificate("0f").await.unwrap().is_none());
    s.release("t-renew2", "holder-kr2").await.unwrap();

    // Listing with filters.
    issue(
        s.as_ref(),
        &tx_issuing("t12", "k12"),
        &cert("0c", "t12", "CN=soon", now() + 5 * 86400),
        None,
    )
    .await
    .unwrap();
    let soon = s
        .certificates(&CertFilter {
            expiring_within_secs: Some(30 * 86400),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        soon.iter().map(|c| c.serial.as_str()).collect::<Vec<_>>(),
        vec!["0c"]
    );
    let named = s
        .certificates(&CertFilter {
            subject_contains: Some("thr".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(named.len(), 1);
    let all = s.certificates(&CertFilter::default()).await.unwrap();
    assert_eq!(all.len(), 5);
    let none = s
        .certificates(&CertFilter {
            profile: Some("servers".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    let revoked = s
        .certificates(&CertFilter {
            status: Some(CertStatus::Revoked),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(revoked.is_empty());
    let limited = s
        .certificates(&CertFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
    super::conformance_records::crl_partition_filter(&s, soon[0].not_after).await;

    // Concurrency: one challenge, ten requests, one certificate.
    s.insert_challenge(&challenge("h-race", now() + 3600), "test")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            issue(
                s.as_ref(),
                &tx_issuing(&format!("race-{i}"), &format!("rk{i}")),
                &cert(&format!("a{i}"), &format!("race-{i}"), "CN=race", year),
                Some("h-race"),
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "a one-time challenge issued {ok} certificates");
    // One transaction resent ten times at once: one certificate.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            issue(
                s.as_ref(),
                &tx_issuing("same", "ks"),
                &cert(&format!("b{i}"), "same", "CN=s", year),
                None,
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "one transaction issued {ok} certificates");

    // The audit log: every change above left a record, chained, in order, under the head.
    s.audit(
        "test",
        "refused",
        "t-x",
        &serde_json::json!({"reason": "wrong challenge"}),
    )
    .await
    .unwrap();
    let records = s.audit_records(0, 0).await.unwrap();
    let head = s.audit_head().await.unwrap();
    assert!(records.len() >= 15, "{}", records.len());
    assert_eq!(head.0, records.len() as i64);
    verify_audit(&records, (head.0, &head.1)).unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    for a in [
        "issued",
        "pending",
        "approved",
        "rejected",
        "challenge_created",
        "token_created",
        "token_revoked",
        "refused",
    ] {
        assert!(actions.contains(&a), "no `{a}` record in {actions:?}");
    }
    // Failed writes left no record: exactly one issued record per certificate.
    let issued = records
        .iter()
        .filter(|r| r.action == "issued" || r.action == "approved")
        .count();
    assert_eq!(
        issued,
        s.certificates(&CertFilter::default()).await.unwrap().len()
    );
    assert_eq!(
        s.audit_records(records.len() as i64 - 2, 0)
            .await
            .unwrap()
            .len(),
        2
    );
    // Tampering is found: an edited record, a deleted tail, a broken link.
    let mut edited = records.clone();
    edited[3].details = r#"{"tampered":true}"#.into();
    assert_eq!(verify_audit(&edited, (head.0, &head.1)).unwrap_err().0, 4);
    let cut = &records[..records.len() - 1];
    assert!(verify_audit(cut, (head.0, &head.1)).is_err());
    let mut gap = records.clone();
    gap.remove(5);
    assert_eq!(verify_audit(&gap, (head.0, &head.1)).unwrap_err().0, 6);
}
