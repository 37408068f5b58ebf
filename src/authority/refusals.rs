//! Refusals of authenticated requesters go into the audit chain, but one requester repeating
//! one refused request (a device retrying every minute, or a key holder trying to fill the
//! chain) is recorded once per [`WINDOW`]: the first refusal is audited, the repeats within
//! the window are counted and the count goes into the next audited one.
//!
//! Memory is bounded: at most [`MAX_KEYS`] requester/reason pairs are remembered; past that,
//! the oldest go first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a refusal stands for its repeats.
pub(crate) const WINDOW: Duration = Duration::from_secs(600);
/// Requester/reason pairs remembered at most.
const MAX_KEYS: usize = 8192;

/// Which refusals were recorded lately.
#[derive(Default)]
pub(crate) struct RecentRefusals {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl RecentRefusals {
    /// Should this refusal (by `requester`, for `reason`) be audited now? `Some(n)`: yes,
    /// and `n` repeats were left out since the last one; `None`: a repeat within the window.
    pub(crate) fn admit(&self, requester: &str, reason: &str) -> Option<u64> {
        self.admit_at(requester, reason, Instant::now())
    }

    fn admit_at(&self, requester: &str, reason: &str, at: Instant) -> Option<u64> {
        let key = format!("{requester}\n{reason}");
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get_mut(&key) {
            Some((since, repeats)) if at.duration_since(*since) < WINDOW => {
                *repeats += 1;
                None
            }
            Some((since, repeats)) => {
                let left_out = *repeats;
                *since = at;
                *repeats = 0;
                Some(left_out)
            }
            None => {
                if seen.len() >= MAX_KEYS {
                    seen.retain(|_, (since, _)| at.duration_since(*since) < WINDOW);
                    if seen.len() >= MAX_KEYS {
                        if let Some(oldest) = seen
                            .iter()
                            .min_by_key(|(_, (since, _))| *since)
                            .map(|(k, _)| k.clone())
                        {
                            seen.remove(&oldest);
                        }
                    }
                }
                seen.insert(key, (at, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_counted_not_recorded() {
        let r = RecentRefusals::default();
        let t0 = Instant::now();
        assert_eq!(r.admit_at("dev", "wrong", t0), Some(0));
        assert_eq!(
            r.admit_at("dev", "wrong", t0 + Duration::from_secs(5)),
            None
        );
        assert_eq!(
            r.admit_at("dev", "wrong", t0 + Duration::from_secs(9)),
            None
        );
        // Another reason, or another requester, is recorded.
        assert_eq!(r.admit_at("dev", "other", t0), Some(0));
        assert_eq!(r.admit_at("dev2", "wrong", t0), Some(0));
        // After the window, recorded again with the count left out.
        assert_eq!(r.admit_at("dev", "wrong", t0 + WINDOW), Some(2));
    }

    #[test]
    fn memory_is_bounded() {
        let r = RecentRefusals::default();
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 10) {
            r.admit_at(&format!("k{i}"), "x", t0 + Duration::from_millis(i as u64));
        }
        assert!(r.seen.lock().unwrap().len() <= MAX_KEYS);
    }
}
