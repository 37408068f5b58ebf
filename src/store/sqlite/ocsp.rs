//! SQLite: pre-produced OCSP answers.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use crate::store::{CertStatus, CertificateRecord, OcspAnswer, OcspDue, OcspStore, StoreError};

use super::{cert_from_row, err, SqliteStore, CERT_COLUMNS};

#[async_trait]
impl OcspStore for SqliteStore {
    async fn ocsp_answer(
        &self,
        serial: &str,
        fresh_until: i64,
    ) -> Result<Option<OcspAnswer>, StoreError> {
        let serial = serial.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT r.serial, r.status, r.revoked_at, r.der, r.produced_at, r.next_update \
                 FROM ocsp_responses r JOIN certificates c ON c.serial = r.serial \
                 WHERE r.serial = ?1 AND r.status = c.status \
                 AND r.revoked_at IS c.revoked_at AND r.next_update > ?2",
                params![serial, fresh_until],
                |r| {
                    Ok(OcspAnswer {
                        serial: r.get(0)?,
                        status: CertStatus::parse(&r.get::<_, String>(1)?),
                        revoked_at: r.get(2)?,
                        der: r.get(3)?,
                        produced_at: r.get(4)?,
                        next_update: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(err)
        })
        .await
    }

    async fn put_ocsp_answers(&self, answers: &[OcspAnswer]) -> Result<(), StoreError> {
        let answers = answers.to_vec();
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            {
                let mut put = t
                    .prepare_cached(
                        "INSERT INTO ocsp_responses (serial, status, revoked_at, der, \
                         produced_at, next_update) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                         ON CONFLICT (serial) DO UPDATE SET status = excluded.status, \
                         revoked_at = excluded.revoked_at, der = excluded.der, \
                         produced_at = excluded.produced_at, next_update = excluded.next_update \
                         WHERE excluded.produced_at >= ocsp_responses.produced_at",
                    )
                    .map_err(err)?;
                for a in &answers {
                    put.execute(params![
                        a.serial,
                        a.status.as_str(),
                        a.revoked_at,
                        a.der,
                        a.produced_at,
                        a.next_update
                    ])
                    .map_err(err)?;
                }
            }
            t.commit().map_err(err)
        })
        .await
    }

    async fn ocsp_due(&self, q: &OcspDue<'_>) -> Result<Vec<CertificateRecord>, StoreError> {
        let (issuer, after) = (q.issuer.to_owned(), q.after_serial.map(str::to_owned));
        let (now, before, since, limit) = (q.now, q.before, q.created_since, q.limit as i64);
        self.background_read(move |c| {
            let sql = due_sql(since.is_some(), after.is_some());
            let mut args: Vec<Box<dyn rusqlite::ToSql>> =
                vec![Box::new(issuer), Box::new(now), Box::new(before)];
            if let Some(t) = since {
                args.push(Box::new(t));
            }
            if let Some(a) = after {
                args.push(Box::new(a));
            }
            args.push(Box::new(limit));
            let mut st = c.prepare(&sql).map_err(err)?;
            let rows = st
                .query_map(rusqlite::params_from_iter(args), cert_from_row)
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }
}

/// The query for certificates whose answer is due: `?1` issuer, `?2` now, `?3` the oldest
/// answer kept, then (when asked) the `created_since` time and the `after_serial` cursor, and
/// the limit last.
///
/// The plan is chosen here, not left to the planner: by (issuer, notAfter) it read every
/// certificate in force and sorted them all for each batch of 256 (0.7 s at 300,000
/// certificates, for every batch of a pass). A full pass walks the serial index from the
/// cursor instead (`+` keeps the issuer and notAfter terms off their index) and stops at the
/// batch's limit; a look at new certificates reads the (created_at, profile) index for the few
/// stored since, and sorts those.
fn due_sql(since: bool, after: bool) -> String {
    let columns = crate::store::ocsp::prefixed(CERT_COLUMNS);
    let source = if since {
        "certificates c INDEXED BY certificates_created_at_profile"
    } else {
        "certificates c"
    };
    let mut sql = format!(
        "SELECT {columns} FROM {source} \
         LEFT JOIN ocsp_responses r ON r.serial = c.serial \
         WHERE +c.issuer = ?1 AND +c.not_after > ?2 \
         AND (r.serial IS NULL OR r.produced_at < ?3 OR r.status <> c.status \
              OR r.revoked_at IS NOT c.revoked_at)"
    );
    let mut n = 3;
    if since {
        n += 1;
        sql.push_str(&format!(" AND c.created_at >= ?{n}"));
    }
    if after {
        n += 1;
        sql.push_str(&format!(" AND c.serial > ?{n}"));
    }
    sql.push_str(&format!(" ORDER BY c.serial LIMIT ?{}", n + 1));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan SQLite makes of each form of the query, on the schema as migrated.
    async fn plans() -> Vec<((bool, bool), String)> {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let mut out = Vec::new();
        for since in [false, true] {
            for after in [false, true] {
                let plan =
                    super::super::query_plan(&store, due_sql(since, after), Vec::new()).await;
                out.push(((since, after), plan));
            }
        }
        out
    }

    /// A batch reads as many certificates as it needs, not every one in force: a full pass
    /// walks the serial index (no sort of the whole table per batch of 256), a look at new
    /// certificates reads them through the index of when they were stored.
    #[tokio::test]
    async fn due_certificates_are_read_in_serial_order_or_by_the_time_they_were_stored() {
        for ((since, after), plan) in plans().await {
            let certs = plan
                .lines()
                .find(|l| l.contains(" c "))
                .unwrap_or_default()
                .to_string();
            if since {
                assert!(
                    certs.contains("certificates_created_at_profile"),
                    "since={since} after={after}: {plan}"
                );
            } else {
                assert!(
                    certs.contains("sqlite_autoindex_certificates_1"),
                    "after={after}: {plan}"
                );
                assert!(!plan.contains("TEMP B-TREE"), "after={after}: {plan}");
            }
            assert!(
                !certs.contains("issuer_not_after"),
                "since={since} after={after}: {plan}"
            );
        }
    }
}
