//! Keys the CA keeps for one purpose each, apart from the CA and RA keys: signing
//! configuration profiles (so iOS and macOS show them as verified) and sealing the audit log.
//! Each is an RSA key on the token (`<ca key>-profiles`; `audit.key`, default `sigil-audit`), certified by the active CA
//! for digital signatures only; made the first time it is needed, and certified again when the
//! CA changed (a rollover) or the certificate nears its end. The key itself never changes, so
//! what it signed stays verifiable with it.

use super::{Authority, RequestError};
use crate::hsm::{KeySpec, KeyUri, KeyUsage, PublicKey, SignAlg, TokenKey};
use crate::reason::Reason;

/// Days a purpose certificate lives (capped at the CA's).
const DAYS: u32 = 365;

/// A purpose key: its certificate, and its key on the token.
pub struct PurposeKey {
    /// The certificate (DER), issued by the active CA.
    pub certificate: Vec<u8>,
    key: TokenKey,
}

/// The profile signer.
pub type ProfileSigner = PurposeKey;

impl PurposeKey {
    /// RSASSA-PKCS1-v1_5 with SHA-256 over `data`, on the token (blocking).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, RequestError> {
        self.key
            .sign_blocking(data)
            .map_err(|e| RequestError::Unavailable(Reason::context("signature on the token", e)))
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }
}

impl Authority {
    /// The profile signer, made or certified again when needed (blocking: the token on first
    /// use and when its certificate needs renewing; then from memory).
    pub fn profile_signer_blocking(&self) -> Result<std::sync::Arc<ProfileSigner>, RequestError> {
        let ca = &self.inner.ca_name;
        self.purpose_key_blocking(&format!("{ca}-profiles"), &format!("{ca} profile signing"))
    }

    /// The key labelled `label`, made or certified again (with `common_name` as its subject)
    /// when needed (blocking: the token, unless a fresh one is in memory).
    pub fn purpose_key_blocking(
        &self,
        label: &str,
        common_name: &str,
    ) -> Result<std::sync::Arc<PurposeKey>, RequestError> {
        let poisoned = |_| RequestError::Unavailable("purpose key cache lock poisoned".into());
        if let Some(k) = self.inner.purpose_keys.lock().map_err(poisoned)?.get(label) {
            if self.fresh(&k.certificate) {
                return Ok(k.clone());
            }
        }
        let key = std::sync::Arc::new(self.purpose_key_from_token(label, common_name)?);
        self.inner
            .purpose_keys
            .lock()
            .map_err(poisoned)?
            .insert(label.to_owned(), key.clone());
        Ok(key)
    }

    /// Is this certificate the active CA's, with more than 30 days to live?
    fn fresh(&self, der: &[u8]) -> bool {
        x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| {
            c.issuer().as_raw() == self.inner.ca_subject.as_slice()
                && c.validity().not_after.timestamp() - crate::clock::now() > 30 * 86_400
        })
    }

    fn purpose_key_from_token(
        &self,
        label: &str,
        common_name: &str,
    ) -> Result<PurposeKey, RequestError> {
        let hsm = self.inner.key.hsm.clone();
        let unavailable = |e: crate::hsm::HsmError| RequestError::Unavailable(Reason::caused_by(e));
        let uri = KeyUri::labelled(hsm.token(), label);
        if !hsm.key_exists(&uri).map_err(unavailable)? {
            hsm.generate_blocking(
                KeySpec::Rsa(2048),
                label,
                KeyUsage {
                    sign: true,
                    decrypt: false,
                },
            )
            .map_err(unavailable)?;
            tracing::info!(label = %label, "made a key on the token");
        }
        let public = hsm.public_key_blocking(&uri).map_err(unavailable)?;
        let key =
            TokenKey::with_alg(&hsm, &uri, public, SignAlg::RsaPkcs1Sha256).map_err(unavailable)?;
        let current = hsm.certificate_blocking(label).map_err(unavailable)?;
        let fresh = current.as_deref().is_some_and(|der| self.fresh(der));
        let certificate = match current {
            Some(der) if fresh => der,
            _ => {
                let mut dn = rcgen::DistinguishedName::new();
                dn.push(rcgen::DnType::CommonName, common_name);
                let der = crate::pki::issue_ra_certificate(
                    &self.inner.ca_key,
                    &self.inner.ca_cert,
                    &key,
                    dn,
                    DAYS,
                    vec![crate::pki::KeyUsagePurpose::DigitalSignature],
                )
                .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))?;
                // Replaces the old certificate object, if any.
                hsm.store_certificate_blocking(label, &der)
                    .map_err(unavailable)?;
                tracing::info!(label = %label, "certificate for a purpose key issued");
                der
            }
        };
        Ok(PurposeKey { certificate, key })
    }
}
