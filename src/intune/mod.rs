//! Intune as a third-party CA's partner: the adapter that lets the authority ask Intune
//! whether a SCEP request is one it vouches for, tell it what was issued (or why not), and
//! read the revocations it asks for. Written from Microsoft's published contract, its MIT
//! reference library `microsoft/Intune-Resource-Access` (`src/CsrValidation`): the same
//! URLs, JSON fields and `api-version` values.
//!
//! - Tokens: OAuth 2 client credentials at `<login_url>/<tenant>/oauth2/v2.0/token`, with a
//!   client secret or a `private_key_jwt` assertion signed on the token; cached per scope
//!   until a minute before they expire, and dropped on a 401.
//! - Endpoints: Microsoft Graph's
//!   `servicePrincipals/appId=0000000a-0000-0000-c000-000000000000/endpoints` lists the
//!   `ScepRequestValidationFEService` and `PkiConnectorFEService` URLs; cached, and read again
//!   when a call fails with 404 or a broken connection.
//! - Calls: `client-request-id` (one per activity, kept across its retries) and `api-version`
//!   headers; 429 and 5xx are retried with backoff honouring `Retry-After`; 400 and 403 never.

mod settings;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::{Mutex, RwLock};

pub use settings::IntuneSettings;

use crate::authority::external::{
    ChallengeAuthority, ExternalRefusal, IssuedNotice, RevocationRequest, RevocationResult,
};
use crate::identity::client_assertion::{client_assertion, ClientKey};
use crate::reason::Reason;

/// Intune's first-party application id, whose service principal lists the endpoints.
const INTUNE_APP_ID: &str = "0000000a-0000-0000-c000-000000000000";
/// The SCEP validation service's name in the discovery document.
pub const SCEP_SERVICE: &str = "ScepRequestValidationFEService";
/// The revocation feed's service.
pub const PKI_SERVICE: &str = "PkiConnectorFEService";
const SCEP_API: &str = "2018-02-20";
const PKI_API: &str = "5019-05-05";
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

fn caller_info() -> String {
    format!("Sigil/{}", env!("CARGO_PKG_VERSION"))
}

fn unavailable(why: impl Into<Reason>) -> ExternalRefusal {
    ExternalRefusal::Unavailable(why.into())
}

/// One Intune tenant.
pub struct Intune {
    name: String,
    settings: IntuneSettings,
    http: reqwest::Client,
    secret: Option<String>,
    key: Option<Arc<dyn ClientKey>>,
    /// Access tokens by scope, with when they stop being used (Unix seconds).
    tokens: Mutex<HashMap<String, (String, i64)>>,
    /// Service name → URL, from the discovery.
    endpoints: RwLock<Option<HashMap<String, String>>>,
    /// When the revocation feed was last downloaded (Unix seconds).
    last_download: Mutex<Option<i64>>,
}

impl std::fmt::Debug for Intune {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intune")
            .field("name", &self.name)
            .field("tenant", &self.settings.tenant_id)
            .finish()
    }
}

/// How a failed call may go on.
enum Failure {
    /// Try again after this long (429, 5xx, a broken connection).
    Retry(Duration, String),
    /// Read the endpoints again, then try again.
    Rediscover(String),
    /// Get a new token, then try again.
    Reauthenticate(String),
    /// Do not try again.
    Final(ExternalRefusal),
}

impl Intune {
    /// A connection from its settings; `key` signs client assertions when
    /// `settings.client_key` is set.
    pub fn connect(
        name: &str,
        settings: &IntuneSettings,
        key: Option<Arc<dyn ClientKey>>,
    ) -> Result<Intune, Reason> {
        settings
            .check()
            .map_err(|e| Reason::new(format!("intune.{name}: {e}")))?;
        if settings.client_key.is_empty() != key.is_none() {
            return Err(Reason::new(format!(
                "intune.{name}.client_key: the key on the token was not opened"
            )));
        }
        let secret = settings
            .client_secret()
            .map_err(|e| Reason::new(format!("intune.{name}: {e}")))?
            .read()
            .map_err(|e| Reason::context(format!("intune.{name}"), e))?
            .map(|s| s.trim().to_string());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(settings.timeout_secs))
            .user_agent(caller_info())
            .build()
            .map_err(|e| Reason::context(format!("intune.{name}: HTTP client"), e))?;
        Ok(Intune {
            name: name.into(),
            settings: settings.clone(),
            http,
            secret,
            key,
            tokens: Mutex::new(HashMap::new()),
            endpoints: RwLock::new(None),
            last_download: Mutex::new(None),
        })
    }

    fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.settings.login_url.trim_end_matches('/'),
            self.settings.tenant_id
        )
    }

    /// An access token for `scope`, from the cache or Entra ID.
    async fn token(&self, scope: &str) -> Result<String, ExternalRefusal> {
        let now = crate::clock::now();
        if let Some((t, until)) = self.tokens.lock().await.get(scope) {
            if *until > now {
                return Ok(t.clone());
            }
        }
        let url = self.token_url();
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", self.settings.client_id.clone()),
            ("scope", scope.to_string()),
        ];
        match (&self.key, &self.secret) {
            (Some(key), _) => {
                let (key, client, aud) =
                    (key.clone(), self.settings.client_id.clone(), url.clone());
                let jti = hex::encode(random16());
                let assertion = tokio::task::spawn_blocking(move || {
                    client_assertion(key.as_ref(), &client, &aud, now, &jti)
                })
                .await
                .map_err(|e| unavailable(Reason::caused_by(e)))?
                .map_err(|e| unavailable(Reason::caused_by(e)))?;
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", assertion));
            }
            (None, Some(secret)) => form.push(("client_secret", secret.clone())),
            (None, None) => return Err(unavailable("no client credential")),
        }
        let resp = self.http.post(&url).form(&form).send().await.map_err(|e| {
            unavailable(Reason::context(
                format!("Entra ID cannot be reached at {url}"),
                e,
            ))
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(unavailable(format!(
                "Entra ID refused the credentials of [intune.{}] ({status}): {}: {}",
                self.name,
                body["error"].as_str().unwrap_or("?"),
                body["error_description"].as_str().unwrap_or("")
            )));
        }
        let Some(token) = body["access_token"].as_str() else {
            return Err(unavailable("Entra ID's answer has no access_token"));
        };
        let life = body["expires_in"].as_i64().unwrap_or(300);
        self.tokens.lock().await.insert(
            scope.to_string(),
            (token.to_string(), now + (life - 60).max(0)),
        );
        Ok(token.to_string())
    }

    /// The URL of `service`, discovered through Graph (again when `again`).
    async fn endpoint(&self, service: &str, again: bool) -> Result<String, ExternalRefusal> {
        if !again {
            if let Some(map) = self.endpoints.read().await.as_ref() {
                if let Some(u) = map.get(service) {
                    return Ok(u.clone());
                }
            }
        }
        let token = self.token(GRAPH_SCOPE).await?;
        let url = format!(
            "{}/v1.0/servicePrincipals/appId={INTUNE_APP_ID}/endpoints",
            self.settings.graph_url.trim_end_matches('/')
        );
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&token)
            .header("client-request-id", uuid())
            .send()
            .await
            .map_err(|e| unavailable(Reason::context("Microsoft Graph cannot be reached", e)))?;
        let status = resp.status();
        if status.as_u16() == 401 {
            self.tokens.lock().await.remove(GRAPH_SCOPE);
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(unavailable(format!(
                "Microsoft Graph refused the endpoint discovery ({status}): {}{}",
                body["error"]["message"].as_str().unwrap_or(""),
                if matches!(status.as_u16(), 401 | 403) {
                    "; the app needs Application.Read.All on Graph, with admin consent"
                } else {
                    ""
                }
            )));
        }
        let map: HashMap<String, String> = body["value"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        Some((
                            e["providerName"].as_str()?.to_string(),
                            e["uri"].as_str()?.trim_end_matches('/').to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let found = map.get(service).cloned();
        *self.endpoints.write().await = Some(map);
        found.ok_or_else(|| {
            unavailable(format!(
                "Intune's service principal lists no {service}: is the tenant licensed for Intune?"
            ))
        })
    }

    /// POST `body` to `service`'s `path`, with the contract's headers and retries.
    async fn call(
        &self,
        service: &str,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Value, ExternalRefusal> {
        let activity = uuid();
        let mut rediscover = false;
        let mut last = String::new();
        for attempt in 0..=self.settings.retries {
            let base = self.endpoint(service, rediscover).await?;
            rediscover = false;
            let token = self.token(&self.settings.intune_scope).await?;
            let failure = match self
                .http
                .post(format!("{base}/{path}"))
                .bearer_auth(&token)
                .header("client-request-id", &activity)
                .header("api-version", api_version)
                .json(body)
                .send()
                .await
            {
                Err(e) => Failure::Rediscover(format!("{service} cannot be reached: {e}")),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    let text = resp.text().await.unwrap_or_default();
                    match status {
                        200..=299 => {
                            return serde_json::from_str(&text).map_err(|e| {
                                unavailable(format!(
                                    "{service} answered something that is not JSON: {e}"
                                ))
                            })
                        }
                        401 => Failure::Reauthenticate(format!("{service} answered 401")),
                        404 => Failure::Rediscover(format!("{service} answered 404 at {path}")),
                        429 | 500..=599 => Failure::Retry(
                            retry_after
                                .map(Duration::from_secs)
                                .unwrap_or_else(|| Duration::from_millis(250 << attempt.min(5)))
                                .min(Duration::from_secs(30)),
                            format!("{service} answered {status}"),
                        ),
                        _ => Failure::Final(unavailable(format!(
                            "{service} refused the call ({status}): {}{}",
                            text.chars().take(300).collect::<String>(),
                            if status == 403 {
                                "; the app needs the Intune permission scep_challenge_provider, with admin consent"
                            } else {
                                ""
                            }
                        ))),
                    }
                }
            };
            match failure {
                Failure::Final(e) => return Err(e),
                Failure::Retry(wait, why) => {
                    tracing::warn!(intune = %self.name, activity = %activity, attempt, wait_ms = wait.as_millis() as u64, "{why}; trying again");
                    last = why;
                    tokio::time::sleep(wait).await;
                }
                Failure::Rediscover(why) => {
                    tracing::warn!(intune = %self.name, activity = %activity, attempt, "{why}; reading the endpoints again");
                    last = why;
                    rediscover = true;
                }
                Failure::Reauthenticate(why) => {
                    tracing::warn!(intune = %self.name, activity = %activity, attempt, "{why}; a new token");
                    last = why;
                    self.tokens.lock().await.remove(&self.settings.intune_scope);
                }
            }
        }
        Err(unavailable(format!(
            "{last} (after {} tries)",
            self.settings.retries + 1
        )))
    }

    /// A ScepActions call: `{"code": "Success"}` or the refusal it names.
    async fn scep_action(&self, action: &str, body: Value) -> Result<(), ExternalRefusal> {
        let answer = self
            .call(
                SCEP_SERVICE,
                &format!("ScepActions/{action}"),
                SCEP_API,
                &body,
            )
            .await?;
        match answer["code"].as_str() {
            Some("Success") => Ok(()),
            Some(code) => Err(ExternalRefusal::Rejected {
                code: code.to_string(),
                text: answer["errorDescription"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            }),
            None => Err(unavailable(format!("{action}: the answer has no code"))),
        }
    }

    /// What `sigil intune check` reports: each step, in words; an error at the first failure.
    pub async fn check(&self) -> Result<Vec<String>, Reason> {
        let mut done = Vec::new();
        self.token(GRAPH_SCOPE).await.map_err(Reason::caused_by)?;
        done.push(format!(
            "signed in to Microsoft Graph as {}",
            self.settings.client_id
        ));
        for service in [SCEP_SERVICE, PKI_SERVICE] {
            let url = self
                .endpoint(service, true)
                .await
                .map_err(Reason::caused_by)?;
            done.push(format!("{service}: {url}"));
        }
        self.token(&self.settings.intune_scope)
            .await
            .map_err(Reason::caused_by)?;
        done.push(format!(
            "a token for the Intune API ({})",
            self.settings.intune_scope
        ));
        Ok(done)
    }
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    // An all-zero id only weakens the uniqueness of a request id or a jti, never a secret.
    let _ = openssl::rand::rand_bytes(&mut b);
    b
}

/// A random UUID (version 4), as `client-request-id` wants.
fn uuid() -> String {
    let mut b = random16();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// `YYYY-MM-DDTHH:MM:SS.000Z`.
fn web_time(t: i64) -> String {
    let s = crate::clock::rfc3339(t);
    match s.strip_suffix('Z') {
        Some(x) => format!("{x}.000Z"),
        None => s,
    }
}

#[async_trait]
impl ChallengeAuthority for Intune {
    async fn validate(&self, transaction_id: &str, csr: &[u8]) -> Result<(), ExternalRefusal> {
        self.scep_action(
            "validateRequest",
            json!({"request": {
                "transactionId": transaction_id,
                "certificateRequest": b64(csr),
                "callerInfo": caller_info(),
            }}),
        )
        .await
    }

    async fn issued(&self, n: &IssuedNotice) -> Result<(), ExternalRefusal> {
        self.scep_action(
            "successNotification",
            json!({"notification": {
                "transactionId": n.transaction_id,
                "certificateRequest": b64(&n.csr),
                "certificateThumbprint": n.thumbprint,
                "certificateSerialNumber": n.serial,
                "certificateExpirationDateUtc": web_time(n.not_after),
                "issuingCertificateAuthority": n.issuer,
                "callerInfo": caller_info(),
                "caConfiguration": self.settings.ca_configuration,
                "certificateAuthority": n.issuer,
            }}),
        )
        .await
    }

    async fn failed(
        &self,
        transaction_id: &str,
        csr: &[u8],
        code: i64,
        text: &str,
    ) -> Result<(), ExternalRefusal> {
        // HRESULTs travel as signed 32-bit numbers.
        let hresult = code as u32 as i32;
        self.scep_action(
            "failureNotification",
            json!({"notification": {
                "transactionId": transaction_id,
                "certificateRequest": b64(csr),
                "hResult": hresult,
                "errorDescription": crate::authority::external::clip(text),
                "callerInfo": caller_info(),
            }}),
        )
        .await
    }

    async fn revocation_requests(&self) -> Result<Vec<RevocationRequest>, ExternalRefusal> {
        if !self.settings.revocation_feed {
            return Ok(Vec::new());
        }
        {
            // Intune asks for a cool-down between downloads.
            let now = crate::clock::now();
            let mut last = self.last_download.lock().await;
            let every = self.settings.revocation_interval_minutes as i64 * 60;
            if last.is_some_and(|t| now - t < every) {
                return Ok(Vec::new());
            }
            *last = Some(now);
        }
        let answer = self
            .call(
                PKI_SERVICE,
                "CertificateAuthorityRequests/downloadRevocationRequests",
                PKI_API,
                &json!({"downloadParameters": {
                    "maxRequests": self.settings.revocation_batch,
                    "issuerName": Value::Null,
                }}),
            )
            .await?;
        let Some(list) = answer["value"].as_array() else {
            return Err(unavailable("downloadRevocationRequests: no `value` list"));
        };
        Ok(list
            .iter()
            .filter_map(|r| {
                Some(RevocationRequest {
                    context: r["requestContext"].as_str()?.to_string(),
                    serial: r["serialNumber"].as_str()?.to_string(),
                    issuer: r["issuerName"].as_str().map(String::from),
                })
            })
            .collect())
    }

    async fn revocation_results(
        &self,
        results: &[RevocationResult],
    ) -> Result<(), ExternalRefusal> {
        if results.is_empty() {
            return Ok(());
        }
        let body = json!({"results": results.iter().map(|r| json!({
            "requestContext": r.context,
            "succeeded": r.succeeded,
            "errorCode": if r.succeeded { "None" } else { "CertificateNotFoundError" },
            "errorMessage": r.error,
        })).collect::<Vec<_>>()});
        let answer = self
            .call(
                PKI_SERVICE,
                "CertificateAuthorityRequests/uploadRevocationResults",
                PKI_API,
                &body,
            )
            .await?;
        match &answer["value"] {
            Value::Bool(true) => Ok(()),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(()),
            other => Err(unavailable(format!(
                "uploadRevocationResults answered {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_times_have_the_contracts_shapes() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(uuid(), u);
        assert_eq!(web_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(0x8000_4005_i64 as u32 as i32, -2147467259);
    }
}
