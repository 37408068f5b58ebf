//! The tests' browser without a browser engine: an HTTP client that keeps cookies, trusts
//! the test server's CA, follows redirects by hand (every hop seen), posts forms and signs in
//! through the OpenID provider; optionally with a client certificate (PIV). The console's own
//! tests drive headless Chromium instead (`console.rs`).

use std::time::Duration;

use serde_json::Value;

use crate::idp::password;
use crate::scep::ScepServer;

/// A browser: cookies, the server's TLS CA, redirects followed by hand (so every hop is
/// seen), optionally a client certificate.
pub struct Browser {
    pub http: reqwest::blocking::Client,
    /// Every URL visited, in order.
    pub visited: Vec<String>,
    /// Every `Set-Cookie` header received, in order.
    pub set_cookies: Vec<String>,
}

pub struct Page {
    pub status: u16,
    pub url: String,
    pub body: String,
}

impl Browser {
    pub fn new(server: &ScepServer, identity: Option<reqwest::Identity>) -> Browser {
        let ca = std::fs::read(server.token.path().join("tls/ca.pem")).unwrap();
        let mut b = reqwest::blocking::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(Duration::from_secs(30));
        if let Some(id) = identity {
            b = b.identity(id);
        }
        Browser {
            http: b.build().unwrap(),
            visited: Vec::new(),
            set_cookies: Vec::new(),
        }
    }

    fn finish(&mut self, mut resp: reqwest::blocking::Response) -> Page {
        for _ in 0..20 {
            let url = resp.url().clone();
            self.set_cookies.extend(
                resp.headers()
                    .get_all("set-cookie")
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(String::from)),
            );
            if resp.status().is_redirection() {
                let loc = resp
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .unwrap()
                    .to_string();
                let next = url.join(&loc).unwrap();
                self.visited.push(next.to_string());
                resp = self.http.get(next).send().unwrap();
                continue;
            }
            return Page {
                status: resp.status().as_u16(),
                url: url.to_string(),
                body: resp.text().unwrap_or_default(),
            };
        }
        panic!("too many redirects: {:?}", self.visited);
    }

    pub fn get(&mut self, url: &str) -> Page {
        self.visited.push(url.to_string());
        let resp = self.http.get(url).send().unwrap();
        self.finish(resp)
    }

    /// Sign in through the identity provider as `user`: Sigil's login, the provider's form,
    /// back to Sigil's callback.
    pub fn oidc_sign_in(&mut self, base: &str, user: &str) -> Page {
        let mut page = self.get(&format!("{base}/auth/oidc/login"));
        for _ in 0..5 {
            if !page.url.contains("/interaction/") {
                return page;
            }
            let action = form_action(&page.body).expect("the provider's sign-in form");
            let form: Vec<(&str, String)> = if page.body.contains("value=\"login\"") {
                vec![
                    ("prompt", "login".into()),
                    ("login", user.into()),
                    ("password", password(user)),
                ]
            } else {
                vec![("prompt", "consent".into())]
            };
            self.visited.push(action.clone());
            let resp = self.http.post(&action).form(&form).send().unwrap();
            page = self.finish(resp);
        }
        page
    }

    /// Who is signed in (`/auth/session`), or the status.
    pub fn session(&self, base: &str) -> Result<Value, u16> {
        let r = self
            .http
            .get(format!("{base}/auth/session"))
            .send()
            .unwrap();
        if r.status() == 200 {
            Ok(r.json().unwrap())
        } else {
            Err(r.status().as_u16())
        }
    }

    /// An API call with the session (and its CSRF token when `csrf` is given).
    pub fn api(
        &self,
        method: &str,
        url: &str,
        csrf: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method.parse().unwrap(), url)
            .header("accept", "application/json");
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }
}

fn form_action(html: &str) -> Option<String> {
    let form = &html[html.find("<form")?..];
    let start = form.find("action=\"")? + "action=\"".len();
    let end = form[start..].find('"')?;
    Some(form[start..start + end].replace("&amp;", "&"))
}
