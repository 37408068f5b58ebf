//! A registration's SCEP payload: what the MDM collects for an approved registration's device
//! (the profile's SCEP URL, a fresh one-time challenge bound to the device and the person, the
//! CA chain), or for an issued one's renewal inside its window, and who may collect it.

use super::access::{Caller, Role};
use super::challenge::{mint, Bindings};
use super::registration::{unavailable, RegistrationError, ScepPayload};
use super::Authority;
use crate::store::{RegistrationRecord, RegistrationState, StoreError};

impl Authority {
    /// The SCEP settings for an approved registration's device, with a fresh one-time
    /// challenge bound to its device and identity (the previous one is voided).
    pub async fn scep_payload(
        &self,
        caller: &Caller,
        id: &str,
        base_url: &str,
    ) -> Result<ScepPayload, RegistrationError> {
        let r = self.payload_collectable(caller, id).await?;
        self.payload_for(&r, &caller.actor(), base_url).await
    }

    /// The approved registration whose payload `caller` may collect now, or why not (not
    /// visible, not approved, outside an integration's directories). Nothing is minted: a
    /// front end checks what else the payload's profile needs before
    /// [`Authority::scep_payload`] replaces the device's challenge.
    pub async fn payload_collectable(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<RegistrationRecord, RegistrationError> {
        // The payload's challenge enrolls as the registered person: only the integration
        // that delivers it to the device holds it (an admin who wants one makes an mdm token,
        // which another admin approves where that rule is on).
        Self::only(
            caller,
            Role::Mdm,
            "integration token collects a registration's payload: its challenge enrolls as the registered person",
        )?;
        let r = self.stored_registration(id).await?;
        // Issued: a renewal challenge, checked when it is minted (`payload_for`).
        if r.state != RegistrationState::Issued {
            Self::expect(&r, RegistrationState::Approved)?;
        }
        let directory = &self.credential(&r.credential)?.directory;
        // An integration collects only the payloads of the directories it serves (collecting
        // one also voids the device's current challenge).
        if !caller.scope.allows_directory(directory) {
            return Err(RegistrationError::Forbidden(format!(
                "this token may not collect payloads of directory `{directory}` (its scope: {})",
                if caller.scope.directories.is_empty() {
                    "no directories".to_string()
                } else {
                    caller.scope.directories.join(", ")
                }
            )));
        }
        Ok(r)
    }

    /// The SCEP payload of approved registration `r`, with a fresh one-time challenge minted
    /// by `actor` (the previous one is voided): for the MDM that collects it, or a push. For
    /// an issued registration inside its renewal window, the challenge renews the certificate
    /// it holds (see [`Authority::renewal_open`]).
    pub(crate) async fn payload_for(
        &self,
        r: &RegistrationRecord,
        actor: &str,
        base_url: &str,
    ) -> Result<ScepPayload, RegistrationError> {
        if r.state == RegistrationState::Issued {
            self.renewal_open(r).await?;
        }
        let cred = self.credential(&r.credential)?.clone();
        let (Some(subject), Some(device_id)) = (r.subject.clone(), r.device_id.clone()) else {
            return Err(RegistrationError::WrongState(
                "the registration has no device identity".into(),
            ));
        };
        let bindings = Bindings {
            cn: None,
            sans: r.sans.clone(),
            // Device IDs are the MDM's: qualified by the directory, so two MDMs' numbering
            // cannot meet on one certificate record.
            device_id: Some(format!("{}:{device_id}", cred.directory)),
            subject: Some(subject.clone()),
            registration: Some(r.id.clone()),
            credential: Some(r.credential.clone()),
        };
        let (challenge, record) = mint(&cred.profile, &bindings, cred.challenge_ttl_secs(), actor)
            .map_err(|e| match e {
                // The system's random generator, not the input (nor the store).
                StoreError::Unavailable(why) => RegistrationError::Unavailable(why),
                other => RegistrationError::Invalid(other.to_string()),
            })?;
        let expires = record.expires_at;
        if !self
            .inner
            .store
            .registration_challenge(&r.id, &record, actor)
            .await
            .map_err(unavailable)?
        {
            return Err(RegistrationError::WrongState(
                "the registration changed meanwhile; read it again".into(),
            ));
        }
        let base = if self.inner.public_url.is_empty() {
            base_url.trim_end_matches('/').to_string()
        } else {
            self.inner.public_url.trim_end_matches('/').to_string()
        };
        let profile = self
            .profile(Some(&cred.profile))
            .map_err(|e| RegistrationError::Invalid(e.to_string()))?;
        let pem = |der: &[u8]| {
            openssl::x509::X509::from_der(der)
                .and_then(|c| c.to_pem())
                .map(|p| String::from_utf8_lossy(&p).into_owned())
                .unwrap_or_default()
        };
        use sha2::Digest;
        Ok(ScepPayload {
            registration: r.id.clone(),
            device_id,
            profile: cred.profile.clone(),
            url: format!("{base}/scep/{}", cred.profile),
            challenge,
            challenge_expires_at: crate::clock::rfc3339(expires),
            subject,
            subject_alternative_names: r.sans.clone(),
            key_type: cred.key_type.clone(),
            key_size: cred.key_size,
            key_usage: profile.policy.key_usage.clone(),
            ca_chain_pem: self.inner.ca_chain.iter().map(|c| pem(c)).collect(),
            ca_fingerprint_sha256: hex::encode(sha2::Sha256::digest(&self.inner.ca_cert)),
        })
    }

    /// An issued registration takes a renewal challenge while the certificate it holds is not
    /// revoked, has not ended, and ends within the renewal window: the profile's
    /// `renewal_days`, or the credential's `push.renew_within_days` when that is longer and its
    /// MDM is asked to renew (a renewal push carries one). An Apple device does not renew over
    /// SCEP by itself: its MDM installs the profile again, and the device enrolls with a new
    /// key and this challenge. The enrollment checks the certificate again
    /// (`rules::challenge_renewal_refusal`): the challenge may outlive it.
    pub(crate) async fn renewal_open(
        &self,
        r: &RegistrationRecord,
    ) -> Result<(), RegistrationError> {
        let cred = self.credential(&r.credential)?;
        let profile = self
            .profile(Some(&cred.profile))
            .map_err(|e| RegistrationError::Invalid(e.to_string()))?;
        // The push's window counts only where the MDM is asked to renew (not Intune's).
        let pushed = self
            .inner
            .channels
            .get(&r.credential)
            .map_or(0, |c| c.renewal_window() / 86_400);
        let days = profile
            .policy
            .renewal_days
            .max(u32::try_from(pushed).unwrap_or(u32::MAX));
        let Some(serial) = r.serial.as_deref() else {
            return Err(RegistrationError::WrongState(
                "the registration holds no certificate".into(),
            ));
        };
        let cert = self
            .inner
            .store
            .certificate(serial)
            .await
            .map_err(unavailable)?;
        match super::rules::challenge_renewal_refusal(
            profile,
            serial,
            cert.as_ref(),
            Some(days),
            crate::store::now(),
        ) {
            Some(why) => Err(RegistrationError::WrongState(why)),
            None => Ok(()),
        }
    }
}
