//! The CA generations the RA serves (see [`super::generations`]): the active one issues;
//! retired ones keep their CRL at `/crl/<label>.crl`, their OCSP answers and their devices'
//! renewals; the next one is offered by GetNextCACert with its RA certificate and the link
//! certificate signed by the active CA.

use openssl::x509::X509;
use rcgen::Issuer;

use super::generations::{cert_key, Generations};
use super::{Authority, LoadError, RequestError};
use crate::hsm::TokenKey;
use crate::hsm::{Hsm, KeyUri};
use crate::pki::ocsp::IssuerHashes;
use crate::reason::Reason;
use crate::store::StoreError;

/// One CA generation: its certificate and key on the token.
pub(crate) struct CaGeneration {
    /// Key label (the name in `/crl/<label>.crl`).
    pub(crate) label: String,
    /// Certificate (DER).
    pub(crate) cert: Vec<u8>,
    pub(crate) x509: X509,
    /// notBefore and notAfter (Unix seconds).
    pub(crate) validity: (i64, i64),
    /// Subject (DER), as GetCert's IssuerAndSerialNumber names it.
    pub(crate) subject_der: Vec<u8>,
    /// Subject as the store writes certificates' issuer.
    pub(crate) issuer_text: String,
    pub(crate) issuer: Issuer<'static, TokenKey>,
    pub(crate) hashes: IssuerHashes,
    /// Its delegated OCSP responder.
    pub(crate) responder: super::responder::Responder,
}

impl CaGeneration {
    /// Read a generation from the token (blocking), with its OCSP responder (made or renewed
    /// if need be; a new responder certificate is returned for the store).
    pub(crate) fn load(
        hsm: &Hsm,
        label: &str,
        stored_responder: Option<Vec<u8>>,
        responder_days: u32,
    ) -> Result<(CaGeneration, Option<Vec<u8>>), LoadError> {
        let cert = hsm.certificate_blocking(label)?.ok_or_else(|| {
            LoadError::Certificate(Reason::new(format!(
                "no CA certificate `{label}` on token `{}`",
                hsm.token()
            )))
        })?;
        let key = TokenKey::open(hsm, &KeyUri::labelled(hsm.token(), label))?;
        Self::from_parts(hsm, label, cert, key, stored_responder, responder_days)
    }

    pub(crate) fn from_parts(
        hsm: &Hsm,
        label: &str,
        cert: Vec<u8>,
        key: TokenKey,
        stored_responder: Option<Vec<u8>>,
        responder_days: u32,
    ) -> Result<(CaGeneration, Option<Vec<u8>>), LoadError> {
        let bad = |e: Reason| {
            LoadError::Certificate(Reason::context(format!("CA certificate `{label}`"), e))
        };
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&cert).map_err(|e| bad(Reason::caused_by(e)))?;
        let subject_der = parsed.subject().as_raw().to_vec();
        let issuer_text = parsed.subject().to_string();
        let validity = (
            parsed.validity().not_before.timestamp(),
            parsed.validity().not_after.timestamp(),
        );
        let hashes = IssuerHashes::new(&subject_der, &parsed.public_key().subject_public_key.data);
        let x509 = X509::from_der(&cert).map_err(|e| bad(Reason::caused_by(e)))?;
        let issuer = Issuer::from_ca_cert_der(&cert.clone().into(), key.clone())
            .map_err(|e| bad(Reason::caused_by(e)))?;
        let (responder, fresh) = super::responder::ensure(
            hsm,
            label,
            &key,
            &cert,
            &issuer,
            stored_responder,
            responder_days,
        )
        .map_err(|e| LoadError::Certificate(Reason::caused_by(e)))?;
        Ok((
            CaGeneration {
                label: label.to_string(),
                cert,
                x509,
                validity,
                subject_der,
                issuer_text,
                issuer,
                hashes,
                responder,
            },
            fresh,
        ))
    }

    /// Did this CA issue `cert` (name and signature)?
    pub(crate) fn issued(&self, cert: &X509) -> bool {
        let Ok(key) = self.x509.public_key() else {
            return false;
        };
        cert.issuer_name_hash() == self.x509.subject_name_hash()
            && cert.verify(&key).unwrap_or(false)
    }
}

/// Revoked certificates as the CRL builder wants them: (serial bytes, revocation time,
/// reason code).
pub(crate) fn crl_entries(
    revoked: Vec<crate::store::CrlEntry>,
) -> Vec<(Vec<u8>, time::OffsetDateTime, i32)> {
    revoked
        .into_iter()
        .filter_map(|c| {
            let at = time::OffsetDateTime::from_unix_timestamp(c.revoked_at?).ok()?;
            let serial = hex::decode(if c.serial.len() % 2 == 1 {
                format!("0{}", c.serial)
            } else {
                c.serial.clone()
            })
            .ok()?;
            Some((serial, at, c.reason.unwrap_or(0)))
        })
        .collect()
}

impl Authority {
    /// The CRL of a retired CA generation, by label: made on this node when it has none that
    /// is fresh for another half of its life. `None`: no such retired CA.
    pub async fn retired_crl(&self, label: &str) -> Result<Option<Vec<u8>>, RequestError> {
        match self.inner.retired.iter().position(|g| g.label == label) {
            Some(i) => self.crl_of(Some(i)).await.map(Some),
            None => Ok(None),
        }
    }

    /// The labels of the retired CA generations.
    pub fn retired_ca_names(&self) -> Vec<String> {
        self.inner.retired.iter().map(|g| g.label.clone()).collect()
    }

    /// The prepared next CA, if a rollover is in progress: its label.
    pub async fn next_ca(&self) -> Result<Option<String>, RequestError> {
        Generations::read(self.inner.store.as_ref())
            .await
            .map(|g| g.next)
            .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))
    }

    /// The next CA certificate, its RA certificate(s) and the link certificate (the next
    /// CA's key certified by the active CA); `None` when no rollover is in progress.
    pub async fn next_ca_certificates(&self) -> Result<Option<Vec<Vec<u8>>>, RequestError> {
        let unavailable = |e: StoreError| RequestError::Unavailable(Reason::caused_by(e));
        let Some(label) = self.next_ca().await? else {
            return Ok(None);
        };
        let store = &self.inner.store;
        let mut certs = Vec::new();
        for kind in ["ca", "ra_sign", "ra_decrypt", "link"] {
            if let Some(der) = store
                .state(&cert_key(kind, &label))
                .await
                .map_err(unavailable)?
            {
                certs.push(der);
            }
        }
        if certs.is_empty() {
            return Err(RequestError::Unavailable(
                format!("the next CA `{label}` has no certificates recorded").into(),
            ));
        }
        Ok(Some(certs))
    }
}

/// A certificate as an administrator looks at it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertSummary {
    /// Subject, as text.
    pub subject: String,
    /// SHA-256 fingerprint, hex.
    pub sha256: String,
    /// Not after (Unix seconds).
    pub not_after: i64,
}

impl CertSummary {
    fn of(der: &[u8]) -> CertSummary {
        CertSummary {
            subject: crate::pki::subject_text(der).unwrap_or_default(),
            sha256: crate::pki::sha256_fingerprint(der),
            not_after: x509_parser::parse_x509_certificate(der)
                .map(|(_, c)| c.validity().not_after.timestamp())
                .unwrap_or(0),
        }
    }
}

/// The CA as the administration page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaOverview {
    /// The CA certificate and its parents.
    pub chain: Vec<CertSummary>,
    /// The delegated OCSP responder's certificate.
    pub responder: CertSummary,
    /// The published CRL: its number, and when it was made and is next due.
    pub crl_number: Option<String>,
    /// When the CRL was made (Unix seconds).
    pub crl_this_update: Option<i64>,
    /// When the next CRL is due (Unix seconds).
    pub crl_next_update: Option<i64>,
    /// The prepared next CA during a rollover: its certificates (CA, RA, link).
    pub next_ca: Vec<CertSummary>,
    /// The retired CA generations still answering for their certificates.
    pub retired: Vec<String>,
}

impl Authority {
    /// The CA: chain, responder, CRL, rollover.
    pub async fn ca_overview(&self) -> Result<CaOverview, RequestError> {
        let crl = self.crl().await?;
        let (number, this, next) = match x509_parser::parse_x509_crl(&crl) {
            Ok((_, c)) => (
                c.crl_number().map(|n| n.to_string()),
                Some(c.last_update().timestamp()),
                c.next_update().map(|t| t.timestamp()),
            ),
            Err(_) => (None, None, None),
        };
        Ok(CaOverview {
            chain: self
                .inner
                .ca_chain
                .iter()
                .map(|d| CertSummary::of(d))
                .collect(),
            responder: CertSummary::of(&self.inner.responder.cert()),
            crl_number: number,
            crl_this_update: this,
            crl_next_update: next,
            next_ca: self
                .next_ca_certificates()
                .await?
                .unwrap_or_default()
                .iter()
                .map(|d| CertSummary::of(d))
                .collect(),
            retired: self.retired_ca_names(),
        })
    }
}
