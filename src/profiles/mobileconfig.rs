//! An Apple configuration profile (`.mobileconfig`, an XML property list) that installs the
//! CA's whole chain and enrolls over SCEP: the root (`com.apple.security.root`), each
//! intermediate (`com.apple.security.pkcs1`) and the SCEP payload (`com.apple.security.scep`),
//! with the keys and types Apple's profile reference gives. Payload UUIDs are derived from
//! the profile's identifier, so pushing the profile again replaces it rather than adding a
//! second copy.

use plist::{Dictionary, Value};

use super::{ProfileError, ScepProfile};

/// A UUID (version-4 shaped) derived from `seed`: the same seed, the same UUID.
pub(super) fn stable_uuid(seed: &str) -> String {
    let h = openssl::sha::sha256(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// `CN=a,O=b` → Apple's `[[["CN","a"]],[["O","b"]]]`. Commas escaped with `\` stay in values.
pub(super) fn subject_array(dn: &str) -> Value {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        match (escaped, c) {
            (true, _) => {
                cur.push(c);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, ',') => parts.push(std::mem::take(&mut cur)),
            (false, _) => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        parts.push(cur);
    }
    Value::Array(
        parts
            .iter()
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                Value::Array(vec![Value::Array(vec![
                    Value::String(k.trim().to_string()),
                    Value::String(v.trim().to_string()),
                ])])
            })
            .collect(),
    )
}

/// The `SubjectAltName` dictionary from `email:…`, `dns:…`, `uri:…`, `upn:…` (one value a
/// string, several an array).
pub(super) fn san_dictionary(sans: &[String]) -> Dictionary {
    let mut by: Vec<(&str, Vec<String>)> = Vec::new();
    for s in sans {
        let Some((kind, v)) = s.split_once(':') else {
            continue;
        };
        let key = match kind {
            "email" => "rfc822Name",
            "dns" => "dNSName",
            "uri" => "uniformResourceIdentifier",
            "upn" => "ntPrincipalName",
            _ => continue,
        };
        match by.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(v.to_string()),
            None => by.push((key, vec![v.to_string()])),
        }
    }
    let mut d = Dictionary::new();
    for (k, mut v) in by {
        let value = if v.len() == 1 {
            Value::String(v.remove(0))
        } else {
            Value::Array(v.into_iter().map(Value::String).collect())
        };
        d.insert(k.to_string(), value);
    }
    d
}

fn payload(kind: &str, identifier: &str, name: &str) -> Dictionary {
    let mut d = Dictionary::new();
    d.insert("PayloadType".into(), Value::String(kind.into()));
    d.insert("PayloadVersion".into(), Value::Integer(1.into()));
    d.insert("PayloadIdentifier".into(), Value::String(identifier.into()));
    d.insert("PayloadUUID".into(), Value::String(stable_uuid(identifier)));
    d.insert("PayloadDisplayName".into(), Value::String(name.into()));
    d
}

/// The SCEP payload's `PayloadContent` (also the declarative asset's fields).
pub(super) fn scep_content(p: &ScepProfile) -> Dictionary {
    let mut c = Dictionary::new();
    c.insert("URL".into(), Value::String(p.url.clone()));
    c.insert("Name".into(), Value::String(p.ca_name.clone()));
    if !p.subject.is_empty() {
        c.insert("Subject".into(), subject_array(&p.subject));
    }
    if let Some(ch) = &p.challenge {
        c.insert("Challenge".into(), Value::String(ch.clone()));
    }
    // Apple's default is 1024 bits: always say.
    c.insert(
        "Keysize".into(),
        Value::Integer(u64::from(p.key_size).into()),
    );
    c.insert("Key Type".into(), Value::String("RSA".into()));
    c.insert(
        "Key Usage".into(),
        Value::Integer(u64::from(p.key_usage).into()),
    );
    if let Some(ca) = p.chain.first() {
        c.insert(
            "CAFingerprint".into(),
            Value::Data(openssl::sha::sha1(ca).to_vec()),
        );
    }
    if let Some((retries, delay)) = p.retries {
        c.insert("Retries".into(), Value::Integer(u64::from(retries).into()));
        c.insert("RetryDelay".into(), Value::Integer(u64::from(delay).into()));
    }
    let sans = san_dictionary(&p.sans);
    if !sans.is_empty() {
        c.insert("SubjectAltName".into(), Value::Dictionary(sans));
    }
    c
}

/// An EAP-TLS Wi-Fi payload whose identity is the SCEP payload's certificate and whose
/// RADIUS servers are checked against `anchor` and the trusted names.
fn wifi_payload(base: &str, w: &super::Wifi, scep_uuid: &str, anchor: &str) -> Dictionary {
    let s = &w.settings;
    let mut d = payload("com.apple.wifi.managed", &format!("{base}.wifi"), &s.ssid);
    d.insert("SSID_STR".into(), Value::String(s.ssid.clone()));
    d.insert("HIDDEN_NETWORK".into(), Value::Boolean(s.hidden));
    d.insert("AutoJoin".into(), Value::Boolean(true));
    d.insert("EncryptionType".into(), Value::String(s.encryption.clone()));
    d.insert(
        "PayloadCertificateUUID".into(),
        Value::String(scep_uuid.into()),
    );
    let mut eap = Dictionary::new();
    // 13: EAP-TLS.
    eap.insert(
        "AcceptEAPTypes".into(),
        Value::Array(vec![Value::Integer(13.into())]),
    );
    eap.insert(
        "TLSTrustedServerNames".into(),
        Value::Array(
            s.trusted_server_names
                .iter()
                .map(|n| Value::String(n.clone()))
                .collect(),
        ),
    );
    eap.insert(
        "PayloadCertificateAnchorUUID".into(),
        Value::Array(vec![Value::String(anchor.into())]),
    );
    d.insert("EAPClientConfiguration".into(), Value::Dictionary(eap));
    d
}

/// An IKEv2 VPN payload that authenticates with the SCEP payload's certificate.
fn vpn_payload(
    base: &str,
    v: &crate::authority::network_settings::VpnSettings,
    scep_uuid: &str,
) -> Dictionary {
    let mut d = payload("com.apple.vpn.managed", &format!("{base}.vpn"), &v.name);
    d.insert("UserDefinedName".into(), Value::String(v.name.clone()));
    d.insert("VPNType".into(), Value::String("IKEv2".into()));
    let mut ike = Dictionary::new();
    ike.insert(
        "RemoteAddress".into(),
        Value::String(v.remote_address.clone()),
    );
    ike.insert(
        "RemoteIdentifier".into(),
        Value::String(v.remote_identifier.clone()),
    );
    ike.insert(
        "LocalIdentifier".into(),
        Value::String(v.local_identifier.clone()),
    );
    ike.insert(
        "AuthenticationMethod".into(),
        Value::String("Certificate".into()),
    );
    ike.insert(
        "PayloadCertificateUUID".into(),
        Value::String(scep_uuid.into()),
    );
    d.insert("IKEv2".into(), Value::Dictionary(ike));
    d
}

/// The profile as XML plist bytes.
pub fn mobileconfig(p: &ScepProfile) -> Result<Vec<u8>, ProfileError> {
    let base = &p.identifier;
    let mut content = Vec::new();
    let n = p.chain.len();
    for (i, der) in p.chain.iter().enumerate().rev() {
        let root = i + 1 == n;
        let subject = crate::pki::common_name(der).unwrap_or_else(|| "CA".into());
        let (kind, role) = if root {
            ("com.apple.security.root", "root".to_string())
        } else {
            ("com.apple.security.pkcs1", format!("ca{i}"))
        };
        let mut d = payload(kind, &format!("{base}.{role}"), &subject);
        d.insert("PayloadContent".into(), Value::Data(der.clone()));
        d.insert(
            "PayloadCertificateFileName".into(),
            Value::String(format!("{role}.cer")),
        );
        content.push(Value::Dictionary(d));
    }
    let mut scep = payload(
        "com.apple.security.scep",
        &format!("{base}.scep"),
        &p.display_name,
    );
    scep.insert("PayloadContent".into(), Value::Dictionary(scep_content(p)));
    content.push(Value::Dictionary(scep));
    let scep_uuid = stable_uuid(&format!("{base}.scep"));
    if let Some(w) = &p.wifi {
        // The anchor the device trusts for the RADIUS servers: their own CA, in a payload of
        // its own, or this CA's root.
        let anchor = match &w.radius_ca {
            Some(der) => {
                let id = format!("{base}.radius-ca");
                let self_signed = openssl::x509::X509::from_der(der)
                    .map(|c| c.issued(&c) == openssl::x509::X509VerifyResult::OK)
                    .unwrap_or(false);
                let kind = if self_signed {
                    "com.apple.security.root"
                } else {
                    "com.apple.security.pkcs1"
                };
                let name = crate::pki::common_name(der).unwrap_or_else(|| "RADIUS CA".into());
                let mut d = payload(kind, &id, &name);
                d.insert("PayloadContent".into(), Value::Data(der.clone()));
                d.insert(
                    "PayloadCertificateFileName".into(),
                    Value::String("radius-ca.cer".into()),
                );
                content.push(Value::Dictionary(d));
                stable_uuid(&id)
            }
            None => stable_uuid(&format!("{base}.root")),
        };
        content.push(Value::Dictionary(wifi_payload(
            base, w, &scep_uuid, &anchor,
        )));
    }
    if let Some(v) = &p.vpn {
        content.push(Value::Dictionary(vpn_payload(base, v, &scep_uuid)));
    }
    let mut top = payload("Configuration", base, &p.display_name);
    top.insert(
        "PayloadOrganization".into(),
        Value::String(p.organization.clone()),
    );
    top.insert(
        "PayloadDescription".into(),
        Value::String(format!(
            "Installs the certificate chain of {} and enrolls this device for a certificate over SCEP.",
            p.ca_name
        )),
    );
    top.insert("PayloadContent".into(), Value::Array(content));
    let mut out = Vec::new();
    plist::to_writer_xml(&mut out, &Value::Dictionary(top)).map_err(ProfileError::Plist)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_names_take_apples_shapes() {
        let v = subject_array("CN=alice\\, jr,OU=Devices,O=Agency");
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), 3);
        let first = a[0].as_array().unwrap()[0].as_array().unwrap();
        assert_eq!(first[0].as_string(), Some("CN"));
        assert_eq!(first[1].as_string(), Some("alice, jr"));
        let d = san_dictionary(&[
            "email:a@x".into(),
            "uri:tag:x".into(),
            "email:b@x".into(),
            "other:?".into(),
        ]);
        assert_eq!(
            d.get("uniformResourceIdentifier")
                .and_then(|v| v.as_string()),
            Some("tag:x")
        );
        assert_eq!(
            d.get("rfc822Name")
                .and_then(|v| v.as_array())
                .map(|a| a.len()),
            Some(2)
        );
        assert_eq!(d.len(), 2);
        assert_eq!(stable_uuid("a"), stable_uuid("a"));
        assert_ne!(stable_uuid("a"), stable_uuid("b"));
        assert_eq!(&stable_uuid("a")[14..15], "4");
    }
}
