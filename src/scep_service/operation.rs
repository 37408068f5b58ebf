//! One PKIOperation, from bytes to CertRep: verify the signature, decrypt on the token, turn
//! the message into a request to the authority, and the decision into a signed CertRep.
//! Answers are kept a short while by the bytes of the request, so a replayed message costs
//! no decryption, signature or write.

use tracing::Instrument;

use super::ScepService;
use crate::authority::{Decision, EnrollRequest, Profile, RefusalKind, RequestError, Requester};
use crate::reason::Reason;
use crate::scep::{
    CertRep, ContentCipher, DigestAlg, FailInfo, IssuerAndSerial, IssuerAndSubject, MessageType,
    Outcome, PkiMessage, ScepError,
};

fn fail(info: FailInfo, text: impl Into<String>) -> Outcome {
    Outcome::Failure {
        info,
        text: text.into(),
    }
}

/// The one answer for anything that does not read, whatever stage it failed at (see
/// `scep::UNREADABLE`).
fn unreadable() -> Outcome {
    fail(FailInfo::BadMessageCheck, crate::scep::UNREADABLE)
}

fn from_scep(e: &ScepError) -> Result<Outcome, RequestError> {
    match e {
        ScepError::Token(t) => Err(RequestError::Unavailable(t.clone())),
        // Decryption failures carry no detail to the client (see scep::UNREADABLE).
        ScepError::Decrypt(_) => Ok(unreadable()),
        other => Ok(fail(other.fail_info(), other.to_string())),
    }
}

/// The requester as SCEP establishes it: the key and certificate that signed the message.
fn requester(msg: &PkiMessage) -> Requester {
    Requester {
        key_sha256: crate::scep::spki_sha256(&msg.signer_cert).unwrap_or_default(),
        certificate: Some(msg.signer_cert.clone()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RequestError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RequestError::Unavailable(Reason::context("worker", e)))
}

impl ScepService {
    /// The CertRep outcome of a decision.
    fn outcome(&self, profile: &Profile, d: Decision) -> Outcome {
        match d {
            Decision::Issued { certificate } => {
                let mut certs = vec![certificate];
                if profile.policy.certrep_include_ca {
                    certs.extend(self.authority.ca_chain().0.iter().cloned());
                }
                Outcome::Success {
                    certs,
                    crls: Vec::new(),
                }
            }
            Decision::Pending => Outcome::Pending,
            Decision::Refused(r) => match r.kind {
                RefusalKind::Policy => fail(FailInfo::BadRequest, r.reason),
                RefusalKind::Unknown => fail(FailInfo::BadCertId, r.reason),
                RefusalKind::Algorithm => fail(FailInfo::BadAlg, r.reason),
                // Told apart from nothing: no oracle on the envelope.
                RefusalKind::Unreadable => unreadable(),
            },
        }
    }

    /// Answer one PKIOperation for `profile` with a CertRep.
    pub async fn pki_operation(
        &self,
        profile: &Profile,
        body: &[u8],
    ) -> Result<Vec<u8>, RequestError> {
        // A replay of bytes answered a moment ago gets the same answer, at no cost.
        let replay_key = super::replay::ReplayCache::key(&profile.name, body);
        if let Some(reply) = self.replays.get(&replay_key) {
            crate::telemetry::scep_replay();
            return Ok(reply);
        }
        let msg = PkiMessage::parse(body)
            .map_err(|e| RequestError::Malformed(crate::reason::Reason::caused_by(e)))?;
        let span = tracing::info_span!(
            "scep",
            transaction_id = %msg.transaction_id,
            message_type = %msg.message_type,
            profile = %profile.name,
            actor = tracing::field::Empty,
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
                .key
                .0
                .hsm
                .admit(class)
                .await
                .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))?;
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
            let (status, info) = match &outcome {
                Outcome::Success { .. } => ("success", String::new()),
                Outcome::Pending => ("pending", String::new()),
                Outcome::Failure { info, .. } => ("failure", info.to_string()),
            };
            crate::telemetry::scep_outcome(&msg.message_type.to_string(), status, &info);
            let ttl = super::replay::ReplayCache::ttl(msg.message_type, &outcome);
            let reply = self.answer(profile, &msg, outcome, cipher).await?;
            self.replays.put(replay_key, &reply, ttl);
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
            self.authority.ca_chain().0.to_vec()
        } else {
            Vec::new()
        };
        let (tid, nonce, requester) = (
            msg.transaction_id.clone(),
            msg.sender_nonce.clone(),
            msg.signer_cert.clone(),
        );
        let (ra_cert, key) = (self.authority.ra().0.to_vec(), self.key.clone());
        let built = blocking(move || {
            CertRep {
                transaction_id: &tid,
                recipient_nonce: &nonce,
                outcome,
                requester_cert: &requester,
                cipher,
                digest,
                ra_cert: &ra_cert,
                extra_certs: &extra,
            }
            .build(&key)
        })
        .await?;
        built.map_err(|e| match e {
            ScepError::UnsupportedAlgorithm(why) => {
                RequestError::Malformed(format!("cannot answer this requester: {why}").into())
            }
            other => RequestError::Unavailable(Reason::caused_by(other)),
        })
    }

    /// Verify, decrypt, and ask the authority.
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
        let decrypt_cert = self.authority.ra().1.to_vec();
        if envelope.recipient_for(&decrypt_cert).is_none() {
            return Ok(fail(
                FailInfo::BadMessageCheck,
                "the message is encrypted to another certificate, not this RA's (fetch GetCACert again)",
            ));
        }
        let key = self.key.clone();
        let legacy = profile.policy.legacy;
        let plain = blocking(move || envelope.open(&key, &decrypt_cert, legacy)).await?;
        let plain = match plain {
            Ok(p) => p,
            Err(e) => return from_scep(&e),
        };
        let requester = requester(msg);
        let decision = match msg.message_type {
            MessageType::PkcsReq | MessageType::UpdateReq | MessageType::RenewalReq => {
                self.authority
                    .enroll(EnrollRequest {
                        profile,
                        transaction_id: msg.transaction_id.0.clone(),
                        csr: plain,
                        requester,
                        renewal_only: msg.message_type == MessageType::RenewalReq,
                    })
                    .await?
            }
            MessageType::CertPoll => {
                if let Err(e) = IssuerAndSubject::parse(&plain) {
                    tracing::warn!(error = %e, "decrypted content is not IssuerAndSubject");
                    return Ok(unreadable());
                }
                // Answered under the profile the transaction was decided in.
                let (decision, decided_in) = self
                    .authority
                    .poll(&msg.transaction_id.0, &requester)
                    .await?;
                return Ok(self.outcome(decided_in.unwrap_or(profile), decision));
            }
            MessageType::GetCert => match IssuerAndSerial::parse(&plain) {
                Ok(want) => {
                    self.authority
                        .certificate_by_issuer(&want.issuer, &want.serial)
                        .await?
                }
                Err(e) => {
                    tracing::warn!(error = %e, "decrypted content is not IssuerAndSerialNumber");
                    return Ok(unreadable());
                }
            },
            MessageType::GetCrl => match IssuerAndSerial::parse(&plain) {
                Ok(want) => {
                    let crl = self.authority.crl_by_issuer(&want.issuer).await?;
                    return Ok(Outcome::Success {
                        certs: Vec::new(),
                        crls: vec![crl],
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "decrypted content is not IssuerAndSerialNumber");
                    return Ok(unreadable());
                }
            },
            MessageType::CertRep => return Ok(fail(FailInfo::BadRequest, "unexpected CertRep")),
        };
        // GetCert answers the certificate alone, never with the chain.
        if msg.message_type == MessageType::GetCert {
            if let Decision::Issued { certificate } = decision {
                return Ok(Outcome::Success {
                    certs: vec![certificate],
                    crls: Vec::new(),
                });
            }
        }
        Ok(self.outcome(profile, decision))
    }
}
