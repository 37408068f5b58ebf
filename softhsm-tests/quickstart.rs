//! The README's first command: `deploy/quickstart.sh` prepares a token, runs the ceremony once,
//! writes var/quickstart.env, and the server it starts enrolls a device with the values it
//! printed. Run in a temporary var directory with the debug build.

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

#[test]
fn quickstart_prepares_once_then_serves_scep() {
    crate::common::ensure_tool("scepclient", "scep");
    let var = tempfile::Builder::new()
        .prefix("sigil-qs-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let run = || {
        Command::new("bash")
            .arg(root().join("deploy/quickstart.sh"))
            .arg("--prepare")
            .env("QUICKSTART_VAR", var.path())
            .env("QUICKSTART_BUILD", "debug")
            .env("QUICKSTART_LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("SOFTHSM2_CONF")
            .output()
            .unwrap()
    };
    let first = ok(&run());
    assert!(first.contains("key ceremony"), "{first}");
    let env = std::fs::read_to_string(var.path().join("quickstart.env")).unwrap();
    for name in [
        "SOFTHSM2_CONF",
        "SIGIL_HSM_MODULE",
        "SIGIL_HSM_TOKEN",
        "SIGIL_HSM_PIN_FILE",
        "SIGIL_SCEP_URL",
        "SIGIL_CHALLENGE",
        "SIGIL_CA_SHA256",
    ] {
        env_value(&env, name);
    }
    let admin = env_value(&env, "SIGIL_ADMIN_TOKEN");
    assert!(admin.starts_with("sigil_"), "{admin}");
    let ca_before = std::fs::read(var.path().join("data/ca.pem")).unwrap();
    // Run twice: the token and keys are reused.
    let second = ok(&run());
    assert!(second.contains("reusing its keys"), "{second}");
    assert_eq!(
        std::fs::read(var.path().join("data/ca.pem")).unwrap(),
        ca_before
    );
    let env = std::fs::read_to_string(var.path().join("quickstart.env")).unwrap();
    let ca_sha = env_value(&env, "SIGIL_CA_SHA256");
    let printed = ok(&Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(var.path().join("data/ca.pem"))
        .output()
        .unwrap());
    assert_eq!(
        printed
            .trim()
            .split('=')
            .nth(1)
            .unwrap()
            .replace(':', "")
            .to_lowercase(),
        ca_sha
    );

    // Serve as the quickstart would, with its environment, and enroll with what it printed.
    let mut server = Command::new(root().join("target/debug/sigil"))
        .arg("serve")
        .env("SOFTHSM2_CONF", env_value(&env, "SOFTHSM2_CONF"))
        .env("SIGIL_CONFIG", env_value(&env, "SIGIL_CONFIG"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = env_value(&env, "SIGIL_SCEP_URL");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::blocking::get(format!("{url}?operation=GetCACaps")).is_err() {
        assert!(Instant::now() < deadline, "quickstart server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ra_sha = hex::encode(openssl::sha::sha256(
        &openssl::x509::X509::from_pem(&std::fs::read(var.path().join("data/ra.pem")).unwrap())
            .unwrap()
            .to_der()
            .unwrap(),
    ));
    // The admin token from quickstart.env works, and survived the second run.
    assert_eq!(env_value(&env, "SIGIL_ADMIN_TOKEN"), admin);
    let tokens = reqwest::blocking::Client::new()
        .get(url.replace("/scep", "/api/v1/tokens"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(tokens.status(), 200);
    let out = Command::new("scepclient")
        .current_dir(var.path())
        .args(["-server-url", &format!("{url}/legacy")])
        .args(["-challenge", &env_value(&env, "SIGIL_CHALLENGE")])
        .args([
            "-ca-fingerprint",
            &ra_sha,
            "-private-key",
            "dev.key",
            "-certificate",
            "dev.pem",
        ])
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::common::openssl_verify(&var.path().join("data/ca.pem"), &var.path().join("dev.pem"));
}
