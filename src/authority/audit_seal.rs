//! Seals on the audit log: its head (sequence number and hash) signed by an audit key of its
//! own on the token, so whoever can write the database cannot rewrite even the latest records
//! unnoticed.
//!
//! The sealer watches the stored head and seals it within `audit.seal_interval_ms` of every
//! commit (the records committed meanwhile are one batch, one signature). Each seal is kept in
//! the store (the latest), appended to a file outside the database (`audit.heads_file`, one
//! JSON line per seal, fsynced) and, where configured, sent to syslog, so an operator can ship
//! the seals to a system the database's writers do not control. `sigil audit verify --heads
//! FILE` checks the database against every seal in that file.
//!
//! The audit key is not the RA key: that one answers anonymous SCEP requests all day. It is
//! labelled `audit.key` (default `sigil-audit`), independent of CA rollovers, so seals made
//! before a rollover still verify after it.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use openssl::pkey::{PKey, Public};
use serde::{Deserialize, Serialize};

use super::{Authority, RequestError};
use crate::reason::Reason;
use crate::store::{AuditStore, ChainCheck, StoreError};

/// The store's state key holding the latest seal.
const STATE_KEY: &str = "audit_head_sealed";

/// Records read per page when checking the log.
pub const PAGE: usize = 5_000;

/// `[audit]`: how the audit log is sealed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SealSettings {
    /// The audit key's label on the token (made by `sigil init` or the first `serve`).
    pub key: String,
    /// The append-only file every seal is written to (default `<data_dir>/audit-heads.jsonl`).
    pub heads_file: String,
    /// A syslog socket (`/dev/log`) every seal is also sent to, as an `authpriv.info` message
    /// tagged `sigil-audit`; empty: none.
    pub syslog: String,
    /// How often the sealer looks for new records (milliseconds).
    pub seal_interval_ms: u64,
}

impl Default for SealSettings {
    fn default() -> Self {
        SealSettings {
            key: "sigil-audit".into(),
            heads_file: String::new(),
            syslog: String::new(),
            seal_interval_ms: 250,
        }
    }
}

impl SealSettings {
    /// The heads file, `<data_dir>/audit-heads.jsonl` unless set.
    pub fn heads_path(&self, data_dir: &Path) -> PathBuf {
        if self.heads_file.is_empty() {
            data_dir.join("audit-heads.jsonl")
        } else {
            PathBuf::from(&self.heads_file)
        }
    }
}

/// One seal: the audit log's head as the audit key signed it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    /// The last record's sequence number.
    pub seq: i64,
    /// The last record's hash.
    pub hash: String,
    /// When it was sealed (Unix seconds).
    pub at: i64,
    /// SHA-256 of the audit key's public key (SubjectPublicKeyInfo DER), hex.
    pub key_sha256: String,
    /// RSASSA-PKCS1-v1_5 with SHA-256 over [`Seal::message`], base64.
    pub signature: String,
}

impl Seal {
    /// The text the audit key signs.
    pub fn message(seq: i64, hash: &str, at: i64) -> String {
        format!("sigil-audit-seal:{seq}:{hash}:{at}")
    }

    /// Does the signature verify with `key`?
    pub fn verifies(&self, key: &PKey<Public>) -> bool {
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(&self.signature)
        else {
            return false;
        };
        openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), key)
            .and_then(|mut v| {
                v.update(Self::message(self.seq, &self.hash, self.at).as_bytes())?;
                v.verify(&signature)
            })
            .unwrap_or(false)
    }

    /// The seal as one line of the heads file (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a heads file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a seal.
    #[error("{path} line {line} is not a seal: {source}")]
    Line {
        /// The file.
        path: String,
        /// Its line number (from 1).
        line: usize,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The seals of a heads file, one at a time (with their line numbers), so a file of any
/// length is read in constant memory. Empty lines are skipped.
pub fn read_seals(
    path: &Path,
) -> Result<impl Iterator<Item = Result<(usize, Seal), SealError>>, SealError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| SealError::Read {
        path: shown.clone(),
        source,
    })?;
    Ok(std::io::BufReader::new(file)
        .lines()
        .enumerate()
        .filter_map(move |(i, line)| match line {
            Err(source) => Some(Err(SealError::Read {
                path: shown.clone(),
                source,
            })),
            Ok(l) if l.trim().is_empty() => None,
            Ok(l) => Some(
                serde_json::from_str::<Seal>(&l)
                    .map(|s| (i + 1, s))
                    .map_err(|source| SealError::Line {
                        path: shown.clone(),
                        line: i + 1,
                        source,
                    }),
            ),
        }))
}

/// What a check of the audit log found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditCheck {
    /// Records read.
    pub records: usize,
    /// The stored head's sequence number.
    pub head_seq: i64,
    /// The latest seal in the store, when it verified and is in the chain.
    pub signed_head_seq: Option<i64>,
    /// Seals from a heads file checked against the chain.
    pub heads_checked: usize,
    /// Records after the latest seal in the store (made since, by the command line or a
    /// stopped sealer): not protected until the next seal.
    pub unsealed: i64,
    /// What is wrong, if anything.
    pub problem: Option<String>,
}

/// Check the audit log read from `store` a page at a time (`page` records): the chain, the
/// stored head, the store's latest seal, and every seal of `heads` (in the order they were
/// written, so by sequence number). Seals verify with `key` (the audit key's public half,
/// read from the token, never from the database being checked). With `seal_expected` (the
/// audit key exists, so the store must hold a seal), a log with records but no readable seal
/// is a problem: a database writer deleted or damaged it.
pub async fn check_log<'a>(
    store: &dyn AuditStore,
    stored_seal: Option<Seal>,
    seal_expected: bool,
    key: Option<&'a PKey<Public>>,
    heads: Option<&'a mut dyn Iterator<Item = Result<(usize, Seal), SealError>>>,
    page: usize,
) -> Result<AuditCheck, StoreError> {
    let mut check = AuditCheck::default();
    let (head_seq, head_hash) = store.audit_head().await?;
    check.head_seq = head_seq;
    // Reported last, so what the heads file proves (a named record) comes first.
    let seal_gone = seal_expected && stored_seal.is_none() && head_seq > 0;
    if let Some(s) = &stored_seal {
        check.unsealed = (head_seq - s.seq).max(0);
    }
    let mut seals = SealQueue {
        heads,
        key,
        next: None,
        last_seq: 0,
    };
    if let Some(s) = &stored_seal {
        if !key.is_some_and(|k| s.verifies(k)) {
            check.problem = Some(format!(
                "the stored seal of record {} does not verify with the audit key",
                s.seq
            ));
            return Ok(check);
        }
    }
    if let Err(why) = seals.advance() {
        check.problem = Some(why);
        return Ok(check);
    }
    let mut chain = ChainCheck::default();
    let (mut head_seq, mut head_hash) = (head_seq, head_hash);
    // Records appended while the log is read move the head on: up to this many times the
    // check follows it, so a verification of a busy server does not report a false break.
    let mut follow = 100;
    loop {
        let records = store.audit_records(chain.last().0, page.max(1)).await?;
        if records.is_empty() {
            match chain.finish((head_seq, &head_hash)) {
                Err(_) if follow > 0 && chain.last().0 > head_seq => {
                    follow -= 1;
                    let (seq, hash) = store.audit_head().await?;
                    if seq == head_seq {
                        // Records past a head that did not move: reported below.
                        break;
                    }
                    (head_seq, head_hash) = (seq, hash);
                    check.head_seq = seq;
                    continue;
                }
                _ => break,
            }
        }
        for r in &records {
            if let Err((at, why)) = chain.push(r) {
                check.problem = Some(format!("broken at record {at}: {why}"));
                return Ok(check);
            }
            check.records += 1;
            if let Some(s) = stored_seal.as_ref().filter(|s| s.seq == r.seq) {
                if s.hash != r.hash {
                    check.problem = Some(rewritten(r.seq, "the stored seal"));
                    return Ok(check);
                }
                check.signed_head_seq = Some(s.seq);
            }
            while let Some((line, same)) = seals
                .next
                .as_ref()
                .filter(|(_, s)| s.seq == r.seq)
                .map(|(line, s)| (*line, s.hash == r.hash))
            {
                if !same {
                    check.problem = Some(rewritten(r.seq, &format!("line {line} of the heads")));
                    return Ok(check);
                }
                check.heads_checked += 1;
                if let Err(why) = seals.advance() {
                    check.problem = Some(why);
                    return Ok(check);
                }
            }
        }
        if records.len() < page.max(1) && chain.last().0 <= head_seq {
            break;
        }
    }
    if let Err((at, why)) = chain.finish((head_seq, &head_hash)) {
        check.problem = Some(format!("broken at record {at}: {why}"));
        return Ok(check);
    }
    let end = chain.last().0;
    let unmatched = stored_seal
        .as_ref()
        .filter(|s| s.seq > end)
        .map(|s| s.seq)
        .or(seals.next.as_ref().map(|(_, s)| s.seq));
    if let Some(sealed) = unmatched {
        check.problem = Some(if sealed > end {
            format!(
                "broken at record {sealed}: the log ends at record {end} but the audit key sealed record {sealed} (records deleted)"
            )
        } else {
            format!("broken at record {sealed}: a seal names a record the log does not have")
        });
    } else if seal_gone {
        check.problem = Some(
            "the store holds no readable seal although the audit key exists: it was deleted or damaged (check the log against a heads file kept elsewhere: sigil audit verify --heads FILE)"
                .into(),
        );
    }
    Ok(check)
}

fn rewritten(seq: i64, by: &str) -> String {
    format!("broken at record {seq}: the log was rewritten after {by} sealed it")
}

/// The seals of a heads file, each verified as it is read.
struct SealQueue<'a> {
    heads: Option<&'a mut dyn Iterator<Item = Result<(usize, Seal), SealError>>>,
    key: Option<&'a PKey<Public>>,
    next: Option<(usize, Seal)>,
    last_seq: i64,
}

impl SealQueue<'_> {
    /// Read the next seal; a seal that does not verify, or goes back in sequence, is a problem.
    fn advance(&mut self) -> Result<(), String> {
        self.next = None;
        let Some(heads) = self.heads.as_mut() else {
            return Ok(());
        };
        match heads.next() {
            None => Ok(()),
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok((line, seal))) => {
                if !self.key.is_some_and(|k| seal.verifies(k)) {
                    return Err(format!(
                        "line {line} of the heads (record {}) does not verify with the audit key",
                        seal.seq
                    ));
                }
                if seal.seq < self.last_seq {
                    return Err(format!(
                        "line {line} of the heads seals record {} after record {}: out of order",
                        seal.seq, self.last_seq
                    ));
                }
                self.last_seq = seal.seq;
                self.next = Some((line, seal));
                Ok(())
            }
        }
    }
}

/// Where seals go besides the store.
#[derive(Debug, Clone)]
pub(crate) struct SealOutlets {
    pub(crate) heads_file: PathBuf,
    pub(crate) syslog: Option<PathBuf>,
    pub(crate) key_label: String,
    pub(crate) interval: std::time::Duration,
}

impl SealOutlets {
    pub(crate) fn new(settings: &SealSettings, data_dir: &Path) -> SealOutlets {
        SealOutlets {
            heads_file: settings.heads_path(data_dir),
            syslog: (!settings.syslog.is_empty()).then(|| PathBuf::from(&settings.syslog)),
            key_label: settings.key.clone(),
            interval: std::time::Duration::from_millis(settings.seal_interval_ms.max(10)),
        }
    }

    /// Append `seal` to the heads file and make it durable.
    fn append(&self, seal: &Seal) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.heads_file)?;
        // A line cut short by a crash is closed first, so this seal stays readable.
        let len = f.metadata()?.len();
        let mut line = String::new();
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            f.seek(SeekFrom::Start(len - 1))?;
            f.read_exact(&mut last)?;
            if last[0] != b'\n' {
                line.push('\n');
            }
        }
        line.push_str(&seal.to_line());
        line.push('\n');
        f.write_all(line.as_bytes())?;
        f.sync_data()
    }

    /// Send `seal` to syslog (RFC 5424, facility authpriv, severity info).
    fn syslog(&self, seal: &Seal) -> std::io::Result<()> {
        let Some(socket) = &self.syslog else {
            return Ok(());
        };
        let when = time::OffsetDateTime::from_unix_timestamp(seal.at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "-".into());
        let line = format!(
            "<86>1 {when} - sigil-audit {} audit-seal - {}",
            std::process::id(),
            seal.to_line()
        );
        std::os::unix::net::UnixDatagram::unbound()?.send_to(line.as_bytes(), socket)?;
        Ok(())
    }
}

impl Authority {
    /// The audit key (made and certified on first use; blocking: the token).
    fn audit_key_blocking(&self) -> Result<std::sync::Arc<super::PurposeKey>, RequestError> {
        let label = &self.inner.seal.key_label;
        self.purpose_key_blocking(label, &format!("{} audit seal", self.inner.ca_name))
    }

    /// The audit key's public half (blocking: the token on first use).
    pub fn audit_public_key_blocking(&self) -> Result<PKey<Public>, RequestError> {
        self.audit_key_blocking()?
            .public_key()
            .to_openssl()
            .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))
    }

    /// Seal the audit log's head if it moved since this node last sealed it: sign it with the
    /// audit key, append it to the heads file, send it to syslog, keep it in the store.
    /// Returns the seal made, if any.
    pub async fn seal_audit(&self) -> Result<Option<Seal>, RequestError> {
        let unavailable = |e: StoreError| RequestError::Unavailable(Reason::caused_by(e));
        let store = &self.inner.store;
        let (seq, hash) = store.audit_head().await.map_err(unavailable)?;
        let last = self
            .inner
            .last_seal
            .load(std::sync::atomic::Ordering::Acquire);
        if seq == 0 || seq <= last {
            return Ok(None);
        }
        let _permit = self
            .inner
            .key
            .hsm
            .admit(crate::hsm::WorkClass::Background)
            .await
            .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))?;
        let ra = self.clone();
        let seal = tokio::task::spawn_blocking(move || -> Result<Seal, RequestError> {
            let key = ra.audit_key_blocking()?;
            let at = crate::clock::now();
            let signature = key.sign(Seal::message(seq, &hash, at).as_bytes())?;
            let spki = key
                .public_key()
                .spki_der()
                .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))?;
            let seal = Seal {
                seq,
                hash,
                at,
                key_sha256: crate::pki::sha256_fingerprint(&spki),
                signature: base64::engine::general_purpose::STANDARD.encode(signature),
            };
            let outlets = &ra.inner.seal;
            outlets.append(&seal).map_err(|e| {
                let file = outlets.heads_file.display();
                RequestError::Unavailable(Reason::context(
                    format!("cannot append to the audit heads file {file}"),
                    e,
                ))
            })?;
            if let Err(e) = outlets.syslog(&seal) {
                tracing::warn!(error = %e, "could not send the audit seal to syslog");
            }
            Ok(seal)
        })
        .await
        .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))??;
        store
            .set_state(STATE_KEY, seal.to_line().as_bytes())
            .await
            .map_err(unavailable)?;
        self.inner
            .last_seal
            .fetch_max(seq, std::sync::atomic::Ordering::AcqRel);
        tracing::debug!(seq, "audit head sealed");
        Ok(Some(seal))
    }

    /// Seal the audit log for as long as the server runs.
    pub async fn sealing(self) {
        let mut tick = tokio::time::interval(self.inner.seal.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // One node seals (the one leading "audit"), so seals come in order, once.
            match self.inner.store.lead("audit").await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "audit seal: cannot reach the store");
                    continue;
                }
            }
            if let Err(e) = self.seal_audit().await {
                tracing::warn!(error = %e, "could not seal the audit log");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    }

    /// Check the audit chain, its stored head and its latest seal (with the audit key): what
    /// an auditor runs before trusting the log.
    pub async fn verify_audit(&self) -> Result<AuditCheck, RequestError> {
        let ra = self.clone();
        let key = tokio::task::spawn_blocking(move || ra.audit_public_key_blocking())
            .await
            .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))??;
        let stored = stored_seal(self.inner.store.as_ref())
            .await
            .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))?;
        check_log(
            self.inner.store.as_ref(),
            stored,
            true,
            Some(&key),
            None,
            PAGE,
        )
        .await
        .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))
    }
}

/// The latest seal kept in the store, if any (a record of an older format counts as none).
pub async fn stored_seal(store: &dyn crate::store::Store) -> Result<Option<Seal>, StoreError> {
    Ok(store
        .state(STATE_KEY)
        .await?
        .and_then(|b| serde_json::from_slice::<Seal>(&b).ok()))
}

#[cfg(test)]
#[path = "audit_seal_tests.rs"]
mod tests;
