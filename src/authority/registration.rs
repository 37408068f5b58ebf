//! Registrations of derived credentials: a person's device gets a certificate only after an
//! officer has seen the device facts from the MDM and approved.
//!
//! The flow, one state each ([`RegistrationState`]):
//! 1. `open`: a user (self-service, their own email only) or an officer starts a registration
//!    for an email and a credential profile; Sigil asks the credential's MDM directory for the
//!    person's devices and keeps them, assessed and flagged (never hidden). When the MDM is down
//!    the registration stays open with the reason, and the device list can be fetched again.
//! 2. `requested`: a device is chosen; the certificate's subject and SANs are built now from the
//!    directory facts (`[credentials.NAME] subject`, `sans`), not from what the device will ask.
//! 3. `approved` or `rejected`: an officer decides, with a comment. Two people: the person who
//!    filed the request, and the person the credential is for, cannot approve it.
//! 4. The MDM collects the SCEP payload (URL, a one-time challenge bound to the device and
//!    identity, subject, SANs, key size, CA chain). Each collection mints a fresh challenge and
//!    voids the previous one, so no challenge is ever stored in clear.
//! 5. `issued`: the device enrolls with that challenge; the certificate carries the
//!    registration's identity and device, and the registration is linked to it in the same
//!    database transaction; a renewal over SCEP moves it to the new certificate. A
//!    registration that waits longer than `request_ttl` for its next step (or whose challenge
//!    expires unused) becomes `expired`, except one delivered to Intune's group for a profile
//!    that takes Intune's challenge: that lasts until withdrawn ([`LASTING`]).
//!
//! Every step is in the audit log with who did it.

use serde::Serialize;
use serde_json::json;

use super::access::{Caller, Role};
use super::officer::Revoker;
use super::Authority;
use super::{fill, CredentialSettings};
use crate::mdm::{assess, Compliance, Device};
use crate::reason::Reason;
use crate::store::{now, PushAction, RegistrationRecord, RegistrationState, StoreError};

/// A revocation's refusal keeps its rule; anything else is the store or token failing.
fn revoke_failed(e: super::RevokeError) -> RegistrationError {
    match e {
        super::RevokeError::Forbidden(why) => RegistrationError::Forbidden(why),
        e => RegistrationError::Unavailable(Reason::caused_by(e)),
    }
}

/// The `expires_at` of a registration that lasts until withdrawn (9999-12-31T23:59:59Z): one
/// delivered to Intune's group, whose device enrolls with Intune's challenge.
pub const LASTING: i64 = 253_402_300_799;

/// Why a registration step did not happen.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RegistrationError {
    /// No such registration (or not the caller's to see).
    #[error("no such registration")]
    NotFound,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The registration is not in the state this step needs.
    #[error("{0}")]
    WrongState(String),
    /// The input is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Store down.
    #[error("temporarily unavailable: {0}")]
    Unavailable(#[source] crate::reason::Reason),
}

pub(super) fn unavailable(e: StoreError) -> RegistrationError {
    RegistrationError::Unavailable(Reason::caused_by(e))
}

/// A credential as people choosing one see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CredentialView {
    /// Its name (what a registration names).
    pub name: String,
    /// What it is for, in words.
    pub description: String,
    /// The certificate profile it enrolls on.
    pub profile: String,
    /// The MDM directory asked for the person's devices.
    pub directory: String,
    /// The key type the device generates.
    pub key_type: String,
    /// The key size.
    pub key_size: u32,
    /// Whether only devices the MDM calls compliant may be chosen.
    pub require_compliant: bool,
}

/// What the MDM needs to push a SCEP profile to the device.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScepPayload {
    /// The registration.
    pub registration: String,
    /// The device it is for.
    pub device_id: String,
    /// The certificate profile the device enrolls with.
    pub profile: String,
    /// SCEP URL of the credential's profile.
    pub url: String,
    /// The one-time challenge (shown once; a new collection replaces it).
    pub challenge: String,
    /// When the challenge expires (RFC 3339).
    pub challenge_expires_at: String,
    /// The subject to request (the certificate gets it whatever the device sends).
    pub subject: String,
    /// The SANs to request, as `email:…`, `upn:…`, `uri:…`, `dns:…`.
    pub subject_alternative_names: Vec<String>,
    /// Key type the device must generate.
    pub key_type: String,
    /// Key size the device must generate.
    pub key_size: u32,
    /// Key usage for the device's SCEP profile.
    pub key_usage: Vec<String>,
    /// The CA chain (PEM), issuing CA first.
    pub ca_chain_pem: Vec<String>,
    /// SHA-256 of the issuing CA certificate (hex), as Intune and Jamf ask for.
    pub ca_fingerprint_sha256: String,
}

/// Escape a value for a subject template (`,` and `\` are special in `parse_dn`).
fn dn_escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace(',', "\\,")
}

fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    e.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        // No characters that mean something in MDM query languages (RSQL, OData).
        && e.chars().all(|c| {
            c.is_ascii_graphic()
                && !matches!(
                    c,
                    '<' | '>' | '"' | '\'' | ',' | ';' | '\\' | '*' | '(' | ')' | '=' | '!' | '~'
                )
        })
        && e.matches('@').count() == 1
}

impl Authority {
    pub(super) fn credential(&self, name: &str) -> Result<&CredentialSettings, RegistrationError> {
        self.inner.credentials.get(name).ok_or_else(|| {
            let mut known: Vec<&String> = self.inner.credentials.keys().collect();
            known.sort();
            RegistrationError::Invalid(format!(
                "no credential profile `{name}`; there are: {}",
                known
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// The certificate profile a credential's certificates are issued under (`None`: no such
    /// credential is configured).
    pub fn credential_profile(&self, credential: &str) -> Option<&str> {
        self.inner
            .credentials
            .get(credential)
            .map(|c| c.profile.as_str())
    }

    /// The credential profiles, for users and officers choosing one.
    pub fn credential_list(&self) -> Vec<CredentialView> {
        let mut names: Vec<&String> = self.inner.credentials.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let c = &self.inner.credentials[n];
                CredentialView {
                    name: n.clone(),
                    description: c.description.clone(),
                    profile: c.profile.clone(),
                    directory: c.directory.clone(),
                    key_type: c.key_type.clone(),
                    key_size: c.key_size,
                    require_compliant: c.require_compliant,
                }
            })
            .collect()
    }

    /// Ask the credential's directory for the person's devices: the assessed list as JSON,
    /// or the reason it could not be fetched.
    async fn fetch_devices(
        &self,
        cred: &CredentialSettings,
        email: &str,
    ) -> (String, Option<String>) {
        let Some(dir) = self.inner.directories.get(&cred.directory) else {
            return (
                "[]".into(),
                Some(format!("directory `{}` is not configured", cred.directory)),
            );
        };
        match dir.devices(email).await {
            Ok(devices) => {
                let assessed = assess(devices, email, now());
                tracing::info!(directory = %cred.directory, devices = assessed.len(), "device list fetched");
                (
                    serde_json::to_string(&assessed).unwrap_or_else(|_| "[]".into()),
                    None,
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "device list could not be fetched");
                ("[]".into(), Some(e.to_string()))
            }
        }
    }

    /// Registrations are started and filed by the person (a user) or an officer; read by
    /// them, admins and auditors; integrations only collect payloads.
    fn may(caller: &Caller, act: bool) -> Result<(), RegistrationError> {
        let allowed: &[Role] = if act {
            &[Role::User, Role::Officer]
        } else {
            &[Role::User, Role::Officer, Role::Admin, Role::Auditor]
        };
        if allowed.iter().any(|r| caller.acts_as(*r)) {
            Ok(())
        } else {
            Err(RegistrationError::Forbidden(format!(
                "the {} role does not {} registrations",
                caller.role.as_str(),
                if act { "start or file" } else { "read" }
            )))
        }
    }

    /// May `caller` see or act on `r` as its person? Users only their own.
    fn own(caller: &Caller, r: &RegistrationRecord) -> Result<(), RegistrationError> {
        if caller.role == Role::User && !caller.name.eq_ignore_ascii_case(&r.email) {
            return Err(RegistrationError::NotFound);
        }
        Ok(())
    }

    /// Start a registration for `email` and credential profile `credential`, with the
    /// person's devices from the MDM (or the reason they could not be fetched).
    pub async fn register(
        &self,
        caller: &Caller,
        email: &str,
        credential: &str,
    ) -> Result<RegistrationRecord, RegistrationError> {
        Self::may(caller, true)?;
        let email = email.trim().to_ascii_lowercase();
        if !valid_email(&email) {
            return Err(RegistrationError::Invalid(format!(
                "`{email}` is not an email address"
            )));
        }
        if caller.role == Role::User && !caller.name.eq_ignore_ascii_case(&email) {
            return Err(RegistrationError::Forbidden(
                "a user token may only register its own email (the token's name)".into(),
            ));
        }
        let cred = self.credential(credential)?.clone();
        let (devices, directory_error) = self.fetch_devices(&cred, &email).await;
        let at = now();
        let mut id = [0u8; 8];
        openssl::rand::rand_bytes(&mut id)
            .map_err(|e| RegistrationError::Unavailable(Reason::context("random", e)))?;
        let r = RegistrationRecord {
            id: format!("reg_{}", hex::encode(id)),
            email,
            credential: credential.into(),
            state: RegistrationState::Open,
            devices,
            directory_error,
            device_id: None,
            device: None,
            subject: None,
            sans: Vec::new(),
            created_by: caller.actor(),
            requested_by: None,
            decided_by: None,
            comment: None,
            challenge_hash: None,
            serial: None,
            created_at: at,
            updated_at: at,
            expires_at: at + cred.request_ttl_secs(),
        };
        self.inner
            .store
            .insert_registration(&r, &caller.actor())
            .await
            .map_err(unavailable)?;
        tracing::info!(registration = %r.id, email = %r.email, "registration started");
        Ok(r)
    }

    /// The registration, if the caller may see it.
    pub async fn registration(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<RegistrationRecord, RegistrationError> {
        Self::may(caller, false)?;
        let r = self.stored_registration(id).await?;
        Self::own(caller, &r)?;
        Ok(r)
    }

    /// The registration as stored, whoever asks (callers check who may see it).
    pub(super) async fn stored_registration(
        &self,
        id: &str,
    ) -> Result<RegistrationRecord, RegistrationError> {
        self.inner
            .store
            .registration(id)
            .await
            .map_err(unavailable)?
            .ok_or(RegistrationError::NotFound)
    }

    /// Refuse `caller` unless it acts in `role`; `what` completes "only an officer …".
    pub(super) fn only(caller: &Caller, role: Role, what: &str) -> Result<(), RegistrationError> {
        if caller.acts_as(role) {
            Ok(())
        } else {
            let article = if role == Role::User { "a" } else { "an" };
            Err(RegistrationError::Forbidden(format!(
                "only {article} {} {what}",
                role.as_str()
            )))
        }
    }

    /// Registrations the caller may see (a user: their own), newest first.
    pub async fn registrations(
        &self,
        caller: &Caller,
        email: Option<&str>,
    ) -> Result<Vec<RegistrationRecord>, RegistrationError> {
        Self::may(caller, false)?;
        let email = match caller.role {
            Role::User => Some(caller.name.to_ascii_lowercase()),
            _ => email.map(|e| e.trim().to_ascii_lowercase()),
        };
        self.inner
            .store
            .registrations(email.as_deref(), 1000)
            .await
            .map_err(unavailable)
    }

    async fn step(
        &self,
        next: &RegistrationRecord,
        from: RegistrationState,
        action: &str,
        caller: &Caller,
        details: serde_json::Value,
    ) -> Result<(), RegistrationError> {
        let mut details = details;
        details["by"] = json!(caller.name);
        details["role"] = json!(caller.role.as_str());
        if self
            .inner
            .store
            .update_registration(next, from, action, &caller.actor(), &details)
            .await
            .map_err(unavailable)?
        {
            tracing::info!(registration = %next.id, action, by = %caller.name, "registration step");
            Ok(())
        } else {
            Err(RegistrationError::WrongState(
                "the registration changed meanwhile; read it again".into(),
            ))
        }
    }

    pub(super) fn expect(
        r: &RegistrationRecord,
        state: RegistrationState,
    ) -> Result<(), RegistrationError> {
        if r.state == state {
            Ok(())
        } else {
            Err(RegistrationError::WrongState(format!(
                "the registration is {}, not {state}",
                r.state
            )))
        }
    }

    /// Ask the MDM again for an open registration's devices.
    pub async fn refresh_devices(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<RegistrationRecord, RegistrationError> {
        Self::may(caller, true)?;
        let r = self.registration(caller, id).await?;
        Self::expect(&r, RegistrationState::Open)?;
        let cred = self.credential(&r.credential)?.clone();
        let (devices, directory_error) = self.fetch_devices(&cred, &r.email).await;
        let mut next = r.clone();
        next.devices = devices;
        next.directory_error = directory_error.clone();
        next.updated_at = now();
        self.step(
            &next,
            RegistrationState::Open,
            "devices_refreshed",
            caller,
            json!({"directory_error": directory_error}),
        )
        .await?;
        Ok(next)
    }

    /// File the request for one of the registration's devices: the certificate's identity is
    /// built from that device's facts now.
    pub async fn request(
        &self,
        caller: &Caller,
        id: &str,
        device_id: &str,
    ) -> Result<RegistrationRecord, RegistrationError> {
        Self::may(caller, true)?;
        let r = self.registration(caller, id).await?;
        Self::expect(&r, RegistrationState::Open)?;
        let cred = self.credential(&r.credential)?.clone();
        let devices: Vec<Device> = serde_json::from_str(&r.devices).unwrap_or_default();
        let Some(device) = devices
            .into_iter()
            .find(|d| !d.id.is_empty() && d.id == device_id)
        else {
            return Err(RegistrationError::Invalid(format!(
                "device `{device_id}` is not one of this registration's devices"
            )));
        };
        if cred.require_compliant && device.compliance != Compliance::Compliant {
            return Err(RegistrationError::Invalid(format!(
                "credential profile `{}` needs a device the MDM reports compliant; this one is {:?}",
                r.credential, device.compliance
            )));
        }
        let user = r.email.split('@').next().unwrap_or("").to_string();
        let fact = |name: &str| match name {
            "email" => Some(r.email.clone()),
            "user" => Some(user.clone()),
            other => device.fact(other),
        };
        let subject = fill(&cred.subject, &|n| fact(n).map(|v| dn_escape(&v)))
            .map_err(|e| RegistrationError::Invalid(format!("subject: {e}")))?;
        let sans = cred
            .sans
            .iter()
            .map(|s| fill(s, &fact))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RegistrationError::Invalid(format!("SANs: {e}")))?;
        let identity = crate::pki::Identity {
            subject: subject.clone(),
            sans: sans.clone(),
        };
        crate::pki::parse_dn(&subject)
            .map_err(|e| RegistrationError::Invalid(format!("subject `{subject}`: {e}")))?;
        identity
            .parsed_sans()
            .map_err(|e| RegistrationError::Invalid(format!("SANs: {e}")))?;
        if let Some(bad) = sans
            .iter()
            .find(|s| !s.starts_with("upn:") && !s.is_ascii())
        {
            return Err(RegistrationError::Invalid(format!(
                "SAN `{bad}` is not ASCII"
            )));
        }
        let at = now();
        let mut next = r.clone();
        next.state = RegistrationState::Requested;
        next.device_id = Some(device.id.clone());
        next.device = serde_json::to_string(&device).ok();
        next.subject = Some(subject.clone());
        next.sans = sans.clone();
        next.requested_by = Some(caller.actor());
        next.updated_at = at;
        next.expires_at = at + cred.request_ttl_secs();
        self.step(
            &next,
            RegistrationState::Open,
            "requested",
            caller,
            json!({"device_id": device.id, "subject": subject, "sans": sans,
                   "flags": device.flags, "compliance": device.compliance}),
        )
        .await?;
        Ok(next)
    }

    /// An officer approves or rejects a requested registration, with a comment. The person who
    /// filed the request and the person the credential is for may not approve it.
    pub async fn decide_registration(
        &self,
        caller: &Caller,
        id: &str,
        approve: bool,
        comment: &str,
    ) -> Result<RegistrationRecord, RegistrationError> {
        Self::only(caller, Role::Officer, "decides registrations")?;
        let r = self.registration(caller, id).await?;
        Self::expect(&r, RegistrationState::Requested)?;
        if approve {
            let filer = r.requested_by.clone().unwrap_or_default();
            let refusal = if self
                .same_person(&filer, caller)
                .await
                .map_err(unavailable)?
            {
                Some("two people: whoever filed this request cannot approve it")
            } else if caller.person.has_email(&r.email)
                || caller.name.trim().eq_ignore_ascii_case(&r.email)
            {
                Some("two people: nobody approves their own credential")
            } else {
                None
            };
            if let Some(why) = refusal {
                // A refused approval is a decision too: recorded with who tried.
                self.refuse_approval(caller, &r.id, why).await;
                return Err(RegistrationError::Forbidden(why.into()));
            }
        }
        let cred = self.credential(&r.credential)?.clone();
        let at = now();
        let mut next = r.clone();
        next.state = if approve {
            RegistrationState::Approved
        } else {
            RegistrationState::Rejected
        };
        next.decided_by = Some(caller.actor());
        next.comment = Some(comment.trim().to_string()).filter(|c| !c.is_empty());
        next.updated_at = at;
        // Approved: the device has request_ttl to enroll.
        next.expires_at = at + cred.request_ttl_secs();
        self.step(
            &next,
            RegistrationState::Requested,
            if approve {
                "registration_approved"
            } else {
                "registration_rejected"
            },
            caller,
            json!({"comment": next.comment, "device_id": r.device_id}),
        )
        .await?;
        if approve {
            // The MDM is told to deliver (a failure to queue is logged: the registration is
            // approved, and the MDM can still collect the payload).
            if let Err(e) = self.queue_push(&next, PushAction::Deliver, "deliver").await {
                tracing::warn!(registration = %next.id, error = %e, "could not queue the push");
            }
        }
        Ok(next)
    }

    /// After a registration ended (withdrawn, revoked): take back what was delivered.
    async fn withdraw_push(&self, r: &RegistrationRecord) {
        if !self.pushes_for(&r.credential) {
            return;
        }
        let delivered = match self.registration_pushes(&r.id).await {
            Ok(p) => p.iter().any(|p| p.action == PushAction::Deliver),
            Err(e) => {
                tracing::warn!(registration = %r.id, error = %e, "could not read the pushes");
                return;
            }
        };
        if delivered {
            if let Err(e) = self.queue_push(r, PushAction::Withdraw, "withdraw").await {
                tracing::warn!(registration = %r.id, error = %e, "could not queue the withdrawal");
            }
        }
    }

    /// An officer withdraws a registration that is not issued yet (open, requested or
    /// approved): it ends `rejected` with the comment, and an approved one's one-time
    /// challenge stops working at once.
    pub async fn cancel_registration(
        &self,
        caller: &Caller,
        id: &str,
        comment: &str,
    ) -> Result<RegistrationRecord, RegistrationError> {
        Self::only(caller, Role::Officer, "withdraws registrations")?;
        let r = self.registration(caller, id).await?;
        if !r.state.is_live() {
            return Err(RegistrationError::WrongState(format!(
                "the registration is {}; only open, requested or approved ones can be withdrawn",
                r.state
            )));
        }
        let mut next = r.clone();
        next.state = RegistrationState::Rejected;
        next.decided_by = Some(caller.actor());
        let comment = comment.trim();
        next.comment = Some(if comment.is_empty() {
            "withdrawn by an officer".to_string()
        } else {
            format!("withdrawn: {comment}")
        });
        next.updated_at = now();
        self.step(
            &next,
            r.state,
            "registration_withdrawn",
            caller,
            json!({"comment": next.comment, "was": r.state.as_str()}),
        )
        .await?;
        self.withdraw_push(&next).await;
        Ok(next)
    }

    /// Revoke an issued registration's credential: its certificate and every other valid
    /// certificate of its device. Returns the serials revoked.
    pub async fn revoke_registration(
        &self,
        caller: &Caller,
        id: &str,
        reason: i32,
    ) -> Result<Vec<String>, RegistrationError> {
        Self::only(caller, Role::Officer, "revokes credentials")?;
        let r = self.registration(caller, id).await?;
        Self::expect(&r, RegistrationState::Issued)?;
        let directory = self
            .credential(&r.credential)
            .map(|c| c.directory.clone())
            .unwrap_or_default();
        // The registration's certificate and every valid one of its device, collected again
        // after each round: a renewal that committed between a read and the revocation moved
        // the registration to a certificate not yet listed (a revoked certificate renews no
        // more, so this settles within a round or two).
        let (mut tried, mut done): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        let mut holds = r.serial.clone();
        for _ in 0..5 {
            let mut serials: Vec<String> = holds.iter().cloned().collect();
            if let Some(device) = &r.device_id {
                let of_device = format!("{directory}:{device}");
                serials.extend(
                    self.valid_serials_of(&of_device)
                        .await
                        .map_err(unavailable)?,
                );
            }
            serials.retain(|s| !tried.contains(s));
            serials.sort();
            serials.dedup();
            if serials.is_empty() {
                break;
            }
            tried.extend(serials.iter().cloned());
            done.extend(
                self.revoke_serials(serials, reason, Revoker::Person(caller))
                    .await
                    .map_err(revoke_failed)?,
            );
            holds = self
                .inner
                .store
                .registration(&r.id)
                .await
                .map_err(unavailable)?
                .and_then(|now| now.serial);
        }
        self.inner
            .store
            .audit(
                &caller.actor(),
                "registration_revoked",
                &r.id,
                &json!({"reason": crate::pki::revocation_reason_name(reason), "serials": done, "by": caller.name}),
            )
            .await
            .map_err(unavailable)?;
        self.withdraw_push(&r).await;
        Ok(done)
    }

    /// Expire registrations and PENDING enrollments that waited too long (see
    /// [`crate::store::Store::expire`]); each approval profile's `approval_expires` applies.
    pub async fn expire(&self) -> Result<(usize, usize), StoreError> {
        let at = now();
        let pending: Vec<(String, i64)> = self
            .inner
            .profiles
            .values()
            .filter(|p| p.policy.approval)
            .map(|p| {
                let ttl =
                    crate::clock::parse_span(&p.policy.approval_expires).unwrap_or(7 * 86_400);
                (p.name.clone(), at - ttl)
            })
            .collect();
        let (regs, txs) = self.inner.store.expire(at, &pending).await?;
        if regs + txs > 0 {
            tracing::info!(registrations = regs, enrollments = txs, "expired");
        }
        Ok((regs, txs))
    }
}

#[cfg(test)]
#[path = "registration_tests.rs"]
mod tests;
