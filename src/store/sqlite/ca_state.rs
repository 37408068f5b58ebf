//! SQLite: named CA state, the CRL number, and fenced CRL publication.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use crate::store::{CaStateStore, CertificateRecord, CrlMark, StoreError};

use super::{cert_from_row, err, SqliteStore, CERT_COLUMNS};

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
    async fn next_crl_number(&self) -> Result<i64, StoreError> {
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
            let next = crate::store::parse_number(current, "crl_number")? + 1;
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
    async fn crl_listing(
        &self,
        issuer: &str,
        not_after_in: Option<(i64, i64)>,
    ) -> Result<(i64, Vec<CertificateRecord>), StoreError> {
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
            // The whole list by status, a partition by (status, notAfter): a week's revoked
            // rows. A range over all time would walk every certificate, and so would the
            // (issuer, notAfter) index for a week of a one-CA store (`+issuer` keeps the
            // planner off it: 60 against 14 ms for a week at a million).
            let revoked = match not_after_in {
                None => {
                    let mut stmt = t
                        .prepare_cached(&format!(
                            "SELECT {CERT_COLUMNS} FROM certificates \
                             WHERE status = 'revoked' AND issuer = ?1"
                        ))
                        .map_err(err)?;
                    let rows = stmt.query_map([&issuer], cert_from_row).map_err(err)?;
                    rows.collect::<Result<Vec<_>, _>>().map_err(err)?
                }
                Some((from, to)) => {
                    let mut stmt = t
                        .prepare_cached(&format!(
                            "SELECT {CERT_COLUMNS} FROM certificates WHERE status = 'revoked' \
                             AND +issuer = ?1 AND not_after >= ?2 AND not_after < ?3"
                        ))
                        .map_err(err)?;
                    let rows = stmt
                        .query_map(params![issuer, from, to], cert_from_row)
                        .map_err(err)?;
                    rows.collect::<Result<Vec<_>, _>>().map_err(err)?
                }
            };
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
