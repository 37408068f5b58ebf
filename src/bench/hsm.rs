//! `sigil bench hsm`: what the token itself can do, measured on the same token the server
//! uses: RA decryption, CA signature and RA signature per second, with one and two threads.
//! An enrollment needs one of each, so the sum of their times is the token's floor per
//! enrollment: whatever the server spends above it is HTTP, ASN.1, checks and the store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::hsm::{DecryptAlg, Hsm, HsmError, KeyUri, SignAlg};
use crate::reason::Reason;

/// Operations per second with one and two threads.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rate {
    /// One thread.
    pub threads_1: f64,
    /// Two threads.
    pub threads_2: f64,
}

/// The token's floor.
#[derive(Debug, Clone, Serialize)]
pub struct HsmReport {
    /// Token label.
    pub token: String,
    /// RA key decryptions (PKCS#1 v1.5) per second.
    pub ra_decrypt_per_s: Rate,
    /// CA key signatures per second.
    pub ca_sign_per_s: Rate,
    /// RA key signatures (SHA-256) per second.
    pub ra_sign_per_s: Rate,
    /// Token time per enrollment with one thread: one of each operation (ms).
    pub floor_ms_per_enrollment: f64,
    /// Enrollments per second the token allows with two threads.
    pub ceiling_enrollments_per_s_2_threads: f64,
}

fn measure(
    threads: usize,
    time: Duration,
    op: Arc<dyn Fn() -> Result<(), HsmError> + Send + Sync>,
) -> Result<f64, HsmError> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, count, op) = (stop.clone(), count.clone(), op.clone());
            std::thread::spawn(move || -> Result<(), HsmError> {
                while !stop.load(Ordering::Relaxed) {
                    op()?;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(time);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| HsmError::Worker("benchmark thread panicked".into()))??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// Measure for `time` per operation and thread count. Blocking.
pub fn run(
    hsm: &Hsm,
    ca: &KeyUri,
    ca_alg: SignAlg,
    ra_sign: &KeyUri,
    ra_decrypt: &KeyUri,
    time: Duration,
) -> Result<HsmReport, HsmError> {
    let public = hsm.public_key_blocking(ra_decrypt)?.to_openssl()?;
    let rsa = public
        .rsa()
        .map_err(|e| HsmError::Worker(Reason::context("the RA decryption key is not RSA", e)))?;
    let mut ct = vec![0u8; rsa.size() as usize];
    let n = rsa
        .public_encrypt(&[7u8; 32], &mut ct, openssl::rsa::Padding::PKCS1)
        .map_err(|e| HsmError::Worker(Reason::caused_by(e)))?;
    ct.truncate(n);
    let digest = vec![1u8; 32];
    let rate = |op: Arc<dyn Fn() -> Result<(), HsmError> + Send + Sync>| -> Result<Rate, HsmError> {
        Ok(Rate {
            threads_1: measure(1, time, op.clone())?,
            threads_2: measure(2, time, op)?,
        })
    };
    let (h, k, c) = (hsm.clone(), ra_decrypt.clone(), ct.clone());
    let ra_decrypt_per_s = rate(Arc::new(move || {
        h.decrypt_blocking(&k, DecryptAlg::RsaPkcs1v15, &c)
            .map(|_| ())
    }))?;
    let (h, k, d) = (hsm.clone(), ca.clone(), digest.clone());
    let ca_sign_per_s = rate(Arc::new(move || {
        h.sign_blocking(&k, ca_alg, &d).map(|_| ())
    }))?;
    let (h, k, d) = (hsm.clone(), ra_sign.clone(), digest);
    let ra_sign_per_s = rate(Arc::new(move || {
        h.sign_blocking(&k, SignAlg::RsaPkcs1Sha256, &d).map(|_| ())
    }))?;
    let per = |r: f64| if r > 0.0 { 1000.0 / r } else { f64::INFINITY };
    let floor = per(ra_decrypt_per_s.threads_1)
        + per(ca_sign_per_s.threads_1)
        + per(ra_sign_per_s.threads_1);
    let ceiling = 1000.0
        / (per(ra_decrypt_per_s.threads_2)
            + per(ca_sign_per_s.threads_2)
            + per(ra_sign_per_s.threads_2));
    Ok(HsmReport {
        token: hsm.token().to_string(),
        ra_decrypt_per_s,
        ca_sign_per_s,
        ra_sign_per_s,
        floor_ms_per_enrollment: floor,
        ceiling_enrollments_per_s_2_threads: ceiling,
    })
}
