//! The PKCS#11 layer: every private-key operation of Sigil happens here, inside the token.
//!
//! [`Hsm::open`] loads a PKCS#11 module (once per process), finds the token by label (never by
//! slot number: SoftHSM renumbers slots), reads the PIN from a file or the environment and logs
//! in. Keys and certificates are named by RFC 7512 URIs ([`KeyUri`]). Operations run on a pool
//! of logged-in sessions ([`pool`]) from blocking threads; the `async` methods hand the work to
//! `tokio::task::spawn_blocking`, so the runtime never waits on the token.
//!
//! Keys are generated with `CKA_TOKEN`, `CKA_SENSITIVE` and not `CKA_EXTRACTABLE`: no private
//! key bytes ever reach this process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sigil::hsm::HsmError> {
//! use sigil::hsm::{Hsm, HsmConfig, PinSource, SignAlg};
//! let hsm = Hsm::open(&HsmConfig {
//!     module: "/usr/lib/softhsm/libsofthsm2.so".into(),
//!     token: "sigil".into(),
//!     pin: PinSource::Env("SIGIL_PIN".into()),
//!     pool_size: 4,
//! })?;
//! let key = "pkcs11:token=sigil;object=sigil-ca".parse()?;
//! let signature = hsm.sign(&key, SignAlg::RsaPkcs1Sha256, b"hello".to_vec()).await?;
//! # Ok(()) }
//! ```

mod budget;
mod error;
mod keys;
mod pin;
mod pool;
mod signing_key;
mod uri;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;

pub use budget::{Permit, WorkClass};
pub use error::HsmError;
pub use keys::{ecdsa_raw_to_der, DecryptAlg, KeySpec, KeyUsage, PublicKey, SignAlg};
pub use pin::PinSource;
pub use signing_key::TokenKey;
pub use uri::{KeyUri, ObjectType};

use error::is_rv;
use pool::{OpError, SessionPool};

/// How to reach the token.
#[derive(Debug, Clone)]
pub struct HsmConfig {
    /// Path of the PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// Token label.
    pub token: String,
    /// Where the user PIN comes from.
    pub pin: PinSource,
    /// Number of working sessions (operations in parallel).
    pub pool_size: usize,
}

/// Protection attributes of a private key, read back from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyProtection {
    /// CKA_SENSITIVE.
    pub sensitive: bool,
    /// CKA_EXTRACTABLE.
    pub extractable: bool,
    /// CKA_NEVER_EXTRACTABLE.
    pub never_extractable: bool,
    /// CKA_ALWAYS_SENSITIVE.
    pub always_sensitive: bool,
}

/// A logged-in token. Cheap to clone; all clones share the session pool.
#[derive(Clone)]
pub struct Hsm {
    inner: Arc<Inner>,
}

struct Inner {
    token: String,
    slot: Slot,
    pool: SessionPool,
    handles: Mutex<HashMap<(ObjectType, String), ObjectHandle>>,
    keygen: Mutex<()>,
    budget: budget::Budget,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("token", &self.inner.token)
            .finish_non_exhaustive()
    }
}

/// Load a module once per process and initialise it; later calls get the same context.
fn load_module(path: &Path) -> Result<Pkcs11, HsmError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    if path.as_os_str().is_empty() || !path.is_file() {
        return Err(HsmError::ModuleMissing(path.display().to_string()));
    }
    let mut loaded = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = loaded.get(path) {
        return Ok(ctx.clone());
    }
    let load_err = |reason: crate::reason::Reason| HsmError::ModuleLoad {
        module: path.display().to_string(),
        reason,
    };
    let ctx = Pkcs11::new(path).map_err(|e| load_err(crate::reason::Reason::caused_by(e)))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        Err(e) if is_rv(&e, RvError::CryptokiAlreadyInitialized) => {}
        Err(e) => return Err(load_err(crate::reason::Reason::context("C_Initialize", e))),
    }
    loaded.insert(path.to_owned(), ctx.clone());
    Ok(ctx)
}

fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| HsmError::from_ck("list slots", e))?;
    let mut present = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        let l = info.label().trim_end().to_owned();
        if l == label {
            return Ok(slot);
        }
        if !l.is_empty() {
            present.push(format!("`{l}`"));
        }
    }
    let mut present = if present.is_empty() {
        "none".to_string()
    } else {
        present.join(", ")
    };
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        present.push_str("; for SoftHSM, SOFTHSM2_CONF is not set (source var/quickstart.env)");
    }
    Err(HsmError::TokenNotFound {
        label: label.into(),
        present,
    })
}

fn class_of(t: ObjectType) -> ObjectClass {
    match t {
        ObjectType::Private => ObjectClass::PRIVATE_KEY,
        ObjectType::Public => ObjectClass::PUBLIC_KEY,
        ObjectType::Cert => ObjectClass::CERTIFICATE,
    }
}

fn what_of(t: ObjectType) -> &'static str {
    match t {
        ObjectType::Private => "private key",
        ObjectType::Public => "public key",
        ObjectType::Cert => "certificate",
    }
}

fn logged_in(s: &Session) -> bool {
    use cryptoki::session::SessionState;
    s.get_session_info()
        .map(|i| {
            matches!(
                i.session_state(),
                SessionState::RoUser | SessionState::RwUser
            )
        })
        .unwrap_or(false)
}

/// The `sigil` data objects labelled `label`.
fn find_data(s: &Session, label: &str) -> Result<Vec<ObjectHandle>, OpError> {
    s.find_objects(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Application(b"sigil".to_vec()),
    ])
    .map_err(ck("find data"))
}

fn ck(what: &'static str) -> impl FnOnce(cryptoki::error::Error) -> OpError {
    move |e| OpError::Ck(what, e)
}

impl Hsm {
    /// Load the module, find the token by label, read the PIN and log in.
    pub fn open(config: &HsmConfig) -> Result<Hsm, HsmError> {
        let ctx = load_module(&config.module)?;
        let slot = find_slot(&ctx, &config.token)?;
        let pin = config.pin.read()?;
        let pool = SessionPool::new(ctx, slot, config.token.clone(), pin, config.pool_size)?;
        let budget = budget::Budget::new(config.pool_size);
        tracing::info!(token = %config.token, module = %config.module.display(), pool = config.pool_size, reserved_for_issuance = budget.reserved(), "logged in to token");
        Ok(Hsm {
            inner: Arc::new(Inner {
                token: config.token.clone(),
                slot,
                pool,
                handles: Mutex::new(HashMap::new()),
                keygen: Mutex::new(()),
                budget,
            }),
        })
    }

    /// Wait for room for one token operation of `class` (see [`WorkClass`]); hold the permit
    /// while the operation runs. Issuance is admitted at once.
    pub async fn admit(&self, class: WorkClass) -> Result<Permit, HsmError> {
        self.inner.budget.admit(class).await
    }

    /// The token label.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// The PKCS#11 slot ID the token sits in right now (for diagnostics only).
    pub fn slot_id(&self) -> u64 {
        self.inner.slot.id()
    }

    /// A URI for an object of this token by label.
    pub fn uri(&self, label: &str) -> KeyUri {
        KeyUri::labelled(&self.inner.token, label)
    }

    fn check_token(&self, uri: &KeyUri) -> Result<(), HsmError> {
        match &uri.token {
            Some(t) if *t != self.inner.token => Err(HsmError::BadUri {
                uri: uri.to_string(),
                reason: format!(
                    "it names token `{t}`, but Sigil is logged in to `{}`",
                    self.inner.token
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Find one object; cached handles are used when present.
    fn find(&self, s: &Session, uri: &KeyUri, t: ObjectType) -> Result<ObjectHandle, OpError> {
        let key = (t, uri.to_string());
        if let Some(h) = self.lock_handles().get(&key) {
            return Ok(*h);
        }
        let found = self.find_all(s, uri, t)?;
        if found.is_empty() && t == ObjectType::Private && !logged_in(s) {
            // Private objects are invisible after the token logged us out: recover, not
            // "key not found".
            return Err(OpError::Ck(
                "find objects",
                cryptoki::error::Error::Pkcs11(
                    RvError::UserNotLoggedIn,
                    cryptoki::context::Function::FindObjects,
                ),
            ));
        }
        match found.as_slice() {
            [] => Err(HsmError::KeyNotFound {
                what: what_of(t),
                label: uri.object.clone().unwrap_or_else(|| {
                    format!("id={}", hex::encode(uri.id.as_deref().unwrap_or(&[])))
                }),
                token: self.inner.token.clone(),
            }
            .into()),
            [h] => {
                self.lock_handles().insert(key, *h);
                Ok(*h)
            }
            _ => Err(HsmError::BadUri {
                uri: uri.to_string(),
                reason: format!("{} objects match; add ;id=… to pick one", found.len()),
            }
            .into()),
        }
    }

    fn find_all(
        &self,
        s: &Session,
        uri: &KeyUri,
        t: ObjectType,
    ) -> Result<Vec<ObjectHandle>, OpError> {
        let mut template = vec![Attribute::Class(class_of(t)), Attribute::Token(true)];
        if let Some(label) = &uri.object {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &uri.id {
            template.push(Attribute::Id(id.clone()));
        }
        s.find_objects(&template).map_err(ck("find objects"))
    }

    fn lock_handles(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(ObjectType, String), ObjectHandle>> {
        self.inner.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget_handles(&self) {
        self.lock_handles().clear();
    }

    fn run<T>(
        &self,
        op: &'static str,
        mut f: impl FnMut(&Session) -> Result<T, OpError>,
    ) -> Result<T, HsmError> {
        self.inner.pool.run(op, |s| f(s), || self.forget_handles())
    }

    /// Sign `data` with the private key `key` (blocking; call from a blocking thread).
    ///
    /// ECDSA results are DER `Ecdsa-Sig-Value`, ready for X.509 and CMS.
    pub fn sign_blocking(
        &self,
        key: &KeyUri,
        alg: SignAlg,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.check_token(key)?;
        let input = alg.prepare(data);
        let raw = self.run("sign", |s| {
            let h = self.find(s, key, ObjectType::Private)?;
            s.sign(&alg.mechanism(), h, &input).map_err(ck("sign"))
        })?;
        if alg.is_rsa() {
            Ok(raw)
        } else {
            ecdsa_raw_to_der(&raw)
        }
    }

    /// Decrypt `data` with the private key `key` (blocking).
    pub fn decrypt_blocking(
        &self,
        key: &KeyUri,
        alg: DecryptAlg,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.check_token(key)?;
        self.run("decrypt", |s| {
            let h = self.find(s, key, ObjectType::Private)?;
            s.decrypt(&alg.mechanism(), h, data).map_err(ck("decrypt"))
        })
    }

    /// Sign on a blocking thread.
    pub async fn sign(
        &self,
        key: &KeyUri,
        alg: SignAlg,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, HsmError> {
        let (hsm, key) = (self.clone(), key.clone());
        tokio::task::spawn_blocking(move || hsm.sign_blocking(&key, alg, &data))
            .await
            .map_err(|e| HsmError::Worker(crate::reason::Reason::caused_by(e)))?
    }

    /// Decrypt on a blocking thread.
    pub async fn decrypt(
        &self,
        key: &KeyUri,
        alg: DecryptAlg,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, HsmError> {
        let (hsm, key) = (self.clone(), key.clone());
        tokio::task::spawn_blocking(move || hsm.decrypt_blocking(&key, alg, &data))
            .await
            .map_err(|e| HsmError::Worker(crate::reason::Reason::caused_by(e)))?
    }

    /// True when a private key with this URI exists.
    pub fn key_exists(&self, key: &KeyUri) -> Result<bool, HsmError> {
        self.check_token(key)?;
        self.run("find", |s| {
            Ok(!self.find_all(s, key, ObjectType::Private)?.is_empty())
        })
    }

    /// Generate a key pair on the token under `label` (blocking).
    ///
    /// The private key is `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE` and not
    /// `CKA_EXTRACTABLE`. Fails with [`HsmError::AlreadyExists`] when the label is taken.
    pub fn generate_blocking(
        &self,
        spec: KeySpec,
        label: &str,
        usage: KeyUsage,
    ) -> Result<PublicKey, HsmError> {
        // SoftHSM fails concurrent key generation with CKR_GENERAL_ERROR: one at a time.
        let _one = self.inner.keygen.lock().unwrap_or_else(|p| p.into_inner());
        let uri = self.uri(label);
        if self.key_exists(&uri)? {
            return Err(HsmError::AlreadyExists {
                what: "private key",
                label: label.into(),
                token: self.inner.token.clone(),
            });
        }
        let mut id = [0u8; 8];
        openssl::rand::rand_bytes(&mut id).map_err(|e| HsmError::Token {
            function: "random".into(),
            rv: e.to_string(),
        })?;
        let (mech, public, private) = keys::generation_templates(spec, label, &id, usage);
        // SoftHSM sometimes fails key generation under load with CKR_GENERAL_ERROR: try again a
        // couple of times before reporting it.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.run("generate", |s| {
                s.generate_key_pair(&mech, &public, &private)
                    .map_err(ck("generate key pair"))
                    .map(|_| ())
            });
            match result {
                Err(HsmError::Token { ref rv, .. }) if rv == "GeneralError" && attempt < 4 => {
                    tracing::warn!(
                        label,
                        attempt,
                        "key generation failed with CKR_GENERAL_ERROR; retrying"
                    );
                    // A half-made pair must not stay behind under this label.
                    let _ = self.destroy_blocking(label);
                    std::thread::sleep(std::time::Duration::from_millis(100 * attempt));
                }
                other => break other?,
            }
        }
        tracing::info!(label, %spec, "generated key pair on token");
        self.public_key_blocking(&uri)
    }

    /// Read the public key that goes with `key` (blocking).
    pub fn public_key_blocking(&self, key: &KeyUri) -> Result<PublicKey, HsmError> {
        self.check_token(key)?;
        let label = key.object.clone().unwrap_or_default();
        let attrs = self.run("read public key", |s| {
            let h = self.find(s, key, ObjectType::Public)?;
            s.get_attributes(
                h,
                &[
                    AttributeType::KeyType,
                    AttributeType::Modulus,
                    AttributeType::PublicExponent,
                    AttributeType::EcParams,
                    AttributeType::EcPoint,
                ],
            )
            .map_err(ck("read public key"))
        })?;
        PublicKey::from_attributes(&attrs, &label)
    }

    /// Read the protection attributes of a private key (blocking).
    pub fn key_protection_blocking(&self, key: &KeyUri) -> Result<KeyProtection, HsmError> {
        self.check_token(key)?;
        let attrs = self.run("read attributes", |s| {
            let h = self.find(s, key, ObjectType::Private)?;
            s.get_attributes(
                h,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                ],
            )
            .map_err(ck("read attributes"))
        })?;
        let mut p = KeyProtection {
            sensitive: false,
            extractable: true,
            never_extractable: false,
            always_sensitive: false,
        };
        for a in attrs {
            match a {
                Attribute::Sensitive(v) => p.sensitive = v,
                Attribute::Extractable(v) => p.extractable = v,
                Attribute::NeverExtractable(v) => p.never_extractable = v,
                Attribute::AlwaysSensitive(v) => p.always_sensitive = v,
                _ => {}
            }
        }
        Ok(p)
    }

    /// Store a DER certificate on the token as a `CKO_CERTIFICATE` object (blocking).
    ///
    /// It gets the label and `CKA_ID` of the private key of the same label when there is one,
    /// so PKCS#11 tools pair them. An existing certificate with this label is replaced.
    pub fn store_certificate_blocking(&self, label: &str, der: &[u8]) -> Result<(), HsmError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| HsmError::BadInput {
                op: "store certificate",
                rv: format!("not a DER certificate: {e}"),
            })?;
        let subject = cert.tbs_certificate.subject.as_raw().to_vec();
        let issuer = cert.tbs_certificate.issuer.as_raw().to_vec();
        let serial = cert.tbs_certificate.raw_serial().to_vec();
        let uri = self.uri(label);
        self.run("store certificate", |s| {
            for h in self.find_all(s, &uri, ObjectType::Cert)? {
                s.destroy_object(h).map_err(ck("destroy certificate"))?;
            }
            let mut template = vec![
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Subject(subject.clone()),
                Attribute::Issuer(issuer.clone()),
                Attribute::SerialNumber(serial.clone()),
                Attribute::Value(der.to_vec()),
            ];
            if let Some(key) = self.find_all(s, &uri, ObjectType::Private)?.first() {
                if let Ok(attrs) = s.get_attributes(*key, &[AttributeType::Id]) {
                    for a in attrs {
                        if let Attribute::Id(id) = a {
                            template.push(Attribute::Id(id));
                        }
                    }
                }
            }
            s.create_object(&template)
                .map_err(ck("create certificate"))?;
            Ok(())
        })?;
        self.forget_handles();
        Ok(())
    }

    /// The DER certificate stored under `label`, if any (blocking).
    pub fn certificate_blocking(&self, label: &str) -> Result<Option<Vec<u8>>, HsmError> {
        let uri = self.uri(label);
        self.run("read certificate", |s| {
            let Some(h) = self.find_all(s, &uri, ObjectType::Cert)?.first().copied() else {
                return Ok(None);
            };
            let attrs = s
                .get_attributes(h, &[AttributeType::Value])
                .map_err(ck("read certificate"))?;
            Ok(attrs.into_iter().find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            }))
        })
    }

    /// Store a small value on the token as a private `CKO_DATA` object of application
    /// `sigil` labelled `label`, replacing one of that label (blocking). Not a secret store:
    /// for facts the token must carry with it, such as the store it belongs to.
    pub fn store_data_blocking(&self, label: &str, value: &[u8]) -> Result<(), HsmError> {
        self.run("store data", |s| {
            for h in find_data(s, label)? {
                s.destroy_object(h).map_err(ck("destroy data"))?;
            }
            s.create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Application(b"sigil".to_vec()),
                Attribute::Value(value.to_vec()),
            ])
            .map_err(ck("create data"))?;
            Ok(())
        })
    }

    /// The value of the `sigil` data object labelled `label`, if any (blocking).
    pub fn data_blocking(&self, label: &str) -> Result<Option<Vec<u8>>, HsmError> {
        self.run("read data", |s| {
            let Some(h) = find_data(s, label)?.first().copied() else {
                return Ok(None);
            };
            let attrs = s
                .get_attributes(h, &[AttributeType::Value])
                .map_err(ck("read data"))?;
            Ok(attrs.into_iter().find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            }))
        })
    }

    /// Destroy every object (keys and certificates) labelled `label`; returns how many (blocking).
    pub fn destroy_blocking(&self, label: &str) -> Result<usize, HsmError> {
        let uri = self.uri(label);
        let n = self.run("destroy", |s| {
            let mut n = 0;
            for t in [ObjectType::Private, ObjectType::Public, ObjectType::Cert] {
                for h in self.find_all(s, &uri, t)? {
                    s.destroy_object(h).map_err(ck("destroy object"))?;
                    n += 1;
                }
            }
            Ok(n)
        })?;
        self.forget_handles();
        Ok(n)
    }

    /// Close every session (at shutdown). Later operations reopen sessions as needed.
    pub fn close(&self) {
        self.inner.pool.close();
    }
}
