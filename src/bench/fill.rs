//! `sigil bench fill`: fill a store with certificates for measurements (a million, a tenth of
//! them revoked), without the token. Each certificate is real X.509 with the CA's name as its
//! issuer, but signed by a throwaway key made for the run (never the CA key), so none of them
//! verifies under the CA: they are for measuring the store, the CRL, OCSP lookups, listings
//! and the expiry scan at size, and belong only in a store made for that. They are loaded
//! through [`crate::store::CertificateStore::import_certificates`] in batches (audited as
//! `certificates_imported`), with notBefore spread over the past year and a validity of one
//! year, so expiries spread over the next year as in a real fleet.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::pki::certificate_facts;
use crate::store::{now, CertStatus, CertificateRecord, Store, StoreError};

/// What to make.
#[derive(Debug, Clone)]
pub struct FillOptions {
    /// Certificates to load.
    pub certs: usize,
    /// Every n-th certificate is revoked (0: none).
    pub revoked_every: usize,
    /// Their profile.
    pub profile: String,
    /// Certificates per database transaction.
    pub batch: usize,
}

/// What was loaded.
#[derive(Debug, Clone, Serialize)]
pub struct FillReport {
    /// Certificates loaded.
    pub loaded: usize,
    /// Of which revoked.
    pub revoked: usize,
    /// Seconds, making and loading.
    pub seconds: f64,
    /// Seconds spent in the store.
    pub store_seconds: f64,
}

/// Why the store could not be filled.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    /// The store refused or failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// No CA certificate in the store (run `sigil init` first).
    #[error("the store has no CA certificate: run `sigil init` first")]
    NoCa,
    /// A certificate could not be made.
    #[error("making a certificate: {0}")]
    Make(#[from] rcgen::Error),
    /// A certificate or the CA's could not be read back.
    #[error("reading a certificate: {0}")]
    Read(#[from] crate::pki::CsrError),
    /// No randomness.
    #[error("randomness: {0}")]
    Random(#[source] openssl::error::ErrorStack),
    /// The worker making certificates stopped.
    #[error("the certificate maker stopped: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

/// Fill `store` as `opts` says; `progress` is told how many are loaded after each batch.
pub async fn fill(
    store: Arc<dyn Store>,
    opts: &FillOptions,
    progress: impl Fn(usize),
) -> Result<FillReport, FillError> {
    let ca_der = store
        .state("ca_certificate")
        .await?
        .ok_or(FillError::NoCa)?;
    let ca = certificate_facts(&ca_der)?;
    let (ca_name, _) = crate::pki::certificate_identity(&ca_der).ok_or(FillError::NoCa)?;
    let maker = Arc::new(Maker::new(&ca_name)?);
    let started = Instant::now();
    let mut store_time = std::time::Duration::ZERO;
    let (mut loaded, mut revoked) = (0, 0);
    let batch = opts.batch.max(1);
    let mut next = 0;
    // Make the next batch while the store takes this one.
    let make = |from: usize| {
        let (maker, opts, issuer) = (maker.clone(), opts.clone(), ca.subject.clone());
        tokio::task::spawn_blocking(move || {
            maker.batch(from, batch.min(opts.certs - from), &opts, &issuer)
        })
    };
    let mut pending = (next < opts.certs).then(|| make(next));
    while let Some(job) = pending.take() {
        let certs = job.await??;
        next += certs.len();
        if next < opts.certs {
            pending = Some(make(next));
        }
        let t = Instant::now();
        loaded += store
            .import_certificates(&certs, "sigil:bench-fill")
            .await?;
        store_time += t.elapsed();
        revoked += certs
            .iter()
            .filter(|c| c.status == CertStatus::Revoked)
            .count();
        progress(loaded);
    }
    Ok(FillReport {
        loaded,
        revoked,
        seconds: started.elapsed().as_secs_f64(),
        store_seconds: store_time.as_secs_f64(),
    })
}

/// Makes certificates: one throwaway issuing key (named as the CA), one device key.
struct Maker {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    device: rcgen::KeyPair,
}

impl Maker {
    fn new(ca_name: &[crate::pki::NameAttribute]) -> Result<Maker, FillError> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = crate::pki::parse_dn(&crate::pki::name_text(ca_name))
            .map_err(|e| FillError::Read(crate::pki::CsrError::Malformed(e.into())))?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        Ok(Maker {
            issuer: rcgen::Issuer::new(params, key),
            device: rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        })
    }

    /// Certificates `from..from + n`.
    fn batch(
        &self,
        from: usize,
        n: usize,
        opts: &FillOptions,
        issuer: &str,
    ) -> Result<Vec<CertificateRecord>, FillError> {
        let at = now();
        let year = 365 * 86_400;
        (from..from + n)
            .map(|i| {
                let mut p = rcgen::CertificateParams::default();
                p.distinguished_name
                    .push(rcgen::DnType::CommonName, format!("fill-{i:07}"));
                p.distinguished_name
                    .push(rcgen::DnType::OrganizationName, "Sigil bench fill");
                p.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
                    rcgen::string::Ia5String::try_from(format!("fill-{i:07}@fill.invalid"))?,
                )];
                let mut serial = [0u8; 16];
                openssl::rand::rand_bytes(&mut serial).map_err(FillError::Random)?;
                serial[0] &= 0x7f;
                serial[0] |= 0x10;
                p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
                let not_before = at - below(year)?;
                p.not_before = time::OffsetDateTime::from_unix_timestamp(not_before)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                p.not_after = p.not_before + time::Duration::seconds(year);
                p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
                p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
                let der = p.signed_by(&self.device, &self.issuer)?.der().to_vec();
                let f = certificate_facts(&der)?;
                let revoked = opts.revoked_every > 0 && i % opts.revoked_every == 0;
                Ok(CertificateRecord {
                    serial: f.serial,
                    der,
                    subject: f.subject,
                    sans: f.sans,
                    issuer: issuer.to_string(),
                    not_before: f.not_before,
                    not_after: f.not_after,
                    profile: opts.profile.clone(),
                    status: if revoked {
                        CertStatus::Revoked
                    } else {
                        CertStatus::Valid
                    },
                    revoked_at: if revoked {
                        Some(not_before + below(at - not_before + 1)?)
                    } else {
                        None
                    },
                    revocation_reason: revoked.then_some(if i % 3 == 0 { 1 } else { 4 }),
                    transaction_id: format!("fill-{i:07}"),
                    device_id: Some(format!("fill-device-{:06}", i / 2)),
                    renewed_by: None,
                })
            })
            .collect()
    }
}

/// A random number in `0..n` (n > 0), near enough to uniform for spreading dates.
fn below(n: i64) -> Result<i64, FillError> {
    let mut b = [0u8; 8];
    openssl::rand::rand_bytes(&mut b).map_err(FillError::Random)?;
    Ok((u64::from_le_bytes(b) % n.max(1) as u64) as i64)
}
