//! PostgreSQL: SCEP transactions: reserved before the CA signs (with their one-time challenge
//! claimed), PENDING, issued from either, rejected; lookups by record key and transactionID.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use crate::store::{
    now, CertificateRecord, StoreError, TransactionRecord, TransactionState, TransactionStore,
};

use super::{append_audit, err, pool_err, tx_from_row, PostgresStore, TX_COLUMNS};

#[async_trait]
impl TransactionStore for PostgresStore {
    async fn transaction(&self, id: &str) -> Result<Option<TransactionRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        // Every enrollment asks (resend detection): prepared once per connection.
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {TX_COLUMNS} FROM transactions WHERE id = $1"
            ))
            .await
            .map_err(err)?;
        let row = c.query_opt(&stmt, &[&id]).await.map_err(err)?;
        Ok(row.as_ref().map(tx_from_row))
    }
    async fn transactions_named(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                &format!(
                    "SELECT {TX_COLUMNS} FROM transactions WHERE transaction_id = $1 \
                     ORDER BY created_at, id"
                ),
                &[&transaction_id],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(tx_from_row).collect())
    }
    async fn reserve(
        &self,
        tx: &TransactionRecord,
        challenge: Option<&str>,
        lease_secs: i64,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let at = now();
        let until = at + lease_secs.max(1);
        let insert = c
            .prepare_cached(
                "INSERT INTO transactions (id, transaction_id, renews, profile, key_sha256, \
                 signer_sha256, state, challenge_id, reserved_until, holder, created_at, \
                 updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'issuing', $7, $8, $9, $10, $10) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(err)?;
        let args: [&(dyn ToSql + Sync); 10] = [
            &tx.id,
            &tx.transaction_id,
            &tx.renews,
            &tx.profile,
            &tx.key_sha256,
            &tx.signer_sha256,
            &tx.challenge_id,
            &until,
            &tx.holder,
            &at,
        ];
        if tx.state == TransactionState::Pending {
            // An approval claims the PENDING record, unless another approval holds it.
            let claimed = c
                .execute(
                    "UPDATE transactions SET reserved_until = $1, holder = $5 WHERE id = $2 \
                     AND state = 'pending' AND key_sha256 = $3 \
                     AND (reserved_until IS NULL OR reserved_until <= $4)",
                    &[&until, &tx.id, &tx.key_sha256, &at, &tx.holder],
                )
                .await
                .map_err(err)?;
            if claimed == 1 {
                return Ok(None);
            }
            let row = c
                .query_opt(
                    &format!("SELECT {TX_COLUMNS} FROM transactions WHERE id = $1"),
                    &[&tx.id],
                )
                .await
                .map_err(err)?;
            return match row.as_ref().map(tx_from_row) {
                Some(old) => Ok(Some(old)),
                None => Err(StoreError::Conflict(format!(
                    "transaction {} is not pending",
                    tx.transaction_id
                ))),
            };
        }
        let Some(hash) = challenge else {
            // No challenge to claim: one statement.
            if c.execute(&insert, &args).await.map_err(err)? == 1 {
                return Ok(None);
            }
            let t = c.transaction().await.map_err(err)?;
            let taken = self.take_over(&t, tx, None, until).await?;
            t.commit().await.map_err(err)?;
            return Ok(taken);
        };
        let t = c.transaction().await.map_err(err)?;
        if t.execute(&insert, &args).await.map_err(err)? == 0 {
            let taken = self.take_over(&t, tx, Some(hash), until).await?;
            if taken.is_some() {
                return Ok(taken);
            }
        }
        let claimed = t
            .execute(
                "UPDATE challenges SET reserved_by = $1, reserved_until = $2 \
                 WHERE hash = $3 AND profile = $4 AND used_at IS NULL AND expires_at > $5 \
                 AND (reserved_by IS NULL OR reserved_by = $1 OR reserved_until <= $5)",
                &[&tx.id, &until, &hash, &tx.profile, &at],
            )
            .await
            .map_err(err)?;
        if claimed != 1 {
            // Dropping the transaction rolls the reservation back.
            return Err(StoreError::ChallengeSpent);
        }
        t.commit().await.map_err(err)?;
        Ok(None)
    }
    async fn release(&self, id: &str, holder: &str) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        let state: Option<String> = t
            .query_opt(
                "SELECT state FROM transactions WHERE id = $1 AND holder = $2 FOR UPDATE",
                &[&id, &holder],
            )
            .await
            .map_err(err)?
            .map(|r| r.get(0));
        match state.as_deref() {
            Some("issuing") => {
                free_challenge(&t, id).await?;
                t.execute("DELETE FROM transactions WHERE id = $1", &[&id])
                    .await
                    .map_err(err)?;
            }
            Some("pending") => {
                t.execute(
                    "UPDATE transactions SET reserved_until = NULL, holder = NULL WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(err)?;
            }
            // Not held by this holder (taken over, or already final): nothing to give up.
            _ => return Ok(()),
        }
        t.commit().await.map_err(err)
    }
    async fn abandon_lapsed(&self, id: Option<&str>, actor: &str) -> Result<u64, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        let rows = t
            .query(
                "DELETE FROM transactions WHERE state = 'issuing' AND reserved_until <= $1 \
                 AND ($2::TEXT IS NULL OR id = $2) RETURNING id, transaction_id, profile",
                &[&now(), &id],
            )
            .await
            .map_err(err)?;
        let mut audits = Vec::with_capacity(rows.len());
        for r in &rows {
            let (key, tid, profile): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            free_challenge(&t, &key).await?;
            audits.push(super::issue::AuditEntry {
                actor: actor.to_owned(),
                action: "reservation_abandoned".into(),
                subject: tid,
                details: serde_json::json!({"transaction": key, "profile": profile}),
            });
        }
        if audits.is_empty() {
            return Ok(0);
        }
        super::issue::append_audits(&t, &audits).await?;
        t.commit().await.map_err(err)?;
        Ok(audits.len() as u64)
    }
    async fn insert_pending(
        &self,
        tx: &TransactionRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        if let Some(h) = challenge {
            consume(
                &t,
                h,
                tx.challenge_id.as_deref(),
                &tx.profile,
                &tx.id,
                &tx.transaction_id,
            )
            .await?;
        }
        let at = now();
        t.execute(
            "INSERT INTO transactions (id, transaction_id, renews, profile, key_sha256, \
             signer_sha256, state, csr, challenge_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $9)",
            &[
                &tx.id,
                &tx.transaction_id,
                &tx.renews,
                &tx.profile,
                &tx.key_sha256,
                &tx.signer_sha256,
                &tx.csr,
                &tx.challenge_id,
                &at,
            ],
        )
        .await
        .map_err(err)?;
        let mut details = crate::store::provenance(tx);
        details["profile"] = tx.profile.clone().into();
        append_audit(&t, actor, "pending", &tx.transaction_id, &details).await?;
        t.commit().await.map_err(err)
    }
    async fn record_issued(
        &self,
        tx: &TransactionRecord,
        cert: &CertificateRecord,
        challenge: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError> {
        self.issues.record(tx, cert, challenge, actor).await
    }
    async fn reject(&self, id: &str, reason: &str, actor: &str) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        let row = t
            .query_opt(
                "UPDATE transactions SET state = 'rejected', reason = $1, csr = NULL, \
                 updated_at = $2 WHERE id = $3 AND state = 'pending' RETURNING transaction_id",
                &[&reason, &now(), &id],
            )
            .await
            .map_err(err)?;
        let Some(row) = row else {
            return Err(StoreError::Conflict(format!(
                "transaction {id} is not pending"
            )));
        };
        let tid: String = row.get(0);
        append_audit(
            &t,
            actor,
            "rejected",
            &tid,
            &serde_json::json!({"reason": reason, "transaction": id}),
        )
        .await?;
        t.commit().await.map_err(err)
    }
    async fn pending(&self) -> Result<Vec<TransactionRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                &format!(
                    "SELECT {TX_COLUMNS} FROM transactions WHERE state = 'pending' \
                     ORDER BY created_at, id"
                ),
                &[],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(tx_from_row).collect())
    }
}

/// A reservation's claimed challenge, unless spent, is free again.
async fn free_challenge(
    t: &deadpool_postgres::Transaction<'_>,
    record: &str,
) -> Result<(), StoreError> {
    t.execute(
        "UPDATE challenges SET reserved_by = NULL, reserved_until = NULL \
         WHERE reserved_by = $1 AND used_at IS NULL",
        &[&record],
    )
    .await
    .map_err(err)?;
    Ok(())
}

/// Spend a one-time challenge inside `t` for transaction record `record`: unused, and either
/// claimed by that record's reservation or unclaimed (or its claim lapsed) and unexpired;
/// and, when the record names its challenge (`id`), that one. `ChallengeSpent` otherwise.
pub(super) async fn consume(
    t: &deadpool_postgres::Transaction<'_>,
    hash: &str,
    id: Option<&str>,
    profile: &str,
    record: &str,
    by: &str,
) -> Result<(), StoreError> {
    let n = t
        .execute(
            "UPDATE challenges SET used_at = $1, used_by = $2, reserved_by = NULL, \
             reserved_until = NULL \
             WHERE hash = $3 AND profile = $4 AND used_at IS NULL AND (reserved_by = $5 \
             OR (expires_at > $1 AND (reserved_by IS NULL OR reserved_until <= $1))) \
             AND ($6::TEXT IS NULL OR id = $6)",
            &[&now(), &by, &hash, &profile, &record, &id],
        )
        .await
        .map_err(err)?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::ChallengeSpent)
    }
}
