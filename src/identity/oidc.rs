//! Sign-in with an OpenID Connect provider: authorization code with PKCE and a nonce, the ID
//! token verified by the `openidconnect` crate (signature from the provider's published keys,
//! issuer, audience, expiry, nonce). The provider is discovered when first needed and again
//! when it signs with a key Sigil has not seen (key rotation), so Sigil starts even while the
//! provider is down.

use std::collections::HashMap;
use std::sync::Arc;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, Client, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    SignatureVerificationError, StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};

use super::client_assertion::{client_assertion, ClientKey};
use super::settings::OidcSettings;
use super::{Assertion, SignInError};
use crate::reason::Reason;

/// Claims besides the standard ones (the groups claim, whatever its name).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ExtraClaims {
    #[serde(flatten)]
    other: HashMap<String, serde_json::Value>,
}
impl AdditionalClaims for ExtraClaims {}

type IdFields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<IdFields, CoreTokenType>;
type OidcClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointMaybeSet,
>;

/// The provider as discovered.
struct Discovered {
    client: OidcClient,
    /// Where client assertions are addressed (the token endpoint).
    token_url: String,
}

/// A sign-in begun: where to send the browser, and what to keep until it comes back.
#[derive(Debug, Clone)]
pub struct LoginStart {
    /// The provider's authorization URL.
    pub url: String,
    /// The `state` the callback carries.
    pub state: String,
    /// The PKCE verifier.
    pub verifier: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
}

/// One OpenID Connect provider.
pub struct Oidc {
    settings: OidcSettings,
    /// Signs `private_key_jwt` assertions, when Sigil authenticates with a key, not a secret.
    client_key: Option<Arc<dyn ClientKey>>,
    redirect: String,
    http: reqwest::Client,
    discovered: tokio::sync::RwLock<Option<Arc<Discovered>>>,
}

fn unreachable(e: impl std::error::Error + Send + Sync + 'static) -> SignInError {
    SignInError::Unavailable(Reason::context(
        "the identity provider cannot be reached",
        e,
    ))
}

impl Oidc {
    /// A provider from its settings; the callback is `<public_url>/auth/oidc/callback`. With
    /// `client_key`, Sigil authenticates to the token endpoint with `private_key_jwt`.
    pub fn new(
        settings: &OidcSettings,
        public_url: &str,
        client_key: Option<Arc<dyn ClientKey>>,
    ) -> Result<Oidc, Reason> {
        if settings.client_key.is_empty() != client_key.is_none() {
            return Err(Reason::new(
                "identity.oidc.client_key: the key on the token was not opened",
            ));
        }
        let http = reqwest::Client::builder()
            // Never follow a redirect from the provider's endpoints.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| Reason::context("identity.oidc: HTTP client", e))?;
        Ok(Oidc {
            settings: settings.clone(),
            client_key,
            redirect: format!("{}/auth/oidc/callback", public_url.trim_end_matches('/')),
            http,
            discovered: tokio::sync::RwLock::new(None),
        })
    }

    /// The issuer, as configured.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    async fn discovered(&self, again: bool) -> Result<Arc<Discovered>, SignInError> {
        if !again {
            if let Some(d) = self.discovered.read().await.as_ref() {
                return Ok(d.clone());
            }
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|e| SignInError::Unavailable(Reason::context("identity.oidc.issuer", e)))?;
        let meta = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(unreachable)?;
        let token_url = meta.token_endpoint().cloned().ok_or_else(|| {
            SignInError::Unavailable("the identity provider publishes no token endpoint".into())
        })?;
        let secret = if self.client_key.is_some() {
            None
        } else {
            let source = self
                .settings
                .client_secret()
                .map_err(|e| SignInError::Unavailable(e.into()))?;
            Some(ClientSecret::new(
                source
                    .read()
                    .map_err(|e| SignInError::Unavailable(Reason::caused_by(e)))?
                    .unwrap_or_default(),
            ))
        };
        let redirect = RedirectUrl::new(self.redirect.clone())
            .map_err(|e| SignInError::Unavailable(Reason::context("server.public_url", e)))?;
        let client = Client::from_provider_metadata(
            meta,
            ClientId::new(self.settings.client_id.clone()),
            secret,
        )
        .set_redirect_uri(redirect)
        .set_token_uri(token_url.clone());
        let d = Arc::new(Discovered {
            client,
            token_url: token_url.url().to_string(),
        });
        *self.discovered.write().await = Some(d.clone());
        Ok(d)
    }

    /// A fresh `private_key_jwt` assertion for the token endpoint, signed on the token.
    async fn client_assertion(
        &self,
        key: Arc<dyn ClientKey>,
        token_url: &str,
    ) -> Result<String, SignInError> {
        let client_id = self.settings.client_id.clone();
        let audience = token_url.to_string();
        let jti = CsrfToken::new_random().secret().clone();
        let now = chrono_now().timestamp();
        tokio::task::spawn_blocking(move || {
            client_assertion(key.as_ref(), &client_id, &audience, now, &jti)
        })
        .await
        .map_err(|e| SignInError::Unavailable(Reason::context("client assertion", e)))?
        .map_err(|e| {
            tracing::error!(error = %e, "the OIDC client key could not sign");
            SignInError::Unavailable(Reason::caused_by(e))
        })
    }

    /// Begin a sign-in: the URL to send the browser to, with a fresh state, nonce and PKCE
    /// challenge.
    pub async fn begin(&self) -> Result<LoginStart, SignInError> {
        let d = self.discovered(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = d.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in &self.settings.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        if !self.settings.acr_values.is_empty() {
            req = req.add_extra_param("acr_values", self.settings.acr_values.clone());
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        Ok(LoginStart {
            url: url.to_string(),
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        })
    }

    /// Finish a sign-in: exchange the code (with the PKCE verifier), verify the ID token and
    /// read the person from it.
    pub async fn finish(
        &self,
        code: &str,
        iss: Option<&str>,
        verifier: &str,
        nonce: &str,
    ) -> Result<Assertion, SignInError> {
        // RFC 9207: a provider that names itself in the callback must be this one.
        if let Some(iss) = iss {
            if iss.trim_end_matches('/') != self.settings.issuer.trim_end_matches('/') {
                return Err(SignInError::Refused(format!(
                    "the sign-in came back from `{}`, not from the configured provider",
                    super::as_given(iss, 100)
                )));
            }
        }
        let d = self.discovered(false).await?;
        let mut exchange = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()));
        if let Some(key) = &self.client_key {
            let assertion = self.client_assertion(key.clone(), &d.token_url).await?;
            exchange = exchange
                .add_extra_param(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .add_extra_param("client_assertion", assertion);
        }
        let tokens: Tokens = exchange
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r)
                    if *r.error() == openidconnect::core::CoreErrorResponseType::InvalidClient =>
                {
                    tracing::error!(error = ?r, "the identity provider does not accept Sigil's client credentials");
                    SignInError::Unavailable(format!(
                        "the identity provider does not accept Sigil's own credentials (invalid_client{}): check identity.oidc.client_id and the client secret or client key registered with the provider",
                        r.error_description()
                            .map(|d| format!(": {d}"))
                            .unwrap_or_default()
                    ).into())
                }
                openidconnect::RequestTokenError::ServerResponse(r) => SignInError::Refused(
                    format!(
                        "the identity provider refused the sign-in code ({}{}): it was used already, has expired, or was not made for Sigil",
                        r.error(),
                        r.error_description()
                            .map(|d| format!(": {d}"))
                            .unwrap_or_default()
                    ),
                ),
                other => unreachable(other),
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| SignInError::Refused("the identity provider sent no ID token".into()))?;
        let nonce = Nonce::new(nonce.to_string());
        let skew = std::time::Duration::from_secs(self.settings.clock_skew_secs);
        let claims = match id_token.claims(
            &d.client
                .id_token_verifier()
                .set_time_fn(move || chrono_now() - skew_duration(skew)),
            &nonce,
        ) {
            Ok(c) => c.clone(),
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // The provider rotated its keys: read them again, once.
                let again = self.discovered(true).await?;
                let verifier = again.client.id_token_verifier();
                id_token.claims(&verifier, &nonce).map_err(refused)?.clone()
            }
            Err(e) => return Err(refused(e)),
        };
        let subject = claims.subject().as_str().to_string();
        // An email the provider says it has not verified names nobody here (Entra ID sends
        // no email_verified at all: its email is the tenant's).
        let email = claims
            .email()
            .filter(|_| claims.email_verified() != Some(false))
            .map(|e| e.as_str().trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty());
        let username = claims.preferred_username().map(|u| u.as_str().to_string());
        let person = match self.settings.person_claim.as_str() {
            "email" => email.clone().ok_or_else(|| {
                SignInError::Refused(
                    "the ID token carries no email, which names people here".into(),
                )
            })?,
            "preferred_username" => username.clone().ok_or_else(|| {
                SignInError::Refused(
                    "the ID token carries no preferred_username, which names people here".into(),
                )
            })?,
            _ => subject.clone(),
        };
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_string())
            .or(username)
            .or_else(|| email.clone())
            .unwrap_or_else(|| subject.clone());
        // A claim left out says nothing (Entra leaves it out past 200 groups); an empty one
        // says "none".
        let (groups, stated) = match claims
            .additional_claims()
            .other
            .get(&self.settings.groups_claim)
        {
            Some(serde_json::Value::Array(a)) => (
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                true,
            ),
            Some(serde_json::Value::String(s)) => (vec![s.clone()], true),
            _ => (Vec::new(), false),
        };
        Ok(Assertion {
            id: format!(
                "oidc:{}#{person}",
                self.settings.issuer.trim_end_matches('/')
            ),
            email,
            name,
            memberships: groups,
            stated,
        })
    }

    /// The role map.
    pub fn roles(&self) -> &super::settings::RoleMap {
        &self.settings.roles
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn skew_duration(skew: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(skew).unwrap_or_else(|_| chrono::Duration::zero())
}

/// An ID token that fails verification, in words.
fn refused(e: ClaimsVerificationError) -> SignInError {
    let why = match &e {
        ClaimsVerificationError::Expired(_) => {
            "the identity provider's ID token has expired (or this server's clock is wrong)"
                .to_string()
        }
        ClaimsVerificationError::InvalidAudience(_) => {
            "the ID token was issued for another application, not for Sigil".to_string()
        }
        ClaimsVerificationError::InvalidIssuer(_) => {
            "the ID token was issued by another provider".to_string()
        }
        ClaimsVerificationError::InvalidNonce(_) => {
            "the ID token does not belong to this sign-in (nonce)".to_string()
        }
        ClaimsVerificationError::SignatureVerification(_) => {
            "the ID token is not signed by the identity provider's published keys".to_string()
        }
        other => format!("the ID token does not verify: {other}"),
    };
    SignInError::Refused(why)
}
