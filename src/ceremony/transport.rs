//! `sigil gateway-cert`: the two certificates of the gateway ↔ core link in one command: the
//! core's TLS server certificate (names the gateways dial) and the gateway's TLS client
//! certificate (its name is what `server.gateway_names` admits).
//!
//! They come from a transport CA of their own (`<ca key>-transport`, a P-256 key made on the
//! token the first time), not from the CA that issues device certificates: otherwise any
//! enrolled device whose certificate carried the gateway's name could pass for the gateway, or
//! for a core. A CA rollover does not touch it.
//!
//! The leaf keys are transport keys, not CA or RA keys: each lives as a PEM file (mode 600)
//! on the host that uses it, the gateway's in its own zone.

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::CeremonyError;
use crate::hsm::TokenKey;
use crate::hsm::{Hsm, KeyUri};
use crate::pki::{self};

/// What was written.
#[derive(Debug, Clone)]
pub struct TransportFiles {
    /// Directory of the files.
    pub dir: PathBuf,
    /// The core's server certificate and key.
    pub core: (PathBuf, PathBuf),
    /// The gateway's client certificate and key.
    pub gateway: (PathBuf, PathBuf),
    /// The CA certificate both sides trust.
    pub ca: PathBuf,
}

fn write_private(path: &Path, text: &str) -> Result<(), CeremonyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| CeremonyError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    // An older file of that name may have had other permissions.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)
}

fn leaf(
    cn: &str,
    sans: Vec<SanType>,
    eku: ExtendedKeyUsagePurpose,
    days: u32,
    ca_not_after: OffsetDateTime,
) -> Result<CertificateParams, CeremonyError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.subject_alt_names = sans;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![eku];
    p.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = std::cmp::min(now + Duration::days(days.into()), ca_not_after);
    p.serial_number = Some(pki::random_serial()?);
    Ok(p)
}

/// The transport CA `label` on the token: made (P-256 key, self-signed, 10 years) the first
/// time. Returns its certificate.
fn transport_ca(hsm: &Hsm, label: &str, name: &str) -> Result<Vec<u8>, CeremonyError> {
    if let Some(der) = hsm.certificate_blocking(label)? {
        return Ok(der);
    }
    let uri = KeyUri::labelled(hsm.token(), label);
    if !hsm.key_exists(&uri)? {
        hsm.generate_blocking(
            crate::hsm::KeySpec::EcP256,
            label,
            crate::hsm::KeyUsage {
                sign: true,
                decrypt: false,
            },
        )?;
    }
    let key = TokenKey::open(hsm, &uri)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{name} transport CA"));
    let mut params = pki::ca_params(dn, 3650)?;
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let der = pki::self_signed_ca(&key, &params)?;
    hsm.store_certificate_blocking(label, &der)?;
    Ok(der)
}

/// Issue the core's server certificate (for `core_names`: DNS names or IP addresses) and the
/// gateway's client certificate (`gateway_name`) from the transport CA `<base>-transport`
/// (made on the token when missing), and write them with their keys and the transport CA
/// certificate into `dir`. Blocking.
pub fn transport_certificates(
    hsm: &Hsm,
    base: &str,
    dir: &Path,
    core_names: &[String],
    gateway_name: &str,
    days: u32,
) -> Result<TransportFiles, CeremonyError> {
    if core_names.is_empty() {
        return Err(CeremonyError::Invalid(
            "name the core at least once (--core-name host.example or an IP address)".into(),
        ));
    }
    let ca_label = format!("{base}-transport");
    let issuing_name = hsm
        .certificate_blocking(base)?
        .and_then(|d| pki::common_name(&d))
        .unwrap_or_else(|| "Sigil".into());
    let ca_der = transport_ca(hsm, &ca_label, &issuing_name)?;
    let key = TokenKey::open(hsm, &KeyUri::labelled(hsm.token(), &ca_label))?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
        .map_err(|e| CeremonyError::Invalid(format!("CA certificate: {e}")))?;
    let ca_not_after = ca.validity().not_after.to_datetime();
    let issuer = Issuer::from_ca_cert_der(&ca_der.clone().into(), key)
        .map_err(|e| CeremonyError::Invalid(format!("CA certificate: {e}")))?;
    let build = |e: rcgen::Error| CeremonyError::Invalid(format!("certificate: {e}"));
    let mut sans = Vec::new();
    for n in core_names {
        sans.push(match n.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                n.clone()
                    .try_into()
                    .map_err(|_| CeremonyError::Invalid(format!("`{n}` is not a DNS name")))?,
            ),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| CeremonyError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    for (name, cn, sans, eku) in [
        (
            "core",
            core_names[0].as_str(),
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        (
            "gateway",
            gateway_name,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    ] {
        let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(build)?;
        let cert = leaf(cn, sans, eku, days, ca_not_after)?
            .signed_by(&kp, &issuer)
            .map_err(build)?;
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        super::write(&cert_path, &cert.pem())?;
        write_private(&key_path, &kp.serialize_pem())?;
        out.push((cert_path, key_path));
    }
    let ca_path = dir.join("ca.pem");
    super::write(&ca_path, &pki::to_pem(&ca_der))?;
    let gateway = out.pop().unwrap_or_default();
    let core = out.pop().unwrap_or_default();
    Ok(TransportFiles {
        dir: dir.to_owned(),
        core,
        gateway,
        ca: ca_path,
    })
}
