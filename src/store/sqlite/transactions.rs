//! SQLite: SCEP transactions: reserved before the CA signs (with their one-time challenge
//! claimed), PENDING, issued from either, rejected; lookups by record key and transactionID.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use crate::reason::Reason;
use crate::store::{
    now, CertificateRecord, StoreError, TransactionRecord, TransactionState, TransactionStore,
};

use super::{append_audit, err, tx_from_row, SqliteStore, TX_COLUMNS};

#[async_trait]
impl TransactionStore for SqliteStore {
    async fn transaction(&self, id: &str) -> Result<Option<TransactionRecord>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TX_COLUMNS} FROM transactions WHERE id = ?1"
            ))
            .and_then(|mut s| s.query_row([id], tx_from_row).optional())
            .map_err(err)
        })
        .await
    }
    async fn transactions_named(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let tid = transaction_id.to_owned();
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {TX_COLUMNS} FROM transactions WHERE transaction_id = ?1 \
                     ORDER BY created_at, id"
                ))
                .map_err(err)?;
            let rows = stmt.query_map([tid], tx_from_row).map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }
    async fn reserve(
        &self,
        tx: &TransactionRecord,
        challenge: Option<&str>,
        lease_secs: i64,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        let job = super::issue::Write::Reserve {
            tx: Box::new(tx.clone()),
            challenge: challenge.map(str::to_owned),
            lease_secs,
        };
        let (conn, issues) = (self.conn.clone(), self.issues.clone());
        match tokio::task::spawn_blocking(move || issues.write(&conn, job))
            .await
            .map_err(|e| StoreError::Unavailable(Reason::caused_by(e)))??
        {
            super::issue::Written::Reserved(existing) => Ok(existing.map(|b| *b)),
            super::issue::Written::Issued => Err(StoreError::Unavailable(
                "the writer answered another request".into(),
            )),
        }
    }
    async fn release(&self, id: &str, holder: &str) -> Result<(), StoreError> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let state: Option<String> = t
                .query_row(
                    "SELECT state FROM transactions WHERE id = ?1 AND holder = ?2",
                    [&id, &holder],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            match state.as_deref() {
                Some("issuing") => {
                    free_challenge(&t, &id)?;
                    t.execute("DELETE FROM transactions WHERE id = ?1", [&id])
                        .map_err(err)?;
                }
                Some("pending") => {
                    t.execute(
                        "UPDATE transactions SET reserved_until = NULL, holder = NULL \
                         WHERE id = ?1",
                        [&id],
                    )
                    .map_err(err)?;
                }
                // Not held by this holder (taken over, or already final): nothing to give up.
                _ => return Ok(()),
            }
            t.commit().map_err(err)
        })
        .await
    }
    async fn abandon_lapsed(&self, id: Option<&str>, actor: &str) -> Result<u64, StoreError> {
        let (id, actor) = (id.map(str::to_owned), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let lapsed: Vec<(String, String, String)> = {
                let mut stmt = t
                    .prepare(
                        "SELECT id, transaction_id, profile FROM transactions \
                         WHERE state = 'issuing' AND reserved_until <= ?1 \
                         AND (?2 IS NULL OR id = ?2)",
                    )
                    .map_err(err)?;
                let rows = stmt
                    .query_map(params![now(), id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .map_err(err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(err)?
            };
            for (key, tid, profile) in &lapsed {
                free_challenge(&t, key)?;
                t.execute("DELETE FROM transactions WHERE id = ?1", [key])
                    .map_err(err)?;
                append_audit(
                    &t,
                    &actor,
                    "reservation_abandoned",
                    tid,
                    &serde_json::json!({"transaction": key, "profile": profile}),
                )?;
            }
            if !lapsed.is_empty() {
                t.commit().map_err(err)?;
            }
            Ok(lapsed.len() as u64)
        })
        .await
    }
    async fn insert_pending(
        &self,
        tx: &TransactionRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let (tx_rec, challenge, actor) =
            (tx.clone(), challenge.map(str::to_owned), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            if let Some(h) = &challenge {
                consume(
                    &t,
                    h,
                    tx_rec.challenge_id.as_deref(),
                    &tx_rec.profile,
                    &tx_rec.id,
                    &tx_rec.transaction_id,
                )?;
            }
            let at = now();
            t.execute(
                "INSERT INTO transactions (id, transaction_id, renews, profile, key_sha256, \
                 signer_sha256, state, csr, challenge_id, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9, ?9)",
                params![
                    tx_rec.id,
                    tx_rec.transaction_id,
                    tx_rec.renews,
                    tx_rec.profile,
                    tx_rec.key_sha256,
                    tx_rec.signer_sha256,
                    tx_rec.csr,
                    tx_rec.challenge_id,
                    at
                ],
            )
            .map_err(err)?;
            let mut details = crate::store::provenance(&tx_rec);
            details["profile"] = tx_rec.profile.clone().into();
            append_audit(&t, &actor, "pending", &tx_rec.transaction_id, &details)?;
            t.commit().map_err(err)
        })
        .await
    }
    async fn record_issued(
        &self,
        tx: &TransactionRecord,
        cert: &CertificateRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let job = super::issue::Write::Issue(Box::new(crate::store::Issuance::new(
            tx, cert, challenge, actor,
        )));
        let (conn, issues) = (self.conn.clone(), self.issues.clone());
        tokio::task::spawn_blocking(move || issues.write(&conn, job))
            .await
            .map_err(|e| StoreError::Unavailable(Reason::caused_by(e)))?
            .map(|_| ())
    }
    async fn reject(&self, id: &str, reason: &str, actor: &str) -> Result<(), StoreError> {
        let (id, reason, actor) = (id.to_owned(), reason.to_owned(), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let tid: Option<String> = t
                .query_row(
                    "UPDATE transactions SET state = 'rejected', reason = ?1, csr = NULL, \
                     updated_at = ?2 WHERE id = ?3 AND state = 'pending' \
                     RETURNING transaction_id",
                    params![reason, now(), id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            let Some(tid) = tid else {
                return Err(StoreError::Conflict(format!(
                    "transaction {id} is not pending"
                )));
            };
            append_audit(
                &t,
                &actor,
                "rejected",
                &tid,
                &serde_json::json!({"reason": reason, "transaction": id}),
            )?;
            t.commit().map_err(err)
        })
        .await
    }
    async fn pending(&self) -> Result<Vec<TransactionRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {TX_COLUMNS} FROM transactions WHERE state = 'pending' \
                     ORDER BY created_at, id"
                ))
                .map_err(err)?;
            let rows = stmt.query_map([], tx_from_row).map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }
}

/// A reservation's claimed challenge, unless spent, is free again.
fn free_challenge(t: &Connection, record: &str) -> Result<(), StoreError> {
    t.execute(
        "UPDATE challenges SET reserved_by = NULL, reserved_until = NULL \
         WHERE reserved_by = ?1 AND used_at IS NULL",
        [record],
    )
    .map_err(err)?;
    Ok(())
}

/// Consume a one-time challenge inside `tx` for transaction record `record`: exactly one
/// unused row, either claimed by that record's reservation or unclaimed (or claimed by a
/// reservation that lapsed) and unexpired; and, when the record names its challenge
/// (`id`), that one.
pub(super) fn consume(
    tx: &Connection,
    hash: &str,
    id: Option<&str>,
    profile: &str,
    record: &str,
    by: &str,
) -> Result<(), StoreError> {
    let at = now();
    let n = tx
        .prepare_cached(
            "UPDATE challenges SET used_at = ?1, used_by = ?2, reserved_by = NULL, \
             reserved_until = NULL \
             WHERE hash = ?3 AND profile = ?4 AND used_at IS NULL AND (reserved_by = ?5 \
             OR (expires_at > ?1 AND (reserved_by IS NULL OR reserved_until <= ?1))) \
             AND (?6 IS NULL OR id = ?6)",
        )
        .and_then(|mut s| s.execute(params![at, by, hash, profile, record, id]))
        .map_err(err)?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::ChallengeSpent)
    }
}

/// Claim a challenge for a reservation: unused, unexpired, and not claimed by another live
/// reservation.
fn claim(
    t: &Connection,
    hash: &str,
    profile: &str,
    record: &str,
    until: i64,
) -> Result<(), StoreError> {
    let at = now();
    let n = t
        .prepare_cached(
            "UPDATE challenges SET reserved_by = ?1, reserved_until = ?2 \
             WHERE hash = ?3 AND profile = ?4 AND used_at IS NULL AND expires_at > ?5 \
             AND (reserved_by IS NULL OR reserved_by = ?1 OR reserved_until <= ?5)",
        )
        .and_then(|mut s| s.execute(params![record, until, hash, profile, at]))
        .map_err(err)?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::ChallengeSpent)
    }
}

pub(super) fn reserve_rows(
    t: &Connection,
    rec: &TransactionRecord,
    challenge: Option<&str>,
    lease_secs: i64,
) -> Result<Option<TransactionRecord>, StoreError> {
    let at = now();
    let until = at + lease_secs.max(1);
    let existing = t
        .prepare_cached(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE id = ?1"
        ))
        .and_then(|mut s| s.query_row([&rec.id], tx_from_row).optional())
        .map_err(err)?;
    let take_over = match &existing {
        None if rec.state == TransactionState::Pending => {
            return Err(StoreError::Conflict(format!(
                "transaction {} is not pending",
                rec.transaction_id
            )))
        }
        None => false,
        // An approval claims the PENDING record, unless another approval holds it.
        Some(old)
            if old.state == TransactionState::Pending
                && rec.state == TransactionState::Pending
                && old.key_sha256 == rec.key_sha256 =>
        {
            let n = t
                .prepare_cached(
                    "UPDATE transactions SET reserved_until = ?1, holder = ?4 WHERE id = ?2 \
                     AND state = 'pending' AND (reserved_until IS NULL OR reserved_until <= ?3)",
                )
                .and_then(|mut s| s.execute(params![until, rec.id, at, rec.holder]))
                .map_err(err)?;
            return Ok(if n == 1 { None } else { existing });
        }
        Some(old) => match old.state {
            // A reservation of the same key that lapsed (its node died mid-way): take it.
            TransactionState::Issuing { until }
                if until <= at && old.key_sha256 == rec.key_sha256 =>
            {
                true
            }
            _ => return Ok(existing),
        },
    };
    if let Some(h) = challenge {
        claim(t, h, &rec.profile, &rec.id, until)?;
    }
    if take_over {
        // The lapsed reservation's challenge claim goes with it; the new one claimed above.
        t.prepare_cached(
            "UPDATE challenges SET reserved_by = NULL, reserved_until = NULL \
             WHERE reserved_by = ?1 AND used_at IS NULL AND (?2 IS NULL OR hash <> ?2)",
        )
        .and_then(|mut s| s.execute(params![rec.id, challenge]))
        .map_err(err)?;
        t.prepare_cached(
            "UPDATE transactions SET reserved_until = ?1, challenge_id = ?2, updated_at = ?3, \
             holder = ?5, renews = ?6 WHERE id = ?4 AND state = 'issuing'",
        )
        .and_then(|mut s| {
            s.execute(params![
                until,
                rec.challenge_id,
                at,
                rec.id,
                rec.holder,
                rec.renews
            ])
        })
        .map_err(err)?;
    } else {
        t.prepare_cached(
            "INSERT INTO transactions (id, transaction_id, renews, profile, key_sha256, \
             signer_sha256, state, challenge_id, reserved_until, holder, created_at, \
             updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'issuing', ?7, ?8, ?9, ?10, ?10)",
        )
        .and_then(|mut s| {
            s.execute(params![
                rec.id,
                rec.transaction_id,
                rec.renews,
                rec.profile,
                rec.key_sha256,
                rec.signer_sha256,
                rec.challenge_id,
                until,
                rec.holder,
                at
            ])
        })
        .map_err(err)?;
    }
    Ok(None)
}
