//! PostgreSQL: issued certificates: lookup and listing, revocation (which marks the issuer's
//! CRL out of date in the same transaction), and the expiry counts and announcements.

use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;

use crate::store::{
    now, CertFilter, CertificateRecord, CertificateStore, CrlMark, SpanCount, SpanOf, StoreError,
};

use super::{append_audit, cert_from_row, err, pool_err, PostgresStore, CERT_COLUMNS};

#[async_trait]
impl CertificateStore for PostgresStore {
    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = $1"),
                &[&serial],
            )
            .await
            .map_err(err)?;
        Ok(row.as_ref().map(cert_from_row))
    }
    async fn certificates(
        &self,
        filter: &CertFilter,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let at = now();
        let (conditions, params) =
            crate::store::listing::listing(filter, at, crate::store::listing::Dialect::Postgres);
        let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE TRUE{conditions}");
        let args: Vec<Box<dyn ToSql + Sync + Send>> = params
            .into_iter()
            .map(|p| -> Box<dyn ToSql + Sync + Send> {
                match p {
                    crate::store::listing::Param::Text(t) => Box::new(t),
                    crate::store::listing::Param::Int(n) => Box::new(n),
                }
            })
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = c.query(&sql, &params).await.map_err(err)?;
        Ok(rows.iter().map(cert_from_row).collect())
    }
    async fn revoke_certificate(
        &self,
        serial: &str,
        reason: i32,
        reason_name: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        let n = t
            .execute(
                "UPDATE certificates SET status = 'revoked', revoked_at = $1, \
                 revocation_reason = $2 WHERE serial = $3 AND status = 'valid'",
                &[&now(), &reason, &serial],
            )
            .await
            .map_err(err)?;
        if n != 1 {
            return Ok(false);
        }
        // The published CRL of its issuer lacks this revocation until a new one is made.
        t.execute(
            "INSERT INTO crl_marks (issuer, revisions, covered, since) \
             SELECT issuer, 1, 0, $1 FROM certificates WHERE serial = $2 \
             ON CONFLICT (issuer) DO UPDATE SET revisions = crl_marks.revisions + 1, \
               since = CASE WHEN crl_marks.revisions = crl_marks.covered THEN $1 \
                 ELSE crl_marks.since END",
            &[&now(), &serial],
        )
        .await
        .map_err(err)?;
        append_audit(
            &t,
            actor,
            "revoked",
            serial,
            &crate::store::revocation_details(reason, reason_name),
        )
        .await?;
        t.commit().await.map_err(err)?;
        Ok(true)
    }
    async fn import_certificates(
        &self,
        certs: &[CertificateRecord],
        actor: &str,
    ) -> Result<usize, StoreError> {
        self.import(certs, actor).await
    }
    async fn crl_mark(&self, issuer: &str) -> Result<CrlMark, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT revisions, covered, since FROM crl_marks WHERE issuer = $1",
                &[&issuer],
            )
            .await
            .map_err(err)?;
        let (revisions, covered, since) = row
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .unwrap_or((0, 0, 0));
        Ok(CrlMark {
            issuer: issuer.to_owned(),
            revisions,
            covered,
            since,
        })
    }
    async fn expiring_counts(
        &self,
        at: i64,
        within_secs: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        counts(&self.pool, at, within_secs).await
    }
    async fn counts_per_span(
        &self,
        by: SpanOf,
        start: i64,
        width: i64,
        spans: u32,
    ) -> Result<Vec<SpanCount>, StoreError> {
        let (start, width, end) = SpanOf::bounds(start, width, spans);
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(by.query(), &[&start, &width, &end])
            .await
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| SpanCount {
                span: u32::try_from(r.get::<_, i64>(0)).unwrap_or(u32::MAX),
                profile: r.get(1),
                count: r.get(2),
            })
            .collect())
    }
    async fn expiring_unannounced(
        &self,
        at: i64,
        within_secs: i64,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        unannounced(&self.pool, at, within_secs, limit).await
    }
    async fn expiry_announced(&self, serial: &str, actor: &str) -> Result<(), StoreError> {
        announced(&self.pool, serial, actor).await
    }
}

// The expiry queries.

async fn counts(pool: &Pool, at: i64, within: i64) -> Result<Vec<(String, i64)>, StoreError> {
    let c = pool.get().await.map_err(pool_err)?;
    Ok(c.query(
        "SELECT profile, COUNT(*) FROM certificates WHERE status = 'valid' \
         AND not_after >= $1 AND not_after < $2 GROUP BY profile ORDER BY profile",
        &[&at, &at.saturating_add(within)],
    )
    .await
    .map_err(err)?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

async fn unannounced(
    pool: &Pool,
    at: i64,
    within: i64,
    limit: usize,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let c = pool.get().await.map_err(pool_err)?;
    Ok(c.query(
        &format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE status = 'valid' \
             AND not_after >= $1 AND not_after < $2 AND expiry_notified_at IS NULL \
             ORDER BY not_after LIMIT $3"
        ),
        &[&at, &at.saturating_add(within), &(limit as i64)],
    )
    .await
    .map_err(err)?
    .iter()
    .map(cert_from_row)
    .collect())
}

async fn announced(pool: &Pool, serial: &str, actor: &str) -> Result<(), StoreError> {
    let mut c = pool.get().await.map_err(pool_err)?;
    let t = c.transaction().await.map_err(err)?;
    let n = t
        .execute(
            "UPDATE certificates SET expiry_notified_at = $1 \
             WHERE serial = $2 AND expiry_notified_at IS NULL",
            &[&super::now(), &serial],
        )
        .await
        .map_err(err)?;
    if n == 1 {
        append_audit(
            &t,
            actor,
            "expiry_announced",
            serial,
            &serde_json::json!({}),
        )
        .await?;
    }
    t.commit().await.map_err(err)
}
