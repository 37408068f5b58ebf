//! `private_key_jwt` (OpenID Connect Core §9, RFC 7523): Sigil proves itself to the identity
//! provider's token endpoint with a short JWT signed by a key that never leaves the token,
//! instead of a shared client secret. This file builds the JWT; the signature comes from a
//! [`ClientKey`] the caller supplies (on the token, in product code).
//!
//! The assertion is RS256 (RSASSA-PKCS1-v1_5 with SHA-256), which every provider that takes
//! private_key_jwt accepts (Entra ID and Login.gov take nothing else). Its header names the key
//! by `kid` (the RFC 7638 thumbprint, what Okta and Keycloak match on) and by `x5t` (the
//! certificate's SHA-1 thumbprint, what Entra ID matches on).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

/// Why no assertion could be made.
#[derive(Debug, thiserror::Error)]
#[error("the client key could not sign the assertion: {0}")]
pub struct ClientKeyError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The key Sigil signs its client assertions with.
pub trait ClientKey: Send + Sync {
    /// RS256 over `input` (the JWS signing input).
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, ClientKeyError>;
    /// The JWK thumbprint (RFC 7638) the provider knows the key by.
    fn kid(&self) -> &str;
    /// The certificate's SHA-1 thumbprint, base64url (`x5t`), when there is a certificate.
    fn x5t(&self) -> Option<&str>;
}

/// How long an assertion is good for: long enough for one token request.
const LIFETIME_SECS: i64 = 120;

/// The `client_assertion` for one token request to `audience` (the token endpoint): `iss` and
/// `sub` are the client id, `jti` is fresh, and it expires in two minutes.
pub fn client_assertion(
    key: &dyn ClientKey,
    client_id: &str,
    audience: &str,
    now_unix: i64,
    jti: &str,
) -> Result<String, ClientKeyError> {
    let mut header = json!({"alg": "RS256", "typ": "JWT", "kid": key.kid()});
    if let Some(x5t) = key.x5t() {
        header["x5t"] = json!(x5t);
    }
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": jti,
        "iat": now_unix,
        "nbf": now_unix - 5,
        "exp": now_unix + LIFETIME_SECS,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// The RFC 7638 thumbprint of an RSA public key (`n`, `e` big-endian, no leading zeros).
pub fn rsa_thumbprint(n: &[u8], e: &[u8]) -> String {
    // The members in lexicographic order, no whitespace (RFC 7638 §3.3).
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(e),
        URL_SAFE_NO_PAD.encode(n)
    );
    URL_SAFE_NO_PAD.encode(openssl::sha::sha256(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::sign::{Signer, Verifier};

    struct SoftKey(PKey<Private>);

    impl ClientKey for SoftKey {
        fn sign(&self, input: &[u8]) -> Result<Vec<u8>, ClientKeyError> {
            let mut s = Signer::new(MessageDigest::sha256(), &self.0)
                .map_err(|e| ClientKeyError(Box::new(e)))?;
            s.update(input).map_err(|e| ClientKeyError(Box::new(e)))?;
            s.sign_to_vec().map_err(|e| ClientKeyError(Box::new(e)))
        }
        fn kid(&self) -> &str {
            "kid-1"
        }
        fn x5t(&self) -> Option<&str> {
            Some("thumb")
        }
    }

    #[test]
    fn an_assertion_verifies_and_says_who_for_whom_until_when() {
        let key = SoftKey(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap());
        let jwt = client_assertion(&key, "sigil", "https://idp/token", 1_000_000, "j1").unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "kid-1");
        assert_eq!(header["x5t"], "thumb");
        assert_eq!(claims["iss"], "sigil");
        assert_eq!(claims["sub"], "sigil");
        assert_eq!(claims["aud"], "https://idp/token");
        assert_eq!(claims["jti"], "j1");
        assert_eq!(claims["exp"], 1_000_000 + LIFETIME_SECS);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let mut v = Verifier::new(MessageDigest::sha256(), &key.0).unwrap();
        v.update(format!("{}.{}", parts[0], parts[1]).as_bytes())
            .unwrap();
        assert!(v.verify(&sig).unwrap());
        // A changed claim no longer verifies.
        let mut v = Verifier::new(MessageDigest::sha256(), &key.0).unwrap();
        v.update(format!("{}.{}x", parts[0], parts[1]).as_bytes())
            .unwrap();
        assert!(!v.verify(&sig).unwrap());
    }

    #[test]
    fn the_thumbprint_is_rfc_7638s() {
        // RFC 7638 §3.1's example key and thumbprint.
        let n = URL_SAFE_NO_PAD
            .decode("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
            .unwrap();
        let e = URL_SAFE_NO_PAD.decode("AQAB").unwrap();
        assert_eq!(
            rsa_thumbprint(&n, &e),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
