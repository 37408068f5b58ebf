//! `[intune.NAME]`: a connection to one Intune tenant as a third-party CA.

use serde::{Deserialize, Serialize};

use crate::secret::SecretSource;

/// `[intune.NAME]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IntuneSettings {
    /// The Entra tenant (directory) id.
    pub tenant_id: String,
    /// The Entra application (client) id Sigil signs in as; it needs the Intune API
    /// permission `scep_challenge_provider` (and `Application.Read.All` on Graph for the
    /// endpoint discovery), with admin consent.
    pub client_id: String,
    /// File holding the client secret.
    pub client_secret_file: String,
    /// Environment variable holding the client secret.
    pub client_secret_env: String,
    /// Instead of a secret: the label of an RSA key on the token whose certificate is
    /// registered with the app (`sigil identity client-key` makes one).
    pub client_key: String,
    /// Entra's sign-in endpoint.
    pub login_url: String,
    /// Microsoft Graph.
    pub graph_url: String,
    /// The Intune API's scope.
    pub intune_scope: String,
    /// Seconds per call.
    pub timeout_secs: u64,
    /// Retries of a call that failed with 429, 5xx or a broken connection.
    pub retries: u32,
    /// Download Intune's revocation requests (wiped and retired devices) and revoke them.
    pub revocation_feed: bool,
    /// Minutes between downloads (Intune asks for a cool-down).
    pub revocation_interval_minutes: u64,
    /// At most this many requests per download (1..500).
    pub revocation_batch: u32,
    /// What Sigil reports as `caConfiguration` (Intune hands it back in revocation requests).
    pub ca_configuration: String,
}

impl Default for IntuneSettings {
    fn default() -> Self {
        IntuneSettings {
            tenant_id: String::new(),
            client_id: String::new(),
            client_secret_file: String::new(),
            client_secret_env: String::new(),
            client_key: String::new(),
            login_url: "https://login.microsoftonline.com".into(),
            graph_url: "https://graph.microsoft.com".into(),
            intune_scope: "https://api.manage.microsoft.com//.default".into(),
            timeout_secs: 30,
            retries: 3,
            revocation_feed: true,
            revocation_interval_minutes: 60,
            revocation_batch: 100,
            ca_configuration: "sigil".into(),
        }
    }
}

impl IntuneSettings {
    /// The client secret's source.
    pub fn client_secret(&self) -> Result<SecretSource, String> {
        SecretSource::from_pair(
            "client_secret",
            &self.client_secret_file,
            &self.client_secret_env,
        )
    }

    /// Check the settings; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.tenant_id.trim().is_empty() {
            return Err("tenant_id is empty".into());
        }
        if self.client_id.trim().is_empty() {
            return Err("client_id is empty (the Entra application id)".into());
        }
        match (self.client_secret()?.is_set(), self.client_key.is_empty()) {
            (false, true) => {
                return Err(
                    "set client_secret_file or client_secret_env, or client_key (a certificate key on the token)"
                        .into(),
                )
            }
            (true, false) => return Err("set either a client secret or client_key, not both".into()),
            _ => {}
        }
        for (k, v) in [
            ("login_url", &self.login_url),
            ("graph_url", &self.graph_url),
        ] {
            if !(v.starts_with("https://") || v.starts_with("http://")) {
                return Err(format!("{k} `{v}` is not an http(s) URL"));
            }
        }
        if !(1..=500).contains(&self.revocation_batch) {
            return Err("revocation_batch must be 1 to 500".into());
        }
        if self.timeout_secs == 0 || self.retries > 10 {
            return Err("timeout_secs must be at least 1, retries at most 10".into());
        }
        Ok(())
    }
}
