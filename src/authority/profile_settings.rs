//! `[profiles.NAME]`: one certificate profile and the policy that goes with it, as the
//! configuration reads it, and its conversion to `pki::CertProfile`.

use serde::{Deserialize, Serialize};

/// `[profiles.NAME]`: a certificate profile and the RA policy that goes with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileSettings {
    /// Subject template (`CN={cn},O=Agency`); empty: the CSR's subject.
    pub subject: String,
    /// SAN kinds a CSR may carry: dns, email, uri, upn, ip.
    pub allowed_sans: Vec<String>,
    /// Key usage keywords.
    pub key_usage: Vec<String>,
    /// Extended key usage keywords or OIDs.
    pub extended_key_usage: Vec<String>,
    /// A request that asks for key usage or extended key usage gets exactly that, within
    /// `key_usage` and `extended_key_usage` (which are then the allowed set and the default);
    /// asking for more is refused. Unset: on for `challenge = "intune"` (the Intune profile's
    /// key usage and EKU, which Intune checked, reach the certificate), off otherwise.
    pub usage_from_request: Option<bool>,
    /// Certificate validity in days.
    pub validity_days: u32,
    /// Spread notAfter over this fraction of the validity (0 to 0.5): with 0.1 and 365 days,
    /// certificates end between 328.5 and 365 days after issuance, uniformly.
    pub validity_jitter: f64,
    /// Smallest RSA key accepted.
    pub min_rsa_bits: u32,
    /// Key types accepted: rsa, p256, p384.
    pub key_types: Vec<String>,
    /// Certificate policy OIDs.
    pub policy_oids: Vec<String>,
    /// CRL distribution point URL put into certificates.
    pub crl_url: String,
    /// OCSP URL put into AIA.
    pub ocsp_url: String,
    /// CA issuers URL put into AIA.
    pub ca_issuers_url: String,
    /// SHA-256 (hex) of the static challenge password; empty: no static challenge.
    pub challenge_sha256: String,
    /// `intune`: every request carries an Intune challenge, which the `[intune.NAME]`
    /// connection named by `intune` validates (and is told the outcome). Empty: Sigil's own
    /// challenges.
    pub challenge: String,
    /// The `[intune.NAME]` connection, with `challenge = "intune"`.
    pub intune: String,
    /// Accept enrollments without any challenge (only for closed test networks).
    pub allow_without_challenge: bool,
    /// Enrollments wait for an officer's approval (PENDING, then CertPoll).
    pub approval: bool,
    /// How long an enrollment waits for an officer before it expires (its CertPoll then
    /// gets FAILURE): `7d`, `12h`, `30s`.
    pub approval_expires: String,
    /// Days before expiry from which a renewal is accepted.
    pub renewal_days: u32,
    /// A renewal may keep the old key (false: it must bring a new one).
    pub renewal_same_key: bool,
    /// Once a renewal's certificate is issued, revoke the certificate it replaces (reason
    /// superseded).
    pub revoke_superseded: bool,
    /// Accept requests signed with SHA-1. Most deployed clients (macOS, Windows, micromdm's
    /// scepclient, jscep) sign with SHA-1 whatever GetCACaps says; Sigil itself never signs
    /// with SHA-1 unless `legacy` is on.
    pub accept_sha1_requests: bool,
    /// Old clients only: accept single DES, answer SHA-1 requests with SHA-1, and advertise
    /// SHA-1 and DES3 in GetCACaps.
    pub legacy: bool,
    /// CertRep carries the CA certificate(s) next to the RA certificate (Cisco wants them,
    /// Juniper refuses them).
    pub certrep_include_ca: bool,
    /// `[profiles.NAME.wifi]`: the EAP-TLS Wi-Fi network the certificate is for.
    pub wifi: Option<super::network_settings::WifiSettings>,
    /// `[profiles.NAME.vpn]`: the IKEv2 VPN the certificate is for.
    pub vpn: Option<super::network_settings::VpnSettings>,
}

impl Default for ProfileSettings {
    fn default() -> Self {
        ProfileSettings {
            subject: String::new(),
            allowed_sans: ["dns", "email", "uri", "upn", "ip"]
                .map(String::from)
                .to_vec(),
            key_usage: ["digitalSignature", "keyEncipherment"]
                .map(String::from)
                .to_vec(),
            extended_key_usage: vec!["clientAuth".into()],
            usage_from_request: None,
            validity_days: 365,
            validity_jitter: 0.0,
            min_rsa_bits: 2048,
            key_types: ["rsa", "p256", "p384"].map(String::from).to_vec(),
            policy_oids: Vec::new(),
            crl_url: String::new(),
            ocsp_url: String::new(),
            ca_issuers_url: String::new(),
            challenge_sha256: String::new(),
            challenge: String::new(),
            intune: String::new(),
            allow_without_challenge: false,
            approval: false,
            approval_expires: "7d".into(),
            renewal_days: 30,
            renewal_same_key: true,
            revoke_superseded: false,
            accept_sha1_requests: true,
            legacy: false,
            certrep_include_ca: true,
            wifi: None,
            vpn: None,
        }
    }
}

impl ProfileSettings {
    /// Every request carries Intune's challenge (`challenge = "intune"`), never Sigil's.
    pub fn takes_intune_challenge(&self) -> bool {
        self.challenge == "intune"
    }

    /// The certificate rules, checked.
    pub fn cert_profile(&self, name: &str) -> Result<crate::pki::CertProfile, String> {
        let bad = |m: String| m;
        let key_usages = self
            .key_usage
            .iter()
            .map(|k| {
                crate::pki::key_usage(k).ok_or_else(|| bad(format!("unknown key_usage `{k}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let extended_key_usages = self
            .extended_key_usage
            .iter()
            .map(|k| {
                crate::pki::extended_key_usage(k)
                    .ok_or_else(|| bad(format!("unknown extended_key_usage `{k}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let policy_oids = self
            .policy_oids
            .iter()
            .map(|o| {
                crate::pki::parse_oid(o)
                    .ok_or_else(|| bad(format!("policy OID `{o}` is not dotted numbers")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for s in &self.allowed_sans {
            if !["dns", "email", "uri", "upn", "ip"].contains(&s.as_str()) {
                return Err(bad(format!("allowed_sans: unknown kind `{s}`")));
            }
        }
        for k in &self.key_types {
            if !["rsa", "p256", "p384"].contains(&k.as_str()) {
                return Err(bad(format!("key_types: unknown `{k}`")));
            }
        }
        if self.validity_days == 0 || self.validity_days > 36_500 {
            return Err(bad("validity_days must be between 1 and 36500".into()));
        }
        if !matches!(crate::clock::parse_span(&self.approval_expires), Some(s) if s > 0) {
            return Err(bad(format!(
                "approval_expires `{}` is not a span like 7d, 12h, 30m",
                self.approval_expires
            )));
        }
        if !(0.0..=0.5).contains(&self.validity_jitter) {
            return Err(bad("validity_jitter must be between 0 and 0.5".into()));
        }
        if self.renewal_days > 3_650 {
            return Err(bad("renewal_days must be at most 3650".into()));
        }
        if !self.challenge_sha256.is_empty()
            && (self.challenge_sha256.len() != 64 || hex::decode(&self.challenge_sha256).is_err())
        {
            return Err(bad(
                "challenge_sha256 must be 64 hex digits (sha256sum of the challenge)".into(),
            ));
        }
        match (self.challenge.as_str(), self.intune.is_empty()) {
            ("", true) => {}
            ("intune", false) => {
                if !self.challenge_sha256.is_empty()
                    || self.allow_without_challenge
                    || self.approval
                {
                    return Err(bad(
                        "challenge = \"intune\": Intune's challenge is the only one and Intune decides (no challenge_sha256, no allow_without_challenge, no approval)".into(),
                    ));
                }
            }
            ("intune", true) => {
                return Err(bad(
                    "challenge = \"intune\" needs intune = \"NAME\" (an [intune.NAME] connection)"
                        .into(),
                ))
            }
            ("", false) => return Err(bad("intune is set: add challenge = \"intune\"".into())),
            (other, _) => {
                return Err(bad(format!(
                    "challenge `{other}`: the only external challenge is \"intune\""
                )))
            }
        }
        if self.crl_url.contains(crate::pki::PARTITION_PLACEHOLDER) {
            return Err(bad(
                "crl_url: {partition} is for Sigil's own CRL partitions; leave crl_url unset to have certificates name their partition on this server".into(),
            ));
        }
        if !self.subject.is_empty() {
            crate::pki::parse_dn(&self.subject.replace("{cn}", "x"))
                .map_err(|e| bad(format!("subject: {e}")))?;
        }
        Ok(crate::pki::CertProfile {
            name: name.into(),
            subject_template: (!self.subject.is_empty()).then(|| self.subject.clone()),
            allowed_sans: self.allowed_sans.clone(),
            key_usages,
            extended_key_usages,
            usage_from_request: self
                .usage_from_request
                .unwrap_or(self.takes_intune_challenge()),
            validity_days: self.validity_days,
            validity_jitter: self.validity_jitter,
            min_rsa_bits: self.min_rsa_bits,
            key_types: self.key_types.clone(),
            policy_oids,
            crl_url: self.crl_url.clone(),
            ocsp_url: self.ocsp_url.clone(),
            ca_issuers_url: self.ca_issuers_url.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crl_url_is_used_as_written_and_the_partition_placeholder_is_sigils_own() {
        let mut p = ProfileSettings {
            crl_url: "https://pki.example/ca.crl".into(),
            ..Default::default()
        };
        assert_eq!(
            p.cert_profile("default").map(|c| c.crl_url).as_deref(),
            Ok("https://pki.example/ca.crl")
        );
        p.crl_url = "https://mirror.example/crl/{partition}.crl".into();
        let e = p.cert_profile("default").map(|_| ()).unwrap_err();
        assert!(e.contains("leave crl_url unset"), "{e}");
    }
}
