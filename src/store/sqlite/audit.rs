//! SQLite: the hash-chained audit log: appending (inside any writer's transaction, after
//! the head) and reading.

use async_trait::async_trait;
use rusqlite::{params, Connection};

use crate::store::{now, AuditQuery, AuditRecord, AuditStore, StoreError};

use super::{err, SqliteStore};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit(
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
    async fn audit_records(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |c| {
            let mut sql = "SELECT seq, at, actor, action, subject, details, prev_hash, hash \
                           FROM audit_log WHERE seq > ?1 ORDER BY seq"
                .to_string();
            if limit > 0 {
                sql.push_str(&format!(" LIMIT {limit}"));
            }
            let mut stmt = c.prepare(&sql).map_err(err)?;
            let rows = stmt.query_map([after_seq], record_from_row).map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }
    async fn audit_newest(
        &self,
        query: &AuditQuery,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let q = query.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // SQLite's LIKE does not mind ASCII case; `%` and `_` typed are themselves.
        let pattern = |t: &str| format!("%{}%", crate::store::listing::like_escape(t.trim()));
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, at, actor, action, subject, details, prev_hash, hash \
                     FROM audit_log WHERE action LIKE ?1 ESCAPE '\\' \
                     AND actor LIKE ?2 ESCAPE '\\' AND subject LIKE ?3 ESCAPE '\\' \
                     ORDER BY seq DESC LIMIT ?4",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(
                    params![
                        pattern(&q.action),
                        pattern(&q.actor),
                        pattern(&q.subject),
                        limit
                    ],
                    record_from_row,
                )
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }
    async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        self.with(|c| {
            c.query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(err)
        })
        .await
    }
}

fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
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
}

/// Append an audit record inside `t`, after the head (locked by the IMMEDIATE transaction).
pub(super) fn append_audit(
    t: &Connection,
    actor: &str,
    action: &str,
    subject: &str,
    details: &serde_json::Value,
) -> Result<(), StoreError> {
    let (seq, prev): (i64, String) = t
        .prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(err)?;
    let (seq, at, details) = (seq + 1, now(), details.to_string());
    let hash = crate::store::audit_hash(&prev, seq, at, actor, action, subject, &details);
    t.prepare_cached(
        "INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            seq, at, actor, action, subject, details, prev, hash
        ])
    })
    .map_err(err)?;
    t.prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")
        .and_then(|mut s| s.execute(params![seq, hash]))
        .map_err(err)?;
    Ok(())
}
