//! The HTTP side every connector shares: a client with a timeout, retries with exponential
//! backoff (honouring `Retry-After`), OAuth2 client-credentials tokens cached until shortly
//! before they expire, and vendor error bodies turned into one-line messages.

use std::time::{Duration, Instant};

use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use super::DirectoryError;
use super::{HttpSettings, Secrets};
use crate::reason::Reason;
use crate::secret::SecretSource;

/// Largest answer read from an MDM (one page).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Longest wait a `Retry-After` may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// One directory's HTTP client and settings.
pub(crate) struct Api {
    pub(crate) name: String,
    client: reqwest::Client,
    retries: u32,
    timeout: Duration,
    pub(crate) page_size: u32,
    pub(crate) max_devices: usize,
    pub(crate) client_secret: SecretSource,
    pub(crate) password: SecretSource,
    pub(crate) api_key: SecretSource,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

/// The value at a JSON pointer, as text: strings as they are, numbers and booleans written
/// out, anything else (absent, null, objects) empty.
pub fn json_at(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// The vendor's own error message from an error body (Graph, OAuth2, Jamf, Workspace ONE).
fn describe(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        return text.chars().take(200).collect::<String>().trim().to_owned();
    };
    for p in [
        "/error/message",
        "/error_description",
        "/errors/0/description",
        "/message",
        "/error/code",
        "/error",
        "/errors/0/code",
    ] {
        let s = json_at(&v, p);
        if !s.is_empty() {
            return s.chars().take(300).collect();
        }
    }
    String::new()
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

impl Api {
    pub(crate) fn new(name: &str, c: HttpSettings, secrets: Secrets) -> Result<Api, Reason> {
        let origin = format!("directories.{name}");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(c.timeout_secs))
            .connect_timeout(Duration::from_secs(c.timeout_secs))
            .user_agent(concat!("sigil/", env!("CARGO_PKG_VERSION")))
            // Redirects could carry a bearer token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Reason::context(format!("{origin}: HTTP client"), e))?;
        Ok(Api {
            name: name.into(),
            client,
            retries: c.retries,
            timeout: Duration::from_secs(c.timeout_secs),
            page_size: c.page_size,
            max_devices: c.max_devices,
            client_secret: secrets.client_secret,
            password: secrets.password,
            api_key: secrets.api_key,
            token: tokio::sync::Mutex::new(None),
        })
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Read a configured secret now (files can be rotated without a restart).
    pub(crate) fn secret(&self, s: &SecretSource, what: &str) -> Result<String, DirectoryError> {
        match s.read() {
            Ok(Some(v)) if !v.is_empty() => Ok(v),
            Ok(_) => Err(self.config_error(format!("the {what} is not configured or empty"))),
            Err(e) => Err(self.config_error(e.to_string())),
        }
    }

    pub(crate) fn config_error(&self, reason: String) -> DirectoryError {
        DirectoryError::Config {
            directory: self.name.clone(),
            reason,
        }
    }

    /// The MDM refused `what` with `status`; its own words from `body`.
    pub(crate) fn refused(&self, what: &str, status: StatusCode, body: &[u8]) -> DirectoryError {
        DirectoryError::Refused {
            directory: self.name.clone(),
            status: status.as_u16(),
            message: format!("{what}: {}", describe(body)),
        }
    }

    pub(crate) fn nonsense(&self, reason: impl Into<String>) -> DirectoryError {
        DirectoryError::Nonsense {
            directory: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// Send the request `make` builds, retrying timeouts, connection failures, 429 and 5xx.
    /// `Ok(None)` for an empty answer (204, or no body). 401 is [`Unauthorized`] so the caller
    /// can fetch a new token once.
    pub(crate) async fn send(
        &self,
        what: &str,
        make: &(dyn Fn() -> RequestBuilder + Send + Sync),
    ) -> Result<Option<Value>, Failure> {
        let (status, body) = self.send_raw(what, make).await?;
        if !status.is_success() {
            return Err(Failure::Other(self.refused(what, status, &body)));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| Failure::Other(self.nonsense(format!("{what}: not JSON ({e})"))))
    }

    /// As [`Api::send`], answering the status and body of any answer that retrying would not
    /// change (2xx, and 4xx but 401 and 429), so the caller reads the vendor's words.
    pub(crate) async fn send_raw(
        &self,
        what: &str,
        make: &(dyn Fn() -> RequestBuilder + Send + Sync),
    ) -> Result<(StatusCode, Vec<u8>), Failure> {
        let mut attempt = 0u32;
        loop {
            let (wait, err) = match make().send().await {
                Err(e) => {
                    let text = if e.is_timeout() {
                        format!("{what}: no answer within {}s", self.timeout.as_secs())
                    } else if e.is_connect() {
                        format!("{what}: cannot connect ({})", root_cause(&e))
                    } else {
                        format!("{what}: {}", root_cause(&e))
                    };
                    let reason = Reason::caused_by(e).with_text(text);
                    (
                        None,
                        DirectoryError::Unreachable {
                            directory: self.name.clone(),
                            reason,
                        },
                    )
                }
                Ok(resp) => {
                    let status = resp.status();
                    let wait = retry_after(&resp);
                    let body = match read_capped(resp).await {
                        Ok(b) => b,
                        Err(reason) => {
                            let text = format!("{what}: {reason}");
                            return Err(Failure::Other(DirectoryError::Unreachable {
                                directory: self.name.clone(),
                                reason: reason.with_text(text),
                            }));
                        }
                    };
                    if status == StatusCode::UNAUTHORIZED {
                        return Err(Failure::Unauthorized(DirectoryError::Refused {
                            directory: self.name.clone(),
                            status: 401,
                            message: format!("{what}: {}", describe(&body)),
                        }));
                    }
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !retryable {
                        return Ok((status, body));
                    }
                    (wait, self.refused(what, status, &body))
                }
            };
            if attempt >= self.retries {
                return Err(Failure::Other(err));
            }
            let backoff = Duration::from_millis(250u64 << attempt.min(6));
            let wait = wait.unwrap_or(backoff);
            tracing::warn!(directory = %self.name, error = %err, retry_in_ms = wait.as_millis() as u64, "MDM request failed; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// A bearer token from the cache, or from `fetch` (which answers the token and its
    /// lifetime in seconds).
    pub(crate) async fn token<F, Fut>(&self, fetch: F) -> Result<String, DirectoryError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(String, u64), DirectoryError>>,
    {
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let (token, lifetime) = fetch().await?;
        // Renew a minute early (or at half-life for short tokens).
        let margin = (lifetime / 2).min(60);
        *cached = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(lifetime.saturating_sub(margin)),
        ));
        Ok(token)
    }

    /// Forget the cached token (the MDM said 401).
    pub(crate) async fn drop_token(&self) {
        *self.token.lock().await = None;
    }

    /// OAuth2 client credentials at `url`: `(access_token, expires_in)`.
    pub(crate) async fn client_credentials(
        &self,
        url: &str,
        client_id: &str,
        scope: Option<&str>,
    ) -> Result<(String, u64), DirectoryError> {
        let secret = self.secret(&self.client_secret, "client secret")?;
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", client_id.to_string()),
            ("client_secret", secret),
        ];
        if let Some(s) = scope {
            form.push(("scope", s.to_string()));
        }
        let v = self
            .send("token request", &|| self.client.post(url).form(&form))
            .await
            .map_err(Failure::into_error)?
            .ok_or_else(|| self.nonsense("token request: empty answer"))?;
        let token = json_at(&v, "/access_token");
        if token.is_empty() {
            return Err(self.nonsense("token request: no access_token in the answer"));
        }
        let lifetime = v
            .get("expires_in")
            .and_then(|e| e.as_u64().or_else(|| e.as_str()?.parse().ok()))
            .unwrap_or(300);
        Ok((token, lifetime))
    }

    /// GET `url` with the bearer token `auth` gives, fetching a new token once on 401.
    pub(crate) async fn get_json<A, Fut>(
        &self,
        what: &str,
        url: &str,
        headers: &[(&str, String)],
        auth: A,
    ) -> Result<Option<Value>, DirectoryError>
    where
        A: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Auth, DirectoryError>>,
    {
        let (status, body) = self
            .exchange(what, reqwest::Method::GET, url, headers, &Body::None, auth)
            .await?;
        if !status.is_success() {
            return Err(self.refused(what, status, &body));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| self.nonsense(format!("{what}: not JSON ({e})")))
    }

    /// One exchange with the authentication `auth` gives (a new token once on 401), retried
    /// as [`Api::send_raw`]: the status and body of an answer retrying would not change.
    pub(crate) async fn exchange<A, Fut>(
        &self,
        what: &str,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, String)],
        body: &Body,
        auth: A,
    ) -> Result<(StatusCode, Vec<u8>), DirectoryError>
    where
        A: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Auth, DirectoryError>>,
    {
        for second in [false, true] {
            let a = auth().await?;
            let make = || {
                let mut r = self.client.request(method.clone(), url);
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
                {
                    r = r.header(reqwest::header::ACCEPT, "application/json");
                }
                for (k, v) in headers {
                    r = r.header(*k, v);
                }
                r = match body {
                    Body::None => r,
                    Body::Json(v) => r.json(v),
                    Body::Xml(x) => r
                        .header(reqwest::header::CONTENT_TYPE, "application/xml")
                        .body(x.clone()),
                };
                match &a {
                    Auth::Bearer(t) => r.bearer_auth(t),
                    Auth::Basic(u, p) => r.basic_auth(u, Some(p)),
                    Auth::Header(h, v) => r.header(h.as_str(), v),
                    Auth::None => r,
                }
            };
            match self.send_raw(what, &make).await {
                Ok(v) => return Ok(v),
                Err(Failure::Unauthorized(e)) => {
                    if second || !matches!(a, Auth::Bearer(_)) {
                        return Err(e);
                    }
                    self.drop_token().await;
                }
                Err(Failure::Other(e)) => return Err(e),
            }
        }
        Err(self.nonsense("the MDM refused a freshly issued token"))
    }
}

/// A request body.
pub(crate) enum Body {
    /// None.
    None,
    /// JSON.
    Json(Value),
    /// XML (Jamf's Classic API).
    Xml(String),
}

/// The vendor's words from an error body, for a push's state.
pub(crate) fn vendor_words(body: &[u8]) -> String {
    describe(body)
}

/// How a request authenticates.
pub(crate) enum Auth {
    /// `Authorization: Bearer`.
    Bearer(String),
    /// `Authorization: Basic`.
    Basic(String, String),
    /// A header and its value.
    Header(String, String),
    /// Nothing.
    None,
}

/// A failed exchange: 401 separately, so a token can be renewed.
pub(crate) enum Failure {
    Unauthorized(DirectoryError),
    Other(DirectoryError),
}

impl Failure {
    pub(crate) fn into_error(self) -> DirectoryError {
        match self {
            Failure::Unauthorized(e) | Failure::Other(e) => e,
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, Reason> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > MAX_BODY {
                    return Err(Reason::new(format!(
                        "answer larger than {} MiB",
                        MAX_BODY >> 20
                    )));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                let text = if e.is_timeout() {
                    "the answer did not arrive in time".to_string()
                } else {
                    format!("reading the answer: {}", root_cause(&e))
                };
                return Err(Reason::caused_by(e).with_text(text));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_error_bodies_become_one_line() {
        assert_eq!(
            describe(br#"{"error":{"code":"TooManyRequests","message":"slow down"}}"#),
            "slow down"
        );
        assert_eq!(
            describe(
                br#"{"error":"invalid_client","error_description":"AADSTS7000215: bad secret"}"#
            ),
            "AADSTS7000215: bad secret"
        );
        assert_eq!(
            describe(br#"{"httpStatus":401,"errors":[{"code":"INVALID_TOKEN","description":"Unauthorized"}]}"#),
            "Unauthorized"
        );
        assert_eq!(
            describe(br#"{"errorCode":1013,"message":"Tenant code XYZ does not identify an Organization Group."}"#),
            "Tenant code XYZ does not identify an Organization Group."
        );
        assert_eq!(
            describe(b"<html>Bad Gateway</html>"),
            "<html>Bad Gateway</html>"
        );
    }
}
