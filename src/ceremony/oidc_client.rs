//! `sigil identity client-key`: the key Sigil signs its OpenID Connect client assertions with
//! (`private_key_jwt`), made on the token so that no client secret exists to leak. An RSA-2048
//! key (RS256 is what every provider takes) and a self-signed certificate for it (Entra ID and
//! Login.gov register a certificate; Okta and Keycloak a JWKS): both are printed for the
//! provider's registration, and the certificate stays on the token beside the key.
//!
//! [`TokenClientKey`] is the same key at run time: `sigil serve` hands it to the sign-in.

use rcgen::{DistinguishedName, DnType, IsCa, KeyUsagePurpose};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use super::CeremonyError;
use crate::hsm::{Hsm, HsmError, KeySpec, KeyUri, KeyUsage, SignAlg, TokenKey};
use crate::identity::client_assertion::{rsa_thumbprint, ClientKey, ClientKeyError};
use crate::pki;

/// The client key as the provider registers it.
#[derive(Debug, Clone)]
pub struct ClientKeyExport {
    /// The self-signed certificate (DER).
    pub certificate: Vec<u8>,
    /// `{"keys":[…]}` with the public key (`kid`, `x5c`, `x5t`, `x5t#S256`).
    pub jwks: Value,
    /// Whether the key was made now (false: it was on the token already).
    pub made: bool,
}

/// The client key `label` on the token, made (with its certificate) the first time.
pub fn client_key(
    hsm: &Hsm,
    label: &str,
    client_id: &str,
) -> Result<ClientKeyExport, CeremonyError> {
    let uri = KeyUri::labelled(hsm.token(), label);
    let mut made = false;
    if !hsm.key_exists(&uri)? {
        hsm.generate_blocking(
            KeySpec::Rsa(2048),
            label,
            KeyUsage {
                sign: true,
                decrypt: false,
            },
        )?;
        made = true;
    }
    let key = rs256_key(hsm, &uri)?;
    let certificate = match hsm.certificate_blocking(label)? {
        Some(der) if !made => der,
        _ => {
            let mut dn = DistinguishedName::new();
            dn.push(
                DnType::CommonName,
                format!("Sigil OpenID client {client_id}"),
            );
            let mut params = pki::ca_params(dn, 730)?;
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
            let der = pki::self_signed_ca(&key, &params)?;
            hsm.store_certificate_blocking(label, &der)?;
            der
        }
    };
    Ok(ClientKeyExport {
        jwks: jwks(&key, &certificate)?,
        certificate,
        made,
    })
}

fn rs256_key(hsm: &Hsm, uri: &KeyUri) -> Result<TokenKey, HsmError> {
    let public = hsm.public_key_blocking(uri)?;
    if !matches!(public.spec(), KeySpec::Rsa(_)) {
        return Err(HsmError::WrongKeyType {
            label: uri.object.clone().unwrap_or_default(),
            actual: public.spec().to_string(),
            expected: "an RSA key (client assertions are RS256)".into(),
            op: "OpenID client assertion",
        });
    }
    TokenKey::with_alg(hsm, uri, public, SignAlg::RsaPkcs1Sha256)
}

fn b64url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// `(n, e)` of the key, big-endian.
fn rsa_numbers(key: &TokenKey) -> Result<(Vec<u8>, Vec<u8>), CeremonyError> {
    let pkey = key.public_key().to_openssl()?;
    let rsa = pkey
        .rsa()
        .map_err(|e| CeremonyError::Invalid(format!("client key: {e}")))?;
    Ok((rsa.n().to_vec(), rsa.e().to_vec()))
}

fn x5t(certificate: &[u8]) -> String {
    b64url(&openssl::sha::sha1(certificate))
}

fn jwks(key: &TokenKey, certificate: &[u8]) -> Result<Value, CeremonyError> {
    use base64::Engine;
    let (n, e) = rsa_numbers(key)?;
    Ok(json!({"keys": [{
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": rsa_thumbprint(&n, &e),
        "n": b64url(&n),
        "e": b64url(&e),
        "x5c": [base64::engine::general_purpose::STANDARD.encode(certificate)],
        "x5t": x5t(certificate),
        "x5t#S256": b64url(&openssl::sha::sha256(certificate)),
    }]}))
}

/// The client key on the token, signing assertions for `sigil serve`.
pub struct TokenClientKey {
    key: TokenKey,
    kid: String,
    x5t: Option<String>,
}

impl TokenClientKey {
    /// Open the key `label` (made by `sigil identity client-key`).
    pub fn open(hsm: &Hsm, label: &str) -> Result<TokenClientKey, CeremonyError> {
        let uri = KeyUri::labelled(hsm.token(), label);
        if !hsm.key_exists(&uri)? {
            return Err(CeremonyError::Invalid(format!(
                "identity.oidc.client_key: no key `{label}` on token `{}`: run `sigil identity client-key` first",
                hsm.token()
            )));
        }
        let key = rs256_key(hsm, &uri)?;
        let (n, e) = rsa_numbers(&key)?;
        let x5t = hsm.certificate_blocking(label)?.map(|c| x5t(&c));
        Ok(TokenClientKey {
            kid: rsa_thumbprint(&n, &e),
            key,
            x5t,
        })
    }
}

impl ClientKey for TokenClientKey {
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, ClientKeyError> {
        self.key
            .sign_blocking(input)
            .map_err(|e| ClientKeyError(Box::new(e)))
    }

    fn kid(&self) -> &str {
        &self.kid
    }

    fn x5t(&self) -> Option<&str> {
        self.x5t.as_deref()
    }
}
