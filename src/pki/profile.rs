//! Certificate profiles: what a certificate issued from a device's CSR may and must contain —
//! subject and SAN rules, key types and sizes, key usage, extended key usage, validity,
//! policies, CRL and AIA URLs. The profile checks a [`Csr`] and builds the certificate, signed
//! by the CA key on the token. It does not decide *who* gets a certificate (that is `ra`).

use der::Encode;
use rcgen::{
    CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::csr::{Csr, RequestedKey, San};
use super::{random_serial, PkiError};

/// The certificate rules of one profile.
#[derive(Debug, Clone)]
pub struct CertProfile {
    /// Profile name.
    pub name: String,
    /// Subject forced from a template (`CN={cn},O=Agency`); `None` copies the CSR's subject.
    /// Placeholders: `{cn}` (the CSR's common name).
    pub subject_template: Option<String>,
    /// SAN kinds that may come from the CSR: dns, email, uri, upn, ip.
    pub allowed_sans: Vec<String>,
    /// Key usage.
    pub key_usages: Vec<KeyUsagePurpose>,
    /// Extended key usage.
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    /// A request that asks for key usage or extended key usage gets exactly what it asks for,
    /// provided the profile allows each (`key_usages` and `extended_key_usages` are then the
    /// allowed set and the default); one that asks for more is refused. Off: the profile's
    /// usages whatever the request says.
    pub usage_from_request: bool,
    /// Validity in days.
    pub validity_days: u32,
    /// Spread notAfter over this fraction of the validity, earlier (0: every certificate gets
    /// the full validity). A fleet enrolled in one day then does not expire in one night.
    pub validity_jitter: f64,
    /// Smallest RSA modulus accepted.
    pub min_rsa_bits: u32,
    /// Key types accepted: rsa, p256, p384.
    pub key_types: Vec<String>,
    /// Certificate policy OIDs.
    pub policy_oids: Vec<Vec<u64>>,
    /// CRL distribution point URL (empty: none); `{partition}` in it becomes the
    /// certificate's CRL partition (see [`super::CrlPartition`]).
    pub crl_url: String,
    /// OCSP responder URL for AIA (empty: none).
    pub ocsp_url: String,
    /// CA issuers URL for AIA (empty: none).
    pub ca_issuers_url: String,
}

/// Parse a key usage keyword.
pub fn key_usage(word: &str) -> Option<KeyUsagePurpose> {
    Some(match word {
        "digitalSignature" => KeyUsagePurpose::DigitalSignature,
        "nonRepudiation" | "contentCommitment" => KeyUsagePurpose::ContentCommitment,
        "keyEncipherment" => KeyUsagePurpose::KeyEncipherment,
        "dataEncipherment" => KeyUsagePurpose::DataEncipherment,
        "keyAgreement" => KeyUsagePurpose::KeyAgreement,
        _ => return None,
    })
}

/// Parse an EKU keyword or dotted OID.
pub fn extended_key_usage(word: &str) -> Option<ExtendedKeyUsagePurpose> {
    Some(match word {
        "clientAuth" => ExtendedKeyUsagePurpose::ClientAuth,
        "serverAuth" => ExtendedKeyUsagePurpose::ServerAuth,
        "codeSigning" => ExtendedKeyUsagePurpose::CodeSigning,
        "emailProtection" => ExtendedKeyUsagePurpose::EmailProtection,
        "timeStamping" => ExtendedKeyUsagePurpose::TimeStamping,
        "ocspSigning" => ExtendedKeyUsagePurpose::OcspSigning,
        other => ExtendedKeyUsagePurpose::Other(parse_oid(other)?),
    })
}

/// Parse a dotted OID into arcs.
pub fn parse_oid(s: &str) -> Option<Vec<u64>> {
    let arcs: Option<Vec<u64>> = s.split('.').map(|p| p.parse().ok()).collect();
    arcs.filter(|a| a.len() >= 2)
}

fn dn_type(oid: &[u64]) -> DnType {
    match oid {
        [2, 5, 4, 3] => DnType::CommonName,
        [2, 5, 4, 6] => DnType::CountryName,
        [2, 5, 4, 7] => DnType::LocalityName,
        [2, 5, 4, 8] => DnType::StateOrProvinceName,
        [2, 5, 4, 10] => DnType::OrganizationName,
        [2, 5, 4, 11] => DnType::OrganizationalUnitName,
        other => DnType::CustomDnType(other.to_vec()),
    }
}

fn dn_value(tag: u32, value: &str) -> DnValue {
    let printable = || rcgen::string::PrintableString::try_from(value.to_owned()).ok();
    let ia5 = || rcgen::string::Ia5String::try_from(value.to_owned()).ok();
    match tag {
        19 => printable()
            .map(DnValue::PrintableString)
            .unwrap_or_else(|| DnValue::Utf8String(value.into())),
        22 => ia5()
            .map(DnValue::Ia5String)
            .unwrap_or_else(|| DnValue::Utf8String(value.into())),
        _ => DnValue::Utf8String(value.into()),
    }
}

fn ia5(s: &str, what: &str) -> Result<rcgen::string::Ia5String, String> {
    rcgen::string::Ia5String::try_from(s.to_owned())
        .map_err(|_| format!("{what} `{s}` is not ASCII"))
}

/// An identity decided before the device asked (a registration built it from the MDM's device
/// facts): the certificate gets this subject and these SANs, whatever the CSR says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Subject as text (`CN=a@agency.gov,O=Agency`).
    pub subject: String,
    /// SANs as `email:…`, `upn:…`, `uri:…`, `dns:…`, `ip:…`.
    pub sans: Vec<String>,
}

impl Identity {
    /// The SANs, parsed.
    pub fn parsed_sans(&self) -> Result<Vec<San>, String> {
        self.sans
            .iter()
            .map(|s| match s.split_once(':') {
                Some(("dns", v)) => Ok(San::Dns(v.into())),
                Some(("email", v)) => Ok(San::Email(v.into())),
                Some(("uri", v)) => Ok(San::Uri(v.into())),
                Some(("upn", v)) => Ok(San::Upn(v.into())),
                Some(("ip", v)) => v
                    .parse()
                    .map(San::Ip)
                    .map_err(|_| format!("`{v}` is not an IP address")),
                _ => Err(format!("SAN `{s}` has no known kind")),
            })
            .collect()
    }
}

impl CertProfile {
    /// The subject a certificate with common name `cn` gets: the subject template with `cn`
    /// for `{cn}`, or just the CN.
    pub fn subject_for_cn(&self, cn: &str) -> String {
        let cn = super::escape_dn_value(cn);
        match &self.subject_template {
            Some(t) => t.replace("{cn}", &cn),
            None => format!("CN={cn}"),
        }
    }

    /// Check a CSR against the profile; the error says which rule failed.
    pub fn check(&self, csr: &Csr) -> Result<(), String> {
        self.check_as(csr, None)
    }

    /// Check a CSR that will be issued as `identity` (when given): the key rules apply to the
    /// CSR, the SAN rules to the identity, and the CSR's own subject does not matter.
    pub fn check_as(&self, csr: &Csr, identity: Option<&Identity>) -> Result<(), String> {
        match csr.key {
            RequestedKey::Rsa(bits) => {
                if !self.key_types.iter().any(|k| k == "rsa") {
                    return Err(format!("profile `{}` does not accept RSA keys", self.name));
                }
                if bits < self.min_rsa_bits {
                    return Err(format!(
                        "RSA key of {bits} bits is below the profile's minimum of {}",
                        self.min_rsa_bits
                    ));
                }
            }
            RequestedKey::P256 | RequestedKey::P384 => {
                let kw = if csr.key == RequestedKey::P256 {
                    "p256"
                } else {
                    "p384"
                };
                if !self.key_types.iter().any(|k| k == kw) {
                    return Err(format!("profile `{}` does not accept {kw} keys", self.name));
                }
            }
            RequestedKey::Other => {
                return Err("the key type is not RSA, P-256 or P-384".into());
            }
        }
        let sans = match identity {
            Some(i) => {
                super::parse_dn(&i.subject)?;
                i.parsed_sans()?
            }
            None => csr.sans.clone(),
        };
        for san in &sans {
            if !self.allowed_sans.iter().any(|k| k == san.kind()) {
                return Err(format!(
                    "subject alternative name {san:?} ({} SANs are not allowed by profile `{}`)",
                    san.kind(),
                    self.name
                ));
            }
        }
        self.usages(csr)?;
        if identity.is_some() {
            return Ok(());
        }
        if self.subject_template.is_none() && csr.subject.is_empty() && csr.sans.is_empty() {
            return Err("the CSR has neither a subject nor a subject alternative name".into());
        }
        if let Some(t) = &self.subject_template {
            if t.contains("{cn}") && csr.common_name().is_none() {
                return Err(
                    "the profile's subject needs the CSR's common name, and it has none".into(),
                );
            }
        }
        Ok(())
    }

    fn subject(&self, csr: &Csr) -> Result<DistinguishedName, String> {
        match &self.subject_template {
            Some(t) => {
                let cn = csr
                    .common_name()
                    .unwrap_or("")
                    .replace('\\', "\\\\")
                    .replace(',', "\\,");
                let text = t.replace("{cn}", &cn);
                super::parse_dn(&text)
            }
            None => {
                let mut dn = DistinguishedName::new();
                for a in &csr.subject {
                    dn.push(dn_type(&a.oid), dn_value(a.tag, &a.value));
                }
                Ok(dn)
            }
        }
    }

    fn sans(&self, sans: &[San]) -> Result<Vec<SanType>, String> {
        let mut out = Vec::new();
        for san in sans {
            out.push(match san {
                San::Dns(s) => SanType::DnsName(ia5(s, "DNS name")?),
                San::Email(s) => SanType::Rfc822Name(ia5(s, "email")?),
                San::Uri(s) => SanType::URI(ia5(s, "URI")?),
                San::Ip(ip) => SanType::IpAddress(*ip),
                San::Upn(u) => SanType::OtherName((
                    vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
                    rcgen::OtherNameValue::Utf8String(u.clone()),
                )),
                San::Other(d) => return Err(format!("unsupported SAN {d}")),
            });
        }
        Ok(out)
    }

    fn extensions(&self) -> Result<Vec<CustomExtension>, PkiError> {
        let enc = |e: der::Error| PkiError::Build {
            what: "certificate extension",
            cause: crate::reason::Reason::caused_by(e),
        };
        let mut exts = Vec::new();
        if !self.policy_oids.is_empty() {
            let mut policies = Vec::new();
            for arcs in &self.policy_oids {
                let text = arcs
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(".");
                let oid = der::asn1::ObjectIdentifier::new(&text).map_err(|e| PkiError::Build {
                    what: "certificate policy",
                    cause: crate::reason::Reason::caused_by(e),
                })?;
                policies.push(x509_cert::ext::pkix::certpolicy::PolicyInformation {
                    policy_identifier: oid,
                    policy_qualifiers: None,
                });
            }
            let der = x509_cert::ext::pkix::CertificatePolicies(policies)
                .to_der()
                .map_err(enc)?;
            exts.push(CustomExtension::from_oid_content(&[2, 5, 29, 32], der));
        }
        let mut access = Vec::new();
        for (url, method) in [
            (&self.ocsp_url, "1.3.6.1.5.5.7.48.1"),
            (&self.ca_issuers_url, "1.3.6.1.5.5.7.48.2"),
        ] {
            if url.is_empty() {
                continue;
            }
            let location = der::asn1::Ia5String::new(url).map_err(enc)?;
            access.push(x509_cert::ext::pkix::AccessDescription {
                access_method: der::asn1::ObjectIdentifier::new_unwrap(method),
                access_location: x509_cert::ext::pkix::name::GeneralName::UniformResourceIdentifier(
                    location,
                ),
            });
        }
        if !access.is_empty() {
            let der = x509_cert::ext::pkix::AuthorityInfoAccessSyntax(access)
                .to_der()
                .map_err(enc)?;
            exts.push(CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 5, 5, 7, 1, 1],
                der,
            ));
        }
        Ok(exts)
    }

    /// How much earlier than the full validity this certificate ends: uniform in
    /// `[0, validity_jitter × validity)`, to the second.
    fn jitter(&self) -> Result<Duration, PkiError> {
        if self.validity_jitter <= 0.0 {
            return Ok(Duration::ZERO);
        }
        let span =
            (f64::from(self.validity_days) * 86_400.0 * self.validity_jitter.min(0.5)) as u64;
        if span == 0 {
            return Ok(Duration::ZERO);
        }
        let mut b = [0u8; 8];
        openssl::rand::rand_bytes(&mut b).map_err(|e| PkiError::Build {
            what: "validity jitter",
            cause: crate::reason::Reason::caused_by(e),
        })?;
        // The modulo bias over a 64-bit draw is below 2^-30 for any span of days.
        Ok(Duration::seconds((u64::from_le_bytes(b) % span) as i64))
    }

    /// The key usage and extended key usage the certificate carries: the profile's, or with
    /// `usage_from_request` what the request asks for within them.
    fn usages(
        &self,
        csr: &Csr,
    ) -> Result<(Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>), String> {
        if !self.usage_from_request {
            return Ok((self.key_usages.clone(), self.extended_key_usages.clone()));
        }
        let key_usages = narrowed(
            csr.requested_key_usage.as_deref(),
            &self.key_usages,
            |w: &&str| key_usage(w),
            "key usage",
            &self.name,
        )?;
        let extended_key_usages = narrowed(
            csr.requested_extended_key_usage.as_deref(),
            &self.extended_key_usages,
            |w: &String| extended_key_usage(w),
            "extended key usage",
            &self.name,
        )?;
        Ok((key_usages, extended_key_usages))
    }

    /// Issue the certificate for a checked CSR (blocking: the CA key signs on the token).
    /// The certificate never outlives `ca_not_after`.
    ///
    /// With an `identity`, the certificate carries its subject and SANs instead of the CSR's.
    pub fn issue(
        &self,
        csr: &Csr,
        identity: Option<&Identity>,
        issuer: &Issuer<'_, impl rcgen::SigningKey>,
        ca_not_after: OffsetDateTime,
    ) -> Result<Vec<u8>, PkiError> {
        let policy = |reason: String| PkiError::Policy(reason);
        self.check_as(csr, identity).map_err(policy)?;
        let mut p = CertificateParams::default();
        match identity {
            Some(i) => {
                p.distinguished_name = super::parse_dn(&i.subject).map_err(policy)?;
                p.subject_alt_names = self
                    .sans(&i.parsed_sans().map_err(policy)?)
                    .map_err(policy)?;
            }
            None => {
                p.distinguished_name = self.subject(csr).map_err(policy)?;
                p.subject_alt_names = self.sans(&csr.sans).map_err(policy)?;
            }
        }
        p.is_ca = IsCa::ExplicitNoCa;
        (p.key_usages, p.extended_key_usages) = self.usages(csr).map_err(policy)?;
        p.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        p.not_before = now - Duration::minutes(5);
        p.not_after = std::cmp::min(
            now + Duration::days(self.validity_days.into()) - self.jitter()?,
            ca_not_after,
        );
        p.serial_number = Some(random_serial()?);
        if !self.crl_url.is_empty() {
            p.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![super::crl_partition::crl_url_for(
                    &self.crl_url,
                    p.not_after,
                )],
            }];
        }
        p.custom_extensions = self.extensions()?;
        let public = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki)
            .map_err(|e| PkiError::Policy(format!("the CSR's public key is not usable: {e}")))?;
        let cert = p.signed_by(&public, issuer).map_err(|e| PkiError::Build {
            what: "certificate",
            cause: crate::reason::Reason::caused_by(e),
        })?;
        Ok(cert.der().to_vec())
    }
}

/// What a request asks for (`asked`, keywords read by `read`), each within `allowed`; nothing
/// asked: `allowed`. Asking for one `allowed` lacks is refused, naming it.
fn narrowed<W: std::fmt::Display, P: Clone + PartialEq>(
    asked: Option<&[W]>,
    allowed: &[P],
    read: impl Fn(&W) -> Option<P>,
    what: &str,
    profile: &str,
) -> Result<Vec<P>, String> {
    match asked {
        Some(words) if !words.is_empty() => words
            .iter()
            .map(|w| {
                read(w).filter(|p| allowed.contains(p)).ok_or_else(|| {
                    format!(
                        "the request asks for {what} {w}, which profile `{profile}` does not allow"
                    )
                })
            })
            .collect(),
        _ => Ok(allowed.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(usage_from_request: bool) -> CertProfile {
        CertProfile {
            name: "p".into(),
            subject_template: None,
            allowed_sans: vec![],
            key_usages: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            extended_key_usages: vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6]),
            ],
            usage_from_request,
            validity_days: 1,
            validity_jitter: 0.0,
            min_rsa_bits: 2048,
            key_types: vec!["rsa".into()],
            policy_oids: vec![],
            crl_url: String::new(),
            ocsp_url: String::new(),
            ca_issuers_url: String::new(),
        }
    }

    #[test]
    fn a_request_gets_the_usages_it_asks_for_within_the_profile_and_no_more() {
        let device = crate::scep::client::Device::rsa(2048, "t").unwrap();
        let csr = |ku: &[&str], eku: &[&str]| {
            let ku: Vec<_> = ku.iter().map(|k| key_usage(k).unwrap()).collect();
            let eku: Vec<_> = eku.iter().map(|k| extended_key_usage(k).unwrap()).collect();
            super::super::parse_csr(
                &device
                    .csr_requesting(&[("CN", "t")], None, &[], &ku, &eku)
                    .unwrap(),
            )
            .unwrap()
        };
        let narrow = csr(&["keyEncipherment"], &["1.3.6.1.5.5.7.3.6"]);
        assert_eq!(narrow.requested_key_usage, Some(vec!["keyEncipherment"]));
        let (ku, eku) = profile(true).usages(&narrow).unwrap();
        assert_eq!(ku, vec![KeyUsagePurpose::KeyEncipherment]);
        assert_eq!(
            eku,
            vec![ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 5, 5, 7, 3, 6
            ])]
        );
        // Off: the profile's usages, whatever was asked.
        let (ku, eku) = profile(false).usages(&narrow).unwrap();
        assert_eq!(ku.len(), 2);
        assert_eq!(eku.len(), 2);
        // Nothing asked: the profile's.
        let (ku, eku) = profile(true).usages(&csr(&[], &[])).unwrap();
        assert_eq!((ku.len(), eku.len()), (2, 2));
        // More than the profile allows: refused, naming what.
        let e = profile(true)
            .usages(&csr(&["dataEncipherment"], &[]))
            .unwrap_err();
        assert!(e.contains("key usage dataEncipherment"), "{e}");
        let e = profile(true)
            .check_as(&csr(&[], &["serverAuth"]), None)
            .unwrap_err();
        assert!(e.contains("extended key usage serverAuth"), "{e}");
        // keyCertSign is never granted to a device.
        let mut sneaky = csr(&[], &[]);
        sneaky.requested_key_usage = Some(vec!["digitalSignature", "keyCertSign"]);
        assert!(profile(true).usages(&sneaky).is_err());
    }
}
