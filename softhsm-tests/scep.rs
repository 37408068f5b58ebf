//! The SCEP service end to end: `sigil serve` on a fresh SoftHSM token, driven over HTTP by
//! micromdm's `scepclient` and by Sigil's own client codec (as a device would), with bad input.
//!
//! Over 800 lines: the SCEP service harness (the server, the device client, the scepclient
//! wrapper) that the other test files use lives here with the wire tests it was built for.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openssl::x509::X509;
use sigil::scep::client::{issuer_and_serial, issuer_and_subject, read_degenerate, Device};
use sigil::scep::{ContentCipher, DigestAlg, FailInfo, MessageType, Nonce, PkiStatus};

use crate::common::{free_port, ok, TokenDir};

pub const CHALLENGE: &str = "s3cret-Challenge";

/// A running `sigil serve` with the test profiles.
pub struct ScepServer {
    pub token: TokenDir,
    child: Child,
    pub base: String,
    /// The RA certificate (DER), from GetCACert.
    pub ra: Vec<u8>,
    /// The CA certificate (DER).
    pub ca: Vec<u8>,
    /// The first admin API token, printed by `sigil init` (the break-glass token).
    pub admin: String,
    /// A second admin (made on the host with `sigil token create`), who approves the tokens
    /// the first one asks for.
    pub second_admin: String,
    pub http: reqwest::blocking::Client,
    cfg_path: std::path::PathBuf,
    pub(crate) port: u16,
    /// Served over HTTPS (the TLS CA is `tls/ca.pem` in the token directory).
    tls: bool,
}

impl Drop for ScepServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_serve(token: &TokenDir, cfg_path: &std::path::Path, port: u16, tls: bool) -> Child {
    serve_command(token, cfg_path, port, tls)
        .spawn()
        .expect("spawn sigil serve")
}

fn serve_command(token: &TokenDir, cfg_path: &std::path::Path, port: u16, tls: bool) -> Command {
    let mut c = token.sigil();
    c.env("SIGIL_CONFIG", cfg_path)
        .env("SIGIL_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "SIGIL_SERVER_PUBLIC_URL",
            format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
        )
        .env("SIGIL_SERVER_WORKERS", "2")
        .env("SIGIL_SCEP_MAX_MESSAGE_BYTES", "1048576")
        .env("SIGIL_SERVER_BACKGROUND_INTERVAL_SECS", "1")
        .env("SIGIL_LOG_LEVEL", "info")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(token.path().join("serve.log"))
                .unwrap(),
        ));
    c
}

pub(crate) fn sha256_hex(s: &str) -> String {
    hex::encode(openssl::sha::sha256(s.as_bytes()))
}

impl ScepServer {
    /// `sigil` with this server's configuration and token.
    pub fn cli(&self) -> Command {
        let mut c = self.token.sigil();
        c.env("SIGIL_CONFIG", &self.cfg_path)
            .env("SIGIL_SERVER_PUBLIC_URL", &self.base);
        c
    }

    /// A token made on the host with `sigil token create`: it is its own person (as a token
    /// an operator hands to someone is), unlike one an admin makes through the API, which is
    /// the admin's. Returns the secret and the id.
    pub fn host_token(&self, role: &str, name: &str) -> (String, String) {
        let out = self
            .token
            .sigil()
            .env("SIGIL_CONFIG", &self.cfg_path)
            .env("SIGIL_SERVER_PUBLIC_URL", &self.base)
            .args(["token", "create", "--role", role, "--name", name])
            .output()
            .unwrap();
        let secret = ok(&out).trim().to_owned();
        let err = String::from_utf8_lossy(&out.stderr);
        let id = err
            .split_whitespace()
            .nth(1)
            .expect("sigil token create names the token's id")
            .to_owned();
        (secret, id)
    }

    pub fn start() -> ScepServer {
        Self::start_with("")
    }

    /// Start with `extra` appended to the test configuration (more profiles, directories,
    /// credentials).
    pub fn start_with(extra: &str) -> ScepServer {
        Self::start_opts(extra, false, |_, _| String::new())
    }

    /// Start over HTTPS (a TLS CA and server certificate made by `sigil gateway-cert`), with
    /// `extra(token directory)` appended to the configuration.
    /// (`extra` gets the token directory and the port the server will listen on.)
    pub fn start_tls_with(extra: impl Fn(&TokenDir, u16) -> String) -> ScepServer {
        Self::start_opts("", true, extra)
    }

    fn start_opts(
        extra: &str,
        tls: bool,
        extra_in: impl Fn(&TokenDir, u16) -> String,
    ) -> ScepServer {
        let token = TokenDir::new();
        let port = free_port();
        let init = ok(&token.run(&[
            "init",
            "--ca-key",
            "rsa3072",
            "--ca-subject",
            "CN=Test SCEP CA,O=Sigil",
        ]));
        let admin = init
            .lines()
            .find_map(|l| {
                l.strip_prefix("Admin API token ")
                    .and_then(|r| r.split(": ").nth(1))
            })
            .expect("sigil init prints the first admin token")
            .trim()
            .to_owned();
        let h = sha256_hex(CHALLENGE);
        let config = format!(
            r#"
[profiles.default]
challenge_sha256 = "{h}"

[profiles.strict]
challenge_sha256 = "{h}"
accept_sha1_requests = false

[profiles.legacy]
challenge_sha256 = "{h}"
legacy = true

[profiles.approval]
challenge_sha256 = "{h}"
approval = true

[profiles.renewable]
challenge_sha256 = "{h}"
renewal_days = 400
validity_days = 365

[profiles.servers]
challenge_sha256 = "{h}"
allowed_sans = ["dns"]
key_types = ["p256"]
subject = "CN={{cn}},O=Forced Org"
extended_key_usage = ["serverAuth"]
"#
        ) + extra
            + &extra_in(&token, port);
        let cfg_path = token.path().join("sigil.toml");
        let mut http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60));
        let config = if tls {
            let dir = token.path().join("tls");
            std::fs::write(&cfg_path, &config).unwrap();
            ok(&token
                .sigil()
                .env("SIGIL_CONFIG", &cfg_path)
                .env(
                    "SIGIL_SERVER_PUBLIC_URL",
                    format!("https://127.0.0.1:{port}"),
                )
                .args(["gateway-cert", "--out"])
                .arg(&dir)
                .args(["--core-name", "127.0.0.1"])
                .output()
                .unwrap());
            let ca = std::fs::read(dir.join("ca.pem")).unwrap();
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
            format!(
                "[server]\ntls_cert = \"{d}/core.pem\"\ntls_key = \"{d}/core.key\"\nclient_ca = \"{d}/ca.pem\"\n\n{config}",
                d = dir.display()
            )
        } else {
            config
        };
        std::fs::write(&cfg_path, config).unwrap();
        let second_admin = ok(&token
            .sigil()
            .env("SIGIL_CONFIG", &cfg_path)
            .env(
                "SIGIL_SERVER_PUBLIC_URL",
                format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
            )
            .args([
                "token",
                "create",
                "--role",
                "admin",
                "--name",
                "second admin",
            ])
            .output()
            .unwrap())
        .trim()
        .to_owned();
        let child = spawn_serve(&token, &cfg_path, port, tls);
        let http = http.build().unwrap();
        let mut s = ScepServer {
            token,
            child,
            base: format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
            ra: Vec::new(),
            ca: Vec::new(),
            admin,
            second_admin,
            http,
            cfg_path,
            port,
            tls,
        };
        s.wait_up();
        s.read_ca_certs();
        s
    }

    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // A server that exited (a port taken, a configuration refused) says so now.
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sigil serve exited ({status}): {}", self.log());
            }
            if self
                .http
                .get(format!("{}/healthz", self.base))
                .send()
                .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sigil serve did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop `sigil serve` (the token and the data stay).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start `sigil serve` again on the same port, token and data, and read GetCACert anew.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn_serve(&self.token, &self.cfg_path, self.port, self.tls);
        self.wait_up();
        self.read_ca_certs();
    }

    /// Start `sigil serve` again like `restart`, but told that its public URL is
    /// `public_url` (another name for the same address, as after a move).
    pub fn restart_at(&mut self, public_url: &str) {
        self.stop();
        self.child = serve_command(&self.token, &self.cfg_path, self.port, self.tls)
            .env("SIGIL_SERVER_PUBLIC_URL", public_url)
            .spawn()
            .expect("spawn sigil serve");
        self.wait_up();
        self.read_ca_certs();
    }

    /// The whole audit log, as the API gives it to the admin.
    pub fn audit_log(&self) -> Vec<serde_json::Value> {
        self.http
            .get(format!("{}/api/v1/audit?limit=10000", self.base))
            .bearer_auth(&self.admin)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Run a `sigil` command with the server's configuration.
    pub fn sigil(&self, args: &[&str]) -> std::process::Output {
        self.token
            .sigil()
            .env("SIGIL_CONFIG", &self.cfg_path)
            .args(args)
            .output()
            .expect("run sigil")
    }

    fn read_ca_certs(&mut self) {
        let s = self;
        s.ca.clear();
        s.ra.clear();
        let cacert = s.get("/scep?operation=GetCACert");
        assert_eq!(cacert.0, 200);
        assert_eq!(cacert.1, "application/x-x509-ca-ra-cert");
        let (certs, _) = read_degenerate(&cacert.2).unwrap();
        for c in certs {
            let x = X509::from_der(&c).unwrap();
            if x.subject_name_hash() == x.issuer_name_hash() {
                s.ca = c;
            } else {
                s.ra = c;
            }
        }
        assert!(!s.ra.is_empty() && !s.ca.is_empty());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.token.path().join("serve.log")).unwrap_or_default()
    }

    /// The value of a series in `/metrics` (0 when absent), named with its labels as the
    /// exposition writes them: `sigil_ocsp_answers_total{outcome="prepared"}`.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, _, body) = self.get("/metrics");
        String::from_utf8(body)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{series} ")).map(str::to_owned))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub fn get(&self, path_and_query: &str) -> (u16, String, Vec<u8>) {
        let r = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .unwrap_or_default();
        (status, ct, r.bytes().unwrap().to_vec())
    }

    pub fn post(&self, path_and_query: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let r = self
            .http
            .post(format!("{}{path_and_query}", self.base))
            .header("content-type", "application/x-pki-message")
            .body(body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    }

    /// Send a pkiMessage by POST (or GET with base64) to a profile and return the reply bytes.
    pub fn pki(&self, profile: &str, msg: Vec<u8>, by_get: bool) -> Vec<u8> {
        let path = if profile == "default" {
            "/scep".to_string()
        } else {
            format!("/scep/{profile}")
        };
        let (status, body) = if by_get {
            use base64::Engine;
            // Unescaped + and / and no padding, as macOS and Cisco send.
            let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&msg);
            let (s, _, b) = self.get(&format!("{path}?operation=PKIOperation&message={b64}"));
            (s, b)
        } else {
            self.post(&format!("{path}?operation=PKIOperation"), msg)
        };
        assert_eq!(
            status,
            200,
            "{}\n{}",
            String::from_utf8_lossy(&body),
            self.log()
        );
        body
    }

    pub fn ca_pem(&self) -> std::path::PathBuf {
        let p = self.token.path().join("ca-from-getcacert.pem");
        std::fs::write(&p, X509::from_der(&self.ca).unwrap().to_pem().unwrap()).unwrap();
        p
    }
}

pub struct Enrollment {
    pub device: Device,
    pub tid: String,
    pub csr: Vec<u8>,
}

pub fn new_device(cn: &str) -> Device {
    Device::rsa(2048, cn).unwrap()
}

/// PKCSReq from a fresh device; returns the device, its CSR and the reply.
pub fn enroll(
    s: &ScepServer,
    profile: &str,
    cn: &str,
    challenge: Option<&str>,
    cipher: ContentCipher,
    digest: DigestAlg,
    by_get: bool,
) -> (Enrollment, sigil::scep::client::Reply) {
    let device = new_device(cn);
    let csr = device.csr(cn, challenge, &[]).unwrap();
    let tid = hex::encode(openssl::sha::sha1(&device.key.public_key_to_der().unwrap()));
    let nonce = Nonce::random().unwrap();
    let msg = device
        .request(
            MessageType::PkcsReq,
            &tid,
            &nonce,
            &csr,
            &s.ra,
            cipher,
            digest,
        )
        .unwrap();
    let reply = device.read(&s.pki(profile, msg, by_get)).unwrap();
    assert_eq!(
        reply.recipient_nonce, nonce,
        "recipientNonce must echo our senderNonce"
    );
    assert_eq!(reply.transaction_id.0, tid);
    assert_eq!(reply.sender_nonce.0.len(), 16);
    (Enrollment { device, tid, csr }, reply)
}

fn assert_issued_for(s: &ScepServer, e: &Enrollment, reply: &sigil::scep::client::Reply) -> X509 {
    assert_eq!(
        reply.status,
        PkiStatus::Success,
        "{:?} {:?}\n{}",
        reply.fail_info,
        reply.fail_text,
        s.log()
    );
    let cert = X509::from_der(&reply.certs[0]).unwrap();
    assert!(cert.public_key().unwrap().public_eq(&e.device.key));
    let ca = X509::from_der(&s.ca).unwrap();
    assert!(cert.verify(&ca.public_key().unwrap()).unwrap());
    cert
}

#[test]
fn own_client_every_method_cipher_and_digest() {
    let s = ScepServer::start();
    let caps = s.get("/scep?operation=GetCACaps");
    assert_eq!(caps.1, "text/plain");
    let caps = String::from_utf8(caps.2).unwrap();
    for word in [
        "POSTPKIOperation",
        "Renewal",
        "SHA-256",
        "SHA-512",
        "AES",
        "SCEPStandard",
    ] {
        assert!(
            caps.lines().any(|l| l == word),
            "{word} missing from {caps}"
        );
    }
    assert!(!caps.contains("DES3") && !caps.contains("SHA-1"));
    let legacy_caps = String::from_utf8(s.get("/scep/legacy?operation=GetCACaps").2).unwrap();
    assert!(legacy_caps.contains("DES3") && legacy_caps.contains("SHA-1"));

    for by_get in [false, true] {
        for cipher in [
            ContentCipher::Aes128Cbc,
            ContentCipher::Aes256Cbc,
            ContentCipher::Des3Cbc,
        ] {
            for digest in [DigestAlg::Sha256, DigestAlg::Sha1, DigestAlg::Sha512] {
                let (e, reply) = enroll(
                    &s,
                    "default",
                    "dev",
                    Some(CHALLENGE),
                    cipher,
                    digest,
                    by_get,
                );
                let cert = assert_issued_for(&s, &e, &reply);
                // Serial: positive, 16 octets.
                let serial = cert.serial_number().to_bn().unwrap();
                assert_eq!(serial.num_bytes(), 16);
            }
        }
    }
    // Everything issued is in the store, and the CLI reads it from there.
    let list = ok(&s
        .token
        .sigil()
        .env("SIGIL_CONFIG", s.token.path().join("sigil.toml"))
        .args(["cert", "list", "--profile", "default"])
        .output()
        .unwrap());
    assert_eq!(list.lines().count(), 1 + 18, "{list}");
    let serial = list
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let show = ok(&s
        .token
        .sigil()
        .env("SIGIL_CONFIG", s.token.path().join("sigil.toml"))
        .args(["cert", "show", &serial])
        .output()
        .unwrap());
    assert!(
        show.contains("CN=dev") && show.contains("profile:     default"),
        "{show}"
    );
    let pem = ok(&s
        .token
        .sigil()
        .env("SIGIL_CONFIG", s.token.path().join("sigil.toml"))
        .args(["cert", "export", &serial])
        .output()
        .unwrap());
    let exported = X509::from_pem(pem.as_bytes()).unwrap();
    assert!(exported
        .verify(&X509::from_der(&s.ca).unwrap().public_key().unwrap())
        .unwrap());
    let soon = ok(&s
        .token
        .sigil()
        .env("SIGIL_CONFIG", s.token.path().join("sigil.toml"))
        .args(["cert", "list", "--expiring", "30d"])
        .output()
        .unwrap());
    assert_eq!(
        soon.lines().count(),
        1,
        "nothing expires within 30 days: {soon}"
    );
    // Single DES needs the legacy profile.
    let (_, reply) = enroll(
        &s,
        "default",
        "d",
        Some(CHALLENGE),
        ContentCipher::DesCbc,
        DigestAlg::Sha1,
        false,
    );
    assert_eq!(reply.status, PkiStatus::Failure);
    assert_eq!(reply.fail_info, Some(FailInfo::BadAlg));
    let (e, reply) = enroll(
        &s,
        "legacy",
        "d",
        Some(CHALLENGE),
        ContentCipher::DesCbc,
        DigestAlg::Sha1,
        false,
    );
    assert_issued_for(&s, &e, &reply);
    // SHA-1 refused where the profile says so.
    let (_, reply) = enroll(
        &s,
        "strict",
        "d",
        Some(CHALLENGE),
        ContentCipher::Aes128Cbc,
        DigestAlg::Sha1,
        false,
    );
    assert_eq!(reply.fail_info, Some(FailInfo::BadAlg));
}

#[test]
fn challenges_replays_and_profiles() {
    let s = ScepServer::start();
    let aes = ContentCipher::Aes128Cbc;
    let sha = DigestAlg::Sha256;
    let (_, r) = enroll(&s, "default", "d", Some("wrong"), aes, sha, false);
    assert_eq!(r.status, PkiStatus::Failure);
    assert_eq!(r.fail_info, Some(FailInfo::BadRequest));
    assert!(r.fail_text.unwrap().contains("challenge password is wrong"));
    let (_, r) = enroll(&s, "default", "d", None, aes, sha, false);
    assert!(r.fail_text.unwrap().contains("no challenge password"));

    // A resent request gets the same certificate, not a second one.
    let (e, first) = enroll(&s, "default", "replay", Some(CHALLENGE), aes, sha, false);
    let first_cert = assert_issued_for(&s, &e, &first);
    let nonce = Nonce::random().unwrap();
    let again = e
        .device
        .request(
            MessageType::PkcsReq,
            &e.tid,
            &nonce,
            &e.csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let again = e.device.read(&s.pki("default", again, false)).unwrap();
    assert_eq!(again.recipient_nonce, nonce);
    let again_cert = assert_issued_for(&s, &e, &again);
    assert_eq!(
        again_cert.serial_number().to_bn().unwrap(),
        first_cert.serial_number().to_bn().unwrap()
    );
    // A transactionID is not global: another device using the same one (clients pick short
    // ones like "16") enrolls on its own record...
    let other = new_device("other");
    let csr = other.csr("other", Some(CHALLENGE), &[]).unwrap();
    let msg = other
        .request(
            MessageType::PkcsReq,
            &e.tid,
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = other.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    assert!(X509::from_der(&r.certs[0])
        .unwrap()
        .public_key()
        .unwrap()
        .public_eq(&other.key));
    // ...while the same requester reusing its transactionID for another key is refused.
    let msg = e
        .device
        .request(
            MessageType::PkcsReq,
            &e.tid,
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e.device.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.fail_info, Some(FailInfo::BadRequest));
    assert!(r.fail_text.unwrap().contains("another key"));

    // Intune's SID URI reaches the certificate as sent.
    let sid = "uri:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348-1177238915-682003330-512";
    let intune = new_device("intune");
    let csr = intune
        .csr("intune", Some(CHALLENGE), &[sid, "email:user@example.gov"])
        .unwrap();
    let msg = intune
        .request(
            MessageType::PkcsReq,
            "t-intune",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = intune.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    let text = String::from_utf8(X509::from_der(&r.certs[0]).unwrap().to_text().unwrap()).unwrap();
    assert!(text.contains(&sid[4..]), "{text}");
    assert!(text.contains("email:user@example.gov"), "{text}");

    // Profile rules: key type, SAN type, forced subject, EKU.
    let device = new_device("srv");
    let csr = device
        .csr("srv", Some(CHALLENGE), &["dns:srv.example"])
        .unwrap();
    let msg = device
        .request(
            MessageType::PkcsReq,
            "t-rsa-on-p256",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = device.read(&s.pki("servers", msg, false)).unwrap();
    assert_eq!(r.fail_info, Some(FailInfo::BadRequest));
    assert!(r.fail_text.unwrap().contains("does not accept RSA"));
    let ec = openssl::pkey::PKey::from_ec_key(
        openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    // The signer must be RSA so the reply can be encrypted to it: sign with an RSA device
    // certificate, request for an EC key.
    let ec_device = Device::from_key(ec, "srv").unwrap();
    let csr = ec_device
        .csr("srv", Some(CHALLENGE), &["email:x@example"])
        .unwrap();
    let msg = device
        .request(
            MessageType::PkcsReq,
            "t-email",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = device.read(&s.pki("servers", msg, false)).unwrap();
    assert!(r.fail_text.unwrap().contains("email SANs are not allowed"));
    let csr = ec_device
        .csr("srv", Some(CHALLENGE), &["dns:srv.example"])
        .unwrap();
    let msg = device
        .request(
            MessageType::PkcsReq,
            "t-ok",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = device.read(&s.pki("servers", msg, false)).unwrap();
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    let cert = X509::from_der(&r.certs[0]).unwrap();
    let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
    assert!(text.contains("Subject: CN=srv, O=Forced Org"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("DNS:srv.example"), "{text}");
}

#[test]
fn renewal_pending_poll_getcert_getcrl() {
    let s = ScepServer::start();
    let aes = ContentCipher::Aes128Cbc;
    let sha = DigestAlg::Sha256;

    // Renewal with RenewalReq signed by the first certificate, no challenge needed.
    let (mut e, r) = enroll(
        &s,
        "renewable",
        "renew-me",
        Some(CHALLENGE),
        aes,
        sha,
        false,
    );
    let first = assert_issued_for(&s, &e, &r);
    e.device.sign_with(first.to_der().unwrap());
    let new_key = new_device("renew-me");
    let csr = new_key.csr("renew-me", None, &[]).unwrap();
    let msg = e
        .device
        .request(
            MessageType::RenewalReq,
            "renewal-1",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e.device.read(&s.pki("renewable", msg, false)).unwrap();
    assert_eq!(
        r.status,
        PkiStatus::Success,
        "{:?}\n{}",
        r.fail_text,
        s.log()
    );
    let renewed = X509::from_der(&r.certs[0]).unwrap();
    assert!(renewed.public_key().unwrap().public_eq(&new_key.key));
    // Outside the window (default profile: 30 days before a 365-day expiry): FAILURE saying when.
    let (mut e2, r) = enroll(&s, "default", "early", Some(CHALLENGE), aes, sha, false);
    let c2 = assert_issued_for(&s, &e2, &r);
    e2.device.sign_with(c2.to_der().unwrap());
    let early_csr = new_key.csr("early", None, &[]).unwrap();
    let msg = e2
        .device
        .request(
            MessageType::RenewalReq,
            "renewal-2",
            &Nonce::random().unwrap(),
            &early_csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e2.device.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.fail_info, Some(FailInfo::BadRequest));
    assert!(r.fail_text.unwrap().contains("renewal window opens on"));
    // ...but a PKCSReq signed by that certificate with the challenge is a new enrollment.
    let with_challenge = new_key.csr("early", Some(CHALLENGE), &[]).unwrap();
    let msg = e2
        .device
        .request(
            MessageType::PkcsReq,
            "renewal-2b",
            &Nonce::random().unwrap(),
            &with_challenge,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e2.device.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    // A certificate from one profile is no ticket into another, and a renewal keeps the subject.
    let msg = e2
        .device
        .request(
            MessageType::RenewalReq,
            "renewal-4",
            &Nonce::random().unwrap(),
            &early_csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e2.device.read(&s.pki("renewable", msg, false)).unwrap();
    assert!(r
        .fail_text
        .unwrap()
        .contains("issued under profile `default`"));
    // A certificate renews once: the first one (renewed above) renews nothing more.
    let again = new_device("renew-me").csr("renew-me", None, &[]).unwrap();
    let msg = e
        .device
        .request(
            MessageType::RenewalReq,
            "renewal-again",
            &Nonce::random().unwrap(),
            &again,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e.device.read(&s.pki("renewable", msg, false)).unwrap();
    assert!(
        r.fail_text
            .as_deref()
            .unwrap_or("")
            .contains("already renewed"),
        "{:?}",
        r.fail_text
    );
    // The subject and SANs stay: checked with another certificate of the profile.
    let (mut e3, r3) = enroll(
        &s,
        "renewable",
        "renew-me",
        Some(CHALLENGE),
        aes,
        sha,
        false,
    );
    let third = assert_issued_for(&s, &e3, &r3);
    e3.device.sign_with(third.to_der().unwrap());
    let other_subject = new_key.csr("someone-else", None, &[]).unwrap();
    let msg = e3
        .device
        .request(
            MessageType::RenewalReq,
            "renewal-5",
            &Nonce::random().unwrap(),
            &other_subject,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e3.device.read(&s.pki("renewable", msg, false)).unwrap();
    assert!(r.fail_text.unwrap().contains("keep the subject"));
    let more_sans = new_key
        .csr("renew-me", None, &["dns:extra.example"])
        .unwrap();
    let msg = e3
        .device
        .request(
            MessageType::RenewalReq,
            "renewal-6",
            &Nonce::random().unwrap(),
            &more_sans,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e3.device.read(&s.pki("renewable", msg, false)).unwrap();
    assert!(r.fail_text.unwrap().contains("subject alternative names"));
    // RenewalReq signed by a stranger's self-signed certificate.
    let stranger = new_device("stranger");
    let msg = stranger
        .request(
            MessageType::RenewalReq,
            "renewal-3",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = stranger.read(&s.pki("renewable", msg, false)).unwrap();
    assert!(r.fail_text.unwrap().contains("issued by this CA"));

    // PENDING, then CertPoll with the same transactionID stays PENDING.
    let (p, r) = enroll(
        &s,
        "approval",
        "needs-approval",
        Some(CHALLENGE),
        aes,
        sha,
        false,
    );
    assert_eq!(r.status, PkiStatus::Pending);
    let ca_subject = X509::from_der(&s.ca)
        .unwrap()
        .subject_name()
        .to_der()
        .unwrap();
    let subject = openssl::x509::X509Req::from_der(&p.csr)
        .unwrap()
        .subject_name()
        .to_der()
        .unwrap();
    let poll_nonce = Nonce::random().unwrap();
    let poll = p
        .device
        .request(
            MessageType::CertPoll,
            &p.tid,
            &poll_nonce,
            &issuer_and_subject(&ca_subject, &subject),
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = p.device.read(&s.pki("approval", poll, false)).unwrap();
    assert_eq!(r.status, PkiStatus::Pending);
    assert_eq!(r.recipient_nonce, poll_nonce);
    // Only the requester may poll: a stranger asking for the same transaction learns nothing.
    let stranger = new_device("poller");
    let poll = stranger
        .request(
            MessageType::CertPoll,
            &p.tid,
            &poll_nonce,
            &issuer_and_subject(&ca_subject, &subject),
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = stranger.read(&s.pki("approval", poll, false)).unwrap();
    assert_eq!(r.fail_info, Some(FailInfo::BadCertId));
    // A poll for an unknown transaction.
    let poll = p
        .device
        .request(
            MessageType::CertPoll,
            "no-such-tx",
            &poll_nonce,
            &issuer_and_subject(&ca_subject, &subject),
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = p.device.read(&s.pki("approval", poll, false)).unwrap();
    assert_eq!(r.fail_info, Some(FailInfo::BadCertId));

    // GetCert by issuer and serial.
    let serial = first.serial_number().to_bn().unwrap().to_vec();
    let q = issuer_and_serial(&ca_subject, &serial);
    let msg = e
        .device
        .request(
            MessageType::GetCert,
            "getcert-1",
            &Nonce::random().unwrap(),
            &q,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e.device.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.status, PkiStatus::Success);
    assert_eq!(r.certs, vec![first.to_der().unwrap()]);
    let q = issuer_and_serial(&ca_subject, &[0x42; 16]);
    let msg = e
        .device
        .request(
            MessageType::GetCert,
            "getcert-2",
            &Nonce::random().unwrap(),
            &q,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e.device.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.fail_info, Some(FailInfo::BadCertId));

    // GetCRL: a CRL signed by the CA key.
    let q = issuer_and_serial(&ca_subject, &serial);
    let msg = e
        .device
        .request(
            MessageType::GetCrl,
            "getcrl-1",
            &Nonce::random().unwrap(),
            &q,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e.device.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.status, PkiStatus::Success, "{:?}", r.fail_text);
    assert_eq!(r.crls.len(), 1);
    let crl = openssl::x509::X509Crl::from_der(&r.crls[0]).unwrap();
    let ca = X509::from_der(&s.ca).unwrap();
    assert!(crl.verify(&ca.public_key().unwrap()).unwrap());
}

#[test]
fn bad_input_gets_a_clear_answer() {
    let s = ScepServer::start();
    let aes = ContentCipher::Aes128Cbc;
    let sha = DigestAlg::Sha256;
    // HTTP-level refusals, with a reason.
    let (st, _, body) = s.get("/scep?operation=PKIOperation&message=***not*base64***");
    assert_eq!(st, 400);
    assert!(String::from_utf8_lossy(&body).contains("not base64"));
    let (st, _, _) = s.get("/scep");
    assert_eq!(st, 400);
    let (st, _, _) = s.get("/scep?operation=Frobnicate");
    assert_eq!(st, 400);
    let (st, _, _) = s.get("/scep/no-such-profile?operation=GetCACaps");
    assert_eq!(st, 404);
    let (e, good) = {
        let d = new_device("bad");
        let csr = d.csr("bad", Some(CHALLENGE), &[]).unwrap();
        let m = d
            .request(
                MessageType::PkcsReq,
                "bad-1",
                &Nonce::random().unwrap(),
                &csr,
                &s.ra,
                aes,
                sha,
            )
            .unwrap();
        (d, m)
    };
    let (st, body) = s.post(
        "/scep?operation=PKIOperation",
        good[..good.len() / 2].to_vec(),
    );
    assert_eq!(st, 400, "truncated DER");
    assert!(!body.is_empty());
    let (st, _) = s.post(
        "/scep?operation=PKIOperation",
        b"\x30\x03\x02\x01\x01".to_vec(),
    );
    assert_eq!(st, 400);
    // 10 MB body: refused by the size limit before parsing.
    let (st, _) = s.post("/scep?operation=PKIOperation", vec![0x30; 10 * 1024 * 1024]);
    assert_eq!(st, 413);

    // A valid SignedData whose envelope is broken: CertRep FAILURE.
    let msg = e
        .request(
            MessageType::PkcsReq,
            "bad-2",
            &Nonce::random().unwrap(),
            b"",
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.status, PkiStatus::Failure);
    // Encrypted to another RA certificate.
    let other_ra = new_device("another RA");
    let csr = e.csr("bad", Some(CHALLENGE), &[]).unwrap();
    let msg = e
        .request(
            MessageType::PkcsReq,
            "bad-3",
            &Nonce::random().unwrap(),
            &csr,
            &other_ra.signer_cert,
            aes,
            sha,
        )
        .unwrap();
    let r = e.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.fail_info, Some(FailInfo::BadMessageCheck));
    assert!(r.fail_text.unwrap().contains("another certificate"));
    // A wrong signature: one bit flipped at the end (the signature value).
    let mut msg = e
        .request(
            MessageType::PkcsReq,
            "bad-4",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let n = msg.len();
    msg[n - 3] ^= 0x01;
    let r = e.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.fail_info, Some(FailInfo::BadMessageCheck));
    // An unknown messageType ("99" in place of "19"): no CertRep can be trusted, HTTP 400.
    let good = e
        .request(
            MessageType::PkcsReq,
            "bad-7",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let needle = [0x13, 0x02, b'1', b'9'];
    let at = good
        .windows(4)
        .position(|w| w == needle)
        .expect("messageType attribute");
    let mut patched = good.clone();
    patched[at + 2] = b'9';
    let (st, body) = s.post("/scep?operation=PKIOperation", patched);
    assert_eq!(st, 400);
    assert!(String::from_utf8_lossy(&body).contains("unknown messageType `99`"));
    // A CertRep sent to the server.
    let msg = e
        .request(
            MessageType::CertRep,
            "bad-5",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e.read(&s.pki("default", msg, false)).unwrap();
    assert_eq!(r.fail_info, Some(FailInfo::BadRequest));
    // Garbage where the CSR should be.
    let msg = e
        .request(
            MessageType::PkcsReq,
            "bad-6",
            &Nonce::random().unwrap(),
            b"not a CSR",
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let r = e.read(&s.pki("default", msg, false)).unwrap();
    // The same answer as for a failed decryption (no padding oracle), with a fixed text.
    assert_eq!(r.fail_info, Some(FailInfo::BadMessageCheck));
    assert_eq!(r.fail_text.as_deref(), Some(sigil::scep::UNREADABLE));
    // A ciphertext tampered with (last byte of the encrypted content flipped): the same answer.
    let good = e
        .request(
            MessageType::PkcsReq,
            "bad-8",
            &Nonce::random().unwrap(),
            &csr,
            &s.ra,
            aes,
            sha,
        )
        .unwrap();
    let reply = {
        // Re-sign after tampering, so only the envelope is wrong.
        let msg = sigil::scep::PkiMessage::parse(&good).unwrap();
        let mut env = msg.content.clone();
        let n = env.len();
        env[n - 1] ^= 0x55;
        let resigned = sigil::scep::client::ClientRequest {
            message_type: MessageType::PkcsReq,
            transaction_id: sigil::scep::TransactionId("bad-8".into()),
            sender_nonce: Nonce::random().unwrap(),
            content: &env,
            recipient_cert: &s.ra,
            cipher: aes,
            digest: sha,
            signer_cert: &e.signer_cert,
            signer_key: &e.key,
        };
        resigned.build_presealed().unwrap()
    };
    let r = e.read(&s.pki("default", reply, false)).unwrap();
    assert_eq!(r.fail_info, Some(FailInfo::BadMessageCheck));
    assert_eq!(r.fail_text.as_deref(), Some(sigil::scep::UNREADABLE));
    // The server is still healthy and never answered 500.
    assert_eq!(s.get("/healthz").0, 200);
    let log = s.log();
    assert!(!log.contains("\" 500 "), "a 500 was answered:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    // Every decision is logged with the transaction ID.
    assert!(log.contains("transaction_id=bad-3"), "{log}");
}

#[test]
fn scepclient_enrolls_and_the_certificate_verifies() {
    crate::common::ensure_tool("scepclient", "scep");
    let s = ScepServer::start();
    let dir = s.token.path().join("scepclient");
    std::fs::create_dir_all(&dir).unwrap();
    // scepclient 2.1 encrypts to every certificate of GetCACert unless given one fingerprint:
    // name the RA's. It signs with SHA-1 and encrypts with single DES: the legacy profile.
    let ra_fp = hex::encode(openssl::sha::sha256(&s.ra));
    let out = Command::new("scepclient")
        .current_dir(&dir)
        .args(["-server-url", &format!("{}/scep/legacy", s.base)])
        .args([
            "-challenge",
            CHALLENGE,
            "-cn",
            "scepclient-device",
            "-ca-fingerprint",
            &ra_fp,
        ])
        .args(["-private-key", "device.key", "-certificate", "device.pem"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scepclient failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    crate::common::openssl_verify(&s.ca_pem(), &dir.join("device.pem"));
    let cert = X509::from_pem(&std::fs::read(dir.join("device.pem")).unwrap()).unwrap();
    let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
    assert!(text.contains("CN=scepclient-device"), "{text}");
    // With the wrong challenge it fails, and says so (in a fresh directory: scepclient reuses
    // csr.pem from its working directory).
    let dir = s.token.path().join("scepclient-wrong");
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("scepclient")
        .current_dir(&dir)
        .args(["-server-url", &format!("{}/scep/legacy", s.base)])
        .args(["-challenge", "wrong", "-cn", "x", "-ca-fingerprint", &ra_fp])
        .args(["-private-key", "other.key", "-certificate", "other.pem"])
        .output()
        .unwrap();
    assert!(!dir.join("other.pem").exists());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("badRequest"), "{all}");
}

#[test]
fn certmonger_enrolls_and_renews() {
    crate::common::ensure_tool("getcert", "certmonger");
    crate::common::ensure_tool("dbus-daemon", "dbus");
    let s = ScepServer::start();
    let script = crate::common::root().join("softhsm-tests/certmonger-enroll.sh");
    // Default certmonger: SHA-256, AES, GET; its first request is signed by a throwaway
    // certificate with a 32-octet serial. Then `getcert rekey` on a profile whose renewal
    // window is open: a new key, a PKCSReq signed by the issued certificate.
    for (profile, renew) in [("", ""), ("/renewable", "rekey")] {
        let work = s
            .token
            .path()
            .join(format!("certmonger{}", profile.replace('/', "-")));
        let out = Command::new("bash")
            .arg(&script)
            .arg(format!("{}/scep{profile}", s.base))
            .arg(&work)
            .arg(CHALLENGE)
            .arg("certmonger-host.example")
            .arg(renew)
            .output()
            .unwrap();
        let cm_log = std::fs::read_to_string(work.join("certmonger.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "certmonger on /scep{profile}:\n{}\n{}\ncertmonger log tail:\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            cm_log.lines().rev().take(30).collect::<Vec<_>>().join("\n"),
            s.log()
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("MONITORING"), "{stdout}");
        if renew == "rekey" {
            assert!(stdout.contains("renewed: "), "{stdout}");
        }
        crate::common::openssl_verify(&s.ca_pem(), &work.join("out/cert.pem"));
    }
}
