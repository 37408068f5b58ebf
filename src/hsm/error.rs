//! Errors of the `hsm` module, and the mapping from the token's return codes to messages an
//! operator can act on.

use cryptoki::error::{Error as CkError, RvError};

/// What went wrong talking to the PKCS#11 module or token.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The module path is empty or the file does not exist.
    #[error("PKCS#11 module not found at `{0}`: set hsm.module (SIGIL_HSM_MODULE) to the vendor library, e.g. /usr/lib/softhsm/libsofthsm2.so")]
    ModuleMissing(String),
    /// The module exists but could not be loaded or initialised.
    #[error("could not load PKCS#11 module `{module}`: {reason}")]
    ModuleLoad {
        /// Module path.
        module: String,
        /// Why: the loader's or `C_Initialize`'s error underneath.
        #[source]
        reason: crate::reason::Reason,
    },
    /// No slot holds a token with the configured label.
    #[error("no token labelled `{label}` (tokens present: {present}); set hsm.token (SIGIL_HSM_TOKEN) to one of them or create it (hsm-config/softhsm-token.sh)")]
    TokenNotFound {
        /// The label looked for.
        label: String,
        /// Labels that were seen.
        present: String,
    },
    /// The PIN source is missing or unreadable.
    #[error("cannot read the token PIN: {0}")]
    Pin(#[source] crate::reason::Reason),
    /// The token refused the PIN.
    #[error("the token `{0}` refused the PIN (CKR_PIN_INCORRECT): check the file named by hsm.pin_file / the variable named by hsm.pin_env")]
    WrongPin(String),
    /// The PIN is locked after too many failures.
    #[error("the user PIN of token `{0}` is locked (CKR_PIN_LOCKED): the security officer must reset it")]
    PinLocked(String),
    /// A URI could not be parsed or does not fit the configured token.
    #[error("bad PKCS#11 URI `{uri}`: {reason}")]
    BadUri {
        /// The URI as given.
        uri: String,
        /// Why it was refused.
        reason: String,
    },
    /// No object matches the URI.
    #[error("no {what} `{label}` on token `{token}`: run `sigil init` or fix the label in the configuration")]
    KeyNotFound {
        /// "private key", "public key", "certificate".
        what: &'static str,
        /// The label looked for.
        label: String,
        /// The token searched.
        token: String,
    },
    /// An object already exists where the ceremony would create one.
    #[error("{what} `{label}` already exists on token `{token}`: pass --force to destroy and replace it")]
    AlreadyExists {
        /// Kind of object.
        what: &'static str,
        /// Its label.
        label: String,
        /// The token.
        token: String,
    },
    /// The token does not implement the mechanism.
    #[error("the token does not support {0} (CKR_MECHANISM_INVALID); choose another algorithm or HSM partition")]
    MechanismUnsupported(String),
    /// Input the token rejected as malformed (e.g. a ciphertext that does not decrypt).
    #[error("the token rejected the input for {op}: {rv}")]
    BadInput {
        /// The operation.
        op: &'static str,
        /// The return code.
        rv: String,
    },
    /// The key is not of the kind the operation needs (e.g. ECDSA with an RSA key).
    #[error("key `{label}` is {actual}, but {op} needs {expected}")]
    WrongKeyType {
        /// Key label.
        label: String,
        /// What the key is.
        actual: String,
        /// What was needed.
        expected: String,
        /// Operation name.
        op: &'static str,
    },
    /// Any other return code from the token.
    #[error("PKCS#11 {function} failed: {rv}")]
    Token {
        /// The PKCS#11 function.
        function: String,
        /// The return code, named.
        rv: String,
    },
    /// A session-level failure that persisted after reopening and logging in again.
    #[error("the token dropped the session and the retry failed: {0}")]
    SessionLost(#[source] Box<HsmError>),
    /// No session became free in time (the token is slow or hung).
    #[error(
        "no PKCS#11 session became free within {0} s: the token is overloaded or not answering"
    )]
    Busy(u64),
    /// Too many operations of one class are waiting for their share of the token.
    #[error("the token is busy with {0} work; retry shortly")]
    Overloaded(&'static str),
    /// The blocking task running the operation died.
    #[error("HSM worker failed: {0}")]
    Worker(#[source] crate::reason::Reason),
}

impl HsmError {
    /// Map a cryptoki error from operation `op` to an `HsmError`.
    pub(crate) fn from_ck(op: &'static str, err: CkError) -> Self {
        match err {
            CkError::Pkcs11(rv, function) => match rv {
                RvError::MechanismInvalid | RvError::MechanismParamInvalid => {
                    HsmError::MechanismUnsupported(op.into())
                }
                RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::DataInvalid
                | RvError::DataLenRange => HsmError::BadInput {
                    op,
                    rv: format!("{rv:?}"),
                },
                RvError::KeyTypeInconsistent | RvError::KeyFunctionNotPermitted => {
                    HsmError::BadInput {
                        op,
                        rv: format!("{rv:?} (the key does not allow {op})"),
                    }
                }
                _ => HsmError::Token {
                    function: format!("{function:?}"),
                    rv: format!("{rv:?}"),
                },
            },
            other => HsmError::Token {
                function: op.into(),
                rv: other.to_string(),
            },
        }
    }
}

/// How the pool should react to an error from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The session (or every session) is gone: reopen, log in, retry once.
    Reopen,
    /// A cached object handle went stale: look the object up again, retry once.
    Relookup,
    /// Nothing to recover: report.
    None,
}

pub(crate) fn recovery_for(err: &CkError) -> Recovery {
    match err {
        CkError::Pkcs11(rv, _) => match rv {
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::UserNotLoggedIn
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::TokenNotPresent
            | RvError::CryptokiNotInitialized => Recovery::Reopen,
            RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid => Recovery::Relookup,
            _ => Recovery::None,
        },
        _ => Recovery::None,
    }
}

/// True when `err` is the return code `rv` from any function.
pub(crate) fn is_rv(err: &CkError, want: RvError) -> bool {
    matches!(err, CkError::Pkcs11(rv, _) if *rv == want)
}

/// Map a login failure.
pub(crate) fn login_error(token: &str, err: CkError) -> HsmError {
    match err {
        CkError::Pkcs11(RvError::PinIncorrect, _) | CkError::Pkcs11(RvError::PinLenRange, _) => {
            HsmError::WrongPin(token.into())
        }
        CkError::Pkcs11(RvError::PinLocked, _) => HsmError::PinLocked(token.into()),
        other => HsmError::from_ck("login", other),
    }
}
