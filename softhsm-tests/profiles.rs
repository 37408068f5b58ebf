//! Delivery to the device: the signed `.mobileconfig` and the declarative asset, checked the
//! way a device and an assessor would: the signature with `openssl cms -verify` against the
//! CA, the property list parsed back and held to the keys and types of Apple's profile
//! reference (`com.apple.security.scep`, `.root`, `.pkcs1`), its certificates equal to what
//! GetCACert serves, and its one-time challenge enrolling.

use std::process::Command;

use plist::Value;
use serde_json::json;

use crate::api::{enroll_with, new_token, new_token_with};
use crate::common::write_pem;
use crate::scep::ScepServer;

fn get(s: &ScepServer, path: &str, token: &str) -> reqwest::blocking::Response {
    s.http
        .get(format!("{}{path}", s.base))
        .bearer_auth(token)
        .send()
        .unwrap()
}

fn dict<'a>(v: &'a Value, key: &str) -> &'a plist::Dictionary {
    v.as_dictionary()
        .and_then(|d| d.get(key))
        .and_then(Value::as_dictionary)
        .unwrap_or_else(|| panic!("{key} is not a dictionary"))
}

/// The SCEP payload content against Apple's reference: only its keys, each of its type.
fn check_scep_content(c: &plist::Dictionary) {
    for (k, v) in c {
        let ok = match k.as_str() {
            "URL" | "Name" | "Challenge" | "Key Type" => v.as_string().is_some(),
            "Keysize" | "Key Usage" | "Retries" | "RetryDelay" => v.as_unsigned_integer().is_some(),
            "CAFingerprint" => v.as_data().is_some(),
            "KeyIsExtractable" | "AllowAllAppsAccess" => v.as_boolean().is_some(),
            "SubjectAltName" => v.as_dictionary().is_some_and(|d| {
                d.iter().all(|(k, v)| {
                    [
                        "rfc822Name",
                        "dNSName",
                        "uniformResourceIdentifier",
                        "ntPrincipalName",
                    ]
                    .contains(&k.as_str())
                        && (v.as_string().is_some()
                            || v.as_array()
                                .is_some_and(|a| a.iter().all(|x| x.as_string().is_some())))
                })
            }),
            // An array of arrays of [OID or short name, value] pairs.
            "Subject" => v.as_array().is_some_and(|rdns| {
                rdns.iter().all(|rdn| {
                    rdn.as_array().is_some_and(|pairs| {
                        pairs.iter().all(|p| {
                            p.as_array().is_some_and(|p| {
                                p.len() == 2 && p.iter().all(|x| x.as_string().is_some())
                            })
                        })
                    })
                })
            }),
            _ => false,
        };
        assert!(
            ok,
            "`{k}` is not a key of com.apple.security.scep of the right type: {v:?}"
        );
    }
    assert!(c.get("URL").is_some(), "URL is required");
    assert_eq!(c.get("Key Type").and_then(Value::as_string), Some("RSA"));
    let size = c
        .get("Keysize")
        .and_then(Value::as_unsigned_integer)
        .unwrap();
    assert!([1024, 2048, 4096].contains(&size), "Keysize {size}");
    assert!(size >= 2048, "never Apple's default 1024");
    let usage = c
        .get("Key Usage")
        .and_then(Value::as_unsigned_integer)
        .unwrap();
    assert!([0, 1, 4, 5].contains(&usage), "Key Usage {usage}");
}

/// The SCEP payload's one-time challenge.
fn challenge_of(c: &plist::Dictionary) -> String {
    c.get("Challenge")
        .and_then(Value::as_string)
        .unwrap()
        .to_string()
}

fn payload_header(p: &plist::Dictionary, kind: &str) {
    assert_eq!(p.get("PayloadType").and_then(Value::as_string), Some(kind));
    assert_eq!(
        p.get("PayloadVersion").and_then(Value::as_unsigned_integer),
        Some(1)
    );
    assert!(p
        .get("PayloadIdentifier")
        .and_then(Value::as_string)
        .is_some());
    let uuid = p.get("PayloadUUID").and_then(Value::as_string).unwrap();
    assert_eq!(uuid.len(), 36, "{uuid}");
}

/// `openssl cms -verify` against the CA: the profile inside, as a device sees it.
fn verified(s: &ScepServer, der: &[u8], name: &str) -> Value {
    let dir = s.token.path().join("profiles");
    std::fs::create_dir_all(&dir).unwrap();
    let signed = dir.join(format!("{name}.mobileconfig"));
    std::fs::write(&signed, der).unwrap();
    let ca = write_pem(&dir, "ca.pem", &s.ca);
    let out_path = dir.join(format!("{name}.plist"));
    let out = Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-purpose", "any", "-in"])
        .arg(&signed)
        .arg("-CAfile")
        .arg(&ca)
        .arg("-out")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl cms -verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Value::from_file(&out_path).expect("an XML property list")
}

#[test]
fn a_signed_mobileconfig_carries_the_chain_and_its_challenge_enrolls() {
    let s = ScepServer::start();
    let (mdm, _) = new_token(&s, "mdm", "jamf");
    let r = get(&s, "/api/v1/profiles/default/mobileconfig?cn=mac-7", &mdm);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    assert_eq!(
        r.headers()["content-type"],
        "application/x-apple-aspen-config"
    );
    let profile = verified(&s, &r.bytes().unwrap(), "first");
    let problems = crate::apple_schema::problems(&profile);
    assert!(
        problems.is_empty(),
        "against Apple's schemas:\n{}",
        problems.join("\n")
    );
    let top = profile.as_dictionary().unwrap();
    payload_header(top, "Configuration");
    let content = top.get("PayloadContent").and_then(Value::as_array).unwrap();
    // The chain: here the CA is the root (one payload); the SCEP payload last.
    let root = content[0].as_dictionary().unwrap();
    payload_header(root, "com.apple.security.root");
    assert_eq!(
        root.get("PayloadContent").and_then(Value::as_data),
        Some(s.ca.as_slice()),
        "the root is GetCACert's CA"
    );
    let scep = content.last().unwrap();
    payload_header(scep.as_dictionary().unwrap(), "com.apple.security.scep");
    let c = dict(scep, "PayloadContent");
    check_scep_content(c);
    assert_eq!(
        c.get("URL").and_then(Value::as_string).unwrap(),
        format!("{}/scep/default", s.base)
    );
    assert_eq!(
        c.get("CAFingerprint").and_then(Value::as_data),
        Some(openssl::sha::sha1(&s.ca).as_slice())
    );
    let subject = c.get("Subject").unwrap().as_array().unwrap();
    let cn = subject[0].as_array().unwrap()[0].as_array().unwrap();
    assert_eq!(cn[1].as_string(), Some("mac-7"));

    // Its one-time challenge enrolls the device it names, once.
    let challenge = challenge_of(c);
    let (_, _, reply) = enroll_with(&s, "default", "mac-7", &challenge);
    assert_eq!(
        reply.status,
        sigil::scep::PkiStatus::Success,
        "{:?}",
        reply.fail_text
    );
    let (_, _, again) = enroll_with(&s, "default", "mac-7", &challenge);
    assert_eq!(again.status, sigil::scep::PkiStatus::Failure);

    // Pushed again: a new challenge, the same payload UUIDs (the device replaces it).
    let r = get(&s, "/api/v1/profiles/default/mobileconfig?cn=mac-7", &mdm);
    let second = verified(&s, &r.bytes().unwrap(), "second");
    let uuids = |v: &Value| -> Vec<String> {
        let d = v.as_dictionary().unwrap();
        let mut out = vec![d
            .get("PayloadUUID")
            .unwrap()
            .as_string()
            .unwrap()
            .to_string()];
        for p in d.get("PayloadContent").unwrap().as_array().unwrap() {
            out.push(
                p.as_dictionary()
                    .unwrap()
                    .get("PayloadUUID")
                    .unwrap()
                    .as_string()
                    .unwrap()
                    .to_string(),
            );
        }
        out
    };
    assert_eq!(uuids(&profile), uuids(&second));
    let c2 = dict(
        second
            .as_dictionary()
            .unwrap()
            .get("PayloadContent")
            .unwrap()
            .as_array()
            .unwrap()
            .last()
            .unwrap(),
        "PayloadContent",
    );
    assert_ne!(c2.get("Challenge"), c.get("Challenge"));

    // The declarative asset: the same keys, as JSON.
    let r = get(&s, "/api/v1/profiles/default/ddm?cn=mac-8", &mdm);
    assert_eq!(r.status(), 200);
    let asset: serde_json::Value = r.json().unwrap();
    assert_eq!(asset["Key Type"], "RSA");
    assert_eq!(asset["Keysize"], json!(2048));
    assert_eq!(asset["Subject"], json!([[["CN", "mac-8"]]]));
    assert!(asset["Challenge"].as_str().is_some());

    // The same from the command line, for an administrator installing by hand.
    let file = s.token.path().join("cli.mobileconfig");
    let out = s
        .cli()
        .args(["profile", "export", "default", "--cn", "mac-9", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_hand = verified(&s, &std::fs::read(&file).unwrap(), "cli");
    let last = by_hand
        .as_dictionary()
        .unwrap()
        .get("PayloadContent")
        .unwrap()
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    check_scep_content(dict(&last, "PayloadContent"));
    let out = s
        .cli()
        .args(["profile", "export", "default", "--format", "plist"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mobileconfig or ddm"));

    // The values an Android or Windows SCEP profile in Intune or Workspace ONE needs.
    let v: serde_json::Value = get(&s, "/api/v1/profiles/default/scep-values", &mdm)
        .json()
        .unwrap();
    assert_eq!(v["url"], format!("{}/scep/default", s.base));
    assert_eq!(
        v["root_certificate"]["sha1"],
        hex::encode_upper(openssl::sha::sha1(&s.ca))
    );
    assert_eq!(v["key_size"], 2048);

    // Who may not: a user, an integration scoped elsewhere; and unknown profiles.
    let (user, _) = new_token(&s, "user", "u@agency.test");
    assert_eq!(
        get(&s, "/api/v1/profiles/default/mobileconfig", &user).status(),
        403
    );
    let (narrow, _) = new_token_with(
        &s,
        json!({"role": "mdm", "name": "narrow", "profiles": ["strict"]}),
    );
    assert_eq!(
        get(&s, "/api/v1/profiles/default/mobileconfig", &narrow).status(),
        403
    );
    let r = get(&s, "/api/v1/profiles/nope/mobileconfig", &mdm);
    assert!(r.status().is_client_error(), "{}", r.status());
}

fn uuid_of(p: &Value) -> String {
    p.as_dictionary()
        .unwrap()
        .get("PayloadUUID")
        .unwrap()
        .as_string()
        .unwrap()
        .to_string()
}

fn payload_of<'a>(profile: &'a Value, kind: &str) -> Vec<&'a Value> {
    profile
        .as_dictionary()
        .unwrap()
        .get("PayloadContent")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p.as_dictionary()
                .unwrap()
                .get("PayloadType")
                .and_then(Value::as_string)
                == Some(kind)
        })
        .collect()
}

/// The RADIUS servers' CA: another root (made with openssl, as an agency's would be), as PEM
/// in `dir`.
fn radius_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let key = dir.join("radius-ca.key");
    let pem = dir.join("radius-ca.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=Agency RADIUS CA",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pem
}

#[test]
fn wifi_and_vpn_payloads_use_the_enrolled_certificate_and_meet_apples_schemas() {
    let radius = tempfile::tempdir().unwrap();
    let pem = radius_ca(radius.path());
    let s = ScepServer::start_with(&format!(
        r#"
[profiles.wifi]
key_usage = ["digitalSignature", "keyEncipherment"]

[profiles.wifi.wifi]
ssid = "agency-secure"
encryption = "WPA2"
trusted_server_names = ["radius.agency.gov", "radius2.agency.gov"]
radius_ca_file = "{pem}"

[profiles.vpn]

[profiles.vpn.vpn]
name = "Agency VPN"
remote_address = "vpn.agency.gov"
remote_identifier = "vpn.agency.gov"
local_identifier = "device.agency.gov"
"#,
        pem = pem.display()
    ));
    let (mdm, _) = new_token(&s, "mdm", "jamf");
    // Wi-Fi: the SCEP certificate is its identity; the RADIUS CA its anchor, in a payload of
    // its own; the servers' names pinned.
    let r = get(&s, "/api/v1/profiles/wifi/mobileconfig?cn=mac-7", &mdm);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let profile = verified(&s, &r.bytes().unwrap(), "wifi");
    let problems = crate::apple_schema::problems(&profile);
    assert!(
        problems.is_empty(),
        "against Apple's schemas:\n{}",
        problems.join("\n")
    );
    let scep = payload_of(&profile, "com.apple.security.scep")[0];
    let wifi = payload_of(&profile, "com.apple.wifi.managed")[0]
        .as_dictionary()
        .unwrap();
    assert_eq!(
        wifi.get("SSID_STR").and_then(Value::as_string),
        Some("agency-secure")
    );
    assert_eq!(
        wifi.get("PayloadCertificateUUID")
            .and_then(Value::as_string),
        Some(uuid_of(scep).as_str()),
        "the Wi-Fi identity is the SCEP payload's certificate"
    );
    let eap = wifi
        .get("EAPClientConfiguration")
        .unwrap()
        .as_dictionary()
        .unwrap();
    assert_eq!(
        eap.get("AcceptEAPTypes"),
        Some(&Value::Array(vec![Value::Integer(13.into())]))
    );
    let names: Vec<&str> = eap
        .get("TLSTrustedServerNames")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert_eq!(names, ["radius.agency.gov", "radius2.agency.gov"]);
    let roots = payload_of(&profile, "com.apple.security.root");
    let radius_payload = roots
        .iter()
        .find(|p| {
            p.as_dictionary()
                .unwrap()
                .get("PayloadContent")
                .and_then(Value::as_data)
                == Some(
                    openssl::x509::X509::from_pem(&std::fs::read(&pem).unwrap())
                        .unwrap()
                        .to_der()
                        .unwrap()
                        .as_slice(),
                )
        })
        .expect("the RADIUS CA in the profile");
    assert_eq!(
        eap.get("PayloadCertificateAnchorUUID"),
        Some(&Value::Array(vec![Value::String(uuid_of(radius_payload))])),
        "the anchor is the RADIUS CA's payload"
    );
    // VPN: IKEv2 with the certificate.
    let r = get(&s, "/api/v1/profiles/vpn/mobileconfig?cn=mac-8", &mdm);
    let profile = verified(&s, &r.bytes().unwrap(), "vpn");
    let problems = crate::apple_schema::problems(&profile);
    assert!(
        problems.is_empty(),
        "against Apple's schemas:\n{}",
        problems.join("\n")
    );
    let scep = payload_of(&profile, "com.apple.security.scep")[0];
    let vpn = payload_of(&profile, "com.apple.vpn.managed")[0]
        .as_dictionary()
        .unwrap();
    assert_eq!(vpn.get("VPNType").and_then(Value::as_string), Some("IKEv2"));
    let ike = vpn.get("IKEv2").unwrap().as_dictionary().unwrap();
    assert_eq!(
        ike.get("AuthenticationMethod").and_then(Value::as_string),
        Some("Certificate")
    );
    assert_eq!(
        ike.get("PayloadCertificateUUID").and_then(Value::as_string),
        Some(uuid_of(scep).as_str())
    );
    assert!(payload_of(&profile, "com.apple.wifi.managed").is_empty());
    // The RADIUS CA file is gone: the Wi-Fi profile cannot be written, says so (503), and
    // mints no challenge for nothing.
    let (auditor, _) = new_token(&s, "auditor", "assessor");
    let minted = |s: &ScepServer| {
        get(s, "/api/v1/audit", &auditor)
            .json::<serde_json::Value>()
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "challenge_created")
            .count()
    };
    let before = minted(&s);
    std::fs::remove_file(&pem).unwrap();
    let r = get(&s, "/api/v1/profiles/wifi/mobileconfig?cn=mac-9", &mdm);
    assert_eq!(r.status(), 503);
    assert_eq!(minted(&s), before);
}

#[test]
fn a_wifi_profile_without_pinned_server_names_is_refused_at_start() {
    let t = crate::common::TokenDir::new();
    let out = t
        .sigil()
        .env("SIGIL_CONFIG", t.path().join("missing.toml"))
        .output()
        .unwrap();
    drop(out);
    let cfg = t.path().join("wifi.toml");
    std::fs::write(
        &cfg,
        "[profiles.default]\n\n[profiles.default.wifi]\nssid = \"agency\"\nencryption = \"WPA2\"\n",
    )
    .unwrap();
    let out = t
        .sigil()
        .env("SIGIL_CONFIG", &cfg)
        .args(["config", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("profiles.default") && err.contains("trusted_server_names"),
        "{err}"
    );
}

/// A registration's profile: signed, its SCEP payload carrying the registration's name and a
/// challenge that enrolls; when its Wi-Fi cannot be written (the RADIUS CA file gone) it says
/// so, and the challenge the device already has keeps working.
#[test]
fn a_registrations_profile_enrolls_and_a_missing_radius_ca_voids_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pem = radius_ca(dir.path());
    let devices = dir.path().join("devices.json");
    std::fs::write(
        &devices,
        json!([{"id": "mac-1", "user": "alice@agency.gov", "name": "Alice's Mac",
                "os": "macOS", "serial_number": "C02X1", "compliance": "compliant",
                "managed": true, "last_check_in": "2026-12-01T09:00:00Z"}])
        .to_string(),
    )
    .unwrap();
    let s = ScepServer::start_with(&format!(
        r#"
[profiles.wifi-derived]
allowed_sans = ["email"]

[profiles.wifi-derived.wifi]
ssid = "agency-secure"
encryption = "WPA2"
trusted_server_names = ["radius.agency.gov"]
radius_ca_file = "{pem}"

[directories.inventory]
kind = "file"
path = "{devices}"

[credentials.wifi]
description = "Wi-Fi for managed Macs"
profile = "wifi-derived"
directory = "inventory"
subject = "CN={{user}} {{serial_number}},O=Agency"
sans = ["email:{{email}}"]
request_ttl = "1h"
challenge_ttl = "10m"
"#,
        pem = pem.display(),
        devices = devices.display(),
    ));
    let (alice, _) = new_token(&s, "user", "alice@agency.gov");
    let (olivia, _) = new_token(&s, "officer", "olivia@agency.gov");
    let (oscar, _) = new_token(&s, "officer", "oscar@agency.gov");
    let (mdm, _) = new_token(&s, "mdm", "jamf");
    let post = |path: &str, token: &str, body: serde_json::Value| {
        let r = s
            .http
            .post(format!("{}{path}", s.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().unwrap())
    };
    let (st, reg) = post(
        "/api/v1/registrations",
        &alice,
        json!({"email": "alice@agency.gov", "credential": "wifi"}),
    );
    assert_eq!(st, 201, "{reg}");
    let id = reg["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/registrations/{id}/mobileconfig");
    // Not before it is approved, whatever else is wrong (the RADIUS CA file gone too).
    assert_eq!(get(&s, &path, &mdm).status(), 409);
    let pem_text = std::fs::read(&pem).unwrap();
    std::fs::remove_file(&pem).unwrap();
    assert_eq!(get(&s, &path, &mdm).status(), 409);
    std::fs::write(&pem, &pem_text).unwrap();
    let (st, v) = post(
        &format!("/api/v1/registrations/{id}/request"),
        &olivia,
        json!({"device_id": "mac-1"}),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = post(
        &format!("/api/v1/registrations/{id}/approve"),
        &oscar,
        json!({}),
    );
    assert_eq!(st, 200, "{v}");
    // A user does not collect it.
    assert_eq!(get(&s, &path, &alice).status(), 403);

    let r = get(&s, &path, &mdm);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let profile = verified(&s, &r.bytes().unwrap(), "registration");
    let problems = crate::apple_schema::problems(&profile);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let scep = payload_of(&profile, "com.apple.security.scep")[0];
    let c = dict(scep, "PayloadContent");
    check_scep_content(c);
    let subject = c.get("Subject").unwrap().as_array().unwrap();
    let cn = subject[0].as_array().unwrap()[0].as_array().unwrap();
    assert_eq!(cn[1].as_string(), Some("alice C02X1"));
    assert_eq!(payload_of(&profile, "com.apple.wifi.managed").len(), 1);
    let challenge = challenge_of(c);

    // The RADIUS CA file is gone: 503, and the challenge the device holds still enrolls.
    std::fs::remove_file(&pem).unwrap();
    let r = get(&s, &path, &mdm);
    assert_eq!(r.status(), 503, "{}", r.text().unwrap());
    let (_, _, reply) = enroll_with(&s, "wifi-derived", "whatever", &challenge);
    assert_eq!(
        reply.status,
        sigil::scep::PkiStatus::Success,
        "{:?}",
        reply.fail_text
    );
    let cert = openssl::x509::X509::from_der(&reply.certs[0]).unwrap();
    let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
    assert!(text.contains("Subject: CN=alice C02X1, O=Agency"), "{text}");
}
