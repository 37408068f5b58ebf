//! `TokenKey`: an rcgen signing key whose private half stays on the token.
//!
//! rcgen hands over the DER to be signed; the token signs it; rcgen assembles the certificate,
//! CSR or CRL. The key bytes are never in this process.

use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};

use super::{Hsm, HsmError, KeySpec, KeyUri, PublicKey, SignAlg};

/// A token key usable wherever rcgen wants a [`SigningKey`].
///
/// Its `sign` blocks on the token: call it from a blocking thread (`spawn_blocking`) in async
/// code.
#[derive(Debug, Clone)]
pub struct TokenKey {
    hsm: Hsm,
    uri: KeyUri,
    alg: SignAlg,
    public: PublicKey,
    raw_public: Vec<u8>,
    rcgen_alg: &'static SignatureAlgorithm,
}

impl TokenKey {
    /// Look up the public half of `uri` and pair it with the default algorithm for its type.
    pub fn open(hsm: &Hsm, uri: &KeyUri) -> Result<TokenKey, HsmError> {
        let public = hsm.public_key_blocking(uri)?;
        let alg = public.spec().default_sign_alg();
        Self::with_alg(hsm, uri, public, alg)
    }

    /// As [`TokenKey::open`] with a chosen signature algorithm.
    pub fn with_alg(
        hsm: &Hsm,
        uri: &KeyUri,
        public: PublicKey,
        alg: SignAlg,
    ) -> Result<TokenKey, HsmError> {
        let rcgen_alg = rcgen_alg(public.spec(), alg).ok_or_else(|| HsmError::WrongKeyType {
            label: uri.object.clone().unwrap_or_default(),
            actual: public.spec().to_string(),
            expected: format!("a key that fits {}", alg.name()),
            op: "certificate signing",
        })?;
        Ok(TokenKey {
            hsm: hsm.clone(),
            uri: uri.clone(),
            alg,
            raw_public: public.raw_bits()?,
            public,
            rcgen_alg,
        })
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The signature algorithm used.
    pub fn sign_alg(&self) -> SignAlg {
        self.alg
    }

    /// The key's URI.
    pub fn uri(&self) -> &KeyUri {
        &self.uri
    }

    /// The token this key lives on.
    pub fn hsm(&self) -> &Hsm {
        &self.hsm
    }

    /// The AlgorithmIdentifier (DER) of this key's signatures, for structures Sigil assembles
    /// itself (OCSP responses).
    pub fn algorithm_identifier_der(&self) -> Vec<u8> {
        // SEQUENCE { OID, NULL } for RSA PKCS#1 v1.5; SEQUENCE { OID } for ECDSA.
        let (oid, null): (&[u8], bool) = match self.alg {
            SignAlg::RsaPkcs1Sha384 => (
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
                true,
            ),
            SignAlg::RsaPkcs1Sha512 => (
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
                true,
            ),
            SignAlg::EcdsaSha256 => (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02], false),
            SignAlg::EcdsaSha384 => (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03], false),
            // TokenKey is only ever made with the algorithms rcgen_alg accepts.
            _ => (
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
                true,
            ),
        };
        let mut body = vec![0x06, oid.len() as u8];
        body.extend_from_slice(oid);
        if null {
            body.extend_from_slice(&[0x05, 0x00]);
        }
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        out
    }

    /// Sign `msg` on the token (blocking).
    pub fn sign_blocking(&self, msg: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.hsm.sign_blocking(&self.uri, self.alg, msg)
    }
}

fn rcgen_alg(spec: KeySpec, alg: SignAlg) -> Option<&'static SignatureAlgorithm> {
    match (spec, alg) {
        (KeySpec::Rsa(_), SignAlg::RsaPkcs1Sha256) => Some(&rcgen::PKCS_RSA_SHA256),
        (KeySpec::Rsa(_), SignAlg::RsaPkcs1Sha384) => Some(&rcgen::PKCS_RSA_SHA384),
        (KeySpec::Rsa(_), SignAlg::RsaPkcs1Sha512) => Some(&rcgen::PKCS_RSA_SHA512),
        (KeySpec::EcP256, SignAlg::EcdsaSha256) => Some(&rcgen::PKCS_ECDSA_P256_SHA256),
        (KeySpec::EcP384, SignAlg::EcdsaSha384) => Some(&rcgen::PKCS_ECDSA_P384_SHA384),
        _ => None,
    }
}

impl PublicKeyData for TokenKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw_public
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.rcgen_alg
    }
}

impl SigningKey for TokenKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.hsm
            .sign_blocking(&self.uri, self.alg, msg)
            .map_err(|e| {
                tracing::error!(key = %self.uri, error = %e, "token signature failed");
                rcgen::Error::RemoteKeyError
            })
    }
}
