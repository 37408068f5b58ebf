//! PostgreSQL: certificates issued elsewhere, loaded in one transaction.

use crate::store::{import_details, now, CertStatus, CertificateRecord, StoreError};

use super::{append_audit, err, pool_err, PostgresStore};

impl PostgresStore {
    /// See [`crate::store::CertificateStore::import_certificates`].
    pub(super) async fn import(
        &self,
        certs: &[CertificateRecord],
        actor: &str,
    ) -> Result<usize, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let t = c.transaction().await.map_err(err)?;
        let at = now();
        let insert = t
            .prepare_cached(
                "INSERT INTO certificates (serial, der, subject, sans, issuer, not_before, \
                 not_after, profile, status, revoked_at, revocation_reason, transaction_id, \
                 device_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT (serial) DO NOTHING",
            )
            .await
            .map_err(err)?;
        let (mut loaded, mut revoked) = (0usize, 0i64);
        let mut issuers = std::collections::BTreeMap::<&str, i64>::new();
        for cert in certs {
            let n = t
                .execute(
                    &insert,
                    &[
                        &cert.serial,
                        &cert.der,
                        &cert.subject,
                        &cert.sans,
                        &cert.issuer,
                        &cert.not_before,
                        &cert.not_after,
                        &cert.profile,
                        &cert.status.as_str(),
                        &cert.revoked_at,
                        &cert.revocation_reason,
                        &cert.transaction_id,
                        &cert.device_id,
                        &at,
                    ],
                )
                .await
                .map_err(err)?;
            loaded += n as usize;
            if n == 1 && cert.status == CertStatus::Revoked {
                revoked += 1;
                *issuers.entry(cert.issuer.as_str()).or_default() += 1;
            }
        }
        for (issuer, n) in issuers {
            t.execute(
                "INSERT INTO crl_marks (issuer, revisions, covered, since) VALUES ($1, $2, 0, $3) \
                 ON CONFLICT (issuer) DO UPDATE SET revisions = crl_marks.revisions + $2, \
                   since = CASE WHEN crl_marks.revisions = crl_marks.covered THEN $3 \
                     ELSE crl_marks.since END",
                &[&issuer, &n, &at],
            )
            .await
            .map_err(err)?;
        }
        append_audit(
            &t,
            actor,
            "certificates_imported",
            "certificates",
            &import_details(loaded, revoked as usize, certs),
        )
        .await?;
        t.commit().await.map_err(err)?;
        Ok(loaded)
    }
}
