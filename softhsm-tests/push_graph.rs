//! The Intune push connector on its own, against the Graph-shaped fake of `fake_push.rs`:
//! what each of Graph's answers to a group membership change means.

use crate::fake_mdm::{CLIENT_ID, CLIENT_SECRET};
use crate::fake_push;
use crate::push::ALICE;

/// Graph answers a removal with 404 both when the device is not in the group and when the
/// group does not exist: only the first settles a withdrawal; a group_id that names no group
/// (mistyped, or changed since the deliver) fails it, with Graph's words, for the operator.
#[test]
fn an_intune_withdrawal_from_a_group_that_does_not_exist_is_not_settled() {
    use sigil::mdm::push::{connect, PushError, PushEvent, PushSettings, PushTarget};
    use sigil::mdm::{DirectorySettings, IntuneSettings};
    let (mdm, graph) = fake_push::intune(Vec::new(), &["dev-1"], "grp-wifi");
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("graph-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let directory = DirectorySettings::Intune(IntuneSettings {
        base_url: mdm.url.clone(),
        token_url: format!("{}/tenant-1/oauth2/v2.0/token", mdm.url),
        tenant_id: "tenant-1".into(),
        client_id: CLIENT_ID.into(),
        client_secret_file: secret.display().to_string(),
        timeout_secs: 2,
        retries: 1,
        ..IntuneSettings::default()
    });
    let target = PushTarget {
        push: "push_1".into(),
        attempt: 1,
        registration: "reg_1".into(),
        email: ALICE.into(),
        credential: "phone".into(),
        device_id: "dev-1".into(),
        serial: None,
        not_after: None,
        scep_payload: None,
        profile: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let to = |group: &str| {
        let push = PushSettings {
            group_id: group.into(),
            ..PushSettings::default()
        };
        connect("intune", &directory, &push).unwrap()
    };
    // The right group, the device not in it: nothing to take back.
    let said = rt
        .block_on(to("grp-wifi").push(PushEvent::Withdraw, &target))
        .unwrap();
    assert!(said.contains("not in group grp-wifi"), "{said}");
    // In it, then out.
    rt.block_on(to("grp-wifi").push(PushEvent::Deliver, &target))
        .unwrap();
    assert_eq!(graph.members(), ["obj-dev-1"]);
    let said = rt
        .block_on(to("grp-wifi").push(PushEvent::Withdraw, &target))
        .unwrap();
    assert!(said.contains("removed from group grp-wifi"), "{said}");
    assert!(graph.members().is_empty());
    // A group that does not exist: not settled as taken back, and not retried for ever.
    rt.block_on(to("grp-wifi").push(PushEvent::Deliver, &target))
        .unwrap();
    let e = rt
        .block_on(to("grp-wfi").push(PushEvent::Withdraw, &target))
        .unwrap_err();
    assert!(matches!(e, PushError::Mdm(_)) && !e.retryable(), "{e:?}");
    let words = e.to_string();
    assert!(
        words.contains("grp-wfi") && words.contains("group_id") && words.contains("404"),
        "{words}"
    );
    assert_eq!(
        graph.members(),
        ["obj-dev-1"],
        "the device is still in its group"
    );
}
