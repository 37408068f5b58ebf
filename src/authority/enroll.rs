//! One enrollment, from request to decision: find the transaction again (resends), renew or
//! check the challenge, hold for approval, reserve, issue, record.
//!
//! A transaction is found by its key (the requester's transactionID, its key and the serial
//! it renews; see `TransactionRecord::key`) and reserved in the store before the CA key
//! signs, so two copies of one request racing each other are signed once: the second waits
//! for the first's answer. Refusals of requesters that proved nothing (no valid challenge, no
//! certificate of ours) stay in the server log; those of authenticated requesters go into
//! the audit chain (repeats counted, see refusals.rs).

use openssl::x509::X509;
use sha2::Digest;

use super::challenge::Bindings;
use super::decision::{Decision, EnrollRequest, RefusalKind, Requester};
use super::external::{ChallengeAuthority, ExternalRefusal, IssuedNotice};
use super::rules::Refusal;
use super::{Authority, Profile, RequestError};
use crate::pki::{parse_csr, PkiError};
use crate::reason::Reason;
use crate::store::{CertificateRecord, StoreError, TransactionRecord, TransactionState};

/// What makes an issuance possible beyond the CSR: the one-time challenge to spend with the
/// record (its hash), the bindings that fix the name and device, and the device a renewal
/// inherits.
#[derive(Default)]
pub(crate) struct Grant {
    pub(crate) spend: Option<String>,
    pub(crate) bindings: Option<Bindings>,
    pub(crate) device: Option<String>,
}

/// A decision with whether the requester proved anything (a valid challenge, or a signature
/// by a certificate of this CA): only then does a refusal enter the audit chain.
struct Decided {
    decision: Decision,
    authenticated: bool,
}

impl From<Decision> for Decided {
    fn from(decision: Decision) -> Decided {
        Decided {
            decision,
            authenticated: false,
        }
    }
}

/// The answer for a certificate Intune could not be told of.
const WITHDRAWN: &str = "Intune could not be told of the certificate, so it was withdrawn (revoked); send a new request";

/// Tell the external authority a request it vouched for was not issued (a failure to tell
/// it is logged: the device's answer does not change).
async fn tell_failed(ext: &dyn ChallengeAuthority, transaction_id: &str, csr: &[u8], why: &str) {
    if let Err(e) = ext
        .failed(
            transaction_id,
            csr,
            super::external::E_FAIL,
            &super::external::clip(why),
        )
        .await
    {
        tracing::warn!(error = %e, "Intune could not be told of a refusal");
    }
}

/// A policy refusal.
fn refuse(text: impl Into<String>) -> Decision {
    Decision::refused(RefusalKind::Policy, text)
}

/// The store's record of a freshly issued certificate.
pub(crate) fn certificate_record(
    der: &[u8],
    profile: &str,
    transaction_id: &str,
) -> Result<CertificateRecord, crate::pki::CsrError> {
    let f = crate::pki::certificate_facts(der)?;
    Ok(CertificateRecord {
        serial: f.serial,
        der: der.to_vec(),
        subject: f.subject,
        sans: f.sans,
        issuer: f.issuer,
        not_before: f.not_before,
        not_after: f.not_after,
        profile: profile.into(),
        status: crate::store::CertStatus::Valid,
        revoked_at: None,
        revocation_reason: None,
        transaction_id: transaction_id.into(),
        device_id: None,
        renewed_by: None,
    })
}

pub(super) fn store_err(e: StoreError) -> RequestError {
    RequestError::Unavailable(Reason::caused_by(e))
}

/// The key a request is recorded under (see `TransactionRecord::key`): its transactionID,
/// the requester's key, and the serial of the certificate of this CA it came with, if one
/// did. A renewal is so recorded apart from the enrollment that made that certificate
/// (clients derive the transactionID from the key, so a renewal with the same key repeats
/// it), and two devices using the same short transactionID do not meet.
fn record_key(transaction_id: &str, requester: &Requester, signer_serial: Option<&str>) -> String {
    TransactionRecord::key(transaction_id, &requester.key_sha256, signer_serial)
}

/// How long a request waits for a copy of itself that is being signed, before answering
/// PENDING (the device then polls).
const RACE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Serial bytes → lower-case hex without leading zeros.
pub(crate) fn serial_hex(bytes: &[u8]) -> String {
    let lead = bytes.iter().take_while(|b| **b == 0).count();
    let h = hex::encode(&bytes[lead..]);
    if h.is_empty() {
        "0".into()
    } else {
        h
    }
}

/// A token naming one holder of a reservation (16 random bytes, hex).
fn holder_token() -> Result<String, RequestError> {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b)
        .map_err(|e| RequestError::Unavailable(Reason::context("random", e)))?;
    Ok(hex::encode(b))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RequestError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RequestError::Unavailable(Reason::context("worker", e)))
}

impl Authority {
    /// The answer already decided for a transaction. A reservation (a copy of this request
    /// being signed right now) is waited for a moment; if it is still running, PENDING (the
    /// device polls). A reservation that lapsed (its node stopped before recording anything)
    /// is dropped, and the answer says to send the request again: nothing was issued, and
    /// the request itself (its CSR) was not kept.
    pub(super) async fn recorded(&self, tx: &TransactionRecord) -> Result<Decision, RequestError> {
        if let Some(outcome) = self.settled(tx).await? {
            return Ok(outcome);
        }
        if let Err(e) = self.inner.store.abandon_lapsed(Some(&tx.id), "ra").await {
            tracing::warn!(error = %e, "could not drop a lapsed reservation");
        }
        Ok(refuse(
            "the request was interrupted before a certificate was issued; send it again",
        ))
    }

    /// [`Self::recorded`], but `None` for a reservation that lapsed (before or while
    /// waiting for it), which is left for the caller: a resend decides afresh and takes it
    /// over.
    async fn settled(&self, tx: &TransactionRecord) -> Result<Option<Decision>, RequestError> {
        let mut tx = tx.clone();
        let deadline = tokio::time::Instant::now() + RACE_WAIT;
        while let TransactionState::Issuing { until } = tx.state {
            if until <= crate::store::now() {
                return Ok(None);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Some(Decision::Pending));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            match self
                .inner
                .store
                .transaction(&tx.id)
                .await
                .map_err(store_err)?
            {
                Some(t) => tx = t,
                // Gone after it lapsed: the upkeep round dropped it (its node stopped), as a
                // lapse seen here would have: decide afresh.
                None if matches!(tx.state, TransactionState::Issuing { until }
                    if until <= crate::store::now()) =>
                {
                    return Ok(None)
                }
                // Released: the copy being signed failed; its own answer said why.
                None => {
                    return Ok(Some(refuse(
                        "a copy of this request was refused; send a new request",
                    )))
                }
            }
        }
        Ok(Some(match &tx.state {
            TransactionState::Issuing { .. } | TransactionState::Pending => Decision::Pending,
            TransactionState::Rejected { reason } => refuse(reason.clone()),
            TransactionState::Issued { serial } => {
                match self
                    .inner
                    .store
                    .certificate(serial)
                    .await
                    .map_err(store_err)?
                {
                    Some(c)
                        if c.revoked_at.is_some()
                            && self
                                .inner
                                .profiles
                                .get(&c.profile)
                                .is_some_and(|p| p.policy.takes_intune_challenge()) =>
                    {
                        refuse(WITHDRAWN)
                    }
                    Some(c) => Decision::Issued { certificate: c.der },
                    None => {
                        Decision::refused(RefusalKind::Unknown, "the issued certificate is missing")
                    }
                }
            }
        }))
    }

    /// Signed by a certificate this CA issued and that is valid now?
    /// (The active CA, or a retired generation: their devices renew into the active one.)
    pub(super) fn issued_by_us(&self, signer: &[u8]) -> Option<X509> {
        // Most requests are first enrollments with a self-signed certificate: compare the
        // issuer name before OpenSSL parses anything.
        let issuer = x509_parser::parse_x509_certificate(signer)
            .ok()
            .map(|(_, c)| c.issuer().as_raw().to_vec())?;
        let ours = issuer == self.inner.ca_subject
            || self.inner.retired.iter().any(|g| g.subject_der == issuer);
        if !ours {
            return None;
        }
        let cert = X509::from_der(signer).ok()?;
        let ca = &self.inner.ca_x509;
        let key = ca.public_key().ok()?;
        let active =
            cert.issuer_name_hash() == ca.subject_name_hash() && cert.verify(&key).unwrap_or(false);
        (active || self.inner.retired.iter().any(|g| g.issued(&cert))).then_some(cert)
    }

    /// Decide one enrollment request: issue, hold for an officer, or refuse. Refusals of a
    /// requester that proved something (a certificate of this CA, a valid challenge) are
    /// recorded in the audit chain, repeats counted rather than each recorded.
    pub async fn enroll(&self, req: EnrollRequest<'_>) -> Result<Decision, RequestError> {
        let Decided {
            decision,
            authenticated,
        } = self.decide_enrollment(&req).await?;
        if let (true, Decision::Refused(r)) = (authenticated, &decision) {
            if let Some(left_out) = self
                .inner
                .refusals
                .admit(&req.requester.key_sha256, &r.reason)
            {
                // A refusal changes no data; it is recorded on its own. If the store is down
                // the answer is still right, so this is best effort.
                let details = serde_json::json!({
                    "renewal_only": req.renewal_only,
                    "profile": req.profile.name,
                    "kind": format!("{:?}", r.kind),
                    "reason": r.reason,
                    "repeats_not_recorded": left_out,
                });
                if let Err(e) = self
                    .inner
                    .store
                    .audit("ra", "refused", &req.transaction_id, &details)
                    .await
                {
                    tracing::warn!(error = %e, "could not record the refusal in the audit log");
                }
            }
        }
        Ok(decision)
    }

    async fn decide_enrollment(&self, req: &EnrollRequest<'_>) -> Result<Decided, RequestError> {
        let profile = req.profile;
        // A CSR that does not parse or verify gets the same answer as a request that could
        // not be decrypted: telling them apart would be a padding oracle on the envelope.
        let csr = match parse_csr(&req.csr) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "the request's content is not a valid CSR");
                return Ok(Decision::unreadable().into());
            }
        };
        // Renewal: signed with a certificate from this CA (RenewalReq, or macOS's PKCSReq).
        let ours = req
            .requester
            .certificate
            .as_deref()
            .and_then(|c| self.issued_by_us(c));
        let signer_serial = ours.as_ref().and_then(|c| {
            c.serial_number()
                .to_bn()
                .ok()
                .map(|b| serial_hex(&b.to_vec()))
        });
        let mut tx = TransactionRecord {
            id: record_key(
                &req.transaction_id,
                &req.requester,
                signer_serial.as_deref(),
            ),
            transaction_id: req.transaction_id.clone(),
            renews: None,
            profile: profile.name.clone(),
            key_sha256: hex::encode(sha2::Sha256::digest(&csr.spki)),
            signer_sha256: req.requester.key_sha256.clone(),
            state: TransactionState::Pending,
            csr: csr.der.clone(),
            challenge_id: None,
            holder: None,
        };
        let store = &self.inner.store;
        // Signed by a certificate of ours: the requester holds one of our keys.
        let signed_by_us = ours.is_some();
        if let Some(old) = store.transaction(&tx.id).await.map_err(store_err)? {
            if old.key_sha256 != tx.key_sha256 {
                return Ok(refuse(format!(
                    "transactionID {} is already used by this requester for another key",
                    tx.transaction_id
                ))
                .into());
            }
            // A transaction belongs to the profile it was decided under: the same request
            // sent to another profile's URL is not answered with this one's certificate.
            if old.profile != profile.name {
                return Ok(refuse(format!(
                        "transactionID {} was sent to profile `{}`; send it there or use a new transactionID",
                        tx.transaction_id, old.profile
                    ),
                )
                .into());
            }
            tracing::info!("resent request: answering the recorded outcome");
            if let Some(outcome) = self.settled(&old).await? {
                return Ok(outcome.into());
            }
            // A reservation its node left behind: this resend carries the request again, so
            // it is decided afresh and takes the reservation over.
            tracing::warn!("resent request finds a lapsed reservation: deciding it again");
        }

        let renewal = match ours {
            Some(old) => self.renewal_problem(profile, &old, &csr).await?,
            None => Some("it is not signed with a certificate issued by this CA".to_string()),
        };
        let renewing = renewal.is_none();
        // Only a requester that proved something (a certificate of ours, or a valid
        // challenge) has its refusals audited; its repeats are counted, not each recorded
        // (see refusals.rs), so one key cannot fill the audit chain.
        let mut authenticated = signed_by_us;
        let refused = |text: String, authenticated: bool| Decided {
            decision: refuse(text),
            authenticated,
        };
        // The one-time challenge to consume with the record, if that is what was used.
        let mut one_time = None;
        // The external authority that vouched for the request (Intune), to be told the outcome.
        let mut external: Option<std::sync::Arc<dyn ChallengeAuthority>> = None;
        match (&renewal, req.renewal_only) {
            (Some(why), true) => {
                return Ok(refused(format!("renewal refused: {why}"), authenticated));
            }
            (None, _) => tracing::info!("renewal of a certificate from this CA"),
            (Some(_), _) if profile.policy.takes_intune_challenge() => {
                let ext = self
                    .inner
                    .external
                    .get(&profile.policy.intune)
                    .cloned()
                    .ok_or_else(|| {
                        RequestError::Unavailable(
                            format!("no [intune.{}] connection", profile.policy.intune).into(),
                        )
                    })?;
                match ext.validate(&req.transaction_id, &csr.der).await {
                    Ok(()) => {
                        tracing::info!(intune = %profile.policy.intune, "Intune vouches for the request");
                        authenticated = true;
                        external = Some(ext);
                    }
                    Err(ExternalRefusal::Rejected { code, text }) => {
                        return Ok(refused(
                            format!("Intune does not vouch for this request: {code}: {text}"),
                            false,
                        ))
                    }
                    Err(ExternalRefusal::Unavailable(e)) => {
                        tracing::warn!(error = %e, "Intune could not validate the request");
                        return Ok(refused(
                            format!("Intune could not be asked to validate the request ({e}); send it again later"),
                            false,
                        ));
                    }
                }
            }
            (Some(why), _) => {
                // A new enrollment: the challenge decides. When the signer was one of ours,
                // say why it did not count as a renewal.
                match self.challenge_check(profile, &csr).await? {
                    Ok(hash) => {
                        one_time = hash;
                        authenticated = true;
                    }
                    // A resend racing its original: the original may have spent the challenge
                    // a moment ago; answer what was recorded.
                    Err(Refusal::Spent(reason)) => {
                        return Ok(match self.spent(&tx).await? {
                            Decision::Refused(r) => Decision::refused(r.kind, reason),
                            other => other,
                        }
                        .into());
                    }
                    Err(Refusal::Bound(reason)) => return Ok(refused(reason, true)),
                    Err(Refusal::Other(reason)) => {
                        return Ok(refused(
                            if signed_by_us {
                                format!("{reason}; not a renewal either: {why}")
                            } else {
                                reason
                            },
                            authenticated,
                        ));
                    }
                }
            }
        }
        if renewing {
            tx.renews = signer_serial.clone();
        }
        let bindings = one_time.as_ref().map(|o| o.bindings.clone());
        // A registration's challenge for a registration already issued renews the certificate
        // it holds (the device enrolls again with a new key, as an Apple device does when its
        // MDM installs the profile again): recorded as that certificate's renewal, so the
        // registration follows the new one and `revoke_superseded` applies.
        if let Some(b) = &bindings {
            match self.challenge_renews(profile, b).await? {
                Ok(Some(serial)) => tx.renews = Some(serial),
                Ok(None) => {}
                Err(why) => {
                    return Ok(refused(format!("renewal refused: {why}"), authenticated));
                }
            }
        }
        let identity = bindings
            .as_ref()
            .and_then(|b| b.identity(&profile.cert, &csr));
        if let Err(reason) = profile.cert.check_as(&csr, identity.as_ref()) {
            if let Some(ext) = &external {
                tell_failed(ext.as_ref(), &req.transaction_id, &csr.der, &reason).await;
            }
            return Ok(refused(reason, authenticated));
        }
        tx.challenge_id = one_time.as_ref().map(|o| o.id.clone());
        // A registration's challenge was minted after an officer approved: no second wait.
        let pre_approved = bindings.as_ref().is_some_and(|b| b.registration.is_some());
        if profile.policy.approval && !renewing && !pre_approved {
            let hash = one_time.as_ref().map(|o| o.hash.as_str());
            let outcome = match store.insert_pending(&tx, hash, "ra").await {
                Ok(()) => Decision::Pending,
                Err(StoreError::ChallengeSpent) => self.spent(&tx).await?,
                Err(StoreError::Conflict(_)) => {
                    // Another node or a concurrent resend recorded it first.
                    match store.transaction(&tx.id).await.map_err(store_err)? {
                        Some(old) if old.key_sha256 == tx.key_sha256 => self.recorded(&old).await?,
                        Some(_) => refuse("transactionID is already used by another key"),
                        None => refuse("the one-time challenge was already used"),
                    }
                }
                Err(e) => return Err(store_err(e)),
            };
            return Ok(Decided {
                decision: outcome,
                authenticated,
            });
        }
        // A renewal keeps the device the renewed certificate was issued to.
        let renewed_device = match (&tx.renews, renewing) {
            (Some(serial), true) => self
                .inner
                .store
                .certificate(serial)
                .await
                .map_err(store_err)?
                .and_then(|c| c.device_id),
            _ => None,
        };
        let grant = Grant {
            spend: one_time.map(|o| o.hash),
            bindings,
            device: renewed_device,
        };
        let old_serial = tx.renews.clone();
        // Issued from a reservation (not from a PENDING record).
        tx.state = TransactionState::Issuing { until: 0 };
        let csr_der = csr.der.clone();
        let mut outcome = self.issue(profile, tx, csr, grant, "ra").await?;
        if let Some(ext) = &external {
            outcome = self
                .tell_external(ext.as_ref(), &req.transaction_id, &csr_der, outcome)
                .await;
        }
        if let (true, Some(old), Decision::Issued { .. }) =
            (profile.policy.revoke_superseded, old_serial, &outcome)
        {
            // The new certificate is recorded: the one it replaces is superseded. If this
            // fails, the old one stays valid until it expires (it cannot renew again); the
            // renewal stands.
            match self.revoke(&old, 4, super::Revoker::System("ra")).await {
                Ok(true) => {
                    tracing::info!(serial = %old, "renewed: the old certificate is revoked as superseded")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(serial = %old, error = %e, "renewed, but the old certificate could not be revoked")
                }
            }
        }
        Ok(Decided {
            decision: outcome,
            authenticated,
        })
    }

    /// Tell the external authority the outcome of a request it vouched for. A certificate it
    /// cannot be told of is not handed out: it is revoked, and this answer (and every resend's)
    /// is a refusal.
    async fn tell_external(
        &self,
        ext: &dyn ChallengeAuthority,
        transaction_id: &str,
        csr: &[u8],
        outcome: Decision,
    ) -> Decision {
        let certificate = match &outcome {
            Decision::Issued { certificate } => certificate.clone(),
            Decision::Refused(r) => {
                tell_failed(ext, transaction_id, csr, &r.reason).await;
                return outcome;
            }
            Decision::Pending => return outcome,
        };
        let Ok(cert) = X509::from_der(&certificate) else {
            return outcome;
        };
        let serial = cert
            .serial_number()
            .to_bn()
            .map(|b| serial_hex(&b.to_vec()))
            .unwrap_or_default();
        let notice = IssuedNotice {
            transaction_id: transaction_id.to_string(),
            csr: csr.to_vec(),
            thumbprint: hex::encode_upper(openssl::sha::sha1(&certificate)),
            serial: serial.to_ascii_uppercase(),
            not_after: x509_parser::parse_x509_certificate(&certificate)
                .map(|(_, c)| c.validity().not_after.timestamp())
                .unwrap_or(0),
            issuer: self.inner.ca_issuer_text.clone(),
        };
        match ext.issued(&notice).await {
            Ok(()) => {
                tracing::info!(serial = %serial, "Intune told of the certificate");
                outcome
            }
            Err(e) => {
                tracing::error!(serial = %serial, error = %e, "Intune could not be told of the certificate: it is withdrawn");
                if let Err(e) = self
                    .revoke(&serial, 5, super::Revoker::System("intune"))
                    .await
                {
                    tracing::error!(serial = %serial, error = %e, "the withdrawn certificate could not be revoked");
                }
                refuse(WITHDRAWN)
            }
        }
    }

    /// Reserve, issue, record, answer. The transaction is reserved in the store first (or,
    /// for an approval, its PENDING record is claimed), so the CA key signs it once: a copy
    /// of the request arriving meanwhile waits for this one's answer. A serial collision is
    /// signed again with a new serial. The reservation is given up if nothing is issued.
    pub(crate) async fn issue(
        &self,
        profile: &Profile,
        mut tx: TransactionRecord,
        csr: crate::pki::Csr,
        grant: Grant,
        actor: &str,
    ) -> Result<Decision, RequestError> {
        let store = &self.inner.store;
        // This call's own token: only it records the issuance or gives the reservation up.
        let holder = holder_token()?;
        tx.holder = Some(holder.clone());
        match store
            .reserve(&tx, grant.spend.as_deref(), self.inner.reservation_secs)
            .await
        {
            Ok(None) => {}
            Ok(Some(existing)) => {
                if existing.key_sha256 != tx.key_sha256 {
                    return Ok(refuse("transactionID is already used by another key"));
                }
                tracing::info!("a copy of this request is being answered; answering its outcome");
                return self.recorded(&existing).await;
            }
            Err(StoreError::ChallengeSpent) => return self.spent(&tx).await,
            Err(e) => return Err(store_err(e)),
        }
        let outcome = self
            .sign_and_record(profile, &tx, &csr, &grant, actor)
            .await;
        if !matches!(outcome, Ok(Decision::Issued { .. })) {
            // Nothing was recorded: free the transaction and its challenge for a new try.
            // (If the store is down, the reservation lapses by itself.)
            if let Err(e) = store.release(&tx.id, &holder).await {
                tracing::warn!(error = %e, "could not give up the reservation; it will lapse");
            }
        }
        outcome
    }

    async fn sign_and_record(
        &self,
        profile: &Profile,
        tx: &TransactionRecord,
        csr: &crate::pki::Csr,
        grant: &Grant,
        actor: &str,
    ) -> Result<Decision, RequestError> {
        let identity = grant
            .bindings
            .as_ref()
            .and_then(|b| b.identity(&profile.cert, csr));
        let device_id = grant
            .bindings
            .as_ref()
            .and_then(|b| b.device_id.clone())
            .or_else(|| grant.device.clone());
        for _ in 0..2 {
            let ra = self.clone();
            let (cert_profile, csr2, identity) =
                (profile.cert.clone(), csr.clone(), identity.clone());
            let der = match blocking(move || {
                cert_profile.issue(
                    &csr2,
                    identity.as_ref(),
                    &ra.inner.issuer,
                    ra.inner.ca_not_after,
                )
            })
            .await?
            {
                Ok(d) => d,
                Err(PkiError::Policy(reason)) => return Ok(refuse(reason)),
                Err(e) => return Err(RequestError::Unavailable(Reason::caused_by(e))),
            };
            if let Some(m) = crate::telemetry::metrics() {
                m.certificates_signed.inc();
            }
            let mut record = certificate_record(&der, &profile.name, &tx.transaction_id)
                .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))?;
            record.device_id = device_id.clone();
            match self
                .inner
                .store
                .record_issued(tx, &record, grant.spend.as_deref(), actor)
                .await
            {
                Ok(()) => {
                    self.inner.ocsp.prepared.note_issued();
                    tracing::info!(serial = %record.serial, subject = %record.subject, "issued");
                    return Ok(Decision::Issued { certificate: der });
                }
                // Claimed by this reservation, yet not spendable: its registration was
                // withdrawn or expired meanwhile.
                Err(StoreError::ChallengeSpent) => {
                    return Ok(refuse(
                        "the one-time challenge was withdrawn or has expired",
                    ))
                }
                Err(StoreError::Stale(why)) => return Ok(refuse(why)),
                Err(StoreError::SerialTaken) => {
                    tracing::warn!(serial = %record.serial, "serial collision; signing again with a new serial");
                }
                Err(StoreError::Conflict(why)) => {
                    // The reservation is no longer this call's (it lapsed and a resend took
                    // it over, or an officer decided meanwhile): what was just signed is
                    // dropped unrecorded, and the answer is whatever the record says now.
                    tracing::warn!(%why, "the reservation was lost before recording; the certificate is discarded");
                    return match self
                        .inner
                        .store
                        .transaction(&tx.id)
                        .await
                        .map_err(store_err)?
                    {
                        Some(current) if current.key_sha256 == tx.key_sha256 => {
                            self.recorded(&current).await
                        }
                        _ => Ok(refuse("the request was interrupted before a certificate was issued; send it again",
                        )),
                    };
                }
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(RequestError::Unavailable(
            "could not record the certificate".into(),
        ))
    }

    /// The one-time challenge was spent: if by this very transaction (a resend racing its
    /// original), answer what was recorded; otherwise FAILURE.
    async fn spent(&self, tx: &TransactionRecord) -> Result<Decision, RequestError> {
        match self
            .inner
            .store
            .transaction(&tx.id)
            .await
            .map_err(store_err)?
        {
            Some(old) if old.key_sha256 == tx.key_sha256 => self.recorded(&old).await,
            _ => Ok(refuse("the one-time challenge was already used")),
        }
    }
}
