//! Pre-produced OCSP answers (RFC 5019's lightweight profile), for relying parties that ask
//! on every connection (RADIUS servers checking EAP-TLS clients). The node leading "ocsp"
//! signs one answer per certificate of the active CA ahead of time and stores it, so every
//! node shares them; each node keeps the ones it served in memory. A request without a nonce
//! for one certificate, with the CertID RFC 5019 clients send (SHA-1), is answered from memory
//! with no token operation and no store read.
//!
//! Statuses stay true: a stored answer is served only while it states its certificate's
//! status (the store checks); each node reads the CA's revocation count at most every
//! [`WATCH_MS`] and drops what it holds when the count moved, so a revocation on any node is
//! in every node's answers within a quarter of a second; and an answer whose status was read
//! before such a drop is never taken into memory after it (the epoch).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use std::time::{Duration, Instant};

use super::Authority;
use crate::pki::ocsp::{serial_hex, CertId, OcspQuery, Status};
use crate::reason::Reason;
use crate::store::{now, CertStatus, OcspAnswer, OcspDue};

/// How often (milliseconds) a node reads the CA's revocation count, at most.
pub(crate) const WATCH_MS: i64 = 250;
/// Answers held in memory at most (about 1.5 kB each); past that, the oldest are dropped.
const HELD_MAX: usize = 65_536;
/// How often the producer looks for answers to make or refresh.
const PRODUCE_EVERY: Duration = Duration::from_secs(5);
/// How long one production round may sign before it yields (the rest waits for the next).
const PRODUCE_BUDGET: Duration = Duration::from_secs(3);
/// Certificates read per batch.
const BATCH: usize = 256;
/// The producer waits while this node issued a certificate within this many milliseconds:
/// enrollments come first on the token (an answer for a certificate seconds old is seldom
/// asked for, and the live path signs it if it is).
const YIELD_MS: i64 = 1_000;
/// ...but its answers wait at most this long (milliseconds), so a steady stream of
/// enrollments does not starve it.
const YIELD_MAX_MS: i64 = 60_000;

/// An answer as it is served: its bytes and, when it states freshness, its caching facts.
pub(crate) type Served = (Bytes, Option<super::ocsp::Caching>);

/// One answer held in memory.
struct Held {
    der: Bytes,
    /// Worked out when taken in.
    caching: Option<super::ocsp::Caching>,
    /// Served until then (Unix seconds): a quarter of the validity before its nextUpdate.
    serve_until: i64,
    /// When it was taken in (for dropping the oldest).
    taken: i64,
}

/// What a node holds of the pre-produced answers.
pub(crate) struct Prepared {
    held: RwLock<HashMap<String, Held>>,
    /// The exact bytes of requests already read and found preparable, with the serial each
    /// asks about: a request seen before is answered without reading it again (what it asks
    /// is fixed by its bytes; its answer is looked up as any other).
    requests: RwLock<HashMap<Bytes, Arc<str>>>,
    /// Bumped whenever what is held is dropped: an answer whose status was read in an older
    /// epoch is not taken in.
    epoch: AtomicU64,
    /// The CA's revocation count when last read (-1: not yet).
    revisions: AtomicI64,
    /// When it was last read (milliseconds since the Unix epoch).
    checked_ms: AtomicI64,
    /// When this node last issued a certificate (milliseconds on [`Prepared::clock_ms`]).
    issued_ms: AtomicI64,
    /// The monotonic clock's origin (a wall clock stepping back must not make the producer
    /// wait again).
    started: Instant,
}

impl Prepared {
    pub(crate) fn new() -> Prepared {
        Prepared {
            held: RwLock::new(HashMap::new()),
            requests: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            revisions: AtomicI64::new(-1),
            checked_ms: AtomicI64::new(0),
            // Long ago: nothing issued yet.
            issued_ms: AtomicI64::new(-YIELD_MAX_MS),
            started: Instant::now(),
        }
    }

    /// Milliseconds since this node's producer state was made (monotonic).
    fn clock_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// This node issued a certificate: the producer yields for a moment.
    pub(crate) fn note_issued(&self) {
        self.issued_ms.store(self.clock_ms(), Ordering::Relaxed);
    }

    fn get(&self, serial: &str, at: i64) -> Option<Served> {
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        held.get(serial)
            .filter(|h| h.serve_until > at)
            .map(|h| (h.der.clone(), h.caching.clone()))
    }

    /// Take an answer in, unless what is held was dropped since its status was read.
    /// Returns it as served.
    fn hold(&self, serial: &str, der: Bytes, serve_until: i64, epoch: u64) -> Served {
        let caching = super::ocsp::Caching::of(&der);
        let served = (der.clone(), caching.clone());
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return served;
        }
        if held.len() >= HELD_MAX && !held.contains_key(serial) {
            // Drop the older half: the answers asked for recently come back on demand.
            let mut ages: Vec<i64> = held.values().map(|h| h.taken).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            held.retain(|_, h| h.taken > cut);
        }
        held.insert(
            serial.to_string(),
            Held {
                der,
                caching,
                serve_until,
                taken: now(),
            },
        );
        served
    }

    /// The serial a request with exactly these bytes asked about, if one was seen.
    fn serial_of_request(&self, body: &[u8]) -> Option<Arc<str>> {
        let requests = self.requests.read().unwrap_or_else(|p| p.into_inner());
        requests.get(body).cloned()
    }

    /// Remember what a preparable request with these bytes asks about.
    pub(crate) fn remember_request(&self, body: &[u8], serial: &str) {
        if self.serial_of_request(body).is_some() {
            return;
        }
        let mut requests = self.requests.write().unwrap_or_else(|p| p.into_inner());
        if requests.len() >= HELD_MAX {
            requests.clear();
        }
        requests.insert(Bytes::copy_from_slice(body), Arc::from(serial));
    }

    /// Drop one certificate's answer (it was revoked here).
    pub(crate) fn forget(&self, serial: &str) {
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        self.epoch.fetch_add(1, Ordering::SeqCst);
        held.remove(serial);
    }

    /// Drop everything (a revocation somewhere).
    fn drop_all(&self) {
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        self.epoch.fetch_add(1, Ordering::SeqCst);
        held.clear();
    }
}

/// Whether a round for new certificates waits for enrollments at `now_ms`: this node issued within
/// [`YIELD_MS`], and the answers have not been waiting (since `waiting_since_ms`) for
/// [`YIELD_MAX_MS`] already.
fn yields(now_ms: i64, issued_ms: i64, waiting_since_ms: Option<i64>) -> bool {
    now_ms - issued_ms < YIELD_MS && waiting_since_ms.is_none_or(|w| now_ms - w < YIELD_MAX_MS)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The serial a request asks about, if it is one the pre-produced answers can serve: no
/// nonce, one certificate, of this issuer, with the SHA-1 CertID the answers carry.
pub(crate) fn preparable(
    issuer: &crate::pki::ocsp::IssuerHashes,
    query: &OcspQuery,
) -> Option<String> {
    let [id] = query.cert_ids.as_slice() else {
        return None;
    };
    if query.nonce.is_some() || !issuer.matches(id) {
        return None;
    }
    // The answers carry SHA-1 with NULL parameters, as OpenSSL writes it (matches() checked
    // the hashes): anything else is answered live.
    let null = der::Any::from(der::asn1::Null);
    (id.hash_algorithm.oid == crate::pki::ocsp::SHA1
        && id.hash_algorithm.parameters.as_ref() == Some(&null))
    .then(|| serial_hex(id))
}

impl Authority {
    /// The pre-produced answer for `serial`, from memory or the store (then held). None: the
    /// live path answers (and keeps what it signs, [`Authority::keep_answer`]).
    pub(crate) async fn prepared_answer(&self, serial: &str) -> Option<Served> {
        let prepared = &self.inner.ocsp.prepared;
        self.watch_revocations().await;
        let epoch = prepared.epoch.load(Ordering::SeqCst);
        let at = now();
        if let Some(served) = prepared.get(serial, at) {
            return Some(served);
        }
        let margin = self.inner.ocsp.validity_secs / 4;
        match self.inner.store.ocsp_answer(serial, at + margin).await {
            Ok(Some(a)) => {
                Some(prepared.hold(serial, Bytes::from(a.der), a.next_update - margin, epoch))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "OCSP: cannot read pre-produced answers");
                None
            }
        }
    }

    /// The answer to a request whose exact bytes were read before and asked about a
    /// certificate whose answer is held: no parsing, no signature, no store read.
    pub(crate) async fn answer_seen_request(&self, body: &[u8]) -> Option<Served> {
        let prepared = &self.inner.ocsp.prepared;
        let serial = prepared.serial_of_request(body)?;
        let t = now_ms();
        self.watch_revocations_at(t).await;
        prepared.get(&serial, t.div_euclid(1000))
    }

    /// The epoch to pass to [`Authority::keep_answer`]: read it before the status.
    pub(crate) fn prepared_epoch(&self) -> u64 {
        self.inner.ocsp.prepared.epoch.load(Ordering::SeqCst)
    }

    /// The live path signed an answer a pre-produced one could have been: keep it, in memory
    /// and in the store (for the other nodes), so the next request costs no signature.
    /// Returns its caching facts, worked out as it was taken in.
    pub(crate) async fn keep_answer(
        &self,
        serial: &str,
        status: Status,
        der: &[u8],
        produced_at: i64,
        epoch: u64,
    ) -> Option<super::ocsp::Caching> {
        let answer = self.answer_of(serial, status, der, produced_at)?;
        let margin = self.inner.ocsp.validity_secs / 4;
        let (_, caching) = self.inner.ocsp.prepared.hold(
            serial,
            Bytes::copy_from_slice(der),
            answer.next_update - margin,
            epoch,
        );
        if let Err(e) = self.inner.store.put_ocsp_answers(&[answer]).await {
            tracing::debug!(error = %e, "OCSP: could not store the answer for the other nodes");
        }
        caching
    }

    /// What the store keeps of a signed answer (None for `unknown`, which is not kept).
    fn answer_of(
        &self,
        serial: &str,
        status: Status,
        der: &[u8],
        produced_at: i64,
    ) -> Option<OcspAnswer> {
        let (status, revoked_at) = match status {
            Status::Good => (CertStatus::Valid, None),
            Status::Revoked { at, .. } => (CertStatus::Revoked, Some(at)),
            Status::Unknown => return None,
        };
        Some(OcspAnswer {
            serial: serial.to_string(),
            status,
            revoked_at,
            der: der.to_vec(),
            produced_at,
            next_update: produced_at + self.inner.ocsp.validity_secs,
        })
    }

    /// Read the CA's revocation count, at most every [`WATCH_MS`]; drop what is held when it
    /// moved.
    async fn watch_revocations(&self) {
        self.watch_revocations_at(now_ms()).await
    }

    /// [`Authority::watch_revocations`] with the time (milliseconds) already read.
    async fn watch_revocations_at(&self, t: i64) {
        let prepared = &self.inner.ocsp.prepared;
        let last = prepared.checked_ms.load(Ordering::SeqCst);
        if t - last < WATCH_MS
            || prepared
                .checked_ms
                .compare_exchange(last, t, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return;
        }
        match self.inner.store.crl_mark(&self.inner.ca_issuer_text).await {
            Ok(mark) => {
                let seen = prepared.revisions.swap(mark.revisions, Ordering::SeqCst);
                if seen != mark.revisions {
                    prepared.drop_all();
                }
            }
            Err(e) => {
                // Not knowing whether anything was revoked: hold nothing.
                tracing::warn!(error = %e, "OCSP: cannot read the revocation count");
                prepared.revisions.store(-1, Ordering::SeqCst);
                prepared.drop_all();
            }
        }
    }

    /// The producer: on the node leading "ocsp", every few seconds, sign answers for the
    /// active CA's certificates in force that have none, a stale one, or one stating another
    /// status. Runs until the process ends. Its rounds for new certificates yield to
    /// enrollments on this node (see [`YIELD_MS`]), for a minute at most.
    ///
    /// Looking for work reads every certificate in force, so after a round that found none
    /// the producer rests for an eighth of the answers' validity (an answer is then at most
    /// five eighths of its validity old when replaced, and nodes serve it until three
    /// quarters), unless a revocation came meanwhile; meanwhile it looks only at certificates
    /// stored since its last look (through an index), so new ones get answers within seconds
    /// of a pause in enrollment, and within a minute and some seconds under a steady stream.
    pub async fn preparing_ocsp(self) {
        let mut tick = tokio::time::interval(PRODUCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let rest = Duration::from_secs((self.inner.ocsp.validity_secs / 8).max(5) as u64);
        let mut quiet_until: Option<Instant> = None;
        let mut seen = -1;
        let mut new_since = now();
        let (mut full_cursor, mut new_cursor) = (None, None);
        let mut waiting_since = None;
        loop {
            tick.tick().await;
            match self.inner.store.lead("ocsp").await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "OCSP: cannot reach the store");
                    continue;
                }
            }
            let revisions = match self.inner.store.crl_mark(&self.inner.ca_issuer_text).await {
                Ok(m) => m.revisions,
                Err(e) => {
                    tracing::warn!(error = %e, "OCSP: cannot reach the store");
                    continue;
                }
            };
            // Resting: only certificates stored since the last look (an index read).
            let resting = revisions == seen && quiet_until.is_some_and(|t| Instant::now() < t);
            // A round for new certificates only waits while this node issues (a minute at
            // most); full passes, which refresh answers before they lapse and follow
            // revocations, never wait.
            let prepared = &self.inner.ocsp.prepared;
            let t = prepared.clock_ms();
            if resting && yields(t, prepared.issued_ms.load(Ordering::Relaxed), waiting_since) {
                waiting_since.get_or_insert(t);
                continue;
            }
            waiting_since = None;
            let looked_at = now() - 2;
            let since = if resting { Some(new_since) } else { None };
            seen = revisions;
            let cursor = if resting {
                &mut new_cursor
            } else {
                &mut full_cursor
            };
            let from_start = cursor.is_none();
            match self.produce_answers(PRODUCE_BUDGET, since, cursor).await {
                // A whole pass with nothing to do: rest.
                Ok(0) if !resting && from_start && cursor.is_none() => {
                    quiet_until = Some(Instant::now() + rest)
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "OCSP: pre-production stopped");
                    continue;
                }
            }
            // The next look at new certificates starts from here once this one is through.
            if new_cursor.is_none() {
                new_since = looked_at;
            }
        }
    }

    /// One production round, for at most `budget` (with `created_since`, only for
    /// certificates stored since then), going on in serial order from `cursor` (a round cut
    /// short by its budget leaves it where it stopped; a round that reached the end sets it
    /// back to the start): how many answers were made.
    pub async fn produce_answers(
        &self,
        budget: Duration,
        created_since: Option<i64>,
        cursor: &mut Option<String>,
    ) -> Result<usize, super::RequestError> {
        let started = Instant::now();
        let unavailable =
            |e: crate::store::StoreError| super::RequestError::Unavailable(Reason::caused_by(e));
        let validity = self.inner.ocsp.validity_secs;
        let mut made = 0;
        let after = cursor;
        while started.elapsed() < budget {
            let at = now();
            let due = self
                .inner
                .store
                .ocsp_due(&OcspDue {
                    issuer: &self.inner.ca_issuer_text,
                    now: at,
                    before: at - validity / 2,
                    created_since,
                    after_serial: after.as_deref(),
                    limit: BATCH,
                })
                .await
                .map_err(unavailable)?;
            let Some(last) = due.last() else {
                *after = None;
                break;
            };
            *after = Some(last.serial.clone());
            let mut answers = Vec::with_capacity(due.len());
            for c in due {
                let status = match c.status {
                    CertStatus::Valid => Status::Good,
                    CertStatus::Revoked => Status::Revoked {
                        at: c.revoked_at.unwrap_or(0),
                        reason: c.revocation_reason,
                    },
                };
                let id: CertId = self
                    .inner
                    .ocsp
                    .issuer
                    .sha1_cert_id(&c.serial)
                    .map_err(|e| super::RequestError::Unavailable(Reason::caused_by(e)))?;
                let signed_at = now();
                let der = self
                    .sign_answers(None, &[(id, status)], None, signed_at)
                    .await
                    .map_err(|status| {
                        // Why is in the log line `sign_answers` wrote; the status says what
                        // a client would have been told.
                        super::RequestError::Unavailable(
                            format!("an answer could not be made ({status:?})").into(),
                        )
                    })?;
                answers.extend(self.answer_of(&c.serial, status, &der, signed_at));
                made += 1;
                if started.elapsed() >= budget {
                    break;
                }
            }
            // One database transaction per batch.
            self.inner
                .store
                .put_ocsp_answers(&answers)
                .await
                .map_err(unavailable)?;
        }
        if made > 0 {
            tracing::debug!(made, "OCSP answers pre-produced");
        }
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_yields_to_a_recent_issue_for_a_minute_at_most() {
        let t = 1_800_000_000_000;
        // Nothing issued lately: produce.
        assert!(!yields(t, 0, None));
        assert!(!yields(t, t - YIELD_MS, None));
        // Issued within the last second: wait.
        assert!(yields(t, t - YIELD_MS + 1, None));
        assert!(yields(t, t, None));
        // Waiting, but not for a minute yet: still wait.
        assert!(yields(t, t, Some(t - YIELD_MAX_MS + 1)));
        // A minute of waiting: produce, however busy.
        assert!(!yields(t, t, Some(t - YIELD_MAX_MS)));
        // Not busy any more: produce, however short the wait.
        assert!(!yields(t, t - 5_000, Some(t - 1)));
    }
}
