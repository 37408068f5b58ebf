//! The RA key as the SCEP codec sees it: decryption and signing on the token.

use crate::authority::RaKeys;
use crate::hsm::{DecryptAlg, HsmError, SignAlg};
use crate::reason::Reason;
use crate::scep::{DigestAlg, KeyTransport, RaKey, ScepError};

/// The RA's token keys (one key, or separate signing and decryption keys) as the codec's
/// [`RaKey`].
#[derive(Debug, Clone)]
pub struct TokenRaKey(pub RaKeys);

/// Errors that mean the token cannot work right now (the client should retry later), as
/// opposed to errors about this input.
fn unavailable(e: &HsmError) -> bool {
    matches!(
        e,
        HsmError::SessionLost(_)
            | HsmError::Busy(_)
            | HsmError::Overloaded(_)
            | HsmError::Worker(_)
            | HsmError::ModuleMissing(_)
            | HsmError::ModuleLoad { .. }
            | HsmError::TokenNotFound { .. }
            | HsmError::WrongPin(_)
            | HsmError::PinLocked(_)
            | HsmError::KeyNotFound { .. }
            | HsmError::Pin(_)
    )
}

fn map(e: HsmError) -> ScepError {
    match e {
        HsmError::MechanismUnsupported(_) => ScepError::UnsupportedAlgorithm(e.to_string()),
        e if unavailable(&e) => ScepError::Token(Reason::caused_by(e)),
        // Anything else the token says about a ciphertext is about the input; the codec turns
        // it into implicit rejection.
        other => ScepError::Decrypt(Reason::caused_by(other)),
    }
}

impl RaKey for TokenRaKey {
    fn decrypt_key(&self, transport: KeyTransport, encrypted: &[u8]) -> Result<Vec<u8>, ScepError> {
        let alg = match transport {
            KeyTransport::RsaPkcs1v15 => DecryptAlg::RsaPkcs1v15,
            KeyTransport::RsaOaep(DigestAlg::Sha1) => DecryptAlg::RsaOaepSha1,
            KeyTransport::RsaOaep(DigestAlg::Sha256) => DecryptAlg::RsaOaepSha256,
            KeyTransport::RsaOaep(other) => {
                return Err(ScepError::UnsupportedAlgorithm(format!(
                    "RSA-OAEP with {}",
                    other.name()
                )))
            }
        };
        self.0
            .hsm
            .decrypt_blocking(&self.0.decrypt, alg, encrypted)
            .map_err(map)
    }

    fn sign(&self, digest: DigestAlg, data: &[u8]) -> Result<Vec<u8>, ScepError> {
        let alg = match digest {
            DigestAlg::Sha1 => SignAlg::RsaPkcs1Sha1,
            DigestAlg::Sha256 => SignAlg::RsaPkcs1Sha256,
            DigestAlg::Sha384 => SignAlg::RsaPkcs1Sha384,
            DigestAlg::Sha512 => SignAlg::RsaPkcs1Sha512,
        };
        // Any signing failure is the server's, never the request's: retry later.
        self.0
            .hsm
            .sign_blocking(&self.0.sign, alg, data)
            .map_err(|e| ScepError::Token(Reason::caused_by(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_token_failure_keeps_the_tokens_error_as_its_cause() {
        let lost = HsmError::SessionLost(Box::new(HsmError::Busy(3)));
        let e = map(lost);
        assert!(matches!(e, ScepError::Token(_)), "{e:?}");
        // ScepError → Reason → the HsmError itself, whose own cause is the first failure.
        let reason = e.source().expect("a reason");
        let hsm = reason
            .source()
            .and_then(|c| c.downcast_ref::<HsmError>())
            .expect("the token's error, kept whole");
        assert!(matches!(hsm, HsmError::SessionLost(_)));
        assert_eq!(
            hsm.source().map(|c| c.to_string()),
            Some(HsmError::Busy(3).to_string())
        );
        assert_eq!(
            crate::reason::chain(&e),
            format!("RA key operation failed: {hsm}")
        );
    }

    #[test]
    fn a_bad_ciphertext_is_the_inputs_fault_not_the_tokens() {
        let e = map(HsmError::BadInput {
            op: "decrypt",
            rv: "EncryptedDataInvalid".into(),
        });
        assert!(matches!(e, ScepError::Decrypt(_)), "{e:?}");
    }
}
