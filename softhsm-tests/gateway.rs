//! `sigil gateway` in front of `sigil serve` over mutual TLS on loopback: scepclient enrolls
//! through it; the core refuses SCEP without the gateway's certificate and refuses a gateway
//! with a wrong one; every abuse is refused at the gateway without reaching the core; a core
//! killed mid-stream loses no enrollment the client retries.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openssl::x509::X509;
use sigil::scep::client::read_degenerate;
use sigil::scep::{ContentCipher, DigestAlg, MessageType, Nonce, PkiStatus};

use crate::common::{free_port, ok, TokenDir};
use crate::scep::new_device;

const CHALLENGE: &str = "gateway-test-secret";

struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A token with a CA, the transport certificates, and a core configuration.
struct Site {
    token: TokenDir,
    tls: PathBuf,
    config: PathBuf,
}

impl Site {
    fn new(database_url: Option<&str>) -> Site {
        let token = TokenDir::new();
        // The ceremony makes the store: the shared database when there is one.
        ok(&token
            .sigil()
            .env("SIGIL_DATABASE_URL", database_url.unwrap_or(""))
            .args([
                "init",
                "--ca-key",
                "rsa3072",
                "--ca-subject",
                "CN=Gateway Test CA",
            ])
            .output()
            .unwrap());
        let tls = token.path().join("tls");
        let h = hex::encode(openssl::sha::sha256(CHALLENGE.as_bytes()));
        let config = token.path().join("sigil.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
tls_cert = "{tls}/core.pem"
tls_key = "{tls}/core.key"
client_ca = "{tls}/ca.pem"
gateway_names = ["sigil-gateway"]

[database]
url = "{db}"

[profiles.default]
challenge_sha256 = "{h}"

[profiles.legacy]
challenge_sha256 = "{h}"
legacy = true
"#,
                tls = tls.display(),
                db = database_url.unwrap_or("")
            ),
        )
        .unwrap();
        ok(&token
            .sigil()
            .env("SIGIL_CONFIG", &config)
            .args(["db", "migrate"])
            .output()
            .unwrap());
        ok(&token
            .sigil()
            .env("SIGIL_CONFIG", &config)
            .args(["gateway-cert", "--out"])
            .arg(&tls)
            .args(["--core-name", "127.0.0.1", "--core-name", "localhost"])
            .output()
            .unwrap());
        Site { token, tls, config }
    }

    fn core(&self, name: &str) -> (Proc, u16) {
        let port = free_port();
        let log = self.token.path().join(format!("{name}.log"));
        let child = self
            .token
            .sigil()
            .env("SIGIL_CONFIG", &self.config)
            .env("SIGIL_SERVER_LISTEN", format!("127.0.0.1:{port}"))
            .env("SIGIL_SERVER_WORKERS", "2")
            .env("SIGIL_SERVER_TRUSTED_PROXIES", "127.0.0.1,::1")
            .env("SIGIL_LOG_LEVEL", "info")
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let p = Proc {
            child: Some(child),
            log,
        };
        wait_port(port, &p);
        (p, port)
    }

    /// A gateway in front of `ports`, with `client` as its certificate and key.
    fn gateway(&self, ports: &[u16], client: (&Path, &Path), extra: &str) -> (Proc, String) {
        self.gateway_trusting(&self.tls.join("ca.pem"), ports, client, extra)
    }

    /// As [`Site::gateway`], trusting `upstream_ca` for the cores' certificates.
    fn gateway_trusting(
        &self,
        upstream_ca: &Path,
        ports: &[u16],
        client: (&Path, &Path),
        extra: &str,
    ) -> (Proc, String) {
        let port = free_port();
        let dir = self.token.path().join(format!("gw-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let upstreams: Vec<String> = ports
            .iter()
            .map(|p| format!("\"https://127.0.0.1:{p}\""))
            .collect();
        // The gateway's file has its own section only: no PIN, no database.
        let cfg = dir.join("gateway.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"
[gateway]
listen = "127.0.0.1:{port}"
upstreams = [{}]
upstream_ca = "{}"
client_cert = "{}"
client_key = "{}"
upstream_timeout_secs = 3
{extra}
"#,
                upstreams.join(", "),
                upstream_ca.display(),
                client.0.display(),
                client.1.display(),
            ),
        )
        .unwrap();
        let log = dir.join("gateway.log");
        let child = Command::new(crate::common::sigil_bin())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .args(["--config"])
            .arg(&cfg)
            .arg("gateway")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let p = Proc {
            child: Some(child),
            log,
        };
        wait_port(port, &p);
        (p, format!("http://127.0.0.1:{port}"))
    }

    /// An HTTPS client for the core (trusting its CA), with or without a client certificate.
    fn direct(&self, identity: Option<(&Path, &Path)>) -> reqwest::blocking::Client {
        let ca = std::fs::read(self.tls.join("ca.pem")).unwrap();
        let mut b = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(Duration::from_secs(20));
        if let Some((c, k)) = identity {
            b = b.identity(
                reqwest::Identity::from_pkcs8_pem(
                    &std::fs::read(c).unwrap(),
                    &std::fs::read(k).unwrap(),
                )
                .unwrap(),
            );
        }
        b.build().unwrap()
    }

    fn requests_seen(&self, port: u16) -> u64 {
        let text = self
            .direct(None)
            .get(format!("https://127.0.0.1:{port}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("sigil_http_requests_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no request counter in {text}"))
    }
}

fn wait_port(port: u16, p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "did not start:\n{}", p.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A client certificate from another CA (a self-signed one made by openssl).
fn stranger_identity(dir: &Path) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("stranger.pem"), dir.join("stranger.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .args(["-subj", "/CN=sigil-gateway", "-days", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (c, k)
}

#[test]
fn scepclient_enrolls_through_the_gateway_and_the_core_admits_only_it() {
    crate::common::ensure_tool("scepclient", "scep");
    let site = Site::new(None);
    let (core, core_port) = site.core("core");
    let gw_cert = (site.tls.join("gateway.pem"), site.tls.join("gateway.key"));
    let (gw, gw_url) = site.gateway(&[core_port], (&gw_cert.0, &gw_cert.1), "");

    // scepclient, as a device in the public zone, enrolls through the gateway.
    let dir = site.token.path().join("device");
    std::fs::create_dir_all(&dir).unwrap();
    let cacert = http()
        .get(format!("{gw_url}/scep?operation=GetCACert"))
        .send()
        .unwrap();
    assert_eq!(cacert.status(), 200, "{}\n{}", gw.log(), core.log());
    let (certs, _) = read_degenerate(&cacert.bytes().unwrap()).unwrap();
    let ra = certs
        .iter()
        .find(|c| {
            let x = X509::from_der(c).unwrap();
            x.subject_name_hash() != x.issuer_name_hash()
        })
        .unwrap()
        .clone();
    let out = Command::new("scepclient")
        .current_dir(&dir)
        .args(["-server-url", &format!("{gw_url}/scep/legacy")])
        .args(["-challenge", CHALLENGE, "-cn", "through-the-gateway"])
        .args(["-ca-fingerprint", &hex::encode(openssl::sha::sha256(&ra))])
        .args(["-private-key", "device.key", "-certificate", "device.pem"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scepclient via the gateway failed: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log(),
        core.log()
    );
    crate::common::openssl_verify(&site.token.data().join("ca.pem"), &dir.join("device.pem"));
    // The core logged the gateway's request ID with the transaction.
    let id = gw
        .log()
        .lines()
        .filter(|l| l.contains("forwarded") && l.contains("/scep/legacy"))
        .rev()
        .find_map(|l| {
            l.split("request_id=")
                .nth(1)
                .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        })
        .expect("the gateway logs its request IDs");
    assert!(
        core.log()
            .lines()
            .any(|l| l.contains(&id) && l.contains("transaction_id")),
        "request {id} not in the core's log:\n{}",
        core.log()
    );

    // The gateway's public health answer says how many cores answer, never where they are.
    let health = http().get(format!("{gw_url}/healthz")).send().unwrap();
    let health = health.text().unwrap();
    assert!(health.contains("\"healthy\":1"), "{health}");
    assert!(
        !health.contains(&core_port.to_string()) && !health.contains("127.0.0.1"),
        "the gateway's healthz reveals its upstreams: {health}"
    );
    // A gateway certificate from the transport CA whose name the core does not list is told
    // so (not merely "only through the gateway").
    let other = site.token.path().join("tls-other");
    ok(&site
        .token
        .sigil()
        .env("SIGIL_CONFIG", &site.config)
        .args(["gateway-cert", "--out"])
        .arg(&other)
        .args(["--core-name", "127.0.0.1", "--gateway-name", "gw-unlisted"])
        .output()
        .unwrap());
    let unlisted = site
        .direct(Some((
            &other.join("gateway.pem"),
            &other.join("gateway.key"),
        )))
        .get(format!(
            "https://127.0.0.1:{core_port}/scep?operation=GetCACaps"
        ))
        .send()
        .unwrap();
    assert_eq!(unlisted.status(), 403);
    let text = unlisted.text().unwrap();
    assert!(
        text.contains("`gw-unlisted` is not one of server.gateway_names"),
        "{text}"
    );
    // A gateway that trusts the wrong CA for the cores logs the TLS verification failure,
    // not just "core is down".
    let (bad_trust, bad_url) = site.gateway_trusting(
        &site.token.data().join("ca.pem"),
        &[core_port],
        (&gw_cert.0, &gw_cert.1),
        "health_interval_secs = 1",
    );
    assert_eq!(
        http()
            .get(format!("{bad_url}/scep?operation=GetCACaps"))
            .send()
            .unwrap()
            .status(),
        503
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bad_trust
        .log()
        .contains("TLS verification of the core's certificate failed")
    {
        assert!(Instant::now() < deadline, "{}", bad_trust.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(bad_trust);

    // Straight to the core, without the gateway's certificate: SCEP is refused; CRL, OCSP
    // and health stay open.
    let direct = site.direct(None);
    let r = direct
        .get(format!(
            "https://127.0.0.1:{core_port}/scep?operation=GetCACaps"
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        direct
            .get(format!("https://127.0.0.1:{core_port}/crl/sigil-ca.crl"))
            .send()
            .unwrap()
            .status(),
        200
    );
    // With the gateway's certificate, directly: admitted (it is the gateway's identity).
    let as_gateway = site.direct(Some((&gw_cert.0, &gw_cert.1)));
    assert_eq!(
        as_gateway
            .get(format!(
                "https://127.0.0.1:{core_port}/scep?operation=GetCACaps"
            ))
            .send()
            .unwrap()
            .status(),
        200
    );
    // A device certificate from the issuing CA, named like the gateway, does not pass for
    // it: the core trusts only the transport CA for client certificates.
    let imp = site.token.path().join("impostor");
    std::fs::create_dir_all(&imp).unwrap();
    let out = Command::new("scepclient")
        .current_dir(&imp)
        .args(["-server-url", &format!("{gw_url}/scep/legacy")])
        .args(["-challenge", CHALLENGE, "-cn", "sigil-gateway"])
        .args(["-ca-fingerprint", &hex::encode(openssl::sha::sha256(&ra))])
        .args(["-private-key", "device.key", "-certificate", "device.pem"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pk8 = imp.join("device.pk8");
    let conv = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
        .arg(imp.join("device.key"))
        .arg("-out")
        .arg(&pk8)
        .output()
        .unwrap();
    assert!(conv.status.success());
    let impostor = site.direct(Some((&imp.join("device.pem"), &pk8)));
    match impostor
        .get(format!(
            "https://127.0.0.1:{core_port}/scep?operation=GetCACaps"
        ))
        .send()
    {
        Err(_) => {}
        Ok(r) => assert_eq!(
            r.status(),
            403,
            "a device certificate passed for the gateway"
        ),
    }
    // A gateway whose certificate is not from this CA (same name) is refused by the core's
    // TLS: the gateway answers 503 quickly, and nothing reaches the core's handlers.
    let (sc, sk) = stranger_identity(site.token.path());
    let (wrong, wrong_url) = site.gateway(&[core_port], (&sc, &sk), "health_interval_secs = 300");
    let before = site.requests_seen(core_port);
    let t = Instant::now();
    let r = http()
        .get(format!("{wrong_url}/scep?operation=GetCACaps"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503, "{}", wrong.log());
    assert!(r.headers().get("retry-after").is_some());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(
        site.requests_seen(core_port),
        before + 1,
        "only our own metrics read"
    );
}

/// Raw HTTP/1.1 to the gateway: the status line's code, or 0 when the connection closed.
fn raw(url: &str, request: &[u8], pause: Option<(usize, Duration)>) -> u16 {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    match pause {
        Some((at, wait)) => {
            let _ = s.write_all(&request[..at]);
            std::thread::sleep(wait);
            let _ = s.write_all(&request[at..]);
        }
        None => s.write_all(request).unwrap(),
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn abuse_is_refused_at_the_gateway_and_never_reaches_the_core() {
    let site = Site::new(None);
    let (core, core_port) = site.core("core");
    let gw_cert = (site.tls.join("gateway.pem"), site.tls.join("gateway.key"));
    let (gw, url) = site.gateway(
        &[core_port],
        (&gw_cert.0, &gw_cert.1),
        "max_body_bytes = 4096\nmax_query_bytes = 2048\nheader_timeout_secs = 2\nbody_timeout_secs = 2\nhealth_interval_secs = 300\nrate_per_second = 100.0\nburst = 100",
    );
    std::thread::sleep(Duration::from_millis(300));
    let before = site.requests_seen(core_port);
    let c = http();
    let big = vec![0x30u8; 5000];
    let long_query = format!("{url}/scep?operation=GetCACaps&x={}", "a".repeat(3000));
    let cases: Vec<(&str, reqwest::blocking::RequestBuilder, u16)> = vec![
        (
            "a method outside SCEP",
            c.put(format!("{url}/scep?operation=GetCACaps")),
            405,
        ),
        (
            "an operation outside SCEP",
            c.get(format!("{url}/scep?operation=DeleteAll")),
            400,
        ),
        ("no operation", c.get(format!("{url}/scep")), 400),
        ("an admin route", c.get(format!("{url}/api/v1/tokens")), 404),
        (
            "the NDES admin page",
            c.get(format!("{url}/certsrv/mscep_admin/")),
            404,
        ),
        ("metrics", c.get(format!("{url}/metrics")), 404),
        (
            "a body over the limit",
            c.post(format!("{url}/scep?operation=PKIOperation"))
                .body(big),
            413,
        ),
        (
            "base64 that does not decode",
            c.get(format!(
                "{url}/scep?operation=PKIOperation&message=%%%21%21"
            )),
            400,
        ),
        (
            "a body that is neither DER nor base64",
            c.post(format!("{url}/scep?operation=PKIOperation"))
                .body("<xml/>"),
            400,
        ),
        (
            "a truncated pkiMessage",
            c.post(format!("{url}/scep?operation=PKIOperation"))
                .body(vec![0x30, 0x82, 0x01, 0x00, 0x02]),
            400,
        ),
        ("a query string over the limit", c.get(long_query), 414),
        (
            "GetCACert by POST",
            c.post(format!("{url}/scep?operation=GetCACert")),
            405,
        ),
        (
            "an OCSP request that is not DER",
            c.post(format!("{url}/ocsp")).body("hello"),
            400,
        ),
        (
            "a CRL name that walks the tree",
            c.get(format!("{url}/crl/..%2F..%2Fetc.crl")),
            404,
        ),
    ];
    for (what, req, status) in cases {
        let r = req.send().unwrap();
        assert_eq!(
            r.status().as_u16(),
            status,
            "{what}: {}",
            r.text().unwrap_or_default()
        );
    }
    // Slow clients: headers that never finish, and a body that stops halfway.
    let t = Instant::now();
    let code = raw(
        &url,
        b"GET /scep?operation=GetCACaps HTTP/1.1\r\nHost: x\r\n",
        None,
    );
    assert!(code == 408 || code == 0, "slow headers got {code}");
    assert!(t.elapsed() < Duration::from_secs(10));
    let body_req = b"POST /scep?operation=PKIOperation HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789";
    let code = raw(&url, body_req, None);
    assert_eq!(code, 408, "a body that stops halfway");
    assert_eq!(
        site.requests_seen(core_port),
        before + 1,
        "the core saw none of it (this count includes only our own metrics read)\n{}",
        gw.log()
    );
    assert!(gw.log().contains("refused at the gateway"));

    // Too many requests from one source: a gateway allowing a burst of 3.
    let (_strict, strict_url) = site.gateway(
        &[core_port],
        (&gw_cert.0, &gw_cert.1),
        "rate_per_second = 0.2\nburst = 3\nhealth_interval_secs = 300",
    );
    let statuses: Vec<u16> = (0..5)
        .map(|_| {
            c.get(format!("{strict_url}/scep?operation=GetCACaps"))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429], "token bucket of 3");
    let r = c
        .get(format!("{strict_url}/scep?operation=GetCACaps"))
        .send()
        .unwrap();
    assert!(r.headers().get("retry-after").is_some());
    // Without trusted proxies, a client naming itself someone else changes nothing.
    let r = c
        .get(format!("{strict_url}/scep?operation=GetCACaps"))
        .header("X-Forwarded-For", "198.51.100.77")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429, "X-Forwarded-For from a stranger");

    // Behind a load balancer (here this host, trusted): each client it names has its own
    // budget, so one busy client does not starve the fleet behind the same balancer.
    let (proxied, proxied_url) = site.gateway(
        &[core_port],
        (&gw_cert.0, &gw_cert.1),
        "rate_per_second = 0.2\nburst = 3\nhealth_interval_secs = 300\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]",
    );
    let via = |client: &str| {
        c.get(format!("{proxied_url}/scep?operation=GetCACaps"))
            .header("X-Forwarded-For", client)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let busy: Vec<u16> = (0..4).map(|_| via("198.51.100.1")).collect();
    assert_eq!(busy, [200, 200, 200, 429], "one client's bucket of 3");
    assert_eq!(
        via("198.51.100.2"),
        200,
        "another client behind the same proxy"
    );
    // A client cannot pass for a fresh one by writing addresses to the left of what the
    // proxy appended: the rightmost untrusted entry is the client.
    assert_eq!(
        via("203.0.113.50, 198.51.100.1"),
        429,
        "spoofed left entries"
    );
    let log = proxied.log();
    assert!(
        log.lines()
            .any(|l| l.contains("rate limited at the gateway") && l.contains("198.51.100.1")),
        "the refusal names the client, not the proxy\n{log}"
    );
    // The core (which trusts its gateways' word, as docs/gateway.md says to set it up) is
    // told the client the proxy named, not the proxy.
    let core_log = core.log();
    assert!(
        core_log
            .lines()
            .any(|l| l.contains("198.51.100.2") && l.contains("GetCACaps")),
        "the core's log names the proxied client\n{core_log}"
    );
}

/// PKCSReq from a fresh device through `url`, resent on 503 (as clients do) until answered.
fn enroll_retrying(url: &str, ra: &[u8], cn: &str) -> (PkiStatus, u32) {
    let d = new_device(cn);
    let csr = d.csr(cn, Some(CHALLENGE), &[]).unwrap();
    let tid = hex::encode(openssl::sha::sha1(&d.key.public_key_to_der().unwrap()));
    let msg = d
        .request(
            MessageType::PkcsReq,
            &tid,
            &Nonce::random().unwrap(),
            &csr,
            ra,
            ContentCipher::Aes128Cbc,
            DigestAlg::Sha256,
        )
        .unwrap();
    let c = http();
    for attempt in 1..=20 {
        let r = c
            .post(format!("{url}/scep?operation=PKIOperation"))
            .header("content-type", "application/x-pki-message")
            .body(msg.clone())
            .send();
        match r {
            Ok(r) if r.status() == 200 => {
                let reply = d.read(&r.bytes().unwrap()).unwrap();
                return (reply.status, attempt);
            }
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
    panic!("{cn}: never answered");
}

#[test]
fn a_core_killed_mid_stream_loses_no_enrollment() {
    let _pg = crate::multinode::pg_lock();
    let db = crate::multinode::pg_schema_url();
    let site = Site::new(Some(&db));
    let (mut a, pa) = site.core("core-a");
    let (mut b, pb) = site.core("core-b");
    let gw_cert = (site.tls.join("gateway.pem"), site.tls.join("gateway.key"));
    let (gw, url) = site.gateway(
        &[pa, pb],
        (&gw_cert.0, &gw_cert.1),
        "health_interval_secs = 1",
    );
    let cacert = http()
        .get(format!("{url}/scep?operation=GetCACert"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let (certs, _) = read_degenerate(&cacert).unwrap();
    let ra = certs
        .into_iter()
        .find(|c| {
            let x = X509::from_der(c).unwrap();
            x.subject_name_hash() != x.issuer_name_hash()
        })
        .unwrap();
    let mut issued = 0;
    for i in 0..12 {
        if i == 4 {
            a.kill(); // mid-stream
        }
        let (status, _) = enroll_retrying(&url, &ra, &format!("fleet-{i}"));
        assert_eq!(status, PkiStatus::Success, "{}", gw.log());
        issued += 1;
    }
    assert_eq!(issued, 12);
    let log = gw.log();
    assert!(
        log.contains("core is unreachable") || log.contains("trying the next"),
        "the gateway noticed nothing: {log}"
    );
    // Every enrollment is in the shared store exactly once.
    let listed = site
        .token
        .sigil()
        .env("SIGIL_CONFIG", &site.config)
        .args(["cert", "list", "--subject", "fleet-"])
        .output()
        .unwrap();
    let text = ok(&listed);
    assert_eq!(
        text.lines().filter(|l| l.contains("fleet-")).count(),
        12,
        "{text}"
    );
    // Both cores gone: 503 with Retry-After, within the gateway's timeout.
    b.kill();
    let t = Instant::now();
    let r = http()
        .get(format!("{url}/scep?operation=GetCACaps"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}
