//! The MDM directory connectors against local servers that answer like each vendor's API
//! (`fake_mdm`): authentication, paging, mapping of device facts, and the failures a real MDM
//! has (throttling, outages, garbage, slowness, bad credentials).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use sigil::mdm::{
    assess, connect, Compliance, DirectoryError, DirectorySettings, GenericSettings,
    IntuneSettings, JamfSettings, MdmDirectory, WorkspaceOneSettings,
};

use crate::fake_mdm::{self, CLIENT_ID, CLIENT_SECRET};

struct Secrets(tempfile::TempDir);

impl Secrets {
    fn new() -> Secrets {
        let d = tempfile::tempdir().unwrap();
        for (f, v) in [
            ("client_secret", CLIENT_SECRET),
            ("wrong_secret", "not-the-secret"),
            ("password", "pw"),
            ("tenant_code", "tenant-code-1"),
            ("api_key", "generic-key-1"),
        ] {
            std::fs::write(d.path().join(f), format!("{v}\n")).unwrap();
        }
        Secrets(d)
    }

    fn file(&self, name: &str) -> String {
        self.0.path().join(name).display().to_string()
    }
}

fn intune_config(url: &str, secrets: &Secrets, secret_file: &str) -> DirectorySettings {
    let c = DirectorySettings::Intune(IntuneSettings {
        base_url: url.into(),
        token_url: format!("{url}/tenant-1/oauth2/v2.0/token"),
        tenant_id: "tenant-1".into(),
        client_id: CLIENT_ID.into(),
        client_secret_file: secrets.file(secret_file),
        timeout_secs: 1,
        retries: 1,
        page_size: 2,
        ..IntuneSettings::default()
    });
    c.check().unwrap();
    c
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn devices(d: &dyn MdmDirectory, email: &str) -> Result<Vec<sigil::mdm::Device>, DirectoryError> {
    rt().block_on(d.devices(email))
}

#[test]
fn intune_pages_maps_and_survives_throttling() {
    let alice = "alice@agency.gov";
    let mut list = Vec::new();
    for i in 0..5 {
        list.push(fake_mdm::intune_device(
            &format!("dev-{i}"),
            alice,
            &format!("Alice device {i}"),
            if i % 2 == 0 { "iOS" } else { "Windows" },
            [
                "compliant",
                "noncompliant",
                "inGracePeriod",
                "unknown",
                "configManager",
            ][i],
            &format!("SER{i}"),
            &format!("0000811{i}-001A2B3C4D5E6F70"),
        ));
    }
    list.push(fake_mdm::intune_device(
        "dev-bob",
        "bob@agency.gov",
        "Bob's iPhone",
        "iOS",
        "compliant",
        "SERB",
        "U-B",
    ));
    let mdm = fake_mdm::intune(list, 2);
    let secrets = Secrets::new();
    let dir = connect(
        "intune",
        &intune_config(&mdm.url, &secrets, "client_secret"),
    )
    .unwrap();
    assert_eq!(dir.kind(), "intune");
    let got = devices(dir.as_ref(), "Alice@agency.gov").unwrap();
    assert_eq!(got.len(), 5, "three pages of two, one and two: all of them");
    let d0 = got.iter().find(|d| d.id == "dev-0").unwrap();
    assert_eq!(d0.model, "Apple iPhone 15");
    assert_eq!(d0.os, "iOS");
    assert_eq!(d0.os_version, "18.1");
    assert_eq!(d0.serial_number, "SER0");
    assert_eq!(d0.udid, "00008110-001A2B3C4D5E6F70");
    assert_eq!(d0.imei, "356938035643809");
    assert_eq!(d0.last_check_in.as_deref(), Some("2026-11-20T08:15:42Z"));
    assert_eq!(d0.compliance, Compliance::Compliant);
    let states: Vec<Compliance> = (0..5)
        .map(|i| {
            got.iter()
                .find(|d| d.id == format!("dev-{i}"))
                .unwrap()
                .compliance
        })
        .collect();
    assert_eq!(
        states,
        [
            Compliance::Compliant,
            Compliance::NonCompliant,
            Compliance::NonCompliant,
            Compliance::Unknown,
            Compliance::Unknown
        ]
    );
    // The filter is the OData literal (Graph compares UPNs without case); one token served
    // every page.
    let calls = mdm.seen("managedDevices");
    assert_eq!(calls.len(), 3);
    assert_eq!(
        calls[0].param("$filter"),
        Some("userPrincipalName eq 'Alice@agency.gov'")
    );
    assert_eq!(mdm.seen("oauth2").len(), 1);
    // Assessment flags and hides nothing.
    let assessed = assess(got, alice, 1_795_000_000);
    assert_eq!(assessed.len(), 5);
    assert!(assessed
        .iter()
        .any(|d| d.flags.iter().any(|f| f == "non-compliant")));

    // Throttled once: Retry-After honoured, the answer still complete.
    mdm.faults.throttle.store(1, Ordering::SeqCst);
    let before = mdm.seen("managedDevices").len();
    let t = Instant::now();
    assert_eq!(devices(dir.as_ref(), alice).unwrap().len(), 5);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 was not honoured"
    );
    assert_eq!(mdm.seen("managedDevices").len() - before, 4);

    // A quote in the address is escaped the OData way, not injected.
    assert!(devices(dir.as_ref(), "o'brien@agency.gov")
        .unwrap()
        .is_empty());
    assert_eq!(
        mdm.seen("managedDevices").last().unwrap().param("$filter"),
        Some("userPrincipalName eq 'o''brien@agency.gov'")
    );
}

#[test]
fn intune_failures_are_clear() {
    let mdm = fake_mdm::intune(
        vec![fake_mdm::intune_device(
            "d",
            "alice@agency.gov",
            "iPhone",
            "iOS",
            "compliant",
            "S",
            "U",
        )],
        10,
    );
    let secrets = Secrets::new();
    // Wrong client secret: Entra's own message, no retry of a 401.
    let dir = connect("intune", &intune_config(&mdm.url, &secrets, "wrong_secret")).unwrap();
    let e = devices(dir.as_ref(), "alice@agency.gov").unwrap_err();
    assert!(
        matches!(&e, DirectoryError::Refused { status: 401, message, .. } if message.contains("AADSTS7000215")),
        "{e}"
    );
    let dir = connect(
        "intune",
        &intune_config(&mdm.url, &secrets, "client_secret"),
    )
    .unwrap();
    // Down: retried (retries = 1), then the status and the MDM's message.
    mdm.faults.broken.store(true, Ordering::SeqCst);
    let before = mdm.seen("managedDevices").len();
    let e = devices(dir.as_ref(), "alice@agency.gov").unwrap_err();
    assert!(
        matches!(&e, DirectoryError::Refused { status: 500, message, .. } if message.contains("the MDM is down")),
        "{e}"
    );
    assert_eq!(mdm.seen("managedDevices").len() - before, 2);
    mdm.faults.broken.store(false, Ordering::SeqCst);
    // Nonsense: a sign-in page where JSON should be.
    mdm.faults.garbage.store(true, Ordering::SeqCst);
    let e = devices(dir.as_ref(), "alice@agency.gov").unwrap_err();
    assert!(matches!(e, DirectoryError::Nonsense { .. }), "{e}");
    assert!(e.to_string().contains("not JSON"), "{e}");
    mdm.faults.garbage.store(false, Ordering::SeqCst);
    // Slow: the timeout (1 s) with one retry, well before the MDM would answer twice.
    mdm.faults.slow.store(true, Ordering::SeqCst);
    let t = Instant::now();
    let e = devices(dir.as_ref(), "alice@agency.gov").unwrap_err();
    assert!(matches!(e, DirectoryError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("no answer within 1s"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    mdm.faults.slow.store(false, Ordering::SeqCst);
    // Nobody listening.
    let dead = intune_config("http://127.0.0.1:9", &secrets, "client_secret");
    let dir = connect("dead", &dead).unwrap();
    let e = devices(dir.as_ref(), "alice@agency.gov").unwrap_err();
    assert!(matches!(e, DirectoryError::Unreachable { .. }), "{e}");
    // A secret file that is gone is a configuration error, named.
    let mut missing = intune_config(&mdm.url, &secrets, "client_secret");
    if let DirectorySettings::Intune(i) = &mut missing {
        i.client_secret_file = "/nonexistent/secret".into();
    }
    let e = devices(connect("m", &missing).unwrap().as_ref(), "alice@agency.gov").unwrap_err();
    assert!(matches!(e, DirectoryError::Config { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/secret"), "{e}");
}

pub(crate) fn jamf_computer(id: u32, email: &str, managed: bool) -> serde_json::Value {
    json!({
        "id": id.to_string(), "udid": format!("A1B2C3D4-{id:04}"),
        "general": {"name": format!("Mac {id}"), "platform": "Mac",
                    "lastContactTime": "2026-11-19T10:00:00.000Z",
                    "remoteManagement": {"managed": managed, "managementUsername": "jamfadmin"},
                    "supervised": true},
        "hardware": {"make": "Apple", "model": "MacBook Pro (14-inch, 2023)", "serialNumber": format!("C02X{id}")},
        "operatingSystem": {"name": "macOS", "version": "15.1", "build": "24B83"},
        "userAndLocation": {"username": "alice", "realname": "Alice A", "email": email},
        "hardwareSection": null,
    })
}

pub(crate) fn jamf_mobile(id: u32, email: &str) -> serde_json::Value {
    json!({
        "mobileDeviceId": id.to_string(), "deviceType": "iOS",
        "general": {"udid": format!("00008120-{id:04}"), "displayName": format!("iPhone {id}"),
                    "osVersion": "18.1", "managed": true, "supervised": true,
                    "lastInventoryUpdateDate": "2026-11-20T10:00:00Z"},
        "hardware": {"serialNumber": format!("F2L{id}"), "model": "iPhone 15"},
        "network": {"imei": "35 693803 564380 9"},
        "userAndLocation": {"username": "alice", "realName": "Alice A", "emailAddress": email},
    })
}

#[test]
fn jamf_reads_computers_and_mobile_devices_with_either_login() {
    let alice = "alice@agency.gov";
    let computers: Vec<_> = (1..=5)
        .map(|i| jamf_computer(i, alice, i != 3))
        .chain([jamf_computer(9, "bob@agency.gov", true)])
        .collect();
    let mobiles = vec![jamf_mobile(7, alice), jamf_mobile(8, "bob@agency.gov")];
    let mdm = fake_mdm::jamf(computers, mobiles);
    let secrets = Secrets::new();
    let oauth = JamfSettings {
        base_url: mdm.url.clone(),
        client_id: CLIENT_ID.into(),
        client_secret_file: secrets.file("client_secret"),
        page_size: 2,
        timeout_secs: 2,
        ..JamfSettings::default()
    };
    let jamf = |s: &JamfSettings| DirectorySettings::Jamf(s.clone());
    jamf(&oauth).check().unwrap();
    let got = devices(connect("jamf", &jamf(&oauth)).unwrap().as_ref(), alice).unwrap();
    assert_eq!(
        got.len(),
        6,
        "five computers over three pages and one phone"
    );
    let mac = got.iter().find(|d| d.id == "computer:1").unwrap();
    assert_eq!(mac.model, "MacBook Pro (14-inch, 2023)");
    assert_eq!(
        (mac.os.as_str(), mac.os_version.as_str()),
        ("macOS", "15.1")
    );
    assert_eq!(mac.serial_number, "C02X1");
    assert_eq!(mac.udid, "A1B2C3D4-0001");
    assert_eq!(mac.compliance, Compliance::Unknown);
    assert!(mac.managed);
    assert!(!got.iter().find(|d| d.id == "computer:3").unwrap().managed);
    let phone = got.iter().find(|d| d.id == "mobile:7").unwrap();
    assert_eq!(phone.imei, "356938035643809");
    assert_eq!(phone.udid, "00008120-0007");
    assert_eq!(phone.user, alice);
    let calls = mdm.seen("computers-inventory");
    assert_eq!(calls.len(), 3);
    assert!(calls[0].path.starts_with("/api/v3/"));
    assert_eq!(
        calls[0].param("filter"),
        Some("userAndLocation.email==\"alice@agency.gov\"")
    );
    assert!(calls[0].params("section").contains(&"HARDWARE"));
    // A Jamf user account instead of an API client; an older instance on v1.
    let basic = JamfSettings {
        client_id: String::new(),
        client_secret_file: String::new(),
        username: "jamf-reader".into(),
        password_file: secrets.file("password"),
        computers_api: "v1".into(),
        ..oauth.clone()
    };
    jamf(&basic).check().unwrap();
    assert_eq!(
        devices(connect("jamf", &jamf(&basic)).unwrap().as_ref(), alice)
            .unwrap()
            .len(),
        6
    );
    assert!(mdm.seen("/api/v1/computers-inventory").len() >= 3);
    // A wrong password: Jamf's message.
    let wrong = JamfSettings {
        password_file: secrets.file("tenant_code"),
        ..basic
    };
    let e = devices(connect("jamf", &jamf(&wrong)).unwrap().as_ref(), alice).unwrap_err();
    assert!(
        e.to_string().contains("401") && e.to_string().contains("Unauthorized"),
        "{e}"
    );
}

pub(crate) fn ws1_device(id: u64, user: &str, email: &str, compliance: &str) -> serde_json::Value {
    json!({
        "Id": {"Value": id}, "Uuid": format!("uuid-{id}"), "Udid": format!("UDID{id}"),
        "SerialNumber": format!("WS{id}"), "MacAddress": "ABABABABABAB", "Imei": "",
        "DeviceFriendlyName": format!("{user} iPad {id}"), "DeviceReportedName": "iPad",
        "UserName": user, "UserEmailAddress": email, "Ownership": "C",
        "Platform": "Apple", "Model": "iPad Pro", "OperatingSystem": "18.1",
        "LastSeen": "2026-11-20T04:35:20.150", "EnrollmentStatus": "Enrolled",
        "ComplianceStatus": compliance, "CompromisedStatus": false,
    })
}

#[test]
fn workspace_one_finds_the_user_then_pages_devices() {
    let alice = "alice@agency.gov";
    let users = vec![
        json!({"Id": {"Value": 1}, "UserName": "alice", "Email": alice, "Status": true}),
        json!({"Id": {"Value": 2}, "UserName": "alice.admin", "Email": alice, "Status": true}),
        json!({"Id": {"Value": 3}, "UserName": "bob", "Email": "bob@agency.gov", "Status": true}),
    ];
    let devs = vec![
        ws1_device(11, "alice", alice, "Compliant"),
        ws1_device(12, "alice", alice, "NonCompliant"),
        ws1_device(13, "alice", alice, "NotAvailable"),
        ws1_device(14, "alice.admin", alice, "Compliant"),
        ws1_device(15, "bob", "bob@agency.gov", "Compliant"),
    ];
    let mdm = fake_mdm::workspace_one(users, devs);
    let secrets = Secrets::new();
    let c = WorkspaceOneSettings {
        base_url: mdm.url.clone(),
        username: "ws1-reader".into(),
        password_file: secrets.file("password"),
        api_key_file: secrets.file("tenant_code"),
        page_size: 2,
        timeout_secs: 2,
        ..WorkspaceOneSettings::default()
    };
    let ws1 = |s: &WorkspaceOneSettings| DirectorySettings::WorkspaceOne(s.clone());
    ws1(&c).check().unwrap();
    let dir = connect("ws1", &ws1(&c)).unwrap();
    let got = devices(dir.as_ref(), alice).unwrap();
    assert_eq!(
        got.len(),
        4,
        "both of alice's enrollment users, two pages for one"
    );
    let d = got.iter().find(|d| d.id == "11").unwrap();
    assert_eq!((d.os.as_str(), d.os_version.as_str()), ("Apple", "18.1"));
    assert_eq!(d.last_check_in.as_deref(), Some("2026-11-20T04:35:20Z"));
    assert_eq!(d.compliance, Compliance::Compliant);
    assert_eq!(
        got.iter().find(|d| d.id == "12").unwrap().compliance,
        Compliance::NonCompliant
    );
    assert_eq!(
        got.iter().find(|d| d.id == "13").unwrap().compliance,
        Compliance::Unknown
    );
    assert_eq!(mdm.seen("/API/mdm/devices/search").len(), 3);
    assert_eq!(
        mdm.seen("devices/search")[0].header("accept"),
        Some("application/json;version=1")
    );
    // Nobody by that email: 204 twice over, an empty list, not an error.
    assert!(devices(dir.as_ref(), "nobody@agency.gov")
        .unwrap()
        .is_empty());
    // A wrong tenant code: the MDM's message.
    let wrong = WorkspaceOneSettings {
        api_key_file: secrets.file("password"),
        ..c
    };
    let e = devices(connect("ws1", &ws1(&wrong)).unwrap().as_ref(), alice).unwrap_err();
    assert!(e.to_string().contains("Organization Group"), "{e}");
}

#[test]
fn generic_connector_follows_its_mapping() {
    // An inventory service with its own shape: {"data": {"items": [...]}, "links": {"next": …}}.
    let mdm = crate::fake_mdm::FakeMdm::start(|req, _| {
        use crate::fake_mdm::Resp;
        if req.header("x-api-key") != Some("generic-key-1") {
            return Resp::json(403, json!({"message": "forbidden"}));
        }
        let owner = req.param("owner").unwrap_or("");
        if req.path == "/inventory/devices" && owner == "carol@agency.gov" {
            let page = req.param("cursor").unwrap_or("0");
            let (items, next) = if page == "0" {
                (
                    vec![
                        json!({"uid": "g-1", "label": "Carol's Pixel", "hw": {"model": "Pixel 9", "serial": "PX1"},
                               "os": {"family": "Android", "release": "15"}, "state": {"compliant": true},
                               "seen": "2026-11-20T10:00:00Z", "owner": "carol@agency.gov"}),
                    ],
                    json!("/inventory/devices?owner=carol%40agency.gov&cursor=1"),
                )
            } else {
                (
                    vec![
                        json!({"uid": "g-2", "label": "Carol's tablet", "hw": {"model": "Tab", "serial": ""},
                               "os": {"family": "Android", "release": "14"}, "state": {"compliant": false},
                               "seen": null, "owner": "carol@agency.gov"}),
                    ],
                    serde_json::Value::Null,
                )
            };
            return Resp::json(
                200,
                json!({"data": {"items": items}, "links": {"next": next}}),
            );
        }
        Resp::json(200, json!({"data": {"items": []}, "links": {}}))
    });
    let secrets = Secrets::new();
    let mut fields = std::collections::BTreeMap::new();
    for (k, v) in [
        ("id", "/uid"),
        ("name", "/label"),
        ("model", "/hw/model"),
        ("serial_number", "/hw/serial"),
        ("os", "/os/family"),
        ("os_version", "/os/release"),
        ("compliance", "/state/compliant"),
        ("last_check_in", "/seen"),
        ("user", "/owner"),
    ] {
        fields.insert(k.to_string(), v.to_string());
    }
    let c = GenericSettings {
        devices_url: format!("{}/inventory/devices?owner={{email}}", mdm.url),
        auth: "header".into(),
        api_key_header: "X-API-Key".into(),
        api_key_file: secrets.file("api_key"),
        items: "/data/items".into(),
        next: "/links/next".into(),
        fields,
        timeout_secs: 2,
        ..GenericSettings::default()
    };
    let generic = |s: &GenericSettings| DirectorySettings::Generic(s.clone());
    generic(&c).check().unwrap();
    let got = devices(
        connect("inventory", &generic(&c)).unwrap().as_ref(),
        "carol@agency.gov",
    )
    .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].id, "g-1");
    assert_eq!(got[0].model, "Pixel 9");
    assert_eq!(got[0].compliance, Compliance::Compliant);
    assert_eq!(got[1].compliance, Compliance::NonCompliant);
    assert_eq!(got[1].last_check_in, None);
    assert_eq!(
        mdm.seen("/inventory/devices")[0].param("owner"),
        Some("carol@agency.gov")
    );
    // A mapping that points at nothing is nonsense, said so; a bad mapping is refused upfront.
    let wrong = GenericSettings {
        items: "/results".into(),
        ..c.clone()
    };
    let e = devices(
        connect("inventory", &generic(&wrong)).unwrap().as_ref(),
        "carol@agency.gov",
    )
    .unwrap_err();
    assert!(e.to_string().contains("no array at `/results`"), "{e}");
    let mut bad = c.clone();
    bad.fields.insert("colour".into(), "/c".into());
    assert!(generic(&bad).check().unwrap_err().contains("colour"));
    let mut bad = c;
    bad.devices_url = format!("{}/inventory/devices", mdm.url);
    assert!(generic(&bad).check().unwrap_err().contains("{email}"));
}
