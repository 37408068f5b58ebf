//! One-time challenges (the NDES dynamic-challenge model): generated here, stored only as a
//! SHA-256 hash with a public id, the actor that minted it, a profile, an expiry and optional
//! bindings, and consumed in the same database transaction that records the certificate.
//!
//! Bindings bind the whole name: once a challenge binds a CN or SANs, the certificate carries
//! exactly the bound name (the CN, through the profile's subject template if it has one) and
//! the bound SANs, whatever else the CSR asks for.

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::pki::Csr;
use crate::store::{now, ChallengeRecord, Store, StoreError};

/// What a one-time challenge is bound to; every field set must match the CSR.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Bindings {
    /// The subject common name the CSR must carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cn: Option<String>,
    /// SANs the CSR must carry, as `dns:…`, `email:…`, `uri:…`, `upn:…`, `ip:…`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    /// The device the challenge was issued for (recorded on the certificate, not in the CSR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// A full subject decided beforehand (a registration built it from the MDM's facts): the
    /// certificate gets this subject and exactly `sans`, whatever the CSR asks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The registration the challenge was minted for; its enrollment counts as approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration: Option<String>,
    /// The credential profile of that registration: its key type and size are enforced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl Bindings {
    /// Read stored bindings (JSON).
    pub fn from_json(json: &str) -> Result<Bindings, String> {
        serde_json::from_str(json)
            .map_err(|_| "the one-time challenge has unreadable bindings".to_string())
    }

    /// The identity the certificate must carry, when the bindings fix one: a decided subject,
    /// or the bound CN (through `cert`'s subject template), or, with SANs bound alone, the
    /// CSR's CN (checked by [`bindings_met`] to be one of them) and nothing else; the SANs are
    /// exactly the bound ones.
    pub fn identity(
        &self,
        cert: &crate::pki::CertProfile,
        csr: &Csr,
    ) -> Option<crate::pki::Identity> {
        let subject = match (&self.subject, &self.cn) {
            (Some(s), _) => s.clone(),
            (None, Some(cn)) => cert.subject_for_cn(cn),
            (None, None) if !self.sans.is_empty() => match csr.common_name() {
                Some(cn) => cert.subject_for_cn(cn),
                None => String::new(),
            },
            (None, None) => return None,
        };
        Some(crate::pki::Identity {
            subject,
            sans: self.sans.clone(),
        })
    }
}

/// Does the CSR meet the bindings (JSON as stored)? Bindings are exact, not minimums: a CN
/// binding needs exactly that one CN; once anything is bound, the CSR's SANs must be exactly
/// the bound ones (none when only a CN is bound); SANs bound without a CN allow no CN or one
/// of the bound names.
///
/// Bindings with a decided `subject` are met by any CSR: the certificate gets that identity.
pub fn bindings_met(b: &Bindings, csr: &Csr) -> Result<(), String> {
    if b.subject.is_some() || (b.cn.is_none() && b.sans.is_empty()) {
        return Ok(());
    }
    let cns: Vec<&str> = csr
        .subject
        .iter()
        .filter(|a| a.oid == [2, 5, 4, 3])
        .map(|a| a.value.as_str())
        .collect();
    match &b.cn {
        Some(cn) => {
            if cns.as_slice() != [cn.as_str()] {
                return Err(format!(
                    "the one-time challenge is bound to CN `{cn}`, the CSR asks for {cns:?}"
                ));
            }
        }
        None => {
            let bound_names: Vec<String> = b
                .sans
                .iter()
                .filter_map(|s| s.split_once(':').map(|(_, v)| v.to_ascii_lowercase()))
                .collect();
            if cns.len() > 1
                || cns
                    .iter()
                    .any(|c| !bound_names.contains(&c.to_ascii_lowercase()))
            {
                return Err(format!(
                    "the one-time challenge binds SANs only; the CSR's CN {cns:?} is not one of them"
                ));
            }
        }
    }
    let mut have: Vec<String> = csr.sans.iter().map(|s| normalise(&s.to_string())).collect();
    let mut want: Vec<String> = b.sans.iter().map(|s| normalise(s)).collect();
    have.sort();
    have.dedup();
    want.sort();
    want.dedup();
    if have != want {
        return Err(format!(
            "the one-time challenge is bound to SANs {want:?}; the CSR asks for {have:?}"
        ));
    }
    Ok(())
}

/// Compare SANs the way their types compare: DNS names and email domains without case, the
/// rest exactly.
fn normalise(s: &str) -> String {
    match s.split_once(':') {
        Some(("dns", v)) => format!("dns:{}", v.to_ascii_lowercase()),
        Some(("email", v)) => match v.rsplit_once('@') {
            Some((local, domain)) => format!("email:{local}@{}", domain.to_ascii_lowercase()),
            None => format!("email:{v}"),
        },
        Some((kind, v)) => format!("{}:{v}", kind.to_ascii_lowercase()),
        None => s.to_owned(),
    }
}

/// Check bindings when a challenge is made: known SAN kinds, sane sizes.
pub fn validate(b: &Bindings) -> Result<(), String> {
    if b.sans.len() > 20 {
        return Err("at most 20 SANs may be bound".into());
    }
    for s in &b.sans {
        match s.split_once(':') {
            Some(("dns" | "email" | "uri" | "upn" | "ip", v))
                if !v.is_empty() && v.len() <= 512 => {}
            _ => {
                return Err(format!(
                    "SAN binding `{s}` must be dns:…, email:…, uri:…, upn:… or ip:…"
                ))
            }
        }
    }
    for v in [&b.cn, &b.device_id, &b.registration, &b.credential]
        .into_iter()
        .flatten()
    {
        if v.is_empty() || v.len() > 256 {
            return Err(
                "cn, device_id, registration and credential must be 1 to 256 characters".into(),
            );
        }
    }
    if let Some(s) = &b.subject {
        if s.len() > 1024 {
            return Err("subject must be at most 1024 characters".into());
        }
        crate::pki::parse_dn(s).map_err(|e| format!("subject: {e}"))?;
    }
    Ok(())
}

/// The alphabet of generated challenges: PrintableString-safe (Windows encodes the challenge
/// as PrintableString), unambiguous letters and digits.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A fresh random challenge of 32 characters (about 185 bits).
pub fn generate() -> Result<String, StoreError> {
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut b = [0u8; 64];
        openssl::rand::rand_bytes(&mut b)
            .map_err(|e| StoreError::Unavailable(format!("random: {e}")))?;
        for x in b {
            // Rejection sampling keeps the distribution uniform.
            if (x as usize) < 256 - 256 % ALPHABET.len() && out.len() < 32 {
                out.push(ALPHABET[x as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// A fresh challenge's record for `profile`, valid `ttl_secs`, minted by `actor`, with the
/// challenge itself (to show once).
pub fn mint(
    profile: &str,
    bindings: &Bindings,
    ttl_secs: i64,
    actor: &str,
) -> Result<(String, ChallengeRecord), StoreError> {
    validate(bindings).map_err(StoreError::Invalid)?;
    let challenge = generate()?;
    let mut id = [0u8; 8];
    openssl::rand::rand_bytes(&mut id)
        .map_err(|e| StoreError::Unavailable(format!("random: {e}")))?;
    let record = ChallengeRecord {
        id: format!("chl_{}", hex::encode(id)),
        hash: hex::encode(sha2::Sha256::digest(challenge.as_bytes())),
        created_by: actor.into(),
        profile: profile.into(),
        bindings: serde_json::to_string(bindings)
            .map_err(|e| StoreError::Invalid(e.to_string()))?,
        expires_at: now() + ttl_secs.max(1),
        used_at: None,
    };
    Ok((challenge, record))
}

/// May a one-time challenge be minted for `profile` outside a registration? Not when the
/// profile issues only through registrations (a credential names it), nor by an integration
/// token whose scope does not name it (`scope`: the token's, `None` for the command line and
/// admins). The error names the rule.
pub fn may_mint(
    profile: &str,
    registration_only: bool,
    scope: Option<&crate::store::TokenScope>,
) -> Result<(), String> {
    if registration_only {
        return Err(format!(
            "profile `{profile}` issues only through registrations (a credential names it): its challenges come from approved registrations' SCEP payloads, not from here"
        ));
    }
    if let Some(scope) = scope {
        if !scope.allows_profile(profile) {
            return Err(format!(
                "this token may not mint challenges for profile `{profile}` (its scope: {})",
                if scope.profiles.is_empty() {
                    "no profiles".to_string()
                } else {
                    scope.profiles.join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// A challenge just minted: the secret (shown once) and its public record's fields.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The challenge itself.
    pub challenge: String,
    /// Its public id (`chl_…`).
    pub id: String,
    /// The profile it is for.
    pub profile: String,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
}

/// Store a challenge minted by [`mint`] (audited as `challenge_created` by `actor`).
pub async fn create(
    store: &dyn Store,
    profile: &str,
    bindings: &Bindings,
    ttl_secs: i64,
    actor: &str,
) -> Result<Minted, StoreError> {
    let (challenge, record) = mint(profile, bindings, ttl_secs, actor)?;
    store.insert_challenge(&record, actor).await?;
    Ok(Minted {
        challenge,
        id: record.id,
        profile: record.profile,
        expires_at: record.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_challenges_are_printable_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
    }
}
