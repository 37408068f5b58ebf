//! SQLite: named CA state, the CRL number, and fenced CRL publication.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use crate::store::{CaStateStore, CrlEntry, CrlMark, StoreError};

use super::{err, SqliteStore};

#[async_trait]
impl CaStateStore for SqliteStore {
    async fn state(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = name.to_owned();
        // On the read-only connection: a CRL (4.9 MB at 100,000 revocations) read for a
        // relying party does not hold up the writer.
        self.read(move |c| {
            c.query_row("SELECT value FROM ca_state WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)
        })
        .await
    }
    async fn set_state(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
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
    async fn replace_state(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let (name, expected, value) = (
            name.to_owned(),
            expected.map(<[u8]>::to_vec),
            value.to_vec(),
        );
        self.with(move |c| {
            let changed = match &expected {
                None => c.execute(
                    "INSERT INTO ca_state (name, value) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO NOTHING",
                    params![name, value],
                ),
                Some(old) => c.execute(
                    "UPDATE ca_state SET value = ?3 WHERE name = ?1 AND value = ?2",
                    params![name, old, value],
                ),
            }
            .map_err(err)?;
            Ok(changed == 1)
        })
        .await
    }
    async fn crl_listing(
        &self,
        issuer: &str,
        not_after_in: Option<(i64, i64)>,
    ) -> Result<(i64, Vec<CrlEntry>), StoreError> {
        let issuer = issuer.to_owned();
        // One IMMEDIATE transaction on the writer: the database's write lock is held from the
        // number to the end of the list, so no revocation and no other CRL number (this
        // process or another, such as `sigil cert revoke`) comes between them.
        self.with(move |c| {
            let t = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err)?;
            let current: Option<Vec<u8>> = t
                .query_row(
                    "SELECT value FROM ca_state WHERE name = 'crl_number'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            let next = crate::store::parse_number(current, "crl_number")? + 1;
            t.execute(
                "INSERT INTO ca_state (name, value) VALUES ('crl_number', ?1) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [next.to_string().into_bytes()],
            )
            .map_err(err)?;
            // Only what a CRL lists (not the certificates' DER), by (status, ...) indexes: the
            // whole list by status, a partition by (status, notAfter), a week's revoked rows.
            // `+issuer` keeps the planner off the (issuer, notAfter) index, which in a one-CA
            // store walks every certificate (60 against 14 ms for a week at a million, seconds
            // for the whole list).
            let window = match not_after_in {
                None => "",
                Some(_) => " AND not_after >= ?2 AND not_after < ?3",
            };
            let (from, to) = not_after_in.unwrap_or_default();
            let mut stmt = t
                .prepare_cached(&format!(
                    "SELECT serial, revoked_at, revocation_reason FROM certificates \
                     WHERE status = 'revoked' AND +issuer = ?1{window}"
                ))
                .map_err(err)?;
            let entry = |r: &rusqlite::Row<'_>| {
                Ok(CrlEntry {
                    serial: r.get(0)?,
                    revoked_at: r.get(1)?,
                    reason: r.get(2)?,
                })
            };
            let revoked = if not_after_in.is_some() {
                stmt.query_map(params![issuer, from, to], entry)
            } else {
                stmt.query_map(params![issuer], entry)
            }
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
            drop(stmt);
            t.commit().map_err(err)?;
            Ok((next, revoked))
        })
        .await
    }
    async fn publish_crl(
        &self,
        ca: &str,
        number: i64,
        der: &[u8],
        covers: &CrlMark,
    ) -> Result<bool, StoreError> {
        let (crl_key, number_key) = (format!("crl:{ca}"), format!("crl_published_number:{ca}"));
        let (der, covers) = (der.to_vec(), covers.clone());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let published: Option<Vec<u8>> = t
                .query_row(
                    "SELECT value FROM ca_state WHERE name = ?1",
                    [&number_key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            if crate::store::parse_number(published, &number_key)? >= number {
                return Ok(false);
            }
            for (name, value) in [
                (number_key.as_str(), number.to_string().into_bytes()),
                (crl_key.as_str(), der.clone()),
            ] {
                t.execute(
                    "INSERT INTO ca_state (name, value) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    params![name, value],
                )
                .map_err(err)?;
            }
            // Revocations that came after the list was read stay lacking.
            t.execute(
                "UPDATE crl_marks SET covered = MAX(covered, ?2) WHERE issuer = ?1",
                params![covers.issuer, covers.revisions],
            )
            .map_err(err)?;
            t.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }
}
