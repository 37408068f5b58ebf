//! Enrollment writes on SQLite (reservations and issuances), sharing commits.
//!
//! With `synchronous = FULL` every commit waits for the disk, and one connection writes at a
//! time. So a write is queued first and then waits for the connection; whoever holds it
//! takes every queued write and does them in one IMMEDIATE transaction, each in its own
//! savepoint, with one commit. A write that fails (challenge spent, transaction taken,
//! serial reused) is rolled back to its savepoint and gets its own error; the others go on.
//! Each writes exactly the rows and audit record it would write alone. If the commit fails,
//! every write of the group gets the error and nothing of it is written.
//!
//! An issuance queued while another thread writes is either taken by that thread's next
//! group or by its own thread once it has the connection, so none is left behind.

use std::sync::{mpsc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{now, StoreError, TransactionRecord, TransactionState};

use super::{append_audit, consume, err, registrations as reg, CERT_INSERT_COLUMNS};

/// One write of an enrollment.
pub(super) enum Write {
    /// Reserve a transaction (see `Store::reserve`).
    Reserve {
        tx: Box<TransactionRecord>,
        challenge: Option<String>,
        lease_secs: i64,
    },
    /// Record an issuance (see `Store::record_issued`).
    Issue(Box<crate::store::Issuance>),
}

/// What a write did.
pub(super) enum Written {
    /// The reservation's answer: `None` reserved, `Some` the record that exists.
    Reserved(Option<Box<TransactionRecord>>),
    /// The issuance is recorded.
    Issued,
}

type Queued = (Write, mpsc::SyncSender<Result<Written, StoreError>>);

/// Issuances waiting for the connection.
#[derive(Default)]
pub(super) struct IssueQueue {
    waiting: Mutex<Vec<Queued>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl IssueQueue {
    /// Do `job`; blocks until its group is committed.
    pub(super) fn write(
        &self,
        conn: &Mutex<Connection>,
        job: Write,
    ) -> Result<Written, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        lock(&self.waiting).push((job, reply));
        {
            let mut c = lock(conn);
            let group = std::mem::take(&mut *lock(&self.waiting));
            if !group.is_empty() {
                write_group(&mut c, group);
            }
        }
        // Written by this thread just now, or by the thread that held the connection before.
        answer
            .recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("an issuance was lost".into())))
    }
}

fn write_group(c: &mut Connection, group: Vec<Queued>) {
    let n = group.len();
    let results = (|| -> Result<Vec<Result<Written, StoreError>>, StoreError> {
        let mut t = c.transaction().map_err(err)?;
        let mut results = Vec::with_capacity(n);
        for (job, _) in &group {
            let mut sp = t.savepoint().map_err(err)?;
            let done = match job {
                Write::Reserve {
                    tx,
                    challenge,
                    lease_secs,
                } => super::reserve_rows(&sp, tx, challenge.as_deref(), *lease_secs)
                    .map(|r| Written::Reserved(r.map(Box::new))),
                Write::Issue(issuance) => issuance_rows(&sp, issuance).map(|()| Written::Issued),
            };
            match done {
                Ok(w) => {
                    sp.commit().map_err(err)?;
                    results.push(Ok(w));
                }
                Err(e) => {
                    // Explicitly, so a failed rollback fails the group instead of leaving
                    // half an issuance to be committed with it.
                    sp.rollback().map_err(err)?;
                    sp.finish().map_err(err)?;
                    results.push(Err(e));
                }
            }
            // SQLite rolls the whole transaction back by itself on some errors (disk full,
            // I/O): then nothing of the group is written, and every later statement would
            // run in a transaction of its own.
            if t.is_autocommit() {
                return Err(StoreError::Unavailable(
                    "SQLite rolled the issuance group back".into(),
                ));
            }
        }
        if results.iter().any(Result::is_ok) {
            t.commit().map_err(err)?;
        }
        Ok(results)
    })()
    .unwrap_or_else(|e| {
        tracing::warn!(error = %e, writes = n, "an enrollment write group was not written");
        (0..n).map(|_| Err(e.clone())).collect()
    });
    for ((_, reply), result) in group.into_iter().zip(results) {
        // The caller may have gone (request dropped): the record stands.
        let _ = reply.send(result);
    }
}

/// One issuance: the certificate, its transaction (moved from its reservation or from
/// PENDING), the spent challenge and registration, the renewed certificate, and the audit
/// record.
fn issuance_rows(t: &Connection, job: &crate::store::Issuance) -> Result<(), StoreError> {
    let (tx, cert, challenge) = (&job.tx, &job.cert, job.challenge.as_deref());
    type Row = (String, String, Option<String>, Option<String>);
    let existing: Option<Row> = t
        .prepare_cached(
            "SELECT key_sha256, state, holder, challenge_id FROM transactions WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([&tx.id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(err)?;
    // The state the caller moves the transaction from: its reservation, or (an approval) the
    // PENDING record it claimed.
    let from = if tx.state == TransactionState::Pending {
        "pending"
    } else {
        "issuing"
    };
    let was_pending = match &existing {
        Some((key, ..)) if *key != tx.key_sha256 => {
            return Err(StoreError::Conflict(format!(
                "transaction {} belongs to another key",
                tx.transaction_id
            )))
        }
        Some((_, state, holder, _)) if state == from && *holder != tx.holder => {
            return Err(StoreError::Conflict(format!(
                "transaction {} is held by another reservation",
                tx.transaction_id
            )))
        }
        // A reservation made with a challenge is issued by spending that challenge.
        Some((_, state, _, Some(_))) if state == "issuing" && challenge.is_none() => {
            return Err(StoreError::ChallengeSpent)
        }
        Some((_, state, ..)) if state == from => from == "pending",
        Some(_) => {
            return Err(StoreError::Conflict(format!(
                "transaction {} is not {from} (it is final, or moved on)",
                tx.transaction_id
            )))
        }
        None => {
            return Err(StoreError::Conflict(format!(
                "transaction {} was not reserved",
                tx.transaction_id
            )))
        }
    };
    if let Some(h) = challenge {
        let named = existing.as_ref().and_then(|e| e.3.as_deref());
        consume(t, h, named, &tx.profile, &tx.id, &tx.transaction_id)?;
    }
    let at = now();
    insert_certificate(t, cert, at, "").map_err(|e| match err(e) {
        StoreError::Conflict(_) => StoreError::SerialTaken,
        other => other,
    })?;
    t.prepare_cached(
        "UPDATE transactions SET state = 'issued', serial = ?1, csr = NULL, \
         reserved_until = NULL, holder = NULL, updated_at = ?2 WHERE id = ?3 AND state = ?4",
    )
    .and_then(|mut s| s.execute(params![cert.serial, at, tx.id, from]))
    .map_err(err)?;
    if let Some(old) = &tx.renews {
        // A certificate renews once, and only while it is valid.
        let n = t
            .prepare_cached(
                "UPDATE certificates SET renewed_by = ?1 \
                 WHERE serial = ?2 AND status = 'valid' AND renewed_by IS NULL",
            )
            .and_then(|mut s| s.execute(params![cert.serial, old]))
            .map_err(err)?;
        if n != 1 {
            return Err(StoreError::Stale(format!(
                "renewal refused: certificate {old} was revoked or renewed meanwhile"
            )));
        }
    }
    let (action, details) = job.audit(was_pending);
    append_audit(t, &job.actor, action, &cert.serial, &details)?;
    if let Some(h) = challenge {
        reg::link(t, h, &cert.serial, tx.renews.is_some(), &job.actor)?;
    }
    if let Some(old) = &tx.renews {
        reg::relink(t, old, &cert.serial, &job.actor)?;
    }
    Ok(())
}

/// Insert one certificate row, stored at `at`; `conflict` is appended to the statement (`ON
/// CONFLICT (serial) DO NOTHING` for imports). How many rows were written.
pub(super) fn insert_certificate(
    t: &rusqlite::Connection,
    cert: &crate::store::CertificateRecord,
    at: i64,
    conflict: &str,
) -> rusqlite::Result<usize> {
    t.prepare_cached(&format!(
        "INSERT INTO certificates ({CERT_INSERT_COLUMNS}, created_at) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) {conflict}"
    ))?
    .execute(params![
        cert.serial,
        cert.der,
        cert.subject,
        cert.sans,
        cert.issuer,
        cert.not_before,
        cert.not_after,
        cert.profile,
        cert.status.as_str(),
        cert.revoked_at,
        cert.revocation_reason,
        cert.transaction_id,
        cert.device_id,
        at
    ])
}
