//! The PostgreSQL engine's challenges, CA state and leadership, tokens, revocation and audit
//! log: the bodies of those [`super::Store`] methods.

use std::time::Duration;

use super::postgres::{append_audit, err, pool_err, task_key, token_from_row, TOKEN_COLUMNS};
use super::*;

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
    pub(super) async fn insert_challenge_impl(
        &self,
        ch: &ChallengeRecord,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        insert_challenge(&t, ch).await?;
        append_audit(
            &t,
            actor,
            "challenge_created",
            &ch.id,
            &super::challenge_details(ch),
        )
        .await?;
        t.commit().await.map_err(err)
    }

    /// The challenge whose `column` (`hash` or `id`) is `value`.
    pub(super) async fn challenge_impl(
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

    pub(super) async fn lead_impl(&self, task: &str) -> Result<bool, StoreError> {
        let mut leases = self.leases.lock().await;
        if let Some(client) = leases.get(task) {
            let alive =
                tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1"))
                    .await
                    .is_ok_and(|r| r.is_ok());
            if alive {
                return Ok(true);
            }
            // The connection (and with it the lock) is gone: compete again.
            leases.remove(task);
        }
        // A connection of its own, outside the pool: the lock lives as long as it does.
        let (client, conn) = tokio::time::timeout(
            Duration::from_secs(5),
            self.config.connect(self.tls.clone()),
        )
        .await
        .map_err(|_| StoreError::Unavailable("PostgreSQL: connect timed out".into()))?
        .map_err(err)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&task_key(task)])
            .await
            .map_err(err)?
            .get(0);
        if got {
            tracing::info!(task, "this node now runs the background task");
            leases.insert(task.to_owned(), client);
        }
        Ok(got)
    }

    pub(super) async fn state_impl(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(
            c.query_opt("SELECT value FROM ca_state WHERE name = $1", &[&name])
                .await
                .map_err(err)?
                .map(|r| r.get(0)),
        )
    }

    pub(super) async fn set_state_impl(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "INSERT INTO ca_state (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&name, &value],
        )
        .await
        .map(|_| ())
        .map_err(err)
    }

    pub(super) async fn next_crl_number_impl(&self) -> Result<i64, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        // Row lock on the counter: concurrent callers on any node get distinct numbers.
        t.execute(
            "INSERT INTO ca_state (name, value) VALUES ('crl_number', '0') ON CONFLICT DO NOTHING",
            &[],
        )
        .await
        .map_err(err)?;
        let current: Vec<u8> = t
            .query_one(
                "SELECT value FROM ca_state WHERE name = 'crl_number' FOR UPDATE",
                &[],
            )
            .await
            .map_err(err)?
            .get(0);
        let next = super::parse_number(Some(current), "crl_number")? + 1;
        t.execute(
            "UPDATE ca_state SET value = $1 WHERE name = 'crl_number'",
            &[&next.to_string().into_bytes()],
        )
        .await
        .map_err(err)?;
        t.commit().await.map_err(err)?;
        Ok(next)
    }

    pub(super) async fn insert_token_impl(
        &self,
        tok: &TokenRecord,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        t.execute(
            "INSERT INTO api_tokens (id, name, role, hash, created_at, expires_at, scope) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &tok.id,
                &tok.name,
                &tok.role,
                &tok.hash,
                &tok.created_at,
                &tok.expires_at,
                &tok.scope.to_json(),
            ],
        )
        .await
        .map_err(err)?;
        append_audit(
            &t,
            actor,
            "token_created",
            &tok.id,
            &super::token_details(tok),
        )
        .await?;
        t.commit().await.map_err(err)
    }

    pub(super) async fn revoke_certificate_impl(
        &self,
        serial: &str,
        reason: i32,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        let n = t
            .execute(
                "UPDATE certificates SET status = 'revoked', revoked_at = $1, \
                 revocation_reason = $2 WHERE serial = $3 AND status = 'valid'",
                &[&now(), &reason, &serial],
            )
            .await
            .map_err(err)?;
        if n != 1 {
            return Ok(false);
        }
        // The published CRL of its issuer lacks this revocation until a new one is made.
        t.execute(
            "INSERT INTO crl_marks (issuer, revisions, since) \
             SELECT issuer, 1, $1 FROM certificates WHERE serial = $2 \
             ON CONFLICT (issuer) DO UPDATE SET revisions = crl_marks.revisions + 1",
            &[&now(), &serial],
        )
        .await
        .map_err(err)?;
        append_audit(
            &t,
            actor,
            "revoked",
            serial,
            &super::revocation_details(reason),
        )
        .await?;
        t.commit().await.map_err(err)?;
        Ok(true)
    }

    pub(super) async fn use_token_impl(
        &self,
        hash: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let at = now();
        let row = c
            .query_opt(
                &format!(
                    "UPDATE api_tokens SET last_used_at = $2 WHERE hash = $1 \
                     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) \
                     RETURNING {TOKEN_COLUMNS}"
                ),
                &[&hash, &at],
            )
            .await
            .map_err(err)?;
        Ok(row.as_ref().map(token_from_row))
    }

    pub(super) async fn tokens_impl(&self) -> Result<Vec<TokenRecord>, StoreError> {
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

    pub(super) async fn revoke_token_impl(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
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

    pub(super) async fn audit_impl(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        append_audit(&t, actor, action, subject, details).await?;
        t.commit().await.map_err(err)
    }

    pub(super) async fn audit_records_impl(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let mut sql = "SELECT seq, at, actor, action, subject, details, prev_hash, hash \
                       FROM audit_log WHERE seq > $1 ORDER BY seq"
            .to_string();
        if limit > 0 {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let rows = c.query(&sql, &[&after_seq]).await.map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| AuditRecord {
                seq: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                subject: r.get(4),
                details: r.get(5),
                prev_hash: r.get(6),
                hash: r.get(7),
            })
            .collect())
    }

    pub(super) async fn audit_head_impl(&self) -> Result<(i64, String), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let r = c
            .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
            .await
            .map_err(err)?;
        Ok((r.get(0), r.get(1)))
    }
}
