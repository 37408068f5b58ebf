//! The SQLite engine's challenges, CA state, tokens, revocation and audit log: the bodies of
//! those [`super::Store`] methods, each one database transaction.

use rusqlite::{params, OptionalExtension};

use super::sqlite::{append_audit, err, token_from_row, TOKEN_COLUMNS};
use super::*;

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
    pub(super) async fn insert_challenge_impl(
        &self,
        ch: &ChallengeRecord,
        actor: &str,
    ) -> Result<(), StoreError> {
        let (ch, actor) = (ch.clone(), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            insert_challenge(&t, &ch)?;
            append_audit(
                &t,
                &actor,
                "challenge_created",
                &ch.id,
                &super::challenge_details(&ch),
            )?;
            t.commit().map_err(err)
        })
        .await
    }

    /// The challenge whose `column` (`hash` or `id`) is `value`.
    pub(super) async fn challenge_impl(
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

    pub(super) async fn lead_impl(&self, _task: &str) -> Result<bool, StoreError> {
        // The embedded database serves one node.
        Ok(true)
    }

    pub(super) async fn state_impl(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            c.query_row("SELECT value FROM ca_state WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)
        })
        .await
    }

    pub(super) async fn set_state_impl(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let (name, value) = (name.to_owned(), value.to_vec());
        self.with(move |c| {
            c.execute(
                "INSERT INTO ca_state (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .map(|_| ())
            .map_err(err)
        })
        .await
    }

    pub(super) async fn next_crl_number_impl(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            let t = c.transaction().map_err(err)?;
            let current: Option<Vec<u8>> = t
                .query_row(
                    "SELECT value FROM ca_state WHERE name = 'crl_number'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            let next = super::parse_number(current, "crl_number")? + 1;
            t.execute(
                "INSERT INTO ca_state (name, value) VALUES ('crl_number', ?1) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [next.to_string().into_bytes()],
            )
            .map_err(err)?;
            t.commit().map_err(err)?;
            Ok(next)
        })
        .await
    }

    pub(super) async fn insert_token_impl(
        &self,
        tok: &TokenRecord,
        actor: &str,
    ) -> Result<(), StoreError> {
        let (tok, actor) = (tok.clone(), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            t.execute(
                "INSERT INTO api_tokens (id, name, role, hash, created_at, expires_at, scope) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    tok.id,
                    tok.name,
                    tok.role,
                    tok.hash,
                    tok.created_at,
                    tok.expires_at,
                    tok.scope.to_json()
                ],
            )
            .map_err(err)?;
            append_audit(
                &t,
                &actor,
                "token_created",
                &tok.id,
                &super::token_details(&tok),
            )?;
            t.commit().map_err(err)
        })
        .await
    }

    pub(super) async fn revoke_certificate_impl(
        &self,
        serial: &str,
        reason: i32,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let (serial, actor) = (serial.to_owned(), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let n = t
                .execute(
                    "UPDATE certificates SET status = 'revoked', revoked_at = ?1, \
                     revocation_reason = ?2 WHERE serial = ?3 AND status = 'valid'",
                    params![now(), reason, serial],
                )
                .map_err(err)?;
            if n != 1 {
                return Ok(false);
            }
            // The published CRL of its issuer lacks this revocation until a new one is made.
            t.execute(
                "INSERT INTO crl_marks (issuer, revisions, since) \
                 SELECT issuer, 1, ?1 FROM certificates WHERE serial = ?2 \
                 ON CONFLICT (issuer) DO UPDATE SET revisions = crl_marks.revisions + 1",
                params![now(), serial],
            )
            .map_err(err)?;
            append_audit(
                &t,
                &actor,
                "revoked",
                &serial,
                &super::revocation_details(reason),
            )?;
            t.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }

    pub(super) async fn use_token_impl(
        &self,
        hash: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let hash = hash.to_owned();
        self.with(move |c| {
            let at = now();
            let found = c
                .query_row(
                    &format!(
                        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = ?1 \
                         AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)"
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

    pub(super) async fn tokens_impl(&self) -> Result<Vec<TokenRecord>, StoreError> {
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

    pub(super) async fn revoke_token_impl(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
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

    pub(super) async fn audit_impl(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let (actor, action, subject, details) = (
            actor.to_owned(),
            action.to_owned(),
            subject.to_owned(),
            details.clone(),
        );
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            append_audit(&t, &actor, &action, &subject, &details)?;
            t.commit().map_err(err)
        })
        .await
    }

    pub(super) async fn audit_records_impl(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.with(move |c| {
            let mut sql = "SELECT seq, at, actor, action, subject, details, prev_hash, hash \
                           FROM audit_log WHERE seq > ?1 ORDER BY seq"
                .to_string();
            if limit > 0 {
                sql.push_str(&format!(" LIMIT {limit}"));
            }
            let mut stmt = c.prepare(&sql).map_err(err)?;
            let rows = stmt
                .query_map([after_seq], |r| {
                    Ok(AuditRecord {
                        seq: r.get(0)?,
                        at: r.get(1)?,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        subject: r.get(4)?,
                        details: r.get(5)?,
                        prev_hash: r.get(6)?,
                        hash: r.get(7)?,
                    })
                })
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }

    pub(super) async fn audit_head_impl(&self) -> Result<(i64, String), StoreError> {
        self.with(|c| {
            c.query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(err)
        })
        .await
    }
}
