//! `[directories.NAME]` (an MDM directory Sigil asks for a user's devices) and
//! `[credentials.NAME]` (a credential profile: a certificate profile plus the policy of the
//! registration flow), as written in the configuration file.
//!
//! Secrets (client secrets, passwords, API keys) are never configuration values: each is named
//! by a file (`…_file`, first line) or an environment variable (`…_env`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{invalid, parse_span, ConfigError};

/// The MDM products Sigil has a connector for.
pub const DIRECTORY_KINDS: &[&str] = &["intune", "jamf", "workspace_one", "generic", "file"];

/// `[directories.NAME]`: one MDM directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// `intune`, `jamf`, `workspace_one`, `generic` or `file`.
    pub kind: String,
    /// `file`: an inventory file (JSON array of devices, or CSV with a header row) whose
    /// columns are the device fields (`id`, `user`, `name`, `model`, `os`, `os_version`,
    /// `serial_number`, `udid`, `imei`, `compliance`, `managed`, `last_check_in`). Read at
    /// each lookup, so edits count at once.
    pub path: String,
    /// API base URL (Intune: `https://graph.microsoft.com`; Jamf: `https://x.jamfcloud.com`;
    /// Workspace ONE: `https://as1506.awmdm.com`). Not used by `generic`.
    pub base_url: String,
    /// OAuth2 token endpoint. Intune: defaults to
    /// `https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token`; Jamf: defaults to
    /// `<base_url>/api/oauth/token` when `client_id` is set; Workspace ONE: the UEM auth URL
    /// (`https://na.uemauth.vmwservices.com/connect/token`) when `client_id` is set.
    pub token_url: String,
    /// OAuth2 scope (Intune: `https://graph.microsoft.com/.default`).
    pub scope: String,
    /// Entra ID tenant (Intune).
    pub tenant_id: String,
    /// OAuth2 client ID (app registration, Jamf API client, Workspace ONE OAuth client).
    pub client_id: String,
    /// File holding the OAuth2 client secret.
    pub client_secret_file: String,
    /// Environment variable holding the OAuth2 client secret.
    pub client_secret_env: String,
    /// User name for basic authentication (Jamf `/api/v1/auth/token`, Workspace ONE,
    /// `generic` with `auth = "basic"`).
    pub username: String,
    /// File holding the password.
    pub password_file: String,
    /// Environment variable holding the password.
    pub password_env: String,
    /// File holding the API key (Workspace ONE `aw-tenant-code`; `generic` bearer or header).
    pub api_key_file: String,
    /// Environment variable holding the API key.
    pub api_key_env: String,
    /// Seconds one HTTP exchange may take.
    pub timeout_secs: u64,
    /// Retries after a failed exchange (timeouts, 429 and 5xx), with exponential backoff.
    pub retries: u32,
    /// Devices per page asked for.
    pub page_size: u32,
    /// Stop after this many devices for one user (a guard against an endless listing).
    pub max_devices: usize,
    /// `jamf`: the computers-inventory API version (`v1` … `v4`; `v3` is current).
    pub computers_api: String,
    /// `generic`: the device-list URL; `{email}` is replaced by the URL-encoded email.
    pub devices_url: String,
    /// `generic`: `bearer` (the API key), `basic` (username and password), `header` (the API
    /// key in `api_key_header`) or `none`.
    pub auth: String,
    /// `generic`: the header that carries the API key when `auth = "header"`.
    pub api_key_header: String,
    /// `generic`: JSON pointer to the array of devices in a page (empty: the page is the
    /// array).
    pub items: String,
    /// `generic`: JSON pointer to the next page's URL in a page (empty: no paging).
    pub next: String,
    /// `generic`: device fields → JSON pointers inside one item. Fields: `id` (required),
    /// `name`, `model`, `os`, `os_version`, `serial_number`, `udid`, `imei`, `compliance`,
    /// `last_check_in`, `user`, `managed`.
    pub fields: BTreeMap<String, String>,
    /// `generic`: values of the `compliance` field that mean compliant (compared without
    /// case).
    pub compliant_values: Vec<String>,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            kind: String::new(),
            path: String::new(),
            base_url: String::new(),
            token_url: String::new(),
            scope: String::new(),
            tenant_id: String::new(),
            client_id: String::new(),
            client_secret_file: String::new(),
            client_secret_env: String::new(),
            username: String::new(),
            password_file: String::new(),
            password_env: String::new(),
            api_key_file: String::new(),
            api_key_env: String::new(),
            timeout_secs: 10,
            retries: 2,
            page_size: 100,
            max_devices: 1000,
            computers_api: "v3".into(),
            devices_url: String::new(),
            auth: "bearer".into(),
            api_key_header: "X-API-Key".into(),
            items: String::new(),
            next: String::new(),
            fields: BTreeMap::new(),
            compliant_values: vec!["compliant".into(), "true".into()],
        }
    }
}

/// A secret named by a file or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Not configured.
    None,
    /// The first line of this file.
    File(String),
    /// This environment variable.
    Env(String),
}

impl SecretSource {
    /// Read the secret now; `None` when not configured.
    pub fn read(&self) -> Result<Option<String>, String> {
        match self {
            SecretSource::None => Ok(None),
            SecretSource::File(f) => std::fs::read_to_string(f)
                .map(|s| Some(s.lines().next().unwrap_or("").trim().to_owned()))
                .map_err(|e| format!("cannot read secret file `{f}`: {e}")),
            SecretSource::Env(v) => std::env::var(v)
                .map(|s| Some(s.trim().to_owned()))
                .map_err(|_| format!("environment variable `{v}` (a secret) is not set")),
        }
    }
}

fn secret(origin: &str, what: &str, file: &str, env: &str) -> Result<SecretSource, ConfigError> {
    match (file.is_empty(), env.is_empty()) {
        (true, true) => Ok(SecretSource::None),
        (false, true) => Ok(SecretSource::File(file.into())),
        (true, false) => Ok(SecretSource::Env(env.into())),
        (false, false) => Err(invalid(
            origin,
            &format!("set only one of {what}_file and {what}_env"),
        )),
    }
}

impl DirectoryConfig {
    /// The client secret's source.
    pub fn client_secret(&self, origin: &str) -> Result<SecretSource, ConfigError> {
        secret(
            origin,
            "client_secret",
            &self.client_secret_file,
            &self.client_secret_env,
        )
    }

    /// The password's source.
    pub fn password(&self, origin: &str) -> Result<SecretSource, ConfigError> {
        secret(origin, "password", &self.password_file, &self.password_env)
    }

    /// The API key's source.
    pub fn api_key(&self, origin: &str) -> Result<SecretSource, ConfigError> {
        secret(origin, "api_key", &self.api_key_file, &self.api_key_env)
    }

    /// Check the settings the kind needs.
    pub fn check(&self, name: &str) -> Result<(), ConfigError> {
        let origin = format!("directories.{name}");
        let bad = |m: &str| invalid(&origin, m);
        self.client_secret(&origin)?;
        self.password(&origin)?;
        self.api_key(&origin)?;
        if self.timeout_secs == 0 || self.timeout_secs > 300 {
            return Err(bad("timeout_secs must be between 1 and 300"));
        }
        if self.retries > 10 {
            return Err(bad("retries must be at most 10"));
        }
        if self.page_size == 0 || self.page_size > 1000 {
            return Err(bad("page_size must be between 1 and 1000"));
        }
        let url = |u: &str, what: &str| -> Result<(), ConfigError> {
            if u.starts_with("https://") || u.starts_with("http://") {
                Ok(())
            } else {
                Err(bad(&format!("{what} must be an http(s) URL, not `{u}`")))
            }
        };
        let has_secret = |s: SecretSource| s != SecretSource::None;
        match self.kind.as_str() {
            "intune" => {
                if !self.base_url.is_empty() {
                    url(&self.base_url, "base_url")?;
                }
                if self.token_url.is_empty() && self.tenant_id.is_empty() {
                    return Err(bad("intune needs tenant_id (or token_url)"));
                }
                if self.client_id.is_empty() || !has_secret(self.client_secret(&origin)?) {
                    return Err(bad(
                        "intune needs client_id and client_secret_file or client_secret_env (app-only access)",
                    ));
                }
            }
            "jamf" => {
                url(&self.base_url, "base_url")?;
                if !["v1", "v2", "v3", "v4"].contains(&self.computers_api.as_str()) {
                    return Err(bad("computers_api must be v1, v2, v3 or v4"));
                }
                let oauth = !self.client_id.is_empty() && has_secret(self.client_secret(&origin)?);
                let basic = !self.username.is_empty() && has_secret(self.password(&origin)?);
                if !oauth && !basic {
                    return Err(bad(
                        "jamf needs an API client (client_id and client_secret_…) or a user (username and password_…)",
                    ));
                }
            }
            "workspace_one" => {
                url(&self.base_url, "base_url")?;
                if !has_secret(self.api_key(&origin)?) {
                    return Err(bad(
                        "workspace_one needs the tenant code (aw-tenant-code) in api_key_file or api_key_env",
                    ));
                }
                let oauth = !self.client_id.is_empty()
                    && has_secret(self.client_secret(&origin)?)
                    && !self.token_url.is_empty();
                let basic = !self.username.is_empty() && has_secret(self.password(&origin)?);
                if !oauth && !basic {
                    return Err(bad(
                        "workspace_one needs an OAuth client (client_id, client_secret_…, token_url) or a user (username and password_…)",
                    ));
                }
            }
            "generic" => {
                url(&self.devices_url, "devices_url")?;
                if !self.devices_url.contains("{email}") {
                    return Err(bad("devices_url must contain {email}"));
                }
                if !["bearer", "basic", "header", "none"].contains(&self.auth.as_str()) {
                    return Err(bad("auth must be bearer, basic, header or none"));
                }
                if !self.fields.contains_key("id") {
                    return Err(bad(
                        "fields.id (a JSON pointer to the device ID) is required",
                    ));
                }
                const FIELDS: &[&str] = &[
                    "id",
                    "name",
                    "model",
                    "os",
                    "os_version",
                    "serial_number",
                    "udid",
                    "imei",
                    "compliance",
                    "last_check_in",
                    "user",
                    "managed",
                ];
                for (k, v) in &self.fields {
                    if !FIELDS.contains(&k.as_str()) {
                        return Err(bad(&format!(
                            "fields.{k} is not a device field; fields are {}",
                            FIELDS.join(", ")
                        )));
                    }
                    if !v.is_empty() && !v.starts_with('/') {
                        return Err(bad(&format!("fields.{k} must be a JSON pointer (`/a/b`)")));
                    }
                }
                for p in [&self.items, &self.next] {
                    if !p.is_empty() && !p.starts_with('/') {
                        return Err(bad("items and next must be JSON pointers (`/a/b`)"));
                    }
                }
            }
            "file" => {
                if self.path.is_empty() {
                    return Err(bad(
                        "file needs path: an inventory file (.json: an array of devices; .csv: a header row of device fields)",
                    ));
                }
            }
            other => {
                return Err(bad(&format!(
                    "kind `{other}` is not one of {}",
                    DIRECTORY_KINDS.join(", ")
                )))
            }
        }
        Ok(())
    }
}

/// `[credentials.NAME]`: a credential profile for the registration flow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialConfig {
    /// What it is for, shown to users and officers.
    pub description: String,
    /// The certificate profile devices enroll with (`/scep/<profile>`).
    pub profile: String,
    /// The MDM directory the devices come from (`[directories.<name>]`).
    pub directory: String,
    /// Subject of the certificate, built from directory facts: `{email}`, `{user}` (the part
    /// before `@`), `{device_id}`, `{serial_number}`, `{udid}`, `{imei}`, `{model}`, `{name}`.
    pub subject: String,
    /// SANs, as `email:{email}`, `upn:{email}`, `uri:urn:uuid:{udid}`, `dns:…`.
    pub sans: Vec<String>,
    /// Key type the device generates: `rsa`.
    pub key_type: String,
    /// Key size the device generates.
    pub key_size: u32,
    /// How long a registration may wait for each next step (a device request, a decision, an
    /// enrollment) before it expires: `7d`, `12h`.
    pub request_ttl: String,
    /// How long a one-time challenge from the SCEP payload is valid.
    pub challenge_ttl: String,
    /// Refuse requests for devices the MDM does not report compliant (they are always shown,
    /// flagged).
    pub require_compliant: bool,
}

impl Default for CredentialConfig {
    fn default() -> Self {
        CredentialConfig {
            description: String::new(),
            profile: String::new(),
            directory: String::new(),
            subject: "CN={email}".into(),
            sans: vec!["email:{email}".into()],
            key_type: "rsa".into(),
            key_size: 2048,
            request_ttl: "7d".into(),
            challenge_ttl: "24h".into(),
            require_compliant: false,
        }
    }
}

/// The placeholders a credential's subject and SANs may use.
pub const PLACEHOLDERS: &[&str] = &[
    "email",
    "user",
    "device_id",
    "serial_number",
    "udid",
    "imei",
    "model",
    "name",
];

impl CredentialConfig {
    /// `request_ttl` in seconds.
    pub fn request_ttl_secs(&self) -> i64 {
        parse_span(&self.request_ttl).unwrap_or(7 * 86_400)
    }

    /// `challenge_ttl` in seconds.
    pub fn challenge_ttl_secs(&self) -> i64 {
        parse_span(&self.challenge_ttl).unwrap_or(86_400)
    }

    /// Check against the profiles and directories that exist.
    pub fn check(
        &self,
        name: &str,
        profiles: &BTreeMap<String, super::ProfileConfig>,
        directories: &BTreeMap<String, DirectoryConfig>,
    ) -> Result<(), ConfigError> {
        let origin = format!("credentials.{name}");
        let bad = |m: String| invalid(&origin, &m);
        if !profiles.contains_key(&self.profile) {
            return Err(bad(format!(
                "profile `{}` is not one of the profiles",
                self.profile
            )));
        }
        if !directories.contains_key(&self.directory) {
            return Err(bad(format!(
                "directory `{}` is not one of the directories",
                self.directory
            )));
        }
        for (what, v) in [
            ("request_ttl", &self.request_ttl),
            ("challenge_ttl", &self.challenge_ttl),
        ] {
            match parse_span(v) {
                Some(s) if s > 0 => {}
                _ => return Err(bad(format!("{what} `{v}` is not a span like 7d, 12h, 30m"))),
            }
        }
        if self.key_type != "rsa" {
            return Err(bad(
                "key_type must be rsa (SCEP clients encrypt and sign with RSA)".into(),
            ));
        }
        if ![2048, 3072, 4096].contains(&self.key_size) {
            return Err(bad("key_size must be 2048, 3072 or 4096".into()));
        }
        let sample = |t: &str| -> Result<String, String> { fill(t, &|_| Some("x".to_string())) };
        let subject = sample(&self.subject).map_err(|e| bad(format!("subject: {e}")))?;
        crate::pki::parse_dn(&subject).map_err(|e| bad(format!("subject: {e}")))?;
        for s in &self.sans {
            let v = sample(s).map_err(|e| bad(format!("sans: {e}")))?;
            match v.split_once(':') {
                Some(("dns" | "email" | "uri" | "upn" | "ip", _)) => {}
                _ => {
                    return Err(bad(format!(
                        "san `{s}` must start with dns:, email:, uri:, upn: or ip:"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Replace `{placeholder}`s in `template` with `value(name)`; an unknown placeholder or a
/// missing value is an error naming it.
pub fn fill(template: &str, value: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err(format!("`{template}` has an unclosed {{"));
        };
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "`{{{name}}}` is not a placeholder; use {}",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        match value(name) {
            Some(v) if !v.is_empty() => out.push_str(&v),
            _ => return Err(format!("the device has no {name}")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<crate::config::Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sigil.toml");
        std::fs::write(&path, text).unwrap();
        crate::config::Config::load_with_env(Some(&path), Vec::new())
    }

    const GOOD: &str = r#"
[profiles.default]
[profiles.derived]
[directories.intune]
kind = "intune"
tenant_id = "t"
client_id = "c"
client_secret_env = "GRAPH_SECRET"
[credentials.piv]
profile = "derived"
directory = "intune"
subject = "CN={user},O=Agency"
sans = ["email:{email}", "uri:urn:uuid:{udid}"]
"#;

    #[test]
    fn directories_and_credentials_are_checked_together() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.credentials["piv"].request_ttl_secs(), 7 * 86_400);
        for (from, to, want) in [
            (
                "profile = \"derived\"",
                "profile = \"nope\"",
                "profile `nope`",
            ),
            (
                "directory = \"intune\"",
                "directory = \"jamf\"",
                "directory `jamf`",
            ),
            ("{user}", "{colour}", "not a placeholder"),
            ("email:{email}", "mail:{email}", "must start with"),
            (
                "kind = \"intune\"",
                "kind = \"airwatch\"",
                "kind `airwatch`",
            ),
            ("client_id = \"c\"", "client_id = \"\"", "needs client_id"),
            (
                "client_secret_env = \"GRAPH_SECRET\"",
                "client_secret_env = \"GRAPH_SECRET\"\nclient_secret_file = \"/x\"",
                "only one of client_secret_file",
            ),
            (
                "[credentials.piv]",
                "[credentials.piv]\nrequest_ttl = \"soon\"",
                "request_ttl",
            ),
            (
                "[credentials.piv]",
                "[credentials.piv]\nkey_size = 1024",
                "key_size",
            ),
            (
                "[credentials.piv]",
                "[credentials.piv]\ncolour = 1",
                "colour",
            ),
        ] {
            let text = GOOD.replacen(from, to, 1);
            let e = load(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{to}: {e}");
        }
    }

    #[test]
    fn placeholders_fill_and_refuse_unknown_or_missing() {
        let v = |n: &str| match n {
            "email" => Some("a@b.gov".to_string()),
            "udid" => Some(String::new()),
            _ => None,
        };
        assert_eq!(fill("CN={email},O=X", &v).unwrap(), "CN=a@b.gov,O=X");
        assert!(fill("CN={mail}", &v)
            .unwrap_err()
            .contains("not a placeholder"));
        assert!(fill("uri:{udid}", &v).unwrap_err().contains("no udid"));
        assert!(fill("CN={email", &v).unwrap_err().contains("unclosed"));
    }
}
