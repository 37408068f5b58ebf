//! SCEP as an adapter on the enrollment core: a pkiMessage becomes an
//! [`EnrollRequest`](crate::authority::EnrollRequest) (or a question about one), the
//! [`Decision`](crate::authority::Decision) becomes a CertRep signed by the RA key on the
//! token. GetCACaps, GetCACert and GetNextCACert are answered here too.
//!
//! The codec (`scep`) knows no token and no store; the authority knows no SCEP. This module
//! joins them: it verifies and decrypts with the RA key, asks the authority, builds and signs
//! the answer, and keeps recent answers so a replayed message costs nothing.

mod operation;
mod ra_key;
mod replay;

use crate::authority::{Authority, Profile, RequestError};
use crate::reason::Reason;

pub use ra_key::TokenRaKey;

/// The SCEP service of one authority. Cheap to clone.
#[derive(Clone)]
pub struct ScepService {
    authority: Authority,
    key: TokenRaKey,
    replays: std::sync::Arc<replay::ReplayCache>,
}

impl ScepService {
    /// SCEP on top of `authority`, with its RA keys.
    pub fn new(authority: Authority) -> ScepService {
        let key = TokenRaKey(authority.ra().2.clone());
        ScepService {
            authority,
            key,
            replays: Default::default(),
        }
    }

    /// The authority it serves.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The profile named in the URL, or the default one.
    pub fn profile(&self, name: Option<&str>) -> Result<&Profile, RequestError> {
        self.authority.profile(name)
    }

    /// GetCACaps for a profile: one keyword a line.
    pub async fn ca_caps(&self, profile: &Profile) -> String {
        let mut caps = vec![
            "POSTPKIOperation",
            "Renewal",
            "SHA-256",
            "SHA-512",
            "AES",
            "SCEPStandard",
        ];
        if profile.policy.legacy {
            caps.extend(["SHA-1", "DES3"]);
        }
        match self.authority.next_ca().await {
            Ok(Some(_)) => caps.push("GetNextCACert"),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "GetCACaps: cannot tell whether a rollover is in progress")
            }
        }
        let mut text = caps.join("\n");
        text.push('\n');
        text
    }

    /// GetCACert: (content type, body). A certs-only SignedData holding the RA
    /// certificate(s) and the CA chain; the root is left out when `include_root` is off and
    /// the CA is not itself the root.
    pub fn ca_certs(&self) -> Result<(&'static str, Vec<u8>), RequestError> {
        let (sign, decrypt, _) = self.authority.ra();
        let (chain, include_root) = self.authority.ca_chain();
        let mut certs = vec![sign.to_vec()];
        if decrypt != sign {
            certs.push(decrypt.to_vec());
        }
        for (n, c) in chain.iter().enumerate() {
            let is_root = n > 0 && n == chain.len() - 1;
            if is_root && !include_root {
                continue;
            }
            certs.push(c.clone());
        }
        crate::scep::degenerate(&certs, &[])
            .map(|b| ("application/x-x509-ca-ra-cert", b))
            .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))
    }

    /// GetNextCACert: the next CA's certificates (see
    /// [`Authority::next_ca_certificates`]) as a SignedData signed by the current RA key;
    /// `None` when no rollover is in progress.
    pub async fn next_ca_certs(&self) -> Result<Option<Vec<u8>>, RequestError> {
        let Some(certs) = self.authority.next_ca_certificates().await? else {
            return Ok(None);
        };
        let (sign, key) = (self.authority.ra().0.to_vec(), self.key.clone());
        let built =
            tokio::task::spawn_blocking(move || crate::scep::next_ca_response(&certs, &sign, &key))
                .await
                .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))?;
        built
            .map(Some)
            .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))
    }
}
