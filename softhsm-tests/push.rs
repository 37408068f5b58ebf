//! Delivery through the MDM: an approved registration makes Sigil tell the credential's MDM to
//! deliver (Intune group membership, a Jamf static group, a Workspace ONE profile install, a
//! signed webhook), a withdrawn or revoked one to take it back, and a certificate in its
//! renewal window to re-push; each push retried with backoff, audited, and its state shown on
//! the registration. Against the vendor-shaped fakes of `fake_push.rs`, with the MDM down,
//! throttling, and forgetting a device. The webhook, end to end, is in `push_webhook.rs`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::{call, new_token};
use crate::fake_mdm::{self, CLIENT_ID, CLIENT_SECRET};
use crate::fake_push;
use crate::scep::ScepServer;

pub(crate) const ALICE: &str = "alice@agency.gov";

pub(crate) const PROFILE: &str = r#"
[profiles.derived]
allowed_sans = ["email", "upn", "uri"]
legacy = true
"#;

pub(crate) fn post(s: &ScepServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = call(s, "POST", path, Some(token), Some(body));
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

pub(crate) fn get(s: &ScepServer, path: &str, token: &str) -> Value {
    let r = call(s, "GET", path, Some(token), None);
    assert_eq!(r.status().as_u16(), 200);
    r.json().unwrap()
}

pub(crate) struct Desk {
    pub(crate) filer: String,
    pub(crate) approver: String,
}

pub(crate) fn desk(s: &ScepServer) -> Desk {
    Desk {
        filer: new_token(s, "officer", "olivia@agency.gov").0,
        approver: new_token(s, "officer", "oscar@agency.gov").0,
    }
}

/// Register `device` for Alice under `credential`, file it, and have a second officer approve.
pub(crate) fn approve(s: &ScepServer, d: &Desk, credential: &str, device: &str) -> String {
    let id = file(s, d, credential, device);
    decide(s, d, &id);
    id
}

/// Register `device` for Alice under `credential` and file it.
pub(crate) fn file(s: &ScepServer, d: &Desk, credential: &str, device: &str) -> String {
    let (st, reg) = post(
        s,
        "/api/v1/registrations",
        &d.filer,
        json!({"email": ALICE, "credential": credential}),
    );
    assert_eq!(st, 201, "{reg}");
    let id = reg["id"].as_str().unwrap().to_string();
    let (st, reg) = post(
        s,
        &format!("/api/v1/registrations/{id}/request"),
        &d.filer,
        json!({"device_id": device}),
    );
    assert_eq!(st, 200, "{reg}");
    id
}

/// A second officer approves.
pub(crate) fn decide(s: &ScepServer, d: &Desk, id: &str) {
    let (st, reg) = post(
        s,
        &format!("/api/v1/registrations/{id}/approve"),
        &d.approver,
        json!({"comment": "checked"}),
    );
    assert_eq!(st, 200, "{reg}");
}

/// Wait until the registration's pushes satisfy `ok`; answer them.
pub(crate) fn pushes_until(
    s: &ScepServer,
    token: &str,
    id: &str,
    what: &str,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reg = get(s, &format!("/api/v1/registrations/{id}"), token);
        let pushes = reg["pushes"].as_array().cloned().unwrap_or_default();
        if ok(&pushes) {
            return pushes;
        }
        assert!(Instant::now() < deadline, "{what}: {pushes:?}\n{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn state_of<'a>(pushes: &'a [Value], action: &str) -> Option<&'a str> {
    pushes
        .iter()
        .find(|p| p["action"] == action)
        .and_then(|p| p["state"].as_str())
}

pub(crate) fn audit_actions(s: &ScepServer) -> Vec<String> {
    let (auditor, _) = new_token(s, "auditor", "assessor");
    get(s, "/api/v1/audit", &auditor)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn intune_group_membership_follows_the_registration_through_outage_throttling_and_a_lost_device() {
    let devices = vec![
        fake_mdm::intune_device(
            "dev-1",
            ALICE,
            "Alice's iPhone",
            "iOS",
            "compliant",
            "F2L1",
            "U1",
        ),
        fake_mdm::intune_device(
            "dev-2",
            ALICE,
            "Alice's iPad",
            "iOS",
            "compliant",
            "F2L2",
            "U2",
        ),
        fake_mdm::intune_device(
            "dev-3",
            ALICE,
            "Alice's second iPhone",
            "iOS",
            "compliant",
            "F2L3",
            "U3",
        ),
        fake_mdm::intune_device(
            "dev-4",
            ALICE,
            "Alice's old iPad",
            "iOS",
            "compliant",
            "F2L4",
            "U4",
        ),
    ];
    let (mdm, graph) =
        fake_push::intune(devices, &["dev-1", "dev-2", "dev-3", "dev-4"], "grp-wifi");
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("graph-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let s = ScepServer::start_with(&format!(
        r#"{PROFILE}
[directories.intune]
kind = "intune"
base_url = "{url}"
token_url = "{url}/tenant-1/oauth2/v2.0/token"
tenant_id = "tenant-1"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
timeout_secs = 2
retries = 1

[credentials.phone]
profile = "derived"
directory = "intune"
subject = "CN={{user}} {{serial_number}},O=Agency,C=US"
sans = ["email:{{email}}"]

[credentials.phone.push]
group_id = "grp-wifi"
retry_secs = 1
max_attempts = 6
"#,
        url = mdm.url,
        secret = secret.display(),
    ));
    let d = desk(&s);
    // Intune is down when the officer approves: the push waits, with Intune's words.
    let id = file(&s, &d, "phone", "dev-1");
    mdm.faults
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    decide(&s, &d, &id);
    let pushes = pushes_until(&s, &d.filer, &id, "a failed attempt", |p| {
        p.first().is_some_and(|p| p["attempts"].as_i64() >= Some(1))
    });
    assert_eq!(pushes[0]["action"], "deliver");
    assert_eq!(pushes[0]["state"], "pending", "{pushes:?}");
    assert!(
        pushes[0]["message"]
            .as_str()
            .unwrap()
            .contains("the MDM is down"),
        "{pushes:?}"
    );
    assert!(pushes[0]["next_attempt_at"].is_string());
    assert!(graph.members().is_empty());
    // Intune is back: the retry delivers; the device's directory object joined the group.
    mdm.faults
        .broken
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let pushes = pushes_until(&s, &d.filer, &id, "delivery", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    assert!(pushes[0]["attempts"].as_i64().unwrap() >= 2);
    assert_eq!(graph.members(), vec!["obj-dev-1".to_string()]);
    let add = mdm.seen("/v1.0/groups/grp-wifi/members/$ref");
    let body: Value = serde_json::from_str(&add.last().unwrap().body).unwrap();
    assert_eq!(
        body["@odata.id"],
        format!("{}/v1.0/directoryObjects/obj-dev-1", mdm.url)
    );
    assert_eq!(add.last().unwrap().bearer(), Some(fake_mdm::ACCESS_TOKEN));
    // Withdrawn, while Intune throttles: the 429 is waited out (Retry-After) and the device
    // leaves the group, once.
    mdm.faults
        .throttle
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let (st, v) = post(
        &s,
        &format!("/api/v1/registrations/{id}/withdraw"),
        &d.filer,
        json!({"comment": "phone lost before enrolling"}),
    );
    assert_eq!(st, 200, "{v}");
    let pushes = pushes_until(&s, &d.filer, &id, "withdrawal", |p| {
        state_of(p, "withdraw") == Some("delivered")
    });
    let withdraw = pushes.iter().find(|p| p["action"] == "withdraw").unwrap();
    assert_eq!(withdraw["attempts"], 1, "the 429 is absorbed: {withdraw}");
    assert_eq!(
        mdm.faults
            .throttle
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert!(graph.members().is_empty());
    assert_eq!(
        mdm.seen("/members/obj-dev-1/$ref")
            .iter()
            .filter(|r| r.method == "DELETE")
            .count(),
        1
    );
    // A device Intune no longer knows: failed at once, with Intune's words, not retried.
    graph.forget("dev-2");
    let id2 = approve(&s, &d, "phone", "dev-2");
    let pushes = pushes_until(&s, &d.filer, &id2, "a failure", |p| {
        state_of(p, "deliver") == Some("failed")
    });
    assert_eq!(pushes[0]["attempts"], 1);
    let said = pushes[0]["message"].as_str().unwrap();
    assert!(said.contains("does not know device dev-2"), "{said}");
    assert!(said.contains("Resource not found"), "{said}");
    std::thread::sleep(Duration::from_millis(2500));
    let again = get(&s, &format!("/api/v1/registrations/{id2}"), &d.filer);
    assert_eq!(again["pushes"][0]["attempts"], 1, "not retried");
    // Delivered, enrolled with the payload an Intune-scoped connector collected, then revoked:
    // the device leaves the group. Intune renews by itself, so no re-push is ever queued.
    crate::common::ensure_tool("scepclient", "scep");
    let id3 = approve(&s, &d, "phone", "dev-3");
    pushes_until(&s, &d.filer, &id3, "delivery", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    assert_eq!(graph.members(), vec!["obj-dev-3".to_string()]);
    let (connector, _) = crate::api::new_token_with(
        &s,
        json!({"role": "mdm", "name": "intune-connector", "directories": ["intune"]}),
    );
    let payload = get(
        &s,
        &format!("/api/v1/registrations/{id3}/scep-payload"),
        &connector,
    );
    enroll(&s, &payload, "iphone3");
    let reg = get(&s, &format!("/api/v1/registrations/{id3}"), &d.filer);
    assert_eq!(reg["state"], "issued", "{reg}");
    let (st, v) = post(
        &s,
        &format!("/api/v1/registrations/{id3}/revoke"),
        &d.filer,
        json!({"reason": "keyCompromise"}),
    );
    assert_eq!(st, 200, "{v}");
    let pushes = pushes_until(&s, &d.filer, &id3, "withdrawal after revocation", |p| {
        state_of(p, "withdraw") == Some("delivered")
    });
    assert!(graph.members().is_empty());
    assert!(
        pushes.iter().all(|p| p["action"] != "renew"),
        "Intune is never asked to re-push: {pushes:?}"
    );
    // Retired in Intune after delivery: withdrawing has nothing left to take back, and says
    // so, instead of failing for good.
    let id4 = approve(&s, &d, "phone", "dev-4");
    pushes_until(&s, &d.filer, &id4, "delivery", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    graph.forget("dev-4");
    let (st, v) = post(
        &s,
        &format!("/api/v1/registrations/{id4}/withdraw"),
        &d.filer,
        json!({"comment": "device retired"}),
    );
    assert_eq!(st, 200, "{v}");
    let pushes = pushes_until(&s, &d.filer, &id4, "withdrawal of a retired device", |p| {
        state_of(p, "withdraw").is_some_and(|s| s != "pending")
    });
    let withdraw = pushes.iter().find(|p| p["action"] == "withdraw").unwrap();
    assert_eq!(withdraw["state"], "delivered", "{withdraw}");
    let said = withdraw["message"].as_str().unwrap();
    assert!(
        said.contains("nothing to take back") && said.contains("dev-4"),
        "{said}"
    );
    // Every step is audited.
    let actions = audit_actions(&s);
    for a in [
        "push_queued",
        "push_attempt_failed",
        "push_delivered",
        "push_failed",
    ] {
        assert!(actions.iter().any(|x| x == a), "no {a} in {actions:?}");
    }
}

/// A credential whose profile takes Intune's challenge: the device enrolls through Intune, so
/// no enrollment ever uses the registration's challenge. Once the device is in the group the
/// registration is done: it does not expire into a withdrawal that would take the profile
/// (and the certificate) back a week later.
#[test]
fn an_intune_registration_is_done_once_delivered_and_does_not_expire() {
    let devices = vec![fake_mdm::intune_device(
        "dev-1",
        ALICE,
        "Alice's iPhone",
        "iOS",
        "compliant",
        "F2L1",
        "U1",
    )];
    let (mdm, graph) = fake_push::intune(devices, &["dev-1"], "grp-wifi");
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("graph-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let s = ScepServer::start_with(&format!(
        r#"
[profiles.intune-wifi]
challenge = "intune"
intune = "contoso"
allowed_sans = ["email"]

[intune.contoso]
tenant_id = "tenant-1"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
login_url = "{url}"
graph_url = "{url}"
revocation_interval_minutes = 0

[directories.intune]
kind = "intune"
base_url = "{url}"
token_url = "{url}/tenant-1/oauth2/v2.0/token"
tenant_id = "tenant-1"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
timeout_secs = 2
retries = 1

[credentials.phone]
profile = "intune-wifi"
directory = "intune"
request_ttl = "2s"

[credentials.phone.push]
group_id = "grp-wifi"
retry_secs = 1
"#,
        url = mdm.url,
        secret = secret.display(),
    ));
    let d = desk(&s);
    let id = approve(&s, &d, "phone", "dev-1");
    pushes_until(&s, &d.filer, &id, "delivery", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    assert_eq!(graph.members(), vec!["obj-dev-1".to_string()]);
    // Well past request_ttl, several background rounds later.
    std::thread::sleep(Duration::from_secs(4));
    let reg = get(&s, &format!("/api/v1/registrations/{id}"), &d.filer);
    assert_eq!(reg["state"], "approved", "{reg}");
    assert_eq!(
        reg["expires_at"], "9999-12-31T23:59:59Z",
        "lasts until withdrawn: {reg}"
    );
    assert!(audit_actions(&s)
        .iter()
        .any(|a| a == "registration_delivered"));
    assert!(
        !reg["pushes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["action"] == "withdraw"),
        "{reg}"
    );
    assert_eq!(graph.members(), vec!["obj-dev-1".to_string()]);
    // A second registration of the same phone for the same credential (the group already
    // holds the device: Graph's "already exist" is a delivery).
    let second = approve(&s, &d, "phone", "dev-1");
    pushes_until(&s, &d.filer, &second, "second delivery", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    // Withdrawing the first does not take the phone out of the group from under the second.
    let withdraw = |id: &str| {
        let (st, v) = post(
            &s,
            &format!("/api/v1/registrations/{id}/withdraw"),
            &d.filer,
            json!({"comment": "left the agency"}),
        );
        assert_eq!(st, 200, "{v}");
        pushes_until(&s, &d.filer, id, "withdrawal", |p| {
            state_of(p, "withdraw") == Some("delivered")
        })
    };
    let pushes = withdraw(&id);
    let said = pushes
        .iter()
        .find(|p| p["action"] == "withdraw")
        .map(|p| p["message"].to_string())
        .unwrap_or_default();
    assert!(
        said.contains("not taken back") && said.contains(&second),
        "{pushes:?}"
    );
    assert_eq!(graph.members(), vec!["obj-dev-1".to_string()]);
    // An officer still takes it back: the last registration in force leaves the group.
    withdraw(&second);
    assert!(graph.members().is_empty());
}

#[test]
fn jamf_static_groups_and_workspace_one_profiles_are_joined_and_left() {
    let computers = vec![crate::directory::jamf_computer(1, ALICE, true)];
    let mobiles = vec![crate::directory::jamf_mobile(2, ALICE)];
    let (jamf, groups) = fake_push::jamf(computers, mobiles, &["computer:1", "mobile:2"]);
    let users =
        vec![json!({"Id": {"Value": 1}, "UserName": "alice", "Email": ALICE, "Status": true})];
    let ws1_devices = vec![
        crate::directory::ws1_device(11, "alice", ALICE, "Compliant"),
        crate::directory::ws1_device(12, "alice", ALICE, "Compliant"),
        crate::directory::ws1_device(13, "alice", ALICE, "Compliant"),
    ];
    let (ws1, installs) = fake_push::workspace_one(users, ws1_devices, &["11", "12", "13"]);
    let secrets = tempfile::tempdir().unwrap();
    let file = |name: &str, v: &str| {
        let p = secrets.path().join(name);
        std::fs::write(&p, v).unwrap();
        p.display().to_string()
    };
    let s = ScepServer::start_with(&format!(
        r#"{PROFILE}
[directories.jamf]
kind = "jamf"
base_url = "{jamf}"
client_id = "{CLIENT_ID}"
client_secret_file = "{jamf_secret}"
timeout_secs = 2
retries = 1

[directories.ws1]
kind = "workspace_one"
base_url = "{ws1}"
username = "ws1-reader"
password_file = "{ws1_password}"
api_key_file = "{ws1_tenant}"
timeout_secs = 2
retries = 1

[credentials.mac]
profile = "derived"
directory = "jamf"
subject = "CN={{user}} {{serial_number}},O=Agency,C=US"
sans = ["email:{{email}}"]

[credentials.mac.push]
computer_group_id = 7
mobile_group_id = 8
retry_secs = 1
renew_within_days = 3650

[credentials.tablet]
profile = "derived"
directory = "ws1"
subject = "CN={{user}} {{serial_number}},O=Agency,C=US"
sans = ["email:{{email}}"]

[credentials.tablet.push]
profile_id = 31
retry_secs = 1
renew_within_days = 3650
"#,
        jamf = jamf.url,
        ws1 = ws1.url,
        jamf_secret = file("jamf", CLIENT_SECRET),
        ws1_password = file("ws1-password", "pw"),
        ws1_tenant = file("ws1-tenant", "tenant-code-1"),
    ));
    let d = desk(&s);
    // Jamf: the computer joins static group 7, the iPhone group 8.
    let mac = approve(&s, &d, "mac", "computer:1");
    let phone = approve(&s, &d, "mac", "mobile:2");
    for id in [&mac, &phone] {
        pushes_until(&s, &d.filer, id, "jamf delivery", |p| {
            state_of(p, "deliver") == Some("delivered")
        });
    }
    assert_eq!(
        groups.members(),
        vec!["computer:1@7".to_string(), "mobile:2@8".to_string()]
    );
    let put = jamf.seen("/JSSResource/computergroups/id/7");
    assert_eq!(put[0].method, "PUT");
    assert_eq!(
        put[0].body,
        "<computer_group><computer_additions><computer><id>1</id></computer></computer_additions></computer_group>"
    );
    assert!(put[0].header("content-type").unwrap().contains("xml"));
    // Withdrawn: the computer leaves its group; the phone stays.
    post(
        &s,
        &format!("/api/v1/registrations/{mac}/withdraw"),
        &d.filer,
        json!({"comment": "returned"}),
    );
    pushes_until(&s, &d.filer, &mac, "jamf withdrawal", |p| {
        state_of(p, "withdraw") == Some("delivered")
    });
    assert_eq!(groups.members(), vec!["mobile:2@8".to_string()]);
    // The iPhone enrolls with the payload its MDM collected; its certificate is inside the
    // renewal window (renew_within_days is longer than its life): Jamf is asked to redeploy
    // (out of the group and back in), once. Revoked: it leaves the group.
    crate::common::ensure_tool("scepclient", "scep");
    let (connector, _) = crate::api::new_token_with(
        &s,
        json!({"role": "mdm", "name": "jamf-connector", "directories": ["jamf"]}),
    );
    let payload = get(
        &s,
        &format!("/api/v1/registrations/{phone}/scep-payload"),
        &connector,
    );
    enroll(&s, &payload, "iphone");
    let reg = get(&s, &format!("/api/v1/registrations/{phone}"), &d.filer);
    assert_eq!(reg["state"], "issued", "{reg}");
    let pushes = pushes_until(&s, &d.filer, &phone, "jamf re-push", |p| {
        state_of(p, "renew") == Some("delivered")
    });
    let renew = pushes.iter().find(|p| p["action"] == "renew").unwrap();
    assert!(
        renew["message"].as_str().unwrap().contains("redeployed"),
        "{renew}"
    );
    let puts: Vec<String> = jamf
        .seen("/JSSResource/mobiledevicegroups/id/8")
        .iter()
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(puts.len(), 3, "join, leave, join: {puts:?}");
    assert!(
        puts[1].contains("mobile_device_deletions") && puts[2].contains("mobile_device_additions")
    );
    assert_eq!(groups.members(), vec!["mobile:2@8".to_string()]);
    let (st, v) = post(
        &s,
        &format!("/api/v1/registrations/{phone}/revoke"),
        &d.filer,
        json!({"reason": "affiliationChanged"}),
    );
    assert_eq!(st, 200, "{v}");
    pushes_until(
        &s,
        &d.filer,
        &phone,
        "jamf withdrawal after revocation",
        |p| state_of(p, "withdraw") == Some("delivered"),
    );
    assert!(groups.members().is_empty());

    // Workspace ONE: the profile is installed on device 11, which enrolls; inside the
    // renewal window the profile is installed again (once); revoked, it is removed.
    let tablet = approve(&s, &d, "tablet", "11");
    pushes_until(&s, &d.filer, &tablet, "ws1 delivery", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    assert_eq!(installs.members(), vec!["11@31".to_string()]);
    let (ws1_connector, _) = crate::api::new_token_with(
        &s,
        json!({"role": "mdm", "name": "ws1-connector", "directories": ["ws1"]}),
    );
    let payload = get(
        &s,
        &format!("/api/v1/registrations/{tablet}/scep-payload"),
        &ws1_connector,
    );
    enroll(&s, &payload, "tablet11");
    let pushes = pushes_until(&s, &d.filer, &tablet, "ws1 reinstall", |p| {
        state_of(p, "renew") == Some("delivered")
    });
    let renew = pushes.iter().find(|p| p["action"] == "renew").unwrap();
    assert!(
        renew["message"]
            .as_str()
            .unwrap()
            .contains("sent to device 11"),
        "{renew}"
    );
    assert_eq!(
        ws1.seen("/API/mdm/profiles/31/install").len(),
        2,
        "installed, then reinstalled once"
    );
    let (st, v) = post(
        &s,
        &format!("/api/v1/registrations/{tablet}/revoke"),
        &d.filer,
        json!({"reason": "cessationOfOperation"}),
    );
    assert_eq!(st, 200, "{v}");
    pushes_until(&s, &d.filer, &tablet, "ws1 removal after revocation", |p| {
        state_of(p, "withdraw") == Some("delivered")
    });
    assert!(installs.members().is_empty());
    assert_eq!(ws1.seen("/API/mdm/profiles/31/remove").len(), 1);

    // Device 13: installed, then withdrawn before it enrolls; device 12, which Workspace ONE
    // forgot, fails with its words.
    let tablet = approve(&s, &d, "tablet", "13");
    pushes_until(&s, &d.filer, &tablet, "ws1 delivery", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    assert_eq!(installs.members(), vec!["13@31".to_string()]);
    let install = ws1.seen("/API/mdm/profiles/31/install");
    assert_eq!(
        serde_json::from_str::<Value>(&install[2].body).unwrap(),
        json!({"DeviceId": 13})
    );
    assert_eq!(install[0].header("aw-tenant-code"), Some("tenant-code-1"));
    post(
        &s,
        &format!("/api/v1/registrations/{tablet}/withdraw"),
        &d.filer,
        json!({}),
    );
    pushes_until(&s, &d.filer, &tablet, "ws1 withdrawal", |p| {
        state_of(p, "withdraw") == Some("delivered")
    });
    assert!(installs.members().is_empty());
    installs.forget("12");
    let lost = approve(&s, &d, "tablet", "12");
    let pushes = pushes_until(&s, &d.filer, &lost, "ws1 failure", |p| {
        state_of(p, "deliver") == Some("failed")
    });
    assert!(
        pushes[0]["message"]
            .as_str()
            .unwrap()
            .contains("Device not found"),
        "{pushes:?}"
    );
}

/// The device enrolls with scepclient and the payload's challenge.
pub(crate) fn enroll(s: &ScepServer, payload: &Value, name: &str) {
    let ra_fp = hex::encode(openssl::sha::sha256(&s.ra));
    let device = s.token.path().join(name);
    std::fs::create_dir_all(&device).unwrap();
    let out = Command::new("scepclient")
        .current_dir(&device)
        .args(["-server-url", payload["url"].as_str().unwrap()])
        .args(["-challenge", payload["challenge"].as_str().unwrap()])
        .args(["-cn", name, "-ca-fingerprint", &ra_fp])
        .args(["-private-key", "device.key", "-certificate", "device.pem"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scepclient: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
}

#[test]
fn a_push_that_names_the_wrong_thing_is_a_configuration_error() {
    let token = crate::common::TokenDir::new();
    let cfg = token.path().join("bad-push.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"{PROFILE}
[profiles.default]

[directories.inventory]
kind = "file"
path = "/srv/devices.json"

[credentials.laptop]
profile = "derived"
directory = "inventory"

[credentials.laptop.push]
group_id = "grp"
"#
        ),
    )
    .unwrap();
    let out = token
        .sigil()
        .env("SIGIL_CONFIG", &cfg)
        .args(["config", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("credentials.laptop") && err.contains("only webhook_url"),
        "{err}"
    );
}
