//! Configuration: a TOML file, with every key overridable by an environment variable.
//!
//! `SIGIL_<SECTION>_<KEY>` overrides `[section] key`: `SIGIL_HSM_PIN_FILE` sets `[hsm] pin_file`,
//! `SIGIL_SERVER_LISTEN` sets `[server] listen`. Values take the type of the key they replace
//! (numbers, booleans, text). Unknown keys are refused with the list of known ones, so a typo
//! does not pass silently. The PIN itself is never a configuration value: the file names a PIN
//! file (`pin_file`) or an environment variable (`pin_env`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::authority::{
    fill, CredentialSettings, NotifySettings, ProfileSettings, PLACEHOLDERS,
};
pub use crate::mdm::DirectorySettings;
pub use crate::secret::SecretSource;

use crate::hsm::{HsmConfig, KeyUri, PinSource};
use crate::telemetry::LogFormat;

/// Environment variables that start with `SIGIL_` but are not configuration keys.
const NOT_SETTINGS: &[&str] = &[
    "SIGIL_CONFIG",
    "SIGIL_ADMIN_TOKEN",
    "SIGIL_BASE_URL",
    "SIGIL_SCEP_URL",
    "SIGIL_CHALLENGE",
    "SIGIL_CA_SHA256",
    "SIGIL_RA_SHA256",
    "SIGIL_DATA_DIR",
    "SIGIL_PIN",
];

/// Configuration sections, as named in the file and in `SIGIL_<SECTION>_…` variables.
const SECTIONS: &[&str] = &[
    "server", "hsm", "log", "scep", "database", "ocsp", "notify", "identity", "audit",
];

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file `{path}`: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file or an override is not valid.
    #[error("invalid configuration ({origin}): {message}")]
    Invalid {
        /// Where the configuration came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: listening and data.
    pub server: ServerConfig,
    /// `[hsm]`: the PKCS#11 token.
    pub hsm: HsmSection,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[scep]`: the SCEP service.
    pub scep: ScepConfig,
    /// `[database]`: where decisions are kept.
    pub database: DatabaseConfig,
    /// `[ocsp]`: the OCSP responder.
    pub ocsp: OcspConfig,
    /// `[notify]`: the expiry webhook.
    pub notify: NotifySettings,
    /// `[audit]`: how the audit log is sealed.
    pub audit: crate::authority::SealSettings,
    /// `[identity]`: how people sign in (OpenID Connect, PIV) and how power is granted.
    pub identity: crate::identity::IdentitySettings,
    /// `[profiles.NAME]`: certificate profiles served at `/scep/NAME`.
    pub profiles: std::collections::BTreeMap<String, ProfileSettings>,
    /// `[directories.NAME]`: MDM directories asked for a user's devices.
    pub directories: std::collections::BTreeMap<String, DirectorySettings>,
    /// `[credentials.NAME]`: credential profiles of the registration flow.
    pub credentials: std::collections::BTreeMap<String, CredentialSettings>,
    /// `[intune.NAME]`: Intune tenants whose SCEP challenges profiles with
    /// `challenge = "intune"` have validated.
    pub intune: std::collections::BTreeMap<String, crate::intune::IntuneSettings>,
    /// `[gateway]`: read and checked by `sigil gateway` only (see `crate::gateway::config`),
    /// so one file may serve both processes in a small installation.
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    pub gateway: toml::Table,
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// PostgreSQL URL (`postgres://user:password@host/db?sslmode=require`); empty: the embedded
    /// SQLite file `<data_dir>/sigil.db`. Usually given as `SIGIL_DATABASE_URL`.
    pub url: String,
    /// PostgreSQL connections per node.
    pub pool_size: usize,
    /// CA certificate(s) (PEM) that sign the PostgreSQL server's certificate, for
    /// `sslmode=require` against a private CA; empty: the system's trust store.
    pub ca_file: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: String::new(),
            pool_size: 16,
            ca_file: String::new(),
        }
    }
}

/// `[ocsp]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OcspConfig {
    /// Minutes an OCSP answer is valid (its nextUpdate); answers without a nonce are reused
    /// for half of that, and re-signed after.
    pub validity_minutes: u64,
    /// Days the delegated responder's certificate is valid; it is renewed when a third is
    /// left. Short, since relying parties do not check its revocation (id-pkix-ocsp-nocheck).
    pub responder_days: u32,
}

impl Default for OcspConfig {
    fn default() -> Self {
        OcspConfig {
            validity_minutes: 60,
            responder_days: 30,
        }
    }
}

/// `[scep]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScepConfig {
    /// Profile served at `/scep` (without a profile name).
    pub default_profile: String,
    /// Largest PKIOperation accepted, in bytes (larger bodies get 413 before parsing).
    pub max_message_bytes: usize,
    /// GetCACert includes the root CA certificate when the CA is an intermediate.
    pub include_root: bool,
    /// Seconds a request holds its transaction while its certificate is signed. A node that
    /// dies mid-way leaves the reservation behind; after this, the device's resend or poll
    /// finishes it on any node. Longer than the slowest signature, short enough to wait out.
    pub reservation_secs: u64,
}

impl Default for ScepConfig {
    fn default() -> Self {
        ScepConfig {
            default_profile: "default".into(),
            max_message_bytes: 256 * 1024,
            include_root: true,
            reservation_secs: crate::store::RESERVATION_SECS as u64,
        }
    }
}

fn default_profiles() -> std::collections::BTreeMap<String, ProfileSettings> {
    let mut m = std::collections::BTreeMap::new();
    m.insert("default".to_string(), ProfileSettings::default());
    m
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            hsm: HsmSection::default(),
            log: LogConfig::default(),
            scep: ScepConfig::default(),
            database: DatabaseConfig::default(),
            ocsp: OcspConfig::default(),
            notify: NotifySettings::default(),
            audit: Default::default(),
            identity: Default::default(),
            profiles: default_profiles(),
            directories: Default::default(),
            credentials: Default::default(),
            intune: Default::default(),
            gateway: Default::default(),
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:8080`).
    pub listen: String,
    /// Directory for the embedded store and the exported certificates.
    pub data_dir: PathBuf,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// Seconds between background rounds (CRL renewal; one node at a time).
    pub background_interval_secs: u64,
    /// Seconds a client has to send a request's head (slow clients are cut off).
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's body after its head.
    pub body_timeout_secs: u64,
    /// The URL devices reach this server at (`https://scep.agency.gov`), put into SCEP
    /// payloads; empty: taken from the request's `Host`.
    pub public_url: String,
    /// TLS: the server certificate chain (PEM); empty: plain HTTP.
    pub tls_cert: String,
    /// TLS: the server key (PEM file, mode 600).
    pub tls_key: String,
    /// TLS: CA certificate(s) (PEM) that client certificates must chain to: the transport CA
    /// from `sigil gateway-cert` (required with `gateway_names`); empty: `<data_dir>/ca.pem`.
    /// Clients without a certificate are still accepted (the API uses tokens); a certificate
    /// that does not verify fails the handshake.
    pub client_ca: String,
    /// Common names of gateway client certificates allowed to forward SCEP. When set, SCEP is
    /// answered only to TLS clients presenting one of them (`sigil gateway`); CRL, OCSP and the
    /// API stay open as before.
    pub gateway_names: Vec<String>,
    /// Load balancers or reverse proxies in front of Sigil (addresses or networks): from
    /// these, the client is the rightmost `X-Forwarded-For` address that is not one of them
    /// (per-source limits, the audit's sources, the access log). Empty: the connection's
    /// address, and the header is ignored.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("var/data"),
            shutdown_timeout_secs: 30,
            workers: 0,
            background_interval_secs: 300,
            header_timeout_secs: 5,
            body_timeout_secs: 10,
            public_url: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            client_ca: String::new(),
            gateway_names: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[hsm]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HsmSection {
    /// Path of the PKCS#11 module.
    pub module: PathBuf,
    /// Token label.
    pub token: String,
    /// File holding the user PIN (first line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
    /// Name of an environment variable holding the user PIN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_env: Option<String>,
    /// Working sessions (parallel token operations).
    pub pool_size: usize,
    /// The CA key: a label on the token or a `pkcs11:` URI.
    pub ca_key: String,
    /// The RA key (signs CertRep and, unless `ra_decrypt_key` is set, decrypts requests).
    pub ra_key: String,
    /// Optional separate RA decryption key (for HSM partitions that refuse PKCS#1 v1.5
    /// decryption next to signing keys). Empty: the RA key decrypts.
    pub ra_decrypt_key: String,
}

impl Default for HsmSection {
    fn default() -> Self {
        HsmSection {
            module: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            token: "sigil".into(),
            pin_file: None,
            pin_env: None,
            pool_size: 4,
            ca_key: "sigil-ca".into(),
            ra_key: "sigil-ra".into(),
            ra_decrypt_key: String::new(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// Filter directive (`info`, `sigil=debug`); `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

impl HsmSection {
    /// The PIN source, or an error that says how to configure one.
    pub fn pin_source(&self) -> Result<PinSource, ConfigError> {
        match (&self.pin_file, &self.pin_env) {
            (Some(f), None) => Ok(PinSource::File(f.clone())),
            (None, Some(v)) => Ok(PinSource::Env(v.clone())),
            (Some(_), Some(_)) => Err(invalid(
                "hsm",
                "set only one of hsm.pin_file and hsm.pin_env",
            )),
            (None, None) => Err(invalid(
                "hsm",
                "no PIN source: set hsm.pin_file (SIGIL_HSM_PIN_FILE) or hsm.pin_env (SIGIL_HSM_PIN_ENV)",
            )),
        }
    }

    /// Connection settings for [`crate::hsm::Hsm::open`].
    pub fn hsm_config(&self) -> Result<HsmConfig, ConfigError> {
        if self.token.is_empty() {
            return Err(invalid("hsm", "hsm.token (SIGIL_HSM_TOKEN) is empty"));
        }
        Ok(HsmConfig {
            module: self.module.clone(),
            token: self.token.clone(),
            pin: self.pin_source()?,
            pool_size: self.pool_size.max(1),
        })
    }

    /// Resolve a key setting (label or URI) to a URI on the configured token.
    pub fn key_uri(&self, setting: &str, value: &str) -> Result<KeyUri, ConfigError> {
        if value.is_empty() {
            return Err(invalid("hsm", &format!("hsm.{setting} is empty")));
        }
        if value.starts_with("pkcs11:") {
            value
                .parse()
                .map_err(|e: crate::hsm::HsmError| invalid("hsm", &format!("hsm.{setting}: {e}")))
        } else {
            Ok(KeyUri::labelled(&self.token, value))
        }
    }

    /// The CA key URI.
    pub fn ca_key_uri(&self) -> Result<KeyUri, ConfigError> {
        self.key_uri("ca_key", &self.ca_key)
    }

    /// The RA signing key URI.
    pub fn ra_key_uri(&self) -> Result<KeyUri, ConfigError> {
        self.key_uri("ra_key", &self.ra_key)
    }

    /// The RA decryption key URI (the RA key unless a separate one is configured).
    pub fn ra_decrypt_key_uri(&self) -> Result<KeyUri, ConfigError> {
        if self.ra_decrypt_key.is_empty() {
            self.ra_key_uri()
        } else {
            self.key_uri("ra_decrypt_key", &self.ra_decrypt_key)
        }
    }
}

pub use crate::clock::parse_span;

fn invalid(origin: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.into(),
        message: message.into(),
    }
}

impl Config {
    /// Read `path` (if given) and apply `SIGIL_*` overrides from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (text, origin) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?,
                format!("file `{}`", p.display()),
            ),
            None => (String::new(), "defaults".to_string()),
        };
        Self::parse_with_env(&text, &origin, env)
    }

    /// As [`Config::load_with_env`], from the text of a file (`origin` names it in errors).
    pub fn parse_with_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let origin = origin.to_string();
        let file_table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            origin: origin.clone(),
            message: e.message().to_string(),
        })?;
        // Check the file on its own first, so an error names the file.
        let from_file: Config = Config::deserialize(toml::Value::Table(file_table.clone()))
            .map_err(|e| ConfigError::Invalid {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
        // Key types come from the effective configuration (defaults filled in).
        let typed =
            toml::Value::try_from(&from_file).map_err(|e| invalid(&origin, &e.to_string()))?;
        let mut table = file_table;
        let mut overridden = Vec::new();
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("SIGIL_") else {
                continue;
            };
            if NOT_SETTINGS.contains(&name.as_str())
                || name.starts_with("SIGIL_TEST_")
                || name.starts_with("SIGIL_GATEWAY_")
            {
                continue;
            }
            let Some((section, key)) = SECTIONS.iter().find_map(|s| {
                rest.strip_prefix(&s.to_ascii_uppercase())
                    .and_then(|r| r.strip_prefix('_'))
                    .map(|k| (*s, k.to_ascii_lowercase()))
            }) else {
                return Err(invalid(
                    &format!("environment variable {name}"),
                    &format!(
                        "`{name}` names no section; settings are SIGIL_<SECTION>_<KEY> with SECTION one of {}",
                        SECTIONS.iter().map(|s| s.to_ascii_uppercase()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            };
            if section == "hsm" && key == "pin" {
                return Err(invalid(
                    &format!("environment variable {name}"),
                    "the PIN is not a setting: put it in a file named by SIGIL_HSM_PIN_FILE, or in a variable named by SIGIL_HSM_PIN_ENV",
                ));
            }
            let current = typed.get(section).and_then(|s| s.get(&key));
            // Keys that are absent when unset (options) are not in `typed`.
            const OPTIONAL: &[(&str, &str)] = &[("hsm", "pin_file"), ("hsm", "pin_env")];
            if current.is_none() && !OPTIONAL.contains(&(section, key.as_str())) {
                let mut known: Vec<String> = typed
                    .get(section)
                    .and_then(|t| t.as_table())
                    .map(|t| t.keys().cloned().collect())
                    .unwrap_or_default();
                known.extend(
                    OPTIONAL
                        .iter()
                        .filter(|(s, _)| *s == section)
                        .map(|(_, k)| k.to_string()),
                );
                known.sort();
                return Err(invalid(
                    &format!("environment variable {name}"),
                    &format!(
                        "`{name}` is not a setting; [{section}] has: {}",
                        known
                            .iter()
                            .map(|k| format!(
                                "SIGIL_{}_{}",
                                section.to_ascii_uppercase(),
                                k.to_ascii_uppercase()
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            let parsed = match current {
                Some(toml::Value::Integer(_)) => value
                    .parse::<i64>()
                    .map(toml::Value::Integer)
                    .map_err(|_| {
                        invalid(
                            &format!("environment variable {name}"),
                            &format!("`{value}` is not a whole number"),
                        )
                    })?,
                Some(toml::Value::Boolean(_)) => value
                    .parse::<bool>()
                    .map(toml::Value::Boolean)
                    .map_err(|_| {
                        invalid(
                            &format!("environment variable {name}"),
                            &format!("`{value}` is not true or false"),
                        )
                    })?,
                // Lists as comma-separated text (as the gateway's settings).
                Some(toml::Value::Array(_)) => toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| toml::Value::String(v.to_string()))
                        .collect(),
                ),
                _ => toml::Value::String(value.clone()),
            };
            let sect = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            if let toml::Value::Table(t) = sect {
                t.insert(key, parsed);
            }
            overridden.push(name);
        }
        let origin = if overridden.is_empty() {
            origin
        } else {
            format!("{origin} with {}", overridden.join(", "))
        };
        let config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid {
                origin,
                message: e.to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Does a `[credentials.*]` entry name this profile? Then it issues only through
    /// registrations.
    pub fn registration_only(&self, profile: &str) -> bool {
        self.credentials.values().any(|c| c.profile == profile)
    }

    /// The profiles (with whether each issues only through registrations) and directories,
    /// for checking an integration token's scope.
    pub fn scope_names(&self) -> (Vec<(String, bool)>, Vec<String>) {
        (
            self.profiles
                .keys()
                .map(|p| (p.clone(), self.registration_only(p)))
                .collect(),
            self.directories.keys().cloned().collect(),
        )
    }

    /// Cross-checks that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.profiles.contains_key(&self.scep.default_profile) {
            return Err(invalid(
                "scep",
                &format!(
                    "scep.default_profile `{}` is not one of the profiles ({})",
                    self.scep.default_profile,
                    self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        for (name, p) in &self.profiles {
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    "profiles",
                    &format!("profile name `{name}` must be letters, digits, - or _"),
                ));
            }
            p.cert_profile(name)
                .map_err(|m| invalid(&format!("profiles.{name}"), &m))?;
            if let Some(w) = &p.wifi {
                w.check()
                    .map_err(|m| invalid(&format!("profiles.{name}"), &m))?;
            }
            if let Some(v) = &p.vpn {
                v.check()
                    .map_err(|m| invalid(&format!("profiles.{name}"), &m))?;
            }
        }
        let named = |kind: &str, name: &str| -> Result<(), ConfigError> {
            if name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                Ok(())
            } else {
                Err(invalid(
                    kind,
                    &format!("name `{name}` must be letters, digits, - or _"),
                ))
            }
        };
        for (name, d) in &self.directories {
            named("directories", name)?;
            d.check()
                .map_err(|m| invalid(&format!("directories.{name}"), &m))?;
        }
        for (name, c) in &self.credentials {
            named("credentials", name)?;
            let profiles = self.profiles.keys().map(String::as_str).collect();
            let directories = self.directories.keys().map(String::as_str).collect();
            c.check(&profiles, &directories)
                .map_err(|m| invalid(&format!("credentials.{name}"), &m))?;
            if let (Some(push), Some(d)) = (&c.push, self.directories.get(&c.directory)) {
                push.check(d.kind())
                    .map_err(|m| invalid(&format!("credentials.{name}"), &m))?;
                let sends = if !push.webhook_url.is_empty() {
                    Some("push.webhook_url sends the SCEP payload")
                } else if push.per_device_profile {
                    Some("push.per_device_profile hands Jamf the device's profile")
                } else {
                    None
                };
                if let (Some(what), true) = (sends, self.server.public_url.is_empty()) {
                    return Err(invalid(
                        &format!("credentials.{name}"),
                        &format!("{what}, whose SCEP URL needs server.public_url (SIGIL_SERVER_PUBLIC_URL): the address devices reach"),
                    ));
                }
            }
            // The credential's profile issues only after an officer's approval: no static
            // challenge and no open door may bypass the registration.
            if let Some(p) = self.profiles.get(&c.profile) {
                if !p.challenge_sha256.is_empty() || p.allow_without_challenge {
                    return Err(invalid(
                        &format!("profiles.{}", c.profile),
                        &format!(
                            "profile `{}` is the profile of credential `{name}`, so it issues only through registrations: remove its {} (devices get one-time challenges from approved registrations)",
                            c.profile,
                            if p.allow_without_challenge { "allow_without_challenge" } else { "static challenge (challenge_sha256)" }
                        ),
                    ));
                }
            }
        }
        for (name, v) in [
            (
                "server.header_timeout_secs",
                self.server.header_timeout_secs,
            ),
            ("server.body_timeout_secs", self.server.body_timeout_secs),
        ] {
            if !(1..=300).contains(&v) {
                return Err(invalid("server", &format!("{name} must be 1 to 300")));
            }
        }
        if !(1..=3600).contains(&self.scep.reservation_secs) {
            return Err(invalid(
                "scep",
                "scep.reservation_secs must be between 1 and 3600",
            ));
        }
        if !(3..=366).contains(&self.ocsp.responder_days) {
            return Err(invalid(
                "ocsp",
                "ocsp.responder_days must be between 3 and 366",
            ));
        }
        if self.ocsp.validity_minutes == 0 || self.ocsp.validity_minutes > 7 * 24 * 60 {
            return Err(invalid(
                "ocsp",
                "ocsp.validity_minutes must be between 1 and 10080 (a week)",
            ));
        }
        if self.server.tls_cert.is_empty() != self.server.tls_key.is_empty() {
            return Err(invalid(
                "server",
                "set both server.tls_cert and server.tls_key, or neither",
            ));
        }
        crate::client_address::TrustedProxies::parse(
            "server.trusted_proxies",
            &self.server.trusted_proxies,
        )
        .map_err(|m| invalid("server", &m))?;
        if !self.server.gateway_names.is_empty()
            && (self.server.tls_cert.is_empty() || self.server.client_ca.is_empty())
        {
            return Err(invalid(
                "server",
                "server.gateway_names needs TLS (server.tls_cert, server.tls_key) and server.client_ca (the transport CA from `sigil gateway-cert`, not the CA that issues devices): gateways are told apart by their client certificates",
            ));
        }
        let w = &self.notify.webhook_url;
        if !(w.is_empty() || w.starts_with("http://") || w.starts_with("https://")) {
            return Err(invalid(
                "notify",
                "notify.webhook_url must start with http:// or https://",
            ));
        }
        if self.notify.within_days == 0 || self.notify.within_days > 3650 {
            return Err(invalid("notify", "notify.within_days must be 1 to 3650"));
        }
        if self.notify.timeout_secs == 0 || self.notify.timeout_secs > 300 {
            return Err(invalid("notify", "notify.timeout_secs must be 1 to 300"));
        }
        self.notify.secret().map_err(|m| invalid("notify", &m))?;
        if self.audit.key.is_empty() {
            return Err(invalid(
                "audit",
                "audit.key must name the audit key's label",
            ));
        }
        for uri in [
            self.hsm.ca_key_uri(),
            self.hsm.ra_key_uri(),
            self.hsm.ra_decrypt_key_uri(),
        ]
        .into_iter()
        .flatten()
        {
            if uri.label().is_ok_and(|l| l == self.audit.key) {
                return Err(invalid(
                    "audit",
                    "audit.key must be a key of its own, not the CA or RA key",
                ));
            }
        }
        if !(10..=60_000).contains(&self.audit.seal_interval_ms) {
            return Err(invalid(
                "audit",
                "audit.seal_interval_ms must be 10 to 60000",
            ));
        }
        self.identity
            .check(&self.server.public_url)
            .map_err(|m| invalid("identity", &m))?;
        for (name, i) in &self.intune {
            i.check()
                .map_err(|m| invalid(&format!("intune.{name}"), &m))?;
        }
        for (name, p) in &self.profiles {
            if p.challenge == "intune" && !self.intune.contains_key(&p.intune) {
                return Err(invalid(
                    &format!("profiles.{name}"),
                    &format!(
                        "intune = \"{}\" names no [intune.{}] section",
                        p.intune, p.intune
                    ),
                ));
            }
        }
        let u = &self.server.public_url;
        if !(u.is_empty() || u.starts_with("http://") || u.starts_with("https://")) {
            return Err(invalid(
                "server",
                "server.public_url must start with http:// or https://",
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML (no secrets are part of it).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database.url = redact_database_url(&shown.database.url);
        toml::to_string_pretty(&shown).unwrap_or_default()
    }
}

mod domain;
mod redact;
pub use redact::redact_database_url;

#[cfg(test)]
mod tests;
