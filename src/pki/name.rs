//! Distinguished names written as text (`CN=Sigil Root CA,O=Example Agency,C=US`).
//!
//! RFC 4514 order is most-significant last; like OpenSSL's `-subj` and most CA tools, Sigil
//! reads the string left to right as the order in the certificate (C, O, …, CN or CN first,
//! as written). Commas inside a value are escaped with a backslash.

use rcgen::{DistinguishedName, DnType};

/// Escape a value for [`parse_dn`] (`,` and `\` are special there).
pub fn escape_dn_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace(',', "\\,")
}

/// Parse `CN=…,O=…` into an rcgen name. Known attributes: CN, O, OU, C, L, ST, DC, E,
/// serialNumber, UID.
pub fn parse_dn(text: &str) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => cur.push(n),
                None => return Err("name ends with a lone backslash".into()),
            },
            ',' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not ATTRIBUTE=value"))?;
        let v = v.trim();
        if v.is_empty() {
            return Err(format!("`{part}` has an empty value"));
        }
        let ty = match k.trim().to_ascii_uppercase().as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => {
                if v.len() != 2 {
                    return Err(format!("country `{v}` must be two letters"));
                }
                DnType::CountryName
            }
            "L" => DnType::LocalityName,
            "ST" => DnType::StateOrProvinceName,
            "DC" => DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
            "UID" => DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
            "E" | "EMAILADDRESS" => DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            "SERIALNUMBER" => DnType::CustomDnType(vec![2, 5, 4, 5]),
            other => return Err(format!("unknown name attribute `{other}`")),
        };
        if ty == DnType::CountryName {
            let p = rcgen::string::PrintableString::try_from(v.to_ascii_uppercase())
                .map_err(|_| format!("country `{v}` must be two letters"))?;
            dn.push(ty, rcgen::DnValue::PrintableString(p));
        } else {
            dn.push(ty, v);
        }
    }
    if dn.iter().next().is_none() {
        return Err("the name is empty".into());
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_escapes() {
        let dn = parse_dn("CN=Sigil Root CA, O=Acme\\, Inc., C=US").unwrap();
        let items: Vec<_> = dn.iter().collect();
        assert_eq!(items.len(), 3);
        assert!(
            matches!(dn.get(&DnType::OrganizationName), Some(rcgen::DnValue::Utf8String(s)) if s == "Acme, Inc.")
        );
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["", "CN", "CN=", "XX=1", "C=USA", "CN=a\\"] {
            assert!(parse_dn(bad).is_err(), "{bad}");
        }
    }
}
