//! `[identity]`: how people sign in (an OpenID Connect provider, PIV/CAC client certificates),
//! how long a browser session lasts, and how power is granted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret::SecretSource;

/// `[identity]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySettings {
    /// A session ends after this many minutes without a request.
    pub session_idle_minutes: u32,
    /// A session ends this many hours after sign-in, whatever happens.
    pub session_max_hours: u32,
    /// How power is granted: `two_admins` (an admin, officer or integration token made through
    /// the API works once a second admin approves it) or `idp` (admin, officer and auditor come
    /// only from the identity provider's groups; integration tokens still need a second
    /// admin).
    pub grants: String,
    /// `[identity.oidc]`: sign-in with an OpenID Connect provider.
    pub oidc: Option<OidcSettings>,
    /// `[identity.mtls]`: sign-in with a PIV/CAC (or any) client certificate.
    pub mtls: Option<MtlsSettings>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            session_idle_minutes: 30,
            session_max_hours: 12,
            grants: "two_admins".into(),
            oidc: None,
            mtls: None,
        }
    }
}

/// Sigil roles → the groups (OpenID Connect) or people (client certificates) that hold them.
/// `*` in a list: everyone who signs in.
pub type RoleMap = BTreeMap<String, Vec<String>>;

/// `[identity.oidc]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSettings {
    /// The provider's issuer URL, exactly as its discovery document says
    /// (`https://login.microsoftonline.com/<tenant>/v2.0`).
    pub issuer: String,
    /// The client id Sigil is registered under.
    pub client_id: String,
    /// File holding the client secret.
    pub client_secret_file: String,
    /// Environment variable holding the client secret.
    pub client_secret_env: String,
    /// Instead of a secret: the label of an RSA key on the token that signs `private_key_jwt`
    /// client assertions (`sigil identity client-key` makes it and prints what to register).
    pub client_key: String,
    /// `acr_values` asked for at sign-in (Login.gov requires one, e.g.
    /// `urn:acr.login.gov:auth-only`); empty: none.
    pub acr_values: String,
    /// The claim that names the person: `sub` (default, stable), `email` or
    /// `preferred_username`.
    pub person_claim: String,
    /// The claim listing the person's groups or roles (`groups`; Entra app roles: `roles`).
    pub groups_claim: String,
    /// Scopes asked for besides `openid` (`email`, `profile`, and the provider's groups scope
    /// if it has one).
    pub scopes: Vec<String>,
    /// Sigil role → groups that give it.
    pub roles: RoleMap,
    /// Seconds of clock difference with the provider tolerated on token times.
    pub clock_skew_secs: u64,
}

impl Default for OidcSettings {
    fn default() -> Self {
        OidcSettings {
            issuer: String::new(),
            client_id: String::new(),
            client_secret_file: String::new(),
            client_secret_env: String::new(),
            client_key: String::new(),
            acr_values: String::new(),
            person_claim: "sub".into(),
            groups_claim: "groups".into(),
            scopes: vec!["email".into(), "profile".into()],
            roles: RoleMap::new(),
            clock_skew_secs: 60,
        }
    }
}

/// `[identity.mtls]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MtlsSettings {
    /// PEM bundle of the CAs that issue the people's certificates (the PIV issuing CAs and
    /// their roots).
    pub ca_file: String,
    /// What names the person: `upn` (the UPN other-name in the subject alternative names;
    /// PIV authentication certificates carry it) or `email`.
    pub person_from: String,
    /// How a certificate's revocation is checked, failing closed: `ocsp` (the responder in
    /// `ocsp_url`, or the certificate's AIA) or `crl` (`crl_url` or `crl_file`).
    pub revocation: String,
    /// OCSP responder; empty: the certificate's own.
    pub ocsp_url: String,
    /// CRL to fetch (kept until its nextUpdate).
    pub crl_url: String,
    /// CRL file (read when it changes).
    pub crl_file: String,
    /// Sigil role → the people (UPN or email, any case) that hold it.
    pub roles: RoleMap,
    /// A card's UPN → the person's email, for cards whose UPN is not their address and whose
    /// certificate carries none (a CAC's `1234567890@mil`): with it, the person signed in by
    /// card is the same person as by the identity provider (the two-person rule compares
    /// emails) and owns the registrations filed for that email. Any case.
    pub emails: BTreeMap<String, String>,
}

impl Default for MtlsSettings {
    fn default() -> Self {
        MtlsSettings {
            ca_file: String::new(),
            person_from: "upn".into(),
            revocation: "ocsp".into(),
            ocsp_url: String::new(),
            crl_url: String::new(),
            crl_file: String::new(),
            roles: RoleMap::new(),
            emails: BTreeMap::new(),
        }
    }
}

const ROLES: &[&str] = &["admin", "officer", "auditor", "user"];

fn check_roles(roles: &RoleMap) -> Result<(), String> {
    if roles.is_empty() {
        return Err("roles maps no group or person to any role: nobody could sign in".into());
    }
    for (role, who) in roles {
        if !ROLES.contains(&role.as_str()) {
            return Err(format!(
                "roles.{role}: not a role people sign in with ({})",
                ROLES.join(", ")
            ));
        }
        if who.iter().any(|w| w.trim().is_empty()) {
            return Err(format!("roles.{role}: an empty name"));
        }
    }
    Ok(())
}

impl IdentitySettings {
    /// Check the settings; `public_url` is the server's (the OIDC callback needs it).
    pub fn check(&self, public_url: &str) -> Result<(), String> {
        if self.session_idle_minutes == 0 || self.session_idle_minutes > 24 * 60 {
            return Err("session_idle_minutes must be 1 to 1440".into());
        }
        if self.session_max_hours == 0 || self.session_max_hours > 24 * 7 {
            return Err("session_max_hours must be 1 to 168".into());
        }
        if !["two_admins", "idp"].contains(&self.grants.as_str()) {
            return Err("grants must be two_admins or idp".into());
        }
        if let Some(o) = &self.oidc {
            o.check().map_err(|e| format!("oidc: {e}"))?;
            if public_url.is_empty() {
                return Err("oidc needs server.public_url (the callback is <public_url>/auth/oidc/callback)".into());
            }
        }
        if let Some(m) = &self.mtls {
            m.check().map_err(|e| format!("mtls: {e}"))?;
        }
        Ok(())
    }
}

impl OidcSettings {
    /// The client secret's source.
    pub fn client_secret(&self) -> Result<SecretSource, String> {
        SecretSource::from_pair(
            "client_secret",
            &self.client_secret_file,
            &self.client_secret_env,
        )
    }

    fn check(&self) -> Result<(), String> {
        if !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://")) {
            return Err(format!("issuer `{}` is not an http(s) URL", self.issuer));
        }
        if self.client_id.is_empty() {
            return Err("client_id is empty".into());
        }
        match (self.client_secret()?.is_set(), self.client_key.is_empty()) {
            (false, true) => {
                return Err(
                    "set client_secret_file or client_secret_env, or client_key (private_key_jwt)"
                        .into(),
                )
            }
            (true, false) => {
                return Err(
                    "set either a client secret or client_key (private_key_jwt), not both".into(),
                )
            }
            _ => {}
        }
        if !["sub", "email", "preferred_username"].contains(&self.person_claim.as_str()) {
            return Err("person_claim must be sub, email or preferred_username".into());
        }
        if self.groups_claim.is_empty() {
            return Err("groups_claim is empty".into());
        }
        check_roles(&self.roles)
    }
}

impl MtlsSettings {
    fn check(&self) -> Result<(), String> {
        if self.ca_file.is_empty() {
            return Err(
                "ca_file (the PEM bundle of the CAs that issue people's certificates) is empty"
                    .into(),
            );
        }
        if !["upn", "email"].contains(&self.person_from.as_str()) {
            return Err("person_from must be upn or email".into());
        }
        match self.revocation.as_str() {
            "ocsp" => {}
            "crl" if self.crl_url.is_empty() == self.crl_file.is_empty() => {
                return Err("revocation = crl needs exactly one of crl_url and crl_file".into())
            }
            "crl" => {}
            _ => return Err("revocation must be ocsp or crl (checked, failing closed)".into()),
        }
        for (upn, email) in &self.emails {
            let address = email.trim();
            if upn.trim().is_empty() || address.is_empty() {
                return Err("emails: an empty UPN or email".into());
            }
            match address.split_once('@') {
                Some((local, domain)) if !local.is_empty() && domain.contains('.') => {}
                _ => {
                    return Err(format!(
                        "emails.\"{upn}\": `{email}` is not an email address"
                    ))
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(upn) = self
            .emails
            .keys()
            .find(|u| !seen.insert(u.trim().to_ascii_lowercase()))
        {
            return Err(format!(
                "emails: the UPN `{upn}` is listed twice (UPNs are compared in any case)"
            ));
        }
        check_roles(&self.roles)
    }

    /// The email a card's UPN stands for, when `emails` lists it (any case).
    pub fn email_for(&self, upn: &str) -> Option<String> {
        self.emails
            .iter()
            .find(|(u, _)| u.trim().eq_ignore_ascii_case(upn.trim()))
            .map(|(_, e)| e.trim().to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let mut s = IdentitySettings::default();
        s.check("").unwrap();
        s.oidc = Some(OidcSettings {
            issuer: "https://idp.example".into(),
            client_id: "sigil".into(),
            client_secret_env: "OIDC_SECRET".into(),
            roles: [("officer".to_string(), vec!["sigil-officers".to_string()])].into(),
            ..OidcSettings::default()
        });
        assert!(s.check("").unwrap_err().contains("public_url"));
        s.check("https://sigil.example").unwrap();
        let mut bad = s.clone();
        if let Some(o) = bad.oidc.as_mut() {
            o.roles.insert("mdm".into(), vec!["x".into()]);
        }
        assert!(bad.check("https://s").unwrap_err().contains("roles.mdm"));
        let mut both = s.clone();
        if let Some(o) = both.oidc.as_mut() {
            o.client_key = "sigil-oidc-client".into();
        }
        assert!(both.check("https://s").unwrap_err().contains("not both"));
        if let Some(o) = both.oidc.as_mut() {
            o.client_secret_env.clear();
        }
        both.check("https://s").unwrap();
        if let Some(o) = both.oidc.as_mut() {
            o.client_key.clear();
        }
        assert!(both
            .check("https://s")
            .unwrap_err()
            .contains("private_key_jwt"));
        s.mtls = Some(MtlsSettings {
            ca_file: "/etc/piv.pem".into(),
            revocation: "crl".into(),
            roles: [("user".to_string(), vec!["*".to_string()])].into(),
            ..MtlsSettings::default()
        });
        assert!(s.check("https://s").unwrap_err().contains("exactly one"));
        let Some(m) = s.mtls.as_mut() else { return };
        m.crl_file = "/etc/piv.crl".into();
        s.check("https://s").unwrap();
        let mut linked = s.clone();
        let Some(m) = linked.mtls.as_mut() else {
            return;
        };
        m.emails
            .insert("1234567890@mil".into(), "Oscar@Agency.gov".into());
        assert_eq!(
            m.email_for("1234567890@MIL").as_deref(),
            Some("oscar@agency.gov")
        );
        assert_eq!(m.email_for("999@mil"), None);
        linked.check("https://s").unwrap();
        let mut bad = linked.clone();
        let Some(m) = bad.mtls.as_mut() else { return };
        m.emails
            .insert("1234567890@MIL".into(), "o@agency.gov".into());
        assert!(bad.check("https://s").unwrap_err().contains("listed twice"));
        for not_email in ["oscar", "oscar@agency", "@agency.gov", " "] {
            let mut bad = linked.clone();
            let Some(m) = bad.mtls.as_mut() else { return };
            m.emails.insert("2@mil".into(), not_email.into());
            assert!(bad.check("https://s").is_err(), "{not_email}");
        }
    }
}
