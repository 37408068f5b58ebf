//! Issuance writes on PostgreSQL, grouped into shared database transactions.
//!
//! Every write appends to the audit chain, whose head is one row that each writer locks, so
//! issuances written one by one are serialised on that lock for the length of their
//! transaction, commit included; under load most of their time went to waiting there, and
//! PostgreSQL's own work per statement competed with the token for the CPU.
//!
//! So each store sends its issuances to one writer task, which takes whatever has queued up
//! (at most [`MAX_BATCH`]) and writes it in one database transaction:
//!
//! 1. new enrollments without a challenge or a renewed certificate, all in one statement:
//!    each reservation of the same key becomes issued, with its certificate;
//! 2. the rest one by one: approvals of PENDING transactions, reservations that were gone,
//!    and issuances that spend a challenge or renew a certificate, which get a savepoint each.
//!    One that fails (challenge spent, certificate renewed meanwhile) gets its own error; the
//!    others go on;
//! 3. the audit records of those written, chained in one statement under one lock of the
//!    head, and one commit.
//!
//! Each issuance stores exactly what it would store alone; only statements and the commit
//! are shared. A database error (a serial that exists, a deadlock with another node, a lost
//! connection) fails the whole group, and the writer then writes its issuances one by one,
//! so one cannot fail the others. Rows are always locked before the audit head, the order
//! every other writer uses.
//!
//! One writer measured faster than several: its groups are larger. A row lock held elsewhere
//! stalls it for at most the connection's `lock_timeout` (5 s, see `PostgresStore`). It has a thread of its
//! own, is started by the first issuance, and again by the next one if it has stopped.

use std::sync::Mutex;

use deadpool_postgres::{Pool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::{err, pool_err, registrations as reg};

use crate::reason::Reason;
use crate::store::{
    now, CertificateRecord, Issuance, StoreError, TransactionRecord, TransactionState,
};
use tokio_postgres::types::ToSql;

/// The most issuances one database transaction takes (those with a challenge have a
/// savepoint each, and PostgreSQL keeps 64 subtransactions per transaction in memory).
pub(super) const MAX_BATCH: usize = 32;

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
        let hash = crate::store::audit_hash(&prev, seq, at, &e.actor, &e.action, &e.subject, &text);
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

/// One issuance to record, and where its result goes.
struct Job {
    issuance: Issuance,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

impl std::ops::Deref for Job {
    type Target = Issuance;
    fn deref(&self) -> &Issuance {
        &self.issuance
    }
}

/// The queue to a store's issuance writer.
pub(super) struct IssueQueue {
    sender: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    /// The writer's connections (see `PostgresStore::connect_tls`).
    pool: Pool,
}

impl IssueQueue {
    /// A queue whose writer will write through `pool`.
    pub(super) fn new(pool: Pool) -> IssueQueue {
        IssueQueue {
            sender: Mutex::new(None),
            pool,
        }
    }

    /// Record an issuance (see `Store::record_issued`); returns when its group is committed.
    pub(super) async fn record(
        &self,
        tx: &TransactionRecord,
        cert: &CertificateRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            issuance: Issuance::new(tx, cert, challenge, actor),
            reply,
        };
        {
            let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
            let job = match sender.as_ref() {
                Some(s) => s.send(job).err().map(|mpsc::error::SendError(job)| job),
                None => Some(job),
            };
            if let Some(job) = job {
                // No writer yet, or it has stopped: start one.
                let (s, r) = mpsc::unbounded_channel();
                spawn_writer(self.pool.clone(), r)?;
                s.send(job).map_err(|_| {
                    StoreError::Unavailable("the issuance writer did not start".into())
                })?;
                *sender = Some(s);
            }
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the issuance writer stopped".into()))?
    }
}

/// The writer gets a thread and a runtime of its own: a caller's runtime may stop, or stop
/// being driven (a CLI command's after its `block_on`), while the store lives on. It ends
/// when the store and its clones are gone (the queue closes).
fn spawn_writer(pool: Pool, queue: mpsc::UnboundedReceiver<Job>) -> Result<(), StoreError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Unavailable(Reason::context("issuance writer", e)))?;
    std::thread::Builder::new()
        .name("sigil-pg-writer".into())
        .spawn(move || runtime.block_on(writer(pool, queue)))
        .map_err(|e| StoreError::Unavailable(Reason::context("issuance writer", e)))?;
    Ok(())
}

async fn writer(pool: Pool, mut queue: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        let results = match write_group(&pool, &group).await {
            Ok(r) => r,
            Err(e) if group.len() == 1 => vec![Err(e)],
            Err(e) => {
                // A serial that exists, a deadlock with another node's group, or the database
                // went away. Nothing of the group was written: write each issuance alone, so
                // one cannot fail the others; but once one fails for want of a database, the
                // rest get that answer at once rather than a timeout each.
                tracing::warn!(error = %e, issuances = group.len(), "an issuance group failed; writing its issuances one by one");
                let mut alone: Vec<Result<(), StoreError>> = Vec::with_capacity(group.len());
                for job in &group {
                    if let Some(Err(down @ StoreError::Unavailable(_))) = alone.last() {
                        let down = down.clone();
                        alone.push(Err(down));
                        continue;
                    }
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
    // An issuance that spends a challenge writes before it can fail, so it gets a savepoint
    // to roll back to; releasing one and opening the next is one round trip. Any other
    // issuance either fails before writing (the transaction is taken) or with a database
    // error, which fails the whole group (the writer then writes its issuances one by one).
    let mut open_savepoint = false;
    // New enrollments without a challenge or renewal go in one statement (each record once).
    let mut written: Vec<Option<Vec<AuditEntry>>> = group.iter().map(|_| None).collect();
    let mut ids = std::collections::HashSet::new();
    let mut bulk: Vec<usize> = (0..group.len())
        .filter(|&i| {
            let j = &group[i];
            j.challenge.is_none()
                && j.tx.renews.is_none()
                && matches!(j.tx.state, TransactionState::Issuing { .. })
                && ids.insert(&j.tx.id)
        })
        .collect();
    // In key order, so two nodes writing the same records lock them in the same order.
    bulk.sort_by(|&a, &b| group[a].tx.id.cmp(&group[b].tx.id));
    if bulk.len() > 1 {
        let jobs: Vec<&Job> = bulk.iter().map(|&i| &group[i]).collect();
        let serials: std::collections::HashSet<String> =
            record_new(&t, &jobs).await?.into_iter().collect();
        for i in bulk {
            if serials.contains(&group[i].cert.serial) {
                written[i] = Some(vec![issued_audit(&group[i], false)]);
            }
        }
    }
    for (job, written) in group.iter().zip(written) {
        if let Some(entries) = written {
            audits.extend(entries);
            results.push(Ok(()));
            continue;
        }
        let guarded = !alone && (job.challenge.is_some() || job.tx.renews.is_some());
        if guarded || open_savepoint {
            t.batch_execute(match (open_savepoint, guarded) {
                (true, true) => "RELEASE SAVEPOINT issuance; SAVEPOINT issuance",
                (true, false) => "RELEASE SAVEPOINT issuance",
                _ => "SAVEPOINT issuance",
            })
            .await
            .map_err(err)?;
            open_savepoint = guarded;
        }
        match issuance_rows(&t, job).await {
            Ok(Ok(entries)) => {
                audits.extend(entries);
                results.push(Ok(()));
            }
            // Refused before anything was written.
            Ok(Err(e)) => results.push(Err(e)),
            Err(e) if alone => {
                // Dropping the transaction rolls it back.
                return Ok(vec![Err(e)]);
            }
            Err(e) if guarded => {
                t.batch_execute("ROLLBACK TO SAVEPOINT issuance; RELEASE SAVEPOINT issuance")
                    .await
                    .map_err(err)?;
                open_savepoint = false;
                results.push(Err(e));
            }
            Err(e) => return Err(e),
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
/// that moves the transaction) touched a row. Parameters $1..$14.
const INSERT_CERT: &str = "INSERT INTO certificates (serial, der, subject, sans, issuer, \
     not_before, not_after, profile, status, revoked_at, revocation_reason, transaction_id, \
     device_id, created_at) \
     SELECT $1::TEXT, $2::BYTEA, $3::TEXT, $4::TEXT, $5::TEXT, $6::BIGINT, $7::BIGINT, $8::TEXT, \
       $9::TEXT, $10::BIGINT, $11::INTEGER, $12::TEXT, $13::TEXT, $14::BIGINT \
     WHERE EXISTS (SELECT 1 FROM step)";

/// One issuance's rows; returns its audit records, to be chained after the group's rows.
/// The transaction moves from its reservation (or from PENDING, an approval) and its
/// certificate is written in one statement; a spent challenge, a renewed certificate and a
/// registration are more.
///
/// `Ok(Err(_))`: refused before anything was written (no such reservation or PENDING record
/// of this key). `Err(_)`: failed on the way; what was written must be rolled back.
async fn issuance_rows(
    t: &Transaction<'_>,
    job: &Job,
) -> Result<Result<Vec<AuditEntry>, StoreError>, StoreError> {
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
        super::consume(
            t,
            h,
            tx.challenge_id.as_deref(),
            &tx.profile,
            &tx.id,
            &tx.transaction_id,
        )
        .await?;
    }
    let approved = tx.state == TransactionState::Pending;
    let from = if approved { "pending" } else { "issuing" };
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
    let spends = challenge.is_some();
    let mut args = cert_args.to_vec();
    args.extend_from_slice(&[
        &tx.id as &(dyn ToSql + Sync),
        &tx.key_sha256,
        &from,
        &tx.holder,
        &spends,
    ]);
    // Only the holder of the reservation (or of the approval's claim) moves it; a
    // reservation made with a challenge moves only by spending it.
    let move_tx = t
        .prepare_cached(&format!(
            "WITH step AS ( \
               UPDATE transactions SET state = 'issued', serial = $1, csr = NULL, \
                 reserved_until = NULL, holder = NULL, updated_at = $14 \
               WHERE id = $15 AND key_sha256 = $16 AND state = $17 \
                 AND holder IS NOT DISTINCT FROM $18 \
                 AND (state = 'pending' OR challenge_id IS NULL OR $19::BOOLEAN) \
               RETURNING 1) \
             {INSERT_CERT}"
        ))
        .await
        .map_err(err)?;
    let moved = t.execute(&move_tx, &args).await.map_err(|e| {
        if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
            StoreError::SerialTaken
        } else {
            err(e)
        }
    })?;
    if moved != 1 {
        // Say why, as the other engine does: a reservation of this holder made with a
        // challenge, recorded without spending it, is a spent challenge; the rest conflicts.
        let held_with_challenge = !spends
            && !approved
            && t.query_opt(
                "SELECT 1 FROM transactions WHERE id = $1 AND state = 'issuing' \
                 AND holder IS NOT DISTINCT FROM $2 AND challenge_id IS NOT NULL",
                &[&tx.id, &tx.holder],
            )
            .await
            .map_err(err)?
            .is_some();
        let why = if held_with_challenge {
            StoreError::ChallengeSpent
        } else {
            StoreError::Conflict(format!(
                "transaction {} is not {from} for this key and holder",
                tx.transaction_id
            ))
        };
        // With a challenge spent above, that must be rolled back.
        return if challenge.is_some() {
            Err(why)
        } else {
            Ok(Err(why))
        };
    }
    if let Some(old) = &tx.renews {
        // A certificate renews once, and only while it is valid.
        let n = t
            .execute(
                "UPDATE certificates SET renewed_by = $1 \
                 WHERE serial = $2 AND status = 'valid' AND renewed_by IS NULL",
                &[&cert.serial, old],
            )
            .await
            .map_err(err)?;
        if n != 1 {
            return Err(StoreError::Stale(format!(
                "renewal refused: certificate {old} was revoked or renewed meanwhile"
            )));
        }
    }
    let mut audits = vec![issued_audit(job, approved)];
    if let Some(h) = challenge {
        audits.extend(reg::link_rows(t, h, &cert.serial, tx.renews.is_some(), &job.actor).await?);
    }
    if let Some(old) = &tx.renews {
        audits.extend(reg::relink_rows(t, old, &cert.serial, &job.actor).await?);
    }
    Ok(Ok(audits))
}

/// The audit record of an issuance.
fn issued_audit(job: &Job, approved: bool) -> AuditEntry {
    let (action, details) = job.audit(approved);
    AuditEntry {
        actor: job.actor.clone(),
        action: action.into(),
        subject: job.cert.serial.clone(),
        details,
    }
}

/// New enrollments without a challenge or renewal, all in one statement: each reservation
/// of the same key becomes issued, with its certificate. Returns the serials written; the
/// others (no such reservation) are left to the one-by-one path, which gives each its error.
/// A serial that exists fails the statement, and with it the group.
async fn record_new(t: &Transaction<'_>, jobs: &[&Job]) -> Result<Vec<String>, StoreError> {
    let at = now();
    let n = jobs.len();
    let col = |f: &dyn Fn(&Job) -> String| jobs.iter().map(|j| f(j)).collect::<Vec<String>>();
    let serials = col(&|j| j.cert.serial.clone());
    let ders: Vec<&[u8]> = jobs.iter().map(|j| j.cert.der.as_slice()).collect();
    let subjects = col(&|j| j.cert.subject.clone());
    let sans = col(&|j| j.cert.sans.clone());
    let issuers = col(&|j| j.cert.issuer.clone());
    let not_before: Vec<i64> = jobs.iter().map(|j| j.cert.not_before).collect();
    let not_after: Vec<i64> = jobs.iter().map(|j| j.cert.not_after).collect();
    let profiles = col(&|j| j.cert.profile.clone());
    let statuses = col(&|j| j.cert.status.as_str().to_owned());
    let revoked_at: Vec<Option<i64>> = jobs.iter().map(|j| j.cert.revoked_at).collect();
    let reasons: Vec<Option<i32>> = jobs.iter().map(|j| j.cert.revocation_reason).collect();
    let cert_tx = col(&|j| j.cert.transaction_id.clone());
    let devices: Vec<Option<&str>> = jobs.iter().map(|j| j.cert.device_id.as_deref()).collect();
    let ats = vec![at; n];
    let tx_ids = col(&|j| j.tx.id.clone());
    let keys = col(&|j| j.tx.key_sha256.clone());
    let holders: Vec<Option<&str>> = jobs.iter().map(|j| j.tx.holder.as_deref()).collect();
    let stmt = t
        .prepare_cached(
            "WITH job AS ( \
               SELECT * FROM UNNEST($1::TEXT[], $2::BYTEA[], $3::TEXT[], $4::TEXT[], \
                 $5::TEXT[], $6::BIGINT[], $7::BIGINT[], $8::TEXT[], $9::TEXT[], $10::BIGINT[], \
                 $11::INTEGER[], $12::TEXT[], $13::TEXT[], $14::BIGINT[], $15::TEXT[], \
                 $16::TEXT[], $17::TEXT[]) \
               AS j(serial, der, subject, sans, issuer, not_before, not_after, profile, \
                 status, revoked_at, revocation_reason, cert_tx, device_id, at, \
                 id, key_sha256, holder)), \
             moved AS ( \
               UPDATE transactions t SET state = 'issued', serial = job.serial, csr = NULL, \
                 reserved_until = NULL, holder = NULL, updated_at = job.at \
               FROM job \
               WHERE t.id = job.id AND t.key_sha256 = job.key_sha256 AND t.state = 'issuing' \
                 AND t.holder IS NOT DISTINCT FROM job.holder AND t.challenge_id IS NULL \
               RETURNING t.id) \
             INSERT INTO certificates (serial, der, subject, sans, issuer, not_before, \
               not_after, profile, status, revoked_at, revocation_reason, transaction_id, \
               device_id, created_at) \
             SELECT serial, der, subject, sans, issuer, not_before, not_after, profile, status, \
               revoked_at, revocation_reason, cert_tx, device_id, at \
             FROM job JOIN moved USING (id) \
             RETURNING serial",
        )
        .await
        .map_err(err)?;
    let rows = t
        .query(
            &stmt,
            &[
                &serials,
                &ders,
                &subjects,
                &sans,
                &issuers,
                &not_before,
                &not_after,
                &profiles,
                &statuses,
                &revoked_at,
                &reasons,
                &cert_tx,
                &devices,
                &ats,
                &tx_ids,
                &keys,
                &holders,
            ],
        )
        .await
        .map_err(err)?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}
