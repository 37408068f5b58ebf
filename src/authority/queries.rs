//! Questions about requests and certificates, in no protocol's terms: a requester's own
//! transaction (SCEP CertPoll), a certificate by issuer and serial (GetCert), the CRL of an
//! issuer (GetCRL).

use super::decision::{Decision, RefusalKind, Requester};
use super::enroll::{serial_hex, store_err};
use super::{Authority, Profile, RequestError};
use crate::store::TransactionRecord;

impl Authority {
    /// The decision on the requester's own transaction `transaction_id`, with the profile it
    /// was decided under. Only the requester may ask (the record is found by its key): a
    /// stranger learns nothing, not even that the transaction exists.
    pub async fn poll(
        &self,
        transaction_id: &str,
        requester: &Requester,
    ) -> Result<(Decision, Option<&Profile>), RequestError> {
        let signer_serial = requester
            .certificate
            .as_deref()
            .and_then(|c| self.issued_by_us(c))
            .and_then(|c| {
                c.serial_number()
                    .to_bn()
                    .ok()
                    .map(|b| serial_hex(&b.to_vec()))
            });
        let key = TransactionRecord::key(
            transaction_id,
            &requester.key_sha256,
            signer_serial.as_deref(),
        );
        match self
            .inner
            .store
            .transaction(&key)
            .await
            .map_err(store_err)?
        {
            Some(tx) => {
                let profile = self.profile(Some(&tx.profile))?;
                Ok((self.recorded(&tx).await?, Some(profile)))
            }
            None => Ok((
                Decision::refused(
                    RefusalKind::Unknown,
                    format!("no transaction {transaction_id} is known for this requester"),
                ),
                None,
            )),
        }
    }

    /// The certificate (DER) with `serial` (big-endian bytes) issued by the CA whose subject
    /// is `issuer` (DER), if this CA (or a retired generation) issued it.
    pub async fn certificate_by_issuer(
        &self,
        issuer: &[u8],
        serial: &[u8],
    ) -> Result<Decision, RequestError> {
        let serial = serial_hex(serial);
        let ours = self.inner.ca_subject == issuer
            || self.inner.retired.iter().any(|g| g.subject_der == issuer);
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
            Some(c) => Decision::Issued { certificate: c.der },
            None => Decision::refused(
                RefusalKind::Unknown,
                format!("no certificate with serial {serial} from this CA"),
            ),
        })
    }

    /// The current CRL (DER) of the CA whose subject is `issuer` (DER): a retired
    /// generation's certificates are on its own CRL; anything else gets the active CA's.
    pub async fn crl_by_issuer(&self, issuer: &[u8]) -> Result<Vec<u8>, RequestError> {
        let generation = self
            .inner
            .retired
            .iter()
            .position(|g| g.subject_der == issuer);
        self.crl_of(generation).await
    }
}
