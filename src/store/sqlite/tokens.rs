//! SQLite: API tokens, stored as hashes with their scope.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use crate::store::{now, StoreError, TokenRecord, TokenStore};

use super::{append_audit, err, token_from_row, SqliteStore, TOKEN_COLUMNS};

#[async_trait]
impl TokenStore for SqliteStore {
    async fn insert_token(&self, tok: &TokenRecord, actor: &str) -> Result<(), StoreError> {
        let (tok, actor) = (tok.clone(), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            t.execute(
                "INSERT INTO api_tokens (id, name, role, hash, created_at, expires_at, scope, \
                 owner, awaiting_approval) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    tok.id,
                    tok.name,
                    tok.role,
                    tok.hash,
                    tok.created_at,
                    tok.expires_at,
                    tok.scope.to_json(),
                    tok.owner,
                    tok.awaiting_approval
                ],
            )
            .map_err(err)?;
            append_audit(
                &t,
                &actor,
                "token_created",
                &tok.id,
                &crate::store::token_details(&tok),
            )?;
            t.commit().map_err(err)
        })
        .await
    }
    async fn use_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = hash.to_owned();
        self.with(move |c| {
            let at = now();
            let found = c
                .query_row(
                    &format!(
                        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = ?1 \
                         AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2) \
                         AND awaiting_approval = 0"
                    ),
                    params![hash, at],
                    token_from_row,
                )
                .optional()
                .map_err(err)?;
            if let Some(t) = &found {
                c.execute(
                    "UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2",
                    params![at, t.id],
                )
                .map_err(err)?;
            }
            Ok(found)
        })
        .await
    }
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at DESC, id"
                ))
                .map_err(err)?;
            let rows = stmt.query_map([], token_from_row).map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }
    async fn revoke_token(&self, id: &str, actor: &str) -> Result<bool, StoreError> {
        let (id, actor) = (id.to_owned(), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let n = t
                .execute(
                    "UPDATE api_tokens SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
                    params![now(), id],
                )
                .map_err(err)?;
            if n != 1 {
                return Ok(false);
            }
            append_audit(&t, &actor, "token_revoked", &id, &serde_json::json!({}))?;
            t.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }
    async fn approve_token(&self, id: &str, actor: &str) -> Result<bool, StoreError> {
        let (id, actor) = (id.to_owned(), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let n = t
                .execute(
                    "UPDATE api_tokens SET awaiting_approval = 0, approved_by = ?1 \
                     WHERE id = ?2 AND awaiting_approval = 1 AND revoked_at IS NULL",
                    params![actor, id],
                )
                .map_err(err)?;
            if n != 1 {
                return Ok(false);
            }
            append_audit(&t, &actor, "token_approved", &id, &serde_json::json!({}))?;
            t.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }
}
