//! PostgreSQL: pre-produced OCSP answers.

use async_trait::async_trait;

use crate::store::{CertStatus, CertificateRecord, OcspAnswer, OcspDue, OcspStore, StoreError};

use super::{cert_from_row, err, pool_err, PostgresStore, CERT_COLUMNS};

#[async_trait]
impl OcspStore for PostgresStore {
    async fn ocsp_answer(
        &self,
        serial: &str,
        fresh_until: i64,
    ) -> Result<Option<OcspAnswer>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT r.serial, r.status, r.revoked_at, r.der, r.produced_at, r.next_update \
                 FROM ocsp_responses r JOIN certificates c ON c.serial = r.serial \
                 WHERE r.serial = $1 AND r.status = c.status \
                 AND r.revoked_at IS NOT DISTINCT FROM c.revoked_at AND r.next_update > $2",
                &[&serial, &fresh_until],
            )
            .await
            .map_err(err)?;
        row.map(|r| {
            Ok(OcspAnswer {
                serial: r.try_get(0).map_err(err)?,
                status: CertStatus::parse(r.try_get::<_, &str>(1).map_err(err)?),
                revoked_at: r.try_get(2).map_err(err)?,
                der: r.try_get(3).map_err(err)?,
                produced_at: r.try_get(4).map_err(err)?,
                next_update: r.try_get(5).map_err(err)?,
            })
        })
        .transpose()
    }

    async fn put_ocsp_answers(&self, answers: &[OcspAnswer]) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        let put = t
            .prepare_cached(
                "INSERT INTO ocsp_responses (serial, status, revoked_at, der, produced_at, \
                 next_update) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (serial) DO UPDATE \
                 SET status = excluded.status, revoked_at = excluded.revoked_at, \
                 der = excluded.der, produced_at = excluded.produced_at, \
                 next_update = excluded.next_update \
                 WHERE excluded.produced_at >= ocsp_responses.produced_at",
            )
            .await
            .map_err(err)?;
        for a in answers {
            t.execute(
                &put,
                &[
                    &a.serial,
                    &a.status.as_str(),
                    &a.revoked_at,
                    &a.der,
                    &a.produced_at,
                    &a.next_update,
                ],
            )
            .await
            .map_err(err)?;
        }
        t.commit().await.map_err(err)
    }

    async fn ocsp_due(&self, q: &OcspDue<'_>) -> Result<Vec<CertificateRecord>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let columns = crate::store::ocsp::prefixed(CERT_COLUMNS);
        let rows = c
            .query(
                &format!(
                    "SELECT {columns} FROM certificates c \
                     LEFT JOIN ocsp_responses r ON r.serial = c.serial \
                     WHERE c.issuer = $1 AND c.not_after > $2 \
                     AND (r.serial IS NULL OR r.produced_at < $3 OR r.status <> c.status \
                          OR r.revoked_at IS DISTINCT FROM c.revoked_at) \
                     AND ($4::BIGINT IS NULL OR c.created_at >= $4) \
                     AND ($5::TEXT IS NULL OR c.serial > $5) \
                     ORDER BY c.serial LIMIT $6"
                ),
                &[
                    &q.issuer,
                    &q.now,
                    &q.before,
                    &q.created_since,
                    &q.after_serial,
                    &(q.limit as i64),
                ],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(cert_from_row).collect())
    }
}
