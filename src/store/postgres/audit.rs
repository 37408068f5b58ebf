//! PostgreSQL: the hash-chained audit log: appending (inside any writer's transaction, after
//! the head) and reading.

use async_trait::async_trait;

use crate::store::{AuditQuery, AuditRecord, AuditStore, StoreError};

use super::{err, pool_err, PostgresStore};

#[async_trait]
impl AuditStore for PostgresStore {
    async fn audit(
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
    async fn audit_records(
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
        Ok(rows.iter().map(record_from_row).collect())
    }
    async fn audit_newest(
        &self,
        query: &AuditQuery,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let pattern = |t: &str| format!("%{}%", crate::store::listing::like_escape(t.trim()));
        // ASCII case not minding, as on SQLite (`lower` folds more than ASCII: the texts
        // searched here, actions, identities and serials, are ASCII in practice). Backslash
        // is LIKE's default escape on PostgreSQL: no ESCAPE clause, whose '\' literal would
        // not even parse with standard_conforming_strings off.
        let rows = c
            .query(
                "SELECT seq, at, actor, action, subject, details, prev_hash, hash \
                 FROM audit_log WHERE lower(action) LIKE lower($1) \
                 AND lower(actor) LIKE lower($2) \
                 AND lower(subject) LIKE lower($3) \
                 ORDER BY seq DESC LIMIT $4",
                &[
                    &pattern(&query.action),
                    &pattern(&query.actor),
                    &pattern(&query.subject),
                    &limit,
                ],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(record_from_row).collect())
    }
    async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let r = c
            .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
            .await
            .map_err(err)?;
        Ok((r.get(0), r.get(1)))
    }
}

fn record_from_row(r: &tokio_postgres::Row) -> AuditRecord {
    AuditRecord {
        seq: r.get(0),
        at: r.get(1),
        actor: r.get(2),
        action: r.get(3),
        subject: r.get(4),
        details: r.get(5),
        prev_hash: r.get(6),
        hash: r.get(7),
    }
}

/// Append an audit record inside `t`, after locking the head.
pub(super) async fn append_audit(
    t: &deadpool_postgres::Transaction<'_>,
    actor: &str,
    action: &str,
    subject: &str,
    details: &serde_json::Value,
) -> Result<(), StoreError> {
    super::issue::append_audits(
        t,
        &[super::issue::AuditEntry {
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            details: details.clone(),
        }],
    )
    .await
}
