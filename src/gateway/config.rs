//! `[gateway]`: the gateway's own settings, read from its own file (the gateway host holds no
//! PIN, no database URL and no other section's secrets), with `SIGIL_GATEWAY_<KEY>`
//! environment overrides (lists as comma-separated text).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::client_address::TrustedProxies;

/// `[gateway]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Public address to listen on.
    pub listen: String,
    /// Public TLS certificate chain (PEM); empty: plain HTTP (SCEP is signed and encrypted end
    /// to end; most MDM profiles use http).
    pub tls_cert: String,
    /// Public TLS key (PEM).
    pub tls_key: String,
    /// `sigil serve` nodes, as `https://core-1:8443`.
    pub upstreams: Vec<String>,
    /// CA certificate(s) (PEM) the cores' server certificates chain to.
    pub upstream_ca: String,
    /// This gateway's client certificate (PEM), from `sigil gateway-cert`.
    pub client_cert: String,
    /// This gateway's client key (PEM, PKCS#8).
    pub client_key: String,
    /// Largest request body forwarded.
    pub max_body_bytes: usize,
    /// Longest query string forwarded.
    pub max_query_bytes: usize,
    /// Requests per second each source address may make (token bucket refill rate).
    pub rate_per_second: f64,
    /// Requests a source may make in a burst (token bucket size).
    pub burst: u32,
    /// Seconds a client has to send its request headers.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send its request body.
    pub body_timeout_secs: u64,
    /// Seconds a core has to answer before the next one is tried.
    pub upstream_timeout_secs: u64,
    /// Seconds between health checks of the cores.
    pub health_interval_secs: u64,
    /// HTTP workers (0: one per core).
    pub workers: usize,
    /// Load balancers or proxies in front of the gateway (addresses or networks) whose
    /// `X-Forwarded-For` names the client: the rate limit is then per client, not per proxy,
    /// and the client is what the cores are told. Empty: the connection's address.
    pub trusted_proxies: Vec<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:8081".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
            upstreams: Vec::new(),
            upstream_ca: String::new(),
            client_cert: String::new(),
            client_key: String::new(),
            max_body_bytes: 256 * 1024,
            max_query_bytes: 64 * 1024,
            rate_per_second: 5.0,
            burst: 20,
            header_timeout_secs: 5,
            body_timeout_secs: 10,
            upstream_timeout_secs: 10,
            health_interval_secs: 5,
            workers: 0,
            trusted_proxies: Vec::new(),
        }
    }
}

/// A gateway configuration problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid gateway configuration ({origin}): {message}")]
pub struct GatewayConfigError {
    /// Where it came from.
    pub origin: String,
    /// What is wrong.
    pub message: String,
}

fn bad(origin: &str, message: impl Into<String>) -> GatewayConfigError {
    GatewayConfigError {
        origin: origin.into(),
        message: message.into(),
    }
}

impl GatewayConfig {
    /// Read `[gateway]` from `path` (other sections are ignored: a small installation may keep
    /// one file for both processes) and apply `SIGIL_GATEWAY_*` from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<GatewayConfig, GatewayConfigError> {
        let origin = path
            .map(|p| format!("file `{}`", p.display()))
            .unwrap_or_else(|| "defaults".into());
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| bad(&origin, e.to_string()))?,
            None => String::new(),
        };
        let file: toml::Table = toml::from_str(&text).map_err(|e| bad(&origin, e.message()))?;
        let mut table = match file.get("gateway") {
            Some(toml::Value::Table(t)) => t.clone(),
            Some(_) => return Err(bad(&origin, "[gateway] must be a table")),
            None => toml::Table::new(),
        };
        let defaults = toml::Value::try_from(GatewayConfig::default())
            .map_err(|e| bad(&origin, e.to_string()))?;
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        // Which settings the environment gave, so a bad value is blamed on its variable.
        let mut from_env: Vec<(String, String)> = Vec::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix("SIGIL_GATEWAY_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            let here = format!("environment variable {name}");
            let parsed = match defaults.get(&key) {
                Some(toml::Value::Integer(_)) => toml::Value::Integer(
                    value
                        .parse()
                        .map_err(|_| bad(&here, format!("`{value}` is not a whole number")))?,
                ),
                Some(toml::Value::Float(_)) => toml::Value::Float(
                    value
                        .parse()
                        .map_err(|_| bad(&here, format!("`{value}` is not a number")))?,
                ),
                Some(toml::Value::Array(_)) => toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| toml::Value::String(v.into()))
                        .collect(),
                ),
                Some(_) => toml::Value::String(value.clone()),
                None => {
                    let mut known: Vec<String> = defaults
                        .as_table()
                        .map(|t| {
                            t.keys()
                                .map(|k| format!("SIGIL_GATEWAY_{}", k.to_ascii_uppercase()))
                                .collect()
                        })
                        .unwrap_or_default();
                    known.sort();
                    return Err(bad(
                        &here,
                        format!("not a gateway setting; they are {}", known.join(", ")),
                    ));
                }
            };
            from_env.push((key.clone(), name.clone()));
            table.insert(key, parsed);
        }
        let c = GatewayConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| bad(&origin, e.to_string()))?;
        c.check().map_err(|m| {
            let blamed = from_env
                .iter()
                .find(|(key, _)| m.contains(key.as_str()))
                .map(|(_, var)| format!("environment variable {var}"))
                .unwrap_or_else(|| origin.clone());
            bad(&blamed, m)
        })?;
        Ok(c)
    }

    /// `trusted_proxies`, read.
    pub fn proxies(&self) -> Result<TrustedProxies, String> {
        TrustedProxies::parse("gateway.trusted_proxies", &self.trusted_proxies)
    }

    fn check(&self) -> Result<(), String> {
        if self.upstreams.is_empty() {
            return Err("gateway.upstreams names no `sigil serve` node".into());
        }
        for u in &self.upstreams {
            if !u.starts_with("https://") {
                return Err(format!(
                    "upstream `{u}` must be https:// (the gateway authenticates with its client certificate)"
                ));
            }
        }
        for (what, v) in [
            ("upstream_ca", &self.upstream_ca),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
        ] {
            if v.is_empty() {
                return Err(format!(
                    "gateway.{what} is empty (`sigil gateway-cert` makes the files)"
                ));
            }
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err("set both gateway.tls_cert and gateway.tls_key, or neither".into());
        }
        if !self.rate_per_second.is_finite() || self.rate_per_second <= 0.0 || self.burst == 0 {
            return Err("rate_per_second and burst must be above zero".into());
        }
        self.proxies()?;
        if self.max_body_bytes == 0 || self.max_query_bytes == 0 {
            return Err("max_body_bytes and max_query_bytes must be above zero".into());
        }
        for (what, v) in [
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("upstream_timeout_secs", self.upstream_timeout_secs),
            ("health_interval_secs", self.health_interval_secs),
        ] {
            if v == 0 || v > 300 {
                return Err(format!("gateway.{what} must be 1 to 300"));
            }
        }
        Ok(())
    }
}

/// Environment pairs for configuration tests.
#[cfg(test)]
pub(crate) fn test_env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::test_env as env;
    use super::*;

    #[test]
    fn reads_its_section_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        std::fs::write(
            &p,
            "[hsm]\npin_file = \"/not/for/the/gateway\"\n[gateway]\nupstreams = [\"https://a:1\"]\nupstream_ca = \"ca.pem\"\nclient_cert = \"g.pem\"\nclient_key = \"g.key\"\n",
        )
        .unwrap();
        let c = GatewayConfig::load(
            Some(&p),
            env(&[
                ("SIGIL_GATEWAY_UPSTREAMS", "https://a:1, https://b:2"),
                ("SIGIL_GATEWAY_BURST", "3"),
                ("SIGIL_GATEWAY_RATE_PER_SECOND", "0.5"),
                ("SIGIL_HSM_TOKEN", "ignored here"),
            ]),
        )
        .unwrap();
        assert_eq!(c.upstreams, ["https://a:1", "https://b:2"]);
        assert_eq!(c.burst, 3);
        assert_eq!(c.rate_per_second, 0.5);
        let e = GatewayConfig::load(Some(&p), env(&[("SIGIL_GATEWAY_BRUST", "3")])).unwrap_err();
        assert!(e.to_string().contains("SIGIL_GATEWAY_BURST"), "{e}");
        let e = GatewayConfig::load(Some(&p), env(&[("SIGIL_GATEWAY_UPSTREAMS", "http://a")]))
            .unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        assert!(GatewayConfig::load(None, env(&[])).is_err(), "no upstream");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks_never_everyone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        std::fs::write(
            &p,
            "[gateway]\nupstreams = [\"https://a:1\"]\nupstream_ca = \"ca.pem\"\nclient_cert = \"g.pem\"\nclient_key = \"g.key\"\ntrusted_proxies = [\"10.0.0.5\"]\n",
        )
        .unwrap();
        let c = GatewayConfig::load(Some(&p), env(&[])).unwrap();
        assert_eq!(c.trusted_proxies, ["10.0.0.5"]);
        let c = GatewayConfig::load(
            Some(&p),
            env(&[("SIGIL_GATEWAY_TRUSTED_PROXIES", "10.1.0.0/16, fd00:10::/48")]),
        )
        .unwrap();
        assert_eq!(c.trusted_proxies, ["10.1.0.0/16", "fd00:10::/48"]);
        let p2 = c.proxies().unwrap();
        assert!(p2.trusts("10.1.2.3".parse().unwrap()));
        for (bad, why) in [
            ("0.0.0.0/0", "every address"),
            ("lb.agency.gov", "not an address"),
        ] {
            let e = GatewayConfig::load(Some(&p), env(&[("SIGIL_GATEWAY_TRUSTED_PROXIES", bad)]))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("gateway.trusted_proxies")
                    && e.contains(why)
                    && e.contains("environment variable SIGIL_GATEWAY_TRUSTED_PROXIES"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_two_zone_example_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/two-zone/gateway.toml");
        let c = GatewayConfig::load(Some(&p), Vec::new()).unwrap();
        assert_eq!(c.upstreams.len(), 2);
    }
}
