//! People, not token names: sign-in with a real OpenID provider (`oidc-provider`, see
//! `idp.rs`) and with PIV-style client certificates, sessions with CSRF, and the separation of
//! duties between people, each rule a test that tries to break it.

use std::path::Path;

use base64::Engine;
use openssl::x509::X509;
use serde_json::{json, Value};

use crate::common::ok;
use crate::idp::{Idp, Tamper, CLIENT_SECRET};
use crate::scep::ScepServer;
use crate::web_client::Browser;

/// The identity part of the configuration: the provider, and an inventory file and a
/// credential for self-service registrations.
pub(crate) fn identity_config(dir: &Path, issuer: &str) -> String {
    let secret = dir.join("oidc-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let devices = dir.join("devices.json");
    std::fs::write(
        &devices,
        json!([
            {"id": "ursula-phone", "user": "ursula@agency.test", "name": "Ursula's phone",
             "os": "iOS", "serial_number": "U1", "compliance": "compliant", "managed": true,
             "last_check_in": "2026-12-01T09:00:00Z"},
            {"id": "oscar-phone", "user": "oscar@agency.test", "name": "Oscar's phone",
             "os": "iOS", "serial_number": "O1", "compliance": "compliant", "managed": true,
             "last_check_in": "2026-12-01T09:00:00Z"},
            {"id": "alice-phone", "user": "alice@agency.test", "name": "Alice's phone",
             "os": "iOS", "serial_number": "A1", "compliance": "compliant", "managed": true,
             "last_check_in": "2026-12-01T09:00:00Z"}
        ])
        .to_string(),
    )
    .unwrap();
    format!(
        r#"
[identity.oidc]
issuer = "{issuer}"
client_id = "sigil"
client_secret_file = "{secret}"
scopes = ["email", "profile", "groups"]
clock_skew_secs = 5

[identity.oidc.roles]
admin = ["sigil-admins"]
officer = ["sigil-officers"]
user = ["staff"]

[profiles.derived]
allowed_sans = ["email"]

[directories.inventory]
kind = "file"
path = "{devices}"

[credentials.derived]
profile = "derived"
directory = "inventory"
subject = "CN={{user}},O=Agency"
sans = ["email:{{email}}"]
"#,
        secret = secret.display(),
        devices = devices.display()
    )
}

/// A server and its identity provider. The provider learns Sigil's callback before either
/// starts: the server's port is chosen first.
pub(crate) fn start() -> (ScepServer, Idp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    // The issuer is known before the provider runs (its proxy's port); the callback after
    // the server starts, so the provider is started in the server's configuration hook.
    let idp_cell: std::cell::RefCell<Option<Idp>> = std::cell::RefCell::new(None);
    let d = dir.path().to_path_buf();
    let server = ScepServer::start_tls_with(|_, port| {
        let idp = Idp::start(&d, &format!("https://127.0.0.1:{port}/auth/oidc/callback"));
        let cfg = identity_config(&d, &idp.issuer);
        *idp_cell.borrow_mut() = Some(idp);
        cfg
    });
    let idp = idp_cell.into_inner().unwrap();
    (server, idp, dir)
}

/// Sigil proves itself to the provider with a key on the token (`private_key_jwt`): no client
/// secret exists; a provider that has another key registered refuses, and the page says
/// which setting to check.
#[test]
fn sigil_signs_its_client_assertions_with_a_key_on_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let idp_cell: std::cell::RefCell<Option<Idp>> = std::cell::RefCell::new(None);
    let jwks_path = d.join("client.jwks");
    let s = ScepServer::start_tls_with(|token, port| {
        let make = || {
            ok(&token
                .sigil()
                .args(["identity", "client-key", "--certificate"])
                .arg(d.join("client.pem"))
                .output()
                .unwrap())
        };
        let jwks = make();
        // Made once: a second run prints the same key.
        assert_eq!(make(), jwks);
        let v: Value = serde_json::from_str(&jwks).unwrap();
        let key = &v["keys"][0];
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["alg"], "RS256");
        assert!(key.get("d").is_none(), "nothing private is printed: {key}");
        // The certificate written is the key's.
        let cert = X509::from_pem(&std::fs::read(d.join("client.pem")).unwrap()).unwrap();
        let rsa = cert.public_key().unwrap().rsa().unwrap();
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
            key["n"].as_str().unwrap()
        );
        std::fs::write(&jwks_path, &jwks).unwrap();
        let idp = Idp::start_with_client_jwks(
            &d,
            &format!("https://127.0.0.1:{port}/auth/oidc/callback"),
            &jwks_path,
        );
        let secret_line = format!(
            "client_secret_file = \"{}\"",
            d.join("oidc-secret").display()
        );
        let cfg = identity_config(&d, &idp.issuer).replace(
            &format!("client_id = \"sigil\"\n{secret_line}"),
            "client_id = \"sigil-pkjwt\"\nclient_key = \"sigil-oidc-client\"",
        );
        assert!(cfg.contains("client_key"), "{cfg}");
        *idp_cell.borrow_mut() = Some(idp);
        cfg
    });
    let mut idp = idp_cell.into_inner().unwrap();
    let mut b = Browser::new(&s, None);
    let page = b.oidc_sign_in(&s.base, "oscar");
    assert_eq!(page.status, 200, "{}\n{}", page.body, s.log());
    assert_eq!(roles(&b.session(&s.base).unwrap()), vec!["officer", "user"]);

    // The provider now holds another key for Sigil: the code exchange is refused, and the
    // page names Sigil's own credentials, not the person, as the problem.
    let other = crate::idp::new_jwk("someone-else");
    let public: serde_json::Map<String, Value> = other
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| ["kty", "n", "e", "kid", "alg", "use"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    std::fs::write(&jwks_path, json!({"keys": [public]}).to_string()).unwrap();
    idp.restart();
    let mut b = Browser::new(&s, None);
    let page = b.oidc_sign_in(&s.base, "oscar");
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("invalid_client"), "{}", page.body);
    assert!(page.body.contains("client key"), "{}", page.body);
    assert_eq!(b.session(&s.base).unwrap_err(), 401);
}

fn roles(v: &Value) -> Vec<String> {
    let mut r: Vec<String> = v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    r.sort();
    r
}

#[test]
fn people_sign_in_with_the_identity_provider_and_their_groups_give_their_roles() {
    let (s, mut idp, _dir) = start();
    let base = s.base.clone();
    for (user, want) in [
        ("alice", vec!["admin", "officer", "user"]),
        ("oscar", vec!["officer", "user"]),
        ("ursula", vec!["user"]),
    ] {
        let mut b = Browser::new(&s, None);
        let page = b.oidc_sign_in(&base, user);
        assert_eq!(page.status, 200, "{user}: {}\n{}", page.body, s.log());
        assert!(page.body.contains("Signed in as"), "{}", page.body);
        let who = b.session(&base).unwrap();
        assert_eq!(roles(&who), want, "{user}");
        assert!(who["actor"]
            .as_str()
            .unwrap()
            .starts_with(&format!("oidc:{}#", idp.issuer)));
    }
    // Oscar's provider writes his email with capitals: Sigil keeps it in lower case.
    let mut b = Browser::new(&s, None);
    b.oidc_sign_in(&base, "oscar");
    assert_eq!(b.session(&base).unwrap()["email"], "oscar@agency.test");

    // A person none of whose groups gives a role: refused, and told which groups would.
    let mut nora = Browser::new(&s, None);
    let page = nora.oidc_sign_in(&base, "nora");
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("gives no role in Sigil"),
        "{}",
        page.body
    );
    assert!(page.body.contains("sigil-officers"), "{}", page.body);
    assert_eq!(nora.session(&base).unwrap_err(), 401);

    // ID tokens tampered with on the way: each refused, saying why.
    for (t, want) in [
        (Tamper::Forged, "published keys"),
        (Tamper::Expired, "has expired"),
        (Tamper::OtherAudience, "issued for another application"),
    ] {
        idp.set_tamper(t);
        let mut b = Browser::new(&s, None);
        let page = b.oidc_sign_in(&base, "ursula");
        assert_eq!(page.status, 401, "{t:?}: {}", page.body);
        assert!(page.body.contains(want), "{t:?}: {}", page.body);
        assert_eq!(b.session(&base).unwrap_err(), 401, "{t:?}");
    }
    idp.set_tamper(Tamper::Pass);

    // The answer of a sign-in replayed (the code and state in the callback URL): refused.
    let mut b = Browser::new(&s, None);
    assert_eq!(b.oidc_sign_in(&base, "ursula").status, 200);
    let callback = b
        .visited
        .iter()
        .find(|u| u.contains("/auth/oidc/callback"))
        .unwrap()
        .clone();
    for mut again in [Browser::new(&s, None), b] {
        let page = again.get(&callback);
        assert_eq!(page.status, 401, "{}", page.body);
        assert!(page.body.contains("already used"), "{}", page.body);
    }

    // The provider's "no" (or anyone's link posing as it): refused, the page naming the
    // standard code only; the words in the link go to the record, not onto the page.
    for (query, shown) in [
        (
            "error=access_denied&error_description=Call+555-0100+to+restore+access",
            "access_denied",
        ),
        (
            "error=Your+account+is+locked.+Call+555-0100",
            "do not define",
        ),
    ] {
        let page = Browser::new(&s, None).get(&format!("{base}/auth/oidc/callback?{query}"));
        assert_eq!(page.status, 401, "{}", page.body);
        assert!(
            page.body.contains(shown) && !page.body.contains("555-0100"),
            "{}",
            page.body
        );
    }

    // The provider rotates its signing key: Sigil reads its keys again and signs people in.
    idp.rotate_keys();
    let mut b = Browser::new(&s, None);
    let page = b.oidc_sign_in(&base, "ursula");
    assert_eq!(page.status, 200, "{}\n{}", page.body, s.log());
    assert_eq!(roles(&b.session(&base).unwrap()), vec!["user"]);

    // On the record: who signed in, and every refusal with its reason.
    let log = s.audit_log();
    assert!(log
        .iter()
        .any(|r| r["action"] == "signed_in" && r["actor"].as_str().unwrap().ends_with("#alice")));
    let refusals: Vec<String> = log
        .iter()
        .filter(|r| r["action"] == "sign_in_refused")
        .map(|r| r["details"].as_str().unwrap_or_default().to_string())
        .collect();
    for want in [
        "gives no role",
        "published keys",
        "expired",
        "another application",
        "already used",
        "access_denied (as given in the link, unverified: Call 555-0100 to restore access)",
        "unverified: error `Your account is locked. Call 555-0100`",
    ] {
        assert!(
            refusals.iter().any(|d| d.contains(want)),
            "{want} not audited: {refusals:?}"
        );
    }
}

#[test]
fn sessions_need_their_csrf_token_and_end_at_sign_out() {
    let (s, _idp, _dir) = start();
    let base = s.base.clone();
    let mut ursula = Browser::new(&s, None);
    assert_eq!(ursula.oidc_sign_in(&base, "ursula").status, 200);
    // The session cookie can only be set by this host over TLS, for the whole site, and is
    // out of scripts' and other sites' reach (`__Host-`: Secure, Path=/, no Domain); the
    // sign-in's binding cookie too, so a sibling subdomain cannot plant one (login CSRF).
    let session = ursula
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-sigil_session="))
        .unwrap_or_else(|| panic!("{:?}", ursula.set_cookies));
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(session.split("; ").any(|a| a == attr), "{attr}: {session}");
    }
    assert!(!session.contains("Domain"), "{session}");
    assert!(
        ursula
            .set_cookies
            .iter()
            .any(|c| c.starts_with("__Host-sigil_login=")
                && c.contains("Secure")
                && c.split("; ").any(|a| a == "Path=/")
                && !c.contains("Domain")),
        "{:?}",
        ursula.set_cookies
    );
    let who = ursula.session(&base).unwrap();
    let csrf = who["csrf"].as_str().unwrap().to_string();
    // Self-service: Ursula starts her own registration, no token handed out. Without the
    // session's CSRF token, a request that changes something is refused.
    let url = format!("{base}/api/v1/registrations");
    let body = json!({"credential": "derived"});
    let (status, answer) = ursula.api("POST", &url, None, Some(body.clone()));
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"], "csrf");
    let (status, answer) = ursula.api("POST", &url, Some("wrong"), Some(body.clone()));
    assert_eq!(status, 403, "{answer}");
    let (status, reg) = ursula.api("POST", &url, Some(&csrf), Some(body));
    assert_eq!(status, 201, "{reg}");
    assert_eq!(reg["email"], "ursula@agency.test");
    assert!(reg["devices"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["id"] == "ursula-phone"));
    // Someone else's registration is not hers to file.
    let (status, _) = ursula.api(
        "POST",
        &url,
        Some(&csrf),
        Some(json!({"email": "oscar@agency.test", "credential": "derived"})),
    );
    assert_eq!(status, 403);
    // A NUL character in a console form or a JSON string: refused with why, nothing written
    // (PostgreSQL refuses it, which would otherwise read as the store being down: a 503).
    let r = ursula
        .http
        .post(format!("{base}/console/me/registrations"))
        .form(&[("csrf", csrf.as_str()), ("credential", "der\0ived")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("NUL character"));
    let (status, answer) = ursula.api(
        "POST",
        &url,
        Some(&csrf),
        Some(json!({"credential": "der\u{0}ived"})),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "nul_character");
    // The registration's actor is Ursula, not a token.
    assert!(s
        .audit_log()
        .iter()
        .any(|r| r["action"] == "registration_created"
            && r["actor"].as_str().unwrap().ends_with("#ursula")));
    // Sign-out needs the token too, and ends the session.
    let out = ursula
        .http
        .post(format!("{base}/auth/logout"))
        .send()
        .unwrap();
    assert_eq!(out.status(), 403);
    let out = ursula
        .http
        .post(format!("{base}/auth/logout"))
        .header("x-csrf-token", &csrf)
        .send()
        .unwrap();
    assert_eq!(out.status(), 200);
    assert_eq!(ursula.session(&base).unwrap_err(), 401);
    let (status, _) = ursula.api("GET", &format!("{base}/api/v1/registrations"), None, None);
    assert_eq!(status, 401);
    // Starting sign-ins is bounded per address (each keeps its state until the provider sends
    // the person back): generous for an office behind one address, then 429 for a minute.
    let starts = Browser::new(&s, None);
    let mut statuses = Vec::new();
    for _ in 0..130 {
        let r = starts
            .http
            .get(format!("{base}/auth/oidc/login"))
            .send()
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "60");
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses.len() > 100 && statuses[..statuses.len() - 1].iter().all(|s| *s == 302),
        "{statuses:?}"
    );
}

/// A signed-in person's browser and CSRF token.
pub(crate) fn signed_in(s: &ScepServer, user: &str) -> (Browser, String) {
    let mut b = Browser::new(s, None);
    let page = b.oidc_sign_in(&s.base, user);
    assert_eq!(page.status, 200, "{user}: {}", page.body);
    let csrf = b.session(&s.base).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    (b, csrf)
}

#[test]
fn the_two_person_rule_holds_between_people_whatever_tokens_or_names_they_use() {
    let (s, _idp, _dir) = start();
    let base = s.base.clone();
    let (alice, alice_csrf) = signed_in(&s, "alice");
    let (adam, adam_csrf) = signed_in(&s, "adam");
    let (oscar, oscar_csrf) = signed_in(&s, "oscar");
    let (olga, olga_csrf) = signed_in(&s, "olga");

    // An admin cannot mint an officer alone: the token waits for a second admin, and the
    // admin who asked for it cannot be that second admin.
    let (status, t) = alice.api(
        "POST",
        &format!("{base}/api/v1/tokens"),
        Some(&alice_csrf),
        Some(json!({"role": "officer", "name": "script"})),
    );
    assert_eq!(status, 201, "{t}");
    assert_eq!(t["awaiting_approval"], true);
    let officer_token = t["token"].as_str().unwrap().to_string();
    let try_token = |tok: &str| {
        s.http
            .get(format!("{base}/api/v1/approvals"))
            .bearer_auth(tok)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(try_token(&officer_token), 401, "works before approval");
    let approve = format!("{base}/api/v1/tokens/{}/approve", t["id"].as_str().unwrap());
    let (status, why) = alice.api("POST", &approve, Some(&alice_csrf), None);
    assert_eq!(status, 403, "{why}");
    assert!(why["message"].as_str().unwrap().contains("two admins"));
    assert_eq!(try_token(&officer_token), 401);
    let (status, _) = adam.api("POST", &approve, Some(&adam_csrf), None);
    assert_eq!(status, 204);
    assert_eq!(try_token(&officer_token), 200);
    // The listing shows whose token it is and who let it work.
    let (status, list) = adam.api("GET", &format!("{base}/api/v1/tokens"), None, None);
    assert_eq!(status, 200, "{list}");
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == t["id"])
        .unwrap()
        .clone();
    assert!(
        listed["owner"].as_str().unwrap().starts_with("oidc:"),
        "{listed}"
    );
    assert_eq!(listed["awaiting_approval"], false);
    assert_ne!(listed["approved_by"], listed["owner"], "{listed}");
    assert!(listed["approved_by"].as_str().unwrap().starts_with("oidc:"));
    // The break-glass token from `sigil init` alone cannot either.
    let made = s
        .http
        .post(format!("{base}/api/v1/tokens"))
        .bearer_auth(&s.admin)
        .json(&json!({"role": "admin", "name": "second"}))
        .send()
        .unwrap();
    // The break-glass token makes no admin or officer at all: people sign in.
    assert_eq!(made.status(), 403);
    let made: Value = made.json().unwrap();
    assert!(
        made["message"].as_str().unwrap().contains("break-glass"),
        "{made}"
    );
    assert!(
        s.audit_log()
            .iter()
            .any(|r| r["action"] == "break_glass_used"),
        "every use of the break-glass token is on the record"
    );
    // Nor is it the second admin for a person's request: whoever holds it and signs in as an
    // admin would otherwise be both admins.
    let (status, t) = alice.api(
        "POST",
        &format!("{base}/api/v1/tokens"),
        Some(&alice_csrf),
        Some(json!({"role": "officer", "name": "script-2"})),
    );
    assert_eq!(status, 201, "{t}");
    let waiting = t["token"].as_str().unwrap().to_string();
    let approved = s
        .http
        .post(format!(
            "{base}/api/v1/tokens/{}/approve",
            t["id"].as_str().unwrap()
        ))
        .bearer_auth(&s.admin)
        .send()
        .unwrap();
    assert_eq!(approved.status(), 403);
    let why: Value = approved.json().unwrap();
    assert!(
        why["message"].as_str().unwrap().contains("break-glass"),
        "{why}"
    );
    assert_eq!(try_token(&waiting), 401, "still waiting");

    // The same person through two tokens: Alice's integration token mints the challenge of a
    // PENDING enrollment; Alice, signed in as an officer, cannot approve it.
    let (status, t) = alice.api(
        "POST",
        &format!("{base}/api/v1/tokens"),
        Some(&alice_csrf),
        Some(json!({"role": "mdm", "name": "alice-mdm", "profiles": ["approval"]})),
    );
    assert_eq!(status, 201, "{t}");
    let mdm = t["token"].as_str().unwrap().to_string();
    let (status, _) = adam.api(
        "POST",
        &format!("{base}/api/v1/tokens/{}/approve", t["id"].as_str().unwrap()),
        Some(&adam_csrf),
        None,
    );
    assert_eq!(status, 204);
    let challenge: Value = s
        .http
        .post(format!("{base}/api/v1/challenges"))
        .bearer_auth(&mdm)
        .json(&json!({"profile": "approval"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let challenge = challenge["challenge"].as_str().unwrap().to_string();
    let e = crate::scep::enroll(
        &s,
        "approval",
        "two-tokens-device",
        Some(&challenge),
        sigil::scep::ContentCipher::Aes128Cbc,
        sigil::scep::DigestAlg::Sha256,
        false,
    );
    assert_eq!(e.1.status, sigil::scep::PkiStatus::Pending);
    let (_, queue) = oscar.api("GET", &format!("{base}/api/v1/approvals"), None, None);
    let id = queue
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["kind"] == "enrollment")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let approve = format!("{base}/api/v1/approvals/{id}/approve");
    let (status, why) = alice.api("POST", &approve, Some(&alice_csrf), Some(json!({})));
    assert_eq!(status, 403, "{why}");
    // Nor through a token made by a token of hers: a host admin token named for her makes an
    // officer token (Adam approves it); that token is still Alice.
    let (host_admin, _) = s.host_token("admin", "Alice@Agency.test");
    let made: Value = s
        .http
        .post(format!("{base}/api/v1/tokens"))
        .bearer_auth(&host_admin)
        .json(&json!({"role": "officer", "name": "laundered"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let (status, _) = adam.api(
        "POST",
        &format!(
            "{base}/api/v1/tokens/{}/approve",
            made["id"].as_str().unwrap()
        ),
        Some(&adam_csrf),
        None,
    );
    assert_eq!(status, 204);
    let r = s
        .http
        .post(&approve)
        .bearer_auth(made["token"].as_str().unwrap())
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let why: Value = r.json().unwrap();
    assert!(why["message"].as_str().unwrap().contains("minted"), "{why}");
    let (status, ok) = oscar.api("POST", &approve, Some(&oscar_csrf), Some(json!({})));
    assert_eq!(status, 200, "{ok}");

    // Olga files a registration for Oscar (whose provider writes his email with capitals).
    // Olga files a request for a person's device: the registration's id.
    let filed = |email: &str, device: &str| {
        let (status, reg) = olga.api(
            "POST",
            &format!("{base}/api/v1/registrations"),
            Some(&olga_csrf),
            Some(json!({"email": email, "credential": "derived"})),
        );
        assert_eq!(status, 201, "{reg}");
        let rid = reg["id"].as_str().unwrap().to_string();
        let (status, r) = olga.api(
            "POST",
            &format!("{base}/api/v1/registrations/{rid}/request"),
            Some(&olga_csrf),
            Some(json!({"device_id": device})),
        );
        assert_eq!(status, 200, "{r}");
        rid
    };
    let rid = filed("OSCAR@agency.test", "oscar-phone");
    // Oscar cannot approve his own credential, whatever the case of his email ...
    let (status, why) = oscar.api(
        "POST",
        &format!("{base}/api/v1/registrations/{rid}/approve"),
        Some(&oscar_csrf),
        Some(json!({})),
    );
    assert_eq!(status, 403, "{why}");
    assert!(
        why["message"].as_str().unwrap().contains("own credential"),
        "{why}"
    );
    // ... and Olga, who filed it, cannot approve it through the approvals queue either.
    let (status, why) = olga.api(
        "POST",
        &format!("{base}/api/v1/approvals/{rid}/approve"),
        Some(&olga_csrf),
        Some(json!({})),
    );
    assert_eq!(status, 403, "{why}");
    assert!(why["message"].as_str().unwrap().contains("filed"), "{why}");
    // Alice (an officer too, and neither) can.
    let (status, done) = alice.api(
        "POST",
        &format!("{base}/api/v1/approvals/{rid}/approve"),
        Some(&alice_csrf),
        Some(json!({"comment": "checked"})),
    );
    assert_eq!(status, 200, "{done}");
    // Nor does a token of one's own approve one's own credential when the token's name is not
    // the email: Alice's officer token "script" is still Alice.
    let rid = filed("alice@agency.test", "alice-phone");
    let r = s
        .http
        .post(format!("{base}/api/v1/registrations/{rid}/approve"))
        .bearer_auth(&officer_token)
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let why: Value = r.json().unwrap();
    assert!(
        why["message"].as_str().unwrap().contains("own credential"),
        "{why}"
    );
    // Each refusal is on the record, with the person who tried.
    let refused: Vec<Value> = s
        .audit_log()
        .into_iter()
        .filter(|r| r["action"] == "approval_refused")
        .collect();
    assert!(refused.len() >= 4, "{refused:?}");
    assert!(refused
        .iter()
        .any(|r| r["actor"].as_str().unwrap().ends_with("#olga")));
}

/// `identity.grants = "idp"`: admin, officer and auditor come only from the identity
/// provider's groups; no token can grant them, not even the break-glass one. Integration
/// tokens still wait for a second admin.
#[test]
fn with_grants_from_the_identity_provider_no_token_makes_an_officer() {
    let s = ScepServer::start_with("\n[identity]\ngrants = \"idp\"\n");
    for role in ["admin", "officer", "auditor"] {
        let r = s
            .http
            .post(format!("{}/api/v1/tokens", s.base))
            .bearer_auth(&s.admin)
            .json(&json!({"role": role, "name": "x"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 403, "{role}");
        let why: Value = r.json().unwrap();
        assert!(
            why["message"]
                .as_str()
                .unwrap()
                .contains("granted by the identity provider"),
            "{why}"
        );
    }
    let (admin, _) = s.host_token("admin", "host admin");
    let r = s
        .http
        .post(format!("{}/api/v1/tokens", s.base))
        .bearer_auth(&admin)
        .json(&json!({"role": "mdm", "name": "jamf", "profiles": ["default"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let made: Value = r.json().unwrap();
    assert_eq!(made["awaiting_approval"], true);
}

/// The break-glass token is no person: its holder may also sign in as an admin or an officer,
/// so it starts nothing a second person approves. It asks for no token that waits for a second
/// admin and makes no user token (whose filings an officer approves), and mints no challenge
/// whose enrollment an officer approves; an auditor token, and a challenge that enrolls at once,
/// it still makes.
#[test]
fn the_break_glass_token_starts_nothing_a_second_person_approves() {
    let s = ScepServer::start();
    let post = |path: &str, body: &Value| {
        let r = s
            .http
            .post(format!("{}{path}", s.base))
            .bearer_auth(&s.admin)
            .json(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or(Value::Null))
    };
    for body in [
        json!({"role": "mdm", "name": "jamf", "profiles": ["*"], "directories": ["*"]}),
        json!({"role": "user", "name": "victim@agency.gov"}),
    ] {
        let (status, why) = post("/api/v1/tokens", &body);
        assert_eq!(status, 403, "{body}: {why}");
        assert!(
            why["message"].as_str().unwrap().contains("break-glass"),
            "{why}"
        );
    }
    let (status, made) = post(
        "/api/v1/tokens",
        &json!({"role": "auditor", "name": "assessor"}),
    );
    assert_eq!(status, 201, "{made}");
    let (status, why) = post(
        "/api/v1/challenges",
        &json!({"profile": "approval", "cn": "anything"}),
    );
    assert_eq!(status, 403, "{why}");
    assert!(
        why["message"]
            .as_str()
            .unwrap()
            .contains("an officer approves"),
        "{why}"
    );
    let (status, minted) = post("/api/v1/challenges", &json!({"profile": "default"}));
    assert_eq!(status, 201, "{minted}");
}
