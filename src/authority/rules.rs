//! The rules a request is held to before anything is issued: whether a request signed by one
//! of this CA's certificates is a valid renewal under a profile, and whether the CSR's
//! challenge counts (the profile's static one, or a one-time challenge whose bindings it meets).

use openssl::x509::X509;
use sha2::Digest;
use time::OffsetDateTime;

use std::collections::HashMap;

use super::enroll::{serial_hex, store_err};
use super::{Authority, CredentialSettings, Profile, RequestError};
use crate::pki::Csr;
use crate::store::{CertificateRecord, ChallengeRecord};

/// A one-time challenge that counted: consumed with the record; its bindings may fix the
/// certificate's identity and name the device (and the registration that pre-approved it).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OneTime {
    pub(crate) hash: String,
    /// Its public id, recorded on the transaction and in the audit trail.
    pub(crate) id: String,
    pub(crate) bindings: crate::authority::challenge::Bindings,
}

/// Why a challenge did not count.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A one-time challenge that was used (perhaps a moment ago by this very transaction).
    Spent(String),
    /// The challenge is right, but the request breaks what it was minted for (its bindings,
    /// its credential's key, a registration-only profile): the requester is known, so this
    /// refusal is audited.
    Bound(String),
    /// Anything else: missing, wrong, expired.
    Other(String),
}

impl Authority {
    /// Why a request signed by `old` (a certificate of this CA) is not a valid renewal under
    /// `profile`, or `None` when it is: `old` must be recorded, and then meet
    /// [`renewal_refusal`].
    pub(super) async fn renewal_problem(
        &self,
        profile: &Profile,
        old: &X509,
        csr: &Csr,
    ) -> Result<Option<String>, RequestError> {
        let serial = match old.serial_number().to_bn().map(|b| b.to_vec()) {
            Ok(b) => serial_hex(&b),
            Err(_) => return Ok(Some("its serial does not read".into())),
        };
        let Some(rec) = self
            .inner
            .store
            .certificate(&serial)
            .await
            .map_err(store_err)?
        else {
            return Ok(Some(format!(
                "the signing certificate (serial {serial}) is not in this CA's records"
            )));
        };
        Ok(renewal_refusal(
            profile,
            &rec,
            csr,
            &self.inner.credentials,
            OffsetDateTime::now_utc(),
        ))
    }

    /// For a registration's one-time challenge: the certificate it renews when the registration
    /// is issued already (its renewal challenge), `Ok(None)` for a first enrollment, or why
    /// that certificate renews nothing ([`challenge_renewal_refusal`]).
    pub(super) async fn challenge_renews(
        &self,
        profile: &Profile,
        bindings: &crate::authority::challenge::Bindings,
    ) -> Result<Result<Option<String>, String>, RequestError> {
        let store = &self.inner.store;
        let Some(id) = bindings.registration.as_deref() else {
            return Ok(Ok(None));
        };
        let Some(r) = store.registration(id).await.map_err(store_err)? else {
            return Ok(Ok(None));
        };
        let (crate::store::RegistrationState::Issued, Some(serial)) = (r.state, r.serial) else {
            return Ok(Ok(None));
        };
        let held = store.certificate(&serial).await.map_err(store_err)?;
        let now = crate::store::now();
        Ok(
            match challenge_renewal_refusal(profile, &serial, held.as_ref(), None, now) {
                Some(why) => Err(why),
                None => Ok(Some(serial)),
            },
        )
    }

    /// Check the CSR's challenge: the profile's static one (compared in constant time), or a
    /// one-time challenge from the store whose bindings the CSR meets. `Ok(Some(hash))` means a
    /// one-time challenge to consume with the record; `Err` says why not.
    pub(super) async fn challenge_check(
        &self,
        profile: &Profile,
        csr: &Csr,
    ) -> Result<Result<Option<OneTime>, Refusal>, RequestError> {
        let hash = match first_look(profile, csr) {
            FirstLook::Decided(answer) => return Ok(answer),
            FirstLook::OneTime(hash) => hash,
        };
        let Some(c) = self.inner.store.challenge(&hash).await.map_err(store_err)? else {
            return Ok(Err(Refusal::Other(
                "the challenge password is wrong".into(),
            )));
        };
        Ok(one_time_use(
            profile,
            c,
            hash,
            csr,
            &self.inner.credentials,
            crate::store::now(),
        )
        .map(Some))
    }
}

/// Why the certificate an issued registration holds (`rec`, if recorded) does not renew under
/// `profile` at `now` through the registration's renewal challenge, or `None` when it does:
/// recorded, from this profile, not revoked, not renewed already, not ended, and, when
/// `window_days` is given (the challenge is being minted), ending within that many days.
/// Checked again when the challenge is used: it may outlive the certificate.
pub(crate) fn challenge_renewal_refusal(
    profile: &Profile,
    serial: &str,
    rec: Option<&CertificateRecord>,
    window_days: Option<u32>,
    now: i64,
) -> Option<String> {
    let Some(rec) = rec else {
        return Some(format!(
            "the registration's certificate {serial} is not recorded"
        ));
    };
    if let Some(why) = standing_refusal(profile, rec, "the registration's certificate") {
        return Some(why);
    }
    if now >= rec.not_after {
        return Some(format!(
            "the registration's certificate {serial} has ended: a new registration issues a new one"
        ));
    }
    if let Some(days) = window_days {
        let opens = rec.not_after.saturating_sub(i64::from(days) * 86_400);
        if now < opens {
            return Some(format!(
                "the registration's certificate {serial} renews from {} ({days} days before it ends)",
                crate::clock::rfc3339(opens)
            ));
        }
    }
    None
}

/// Why the recorded certificate `rec` (`what` it is, in words) renews nothing under `profile`,
/// whatever is asked: revoked or on hold, renewed already (a certificate renews once), or
/// issued under another profile (no ticket into another). The part of every renewal rule
/// that does not depend on the request.
fn standing_refusal(profile: &Profile, rec: &CertificateRecord, what: &str) -> Option<String> {
    let serial = &rec.serial;
    if rec.status == crate::store::CertStatus::Revoked {
        let why = match rec.revocation_reason {
            Some(6) => "is on hold (certificateHold)",
            Some(4) => "was superseded",
            _ => "is revoked",
        };
        return Some(format!("{what} (serial {serial}) {why}"));
    }
    if let Some(next) = &rec.renewed_by {
        return Some(format!(
            "{what} (serial {serial}) was already renewed (by {next}); a certificate renews once"
        ));
    }
    if rec.profile != profile.name {
        return Some(format!(
            "{what} (serial {serial}) was issued under profile `{}`, not `{}`",
            rec.profile, profile.name
        ));
    }
    None
}

/// Why `rec` (the record of the certificate that signed the request) does not renew under
/// `profile` at `now`, or `None` when it does: from this profile, not revoked (nor on hold),
/// not renewed already, valid now and in its renewal window, and the CSR keeps its subject and
/// SANs (a certificate from one profile is no ticket into another, nor to another identity)
/// and meets the key rule of every credential naming the profile. A stolen device key whose
/// certificate was revoked renews nothing.
pub(crate) fn renewal_refusal(
    profile: &Profile,
    rec: &CertificateRecord,
    csr: &Csr,
    credentials: &HashMap<String, CredentialSettings>,
    now: OffsetDateTime,
) -> Option<String> {
    if let Some(why) = standing_refusal(profile, rec, "the signing certificate") {
        return Some(why);
    }
    let Some((old_subject, old_sans)) = crate::pki::certificate_identity(&rec.der) else {
        return Some("the recorded certificate does not read".into());
    };
    let same_subject = match &profile.cert.subject_template {
        // The subject is forced; only the common name comes from the CSR.
        Some(_) => {
            let cn = |attrs: &[crate::pki::NameAttribute]| {
                attrs
                    .iter()
                    .find(|a| a.oid == [2, 5, 4, 3])
                    .map(|a| a.value.clone())
            };
            cn(&old_subject) == csr.common_name().map(str::to_owned)
        }
        None => {
            let key = |attrs: &[crate::pki::NameAttribute]| {
                attrs
                    .iter()
                    .map(|a| (a.oid.clone(), a.value.clone()))
                    .collect::<Vec<_>>()
            };
            key(&old_subject) == key(&csr.subject)
        }
    };
    if !same_subject {
        return Some("a renewal must keep the subject of the certificate being renewed".into());
    }
    let mut a: Vec<String> = old_sans.iter().map(|s| format!("{s:?}")).collect();
    let mut b: Vec<String> = csr.sans.iter().map(|s| format!("{s:?}")).collect();
    a.sort();
    b.sort();
    if a != b {
        return Some(
            "a renewal must keep the subject alternative names of the certificate being renewed"
                .into(),
        );
    }
    // A profile a credential names keeps that credential's key rule on renewal too (the
    // strictest, if several name it): a renewal cannot weaken the key.
    let mut naming: Vec<&String> = credentials
        .iter()
        .filter(|(_, c)| c.profile == profile.name)
        .map(|(name, _)| name)
        .collect();
    naming.sort();
    for name in naming {
        if let Err(why) = key_rule(credentials, name, csr) {
            return Some(why);
        }
    }
    let parsed = x509_parser::parse_x509_certificate(&rec.der).ok();
    if !profile.policy.renewal_same_key {
        let same = parsed
            .as_ref()
            .is_some_and(|(_, c)| c.public_key().raw == csr.spki.as_slice());
        if same {
            return Some(format!(
                "profile `{}` needs a new key on renewal; the CSR reuses the old one",
                profile.name
            ));
        }
    }
    let Some((not_before, not_after)) = parsed.map(|(_, c)| {
        (
            c.validity().not_before.to_datetime(),
            c.validity().not_after.to_datetime(),
        )
    }) else {
        return Some("the recorded certificate does not read".into());
    };
    if now < not_before || now > not_after {
        return Some("the signing certificate is not valid now".into());
    }
    let opens = not_after - time::Duration::days(profile.policy.renewal_days.into());
    if now < opens {
        let when = opens
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| opens.to_string());
        return Some(format!(
            "too early to renew: the renewal window opens on {when}"
        ));
    }
    None
}

/// What the CSR's challenge password settles before the store is asked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FirstLook {
    /// Settled: no challenge where none is needed, the profile's static one, or refused.
    Decided(Result<Option<OneTime>, Refusal>),
    /// Look this hash (SHA-256, hex) up among the one-time challenges.
    OneTime(String),
}

/// The CSR's challenge against the profile: none (counts only where the profile allows it),
/// the static one (compared in constant time; never on a registration-only profile), or the
/// hash of what to look up.
pub(crate) fn first_look(profile: &Profile, csr: &Csr) -> FirstLook {
    let Some(given) = csr.challenge.as_deref() else {
        return FirstLook::Decided(if profile.policy.allow_without_challenge {
            Ok(None)
        } else {
            Err(Refusal::Other(
                "the CSR carries no challenge password".into(),
            ))
        });
    };
    let got = sha2::Sha256::digest(given.as_bytes());
    let want = hex::decode(&profile.policy.challenge_sha256).unwrap_or_default();
    if want.len() == got.len() && openssl::memcmp::eq(&got, &want) && !profile.registration_only {
        return FirstLook::Decided(Ok(None));
    }
    FirstLook::OneTime(hex::encode(got))
}

/// Whether the stored one-time challenge `c` (found by `hash`) counts for this CSR under
/// `profile` at `now` (Unix seconds): for this profile, unused, unexpired, its bindings
/// readable and met, minted by a registration where the profile demands one, and its
/// credential's key rule kept.
pub(crate) fn one_time_use(
    profile: &Profile,
    c: ChallengeRecord,
    hash: String,
    csr: &Csr,
    credentials: &HashMap<String, CredentialSettings>,
    now: i64,
) -> Result<OneTime, Refusal> {
    if c.profile != profile.name {
        return Err(Refusal::Other(format!(
            "the one-time challenge is for profile `{}`",
            c.profile
        )));
    }
    if c.used_at.is_some() {
        return Err(Refusal::Spent(
            "the one-time challenge was already used".into(),
        ));
    }
    if c.expires_at <= now {
        return Err(Refusal::Other("the one-time challenge has expired".into()));
    }
    let bindings =
        crate::authority::challenge::Bindings::from_json(&c.bindings).map_err(Refusal::Other)?;
    if profile.registration_only && bindings.registration.is_none() {
        return Err(Refusal::Bound(format!(
            "profile `{}` issues only through a registration's challenge (an officer's approval); this challenge was not minted by one",
            profile.name
        )));
    }
    crate::authority::challenge::bindings_met(&bindings, csr).map_err(Refusal::Bound)?;
    if let Some(name) = &bindings.credential {
        key_rule(credentials, name, csr).map_err(Refusal::Bound)?;
    }
    Ok(OneTime {
        hash,
        id: c.id,
        bindings,
    })
}

/// The credential's key type and size, enforced at enrollment (not only written into the
/// payload the MDM pushes): the same type, and at least the size.
pub(crate) fn key_rule(
    credentials: &HashMap<String, CredentialSettings>,
    credential: &str,
    csr: &Csr,
) -> Result<(), String> {
    use crate::pki::RequestedKey;
    let Some(cred) = credentials.get(credential) else {
        return Err(format!(
            "the challenge is for credential profile `{credential}`, which is no longer configured"
        ));
    };
    let (kind, bits) = match csr.key {
        RequestedKey::Rsa(bits) => ("rsa", bits),
        RequestedKey::P256 => ("p256", 256),
        RequestedKey::P384 => ("p384", 384),
        RequestedKey::Other => ("other", 0),
    };
    let want = cred.key_type.to_ascii_lowercase();
    let type_ok = match want.as_str() {
        "ec" | "ecc" | "ecdsa" => kind == "p256" || kind == "p384",
        w => w == kind,
    };
    if !type_ok {
        return Err(format!(
            "credential profile `{credential}` needs a {} key; the CSR has {kind}",
            cred.key_type
        ));
    }
    if bits < cred.key_size {
        return Err(format!(
            "credential profile `{credential}` needs a key of at least {} bits; the CSR's has {bits}",
            cred.key_size
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
