//! Delivery to the device: configuration profiles built from a profile or a registration,
//! with the CA's whole chain, signed on the token. An adapter on the authority (which keeps
//! the signing key), like `scep_service`: `mobileconfig.rs` writes Apple's profile, this
//! file signs it (CMS SignedData through the SCEP codec's encoder) and writes the declarative
//! management asset.

mod mobileconfig;

pub use mobileconfig::mobileconfig;

use crate::authority::registration::ScepPayload;
use crate::authority::{Authority, RequestError};

/// Why no profile was made.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The property list could not be written.
    #[error("the profile could not be written: {0}")]
    Plist(#[source] plist::Error),
    /// The token or the CMS encoding failed.
    #[error("the profile could not be signed: {0}")]
    Sign(#[source] crate::scep::ScepError),
    /// The signer could not be made.
    #[error(transparent)]
    Signer(#[from] RequestError),
}

/// What a SCEP enrollment profile says.
#[derive(Debug, Clone)]
pub struct ScepProfile {
    /// The top payload's identifier (the others derive from it); stable per profile or
    /// registration, so a re-push replaces.
    pub identifier: String,
    /// Shown on the device.
    pub display_name: String,
    /// Shown on the device.
    pub organization: String,
    /// The SCEP URL (the gateway's, with the profile).
    pub url: String,
    /// The CA's name.
    pub ca_name: String,
    /// The subject to ask for (`CN=…,O=…`); empty: none.
    pub subject: String,
    /// The challenge password, if the profile carries one.
    pub challenge: Option<String>,
    /// RSA key size (Apple's default, 1024, is never left to chance).
    pub key_size: u32,
    /// Apple's key-usage bits: 1 signing, 4 encryption.
    pub key_usage: u32,
    /// SANs (`email:…`, `dns:…`, `uri:…`, `upn:…`).
    pub sans: Vec<String>,
    /// PENDING: how many polls, and seconds between them.
    pub retries: Option<(u32, u32)>,
    /// The issuing CA first, the root last.
    pub chain: Vec<Vec<u8>>,
    /// The EAP-TLS Wi-Fi network the certificate is for.
    pub wifi: Option<Wifi>,
    /// The IKEv2 VPN the certificate is for.
    pub vpn: Option<crate::authority::network_settings::VpnSettings>,
}

/// A Wi-Fi network and the CA its RADIUS servers' certificates come from.
#[derive(Debug, Clone)]
pub struct Wifi {
    /// As configured.
    pub settings: crate::authority::network_settings::WifiSettings,
    /// The RADIUS servers' CA (DER); `None`: this CA's root.
    pub radius_ca: Option<Vec<u8>>,
}

/// The networks of certificate profile `name`.
fn networks(
    ra: &Authority,
    name: &str,
) -> Result<
    (
        Option<Wifi>,
        Option<crate::authority::network_settings::VpnSettings>,
    ),
    RequestError,
> {
    let profile = ra.profile(Some(name))?;
    let wifi = match &profile.policy.wifi {
        Some(w) => Some(Wifi {
            settings: w.clone(),
            radius_ca: w
                .radius_ca()
                .map_err(|e| RequestError::Unavailable(e.into()))?,
        }),
        None => None,
    };
    Ok((wifi, profile.policy.vpn.clone()))
}

/// Whether the networks of certificate profile `name` can be written into a profile now
/// (their files readable), before anything is minted for it.
pub fn networks_readable(ra: &Authority, name: &str) -> Result<(), RequestError> {
    networks(ra, name).map(|_| ())
}

/// Apple's key-usage bits for the profile's `key_usage` words.
pub fn apple_key_usage(words: &[String]) -> u32 {
    let mut bits = 0;
    for w in words {
        match w.as_str() {
            "digitalSignature" | "nonRepudiation" => bits |= 1,
            "keyEncipherment" | "dataEncipherment" | "keyAgreement" => bits |= 4,
            _ => {}
        }
    }
    if bits == 0 {
        5
    } else {
        bits
    }
}

/// A stable identifier base for this CA.
fn identifier(ra: &Authority, what: &str) -> String {
    let fp = hex::encode(openssl::sha::sha256(ra.ca_certificate()));
    format!("sigil.{}.{what}", &fp[..16])
}

fn ca_name(ra: &Authority) -> String {
    crate::pki::common_name(ra.ca_certificate()).unwrap_or_else(|| "Sigil CA".into())
}

/// The profile a registration's device installs (its one-time challenge, bound name).
pub fn for_registration(ra: &Authority, p: &ScepPayload) -> Result<ScepProfile, RequestError> {
    let (wifi, vpn) = networks(ra, &p.profile)?;
    Ok(ScepProfile {
        identifier: identifier(ra, &format!("registration.{}", p.registration)),
        display_name: format!("{} credential", ca_name(ra)),
        organization: ca_name(ra),
        url: p.url.clone(),
        ca_name: ca_name(ra),
        subject: p.subject.clone(),
        challenge: Some(p.challenge.clone()),
        key_size: p.key_size.max(2048),
        key_usage: apple_key_usage(&p.key_usage),
        sans: p.subject_alternative_names.clone(),
        retries: None,
        chain: ra.ca_chain().0.to_vec(),
        wifi,
        vpn,
    })
}

/// The profile for a certificate profile, with a challenge minted for it (or none).
pub fn for_profile(
    ra: &Authority,
    name: &str,
    url: &str,
    subject: &str,
    challenge: Option<String>,
) -> Result<ScepProfile, RequestError> {
    let profile = ra.profile(Some(name))?;
    let (wifi, vpn) = networks(ra, name)?;
    // Apple allows 1024, 2048 and 4096.
    let key_size = if profile.policy.min_rsa_bits > 2048 {
        4096
    } else {
        2048
    };
    Ok(ScepProfile {
        identifier: identifier(ra, &format!("profile.{name}")),
        display_name: format!("{} ({name})", ca_name(ra)),
        organization: ca_name(ra),
        url: url.to_string(),
        ca_name: ca_name(ra),
        subject: subject.to_string(),
        challenge,
        key_size,
        key_usage: apple_key_usage(&profile.policy.key_usage),
        sans: Vec::new(),
        retries: profile.policy.approval.then_some((10, 60)),
        chain: ra.ca_chain().0.to_vec(),
        wifi,
        vpn,
    })
}

/// The writer of the per-device profiles that pushes carry (Jamf's `per_device_profile`): a
/// registration's profile, unsigned, since the MDM signs what it installs.
pub fn for_pushes() -> crate::authority::ProfileWriter {
    std::sync::Arc::new(|ra, payload| {
        let p = for_registration(ra, payload)
            .map_err(|e| crate::reason::Reason::context("the profile's networks", e))?;
        mobileconfig(&p).map_err(|e| crate::reason::Reason::context("the configuration profile", e))
    })
}

/// The profile, signed on the token by the profile-signing certificate (CMS SignedData with
/// the profile inside, and the signer's chain). Blocking: run it off the async threads.
pub fn signed_blocking(ra: &Authority, p: &ScepProfile) -> Result<Vec<u8>, ProfileError> {
    let xml = mobileconfig(p)?;
    let signer = ra.profile_signer_blocking()?;
    let mut certs = vec![signer.certificate.clone()];
    certs.extend(p.chain.iter().cloned());
    crate::scep::signed_content(xml, &certs, &|data| {
        signer
            .sign(data)
            .map_err(|e| crate::scep::ScepError::Token(crate::reason::Reason::caused_by(e)))
    })
    .map_err(ProfileError::Sign)
}

/// Apple's declarative device management: the `com.apple.credential.scep` asset document a
/// `com.apple.asset.credential.scep` declaration points to (the same keys as the SCEP
/// payload's content).
pub fn ddm_asset(p: &ScepProfile) -> serde_json::Value {
    let content = mobileconfig::scep_content(p);
    let mut v = serde_json::to_value(plist::Value::Dictionary(content)).unwrap_or_default();
    // JSON has no data type: the fingerprint travels as base64.
    if let Some(ca) = p.chain.first() {
        use base64::Engine;
        v["CAFingerprint"] = serde_json::json!(
            base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha1(ca))
        );
    }
    v
}

/// A certificate the device must trust, as an MDM's profile form asks for it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Thumbprint {
    /// The certificate's subject.
    pub subject: String,
    /// SHA-1 of the certificate (uppercase hex), as Intune and Workspace ONE show it.
    pub sha1: String,
    /// SHA-256 of the certificate (uppercase hex).
    pub sha256: String,
}

/// Subject variables for each MDM.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SubjectVariables {
    /// Intune's form.
    pub intune: &'static str,
    /// Workspace ONE's form.
    pub workspace_one: &'static str,
}

/// SAN variables for each MDM, and the kinds this profile allows.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SanVariables {
    /// The SAN kinds the profile accepts.
    pub allowed_here: Vec<String>,
    /// Intune's forms.
    pub intune: [&'static str; 3],
    /// Workspace ONE's forms.
    pub workspace_one: [&'static str; 2],
}

/// What an Android or Windows SCEP profile in Intune or Workspace ONE needs, as values an
/// administrator types in.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ScepValues {
    /// The certificate profile.
    pub profile: String,
    /// The SCEP URL devices use.
    pub url: String,
    /// Where the challenge comes from.
    pub challenge: &'static str,
    /// The key size to set (never the MDM's default).
    pub key_size: u32,
    /// Key usages the profile grants.
    pub key_usage: Vec<String>,
    /// Extended key usages the profile grants.
    pub extended_key_usage: Vec<String>,
    /// The hash algorithm to choose.
    pub hash_algorithm: &'static str,
    /// The certificates' validity.
    pub validity_days: u32,
    /// The root the device must trust.
    pub root_certificate: Option<Thumbprint>,
    /// The intermediates, issuing CA first.
    pub intermediate_certificates: Vec<Thumbprint>,
    /// Subject variables.
    pub subject: SubjectVariables,
    /// SAN variables.
    pub subject_alternative_names: SanVariables,
}

/// What an Intune or Workspace ONE SCEP profile for Android and Windows needs, as values an
/// administrator types in: the URL, the key, the usages, the thumbprints of the root and
/// intermediates the device must trust, and subject and SAN variables that fit the profile.
pub fn scep_values(ra: &Authority, name: &str, url: &str) -> Result<ScepValues, RequestError> {
    let profile = ra.profile(Some(name))?;
    let (chain, _) = ra.ca_chain();
    let thumb = |der: &Vec<u8>| Thumbprint {
        subject: crate::pki::subject_text(der).unwrap_or_default(),
        sha1: hex::encode_upper(openssl::sha::sha1(der)),
        sha256: hex::encode_upper(openssl::sha::sha256(der)),
    };
    let root = chain.last().map(thumb);
    let intermediates: Vec<_> = chain
        .iter()
        .take(chain.len().saturating_sub(1))
        .map(thumb)
        .collect();
    Ok(ScepValues {
        profile: name.to_string(),
        url: url.to_string(),
        challenge: if profile.policy.takes_intune_challenge() {
            "intune (Intune's own challenge: choose this CA as a third-party CA)"
        } else if profile.registration_only {
            "one-time, from a registration (the MDM collects it per device)"
        } else {
            "one-time (POST /api/v1/challenges, or the NDES page) or the profile's static one"
        },
        key_size: if profile.policy.min_rsa_bits > 2048 {
            4096
        } else {
            2048
        },
        key_usage: profile.policy.key_usage.clone(),
        extended_key_usage: profile.policy.extended_key_usage.clone(),
        hash_algorithm: "SHA-2",
        validity_days: profile.policy.validity_days,
        root_certificate: root,
        intermediate_certificates: intermediates,
        subject: SubjectVariables {
            intune: "CN={{UserName}} (or CN={{AAD_Device_ID}})",
            workspace_one: "CN={EnrollmentUser} (or CN={DeviceUid})",
        },
        subject_alternative_names: SanVariables {
            allowed_here: profile.policy.allowed_sans.clone(),
            intune: [
                "Email address: {{EmailAddress}}",
                "User principal name: {{UserPrincipalName}}",
                "URI: tag:microsoft.com,2022-09-14:sid:{{OnPremisesSecurityIdentifier}}",
            ],
            workspace_one: ["Email: {EmailAddress}", "UPN: {UserPrincipalName}"],
        },
    })
}
