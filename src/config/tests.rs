//! The configuration: files, environment overrides, and the checks that refuse a bad one.
use super::*;

fn load(text: &str) -> Result<crate::config::Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sigil.toml");
    std::fs::write(&path, text).unwrap();
    crate::config::Config::load_with_env(Some(&path), Vec::new())
}

const GOOD: &str = r#"
[profiles.default]
[profiles.derived]
[directories.intune]
kind = "intune"
tenant_id = "t"
client_id = "c"
client_secret_env = "GRAPH_SECRET"
[credentials.piv]
profile = "derived"
directory = "intune"
subject = "CN={user},O=Agency"
sans = ["email:{email}", "uri:urn:uuid:{udid}"]
"#;

#[test]
fn directories_and_credentials_are_checked_together() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.credentials["piv"].request_ttl_secs(), 7 * 86_400);
    for (from, to, want) in [
        (
            "profile = \"derived\"",
            "profile = \"nope\"",
            "profile `nope`",
        ),
        (
            "directory = \"intune\"",
            "directory = \"jamf\"",
            "directory `jamf`",
        ),
        ("{user}", "{colour}", "not a placeholder"),
        ("email:{email}", "mail:{email}", "must start with"),
        (
            "kind = \"intune\"",
            "kind = \"airwatch\"",
            "unknown variant `airwatch`",
        ),
        ("client_id = \"c\"", "client_id = \"\"", "needs client_id"),
        (
            "client_secret_env = \"GRAPH_SECRET\"",
            "client_secret_env = \"GRAPH_SECRET\"\nclient_secret_file = \"/x\"",
            "only one of client_secret_file",
        ),
        (
            "[credentials.piv]",
            "[credentials.piv]\nrequest_ttl = \"soon\"",
            "request_ttl",
        ),
        (
            "[credentials.piv]",
            "[credentials.piv]\nkey_size = 1024",
            "key_size",
        ),
        (
            "[credentials.piv]",
            "[credentials.piv]\ncolour = 1",
            "colour",
        ),
    ] {
        let text = GOOD.replacen(from, to, 1);
        let e = load(&text).unwrap_err().to_string();
        assert!(e.contains(want), "{to}: {e}");
    }
    // A push that hands the device its SCEP URL needs the address devices reach.
    let jamf = r#"
[profiles.default]
[profiles.derived]
[directories.jamf]
kind = "jamf"
base_url = "https://jamf.example"
client_id = "c"
client_secret_env = "JAMF_SECRET"
[credentials.mac]
profile = "derived"
directory = "jamf"
[credentials.mac.push]
per_device_profile = true
"#;
    let e = load(jamf).unwrap_err().to_string();
    assert!(
        e.contains("per_device_profile") && e.contains("server.public_url"),
        "{e}"
    );
    let with_url = format!("[server]\npublic_url = \"https://ca.example\"\n{jamf}");
    load(&with_url).unwrap();
}

use crate::gateway::config::test_env as env;

#[test]
fn env_overrides_file_and_keeps_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sigil.toml");
    std::fs::write(&path, "[hsm]\ntoken = \"from-file\"\npool_size = 2\n").unwrap();
    let c = Config::load_with_env(
        Some(&path),
        env(&[
            ("SIGIL_HSM_TOKEN", "1234"),
            ("SIGIL_HSM_POOL_SIZE", "8"),
            ("SIGIL_HSM_PIN_FILE", "/run/pin"),
            ("SIGIL_SERVER_LISTEN", "0.0.0.0:9000"),
            ("SIGIL_LOG_FORMAT", "json"),
            ("SIGIL_SERVER_GATEWAY_NAMES", "gw-1, gw-2"),
            ("SIGIL_SERVER_TRUSTED_PROXIES", "10.0.0.5, 10.1.0.0/16"),
            ("SIGIL_SERVER_TLS_CERT", "/tls/core.pem"),
            ("SIGIL_SERVER_TLS_KEY", "/tls/core.key"),
            ("SIGIL_SERVER_CLIENT_CA", "/tls/ca.pem"),
            ("SIGIL_CONFIG", "ignored"),
            ("SIGIL_SCEP_URL", "ignored"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    assert_eq!(c.hsm.token, "1234");
    assert_eq!(c.hsm.pool_size, 8);
    assert_eq!(c.hsm.pin_file.as_deref(), Some(Path::new("/run/pin")));
    assert_eq!(c.server.listen, "0.0.0.0:9000");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.server.gateway_names, ["gw-1", "gw-2"]);
    assert_eq!(c.server.trusted_proxies, ["10.0.0.5", "10.1.0.0/16"]);
    // A proxy named by host name, or a network that is not one, is refused at load.
    let e = Config::load_with_env(
        Some(&path),
        env(&[("SIGIL_SERVER_TRUSTED_PROXIES", "lb.agency.gov")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("trusted_proxies") && e.contains("lb.agency.gov"),
        "{e}"
    );
}

#[test]
fn typos_and_bad_values_are_refused_with_reasons() {
    let e = Config::load_with_env(None, env(&[("SIGIL_HSM_PINFILE", "x")])).unwrap_err();
    assert!(e.to_string().contains("SIGIL_HSM_PIN_FILE"), "{e}");
    assert!(e.to_string().contains("SIGIL_HSM_PINFILE"), "{e}");
    let e = Config::load_with_env(None, env(&[("SIGIL_HSM_POOL_SIZE", "many")])).unwrap_err();
    assert!(e.to_string().contains("whole number"), "{e}");
    let e = Config::load_with_env(None, env(&[("SIGIL_SERVR_LISTEN", "x")])).unwrap_err();
    assert!(e.to_string().contains("names no section"), "{e}");
    let e = Config::load_with_env(None, env(&[("SIGIL_HSM_PIN", "1234")])).unwrap_err();
    assert!(e.to_string().contains("not a setting"), "{e}");
    assert!(!e.to_string().contains("1234"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[hsm]\npin = \"1234\"\n").unwrap();
    let e = Config::load_with_env(Some(&path), env(&[])).unwrap_err();
    assert!(e.to_string().contains("bad.toml"), "{e}");
}

#[test]
fn database_passwords_never_show() {
    for (url, shown) in [
        (
            "postgres://sigil:s3cret@db:5432/sigil?sslmode=require",
            "postgres://sigil:***@db:5432/sigil?sslmode=require",
        ),
        (
            "postgres://sigil@db/sigil?password=s3cret&sslmode=disable",
            "postgres://sigil@db/sigil?password=***&sslmode=disable",
        ),
        (
            "postgresql://u:p@h/d?sslpassword=k",
            "postgresql://u:***@h/d?sslpassword=***",
        ),
        ("", ""),
        ("postgres://db/sigil", "postgres://db/sigil"),
    ] {
        assert_eq!(redact_database_url(url), shown);
    }
    let mut c = Config::default();
    c.database.url = "postgres://u@h/d?password=topsecret".into();
    assert!(!c.to_toml().contains("topsecret"));
}

#[test]
fn pin_source_must_be_exactly_one() {
    let mut h = HsmSection::default();
    assert!(h
        .pin_source()
        .unwrap_err()
        .to_string()
        .contains("SIGIL_HSM_PIN_FILE"));
    h.pin_env = Some("P".into());
    assert_eq!(h.pin_source().unwrap(), PinSource::Env("P".into()));
    h.pin_file = Some("/x".into());
    assert!(h.pin_source().is_err());
}

#[test]
fn key_settings_accept_labels_and_uris() {
    let h = HsmSection::default();
    assert_eq!(
        h.ca_key_uri().unwrap().to_string(),
        "pkcs11:token=sigil;object=sigil-ca"
    );
    let u = h.key_uri("ra_key", "pkcs11:token=other;object=ra").unwrap();
    assert_eq!(u.token.as_deref(), Some("other"));
    assert!(h.key_uri("ra_key", "pkcs11:token=x").is_err());
}

/// Every example in hsm-config/examples/ is a valid configuration.
#[test]
fn hsm_examples_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("hsm-config/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            let c = Config::load_with_env(Some(&path), Vec::new())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            c.hsm.hsm_config().unwrap();
            c.hsm.ca_key_uri().unwrap();
            c.hsm.ra_decrypt_key_uri().unwrap();
            n += 1;
        }
    }
    assert!(n >= 6, "expected the six HSM examples, found {n}");
}

/// The two-zone core example is a valid configuration.
#[test]
fn two_zone_core_example_parses() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/two-zone/core.toml");
    let c = Config::load_with_env(Some(&p), Vec::new()).unwrap();
    assert_eq!(c.server.gateway_names.len(), 2);
}
