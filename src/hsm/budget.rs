//! Token work by class: issuance keeps a reserved share of the session pool, and every class
//! waits in a bounded queue.
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

/// How many operations may run or wait, per class group.
#[derive(Debug)]
struct Lane {
    room: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// Counts one waiter while it waits; a waiter dropped mid-wait (its request went away) is
/// uncounted too.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Lane {
    fn new(room: usize, max_waiting: usize) -> Lane {
        Lane {
            room: Arc::new(Semaphore::new(room)),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    async fn enter(&self, class: WorkClass) -> Result<OwnedSemaphorePermit, HsmError> {
        if let Ok(p) = self.room.clone().try_acquire_owned() {
            return Ok(p);
        }
        let metrics = crate::telemetry::metrics();
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if let Some(m) = metrics {
                m.hsm_budget_shed.with_label_values(&[class.as_str()]).inc();
            }
            return Err(HsmError::Overloaded(class.as_str()));
        }
        let _counted = Waiting(&self.waiting);
        let gauge = metrics.map(|m| m.hsm_budget_waiting.with_label_values(&[class.as_str()]));
        if let Some(g) = &gauge {
            g.inc();
        }
        let permit = self.room.clone().acquire_owned().await;
        if let Some(g) = &gauge {
            g.dec();
        }
        // The semaphore is never closed.
        permit.map_err(|_| HsmError::Overloaded(class.as_str()))
    }
}

/// Admission to the token by class. Enrollments in flight are bounded (each holds its
/// permit across its decryption, signature, store write and CertRep, so more than the pool
/// keeps the store's write groups full); the other classes share `size - reserved` sessions,
/// so enrollment always finds `reserved`. Both queues are bounded: past them the caller is
/// refused at once (503 / tryLater) instead of holding a thread or memory.
#[derive(Debug)]
pub(crate) struct Budget {
    issuance: Lane,
    shared: Lane,
    reserved: usize,
}

/// Held while a token operation runs; dropping it frees its room.
#[derive(Debug)]
pub struct Permit(#[allow(dead_code)] OwnedSemaphorePermit);

impl Budget {
    /// For a pool of `size` sessions: a quarter (at least one) is kept for issuance when there
    /// are at least two; `8 × size` enrollments run at once; at most `64 × size` operations
    /// wait in each lane.
    pub(crate) fn new(size: usize) -> Budget {
        let size = size.max(1);
        let reserved = if size >= 2 { (size / 4).max(1) } else { 0 };
        Budget {
            issuance: Lane::new(8 * size, 64 * size),
            shared: Lane::new(size - reserved, 64 * size),
            reserved,
        }
    }

    /// Sessions kept for issuance.
    pub(crate) fn reserved(&self) -> usize {
        self.reserved
    }

    /// Wait for room for one operation of `class`.
    pub(crate) async fn admit(&self, class: WorkClass) -> Result<Permit, HsmError> {
        let lane = match class {
            WorkClass::Issuance => &self.issuance,
            _ => &self.shared,
        };
        lane.enter(class).await.map(Permit)
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
        for _ in 0..b.shared.max_waiting {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                b.admit(WorkClass::Query).await.map(|_| ())
            }));
        }
        // Let them all queue.
        while b.shared.waiting.load(Ordering::SeqCst) < b.shared.max_waiting {
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

    #[tokio::test]
    async fn a_waiter_that_goes_away_frees_its_place_in_the_queue() {
        let b = Budget::new(2);
        let _one = b.admit(WorkClass::Query).await.unwrap();
        for _ in 0..3 {
            // Each gives up waiting (its request was dropped).
            let gave_up = tokio::time::timeout(
                std::time::Duration::from_millis(10),
                b.admit(WorkClass::Query),
            )
            .await;
            assert!(gave_up.is_err());
        }
        assert_eq!(b.shared.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn enrollments_in_flight_are_bounded_too() {
        let b = Budget::new(1);
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(b.admit(WorkClass::Issuance).await.unwrap());
        }
        let ninth = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            b.admit(WorkClass::Issuance),
        )
        .await;
        assert!(
            ninth.is_err(),
            "a ninth enrollment ran on a one-session pool"
        );
        drop(held.pop());
        assert!(b.admit(WorkClass::Issuance).await.is_ok());
    }

    #[test]
    fn a_single_session_pool_reserves_nothing() {
        assert_eq!(Budget::new(1).reserved(), 0);
        assert_eq!(Budget::new(8).reserved(), 2);
    }
}
