//! The README's first command and the blocks that follow it, run as written: the quickstart
//! prepares a token, runs the ceremony once, writes var/quickstart.env and moves with
//! QUICKSTART_LISTEN; then the README's shell blocks (those that start with
//! `. var/quickstart.env`) and the gateway guide's loopback recipe run in bash against the
//! server it started, from a scratch directory holding `var/` (the debug build, free ports).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, ok, root};

fn env_value(env: &str, name: &str) -> String {
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .unwrap_or_else(|| panic!("{name} missing from quickstart.env:\n{env}"))
        .trim_matches('"')
        .to_owned()
}

/// The ```sh blocks of a Markdown file whose first line starts with `first`.
fn blocks(markdown: &str, first: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in markdown.lines() {
        match (&mut cur, line.trim_start()) {
            (None, l) if l.starts_with("```sh") => cur = Some(String::new()),
            (Some(b), l) if l.starts_with("```") => {
                if b.trim_start().starts_with(first) {
                    out.push(b.clone());
                }
                cur = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

/// Run a documentation block in bash from `dir` (whose `var/` is the quickstart's), with
/// the repository's scripts and the debug build; stdout, or a failure with both outputs.
fn run_block(dir: &Path, block: &str, timeout: Duration) -> String {
    let script = format!("set -euo pipefail\n{block}");
    let mut child = Command::new("timeout")
        .arg(timeout.as_secs().to_string())
        .args(["bash", "-c", &script])
        .current_dir(dir)
        .env("QUICKSTART_BUILD", "debug")
        .env_remove("SOFTHSM2_CONF")
        .env_remove("SIGIL_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "block failed ({status}):\n{block}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    stdout
}

#[test]
fn the_readme_runs_as_written() {
    crate::common::ensure_tool("scepclient", "scep");
    crate::common::ensure_tool("jq", "jq");
    let top = tempfile::Builder::new()
        .prefix("sigil-readme-")
        .tempdir()
        .unwrap();
    let var = top.path().join("var");
    let quickstart = |port: u16| {
        Command::new("bash")
            .arg(root().join("deploy/quickstart.sh"))
            .arg("--prepare")
            .env("QUICKSTART_VAR", &var)
            .env("QUICKSTART_BUILD", "debug")
            .env("QUICKSTART_LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("SOFTHSM2_CONF")
            .output()
            .unwrap()
    };
    // Once on one port, then on the one it will serve on: the configuration follows.
    let first_port = free_port();
    let first = ok(&quickstart(first_port));
    assert!(first.contains("key ceremony"), "{first}");
    let ca_before = std::fs::read(var.join("data/ca.pem")).unwrap();
    let port = free_port();
    let second = ok(&quickstart(port));
    assert!(second.contains("reusing its keys"), "{second}");
    assert_eq!(std::fs::read(var.join("data/ca.pem")).unwrap(), ca_before);
    let toml = std::fs::read_to_string(var.join("sigil.toml")).unwrap();
    assert!(
        toml.contains(&format!("listen = \"127.0.0.1:{port}\""))
            && toml.contains(&format!("public_url = \"http://127.0.0.1:{port}\"")),
        "{toml}"
    );
    let env = std::fs::read_to_string(var.join("quickstart.env")).unwrap();
    assert_eq!(
        env_value(&env, "SIGIL_BASE_URL"),
        format!("http://127.0.0.1:{port}")
    );
    for name in [
        "SOFTHSM2_CONF",
        "SIGIL_HSM_PIN_FILE",
        "SIGIL_SCEP_URL",
        "SIGIL_CHALLENGE",
        "SIGIL_CA_SHA256",
        "SIGIL_DATA_DIR",
    ] {
        env_value(&env, name);
    }
    // The RA fingerprint scepclient's -ca-fingerprint needs (not the CA's).
    let ra_sha = hex::encode(openssl::sha::sha256(
        &openssl::x509::X509::from_pem(&std::fs::read(var.join("data/ra.pem")).unwrap())
            .unwrap()
            .to_der()
            .unwrap(),
    ));
    assert_eq!(env_value(&env, "SIGIL_RA_SHA256"), ra_sha);
    assert!(env_value(&env, "SIGIL_ADMIN_TOKEN").starts_with("sigil_"));
    // Public certificates are readable by all; the store by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&var.join("data/ca.pem")), 0o644);
    assert_eq!(mode(&var.join("data/sigil.db")), 0o600);

    // Serve as the quickstart would.
    let mut server = Command::new(root().join("target/debug/sigil"))
        .arg("serve")
        .env("SOFTHSM2_CONF", env_value(&env, "SOFTHSM2_CONF"))
        .env("SIGIL_CONFIG", env_value(&env, "SIGIL_CONFIG"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = env_value(&env, "SIGIL_BASE_URL");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::blocking::get(format!("{base}/healthz")).is_err() {
        assert!(Instant::now() < deadline, "quickstart server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let run = blocks(&readme, ". var/quickstart.env");
    assert_eq!(run.len(), 2, "the README's two runnable blocks");
    let out1 = run_block(top.path(), &run[0], Duration::from_secs(120));
    let out2 = run_block(top.path(), &run[1], Duration::from_secs(120));
    let _ = server.kill();
    let _ = server.wait();
    assert!(out1.contains("POSTPKIOperation"), "{out1}");
    assert!(out1.contains("dev.pem: OK"), "{out1}");
    assert!(out1.contains("Certificate Object"), "{out1}");
    // The quickstart's certificates tell relying parties where to look.
    let (_, text) = crate::common::openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        var.join("device/dev.pem").to_str().unwrap(),
    ]);
    assert!(
        text.contains(&format!("{base}/crl/")) && text.contains(&format!("{base}/ocsp")),
        "{text}"
    );
    assert!(
        out2.contains("The enrollment challenge password is"),
        "{out2}"
    );
    assert!(out2.contains(": revoked"), "{out2}");
}

#[test]
fn the_gateway_guide_loopback_recipe_runs_as_written() {
    crate::common::ensure_tool("scepclient", "scep");
    let top = tempfile::Builder::new()
        .prefix("sigil-zones-")
        .tempdir()
        .unwrap();
    let guide = std::fs::read_to_string(root().join("docs/gateway.md")).unwrap();
    let recipe = blocks(&guide, "# A CA for the recipe");
    assert_eq!(recipe.len(), 1, "the guide's loopback recipe");
    // The quickstart builds `sigil` only (this suite's debug build has every binary, so a
    // recipe calling another would pass here and fail for a reader).
    assert!(
        !recipe[0]
            .lines()
            .any(|l| l.trim_start().starts_with("sigil-gateway")),
        "the recipe runs `sigil gateway`, which the quickstart builds"
    );
    // As written, but on free ports and with this checkout's script.
    let (core, gateway) = (free_port(), free_port());
    let block = recipe[0]
        .replace("8443", &core.to_string())
        .replace("8081", &gateway.to_string())
        .replace(
            "deploy/quickstart.sh",
            &root().join("deploy/quickstart.sh").display().to_string(),
        );
    let out = run_block(top.path(), &block, Duration::from_secs(240));
    assert!(out.contains("dev.pem: OK"), "{out}");
    assert!(
        out.contains("SCEP is answered here only through the gateway"),
        "{out}"
    );
    // The certificate points at the gateway's address.
    let (_, text) = crate::common::openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        top.path().join("var/zone/device/dev.pem").to_str().unwrap(),
    ]);
    assert!(
        text.contains(&format!("http://127.0.0.1:{gateway}/ocsp")),
        "{text}"
    );
}

#[test]
fn the_local_registration_walk_runs_as_written() {
    crate::common::ensure_tool("scepclient", "scep");
    crate::common::ensure_tool("jq", "jq");
    let top = tempfile::Builder::new()
        .prefix("sigil-reg-walk-")
        .tempdir()
        .unwrap();
    let guide = std::fs::read_to_string(root().join("docs/registrations.md")).unwrap();
    let walk = blocks(&guide, "# A CA for the walk");
    assert_eq!(walk.len(), 1, "the guide's local walk");
    let block = walk[0].replace("8082", &free_port().to_string()).replace(
        "deploy/quickstart.sh",
        &root().join("deploy/quickstart.sh").display().to_string(),
    );
    let out = run_block(top.path(), &block, Duration::from_secs(240));
    // Devices flagged, not hidden; the identity from the inventory; two people; the payload;
    // the phone gets the registration's name; the audit trail names each step.
    for want in [
        "non-compliant",
        "\"subject\": \"CN=alice F2LXK1,O=Agency\"",
        "two people: whoever filed this request cannot approve it",
        "approved",
        "subject=CN = alice F2LXK1, O = Agency",
        "issued ",
        "registration_created",
        "requested",
        "approval_refused",
        "registration_approved",
        "scep_payload_collected",
        "registration_issued",
    ] {
        assert!(out.contains(want), "`{want}` not in:\n{out}");
    }
}
