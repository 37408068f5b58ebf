//! CA generations: which CA key issues now (`active`), which one `sigil ca rollover` prepared
//! (`next`, offered by GetNextCACert), and which ones were replaced (`retired`: their CRLs and
//! OCSP answers are still served, and their certificates still renew). Kept in the store
//! (`ca_state`), so every node and every tool agrees. Without a record, the active CA is the
//! configured `hsm.ca_key`.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

const STATE: &str = "ca_generations";

/// The CA generations, by key label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Generations {
    /// The issuing CA's key label; `None`: `hsm.ca_key`.
    pub active: Option<String>,
    /// The prepared next CA, if a rollover is in progress.
    pub next: Option<String>,
    /// Earlier CAs, oldest first.
    pub retired: Vec<String>,
}

impl Generations {
    /// Read the record (empty when none).
    pub async fn read(store: &dyn Store) -> Result<Generations, StoreError> {
        match store.state(STATE).await? {
            None => Ok(Generations::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                StoreError::Invalid(crate::reason::Reason::context(
                    format!("ca_state `{STATE}`"),
                    e,
                ))
            }),
        }
    }

    /// Write the record.
    pub async fn write(&self, store: &dyn Store) -> Result<(), StoreError> {
        let b = serde_json::to_vec(self)
            .map_err(|e| StoreError::Invalid(crate::reason::Reason::caused_by(e)))?;
        store.set_state(STATE, &b).await
    }

    /// The active CA label, given the configured one.
    pub fn active_or<'a>(&'a self, configured: &'a str) -> &'a str {
        self.active.as_deref().unwrap_or(configured)
    }
}

/// State key of a generation's certificate of some kind (`ca`, `ra_sign`, `ra_decrypt`,
/// `link`).
pub fn cert_key(kind: &str, label: &str) -> String {
    format!("{kind}_cert:{label}")
}
