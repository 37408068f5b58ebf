//! SQLite: people who signed in, browser sessions and sign-ins in progress.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use crate::store::{now, IdentityStore, PersonRecord, SessionKind, SessionRecord, StoreError};

use super::{err, SqliteStore};

const SESSION_COLUMNS: &str = "id, kind, person, data, created_at, last_seen, expires_at";

fn session_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: r.get(0)?,
        kind: if r.get::<_, String>(1)? == "login" {
            SessionKind::Login
        } else {
            SessionKind::Session
        },
        person: r.get(2)?,
        data: r.get(3)?,
        created_at: r.get(4)?,
        last_seen: r.get(5)?,
        expires_at: r.get(6)?,
    })
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn upsert_person(&self, p: &PersonRecord) -> Result<(), StoreError> {
        let p = p.clone();
        self.with(move |c| {
            let roles = serde_json::to_string(&p.roles).unwrap_or_else(|_| "[]".into());
            c.execute(
                "INSERT INTO people (id, email, name, roles, first_seen, last_seen) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
                 ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name, \
                 roles = excluded.roles, last_seen = excluded.last_seen",
                params![p.id, p.email, p.name, roles, p.last_seen],
            )
            .map_err(err)?;
            Ok(())
        })
        .await
    }
    async fn person(&self, id: &str) -> Result<Option<PersonRecord>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT id, email, name, roles, first_seen, last_seen FROM people WHERE id = ?1",
                [id],
                |r| {
                    Ok(PersonRecord {
                        id: r.get(0)?,
                        email: r.get(1)?,
                        name: r.get(2)?,
                        roles: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                        first_seen: r.get(4)?,
                        last_seen: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(err)
        })
        .await
    }
    async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let s = s.clone();
        self.with(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    s.id,
                    s.kind.as_str(),
                    s.person,
                    s.data,
                    s.created_at,
                    s.last_seen,
                    s.expires_at
                ],
            )
            .map_err(err)?;
            Ok(())
        })
        .await
    }
    async fn session(&self, id: &str, idle_secs: i64) -> Result<Option<SessionRecord>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            let at = now();
            let found = c
                .query_row(
                    &format!(
                        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1 AND kind = 'session'"
                    ),
                    [&id],
                    session_from_row,
                )
                .optional()
                .map_err(err)?;
            let Some(mut s) = found else {
                return Ok(None);
            };
            if s.expires_at <= at || s.last_seen + idle_secs <= at {
                c.execute("DELETE FROM sessions WHERE id = ?1", [&id])
                    .map_err(err)?;
                return Ok(None);
            }
            c.execute(
                "UPDATE sessions SET last_seen = ?1 WHERE id = ?2",
                params![at, id],
            )
            .map_err(err)?;
            s.last_seen = at;
            Ok(Some(s))
        })
        .await
    }
    async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            Ok(c.execute("DELETE FROM sessions WHERE id = ?1", [id])
                .map_err(err)?
                == 1)
        })
        .await
    }
    async fn take_login(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(
                &format!(
                    "DELETE FROM sessions WHERE id = ?1 AND kind = 'login' AND expires_at > ?2 \
                     RETURNING {SESSION_COLUMNS}"
                ),
                params![id, now()],
                session_from_row,
            )
            .optional()
            .map_err(err)
        })
        .await
    }
    async fn purge_sessions(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            Ok(
                c.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now()])
                    .map_err(err)? as u64,
            )
        })
        .await
    }
}
