//! PostgreSQL: named CA state, the CRL number, and fenced CRL publication.

use async_trait::async_trait;

use crate::store::{CaStateStore, CrlEntry, CrlMark, StoreError};

use super::{err, pool_err, PostgresStore};

#[async_trait]
impl CaStateStore for PostgresStore {
    async fn state(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(
            c.query_opt("SELECT value FROM ca_state WHERE name = $1", &[&name])
                .await
                .map_err(err)?
                .map(|r| r.get(0)),
        )
    }
    async fn set_state(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
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
    async fn replace_state(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let changed = match expected {
            None => {
                c.execute(
                    "INSERT INTO ca_state (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                    &[&name, &value],
                )
                .await
            }
            Some(old) => {
                c.execute(
                    "UPDATE ca_state SET value = $3 WHERE name = $1 AND value = $2",
                    &[&name, &old, &value],
                )
                .await
            }
        }
        .map_err(err)?;
        Ok(changed == 1)
    }
    async fn crl_listing(
        &self,
        issuer: &str,
        not_after_in: Option<(i64, i64)>,
    ) -> Result<(i64, Vec<CrlEntry>), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        // Read committed whatever the server's default: the list must see what committed
        // while this waited for the counter.
        let t = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(err)?;
        // The counter's row lock is held until commit, so the next caller on any node takes
        // its number after this list was read (and, read committed, lists at least as much).
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
        let next = crate::store::parse_number(Some(current), "crl_number")? + 1;
        t.execute(
            "UPDATE ca_state SET value = $1 WHERE name = 'crl_number'",
            &[&next.to_string().into_bytes()],
        )
        .await
        .map_err(err)?;
        // Only what a CRL lists, not the certificates' DER (see the SQLite engine).
        let rows = match not_after_in {
            None => {
                t.query(
                    "SELECT serial, revoked_at, revocation_reason FROM certificates \
                     WHERE status = 'revoked' AND issuer = $1",
                    &[&issuer],
                )
                .await
            }
            Some((from, to)) => {
                t.query(
                    "SELECT serial, revoked_at, revocation_reason FROM certificates \
                     WHERE status = 'revoked' AND issuer = $1 \
                     AND not_after >= $2 AND not_after < $3",
                    &[&issuer, &from, &to],
                )
                .await
            }
        }
        .map_err(err)?;
        let revoked = rows
            .iter()
            .map(|r| CrlEntry {
                serial: r.get(0),
                revoked_at: r.get(1),
                reason: r.get(2),
            })
            .collect();
        t.commit().await.map_err(err)?;
        Ok((next, revoked))
    }
    async fn publish_crl(
        &self,
        ca: &str,
        number: i64,
        der: &[u8],
        covers: &CrlMark,
    ) -> Result<bool, StoreError> {
        let (crl_key, number_key) = (format!("crl:{ca}"), format!("crl_published_number:{ca}"));
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        t.execute(
            "INSERT INTO ca_state (name, value) VALUES ($1, '0') ON CONFLICT DO NOTHING",
            &[&number_key],
        )
        .await
        .map_err(err)?;
        let published: Vec<u8> = t
            .query_one(
                "SELECT value FROM ca_state WHERE name = $1 FOR UPDATE",
                &[&number_key],
            )
            .await
            .map_err(err)?
            .get(0);
        if crate::store::parse_number(Some(published), &number_key)? >= number {
            return Ok(false);
        }
        for (name, value) in [
            (number_key.as_str(), number.to_string().into_bytes()),
            (crl_key.as_str(), der.to_vec()),
        ] {
            t.execute(
                "INSERT INTO ca_state (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&name, &value],
            )
            .await
            .map_err(err)?;
        }
        // Revocations that came after the list was read stay lacking.
        t.execute(
            "UPDATE crl_marks SET covered = GREATEST(covered, $2) WHERE issuer = $1",
            &[&covers.issuer, &covers.revisions],
        )
        .await
        .map_err(err)?;
        t.commit().await.map_err(err)?;
        Ok(true)
    }
}
