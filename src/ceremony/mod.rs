//! The key ceremony (`sigil init`, `sigil ca import`): create the CA and RA keys inside the
//! token, the CA certificate (self-signed root, or a CSR for an existing root), and the RA
//! certificate(s) issued by the CA.
//!
//! Keys are generated non-extractable on the token; certificates are stored on the token as
//! certificate objects next to their keys, and exported as PEM to the data directory
//! (`ca.pem`, `ra.pem`, `chain.pem`) for operators and clients. Nothing existing is overwritten
//! without `force`.

use std::path::{Path, PathBuf};

use openssl::x509::X509;

use crate::config::HsmSection;
use crate::hsm::TokenKey;
use crate::hsm::{Hsm, HsmError, KeySpec, KeyUri, KeyUsage};
use crate::pki::{self, KeyUsagePurpose, PkiError};

pub mod oidc_client;
mod rollover;
mod transport;

pub use rollover::{rollover, Rollover, RolloverOptions};
pub use transport::{transport_certificates, TransportFiles};

/// Errors of the ceremony.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    /// From the token.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// From certificate building.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A configuration problem.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Bad option.
    #[error("{0}")]
    Invalid(String),
    /// Writing the exported files failed.
    #[error("cannot write `{path}`: {source}")]
    Write {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// What `sigil init` should make.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// CA key type.
    pub ca_key: KeySpec,
    /// CA subject, `CN=…,O=…`.
    pub ca_subject: String,
    /// CA certificate validity in days.
    pub ca_days: u32,
    /// RA RSA key size.
    pub ra_bits: u32,
    /// RA subject; default: the CA's CN followed by " SCEP RA".
    pub ra_subject: Option<String>,
    /// RA certificate validity in days.
    pub ra_days: u32,
    /// Write a CSR for an existing root here instead of self-signing.
    pub csr: Option<PathBuf>,
    /// Destroy existing objects with the same labels first.
    pub force: bool,
}

/// One key made or used by the ceremony.
#[derive(Debug, Clone)]
pub struct KeyReport {
    /// Role ("CA", "RA", "RA signing", "RA decryption").
    pub role: &'static str,
    /// URI on the token.
    pub uri: KeyUri,
    /// Key type.
    pub spec: KeySpec,
    /// SHA-256 of the SubjectPublicKeyInfo.
    pub key_sha256: String,
    /// The certificate, when issued.
    pub certificate: Option<CertReport>,
}

/// A certificate made by the ceremony.
#[derive(Debug, Clone)]
pub struct CertReport {
    /// Subject, one line.
    pub subject: String,
    /// SHA-256 fingerprint of the DER.
    pub sha256: String,
    /// notBefore.
    pub not_before: String,
    /// notAfter.
    pub not_after: String,
    /// Where the PEM was written.
    pub path: PathBuf,
}

/// What the ceremony did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Keys and certificates.
    pub keys: Vec<KeyReport>,
    /// CSR written for an external root, if any.
    pub csr: Option<PathBuf>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for k in &self.keys {
            writeln!(f, "{} key: {} ({})", k.role, k.uri, k.spec)?;
            writeln!(f, "  public key SHA-256: {}", k.key_sha256)?;
            if let Some(c) = &k.certificate {
                writeln!(f, "  certificate: {}", c.subject)?;
                writeln!(f, "    SHA-256 fingerprint: {}", c.sha256)?;
                writeln!(f, "    valid {} until {}", c.not_before, c.not_after)?;
                writeln!(f, "    written to {}", c.path.display())?;
            }
        }
        if let Some(csr) = &self.csr {
            writeln!(f, "CA certificate request written to {}", csr.display())?;
            writeln!(
                f,
                "Next: have the root CA sign it, then run `sigil ca import --cert SIGNED.pem --chain ROOT-CHAIN.pem`."
            )?;
        }
        Ok(())
    }
}

/// The RA key layout from the configuration: one key, or separate signing and decryption keys.
fn ra_roles(cfg: &HsmSection) -> Result<Vec<(&'static str, KeyUri, KeyUsage)>, CeremonyError> {
    let sign = cfg.ra_key_uri()?;
    let decrypt = cfg.ra_decrypt_key_uri()?;
    if sign == decrypt {
        Ok(vec![(
            "RA",
            sign,
            KeyUsage {
                sign: true,
                decrypt: true,
            },
        )])
    } else {
        Ok(vec![
            (
                "RA signing",
                sign,
                KeyUsage {
                    sign: true,
                    decrypt: false,
                },
            ),
            (
                "RA decryption",
                decrypt,
                KeyUsage {
                    sign: false,
                    decrypt: true,
                },
            ),
        ])
    }
}

fn write(path: &Path, text: &str) -> Result<(), CeremonyError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| CeremonyError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| CeremonyError::Write {
        path: path.to_owned(),
        source,
    })?;
    // Certificates are public: readable by all, whatever the umask.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(|source| {
        CeremonyError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

fn cert_report(der: &[u8], path: PathBuf) -> Result<CertReport, CeremonyError> {
    let (_, c) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::BadCertificate(crate::reason::Reason::caused_by(e)))?;
    Ok(CertReport {
        subject: c.subject().to_string(),
        sha256: pki::sha256_fingerprint(der),
        not_before: c.validity().not_before.to_string(),
        not_after: c.validity().not_after.to_string(),
        path,
    })
}

fn label_of(uri: &KeyUri) -> Result<&str, CeremonyError> {
    Ok(uri.label()?)
}

/// Run the ceremony. Blocking: it talks to the token directly.
pub fn init(
    hsm: &Hsm,
    cfg: &HsmSection,
    data_dir: &Path,
    opts: &InitOptions,
) -> Result<Report, CeremonyError> {
    let ca_subject = pki::parse_dn(&opts.ca_subject)
        .map_err(|e| CeremonyError::Invalid(format!("--ca-subject: {e}")))?;
    if let KeySpec::Rsa(bits) = opts.ca_key {
        if bits < 2048 {
            return Err(CeremonyError::Invalid(
                "the CA key must be RSA 2048/3072/4096 or ECDSA P-256/P-384".into(),
            ));
        }
    }
    if opts.ra_bits < 2048 {
        return Err(CeremonyError::Invalid(
            "--ra-key-size must be at least 2048".into(),
        ));
    }
    let ca_uri = cfg.ca_key_uri()?;
    let ras = ra_roles(cfg)?;
    let mut labels = vec![label_of(&ca_uri)?.to_owned()];
    for (_, uri, _) in &ras {
        labels.push(label_of(uri)?.to_owned());
    }
    if opts.force {
        for l in &labels {
            let n = hsm.destroy_blocking(l)?;
            if n > 0 {
                tracing::warn!(label = %l, objects = n, "destroyed existing objects (--force)");
            }
        }
    } else {
        for (l, uri) in labels
            .iter()
            .zip(std::iter::once(&ca_uri).chain(ras.iter().map(|(_, u, _)| u)))
        {
            if hsm.key_exists(uri)? || hsm.certificate_blocking(l)?.is_some() {
                return Err(HsmError::AlreadyExists {
                    what: "key",
                    label: l.clone(),
                    token: hsm.token().into(),
                }
                .into());
            }
        }
    }

    let ca_public = hsm.generate_blocking(
        opts.ca_key,
        label_of(&ca_uri)?,
        KeyUsage {
            sign: true,
            decrypt: false,
        },
    )?;
    let ca_key = TokenKey::open(hsm, &ca_uri)?;
    let params = pki::ca_params(ca_subject, opts.ca_days)?;
    let mut report = Report {
        keys: vec![KeyReport {
            role: "CA",
            uri: ca_uri.clone(),
            spec: ca_public.spec(),
            key_sha256: ca_public.fingerprint()?,
            certificate: None,
        }],
        csr: None,
    };
    for (role, uri, usage) in &ras {
        let public = hsm.generate_blocking(KeySpec::Rsa(opts.ra_bits), label_of(uri)?, *usage)?;
        report.keys.push(KeyReport {
            role,
            uri: uri.clone(),
            spec: public.spec(),
            key_sha256: public.fingerprint()?,
            certificate: None,
        });
    }

    if let Some(csr_path) = &opts.csr {
        let pem = pki::ca_request(&ca_key, &params)?;
        write(csr_path, &pem)?;
        report.csr = Some(csr_path.clone());
        return Ok(report);
    }

    let ca_der = pki::self_signed_ca(&ca_key, &params)?;
    let ca_pem = pki::to_pem(&ca_der);
    hsm.store_certificate_blocking(label_of(&ca_uri)?, &ca_der)?;
    write(&data_dir.join("ca.pem"), &ca_pem)?;
    write(&data_dir.join("chain.pem"), &ca_pem)?;
    report.keys[0].certificate = Some(cert_report(&ca_der, data_dir.join("ca.pem"))?);
    issue_ra_certs(hsm, cfg, data_dir, &ca_key, &ca_der, opts, &mut report)?;
    Ok(report)
}

fn issue_ra_certs(
    hsm: &Hsm,
    cfg: &HsmSection,
    data_dir: &Path,
    ca_key: &TokenKey,
    ca_der: &[u8],
    opts: &InitOptions,
    report: &mut Report,
) -> Result<(), CeremonyError> {
    let ca_cn = pki::common_name(ca_der).unwrap_or_else(|| "Sigil".into());
    let ras = ra_roles(cfg)?;
    let single = ras.len() == 1;
    for (role, uri, usage) in ras {
        let subject_text = match &opts.ra_subject {
            Some(s) if single => s.clone(),
            Some(s) => format!("{s} ({role})"),
            None if single => format!("CN={ca_cn} SCEP RA"),
            None => format!("CN={ca_cn} SCEP {role}"),
        };
        let subject = pki::parse_dn(&subject_text)
            .map_err(|e| CeremonyError::Invalid(format!("--ra-subject: {e}")))?;
        let mut usages = Vec::new();
        if usage.sign {
            usages.push(KeyUsagePurpose::DigitalSignature);
        }
        if usage.decrypt {
            usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        let ra_key = TokenKey::open(hsm, &uri)?;
        let der =
            pki::issue_ra_certificate(ca_key, ca_der, &ra_key, subject, opts.ra_days, usages)?;
        hsm.store_certificate_blocking(label_of(&uri)?, &der)?;
        let file = if usage.sign && !usage.decrypt && !single {
            "ra-sign.pem"
        } else if usage.decrypt && !single {
            "ra-decrypt.pem"
        } else {
            "ra.pem"
        };
        let path = data_dir.join(file);
        write(&path, &pki::to_pem(&der))?;
        let spec = ra_key.public_key().spec();
        let fp = ra_key.public_key().fingerprint()?;
        let cert = cert_report(&der, path)?;
        match report.keys.iter_mut().find(|k| k.uri == uri) {
            Some(k) => k.certificate = Some(cert),
            None => report.keys.push(KeyReport {
                role,
                uri,
                spec,
                key_sha256: fp,
                certificate: Some(cert),
            }),
        }
    }
    Ok(())
}

/// Parse one or more certificates from PEM or a single DER.
pub fn read_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, CeremonyError> {
    Ok(crate::pki::read_certificates(bytes)?)
}

/// `sigil ca import`: take the CA certificate signed by an existing root (after `init --csr`),
/// check it belongs to the CA key and chains to `chain`, store it and issue the RA certificates.
pub fn import_ca(
    hsm: &Hsm,
    cfg: &HsmSection,
    data_dir: &Path,
    cert: &[u8],
    chain: &[Vec<u8>],
    opts: &InitOptions,
) -> Result<Report, CeremonyError> {
    let ca_uri = cfg.ca_key_uri()?;
    let ca_key = TokenKey::open(hsm, &ca_uri)?;
    let x = X509::from_der(cert).map_err(|e| {
        PkiError::BadCertificate(crate::reason::Reason::context("does not parse", e))
    })?;
    let cert_spki = x
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .map_err(|e| PkiError::BadCertificate(crate::reason::Reason::caused_by(e)))?;
    if cert_spki != ca_key.public_key().spki_der()? {
        return Err(PkiError::BadCertificate(
            format!(
            "its public key is not the CA key `{ca_uri}` on the token (was it issued for this CSR?)"
        )
            .into(),
        )
        .into());
    }
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| PkiError::BadCertificate(crate::reason::Reason::caused_by(e)))?;
    let is_ca = parsed
        .basic_constraints()
        .ok()
        .flatten()
        .map(|b| b.value.ca)
        .unwrap_or(false);
    if !is_ca {
        return Err(PkiError::BadCertificate(
            "it is not a CA certificate (basicConstraints cA is not true)".into(),
        )
        .into());
    }
    let parent = chain.first().ok_or_else(|| {
        CeremonyError::Invalid(
            "--chain must hold the issuing CA certificate (and its parents)".into(),
        )
    })?;
    let parent = X509::from_der(parent)
        .map_err(|e| PkiError::BadCertificate(crate::reason::Reason::context("chain", e)))?;
    let parent_key = parent
        .public_key()
        .map_err(|e| PkiError::BadCertificate(crate::reason::Reason::caused_by(e)))?;
    if !x.verify(&parent_key).unwrap_or(false) {
        return Err(PkiError::BadCertificate(
            "it is not signed by the first certificate of --chain".into(),
        )
        .into());
    }
    hsm.store_certificate_blocking(label_of(&ca_uri)?, cert)?;
    let ca_pem = pki::to_pem(cert);
    write(&data_dir.join("ca.pem"), &ca_pem)?;
    let mut chain_pem = ca_pem;
    for c in chain {
        chain_pem.push_str(&pki::to_pem(c));
    }
    write(&data_dir.join("chain.pem"), &chain_pem)?;
    let mut report = Report {
        keys: vec![KeyReport {
            role: "CA",
            uri: ca_uri,
            spec: ca_key.public_key().spec(),
            key_sha256: ca_key.public_key().fingerprint()?,
            certificate: Some(cert_report(cert, data_dir.join("ca.pem"))?),
        }],
        csr: None,
    };
    if !opts.force {
        for (_, uri, _) in ra_roles(cfg)? {
            if hsm.certificate_blocking(label_of(&uri)?)?.is_some() {
                return Err(HsmError::AlreadyExists {
                    what: "RA certificate",
                    label: label_of(&uri)?.into(),
                    token: hsm.token().into(),
                }
                .into());
            }
        }
    }
    issue_ra_certs(hsm, cfg, data_dir, &ca_key, cert, opts, &mut report)?;
    Ok(report)
}
