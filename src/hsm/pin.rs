//! Where the token PIN comes from: a file or an environment variable, never the config file.
//!
//! The PIN is held as a `secrecy` string (zeroed on drop) and never formatted into a log.

use std::path::PathBuf;

use cryptoki::types::AuthPin;

use super::HsmError;
use crate::reason::Reason;

/// The configured source of the user PIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// Read the first line of this file (mode 0600 recommended).
    File(PathBuf),
    /// Read this environment variable.
    Env(String),
}

impl PinSource {
    /// Read the PIN now.
    pub fn read(&self) -> Result<AuthPin, HsmError> {
        let pin = match self {
            PinSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    let text = format!(
                        "the PIN file `{}` cannot be read ({e}); set hsm.pin_file (SIGIL_HSM_PIN_FILE) to a readable file",
                        path.display()
                    );
                    HsmError::Pin(Reason::caused_by(e).with_text(text))
                })?;
                text.lines().next().unwrap_or("").trim_end().to_owned()
            }
            // No cause kept: a variable that is set but not Unicode would carry the PIN in it.
            PinSource::Env(var) => std::env::var(var).map_err(|e| {
                HsmError::Pin(Reason::new(match e {
                    std::env::VarError::NotPresent => {
                        format!("the environment variable `{var}` named by hsm.pin_env is not set")
                    }
                    std::env::VarError::NotUnicode(_) => {
                        format!("the environment variable `{var}` named by hsm.pin_env is not Unicode text")
                    }
                }))
            })?,
        };
        if pin.is_empty() {
            return Err(HsmError::Pin(Reason::new(format!(
                "{self} holds an empty PIN"
            ))));
        }
        Ok(AuthPin::new(pin.into()))
    }
}

impl std::fmt::Display for PinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinSource::File(p) => write!(f, "PIN file `{}`", p.display()),
            PinSource::Env(v) => write!(f, "environment variable `{v}`"),
        }
    }
}
