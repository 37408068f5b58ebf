//! The authority: the enrollment core, in no protocol's terms. It takes an
//! [`EnrollRequest`] and answers a [`Decision`] (issued, pending, refused), applying the
//! profile's policy (challenge, bindings, approval, renewal rules) and asking `pki` to issue
//! with the CA key on the token; every decision is recorded in the store before it is
//! answered. Challenges, approvals, registrations, revocation (CRL and the delegated OCSP
//! responder), CA generations, the audit head and the background upkeep live here too.
//!
//! Protocols are adapters on top (`scep_service`); this module parses no protocol message
//! and no HTTP. [`Authority::open`] reads the CA and RA certificates from the token and the
//! active CA generation from the store.

pub mod access;
pub mod audit_runs;
pub mod audit_seal;
pub mod binding;
mod ca;
pub mod network_settings;
pub mod purpose_key;
mod push;
pub use purpose_key::{ProfileSigner, PurposeKey};
pub use push::ProfileWriter;
pub mod external;
pub use ca::{CaOverview, CertSummary};
pub use crl_partitions::NoPartition;
pub mod challenge;
mod credential_settings;
mod crl_partitions;
mod decision;
mod enroll;
mod expiry;
pub mod generations;
mod held_crls;
mod ocsp;
mod ocsp_prepared;
mod officer;
mod people;
mod profile_settings;
mod queries;
mod records;
pub use audit_seal::{AuditCheck, Seal, SealSettings};
pub use records::MintError;
mod refusals;
pub mod registration;
mod registration_payload;
pub mod responder;
mod rules;
pub mod schema_watch;
mod upkeep;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use der::Decode;
use rcgen::Issuer;

use crate::hsm::Hsm;
use crate::hsm::TokenKey;
use crate::pki::CertProfile;
use crate::reason::Reason;
use crate::store::Store;

/// The records front ends show, as the store keeps them.
pub use crate::store::{
    AuditQuery, AuditRecord, CertFilter, CertStatus, CertificateRecord, CrlMark, PushAction,
    PushRecord, PushState, RegistrationRecord, RegistrationState, SpanCount, SpanOf, StoreError,
    TokenRecord, TokenScope, TransactionRecord,
};
pub use credential_settings::{fill, CredentialSettings, PLACEHOLDERS};
pub use decision::{Decision, EnrollRequest, Refusal, RefusalKind, Requester, UNREADABLE};
pub use expiry::NotifySettings;
pub use ocsp::{Caching, OcspOutcome, OcspReply};
pub use officer::{PendingEnrollment, RevokeError, Revoker};
pub use people::{GrantPolicy, PeoplePolicy, Session, SignIn, TokenError};
pub use profile_settings::ProfileSettings;

/// The RA's keys on the token (one key, or separate signing and decryption keys): a
/// protocol adapter decrypts requests and signs its answers with them; the authority signs
/// the audit head with the signing key.
#[derive(Debug, Clone)]
pub struct RaKeys {
    /// The token.
    pub hsm: Hsm,
    /// Signs (protocol answers, the audit head).
    pub sign: crate::hsm::KeyUri,
    /// Decrypts requests.
    pub decrypt: crate::hsm::KeyUri,
}

/// What the authority needs to open (the configuration builds it): its keys on the token,
/// the profiles, the MDM directories and credential profiles, and its policies.
#[derive(Debug, Clone)]
pub struct AuthoritySettings {
    /// Token label.
    pub token: String,
    /// The configured CA key (a completed rollover's generation, recorded in the store,
    /// takes its place).
    pub ca_key: crate::hsm::KeyUri,
    /// The RA signing key.
    pub ra_sign: crate::hsm::KeyUri,
    /// The RA decryption key (the signing key when the same).
    pub ra_decrypt: crate::hsm::KeyUri,
    /// The profiles, checked.
    pub profiles: Vec<Profile>,
    /// Served at `/scep` without a profile name.
    pub default_profile: String,
    /// Whether GetCACert and CertRep carry the root.
    pub include_root: bool,
    /// How long a reservation holds a transaction while it is signed (seconds).
    pub reservation_secs: i64,
    /// `[directories.NAME]`.
    pub directories: std::collections::BTreeMap<String, crate::mdm::DirectorySettings>,
    /// `[credentials.NAME]`.
    pub credentials: std::collections::BTreeMap<String, CredentialSettings>,
    /// This server's public base URL (no trailing `/`), empty when none.
    pub public_url: String,
    /// Where `chain.pem` (the CA's parents) is.
    pub data_dir: std::path::PathBuf,
    /// How long an OCSP answer is valid (seconds).
    pub ocsp_validity_secs: i64,
    /// Days a delegated OCSP responder certificate lives.
    pub responder_days: u32,
    /// The expiry webhook.
    pub notify: NotifySettings,
    /// Sessions and how power is granted.
    pub people: PeoplePolicy,
    /// External challenge authorities (`[intune.NAME]`), made by the caller.
    pub challenge_authorities: external::ChallengeAuthorities,
    /// `[audit]`: how the audit log is sealed.
    pub audit: SealSettings,
}

/// A profile: certificate rules plus RA policy.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Name (the `{profile}` of `/scep/{profile}`).
    pub name: String,
    /// Certificate rules.
    pub cert: CertProfile,
    /// Policy settings as configured.
    pub policy: ProfileSettings,
    /// A `[credentials.*]` entry names it: it issues only with a registration's challenge
    /// (after an officer's approval), never with a static challenge or one minted by an
    /// integration.
    pub registration_only: bool,
}

/// Why a request got no CertRep.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// No such profile.
    #[error("unknown SCEP profile `{0}`")]
    UnknownProfile(String),
    /// Not a pkiMessage Sigil can answer (no signer, no transactionID, not SignedData).
    #[error("{0}")]
    Malformed(#[source] crate::reason::Reason),
    /// The token or the store failed; the client should retry.
    #[error("temporarily unavailable: {0}")]
    Unavailable(#[source] crate::reason::Reason),
}

/// Why an approval or rejection did not happen.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApprovalError {
    /// No such transaction.
    #[error("no such transaction")]
    NotFound,
    /// This caller may not decide it (the two-person rule); the text says why.
    #[error("{0}")]
    Forbidden(String),
    /// It is not waiting for approval.
    #[error("the transaction is not pending")]
    NotPending,
    /// Another officer's approval of it is being issued right now.
    #[error("another officer is approving this request right now")]
    Busy,
    /// The request cannot be issued (profile rules, stored CSR).
    #[error("cannot issue: {0}")]
    Refused(String),
    /// Store or token down.
    #[error("temporarily unavailable: {0}")]
    Unavailable(#[source] crate::reason::Reason),
}

/// Errors loading the RA.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Token failure.
    #[error(transparent)]
    Hsm(#[from] crate::hsm::HsmError),
    /// Missing or bad certificate.
    #[error("{0}")]
    Certificate(#[source] Reason),
    /// The store could not be read.
    #[error("store: {0}")]
    Store(#[source] crate::store::StoreError),
    /// An outside integration (an MDM directory, the expiry webhook) cannot be set up.
    #[error("{0}")]
    Integration(#[source] Reason),
}

pub(crate) struct Inner {
    pub(crate) ca_cert: Vec<u8>,
    pub(crate) ca_not_after: time::OffsetDateTime,
    /// The CA certificate's notBefore (Unix seconds).
    pub(crate) ca_not_before: i64,
    /// The CA certificate parsed once, for checking renewal signers.
    pub(crate) ca_x509: openssl::x509::X509,
    /// DER of the CA's subject name (GetCert matches issuers against it).
    pub(crate) ca_subject: Vec<u8>,
    /// The CA certificate followed by its parents (from chain.pem).
    pub(crate) ca_chain: Vec<Vec<u8>>,
    pub(crate) issuer: Issuer<'static, TokenKey>,
    pub(crate) ra_sign_cert: Vec<u8>,
    pub(crate) ra_decrypt_cert: Vec<u8>,
    pub(crate) key: RaKeys,
    pub(crate) profiles: HashMap<String, Profile>,
    pub(crate) default_profile: String,
    pub(crate) include_root: bool,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) directories: HashMap<String, Arc<dyn crate::mdm::MdmDirectory>>,
    pub(crate) credentials: HashMap<String, CredentialSettings>,
    pub(crate) public_url: String,
    pub(crate) ca_key: TokenKey,
    pub(crate) ocsp: ocsp::OcspResponder,
    pub(crate) ca_name: String,
    pub(crate) webhook: Option<expiry::Webhook>,
    /// The active CA's subject as the store writes certificates' issuer.
    pub(crate) ca_issuer_text: String,
    /// Earlier CA generations: their CRLs, OCSP answers and renewals.
    pub(crate) retired: Vec<ca::CaGeneration>,
    /// Refusals audited lately, so repeats are counted rather than each recorded.
    pub(crate) refusals: refusals::RecentRefusals,
    /// How long a reservation holds a transaction (`scep.reservation_secs`).
    pub(crate) reservation_secs: i64,
    /// The active CA's delegated OCSP responder.
    pub(crate) responder: responder::Responder,
    /// Days a responder certificate lives (`ocsp.responder_days`).
    pub(crate) responder_days: u32,
    /// Sessions and how power is granted.
    pub(crate) people: PeoplePolicy,
    /// External challenge authorities by name.
    pub(crate) external: external::ChallengeAuthorities,
    /// Where audit seals go, and how often.
    pub(crate) seal: audit_seal::SealOutlets,
    /// Purpose keys (profile signing, audit sealing) once read from the token, by label.
    pub(crate) purpose_keys: std::sync::Mutex<HashMap<String, Arc<PurposeKey>>>,
    /// The last sequence number this node sealed.
    pub(crate) last_seal: std::sync::atomic::AtomicI64,
    /// How each credential that pushes tells its MDM.
    pub(crate) channels: push::Channels,
    /// One push round at a time on this node.
    pub(crate) pushing: tokio::sync::Mutex<()>,
    /// One CRL partition made at a time on this node.
    pub(crate) building_partition: tokio::sync::Mutex<()>,
    /// Full CRLs, held by their published number.
    pub(crate) held_crls: held_crls::HeldCrls,
    /// The console's audit verification runs.
    pub(crate) audit_runs: audit_runs::AuditRuns,
    /// Writes a registration's configuration profile for pushes that hand the MDM one per
    /// device ([`Authority::write_profiles_with`]).
    pub(crate) profile_writer: std::sync::OnceLock<push::ProfileWriter>,
}

/// The registration authority. Cheap to clone.
#[derive(Clone)]
pub struct Authority {
    pub(crate) inner: Arc<Inner>,
}

/// How long a CRL is valid.
pub(crate) const CRL_HOURS: i64 = 24;

/// Is this CRL valid for at least `margin_secs` more?
pub(crate) fn crl_fresh(der: &[u8], margin_secs: i64) -> bool {
    held_crls::next_update(der).is_some_and(|next| next - margin_secs > crate::store::now())
}

fn read_chain(data_dir: &Path, ca: &[u8]) -> Result<Vec<Vec<u8>>, LoadError> {
    let path = data_dir.join("chain.pem");
    let mut chain = vec![ca.to_vec()];
    // A self-signed CA (a root, or a rolled-over generation) has no parents.
    if let Ok(x) = openssl::x509::X509::from_der(ca) {
        if x.issuer_name_hash() == x.subject_name_hash() {
            return Ok(chain);
        }
    }
    if let Ok(pem) = std::fs::read(&path) {
        let certs = crate::pki::read_certificates(&pem)
            .map_err(|e| LoadError::Certificate(Reason::context(path.display(), e)))?;
        for c in certs {
            if c != ca {
                chain.push(c);
            }
        }
    }
    Ok(chain)
}

impl Authority {
    /// Load the RA: which CA generation is active (from the store), the CA and RA
    /// certificates (from the token, or the store for a rolled-over generation's RA), the
    /// retired CAs, and the profiles from the configuration. Token reads block.
    pub async fn open(
        hsm: &Hsm,
        config: &AuthoritySettings,
        store: Arc<dyn Store>,
    ) -> Result<Authority, LoadError> {
        let st = LoadError::Store;
        let gens = generations::Generations::read(store.as_ref())
            .await
            .map_err(st)?;
        // Each generation's current OCSP responder certificate, as the store has it.
        let mut responders = HashMap::new();
        let active_label = match &gens.active {
            Some(l) => l.clone(),
            None => config.ca_key.label()?.to_string(),
        };
        for label in std::iter::once(&active_label).chain(gens.retired.iter()) {
            if let Some(der) = store
                .state(&responder::state_key(label))
                .await
                .map_err(st)?
            {
                responders.insert(label.clone(), der);
            }
        }
        let mut ra_certs = (None, None);
        if let Some(active) = &gens.active {
            ra_certs = (
                store
                    .state(&generations::cert_key("ra_sign", active))
                    .await
                    .map_err(st)?,
                store
                    .state(&generations::cert_key("ra_decrypt", active))
                    .await
                    .map_err(st)?,
            );
        }
        Self::load_with(hsm, config, store, &gens, ra_certs, responders)
    }

    /// As [`Authority::open`] for the configured CA only (no rollover record): for tools and tests
    /// that have no store state to read.
    pub fn load(
        hsm: &Hsm,
        config: &AuthoritySettings,
        store: Arc<dyn Store>,
    ) -> Result<Authority, LoadError> {
        Self::load_with(
            hsm,
            config,
            store,
            &generations::Generations::default(),
            (None, None),
            HashMap::new(),
        )
    }

    fn load_with(
        hsm: &Hsm,
        config: &AuthoritySettings,
        store: Arc<dyn Store>,
        gens: &generations::Generations,
        ra_certs: (Option<Vec<u8>>, Option<Vec<u8>>),
        mut responders: HashMap<String, Vec<u8>>,
    ) -> Result<Authority, LoadError> {
        let cert_of = |uri: &crate::hsm::KeyUri, role: &str| -> Result<Vec<u8>, LoadError> {
            let label = uri.label()?;
            hsm.certificate_blocking(label)?.ok_or_else(|| {
                LoadError::Certificate(Reason::new(format!(
                    "no {role} certificate `{label}` on token `{}`: run `sigil init` first",
                    hsm.token()
                )))
            })
        };
        let ca_uri = match &gens.active {
            Some(label) => crate::hsm::KeyUri::labelled(&config.token, label),
            None => config.ca_key.clone(),
        };
        let ca_cert = cert_of(&ca_uri, "CA")?;
        let ca_key = TokenKey::open(hsm, &ca_uri)?;
        let issuer = Issuer::from_ca_cert_der(&ca_cert.clone().into(), ca_key.clone())
            .map_err(|e| LoadError::Certificate(Reason::context("CA certificate", e)))?;
        let sign = config.ra_sign.clone();
        let decrypt = config.ra_decrypt.clone();
        // A rolled-over generation's RA certificates (same keys, issued by the new CA) are in
        // the store.
        let ra_sign_cert = match ra_certs.0 {
            Some(c) => c,
            None => cert_of(&sign, "RA")?,
        };
        let ra_decrypt_cert = if decrypt == sign {
            ra_sign_cert.clone()
        } else {
            match ra_certs.1 {
                Some(c) => c,
                None => cert_of(&decrypt, "RA decryption")?,
            }
        };
        let ca_name = ca_uri.label()?.to_string();
        let days = config.responder_days;
        let (responder, _) = responder::ensure(
            hsm,
            &ca_name,
            &ca_key,
            &ca_cert,
            &issuer,
            responders.remove(&ca_name),
            days,
        )
        .map_err(|e| LoadError::Certificate(Reason::caused_by(e)))?;
        let mut retired = Vec::new();
        for label in &gens.retired {
            let stored = responders.remove(label);
            retired.push(ca::CaGeneration::load(hsm, label, stored, days)?.0);
        }
        let public = config.public_url.trim_end_matches('/');
        let mut profiles = HashMap::new();
        for p in &config.profiles {
            let mut p = p.clone();
            // With a public URL, certificates point at this server's CRL and OCSP unless the
            // profile names others.
            if !public.is_empty() {
                if p.cert.crl_url.is_empty() {
                    p.cert.crl_url = crl_partitions::url_template(public, &ca_name);
                }
                if p.cert.ocsp_url.is_empty() {
                    p.cert.ocsp_url = format!("{public}/ocsp");
                }
            }
            profiles.insert(p.name.clone(), p);
        }
        let (ca_not_before, ca_not_after, ca_subject, ca_key_bits, ca_issuer_text) =
            x509_parser::parse_x509_certificate(&ca_cert)
                .map(|(_, c)| {
                    (
                        c.validity().not_before.timestamp(),
                        c.validity().not_after.to_datetime(),
                        c.subject().as_raw().to_vec(),
                        c.public_key().subject_public_key.data.to_vec(),
                        c.subject().to_string(),
                    )
                })
                .map_err(|e| LoadError::Certificate(Reason::context("CA certificate", e)))?;
        let ca_x509 = openssl::x509::X509::from_der(&ca_cert)
            .map_err(|e| LoadError::Certificate(Reason::context("CA certificate", e)))?;
        let ca_chain = read_chain(&config.data_dir, &ca_cert)?;
        for c in &ca_chain {
            // Every chain certificate goes into CertRep and GetCACert: check now, not per request.
            x509_cert::Certificate::from_der(c).map_err(|e| {
                LoadError::Certificate(Reason::context(
                    "a certificate of the CA chain cannot be sent",
                    e,
                ))
            })?;
        }
        for p in profiles.values() {
            if p.policy.takes_intune_challenge()
                && !config.challenge_authorities.contains_key(&p.policy.intune)
            {
                return Err(LoadError::Integration(Reason::new(format!(
                    "profile `{}`: no [intune.{}] connection",
                    p.name, p.policy.intune
                ))));
            }
        }
        let mut directories = HashMap::new();
        for (name, d) in &config.directories {
            directories.insert(
                name.clone(),
                crate::mdm::connect(name, d).map_err(LoadError::Integration)?,
            );
        }
        let channels = push::channels(&config.credentials, &config.directories)
            .map_err(LoadError::Integration)?;
        Ok(Authority {
            inner: Arc::new(Inner {
                directories,
                credentials: config
                    .credentials
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                public_url: config.public_url.clone(),
                ocsp: ocsp::OcspResponder::new(
                    crate::pki::ocsp::IssuerHashes::new(&ca_subject, &ca_key_bits),
                    config.ocsp_validity_secs,
                ),
                ca_key,
                ca_name,
                webhook: expiry::Webhook::new(&config.notify).map_err(LoadError::Integration)?,
                ca_issuer_text,
                retired,
                ca_not_before,
                ca_not_after,
                ca_x509,
                ca_subject,
                ca_chain,
                ca_cert,
                issuer,
                ra_sign_cert,
                ra_decrypt_cert,
                key: RaKeys {
                    hsm: hsm.clone(),
                    sign,
                    decrypt,
                },
                profiles,
                default_profile: config.default_profile.clone(),
                include_root: config.include_root,
                store,
                refusals: Default::default(),
                reservation_secs: config.reservation_secs,
                responder,
                responder_days: days,
                people: config.people.clone(),
                external: config.challenge_authorities.clone(),
                seal: audit_seal::SealOutlets::new(&config.audit, &config.data_dir),
                purpose_keys: Default::default(),
                last_seal: Default::default(),
                channels,
                pushing: Default::default(),
                building_partition: Default::default(),
                held_crls: Default::default(),
                audit_runs: Default::default(),
                profile_writer: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The profile named in the URL, or the default one.
    pub fn profile(&self, name: Option<&str>) -> Result<&Profile, RequestError> {
        let name = name.unwrap_or(&self.inner.default_profile);
        self.inner
            .profiles
            .get(name)
            .ok_or_else(|| RequestError::UnknownProfile(name.to_owned()))
    }

    /// The profiles (with whether each issues only through registrations) and the
    /// directories, for checking an integration token's scope.
    pub fn scope_names(&self) -> (Vec<(String, bool)>, Vec<String>) {
        let mut profiles: Vec<(String, bool)> = self
            .inner
            .profiles
            .values()
            .map(|p| (p.name.clone(), p.registration_only))
            .collect();
        profiles.sort();
        let mut dirs: Vec<String> = self.inner.directories.keys().cloned().collect();
        dirs.sort();
        (profiles, dirs)
    }

    /// Profiles whose certificates carry neither a CRL nor an OCSP URL (no
    /// `server.public_url` and none of their own): relying parties cannot learn of a
    /// revocation.
    pub fn profiles_without_revocation_pointers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .profiles
            .values()
            .filter(|p| p.cert.crl_url.is_empty() && p.cert.ocsp_url.is_empty())
            .map(|p| p.name.clone())
            .collect();
        v.sort();
        v
    }

    /// The profiles, by name.
    pub fn profile_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.profiles.keys().cloned().collect();
        v.sort();
        v
    }

    /// The active CA key (for readiness checks): its URI and signature algorithm.
    pub fn ca_key(&self) -> (crate::hsm::KeyUri, crate::hsm::SignAlg) {
        (
            self.inner.ca_key.uri().clone(),
            self.inner.ca_key.sign_alg(),
        )
    }

    /// The CA's name in URLs (`/crl/{name}.crl`): its key label on the token.
    pub fn ca_name(&self) -> &str {
        &self.inner.ca_name
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The CA certificate (DER).
    pub fn ca_certificate(&self) -> &[u8] {
        &self.inner.ca_cert
    }

    /// The RA: its certificates (signing, decryption; the same when one key does both) and
    /// its keys on the token.
    pub fn ra(&self) -> (&[u8], &[u8], &RaKeys) {
        let i = &self.inner;
        (&i.ra_sign_cert, &i.ra_decrypt_cert, &i.key)
    }

    /// The CA certificate followed by its parents, and whether the root is to be sent to
    /// clients (`scep.include_root`).
    pub fn ca_chain(&self) -> (&[Vec<u8>], bool) {
        (&self.inner.ca_chain, self.inner.include_root)
    }
}
