//! Challenges another system vouches for. Intune's SCEP profiles carry no static challenge:
//! each device's request holds an encrypted challenge only Intune can check, so Intune is
//! asked before anything is signed, told when a certificate was issued (or why not), and
//! feeds back the certificates it wants revoked. The authority knows this as a
//! [`ChallengeAuthority`]; `crate::intune` is the adapter that speaks Intune's API.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

/// Why the external authority did not vouch, or could not be asked.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExternalRefusal {
    /// It answered, and not with success: its code (`ChallengeExpired`,
    /// `SubjectNameMismatch`, …) and text.
    #[error("{code}: {text}")]
    Rejected {
        /// The code it answered.
        code: String,
        /// Its description.
        text: String,
    },
    /// It could not be reached, or failed (after the retries its contract allows).
    #[error("{0}")]
    Unavailable(#[source] crate::reason::Reason),
}

/// A certificate issued on the external authority's word, as it is told of it.
#[derive(Debug, Clone)]
pub struct IssuedNotice {
    /// The SCEP transactionID.
    pub transaction_id: String,
    /// The CSR (DER) it validated.
    pub csr: Vec<u8>,
    /// SHA-1 thumbprint of the certificate, upper-case hex.
    pub thumbprint: String,
    /// Serial number, upper-case hex.
    pub serial: String,
    /// notAfter (Unix seconds).
    pub not_after: i64,
    /// The issuing CA's name, as text.
    pub issuer: String,
}

/// A certificate the external authority wants revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRequest {
    /// Its handle for the answer.
    pub context: String,
    /// Serial number, hex.
    pub serial: String,
    /// The issuer it names, if any.
    pub issuer: Option<String>,
}

/// What became of one revocation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationResult {
    /// The request's handle.
    pub context: String,
    /// Revoked (or already revoked).
    pub succeeded: bool,
    /// Why not, when not.
    pub error: Option<String>,
}

/// A system that vouches for enrollment challenges (Intune).
#[async_trait]
pub trait ChallengeAuthority: Send + Sync + std::fmt::Debug {
    /// Is this request (its transactionID and CSR) one it vouches for?
    async fn validate(&self, transaction_id: &str, csr: &[u8]) -> Result<(), ExternalRefusal>;
    /// A certificate was issued on its word.
    async fn issued(&self, notice: &IssuedNotice) -> Result<(), ExternalRefusal>;
    /// A request it vouched for was not issued: an HRESULT-style code and why (at most 255
    /// characters).
    async fn failed(
        &self,
        transaction_id: &str,
        csr: &[u8],
        code: i64,
        text: &str,
    ) -> Result<(), ExternalRefusal>;
    /// Certificates it wants revoked (none when it keeps no feed).
    async fn revocation_requests(&self) -> Result<Vec<RevocationRequest>, ExternalRefusal>;
    /// What became of them.
    async fn revocation_results(&self, results: &[RevocationResult])
        -> Result<(), ExternalRefusal>;
}

/// The external authorities by name (`[intune.NAME]`).
pub type ChallengeAuthorities = BTreeMap<String, Arc<dyn ChallengeAuthority>>;

/// E_FAIL: the generic failure code Intune's failure notification takes.
pub const E_FAIL: i64 = 0x8000_4005;

/// At most 255 characters, as Intune's failure notification takes.
pub fn clip(text: &str) -> String {
    text.chars().take(255).collect()
}

impl super::Authority {
    /// One round of the external authorities' revocation feeds (the background leader runs
    /// it): download what they ask to revoke, revoke it here, upload what became of each.
    pub(crate) async fn external_revocations_round(&self) {
        for (name, ext) in &self.inner.external {
            let requests = match ext.revocation_requests().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(intune = %name, error = %e, "revocation feed: download failed");
                    continue;
                }
            };
            if requests.is_empty() {
                continue;
            }
            let actor = format!("intune:{name}");
            let mut results = Vec::with_capacity(requests.len());
            for r in &requests {
                results.push(self.revoke_for_external(name, r, &actor).await);
            }
            let revoked = results.iter().filter(|r| r.succeeded).count();
            match ext.revocation_results(&results).await {
                Ok(()) => {
                    tracing::info!(intune = %name, requests = requests.len(), revoked, "revocation feed: results uploaded");
                    if let Err(e) = self
                        .inner
                        .store
                        .audit(
                            &actor,
                            "external_revocations",
                            name,
                            &serde_json::json!({"requests": requests.len(), "revoked": revoked,
                                "not_found": results.iter().filter(|r| !r.succeeded).map(|r| r.context.clone()).collect::<Vec<_>>()}),
                        )
                        .await
                    {
                        tracing::warn!(error = %e, "revocation feed: audit record");
                    }
                }
                Err(e) => {
                    tracing::warn!(intune = %name, error = %e, "revocation feed: results not uploaded (the requests come again)")
                }
            }
        }
    }

    /// Revoke what connection `name` asks for, if it is a certificate issued on its word: a
    /// profile whose challenge is that connection's. Anything else of this CA (a registration's
    /// derived credential, another tenant's device) is not Intune's to revoke.
    async fn revoke_for_external(
        &self,
        name: &str,
        r: &RevocationRequest,
        actor: &str,
    ) -> RevocationResult {
        let serial = normalise_serial(&r.serial);
        let found = match self.inner.store.certificate(&serial).await {
            Ok(c) => c,
            Err(e) => {
                return RevocationResult {
                    context: r.context.clone(),
                    succeeded: false,
                    error: Some(format!("store: {e}")),
                }
            }
        };
        let Some(cert) = found else {
            return RevocationResult {
                context: r.context.clone(),
                succeeded: false,
                error: Some(format!("no certificate with serial {} here", r.serial)),
            };
        };
        let vouched = self
            .inner
            .profiles
            .get(&cert.profile)
            .is_some_and(|p| p.policy.takes_intune_challenge() && p.policy.intune == name);
        if !vouched {
            tracing::warn!(intune = %name, serial = %serial, profile = %cert.profile, "revocation feed: a certificate not issued through this connection; not revoked");
            return RevocationResult {
                context: r.context.clone(),
                succeeded: false,
                error: Some(format!(
                    "certificate {} was not issued through this Intune connection; not revoked",
                    r.serial
                )),
            };
        }
        if cert.revoked_at.is_some() {
            return RevocationResult {
                context: r.context.clone(),
                succeeded: true,
                error: None,
            };
        }
        // Intune asks when a device is wiped or retired: cessationOfOperation.
        match self.revoke(&serial, 5, super::Revoker::System(actor)).await {
            Ok(_) => RevocationResult {
                context: r.context.clone(),
                succeeded: true,
                error: None,
            },
            Err(e) => RevocationResult {
                context: r.context.clone(),
                succeeded: false,
                error: Some(e.to_string()),
            },
        }
    }
}

/// A serial as the store keys it: lower-case hex of the DER integer's bytes, without the
/// separators or the sign octet other systems write.
fn normalise_serial(s: &str) -> String {
    let hex: String = s
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let trimmed = hex.trim_start_matches('0');
    let mut out = if trimmed.len() % 2 == 1 {
        format!("0{trimmed}")
    } else {
        trimmed.to_string()
    };
    if out.is_empty() {
        out = "00".into();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_from_other_systems_match_ours() {
        assert_eq!(normalise_serial("00AB:CD"), "abcd");
        assert_eq!(normalise_serial("0abc"), "0abc");
        assert_eq!(normalise_serial("ABC"), "0abc");
        assert_eq!(clip(&"x".repeat(300)).len(), 255);
    }
}
