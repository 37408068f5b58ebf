//! Replays answered from memory: the CertRep sent for a pkiMessage is kept a short while
//! under the SHA-256 of the profile and the message bytes, so the same bytes sent again (a
//! client's retry, or a flood of one captured GetCert or CertPoll) get the same answer
//! without a new RA decryption, signature or store round trip.
//!
//! Final answers (SUCCESS, FAILURE) are kept for a minute; PENDING and CRLs a few seconds,
//! so an approval or a revocation shows at the next poll. Memory is bounded by entries and
//! bytes; the oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::scep::{MessageType, Outcome};

/// Entries kept at most.
const MAX_ENTRIES: usize = 4096;
/// Bytes of answers kept at most.
const MAX_BYTES: usize = 16 * 1024 * 1024;

/// Answers by request bytes.
#[derive(Default)]
pub(crate) struct ReplayCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<[u8; 32], (Instant, Vec<u8>)>,
    order: VecDeque<[u8; 32]>,
    bytes: usize,
}

impl ReplayCache {
    /// The key of a request to a profile.
    pub(crate) fn key(profile: &str, body: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(profile.as_bytes());
        h.update([0]);
        h.update(body);
        h.finalize().into()
    }

    /// How long an answer may be replayed.
    pub(crate) fn ttl(kind: MessageType, outcome: &Outcome) -> Duration {
        match (kind, outcome) {
            (MessageType::GetCrl, _) | (_, Outcome::Pending) => Duration::from_secs(5),
            _ => Duration::from_secs(60),
        }
    }

    /// The answer kept for `key`, if it is still fresh.
    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Vec<u8>> {
        let e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        e.map
            .get(key)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, reply)| reply.clone())
    }

    /// Keep `reply` for `key` for `ttl`.
    pub(crate) fn put(&self, key: [u8; 32], reply: &[u8], ttl: Duration) {
        if reply.len() > MAX_BYTES / 16 {
            return;
        }
        let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some((_, old)) = e.map.insert(key, (now + ttl, reply.to_vec())) {
            e.bytes -= old.len();
        } else {
            e.order.push_back(key);
        }
        e.bytes += reply.len();
        while e.map.len() > MAX_ENTRIES || e.bytes > MAX_BYTES {
            let Some(oldest) = e.order.pop_front() else {
                break;
            };
            if let Some((_, old)) = e.map.remove(&oldest) {
                e.bytes -= old.len();
            }
        }
        // Drop expired entries from the front now and then, so a quiet cache empties.
        while let Some(front) = e.order.front().copied() {
            match e.map.get(&front) {
                Some((until, _)) if *until > now => break,
                _ => {
                    e.order.pop_front();
                    if let Some((_, old)) = e.map.remove(&front) {
                        e.bytes -= old.len();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_bounded_and_expire() {
        let c = ReplayCache::default();
        let k = ReplayCache::key("p", b"request");
        assert_ne!(k, ReplayCache::key("q", b"request"), "per profile");
        assert!(c.get(&k).is_none());
        c.put(k, b"reply", Duration::from_secs(60));
        assert_eq!(c.get(&k).as_deref(), Some(&b"reply"[..]));
        let gone = ReplayCache::key("p", b"old");
        c.put(gone, b"x", Duration::from_millis(0));
        assert!(c.get(&gone).is_none(), "expired");
        for i in 0..(MAX_ENTRIES + 10) {
            c.put(
                ReplayCache::key("p", &i.to_le_bytes()),
                b"r",
                Duration::from_secs(60),
            );
        }
        let e = c.inner.lock().unwrap();
        assert!(e.map.len() <= MAX_ENTRIES);
        assert_eq!(e.map.len(), e.order.len());
    }
}
