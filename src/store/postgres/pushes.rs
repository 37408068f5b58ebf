//! PostgreSQL: deliveries to the MDM.

use async_trait::async_trait;

use crate::store::push::{follow_ups_sql, push_details, push_from_parts, PUSH_COLUMNS};
use crate::store::{PushRecord, PushStore, StoreError};

use super::{append_audit, err, pool_err, PostgresStore};

fn row(r: &tokio_postgres::Row) -> Result<PushRecord, StoreError> {
    Ok(push_from_parts((
        r.try_get(0).map_err(err)?,
        r.try_get(1).map_err(err)?,
        r.try_get(2).map_err(err)?,
        r.try_get(3).map_err(err)?,
        r.try_get(4).map_err(err)?,
        r.try_get(5).map_err(err)?,
        r.try_get(6).map_err(err)?,
        r.try_get(7).map_err(err)?,
        r.try_get(8).map_err(err)?,
        r.try_get(9).map_err(err)?,
    )))
}

#[async_trait]
impl PushStore for PostgresStore {
    async fn queue_push(&self, p: &PushRecord, actor: &str) -> Result<bool, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        let n = t
            .execute(
                &format!(
                    "INSERT INTO pushes ({PUSH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                     $9, $10) ON CONFLICT (registration_id, key) DO NOTHING"
                ),
                &[
                    &p.id,
                    &p.registration_id,
                    &p.key,
                    &p.action.as_str(),
                    &p.state.as_str(),
                    &p.attempts,
                    &p.next_at,
                    &p.message,
                    &p.created_at,
                    &p.updated_at,
                ],
            )
            .await
            .map_err(err)?;
        if n == 1 {
            append_audit(
                &t,
                actor,
                "push_queued",
                &p.registration_id,
                &push_details(p),
            )
            .await?;
        }
        t.commit().await.map_err(err)?;
        Ok(n == 1)
    }

    async fn claim_push(&self, id: &str, now: i64, lease_until: i64) -> Result<bool, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let n = c
            .execute(
                "UPDATE pushes SET next_at = $3 WHERE id = $1 AND state = 'pending' AND next_at <= $2",
                &[&id, &now, &lease_until],
            )
            .await
            .map_err(err)?;
        Ok(n == 1)
    }

    async fn settle_push(
        &self,
        p: &PushRecord,
        claimed_until: i64,
        action: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        let n = t
            .execute(
                "UPDATE pushes SET state = $2, attempts = $3, next_at = $4, message = $5, \
                 updated_at = $6 WHERE id = $1 AND state = 'pending' AND next_at = $7",
                &[
                    &p.id,
                    &p.state.as_str(),
                    &p.attempts,
                    &p.next_at,
                    &p.message,
                    &p.updated_at,
                    &claimed_until,
                ],
            )
            .await
            .map_err(err)?;
        if n == 1 {
            append_audit(&t, actor, action, &p.registration_id, &push_details(p)).await?;
        }
        t.commit().await.map_err(err)?;
        Ok(n == 1)
    }

    async fn due_pushes(&self, now: i64, limit: usize) -> Result<Vec<PushRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.query(
            &format!(
                "SELECT {PUSH_COLUMNS} FROM pushes WHERE state = 'pending' AND next_at <= $1 \
                 ORDER BY next_at, id LIMIT $2"
            ),
            &[&now, &(limit as i64)],
        )
        .await
        .map_err(err)?
        .iter()
        .map(row)
        .collect()
    }

    async fn push_follow_ups(
        &self,
        now: i64,
        windows: &[(String, i64)],
    ) -> Result<Vec<String>, StoreError> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let mut args: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> =
            vec![Box::new(now)];
        for (credential, window) in windows {
            args.push(Box::new(credential.clone()));
            args.push(Box::new(now.saturating_add(*window.max(&0))));
        }
        let sql = follow_ups_sql(windows.len(), |i| format!("${i}"));
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
            .iter()
            .map(|b| b.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(c.query(&sql, &params)
            .await
            .map_err(err)?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    async fn pushes(
        &self,
        registration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PushRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let limit = if limit == 0 { i64::MAX } else { limit as i64 };
        let rows = match registration {
            Some(r) => {
                c.query(
                    &format!(
                        "SELECT {PUSH_COLUMNS} FROM pushes WHERE registration_id = $1 \
                         ORDER BY created_at, id LIMIT $2"
                    ),
                    &[&r, &limit],
                )
                .await
            }
            None => {
                c.query(
                    &format!(
                        "SELECT {PUSH_COLUMNS} FROM pushes ORDER BY created_at DESC, id DESC \
                         LIMIT $1"
                    ),
                    &[&limit],
                )
                .await
            }
        }
        .map_err(err)?;
        rows.iter().map(row).collect()
    }
}
