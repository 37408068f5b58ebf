//! Token work by class: issuance keeps a reserved share of the session pool.
//!
//! Every private-key operation runs on one of the pool's `size` sessions. Work that answers
//! anonymous or cheap-to-send requests (OCSP answers, GetCert, CertPoll, GetCRL) and
//! background work may hold at most `size - reserved` sessions at once, so enrollment (the
//! RA decryption, the CA signature and the CertRep of PKCSReq and RenewalReq) always finds
//! `reserved` sessions: a flood of OCSP or GetCert cannot starve it. Waiting happens in the
//! async runtime (no blocking thread is held while waiting), and a class whose queue is full
//! is refused at once (the caller answers 503 / tryLater), so memory stays bounded too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::HsmError;

/// What a token operation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkClass {
    /// Enrollment: PKCSReq, RenewalReq, an officer's approval. Never limited beyond the pool.
    Issuance,
    /// SCEP queries: GetCert, CertPoll, GetCRL.
    Query,
    /// OCSP answers signed fresh.
    Ocsp,
    /// Background: CRLs, the audit head, responder renewal.
    Background,
}

impl WorkClass {
    /// The name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkClass::Issuance => "issuance",
            WorkClass::Query => "query",
            WorkClass::Ocsp => "ocsp",
            WorkClass::Background => "background",
        }
    }
}

/// The share of the session pool that work other than issuance may hold.
#[derive(Debug)]
pub(crate) struct Budget {
    shared: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    reserved: usize,
}

/// Held while a token operation of a limited class runs; dropping it frees the share.
#[derive(Debug)]
pub struct Permit(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Budget {
    /// For a pool of `size` sessions: a quarter (at least one) is kept for issuance when there
    /// are at least two; at most `64 × size` operations of the other classes wait.
    pub(crate) fn new(size: usize) -> Budget {
        let size = size.max(1);
        let reserved = if size >= 2 { (size / 4).max(1) } else { 0 };
        Budget {
            shared: Arc::new(Semaphore::new(size - reserved)),
            waiting: AtomicUsize::new(0),
            max_waiting: 64 * size,
            reserved,
        }
    }

    /// Sessions kept for issuance.
    pub(crate) fn reserved(&self) -> usize {
        self.reserved
    }

    /// Wait for room for one operation of `class`.
    pub(crate) async fn admit(&self, class: WorkClass) -> Result<Permit, HsmError> {
        if class == WorkClass::Issuance {
            return Ok(Permit(None));
        }
        let metrics = crate::telemetry::metrics();
        if let Ok(p) = self.shared.clone().try_acquire_owned() {
            return Ok(Permit(Some(p)));
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if let Some(m) = metrics {
                m.hsm_budget_shed.with_label_values(&[class.as_str()]).inc();
            }
            return Err(HsmError::Overloaded(class.as_str()));
        }
        if let Some(m) = metrics {
            m.hsm_budget_waiting
                .with_label_values(&[class.as_str()])
                .inc();
        }
        let permit = self.shared.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        if let Some(m) = metrics {
            m.hsm_budget_waiting
                .with_label_values(&[class.as_str()])
                .dec();
        }
        // The semaphore is never closed.
        permit
            .map(|p| Permit(Some(p)))
            .map_err(|_| HsmError::Overloaded(class.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn issuance_keeps_its_share_while_queries_flood() {
        let b = Budget::new(4);
        assert_eq!(b.reserved(), 1);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(b.admit(WorkClass::Query).await.unwrap());
        }
        // A fourth query waits for one of the three...
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            b.admit(WorkClass::Ocsp),
        )
        .await;
        assert!(waiting.is_err(), "a fourth non-issuance operation got in");
        // ...while issuance gets in at once.
        assert!(tokio::time::timeout(
            std::time::Duration::from_millis(50),
            b.admit(WorkClass::Issuance)
        )
        .await
        .is_ok());
        drop(held.pop());
        assert!(b.admit(WorkClass::Background).await.is_ok());
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let b = Arc::new(Budget::new(2));
        assert_eq!(b.reserved(), 1);
        let _one = b.admit(WorkClass::Query).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..b.max_waiting {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                b.admit(WorkClass::Query).await.map(|_| ())
            }));
        }
        // Let them all queue.
        while b.waiting.load(Ordering::SeqCst) < b.max_waiting {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            b.admit(WorkClass::Ocsp).await,
            Err(HsmError::Overloaded("ocsp"))
        ));
        for t in tasks {
            t.abort();
        }
    }

    #[test]
    fn a_single_session_pool_reserves_nothing() {
        assert_eq!(Budget::new(1).reserved(), 0);
        assert_eq!(Budget::new(8).reserved(), 2);
    }
}
