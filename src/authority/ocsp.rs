//! The OCSP responder (RFC 6960): statuses from the store, answers signed on the token by the
//! CA generation's delegated responder key (see [`super::responder`]), with its certificate
//! in the answer. Answers to requests without a nonce are cached and reused while they are
//! younger than half their validity and the statuses they state are still the store's (so a
//! revocation on any node is answered at once); requests with a nonce are always signed
//! fresh, with the nonce echoed.

use std::collections::HashMap;
use std::sync::Mutex;

use der::Encode;

use super::Authority;
use crate::pki::ocsp::{
    error_response, parse_request, response_data, serial_hex, signed_response, IssuerHashes,
    ResponseStatus, Status,
};
use crate::store::{now, CertStatus};

/// Cached answers kept at most.
const CACHE_ENTRIES: usize = 10_000;

/// One cached, signed answer.
struct Cached {
    statuses: Vec<Status>,
    der: Vec<u8>,
    signed_at: i64,
}

/// The responder's state: whose certificates it answers for, and signed answers to reuse.
pub(crate) struct OcspResponder {
    pub(crate) issuer: IssuerHashes,
    pub(crate) validity_secs: i64,
    cache: Mutex<HashMap<Vec<u8>, Cached>>,
    /// Pre-produced answers held by this node.
    pub(crate) prepared: super::ocsp_prepared::Prepared,
}

impl OcspResponder {
    pub(crate) fn new(issuer: IssuerHashes, validity_secs: i64) -> OcspResponder {
        OcspResponder {
            issuer,
            validity_secs,
            cache: Mutex::new(HashMap::new()),
            prepared: super::ocsp_prepared::Prepared::new(),
        }
    }
}

/// What an OCSP exchange came to, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcspOutcome {
    /// Signed statuses (fresh).
    Signed,
    /// A cached signed answer.
    Cached,
    /// A pre-produced answer (no signature, no status read).
    Prepared,
    /// The request did not parse.
    Malformed,
    /// The store or the token failed.
    TryLater,
    /// None of the certificates asked about is this CA's.
    Unauthorized,
}

/// What HTTP caches may be told about an answer held ahead of time, worked out once when it
/// was taken in (so a GET answered from memory costs no parse and no hash).
#[derive(Debug, Clone)]
pub struct Caching {
    /// producedAt and the earliest nextUpdate.
    pub fresh: crate::pki::ocsp::Freshness,
    /// The entity tag: the SHA-1 of the answer, hex, quoted.
    pub etag: std::sync::Arc<str>,
}

impl Caching {
    /// The caching facts of a nonce-less, successful answer (None for any other).
    pub fn of(der: &[u8]) -> Option<Caching> {
        crate::pki::ocsp::freshness(der).map(|fresh| Caching {
            fresh,
            etag: format!("\"{}\"", hex::encode(openssl::sha::sha1(der))).into(),
        })
    }
}

/// An OCSP answer.
#[derive(Debug, Clone)]
pub struct OcspReply {
    /// The OCSPResponse (DER).
    pub der: bytes::Bytes,
    /// How it was come by.
    pub outcome: OcspOutcome,
    /// Its caching facts, when they were worked out ahead (a held answer).
    pub caching: Option<Caching>,
}

impl OcspReply {
    fn new(der: impl Into<bytes::Bytes>, outcome: OcspOutcome) -> OcspReply {
        OcspReply {
            der: der.into(),
            outcome,
            caching: None,
        }
    }
}

impl Authority {
    /// Answer one OCSPRequest (DER) with an OCSPResponse (DER). Never fails: problems are
    /// OCSP error statuses.
    pub async fn ocsp(&self, body: &[u8]) -> OcspReply {
        if let Some((der, caching)) = self.answer_seen_request(body).await {
            return OcspReply {
                der,
                outcome: OcspOutcome::Prepared,
                caching,
            };
        }
        let query = match parse_request(body) {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "OCSP request refused");
                return OcspReply::new(
                    error_response(ResponseStatus::MalformedRequest),
                    OcspOutcome::Malformed,
                );
            }
        };
        let responder = &self.inner.ocsp;
        let preparable = super::ocsp_prepared::preparable(&responder.issuer, &query);
        if let Some(serial) = &preparable {
            responder.prepared.remember_request(body, serial);
            if let Some((der, caching)) = self.prepared_answer(serial).await {
                return OcspReply {
                    der,
                    outcome: OcspOutcome::Prepared,
                    caching,
                };
            }
        }
        // Read before the statuses: an answer whose status predates a revocation seen since
        // is not kept.
        let epoch = self.prepared_epoch();
        let retired = &self.inner.retired;
        // Which generation each certificate belongs to: None the active CA, Some(i) a retired
        // one; the answer is signed by the generation of the first one that is ours.
        let generation = |id: &crate::pki::ocsp::CertId| -> Option<Option<usize>> {
            if responder.issuer.matches(id) {
                Some(None)
            } else {
                retired.iter().position(|g| g.hashes.matches(id)).map(Some)
            }
        };
        // Nothing about this CA's certificates: no signature is spent (RFC 5019 §2.2.3).
        let Some(signer_gen) = query.cert_ids.iter().find_map(generation) else {
            return OcspReply::new(
                error_response(ResponseStatus::Unauthorized),
                OcspOutcome::Unauthorized,
            );
        };
        let issuer_text = match signer_gen {
            None => self.inner.ca_issuer_text.as_str(),
            Some(i) => retired[i].issuer_text.as_str(),
        };
        let mut statuses = Vec::with_capacity(query.cert_ids.len());
        for id in &query.cert_ids {
            let status = if generation(id) == Some(signer_gen) {
                match self.inner.store.certificate(&serial_hex(id)).await {
                    Ok(Some(c)) if c.issuer == issuer_text => match c.status {
                        CertStatus::Valid => Status::Good,
                        CertStatus::Revoked => Status::Revoked {
                            at: c.revoked_at.unwrap_or(0),
                            reason: c.revocation_reason,
                        },
                    },
                    Ok(_) => Status::Unknown,
                    Err(e) => {
                        tracing::warn!(error = %e, "OCSP: store unavailable");
                        return OcspReply::new(
                            error_response(ResponseStatus::TryLater),
                            OcspOutcome::TryLater,
                        );
                    }
                }
            } else {
                Status::Unknown
            };
            statuses.push(status);
        }
        let at = now();
        let key: Option<Vec<u8>> = if query.nonce.is_none() && preparable.is_none() {
            let mut k = Vec::new();
            for id in &query.cert_ids {
                if let Ok(d) = id.to_der() {
                    k.extend(d);
                }
            }
            Some(k)
        } else {
            None
        };
        if let Some(k) = &key {
            let cache = responder.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.get(k) {
                if c.statuses == statuses && at - c.signed_at < responder.validity_secs / 2 {
                    return OcspReply::new(c.der.clone(), OcspOutcome::Cached);
                }
            }
        }
        let answers: Vec<_> = query
            .cert_ids
            .iter()
            .cloned()
            .zip(statuses.iter().copied())
            .collect();
        let der = match self
            .sign_answers(signer_gen, &answers, query.nonce.as_ref(), at)
            .await
        {
            Ok(d) => d,
            Err(status) => return OcspReply::new(error_response(status), OcspOutcome::TryLater),
        };
        let mut caching = None;
        if let (Some(serial), [status]) = (&preparable, statuses.as_slice()) {
            caching = self.keep_answer(serial, *status, &der, at, epoch).await;
        }
        if let Some(k) = key {
            let mut cache = responder.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHE_ENTRIES {
                cache.retain(|_, c| at - c.signed_at < responder.validity_secs / 2);
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(
                k,
                Cached {
                    statuses,
                    der: der.clone(),
                    signed_at: at,
                },
            );
        }
        OcspReply {
            der: der.into(),
            outcome: OcspOutcome::Signed,
            caching,
        }
    }
    /// Sign `answers` as the delegated responder of generation `generation` (None: the
    /// active CA), valid from `at` for the configured validity, echoing `nonce`. The token
    /// work has its own share, so a flood of OCSP cannot starve enrollment. An error is the
    /// OCSP status to answer with.
    pub(crate) async fn sign_answers(
        &self,
        generation: Option<usize>,
        answers: &[(crate::pki::ocsp::CertId, Status)],
        nonce: Option<&x509_cert::ext::Extension>,
        at: i64,
    ) -> Result<Vec<u8>, ResponseStatus> {
        let delegate = match generation {
            None => &self.inner.responder,
            Some(i) => &self.inner.retired[i].responder,
        };
        let tbs = response_data(
            delegate.key_id(),
            at,
            at + self.inner.ocsp.validity_secs,
            answers,
            nonce,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "OCSP response could not be built");
            ResponseStatus::InternalError
        })?;
        let signer = delegate.key().clone();
        let responder_cert = delegate.cert();
        let _permit = signer
            .hsm()
            .admit(crate::hsm::WorkClass::Ocsp)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "OCSP: the token is busy");
                ResponseStatus::TryLater
            })?;
        let signed = tokio::task::spawn_blocking(move || {
            let sig = signer.sign_blocking(&tbs)?;
            Ok::<_, crate::hsm::HsmError>((tbs, sig, signer.algorithm_identifier_der()))
        })
        .await;
        match signed {
            Ok(Ok((tbs, sig, alg))) => signed_response(&tbs, &alg, &sig, &[responder_cert])
                .map_err(|e| {
                    tracing::error!(error = %e, "OCSP response could not be assembled");
                    ResponseStatus::InternalError
                }),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "OCSP: the token could not sign");
                Err(ResponseStatus::TryLater)
            }
            Err(e) => {
                tracing::warn!(error = %e, "OCSP: worker failed");
                Err(ResponseStatus::TryLater)
            }
        }
    }
}
