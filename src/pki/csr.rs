//! Reading and checking PKCS#10 requests as devices send them.
//!
//! rcgen's own CSR reader refuses SHA-1 signatures and most extensions, and real devices send
//! both (and macOS a version field of 2), so the request is read here: OpenSSL checks the
//! self-signature, x509-parser reads the subject, the key, the extensionRequest and the
//! challengePassword (any DirectoryString type).

use der::{Decode, Tagged};
use openssl::pkey::Id;
use openssl::x509::X509Req;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// A subject alternative name requested by a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    /// dNSName.
    Dns(String),
    /// rfc822Name.
    Email(String),
    /// uniformResourceIdentifier (kept as sent, e.g. Intune's `tag:microsoft.com,2022-09-14:sid:…`).
    Uri(String),
    /// iPAddress (4 or 16 bytes).
    Ip(std::net::IpAddr),
    /// otherName UPN (1.3.6.1.4.1.311.20.2.3).
    Upn(String),
    /// Anything else, described for error messages.
    Other(String),
}

impl std::fmt::Display for San {
    /// As bindings and identities write SANs: `dns:…`, `email:…`, `uri:…`, `ip:…`, `upn:…`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(v) => write!(f, "dns:{v}"),
            San::Email(v) => write!(f, "email:{v}"),
            San::Uri(v) => write!(f, "uri:{v}"),
            San::Ip(v) => write!(f, "ip:{v}"),
            San::Upn(v) => write!(f, "upn:{v}"),
            San::Other(v) => write!(f, "other:{v}"),
        }
    }
}

/// Name attributes as one line of text, in order (`CN=dev,O=Agency,1.2.3=x`).
pub fn name_text(attrs: &[NameAttribute]) -> String {
    attrs
        .iter()
        .map(|a| {
            let key = match a.oid.as_slice() {
                [2, 5, 4, 3] => "CN".to_string(),
                [2, 5, 4, 6] => "C".to_string(),
                [2, 5, 4, 7] => "L".to_string(),
                [2, 5, 4, 8] => "ST".to_string(),
                [2, 5, 4, 10] => "O".to_string(),
                [2, 5, 4, 11] => "OU".to_string(),
                [2, 5, 4, 5] => "serialNumber".to_string(),
                [1, 2, 840, 113549, 1, 9, 1] => "emailAddress".to_string(),
                [0, 9, 2342, 19200300, 100, 1, 1] => "UID".to_string(),
                [0, 9, 2342, 19200300, 100, 1, 25] => "DC".to_string(),
                other => other
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join("."),
            };
            format!("{key}={}", super::escape_dn_value(&a.value))
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl San {
    /// The profile keyword of this SAN type.
    pub fn kind(&self) -> &'static str {
        match self {
            San::Dns(_) => "dns",
            San::Email(_) => "email",
            San::Uri(_) => "uri",
            San::Ip(_) => "ip",
            San::Upn(_) => "upn",
            San::Other(_) => "other",
        }
    }
}

/// The requested key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedKey {
    /// RSA with modulus bits.
    Rsa(u32),
    /// EC P-256.
    P256,
    /// EC P-384.
    P384,
    /// Anything else (another curve, Ed25519, DSA).
    Other,
}

/// A name attribute: OID arcs, string tag, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAttribute {
    /// Attribute type.
    pub oid: Vec<u64>,
    /// DER tag number of the string type (PrintableString 19, UTF8String 12, …).
    pub tag: u32,
    /// The value as text.
    pub value: String,
}

/// A PKCS#10 request whose self-signature checked out.
#[derive(Debug, Clone)]
pub struct Csr {
    /// The request as received.
    pub der: Vec<u8>,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// Key type and size.
    pub key: RequestedKey,
    /// Subject attributes in order.
    pub subject: Vec<NameAttribute>,
    /// DER of the subject Name.
    pub subject_der: Vec<u8>,
    /// Requested SANs.
    pub sans: Vec<San>,
    /// challengePassword, if any.
    pub challenge: Option<String>,
    /// The key usage the request asks for (configuration keywords: `digitalSignature`,
    /// `keyEncipherment`, …), when it carries the extension.
    pub requested_key_usage: Option<Vec<&'static str>>,
    /// The extended key usages it asks for (keywords such as `clientAuth`, or dotted OIDs),
    /// when it carries the extension.
    pub requested_extended_key_usage: Option<Vec<String>>,
}

impl Csr {
    /// The subject common name, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.subject
            .iter()
            .find(|a| a.oid == [2, 5, 4, 3])
            .map(|a| a.value.as_str())
    }
}

/// Why a CSR was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    /// Not a PKCS#10 request.
    #[error("the CSR does not parse: {0}")]
    Malformed(#[source] crate::reason::Reason),
    /// The self-signature is wrong.
    #[error("the CSR's signature does not verify")]
    BadSignature,
}

const UPN: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 20, 2, 3];
const CHALLENGE: &[u64] = &[1, 2, 840, 113549, 1, 9, 7];

fn arcs(oid: &x509_parser::oid_registry::Oid<'_>) -> Vec<u64> {
    oid.iter().map(|i| i.collect()).unwrap_or_default()
}

/// Read a challengePassword attribute value: the raw SET with one DirectoryString.
fn challenge_text(set: &[u8]) -> Option<String> {
    let set = der::asn1::Any::from_ber(set).ok()?;
    let first = der::asn1::Any::from_ber(set.value()).ok()?;
    crate::scep::asn1::any_to_string(&first)
}

fn upn_text(value: &[u8]) -> Option<String> {
    // otherName value: [0] EXPLICIT UTF8String.
    let outer = der::asn1::Any::from_ber(value).ok()?;
    let inner = if outer.tag().is_context_specific() {
        der::asn1::Any::from_ber(outer.value()).ok()?
    } else {
        outer
    };
    crate::scep::asn1::any_to_string(&inner)
}

fn san_of(gn: &GeneralName<'_>) -> San {
    match gn {
        GeneralName::DNSName(s) => San::Dns(s.to_string()),
        GeneralName::RFC822Name(s) => San::Email(s.to_string()),
        GeneralName::URI(s) => San::Uri(s.to_string()),
        GeneralName::IPAddress(b) => match <[u8; 4]>::try_from(*b) {
            Ok(v4) => San::Ip(std::net::IpAddr::from(v4)),
            Err(_) => match <[u8; 16]>::try_from(*b) {
                Ok(v6) => San::Ip(std::net::IpAddr::from(v6)),
                Err(_) => San::Other("malformed iPAddress".into()),
            },
        },
        GeneralName::OtherName(oid, value) if arcs(oid) == UPN => match upn_text(value) {
            Some(u) => San::Upn(u),
            None => San::Other("malformed UPN".into()),
        },
        other => San::Other(format!("{other:?}")),
    }
}

fn name_attributes(name: &x509_parser::x509::X509Name<'_>) -> Vec<NameAttribute> {
    name.iter_attributes()
        .map(|a| NameAttribute {
            oid: arcs(a.attr_type()),
            tag: a.attr_value().tag().0,
            value: a
                .attr_value()
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|_| String::from_utf8_lossy(a.attr_value().data).into_owned()),
        })
        .collect()
}

/// The subject attributes and SANs of an issued certificate, in the same terms as a [`Csr`]'s
/// (to check that a renewal keeps them).
pub fn certificate_identity(der: &[u8]) -> Option<(Vec<NameAttribute>, Vec<San>)> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = name_attributes(c.subject());
    let sans = c
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|e| e.value.general_names.iter().map(san_of).collect())
        .unwrap_or_default();
    Some((subject, sans))
}

/// What a store records of an issued certificate, read from its DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Serial, lower-case hex without leading zeros.
    pub serial: String,
    /// Subject, one line.
    pub subject: String,
    /// Subject alternative names, one line.
    pub sans: String,
    /// Issuer, one line.
    pub issuer: String,
    /// notBefore (Unix seconds).
    pub not_before: i64,
    /// notAfter (Unix seconds).
    pub not_after: i64,
}

/// Read the facts a store records from a certificate.
pub fn certificate_facts(der: &[u8]) -> Result<CertificateFacts, CsrError> {
    let (_, c) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CsrError::Malformed(crate::reason::Reason::context("certificate", e)))?;
    let raw = c.tbs_certificate.raw_serial();
    let lead = raw.iter().take_while(|b| **b == 0).count();
    let sans = c
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|e| {
            e.value
                .general_names
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Ok(CertificateFacts {
        serial: hex::encode(&raw[lead..]),
        subject: c.subject().to_string(),
        sans,
        issuer: c.issuer().to_string(),
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
    })
}

/// Parse a CSR and check its self-signature.
pub fn parse_csr(der_bytes: &[u8]) -> Result<Csr, CsrError> {
    // OpenSSL reads the request only when it is needed (a key other than RSA, an unusual
    // signature algorithm): its generic key decoder is slow.
    let openssl_req = || {
        X509Req::from_der(der_bytes)
            .map_err(|e| CsrError::Malformed(crate::reason::Reason::caused_by(e)))
    };
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der_bytes)
            .map_err(|e| CsrError::Malformed(crate::reason::Reason::caused_by(e)))?;
    let info = &parsed.certification_request_info;
    // The key is read once, from the SubjectPublicKeyInfo as sent, and that same key verifies
    // the self-signature and goes into the certificate: no second reading can differ from it.
    // RSA keys skip OpenSSL 3's slow generic decoder.
    let spki = info.subject_pki.raw.to_vec();
    let key = match info.subject_pki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => {
            let bits = &info.subject_pki.subject_public_key;
            let rsa = openssl::rsa::Rsa::public_key_from_der_pkcs1(&bits.data).map_err(|e| {
                CsrError::Malformed(crate::reason::Reason::context("public key", e))
            })?;
            // Exactly one RSAPublicKey, in DER, and nothing after it: what is certified is
            // what was read.
            if bits.unused_bits != 0
                || rsa.public_key_to_der_pkcs1().ok().as_deref() != Some(&bits.data[..])
            {
                return Err(CsrError::Malformed(
                    "the RSA public key is not in its DER encoding".into(),
                ));
            }
            openssl::pkey::PKey::from_rsa(rsa)
                .map_err(|e| CsrError::Malformed(crate::reason::Reason::context("public key", e)))?
        }
        _ => {
            let k = openssl_req()?.public_key().map_err(|e| {
                CsrError::Malformed(crate::reason::Reason::context("public key", e))
            })?;
            if k.public_key_to_der().ok().as_deref() != Some(spki.as_slice()) {
                return Err(CsrError::Malformed(
                    "the public key is not in its DER encoding".into(),
                ));
            }
            k
        }
    };
    // PKCS#1 v1.5 signatures by RSA keys are checked here over the request info as sent
    // (what OpenSSL checks too); anything else by OpenSSL.
    let digest = match parsed.signature_algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.5" => Some(openssl::hash::MessageDigest::sha1()),
        "1.2.840.113549.1.1.11" => Some(openssl::hash::MessageDigest::sha256()),
        "1.2.840.113549.1.1.12" => Some(openssl::hash::MessageDigest::sha384()),
        "1.2.840.113549.1.1.13" => Some(openssl::hash::MessageDigest::sha512()),
        _ => None,
    };
    let verified = match digest {
        Some(md) if key.id() == Id::RSA => {
            let sig = &parsed.signature_value;
            sig.unused_bits == 0
                && openssl::sign::Verifier::new(md, &key)
                    .and_then(|mut v| {
                        v.update(info.raw)?;
                        v.verify(&sig.data)
                    })
                    .unwrap_or(false)
        }
        _ => openssl_req()?.verify(&key).unwrap_or(false),
    };
    if !verified {
        return Err(CsrError::BadSignature);
    }
    let requested = match key.id() {
        Id::RSA => RequestedKey::Rsa(key.bits()),
        Id::EC => match key.ec_key().ok().and_then(|k| k.group().curve_name()) {
            Some(openssl::nid::Nid::X9_62_PRIME256V1) => RequestedKey::P256,
            Some(openssl::nid::Nid::SECP384R1) => RequestedKey::P384,
            _ => RequestedKey::Other,
        },
        _ => RequestedKey::Other,
    };
    let subject = name_attributes(&info.subject);
    let mut sans = Vec::new();
    let (mut requested_key_usage, mut requested_extended_key_usage) = (None, None);
    if let Some(exts) = parsed.requested_extensions() {
        for ext in exts {
            match ext {
                ParsedExtension::SubjectAlternativeName(san) => {
                    sans.extend(san.general_names.iter().map(san_of));
                }
                ParsedExtension::KeyUsage(ku) => requested_key_usage = Some(key_usage_words(ku)),
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    requested_extended_key_usage = Some(extended_key_usage_words(eku));
                }
                _ => {}
            }
        }
    }
    let challenge = info
        .attributes()
        .iter()
        .find(|a| arcs(&a.oid) == CHALLENGE)
        .and_then(|a| challenge_text(a.value));
    Ok(Csr {
        der: der_bytes.to_vec(),
        spki,
        key: requested,
        subject,
        subject_der: info.subject.as_raw().to_vec(),
        sans,
        challenge,
        requested_key_usage,
        requested_extended_key_usage,
    })
}

/// The key usage bits set, as the configuration names them (RFC 5280 4.2.1.3 order).
fn key_usage_words(ku: &x509_parser::extensions::KeyUsage) -> Vec<&'static str> {
    const WORDS: [&str; 9] = [
        "digitalSignature",
        "nonRepudiation",
        "keyEncipherment",
        "dataEncipherment",
        "keyAgreement",
        "keyCertSign",
        "cRLSign",
        "encipherOnly",
        "decipherOnly",
    ];
    WORDS
        .iter()
        .enumerate()
        .filter(|(bit, _)| (ku.flags >> bit) & 1 == 1)
        .map(|(_, w)| *w)
        .collect()
}

/// The extended key usages, as the configuration names them (dotted OIDs for the rest).
fn extended_key_usage_words(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Vec<String> {
    let mut out: Vec<String> = [
        (eku.any, "2.5.29.37.0"),
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "ocspSigning"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, w)| w.to_string())
    .collect();
    out.extend(eku.other.iter().map(|o| o.to_id_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_csr_keeps_the_parsers_error_as_its_cause() {
        let der = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/scep/micromdm-scep/derived/PKCSReq.csr.der"
        ))
        .unwrap();
        let e = parse_csr(&der[..der.len() - 20]).unwrap_err();
        assert!(matches!(e, CsrError::Malformed(_)), "{e:?}");
        // CsrError -> Reason -> x509-parser's error, not a sentence alone.
        let reason = std::error::Error::source(&e).expect("the reason");
        let cause = reason
            .source()
            .expect("the parser's error under the reason");
        assert!(cause.downcast_ref::<crate::reason::Reason>().is_none());
        assert!(!cause.to_string().is_empty());
    }

    #[test]
    fn reads_the_macos_csr_with_version_2() {
        let der = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/scep/micromdm-scep/derived/PKCSReq.csr.der"
        ))
        .unwrap();
        let csr = parse_csr(&der).unwrap();
        assert_eq!(csr.key, RequestedKey::Rsa(1024));
        assert!(csr
            .common_name()
            .unwrap()
            .starts_with("com.apple.security.scep."));
        assert_eq!(csr.challenge, None);
    }

    #[test]
    fn reads_cryptlib_printable_challenge_and_sans() {
        let der = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/scep/jscep-samples-cryptlib/scep_req0.der"
        ))
        .unwrap();
        let csr = parse_csr(&der).unwrap();
        assert_eq!(csr.challenge.as_deref(), Some("NQ3C6-GS3ZN-2XPGL-SEJTQ"));
        assert!(csr.sans.iter().any(|s| s.kind() == "email"));
        assert!(csr.sans.iter().any(|s| s.kind() == "uri"));
    }

    #[test]
    fn refuses_garbage_and_bad_signatures() {
        assert!(parse_csr(b"nonsense").is_err());
        let mut der = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/scep/jscep-samples-cryptlib/scep_req0.der"
        ))
        .unwrap();
        let n = der.len();
        der[n - 5] ^= 0xff;
        assert_eq!(parse_csr(&der).unwrap_err(), CsrError::BadSignature);
    }

    /// RSA signatures are checked without OpenSSL's request reader, others with it: both
    /// accept a good request and refuse one whose signature or signed content changed.
    #[test]
    fn every_key_and_digest_verifies_and_tampering_is_refused() {
        use openssl::hash::MessageDigest as Md;
        use openssl::pkey::PKey;
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let ec = |nid| {
            let g = openssl::ec::EcGroup::from_curve_name(nid).unwrap();
            PKey::from_ec_key(openssl::ec::EcKey::generate(&g).unwrap()).unwrap()
        };
        let (p256, p384) = (
            ec(openssl::nid::Nid::X9_62_PRIME256V1),
            ec(openssl::nid::Nid::SECP384R1),
        );
        let cases = [
            (&rsa, Md::sha1(), RequestedKey::Rsa(2048)),
            (&rsa, Md::sha256(), RequestedKey::Rsa(2048)),
            (&rsa, Md::sha384(), RequestedKey::Rsa(2048)),
            (&rsa, Md::sha512(), RequestedKey::Rsa(2048)),
            (&p256, Md::sha256(), RequestedKey::P256),
            (&p384, Md::sha384(), RequestedKey::P384),
        ];
        for (key, md, expected) in cases {
            let mut b = openssl::x509::X509ReqBuilder::new().unwrap();
            let mut name = openssl::x509::X509NameBuilder::new().unwrap();
            name.append_entry_by_text("CN", "tamper-test").unwrap();
            b.set_subject_name(&name.build()).unwrap();
            b.set_pubkey(key).unwrap();
            b.sign(key, md).unwrap();
            let der = b.build().to_der().unwrap();
            let csr = parse_csr(&der).unwrap_or_else(|e| panic!("{expected:?}: {e}"));
            assert_eq!(csr.key, expected);
            assert_eq!(csr.common_name(), Some("tamper-test"));
            let n = der.len();
            let at_subject = der.windows(11).position(|w| w == b"tamper-test").unwrap();
            for at in [n - 3, at_subject] {
                let mut bad = der.clone();
                bad[at] ^= 0x01;
                assert_eq!(
                    parse_csr(&bad).err(),
                    Some(CsrError::BadSignature),
                    "{expected:?}, bit flipped at {at}"
                );
            }
        }
    }
}
