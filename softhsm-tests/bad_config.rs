//! Bad configuration gets one line that names the fix, and exit status 2.

use crate::common::TokenDir;

fn one_line_error(t: &TokenDir, env: &[(&str, &str)], args: &[&str], must_contain: &[&str]) {
    let mut cmd = t.sigil();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().expect("run sigil");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{env:?}: exit status {:?}",
        out.status
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        1,
        "{env:?}: expected one error line in:\n{stderr}"
    );
    for needle in must_contain {
        assert!(
            errors[0].contains(needle),
            "{env:?}: `{needle}` not in `{}`",
            errors[0]
        );
    }
    let pin = std::fs::read_to_string(t.path().join("user.pin")).unwrap();
    assert!(
        !stderr.contains(pin.trim()),
        "the PIN appeared in the output"
    );
}

#[test]
fn each_mistake_names_its_fix() {
    let t = TokenDir::new();
    crate::common::ok(&t.run(&["init", "--ca-key", "p256"]));
    one_line_error(
        &t,
        &[("SIGIL_HSM_MODULE", "/nonexistent/libpkcs11.so")],
        &["ca", "show"],
        &["module not found", "SIGIL_HSM_MODULE"],
    );
    one_line_error(
        &t,
        &[("SIGIL_HSM_TOKEN", "no-such-token")],
        &["ca", "show"],
        &[
            "no token labelled `no-such-token`",
            "`sigil`",
            "SIGIL_HSM_TOKEN",
        ],
    );
    let wrong_pin = t.path().join("wrong.pin");
    std::fs::write(&wrong_pin, "000000\n").unwrap();
    one_line_error(
        &t,
        &[("SIGIL_HSM_PIN_FILE", wrong_pin.to_str().unwrap())],
        &["ca", "show"],
        &["refused the PIN"],
    );
    one_line_error(
        &t,
        &[("SIGIL_HSM_PIN_FILE", "/nonexistent/pin")],
        &["ca", "show"],
        &["PIN file", "SIGIL_HSM_PIN_FILE"],
    );
    one_line_error(
        &t,
        &[("SIGIL_HSM_CA_KEY", "missing-ca")],
        &["serve"],
        &["missing-ca", "sigil init"],
    );
    let mut no_pin = t.sigil();
    no_pin.env_remove("SIGIL_HSM_PIN_FILE");
    let out = no_pin.args(["ca", "show"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGIL_HSM_PIN_FILE"));
    one_line_error(
        &t,
        &[("SIGIL_HSM_POOLSIZE", "3")],
        &["ca", "show"],
        &[
            "`SIGIL_HSM_POOLSIZE` is not a setting",
            "SIGIL_HSM_POOL_SIZE",
        ],
    );
    // Tools never create a store (see store_binding for the rest).
    let fresh = t.path().join("fresh-data");
    one_line_error(
        &t,
        &[("SIGIL_SERVER_DATA_DIR", fresh.to_str().unwrap())],
        &["cert", "list"],
        &[
            "no store at",
            "sigil db migrate --create",
            "SIGIL_SERVER_DATA_DIR",
        ],
    );
    // A CA key label that names nothing: an error (exit 2), not advice to make a second CA.
    one_line_error(
        &t,
        &[("SIGIL_HSM_CA_KEY", "oops")],
        &["ca", "show"],
        &["no CA certificate `oops`", "hsm.ca_key"],
    );
    // A TLS file that is not there: the setting, the path and where it was looked for, not
    // OpenSSL's numbers nor the listening address.
    one_line_error(
        &t,
        &[
            ("SIGIL_SERVER_TLS_CERT", "var/zone/tls/core.pem"),
            ("SIGIL_SERVER_TLS_KEY", "var/zone/tls/core.key"),
            ("SIGIL_SERVER_LISTEN", "127.0.0.1:0"),
        ],
        &["serve"],
        &[
            "server.tls_cert (SIGIL_SERVER_TLS_CERT): cannot read `var/zone/tls/core.pem`",
            "relative paths are read from",
            "No such file or directory",
        ],
    );
}

/// `sigil` run with no configuration file and no token settings (from another directory, the
/// quickstart's variables not loaded) says that first, and how to give one.
#[test]
fn nothing_configured_says_so_first() {
    let t = TokenDir::new();
    let out = std::process::Command::new(crate::common::sigil_bin())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(t.path())
        .args(["ca", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with("error: no configuration file was read")
            && errors[0].contains("SIGIL_CONFIG")
            && errors[0].contains("quickstart.env")
            && errors[0].contains("no PIN source"),
        "{stderr}"
    );
}
