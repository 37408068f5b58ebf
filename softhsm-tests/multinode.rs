//! Several `sigil serve` nodes sharing one PostgreSQL: load, one-time challenges under
//! contention, polling across nodes, a node killed mid-stream, and the database going away.
//! These tests share the PostgreSQL cluster, and one of them stops it, so they run one at a
//! time (`pg_lock`).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openssl::x509::X509;
use sigil::scep::client::{issuer_and_subject, read_degenerate, Device};
use sigil::scep::{ContentCipher, DigestAlg, MessageType, Nonce, PkiStatus};
use sigil::store::{CaStateStore, CertFilter, CertificateStore, PostgresStore, TransactionStore};

use crate::common::{free_port, ok, TokenDir};

const CHALLENGE: &str = "multi-node-secret";

pub(crate) fn pg_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A schema of its own in the run's test database.
pub(crate) fn pg_schema_url() -> String {
    let base = std::env::var("SIGIL_TEST_DATABASE_URL").expect(
        "SIGIL_TEST_DATABASE_URL is not set: run softhsm-tests/run.sh (it starts PostgreSQL 15)",
    );
    let schema = format!(
        "mn_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    );
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
    });
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

pub(crate) struct Node {
    pub(crate) child: Option<Child>,
    port: u16,
    log: std::path::PathBuf,
}

impl Node {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) struct Cluster {
    token: TokenDir,
    pub(crate) url: String,
    config: std::path::PathBuf,
    pub(crate) nodes: Vec<Node>,
    ra: Vec<u8>,
    ca: Vec<u8>,
    http: reqwest::blocking::Client,
    /// How long a reservation holds (`scep.reservation_secs`).
    reservation_secs: u32,
}

impl Cluster {
    /// Nodes whose reservations hold 30 s: under load on a slow machine a request can take
    /// seconds between its reservation and its record, and must not lose it meanwhile.
    pub(crate) fn start(nodes: usize) -> Cluster {
        Self::start_with_reservations(nodes, 30)
    }

    /// Nodes whose reservations hold `reservation_secs` (a killed node's lapse soon after).
    fn start_with_reservations(nodes: usize, reservation_secs: u32) -> Cluster {
        let token = TokenDir::new();
        let url = pg_schema_url();
        // The ceremony makes the cluster's store: the shared database.
        ok(&token
            .sigil()
            .env("SIGIL_DATABASE_URL", &url)
            .args(["init", "--ca-key", "rsa3072"])
            .output()
            .unwrap());
        let h = hex::encode(openssl::sha::sha256(CHALLENGE.as_bytes()));
        let config = token.path().join("sigil.toml");
        std::fs::write(
            &config,
            format!(
                "[profiles.default]\nchallenge_sha256 = \"{h}\"\n\n\
                 [profiles.approval]\nchallenge_sha256 = \"{h}\"\napproval = true\n\n\
                 [profiles.otp]\n"
            ),
        )
        .unwrap();
        let mut c = Cluster {
            url,
            token,
            config,
            nodes: Vec::new(),
            ra: Vec::new(),
            ca: Vec::new(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            reservation_secs,
        };
        for i in 0..nodes {
            let port = free_port();
            let log = c.token.path().join(format!("node{i}.log"));
            c.nodes.push(Node {
                child: None,
                port,
                log,
            });
            c.spawn(i);
        }
        let (_, body) = c.get(0, "/scep?operation=GetCACert");
        for cert in read_degenerate(&body).unwrap().0 {
            let x = X509::from_der(&cert).unwrap();
            if x.subject_name_hash() == x.issuer_name_hash() {
                c.ca = cert;
            } else {
                c.ra = cert;
            }
        }
        c
    }

    pub(crate) fn sigil(&self) -> Command {
        let mut cmd = self.token.sigil();
        cmd.env("SIGIL_CONFIG", &self.config)
            .env("SIGIL_DATABASE_URL", &self.url)
            .env(
                "SIGIL_SCEP_RESERVATION_SECS",
                self.reservation_secs.to_string(),
            )
            .env("SIGIL_LOG_LEVEL", "info");
        cmd
    }

    fn spawn(&mut self, i: usize) {
        let node = &self.nodes[i];
        let child = self
            .sigil()
            .env("SIGIL_SERVER_LISTEN", format!("127.0.0.1:{}", node.port))
            .env("SIGIL_SERVER_WORKERS", "2")
            .env("SIGIL_HSM_POOL_SIZE", "4")
            .env("SIGIL_SERVER_BACKGROUND_INTERVAL_SECS", "1")
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&node.log)
                    .unwrap(),
            ))
            .spawn()
            .unwrap();
        let base = node.base();
        self.nodes[i].child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.http.get(format!("{base}/healthz")).send().is_err() {
            assert!(
                Instant::now() < deadline,
                "node {i} did not start: {}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    pub(crate) fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    fn get(&self, i: usize, path: &str) -> (u16, Vec<u8>) {
        let r = self
            .http
            .get(format!("{}{path}", self.nodes[i].base()))
            .send()
            .unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    }

    /// POST a pkiMessage; Err for transport errors, Ok((status, body)) otherwise.
    fn post(&self, i: usize, profile: &str, msg: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        let path = if profile == "default" {
            "/scep".to_string()
        } else {
            format!("/scep/{profile}")
        };
        self.http
            .post(format!(
                "{}{path}?operation=PKIOperation",
                self.nodes[i].base()
            ))
            .body(msg)
            .send()
            .map_err(|e| e.to_string())
            .map(|r| {
                (
                    r.status().as_u16(),
                    r.bytes().map(|b| b.to_vec()).unwrap_or_default(),
                )
            })
    }

    fn store(&self) -> PostgresStore {
        runtime()
            .block_on(PostgresStore::connect(&self.url, 2))
            .unwrap()
    }
}

/// A device and its ready PKCSReq (kept, to resend).
struct Request {
    device: Device,
    tid: String,
    msg: Vec<u8>,
}

fn request(c: &Cluster, cn: &str, challenge: &str) -> Request {
    let device = Device::rsa(2048, cn).unwrap();
    let csr = device.csr(cn, Some(challenge), &[]).unwrap();
    let tid = hex::encode(openssl::sha::sha1(&device.key.public_key_to_der().unwrap()));
    let msg = device
        .request(
            MessageType::PkcsReq,
            &tid,
            &Nonce::random().unwrap(),
            &csr,
            &c.ra,
            ContentCipher::Aes128Cbc,
            DigestAlg::Sha256,
        )
        .unwrap();
    Request { device, tid, msg }
}

/// Make `n` requests on `threads` threads (key generation is the slow part).
fn requests(c: &Cluster, n: usize, challenge: &str) -> Vec<Request> {
    let out = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let r = request(c, &format!("device-{i}"), challenge);
                out.lock().unwrap().push(r);
            });
        }
    });
    out.into_inner().unwrap()
}

/// The serial (hex) of a certificate (DER).
pub(crate) fn serial_of(cert: &[u8]) -> String {
    let b = X509::from_der(cert)
        .unwrap()
        .serial_number()
        .to_bn()
        .unwrap()
        .to_vec();
    hex::encode(b)
}

#[test]
fn two_nodes_share_one_postgres() {
    let _pg = pg_lock();
    let c = Cluster::start(2);

    // 200 enrollments at concurrency 32, spread over both nodes.
    let reqs = Arc::new(requests(&c, 200, CHALLENGE));
    let next = AtomicUsize::new(0);
    let serials = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..32 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= reqs.len() {
                    break;
                }
                let r = &reqs[i];
                let (status, body) = c.post(i % 2, "default", r.msg.clone()).unwrap();
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                let reply = r.device.read(&body).unwrap();
                assert_eq!(reply.status, PkiStatus::Success, "{:?}", reply.fail_text);
                serials.lock().unwrap().push(serial_of(&reply.certs[0]));
            });
        }
    });
    let mut serials = serials.into_inner().unwrap();
    assert_eq!(serials.len(), 200);
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 200, "a serial repeated");
    let store = c.store();
    let rt = runtime();
    let stored = rt
        .block_on(store.certificates(&CertFilter::default()))
        .unwrap();
    assert_eq!(stored.len(), 200, "every certificate is stored once");
    for s in &serials {
        assert!(stored.iter().any(|c| &c.serial == s));
    }

    // One one-time challenge, ten concurrent requests on both nodes: one certificate.
    let otp = ok(&c
        .sigil()
        .args(["challenge", "create", "--profile", "otp"])
        .output()
        .unwrap());
    let otp = otp.trim().to_owned();
    assert_eq!(otp.len(), 32);
    let racers = requests(&c, 10, &otp);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (i, r) in racers.iter().enumerate() {
            let c = &c;
            let results = &results;
            s.spawn(move || {
                let (status, body) = c.post(i % 2, "otp", r.msg.clone()).unwrap();
                assert_eq!(
                    status,
                    200,
                    "{}\n{}\n{}",
                    String::from_utf8_lossy(&body),
                    c.log(0),
                    c.log(1)
                );
                let reply = r.device.read(&body).unwrap();
                results
                    .lock()
                    .unwrap()
                    .push((reply.status, reply.fail_text));
            });
        }
    });
    let results = results.into_inner().unwrap();
    let wins = results
        .iter()
        .filter(|(s, _)| *s == PkiStatus::Success)
        .count();
    assert_eq!(wins, 1, "{results:?}");
    for (status, text) in &results {
        if *status != PkiStatus::Success {
            assert!(
                text.as_deref().unwrap_or("").contains("already used"),
                "{text:?}"
            );
        }
    }
    let otp_certs = rt
        .block_on(store.certificates(&CertFilter {
            profile: Some("otp".into()),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(otp_certs.len(), 1);

    // PENDING on node 0, CertPoll on node 1: any node answers for any transaction.
    let p = request(&c, "pending-device", CHALLENGE);
    let (_, body) = c.post(0, "approval", p.msg.clone()).unwrap();
    assert_eq!(p.device.read(&body).unwrap().status, PkiStatus::Pending);
    let ca_subject = X509::from_der(&c.ca)
        .unwrap()
        .subject_name()
        .to_der()
        .unwrap();
    let poll = p
        .device
        .request(
            MessageType::CertPoll,
            &p.tid,
            &Nonce::random().unwrap(),
            &issuer_and_subject(&ca_subject, &ca_subject),
            &c.ra,
            ContentCipher::Aes128Cbc,
            DigestAlg::Sha256,
        )
        .unwrap();
    let (_, body) = c.post(1, "approval", poll).unwrap();
    assert_eq!(p.device.read(&body).unwrap().status, PkiStatus::Pending);
    assert_eq!(rt.block_on(store.pending()).unwrap().len(), 1);
    // The CA and RA certificates are in the store too.
    assert_eq!(
        rt.block_on(store.state("ca_certificate"))
            .unwrap()
            .as_deref(),
        Some(&c.ca[..])
    );
    assert_eq!(
        rt.block_on(store.state("ra_certificate"))
            .unwrap()
            .as_deref(),
        Some(&c.ra[..])
    );
}

fn get_crl(c: &Cluster, node: usize) -> Vec<u8> {
    let d = Device::rsa(2048, "crl-reader").unwrap();
    let ca_subject = X509::from_der(&c.ca)
        .unwrap()
        .subject_name()
        .to_der()
        .unwrap();
    let q = sigil::scep::client::issuer_and_serial(&ca_subject, &[1]);
    let msg = d
        .request(
            MessageType::GetCrl,
            &format!("crl-{node}-{}", std::process::id()),
            &Nonce::random().unwrap(),
            &q,
            &c.ra,
            ContentCipher::Aes128Cbc,
            DigestAlg::Sha256,
        )
        .unwrap();
    let (_, body) = c.post(node, "default", msg).unwrap();
    let reply = d.read(&body).unwrap();
    assert_eq!(reply.status, PkiStatus::Success, "{:?}", reply.fail_text);
    reply.crls[0].clone()
}

#[test]
fn background_work_runs_on_one_node_and_fails_over() {
    let _pg = pg_lock();
    let mut c = Cluster::start(2);
    let leads = |c: &Cluster, i: usize| c.log(i).contains("this node now runs the background task");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(leads(&c, 0) || leads(&c, 1)) {
        assert!(
            Instant::now() < deadline,
            "no node took the background task"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(leads(&c, 0) != leads(&c, 1), "exactly one node leads");
    let leader = if leads(&c, 0) { 0 } else { 1 };
    assert!(c.log(leader).contains("CRL refreshed"), "{}", c.log(leader));
    // Both nodes serve the same CRL, signed by the CA, from the store.
    let a = get_crl(&c, 0);
    let b = get_crl(&c, 1);
    assert_eq!(a, b);
    let crl = openssl::x509::X509Crl::from_der(&a).unwrap();
    assert!(crl
        .verify(&X509::from_der(&c.ca).unwrap().public_key().unwrap())
        .unwrap());
    // The leader dies: the other node takes over.
    c.kill9(leader);
    let other = 1 - leader;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !leads(&c, other) {
        assert!(Instant::now() < deadline, "no failover: {}", c.log(other));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_killed_node_loses_nothing() {
    let _pg = pg_lock();
    // The killed node's reservations lapse seconds later; the devices' resends take them over.
    let mut c = Cluster::start_with_reservations(1, 3);
    let reqs = requests(&c, 60, CHALLENGE);
    let received = Mutex::new(Vec::<(usize, String)>::new());
    let next = AtomicUsize::new(0);
    let cref = &c;
    let pid = c.nodes[0].child.as_ref().unwrap().id().to_string();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= reqs.len() {
                    break;
                }
                if let Ok((200, body)) = cref.post(0, "default", reqs[i].msg.clone()) {
                    if let Ok(reply) = reqs[i].device.read(&body) {
                        if reply.status == PkiStatus::Success {
                            received
                                .lock()
                                .unwrap()
                                .push((i, serial_of(&reply.certs[0])));
                        }
                    }
                }
            });
        }
        // SIGKILL the node in the middle of the stream.
        let deadline = Instant::now() + Duration::from_secs(120);
        while received.lock().unwrap().len() < 15 {
            assert!(
                Instant::now() < deadline,
                "the stream stalled: {}",
                cref.log(0)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        Command::new("kill").args(["-9", &pid]).status().unwrap();
    });
    let answered = received.lock().unwrap().len();
    assert!(answered < reqs.len(), "the stream ended before the kill");
    c.kill9(0);
    c.spawn(0);
    let store = c.store();
    let rt = runtime();
    let received = received.into_inner().unwrap();
    for (_, serial) in &received {
        assert!(
            rt.block_on(store.certificate(serial)).unwrap().is_some(),
            "certificate {serial} was sent to a client but is not in the store"
        );
    }
    // Resend every request: the ones answered get their stored certificate again; the others
    // are issued now. Never two certificates for one transaction.
    for (i, r) in reqs.iter().enumerate() {
        let (status, body) = c.post(0, "default", r.msg.clone()).unwrap();
        assert_eq!(status, 200);
        let reply = r.device.read(&body).unwrap();
        assert_eq!(reply.status, PkiStatus::Success, "{:?}", reply.fail_text);
        if let Some((_, serial)) = received.iter().find(|(j, _)| *j == i) {
            assert_eq!(
                &serial_of(&reply.certs[0]),
                serial,
                "a resend got a second certificate"
            );
        }
    }
    let all = rt
        .block_on(store.certificates(&CertFilter::default()))
        .unwrap();
    assert_eq!(all.len(), reqs.len(), "one certificate per transaction");
    for r in &reqs {
        assert_eq!(
            rt.block_on(store.transactions_named(&r.tid)).unwrap().len(),
            1
        );
    }
}

#[test]
fn database_outage_is_a_503_and_the_node_recovers() {
    let _pg = pg_lock();
    let port = std::env::var("PG_TEST_PORT").unwrap_or_else(|_| "5432".into());
    let c = Cluster::start(1);
    let before = request(&c, "before", CHALLENGE);
    let (status, _) = c.post(0, "default", before.msg.clone()).unwrap();
    assert_eq!(status, 200);
    let pg = |action: &str| {
        let out = Command::new("pg_ctlcluster")
            .args(["15", "main", action, "-m", "fast"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctlcluster {action}: {out:?}");
    };
    pg("stop");
    let during = request(&c, "during", CHALLENGE);
    let started = Instant::now();
    let result = c.post(0, "default", during.msg.clone());
    let took = started.elapsed();
    pg("start");
    let (status, body) = result.unwrap();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("temporarily unavailable"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(took < Duration::from_secs(30), "the 503 took {took:?}");
    // /readyz said so too, and says ready again once the database is back.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, body)) = c.post(0, "default", during.msg.clone()) {
            assert_eq!(
                during.device.read(&body).unwrap().status,
                PkiStatus::Success
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not recover after PostgreSQL (port {port}) came back: {}",
            c.log(0)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let store = c.store();
    let rt = runtime();
    assert_eq!(
        rt.block_on(store.certificates(&CertFilter::default()))
            .unwrap()
            .len(),
        2
    );
    assert!(!c.log(0).contains("\" 500 "), "{}", c.log(0));
}

/// The status a node's OCSP answer gives `cert` (the SHA-1 CertID OpenSSL and RADIUS servers
/// send, no nonce), with the answer verified against the CA.
fn ocsp_status(c: &Cluster, node: usize, cert: &X509) -> (i32, Vec<u8>) {
    use openssl::ocsp::{OcspCertId, OcspFlag, OcspRequest, OcspResponse, OcspResponseStatus};
    let ca = X509::from_der(&c.ca).unwrap();
    let id = OcspCertId::from_cert(openssl::hash::MessageDigest::sha1(), cert, &ca).unwrap();
    let mut req = OcspRequest::new().unwrap();
    req.add_id(id).unwrap();
    let body = c
        .http
        .post(format!("{}/ocsp", c.nodes[node].base()))
        .header("content-type", "application/ocsp-request")
        .body(req.to_der().unwrap())
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec();
    let resp = OcspResponse::from_der(&body).unwrap();
    assert_eq!(resp.status(), OcspResponseStatus::SUCCESSFUL);
    let basic = resp.basic().unwrap();
    let mut store = openssl::x509::store::X509StoreBuilder::new().unwrap();
    store.add_cert(ca.clone()).unwrap();
    let store = store.build();
    let mut chain = openssl::stack::Stack::new().unwrap();
    chain.push(ca.clone()).unwrap();
    basic.verify(&chain, &store, OcspFlag::empty()).unwrap();
    let id = OcspCertId::from_cert(openssl::hash::MessageDigest::sha1(), cert, &ca).unwrap();
    let st = basic.find_status(&id).unwrap();
    st.check_validity(300, None).unwrap();
    (st.status.as_raw(), body)
}

#[test]
fn ocsp_answers_are_produced_ahead_shared_by_the_nodes_and_revoked_everywhere_at_once() {
    use sigil::store::OcspStore;
    let _pg = pg_lock();
    let c = Cluster::start(2);
    let reqs = requests(&c, 12, CHALLENGE);
    let mut certs = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let (status, body) = c.post(i % 2, "default", r.msg.clone()).unwrap();
        assert_eq!(status, 200);
        let reply = r.device.read(&body).unwrap();
        assert_eq!(reply.status, PkiStatus::Success, "{:?}", reply.fail_text);
        certs.push(X509::from_der(&reply.certs[0]).unwrap());
    }
    // The node leading "ocsp" produces an answer for every certificate, without being asked.
    let store = c.store();
    let rt = runtime();
    let serial = |x: &X509| hex::encode(x.serial_number().to_bn().unwrap().to_vec());
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let found: Vec<_> = certs
            .iter()
            .filter_map(|x| {
                rt.block_on(store.ocsp_answer(&serial(x), sigil::clock::now()))
                    .unwrap()
            })
            .collect();
        if found.len() == certs.len() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} produced\n{}\n{}",
            found.len(),
            certs.len(),
            c.log(0),
            c.log(1)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Both nodes answer with that very answer, whichever produced it.
    let good = openssl::ocsp::OcspCertStatus::GOOD.as_raw();
    let revoked = openssl::ocsp::OcspCertStatus::REVOKED.as_raw();
    for node in 0..2 {
        let (status, der) = ocsp_status(&c, node, &certs[0]);
        assert_eq!(status, good);
        assert_eq!(
            der, stored[0].der,
            "node {node} serves the pre-produced answer"
        );
    }
    // Revoked from the command line (neither node hears of it): within a second both nodes
    // say so.
    ok(&c
        .sigil()
        .args([
            "cert",
            "revoke",
            &serial(&certs[0]),
            "--reason",
            "keyCompromise",
        ])
        .output()
        .unwrap());
    let revoked_at = Instant::now();
    for node in 0..2 {
        loop {
            if ocsp_status(&c, node, &certs[0]).0 == revoked {
                break;
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(1),
                "node {node} still says good after {:?}",
                revoked_at.elapsed()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The others are still good, and the revoked answer is shared as well.
    assert_eq!(ocsp_status(&c, 1, &certs[1]).0, good);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = rt
            .block_on(store.ocsp_answer(&serial(&certs[0]), sigil::clock::now()))
            .unwrap();
        if a.is_some_and(|a| a.status == sigil::store::CertStatus::Revoked) {
            break;
        }
        assert!(Instant::now() < deadline, "no revoked answer stored");
        std::thread::sleep(Duration::from_millis(200));
    }
}
