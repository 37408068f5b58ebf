//! PostgreSQL: one-time challenges, stored as hashes with their id and minter.

use async_trait::async_trait;

use crate::store::{now, ChallengeRecord, ChallengeStore, StoreError};

use super::{append_audit, err, pool_err, PostgresStore};

#[async_trait]
impl ChallengeStore for PostgresStore {
    async fn insert_challenge(&self, ch: &ChallengeRecord, actor: &str) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        insert_challenge(&t, ch).await?;
        append_audit(
            &t,
            actor,
            "challenge_created",
            &ch.id,
            &crate::store::challenge_details(ch),
        )
        .await?;
        t.commit().await.map_err(err)
    }
    async fn challenge(&self, hash: &str) -> Result<Option<ChallengeRecord>, StoreError> {
        self.challenge_where("hash", hash).await
    }
    async fn challenge_by_id(&self, id: &str) -> Result<Option<ChallengeRecord>, StoreError> {
        self.challenge_where("id", id).await
    }
}

/// Write a challenge row inside `t`.
pub(super) async fn insert_challenge(
    t: &deadpool_postgres::Transaction<'_>,
    ch: &ChallengeRecord,
) -> Result<(), StoreError> {
    t.execute(
        "INSERT INTO challenges (id, hash, created_by, profile, bindings, expires_at, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &ch.id,
            &ch.hash,
            &ch.created_by,
            &ch.profile,
            &ch.bindings,
            &ch.expires_at,
            &now(),
        ],
    )
    .await
    .map_err(err)?;
    Ok(())
}

impl PostgresStore {
    /// The challenge whose `column` (`hash` or `id`) is `value`.
    async fn challenge_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<ChallengeRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                &format!(
                    "SELECT id, hash, created_by, profile, bindings, expires_at, used_at \
                     FROM challenges WHERE {column} = $1"
                ),
                &[&value],
            )
            .await
            .map_err(err)?;
        Ok(row.map(|r| ChallengeRecord {
            id: r.get(0),
            hash: r.get(1),
            created_by: r.get(2),
            profile: r.get(3),
            bindings: r.get(4),
            expires_at: r.get(5),
            used_at: r.get(6),
        }))
    }
}
