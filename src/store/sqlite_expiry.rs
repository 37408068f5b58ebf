//! Expiry queries on SQLite: counts per profile for the metrics, and the certificates the
//! expiry webhook has not announced yet.

use rusqlite::{params, Connection};

use super::sqlite::{append_audit, cert_from_row, err, CERT_COLUMNS};
use super::{CertificateRecord, StoreError};

pub(super) fn counts(
    c: &mut Connection,
    at: i64,
    within: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = c
        .prepare(
            "SELECT profile, COUNT(*) FROM certificates WHERE status = 'valid' \
             AND not_after > ?1 AND not_after <= ?2 GROUP BY profile ORDER BY profile",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map(params![at, at + within], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

pub(super) fn unannounced(
    c: &mut Connection,
    at: i64,
    within: i64,
    limit: usize,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let mut stmt = c
        .prepare(&format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE status = 'valid' \
             AND not_after > ?1 AND not_after <= ?2 AND expiry_notified_at IS NULL \
             ORDER BY not_after LIMIT ?3"
        ))
        .map_err(err)?;
    let rows = stmt
        .query_map(params![at, at + within, limit as i64], cert_from_row)
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

pub(super) fn announced(c: &mut Connection, serial: &str, actor: &str) -> Result<(), StoreError> {
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
