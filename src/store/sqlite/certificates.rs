//! SQLite: issued certificates: lookup and listing, revocation (which marks the issuer's
//! CRL out of date in the same transaction), and the expiry counts and announcements.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{
    now, CertFilter, CertificateRecord, CertificateStore, CrlMark, SpanCount, SpanOf, StoreError,
};

use super::{append_audit, cert_from_row, err, SqliteStore, CERT_COLUMNS};
use crate::store::listing::{Dialect, Param};

#[async_trait]
impl CertificateStore for SqliteStore {
    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let serial = serial.to_owned();
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = ?1"),
                [serial],
                cert_from_row,
            )
            .optional()
            .map_err(err)
        })
        .await
    }
    async fn certificates(
        &self,
        filter: &CertFilter,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let f = filter.clone();
        self.read(move |c| {
            let (sql, args) = listing(&f, now());
            let mut stmt = c.prepare(&sql).map_err(err)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), cert_from_row)
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }
    async fn revoke_certificate(
        &self,
        serial: &str,
        reason: i32,
        reason_name: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let (serial, actor, reason_name) =
            (serial.to_owned(), actor.to_owned(), reason_name.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let n = t
                .execute(
                    "UPDATE certificates SET status = 'revoked', revoked_at = ?1, \
                     revocation_reason = ?2 WHERE serial = ?3 AND status = 'valid'",
                    params![now(), reason, serial],
                )
                .map_err(err)?;
            if n != 1 {
                return Ok(false);
            }
            // The published CRL of its issuer lacks this revocation until a new one is made.
            t.execute(
                "INSERT INTO crl_marks (issuer, revisions, covered, since) \
             SELECT issuer, 1, 0, ?1 FROM certificates WHERE serial = ?2 \
             ON CONFLICT (issuer) DO UPDATE SET revisions = crl_marks.revisions + 1, \
               since = CASE WHEN crl_marks.revisions = crl_marks.covered THEN ?1 \
                 ELSE crl_marks.since END",
                params![now(), serial],
            )
            .map_err(err)?;
            append_audit(
                &t,
                &actor,
                "revoked",
                &serial,
                &crate::store::revocation_details(reason, &reason_name),
            )?;
            t.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }
    async fn import_certificates(
        &self,
        certs: &[CertificateRecord],
        actor: &str,
    ) -> Result<usize, StoreError> {
        self.import(certs, actor).await
    }
    async fn crl_mark(&self, issuer: &str) -> Result<CrlMark, StoreError> {
        let issuer = issuer.to_owned();
        self.with(move |c| {
            let found: Option<(i64, i64, i64)> = c
                .query_row(
                    "SELECT revisions, covered, since FROM crl_marks WHERE issuer = ?1",
                    [&issuer],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(err)?;
            let (revisions, covered, since) = found.unwrap_or((0, 0, 0));
            Ok(CrlMark {
                issuer,
                revisions,
                covered,
                since,
            })
        })
        .await
    }
    async fn expiring_counts(
        &self,
        at: i64,
        within_secs: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.background_read(move |c| counts(c, at, within_secs))
            .await
    }
    async fn counts_per_span(
        &self,
        by: SpanOf,
        start: i64,
        width: i64,
        spans: u32,
    ) -> Result<Vec<SpanCount>, StoreError> {
        let (start, width, end) = SpanOf::bounds(start, width, spans);
        self.read(move |c| {
            c.prepare_cached(by.query())
                .and_then(|mut stmt| {
                    stmt.query_map(params![start, width, end], |r| {
                        Ok(SpanCount {
                            span: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                            profile: r.get(1)?,
                            count: r.get(2)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(err)
        })
        .await
    }
    async fn expiring_unannounced(
        &self,
        at: i64,
        within_secs: i64,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        self.background_read(move |c| unannounced(c, at, within_secs, limit))
            .await
    }
    async fn expiry_announced(&self, serial: &str, actor: &str) -> Result<(), StoreError> {
        let (serial, actor) = (serial.to_owned(), actor.to_owned());
        self.with(move |c| announced(c, &serial, &actor)).await
    }
}

// The expiry queries.

fn counts(c: &Connection, at: i64, within: i64) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = c
        .prepare(
            "SELECT profile, COUNT(*) FROM certificates WHERE status = 'valid' \
             AND not_after >= ?1 AND not_after < ?2 GROUP BY profile ORDER BY profile",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map(params![at, at.saturating_add(within)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

fn unannounced(
    c: &Connection,
    at: i64,
    within: i64,
    limit: usize,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let mut stmt = c
        .prepare(&format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE status = 'valid' \
             AND not_after >= ?1 AND not_after < ?2 AND expiry_notified_at IS NULL \
             ORDER BY not_after LIMIT ?3"
        ))
        .map_err(err)?;
    let rows = stmt
        .query_map(
            params![at, at.saturating_add(within), limit as i64],
            cert_from_row,
        )
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

fn announced(c: &mut Connection, serial: &str, actor: &str) -> Result<(), StoreError> {
    let t = c.transaction().map_err(err)?;
    let n = t
        .execute(
            "UPDATE certificates SET expiry_notified_at = ?1 \
             WHERE serial = ?2 AND expiry_notified_at IS NULL",
            params![super::now(), serial],
        )
        .map_err(err)?;
    if n == 1 {
        append_audit(
            &t,
            actor,
            "expiry_announced",
            serial,
            &serde_json::json!({}),
        )?;
    }
    t.commit().map_err(err)
}

/// The listing's query and its parameters, for `f` at time `at`.
fn listing(f: &CertFilter, at: i64) -> (String, Vec<rusqlite::types::Value>) {
    // A device has a handful of certificates: with one named, its index is the way in,
    // whatever else is asked. Left to itself (no statistics) SQLite took the (status,
    // created_at) index for "this device's valid certificates" and read every valid one:
    // 18 s at a million, for revoking a device.
    let source = if f.device_id.is_some() {
        "certificates INDEXED BY certificates_device_id"
    } else {
        "certificates"
    };
    let (filter, params) = crate::store::listing::listing(f, at, Dialect::Sqlite);
    let args = params
        .into_iter()
        .map(|p| match p {
            Param::Text(t) => t.into(),
            Param::Int(n) => n.into(),
        })
        .collect();
    (
        format!("SELECT {CERT_COLUMNS} FROM {source} WHERE 1 = 1{filter}"),
        args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CertStatus;

    /// The plan SQLite makes of the listing for `f`, on the schema as migrated.
    async fn plan(store: &SqliteStore, f: CertFilter) -> String {
        let (sql, args) = listing(&f, 0);
        super::super::query_plan(store, sql, args).await
    }

    /// A listing with a limit reads in an index's order and stops at the limit: no filter
    /// (newest first), a profile, a status, both, and the soonest ending. Only ties of the
    /// same second are sorted ("RIGHT PART"), never every certificate the filter matches (a
    /// profile's newest 100 sorted all of the profile's certificates: 1.1 s at a million).
    #[tokio::test]
    async fn limited_listings_read_in_index_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let limited = |f: CertFilter| CertFilter { limit: 100, ..f };
        let cases = [
            ("newest", limited(CertFilter::default())),
            (
                "a profile",
                limited(CertFilter {
                    profile: Some("wifi".into()),
                    ..Default::default()
                }),
            ),
            (
                "a status",
                limited(CertFilter {
                    status: Some(CertStatus::Revoked),
                    ..Default::default()
                }),
            ),
            (
                "a profile and a status",
                limited(CertFilter {
                    profile: Some("wifi".into()),
                    status: Some(CertStatus::Valid),
                    ..Default::default()
                }),
            ),
            (
                "expiring",
                limited(CertFilter {
                    expiring_within_secs: Some(7 * 86_400),
                    ..Default::default()
                }),
            ),
        ];
        for (what, f) in cases {
            let plan = plan(&store, f).await;
            assert!(
                !plan.contains("TEMP B-TREE FOR ORDER BY"),
                "{what}: sorts everything it matches:\n{plan}"
            );
        }
    }

    /// A device's certificates are read through the device's index, whatever else the
    /// filter names (a device's valid certificates read every valid one through the (status,
    /// created_at) index: 18 s at a million, for revoking a device).
    #[tokio::test]
    async fn a_devices_certificates_are_read_through_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let device = |f: CertFilter| CertFilter {
            device_id: Some("mdm:device-1".into()),
            ..f
        };
        for (what, f) in [
            ("alone", device(CertFilter::default())),
            (
                "valid ones",
                device(CertFilter {
                    status: Some(CertStatus::Valid),
                    ..Default::default()
                }),
            ),
            (
                "of a profile, newest 200",
                device(CertFilter {
                    profile: Some("wifi".into()),
                    limit: 200,
                    ..Default::default()
                }),
            ),
        ] {
            let plan = plan(&store, f).await;
            assert!(
                plan.contains("USING INDEX certificates_device_id"),
                "{what}:\n{plan}"
            );
        }
    }
}
