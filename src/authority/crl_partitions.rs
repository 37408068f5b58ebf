//! CRL partitions, served: `/crl/<ca>/<YYYY-Www>.crl` lists the revoked certificates of that
//! CA whose validity ends in that ISO week ([`crate::pki::CrlPartition`]). Certificates of
//! profiles that leave `crl_url` to Sigil name their partition's URL, so a relying party that
//! checks CRLs downloads one week's revocations instead of all of them.
//!
//! A partition's CRL is made when first asked for and kept in the store (shared by every
//! node) until a revocation of its CA or half its life has passed; then the next request
//! makes a new one. After revocations only (the CRL names every public URL and has half its
//! life left), the next request first reads the week's revocations again: when none of the
//! new ones is in the week, the CRL held still lists exactly what a new one would, and is kept
//! (recorded as covering them) without another signature. The full CRL at `/crl/<ca>.crl`
//! stays, kept current by the CRL round, for relying parties that load one file and for
//! certificates issued before partitions.

use super::{crl_fresh, Authority, RequestError, CRL_HOURS};
use crate::pki::{CrlPartition, PARTITION_PLACEHOLDER};
use crate::reason::Reason;

/// Why there is no such partition CRL (HTTP 404, with this as the reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoPartition {
    /// The CA label is neither the active CA nor a retired one.
    #[error("no CA is called {0:?}")]
    NoSuchCa(String),
    /// The file name is not `YYYY-Www.crl` with a week that exists.
    #[error("{0:?} is not a CRL partition: partitions are ISO weeks, as in 2027-W49.crl")]
    NotAPartition(String),
    /// The week is outside the CA certificate's validity: no certificate of it ends then.
    #[error("no certificate of {0} can end in {1}: it is outside the CA's validity")]
    OutsideValidity(String, String),
    /// No certificate of the CA ends in the week (so no certificate names this CRL).
    #[error("no certificate of {0} ends in {1}")]
    NoCertificates(String, String),
    /// No public URL was ever set (`server.public_url`): certificates name no partition, and
    /// a partition's CRL could not name its own URL.
    #[error("this server has no public URL (server.public_url), so it names no CRL partitions")]
    NoPublicUrl,
}

/// The CRL URL given to profiles that leave `crl_url` to Sigil: the partition's URL on this
/// server, with the placeholder the issuer fills in per certificate.
pub(crate) fn url_template(public_url: &str, ca_label: &str) -> String {
    format!(
        "{}/crl/{ca_label}/{PARTITION_PLACEHOLDER}.crl",
        public_url.trim_end_matches('/')
    )
}

/// Store state: the public URLs certificates have been issued under, one per line. A
/// partition's issuing distribution point names the partition at each of them, so the
/// certificates issued before `server.public_url` changed still find their CRL in scope.
const BASES: &str = "crl_partition_bases";

/// A partition's CRL as the store keeps it: the issuer's revocation count it covers and the
/// number of public URLs it names (8 bytes each, big-endian), then its DER.
pub(super) fn stored(covered: i64, named: usize, der: &[u8]) -> Vec<u8> {
    [
        &covered.to_be_bytes()[..],
        &(named as i64).to_be_bytes(),
        der,
    ]
    .concat()
}

/// [`stored`] read back: (covered, named, DER), or None for anything else.
pub(super) fn from_stored(held: &[u8]) -> Option<(i64, i64, &[u8])> {
    let (header, der) = held.split_first_chunk::<16>()?;
    let (covered, named) = header.split_at(8);
    let number = |b: &[u8]| b.try_into().ok().map(i64::from_be_bytes);
    Some((number(covered)?, number(named)?, der))
}

/// The public URLs recorded in state [`BASES`], one per line.
fn parse_bases(recorded: Option<&[u8]>) -> Vec<String> {
    recorded
        .map(|v| {
            String::from_utf8_lossy(v)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Authority {
    /// Add this node's public URL to the ones partitions name (at start, before serving).
    pub async fn record_crl_base(&self) -> Result<(), crate::store::StoreError> {
        let public = self.inner.public_url.trim_end_matches('/');
        if public.is_empty() {
            return Ok(());
        }
        // Read, add, and write only if nobody wrote meanwhile: two nodes with new public URLs
        // starting together both end up in the list.
        for _ in 0..16 {
            let recorded = self.inner.store.state(BASES).await?;
            let mut bases = parse_bases(recorded.as_deref());
            if bases.iter().any(|b| b == public) {
                return Ok(());
            }
            bases.push(public.to_string());
            if self
                .inner
                .store
                .replace_state(BASES, recorded.as_deref(), bases.join("\n").as_bytes())
                .await?
            {
                tracing::info!(
                    public_url = public,
                    "CRL partitions will name this public URL too"
                );
                return Ok(());
            }
            // Another node wrote meanwhile: let it finish before reading again.
            let mut b = [0u8; 1];
            let jitter = match openssl::rand::rand_bytes(&mut b) {
                Ok(()) => u64::from(b[0] % 40),
                Err(_) => 20,
            };
            tokio::time::sleep(std::time::Duration::from_millis(10 + jitter)).await;
        }
        // Still named by this node's own partitions (crl_bases adds it); the next start
        // tries again.
        tracing::warn!(
            public_url = public,
            "the list of public CRL URLs kept changing; this URL is not recorded for the other nodes"
        );
        Ok(())
    }

    /// The public URLs partitions name: every one recorded, and this node's.
    async fn crl_bases(&self) -> Result<Vec<String>, crate::store::StoreError> {
        let mut bases = self.recorded_bases().await?;
        let public = self.inner.public_url.trim_end_matches('/');
        if !public.is_empty() && !bases.iter().any(|b| b == public) {
            bases.push(public.to_string());
        }
        Ok(bases)
    }

    async fn recorded_bases(&self) -> Result<Vec<String>, crate::store::StoreError> {
        Ok(parse_bases(self.inner.store.state(BASES).await?.as_deref()))
    }

    /// The CRL of one partition of a CA generation (`label`: the active CA's name or a
    /// retired one's; `file`: `YYYY-Www.crl`), from the store while it covers every
    /// revocation of its CA and has half its life left, else made now. One partition is made
    /// at a time on a node; when one cannot be made (the token busy, the store down) the
    /// held one is served while it has not expired.
    pub async fn partition_crl(
        &self,
        label: &str,
        file: &str,
    ) -> Result<Result<Vec<u8>, NoPartition>, RequestError> {
        let generation = if label == self.inner.ca_name {
            None
        } else {
            match self.inner.retired.iter().position(|g| g.label == label) {
                Some(i) => Some(i),
                None => return Ok(Err(NoPartition::NoSuchCa(label.to_string()))),
            }
        };
        let Some(partition) = file.strip_suffix(".crl").and_then(CrlPartition::parse) else {
            return Ok(Err(NoPartition::NotAPartition(file.to_string())));
        };
        if !self.may_end_in(generation, &partition) {
            return Ok(Err(NoPartition::OutsideValidity(
                label.to_string(),
                partition.name(),
            )));
        }
        let unavailable =
            |e: crate::store::StoreError| RequestError::Unavailable(Reason::caused_by(e));
        let key = format!("crl:{label}/{}", partition.name());
        if let Held::Current(der) = self.held_partition(generation, &key).await? {
            return Ok(Ok(der));
        }
        // One build at a time on this node; whoever waited finds it made.
        let _building = self.inner.building_partition.lock().await;
        let held = match self.held_partition(generation, &key).await? {
            Held::Current(der) => return Ok(Ok(der)),
            Held::Lapsing {
                der,
                stored,
                named,
                recheck,
            } => {
                if recheck {
                    // A store that cannot answer now: make it again, or serve the one held
                    // while it has not expired (below), as for any lapsing CRL.
                    match self
                        .reconfirm(generation, &key, &partition, &der, &stored, named)
                        .await
                    {
                        Ok(true) => return Ok(Ok(der)),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, crl = %key, "could not check the partition's CRL against its week's revocations");
                        }
                    }
                }
                Some(der)
            }
            Held::None => None,
        };
        if held.is_none() {
            // Only weeks in which a certificate of this CA ends get a CRL: a week picked at
            // random costs an indexed lookup, never a signature.
            let any = self
                .inner
                .store
                .certificates(&crate::store::CertFilter {
                    issuer: Some(self.generation_issuer(generation).to_string()),
                    not_after_in: Some(partition.window()),
                    limit: 1,
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?;
            if any.is_empty() {
                return Ok(Err(NoPartition::NoCertificates(
                    label.to_string(),
                    partition.name(),
                )));
            }
        }
        let bases = self.crl_bases().await.map_err(unavailable)?;
        if bases.is_empty() {
            return Ok(Err(NoPartition::NoPublicUrl));
        }
        let urls = bases
            .iter()
            .map(|b| url_template(b, label).replace(PARTITION_PLACEHOLDER, &partition.name()))
            .collect();
        match self.make_crl(generation, Some((partition, urls))).await {
            Ok(der) => Ok(Ok(der)),
            Err(e) => match held {
                Some(der) if crl_fresh(&der, 0) => {
                    tracing::warn!(error = %e, crl = %key, "could not make the partition's CRL again; serving the one held until it expires");
                    Ok(Ok(der))
                }
                _ => Err(e),
            },
        }
    }

    /// The held CRL of a partition: current (covers every revocation of its CA, names every
    /// public URL, and has half its life left), lapsing (held but not current), or none.
    async fn held_partition(
        &self,
        generation: Option<usize>,
        key: &str,
    ) -> Result<Held, RequestError> {
        let unavailable =
            |e: crate::store::StoreError| RequestError::Unavailable(Reason::caused_by(e));
        let store = &self.inner.store;
        let Some(held) = store.state(key).await.map_err(unavailable)? else {
            return Ok(Held::None);
        };
        let Some((covered, named, der)) = from_stored(&held) else {
            return Ok(Held::None);
        };
        let mark = store
            .crl_mark(self.generation_issuer(generation))
            .await
            .map_err(unavailable)?;
        let bases = self.crl_bases().await.map_err(unavailable)?;
        let complete = named >= bases.len() as i64 && crl_fresh(der, CRL_HOURS * 3600 / 2);
        Ok(if complete && covered >= mark.revisions {
            Held::Current(der.to_vec())
        } else {
            Held::Lapsing {
                der: der.to_vec(),
                named,
                recheck: complete,
                stored: held,
            }
        })
    }

    /// A held partition CRL made before the latest revocations of its CA: kept when its
    /// week's revocations are still exactly the ones it lists ([`keep_if_unchanged`]).
    async fn reconfirm(
        &self,
        generation: Option<usize>,
        key: &str,
        partition: &CrlPartition,
        der: &[u8],
        held: &[u8],
        named: i64,
    ) -> Result<bool, crate::store::StoreError> {
        let issuer = self.generation_issuer(generation).to_string();
        let book = self.inner.store.as_ref();
        let kept =
            keep_if_unchanged(book, &issuer, key, partition.window(), der, held, named).await?;
        if kept {
            tracing::debug!(crl = %key, "no new revocation in this partition's week: its CRL is kept");
        }
        Ok(kept)
    }

    /// Can a certificate of this generation end in this partition's week (does the week
    /// meet the CA certificate's validity)?
    fn may_end_in(&self, generation: Option<usize>, partition: &CrlPartition) -> bool {
        let (not_before, not_after) = match generation.and_then(|i| self.inner.retired.get(i)) {
            Some(g) => g.validity,
            None => (
                self.inner.ca_not_before,
                self.inner.ca_not_after.unix_timestamp(),
            ),
        };
        let (start, end) = partition.window();
        start <= not_after && not_before < end
    }
}

enum Held {
    Current(Vec<u8>),
    /// Held, not current. `recheck`: it names every public URL and has half its life left,
    /// so only revocations came since it was made. `stored`: the store's value, as read.
    Lapsing {
        der: Vec<u8>,
        stored: Vec<u8>,
        named: i64,
        recheck: bool,
    },
    None,
}

/// What keeping a partition's CRL reads and writes in the store.
#[async_trait::async_trait]
trait PartitionBook: Send + Sync {
    /// Revocations of the issuer, ever (its CRL mark).
    async fn revisions(&self, issuer: &str) -> Result<i64, crate::store::StoreError>;
    /// The issuer's revocations whose notAfter is in the window, as a CRL lists them.
    async fn revoked_in(
        &self,
        issuer: &str,
        window: (i64, i64),
    ) -> Result<Vec<(Vec<u8>, time::OffsetDateTime, i32)>, crate::store::StoreError>;
    /// Compare-and-set of a named piece of CA state.
    async fn replace(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, crate::store::StoreError>;
}

#[async_trait::async_trait]
impl<S: crate::store::Store + ?Sized> PartitionBook for S {
    async fn revisions(&self, issuer: &str) -> Result<i64, crate::store::StoreError> {
        Ok(self.crl_mark(issuer).await?.revisions)
    }

    async fn revoked_in(
        &self,
        issuer: &str,
        window: (i64, i64),
    ) -> Result<Vec<(Vec<u8>, time::OffsetDateTime, i32)>, crate::store::StoreError> {
        let (_, listed) = self.crl_listing(issuer, Some(window)).await?;
        Ok(super::ca::crl_entries(listed))
    }

    async fn replace(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, crate::store::StoreError> {
        self.replace_state(key, Some(expected), value).await
    }
}

/// Keep a partition's held CRL (`held`: the store's value as read, `der` its CRL) when the
/// week's revocations read now are exactly the ones it lists: record it as covering every
/// revocation up to the mark, which is read *before* the list, so a revocation committed
/// between the two is either in the list (the CRL is then made again) or after the mark (the
/// next request looks again). Written only over the value read, so a CRL another node
/// published meanwhile is never replaced. True when kept.
async fn keep_if_unchanged<B: PartitionBook + ?Sized>(
    book: &B,
    issuer: &str,
    key: &str,
    window: (i64, i64),
    der: &[u8],
    held: &[u8],
    named: i64,
) -> Result<bool, crate::store::StoreError> {
    let revisions = book.revisions(issuer).await?;
    let revoked = book.revoked_in(issuer, window).await?;
    if !lists_exactly(der, &revoked) {
        return Ok(false);
    }
    let named = usize::try_from(named).unwrap_or(0);
    book.replace(key, held, &stored(revisions, named, der))
        .await
}

/// Whether the CRL `der` lists exactly these revocations (serial, time, reason; in any order).
/// Anything that does not read, or differs in any way, is false: the CRL is then made again.
fn lists_exactly(der: &[u8], revoked: &[(Vec<u8>, time::OffsetDateTime, i32)]) -> bool {
    let Ok((_, crl)) = x509_parser::parse_x509_crl(der) else {
        return false;
    };
    let trim = |b: &[u8]| {
        b.iter()
            .skip_while(|x| **x == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    let mut listed: Vec<(Vec<u8>, i64, i32)> = crl
        .iter_revoked_certificates()
        .map(|r| {
            (
                trim(r.raw_serial()),
                r.revocation_date.timestamp(),
                r.reason_code().map_or(0, |(_, c)| i32::from(c.0)),
            )
        })
        .collect();
    let mut wanted: Vec<(Vec<u8>, i64, i32)> = revoked
        .iter()
        .map(|(serial, at, reason)| (trim(serial), at.unix_timestamp(), *reason))
        .collect();
    listed.sort();
    wanted.sort();
    listed == wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_partition_reads_back_and_nothing_else_does() {
        let held = stored(41, 2, b"crl");
        assert_eq!(from_stored(&held), Some((41, 2, &b"crl"[..])));
        assert_eq!(from_stored(&held[..15]), None, "truncated header");
        assert_eq!(from_stored(&[]), None);
    }

    #[test]
    fn a_crl_lists_exactly_what_it_was_made_from_and_nothing_else() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            crate::pki::ca_params(crate::pki::parse_dn("CN=Test CA").unwrap(), 30).unwrap();
        let ca = crate::pki::self_signed_ca(&key, &params).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_der(&ca.clone().into(), &key).unwrap();
        let at = |t: i64| time::OffsetDateTime::from_unix_timestamp(t).unwrap();
        let revoked = vec![
            (vec![0x01, 0x02], at(1_800_000_000), 1),
            (vec![0x00, 0x9f, 0x33], at(1_800_000_100), 4),
            (vec![0x7e], at(1_800_000_200), 0),
        ];
        let urls = vec!["https://ca.example/crl/ca/2027-W01.crl".to_string()];
        let der = crate::pki::build_crl(&issuer, &ca, &revoked, 7, 24, Some(&urls)).unwrap();
        // The same revocations in another order, the serial with its sign octet or without.
        let mut same = revoked.clone();
        same.reverse();
        same[1].0 = vec![0x9f, 0x33];
        assert!(lists_exactly(&der, &same));
        // One more, one fewer, another time, another reason, another serial: not the same.
        let mut more = revoked.clone();
        more.push((vec![0x55], at(1_800_000_300), 1));
        assert!(!lists_exactly(&der, &more));
        assert!(!lists_exactly(&der, &revoked[1..]));
        let mut later = revoked.clone();
        later[0].1 = at(1_800_000_001);
        assert!(!lists_exactly(&der, &later));
        let mut reason = revoked.clone();
        reason[0].2 = 3;
        assert!(!lists_exactly(&der, &reason));
        let mut serial = revoked.clone();
        serial[2].0 = vec![0x7f];
        assert!(!lists_exactly(&der, &serial));
        // An empty CRL lists nothing; bytes that are not a CRL list nothing at all.
        let empty = crate::pki::build_crl(&issuer, &ca, &[], 8, 24, Some(&urls)).unwrap();
        assert!(lists_exactly(&empty, &[]));
        assert!(!lists_exactly(b"not a CRL", &[]));
    }

    /// A store in which one more revocation in the week commits after `commit_after` reads
    /// (the mark's and the list's, in whatever order they come).
    struct Book {
        reads: std::sync::Mutex<usize>,
        commit_after: usize,
        before: Vec<(Vec<u8>, time::OffsetDateTime, i32)>,
        state: std::sync::Mutex<Vec<u8>>,
    }

    impl Book {
        fn committed(&self) -> bool {
            let mut reads = self.reads.lock().unwrap();
            let done = *reads >= self.commit_after;
            *reads += 1;
            done
        }
    }

    #[async_trait::async_trait]
    impl PartitionBook for Book {
        async fn revisions(&self, _: &str) -> Result<i64, crate::store::StoreError> {
            Ok(10 + i64::from(self.committed()))
        }

        async fn revoked_in(
            &self,
            _: &str,
            _: (i64, i64),
        ) -> Result<Vec<(Vec<u8>, time::OffsetDateTime, i32)>, crate::store::StoreError> {
            let mut listed = self.before.clone();
            if self.committed() {
                let at = time::OffsetDateTime::from_unix_timestamp(1_800_000_500).unwrap();
                listed.push((vec![0x42], at, 1));
            }
            Ok(listed)
        }

        async fn replace(
            &self,
            _: &str,
            expected: &[u8],
            value: &[u8],
        ) -> Result<bool, crate::store::StoreError> {
            let mut state = self.state.lock().unwrap();
            if state.as_slice() != expected {
                return Ok(false);
            }
            *state = value.to_vec();
            Ok(true)
        }
    }

    async fn keep(b: &Book, der: &[u8], held: &[u8]) -> bool {
        keep_if_unchanged(b, "CN=Test CA", "crl:k", (0, 1), der, held, 1)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_revocation_committed_during_the_check_is_never_covered_unseen() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            crate::pki::ca_params(crate::pki::parse_dn("CN=Test CA").unwrap(), 30).unwrap();
        let ca = crate::pki::self_signed_ca(&key, &params).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_der(&ca.clone().into(), &key).unwrap();
        let at = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let before = vec![(vec![0x07], at, 4)];
        let der = crate::pki::build_crl(&issuer, &ca, &before, 3, 24, None).unwrap();
        let held = stored(9, 1, &der);
        let book = |commit_after: usize| Book {
            reads: std::sync::Mutex::new(0),
            commit_after,
            before: before.clone(),
            state: std::sync::Mutex::new(held.clone()),
        };
        // Nothing new in the week: kept, covering the mark.
        let quiet = book(usize::MAX);
        assert!(keep(&quiet, &der, &held).await);
        assert_eq!(
            from_stored(&quiet.state.lock().unwrap()),
            Some((10, 1, &der[..]))
        );
        // Committed before the first read, or between the two: the list has it, so the CRL
        // is made again and the store keeps what it had.
        for commit_after in [0, 1] {
            let b = book(commit_after);
            assert!(
                !keep(&b, &der, &held).await,
                "committed after {commit_after} reads"
            );
            assert_eq!(*b.state.lock().unwrap(), held);
        }
        // Committed after both reads: kept, but covering only the mark read before it, so
        // the next request looks again.
        let late = book(2);
        assert!(keep(&late, &der, &held).await);
        assert_eq!(
            from_stored(&late.state.lock().unwrap()),
            Some((10, 1, &der[..]))
        );
        // Another node published meanwhile: its CRL stays.
        let other = book(usize::MAX);
        *other.state.lock().unwrap() = b"newer".to_vec();
        assert!(!keep(&other, &der, &held).await);
        assert_eq!(*other.state.lock().unwrap(), b"newer".to_vec());
    }

    #[test]
    fn recorded_bases_skip_blank_lines() {
        assert_eq!(
            parse_bases(Some(b"https://a\n\nhttps://b\n")),
            vec!["https://a".to_string(), "https://b".to_string()]
        );
        assert!(parse_bases(None).is_empty());
    }
}
