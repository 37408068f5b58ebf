//! SQLite: deliveries to the MDM.

use async_trait::async_trait;
use rusqlite::params;

use crate::store::push::{follow_ups_sql, push_details, push_from_parts, PUSH_COLUMNS};
use crate::store::{PushRecord, PushStore, StoreError};

use super::{append_audit, err, SqliteStore};

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PushRecord> {
    Ok(push_from_parts((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    )))
}

#[async_trait]
impl PushStore for SqliteStore {
    async fn queue_push(&self, p: &PushRecord, actor: &str) -> Result<bool, StoreError> {
        let (p, actor) = (p.clone(), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let n = t
                .execute(
                    &format!(
                        "INSERT INTO pushes ({PUSH_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
                         ?8, ?9, ?10) ON CONFLICT (registration_id, key) DO NOTHING"
                    ),
                    params![
                        p.id,
                        p.registration_id,
                        p.key,
                        p.action.as_str(),
                        p.state.as_str(),
                        p.attempts,
                        p.next_at,
                        p.message,
                        p.created_at,
                        p.updated_at
                    ],
                )
                .map_err(err)?;
            if n == 1 {
                append_audit(
                    &t,
                    &actor,
                    "push_queued",
                    &p.registration_id,
                    &push_details(&p),
                )?;
            }
            t.commit().map_err(err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn claim_push(&self, id: &str, now: i64, lease_until: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE pushes SET next_at = ?3 WHERE id = ?1 AND state = 'pending' AND next_at <= ?2",
                params![id, now, lease_until],
            )
            .map(|n| n == 1)
            .map_err(err)
        })
        .await
    }

    async fn settle_push(
        &self,
        p: &PushRecord,
        claimed_until: i64,
        action: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let (p, action, actor) = (p.clone(), action.to_owned(), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let n = t
                .execute(
                    "UPDATE pushes SET state = ?2, attempts = ?3, next_at = ?4, message = ?5, \
                     updated_at = ?6 WHERE id = ?1 AND state = 'pending' AND next_at = ?7",
                    params![
                        p.id,
                        p.state.as_str(),
                        p.attempts,
                        p.next_at,
                        p.message,
                        p.updated_at,
                        claimed_until
                    ],
                )
                .map_err(err)?;
            if n == 1 {
                append_audit(&t, &actor, &action, &p.registration_id, &push_details(&p))?;
            }
            t.commit().map_err(err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn due_pushes(&self, now: i64, limit: usize) -> Result<Vec<PushRecord>, StoreError> {
        self.with(move |c| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {PUSH_COLUMNS} FROM pushes WHERE state = 'pending' AND next_at <= ?1 \
                     ORDER BY next_at, id LIMIT ?2"
                ))
                .map_err(err)?;
            let rows = st
                .query_map(params![now, limit as i64], row)
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            Ok(rows)
        })
        .await
    }

    async fn push_follow_ups(
        &self,
        now: i64,
        windows: &[(String, i64)],
    ) -> Result<Vec<String>, StoreError> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let mut args: Vec<rusqlite::types::Value> = vec![now.into()];
        for (credential, window) in windows {
            args.push(credential.clone().into());
            args.push(now.saturating_add(*window.max(&0)).into());
        }
        let sql = follow_ups_sql(windows.len(), |i| format!("?{i}"));
        self.read(move |c| {
            let mut st = c.prepare(&sql).map_err(err)?;
            let ids = st
                .query_map(rusqlite::params_from_iter(args), |r| r.get(0))
                .map_err(err)?
                .collect::<Result<Vec<String>, _>>()
                .map_err(err)?;
            Ok(ids)
        })
        .await
    }

    async fn pushes(
        &self,
        registration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PushRecord>, StoreError> {
        let registration = registration.map(str::to_owned);
        self.with(move |c| {
            let limit = if limit == 0 { i64::MAX } else { limit as i64 };
            let rows = match &registration {
                Some(r) => {
                    let mut st = c
                        .prepare(&format!(
                            "SELECT {PUSH_COLUMNS} FROM pushes WHERE registration_id = ?1 \
                             ORDER BY created_at, id LIMIT ?2"
                        ))
                        .map_err(err)?;
                    let rows = st
                        .query_map(params![r, limit], row)
                        .map_err(err)?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(err)?;
                    rows
                }
                None => {
                    let mut st = c
                        .prepare(&format!(
                            "SELECT {PUSH_COLUMNS} FROM pushes ORDER BY created_at DESC, id DESC \
                             LIMIT ?1"
                        ))
                        .map_err(err)?;
                    let rows = st
                        .query_map(params![limit], row)
                        .map_err(err)?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(err)?;
                    rows
                }
            };
            Ok(rows)
        })
        .await
    }
}
