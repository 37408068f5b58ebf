//! The rules a request is held to before anything is issued: whether a request signed by one
//! of this CA's certificates is a valid renewal under a profile, and whether the CSR's
//! challenge counts (the profile's static one, or a one-time challenge whose bindings it meets).

use openssl::x509::X509;
use sha2::Digest;
use time::OffsetDateTime;

use super::enroll::{serial_hex, store_err};
use super::{Authority, Profile, RequestError};

/// A one-time challenge that counted: consumed with the record; its bindings may fix the
/// certificate's identity and name the device (and the registration that pre-approved it).
pub(crate) struct OneTime {
    pub(crate) hash: String,
    /// Its public id, recorded on the transaction and in the audit trail.
    pub(crate) id: String,
    pub(crate) bindings: crate::authority::challenge::Bindings,
}

/// Why a challenge did not count.
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
    /// `profile`, or `None` when it is: `old` is recorded, from this profile, not revoked (nor
    /// on hold), not renewed already, valid now and in its renewal window, and the CSR keeps
    /// its subject and SANs (a certificate from one profile is no ticket into another, nor to
    /// another identity). A stolen device key whose certificate was revoked renews nothing.
    pub(super) async fn renewal_problem(
        &self,
        profile: &Profile,
        old: &X509,
        csr: &crate::pki::Csr,
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
        if rec.status == crate::store::CertStatus::Revoked {
            let why = match rec.revocation_reason {
                Some(6) => "is on hold (certificateHold)",
                Some(4) => "was superseded",
                _ => "is revoked",
            };
            return Ok(Some(format!(
                "the signing certificate (serial {serial}) {why}"
            )));
        }
        if let Some(next) = &rec.renewed_by {
            return Ok(Some(format!(
                "the signing certificate (serial {serial}) was already renewed (by {next}); a certificate renews once"
            )));
        }
        if rec.profile != profile.name {
            return Ok(Some(format!(
                "the signing certificate was issued under profile `{}`, not `{}`",
                rec.profile, profile.name
            )));
        }
        let Some((old_subject, old_sans)) = crate::pki::certificate_identity(&rec.der) else {
            return Ok(Some("the recorded certificate does not read".into()));
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
            return Ok(Some(
                "a renewal must keep the subject of the certificate being renewed".into(),
            ));
        }
        let mut a: Vec<String> = old_sans.iter().map(|s| format!("{s:?}")).collect();
        let mut b: Vec<String> = csr.sans.iter().map(|s| format!("{s:?}")).collect();
        a.sort();
        b.sort();
        if a != b {
            return Ok(Some(
                "a renewal must keep the subject alternative names of the certificate being renewed"
                    .into(),
            ));
        }
        // A profile a credential names keeps that credential's key rule on renewal too (the
        // strictest, if several name it): a renewal cannot weaken the key.
        let mut naming: Vec<&String> = self
            .inner
            .credentials
            .iter()
            .filter(|(_, c)| c.profile == profile.name)
            .map(|(name, _)| name)
            .collect();
        naming.sort();
        for name in naming {
            if let Err(why) = self.credential_key_rule(name, csr) {
                return Ok(Some(why));
            }
        }
        if !profile.policy.renewal_same_key {
            let same = x509_parser::parse_x509_certificate(&rec.der)
                .ok()
                .is_some_and(|(_, c)| c.public_key().raw == csr.spki.as_slice());
            if same {
                return Ok(Some(format!(
                    "profile `{}` needs a new key on renewal; the CSR reuses the old one",
                    profile.name
                )));
            }
        }
        let now = OffsetDateTime::now_utc();
        let Some((not_before, not_after)) =
            x509_parser::parse_x509_certificate(&rec.der)
                .ok()
                .map(|(_, c)| {
                    (
                        c.validity().not_before.to_datetime(),
                        c.validity().not_after.to_datetime(),
                    )
                })
        else {
            return Ok(Some("the recorded certificate does not read".into()));
        };
        if now < not_before || now > not_after {
            return Ok(Some("the signing certificate is not valid now".into()));
        }
        let opens = not_after - time::Duration::days(profile.policy.renewal_days.into());
        if now < opens {
            let when = opens
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| opens.to_string());
            return Ok(Some(format!(
                "too early to renew: the renewal window opens on {when}"
            )));
        }
        Ok(None)
    }

    /// Check the CSR's challenge: the profile's static one (compared in constant time), or a
    /// one-time challenge from the store whose bindings the CSR meets. `Ok(Some(hash))` means a
    /// one-time challenge to consume with the record; `Err` says why not.
    pub(super) async fn challenge_check(
        &self,
        profile: &Profile,
        csr: &crate::pki::Csr,
    ) -> Result<Result<Option<OneTime>, Refusal>, RequestError> {
        let Some(given) = csr.challenge.as_deref() else {
            if profile.policy.allow_without_challenge {
                return Ok(Ok(None));
            }
            return Ok(Err(Refusal::Other(
                "the CSR carries no challenge password".into(),
            )));
        };
        let got = sha2::Sha256::digest(given.as_bytes());
        let want = hex::decode(&profile.policy.challenge_sha256).unwrap_or_default();
        if want.len() == got.len() && openssl::memcmp::eq(&got, &want) && !profile.registration_only
        {
            return Ok(Ok(None));
        }
        let hash = hex::encode(got);
        let Some(c) = self.inner.store.challenge(&hash).await.map_err(store_err)? else {
            return Ok(Err(Refusal::Other(
                "the challenge password is wrong".into(),
            )));
        };
        if c.profile != profile.name {
            return Ok(Err(Refusal::Other(format!(
                "the one-time challenge is for profile `{}`",
                c.profile
            ))));
        }
        if c.used_at.is_some() {
            return Ok(Err(Refusal::Spent(
                "the one-time challenge was already used".into(),
            )));
        }
        if c.expires_at <= crate::store::now() {
            return Ok(Err(Refusal::Other(
                "the one-time challenge has expired".into(),
            )));
        }
        let bindings = match crate::authority::challenge::Bindings::from_json(&c.bindings) {
            Ok(b) => b,
            Err(why) => return Ok(Err(Refusal::Other(why))),
        };
        if profile.registration_only && bindings.registration.is_none() {
            return Ok(Err(Refusal::Bound(format!(
                "profile `{}` issues only through a registration's challenge (an officer's approval); this challenge was not minted by one",
                profile.name
            ))));
        }
        if let Err(why) = crate::authority::challenge::bindings_met(&bindings, csr) {
            return Ok(Err(Refusal::Bound(why)));
        }
        if let Some(name) = &bindings.credential {
            if let Err(why) = self.credential_key_rule(name, csr) {
                return Ok(Err(Refusal::Bound(why)));
            }
        }
        Ok(Ok(Some(OneTime {
            hash,
            id: c.id,
            bindings,
        })))
    }

    /// The credential's key type and size, enforced at enrollment (not only written into the
    /// payload the MDM pushes): the same type, and at least the size.
    pub(super) fn credential_key_rule(
        &self,
        credential: &str,
        csr: &crate::pki::Csr,
    ) -> Result<(), String> {
        use crate::pki::RequestedKey;
        let Some(cred) = self.inner.credentials.get(credential) else {
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
}
