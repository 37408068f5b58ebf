//! SQLite: certificates issued elsewhere, loaded in one transaction.

use rusqlite::params;

use crate::store::{import_details, now, CertStatus, CertificateRecord, StoreError};

use super::{append_audit, err, SqliteStore};

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
                    let n = super::issue::insert_certificate(
                        &t,
                        cert,
                        at,
                        "ON CONFLICT (serial) DO NOTHING",
                    )
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
