//! Issuance writes on SQLite, sharing commits.
//!
//! With `synchronous = FULL` every commit waits for the disk, and one connection writes at a
//! time. So an issuance is queued first and then waits for the connection; whoever holds it
//! takes every queued issuance and writes them in one IMMEDIATE transaction, each in its own
//! savepoint, with one commit. An issuance that fails (challenge spent, transaction taken,
//! serial reused) is rolled back to its savepoint and gets its own error; the others go on.
//! Each writes exactly the rows and audit record it would write alone. If the commit fails,
//! every issuance of the group gets the error and nothing of it is written.
//!
//! An issuance queued while another thread writes is either taken by that thread's next
//! group or by its own thread once it has the connection, so none is left behind.

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};

use super::sqlite::{append_audit, consume, err, CERT_COLUMNS};
use super::sqlite_registrations as reg;
use super::{now, StoreError};

/// One issuance to record.
pub(super) type Job = super::Issuance;

type Queued = (Job, mpsc::SyncSender<Result<(), StoreError>>);

/// Issuances waiting for the connection.
#[derive(Default)]
pub(super) struct IssueQueue {
    waiting: Mutex<Vec<Queued>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl IssueQueue {
    /// Record `job` (see `Store::record_issued`); blocks until its group is committed.
    pub(super) fn record(&self, conn: &Mutex<Connection>, job: Job) -> Result<(), StoreError> {
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
    let results = (|| -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut t = c.transaction().map_err(err)?;
        let mut results = Vec::with_capacity(n);
        for (job, _) in &group {
            let mut sp = t.savepoint().map_err(err)?;
            match issuance_rows(&sp, job) {
                Ok(()) => {
                    sp.commit().map_err(err)?;
                    results.push(Ok(()));
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
        tracing::warn!(error = %e, issuances = n, "an issuance group was not written");
        vec![Err(e); n]
    });
    for ((_, reply), result) in group.into_iter().zip(results) {
        // The caller may have gone (request dropped): the record stands.
        let _ = reply.send(result);
    }
}

/// One issuance: the certificate, its transaction (new, or moved from PENDING), the spent
/// challenge and registration, and the audit record.
fn issuance_rows(t: &Connection, job: &Job) -> Result<(), StoreError> {
    let (tx, cert, challenge) = (&job.tx, &job.cert, job.challenge.as_deref());
    let existing: Option<(String, String)> = t
        .prepare_cached("SELECT key_sha256, state FROM transactions WHERE transaction_id = ?1")
        .and_then(|mut s| {
            s.query_row([&tx.transaction_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(err)?;
    match &existing {
        Some((key, _)) if *key != tx.key_sha256 => {
            return Err(StoreError::Conflict(format!(
                "transaction {} belongs to another key",
                tx.transaction_id
            )))
        }
        Some((_, state)) if state != "pending" => {
            return Err(StoreError::Conflict(format!(
                "transaction {} is already final",
                tx.transaction_id
            )))
        }
        _ => {}
    }
    if let Some(h) = challenge {
        consume(t, h, &tx.profile, &tx.transaction_id)?;
    }
    let at = now();
    t.prepare_cached(&format!(
        "INSERT INTO certificates ({CERT_COLUMNS}, created_at) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))
    .and_then(|mut s| {
        s.execute(params![
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
    })
    .map_err(err)?;
    if existing.is_some() {
        t.prepare_cached(
            "UPDATE transactions SET state = 'issued', serial = ?1, csr = NULL, \
             updated_at = ?2 WHERE transaction_id = ?3 AND state = 'pending'",
        )
        .and_then(|mut s| s.execute(params![cert.serial, at, tx.transaction_id]))
        .map_err(err)?;
    } else {
        t.prepare_cached(
            "INSERT INTO transactions (transaction_id, profile, key_sha256, \
             signer_sha256, state, serial, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 'issued', ?5, ?6, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                tx.transaction_id,
                tx.profile,
                tx.key_sha256,
                tx.signer_sha256,
                cert.serial,
                at
            ])
        })
        .map_err(err)?;
    }
    let (action, details) = job.audit(existing.is_some());
    append_audit(t, &job.actor, action, &cert.serial, &details)?;
    if let Some(h) = challenge {
        reg::link(t, h, &cert.serial, &job.actor)?;
    }
    Ok(())
}
