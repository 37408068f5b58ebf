//! ASN.1 helpers of the codec: object identifiers, algorithm tables, reading strings of any
//! DirectoryString type, and flattening BER constructed OCTET STRINGs.

use der::asn1::{Any, ObjectIdentifier as Oid, OctetString, PrintableString, SetOfVec};
use der::{Decode, Encode, Tag, Tagged};
use x509_cert::attr::Attribute;

use super::ScepError;

/// SCEP and CMS object identifiers.
pub mod oid {
    use der::asn1::ObjectIdentifier as Oid;

    /// messageType.
    pub const MESSAGE_TYPE: Oid = Oid::new_unwrap("2.16.840.1.113733.1.9.2");
    /// pkiStatus.
    pub const PKI_STATUS: Oid = Oid::new_unwrap("2.16.840.1.113733.1.9.3");
    /// failInfo.
    pub const FAIL_INFO: Oid = Oid::new_unwrap("2.16.840.1.113733.1.9.4");
    /// senderNonce.
    pub const SENDER_NONCE: Oid = Oid::new_unwrap("2.16.840.1.113733.1.9.5");
    /// recipientNonce.
    pub const RECIPIENT_NONCE: Oid = Oid::new_unwrap("2.16.840.1.113733.1.9.6");
    /// transactionID.
    pub const TRANSACTION_ID: Oid = Oid::new_unwrap("2.16.840.1.113733.1.9.7");
    /// failInfoText (RFC 8894).
    pub const FAIL_INFO_TEXT: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.24.1");
    /// id-data.
    pub const DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
    /// id-signedData.
    pub const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
    /// id-envelopedData.
    pub const ENVELOPED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.3");
    /// contentType attribute.
    pub const CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
    /// messageDigest attribute.
    pub const MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
    /// signingTime attribute.
    pub const SIGNING_TIME: Oid = Oid::new_unwrap("1.2.840.113549.1.9.5");
    /// rsaEncryption.
    pub const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    /// id-RSAES-OAEP.
    pub const RSAES_OAEP: Oid = Oid::new_unwrap("1.2.840.113549.1.1.7");
    /// sha1WithRSAEncryption.
    pub const SHA1_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.5");
    /// sha256WithRSAEncryption.
    pub const SHA256_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
    /// sha384WithRSAEncryption.
    pub const SHA384_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
    /// sha512WithRSAEncryption.
    pub const SHA512_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
    /// ecdsa-with-SHA256.
    pub const ECDSA_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
    /// ecdsa-with-SHA384.
    pub const ECDSA_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
    /// ecdsa-with-SHA512.
    pub const ECDSA_SHA512: Oid = Oid::new_unwrap("1.2.840.10045.4.3.4");
    /// id-sha1.
    pub const SHA1: Oid = Oid::new_unwrap("1.3.14.3.2.26");
    /// id-sha256.
    pub const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
    /// id-sha384.
    pub const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
    /// id-sha512.
    pub const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
    /// id-mgf1.
    pub const MGF1: Oid = Oid::new_unwrap("1.2.840.113549.1.1.8");
    /// aes128-CBC.
    pub const AES128_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.2");
    /// aes192-CBC.
    pub const AES192_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.22");
    /// aes256-CBC.
    pub const AES256_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.42");
    /// des-ede3-cbc.
    pub const DES_EDE3_CBC: Oid = Oid::new_unwrap("1.2.840.113549.3.7");
    /// desCBC.
    pub const DES_CBC: Oid = Oid::new_unwrap("1.3.14.3.2.7");
    /// PKCS#9 challengePassword.
    pub const CHALLENGE_PASSWORD: Oid = Oid::new_unwrap("1.2.840.113549.1.9.7");
}

/// Digest algorithms SCEP uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlg {
    /// SHA-1 (legacy clients).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl DigestAlg {
    /// From the digest algorithm OID.
    pub fn from_oid(o: &Oid) -> Option<Self> {
        Some(match *o {
            oid::SHA1 => DigestAlg::Sha1,
            oid::SHA256 => DigestAlg::Sha256,
            oid::SHA384 => DigestAlg::Sha384,
            oid::SHA512 => DigestAlg::Sha512,
            _ => return None,
        })
    }

    /// The OID.
    pub fn oid(self) -> Oid {
        match self {
            DigestAlg::Sha1 => oid::SHA1,
            DigestAlg::Sha256 => oid::SHA256,
            DigestAlg::Sha384 => oid::SHA384,
            DigestAlg::Sha512 => oid::SHA512,
        }
    }

    /// OpenSSL's digest.
    pub fn md(self) -> openssl::hash::MessageDigest {
        match self {
            DigestAlg::Sha1 => openssl::hash::MessageDigest::sha1(),
            DigestAlg::Sha256 => openssl::hash::MessageDigest::sha256(),
            DigestAlg::Sha384 => openssl::hash::MessageDigest::sha384(),
            DigestAlg::Sha512 => openssl::hash::MessageDigest::sha512(),
        }
    }

    /// Hash `data`.
    pub fn digest(self, data: &[u8]) -> Result<Vec<u8>, ScepError> {
        openssl::hash::hash(self.md(), data)
            .map(|d| d.to_vec())
            .map_err(|e| ScepError::Crypto(crate::reason::Reason::caused_by(e)))
    }

    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlg::Sha1 => "SHA-1",
            DigestAlg::Sha256 => "SHA-256",
            DigestAlg::Sha384 => "SHA-384",
            DigestAlg::Sha512 => "SHA-512",
        }
    }
}

/// Content-encryption algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentCipher {
    /// AES-128-CBC (Sigil's default for replies).
    Aes128Cbc,
    /// AES-192-CBC.
    Aes192Cbc,
    /// AES-256-CBC.
    Aes256Cbc,
    /// DES-EDE3-CBC (macOS without AES, many routers).
    Des3Cbc,
    /// single DES-CBC (legacy opt-in only).
    DesCbc,
}

impl ContentCipher {
    /// From the algorithm OID.
    pub fn from_oid(o: &Oid) -> Option<Self> {
        Some(match *o {
            oid::AES128_CBC => ContentCipher::Aes128Cbc,
            oid::AES192_CBC => ContentCipher::Aes192Cbc,
            oid::AES256_CBC => ContentCipher::Aes256Cbc,
            oid::DES_EDE3_CBC => ContentCipher::Des3Cbc,
            oid::DES_CBC => ContentCipher::DesCbc,
            _ => return None,
        })
    }

    /// The OID.
    pub fn oid(self) -> Oid {
        match self {
            ContentCipher::Aes128Cbc => oid::AES128_CBC,
            ContentCipher::Aes192Cbc => oid::AES192_CBC,
            ContentCipher::Aes256Cbc => oid::AES256_CBC,
            ContentCipher::Des3Cbc => oid::DES_EDE3_CBC,
            ContentCipher::DesCbc => oid::DES_CBC,
        }
    }

    /// OpenSSL's cipher. Single DES lives in OpenSSL 3's legacy provider, loaded on first use.
    pub fn cipher(self) -> openssl::symm::Cipher {
        use openssl::symm::Cipher;
        if self == ContentCipher::DesCbc {
            load_legacy_provider();
        }
        match self {
            ContentCipher::Aes128Cbc => Cipher::aes_128_cbc(),
            ContentCipher::Aes192Cbc => Cipher::aes_192_cbc(),
            ContentCipher::Aes256Cbc => Cipher::aes_256_cbc(),
            ContentCipher::Des3Cbc => Cipher::des_ede3_cbc(),
            ContentCipher::DesCbc => Cipher::des_cbc(),
        }
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            ContentCipher::Aes128Cbc => 16,
            ContentCipher::Aes192Cbc => 24,
            ContentCipher::Aes256Cbc => 32,
            ContentCipher::Des3Cbc => 24,
            ContentCipher::DesCbc => 8,
        }
    }

    /// IV (block) length in bytes.
    pub fn iv_len(self) -> usize {
        match self {
            ContentCipher::Des3Cbc | ContentCipher::DesCbc => 8,
            _ => 16,
        }
    }

    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            ContentCipher::Aes128Cbc => "AES-128-CBC",
            ContentCipher::Aes192Cbc => "AES-192-CBC",
            ContentCipher::Aes256Cbc => "AES-256-CBC",
            ContentCipher::Des3Cbc => "DES-EDE3-CBC",
            ContentCipher::DesCbc => "DES-CBC",
        }
    }
}

/// Load OpenSSL's legacy provider (for single DES) next to the default one, once.
fn load_legacy_provider() {
    use std::sync::OnceLock;
    static LEGACY: OnceLock<Option<openssl::provider::Provider>> = OnceLock::new();
    LEGACY.get_or_init(|| openssl::provider::Provider::try_load(None, "legacy", true).ok());
}

/// Read a string attribute value of any string type (PrintableString, UTF8String, IA5String,
/// T61String as Latin-1, BMPString as UTF-16BE, or bytes in an OCTET STRING).
pub fn any_to_string(v: &Any) -> Option<String> {
    let bytes = v.value();
    match v.tag() {
        Tag::PrintableString | Tag::Utf8String | Tag::Ia5String | Tag::VisibleString => {
            String::from_utf8(bytes.to_vec()).ok()
        }
        Tag::TeletexString => Some(bytes.iter().map(|b| *b as char).collect()),
        Tag::BmpString => {
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::OctetString => String::from_utf8(bytes.to_vec()).ok(),
        _ => None,
    }
}

/// The first value of attribute `which`, if present.
pub fn find_attr(attrs: &[Attribute], which: Oid) -> Option<&Any> {
    attrs
        .iter()
        .find(|a| a.oid == which)
        .and_then(|a| a.values.iter().next())
}

/// Build an attribute with one value.
pub fn attr(which: Oid, value: Any) -> Result<Attribute, ScepError> {
    let mut values = SetOfVec::new();
    values.insert(value).map_err(ScepError::encode)?;
    Ok(Attribute { oid: which, values })
}

/// A PrintableString value.
pub fn printable(s: &str) -> Result<Any, ScepError> {
    let p = PrintableString::new(s).map_err(ScepError::encode)?;
    Any::encode_from(&p).map_err(ScepError::encode)
}

/// An OCTET STRING value.
pub fn octets(b: &[u8]) -> Result<Any, ScepError> {
    let o = OctetString::new(b.to_vec()).map_err(ScepError::encode)?;
    Any::encode_from(&o).map_err(ScepError::encode)
}

/// The contents of a (possibly constructed, BER) OCTET STRING given as an `Any`.
pub fn octet_string_contents(v: &Any) -> Result<Vec<u8>, ScepError> {
    let der = v.to_der().map_err(ScepError::encode)?;
    let mut out = Vec::new();
    flatten_octets(&der, &mut out, 0)?;
    Ok(out)
}

/// Append the contents of the OCTET STRING TLV at the start of `input` (primitive or
/// constructed, definite or indefinite length) to `out`; returns the TLV's total length.
pub fn flatten_octets(input: &[u8], out: &mut Vec<u8>, depth: usize) -> Result<usize, ScepError> {
    if depth > 16 {
        return Err(ScepError::Malformed(
            "OCTET STRING nested too deeply".into(),
        ));
    }
    let bad = || ScepError::Malformed("truncated OCTET STRING".into());
    let tag = *input.first().ok_or_else(bad)?;
    let (len, hdr) = read_len(input.get(1..).ok_or_else(bad)?)?;
    let hdr = 1 + hdr;
    match (tag, len) {
        (0x04, Some(n)) | (0x80, Some(n)) => {
            let body = input.get(hdr..hdr + n).ok_or_else(bad)?;
            out.extend_from_slice(body);
            Ok(hdr + n)
        }
        (0x24, Some(n)) | (0xa0, Some(n)) => {
            let body = input.get(hdr..hdr + n).ok_or_else(bad)?;
            let mut pos = 0;
            while pos < body.len() {
                pos += flatten_octets(&body[pos..], out, depth + 1)?;
            }
            Ok(hdr + n)
        }
        (0x24, None) | (0xa0, None) => {
            let mut pos = hdr;
            loop {
                let rest = input.get(pos..).ok_or_else(bad)?;
                if rest.starts_with(&[0, 0]) {
                    return Ok(pos + 2);
                }
                if rest.is_empty() {
                    return Err(bad());
                }
                pos += flatten_octets(rest, out, depth + 1)?;
            }
        }
        _ => Err(ScepError::Malformed(
            format!("expected an OCTET STRING, found tag 0x{tag:02x}").into(),
        )),
    }
}

/// Read a BER length: `Some(n)` for definite, `None` for indefinite; plus header bytes used.
fn read_len(input: &[u8]) -> Result<(Option<usize>, usize), ScepError> {
    let bad = || ScepError::Malformed("bad length".into());
    let first = *input.first().ok_or_else(bad)?;
    if first < 0x80 {
        return Ok((Some(first as usize), 1));
    }
    if first == 0x80 {
        return Ok((None, 1));
    }
    let n = (first & 0x7f) as usize;
    if n > 4 {
        return Err(bad());
    }
    let bytes = input.get(1..1 + n).ok_or_else(bad)?;
    let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
    Ok((Some(len), 1 + n))
}

/// The TLVs inside a constructed value (`Any::value()` of a SEQUENCE, SET or [n]), read with
/// BER rules (indefinite lengths allowed).
pub fn children(value: &[u8]) -> Result<Vec<Any>, ScepError> {
    use der::Reader;
    let mut r = der::SliceReader::new_with_encoding_rules(value, der::EncodingRules::Ber)
        .map_err(ScepError::encode)?;
    let mut out = Vec::new();
    while !r.is_finished() {
        // An end-of-contents marker closes an indefinite-length value.
        if r.peek_byte() == Some(0) {
            break;
        }
        out.push(
            Any::decode(&mut r)
                .map_err(|e| ScepError::Malformed(crate::reason::Reason::caused_by(e)))?,
        );
    }
    Ok(out)
}

/// Decode `T` from BER (or DER) bytes.
pub fn from_ber<'a, T: Decode<'a>>(bytes: &'a [u8], what: &str) -> Result<T, ScepError>
where
    T::Error: std::error::Error + Send + Sync + 'static,
{
    T::from_ber(bytes).map_err(|e| ScepError::Malformed(crate::reason::Reason::context(what, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_primitive_and_constructed_octet_strings() {
        let mut out = Vec::new();
        assert_eq!(flatten_octets(&[0x04, 0x02, 1, 2], &mut out, 0).unwrap(), 4);
        assert_eq!(out, [1, 2]);
        out.clear();
        // constructed, indefinite, two chunks
        let ber = [0x24, 0x80, 0x04, 0x01, 9, 0x04, 0x02, 8, 7, 0, 0];
        assert_eq!(flatten_octets(&ber, &mut out, 0).unwrap(), ber.len());
        assert_eq!(out, [9, 8, 7]);
        out.clear();
        // constructed, definite
        let ber = [0x24, 0x06, 0x04, 0x01, 1, 0x04, 0x01, 2];
        flatten_octets(&ber, &mut out, 0).unwrap();
        assert_eq!(out, [1, 2]);
        for bad in [
            &[0x04u8, 0x05, 1][..],
            &[0x24, 0x80, 0x04, 0x01, 1],
            &[0x02, 0x01, 1],
            &[],
        ] {
            assert!(flatten_octets(bad, &mut Vec::new(), 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_every_directory_string() {
        let ps = printable("abc 123").unwrap();
        assert_eq!(any_to_string(&ps).as_deref(), Some("abc 123"));
        let bmp = Any::new(Tag::BmpString, vec![0, b'h', 0, b'i']).unwrap();
        assert_eq!(any_to_string(&bmp).as_deref(), Some("hi"));
        let t61 = Any::new(Tag::TeletexString, vec![b'x', 0xe9]).unwrap();
        assert_eq!(any_to_string(&t61).as_deref(), Some("xé"));
        let utf8 = Any::new(Tag::Utf8String, "ünï".as_bytes().to_vec()).unwrap();
        assert_eq!(any_to_string(&utf8).as_deref(), Some("ünï"));
        let int = Any::new(Tag::Integer, vec![1]).unwrap();
        assert_eq!(any_to_string(&int), None);
    }
}
