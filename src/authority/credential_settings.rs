//! `[credentials.NAME]`: a credential profile (a certificate profile plus the policy of the
//! registration flow). The configuration reads it; the registration flow applies it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::clock::parse_span;

/// `[credentials.NAME]`: a credential profile for the registration flow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialSettings {
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
    /// `[credentials.NAME.push]`: tell the MDM to deliver when a registration is approved
    /// (and to take it back, and to re-push inside the renewal window).
    pub push: Option<crate::mdm::push::PushSettings>,
}

impl Default for CredentialSettings {
    fn default() -> Self {
        CredentialSettings {
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
            push: None,
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

impl CredentialSettings {
    /// `request_ttl` in seconds.
    pub fn request_ttl_secs(&self) -> i64 {
        parse_span(&self.request_ttl).unwrap_or(7 * 86_400)
    }

    /// `challenge_ttl` in seconds.
    pub fn challenge_ttl_secs(&self) -> i64 {
        parse_span(&self.challenge_ttl).unwrap_or(86_400)
    }

    /// Check against the profiles and directories that exist (by name).
    pub fn check(
        &self,
        profiles: &BTreeSet<&str>,
        directories: &BTreeSet<&str>,
    ) -> Result<(), String> {
        let bad = |m: String| m;
        if !profiles.contains(self.profile.as_str()) {
            return Err(bad(format!(
                "profile `{}` is not one of the profiles",
                self.profile
            )));
        }
        if !directories.contains(self.directory.as_str()) {
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
