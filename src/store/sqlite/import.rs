//! SQLite: certificates issued elsewhere, loaded in one transaction.

use rusqlite::params;

use crate::store::{import_details, now, CertStatus, CertificateRecord, StoreError};

use super::{append_audit, err, SqliteStore, CERT_INSERT_COLUMNS};

impl SqliteStore {
    /// See [`crate::store::CertificateStore::import_certificates`].
    pub(super) async fn import(
        &self,
        certs: &[CertificateRecord],
        actor: &str,
    ) -> Result<usize, StoreError> {
        let (certs, actor) = (certs.to_vec(), actor.to_owned());
        self.with(move |c| {
            let t = c.transaction().map_err(err)?;
            let at = now();
            let (mut loaded, mut revoked) = (0, 0);
            {
                let mut insert = t
                    .prepare_cached(&format!(
                        "INSERT INTO certificates ({CERT_INSERT_COLUMNS}, created_at) VALUES \
                         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
                         ON CONFLICT (serial) DO NOTHING"
                    ))
                    .map_err(err)?;
                let mut mark = t
                    .prepare_cached(
                        "INSERT INTO crl_marks (issuer, revisions, covered, since) \
                         VALUES (?1, 1, 0, ?2) \
                         ON CONFLICT (issuer) DO UPDATE SET revisions = crl_marks.revisions + 1, \
                           since = CASE WHEN crl_marks.revisions = crl_marks.covered THEN ?2 \
                             ELSE crl_marks.since END",
                    )
                    .map_err(err)?;
                for cert in &certs {
                    let n = insert
                        .execute(params![
                            cert.serial,
                            cert.der,
                            cert.subject,
                            cert.sans,
                            cert.issuer,
                            cert.not_before,
                            cert.not_after,
                            cert.profile,
                            cert.status.as_str(),
                            cert.revoked_at,
                            cert.revocation_reason,
                            cert.transaction_id,
                            cert.device_id,
                            at
                        ])
                        .map_err(err)?;
                    loaded += n;
                    if n == 1 && cert.status == CertStatus::Revoked {
                        revoked += 1;
                        mark.execute(params![cert.issuer, at]).map_err(err)?;
                    }
                }
            }
            append_audit(
                &t,
                &actor,
                "certificates_imported",
                "certificates",
                &import_details(loaded, revoked, &certs),
            )?;
            t.commit().map_err(err)?;
            Ok(loaded)
        })
        .await
    }
}
