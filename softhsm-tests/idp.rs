//! A real OpenID provider for the identity tests: panva's `oidc-provider` (npm, installed by
//! `softhsm-tests/oidc/install.sh`) run under nodejs with `softhsm-tests/oidc/op.mjs`, behind a
//! small proxy on loopback. The proxy passes everything through, and on demand tampers with
//! the ID token in the token endpoint's answer (signed with a key the provider never
//! published, expired, or for another audience) the way an attacker in the middle or a
//! misconfigured provider would. The test holds the provider's signing keys, so it can rotate
//! them (restart with a new key first and the old one still published).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{json, Value};

use crate::common::{free_port, root};

pub const CLIENT_ID: &str = "sigil";
pub const CLIENT_SECRET: &str = "sigil-oidc-secret";

/// What the proxy does to the next ID tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Nothing.
    Pass,
    /// Signed by a key the provider never published (with the published key's id).
    Forged,
    /// Signed by the provider's key, but expired an hour ago.
    Expired,
    /// Signed by the provider's key, but for another application.
    OtherAudience,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap()
}

/// A new RS256 signing key as a private JWK.
pub fn new_jwk(kid: &str) -> Value {
    let rsa = Rsa::generate(2048).unwrap();
    let bn = |b: &openssl::bn::BigNumRef| b64(&b.to_vec());
    json!({
        "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
        "n": bn(rsa.n()), "e": bn(rsa.e()), "d": bn(rsa.d()),
        "p": bn(rsa.p().unwrap()), "q": bn(rsa.q().unwrap()),
        "dp": bn(rsa.dmp1().unwrap()), "dq": bn(rsa.dmq1().unwrap()), "qi": bn(rsa.iqmp().unwrap()),
    })
}

fn jwk_key(j: &Value) -> PKey<Private> {
    let n = |k: &str| BigNum::from_slice(&unb64(j[k].as_str().unwrap())).unwrap();
    let rsa = Rsa::from_private_components(
        n("n"),
        n("e"),
        n("d"),
        n("p"),
        n("q"),
        n("dp"),
        n("dq"),
        n("qi"),
    )
    .unwrap();
    PKey::from_rsa(rsa).unwrap()
}

/// A JWT signed RS256 with `key`.
pub fn sign_jwt(header: &Value, claims: &Value, key: &PKey<Private>) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut s = Signer::new(MessageDigest::sha256(), key).unwrap();
    s.update(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&s.sign_to_vec().unwrap()))
}

/// The test people: user name → (groups, email).
pub const PEOPLE: &[(&str, &[&str], &str)] = &[
    (
        "alice",
        &["sigil-admins", "sigil-officers", "staff"],
        "alice@agency.test",
    ),
    ("adam", &["sigil-admins"], "adam@agency.test"),
    ("oscar", &["sigil-officers", "staff"], "Oscar@Agency.test"),
    ("olga", &["sigil-officers"], "olga@agency.test"),
    ("ursula", &["staff"], "ursula@agency.test"),
    ("nora", &["contractors"], "nora@agency.test"),
];

/// The password of a test person.
pub fn password(user: &str) -> String {
    format!("{user}-pw")
}

/// The provider and its proxy.
pub struct Idp {
    child: Child,
    dir: PathBuf,
    op_port: u16,
    redirect: String,
    /// The issuer (the proxy's address).
    pub issuer: String,
    /// The signing keys (private JWKs), the first one signing.
    pub keys: Arc<Mutex<Vec<Value>>>,
    pub tamper: Arc<Mutex<Tamper>>,
    stop: Arc<AtomicBool>,
    proxy_port: u16,
    /// A public JWKS: the provider also knows the `private_key_jwt` client `sigil-pkjwt`.
    client_jwks: Option<PathBuf>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.proxy_port));
    }
}

fn op_dir() -> PathBuf {
    let dir = root().join("target/oidc-op");
    if !dir.join("node_modules/oidc-provider").is_dir() || !dir.join("op.mjs").is_file() {
        let out = Command::new("bash")
            .arg(root().join("softhsm-tests/oidc/install.sh"))
            .output()
            .expect("run softhsm-tests/oidc/install.sh");
        assert!(
            out.status.success(),
            "the test OpenID provider could not be installed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The script may be newer than the installed copy.
    std::fs::copy(root().join("softhsm-tests/oidc/op.mjs"), dir.join("op.mjs")).unwrap();
    dir
}

impl Idp {
    /// Start the provider (its files in `dir`) for a relying party whose callback is
    /// `redirect`.
    pub fn start(dir: &Path, redirect: &str) -> Idp {
        Self::start_opts(dir, redirect, None)
    }

    /// As [`Idp::start`], and the provider also knows the client `sigil-pkjwt`, which proves
    /// itself with `private_key_jwt` signed by a key of this public JWKS.
    pub fn start_with_client_jwks(dir: &Path, redirect: &str, jwks: &Path) -> Idp {
        Self::start_opts(dir, redirect, Some(jwks.to_path_buf()))
    }

    fn start_opts(dir: &Path, redirect: &str, client_jwks: Option<PathBuf>) -> Idp {
        let proxy_port = free_port();
        let op_port = free_port();
        let issuer = format!("http://127.0.0.1:{proxy_port}");
        let users: serde_json::Map<String, Value> = PEOPLE
            .iter()
            .map(|(u, groups, email)| {
                (
                    u.to_string(),
                    json!({
                        "password": password(u), "email": email, "email_verified": true,
                        "name": format!("{u} (test)"), "preferred_username": u, "groups": groups,
                    }),
                )
            })
            .collect();
        std::fs::write(dir.join("users.json"), Value::Object(users).to_string()).unwrap();
        let keys = Arc::new(Mutex::new(vec![new_jwk("key-1")]));
        let tamper = Arc::new(Mutex::new(Tamper::Pass));
        let stop = Arc::new(AtomicBool::new(false));
        start_proxy(
            proxy_port,
            op_port,
            keys.clone(),
            tamper.clone(),
            stop.clone(),
        );
        let mut idp = Idp {
            child: Command::new("true").spawn().unwrap(),
            dir: dir.to_path_buf(),
            op_port,
            redirect: redirect.to_string(),
            issuer,
            keys,
            tamper,
            stop,
            proxy_port,
            client_jwks,
        };
        idp.spawn();
        idp
    }

    /// Restart the provider (it reads its client registrations again).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.op_port)).is_ok() {
            assert!(Instant::now() < deadline, "the old provider does not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.spawn();
    }

    fn spawn(&mut self) {
        let keys = json!({"keys": *self.keys.lock().unwrap()});
        std::fs::write(self.dir.join("keys.json"), keys.to_string()).unwrap();
        let op = op_dir();
        let mut node = Command::new("node");
        if let Some(jwks) = &self.client_jwks {
            node.env("OP_PKJWT_JWKS", jwks);
        }
        let mut child = node
            .arg(op.join("op.mjs"))
            .current_dir(&op)
            .env("OP_PORT", self.op_port.to_string())
            .env("OP_ISSUER", &self.issuer)
            .env("OP_USERS", self.dir.join("users.json"))
            .env("OP_KEYS", self.dir.join("keys.json"))
            .env("OP_CLIENT_ID", CLIENT_ID)
            .env("OP_CLIENT_SECRET", CLIENT_SECRET)
            .env("OP_REDIRECT_URI", &self.redirect)
            .env("OP_INTERACTIONS", "strict")
            .env("OP_AUTO_CONSENT", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.join("op.log")).unwrap(),
            ))
            .spawn()
            .expect("run node (softhsm-tests/oidc/install.sh installs it)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("READY"),
            "the OpenID provider did not start: {line}{}",
            std::fs::read_to_string(self.dir.join("op.log")).unwrap_or_default()
        );
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = child;
    }

    /// Put `user` in these groups only (the directory changed), and restart the provider so
    /// that its next sign-in says so.
    pub fn set_groups(&mut self, user: &str, groups: &[&str]) {
        let path = self.dir.join("users.json");
        let mut users: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        users[user]["groups"] = json!(groups);
        std::fs::write(&path, users.to_string()).unwrap();
        self.restart();
    }

    /// Leave `user`'s groups out of the ID token (as Entra does past 200 groups), and restart
    /// the provider.
    pub fn drop_groups(&mut self, user: &str) {
        let path = self.dir.join("users.json");
        let mut users: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        users[user].as_object_mut().unwrap().remove("groups");
        std::fs::write(&path, users.to_string()).unwrap();
        self.restart();
    }

    /// Rotate the signing key: the provider restarts signing with a new key and still
    /// publishes the old one.
    pub fn rotate_keys(&mut self) {
        {
            let mut keys = self.keys.lock().unwrap();
            let n = keys.len() + 1;
            keys.insert(0, new_jwk(&format!("key-{n}")));
        }
        self.restart();
    }

    pub fn set_tamper(&self, t: Tamper) {
        *self.tamper.lock().unwrap() = t;
    }
}

fn start_proxy(
    port: u16,
    upstream: u16,
    keys: Arc<Mutex<Vec<Value>>>,
    tamper: Arc<Mutex<Tamper>>,
    stop: Arc<AtomicBool>,
) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let (keys, tamper) = (keys.clone(), tamper.clone());
            std::thread::spawn(move || {
                let _ = proxy_one(conn, upstream, &keys, &tamper);
            });
        }
    });
}

/// The head lines and body of one HTTP message read from `r`; `to_eof` reads the body to
/// the end of the stream (a response from a server told to close).
fn read_message(r: &mut impl BufRead, to_eof: bool) -> std::io::Result<(Vec<String>, Vec<u8>)> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let header = |name: &str| {
        head.iter().skip(1).find_map(|h| {
            h.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        })
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                let mut end = String::new();
                let _ = r.read_line(&mut end);
                break;
            }
            let mut chunk = vec![0u8; n];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if to_eof {
        r.read_to_end(&mut body)?;
    }
    Ok((head, body))
}

fn write_message(w: &mut impl Write, head: &[String], body: &[u8]) -> std::io::Result<()> {
    let mut out = String::new();
    out.push_str(&head[0]);
    out.push_str("\r\n");
    for h in &head[1..] {
        let name = h
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if [
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
        ]
        .contains(&name.as_str())
        {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    w.write_all(out.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn proxy_one(
    conn: TcpStream,
    upstream: u16,
    keys: &Mutex<Vec<Value>>,
    tamper: &Mutex<Tamper>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut client = BufReader::new(conn.try_clone()?);
    let (head, body) = read_message(&mut client, false)?;
    if head.is_empty() {
        return Ok(());
    }
    let is_token = head[0].starts_with("POST /token");
    let up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.set_read_timeout(Some(Duration::from_secs(10)))?;
    write_message(&mut &up, &head, &body)?;
    let (rhead, mut rbody) = read_message(&mut BufReader::new(&up), true)?;
    let mode = *tamper.lock().unwrap();
    if is_token && mode != Tamper::Pass && rhead[0].contains(" 200") {
        if let Ok(mut tokens) = serde_json::from_slice::<Value>(&rbody) {
            if let Some(id) = tokens["id_token"].as_str() {
                tokens["id_token"] = json!(retamper(id, mode, &keys.lock().unwrap()[0]));
                rbody = tokens.to_string().into_bytes();
            }
        }
    }
    let mut conn = conn;
    write_message(&mut conn, &rhead, &rbody)
}

/// The ID token as the tampering says.
fn retamper(id_token: &str, mode: Tamper, signing: &Value) -> String {
    let parts: Vec<&str> = id_token.split('.').collect();
    let header: Value = serde_json::from_slice(&unb64(parts[0])).unwrap();
    let mut claims: Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = match mode {
        Tamper::Forged => jwk_key(&new_jwk("attacker")),
        _ => jwk_key(signing),
    };
    match mode {
        Tamper::Expired => {
            claims["iat"] = json!(now - 7200);
            claims["exp"] = json!(now - 3600);
        }
        Tamper::OtherAudience => claims["aud"] = json!("another-application"),
        _ => {}
    }
    sign_jwt(&header, &claims, &key)
}
