//! People: who is behind an actor, browser sessions of signed-in people, and how power is
//! granted. A session's person comes from an identity adapter (the identity provider or a
//! PIV card); a token's person is its owner. The two-person rule compares people, not token
//! names; a token that grants power (admin, officer, integration) made through the API works
//! only once a second admin approves it.

use sha2::Digest;

use super::access::{self, Caller, Owner, Person, Role, TokenOwnership};
use super::Authority;
use crate::reason::Reason;
use crate::store::{
    now, PersonRecord, SessionKind, SessionRecord, StoreError, TokenRecord, TokenScope, BREAK_GLASS,
};

/// How power is granted (`identity.grants`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantPolicy {
    /// Admin, officer and integration tokens made through the API wait for a second admin.
    TwoAdmins,
    /// Admin, officer and auditor come only from the identity provider's groups; integration
    /// tokens wait for a second admin.
    IdentityProvider,
}

/// How people sign in and stay signed in.
#[derive(Debug, Clone)]
pub struct PeoplePolicy {
    /// A session ends after this long without a request (seconds).
    pub session_idle_secs: i64,
    /// A session ends this long after sign-in (seconds).
    pub session_max_secs: i64,
    /// How power is granted.
    pub grants: GrantPolicy,
}

impl Default for PeoplePolicy {
    fn default() -> Self {
        PeoplePolicy {
            session_idle_secs: 30 * 60,
            session_max_secs: 12 * 3600,
            grants: GrantPolicy::TwoAdmins,
        }
    }
}

/// Someone signing in, as an identity adapter vouches for them.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The person.
    pub person: Person,
    /// The roles their groups (or names) give; never empty.
    pub roles: Vec<Role>,
    /// `oidc` or `piv`.
    pub method: &'static str,
    /// Whether the roles are stated in full (see [`crate::identity::Assertion::stated`]): only
    /// then are tokens in roles missing from them withdrawn.
    pub stated: bool,
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The caller it makes (acting in its strongest role until a route chooses).
    pub caller: Caller,
    /// The token forms and state-changing requests must carry.
    pub csrf: String,
    /// Ends at the latest (Unix seconds).
    pub expires_at: i64,
}

/// Why a token could not be made or approved.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not allowed; the text says why.
    #[error("{0}")]
    Forbidden(String),
    /// No such token waiting.
    #[error("no such token waits for approval")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn random_hex(n: usize) -> Result<String, StoreError> {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b)
        .map_err(|e| StoreError::Unavailable(Reason::context("random", e)))?;
    Ok(hex::encode(b))
}

/// What the store keeps for a value the browser holds: its SHA-256.
fn stored_id(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

impl Authority {
    /// The person behind an actor as recorded (`token:<id>`: the token's owner; `oidc:…`,
    /// `piv:…`: the person as last signed in; anything else stands for itself).
    pub(crate) async fn person_of(&self, actor: &str) -> Result<Person, StoreError> {
        let plain = |id: &str| Person {
            id: id.to_owned(),
            email: None,
            name: id.to_owned(),
        };
        if let Some(id) = actor.strip_prefix("token:") {
            let Some(t) = self
                .inner
                .store
                .tokens()
                .await?
                .into_iter()
                .find(|t| t.id == id)
            else {
                return Ok(plain(actor));
            };
            return super::access::token_person(self.inner.store.as_ref(), &t).await;
        }
        if actor.starts_with("oidc:") || actor.starts_with("piv:") {
            return self.signed_in_person(actor).await;
        }
        Ok(plain(actor))
    }

    async fn signed_in_person(&self, id: &str) -> Result<Person, StoreError> {
        Ok(match self.inner.store.person(id).await? {
            Some(p) => Person {
                id: p.id,
                email: p.email,
                name: p.name,
            },
            None => Person {
                id: id.to_owned(),
                email: None,
                name: id.to_owned(),
            },
        })
    }

    /// Open a session for someone an identity adapter vouched for: the person is recorded
    /// (so the audit log's actor names them), the sign-in audited. Returns the cookie value
    /// (shown once to the browser; the store keeps its hash) and the session.
    pub async fn sign_in(&self, s: SignIn) -> Result<(String, Session), StoreError> {
        let at = now();
        let policy = &self.inner.people;
        let roles: Vec<String> = s.roles.iter().map(|r| r.as_str().to_string()).collect();
        self.inner
            .store
            .upsert_person(&PersonRecord {
                id: s.person.id.clone(),
                email: s.person.email.clone(),
                name: s.person.name.clone(),
                roles: roles.clone(),
                first_seen: at,
                last_seen: at,
            })
            .await?;
        if s.stated {
            self.withdraw_lapsed_tokens(&s.person.id, &s.roles).await?;
        }
        let cookie = random_hex(32)?;
        let csrf = random_hex(24)?;
        let expires_at = at + policy.session_max_secs;
        self.inner
            .store
            .insert_session(&SessionRecord {
                id: stored_id(&cookie),
                kind: SessionKind::Session,
                person: Some(s.person.id.clone()),
                data: serde_json::json!({"roles": roles, "csrf": csrf, "method": s.method})
                    .to_string(),
                created_at: at,
                last_seen: at,
                expires_at,
            })
            .await?;
        self.inner
            .store
            .audit(
                &s.person.id,
                "signed_in",
                &s.person.id,
                &serde_json::json!({"method": s.method, "roles": roles, "email": s.person.email}),
            )
            .await?;
        let caller = session_caller(&s.person, &s.roles);
        Ok((
            cookie,
            Session {
                caller,
                csrf,
                expires_at,
            },
        ))
    }

    /// Whether admin, officer and auditor come only from the identity provider's groups
    /// (`identity.grants = idp`): then no token is made in them.
    pub fn roles_from_identity_provider_only(&self) -> bool {
        self.inner.people.grants == GrantPolicy::IdentityProvider
    }

    /// The identity provider has just said which roles a person holds (at a sign-in, or a
    /// sign-in refused for want of any): the tokens they made in a role they no longer hold,
    /// and could not make as an admin either, are revoked, each audited with why. A token
    /// carries the role it was made in and does not see the provider take it away; without
    /// this it kept the role until it expired. Integration (`mdm`) tokens stay: they serve a
    /// system, not their maker, and an admin rotates them (`docs/identity.md`). Returns the
    /// ids revoked.
    pub(crate) async fn withdraw_lapsed_tokens(
        &self,
        person: &str,
        roles: &[Role],
    ) -> Result<Vec<String>, StoreError> {
        let lapsed: Vec<TokenRecord> = self
            .inner
            .store
            .tokens()
            .await?
            .into_iter()
            .filter(|t| t.revoked_at.is_none() && t.owner.as_deref() == Some(person))
            .filter(|t| token_role_lapsed(&t.role, roles))
            .collect();
        let held: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let mut revoked = Vec::new();
        for t in lapsed {
            if !self.inner.store.revoke_token(&t.id, WITHDRAWER).await? {
                continue;
            }
            self.inner
                .store
                .audit(
                    WITHDRAWER,
                    "token_role_withdrawn",
                    &t.id,
                    &serde_json::json!({
                        "maker": person,
                        "role": t.role,
                        "roles_now": held,
                        "why": "its maker no longer holds the role at the identity provider",
                    }),
                )
                .await?;
            tracing::info!(token = %t.id, role = %t.role, actor = %person, "token revoked: its maker no longer holds its role");
            revoked.push(t.id);
        }
        Ok(revoked)
    }

    /// A sign-in refused because the identity provider, stating the person's groups in full,
    /// gives them no role: the person's record says so (their open sessions end) and the tokens
    /// they made go ([`Authority::withdraw_lapsed_tokens`]).
    pub async fn note_no_role(&self, person: &Person) -> Result<Vec<String>, StoreError> {
        let at = now();
        self.inner
            .store
            .upsert_person(&PersonRecord {
                id: person.id.clone(),
                email: person.email.clone(),
                name: person.name.clone(),
                roles: Vec::new(),
                first_seen: at,
                last_seen: at,
            })
            .await?;
        self.withdraw_lapsed_tokens(&person.id, &[]).await
    }

    /// The live session a cookie names (its idle timer restarts).
    pub async fn session(&self, cookie: &str) -> Result<Option<Session>, StoreError> {
        if cookie.is_empty() || cookie.len() > 128 {
            return Ok(None);
        }
        let Some(rec) = self
            .inner
            .store
            .session(&stored_id(cookie), self.inner.people.session_idle_secs)
            .await?
        else {
            return Ok(None);
        };
        let Some(id) = rec.person else {
            return Ok(None);
        };
        let data: serde_json::Value = serde_json::from_str(&rec.data).unwrap_or_default();
        let roles: Vec<Role> = data["roles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().and_then(Role::parse))
                    .collect()
            })
            .unwrap_or_default();
        if roles.is_empty() {
            return Ok(None);
        }
        // The roles the identity provider gave at the person's latest sign-in bound every
        // session's: one opened before a role was taken away loses it then.
        let Some(record) = self.inner.store.person(&id).await? else {
            return Ok(None);
        };
        let roles: Vec<Role> = roles
            .into_iter()
            .filter(|r| record.roles.iter().any(|h| h == r.as_str()))
            .collect();
        if roles.is_empty() {
            return Ok(None);
        }
        let person = Person {
            id: record.id,
            email: record.email,
            name: record.name,
        };
        Ok(Some(Session {
            caller: session_caller(&person, &roles),
            csrf: data["csrf"].as_str().unwrap_or_default().to_string(),
            expires_at: rec.expires_at,
        }))
    }

    /// End a session (sign-out), audited.
    pub async fn sign_out(&self, cookie: &str, actor: &str) -> Result<bool, StoreError> {
        let ended = self.inner.store.delete_session(&stored_id(cookie)).await?;
        if ended {
            self.inner
                .store
                .audit(actor, "signed_out", actor, &serde_json::json!({}))
                .await?;
        }
        Ok(ended)
    }

    /// Keep what a sign-in in progress needs until its callback, under the value the
    /// callback brings back (`state`), for `ttl_secs`.
    pub async fn begin_login(
        &self,
        state: &str,
        data: &serde_json::Value,
        ttl_secs: i64,
    ) -> Result<(), StoreError> {
        let at = now();
        self.inner
            .store
            .insert_session(&SessionRecord {
                id: stored_id(state),
                kind: SessionKind::Login,
                person: None,
                data: data.to_string(),
                created_at: at,
                last_seen: at,
                expires_at: at + ttl_secs,
            })
            .await
    }

    /// Take a sign-in in progress back (once).
    pub async fn take_login(&self, state: &str) -> Result<Option<serde_json::Value>, StoreError> {
        if state.is_empty() || state.len() > 256 {
            return Ok(None);
        }
        Ok(self
            .inner
            .store
            .take_login(&stored_id(state))
            .await?
            .map(|r| serde_json::from_str(&r.data).unwrap_or_default()))
    }

    /// Record a refused sign-in (who tried, by which method, why). Best effort: the refusal
    /// stands if the store is down.
    pub async fn refuse_sign_in(&self, method: &str, who: &str, reason: &str) {
        if let Err(e) = self
            .inner
            .store
            .audit(
                &format!("{method}:refused"),
                "sign_in_refused",
                who,
                &serde_json::json!({"method": method, "reason": reason}),
            )
            .await
        {
            tracing::warn!(error = %e, "could not record a refused sign-in");
        }
    }

    /// Record a use of the break-glass admin token (every use is on the record).
    pub async fn note_break_glass(&self, caller: &Caller, what: &str) {
        if let Err(e) = self
            .inner
            .store
            .audit(
                &caller.actor(),
                "break_glass_used",
                BREAK_GLASS,
                &serde_json::json!({"request": what}),
            )
            .await
        {
            tracing::warn!(error = %e, "could not record a use of the break-glass token");
        }
    }

    /// Make a token for `caller`. An admin makes any; a person signed in makes their own, in a
    /// role they hold (a user token named by their own email). A token that grants power
    /// (admin, officer, integration) waits for a second admin; with `identity.grants = idp`,
    /// admin, officer and auditor tokens are not made at all (those roles come from the
    /// identity provider's groups).
    pub async fn create_token_for(
        &self,
        caller: &Caller,
        role: Role,
        name: &str,
        ttl_secs: Option<i64>,
        scope: TokenScope,
    ) -> Result<(String, TokenRecord), TokenError> {
        let mut ttl_secs = ttl_secs;
        if !caller.acts_as(Role::Admin) {
            own_token(caller, role, name).map_err(TokenError::Forbidden)?;
            ttl_secs = Some(own_token_life(ttl_secs).map_err(TokenError::Forbidden)?);
        }
        if self.inner.people.grants == GrantPolicy::IdentityProvider
            && matches!(role, Role::Admin | Role::Officer | Role::Auditor)
        {
            return Err(TokenError::Forbidden(format!(
                "{} is granted by the identity provider's groups here (identity.grants = idp), not by tokens",
                role.as_str()
            )));
        }
        if caller.break_glass && matches!(role, Role::Admin | Role::Officer) {
            return Err(TokenError::Forbidden(
                "the break-glass token cannot make admin or officer tokens: people sign in (docs/identity.md), and `sigil token create` on the host makes the first ones".into(),
            ));
        }
        // Its holder may be anyone, and could be the second admin who approves the token, or
        // the officer who approves what a user token files: it makes neither.
        if caller.break_glass && (role.grants_power() || role == Role::User) {
            return Err(TokenError::Forbidden(format!(
                "the break-glass token cannot make {} tokens: it is no person, so no second person could be told from its holder; a person signed in (or `sigil token create` on the host) makes them",
                role.as_str()
            )));
        }
        Ok(access::create_token(
            self.inner.store.as_ref(),
            role,
            name,
            ttl_secs,
            scope,
            &caller.actor(),
            TokenOwnership {
                owner: Owner::Named(caller.person.id.clone()),
                awaiting_approval: role.grants_power(),
            },
        )
        .await?)
    }

    /// A second admin approves a token that waits: a person, never the one who asked for it
    /// (the break-glass token is no person: it approves nothing).
    pub async fn approve_token(&self, caller: &Caller, id: &str) -> Result<(), TokenError> {
        if !caller.acts_as(Role::Admin) {
            return Err(TokenError::Forbidden(
                "only an admin approves a token".into(),
            ));
        }
        if caller.break_glass {
            let why = "two admins: the break-glass token is no person, so it cannot be the second admin; a person signed in (or an admin token made on the host) approves";
            self.refuse_approval(caller, id, why).await;
            return Err(TokenError::Forbidden(why.into()));
        }
        let token = self
            .inner
            .store
            .tokens()
            .await?
            .into_iter()
            .find(|t| t.id == id && t.awaiting_approval && t.revoked_at.is_none())
            .ok_or(TokenError::NotFound)?;
        let owner = match token.owner.as_deref() {
            Some(o) => self.person_of(o).await?,
            None => self.person_of(&format!("token:{}", token.id)).await?,
        };
        if owner.same_as(&caller.person) {
            let why = "two admins: whoever asked for a token that grants power cannot approve it";
            self.refuse_approval(caller, id, why).await;
            return Err(TokenError::Forbidden(why.into()));
        }
        if !self.inner.store.approve_token(id, &caller.actor()).await? {
            return Err(TokenError::NotFound);
        }
        Ok(())
    }
}

/// The caller a signed-in person makes: acting in their strongest role (a route may choose
/// another they hold).
fn session_caller(person: &Person, roles: &[Role]) -> Caller {
    let role = roles
        .iter()
        .copied()
        .max_by_key(|r| r.rank())
        .unwrap_or(Role::User);
    Caller {
        actor: person.id.clone(),
        person: person.clone(),
        role,
        roles: roles.to_vec(),
        // Registrations are by email: a person without one owns none (never a display name).
        name: person.email.clone().unwrap_or_default(),
        scope: TokenScope::default(),
        token_id: None,
        break_glass: false,
    }
}

/// Has a token of `role` (as stored) outlived what its maker, now holding `roles`, could
/// make? An admin makes any token; anyone else only in a role they hold. Integration tokens
/// never lapse this way (see [`Authority::withdraw_lapsed_tokens`]).
fn token_role_lapsed(role: &str, roles: &[Role]) -> bool {
    match Role::parse(role) {
        Some(Role::Mdm) => false,
        Some(r) => !roles.contains(&Role::Admin) && !roles.contains(&r),
        // A role this build does not know grants nothing; nothing to withdraw.
        None => false,
    }
}

/// Who revokes a token whose maker lost its role, in the audit log (the maker is named in
/// the record's details: they did nothing).
const WITHDRAWER: &str = "sigil:sign-in";

/// The longest a token a person makes for themselves lasts: it carries a role the identity
/// provider gave them, which it does not see taken away.
const OWN_TOKEN_MAX_DAYS: i64 = 90;

/// The life of a token a person makes for themselves: as asked, at most
/// [`OWN_TOKEN_MAX_DAYS`], and that when not asked.
fn own_token_life(ttl_secs: Option<i64>) -> Result<i64, String> {
    let max = OWN_TOKEN_MAX_DAYS * 86_400;
    match ttl_secs {
        None => Ok(max),
        Some(t) if t <= max => Ok(t),
        Some(_) => Err(format!(
            "a token you make for yourself lasts at most {OWN_TOKEN_MAX_DAYS} days (expires_in_days): it carries a role your identity provider may take away"
        )),
    }
}

/// May `caller`, not acting as an admin, make a token of `role` named `name` for themselves?
/// Only a person signed in (a token makes no token), only in a role they hold, and a user
/// token only in their own email's name (a user token acts for the email it is named after).
/// Why not, in words.
fn own_token(caller: &Caller, role: Role, name: &str) -> Result<(), String> {
    if !caller.signed_in() {
        return Err(
            "only an admin makes tokens with a token; a person signed in makes their own".into(),
        );
    }
    if !caller.holds(role) || !role.personal() {
        return Err(format!(
            "you make tokens only for yourself, in a role you hold ({}); an admin makes {} tokens",
            caller
                .roles
                .iter()
                .filter(|r| r.personal())
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            role.as_str()
        ));
    }
    if role == Role::User && !caller.person.has_email(name) {
        return Err(format!(
            "a user token acts for the email it is named after: name it by your own email ({})",
            caller.person.email.as_deref().unwrap_or("none known")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::own_token;
    use crate::authority::access::{Caller, Role};

    /// A person signed in (no token) holding `roles`, with this email.
    fn person(roles: &[Role], email: &str) -> Caller {
        let mut c = Caller::token_for_test(roles[0]);
        c.roles = roles.to_vec();
        c.person.email = Some(email.into());
        c.token_id = None;
        c
    }

    #[test]
    fn a_person_makes_their_own_tokens_only() {
        let olga = person(&[Role::Officer, Role::User], "olga@agency.gov");
        assert_eq!(own_token(&olga, Role::Officer, "script"), Ok(()));
        assert_eq!(own_token(&olga, Role::User, "Olga@Agency.gov"), Ok(()));
        let why = own_token(&olga, Role::User, "oscar@agency.gov").unwrap_err();
        assert!(why.contains("olga@agency.gov"), "{why}");
        for lacks in [Role::Admin, Role::Auditor, Role::Mdm] {
            let why = own_token(&olga, lacks, "x").unwrap_err();
            assert!(why.contains("officer, user"), "{why}");
        }
        // Holding a role is not enough for an integration token.
        let odd = person(&[Role::Mdm], "m@agency.gov");
        assert!(own_token(&odd, Role::Mdm, "x").is_err());
        // A token makes no token of its own accord, nor does the break-glass one.
        let mut token = olga.clone();
        token.token_id = Some("t1".into());
        assert!(own_token(&token, Role::Officer, "x").is_err());
        let mut glass = olga;
        glass.break_glass = true;
        assert!(own_token(&glass, Role::Officer, "x").is_err());
    }

    #[test]
    fn a_token_lapses_when_its_maker_no_longer_could_make_it() {
        use super::token_role_lapsed;
        let officer_user = [Role::Officer, Role::User];
        assert!(!token_role_lapsed("officer", &officer_user));
        assert!(!token_role_lapsed("user", &officer_user));
        assert!(token_role_lapsed("auditor", &officer_user));
        assert!(token_role_lapsed("officer", &[Role::User]));
        assert!(token_role_lapsed("user", &[]));
        // An admin could make any of them; an integration token serves a system.
        for role in ["officer", "auditor", "user", "admin"] {
            assert!(!token_role_lapsed(role, &[Role::Admin]), "{role}");
        }
        assert!(token_role_lapsed("admin", &officer_user));
        assert!(!token_role_lapsed("mdm", &[]));
        assert!(!token_role_lapsed("nonsense", &[]));
    }

    #[test]
    fn a_persons_own_token_expires_within_ninety_days() {
        use super::own_token_life;
        assert_eq!(own_token_life(None), Ok(90 * 86_400));
        assert_eq!(own_token_life(Some(86_400)), Ok(86_400));
        assert_eq!(own_token_life(Some(90 * 86_400)), Ok(90 * 86_400));
        assert!(own_token_life(Some(90 * 86_400 + 1))
            .unwrap_err()
            .contains("at most 90 days"));
    }
}
