//! The generic push: a POST of the event to a URL the agency runs (its own MDM glue, a
//! MobileIron/Ivanti connector, a ticketing system). The body is JSON: `event` (`deliver`,
//! `withdraw`, `renew`), the registration, person, credential, device, certificate and, for a
//! delivery, the SCEP payload with a fresh one-time challenge. It is signed like Stripe's and
//! GitHub's webhooks: `X-Sigil-Timestamp: <unix seconds>` and `X-Sigil-Signature:
//! v1=<hex HMAC-SHA-256(secret, "<timestamp>.<body>")>`, so the receiver can refuse forgeries
//! and replays (a timestamp older than it accepts). 2xx is delivered; anything else is retried.

use async_trait::async_trait;
use serde_json::json;

use crate::reason::Reason;
use crate::secret::SecretSource;

use super::{Delivery, PushError, PushEvent, PushSettings, PushTarget};

pub(super) struct Webhook {
    url: String,
    secret: SecretSource,
    client: reqwest::Client,
}

impl Webhook {
    pub(super) fn new(s: &PushSettings) -> Result<Webhook, Reason> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Reason::context("push webhook", e))?;
        Ok(Webhook {
            url: s.webhook_url.clone(),
            secret: SecretSource::from_pair("push.secret", &s.secret_file, &s.secret_env)?,
            client,
        })
    }
}

/// `v1=<hex HMAC-SHA-256(secret, "<timestamp>.<body>")>`.
pub fn signature(
    secret: &[u8],
    timestamp: i64,
    body: &[u8],
) -> Result<String, openssl::error::ErrorStack> {
    let key = openssl::pkey::PKey::hmac(secret)?;
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key)?;
    signer.update(format!("{timestamp}.").as_bytes())?;
    signer.update(body)?;
    Ok(format!("v1={}", hex::encode(signer.sign_to_vec()?)))
}

#[async_trait]
impl Delivery for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn renews(&self) -> bool {
        true
    }

    fn carries_payload(&self) -> bool {
        true
    }

    async fn push(&self, event: PushEvent, target: &PushTarget) -> Result<String, PushError> {
        let body = serde_json::to_vec(&json!({"event": event, "target": target})).map_err(|e| {
            PushError::Unavailable(crate::reason::Reason::context("encoding the event", e))
        })?;
        let at = crate::clock::now();
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", idempotency_key(target))
            .header("X-Sigil-Timestamp", at.to_string());
        if let Some(secret) = self
            .secret
            .read()
            .map_err(|e| PushError::Unavailable(crate::reason::Reason::caused_by(e)))?
        {
            // An empty key signs nothing a receiver could trust: refuse to send unsigned
            // events dressed as signed ones.
            if secret.trim().is_empty() {
                return Err(PushError::Webhook(
                    "the webhook's signing secret (push.secret_file or push.secret_env) is empty"
                        .into(),
                ));
            }
            req = req.header(
                "X-Sigil-Signature",
                signature(secret.as_bytes(), at, &body).map_err(|e| {
                    PushError::Unavailable(crate::reason::Reason::context("signing the event", e))
                })?,
            );
        }
        // What is kept (the push's message, the audit log, the registrant's page) names
        // neither the URL (it may hold a token) nor the receiver's words (they may echo the
        // challenge): the status, or what kind of failure.
        let resp = req.body(body).send().await.map_err(|e| {
            let said = if e.is_timeout() {
                "no answer within 15s"
            } else if e.is_connect() {
                "cannot connect to the receiver"
            } else {
                "the exchange with the receiver failed"
            };
            tracing::warn!(error = %e.without_url(), "webhook not reached");
            PushError::Webhook(said.into())
        })?;
        let status = resp.status();
        if status.is_success() {
            Ok(format!("webhook answered {}", status.as_u16()))
        } else {
            // The receiver's words are not logged either: they may echo the challenge.
            tracing::debug!(status = status.as_u16(), "webhook refused");
            Err(PushError::Webhook(format!(
                "the receiver answered HTTP {}",
                status.as_u16()
            )))
        }
    }
}

/// The receiver's idempotency key: the push, the same on every retry, except for a delivery
/// that carries a challenge. Each attempt at one mints a fresh challenge and voids the last,
/// so each attempt is new content (`<push>.<attempt>`): a receiver that deduplicates on the
/// key keeps the newest challenge, not a voided one.
fn idempotency_key(target: &PushTarget) -> String {
    if target.scep_payload.is_some() {
        format!("{}.{}", target.push, target.attempt)
    } else {
        target.push.clone()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = super::signature(b"s3cret", 1700000000, b"{}").unwrap();
        assert!(a.starts_with("v1=") && a.len() == 3 + 64, "{a}");
        assert_ne!(a, super::signature(b"s3cret", 1700000001, b"{}").unwrap());
        assert_ne!(a, super::signature(b"s3cret", 1700000000, b"{ }").unwrap());
        assert_ne!(a, super::signature(b"other", 1700000000, b"{}").unwrap());
    }
}
