//! What officers decide outside the SCEP exchange itself: approving or rejecting a PENDING
//! enrollment, and revoking certificates (one, or every one of a device), each followed by a
//! new CRL.

use super::{ApprovalError, Ra, RequestError};

impl Ra {
    /// An officer approves a PENDING enrollment: the certificate is issued from the stored
    /// CSR under the transaction's profile and recorded; the device gets it at its next
    /// CertPoll. Returns the serial.
    pub async fn approve(
        &self,
        transaction_id: &str,
        actor: &str,
    ) -> Result<String, ApprovalError> {
        let store = &self.inner.store;
        let tx = store
            .transaction(transaction_id)
            .await
            .map_err(|e| ApprovalError::Unavailable(e.to_string()))?
            .ok_or(ApprovalError::NotFound)?;
        if tx.state != crate::store::TransactionState::Pending {
            return Err(ApprovalError::NotPending);
        }
        let csr = crate::pki::parse_csr(&tx.csr)
            .map_err(|e| ApprovalError::Refused(format!("the stored CSR: {e}")))?;
        let profile = self
            .profile(Some(&tx.profile))
            .map_err(|e| ApprovalError::Refused(e.to_string()))?
            .clone();
        match self.issue(&profile, tx, csr, None, None, actor).await {
            Ok(crate::scep::Outcome::Success { certs, .. }) => {
                let serial = certs
                    .first()
                    .and_then(|c| crate::store::CertificateRecord::from_der(c, "", "").ok())
                    .map(|r| r.serial)
                    .unwrap_or_default();
                tracing::info!(transaction_id, %serial, "approved and issued");
                Ok(serial)
            }
            Ok(crate::scep::Outcome::Failure { text, .. }) => Err(ApprovalError::Refused(text)),
            Ok(crate::scep::Outcome::Pending) => Err(ApprovalError::NotPending),
            Err(e) => Err(ApprovalError::Unavailable(e.to_string())),
        }
    }

    /// Revoke a certificate (RFC 5280 `reason` code) and publish a new CRL at once. False
    /// when there is no valid certificate with this serial.
    pub async fn revoke(
        &self,
        serial: &str,
        reason: i32,
        actor: &str,
    ) -> Result<bool, RequestError> {
        let unavailable = |e: crate::store::StoreError| RequestError::Unavailable(e.to_string());
        let serial = serial.trim().trim_start_matches("0x").to_ascii_lowercase();
        if !self
            .inner
            .store
            .revoke_certificate(&serial, reason, actor)
            .await
            .map_err(unavailable)?
        {
            return Ok(false);
        }
        tracing::info!(%serial, reason, actor, "revoked");
        // The revocation is committed; new CRLs follow.
        self.refresh_all_crls().await;
        Ok(true)
    }

    /// Revoke every valid certificate issued to a device (a lost or retired device), then
    /// publish one new CRL. Returns the serials revoked.
    pub async fn revoke_device(
        &self,
        device_id: &str,
        reason: i32,
        actor: &str,
    ) -> Result<Vec<String>, RequestError> {
        let unavailable = |e: crate::store::StoreError| RequestError::Unavailable(e.to_string());
        let certs = self
            .inner
            .store
            .certificates(&crate::store::CertFilter {
                device_id: Some(device_id.to_string()),
                status: Some(crate::store::CertStatus::Valid),
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        self.revoke_serials(certs.into_iter().map(|c| c.serial).collect(), reason, actor)
            .await
    }

    /// Revoke these serials (those still valid) and publish one new CRL; returns those
    /// revoked now.
    pub(crate) async fn revoke_serials(
        &self,
        serials: Vec<String>,
        reason: i32,
        actor: &str,
    ) -> Result<Vec<String>, RequestError> {
        let unavailable = |e: crate::store::StoreError| RequestError::Unavailable(e.to_string());
        let mut done = Vec::new();
        for serial in serials {
            if self
                .inner
                .store
                .revoke_certificate(&serial, reason, actor)
                .await
                .map_err(unavailable)?
            {
                tracing::info!(%serial, reason, actor, "revoked");
                done.push(serial);
            }
        }
        if !done.is_empty() {
            self.refresh_all_crls().await;
        }
        Ok(done)
    }

    /// An officer rejects a PENDING enrollment; the device gets FAILURE with `reason`.
    pub async fn reject(
        &self,
        transaction_id: &str,
        reason: &str,
        actor: &str,
    ) -> Result<(), ApprovalError> {
        let store = &self.inner.store;
        match store.reject(transaction_id, reason, actor).await {
            Ok(()) => {
                tracing::info!(transaction_id, reason, "rejected");
                Ok(())
            }
            Err(crate::store::StoreError::Conflict(_)) => {
                match store
                    .transaction(transaction_id)
                    .await
                    .map_err(|e| ApprovalError::Unavailable(e.to_string()))?
                {
                    None => Err(ApprovalError::NotFound),
                    Some(_) => Err(ApprovalError::NotPending),
                }
            }
            Err(e) => Err(ApprovalError::Unavailable(e.to_string())),
        }
    }
}
