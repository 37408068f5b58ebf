//! One PKIOperation, from bytes to CertRep: verify, decrypt, decide, reserve, issue, record,
//! answer.
//!
//! A transaction is found by its key (transactionID, the requester's key and the serial it
//! renews; see `TransactionRecord::key`) and reserved in the store before the CA key signs,
//! so two copies of one request racing each other are signed once: the second waits for the
//! first's answer. Refusals of requesters that proved nothing (no valid challenge, no
//! certificate of ours) stay in the server log; those of authenticated requesters go into the
//! audit chain. Answers are kept a short while by the bytes of the request, so a replayed
//! message costs no decryption, signature or write.

use openssl::x509::X509;
use sha2::Digest;
use tracing::Instrument;

use super::challenge::Bindings;
use super::rules::Refusal;
use super::{Authority, Profile, RequestError};
use crate::pki::{parse_csr, PkiError};
use crate::scep::{
    CertRep, ContentCipher, DigestAlg, FailInfo, MessageType, Outcome, PkiMessage, ScepError,
};
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
pub(super) struct Decided {
    pub(super) outcome: Outcome,
    pub(super) authenticated: bool,
}

impl From<Outcome> for Decided {
    fn from(outcome: Outcome) -> Decided {
        Decided {
            outcome,
            authenticated: false,
        }
    }
}

pub(super) fn fail(info: FailInfo, text: impl Into<String>) -> Outcome {
    Outcome::Failure {
        info,
        text: text.into(),
    }
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

/// SHA-256 (hex) of the SubjectPublicKeyInfo of the certificate that signed `msg`.
pub(super) fn signer_sha256(msg: &PkiMessage) -> String {
    crate::scep::spki_sha256(&msg.signer_cert).unwrap_or_default()
}

pub(super) fn unreadable() -> Outcome {
    fail(FailInfo::BadMessageCheck, crate::scep::UNREADABLE)
}

pub(super) fn from_scep(e: &ScepError) -> Result<Outcome, RequestError> {
    match e {
        ScepError::Token(t) => Err(RequestError::Unavailable(t.clone())),
        // Decryption failures carry no detail to the client (see scep::UNREADABLE).
        ScepError::Decrypt(_) => Ok(unreadable()),
        other => Ok(fail(other.fail_info(), other.to_string())),
    }
}

pub(super) fn store_err(e: StoreError) -> RequestError {
    RequestError::Unavailable(e.to_string())
}

/// The key a request is recorded under (see `TransactionRecord::key`): its transactionID,
/// the key that signed it, and the serial of the certificate of this CA that signed it, if
/// one did. A renewal is so recorded apart from the enrollment that made that certificate
/// (clients derive the transactionID from the key, so a renewal with the same key repeats
/// it), and two devices using the same short transactionID do not meet.
pub(super) fn record_key(msg: &PkiMessage, signer_serial: Option<&str>) -> String {
    TransactionRecord::key(&msg.transaction_id.0, &signer_sha256(msg), signer_serial)
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
        .map_err(|e| RequestError::Unavailable(format!("random: {e}")))?;
    Ok(hex::encode(b))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RequestError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RequestError::Unavailable(format!("worker: {e}")))
}

impl Authority {
    /// Answer one PKIOperation for `profile` with a CertRep.
    pub async fn pki_operation(
        &self,
        profile: &Profile,
        body: &[u8],
    ) -> Result<Vec<u8>, RequestError> {
        // A replay of bytes answered a moment ago gets the same answer, at no cost.
        let replay_key = super::replay::ReplayCache::key(&profile.name, body);
        if let Some(reply) = self.inner.replays.get(&replay_key) {
            crate::telemetry::scep_replay();
            return Ok(reply);
        }
        let msg = PkiMessage::parse(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
        let span = tracing::info_span!(
            "scep",
            transaction_id = %msg.transaction_id,
            message_type = %msg.message_type,
            profile = %profile.name
        );
        async move {
            // Queries (GetCert, CertPoll, GetCRL) have a bounded share of the token; an
            // enrollment always finds room.
            let class = match msg.message_type {
                MessageType::PkcsReq | MessageType::UpdateReq | MessageType::RenewalReq => {
                    crate::hsm::WorkClass::Issuance
                }
                _ => crate::hsm::WorkClass::Query,
            };
            let _permit = self
                .inner
                .key
                .hsm
                .admit(class)
                .await
                .map_err(|e| RequestError::Unavailable(e.to_string()))?;
            // Parsed once: decide needs it to decrypt, answer to reply with the same cipher.
            let envelope = msg.envelope();
            let cipher = envelope.as_ref().ok().and_then(|e| e.cipher.clone().ok());
            let Decided {
                outcome,
                authenticated,
            } = self.decide(profile, &msg, envelope).await?;
            match &outcome {
                Outcome::Success { .. } => tracing::info!("SUCCESS"),
                Outcome::Pending => tracing::info!("PENDING"),
                Outcome::Failure { info, text } => {
                    tracing::warn!(fail_info = %info, reason = %text, authenticated, "FAILURE")
                }
            }
            let (status, info) = match &outcome {
                Outcome::Success { .. } => ("success", String::new()),
                Outcome::Pending => ("pending", String::new()),
                Outcome::Failure { info, .. } => ("failure", info.to_string()),
            };
            crate::telemetry::scep_outcome(&msg.message_type.to_string(), status, &info);
            // Only refusals of requesters that proved something (a valid challenge, a
            // certificate of ours) go into the audit chain; the others cost an attacker
            // nothing and stay in the server log above.
            // The same requester refused for the same reason again within a while is counted
            // into its next record instead (see refusals.rs).
            let audit = match (authenticated, &outcome) {
                (true, Outcome::Failure { text, .. }) => self
                    .inner
                    .refusals
                    .admit(&signer_sha256(&msg), text)
                    .map(|left_out| (left_out, &outcome)),
                _ => None,
            };
            if let Some((left_out, Outcome::Failure { info, text })) = audit {
                // A refusal changes no data; it is recorded on its own. If the store is down
                // the answer is still right, so this is best effort.
                let details = serde_json::json!({
                    "message_type": msg.message_type.to_string(),
                    "profile": profile.name,
                    "fail_info": info.to_string(),
                    "reason": text,
                    "repeats_not_recorded": left_out,
                });
                if let Err(e) = self
                    .inner
                    .store
                    .audit("ra", "refused", &msg.transaction_id.0, &details)
                    .await
                {
                    tracing::warn!(error = %e, "could not record the refusal in the audit log");
                }
            }
            let ttl = super::replay::ReplayCache::ttl(msg.message_type, &outcome);
            let reply = self.answer(profile, &msg, outcome, cipher).await?;
            self.inner.replays.put(replay_key, &reply, ttl);
            Ok(reply)
        }
        .instrument(span)
        .await
    }

    /// Build and sign the CertRep on a blocking thread.
    async fn answer(
        &self,
        profile: &Profile,
        msg: &PkiMessage,
        outcome: Outcome,
        request_cipher: Option<ContentCipher>,
    ) -> Result<Vec<u8>, RequestError> {
        let cipher = request_cipher
            .filter(|c| *c != ContentCipher::DesCbc || profile.policy.legacy)
            .unwrap_or(ContentCipher::Aes128Cbc);
        let digest = match msg.digest {
            DigestAlg::Sha1 if !profile.policy.legacy => DigestAlg::Sha256,
            d => d,
        };
        let extra = if profile.policy.certrep_include_ca {
            self.inner.ca_chain.clone()
        } else {
            Vec::new()
        };
        let ra = self.clone();
        let (tid, nonce, requester) = (
            msg.transaction_id.clone(),
            msg.sender_nonce.clone(),
            msg.signer_cert.clone(),
        );
        let built = blocking(move || {
            CertRep {
                transaction_id: &tid,
                recipient_nonce: &nonce,
                outcome,
                requester_cert: &requester,
                cipher,
                digest,
                ra_cert: &ra.inner.ra_sign_cert,
                extra_certs: &extra,
            }
            .build(&ra.inner.key)
        })
        .await?;
        built.map_err(|e| match e {
            ScepError::UnsupportedAlgorithm(why) => {
                RequestError::Malformed(format!("cannot answer this requester: {why}"))
            }
            other => RequestError::Unavailable(other.to_string()),
        })
    }

    async fn decide(
        &self,
        profile: &Profile,
        msg: &PkiMessage,
        envelope: Result<crate::scep::Envelope, ScepError>,
    ) -> Result<Decided, RequestError> {
        let refuse = |o: Result<Outcome, RequestError>| o.map(Decided::from);
        if let Err(e) = msg.verify_signature() {
            return refuse(from_scep(&e));
        }
        // The signer's key identifies the requester (CertPoll): it must read.
        if crate::scep::spki_sha256(&msg.signer_cert).is_none() {
            return refuse(Ok(fail(
                FailInfo::BadMessageCheck,
                "the signer certificate does not read",
            )));
        }
        if msg.digest == DigestAlg::Sha1
            && !(profile.policy.accept_sha1_requests || profile.policy.legacy)
        {
            return refuse(Ok(fail(
                FailInfo::BadAlg,
                format!(
                    "SHA-1 is refused by profile `{}` (it allows SHA-256 and up)",
                    profile.name
                ),
            )));
        }
        let rsa_signer = msg
            .signer_public_key()
            .map(|k| k.id() == openssl::pkey::Id::RSA)
            .unwrap_or(false);
        if !rsa_signer {
            return refuse(Ok(fail(
                FailInfo::BadAlg,
                "the signer certificate must hold an RSA key: the reply is encrypted to it",
            )));
        }
        if msg.message_type == MessageType::CertRep {
            return refuse(Ok(fail(
                FailInfo::BadRequest,
                "CertRep is the server's message, not a request",
            )));
        }
        let envelope = match envelope {
            Ok(e) => e,
            Err(e) => return refuse(from_scep(&e)),
        };
        if envelope
            .recipient_for(&self.inner.ra_decrypt_cert)
            .is_none()
        {
            return refuse(Ok(fail(
                FailInfo::BadMessageCheck,
                "the message is encrypted to another certificate, not this RA's (fetch GetCACert again)",
            )));
        }
        let ra = self.clone();
        let legacy = profile.policy.legacy;
        let plain =
            blocking(move || envelope.open(&ra.inner.key, &ra.inner.ra_decrypt_cert, legacy))
                .await?;
        let plain = match plain {
            Ok(p) => p,
            Err(e) => return refuse(from_scep(&e)),
        };
        match msg.message_type {
            MessageType::PkcsReq | MessageType::UpdateReq | MessageType::RenewalReq => {
                self.enroll(profile, msg, plain).await
            }
            MessageType::CertPoll => refuse(self.poll(msg, &plain).await),
            MessageType::GetCert => refuse(self.get_cert(&plain).await),
            MessageType::GetCrl => refuse(self.get_crl(&plain).await),
            MessageType::CertRep => refuse(Ok(fail(FailInfo::BadRequest, "unexpected CertRep"))),
        }
    }

    /// The answer already decided for a transaction. A reservation (a copy of this request
    /// being signed right now) is waited for a moment; if it is still running, PENDING (the
    /// device polls). A reservation that lapsed (its node stopped before recording anything)
    /// is dropped, and the answer says to send the request again: nothing was issued, and
    /// the request itself (its CSR) was not kept.
    pub(super) async fn recorded(
        &self,
        tx: &TransactionRecord,
        profile: &Profile,
    ) -> Result<Outcome, RequestError> {
        if let Some(outcome) = self.settled(tx, profile).await? {
            return Ok(outcome);
        }
        if let Err(e) = self.inner.store.abandon_lapsed(Some(&tx.id), "ra").await {
            tracing::warn!(error = %e, "could not drop a lapsed reservation");
        }
        Ok(fail(
            FailInfo::BadRequest,
            "the request was interrupted before a certificate was issued; send it again",
        ))
    }

    /// [`Self::recorded`], but `None` for a reservation that lapsed (before or while
    /// waiting for it), which is left for the caller: a resend decides afresh and takes it
    /// over.
    async fn settled(
        &self,
        tx: &TransactionRecord,
        profile: &Profile,
    ) -> Result<Option<Outcome>, RequestError> {
        let mut tx = tx.clone();
        let deadline = tokio::time::Instant::now() + RACE_WAIT;
        while let TransactionState::Issuing { until } = tx.state {
            if until <= crate::store::now() {
                return Ok(None);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Some(Outcome::Pending));
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
                // Released: the copy being signed failed; its own answer said why.
                None => {
                    return Ok(Some(fail(
                        FailInfo::BadRequest,
                        "a copy of this request was refused; send a new request",
                    )))
                }
            }
        }
        Ok(Some(match &tx.state {
            TransactionState::Issuing { .. } | TransactionState::Pending => Outcome::Pending,
            TransactionState::Rejected { reason } => fail(FailInfo::BadRequest, reason.clone()),
            TransactionState::Issued { serial } => {
                match self
                    .inner
                    .store
                    .certificate(serial)
                    .await
                    .map_err(store_err)?
                {
                    Some(c) => self.success(profile, c.der),
                    None => fail(FailInfo::BadCertId, "the issued certificate is missing"),
                }
            }
        }))
    }

    fn success(&self, profile: &Profile, cert: Vec<u8>) -> Outcome {
        let mut certs = vec![cert];
        if profile.policy.certrep_include_ca {
            certs.extend(self.inner.ca_chain.iter().cloned());
        }
        Outcome::Success {
            certs,
            crls: Vec::new(),
        }
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

    async fn enroll(
        &self,
        profile: &Profile,
        msg: &PkiMessage,
        plain: Vec<u8>,
    ) -> Result<Decided, RequestError> {
        // A CSR that does not parse or verify gets the same answer as a failed decryption:
        // telling them apart would be a padding oracle on the envelope.
        let csr = match parse_csr(&plain) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "decrypted content is not a valid CSR");
                return Ok(unreadable().into());
            }
        };
        // Renewal: signed with a certificate from this CA (RenewalReq, or macOS's PKCSReq).
        let ours = self.issued_by_us(&msg.signer_cert);
        let signer_serial = ours.as_ref().and_then(|c| {
            c.serial_number()
                .to_bn()
                .ok()
                .map(|b| serial_hex(&b.to_vec()))
        });
        let mut tx = TransactionRecord {
            id: record_key(msg, signer_serial.as_deref()),
            transaction_id: msg.transaction_id.0.clone(),
            renews: None,
            profile: profile.name.clone(),
            key_sha256: hex::encode(sha2::Sha256::digest(&csr.spki)),
            signer_sha256: signer_sha256(msg),
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
                return Ok(fail(
                    FailInfo::BadRequest,
                    format!(
                        "transactionID {} is already used by this requester for another key",
                        tx.transaction_id
                    ),
                )
                .into());
            }
            // A transaction belongs to the profile it was decided under: the same request
            // sent to another profile's URL is not answered with this one's certificate.
            if old.profile != profile.name {
                return Ok(fail(
                    FailInfo::BadRequest,
                    format!(
                        "transactionID {} was sent to profile `{}`; send it there or use a new transactionID",
                        tx.transaction_id, old.profile
                    ),
                )
                .into());
            }
            tracing::info!("resent request: answering the recorded outcome");
            if let Some(outcome) = self.settled(&old, profile).await? {
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
            outcome: fail(FailInfo::BadRequest, text),
            authenticated,
        };
        // The one-time challenge to consume with the record, if that is what was used.
        let mut one_time = None;
        match (&renewal, msg.message_type) {
            (Some(why), MessageType::RenewalReq) => {
                return Ok(refused(format!("renewal refused: {why}"), authenticated));
            }
            (None, _) => tracing::info!("renewal of a certificate from this CA"),
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
                        let o = self.spent(profile, &tx).await?;
                        return Ok(match o {
                            Outcome::Failure { info, .. } => fail(info, reason),
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
        let identity = bindings
            .as_ref()
            .and_then(|b| b.identity(&profile.cert, &csr));
        if let Err(reason) = profile.cert.check_as(&csr, identity.as_ref()) {
            return Ok(refused(reason, authenticated));
        }
        tx.challenge_id = one_time.as_ref().map(|o| o.id.clone());
        // A registration's challenge was minted after an officer approved: no second wait.
        let pre_approved = bindings.as_ref().is_some_and(|b| b.registration.is_some());
        if profile.policy.approval && !renewing && !pre_approved {
            let hash = one_time.as_ref().map(|o| o.hash.as_str());
            let outcome = match store.insert_pending(&tx, hash, "ra").await {
                Ok(()) => Outcome::Pending,
                Err(StoreError::ChallengeSpent) => self.spent(profile, &tx).await?,
                Err(StoreError::Conflict(_)) => {
                    // Another node or a concurrent resend recorded it first.
                    match store.transaction(&tx.id).await.map_err(store_err)? {
                        Some(old) if old.key_sha256 == tx.key_sha256 => {
                            self.recorded(&old, profile).await?
                        }
                        Some(_) => fail(
                            FailInfo::BadRequest,
                            "transactionID is already used by another key",
                        ),
                        None => fail(
                            FailInfo::BadRequest,
                            "the one-time challenge was already used",
                        ),
                    }
                }
                Err(e) => return Err(store_err(e)),
            };
            return Ok(Decided {
                outcome,
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
        let outcome = self.issue(profile, tx, csr, grant, "ra").await?;
        if let (true, Some(old), Outcome::Success { .. }) =
            (profile.policy.revoke_superseded, old_serial, &outcome)
        {
            // The new certificate is recorded: the one it replaces is superseded. If this
            // fails, the old one stays valid until it expires (it cannot renew again); the
            // renewal stands.
            match self.revoke(&old, 4, "ra").await {
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
            outcome,
            authenticated,
        })
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
    ) -> Result<Outcome, RequestError> {
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
                    return Ok(fail(
                        FailInfo::BadRequest,
                        "transactionID is already used by another key",
                    ));
                }
                tracing::info!("a copy of this request is being answered; answering its outcome");
                return self.recorded(&existing, profile).await;
            }
            Err(StoreError::ChallengeSpent) => return self.spent(profile, &tx).await,
            Err(e) => return Err(store_err(e)),
        }
        let outcome = self
            .sign_and_record(profile, &tx, &csr, &grant, actor)
            .await;
        if !matches!(outcome, Ok(Outcome::Success { .. })) {
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
    ) -> Result<Outcome, RequestError> {
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
                Err(PkiError::Policy(reason)) => return Ok(fail(FailInfo::BadRequest, reason)),
                Err(e) => return Err(RequestError::Unavailable(e.to_string())),
            };
            if let Some(m) = crate::telemetry::metrics() {
                m.certificates_signed.inc();
            }
            let mut record = certificate_record(&der, &profile.name, &tx.transaction_id)
                .map_err(|e| RequestError::Unavailable(e.to_string()))?;
            record.device_id = device_id.clone();
            match self
                .inner
                .store
                .record_issued(tx, &record, grant.spend.as_deref(), actor)
                .await
            {
                Ok(()) => {
                    tracing::info!(serial = %record.serial, subject = %record.subject, "issued");
                    return Ok(self.success(profile, der));
                }
                // Claimed by this reservation, yet not spendable: its registration was
                // withdrawn or expired meanwhile.
                Err(StoreError::ChallengeSpent) => {
                    return Ok(fail(
                        FailInfo::BadRequest,
                        "the one-time challenge was withdrawn or has expired",
                    ))
                }
                Err(StoreError::Stale(why)) => return Ok(fail(FailInfo::BadRequest, why)),
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
                            self.recorded(&current, profile).await
                        }
                        _ => Ok(fail(
                            FailInfo::BadRequest,
                            "the request was interrupted before a certificate was issued; send it again",
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
    async fn spent(
        &self,
        profile: &Profile,
        tx: &TransactionRecord,
    ) -> Result<Outcome, RequestError> {
        match self
            .inner
            .store
            .transaction(&tx.id)
            .await
            .map_err(store_err)?
        {
            Some(old) if old.key_sha256 == tx.key_sha256 => self.recorded(&old, profile).await,
            _ => Ok(fail(
                FailInfo::BadRequest,
                "the one-time challenge was already used",
            )),
        }
    }
}
