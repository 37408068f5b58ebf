//! What people and integrations read and manage through the API and the console: the
//! records (certificates, PENDING enrollments, registrations, the audit log), integration
//! tokens, one-time challenges, and the service's readiness. Front ends call these; they
//! never reach the store or the token themselves.

use super::access::{self, Caller};
use super::challenge::{Bindings, Minted};
use super::people::TokenError;
use super::Authority;
use crate::reason::Reason;
use crate::store::{
    AuditQuery, AuditRecord, CertFilter, CertificateRecord, RegistrationRecord, SpanCount, SpanOf,
    StoreError, TokenRecord, TransactionRecord,
};

impl Authority {
    /// Ready to serve: the CA key signs on the token, and the store answers.
    pub async fn ready(&self) -> Result<(), Reason> {
        let (uri, alg) = self.ca_key();
        self.inner
            .key
            .hsm
            .sign(&uri, alg, b"sigil readiness probe".to_vec())
            .await
            .map_err(Reason::caused_by)?;
        self.inner.store.ping().await.map_err(Reason::caused_by)
    }

    /// The token's label.
    pub fn token_name(&self) -> &str {
        self.inner.key.hsm.token()
    }

    /// Close the token's sessions (at shutdown).
    pub fn close(&self) {
        self.inner.key.hsm.close();
    }

    /// PENDING enrollments, oldest first.
    pub async fn pending_enrollments(&self) -> Result<Vec<TransactionRecord>, StoreError> {
        self.inner.store.pending().await
    }

    /// Registrations, of the person with `email` if given, at most `limit` (0: all).
    pub async fn registrations_of(
        &self,
        email: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        self.inner.store.registrations(email, limit).await
    }

    /// Audit records after `after` (sequence number), at most `limit`.
    pub async fn audit_records(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner.store.audit_records(after, limit).await
    }

    /// The newest audit records matching `query`, newest first, at most `limit`.
    pub async fn audit_newest(
        &self,
        query: &AuditQuery,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner.store.audit_newest(query, limit).await
    }

    /// Record something that changed no data (a failed sign-in) in the audit chain.
    pub async fn audit_event(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.inner
            .store
            .audit(actor, action, subject, details)
            .await
    }

    /// Certificates matching `filter`.
    pub async fn certificates(
        &self,
        filter: &CertFilter,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        self.inner.store.certificates(filter).await
    }

    /// Certificates per profile in `spans` spans of `width` seconds from `start`, by the
    /// time `by` names (the console's charts): counted by the store, never listed.
    pub async fn counts_per_span(
        &self,
        by: SpanOf,
        start: i64,
        width: i64,
        spans: u32,
    ) -> Result<Vec<SpanCount>, StoreError> {
        self.inner
            .store
            .counts_per_span(by, start, width, spans)
            .await
    }

    /// The certificate with this serial (hex).
    pub async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        self.inner.store.certificate(serial).await
    }

    /// Who holds this API token, if it is valid (its last use is recorded).
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Caller>, StoreError> {
        access::authenticate(self.inner.store.as_ref(), secret).await
    }

    /// Every token, without secrets.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.store.tokens().await
    }

    /// Revoke a token; false when there is no such active token.
    pub async fn revoke_token(&self, id: &str, actor: &str) -> Result<bool, StoreError> {
        self.inner.store.revoke_token(id, actor).await
    }

    /// The tokens `caller` may see: every one for an admin; otherwise a person's own (signed
    /// in: a token's person is its maker, who may not be the one holding it), in the roles a
    /// person makes for themselves: admin and integration tokens they made as an admin are
    /// the admins' to manage.
    pub async fn tokens_for(&self, caller: &Caller) -> Result<Vec<TokenRecord>, TokenError> {
        let admin = caller.acts_as(access::Role::Admin);
        if !admin && !caller.signed_in() {
            return Err(TokenError::Forbidden(
                "only an admin's token lists or revokes tokens; a person signed in sees their own"
                    .into(),
            ));
        }
        let all = self.inner.store.tokens().await?;
        Ok(if admin {
            all
        } else {
            all.into_iter()
                .filter(|t| t.owner.as_deref() == Some(caller.person.id.as_str()))
                .filter(|t| access::Role::parse(&t.role).is_some_and(access::Role::personal))
                .collect()
        })
    }

    /// Revoke a token `caller` may see (an admin: any; a person signed in: their own); false
    /// when there is no such active token.
    pub async fn revoke_token_for(&self, caller: &Caller, id: &str) -> Result<bool, TokenError> {
        if !self.tokens_for(caller).await?.iter().any(|t| t.id == id) {
            return Ok(false);
        }
        Ok(self.inner.store.revoke_token(id, &caller.actor()).await?)
    }

    /// Mint a one-time challenge for `profile` with these bindings, if the profile takes
    /// minted challenges (not a registration-only one) and, when `caller` is an integration
    /// token, its scope names the profile ([`super::challenge::may_mint`], checked here
    /// whatever front end asks). `None`: the host's command line.
    pub async fn mint_challenge(
        &self,
        profile: &str,
        caller: Option<&Caller>,
        bindings: &Bindings,
        ttl_secs: i64,
        actor: &str,
    ) -> Result<Minted, MintError> {
        let p = self
            .inner
            .profiles
            .get(profile)
            .ok_or_else(|| MintError::NotAllowed(format!("no profile `{profile}`")))?;
        let scope = caller
            .filter(|c| c.role == access::Role::Mdm)
            .map(|c| &c.scope);
        super::challenge::may_mint(&p.name, p.registration_only, scope)
            .map_err(MintError::NotAllowed)?;
        // An officer approves what this challenge enrolls: the break-glass token's holder
        // could be that officer (it is no person, so no second person can be told apart).
        if p.policy.approval && caller.is_some_and(|c| c.break_glass) {
            return Err(MintError::NotAllowed(format!(
                "the break-glass token cannot mint challenges for profile `{}`, whose enrollments an officer approves: it is no person, so its holder could be that officer",
                p.name
            )));
        }
        Ok(super::challenge::create(
            self.inner.store.as_ref(),
            profile,
            bindings,
            ttl_secs,
            actor,
        )
        .await?)
    }

    /// This server's public base URL (`server.public_url`), else `fallback` (the request's).
    pub fn public_base(&self, fallback: &str) -> String {
        if self.inner.public_url.is_empty() {
            fallback.trim_end_matches('/').to_string()
        } else {
            self.inner.public_url.trim_end_matches('/').to_string()
        }
    }

    /// The certificate profiles as configured (without challenge hashes), by name.
    pub fn profile_list(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<&String> = self.inner.profiles.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let p = &self.inner.profiles[n];
                let mut v = serde_json::to_value(&p.policy).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.remove("challenge_sha256");
                    o.insert("name".into(), serde_json::json!(n));
                    o.insert(
                        "registration_only".into(),
                        serde_json::json!(p.registration_only),
                    );
                    o.insert(
                        "static_challenge".into(),
                        serde_json::json!(!p.policy.challenge_sha256.is_empty()),
                    );
                }
                v
            })
            .collect()
    }
}

/// Why no challenge was minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The profile takes no minted challenge, or not from this caller (the reason says which).
    #[error("{0}")]
    NotAllowed(String),
    /// The store could not record it.
    #[error(transparent)]
    Store(#[from] StoreError),
}
