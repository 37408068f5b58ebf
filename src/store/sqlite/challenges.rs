//! SQLite: one-time challenges, stored as hashes with their id and minter.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use crate::store::{now, ChallengeRecord, ChallengeStore, StoreError};

use super::{append_audit, err, SqliteStore};

#[async_trait]
impl ChallengeStore for SqliteStore {
    async fn insert_challenge(&self, ch: &ChallengeRecord, actor: &str) -> Result<(), StoreError> {
        let (ch, actor) = (ch.clone(), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            insert_challenge(&t, &ch)?;
            append_audit(
                &t,
                &actor,
                "challenge_created",
                &ch.id,
                &crate::store::challenge_details(&ch),
            )?;
            t.commit().map_err(err)
        })
        .await
    }
    async fn challenge(&self, hash: &str) -> Result<Option<ChallengeRecord>, StoreError> {
        self.challenge_where("hash", hash).await
    }
    async fn challenge_by_id(&self, id: &str) -> Result<Option<ChallengeRecord>, StoreError> {
        self.challenge_where("id", id).await
    }
}

/// Write a challenge row inside `t`.
pub(super) fn insert_challenge(
    t: &rusqlite::Connection,
    ch: &ChallengeRecord,
) -> Result<(), StoreError> {
    t.execute(
        "INSERT INTO challenges (id, hash, created_by, profile, bindings, expires_at, \
         created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            ch.id,
            ch.hash,
            ch.created_by,
            ch.profile,
            ch.bindings,
            ch.expires_at,
            now()
        ],
    )
    .map_err(err)?;
    Ok(())
}

impl SqliteStore {
    /// The challenge whose `column` (`hash` or `id`) is `value`.
    async fn challenge_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<ChallengeRecord>, StoreError> {
        let value = value.to_owned();
        self.with(move |c| {
            c.query_row(
                &format!(
                    "SELECT id, hash, created_by, profile, bindings, expires_at, used_at \
                     FROM challenges WHERE {column} = ?1"
                ),
                [value],
                |r| {
                    Ok(ChallengeRecord {
                        id: r.get(0)?,
                        hash: r.get(1)?,
                        created_by: r.get(2)?,
                        profile: r.get(3)?,
                        bindings: r.get(4)?,
                        expires_at: r.get(5)?,
                        used_at: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(err)
        })
        .await
    }
}
