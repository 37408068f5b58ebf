//! What officers decide outside the SCEP exchange itself: approving or rejecting a PENDING
//! enrollment, and revoking certificates (one, or every one of a device), each followed by a
//! new CRL.

use super::access::{Caller, Role};
use super::{ApprovalError, Authority};
use crate::reason::Reason;

/// Who revokes: a person, who must be acting as an officer (checked here, whatever route
/// they came by), or Sigil itself and the local operator (a renewal superseding its
/// certificate, Intune's revocation feed, `sigil cert revoke`), named as the audit records it.
#[derive(Debug, Clone, Copy)]
pub enum Revoker<'a> {
    /// A signed-in person or a token.
    Person(&'a Caller),
    /// Sigil's own work or the operator at the host (`ra`, `intune:<connection>`, `cli`).
    System(&'a str),
}

impl Revoker<'_> {
    /// The actor the audit records, once the role is checked.
    fn actor(&self) -> Result<String, RevokeError> {
        match self {
            Revoker::Person(c) if c.acts_as(Role::Officer) => Ok(c.actor()),
            Revoker::Person(c) => Err(RevokeError::Forbidden(format!(
                "only an officer revokes certificates (this caller acts as {})",
                c.role.as_str()
            ))),
            Revoker::System(name) => Ok((*name).to_string()),
        }
    }
}

/// Why a revocation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// The caller may not revoke; the text says why.
    #[error("{0}")]
    Forbidden(String),
    /// Store down.
    #[error("temporarily unavailable: {0}")]
    Unavailable(#[source] Reason),
}

impl Authority {
    /// The PENDING enrollment an officer names: by its record key (what the approval queue
    /// lists) or by its transactionID when exactly one PENDING enrollment has it (the API
    /// accepts both; transactionIDs may hold `/`, `+`, `=`).
    pub async fn pending_enrollment(
        &self,
        id: &str,
    ) -> Result<crate::store::TransactionRecord, ApprovalError> {
        let unavailable =
            |e: crate::store::StoreError| ApprovalError::Unavailable(Reason::caused_by(e));
        let store = &self.inner.store;
        if let Some(tx) = store.transaction(id).await.map_err(unavailable)? {
            return Ok(tx);
        }
        let named = store.transactions_named(id).await.map_err(unavailable)?;
        if named.is_empty() {
            return Err(ApprovalError::NotFound);
        }
        let mut matching: Vec<_> = named
            .into_iter()
            .filter(|t| t.state == crate::store::TransactionState::Pending)
            .collect();
        match matching.len() {
            0 => Err(ApprovalError::NotPending),
            1 => Ok(matching.remove(0)),
            _ => Err(ApprovalError::Refused(format!(
                "{} PENDING enrollments have transactionID {id}: name one by its id from the approval queue",
                matching.len()
            ))),
        }
    }

    /// Is `actor` (as recorded: `token:<id>`, `oidc:…`, `piv:…`) the same person as
    /// `caller`? The same actor, the same person behind the tokens (their owner), or the same
    /// email, whatever tokens or sign-ins they used.
    pub(crate) async fn same_person(
        &self,
        actor: &str,
        caller: &Caller,
    ) -> Result<bool, crate::store::StoreError> {
        if actor == caller.actor() {
            return Ok(true);
        }
        Ok(self.person_of(actor).await?.same_as(&caller.person))
    }

    /// Record an approval refused by the two-person rule (a decision too: who tried).
    pub(crate) async fn refuse_approval(&self, caller: &Caller, subject: &str, why: &str) {
        let details = serde_json::json!({"reason": why, "by": caller.name});
        if let Err(e) = self
            .inner
            .store
            .audit(&caller.actor(), "approval_refused", subject, &details)
            .await
        {
            tracing::warn!(error = %e, "could not record the refused approval");
        }
        tracing::warn!(subject, by = %caller.name, why, "approval refused");
    }

    /// An officer approves a PENDING enrollment: the certificate is issued from the stored
    /// CSR under the transaction's profile, with the name and device its challenge bound, and
    /// recorded; the device gets it at its next CertPoll. Whoever minted that challenge may
    /// not approve it (two people). Returns the serial.
    pub async fn approve(&self, id: &str, caller: &Caller) -> Result<String, ApprovalError> {
        if !caller.acts_as(Role::Officer) {
            return Err(ApprovalError::Forbidden(
                "only an officer approves an enrollment".into(),
            ));
        }
        let unavailable =
            |e: crate::store::StoreError| ApprovalError::Unavailable(Reason::caused_by(e));
        let tx = self.pending_enrollment(id).await?;
        if tx.state != crate::store::TransactionState::Pending {
            return Err(ApprovalError::NotPending);
        }
        let mut bindings = None;
        if let Some(cid) = &tx.challenge_id {
            let ch = self
                .inner
                .store
                .challenge_by_id(cid)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| {
                    ApprovalError::Refused(format!("the challenge {cid} of this request is gone"))
                })?;
            if self
                .same_person(&ch.created_by, caller)
                .await
                .map_err(unavailable)?
            {
                let why =
                    "two people: whoever minted the challenge of this request cannot approve it";
                self.refuse_approval(caller, &tx.id, why).await;
                return Err(ApprovalError::Forbidden(why.into()));
            }
            bindings = Some(
                super::challenge::Bindings::from_json(&ch.bindings)
                    .map_err(ApprovalError::Refused)?,
            );
        }
        let csr = crate::pki::parse_csr(&tx.csr)
            .map_err(|e| ApprovalError::Refused(format!("the stored CSR: {e}")))?;
        let profile = self
            .profile(Some(&tx.profile))
            .map_err(|e| ApprovalError::Refused(e.to_string()))?
            .clone();
        let record = tx.id.clone();
        let grant = super::enroll::Grant {
            spend: None,
            bindings,
            device: None,
        };
        match self.issue(&profile, tx, csr, grant, &caller.actor()).await {
            Ok(super::Decision::Issued { certificate }) => {
                let serial = crate::pki::certificate_facts(&certificate)
                    .map(|f| f.serial)
                    .unwrap_or_default();
                tracing::info!(transaction = %record, %serial, by = %caller.name, "approved and issued");
                Ok(serial)
            }
            Ok(super::Decision::Refused(r)) => Err(ApprovalError::Refused(r.reason)),
            // Still PENDING after issue: another officer's claim holds it.
            Ok(super::Decision::Pending) => Err(ApprovalError::Busy),
            Err(e) => Err(ApprovalError::Unavailable(Reason::caused_by(e))),
        }
    }

    /// Revoke a certificate (RFC 5280 `reason` code) and publish a new CRL at once. False
    /// when there is no valid certificate with this serial.
    pub async fn revoke(
        &self,
        serial: &str,
        reason: i32,
        by: Revoker<'_>,
    ) -> Result<bool, RevokeError> {
        let serial = serial.trim().trim_start_matches("0x").to_ascii_lowercase();
        Ok(!self
            .revoke_serials(vec![serial], reason, by)
            .await?
            .is_empty())
    }

    /// Revoke every valid certificate issued to a device (a lost or retired device), then
    /// publish one new CRL. Returns the serials revoked.
    pub async fn revoke_device(
        &self,
        device_id: &str,
        reason: i32,
        by: Revoker<'_>,
    ) -> Result<Vec<String>, RevokeError> {
        by.actor()?;
        let unavailable =
            |e: crate::store::StoreError| RevokeError::Unavailable(Reason::caused_by(e));
        // Listed again after each round: a renewal that committed between the listing and
        // the revocation issued a certificate not yet listed (a revoked certificate renews no
        // more, so this settles within a round or two).
        let (mut tried, mut done): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let mut serials = self
                .valid_serials_of(device_id)
                .await
                .map_err(unavailable)?;
            serials.retain(|s| !tried.contains(s));
            if serials.is_empty() {
                break;
            }
            tried.extend(serials.iter().cloned());
            done.extend(self.revoke_serials(serials, reason, by).await?);
        }
        Ok(done)
    }

    /// The serials of the valid certificates issued to `device_id` (`directory:id`).
    pub(crate) async fn valid_serials_of(
        &self,
        device_id: &str,
    ) -> Result<Vec<String>, crate::store::StoreError> {
        let certs = self
            .inner
            .store
            .certificates(&crate::store::CertFilter {
                device_id: Some(device_id.to_string()),
                status: Some(crate::store::CertStatus::Valid),
                ..Default::default()
            })
            .await?;
        Ok(certs.into_iter().map(|c| c.serial).collect())
    }

    /// Revoke these serials (those still valid) and publish one new CRL; returns those
    /// revoked now. `by` is checked here too, so no caller can skip the rule.
    pub(crate) async fn revoke_serials(
        &self,
        serials: Vec<String>,
        reason: i32,
        by: Revoker<'_>,
    ) -> Result<Vec<String>, RevokeError> {
        let actor = by.actor()?;
        let actor = actor.as_str();
        let unavailable =
            |e: crate::store::StoreError| RevokeError::Unavailable(Reason::caused_by(e));
        let mut done = Vec::new();
        for serial in serials {
            if self
                .inner
                .store
                .revoke_certificate(
                    &serial,
                    reason,
                    crate::pki::revocation_reason_name(reason),
                    actor,
                )
                .await
                .map_err(unavailable)?
            {
                tracing::info!(%serial, reason, actor, "revoked");
                self.inner.ocsp.prepared.forget(&serial);
                done.push(serial);
            }
        }
        if !done.is_empty() {
            self.refresh_all_crls().await;
        }
        Ok(done)
    }

    /// An officer rejects a PENDING enrollment (named as for [`Authority::approve`]); the device
    /// gets FAILURE with `reason`.
    pub async fn reject(
        &self,
        id: &str,
        reason: &str,
        caller: &Caller,
    ) -> Result<(), ApprovalError> {
        if !caller.acts_as(Role::Officer) {
            return Err(ApprovalError::Forbidden(
                "only an officer rejects an enrollment".into(),
            ));
        }
        let tx = self.pending_enrollment(id).await?;
        match self
            .inner
            .store
            .reject(&tx.id, reason, &caller.actor())
            .await
        {
            Ok(()) => {
                tracing::info!(transaction = %tx.id, reason, "rejected");
                Ok(())
            }
            Err(crate::store::StoreError::Conflict(_)) => Err(ApprovalError::NotPending),
            Err(e) => Err(ApprovalError::Unavailable(Reason::caused_by(e))),
        }
    }
}

/// A PENDING enrollment as an officer sees it before deciding: the whole name the certificate
/// will carry (not just the CN), what the device asked for, and who made the request
/// possible.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PendingEnrollment {
    /// `enrollment`.
    pub kind: &'static str,
    /// The record's id (URL-safe; approve and reject by it).
    pub id: String,
    /// The SCEP transactionID as the device sent it.
    pub transaction_id: String,
    /// The profile.
    pub profile: String,
    /// The subject the certificate will carry.
    pub subject: String,
    /// The SANs the certificate will carry.
    pub sans: Vec<String>,
    /// The subject as the CSR asked for it (it may differ when a challenge binds the name).
    pub requested_subject: String,
    /// The SANs as the CSR asked for them.
    pub requested_sans: Vec<String>,
    /// The key: `rsa 2048`, `p256`, …
    pub key: String,
    /// The device a challenge bound, if any.
    pub device_id: Option<String>,
    /// The one-time challenge that made the request possible, if one did.
    pub challenge_id: Option<String>,
    /// Who minted it (`token:<id>`, `cli`), and the token's name when known.
    pub challenge_minted_by: Option<String>,
    /// The name of the token that minted it.
    pub challenge_minted_by_name: Option<String>,
}

impl Authority {
    /// A PENDING enrollment as the approval queue shows it.
    pub async fn pending_view(
        &self,
        t: &crate::store::TransactionRecord,
    ) -> Result<PendingEnrollment, crate::store::StoreError> {
        let csr = crate::pki::parse_csr(&t.csr).ok();
        let challenge = match &t.challenge_id {
            Some(id) => self.inner.store.challenge_by_id(id).await?,
            None => None,
        };
        let bindings = challenge
            .as_ref()
            .and_then(|c| super::challenge::Bindings::from_json(&c.bindings).ok());
        let minted_by = challenge.as_ref().map(|c| c.created_by.clone());
        let minted_by_name = match &minted_by {
            Some(a) => Some(self.person_of(a).await?.name),
            None => None,
        };
        let (requested_subject, requested_sans, key) = match &csr {
            Some(c) => (
                crate::pki::name_text(&c.subject),
                c.sans.iter().map(|s| s.to_string()).collect(),
                match c.key {
                    crate::pki::RequestedKey::Rsa(bits) => format!("rsa {bits}"),
                    crate::pki::RequestedKey::P256 => "p256".into(),
                    crate::pki::RequestedKey::P384 => "p384".into(),
                    crate::pki::RequestedKey::Other => "other".into(),
                },
            ),
            None => (
                "(the stored request does not read)".into(),
                Vec::new(),
                String::new(),
            ),
        };
        let profile = self.profile(Some(&t.profile)).ok();
        let identity = match (&bindings, &csr, profile) {
            (Some(b), Some(c), Some(p)) => b.identity(&p.cert, c),
            _ => None,
        };
        let (subject, sans) = match (identity, &csr, profile) {
            (Some(i), _, _) => (i.subject, i.sans),
            (None, Some(c), Some(p)) => (
                match &p.cert.subject_template {
                    Some(_) => p.cert.subject_for_cn(c.common_name().unwrap_or("")),
                    None => requested_subject.clone(),
                },
                requested_sans.clone(),
            ),
            _ => (requested_subject.clone(), requested_sans.clone()),
        };
        Ok(PendingEnrollment {
            kind: "enrollment",
            id: t.id.clone(),
            transaction_id: t.transaction_id.clone(),
            profile: t.profile.clone(),
            subject,
            sans,
            requested_subject,
            requested_sans,
            key,
            device_id: bindings.and_then(|b| b.device_id),
            challenge_id: t.challenge_id.clone(),
            challenge_minted_by: minted_by,
            challenge_minted_by_name: minted_by_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller::token_for_test(role)
    }

    /// Revoking is an officer's, whatever route a person comes by; Sigil's own revocations
    /// are recorded under their own names.
    #[test]
    fn only_an_officer_or_sigil_itself_revokes() {
        assert_eq!(
            Revoker::Person(&caller(Role::Officer)).actor().unwrap(),
            "token:t"
        );
        for role in [Role::User, Role::Admin, Role::Auditor, Role::Mdm] {
            let e = Revoker::Person(&caller(role)).actor().unwrap_err();
            assert!(
                matches!(&e, RevokeError::Forbidden(why) if why.contains("only an officer")),
                "{role:?}: {e}"
            );
        }
        assert_eq!(
            Revoker::System("intune:contoso").actor().unwrap(),
            "intune:contoso"
        );
        // Acting as an officer without holding the role (a front end that set it unchecked).
        let mut lent = caller(Role::User);
        lent.role = Role::Officer;
        assert!(Revoker::Person(&lent).actor().is_err());
    }
}
