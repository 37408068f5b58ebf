//! Expiry: Prometheus gauges of certificates ending within 7 and 30 days per profile, and the
//! optional webhook that tells the MDM which devices need their SCEP profile pushed again
//! (Apple devices do not renew by themselves). Each certificate is announced once, when it
//! enters the last `notify.within_days`; a webhook that fails is tried again next round.

use std::time::Duration;

use serde_json::json;

use serde::{Deserialize, Serialize};

use super::Authority;
use crate::reason::Reason;
use crate::secret::SecretSource;
use crate::store::now;

/// `[notify]`: tell the MDM which devices need their SCEP profile pushed again (Apple devices
/// do not renew by themselves).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// URL that gets one POST (JSON) per certificate entering its last `within_days`; empty:
    /// no webhook.
    pub webhook_url: String,
    /// File holding a bearer token for the webhook.
    pub secret_file: String,
    /// Environment variable holding a bearer token for the webhook.
    pub secret_env: String,
    /// Announce certificates this many days before they end.
    pub within_days: u32,
    /// Seconds one POST may take.
    pub timeout_secs: u64,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            webhook_url: String::new(),
            secret_file: String::new(),
            secret_env: String::new(),
            within_days: 30,
            timeout_secs: 10,
        }
    }
}

impl NotifySettings {
    /// The webhook's bearer token source.
    pub fn secret(&self) -> Result<SecretSource, String> {
        SecretSource::from_pair("notify.secret", &self.secret_file, &self.secret_env)
    }
}

/// How the expiry webhook is reached.
pub(crate) struct Webhook {
    url: String,
    secret: SecretSource,
    within_secs: i64,
    client: reqwest::Client,
}

impl Webhook {
    pub(crate) fn new(c: &NotifySettings) -> Result<Option<Webhook>, Reason> {
        if c.webhook_url.is_empty() {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(c.timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Reason::context("notify: HTTP client", e))?;
        Ok(Some(Webhook {
            url: c.webhook_url.clone(),
            secret: c.secret()?,
            within_secs: i64::from(c.within_days) * 86_400,
            client,
        }))
    }
}

/// Most certificates announced in one round.
const PER_ROUND: usize = 200;

impl Authority {
    /// Refresh the expiry gauges (every node: each serves its own /metrics).
    pub async fn expiry_gauges(&self) -> Result<(), crate::store::StoreError> {
        let at = now();
        for (label, days) in [("7d", 7), ("30d", 30)] {
            let counts = self.inner.store.expiring_counts(at, days * 86_400).await?;
            for p in self.inner.profiles.keys() {
                let n = counts
                    .iter()
                    .find(|(name, _)| name == p)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                if let Some(m) = crate::telemetry::metrics() {
                    m.certificates_expiring
                        .with_label_values(&[p, label])
                        .set(n);
                }
            }
        }
        Ok(())
    }

    /// Announce certificates entering their last days to the webhook (one node: the
    /// "notify" leader). Returns how many were announced.
    pub async fn announce_expiring(&self) -> Result<usize, Reason> {
        let Some(hook) = &self.inner.webhook else {
            return Ok(0);
        };
        let due = self
            .inner
            .store
            .expiring_unannounced(now(), hook.within_secs, PER_ROUND)
            .await
            .map_err(Reason::caused_by)?;
        let secret = hook.secret.read().map_err(Reason::caused_by)?;
        let mut sent = 0;
        for c in due {
            let body = json!({
                "event": "certificate.expiring",
                "serial": c.serial,
                "subject": c.subject,
                "sans": c.sans,
                "profile": c.profile,
                "device_id": c.device_id,
                "not_after": crate::clock::rfc3339(c.not_after),
                "scep_url": (!self.inner.public_url.is_empty()).then(|| format!(
                    "{}/scep/{}",
                    self.inner.public_url.trim_end_matches('/'),
                    c.profile
                )),
            });
            let mut req = hook.client.post(&hook.url).json(&body);
            if let Some(s) = &secret {
                req = req.bearer_auth(s);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    self.inner
                        .store
                        .expiry_announced(&c.serial, "sigil")
                        .await
                        .map_err(Reason::caused_by)?;
                    sent += 1;
                }
                Ok(r) => {
                    return Err(Reason::new(format!(
                        "the expiry webhook answered HTTP {}; retrying next round",
                        r.status().as_u16()
                    )))
                }
                Err(e) => {
                    return Err(Reason::context(
                        "the expiry webhook is unreachable; retrying next round",
                        e,
                    ))
                }
            }
        }
        if sent > 0 {
            tracing::info!(
                announced = sent,
                "expiring certificates announced to the webhook"
            );
        }
        Ok(sent)
    }
}
