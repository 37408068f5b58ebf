//! Conformance of the records around enrollment, on both engines: registrations (their
//! states, compare-and-set, expiry), certificate expiry (counts, the webhook's list, CRL
//! marks) and named CA state set by compare-and-set.

use std::sync::Arc;

use super::conformance::{cert, challenge, conflict, issue, spent, stale, tx, tx_issuing};
use super::*;

pub(super) fn registration(id: &str, email: &str, expires_at: i64) -> RegistrationRecord {
    RegistrationRecord {
        id: id.into(),
        email: email.into(),
        credential: "piv".into(),
        state: RegistrationState::Open,
        devices: "[]".into(),
        directory_error: None,
        device_id: None,
        device: None,
        subject: None,
        sans: Vec::new(),
        created_by: "token:a".into(),
        requested_by: None,
        decided_by: None,
        comment: None,
        challenge_hash: None,
        serial: None,
        created_at: now(),
        updated_at: now(),
        expires_at,
    }
}

/// Registrations: compare-and-set steps, challenge replacement, the link made by issuance,
/// expiry of registrations and of PENDING enrollments, each step audited.
pub(super) async fn registrations(s: Arc<dyn Store>) {
    let r = registration("reg_1", "alice@agency.gov", now() + 3600);
    s.insert_registration(&r, "token:a").await.unwrap();
    conflict(s.insert_registration(&r, "token:a").await);
    assert_eq!(s.registration("reg_1").await.unwrap().unwrap(), r);
    assert!(s.registration("reg_none").await.unwrap().is_none());
    // File the request, then approve: each step only from the state it expects.
    let mut filed = r.clone();
    filed.state = RegistrationState::Requested;
    filed.device_id = Some("dev-1".into());
    filed.subject = Some("CN=alice@agency.gov".into());
    filed.sans = vec!["email:alice@agency.gov".into()];
    filed.requested_by = Some("token:a".into());
    let j = serde_json::json!({});
    assert!(s
        .update_registration(&filed, RegistrationState::Open, "requested", "token:a", &j)
        .await
        .unwrap());
    assert!(!s
        .update_registration(&filed, RegistrationState::Open, "requested", "token:a", &j)
        .await
        .unwrap());
    let mut approved = filed.clone();
    approved.state = RegistrationState::Approved;
    approved.decided_by = Some("token:b".into());
    // No challenge for a registration that is not approved yet.
    assert!(!s
        .registration_challenge("reg_1", &challenge("regch1", now() + 600), "token:m")
        .await
        .unwrap());
    assert!(s
        .update_registration(
            &approved,
            RegistrationState::Requested,
            "approved",
            "token:b",
            &j
        )
        .await
        .unwrap());
    let mut c1 = challenge("regch1", now() + 600);
    c1.profile = "default".into();
    assert!(s
        .registration_challenge("reg_1", &c1, "token:m")
        .await
        .unwrap());
    // A second collection replaces the first challenge.
    let c2 = challenge("regch2", now() + 600);
    assert!(s
        .registration_challenge("reg_1", &c2, "token:m")
        .await
        .unwrap());
    assert!(s
        .challenge("regch1")
        .await
        .unwrap()
        .unwrap()
        .used_at
        .is_some());
    let got = s.registration("reg_1").await.unwrap().unwrap();
    assert_eq!(got.challenge_hash.as_deref(), Some("regch2"));
    assert_eq!(got.sans, vec!["email:alice@agency.gov".to_string()]);
    // The replaced challenge no longer issues; the current one links the certificate.
    spent(
        issue(
            s.as_ref(),
            &tx_issuing("reg-t1", "kr"),
            &cert("ab01", "reg-t1", "CN=alice", now() + 86400),
            Some("regch1"),
        )
        .await,
    );
    let mut c = cert("ab02", "reg-t2", "CN=alice", now() + 86400);
    c.device_id = Some("dev-1".into());
    issue(s.as_ref(), &tx_issuing("reg-t2", "kr"), &c, Some("regch2"))
        .await
        .unwrap();
    let got = s.registration("reg_1").await.unwrap().unwrap();
    assert_eq!(got.state, RegistrationState::Issued);
    assert_eq!(got.serial.as_deref(), Some("ab02"));
    assert_eq!(
        s.certificate("ab02")
            .await
            .unwrap()
            .unwrap()
            .device_id
            .as_deref(),
        Some("dev-1")
    );
    // A renewal of the registration's certificate moves the registration to the new one.
    let mut renewal = tx_issuing("reg-t3", "kr2");
    renewal.renews = Some("ab02".into());
    issue(
        s.as_ref(),
        &renewal,
        &cert("ab03", "reg-t3", "CN=alice", now() + 2 * 86400),
        None,
    )
    .await
    .unwrap();
    let got = s.registration("reg_1").await.unwrap().unwrap();
    assert_eq!(got.state, RegistrationState::Issued);
    assert_eq!(got.serial.as_deref(), Some("ab03"));
    // An issued registration takes a renewal challenge: used without renewing the
    // certificate it holds it issues nothing; used as that renewal it moves the registration.
    assert!(s
        .registration_challenge("reg_1", &challenge("regch3", now() + 600), "token:m")
        .await
        .unwrap());
    spent(
        issue(
            s.as_ref(),
            &tx_issuing("reg-t4", "kr3"),
            &cert("ab04", "reg-t4", "CN=alice", now() + 86400),
            Some("regch3"),
        )
        .await,
    );
    assert!(s
        .registration_challenge("reg_1", &challenge("regch4", now() + 600), "token:m")
        .await
        .unwrap());
    let mut by_challenge = tx_issuing("reg-t5", "kr4");
    by_challenge.renews = Some("ab03".into());
    issue(
        s.as_ref(),
        &by_challenge,
        &cert("ab05", "reg-t5", "CN=alice", now() + 3 * 86400),
        Some("regch4"),
    )
    .await
    .unwrap();
    let got = s.registration("reg_1").await.unwrap().unwrap();
    assert_eq!(got.state, RegistrationState::Issued);
    assert_eq!(got.serial.as_deref(), Some("ab05"));
    assert!(s
        .challenge("regch4")
        .await
        .unwrap()
        .unwrap()
        .used_at
        .is_some());
    // Listing by person.
    s.insert_registration(
        &registration("reg_2", "bob@agency.gov", now() - 1),
        "token:a",
    )
    .await
    .unwrap();
    let mut late = registration("reg_3", "bob@agency.gov", now() + 3600);
    late.state = RegistrationState::Approved;
    late.challenge_hash = None;
    s.insert_registration(&late, "token:a").await.unwrap();
    assert_eq!(
        s.registrations(Some("bob@agency.gov"), 0)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(s.registrations(None, 0).await.unwrap().len() >= 3);
    // Listing by device and credential, newest first.
    let mut again = registration("reg_4", "alice@agency.gov", now() + 3600);
    again.device_id = Some("dev-1".into());
    again.created_at = now() + 1;
    s.insert_registration(&again, "token:a").await.unwrap();
    let mut other = registration("reg_5", "alice@agency.gov", now() + 3600);
    other.device_id = Some("dev-1".into());
    other.credential = "wifi".into();
    s.insert_registration(&other, "token:a").await.unwrap();
    let ids = |v: Vec<RegistrationRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.device_registrations("piv", "dev-1").await.unwrap()),
        ["reg_4", "reg_1"]
    );
    assert_eq!(
        ids(s.device_registrations("wifi", "dev-1").await.unwrap()),
        ["reg_5"]
    );
    assert!(s
        .device_registrations("piv", "dev-2")
        .await
        .unwrap()
        .is_empty());
    // Expiry: the overdue registration and old PENDING enrollments of the named profile.
    let mut p = tx("exp-old", "ke");
    p.profile = "waiting".into();
    s.insert_pending(&p, None, "ra").await.unwrap();
    let (regs, txs) = s
        .expire(now(), &[("waiting".to_string(), now() + 1)])
        .await
        .unwrap();
    assert_eq!((regs, txs), (1, 1));
    assert_eq!(
        s.registration("reg_2").await.unwrap().unwrap().state,
        RegistrationState::Expired
    );
    assert_eq!(
        s.registration("reg_3").await.unwrap().unwrap().state,
        RegistrationState::Approved
    );
    assert_eq!(
        s.transaction("exp-old").await.unwrap().unwrap().state,
        TransactionState::Rejected {
            reason: EXPIRED_REASON.into()
        }
    );
    assert_eq!(s.expire(now(), &[]).await.unwrap(), (0, 0));
    let actions: Vec<String> = s
        .audit_records(0, 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.subject.starts_with("reg_") || a.subject == "exp-old")
        .map(|a| a.action)
        .collect();
    for want in [
        "registration_created",
        "requested",
        "approved",
        "scep_payload_collected",
        "registration_issued",
        "registration_renewed",
        "expired",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "{want} not in {actions:?}"
        );
    }
    let head = s.audit_head().await.unwrap();
    verify_audit(&s.audit_records(0, 0).await.unwrap(), (head.0, &head.1)).unwrap();
}

/// Expiry: counts per profile and the webhook's not-yet-announced list, on both engines.
pub(super) async fn expiry(s: Arc<dyn Store>) {
    let at = now();
    for (serial, profile, days) in [
        ("e1", "fleet", 3),
        ("e2", "fleet", 20),
        ("e3", "other", 5),
        ("e4", "fleet", 90),
        ("e6", "other", 200),
    ] {
        let mut c = cert(serial, &format!("t-{serial}"), "CN=x", at + days * 86_400);
        c.profile = profile.into();
        issue(
            s.as_ref(),
            &tx_issuing(&format!("t-{serial}"), serial),
            &c,
            None,
        )
        .await
        .unwrap();
    }
    // A revocation marks its issuer's CRL out of date, in the same transaction; a CRL that
    // read the mark before the list clears it, unless another revocation came since.
    assert_eq!(s.crl_mark("CN=Test CA").await.unwrap().lacking(), 0);
    assert!(s
        .revoke_certificate("e3", 1, "keyCompromise", "o")
        .await
        .unwrap());
    let mark = s.crl_mark("CN=Test CA").await.unwrap();
    assert_eq!(mark.lacking(), 1);
    assert!(mark.since > 0);
    assert!(s
        .revoke_certificate("e4", 1, "keyCompromise", "o")
        .await
        .unwrap());
    assert!(s.publish_crl("crl-ca", 1, b"crl", &mark).await.unwrap());
    assert_eq!(
        s.crl_mark("CN=Test CA").await.unwrap().lacking(),
        1,
        "a revocation after the list was read keeps the mark"
    );
    let later = s.crl_mark("CN=Test CA").await.unwrap();
    assert!(s.publish_crl("crl-ca", 2, b"crl", &later).await.unwrap());
    assert_eq!(s.crl_mark("CN=Test CA").await.unwrap().lacking(), 0);
    // A slow builder that read the mark long ago clears nothing it did not see, even once
    // the counts have moved on past what it read.
    assert!(s
        .revoke_certificate("e6", 1, "keyCompromise", "o")
        .await
        .unwrap());
    let fresh = s.crl_mark("CN=Test CA").await.unwrap();
    assert_eq!((fresh.lacking(), fresh.since > 0), (1, true));
    assert!(s.publish_crl("crl-ca", 3, b"crl", &mark).await.unwrap());
    assert_eq!(s.crl_mark("CN=Test CA").await.unwrap().lacking(), 1);
    // Revoked, it renews nothing.
    let mut revoked_renewal = tx_issuing("t-renew-revoked", "krr");
    revoked_renewal.renews = Some("e3".into());
    stale(
        issue(
            s.as_ref(),
            &revoked_renewal,
            &cert("e5", "t-renew-revoked", "CN=x", at + 86_400),
            None,
        )
        .await,
    );
    let week = s.expiring_counts(at, 7 * 86_400).await.unwrap();
    assert!(week.contains(&("fleet".to_string(), 1)), "{week:?}");
    assert!(
        !week.iter().any(|(p, _)| p == "other"),
        "revoked ones do not count"
    );
    let month = s.expiring_counts(at, 30 * 86_400).await.unwrap();
    assert!(month.contains(&("fleet".to_string(), 2)), "{month:?}");
    assert!(
        s.expiring_counts(at, 100 * 86_400)
            .await
            .unwrap()
            .contains(&("fleet".to_string(), 2)),
        "e4 is revoked"
    );
    let due = s.expiring_unannounced(at, 30 * 86_400, 10).await.unwrap();
    let serials: Vec<&str> = due
        .iter()
        .map(|c| c.serial.as_str())
        .filter(|s| s.starts_with('e'))
        .collect();
    assert_eq!(serials, ["e1", "e2"], "soonest first");
    s.expiry_announced("e1", "sigil").await.unwrap();
    s.expiry_announced("e1", "sigil").await.unwrap();
    let due = s.expiring_unannounced(at, 30 * 86_400, 10).await.unwrap();
    assert!(!due.iter().any(|c| c.serial == "e1"));
    let announced = s
        .audit_records(0, 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "expiry_announced" && a.subject == "e1")
        .count();
    assert_eq!(announced, 1, "announced once");
}

/// People and sessions: a sign-in adds or updates the person; a session lives until its end
/// or until idle too long, and a sign-in in progress is taken once.
pub(super) async fn identity(s: Arc<dyn Store>) {
    let at = now();
    let mut alice = PersonRecord {
        id: "oidc:https://idp#a1".into(),
        email: Some("alice@agency.gov".into()),
        name: "Alice".into(),
        roles: vec!["officer".into()],
        first_seen: at,
        last_seen: at,
    };
    s.upsert_person(&alice).await.unwrap();
    alice.roles = vec!["officer".into(), "user".into()];
    alice.last_seen = at + 5;
    s.upsert_person(&alice).await.unwrap();
    let got = s.person(&alice.id).await.unwrap().unwrap();
    assert_eq!(got.roles, alice.roles);
    assert_eq!((got.first_seen, got.last_seen), (at, at + 5));
    assert!(s.person("oidc:https://idp#nobody").await.unwrap().is_none());

    let session = |id: &str, kind: SessionKind, expires_at: i64, last_seen: i64| SessionRecord {
        id: id.into(),
        kind,
        person: Some(alice.id.clone()),
        data: "{}".into(),
        created_at: at,
        last_seen,
        expires_at,
    };
    s.insert_session(&session("s1", SessionKind::Session, at + 3600, at))
        .await
        .unwrap();
    conflict(
        s.insert_session(&session("s1", SessionKind::Session, at + 3600, at))
            .await,
    );
    assert!(s.session("s1", 600).await.unwrap().is_some());
    // Idle too long, or past its end: gone, and removed.
    s.insert_session(&session(
        "s-idle",
        SessionKind::Session,
        at + 3600,
        at - 700,
    ))
    .await
    .unwrap();
    assert!(s.session("s-idle", 600).await.unwrap().is_none());
    assert!(
        s.session("s-idle", 100_000).await.unwrap().is_none(),
        "removed"
    );
    s.insert_session(&session("s-old", SessionKind::Session, at - 1, at))
        .await
        .unwrap();
    assert!(s.session("s-old", 600).await.unwrap().is_none());
    // A sign-in is not a session, and is taken once.
    s.insert_session(&session("l1", SessionKind::Login, at + 600, at))
        .await
        .unwrap();
    assert!(s.session("l1", 600).await.unwrap().is_none());
    assert!(s.take_login("l1").await.unwrap().is_some());
    assert!(s.take_login("l1").await.unwrap().is_none(), "replayed");
    s.insert_session(&session("l-old", SessionKind::Login, at - 1, at))
        .await
        .unwrap();
    assert!(s.take_login("l-old").await.unwrap().is_none(), "expired");
    assert!(s.delete_session("s1").await.unwrap());
    assert!(!s.delete_session("s1").await.unwrap());
    s.insert_session(&session("s-end", SessionKind::Session, at - 1, at))
        .await
        .unwrap();
    assert!(s.purge_sessions().await.unwrap() >= 1);
}

/// The filters behind a CRL partition: one issuer, notAfter in [start, end). `soon_ends`: the
/// notAfter of the only certificate of `CN=Test CA` that ends within 30 days (of five).
pub(super) async fn crl_partition_filter(s: &Arc<dyn Store>, soon_ends: i64) {
    // A CRL partition: one issuer, notAfter in [start, end).
    let window = |from: i64, to: i64, issuer: &str| {
        let s = s.clone();
        let issuer = issuer.to_string();
        async move {
            s.certificates(&CertFilter {
                issuer: Some(issuer),
                not_after_in: Some((from, to)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.serial)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        window(soon_ends, soon_ends + 1, "CN=Test CA").await,
        vec!["0c"]
    );
    assert!(window(soon_ends - 10, soon_ends, "CN=Test CA")
        .await
        .is_empty());
    assert!(window(soon_ends, soon_ends + 1, "CN=Other CA")
        .await
        .is_empty());
    assert_eq!(
        s.certificates(&CertFilter {
            issuer: Some("CN=Test CA".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        5
    );
}

/// CRL listings: the number and the revoked certificates of one issuer (in a notAfter
/// window, for a partition); under concurrent revocations, a listing numbered after another
/// holds at least what that one did.
pub(super) async fn crl_listings(s: Arc<dyn Store>) {
    let at = now();
    let issuer = "CN=Listing CA";
    let serial = |i: i64| format!("c1{i:02x}");
    for i in 0..24 {
        let mut c = cert(
            &serial(i),
            &format!("t-{}", serial(i)),
            "CN=l",
            at + (i + 1) * 86_400,
        );
        c.issuer = issuer.into();
        issue(
            s.as_ref(),
            &tx_issuing(&format!("t-{}", serial(i)), &serial(i)),
            &c,
            None,
        )
        .await
        .unwrap();
    }
    let listed = |v: Vec<CrlEntry>| {
        let mut v: Vec<String> = v.into_iter().map(|c| c.serial).collect();
        v.sort();
        v
    };
    let (n0, none) = s.crl_listing(issuer, None).await.unwrap();
    assert!(none.is_empty());
    for i in [0, 5] {
        assert!(s
            .revoke_certificate(&serial(i), 1, "keyCompromise", "o")
            .await
            .unwrap());
    }
    let (n1, both) = s.crl_listing(issuer, None).await.unwrap();
    assert!(n1 > n0);
    assert_eq!(listed(both), vec![serial(0), serial(5)]);
    // A partition: notAfter in [start, end); another issuer's window lists nothing of it.
    let week = Some((at + 6 * 86_400, at + 7 * 86_400));
    let (n2, one) = s.crl_listing(issuer, week).await.unwrap();
    assert!(n2 > n1);
    assert_eq!(listed(one), vec![serial(5)]);
    let (_, other) = s.crl_listing("CN=Another CA", None).await.unwrap();
    assert!(other.is_empty());
    // Revocations and listings at once.
    let mut revocations = Vec::new();
    for i in (1..24).filter(|i| *i != 5) {
        let s = s.clone();
        let serial = serial(i);
        revocations.push(tokio::spawn(async move {
            s.revoke_certificate(&serial, 4, "superseded", "o")
                .await
                .unwrap()
        }));
    }
    let mut listings = Vec::new();
    for _ in 0..12 {
        let s = s.clone();
        listings.push(tokio::spawn(async move {
            s.crl_listing(issuer, None).await.unwrap()
        }));
    }
    for r in revocations {
        assert!(r.await.unwrap());
    }
    let mut seen = Vec::new();
    for l in listings {
        let (n, v) = l.await.unwrap();
        seen.push((n, listed(v)));
    }
    seen.sort();
    for w in seen.windows(2) {
        assert!(w[0].0 < w[1].0, "numbers are distinct");
        assert!(
            w[0].1.iter().all(|s| w[1].1.contains(s)),
            "CRL {} lists what {} did",
            w[1].0,
            w[0].0
        );
    }
    let (_, all) = s.crl_listing(issuer, None).await.unwrap();
    assert_eq!(all.len(), 24);
}

/// Named CA state by compare-and-set: only over the value read; the loser is told, changes
/// nothing, and concurrent adders to one list all land.
pub(super) async fn replace_state(s: &Arc<dyn Store>) {
    assert!(s.replace_state("bases", None, b"a").await.unwrap());
    assert!(!s.replace_state("bases", None, b"b").await.unwrap());
    assert!(!s.replace_state("bases", Some(b"x"), b"b").await.unwrap());
    assert!(s.replace_state("bases", Some(b"a"), b"a\nb").await.unwrap());
    assert!(!s.replace_state("bases", Some(b"a"), b"a\nc").await.unwrap());
    assert_eq!(
        s.state("bases").await.unwrap().as_deref(),
        Some(&b"a\nb"[..])
    );
    // Eight writers adding to one list at once, each reading and replacing until it lands:
    // nobody's addition is lost.
    let adders = (0..8).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            loop {
                let old = s.state("list").await.unwrap();
                let mut new = old.clone().unwrap_or_default();
                new.push(b'0' + i);
                if s.replace_state("list", old.as_deref(), &new).await.unwrap() {
                    break;
                }
            }
        })
    });
    for a in adders.collect::<Vec<_>>() {
        a.await.unwrap();
    }
    let mut list = s.state("list").await.unwrap().unwrap();
    list.sort_unstable();
    assert_eq!(list, b"01234567");
}
