//! RFC 7512 PKCS#11 URIs: how Sigil names a key or certificate on a token.
//!
//! Only the path attributes Sigil needs are read: `token`, `object`, `id` and `type`.
//! Query attributes (`?pin-source=…`) are rejected on purpose: the PIN never travels in a URI.
//! Values are percent-decoded; `id` is raw bytes (`%01%02`).

use std::fmt;
use std::str::FromStr;

use super::HsmError;

/// The class of object a URI names (`type=` in RFC 7512).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// A private key (the default for signing and decryption).
    Private,
    /// A public key.
    Public,
    /// A certificate.
    Cert,
}

/// A parsed PKCS#11 URI such as `pkcs11:token=sigil;object=ca-key`.
///
/// ```
/// use sigil::hsm::KeyUri;
/// let uri: KeyUri = "pkcs11:token=sigil;object=ca-key".parse().unwrap();
/// assert_eq!(uri.object.as_deref(), Some("ca-key"));
/// assert_eq!(uri.token.as_deref(), Some("sigil"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyUri {
    /// Token label (`token=`); when absent, the configured token is meant.
    pub token: Option<String>,
    /// Object label (`object=`, CKA_LABEL).
    pub object: Option<String>,
    /// Object identifier (`id=`, CKA_ID), raw bytes.
    pub id: Option<Vec<u8>>,
    /// Object class (`type=`); `None` means "whatever the operation needs".
    pub object_type: Option<ObjectType>,
}

impl KeyUri {
    /// A URI naming an object by label on the given token.
    pub fn labelled(token: &str, label: &str) -> Self {
        KeyUri {
            token: Some(token.to_owned()),
            object: Some(label.to_owned()),
            id: None,
            object_type: None,
        }
    }

    /// The object label, or an error naming the URI when it has none.
    pub fn label(&self) -> Result<&str, HsmError> {
        self.object.as_deref().ok_or_else(|| HsmError::BadUri {
            uri: self.to_string(),
            reason: "it names no object (add ;object=LABEL)".into(),
        })
    }
}

fn pct_decode(s: &str, uri: &str) -> Result<Vec<u8>, HsmError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(|| HsmError::BadUri {
                uri: uri.into(),
                reason: "truncated percent escape".into(),
            })?;
            let hex = std::str::from_utf8(hex).ok();
            let v = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| HsmError::BadUri {
                    uri: uri.into(),
                    reason: "bad percent escape".into(),
                })?;
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn pct_encode(bytes: &[u8], all: bool) -> String {
    let mut s = String::new();
    for &b in bytes {
        let plain = !all && (b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if plain {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02x}"));
        }
    }
    s
}

impl FromStr for KeyUri {
    type Err = HsmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| HsmError::BadUri {
            uri: s.into(),
            reason: reason.into(),
        };
        let rest = s
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("it must start with `pkcs11:`"))?;
        if let Some((path, _)) = s.split_once('?') {
            // The query may hold a PIN (pin-value=): never repeat it.
            return Err(HsmError::BadUri {
                uri: format!("{path}?…"),
                reason:
                    "query attributes are not accepted (the PIN comes from pin_file or pin_env)"
                        .into(),
            });
        }
        let mut uri = KeyUri {
            token: None,
            object: None,
            id: None,
            object_type: None,
        };
        for part in rest.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad("each attribute must be name=value"))?;
            let text = || -> Result<String, HsmError> {
                String::from_utf8(pct_decode(v, s)?).map_err(|_| bad("value is not UTF-8"))
            };
            match k {
                "token" => uri.token = Some(text()?),
                "object" => uri.object = Some(text()?),
                "id" => uri.id = Some(pct_decode(v, s)?),
                "type" => {
                    uri.object_type = Some(match v {
                        "private" => ObjectType::Private,
                        "public" => ObjectType::Public,
                        "cert" => ObjectType::Cert,
                        _ => return Err(bad("type must be private, public or cert")),
                    })
                }
                // Other RFC 7512 path attributes narrow the match; Sigil finds tokens by label.
                "manufacturer"
                | "model"
                | "serial"
                | "library-description"
                | "library-manufacturer"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer"
                | "slot-id" => {}
                _ => return Err(bad(&format!("unknown attribute `{k}`"))),
            }
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(bad("it names no object (add ;object=LABEL)"));
        }
        Ok(uri)
    }
}

impl fmt::Display for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(t) = &self.token {
            parts.push(format!("token={}", pct_encode(t.as_bytes(), false)));
        }
        if let Some(o) = &self.object {
            parts.push(format!("object={}", pct_encode(o.as_bytes(), false)));
        }
        if let Some(id) = &self.id {
            parts.push(format!("id={}", pct_encode(id, true)));
        }
        if let Some(t) = self.object_type {
            parts.push(
                match t {
                    ObjectType::Private => "type=private",
                    ObjectType::Public => "type=public",
                    ObjectType::Cert => "type=cert",
                }
                .into(),
            );
        }
        write!(f, "pkcs11:{}", parts.join(";"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_label_id_and_type() {
        let u: KeyUri = "pkcs11:token=My%20Token;object=ra-key;id=%01%ab;type=private"
            .parse()
            .unwrap();
        assert_eq!(u.token.as_deref(), Some("My Token"));
        assert_eq!(u.object.as_deref(), Some("ra-key"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 0xab][..]));
        assert_eq!(u.object_type, Some(ObjectType::Private));
        let again: KeyUri = u.to_string().parse().unwrap();
        assert_eq!(again, u);
    }

    #[test]
    fn rejects_bad_uris() {
        for bad in [
            "token=sigil;object=x",
            "pkcs11:token=sigil",
            "pkcs11:object=x?pin-value=1234",
            "pkcs11:object=x;type=private?pin-source=file:/x",
            "pkcs11:object=x;id=%zz",
            "pkcs11:object=x;id=%1",
            "pkcs11:object=x;type=secret",
            "pkcs11:object=x;colour=blue",
            "pkcs11:objectx",
        ] {
            let err = bad.parse::<KeyUri>().expect_err(bad).to_string();
            assert!(!err.contains("1234"), "{err}");
        }
    }
}
