//! Jamf Pro with a configuration profile per device (`push.per_device_profile`): the approved
//! registration's profile, with the device's one-time challenge and the CA's chain, is created
//! in Jamf scoped to that one computer or mobile device; the device enrolls with what the
//! profile says; inside the renewal window the profile is updated with a challenge that renews
//! the certificate (Jamf redeploys it), and the device's second enrollment replaces the
//! certificate; a revocation or withdrawal deletes the profile. Against the Jamf fake of
//! `fake_push.rs` (Classic API configuration profiles).

use serde_json::{json, Value};

use crate::fake_mdm::{CLIENT_ID, CLIENT_SECRET};
use crate::fake_push::{self, JamfProfile};
use crate::push::{approve, desk, enroll, get, post, pushes_until, state_of, ALICE, PROFILE};
use crate::scep::ScepServer;

/// The SCEP payload's content in a profile Jamf holds, and whether the CA's root is in it.
fn scep_content(p: &JamfProfile) -> (Value, bool) {
    let plist: plist::Value = plist::from_bytes(p.plist.as_bytes()).expect("a property list");
    let payloads = plist
        .as_dictionary()
        .and_then(|d| d.get("PayloadContent"))
        .and_then(|c| c.as_array())
        .expect("PayloadContent");
    let kind = |v: &plist::Value| {
        v.as_dictionary()
            .and_then(|d| d.get("PayloadType"))
            .and_then(|t| t.as_string())
            .unwrap_or_default()
            .to_string()
    };
    let root = payloads
        .iter()
        .any(|v| kind(v) == "com.apple.security.root");
    let scep = payloads
        .iter()
        .find(|v| kind(v) == "com.apple.security.scep")
        .and_then(|v| v.as_dictionary())
        .and_then(|d| d.get("PayloadContent"))
        .and_then(|c| c.as_dictionary())
        .expect("a SCEP payload");
    let text = |k: &str| scep.get(k).and_then(|v| v.as_string()).map(str::to_string);
    (
        json!({"url": text("URL"), "challenge": text("Challenge")}),
        root,
    )
}

#[test]
fn a_jamf_profile_per_device_carries_the_challenge_and_follows_the_registration() {
    crate::common::ensure_tool("scepclient", "scep");
    let computers = vec![crate::directory::jamf_computer(1, ALICE, true)];
    let mobiles = vec![
        crate::directory::jamf_mobile(2, ALICE),
        crate::directory::jamf_mobile(3, ALICE),
    ];
    let (jamf, state) =
        fake_push::jamf(computers, mobiles, &["computer:1", "mobile:2", "mobile:3"]);
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("jamf");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let s = ScepServer::start_with(&format!(
        r#"{PROFILE}
[directories.jamf]
kind = "jamf"
base_url = "{jamf}"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
timeout_secs = 2
retries = 1

[credentials.mac]
profile = "derived"
directory = "jamf"
subject = "CN={{user}} {{serial_number}},O=Agency,C=US"
sans = ["email:{{email}}"]

[credentials.mac.push]
per_device_profile = true
retry_secs = 1
renew_within_days = 3650
"#,
        jamf = jamf.url,
        secret = secret.display(),
    ));
    let d = desk(&s);

    // Approved: a profile of its own, scoped to computer 1, with the challenge and the chain.
    let mac = approve(&s, &d, "mac", "computer:1");
    let pushes = pushes_until(&s, &d.filer, &mac, "jamf profile", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    let name = format!("sigil-{mac}");
    assert!(
        pushes[0]["message"].as_str().unwrap().contains("created"),
        "{pushes:?}"
    );
    let profiles = state.profiles();
    let profile = profiles.get(&name).expect("the device's profile");
    assert_eq!(profile.scope, "computer:1");
    let (payload, root) = scep_content(profile);
    assert!(root, "the CA's root is in the profile");
    assert!(payload["challenge"].is_string(), "{payload}");
    let created = jamf.seen("/JSSResource/osxconfigurationprofiles/id/0");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].method, "POST");
    assert!(created[0].header("content-type").unwrap().contains("xml"));
    // Nothing joined a group: the profile is the device's alone.
    assert!(state.members().is_empty());

    // The Mac enrolls with what its profile says.
    enroll(&s, &payload, "mac1");
    let reg = get(&s, &format!("/api/v1/registrations/{mac}"), &d.filer);
    assert_eq!(reg["state"], "issued", "{reg}");
    let first = reg["serial"].as_str().unwrap().to_string();

    // Inside the renewal window: the profile is updated (Jamf redeploys it) with a challenge
    // that renews the certificate; the Mac's enrollment with it replaces the certificate.
    let pushes = pushes_until(&s, &d.filer, &mac, "jamf profile update", |p| {
        state_of(p, "renew") == Some("delivered")
    });
    let renew = pushes.iter().find(|p| p["action"] == "renew").unwrap();
    assert!(
        renew["message"].as_str().unwrap().contains("updated"),
        "{renew}"
    );
    let updated = state.profiles()[&name].clone();
    assert!(updated.updates >= 1);
    let (renewal, _) = scep_content(&updated);
    assert_ne!(
        renewal["challenge"], payload["challenge"],
        "a fresh challenge"
    );
    let puts = jamf.seen(&format!(
        "/JSSResource/osxconfigurationprofiles/name/{name}"
    ));
    assert!(puts.iter().all(|r| r.method == "PUT"), "{puts:?}");
    assert!(puts[0]
        .body
        .contains("<redeploy_on_update>All</redeploy_on_update>"));
    enroll(&s, &renewal, "mac1-renewed");
    let reg = get(&s, &format!("/api/v1/registrations/{mac}"), &d.filer);
    assert_eq!(reg["state"], "issued", "{reg}");
    assert_ne!(reg["serial"].as_str().unwrap(), first, "{reg}");
    // The challenge the profile had before is spent: a device that replays it is refused.
    let device = s.token.path().join("mac1-replay");
    std::fs::create_dir_all(&device).unwrap();
    let ra_fp = hex::encode(openssl::sha::sha256(&s.ra));
    let out = std::process::Command::new("scepclient")
        .current_dir(&device)
        .args(["-server-url", payload["url"].as_str().unwrap()])
        .args(["-challenge", payload["challenge"].as_str().unwrap()])
        .args(["-cn", "mac1-replay", "-ca-fingerprint", &ra_fp])
        .args(["-private-key", "device.key", "-certificate", "device.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a spent challenge enrolled again");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("badRequest"), "{said}");

    // A second registration of the Mac for the same credential (a replacement being set up)
    // has a profile of its own; revoking the first deletes the first's profile only.
    let again = approve(&s, &d, "mac", "computer:1");
    pushes_until(&s, &d.filer, &again, "jamf second profile", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    let again_name = format!("sigil-{again}");
    assert_eq!(state.profiles()[&again_name].scope, "computer:1");

    // Revoked: the profile is deleted.
    let (st, v) = post(
        &s,
        &format!("/api/v1/registrations/{mac}/revoke"),
        &d.filer,
        json!({"reason": "affiliationChanged"}),
    );
    assert_eq!(st, 200, "{v}");
    pushes_until(&s, &d.filer, &mac, "jamf profile deletion", |p| {
        state_of(p, "withdraw") == Some("delivered")
    });
    assert!(!state.profiles().contains_key(&name));
    let deleted = jamf.seen(&format!(
        "/JSSResource/osxconfigurationprofiles/name/{name}"
    ));
    assert_eq!(deleted.last().unwrap().method, "DELETE");
    assert!(
        state.profiles().contains_key(&again_name),
        "the other registration's stays"
    );
    post(
        &s,
        &format!("/api/v1/registrations/{again}/withdraw"),
        &d.filer,
        json!({"comment": "not needed"}),
    );
    pushes_until(&s, &d.filer, &again, "jamf second profile deletion", |p| {
        state_of(p, "withdraw") == Some("delivered")
    });
    assert!(state.profiles().is_empty(), "{:?}", state.profiles());

    // An iPhone: a mobile device profile, scoped to it; withdrawn before it enrolls, deleted.
    // Jamf already holds its profile (an earlier attempt whose answer was lost): the
    // delivery's create is refused as a duplicate name, and the profile is updated instead.
    let phone = crate::push::file(&s, &d, "mac", "mobile:2");
    let phone_name = format!("sigil-{phone}");
    state.profiles.lock().unwrap().insert(
        phone_name.clone(),
        JamfProfile {
            id: 99,
            scope: "mobile:2".into(),
            plist: "stale".into(),
            updates: 0,
        },
    );
    crate::push::decide(&s, &d, &phone);
    let pushes = pushes_until(&s, &d.filer, &phone, "jamf mobile profile", |p| {
        state_of(p, "deliver") == Some("delivered")
    });
    assert!(
        pushes[0]["message"].as_str().unwrap().contains("updated"),
        "{pushes:?}"
    );
    let held = state.profiles()[&phone_name].clone();
    assert_eq!((held.id, held.updates), (99, 1));
    assert_eq!(held.scope, "mobile:2");
    assert!(scep_content(&held).0["challenge"].is_string());
    let made = jamf.seen("/JSSResource/mobiledeviceconfigurationprofiles/id/0");
    assert!(
        made[0].body.starts_with("<configuration_profile>"),
        "{}",
        made[0].body
    );
    post(
        &s,
        &format!("/api/v1/registrations/{phone}/withdraw"),
        &d.filer,
        json!({"comment": "lost"}),
    );
    pushes_until(&s, &d.filer, &phone, "jamf mobile profile deletion", |p| {
        state_of(p, "withdraw") == Some("delivered")
    });
    assert!(state.profiles().is_empty(), "{:?}", state.profiles());

    // A device Jamf no longer knows: the delivery fails with Jamf's words, and no profile is
    // made for it.
    state.forget("mobile:3");
    let lost = approve(&s, &d, "mac", "mobile:3");
    let pushes = pushes_until(&s, &d.filer, &lost, "jamf unknown device", |p| {
        state_of(p, "deliver") == Some("failed")
    });
    assert!(
        pushes[0]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{pushes:?}"
    );
    assert!(state.profiles().is_empty());

    // A profile Jamf refuses (409 for anything it cannot take, not only a name it has): the
    // delivery fails with Jamf's words, and is not mistaken for "already there".
    state
        .refuse_payloads
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = approve(&s, &d, "mac", "computer:1");
    let pushes = pushes_until(&s, &d.filer, &refused, "jamf refused profile", |p| {
        state_of(p, "deliver") == Some("failed")
    });
    let said = pushes[0]["message"].as_str().unwrap();
    assert!(said.contains("Problem with payloads"), "{pushes:?}");
    assert!(said.contains("create"), "{pushes:?}");
    assert!(state.profiles().is_empty());
    // No push message or audit record carries a challenge.
    let challenges: Vec<String> = [&payload, &renewal]
        .iter()
        .map(|p| p["challenge"].as_str().unwrap().to_string())
        .collect();
    let (auditor, _) = crate::api::new_token(&s, "auditor", "assessor");
    let mut seen = get(&s, "/api/v1/audit?limit=10000", &auditor).to_string();
    for id in [&mac, &again, &phone, &lost, &refused] {
        seen.push_str(&get(&s, &format!("/api/v1/registrations/{id}"), &d.filer).to_string());
    }
    assert!(
        seen.contains("sigil-reg_"),
        "the pushes' messages are there"
    );
    for c in &challenges {
        assert!(!seen.contains(c.as_str()), "a challenge in the records");
    }
}
