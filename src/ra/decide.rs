//! One PKIOperation, from bytes to CertRep: verify, decrypt, decide, issue, record, answer.

use openssl::x509::X509;
use sha2::Digest;
use tracing::Instrument;

use super::rules::{OneTime, Refusal};
use super::{Profile, Ra, RequestError};
use crate::pki::{parse_csr, PkiError};
use crate::scep::{
    CertRep, ContentCipher, DigestAlg, FailInfo, MessageType, Outcome, PkiMessage, ScepError,
};
use crate::store::{CertificateRecord, StoreError, TransactionRecord, TransactionState};

pub(super) fn fail(info: FailInfo, text: impl Into<String>) -> Outcome {
    Outcome::Failure {
        info,
        text: text.into(),
    }
}

/// SHA-256 (hex) of the SubjectPublicKeyInfo of the certificate that signed `msg`.
pub(super) fn signer_sha256(msg: &PkiMessage) -> String {
    crate::scep::spki_sha256(&msg.signer_cert).unwrap_or_default()
}

pub(super) fn info_of(o: &Outcome) -> Option<FailInfo> {
    match o {
        Outcome::Failure { info, .. } => Some(*info),
        _ => None,
    }
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

/// The key a request is recorded under. A request signed by one of this CA's certificates (a
/// renewal) is recorded apart from the enrollment that made that certificate: clients derive
/// the transactionID from the key, so a renewal with the same key repeats the transactionID,
/// and it must not be mistaken for a resend of the first enrollment.
pub(super) fn record_id(transaction_id: &str, signer_serial: Option<&str>) -> String {
    match signer_serial {
        Some(s) => format!("{transaction_id}~renew~{s}"),
        None => transaction_id.to_string(),
    }
}

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

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RequestError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RequestError::Unavailable(format!("worker: {e}")))
}

impl Ra {
    /// Answer one PKIOperation for `profile` with a CertRep.
    pub async fn pki_operation(
        &self,
        profile: &Profile,
        body: &[u8],
    ) -> Result<Vec<u8>, RequestError> {
        let msg = PkiMessage::parse(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
        let span = tracing::info_span!(
            "scep",
            transaction_id = %msg.transaction_id,
            message_type = %msg.message_type,
            profile = %profile.name
        );
        async move {
            // Parsed once: decide needs it to decrypt, answer to reply with the same cipher.
            let envelope = msg.envelope();
            let cipher = envelope.as_ref().ok().and_then(|e| e.cipher.clone().ok());
            let outcome = self.decide(profile, &msg, envelope).await?;
            match &outcome {
                Outcome::Success { .. } => tracing::info!("SUCCESS"),
                Outcome::Pending => tracing::info!("PENDING"),
                Outcome::Failure { info, text } => {
                    tracing::warn!(fail_info = %info, reason = %text, "FAILURE")
                }
            }
            crate::telemetry::scep_outcome(msg.message_type, &outcome);
            // Only decisions about a real (decrypted, parsed) request go into the audit chain;
            // earlier refusals cost an attacker nothing and stay in the server log.
            let decided = matches!(
                info_of(&outcome),
                Some(crate::scep::FailInfo::BadRequest | crate::scep::FailInfo::BadCertId)
            );
            if let (true, Outcome::Failure { info, text }) = (decided, &outcome) {
                // A refusal changes no data; it is recorded on its own. If the store is down
                // the answer is still right, so this is best effort.
                let details = serde_json::json!({
                    "message_type": msg.message_type.to_string(),
                    "profile": profile.name,
                    "fail_info": info.to_string(),
                    "reason": text,
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
            self.answer(profile, &msg, outcome, cipher).await
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
    ) -> Result<Outcome, RequestError> {
        if let Err(e) = msg.verify_signature() {
            return from_scep(&e);
        }
        // The signer's key identifies the requester (CertPoll): it must read.
        if crate::scep::spki_sha256(&msg.signer_cert).is_none() {
            return Ok(fail(
                FailInfo::BadMessageCheck,
                "the signer certificate does not read",
            ));
        }
        if msg.digest == DigestAlg::Sha1
            && !(profile.policy.accept_sha1_requests || profile.policy.legacy)
        {
            return Ok(fail(
                FailInfo::BadAlg,
                format!(
                    "SHA-1 is refused by profile `{}` (it allows SHA-256 and up)",
                    profile.name
                ),
            ));
        }
        let rsa_signer = msg
            .signer_public_key()
            .map(|k| k.id() == openssl::pkey::Id::RSA)
            .unwrap_or(false);
        if !rsa_signer {
            return Ok(fail(
                FailInfo::BadAlg,
                "the signer certificate must hold an RSA key: the reply is encrypted to it",
            ));
        }
        if msg.message_type == MessageType::CertRep {
            return Ok(fail(
                FailInfo::BadRequest,
                "CertRep is the server's message, not a request",
            ));
        }
        let envelope = match envelope {
            Ok(e) => e,
            Err(e) => return from_scep(&e),
        };
        if envelope
            .recipient_for(&self.inner.ra_decrypt_cert)
            .is_none()
        {
            return Ok(fail(
                FailInfo::BadMessageCheck,
                "the message is encrypted to another certificate, not this RA's (fetch GetCACert again)",
            ));
        }
        let ra = self.clone();
        let legacy = profile.policy.legacy;
        let plain =
            blocking(move || envelope.open(&ra.inner.key, &ra.inner.ra_decrypt_cert, legacy))
                .await?;
        let plain = match plain {
            Ok(p) => p,
            Err(e) => return from_scep(&e),
        };
        match msg.message_type {
            MessageType::PkcsReq | MessageType::UpdateReq | MessageType::RenewalReq => {
                self.enroll(profile, msg, plain).await
            }
            MessageType::CertPoll => self.poll(msg, &plain).await,
            MessageType::GetCert => self.get_cert(&plain).await,
            MessageType::GetCrl => self.get_crl(&plain).await,
            MessageType::CertRep => Ok(fail(FailInfo::BadRequest, "unexpected CertRep")),
        }
    }

    /// The answer already decided for a transaction.
    pub(super) async fn recorded(
        &self,
        tx: &TransactionRecord,
        profile: &Profile,
    ) -> Result<Outcome, RequestError> {
        Ok(match &tx.state {
            TransactionState::Pending => Outcome::Pending,
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
        })
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
    ) -> Result<Outcome, RequestError> {
        // A CSR that does not parse or verify gets the same answer as a failed decryption:
        // telling them apart would be a padding oracle on the envelope.
        let csr = match parse_csr(&plain) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "decrypted content is not a valid CSR");
                return Ok(unreadable());
            }
        };
        // Renewal: signed with a certificate from this CA (RenewalReq, or macOS's PKCSReq).
        let ours = self.issued_by_us(&msg.signer_cert);
        let old_serial = ours.as_ref().and_then(|c| {
            c.serial_number()
                .to_bn()
                .ok()
                .map(|b| serial_hex(&b.to_vec()))
        });
        let tx = TransactionRecord {
            transaction_id: record_id(&msg.transaction_id.0, old_serial.as_deref()),
            profile: profile.name.clone(),
            key_sha256: hex::encode(sha2::Sha256::digest(&csr.spki)),
            signer_sha256: signer_sha256(msg),
            state: TransactionState::Pending,
            csr: csr.der.clone(),
        };
        let store = &self.inner.store;
        if let Some(old) = store
            .transaction(&tx.transaction_id)
            .await
            .map_err(store_err)?
        {
            if old.key_sha256 != tx.key_sha256 {
                return Ok(fail(
                    FailInfo::BadRequest,
                    format!(
                        "transactionID {} is already used by another key",
                        tx.transaction_id
                    ),
                ));
            }
            tracing::info!("resent request: answering the recorded outcome");
            return self.recorded(&old, profile).await;
        }

        let signed_by_us = ours.is_some();
        let renewal = match ours {
            Some(old) => self.renewal_problem(profile, &old, &csr).await?,
            None => Some("it is not signed with a certificate issued by this CA".to_string()),
        };
        let renewing = renewal.is_none();
        // The one-time challenge to consume with the record, if that is what was used.
        let mut one_time: Option<OneTime> = None;
        match (&renewal, msg.message_type) {
            (Some(why), MessageType::RenewalReq) => {
                return Ok(fail(
                    FailInfo::BadRequest,
                    format!("renewal refused: {why}"),
                ));
            }
            (None, _) => tracing::info!("renewal of a certificate from this CA"),
            (Some(why), _) => {
                // A new enrollment: the challenge decides. When the signer was one of ours,
                // say why it did not count as a renewal.
                match self.challenge_check(profile, &csr).await? {
                    Ok(hash) => one_time = hash,
                    // A resend racing its original: the original may have spent the challenge
                    // a moment ago; answer what was recorded.
                    Err(Refusal::Spent(reason)) => {
                        return self.spent(profile, &tx).await.map(|o| match o {
                            Outcome::Failure { info, .. } => fail(info, reason),
                            other => other,
                        });
                    }
                    Err(Refusal::Other(reason)) => {
                        return Ok(fail(
                            FailInfo::BadRequest,
                            if signed_by_us {
                                format!("{reason}; not a renewal either: {why}")
                            } else {
                                reason
                            },
                        ));
                    }
                }
            }
        }
        let identity = one_time.as_ref().and_then(|o| o.bindings.identity());
        if let Err(reason) = profile.cert.check_as(&csr, identity.as_ref()) {
            return Ok(fail(FailInfo::BadRequest, reason));
        }
        // A registration's challenge was minted after an officer approved: no second wait.
        let pre_approved = one_time
            .as_ref()
            .is_some_and(|o| o.bindings.registration.is_some());
        if profile.policy.approval && !renewing && !pre_approved {
            let hash = one_time.as_ref().map(|o| o.hash.as_str());
            match store.insert_pending(&tx, hash, "ra").await {
                Ok(()) => return Ok(Outcome::Pending),
                Err(StoreError::ChallengeSpent) => return self.spent(profile, &tx).await,
                Err(StoreError::Conflict(_)) => {
                    // Another node or a concurrent resend recorded it first.
                    return match store
                        .transaction(&tx.transaction_id)
                        .await
                        .map_err(store_err)?
                    {
                        Some(old) if old.key_sha256 == tx.key_sha256 => {
                            self.recorded(&old, profile).await
                        }
                        Some(_) => Ok(fail(
                            FailInfo::BadRequest,
                            "transactionID is already used by another key",
                        )),
                        None => Ok(fail(
                            FailInfo::BadRequest,
                            "the one-time challenge was already used",
                        )),
                    };
                }
                Err(e) => return Err(store_err(e)),
            }
        }
        // A renewal keeps the device the renewed certificate was issued to.
        let renewed_device = match (&old_serial, renewing) {
            (Some(serial), true) => self
                .inner
                .store
                .certificate(serial)
                .await
                .map_err(store_err)?
                .and_then(|c| c.device_id),
            _ => None,
        };
        let outcome = self
            .issue(profile, tx, csr, one_time, renewed_device, "ra")
            .await?;
        if let (true, true, Some(old), Outcome::Success { .. }) = (
            renewing,
            profile.policy.revoke_superseded,
            old_serial,
            &outcome,
        ) {
            // The new certificate is recorded: the one it replaces is superseded. If this
            // fails, the old one stays valid until it expires; the renewal stands.
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
        Ok(outcome)
    }

    /// Issue, record, answer. A concurrent resend of the same transaction gets the recorded
    /// answer; a serial collision is retried once with a new serial.
    pub(crate) async fn issue(
        &self,
        profile: &Profile,
        tx: TransactionRecord,
        csr: crate::pki::Csr,
        one_time: Option<OneTime>,
        device: Option<String>,
        actor: &str,
    ) -> Result<Outcome, RequestError> {
        let identity = one_time.as_ref().and_then(|o| o.bindings.identity());
        let device_id = one_time
            .as_ref()
            .and_then(|o| o.bindings.device_id.clone())
            .or(device);
        let one_time = one_time.map(|o| o.hash);
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
            let mut record = CertificateRecord::from_der(&der, &profile.name, &tx.transaction_id)
                .map_err(|e| RequestError::Unavailable(e.to_string()))?;
            record.device_id = device_id.clone();
            match self
                .inner
                .store
                .record_issued(&tx, &record, one_time.as_deref(), actor)
                .await
            {
                Ok(()) => {
                    tracing::info!(serial = %record.serial, subject = %record.subject, "issued");
                    return Ok(self.success(profile, der));
                }
                Err(StoreError::ChallengeSpent) => return self.spent(profile, &tx).await,
                Err(StoreError::Conflict(why)) => {
                    if let Some(old) = self
                        .inner
                        .store
                        .transaction(&tx.transaction_id)
                        .await
                        .map_err(store_err)?
                    {
                        if old.key_sha256 == tx.key_sha256 && old.state != TransactionState::Pending
                        {
                            return self.recorded(&old, profile).await;
                        }
                        if old.key_sha256 != tx.key_sha256 {
                            return Ok(fail(
                                FailInfo::BadRequest,
                                "transactionID is already used by another key",
                            ));
                        }
                    }
                    tracing::warn!(%why, "store conflict; issuing again with a new serial");
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
            .transaction(&tx.transaction_id)
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
