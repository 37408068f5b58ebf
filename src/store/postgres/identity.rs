//! PostgreSQL: people who signed in, browser sessions and sign-ins in progress.

use async_trait::async_trait;

use crate::store::{now, IdentityStore, PersonRecord, SessionKind, SessionRecord, StoreError};

use super::{err, pool_err, PostgresStore};

const SESSION_COLUMNS: &str = "id, kind, person, data, created_at, last_seen, expires_at";

fn session_from_row(r: &tokio_postgres::Row) -> SessionRecord {
    SessionRecord {
        id: r.get(0),
        kind: if r.get::<_, String>(1) == "login" {
            SessionKind::Login
        } else {
            SessionKind::Session
        },
        person: r.get(2),
        data: r.get(3),
        created_at: r.get(4),
        last_seen: r.get(5),
        expires_at: r.get(6),
    }
}

#[async_trait]
impl IdentityStore for PostgresStore {
    async fn upsert_person(&self, p: &PersonRecord) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let roles = serde_json::to_string(&p.roles).unwrap_or_else(|_| "[]".into());
        c.execute(
            "INSERT INTO people (id, email, name, roles, first_seen, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name, \
             roles = excluded.roles, last_seen = excluded.last_seen",
            &[&p.id, &p.email, &p.name, &roles, &p.last_seen],
        )
        .await
        .map_err(err)?;
        Ok(())
    }
    async fn person(&self, id: &str) -> Result<Option<PersonRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT id, email, name, roles, first_seen, last_seen FROM people WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(err)?;
        Ok(row.map(|r| PersonRecord {
            id: r.get(0),
            email: r.get(1),
            name: r.get(2),
            roles: serde_json::from_str(&r.get::<_, String>(3)).unwrap_or_default(),
            first_seen: r.get(4),
            last_seen: r.get(5),
        }))
    }
    async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            &format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
            &[
                &s.id,
                &s.kind.as_str(),
                &s.person,
                &s.data,
                &s.created_at,
                &s.last_seen,
                &s.expires_at,
            ],
        )
        .await
        .map_err(err)?;
        Ok(())
    }
    async fn session(&self, id: &str, idle_secs: i64) -> Result<Option<SessionRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let at = now();
        let row = c
            .query_opt(
                &format!(
                    "UPDATE sessions SET last_seen = $2 WHERE id = $1 AND kind = 'session' \
                     AND expires_at > $2 AND last_seen + $3 > $2 RETURNING {SESSION_COLUMNS}"
                ),
                &[&id, &at, &idle_secs],
            )
            .await
            .map_err(err)?;
        if row.is_none() {
            c.execute(
                "DELETE FROM sessions WHERE id = $1 AND kind = 'session'",
                &[&id],
            )
            .await
            .map_err(err)?;
        }
        Ok(row.as_ref().map(session_from_row))
    }
    async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(c.execute("DELETE FROM sessions WHERE id = $1", &[&id])
            .await
            .map_err(err)?
            == 1)
    }
    async fn take_login(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                &format!(
                    "DELETE FROM sessions WHERE id = $1 AND kind = 'login' AND expires_at > $2 \
                     RETURNING {SESSION_COLUMNS}"
                ),
                &[&id, &now()],
            )
            .await
            .map_err(err)?;
        Ok(row.as_ref().map(session_from_row))
    }
    async fn purge_sessions(&self) -> Result<u64, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now()])
            .await
            .map_err(err)
    }
}
