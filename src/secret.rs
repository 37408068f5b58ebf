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
    pub fn read(&self) -> Result<Option<String>, String> {
        match self {
            SecretSource::None => Ok(None),
            SecretSource::File(f) => std::fs::read_to_string(f)
                .map(|s| Some(s.lines().next().unwrap_or("").trim().to_owned()))
                .map_err(|e| format!("cannot read secret file `{f}`: {e}")),
            SecretSource::Env(v) => std::env::var(v)
                .map(|s| Some(s.trim().to_owned()))
                .map_err(|_| format!("environment variable `{v}` (a secret) is not set")),
        }
    }
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
}
