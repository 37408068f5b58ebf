//! Conformance of the MDM pushes on both engines: the queue (idempotent, claimed by one node,
//! retried) and the follow-ups it names (withdrawals, and renewals at the window's edges).

use std::sync::Arc;

use super::conformance::{cert, issue, tx_issuing};
use super::conformance_records::registration;
use super::*;

/// A push of registration `reg` as queued at `at` (id `push_<reg>_<key>`).
fn record(reg: &str, key: &str, action: PushAction, state: PushState, at: i64) -> PushRecord {
    PushRecord {
        id: format!("push_{reg}_{key}"),
        registration_id: reg.into(),
        key: key.into(),
        action,
        state,
        attempts: 0,
        next_at: at,
        message: String::new(),
        created_at: at,
        updated_at: at,
    }
}

/// Pushes: queued once per registration and key, claimed by one node at a time, settled
/// with an audit record, listed per registration.
pub(super) async fn pushes(s: Arc<dyn Store>) {
    let at = now();
    let push = |id: &str, key: &str, action: PushAction| PushRecord {
        id: id.into(),
        ..record("reg_push", key, action, PushState::Pending, at)
    };
    let deliver = push("push_1", "deliver", PushAction::Deliver);
    assert!(s.queue_push(&deliver, "sigil").await.unwrap());
    // The same key again: nothing queued (idempotent), and no audit record.
    let before = s.audit_head().await.unwrap().0;
    assert!(!s
        .queue_push(&push("push_2", "deliver", PushAction::Deliver), "sigil")
        .await
        .unwrap());
    assert_eq!(s.audit_head().await.unwrap().0, before);
    assert!(s
        .queue_push(&push("push_3", "renew:0a", PushAction::Renew), "sigil")
        .await
        .unwrap());
    let due = s.due_pushes(at, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert!(due.iter().all(|p| p.registration_id == "reg_push"));
    // One claim wins; a claimed push is not due until its lease ends.
    assert!(s.claim_push("push_1", at, at + 60).await.unwrap());
    assert!(!s.claim_push("push_1", at, at + 60).await.unwrap());
    assert_eq!(s.due_pushes(at, 10).await.unwrap().len(), 1);
    assert_eq!(s.due_pushes(at + 60, 10).await.unwrap().len(), 2);
    let mut done = deliver.clone();
    done.state = PushState::Delivered;
    done.attempts = 1;
    done.message = "added to the group".into();
    // A node whose lease is not the current one records nothing.
    assert!(!s
        .settle_push(&done, at + 59, "push_delivered", "sigil")
        .await
        .unwrap());
    assert!(s
        .settle_push(&done, at + 60, "push_delivered", "sigil")
        .await
        .unwrap());
    assert!(!s
        .settle_push(&done, at + 60, "push_delivered", "sigil")
        .await
        .unwrap());
    assert!(!s.claim_push("push_1", at + 100, at + 200).await.unwrap());
    let mine = s.pushes(Some("reg_push"), 0).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0], done);
    assert_eq!(mine[1].action, PushAction::Renew);
    assert!(s.pushes(Some("reg_other"), 0).await.unwrap().is_empty());
    assert!(s.pushes(None, 1).await.unwrap().len() == 1);
    let records = s.audit_records(before - 1, 0).await.unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert!(
        actions.ends_with(&["push_queued", "push_delivered"]),
        "{actions:?}"
    );
}

/// The registrations a push round follows up: delivered, never withdrawn, of a credential with
/// a channel, and ended (rejected, expired, certificate revoked) or in their credential's
/// renewal window without a renewal push.
pub(super) async fn push_follow_ups(s: Arc<dyn Store>) {
    let at = now();
    let day = 86_400;
    let push = |reg: &str, key: &str, action: PushAction, state: PushState| {
        record(reg, key, action, state, at)
    };
    // (registration, credential, state, certificate's notAfter (issued ones), its pushes)
    let delivered = || vec![("deliver", PushAction::Deliver, PushState::Delivered)];
    let cases: Vec<(&str, &str, RegistrationState, Option<i64>, Vec<_>)> = vec![
        (
            "reg_f_renew",
            "piv",
            RegistrationState::Issued,
            Some(at + 5 * day),
            delivered(),
        ),
        (
            "reg_f_later",
            "piv",
            RegistrationState::Issued,
            Some(at + 200 * day),
            delivered(),
        ),
        (
            "reg_f_revoked",
            "piv",
            RegistrationState::Issued,
            Some(at + 200 * day),
            delivered(),
        ),
        (
            "reg_f_rejected",
            "piv",
            RegistrationState::Rejected,
            None,
            delivered(),
        ),
        // Approved, and its deliver never queued (the write after the approval failed): it is
        // named so the deliver gets queued; once queued, or for a credential that does not
        // push, it is not.
        (
            "reg_f_approved_lost",
            "piv",
            RegistrationState::Approved,
            None,
            vec![],
        ),
        (
            "reg_f_approved_queued",
            "piv",
            RegistrationState::Approved,
            None,
            vec![("deliver", PushAction::Deliver, PushState::Pending)],
        ),
        (
            "reg_f_approved_wifi",
            "wifi",
            RegistrationState::Approved,
            None,
            vec![],
        ),
        // Approved, no deliver, and its payload collected by the MDM itself: still named
        // (whether to deliver depends on the channel: a group add mints nothing, a webhook
        // would void the collected challenge, so the authority decides, not the store).
        (
            "reg_f_approved_collected",
            "piv",
            RegistrationState::Approved,
            None,
            vec![],
        ),
        // A deliver that failed for good may still have reached the MDM (the answer lost):
        // its registration is followed up like the others.
        (
            "reg_f_failed",
            "piv",
            RegistrationState::Rejected,
            None,
            vec![("deliver", PushAction::Deliver, PushState::Failed)],
        ),
        (
            "reg_f_withdrawn",
            "piv",
            RegistrationState::Expired,
            None,
            vec![
                ("deliver", PushAction::Deliver, PushState::Delivered),
                ("withdraw", PushAction::Withdraw, PushState::Pending),
            ],
        ),
        (
            "reg_f_renewed",
            "piv",
            RegistrationState::Issued,
            Some(at + 5 * day),
            vec![
                ("deliver", PushAction::Deliver, PushState::Delivered),
                (
                    "renew:f0reg_f_renewed",
                    PushAction::Renew,
                    PushState::Pending,
                ),
            ],
        ),
        (
            "reg_f_other",
            "wifi",
            RegistrationState::Rejected,
            None,
            delivered(),
        ),
        (
            "reg_f_no_renewals",
            "laptop",
            RegistrationState::Issued,
            Some(at + 5 * day),
            delivered(),
        ),
        (
            "reg_f_undelivered",
            "piv",
            RegistrationState::Issued,
            Some(at + 5 * day),
            vec![],
        ),
        (
            "reg_f_lapsed",
            "piv",
            RegistrationState::Issued,
            Some(at - day),
            delivered(),
        ),
        // The window's edges, [now, now + window): a certificate is still valid at its
        // notAfter, so one ending now is renewed; one ending at now + window is not yet.
        (
            "reg_f_edge_now",
            "piv",
            RegistrationState::Issued,
            Some(at),
            delivered(),
        ),
        (
            "reg_f_edge_last",
            "piv",
            RegistrationState::Issued,
            Some(at + 10 * day - 1),
            delivered(),
        ),
        (
            "reg_f_edge_end",
            "piv",
            RegistrationState::Issued,
            Some(at + 10 * day),
            delivered(),
        ),
        (
            "reg_f_edge_gone",
            "piv",
            RegistrationState::Issued,
            Some(at - 1),
            delivered(),
        ),
    ];
    for (id, credential, state, not_after, pushes) in cases {
        let mut r = registration(id, &format!("{id}@agency.gov"), at + 3600);
        r.credential = credential.into();
        r.state = state;
        if id == "reg_f_approved_collected" {
            r.challenge_hash = Some(format!("hash-{id}"));
        }
        if let Some(not_after) = not_after {
            let serial = format!("f0{id}");
            let tid = format!("t-{id}");
            issue(
                s.as_ref(),
                &tx_issuing(&tid, id),
                &cert(&serial, &tid, "CN=f", not_after),
                None,
            )
            .await
            .unwrap();
            r.serial = Some(serial);
        }
        s.insert_registration(&r, "token:a").await.unwrap();
        for (key, action, state) in pushes {
            assert!(s
                .queue_push(&push(id, key, action, state), "sigil")
                .await
                .unwrap());
        }
    }
    assert!(s
        .revoke_certificate("f0reg_f_revoked", 3, "affiliationChanged", "o")
        .await
        .unwrap());
    let windows = vec![("piv".to_string(), 10 * day), ("laptop".to_string(), 0)];
    assert_eq!(
        ours(s.push_follow_ups(at, &windows).await.unwrap()),
        vec![
            "reg_f_approved_collected",
            "reg_f_approved_lost",
            "reg_f_edge_last",
            "reg_f_edge_now",
            "reg_f_failed",
            "reg_f_rejected",
            "reg_f_renew",
            "reg_f_revoked"
        ]
    );
    // The "laptop" credential renewing within ten days too: its registration joins.
    let both = vec![
        ("piv".to_string(), 10 * day),
        ("laptop".to_string(), 10 * day),
    ];
    assert_eq!(
        ours(s.push_follow_ups(at, &both).await.unwrap()),
        vec![
            "reg_f_approved_collected",
            "reg_f_approved_lost",
            "reg_f_edge_last",
            "reg_f_edge_now",
            "reg_f_failed",
            "reg_f_no_renewals",
            "reg_f_rejected",
            "reg_f_renew",
            "reg_f_revoked"
        ]
    );
    // Once followed up, a registration leaves the list.
    let renew = |id: &str| (id.to_string(), format!("renew:f0{id}"), PushAction::Renew);
    let withdraw = |id: &str| (id.to_string(), "withdraw".to_string(), PushAction::Withdraw);
    let deliver = |id: &str| (id.to_string(), "deliver".to_string(), PushAction::Deliver);
    for (id, key, action) in [
        deliver("reg_f_approved_lost"),
        renew("reg_f_renew"),
        withdraw("reg_f_rejected"),
        withdraw("reg_f_failed"),
        renew("reg_f_edge_now"),
        renew("reg_f_edge_last"),
    ] {
        let followed = push(&id, &key, action, PushState::Pending);
        assert!(s.queue_push(&followed, "sigil").await.unwrap());
    }
    assert_eq!(
        ours(s.push_follow_ups(at, &windows).await.unwrap()),
        vec!["reg_f_approved_collected", "reg_f_revoked"]
    );
    assert!(s.push_follow_ups(at, &[]).await.unwrap().is_empty());
}

/// The registrations of this suite among those named (earlier suites on the same store leave
/// their own, such as an approved registration with no deliver).
fn ours(ids: Vec<String>) -> Vec<String> {
    ids.into_iter()
        .filter(|id| id.starts_with("reg_f_"))
        .collect()
}
