//! Test fixtures: real SoftHSM tokens, created fresh for each test run.
//!
//! * [`shared_hsm`]: one token for the in-process tests of this binary. SoftHSM only sees tokens
//!   that exist when the module is initialised, and the module is loaded once per process, so
//!   the token is created first, under `$SOFTHSM2_CONF` (set by `.cargo/config.toml` to
//!   `target/softhsm-tests/`), with a label unique to this process. Tests use distinct key labels.
//! * [`TokenDir`]: a token in its own temporary directory for tests that run the `sigil`
//!   binary, which loads the module in its own process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sigil::hsm::{Hsm, HsmConfig, PinSource};

/// Debian's SoftHSM module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The `sigil` binary under test: this build's, or `SIGIL_TEST_BIN` (to run the suite
/// against another build, e.g. an older commit's, to show a test fails there).
pub fn sigil_bin() -> PathBuf {
    std::env::var_os("SIGIL_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sigil")))
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run `hsm-config/softhsm-token.sh DIR LABEL`.
fn make_token(dir: &Path, label: &str) {
    let out = Command::new("bash")
        .arg(root().join("hsm-config/softhsm-token.sh"))
        .arg(dir)
        .arg(label)
        .output()
        .expect("run softhsm-token.sh");
    assert!(
        out.status.success(),
        "softhsm-token.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The token shared by the in-process tests, logged in.
/// Held (read) by every test using [`shared_hsm`], and taken alone (write) by the test that
/// closes every session of the slot underneath: that resets the token's login for everyone on
/// the slot, and a key generated meanwhile on another test's session failed (SoftHSM answered
/// CKR_TEMPLATE_INCONSISTENT), a flake in about one run in six of `hsm_ops`.
pub fn shared_slot() -> std::sync::RwLockReadGuard<'static, ()> {
    SLOT.read().unwrap_or_else(|e| e.into_inner())
}

/// The slot of [`shared_hsm`] to this test alone (see [`shared_slot`]).
pub fn shared_slot_alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    SLOT.write().unwrap_or_else(|e| e.into_inner())
}

static SLOT: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn shared_hsm() -> &'static Hsm {
    static HSM: OnceLock<Hsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let conf = PathBuf::from(
            std::env::var("SOFTHSM2_CONF").expect("SOFTHSM2_CONF is set by .cargo/config.toml"),
        );
        let dir = conf.parent().expect("conf has a parent").to_owned();
        let label = format!("lib-{}", std::process::id());
        make_token(&dir, &label);
        assert_eq!(
            std::fs::canonicalize(&conf).ok(),
            std::fs::canonicalize(dir.join("softhsm2.conf")).ok()
        );
        Hsm::open(&HsmConfig {
            module: MODULE.into(),
            token: label,
            pin: PinSource::File(dir.join("user.pin")),
            pool_size: 4,
        })
        .expect("log in to the shared test token")
    })
}

/// A token in its own directory, for runs of the `sigil` binary.
pub struct TokenDir {
    /// Holds the directory until the test ends.
    pub tmp: tempfile::TempDir,
    /// Token label.
    pub label: String,
}

impl TokenDir {
    /// Create a token labelled `sigil` in a fresh directory.
    pub fn new() -> TokenDir {
        let tmp = tempfile::Builder::new()
            .prefix("sigil-token-")
            .tempdir()
            .expect("tempdir");
        make_token(tmp.path(), "sigil");
        TokenDir {
            tmp,
            label: "sigil".into(),
        }
    }

    /// Directory.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The data directory `sigil` writes PEM files to.
    pub fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    /// A `sigil` command with the environment pointing at this token.
    pub fn sigil(&self) -> Command {
        let mut c = Command::new(sigil_bin());
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SOFTHSM2_CONF", self.path().join("softhsm2.conf"))
            .env("SIGIL_HSM_MODULE", MODULE)
            .env("SIGIL_HSM_TOKEN", &self.label)
            .env("SIGIL_HSM_PIN_FILE", self.path().join("user.pin"))
            .env("SIGIL_SERVER_DATA_DIR", self.data())
            .env("SIGIL_LOG_LEVEL", "warn");
        c
    }

    /// Run `sigil ARGS…` and return its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.sigil().args(args).output().expect("run sigil")
    }
}

/// Assert success and return stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl verify -CAfile ca cert` succeeds.
pub fn openssl_verify(ca: &Path, cert: &Path) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl verify {} failed: {}{}",
        cert.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free TCP port on 127.0.0.1 for a server a test starts.
///
/// Taken below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), where
/// `bind(0)` and every outgoing connection take their ports: a port from there, free when
/// checked, can become another test's client port before the server binds it, and the server
/// then does not start. Each port is handed out once per test run.
pub fn free_port() -> u16 {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // (Below 30000 too: Kubernetes' NodePorts, 30000-32767, are redirected without a bind.)
    let (low, high) = (10_000u16, ephemeral_low.min(30_000));
    if high > low + 1_000 {
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..200 {
            let mut r = [0u8; 2];
            openssl::rand::rand_bytes(&mut r).unwrap();
            let port = low + u16::from_be_bytes(r) % (high - low);
            if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.insert(port);
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Fail clearly when a tool that softhsm-tests/run.sh installs is missing.
pub fn ensure_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: run softhsm-tests/run.sh (it installs the `{package}` package)"
    );
}

/// Run the `openssl` command line: success, and stdout followed by stderr.
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Write a DER certificate as `dir/name` in PEM; returns the path.
pub fn write_pem(dir: &Path, name: &str, der: &[u8]) -> PathBuf {
    let p = dir.join(name);
    let x = openssl::x509::X509::from_der(der).expect("a certificate");
    std::fs::write(&p, x.to_pem().expect("PEM")).expect("write PEM");
    p
}
