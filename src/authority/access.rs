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

use crate::reason::Reason;
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

impl Role {
    /// How much the role may do, for choosing the one a request acts in: admin > officer >
    /// auditor > mdm > user.
    pub fn rank(self) -> u8 {
        match self {
            Role::Admin => 4,
            Role::Officer => 3,
            Role::Auditor => 2,
            Role::Mdm => 1,
            Role::User => 0,
        }
    }

    /// Whether a token of this role grants power (and so, made through the API, waits for a
    /// second admin): admin, officer and integration tokens.
    pub fn grants_power(self) -> bool {
        matches!(self, Role::Admin | Role::Officer | Role::Mdm)
    }

    /// Whether a person makes tokens of this role for themselves (officer, auditor, user):
    /// admin and integration tokens only an admin makes, and manages.
    pub fn personal(self) -> bool {
        !matches!(self, Role::Admin | Role::Mdm)
    }
}

/// A person behind a request: who signed in, or who owns the token used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// `oidc:<issuer>#<subject>`, `piv:<UPN>`, `break-glass`, or `token:<id>` for a token
    /// made before tokens had owners.
    pub id: String,
    /// Email, lower case, when known.
    pub email: Option<String>,
    /// Display name.
    pub name: String,
}

impl Person {
    /// The same person: the same identity, or the same email (case does not matter). A person
    /// known through the identity provider and through a PIV card is one person by email. The
    /// break-glass token is no person: whoever holds it may be anyone, so for the two-person
    /// rule it is the same as everyone (what it started, nobody approves as a second person).
    pub fn same_as(&self, other: &Person) -> bool {
        if self.id == other.id
            || self.id == crate::store::BREAK_GLASS
            || other.id == crate::store::BREAK_GLASS
        {
            return true;
        }
        match (&self.email, &other.email) {
            (Some(a), Some(b)) => a.trim().eq_ignore_ascii_case(b.trim()),
            _ => false,
        }
    }

    /// Is this person the one with this email?
    pub fn has_email(&self, email: &str) -> bool {
        self.email
            .as_deref()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim()))
    }
}

impl Caller {
    /// How the caller appears in the audit log: `token:<id>` for a token, the person's id for
    /// a signed-in person.
    pub fn actor(&self) -> String {
        self.actor.clone()
    }

    /// Holds this role?
    pub fn holds(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// A person signed in (a session), not a token: a token's person is its maker, who may not
    /// be the one holding it.
    pub fn signed_in(&self) -> bool {
        self.token_id.is_none() && !self.break_glass
    }

    /// Acts in this role, and holds it (a front end that set the acting role without
    /// checking cannot lend a role the person lacks).
    pub fn acts_as(&self, role: Role) -> bool {
        self.role == role && self.holds(role)
    }
}

#[cfg(test)]
impl Caller {
    /// A token caller named `t` acting in (and holding only) `role`, for unit tests.
    pub(crate) fn token_for_test(role: Role) -> Caller {
        Caller {
            actor: "token:t".into(),
            person: Person {
                id: "token:t".into(),
                email: None,
                name: "t".into(),
            },
            role,
            roles: vec![role],
            name: "t".into(),
            scope: Default::default(),
            token_id: None,
            break_glass: false,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who appears in the audit log (`token:<id>`, `oidc:…`, `piv:…`).
    pub actor: String,
    /// The person behind it (a token's owner).
    pub person: Person,
    /// The role this request acts in (the strongest the route allows).
    pub role: Role,
    /// Every role the caller holds.
    pub roles: Vec<Role>,
    /// The name the caller goes by: a user token's or a signed-in user's email (what
    /// self-service registrations are filed for), else the token's or person's name.
    pub name: String,
    /// What an `mdm` token may do (empty for other roles).
    pub scope: TokenScope,
    /// The token used, if one was.
    pub token_id: Option<String>,
    /// The break-glass admin token of `sigil init`: every use is audited.
    pub break_glass: bool,
}

fn hash(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

fn random_hex(n: usize) -> Result<String, StoreError> {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b)
        .map_err(|e| StoreError::Unavailable(Reason::context("random", e)))?;
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

/// Who a new token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This person (`oidc:…`, `piv:…`, or the token that made it), or `break-glass`.
    Named(String),
    /// Nobody else: the token stands for itself (`token:<its id>`), as those made with
    /// `sigil token create` on the CA's host for one named holder.
    Itself,
}

/// Who a new token belongs to and whether it waits for a second admin.
#[derive(Debug, Clone)]
pub struct TokenOwnership {
    /// The owner.
    pub owner: Owner,
    /// Works only once a second admin approves it.
    pub awaiting_approval: bool,
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
    ownership: TokenOwnership,
) -> Result<(String, TokenRecord), StoreError> {
    let secret = format!("sigil_{}", random_hex(32)?);
    let id = format!("tok_{}", random_hex(6)?);
    let owner = match ownership.owner {
        Owner::Named(o) => o,
        Owner::Itself => format!("token:{id}"),
    };
    let record = TokenRecord {
        id,
        name: name.to_owned(),
        role: role.as_str().to_owned(),
        hash: hash(&secret),
        created_at: now(),
        expires_at: ttl_secs.map(|t| now() + t.max(1)),
        revoked_at: None,
        last_used_at: None,
        scope,
        owner: Some(owner),
        awaiting_approval: ownership.awaiting_approval,
        approved_by: None,
    };
    store.insert_token(&record, actor).await?;
    Ok((secret, record))
}

/// The person behind a token: its owner (a signed-in person, the break-glass admin), or, for a
/// token that is its own person (made on the host, or before tokens had owners), the token,
/// known by its name and by that name as an email when it is one (so two such tokens named
/// for one person in different case are one person). A `user` token acts for the email it is
/// named after.
pub(crate) async fn token_person(
    store: &dyn Store,
    t: &crate::store::TokenRecord,
) -> Result<Person, StoreError> {
    let own = format!("token:{}", t.id);
    let person = match t.owner.as_deref() {
        Some(owner) if owner.starts_with("oidc:") || owner.starts_with("piv:") => {
            match store.person(owner).await? {
                Some(p) => Person {
                    id: p.id,
                    email: p.email,
                    name: p.name,
                },
                None => Person {
                    id: owner.to_owned(),
                    email: None,
                    name: owner.to_owned(),
                },
            }
        }
        // Made by another token: that token's person (a token cannot launder its maker).
        Some(owner) if owner != own && owner.starts_with("token:") => {
            let maker = owner.trim_start_matches("token:");
            match store.tokens().await?.into_iter().find(|t| t.id == maker) {
                Some(m) if m.owner.as_deref() != Some(own.as_str()) => {
                    Box::pin(token_person(store, &m)).await?
                }
                _ => Person {
                    id: owner.to_owned(),
                    email: None,
                    name: owner.to_owned(),
                },
            }
        }
        Some(owner) if owner != own => Person {
            id: owner.to_owned(),
            email: None,
            name: owner.to_owned(),
        },
        _ => Person {
            id: own,
            email: t
                .name
                .contains('@')
                .then(|| t.name.trim().to_ascii_lowercase()),
            name: t.name.clone(),
        },
    };
    Ok(if t.role == Role::User.as_str() {
        Person {
            email: Some(t.name.trim().to_ascii_lowercase()),
            ..person
        }
    } else {
        person
    })
}

/// The caller a bearer secret belongs to, if it is an active token. The person behind it is
/// the token's owner; a `user` token acts for the email it is named after.
pub async fn authenticate(store: &dyn Store, secret: &str) -> Result<Option<Caller>, StoreError> {
    if secret.is_empty() || secret.len() > 200 {
        return Ok(None);
    }
    let Some(t) = store.use_token(&hash(secret)).await? else {
        return Ok(None);
    };
    let Some(role) = Role::parse(&t.role) else {
        return Ok(None);
    };
    let break_glass = t.owner.as_deref() == Some(crate::store::BREAK_GLASS);
    let person = token_person(store, &t).await?;
    Ok(Some(Caller {
        actor: format!("token:{}", t.id),
        person,
        role,
        roles: vec![role],
        name: t.name,
        scope: t.scope,
        token_id: Some(t.id),
        break_glass,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BREAK_GLASS;

    #[test]
    fn roles_read_back_rank_and_grant_power_as_documented() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse("root"), None);
        assert_eq!(Role::parse(""), None);
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["admin", "officer", "auditor", "mdm", "user"]);
        // Strictly ordered, strongest first.
        let ranks: Vec<u8> = Role::ALL.iter().map(|r| r.rank()).collect();
        assert!(ranks.windows(2).all(|w| w[0] > w[1]), "{ranks:?}");
        let power: Vec<Role> = Role::ALL.into_iter().filter(|r| r.grants_power()).collect();
        assert_eq!(power, [Role::Admin, Role::Officer, Role::Mdm]);
    }

    fn person(id: &str, email: Option<&str>) -> Person {
        Person {
            id: id.into(),
            email: email.map(String::from),
            name: "n".into(),
        }
    }

    #[test]
    fn one_person_by_identity_or_by_email_never_by_name() {
        let a = person("oidc:https://idp#1", Some("a.smith@agency.gov"));
        assert!(a.same_as(&a.clone()));
        // The same identity without an email.
        assert!(a.same_as(&person("oidc:https://idp#1", None)));
        // The PIV card of the same person: one person by email, whatever the case.
        assert!(a.same_as(&person(
            "piv:a.smith@agency.gov",
            Some(" A.Smith@Agency.GOV ")
        )));
        // A different identity with another email, or with no email, is another person.
        assert!(!a.same_as(&person("piv:b@agency.gov", Some("b@agency.gov"))));
        assert!(!a.same_as(&person("token:t1", None)));
        // The break-glass token's holder may be anyone.
        let bg = person(crate::store::BREAK_GLASS, None);
        assert!(bg.same_as(&a) && a.same_as(&bg));
        assert!(bg.same_as(&person("token:t1", None)));
        assert!(!person("token:t1", None).same_as(&person("token:t2", None)));
        // The same display name does not make the same person.
        let mut c = person("oidc:https://idp#2", Some("c@agency.gov"));
        c.name = a.name.clone();
        assert!(!a.same_as(&c));

        assert!(a.has_email("A.SMITH@agency.gov "));
        assert!(!a.has_email("smith@agency.gov"));
        assert!(!person("token:t", None).has_email(""));
    }

    #[test]
    fn a_caller_holds_only_its_roles_and_acts_as_its_actor() {
        let c = Caller {
            actor: "token:abc".into(),
            person: person("piv:x", None),
            role: Role::Officer,
            roles: vec![Role::Officer, Role::User],
            name: "x".into(),
            scope: TokenScope::default(),
            token_id: Some("abc".into()),
            break_glass: false,
        };
        assert_eq!(c.actor(), "token:abc");
        assert!(c.holds(Role::Officer) && c.holds(Role::User));
        assert!(!c.holds(Role::Admin) && !c.holds(Role::Mdm));
    }

    /// A user token acts for the email it is named after, whoever made it; a token of its own
    /// is its own person, known by its name as an email when it is one.
    #[tokio::test]
    async fn a_user_token_acts_for_the_email_it_is_named_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("s.db"))
            .await
            .unwrap();
        let token = |role: &str, name: &str, owner: Option<&str>| TokenRecord {
            id: "t1".into(),
            name: name.into(),
            role: role.into(),
            hash: String::new(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            scope: TokenScope::default(),
            owner: owner.map(String::from),
            awaiting_approval: false,
            approved_by: None,
        };
        let p = token_person(&store, &token("user", " Bob@Agency.GOV", Some(BREAK_GLASS)))
            .await
            .unwrap();
        assert_eq!(p.id, BREAK_GLASS);
        assert_eq!(p.email.as_deref(), Some("bob@agency.gov"));
        let p = token_person(&store, &token("officer", "Bob@Agency.GOV", None))
            .await
            .unwrap();
        assert_eq!(p.id, "token:t1");
        assert_eq!(p.email.as_deref(), Some("bob@agency.gov"));
        let p = token_person(&store, &token("mdm", "jamf", None))
            .await
            .unwrap();
        assert_eq!((p.id.as_str(), p.email), ("token:t1", None));
    }

    #[test]
    fn secrets_are_stored_as_their_sha256_and_fresh_ones_are_random() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let a = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(16).unwrap());
    }

    #[test]
    fn only_mdm_tokens_have_a_scope_and_it_names_what_exists() {
        let scope = |p: &[&str], d: &[&str]| TokenScope {
            profiles: p.iter().map(|s| s.to_string()).collect(),
            directories: d.iter().map(|s| s.to_string()).collect(),
        };
        let profiles = [("wifi".to_string(), false), ("derived".to_string(), true)];
        let dirs = ["intune".to_string()];
        let check = |r: Role, s: &TokenScope| check_scope(r, s, &profiles, &dirs);
        for r in [Role::Admin, Role::Officer, Role::Auditor, Role::User] {
            assert_eq!(check(r, &scope(&[], &[])), Ok(()));
            assert!(check(r, &scope(&["wifi"], &[])).is_err());
            assert!(check(r, &scope(&[], &["intune"])).is_err());
        }
        assert!(check(Role::Mdm, &scope(&[], &[])).is_err());
        assert_eq!(check(Role::Mdm, &scope(&["wifi"], &[])), Ok(()));
        assert_eq!(check(Role::Mdm, &scope(&[], &["intune"])), Ok(()));
        assert_eq!(check(Role::Mdm, &scope(&["*"], &["*"])), Ok(()));
        assert_eq!(
            check(Role::Mdm, &scope(&["wifi", "*"], &["intune"])),
            Ok(())
        );
        let e = check(Role::Mdm, &scope(&["vpn"], &[])).unwrap_err();
        assert!(e.contains("no profile `vpn`") && e.contains("wifi"), "{e}");
        let e = check(Role::Mdm, &scope(&["wifi", "derived"], &[])).unwrap_err();
        assert!(e.contains("only through registrations"), "{e}");
        let e = check(Role::Mdm, &scope(&["wifi"], &["jamf"])).unwrap_err();
        assert!(
            e.contains("no directory `jamf`") && e.contains("intune"),
            "{e}"
        );
        let e = check_scope(Role::Mdm, &scope(&[], &["jamf"]), &profiles, &[]).unwrap_err();
        assert!(e.contains("none"), "{e}");
    }
}
