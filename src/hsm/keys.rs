//! Key kinds, signature and decryption algorithms, and public keys read back from the token.
//!
//! Everything here is plain data: the PKCS#11 templates and mechanisms that go with each
//! choice, and the public halves of token keys in the encodings X.509 and rcgen want.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use sha2::Digest;

use super::HsmError;

/// The kind of key pair to generate on the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA with the given modulus size in bits (2048, 3072, 4096).
    Rsa(u32),
    /// ECDSA on NIST P-256.
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
}

impl KeySpec {
    /// Parse the CLI spelling: `rsa2048`, `rsa3072`, `rsa4096`, `p256`, `p384`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "rsa2048" => Some(KeySpec::Rsa(2048)),
            "rsa3072" => Some(KeySpec::Rsa(3072)),
            "rsa4096" => Some(KeySpec::Rsa(4096)),
            "p256" | "ecp256" | "ecdsap256" => Some(KeySpec::EcP256),
            "p384" | "ecp384" | "ecdsap384" => Some(KeySpec::EcP384),
            _ => None,
        }
    }

    /// The signature algorithm Sigil uses by default with a key of this kind.
    pub fn default_sign_alg(self) -> SignAlg {
        match self {
            KeySpec::Rsa(bits) if bits >= 4096 => SignAlg::RsaPkcs1Sha384,
            KeySpec::Rsa(_) => SignAlg::RsaPkcs1Sha256,
            KeySpec::EcP256 => SignAlg::EcdsaSha256,
            KeySpec::EcP384 => SignAlg::EcdsaSha384,
        }
    }
}

impl std::fmt::Display for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySpec::Rsa(b) => write!(f, "RSA-{b}"),
            KeySpec::EcP256 => write!(f, "ECDSA P-256"),
            KeySpec::EcP384 => write!(f, "ECDSA P-384"),
        }
    }
}

/// What a generated private key may be used for on the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUsage {
    /// CKA_SIGN.
    pub sign: bool,
    /// CKA_DECRYPT (RSA only; the RA key needs it for SCEP key transport).
    pub decrypt: bool,
}

/// Signature algorithms the token is asked to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RsaPkcs1Sha512,
    /// RSASSA-PKCS1-v1_5 with SHA-1 (legacy SCEP clients only).
    RsaPkcs1Sha1,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt.
    RsaPssSha256,
    /// RSASSA-PSS with SHA-384, MGF1-SHA-384, 48-byte salt.
    RsaPssSha384,
    /// RSASSA-PSS with SHA-512, MGF1-SHA-512, 64-byte salt.
    RsaPssSha512,
    /// ECDSA with SHA-256; the result is DER `Ecdsa-Sig-Value`.
    EcdsaSha256,
    /// ECDSA with SHA-384; the result is DER `Ecdsa-Sig-Value`.
    EcdsaSha384,
}

impl SignAlg {
    /// Short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            SignAlg::RsaPkcs1Sha256 => "rsa-pkcs1-sha256",
            SignAlg::RsaPkcs1Sha384 => "rsa-pkcs1-sha384",
            SignAlg::RsaPkcs1Sha512 => "rsa-pkcs1-sha512",
            SignAlg::RsaPkcs1Sha1 => "rsa-pkcs1-sha1",
            SignAlg::RsaPssSha256 => "rsa-pss-sha256",
            SignAlg::RsaPssSha384 => "rsa-pss-sha384",
            SignAlg::RsaPssSha512 => "rsa-pss-sha512",
            SignAlg::EcdsaSha256 => "ecdsa-sha256",
            SignAlg::EcdsaSha384 => "ecdsa-sha384",
        }
    }

    /// True for the RSA algorithms.
    pub fn is_rsa(self) -> bool {
        !matches!(self, SignAlg::EcdsaSha256 | SignAlg::EcdsaSha384)
    }

    pub(crate) fn mechanism(self) -> Mechanism<'static> {
        let pss = |hash_alg: MechanismType, mgf: PkcsMgfType, s_len: u32| PkcsPssParams {
            hash_alg,
            mgf,
            s_len: (s_len as u64).into(),
        };
        match self {
            SignAlg::RsaPkcs1Sha256 => Mechanism::Sha256RsaPkcs,
            SignAlg::RsaPkcs1Sha384 => Mechanism::Sha384RsaPkcs,
            SignAlg::RsaPkcs1Sha512 => Mechanism::Sha512RsaPkcs,
            SignAlg::RsaPkcs1Sha1 => Mechanism::Sha1RsaPkcs,
            SignAlg::RsaPssSha256 => Mechanism::Sha256RsaPkcsPss(pss(
                MechanismType::SHA256,
                PkcsMgfType::MGF1_SHA256,
                32u32,
            )),
            SignAlg::RsaPssSha384 => Mechanism::Sha384RsaPkcsPss(pss(
                MechanismType::SHA384,
                PkcsMgfType::MGF1_SHA384,
                48u32,
            )),
            SignAlg::RsaPssSha512 => Mechanism::Sha512RsaPkcsPss(pss(
                MechanismType::SHA512,
                PkcsMgfType::MGF1_SHA512,
                64u32,
            )),
            SignAlg::EcdsaSha256 | SignAlg::EcdsaSha384 => Mechanism::Ecdsa,
        }
    }

    /// For ECDSA, the data handed to the token is the digest (hashed here, in software).
    pub(crate) fn prepare(self, data: &[u8]) -> Vec<u8> {
        match self {
            SignAlg::EcdsaSha256 => sha2::Sha256::digest(data).to_vec(),
            SignAlg::EcdsaSha384 => sha2::Sha384::digest(data).to_vec(),
            _ => data.to_vec(),
        }
    }
}

/// Decryption (key transport) algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecryptAlg {
    /// RSAES-PKCS1-v1_5 (most SCEP clients).
    RsaPkcs1v15,
    /// RSAES-OAEP with SHA-1 and MGF1-SHA-1 (Windows, NDES; what SoftHSM 2.6 supports).
    RsaOaepSha1,
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256 (real HSMs).
    RsaOaepSha256,
}

impl DecryptAlg {
    /// Short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DecryptAlg::RsaPkcs1v15 => "rsa-pkcs1v15",
            DecryptAlg::RsaOaepSha1 => "rsa-oaep-sha1",
            DecryptAlg::RsaOaepSha256 => "rsa-oaep-sha256",
        }
    }

    pub(crate) fn mechanism(self) -> Mechanism<'static> {
        match self {
            DecryptAlg::RsaPkcs1v15 => Mechanism::RsaPkcs,
            DecryptAlg::RsaOaepSha1 => Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
                MechanismType::SHA1,
                PkcsMgfType::MGF1_SHA1,
                PkcsOaepSource::empty(),
            )),
            DecryptAlg::RsaOaepSha256 => Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
                MechanismType::SHA256,
                PkcsMgfType::MGF1_SHA256,
                PkcsOaepSource::empty(),
            )),
        }
    }
}

/// Templates for `C_GenerateKeyPair`: (mechanism, public template, private template).
pub(crate) fn generation_templates(
    spec: KeySpec,
    label: &str,
    id: &[u8],
    usage: KeyUsage,
) -> (Mechanism<'static>, Vec<Attribute>, Vec<Attribute>) {
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Wrap(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    let mut private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(usage.sign),
        // One job per key: no unwrapping or derivation with a signing or decryption key.
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    let mechanism = match spec {
        KeySpec::Rsa(bits) => {
            public.push(Attribute::ModulusBits((bits as u64).into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            public.push(Attribute::Encrypt(usage.decrypt));
            private.push(Attribute::Decrypt(usage.decrypt));
            Mechanism::RsaPkcsKeyPairGen
        }
        KeySpec::EcP256 | KeySpec::EcP384 => {
            public.push(Attribute::EcParams(curve_oid_der(spec).to_vec()));
            Mechanism::EccKeyPairGen
        }
    };
    (mechanism, public, private)
}

const P256_OID_DER: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID_DER: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

fn curve_oid_der(spec: KeySpec) -> &'static [u8] {
    match spec {
        KeySpec::EcP384 => &P384_OID_DER,
        _ => &P256_OID_DER,
    }
}

/// The public half of a token key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA modulus and public exponent (big-endian, no leading zeros needed).
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// An EC point in uncompressed form on the given curve.
    Ec {
        /// P-256 or P-384.
        spec: KeySpec,
        /// 0x04 ‖ X ‖ Y.
        point: Vec<u8>,
    },
}

impl PublicKey {
    /// Build from the attributes read off the token.
    pub(crate) fn from_attributes(attrs: &[Attribute], label: &str) -> Result<Self, HsmError> {
        let mut key_type = None;
        let (mut n, mut e, mut params, mut point) = (None, None, None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(k) => key_type = Some(*k),
                Attribute::Modulus(v) => n = Some(v.clone()),
                Attribute::PublicExponent(v) => e = Some(v.clone()),
                Attribute::EcParams(v) => params = Some(v.clone()),
                Attribute::EcPoint(v) => point = Some(v.clone()),
                _ => {}
            }
        }
        let incomplete = || HsmError::Token {
            function: "C_GetAttributeValue".into(),
            rv: format!("public key `{label}` lacks the attributes of its type"),
        };
        match key_type {
            Some(KeyType::RSA) => Ok(PublicKey::Rsa {
                n: n.ok_or_else(incomplete)?,
                e: e.ok_or_else(incomplete)?,
            }),
            Some(KeyType::EC) => {
                let params = params.ok_or_else(incomplete)?;
                let spec = if params == P256_OID_DER {
                    KeySpec::EcP256
                } else if params == P384_OID_DER {
                    KeySpec::EcP384
                } else {
                    return Err(HsmError::WrongKeyType {
                        label: label.into(),
                        actual: "an EC key on a curve Sigil does not use".into(),
                        expected: "P-256 or P-384".into(),
                        op: "use",
                    });
                };
                let raw = point.ok_or_else(incomplete)?;
                Ok(PublicKey::Ec {
                    spec,
                    point: unwrap_octet_string(&raw),
                })
            }
            _ => Err(HsmError::WrongKeyType {
                label: label.into(),
                actual: format!("{key_type:?}"),
                expected: "RSA or EC".into(),
                op: "use",
            }),
        }
    }

    /// The key kind (RSA size rounded to what the modulus says).
    pub fn spec(&self) -> KeySpec {
        match self {
            PublicKey::Rsa { n, .. } => {
                let lead = n.iter().take_while(|b| **b == 0).count();
                KeySpec::Rsa(((n.len() - lead) * 8) as u32)
            }
            PublicKey::Ec { spec, .. } => *spec,
        }
    }

    /// As an OpenSSL public key (for verification and SPKI encoding).
    pub fn to_openssl(&self) -> Result<PKey<Public>, HsmError> {
        let ossl = |e: openssl::error::ErrorStack| HsmError::Token {
            function: "public key".into(),
            rv: e.to_string(),
        };
        match self {
            PublicKey::Rsa { n, e } => {
                let rsa = Rsa::from_public_components(
                    BigNum::from_slice(n).map_err(ossl)?,
                    BigNum::from_slice(e).map_err(ossl)?,
                )
                .map_err(ossl)?;
                PKey::from_rsa(rsa).map_err(ossl)
            }
            PublicKey::Ec { spec, point } => {
                let nid = if *spec == KeySpec::EcP384 {
                    Nid::SECP384R1
                } else {
                    Nid::X9_62_PRIME256V1
                };
                let group = EcGroup::from_curve_name(nid).map_err(ossl)?;
                let mut ctx = openssl::bn::BigNumContext::new().map_err(ossl)?;
                let pt = EcPoint::from_bytes(&group, point, &mut ctx).map_err(ossl)?;
                let key = EcKey::from_public_key(&group, &pt).map_err(ossl)?;
                PKey::from_ec_key(key).map_err(ossl)
            }
        }
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Result<Vec<u8>, HsmError> {
        self.to_openssl()?
            .public_key_to_der()
            .map_err(|e| HsmError::Token {
                function: "public key".into(),
                rv: e.to_string(),
            })
    }

    /// The subjectPublicKey BIT STRING contents: `RSAPublicKey` DER, or the EC point.
    pub fn raw_bits(&self) -> Result<Vec<u8>, HsmError> {
        match self {
            PublicKey::Ec { point, .. } => Ok(point.clone()),
            PublicKey::Rsa { .. } => {
                let pkey = self.to_openssl()?;
                let rsa = pkey.rsa().map_err(|e| HsmError::Token {
                    function: "public key".into(),
                    rv: e.to_string(),
                })?;
                rsa.public_key_to_der_pkcs1().map_err(|e| HsmError::Token {
                    function: "public key".into(),
                    rv: e.to_string(),
                })
            }
        }
    }

    /// SHA-256 over the DER SubjectPublicKeyInfo, hex.
    pub fn fingerprint(&self) -> Result<String, HsmError> {
        Ok(hex::encode(sha2::Sha256::digest(self.spki_der()?)))
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point in most tokens; some return it bare.
fn unwrap_octet_string(raw: &[u8]) -> Vec<u8> {
    if raw.first() == Some(&0x04) && raw.len() > 2 {
        let (len, hdr) = match raw[1] {
            l if l < 0x80 => (l as usize, 2),
            0x81 if raw.len() > 3 => (raw[2] as usize, 3),
            _ => return raw.to_vec(),
        };
        if hdr + len == raw.len() {
            return raw[hdr..].to_vec();
        }
    }
    raw.to_vec()
}

/// Turn a raw `r ‖ s` ECDSA signature from PKCS#11 into DER `Ecdsa-Sig-Value`.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, HsmError> {
    if raw.is_empty() || raw.len() % 2 != 0 {
        return Err(HsmError::Token {
            function: "C_Sign".into(),
            rv: format!("ECDSA signature of odd length {}", raw.len()),
        });
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let bad = |e: openssl::error::ErrorStack| HsmError::Token {
        function: "C_Sign".into(),
        rv: e.to_string(),
    };
    let sig = openssl::ecdsa::EcdsaSig::from_private_components(
        BigNum::from_slice(r).map_err(bad)?,
        BigNum::from_slice(s).map_err(bad)?,
    )
    .map_err(bad)?;
    sig.to_der().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_spec_spellings() {
        assert_eq!(KeySpec::parse("RSA3072"), Some(KeySpec::Rsa(3072)));
        assert_eq!(KeySpec::parse("ec-p384"), Some(KeySpec::EcP384));
        assert_eq!(KeySpec::parse("rsa1024"), None);
    }

    #[test]
    fn ec_point_unwrapping() {
        let mut wrapped = vec![0x04, 65, 0x04];
        wrapped.extend([7u8; 64]);
        assert_eq!(unwrap_octet_string(&wrapped)[0], 0x04);
        assert_eq!(unwrap_octet_string(&wrapped).len(), 65);
        let mut bare = vec![0x04];
        bare.extend([9u8; 64]);
        assert_eq!(unwrap_octet_string(&bare), bare);
    }

    #[test]
    fn ecdsa_der_encoding() {
        let mut raw = vec![0u8; 64];
        raw[31] = 5;
        raw[63] = 0x80;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        let sig = openssl::ecdsa::EcdsaSig::from_der(&der).unwrap();
        assert_eq!(sig.r().to_vec(), vec![5]);
        assert_eq!(sig.s().to_vec(), vec![0x80]);
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_err());
    }
}
