//! Full CRLs held in memory by their published number. A relying party's download of the
//! full CRL would otherwise read all of it from the store (4.9 MB at 100,000 revocations) and
//! parse all of it to learn its nextUpdate, per request; now a request reads the CA's
//! published CRL number (a small row) and, while it is the one held, serves the held bytes.
//! Whichever node or process publishes a newer CRL, the number moves and the next request
//! reads it.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

/// More CRLs than this (one per CA generation in practice) and the held ones are dropped.
const MAX: usize = 64;

struct Held {
    number: i64,
    der: Bytes,
    next_update: i64,
}

/// Full CRLs by CA label.
#[derive(Default)]
pub(crate) struct HeldCrls {
    held: Mutex<HashMap<String, Held>>,
}

impl HeldCrls {
    /// The CRL held for `label`, if it is the one published as `number` and is valid at
    /// `unix_now`.
    pub(crate) fn get(&self, label: &str, number: i64, unix_now: i64) -> Option<Bytes> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(label)
            .filter(|h| h.number == number && h.next_update > unix_now)
            .map(|h| h.der.clone())
    }

    /// Hold `label`'s CRL published as `number` (valid until `next_update`, Unix seconds).
    pub(crate) fn put(&self, label: &str, number: i64, der: Bytes, next_update: i64) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.len() >= MAX && !held.contains_key(label) {
            held.clear();
        }
        held.insert(
            label.to_string(),
            Held {
                number,
                der,
                next_update,
            },
        );
    }
}

/// A CRL's nextUpdate (Unix seconds), if it reads.
pub(crate) fn next_update(der: &[u8]) -> Option<i64> {
    x509_parser::parse_x509_crl(der)
        .ok()
        .and_then(|(_, crl)| crl.next_update().map(|t| t.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crl_is_held_while_its_number_is_the_published_one_and_it_is_valid() {
        let crls = HeldCrls::default();
        crls.put("ca", 7, Bytes::from_static(b"seven"), 1_000);
        assert_eq!(crls.get("ca", 7, 999).as_deref(), Some(&b"seven"[..]));
        assert!(
            crls.get("ca", 8, 999).is_none(),
            "a newer one was published"
        );
        assert!(crls.get("ca", 7, 1_000).is_none(), "expired");
        assert!(crls.get("ca-g2", 7, 999).is_none(), "by CA");
        crls.put("ca", 8, Bytes::from_static(b"eight"), 2_000);
        assert_eq!(crls.get("ca", 8, 999).as_deref(), Some(&b"eight"[..]));
        assert!(crls.get("ca", 7, 999).is_none());
    }

    #[test]
    fn past_the_limit_the_held_crls_are_dropped_not_grown() {
        let crls = HeldCrls::default();
        for i in 0..MAX {
            crls.put(&format!("ca-{i}"), 1, Bytes::new(), 10);
        }
        assert!(crls.get("ca-0", 1, 0).is_some());
        crls.put("ca-new", 1, Bytes::new(), 10);
        assert!(crls.get("ca-0", 1, 0).is_none());
        assert!(crls.get("ca-new", 1, 0).is_some());
    }
}
