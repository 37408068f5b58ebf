//! The key that signs configuration profiles (Apple `.mobileconfig`), so that iOS and macOS
//! show them as verified: `<ca key>-profiles`, an RSA key on the token, certified by the CA
//! for digital signatures only. Made the first time a profile is signed, and certified again
//! when the CA changed (a rollover) or the certificate nears its end.

use super::{Authority, RequestError};
use crate::hsm::{KeySpec, KeyUri, KeyUsage, SignAlg, TokenKey};

/// Days a profile-signing certificate lives (capped at the CA's).
const DAYS: u32 = 365;

/// The profile signer: its certificate, and its key on the token.
pub struct ProfileSigner {
    /// The certificate (DER), issued by the active CA.
    pub certificate: Vec<u8>,
    key: TokenKey,
}

impl ProfileSigner {
    /// RSASSA-PKCS1-v1_5 with SHA-256 over `data`, on the token (blocking).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, RequestError> {
        self.key
            .sign_blocking(data)
            .map_err(|e| RequestError::Unavailable(format!("profile signature: {e}")))
    }
}

impl Authority {
    /// The profile signer, made or certified again when needed (blocking: the token).
    pub fn profile_signer_blocking(&self) -> Result<ProfileSigner, RequestError> {
        let hsm = self.inner.key.hsm.clone();
        let label = format!("{}-profiles", self.inner.ca_name);
        let unavailable = |e: crate::hsm::HsmError| RequestError::Unavailable(e.to_string());
        let uri = KeyUri::labelled(hsm.token(), &label);
        if !hsm.key_exists(&uri).map_err(unavailable)? {
            hsm.generate_blocking(
                KeySpec::Rsa(2048),
                &label,
                KeyUsage {
                    sign: true,
                    decrypt: false,
                },
            )
            .map_err(unavailable)?;
        }
        let public = hsm.public_key_blocking(&uri).map_err(unavailable)?;
        let key =
            TokenKey::with_alg(&hsm, &uri, public, SignAlg::RsaPkcs1Sha256).map_err(unavailable)?;
        let current = hsm.certificate_blocking(&label).map_err(unavailable)?;
        let fresh = current.as_deref().is_some_and(|der| {
            x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| {
                c.issuer().as_raw() == self.inner.ca_subject.as_slice()
                    && c.validity().not_after.timestamp() - crate::clock::now() > 30 * 86_400
            })
        });
        let certificate = match current {
            Some(der) if fresh => der,
            _ => {
                let mut dn = rcgen::DistinguishedName::new();
                dn.push(
                    rcgen::DnType::CommonName,
                    format!("{} profile signing", self.inner.ca_name),
                );
                let der = crate::pki::issue_ra_certificate(
                    &self.inner.ca_key,
                    &self.inner.ca_cert,
                    &key,
                    dn,
                    DAYS,
                    vec![crate::pki::KeyUsagePurpose::DigitalSignature],
                )
                .map_err(|e| RequestError::Unavailable(e.to_string()))?;
                // Replaces the old certificate object, if any.
                hsm.store_certificate_blocking(&label, &der)
                    .map_err(unavailable)?;
                tracing::info!(label = %label, "profile-signing certificate issued");
                der
            }
        };
        Ok(ProfileSigner { certificate, key })
    }
}
