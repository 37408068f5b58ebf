//! The read-only SCEP operations: CertPoll (the recorded outcome of the requester's own
//! transaction), GetCert and GetCRL.

use super::decide::{fail, record_key, serial_hex, store_err, unreadable};
use super::{Authority, RequestError};
use crate::scep::{FailInfo, IssuerAndSerial, IssuerAndSubject, Outcome, PkiMessage};

impl Authority {
    pub(super) async fn poll(
        &self,
        msg: &PkiMessage,
        plain: &[u8],
    ) -> Result<Outcome, RequestError> {
        if let Err(e) = IssuerAndSubject::parse(plain) {
            tracing::warn!(error = %e, "decrypted content is not IssuerAndSubject");
            return Ok(unreadable());
        }
        // Only the requester may poll: the poll must be signed by the key that signed the
        // request. A stranger learns nothing, not even that the transaction exists.
        let signer_serial = self.issued_by_us(&msg.signer_cert).and_then(|c| {
            c.serial_number()
                .to_bn()
                .ok()
                .map(|b| serial_hex(&b.to_vec()))
        });
        // The record's key includes the signer's key: a stranger's poll finds nothing.
        let tx = self
            .inner
            .store
            .transaction(&record_key(msg, signer_serial.as_deref()))
            .await
            .map_err(store_err)?;
        let Some(tx) = tx else {
            return Ok(fail(
                FailInfo::BadCertId,
                format!(
                    "no transaction {} is known for this requester",
                    msg.transaction_id
                ),
            ));
        };
        let profile = self.profile(Some(&tx.profile)).cloned()?;
        self.recorded(&tx, &profile).await
    }

    pub(super) async fn get_cert(&self, plain: &[u8]) -> Result<Outcome, RequestError> {
        let want = match IssuerAndSerial::parse(plain) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "decrypted content is not IssuerAndSerialNumber");
                return Ok(unreadable());
            }
        };
        let serial = serial_hex(&want.serial);
        let ours = self.inner.ca_subject == want.issuer
            || self
                .inner
                .retired
                .iter()
                .any(|g| g.subject_der == want.issuer);
        let found = if ours {
            self.inner
                .store
                .certificate(&serial)
                .await
                .map_err(store_err)?
        } else {
            None
        };
        Ok(match found {
            Some(c) => Outcome::Success {
                certs: vec![c.der],
                crls: Vec::new(),
            },
            None => fail(
                FailInfo::BadCertId,
                format!("no certificate with serial {serial} from this CA"),
            ),
        })
    }

    pub(super) async fn get_crl(&self, plain: &[u8]) -> Result<Outcome, RequestError> {
        let want = match IssuerAndSerial::parse(plain) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "decrypted content is not IssuerAndSerialNumber");
                return Ok(unreadable());
            }
        };
        // The CRL of the CA that issued the certificate asked about: a retired generation's
        // certificates are on its own CRL.
        let generation = self
            .inner
            .retired
            .iter()
            .position(|g| g.subject_der == want.issuer);
        let der = self.crl_of(generation).await?;
        Ok(Outcome::Success {
            certs: Vec::new(),
            crls: vec![der],
        })
    }
}
