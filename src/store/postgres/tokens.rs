//! PostgreSQL: API tokens, stored as hashes with their scope.

use async_trait::async_trait;

use crate::store::{now, StoreError, TokenRecord, TokenStore};

use super::{append_audit, err, pool_err, token_from_row, PostgresStore, TOKEN_COLUMNS};

#[async_trait]
impl TokenStore for PostgresStore {
    async fn insert_token(&self, tok: &TokenRecord, actor: &str) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        t.execute(
            "INSERT INTO api_tokens (id, name, role, hash, created_at, expires_at, scope, owner, \
             awaiting_approval) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &tok.id,
                &tok.name,
                &tok.role,
                &tok.hash,
                &tok.created_at,
                &tok.expires_at,
                &tok.scope.to_json(),
                &tok.owner,
                &tok.awaiting_approval,
            ],
        )
        .await
        .map_err(err)?;
        append_audit(
            &t,
            actor,
            "token_created",
            &tok.id,
            &crate::store::token_details(tok),
        )
        .await?;
        t.commit().await.map_err(err)
    }
    async fn use_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let at = now();
        let row = c
            .query_opt(
                &format!(
                    "UPDATE api_tokens SET last_used_at = $2 WHERE hash = $1 \
                     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) \
                     AND NOT awaiting_approval RETURNING {TOKEN_COLUMNS}"
                ),
                &[&hash, &at],
            )
            .await
            .map_err(err)?;
        Ok(row.as_ref().map(token_from_row))
    }
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at DESC, id"),
                &[],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(token_from_row).collect())
    }
    async fn revoke_token(&self, id: &str, actor: &str) -> Result<bool, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        let n = t
            .execute(
                "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                &[&now(), &id],
            )
            .await
            .map_err(err)?;
        if n != 1 {
            return Ok(false);
        }
        append_audit(&t, actor, "token_revoked", id, &serde_json::json!({})).await?;
        t.commit().await.map_err(err)?;
        Ok(true)
    }
    async fn approve_token(&self, id: &str, actor: &str) -> Result<bool, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        let n = t
            .execute(
                "UPDATE api_tokens SET awaiting_approval = FALSE, approved_by = $1 \
                 WHERE id = $2 AND awaiting_approval AND revoked_at IS NULL",
                &[&actor, &id],
            )
            .await
            .map_err(err)?;
        if n != 1 {
            return Ok(false);
        }
        append_audit(&t, actor, "token_approved", id, &serde_json::json!({})).await?;
        t.commit().await.map_err(err)?;
        Ok(true)
    }
}
