//! `[directories.NAME]`: how to reach one MDM directory, one settings type per vendor
//! (`kind = "intune" | "jamf" | "workspace_one" | "generic" | "file"`). A key another vendor
//! uses is refused, so a typo or a pasted block of the wrong kind is caught when the
//! configuration loads.
//!
//! Secrets (client secrets, passwords, API keys) are never values here: each is named by a
//! file (`…_file`, first line) or an environment variable (`…_env`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret::SecretSource;

/// One MDM directory's settings, by vendor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirectorySettings {
    /// Microsoft Intune: Graph `managedDevices`, app-only OAuth2.
    Intune(IntuneSettings),
    /// Jamf Pro: computers and mobile-device inventory.
    Jamf(JamfSettings),
    /// Workspace ONE UEM: user search, then device search.
    WorkspaceOne(WorkspaceOneSettings),
    /// Any HTTP JSON API, its URL and field mapping configured.
    Generic(GenericSettings),
    /// An inventory file (JSON array of devices, or CSV with a header row).
    File(FileSettings),
}

/// How a connector talks HTTP (every API kind has these keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// Seconds one HTTP exchange may take.
    pub timeout_secs: u64,
    /// Retries after a failed exchange (timeouts, 429 and 5xx), with exponential backoff.
    pub retries: u32,
    /// Devices per page asked for.
    pub page_size: u32,
    /// Stop after this many devices for one user (a guard against an endless listing).
    pub max_devices: usize,
}

/// The secrets a connector may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets {
    /// OAuth2 client secret.
    pub client_secret: SecretSource,
    /// Password (basic authentication, or a user's bearer token).
    pub password: SecretSource,
    /// API key (Workspace ONE tenant code; `generic` bearer or header).
    pub api_key: SecretSource,
}

/// Declares a vendor's settings with the HTTP keys every API kind has
/// ([`HttpSettings`]), their defaults, and `http()`.
macro_rules! api_settings {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Seconds one HTTP exchange may take.
            pub timeout_secs: u64,
            /// Retries after a failed exchange (timeouts, 429 and 5xx), with exponential
            /// backoff.
            pub retries: u32,
            /// Devices per page asked for.
            pub page_size: u32,
            /// Stop after this many devices for one user (a guard against an endless
            /// listing).
            pub max_devices: usize,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $( $field: $default, )*
                    timeout_secs: 10,
                    retries: 2,
                    page_size: 100,
                    max_devices: 1000,
                }
            }
        }

        impl $name {
            /// The HTTP settings.
            pub fn http(&self) -> HttpSettings {
                HttpSettings {
                    timeout_secs: self.timeout_secs,
                    retries: self.retries,
                    page_size: self.page_size,
                    max_devices: self.max_devices,
                }
            }
        }
    };
}

api_settings! {
    /// `kind = "intune"`.
    IntuneSettings {
        /// Graph base URL (default `https://graph.microsoft.com`).
        base_url: String = String::new(),
        /// OAuth2 token endpoint (default
        /// `https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token`).
        token_url: String = String::new(),
        /// OAuth2 scope (default `https://graph.microsoft.com/.default`).
        scope: String = String::new(),
        /// Entra ID tenant.
        tenant_id: String = String::new(),
        /// App registration's client ID.
        client_id: String = String::new(),
        /// File holding the client secret.
        client_secret_file: String = String::new(),
        /// Environment variable holding the client secret.
        client_secret_env: String = String::new(),
    }
}

api_settings! {
    /// `kind = "jamf"`.
    JamfSettings {
        /// `https://x.jamfcloud.com`.
        base_url: String = String::new(),
        /// OAuth2 token endpoint (default `<base_url>/api/oauth/token`).
        token_url: String = String::new(),
        /// API client ID (or use `username`).
        client_id: String = String::new(),
        /// File holding the API client secret.
        client_secret_file: String = String::new(),
        /// Environment variable holding the API client secret.
        client_secret_env: String = String::new(),
        /// User for `/api/v1/auth/token` (instead of an API client).
        username: String = String::new(),
        /// File holding the user's password.
        password_file: String = String::new(),
        /// Environment variable holding the user's password.
        password_env: String = String::new(),
        /// The computers-inventory API version (`v1` … `v4`; `v3` is current).
        computers_api: String = "v3".into(),
    }
}

api_settings! {
    /// `kind = "workspace_one"`.
    WorkspaceOneSettings {
        /// `https://as1506.awmdm.com`.
        base_url: String = String::new(),
        /// The UEM OAuth token URL (`https://na.uemauth.vmwservices.com/connect/token`) when
        /// `client_id` is set.
        token_url: String = String::new(),
        /// OAuth client ID (or use `username`).
        client_id: String = String::new(),
        /// File holding the OAuth client secret.
        client_secret_file: String = String::new(),
        /// Environment variable holding the OAuth client secret.
        client_secret_env: String = String::new(),
        /// Basic-authentication user.
        username: String = String::new(),
        /// File holding the password.
        password_file: String = String::new(),
        /// Environment variable holding the password.
        password_env: String = String::new(),
        /// File holding the tenant code (`aw-tenant-code`).
        api_key_file: String = String::new(),
        /// Environment variable holding the tenant code.
        api_key_env: String = String::new(),
    }
}

api_settings! {
    /// `kind = "generic"`: any HTTP JSON API.
    GenericSettings {
        /// The device-list URL; `{email}` is replaced by the URL-encoded email.
        devices_url: String = String::new(),
        /// `bearer` (the API key), `basic` (username and password), `header` (the API key in
        /// `api_key_header`) or `none`.
        auth: String = "bearer".into(),
        /// Basic-authentication user.
        username: String = String::new(),
        /// File holding the password.
        password_file: String = String::new(),
        /// Environment variable holding the password.
        password_env: String = String::new(),
        /// File holding the API key.
        api_key_file: String = String::new(),
        /// Environment variable holding the API key.
        api_key_env: String = String::new(),
        /// The header that carries the API key when `auth = "header"`.
        api_key_header: String = "X-API-Key".into(),
        /// JSON pointer to the array of devices in a page (empty: the page is the array).
        items: String = String::new(),
        /// JSON pointer to the next page's URL in a page (empty: no paging).
        next: String = String::new(),
        /// Device fields → JSON pointers inside one item. Fields: `id` (required), `name`,
        /// `model`, `os`, `os_version`, `serial_number`, `udid`, `imei`, `compliance`,
        /// `last_check_in`, `user`, `managed`.
        fields: BTreeMap<String, String> = BTreeMap::new(),
        /// Values of the `compliance` field that mean compliant (compared without case).
        compliant_values: Vec<String> = vec!["compliant".into(), "true".into()],
    }
}

/// `kind = "file"`: an inventory file whose columns are the device fields (`id`, `user`,
/// `name`, `model`, `os`, `os_version`, `serial_number`, `udid`, `imei`, `compliance`,
/// `managed`, `last_check_in`). Read at each lookup, so edits count at once.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FileSettings {
    /// `.json` (an array of devices) or `.csv` (a header row of device fields).
    pub path: String,
}

/// The device fields a `generic` mapping may name.
const GENERIC_FIELDS: &[&str] = &[
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

fn url(u: &str, what: &str) -> Result<(), String> {
    if u.starts_with("https://") || u.starts_with("http://") {
        Ok(())
    } else {
        Err(format!("{what} must be an http(s) URL, not `{u}`"))
    }
}

fn check_http(h: HttpSettings) -> Result<(), String> {
    if h.timeout_secs == 0 || h.timeout_secs > 300 {
        return Err("timeout_secs must be between 1 and 300".into());
    }
    if h.retries > 10 {
        return Err("retries must be at most 10".into());
    }
    if h.page_size == 0 || h.page_size > 1000 {
        return Err("page_size must be between 1 and 1000".into());
    }
    Ok(())
}

impl DirectorySettings {
    /// The kind, as written in the configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            DirectorySettings::Intune(_) => "intune",
            DirectorySettings::Jamf(_) => "jamf",
            DirectorySettings::WorkspaceOne(_) => "workspace_one",
            DirectorySettings::Generic(_) => "generic",
            DirectorySettings::File(_) => "file",
        }
    }

    /// The HTTP settings of an API kind (`None` for `file`).
    pub fn http(&self) -> Option<HttpSettings> {
        match self {
            DirectorySettings::Intune(s) => Some(s.http()),
            DirectorySettings::Jamf(s) => Some(s.http()),
            DirectorySettings::WorkspaceOne(s) => Some(s.http()),
            DirectorySettings::Generic(s) => Some(s.http()),
            DirectorySettings::File(_) => None,
        }
    }

    /// The secrets it names (each from a file or a variable, at most one of the two).
    pub fn secrets(&self) -> Result<Secrets, String> {
        let none = || SecretSource::None;
        let pair = SecretSource::from_pair;
        Ok(match self {
            DirectorySettings::Intune(s) => Secrets {
                client_secret: pair("client_secret", &s.client_secret_file, &s.client_secret_env)?,
                password: none(),
                api_key: none(),
            },
            DirectorySettings::Jamf(s) => Secrets {
                client_secret: pair("client_secret", &s.client_secret_file, &s.client_secret_env)?,
                password: pair("password", &s.password_file, &s.password_env)?,
                api_key: none(),
            },
            DirectorySettings::WorkspaceOne(s) => Secrets {
                client_secret: pair("client_secret", &s.client_secret_file, &s.client_secret_env)?,
                password: pair("password", &s.password_file, &s.password_env)?,
                api_key: pair("api_key", &s.api_key_file, &s.api_key_env)?,
            },
            DirectorySettings::Generic(s) => Secrets {
                client_secret: none(),
                password: pair("password", &s.password_file, &s.password_env)?,
                api_key: pair("api_key", &s.api_key_file, &s.api_key_env)?,
            },
            DirectorySettings::File(_) => Secrets {
                client_secret: none(),
                password: none(),
                api_key: none(),
            },
        })
    }

    /// Check that the settings the kind needs are there and make sense.
    pub fn check(&self) -> Result<(), String> {
        let secrets = self.secrets()?;
        if let Some(h) = self.http() {
            check_http(h)?;
        }
        match self {
            DirectorySettings::Intune(s) => {
                if !s.base_url.is_empty() {
                    url(&s.base_url, "base_url")?;
                }
                if s.token_url.is_empty() && s.tenant_id.is_empty() {
                    return Err("intune needs tenant_id (or token_url)".into());
                }
                if s.client_id.is_empty() || !secrets.client_secret.is_set() {
                    return Err("intune needs client_id and client_secret_file or client_secret_env (app-only access)".into());
                }
            }
            DirectorySettings::Jamf(s) => {
                url(&s.base_url, "base_url")?;
                if !["v1", "v2", "v3", "v4"].contains(&s.computers_api.as_str()) {
                    return Err("computers_api must be v1, v2, v3 or v4".into());
                }
                let oauth = !s.client_id.is_empty() && secrets.client_secret.is_set();
                let basic = !s.username.is_empty() && secrets.password.is_set();
                if !oauth && !basic {
                    return Err("jamf needs an API client (client_id and client_secret_…) or a user (username and password_…)".into());
                }
            }
            DirectorySettings::WorkspaceOne(s) => {
                url(&s.base_url, "base_url")?;
                if !secrets.api_key.is_set() {
                    return Err("workspace_one needs the tenant code (aw-tenant-code) in api_key_file or api_key_env".into());
                }
                let oauth = !s.client_id.is_empty()
                    && secrets.client_secret.is_set()
                    && !s.token_url.is_empty();
                let basic = !s.username.is_empty() && secrets.password.is_set();
                if !oauth && !basic {
                    return Err("workspace_one needs an OAuth client (client_id, client_secret_…, token_url) or a user (username and password_…)".into());
                }
            }
            DirectorySettings::Generic(s) => {
                url(&s.devices_url, "devices_url")?;
                if !s.devices_url.contains("{email}") {
                    return Err("devices_url must contain {email}".into());
                }
                if !["bearer", "basic", "header", "none"].contains(&s.auth.as_str()) {
                    return Err("auth must be bearer, basic, header or none".into());
                }
                if !s.fields.contains_key("id") {
                    return Err("fields.id (a JSON pointer to the device ID) is required".into());
                }
                for (k, v) in &s.fields {
                    if !GENERIC_FIELDS.contains(&k.as_str()) {
                        return Err(format!(
                            "fields.{k} is not a device field; fields are {}",
                            GENERIC_FIELDS.join(", ")
                        ));
                    }
                    if !v.is_empty() && !v.starts_with('/') {
                        return Err(format!("fields.{k} must be a JSON pointer (`/a/b`)"));
                    }
                }
                for p in [&s.items, &s.next] {
                    if !p.is_empty() && !p.starts_with('/') {
                        return Err("items and next must be JSON pointers (`/a/b`)".into());
                    }
                }
            }
            DirectorySettings::File(s) => {
                if s.path.is_empty() {
                    return Err("file needs path: an inventory file (.json: an array of devices; .csv: a header row of device fields)".into());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DirectorySettings, String> {
        toml::from_str::<DirectorySettings>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn each_kind_takes_its_own_keys_only() {
        let d = parse("kind = \"jamf\"\nbase_url = \"https://x.jamfcloud.com\"\nusername = \"u\"\npassword_env = \"P\"").unwrap();
        assert_eq!(d.kind(), "jamf");
        d.check().unwrap();
        let wrong = parse("kind = \"intune\"\ncomputers_api = \"v3\"").unwrap_err();
        assert!(wrong.contains("computers_api"), "{wrong}");
        let unknown = parse("kind = \"mobileiron\"").unwrap_err();
        assert!(unknown.contains("mobileiron"), "{unknown}");
        let file = parse("kind = \"file\"\npath = \"/srv/inventory.csv\"").unwrap();
        file.check().unwrap();
        assert!(file.http().is_none());
    }

    #[test]
    fn missing_needs_are_named() {
        let d = parse("kind = \"intune\"\nclient_id = \"c\"").unwrap();
        assert!(d.check().unwrap_err().contains("tenant_id"));
        let both = parse("kind = \"intune\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"/f\"\nclient_secret_env = \"E\"").unwrap();
        assert!(both.check().unwrap_err().contains("only one of"));
        let g = parse("kind = \"generic\"\ndevices_url = \"https://m/{email}\"\n[fields]\nid = \"/id\"\ncolour = \"/c\"").unwrap();
        assert!(g.check().unwrap_err().contains("fields.colour"));
    }
}
