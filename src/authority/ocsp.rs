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
}

impl OcspResponder {
    pub(crate) fn new(issuer: IssuerHashes, validity_secs: i64) -> OcspResponder {
        OcspResponder {
            issuer,
            validity_secs,
            cache: Mutex::new(HashMap::new()),
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
    /// The request did not parse.
    Malformed,
    /// The store or the token failed.
    TryLater,
    /// None of the certificates asked about is this CA's.
    Unauthorized,
}

impl Authority {
    /// Answer one OCSPRequest (DER) with an OCSPResponse (DER). Never fails: problems are
    /// OCSP error statuses.
    pub async fn ocsp(&self, body: &[u8]) -> (Vec<u8>, OcspOutcome) {
        let query = match parse_request(body) {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "OCSP request refused");
                return (
                    error_response(ResponseStatus::MalformedRequest),
                    OcspOutcome::Malformed,
                );
            }
        };
        let responder = &self.inner.ocsp;
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
            return (
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
                        return (
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
        let key: Option<Vec<u8>> = if query.nonce.is_none() {
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
                    return (c.der.clone(), OcspOutcome::Cached);
                }
            }
        }
        let answers: Vec<_> = query
            .cert_ids
            .iter()
            .cloned()
            .zip(statuses.iter().copied())
            .collect();
        let delegate = match signer_gen {
            None => &self.inner.responder,
            Some(i) => &retired[i].responder,
        };
        let key_id = delegate.key_id();
        let tbs = match response_data(
            key_id,
            at,
            at + responder.validity_secs,
            &answers,
            query.nonce.as_ref(),
        ) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "OCSP response could not be built");
                return (
                    error_response(ResponseStatus::InternalError),
                    OcspOutcome::TryLater,
                );
            }
        };
        let signer = delegate.key().clone();
        let responder_cert = delegate.cert();
        // OCSP work has its own share of the token, so a flood cannot starve enrollment.
        let _permit = match signer.hsm().admit(crate::hsm::WorkClass::Ocsp).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "OCSP: the token is busy");
                return (
                    error_response(ResponseStatus::TryLater),
                    OcspOutcome::TryLater,
                );
            }
        };
        let signed = tokio::task::spawn_blocking(move || {
            let sig = signer.sign_blocking(&tbs)?;
            Ok::<_, crate::hsm::HsmError>((tbs, sig, signer.algorithm_identifier_der()))
        })
        .await;
        let der = match signed {
            Ok(Ok((tbs, sig, alg))) => match signed_response(&tbs, &alg, &sig, &[responder_cert]) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "OCSP response could not be assembled");
                    return (
                        error_response(ResponseStatus::InternalError),
                        OcspOutcome::TryLater,
                    );
                }
            },
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "OCSP: the token could not sign");
                return (
                    error_response(ResponseStatus::TryLater),
                    OcspOutcome::TryLater,
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "OCSP: worker failed");
                return (
                    error_response(ResponseStatus::TryLater),
                    OcspOutcome::TryLater,
                );
            }
        };
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
        (der, OcspOutcome::Signed)
    }
}
