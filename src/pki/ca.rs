//! Certificates of the CA itself: the self-signed root (or its CSR for an existing root) and
//! the RA certificate SCEP clients encrypt to.
//!
//! Every signature goes through an rcgen [`rcgen::SigningKey`] the caller gives (Sigil's is
//! the token's): rcgen builds the DER, the key signs.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, IsCa, Issuer, KeyUsagePurpose,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};

use rcgen::SigningKey;

/// Errors while building certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused or the token signature failed.
    #[error("could not build the {what}: {cause}")]
    Build {
        /// What was being built.
        what: &'static str,
        /// Why: rcgen's or the token's error.
        #[source]
        cause: crate::reason::Reason,
    },
    /// The request breaks a rule of the profile.
    #[error("{0}")]
    Policy(String),
    /// A certificate given to Sigil is unusable.
    #[error("certificate rejected: {0}")]
    BadCertificate(#[source] crate::reason::Reason),
}

fn build_err(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |e| PkiError::Build {
        what,
        cause: crate::reason::Reason::caused_by(e),
    }
}

/// A positive serial of 16 random bytes (RFC 5280 allows up to 20 octets).
pub fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).map_err(|e| PkiError::Build {
        what: "serial number",
        cause: crate::reason::Reason::context("random generator failed", e),
    })?;
    // Positive (high bit clear) and exactly 16 octets (no leading zero byte).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Parameters of a CA certificate (root or intermediate CSR).
pub fn ca_params(subject: DistinguishedName, days: u32) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = subject;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(days.into());
    p.serial_number = Some(random_serial()?);
    Ok(p)
}

/// Self-sign a root CA certificate with the CA key; returns DER.
pub fn self_signed_ca(
    key: &impl SigningKey,
    params: &CertificateParams,
) -> Result<Vec<u8>, PkiError> {
    let cert = params
        .self_signed(key)
        .map_err(build_err("CA certificate"))?;
    Ok(cert.der().to_vec())
}

/// A PKCS#10 request for the CA key, to be signed by an existing root; returns PEM.
pub fn ca_request(key: &impl SigningKey, params: &CertificateParams) -> Result<String, PkiError> {
    // A request carries no serial (the root chooses it).
    let mut params = params.clone();
    params.serial_number = None;
    let csr = params
        .serialize_request(key)
        .map_err(build_err("CA certificate request"))?;
    csr.pem().map_err(build_err("CA certificate request"))
}

/// Issue an RA certificate: the key SCEP clients encrypt to and the key that signs CertRep.
///
/// A single RA key gets digitalSignature + keyEncipherment (RFC 8894 §2.1.2; macOS picks the
/// recipient by it); separate signing and decryption keys get one usage each, as NDES does.
/// The validity is capped at the CA's.
pub fn issue_ra_certificate(
    ca_key: &impl SigningKey,
    ca_der: &[u8],
    ra_key: &impl SigningKey,
    subject: DistinguishedName,
    days: u32,
    usages: Vec<KeyUsagePurpose>,
) -> Result<Vec<u8>, PkiError> {
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).map_err(|e| {
        PkiError::BadCertificate(crate::reason::Reason::context(
            "CA certificate does not parse",
            e,
        ))
    })?;
    let ca_not_after = ca.validity().not_after.to_datetime();
    let mut p = CertificateParams::default();
    p.distinguished_name = subject;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = usages;
    p.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = std::cmp::min(now + Duration::days(days.into()), ca_not_after);
    p.serial_number = Some(random_serial()?);
    let issuer = Issuer::from_ca_cert_der(&ca_der.to_vec().into(), ca_key)
        .map_err(build_err("RA certificate"))?;
    let cert = p
        .signed_by(ra_key, &issuer)
        .map_err(build_err("RA certificate"))?;
    Ok(cert.der().to_vec())
}

/// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): relying parties need not check the
/// responder certificate's own revocation (it is short-lived instead).
const OCSP_NOCHECK: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5];

/// Issue the delegated OCSP responder's certificate: `responder_key` certified by the CA of
/// `ca_der` for OCSP signing only (extended key usage id-kp-OCSPSigning, key usage
/// digitalSignature, id-pkix-ocsp-nocheck), valid `days` (capped at the CA's). The CA key
/// then signs only certificates and CRLs.
pub fn issue_ocsp_responder_certificate(
    issuer: &Issuer<'_, impl SigningKey>,
    ca_der: &[u8],
    responder_key: &impl SigningKey,
    subject: DistinguishedName,
    days: u32,
) -> Result<Vec<u8>, PkiError> {
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).map_err(|e| {
        PkiError::BadCertificate(crate::reason::Reason::context(
            "CA certificate does not parse",
            e,
        ))
    })?;
    let ca_not_after = ca.validity().not_after.to_datetime();
    let mut p = CertificateParams::default();
    p.distinguished_name = subject;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::OcspSigning];
    p.use_authority_key_identifier_extension = true;
    // NULL, DER.
    p.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        OCSP_NOCHECK,
        vec![0x05, 0x00],
    )];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = std::cmp::min(now + Duration::days(days.into()), ca_not_after);
    p.serial_number = Some(random_serial()?);
    let cert = p
        .signed_by(responder_key, issuer)
        .map_err(build_err("OCSP responder certificate"))?;
    Ok(cert.der().to_vec())
}

/// A link (cross) certificate for CA rollover: `subject_key` (a CA key) certified as a CA
/// under `subject`, signed by the CA of `issuer_der` with `issuer_key`. Its validity ends with
/// the issuer's. Relying parties that trust only one generation reach the other through it.
pub fn link_certificate(
    issuer_key: &impl SigningKey,
    issuer_der: &[u8],
    subject_key: &impl SigningKey,
    subject: DistinguishedName,
) -> Result<Vec<u8>, PkiError> {
    let (_, issuer_cert) = x509_parser::parse_x509_certificate(issuer_der).map_err(|e| {
        PkiError::BadCertificate(crate::reason::Reason::context(
            "CA certificate does not parse",
            e,
        ))
    })?;
    let not_after = issuer_cert.validity().not_after.to_datetime();
    let now = OffsetDateTime::now_utc();
    let days = ((not_after - now).whole_days()).clamp(1, 36_500) as u32;
    let mut p = ca_params(subject, days)?;
    p.not_after = std::cmp::min(p.not_after, not_after);
    p.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_ca_cert_der(&issuer_der.to_vec().into(), issuer_key)
        .map_err(build_err("link certificate"))?;
    let cert = p
        .signed_by(subject_key, &issuer)
        .map_err(build_err("link certificate"))?;
    Ok(cert.der().to_vec())
}

/// A certificate's subject as text `parse_dn` reads back (`CN=…,O=…`), for the attributes
/// Sigil knows; others are left out.
pub fn subject_text(der: &[u8]) -> Option<String> {
    let (subject, _) = super::certificate_identity(der)?;
    let mut parts = Vec::new();
    for a in subject {
        let key = match a.oid.as_slice() {
            [2, 5, 4, 3] => "CN",
            [2, 5, 4, 10] => "O",
            [2, 5, 4, 11] => "OU",
            [2, 5, 4, 6] => "C",
            [2, 5, 4, 7] => "L",
            [2, 5, 4, 8] => "ST",
            [2, 5, 4, 5] => "serialNumber",
            [0, 9, 2342, 19200300, 100, 1, 25] => "DC",
            [0, 9, 2342, 19200300, 100, 1, 1] => "UID",
            [1, 2, 840, 113549, 1, 9, 1] => "E",
            _ => continue,
        };
        parts.push(format!(
            "{key}={}",
            a.value.replace('\\', "\\\\").replace(',', "\\,")
        ));
    }
    Some(parts.join(","))
}

/// Subject common name of a certificate, for messages.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok().map(str::to_owned));
    cn
}

/// One or more certificates from PEM, or a single DER certificate; each as DER.
pub fn read_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, PkiError> {
    use openssl::x509::X509;
    let certs = if bytes.starts_with(b"-----") || bytes.windows(5).any(|w| w == b"-----") {
        X509::stack_from_pem(bytes).map_err(|e| {
            PkiError::BadCertificate(crate::reason::Reason::context("PEM does not parse", e))
        })?
    } else {
        vec![X509::from_der(bytes).map_err(|e| {
            PkiError::BadCertificate(crate::reason::Reason::context("DER does not parse", e))
        })?]
    };
    certs
        .into_iter()
        .map(|c| {
            c.to_der()
                .map_err(|e| PkiError::BadCertificate(crate::reason::Reason::caused_by(e)))
        })
        .collect()
}

/// DER → PEM.
pub fn to_pem(der: &[u8]) -> String {
    use openssl::x509::X509;
    X509::from_der(der)
        .and_then(|c| c.to_pem())
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .unwrap_or_default()
}

/// SHA-256 fingerprint of DER bytes, colon-separated upper-case hex (as `openssl x509
/// -fingerprint -sha256` prints it).
pub fn sha256_fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A CRL signed by the CA key on the token (blocking), valid `hours`. `revoked` holds
/// (serial bytes, revocation time, RFC 5280 reason code). `partition_urls`: a partition's CRL,
/// which names those URLs (one name, any of which a certificate's distribution point may
/// match) in a critical issuing distribution point (end-entity certificates only); `None`: the
/// full CRL.
pub fn build_crl(
    issuer: &rcgen::Issuer<'_, impl SigningKey>,
    ca_der: &[u8],
    revoked: &[(Vec<u8>, OffsetDateTime, i32)],
    crl_number: u64,
    hours: i64,
    partition_urls: Option<&[String]>,
) -> Result<Vec<u8>, PkiError> {
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der)
        .map_err(|e| PkiError::BadCertificate(crate::reason::Reason::caused_by(e)))?;
    let ski = ca
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| PkiError::BadCertificate("the CA certificate has no SKI".into()))?;
    let now = OffsetDateTime::now_utc();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: now + Duration::hours(hours),
        crl_number: SerialNumber::from(crl_number),
        issuing_distribution_point: partition_urls.map(|urls| rcgen::CrlIssuingDistributionPoint {
            distribution_point: rcgen::CrlDistributionPoint {
                uris: urls.to_vec(),
            },
            scope: Some(rcgen::CrlScope::UserCertsOnly),
        }),
        revoked_certs: revoked
            .iter()
            .map(|(serial, at, reason)| rcgen::RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: *at,
                reason_code: revocation_reason(*reason),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::PreSpecified(ski),
    };
    let crl = params.signed_by(issuer).map_err(build_err("CRL"))?;
    Ok(crl.der().to_vec())
}

/// RFC 5280 reason names, as the CLI and API accept them.
pub const REVOCATION_REASONS: &[(&str, i32)] = &[
    ("unspecified", 0),
    ("keyCompromise", 1),
    ("cACompromise", 2),
    ("affiliationChanged", 3),
    ("superseded", 4),
    ("cessationOfOperation", 5),
    ("certificateHold", 6),
    ("privilegeWithdrawn", 9),
    ("aACompromise", 10),
];

/// The name of an RFC 5280 reason code (`unspecified` for codes Sigil does not use).
pub fn revocation_reason_name(code: i32) -> &'static str {
    REVOCATION_REASONS
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(n, _)| *n)
        .unwrap_or("unspecified")
}

/// A reason name (case-insensitive) or number to its RFC 5280 code.
pub fn parse_revocation_reason(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return REVOCATION_REASONS
            .iter()
            .find(|(_, c)| *c == n)
            .map(|(_, c)| *c);
    }
    REVOCATION_REASONS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(_, c)| *c)
}

fn revocation_reason(code: i32) -> Option<rcgen::RevocationReason> {
    use rcgen::RevocationReason as R;
    Some(match code {
        1 => R::KeyCompromise,
        2 => R::CaCompromise,
        3 => R::AffiliationChanged,
        4 => R::Superseded,
        5 => R::CessationOfOperation,
        6 => R::CertificateHold,
        9 => R::PrivilegeWithdrawn,
        10 => R::AaCompromise,
        // unspecified: RFC 5280 says leave the extension out.
        _ => return None,
    })
}
