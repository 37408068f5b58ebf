//! Issuance writes on PostgreSQL, grouped into shared database transactions.
//!
//! Every write appends to the audit chain, whose head is one row: each writer locks it, so on
//! PostgreSQL issuances are serialised on that lock for the length of their transaction,
//! commit included. Under load most of their time was spent waiting there.
//!
//! So each store sends its issuances to one writer task, which takes whatever has queued up
//! (at most [`MAX_BATCH`]) and writes it in one database transaction:
//!
//! 1. each issuance's rows (transaction, challenge, certificate, registration) inside its own
//!    savepoint. An issuance that fails (challenge spent, transaction taken, serial reused)
//!    is rolled back to its savepoint and gets its own error; the others go on;
//! 2. then the audit records of those that succeeded, chained in one statement under one lock
//!    of the head, and one commit.
//!
//! What is stored per issuance is exactly what a lone issuance stores; only the commit is
//! shared. If the commit fails, every issuance of the group gets the error and nothing of
//! the group is written. Rows are always locked before the audit head, the order every other
//! writer uses, so a group cannot deadlock with them.
//!
//! The writer runs on the runtime of the first caller and is started again by the next
//! caller if that runtime has stopped.

use std::sync::{Arc, Mutex};

use deadpool_postgres::{Pool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::postgres::{err, pool_err};
use super::postgres_registrations as reg;
use super::{now, CertificateRecord, StoreError, TransactionRecord};
use tokio_postgres::types::ToSql;

/// The most issuances one database transaction takes (each has a savepoint, and PostgreSQL
/// keeps 64 subtransactions per transaction in memory).
pub(super) const MAX_BATCH: usize = 32;

/// Writer tasks per store. Each group's rows take several round trips, and on a busy machine
/// each round trip waits for the scheduler; with a few writers those waits overlap, and only
/// the audit append (under the head lock) and the commit are taken one group at a time.
const WRITERS: usize = 3;

/// An audit record waiting for its place in the chain.
pub(super) struct AuditEntry {
    pub(super) actor: String,
    pub(super) action: String,
    pub(super) subject: String,
    pub(super) details: serde_json::Value,
}

/// Append `entries` to the audit chain in order, inside `t`: lock the head, chain them, write
/// them and the new head in one statement.
pub(super) async fn append_audits(
    t: &Transaction<'_>,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let lock_head = t
        .prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
        .await
        .map_err(err)?;
    let head = t.query_one(&lock_head, &[]).await.map_err(err)?;
    let (mut seq, mut prev): (i64, String) = (head.get(0), head.get(1));
    let n = entries.len();
    let (mut seqs, mut ats, mut actors, mut actions) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut subjects, mut details, mut prevs, mut hashes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let at = now();
    for e in entries {
        seq += 1;
        let text = e.details.to_string();
        let hash = super::audit_hash(&prev, seq, at, &e.actor, &e.action, &e.subject, &text);
        seqs.push(seq);
        ats.push(at);
        actors.push(e.actor.as_str());
        actions.push(e.action.as_str());
        subjects.push(e.subject.as_str());
        details.push(text);
        prevs.push(std::mem::replace(&mut prev, hash.clone()));
        hashes.push(hash);
    }
    let append = t
        .prepare_cached(
            "WITH appended AS ( \
               INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash) \
               SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], \
                                    $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[])) \
             UPDATE audit_head SET seq = $9, hash = $10 WHERE id = 1",
        )
        .await
        .map_err(err)?;
    t.execute(
        &append,
        &[
            &seqs, &ats, &actors, &actions, &subjects, &details, &prevs, &hashes, &seq, &prev,
        ],
    )
    .await
    .map_err(err)?;
    Ok(())
}

/// One issuance to record.
struct Job {
    tx: TransactionRecord,
    cert: CertificateRecord,
    challenge: Option<String>,
    actor: String,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// The queue to a store's issuance writer.
#[derive(Default)]
pub(super) struct IssueQueue {
    sender: Mutex<Option<mpsc::UnboundedSender<Job>>>,
}

impl IssueQueue {
    /// Record an issuance (see `Store::record_issued`); returns when its group is committed.
    pub(super) async fn record(
        &self,
        pool: &Pool,
        tx: &TransactionRecord,
        cert: &CertificateRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            tx: tx.clone(),
            cert: cert.clone(),
            challenge: challenge.map(str::to_owned),
            actor: actor.to_owned(),
            reply,
        };
        {
            let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
            let job = match sender.as_ref() {
                Some(s) => s.send(job).err().map(|mpsc::error::SendError(job)| job),
                None => Some(job),
            };
            if let Some(job) = job {
                // No writers yet, or their runtime has stopped: start them here.
                let (s, r) = mpsc::unbounded_channel();
                let r = Arc::new(tokio::sync::Mutex::new(r));
                for _ in 0..WRITERS {
                    tokio::spawn(writer(pool.clone(), r.clone()));
                }
                s.send(job).map_err(|_| {
                    StoreError::Unavailable("the issuance writers did not start".into())
                })?;
                *sender = Some(s);
            }
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the issuance writer stopped".into()))?
    }
}

async fn writer(pool: Pool, queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>>) {
    loop {
        // One writer at a time takes what has queued up; the others write meanwhile.
        let group = {
            let mut jobs = queue.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut group = vec![first];
            while group.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(j) => group.push(j),
                    Err(_) => break,
                }
            }
            group
        };
        let results = match write_group(&pool, &group).await {
            Ok(r) => r,
            Err(e) if group.len() == 1 => vec![Err(e)],
            Err(e) => {
                // Two groups can deadlock on resends of the same transactions, and PostgreSQL
                // then aborts one; or the database went away. Either way nothing of the group
                // was written: write each issuance alone, so one cannot fail the others.
                tracing::warn!(error = %e, issuances = group.len(), "an issuance group failed; writing its issuances one by one");
                let mut alone = Vec::with_capacity(group.len());
                for job in &group {
                    alone.push(match write_group(&pool, std::slice::from_ref(job)).await {
                        Ok(mut r) => r.pop().unwrap_or_else(|| {
                            Err(StoreError::Unavailable("no result for an issuance".into()))
                        }),
                        Err(e) => Err(e),
                    });
                }
                alone
            }
        };
        for (job, result) in group.into_iter().zip(results) {
            // The caller may have gone (client disconnected): the record stands.
            let _ = job.reply.send(result);
        }
    }
}

/// Write a group in one database transaction; one result per issuance. `Err` when the
/// transaction as a whole failed (then nothing was written).
async fn write_group(
    pool: &Pool,
    group: &[Job],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut c = pool.get().await.map_err(pool_err)?;
    let t = c.transaction().await.map_err(err)?;
    let alone = group.len() == 1;
    let mut results = Vec::with_capacity(group.len());
    let mut audits = Vec::new();
    // A savepoint per issuance; releasing one and opening the next is one round trip.
    let mut open_savepoint = false;
    for job in group {
        if !alone {
            t.batch_execute(if open_savepoint {
                "RELEASE SAVEPOINT issuance; SAVEPOINT issuance"
            } else {
                "SAVEPOINT issuance"
            })
            .await
            .map_err(err)?;
            open_savepoint = true;
        }
        match issuance_rows(&t, job).await {
            Ok(entries) => {
                audits.extend(entries);
                results.push(Ok(()));
            }
            Err(e) => {
                if alone {
                    // Dropping the transaction rolls it back.
                    return Ok(vec![Err(e)]);
                }
                t.batch_execute("ROLLBACK TO SAVEPOINT issuance; RELEASE SAVEPOINT issuance")
                    .await
                    .map_err(err)?;
                open_savepoint = false;
                results.push(Err(e));
            }
        }
    }
    if audits.is_empty() {
        return Ok(results);
    }
    append_audits(&t, &audits).await?;
    t.commit().await.map_err(err)?;
    Ok(results)
}

/// The certificate row of an issuance, inserted only when the statement's `step` (a CTE
/// that records the transaction) touched a row. Parameters $1..$14.
const INSERT_CERT: &str = "INSERT INTO certificates (serial, der, subject, sans, issuer, \
     not_before, not_after, profile, status, revoked_at, revocation_reason, transaction_id, \
     device_id, created_at) \
     SELECT $1::TEXT, $2::BYTEA, $3::TEXT, $4::TEXT, $5::TEXT, $6::BIGINT, $7::BIGINT, $8::TEXT, \
       $9::TEXT, $10::BIGINT, $11::INTEGER, $12::TEXT, $13::TEXT, $14::BIGINT \
     WHERE EXISTS (SELECT 1 FROM step)";

/// One issuance's rows; returns its audit records, to be chained after the group's rows.
/// A new enrollment is one statement (transaction and certificate); an approval, which moves
/// a PENDING transaction, is a second.
async fn issuance_rows(t: &Transaction<'_>, job: &Job) -> Result<Vec<AuditEntry>, StoreError> {
    let (tx, cert, challenge) = (&job.tx, &job.cert, job.challenge.as_deref());
    let at = now();
    if let Some(h) = challenge {
        // Registration row, then challenge row, then transaction row: the order every other
        // writer of them takes, so two nodes cannot deadlock on them.
        t.query_opt(
            "SELECT id FROM registrations WHERE challenge_hash = $1 FOR UPDATE",
            &[&h],
        )
        .await
        .map_err(err)?;
        super::postgres::consume(t, h, &tx.profile, &tx.transaction_id).await?;
    }
    let status = cert.status.as_str();
    let cert_args: [&(dyn ToSql + Sync); 14] = [
        &cert.serial,
        &cert.der,
        &cert.subject,
        &cert.sans,
        &cert.issuer,
        &cert.not_before,
        &cert.not_after,
        &cert.profile,
        &status,
        &cert.revoked_at,
        &cert.revocation_reason,
        &cert.transaction_id,
        &cert.device_id,
        &at,
    ];
    let mut args = cert_args.to_vec();
    args.extend_from_slice(&[
        &tx.transaction_id as &(dyn ToSql + Sync),
        &tx.profile,
        &tx.key_sha256,
        &tx.signer_sha256,
    ]);
    let record_new = t
        .prepare_cached(&format!(
            "WITH step AS ( \
                   INSERT INTO transactions (transaction_id, profile, key_sha256, \
                     signer_sha256, state, serial, created_at, updated_at) \
                   VALUES ($15, $16, $17, $18, 'issued', $1, $14, $14) \
                   ON CONFLICT (transaction_id) DO NOTHING RETURNING 1) \
                 {INSERT_CERT}"
        ))
        .await
        .map_err(err)?;
    let recorded_new = t.execute(&record_new, &args).await.map_err(err)? == 1;
    let approved = !recorded_new;
    if approved {
        // The transaction exists: only a PENDING one of the same key may be issued.
        let mut args = cert_args.to_vec();
        args.extend_from_slice(&[&tx.transaction_id as &(dyn ToSql + Sync), &tx.key_sha256]);
        let moved = t
            .execute(
                &format!(
                    "WITH step AS ( \
                       UPDATE transactions SET state = 'issued', serial = $1, csr = NULL, \
                         updated_at = $14 \
                       WHERE transaction_id = $15 AND key_sha256 = $16 AND state = 'pending' \
                       RETURNING 1) \
                     {INSERT_CERT}"
                ),
                &args,
            )
            .await
            .map_err(err)?;
        if moved != 1 {
            return Err(StoreError::Conflict(format!(
                "transaction {} belongs to another key or is already final",
                tx.transaction_id
            )));
        }
    }
    let mut audits = vec![AuditEntry {
        actor: job.actor.clone(),
        action: if approved { "approved" } else { "issued" }.into(),
        subject: cert.serial.clone(),
        details: serde_json::json!({
            "transaction_id": tx.transaction_id, "profile": cert.profile,
            "subject": cert.subject, "sans": cert.sans, "not_after": cert.not_after,
            "one_time_challenge": challenge.is_some(),
        }),
    }];
    if let Some(h) = challenge {
        audits.extend(reg::link_rows(t, h, &cert.serial, &job.actor).await?);
    }
    Ok(audits)
}
