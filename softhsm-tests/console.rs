//! The console in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromium-driver, with the `fantoccini` crate), people signing in at the real OpenID
//! provider (`idp.rs`), devices from the Intune fake (`fake_mdm.rs`), axe-core run on every
//! page (no WCAG 2.1 A/AA violation), and a screenshot of every page under
//! `target/console-screenshots/`. `softhsm-tests/console/install.sh` installs the browser and
//! axe-core.
//!
//! Over 800 lines: one browser session walks the whole story (sign-in, registration, approval,
//! enrollment, revocation, administration) and the refusals along it; split, each part would
//! start the browser, the provider and the server again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspRequest, OcspResponse};
use openssl::x509::{X509Crl, X509};
use serde_json::{json, Value};

use crate::common::{free_port, root};
use crate::fake_mdm::{self, CLIENT_ID as MDM_CLIENT, CLIENT_SECRET as MDM_SECRET};
use crate::idp::{password, Idp, CLIENT_SECRET};
use crate::scep::ScepServer;

/// A headless Chromium, driven synchronously.
struct Chrome {
    rt: tokio::runtime::Runtime,
    client: Client,
    driver: Child,
    shots: PathBuf,
    axe: String,
    /// Pages axe checked.
    checked: Vec<String>,
    /// The OpenID provider people sign in at.
    issuer: Option<String>,
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let c = self.client.clone();
        let _ = self.rt.block_on(c.close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Chrome {
    fn start() -> Chrome {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (softhsm-tests/console/install.sh installs it)");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--window-size=1280,1100"]}),
        );
        // Sigil's TLS certificate comes from its own transport CA.
        caps.insert("acceptInsecureCerts".into(), json!(true));
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match rt.block_on(
                ClientBuilder::native()
                    .capabilities(caps.clone())
                    .connect(&format!("http://127.0.0.1:{port}")),
            ) {
                Ok(c) => break c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "chromedriver: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        let shots = root().join("target/console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let axe =
            std::fs::read_to_string(root().join("target/axe/node_modules/axe-core/axe.min.js"))
                .expect("axe-core (softhsm-tests/console/install.sh installs it)");
        Chrome {
            rt,
            client,
            driver,
            shots,
            axe,
            checked: Vec::new(),
            issuer: None,
        }
    }

    fn goto(&self, url: &str) {
        self.rt.block_on(self.client.goto(url)).unwrap();
    }

    fn url(&self) -> String {
        self.rt
            .block_on(self.client.current_url())
            .unwrap()
            .to_string()
    }

    fn source(&self) -> String {
        self.rt.block_on(self.client.source()).unwrap()
    }

    /// The text people see.
    fn text(&self) -> String {
        self.js("return document.body.innerText;")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn js(&self, script: &str) -> Value {
        self.rt
            .block_on(self.client.execute(script, vec![]))
            .unwrap()
    }

    /// Click what `css` finds and wait for the next page.
    fn click(&self, css: &str) {
        let el = self
            .rt
            .block_on(self.client.find(Locator::Css(css)))
            .unwrap_or_else(|e| panic!("`{css}` not on {}: {e}\n{}", self.url(), self.text()));
        self.mark();
        self.rt.block_on(el.click()).unwrap();
        self.wait_for_next_page();
    }

    /// Run a script that leaves the page (a form it submits), and wait for the next one.
    fn js_leave(&self, script: &str) {
        self.mark();
        self.js(script);
        self.wait_for_next_page();
    }

    fn mark(&self) {
        self.js("window.__sigilPage = 'old'; return true;");
    }

    fn wait_for_next_page(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.rt.block_on(self.client.execute(
                "return (window.__sigilPage === undefined) && document.readyState === 'complete';",
                vec![],
            ));
            if matches!(v, Ok(Value::Bool(true))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no next page after {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self
            .rt
            .block_on(self.client.find(Locator::Css(css)))
            .unwrap();
        self.rt.block_on(el.send_keys(text)).unwrap();
    }

    fn title(&self) -> String {
        self.rt.block_on(self.client.title()).unwrap()
    }

    /// Run axe-core on the page: no WCAG 2.1 A or AA violation. Then a screenshot.
    fn check(&mut self, name: &str) {
        self.js(&format!("{}\nreturn true;", self.axe));
        let found = self
            .rt
            .block_on(self.client.execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
                    .then(r => done(JSON.stringify(r.violations.map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.html)})))))
                    .catch(e => done('axe failed: ' + e));",
                vec![],
            ))
            .unwrap();
        let found = found.as_str().unwrap_or_default().to_string();
        assert_eq!(found, "[]", "axe on {name} ({}):\n{found}", self.url());
        let png = self.rt.block_on(self.client.screenshot()).unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
        self.checked.push(name.to_string());
    }

    /// Sign in at the provider as `user` from the console's sign-in page (the provider's
    /// own session of the person before is forgotten first: another person at the keyboard).
    fn sign_in(&mut self, base: &str, user: &str) {
        if let Some(issuer) = &self.issuer {
            self.goto(&format!("{issuer}/.well-known/openid-configuration"));
            self.rt.block_on(self.client.delete_all_cookies()).unwrap();
        }
        self.goto(&format!("{base}/console/"));
        self.click("a[href^='/auth/oidc/login']");
        // The provider's form (strict interactions: login and password).
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.url().starts_with(&format!("{base}/console")) {
            assert!(
                Instant::now() < deadline,
                "stuck at {}: {}",
                self.url(),
                self.text()
            );
            if self.url().contains("/interaction/") {
                let page = self.source();
                if page.contains("name=\"password\"") {
                    self.type_into("input[name=login]", user);
                    self.type_into("input[name=password]", &password(user));
                }
                self.click("button[type=submit]");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn sign_out(&self) {
        self.click("form[action='/console/sign-out'] button");
    }
}

/// The button that requests Oscar's phone.
const PHONE: &str = "form:has(input[value='dev-oscar-phone']) button";

fn config(dir: &Path, issuer: &str, mdm_url: &str) -> String {
    let secret = dir.join("oidc-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let mdm_secret = dir.join("mdm-secret");
    std::fs::write(&mdm_secret, MDM_SECRET).unwrap();
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
allowed_sans = ["email", "upn"]

[directories.intune]
kind = "intune"
base_url = "{mdm_url}"
token_url = "{mdm_url}/tenant-1/oauth2/v2.0/token"
tenant_id = "tenant-1"
client_id = "{MDM_CLIENT}"
client_secret_file = "{mdm_secret}"
timeout_secs = 2
retries = 1

[credentials.derived]
description = "Derived PIV authentication"
profile = "derived"
directory = "intune"
subject = "CN={{user}} {{serial_number}},O=Agency"
sans = ["email:{{email}}"]
require_compliant = false

[credentials.derived.push]
group_id = "grp-derived"
retry_secs = 1
"#,
        secret = secret.display(),
        mdm_secret = mdm_secret.display(),
    )
}

/// The OCSP status of `serial`'s certificate, asked over HTTPS.
pub(crate) fn ocsp_revoked(s: &ScepServer, cert: &X509) -> bool {
    let ca = X509::from_der(&s.ca).unwrap();
    let id = OcspCertId::from_cert(openssl::hash::MessageDigest::sha1(), cert, &ca).unwrap();
    let mut req = OcspRequest::new().unwrap();
    req.add_id(id).unwrap();
    let der = s
        .http
        .post(format!("{}/ocsp", s.base))
        .header("content-type", "application/ocsp-request")
        .body(req.to_der().unwrap())
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let resp = OcspResponse::from_der(&der).unwrap().basic().unwrap();
    let id = OcspCertId::from_cert(openssl::hash::MessageDigest::sha1(), cert, &ca).unwrap();
    let status = resp.find_status(&id).unwrap();
    status.status == OcspCertStatus::REVOKED
}

pub(crate) fn crl_lists(s: &ScepServer, serial: &[u8]) -> bool {
    let der = s
        .http
        .get(format!("{}/crl/sigil-ca.crl", s.base))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let crl = X509Crl::from_der(&der).unwrap();
    crl.get_revoked().is_some_and(|list| {
        list.iter()
            .any(|r| r.serial_number().to_bn().unwrap().to_vec() == serial)
    })
}

/// The whole walk in the browser, from a person's sign-in to the revocation that CRL and
/// OCSP report, with the refusals along the way.
#[test]
fn a_person_registers_an_officer_decides_and_revokes_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (mdm, graph) = crate::fake_push::intune(
        vec![
            fake_mdm::intune_device(
                "dev-oscar-phone",
                "oscar@agency.test",
                "Oscar's iPhone",
                "iOS",
                "compliant",
                "F2OSC1",
                "00008110-000A",
            ),
            fake_mdm::intune_device(
                "dev-oscar-script",
                "oscar@agency.test",
                "<script>alert('pwned')</script><img src=x onerror=alert(1)>",
                "Windows",
                "noncompliant",
                "F2OSC2",
                "00008110-000B",
            ),
            fake_mdm::intune_device(
                "dev-ursula-phone",
                "ursula@agency.test",
                "Ursula's iPhone",
                "iOS",
                "compliant",
                "F2URS1",
                "00008110-000C",
            ),
        ],
        &["dev-oscar-phone", "dev-oscar-script", "dev-ursula-phone"],
        "grp-derived",
    );
    let idp_cell: std::cell::RefCell<Option<Idp>> = std::cell::RefCell::new(None);
    let s = ScepServer::start_tls_with(|_, port| {
        let idp = Idp::start(&d, &format!("https://127.0.0.1:{port}/auth/oidc/callback"));
        let cfg = config(&d, &idp.issuer, &mdm.url);
        *idp_cell.borrow_mut() = Some(idp);
        cfg
    });
    let idp = idp_cell.into_inner().unwrap();
    let base = s.base.clone();
    let mut b = Chrome::start();
    b.issuer = Some(idp.issuer.clone());

    // Signed out: the sign-in page, and any console page leads there.
    b.goto(&format!("{base}/console/me"));
    assert!(b.url().ends_with("/console/"), "{}", b.url());
    assert!(b.text().contains("Sign in with your agency account"));
    b.check("sign-in");

    // Oscar (an officer who is also staff) signs in and registers his own phone.
    b.sign_in(&base, "oscar");
    assert!(b.text().contains("Signed in as"), "{}", b.text());
    b.check("home");
    b.click("a[href='/console/me']");
    b.check("me-empty");
    b.click("form[action='/console/me/registrations'] button");
    assert!(
        b.url().contains("/console/registrations/reg_"),
        "{}",
        b.url()
    );
    let registration = b.url();
    let text = b.text();
    assert!(text.contains("Oscar's iPhone"), "{text}");
    assert!(
        text.contains("non-compliant"),
        "the flags are explained: {text}"
    );
    // The device name with script in it is shown as text, and nothing runs.
    assert!(
        text.contains("<script>alert('pwned')</script>"),
        "shown as text: {text}"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('script, img').length;"),
        json!(0)
    );
    b.check("registration-open");

    // A tampered hidden field: another person's device is refused, and nothing changes.
    b.js_leave(
        "const i = document.querySelector(\"input[name=device_id][value='dev-oscar-phone']\");
         i.value = 'dev-ursula-phone'; i.form.submit();",
    );
    assert!(b.title().starts_with("Not accepted"), "{}", b.text());
    assert!(b.text().contains("dev-ursula-phone"), "{}", b.text());
    b.check("refused-tampered-device");

    // A forged CSRF token: refused, nothing done.
    b.goto(&registration);
    b.js("document.querySelectorAll('input[name=csrf]').forEach(i => i.value = 'forged'); return true;");
    b.click(PHONE);
    assert_eq!(b.title(), "This form is not from your session · Sigil");
    b.check("refused-csrf");
    b.goto(&registration);
    assert!(b.text().contains("Started"), "nothing moved: {}", b.text());

    // He requests his phone.
    b.click(PHONE);
    assert!(
        b.text().contains("Waiting for a security officer"),
        "{}",
        b.text()
    );
    // As an officer he sees the two-person rule before he tries, and is refused when he does.
    assert!(
        b.text()
            .contains("This credential is for you, so another officer must decide."),
        "{}",
        b.text()
    );
    b.check("registration-requested");
    b.type_into("#approve-comment", "my own");
    b.click("form[action$='/approve'] button");
    assert_eq!(b.title(), "Not allowed · Sigil", "{}", b.text());
    assert!(b.text().contains("cannot approve"), "{}", b.text());
    b.check("refused-two-person");
    b.sign_out();
    assert!(b.text().contains("You are signed out"));
    b.check("signed-out");
    // After sign-out, a form of the old session does nothing.
    b.goto(&registration);
    assert!(b.url().ends_with("/console/"), "{}", b.url());

    // Olga, a second officer, finds it on the desk and approves.
    b.sign_in(&base, "olga");
    b.click("a[href='/console/desk']");
    let desk = b.text();
    assert!(desk.contains("oscar@agency.test"), "{desk}");
    assert!(
        desk.contains("CN=oscar F2OSC1,O=Agency"),
        "the whole subject: {desk}"
    );
    assert!(
        desk.contains("email:oscar@agency.test"),
        "and the SANs: {desk}"
    );
    b.check("desk");
    b.goto(&registration);
    let approve_form = b.source();
    assert!(approve_form.contains("Approve"));
    b.type_into("#approve-comment", "asset register checked");
    b.click("form[action$='/approve'] button");
    assert!(b.text().contains("Approved"), "{}", b.text());
    b.check("registration-approved");
    // Sigil asks Intune to deliver: the registration page says where that stands.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        b.goto(&registration);
        if b.text()
            .contains("device obj-dev-oscar-phone added to group grp-derived")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", b.text());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        b.text().contains("Delivery through the MDM"),
        "{}",
        b.text()
    );
    assert!(b.text().contains("deliver the credential profile"));
    assert_eq!(graph.members(), vec!["obj-dev-oscar-phone".to_string()]);
    b.check("registration-pushed");
    // The same form sent again: refused, it has moved on.
    b.js_leave(&format!(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '{}/approve';
         const c = document.createElement('input'); c.name = 'csrf'; c.value = document.querySelector('input[name=csrf]').value;
         f.appendChild(c); document.body.appendChild(f); f.submit();",
        registration.trim_end_matches('/')
    ));
    assert_eq!(b.title(), "Already moved on · Sigil", "{}", b.text());
    b.check("refused-replayed");

    // The MDM collects the payload and the device enrolls.
    let id = registration.rsplit('/').next().unwrap().to_string();
    let (mdm_token, _) = crate::api::new_token_with(
        &s,
        json!({"role": "mdm", "name": "intune", "directories": ["intune"]}),
    );
    let payload: Value = s
        .http
        .get(format!("{base}/api/v1/registrations/{id}/scep-payload"))
        .bearer_auth(&mdm_token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let challenge = payload["challenge"].as_str().expect("a challenge");
    let (_, _, reply) = crate::api::enroll_with(&s, "derived", "phone", challenge);
    assert_eq!(
        reply.status,
        sigil::scep::PkiStatus::Success,
        "{:?}",
        reply.fail_text
    );
    let cert = X509::from_der(&reply.certs[0]).unwrap();
    let serial = cert.serial_number().to_bn().unwrap().to_vec();

    // Oscar's page shows it.
    b.sign_out();
    b.sign_in(&base, "oscar");
    b.click("a[href='/console/me']");
    let mine = b.text();
    assert!(mine.contains(&hex::encode(&serial)), "{mine}");
    assert!(mine.contains("valid"), "{mine}");
    b.check("me-issued");
    b.sign_out();

    // Olga revokes it from the desk; OCSP says so at once and the CRL within seconds.
    assert!(!ocsp_revoked(&s, &cert));
    b.sign_in(&base, "olga");
    b.goto(&format!("{base}/console/desk?email=oscar%40agency.test"));
    assert!(b.text().contains(&hex::encode(&serial)), "{}", b.text());
    b.check("desk-search");
    b.click(&format!(
        "form[action='/console/certificates/{}/revoke'] button",
        hex::encode(&serial)
    ));
    assert!(ocsp_revoked(&s, &cert), "OCSP says revoked at once");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !crl_lists(&s, &serial) {
        assert!(Instant::now() < deadline, "the CRL does not list it");
        std::thread::sleep(Duration::from_millis(250));
    }

    // Administration, the audit log (which verifies), and the reports, each checked.
    b.sign_out();
    b.sign_in(&base, "alice");
    // Alice is an admin and an officer: on a registration she sees the officer's decisions.
    b.goto(&registration);
    assert!(b.text().contains("Decision"), "{}", b.text());
    b.click("a[href='/console/admin']");
    let admin = b.text();
    assert!(admin.contains("intune"), "{admin}");
    assert!(admin.contains("OCSP responder"), "{admin}");
    assert!(admin.contains("no rollover in progress"), "{admin}");
    let fingerprint = openssl::sha::sha256(&s.ca)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(admin.contains(&fingerprint), "the CA fingerprint: {admin}");
    b.check("admin");
    // A profile's enrollment values for Android and Windows SCEP profiles, as a page.
    b.click("a[href='/console/admin/profiles/default']");
    let values = b.text();
    assert!(values.contains(&format!("{base}/scep/default")), "{values}");
    assert!(
        values.contains(&hex::encode_upper(openssl::sha::sha1(&s.ca))),
        "the root's SHA-1 thumbprint: {values}"
    );
    b.check("profile-values");
    b.goto(&format!("{base}/console/admin/profiles/nope"));
    assert_eq!(b.title(), "No such profile · Sigil", "{}", b.text());
    b.goto(&format!("{base}/console/admin"));
    b.type_into("#token-name", "jamf");
    b.type_into("#token-profiles", "derived");
    b.click("form[action='/console/admin/tokens'] button");
    // A registration-only profile cannot be in an integration's scope.
    assert_eq!(b.title(), "Not made · Sigil", "{}", b.text());
    b.check("refused-token-scope");
    b.goto(&format!("{base}/console/admin"));
    b.type_into("#token-name", "jamf");
    b.type_into("#token-directories", "intune");
    b.type_into("#token-days", "30");
    b.click("form[action='/console/admin/tokens'] button");
    assert!(b.text().contains("shown only this once"), "{}", b.text());
    assert!(b.text().contains("second admin"), "{}", b.text());
    b.check("token-made");
    // Rotation: a replacement with the same scope, shown once; the old one still listed.
    b.goto(&format!("{base}/console/admin"));
    b.click("form[action$='/rotate'] button");
    assert!(b.text().contains("It replaces the token"), "{}", b.text());
    assert!(b.text().contains("shown only this once"), "{}", b.text());
    b.check("token-replaced");
    // The replacement lives as long as the token it replaces.
    let tokens: Value = s
        .http
        .get(format!("{base}/api/v1/tokens"))
        .bearer_auth(&s.admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let jamf: Vec<&Value> = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "jamf")
        .collect();
    assert_eq!(jamf.len(), 2, "{tokens}");
    for t in &jamf {
        assert!(t["expires_at"].is_string(), "{t}");
    }
    let jamf_id = jamf[0]["id"].as_str().unwrap().to_string();
    // On her own tokens' page Alice acts for herself, never as the admin she also is: no user
    // token named for someone else's email, whatever the form says.
    post_with_own_csrf(
        &b,
        &base,
        "/console/tokens",
        &[("role", "user"), ("name", "oscar@agency.test")],
    );
    assert_eq!(b.title(), "Not made · Sigil", "{}", b.text());
    assert!(b.text().contains("alice@agency.test"), "{}", b.text());
    b.goto(&format!("{base}/console/audit"));
    assert!(b.text().contains("Intact"), "{}", b.text());
    assert!(b.text().contains("registration_approved"), "{}", b.text());
    assert!(b.text().contains("registration_created"), "{}", b.text());
    b.check("audit");
    // The chain is checked by verification runs: a visit shows the latest one (younger than
    // ten minutes) instead of reading the whole log again, and "Verify now" runs one.
    // Shown by the node that ran it, not through a redirect that another node could answer.
    b.click("#verify-now");
    assert!(b.url().ends_with("/console/audit/verify"), "{}", b.url());
    assert!(b.text().contains("Intact"), "{}", b.text());
    assert!(b.text().contains("Checked at"), "{}", b.text());
    // The review is on the record, by the person who asked for it.
    assert!(b.text().contains("audit_verified"), "{}", b.text());
    let db = s.token.data().join("sigil.db");
    let original: String = {
        let c = rusqlite::Connection::open(&db).unwrap();
        let o = c
            .query_row("SELECT subject FROM audit_log WHERE seq = 2", [], |r| {
                r.get(0)
            })
            .unwrap();
        c.execute("UPDATE audit_log SET subject = 'forged' WHERE seq = 2", [])
            .unwrap();
        o
    };
    b.goto(&format!("{base}/console/audit"));
    assert!(
        b.text().contains("Intact"),
        "the latest run is shown, not a new one: {}",
        b.text()
    );
    b.click("#verify-now");
    assert!(b.text().contains("does not verify"), "{}", b.text());
    assert!(b.text().contains("record 2"), "{}", b.text());
    b.check("audit-broken");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE audit_log SET subject = ?1 WHERE seq = 2",
            [original],
        )
        .unwrap();
    b.click("#verify-now");
    assert!(b.text().contains("Intact"), "{}", b.text());
    // Filtered by the store: only the records whose action holds the text (any case).
    b.goto(&format!(
        "{base}/console/audit?action=Registration_Approved"
    ));
    assert!(b.text().contains("registration_approved"), "{}", b.text());
    assert!(!b.text().contains("registration_created"), "{}", b.text());
    b.goto(&format!("{base}/console/reports"));
    assert!(b.text().contains("Certificates expiring"), "{}", b.text());
    // Counted by the store: today's row (the last) of the issued table has this visit's
    // certificate (revoked since, still issued today).
    let source = b.source();
    let issued = source
        .split("<table id=\"issued-table\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("the issued table");
    let today = issued.rsplit("<tr>").next().unwrap_or_default();
    let total: u64 = today
        .rsplit("<td>")
        .next()
        .and_then(|c| c.split('<').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("today's total");
    assert!(total >= 1, "{today}");
    b.check("reports");
    // An officer's page for someone who is not: refused in words.
    b.sign_out();
    b.sign_in(&base, "ursula");
    b.goto(&format!("{base}/console/desk"));
    assert_eq!(b.title(), "Not for your role · Sigil");
    b.check("refused-role");
    // Her own API token, for a script: a user token named by her email, shown once, hers to
    // revoke; none in a role she lacks, whatever the form says.
    b.click("a[href='/console/tokens']");
    assert!(b.text().contains("no active API token"), "{}", b.text());
    b.check("my-tokens-empty");
    b.click("form[action='/console/tokens'] button");
    assert!(b.text().contains("shown only this once"), "{}", b.text());
    assert!(b.text().contains("ursula@agency.test"), "{}", b.text());
    b.check("my-token-made");
    let secret = b.js("return document.querySelector('#secret').value;");
    let secret = secret.as_str().unwrap().to_string();
    let registrations = |token: &str| {
        s.http
            .get(format!("{base}/api/v1/registrations"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(registrations(&secret), 200);
    b.click("a[href='/console/tokens']");
    assert!(b.text().contains("ursula@agency.test"), "{}", b.text());
    b.check("my-tokens");
    // Another person's token (Alice's integration token) is not hers to revoke.
    post_with_own_csrf(&b, &base, &format!("/console/tokens/{jamf_id}/revoke"), &[]);
    assert_eq!(b.title(), "Not found · Sigil", "{}", b.text());
    let still: Value = s
        .http
        .get(format!("{base}/api/v1/tokens"))
        .bearer_auth(&s.admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(still
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == jamf_id.as_str() && t["revoked_at"].is_null()));
    for role in ["officer", "admin", "mdm", "nonsense"] {
        post_with_own_csrf(
            &b,
            &base,
            "/console/tokens",
            &[("role", role), ("name", "x")],
        );
        assert_eq!(b.title(), "Not made · Sigil", "{role}: {}", b.text());
    }
    assert!(b.text().contains("Choose a role you hold"), "{}", b.text());
    b.goto(&format!("{base}/console/tokens"));
    b.click("form[action$='/revoke'] button");
    assert!(b.url().ends_with("/console/tokens"), "{}", b.url());
    assert!(b.text().contains("no active API token"), "{}", b.text());
    assert_eq!(registrations(&secret), 401);
    // A verification run is for admins and auditors: a user posting the form with her own
    // session's CSRF token is refused, and nothing is recorded.
    let reviews = || {
        s.audit_log()
            .iter()
            .filter(|r| r["action"] == "audit_verified")
            .count()
    };
    let before = reviews();
    assert!(before >= 3, "each Verify now above is recorded: {before}");
    post_with_own_csrf(&b, &base, "/console/audit/verify", &[]);
    assert_eq!(b.title(), "Not for your role · Sigil", "{}", b.text());
    assert_eq!(reviews(), before);
    // So is every other page and form of another role, and nothing is done.
    for page in [
        "/console/admin",
        "/console/audit",
        "/console/admin/profiles/derived",
    ] {
        b.goto(&format!("{base}{page}"));
        assert_eq!(
            b.title(),
            "Not for your role · Sigil",
            "{page}: {}",
            b.text()
        );
    }
    // What any of these forms would record had it been done.
    let records = || {
        s.audit_log()
            .iter()
            .filter(|r| {
                [
                    "token_created",
                    "revoked",
                    "approved",
                    "registration_approved",
                    "registration_revoked",
                ]
                .contains(&r["action"].as_str().unwrap_or(""))
            })
            .count()
    };
    let before = records();
    for (action, fields) in [
        (
            "/console/admin/tokens",
            &[("role", "officer"), ("name", "ursula-officer")][..],
        ),
        (
            "/console/devices/revoke",
            &[
                ("device_id", "intune:dev-oscar-phone"),
                ("reason", "keyCompromise"),
            ][..],
        ),
        (
            "/console/registrations/nonexistent/approve",
            &[("comment", "mine")][..],
        ),
    ] {
        post_with_own_csrf(&b, &base, action, fields);
        assert!(
            b.title() == "Not for your role · Sigil" || b.title() == "Not allowed · Sigil",
            "{action}: {} {}",
            b.title(),
            b.text()
        );
    }
    assert_eq!(records(), before, "nothing recorded, so nothing done");
    assert!(b.checked.len() >= 20, "{:?}", b.checked);
}

/// Post a form to `action` from the console's own page, with the session's CSRF token: what a
/// person who knows the form could send by hand.
fn post_with_own_csrf(b: &Chrome, base: &str, action: &str, fields: &[(&str, &str)]) {
    b.goto(&format!("{base}/console/me"));
    let inputs: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{{ const i = document.createElement('input'); i.type = 'hidden'; i.name = {}; i.value = {}; f.appendChild(i); }}",
                json!(k),
                json!(v)
            )
        })
        .collect();
    b.js_leave(&format!(
        "const f = document.createElement('form'); f.method = 'post'; f.action = {};
         const c = document.createElement('input'); c.type = 'hidden'; c.name = 'csrf';
         c.value = document.querySelector('input[name=csrf]').value; f.appendChild(c);
         {inputs}
         document.body.appendChild(f); f.submit();",
        json!(action)
    ));
}

/// Every console page carries the security headers; forms without a session or from another
/// site change nothing; the console is not framed.
#[test]
fn console_pages_carry_strict_headers_and_refuse_forms_without_a_session() {
    let s = ScepServer::start();
    let r = s.http.get(format!("{}/console/", s.base)).send().unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    for part in [
        "default-src 'none'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    let body = r.text().unwrap();
    assert!(!body.contains("<script"), "{body}");
    assert!(!body.contains("style="), "{body}");
    // No sign-in method configured: the page says how to set one.
    assert!(body.contains("[identity.oidc]"), "{body}");
    // A form posted without a session: refused with a page, nothing done.
    for (path, form) in [
        (
            "/console/me/registrations",
            [("csrf", "x"), ("credential", "derived")],
        ),
        ("/console/tokens", [("csrf", "x"), ("role", "user")]),
        (
            "/console/tokens/tok_x/revoke",
            [("csrf", "x"), ("role", "")],
        ),
    ] {
        let r = s
            .http
            .post(format!("{}{path}", s.base))
            .form(&form)
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.text().unwrap().contains("nothing was done"), "{path}");
    }
    // A page of the console for a person not signed in goes to the sign-in page.
    let r = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/console/desk", s.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/");
    // The stylesheet is Sigil's own.
    let r = s
        .http
        .get(format!("{}/console/static/console.css", s.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
}
