//! The delegated OCSP responder of each CA generation (RFC 6960 §4.2.2.2): a key of its own
//! on the token (`<CA label>-ocsp`) and a short-lived certificate from the CA for OCSP signing
//! only (id-kp-OCSPSigning, id-pkix-ocsp-nocheck). OCSP answers are signed by it, so the CA
//! key signs only certificates and CRLs, and a flood of OCSP requests never reaches the CA
//! key.
//!
//! `sigil init` and `sigil ca rollover` make it; `sigil serve` makes it for a CA from before
//! (the upgrade), and the background round renews its certificate when a third of its life
//! is left. The current certificate is kept in the store (`ocsp_responder:<CA label>`) and
//! on the token, so every node answers with the same one.

use std::sync::RwLock;

use rcgen::Issuer;

use crate::hsm::TokenKey;
use crate::hsm::{Hsm, HsmError, KeySpec, KeyUri, KeyUsage};
use crate::pki::PkiError;

/// The token label of a CA's responder key and certificate.
pub fn label_for(ca_label: &str) -> String {
    format!("{ca_label}-ocsp")
}

/// The store state holding a CA's current responder certificate.
pub(crate) fn state_key(ca_label: &str) -> String {
    format!("ocsp_responder:{ca_label}")
}

/// Why a responder could not be made or renewed.
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    /// The token failed.
    #[error("OCSP responder: {0}")]
    Hsm(#[from] HsmError),
    /// The certificate could not be built.
    #[error("OCSP responder: {0}")]
    Pki(#[from] PkiError),
}

/// One CA's responder: its key on the token and its current certificate.
pub(crate) struct Responder {
    key: TokenKey,
    cert: RwLock<Vec<u8>>,
    /// SHA-1 of the key (the responder ID "by key").
    key_id: Vec<u8>,
}

/// The responder key type for a CA key: RSA 2048 under an RSA CA, the CA's curve under an EC
/// CA (relying parties that check the CA's signature algorithm check this one).
fn spec_for(ca: KeySpec) -> KeySpec {
    match ca {
        KeySpec::Rsa(_) => KeySpec::Rsa(2048),
        other => other,
    }
}

/// Seconds left before `der` expires (negative when it has), or `None` if it does not read.
fn seconds_left(der: &[u8]) -> Option<i64> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(c.validity().not_after.timestamp() - crate::clock::now())
}

/// Is this certificate due for renewal (a third of `days` or less left, or unreadable)?
pub(crate) fn due(der: &[u8], days: u32) -> bool {
    seconds_left(der).is_none_or(|left| left < i64::from(days) * 86_400 / 3)
}

/// Is `cert` a certificate of `key`?
fn belongs(cert: &[u8], key: &TokenKey) -> bool {
    let spki = key.public_key().spki_der().unwrap_or_default();
    x509_parser::parse_x509_certificate(cert)
        .map(|(_, c)| c.public_key().raw == spki.as_slice())
        .unwrap_or(false)
}

/// Issue a new responder certificate for `key` from the CA (blocking: the CA key signs).
pub(crate) fn issue(
    issuer: &Issuer<'_, TokenKey>,
    ca_der: &[u8],
    key: &TokenKey,
    days: u32,
) -> Result<Vec<u8>, ResponderError> {
    let cn = crate::pki::common_name(ca_der).unwrap_or_else(|| "Sigil CA".into());
    let subject = crate::pki::parse_dn(&format!(
        "CN={} OCSP Responder",
        crate::pki::escape_dn_value(&cn)
    ))
    .map_err(PkiError::Policy)?;
    Ok(crate::pki::issue_ocsp_responder_certificate(
        issuer, ca_der, key, subject, days,
    )?)
}

/// Make sure CA `ca_label` has a responder (blocking): its key (generated if missing) and a
/// certificate that is not due for renewal (`stored`, the store's, if it is newer than the
/// token's; else a new one, written to the token). Returns the responder and the certificate
/// if it is new (for the caller to record in the store).
pub(crate) fn ensure(
    hsm: &Hsm,
    ca_label: &str,
    ca_key: &TokenKey,
    ca_der: &[u8],
    issuer: &Issuer<'_, TokenKey>,
    stored: Option<Vec<u8>>,
    days: u32,
) -> Result<(Responder, Option<Vec<u8>>), ResponderError> {
    let label = label_for(ca_label);
    let uri = KeyUri::labelled(hsm.token(), &label);
    if !hsm.key_exists(&uri)? {
        hsm.generate_blocking(
            spec_for(ca_key.public_key().spec()),
            &label,
            KeyUsage {
                sign: true,
                decrypt: false,
            },
        )?;
        tracing::info!(ca = ca_label, key = %label, "made the OCSP responder key on the token");
    }
    let key = TokenKey::open(hsm, &uri)?;
    let on_token = hsm.certificate_blocking(&label)?;
    // The candidate with the longest life left, of those that are this key's.
    let best = [stored, on_token]
        .into_iter()
        .flatten()
        .filter(|c| belongs(c, &key))
        .max_by_key(|c| seconds_left(c).unwrap_or(i64::MIN));
    let (cert, fresh) = match best {
        Some(c) if !due(&c, days) => (c, None),
        _ => {
            let c = issue(issuer, ca_der, &key, days)?;
            hsm.store_certificate_blocking(&label, &c)?;
            tracing::info!(ca = ca_label, "issued the OCSP responder certificate");
            (c.clone(), Some(c))
        }
    };
    Ok((Responder::new(key, cert), fresh))
}

/// Make the responder of the CA generation `ca_label` whose certificate is on the token (the
/// key ceremony, a rollover); returns its certificate for the store.
pub fn make_for_ca(hsm: &Hsm, ca_label: &str, days: u32) -> Result<Vec<u8>, ResponderError> {
    let ca_der = hsm.certificate_blocking(ca_label)?.ok_or_else(|| {
        ResponderError::Pki(PkiError::BadCertificate(
            format!("no CA certificate `{ca_label}` on the token").into(),
        ))
    })?;
    let ca_key = TokenKey::open(hsm, &KeyUri::labelled(hsm.token(), ca_label))?;
    let issuer = Issuer::from_ca_cert_der(&ca_der.clone().into(), ca_key.clone()).map_err(|e| {
        ResponderError::Pki(PkiError::BadCertificate(crate::reason::Reason::caused_by(
            e,
        )))
    })?;
    let (r, _) = ensure(hsm, ca_label, &ca_key, &ca_der, &issuer, None, days)?;
    Ok(r.cert())
}

impl Responder {
    fn new(key: TokenKey, cert: Vec<u8>) -> Responder {
        use sha1::Digest;
        let key_id = key
            .public_key()
            .raw_bits()
            .map(|b| sha1::Sha1::digest(b).to_vec())
            .unwrap_or_default();
        Responder {
            key,
            cert: RwLock::new(cert),
            key_id,
        }
    }

    /// The key that signs OCSP answers.
    pub(crate) fn key(&self) -> &TokenKey {
        &self.key
    }

    /// The responder ID by key.
    pub(crate) fn key_id(&self) -> &[u8] {
        &self.key_id
    }

    /// The current certificate (DER).
    pub(crate) fn cert(&self) -> Vec<u8> {
        self.cert.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Use `der` from now on, if it is this key's and lives longer than the current one.
    pub(crate) fn adopt(&self, der: Vec<u8>) -> bool {
        if !belongs(&der, &self.key) {
            return false;
        }
        let mut cur = self.cert.write().unwrap_or_else(|p| p.into_inner());
        if seconds_left(&der).unwrap_or(i64::MIN) > seconds_left(&cur).unwrap_or(i64::MIN) {
            *cur = der;
            true
        } else {
            false
        }
    }
}
