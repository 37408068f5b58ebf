//! Where Sigil keeps what it decided: SCEP transactions and issued certificates.
//!
//! One trait, [`Store`], so the RA does not care which engine holds the data. This version has
//! the in-process engine [`MemoryStore`]: it enforces the same invariants (a transactionID
//! belongs to one requester key and has one outcome; a serial is never used twice; the
//! certificate is recorded before its CertRep is built) but keeps them only while the process
//! runs. The SQLite and PostgreSQL engines of the storage issue implement the same trait.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

/// The state of a SCEP transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionState {
    /// Waiting for an officer.
    Pending,
    /// Issued: the serial (hex) of the certificate.
    Issued {
        /// Serial, lower-case hex without leading zeros.
        serial: String,
    },
    /// Refused by an officer or by policy after being recorded.
    Rejected {
        /// Why, sent as failInfoText.
        reason: String,
    },
}

/// A SCEP transaction: one transactionID, one requester key, one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRecord {
    /// transactionID as sent.
    pub transaction_id: String,
    /// Profile name.
    pub profile: String,
    /// SHA-256 (hex) of the requested public key (the CSR's SubjectPublicKeyInfo).
    pub key_sha256: String,
    /// SHA-256 (hex) of the public key that signed the request: only it may poll.
    pub signer_sha256: String,
    /// State.
    pub state: TransactionState,
    /// The CSR (DER) while the transaction waits for approval; empty once decided (it may
    /// carry the challenge password, which is not kept at rest).
    pub csr: Vec<u8>,
}

/// An issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Serial, lower-case hex without leading zeros.
    pub serial: String,
    /// The certificate (DER).
    pub der: Vec<u8>,
    /// Subject, one line.
    pub subject: String,
    /// Profile name.
    pub profile: String,
    /// The transaction it came from.
    pub transaction_id: String,
}

/// Storage failures.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The write breaks an invariant (transaction taken by another key, serial reused, state
    /// already final).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The engine failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The storage interface of the RA.
#[async_trait]
pub trait Store: Send + Sync {
    /// The transaction with this ID, if any.
    async fn transaction(&self, id: &str) -> Result<Option<TransactionRecord>, StoreError>;
    /// Record a new PENDING transaction. Conflict when the ID exists.
    async fn insert_pending(&self, tx: &TransactionRecord) -> Result<(), StoreError>;
    /// Record an issued certificate and mark its transaction issued, atomically: the
    /// transaction is created or moved from PENDING; conflict when the ID belongs to another
    /// key or is already final, or the serial exists.
    async fn record_issued(
        &self,
        tx: &TransactionRecord,
        cert: &CertificateRecord,
    ) -> Result<(), StoreError>;
    /// Mark a PENDING transaction rejected.
    async fn reject(&self, id: &str, reason: &str) -> Result<(), StoreError>;
    /// The certificate with this serial (hex), if any.
    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;
    /// PENDING transactions, oldest first.
    async fn pending(&self) -> Result<Vec<TransactionRecord>, StoreError>;
}

#[derive(Default)]
struct Tables {
    transactions: HashMap<String, TransactionRecord>,
    order: Vec<String>,
    certificates: HashMap<String, CertificateRecord>,
}

/// The in-process engine (see the module header).
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn transaction(&self, id: &str) -> Result<Option<TransactionRecord>, StoreError> {
        Ok(self.lock().transactions.get(id).cloned())
    }

    async fn insert_pending(&self, tx: &TransactionRecord) -> Result<(), StoreError> {
        let mut t = self.lock();
        if t.transactions.contains_key(&tx.transaction_id) {
            return Err(StoreError::Conflict(format!(
                "transaction {} exists",
                tx.transaction_id
            )));
        }
        let mut tx = tx.clone();
        tx.state = TransactionState::Pending;
        t.order.push(tx.transaction_id.clone());
        t.transactions.insert(tx.transaction_id.clone(), tx);
        Ok(())
    }

    async fn record_issued(
        &self,
        tx: &TransactionRecord,
        cert: &CertificateRecord,
    ) -> Result<(), StoreError> {
        let mut t = self.lock();
        if t.certificates.contains_key(&cert.serial) {
            return Err(StoreError::Conflict(format!(
                "serial {} exists",
                cert.serial
            )));
        }
        match t.transactions.get(&tx.transaction_id) {
            Some(old) if old.key_sha256 != tx.key_sha256 => {
                return Err(StoreError::Conflict(format!(
                    "transaction {} belongs to another key",
                    tx.transaction_id
                )))
            }
            Some(old) if old.state != TransactionState::Pending => {
                return Err(StoreError::Conflict(format!(
                    "transaction {} is already final",
                    tx.transaction_id
                )))
            }
            Some(_) => {}
            None => t.order.push(tx.transaction_id.clone()),
        }
        let mut rec = tx.clone();
        rec.state = TransactionState::Issued {
            serial: cert.serial.clone(),
        };
        rec.csr.clear();
        t.transactions.insert(rec.transaction_id.clone(), rec);
        t.certificates.insert(cert.serial.clone(), cert.clone());
        Ok(())
    }

    async fn reject(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let mut t = self.lock();
        match t.transactions.get_mut(id) {
            Some(tx) if tx.state == TransactionState::Pending => {
                tx.state = TransactionState::Rejected {
                    reason: reason.into(),
                };
                tx.csr.clear();
                Ok(())
            }
            Some(_) => Err(StoreError::Conflict(format!(
                "transaction {id} is already final"
            ))),
            None => Err(StoreError::Conflict(format!("no transaction {id}"))),
        }
    }

    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        Ok(self.lock().certificates.get(serial).cloned())
    }

    async fn pending(&self) -> Result<Vec<TransactionRecord>, StoreError> {
        let t = self.lock();
        Ok(t.order
            .iter()
            .filter_map(|id| t.transactions.get(id))
            .filter(|tx| tx.state == TransactionState::Pending)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(id: &str, key: &str) -> TransactionRecord {
        TransactionRecord {
            transaction_id: id.into(),
            profile: "default".into(),
            key_sha256: key.into(),
            signer_sha256: key.into(),
            state: TransactionState::Pending,
            csr: vec![1],
        }
    }

    fn cert(serial: &str, id: &str) -> CertificateRecord {
        CertificateRecord {
            serial: serial.into(),
            der: vec![2],
            subject: "CN=x".into(),
            profile: "default".into(),
            transaction_id: id.into(),
        }
    }

    #[tokio::test]
    async fn invariants() {
        let s = MemoryStore::new();
        s.record_issued(&tx("t1", "k1"), &cert("01", "t1"))
            .await
            .unwrap();
        // The same transaction cannot be issued twice, nor by another key.
        assert!(s
            .record_issued(&tx("t1", "k1"), &cert("02", "t1"))
            .await
            .is_err());
        assert!(s
            .record_issued(&tx("t1", "k2"), &cert("03", "t1"))
            .await
            .is_err());
        // A serial is never reused.
        assert!(s
            .record_issued(&tx("t2", "k1"), &cert("01", "t2"))
            .await
            .is_err());
        assert!(
            s.transaction("t2").await.unwrap().is_none(),
            "no half-written record"
        );
        // Pending → issued; pending → rejected.
        s.insert_pending(&tx("t3", "k3")).await.unwrap();
        assert!(s.insert_pending(&tx("t3", "k3")).await.is_err());
        assert_eq!(s.pending().await.unwrap().len(), 1);
        s.record_issued(&tx("t3", "k3"), &cert("04", "t3"))
            .await
            .unwrap();
        s.insert_pending(&tx("t4", "k4")).await.unwrap();
        s.reject("t4", "no").await.unwrap();
        assert!(s.reject("t4", "again").await.is_err());
        assert!(s.pending().await.unwrap().is_empty());
        assert_eq!(
            s.certificate("04").await.unwrap().unwrap().transaction_id,
            "t3"
        );
    }
}
