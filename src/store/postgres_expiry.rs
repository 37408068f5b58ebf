//! Expiry queries on PostgreSQL: counts per profile for the metrics, and the certificates the
//! expiry webhook has not announced yet.

use deadpool_postgres::Pool;

use super::postgres::{append_audit, cert_from_row, err, pool_err, CERT_COLUMNS};
use super::{CertificateRecord, StoreError};

pub(super) async fn counts(
    pool: &Pool,
    at: i64,
    within: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let c = pool.get().await.map_err(pool_err)?;
    Ok(c.query(
        "SELECT profile, COUNT(*) FROM certificates WHERE status = 'valid' \
         AND not_after > $1 AND not_after <= $2 GROUP BY profile ORDER BY profile",
        &[&at, &(at + within)],
    )
    .await
    .map_err(err)?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

pub(super) async fn unannounced(
    pool: &Pool,
    at: i64,
    within: i64,
    limit: usize,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let c = pool.get().await.map_err(pool_err)?;
    Ok(c.query(
        &format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE status = 'valid' \
             AND not_after > $1 AND not_after <= $2 AND expiry_notified_at IS NULL \
             ORDER BY not_after LIMIT $3"
        ),
        &[&at, &(at + within), &(limit as i64)],
    )
    .await
    .map_err(err)?
    .iter()
    .map(cert_from_row)
    .collect())
}

pub(super) async fn announced(pool: &Pool, serial: &str, actor: &str) -> Result<(), StoreError> {
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
