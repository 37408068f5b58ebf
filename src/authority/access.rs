//! Who may call the API: roles, and bearer tokens (shown once, stored as SHA-256).
//!
//! Roles: `admin` (tokens, profiles, settings), `officer` (approvals, revocation), `auditor`
//! (reads certificates and audit), `mdm` (integrations: challenges, SCEP payloads, each token
//! scoped to the profiles and directories it serves), `user` (self-service: the token's name is
//! the person's email, and it may only start and file that person's own registrations).
//! Several tokens of a role
//! may be active at once, so an MDM integration's token can be rotated without downtime:
//! create the new one, distribute it, revoke the old one.

use sha2::Digest;

use crate::store::{now, Store, StoreError, TokenRecord, TokenScope};

/// An API role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Tokens, profiles, settings.
    Admin,
    /// Approvals and revocation.
    Officer,
    /// Read-only: certificates and audit.
    Auditor,
    /// MDM integrations: challenges, SCEP payloads.
    Mdm,
    /// Self-service: one person (the token's name is their email) and their registrations.
    User,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Officer,
        Role::Auditor,
        Role::Mdm,
        Role::User,
    ];

    /// The name in tokens and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Officer => "officer",
            Role::Auditor => "auditor",
            Role::Mdm => "mdm",
            Role::User => "user",
        }
    }

    /// Parse a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl Caller {
    /// How the caller appears in the audit log.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token_id)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Token id.
    pub token_id: String,
    /// Token name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// What an `mdm` token may do (empty for other roles).
    pub scope: TokenScope,
}

fn hash(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

fn random_hex(n: usize) -> Result<String, StoreError> {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b)
        .map_err(|e| StoreError::Unavailable(format!("random: {e}")))?;
    Ok(hex::encode(b))
}

/// Check an integration token's scope against the configuration: an `mdm` token names at
/// least one profile or directory, each one that exists (or `*`), and no profile that issues
/// only through registrations; other roles have no scope.
pub fn check_scope(
    role: Role,
    scope: &TokenScope,
    profiles: &[(String, bool)],
    directories: &[String],
) -> Result<(), String> {
    if role != Role::Mdm {
        if scope.profiles.is_empty() && scope.directories.is_empty() {
            return Ok(());
        }
        return Err(format!(
            "only mdm tokens have a scope (profiles, directories); a {} token has none",
            role.as_str()
        ));
    }
    if scope.profiles.is_empty() && scope.directories.is_empty() {
        return Err(
            "an mdm token needs a scope: the profiles it may mint challenges for and/or the directories whose SCEP payloads it may collect (\"*\" for all)".into(),
        );
    }
    for p in &scope.profiles {
        if p == "*" {
            continue;
        }
        match profiles.iter().find(|(n, _)| n == p) {
            None => {
                return Err(format!(
                    "no profile `{p}`; there are: {}",
                    profiles
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
            Some((_, true)) => {
                return Err(format!(
                    "profile `{p}` issues only through registrations (a credential names it): no token mints challenges for it"
                ))
            }
            Some(_) => {}
        }
    }
    for d in &scope.directories {
        if d != "*" && !directories.contains(d) {
            return Err(format!(
                "no directory `{d}`; there are: {}",
                if directories.is_empty() {
                    "none".to_string()
                } else {
                    directories.join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// Create a token; returns the secret (to show once) and the record. `actor` goes into the
/// audit log, with the scope.
pub async fn create_token(
    store: &dyn Store,
    role: Role,
    name: &str,
    ttl_secs: Option<i64>,
    scope: TokenScope,
    actor: &str,
) -> Result<(String, TokenRecord), StoreError> {
    let secret = format!("sigil_{}", random_hex(32)?);
    let record = TokenRecord {
        id: format!("tok_{}", random_hex(6)?),
        name: name.to_owned(),
        role: role.as_str().to_owned(),
        hash: hash(&secret),
        created_at: now(),
        expires_at: ttl_secs.map(|t| now() + t.max(1)),
        revoked_at: None,
        last_used_at: None,
        scope,
    };
    store.insert_token(&record, actor).await?;
    Ok((secret, record))
}

/// The caller a bearer secret belongs to, if it is an active token.
pub async fn authenticate(store: &dyn Store, secret: &str) -> Result<Option<Caller>, StoreError> {
    if secret.is_empty() || secret.len() > 200 {
        return Ok(None);
    }
    Ok(store.use_token(&hash(secret)).await?.and_then(|t| {
        Some(Caller {
            role: Role::parse(&t.role)?,
            token_id: t.id,
            name: t.name,
            scope: t.scope,
        })
    }))
}
