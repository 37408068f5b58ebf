//! Secrets named by a file or an environment variable, never written into configuration:
//! client secrets, passwords, API keys, webhook tokens. Read when used, so a rotated file
//! counts without a restart.

/// A secret named by a file or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Not configured.
    None,
    /// The first line of this file.
    File(String),
    /// This environment variable.
    Env(String),
}

impl SecretSource {
    /// From a `<what>_file` / `<what>_env` pair of settings: at most one may be set.
    pub fn from_pair(what: &str, file: &str, env: &str) -> Result<SecretSource, String> {
        match (file.is_empty(), env.is_empty()) {
            (true, true) => Ok(SecretSource::None),
            (false, true) => Ok(SecretSource::File(file.into())),
            (true, false) => Ok(SecretSource::Env(env.into())),
            (false, false) => Err(format!("set only one of {what}_file and {what}_env")),
        }
    }

    /// Whether one is configured.
    pub fn is_set(&self) -> bool {
        *self != SecretSource::None
    }

    /// Read the secret now; `None` when not configured.
    pub fn read(&self) -> Result<Option<String>, SecretError> {
        match self {
            SecretSource::None => Ok(None),
            SecretSource::File(f) => std::fs::read_to_string(f)
                .map(|s| Some(s.lines().next().unwrap_or("").trim().to_owned()))
                .map_err(|source| SecretError::File {
                    path: f.clone(),
                    source,
                }),
            // The variable's error is not kept: one that is set but not Unicode holds the
            // secret.
            SecretSource::Env(v) => {
                std::env::var(v)
                    .map(|s| Some(s.trim().to_owned()))
                    .map_err(|e| match e {
                        std::env::VarError::NotPresent => SecretError::NotSet { var: v.clone() },
                        std::env::VarError::NotUnicode(_) => {
                            SecretError::NotUnicode { var: v.clone() }
                        }
                    })
            }
        }
    }
}

/// Why a configured secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read (missing, permissions, not text).
    #[error("cannot read secret file `{path}`: {source}")]
    File {
        /// The file.
        path: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The environment variable is not set.
    #[error("environment variable `{var}` (a secret) is not set")]
    NotSet {
        /// The variable.
        var: String,
    },
    /// The environment variable is set but is not Unicode text.
    #[error("environment variable `{var}` (a secret) is not Unicode text")]
    NotUnicode {
        /// The variable.
        var: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_at_most() {
        assert_eq!(
            SecretSource::from_pair("password", "", "").unwrap(),
            SecretSource::None
        );
        assert_eq!(
            SecretSource::from_pair("password", "/run/p", "").unwrap(),
            SecretSource::File("/run/p".into())
        );
        assert!(SecretSource::from_pair("password", "/run/p", "P")
            .unwrap_err()
            .contains("only one of password_file and password_env"));
    }

    #[test]
    fn a_secret_that_cannot_be_read_says_why_and_keeps_the_systems_error() {
        use std::error::Error as _;
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent");
        let e = SecretSource::File(missing.display().to_string())
            .read()
            .unwrap_err();
        assert!(e.to_string().contains("cannot read secret file"), "{e}");
        let io = e.source().and_then(|c| c.downcast_ref::<std::io::Error>());
        assert_eq!(io.map(|e| e.kind()), Some(std::io::ErrorKind::NotFound));

        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret \nsecond line\n").unwrap();
        let read = SecretSource::File(file.display().to_string()).read();
        assert_eq!(read.unwrap().as_deref(), Some("s3cret"));

        let e = SecretSource::Env("SIGIL_TEST_UNSET_SECRET_VARIABLE".into())
            .read()
            .unwrap_err();
        assert!(matches!(e, SecretError::NotSet { .. }), "{e:?}");
        assert!(e.source().is_none());
    }
}
