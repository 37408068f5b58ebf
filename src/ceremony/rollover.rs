//! CA rollover, the token side: the next CA key and its self-signed certificate, the two link
//! certificates (old signs new, new signs old), and the RA certificates issued by the new CA
//! for the existing RA key(s). What is active, next and retired is recorded in the store by
//! the caller (`sigil ca rollover`, `sigil ca activate`; see `crate::authority::generations`).

use std::path::{Path, PathBuf};

use super::{ra_roles, write, CeremonyError};
use crate::config::HsmSection;
use crate::hsm::TokenKey;
use crate::hsm::{Hsm, KeySpec, KeyUri, KeyUsage};
use crate::pki::{self, KeyUsagePurpose};

/// What `sigil ca rollover` should make.
#[derive(Debug, Clone)]
pub struct RolloverOptions {
    /// The new CA key's type.
    pub ca_key: KeySpec,
    /// The new CA certificate's validity in days.
    pub ca_days: u32,
    /// The new CA's subject; default: the current one with " G<n>" after the common name.
    pub ca_subject: Option<String>,
    /// The new RA certificates' validity in days.
    pub ra_days: u32,
}

/// What the rollover made (all DER).
#[derive(Debug, Clone)]
pub struct Rollover {
    /// The new CA key's label (its certificate is on the token under the same label).
    pub label: String,
    /// The new CA certificate.
    pub ca: Vec<u8>,
    /// The RA signing certificate issued by the new CA.
    pub ra_sign: Vec<u8>,
    /// The RA decryption certificate, when the RA has a separate decryption key.
    pub ra_decrypt: Option<Vec<u8>>,
    /// The new CA's key certified by the old CA.
    pub old_signs_new: Vec<u8>,
    /// The old CA's key certified by the new CA.
    pub new_signs_old: Vec<u8>,
    /// Where the PEM files were written.
    pub dir: PathBuf,
}

/// Strip a trailing " G<digits>" from a common name.
fn base_cn(cn: &str) -> &str {
    match cn.rsplit_once(" G") {
        Some((base, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => base,
        _ => cn,
    }
}

/// The default subject of generation `n`: the current subject with the CN renamed.
fn next_subject(current: &str, n: u32) -> String {
    let mut out = Vec::new();
    for part in split_dn(current) {
        match part.strip_prefix("CN=") {
            Some(cn) => out.push(format!("CN={} G{n}", base_cn(cn))),
            None => out.push(part),
        }
    }
    out.join(",")
}

/// Split `A=b,C=d` on unescaped commas, keeping escapes.
fn split_dn(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

/// Make the next CA generation on the token. `base` is the configured CA key label; the new
/// key is `<base>-g<n>` with the first free `n` from 2. Blocking.
pub fn rollover(
    hsm: &Hsm,
    cfg: &HsmSection,
    data_dir: &Path,
    base: &str,
    current: &str,
    opts: &RolloverOptions,
) -> Result<Rollover, CeremonyError> {
    let current_der = hsm.certificate_blocking(current)?.ok_or_else(|| {
        CeremonyError::Invalid(format!(
            "no CA certificate `{current}` on token `{}`",
            hsm.token()
        ))
    })?;
    let current_uri = KeyUri::labelled(hsm.token(), current);
    let current_key = TokenKey::open(hsm, &current_uri)?;
    let mut n = 2;
    let label = loop {
        let l = format!("{base}-g{n}");
        let uri = KeyUri::labelled(hsm.token(), &l);
        if !hsm.key_exists(&uri)? && hsm.certificate_blocking(&l)?.is_none() {
            break l;
        }
        n += 1;
        if n > 1000 {
            return Err(CeremonyError::Invalid(
                "no free CA key label (tried up to g1000)".into(),
            ));
        }
    };
    let current_subject = pki::subject_text(&current_der)
        .ok_or_else(|| CeremonyError::Invalid("the current CA certificate does not read".into()))?;
    let subject_text = opts
        .ca_subject
        .clone()
        .unwrap_or_else(|| next_subject(&current_subject, n));
    if subject_text == current_subject {
        return Err(CeremonyError::Invalid(
            "the next CA needs a subject of its own (issuer names tell the generations' certificates and CRLs apart)".into(),
        ));
    }
    let subject = pki::parse_dn(&subject_text)
        .map_err(|e| CeremonyError::Invalid(format!("--ca-subject: {e}")))?;
    if let KeySpec::Rsa(bits) = opts.ca_key {
        if bits < 2048 {
            return Err(CeremonyError::Invalid(
                "the CA key must be RSA 2048/3072/4096 or ECDSA P-256/P-384".into(),
            ));
        }
    }
    hsm.generate_blocking(
        opts.ca_key,
        &label,
        KeyUsage {
            sign: true,
            decrypt: false,
        },
    )?;
    let uri = KeyUri::labelled(hsm.token(), &label);
    let key = TokenKey::open(hsm, &uri)?;
    let ca = pki::self_signed_ca(&key, &pki::ca_params(subject.clone(), opts.ca_days)?)?;
    hsm.store_certificate_blocking(&label, &ca)?;
    let old_signs_new = pki::link_certificate(&current_key, &current_der, &key, subject)?;
    let old_subject = pki::parse_dn(&current_subject)
        .map_err(|e| CeremonyError::Invalid(format!("the current CA subject: {e}")))?;
    let new_signs_old = pki::link_certificate(&key, &ca, &current_key, old_subject)?;

    let mut ra_sign = None;
    let mut ra_decrypt = None;
    let roles = ra_roles(cfg)?;
    let single = roles.len() == 1;
    for (role, ra_uri, usage) in roles {
        let ra_label = super::label_of(&ra_uri)?;
        let ra_subject = hsm
            .certificate_blocking(ra_label)?
            .and_then(|d| pki::subject_text(&d))
            .unwrap_or_else(|| format!("CN={} SCEP {role}", base_cn(&subject_text)));
        let dn = pki::parse_dn(&ra_subject)
            .map_err(|e| CeremonyError::Invalid(format!("RA subject: {e}")))?;
        let mut usages = Vec::new();
        if usage.sign {
            usages.push(KeyUsagePurpose::DigitalSignature);
        }
        if usage.decrypt {
            usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        let ra_key = TokenKey::open(hsm, &ra_uri)?;
        let der = pki::issue_ra_certificate(&key, &ca, &ra_key, dn, opts.ra_days, usages)?;
        if usage.sign {
            ra_sign = Some(der);
        } else if !single {
            ra_decrypt = Some(der);
        }
    }
    let ra_sign =
        ra_sign.ok_or_else(|| CeremonyError::Invalid("no RA signing key is configured".into()))?;

    let dir = data_dir.join("rollover").join(&label);
    write(&dir.join("ca.pem"), &pki::to_pem(&ca))?;
    write(&dir.join("ra.pem"), &pki::to_pem(&ra_sign))?;
    if let Some(d) = &ra_decrypt {
        write(&dir.join("ra-decrypt.pem"), &pki::to_pem(d))?;
    }
    write(
        &dir.join("link-old-signs-new.pem"),
        &pki::to_pem(&old_signs_new),
    )?;
    write(
        &dir.join("link-new-signs-old.pem"),
        &pki::to_pem(&new_signs_old),
    )?;
    Ok(Rollover {
        label,
        ca,
        ra_sign,
        ra_decrypt,
        old_signs_new,
        new_signs_old,
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_subjects_number_the_generation() {
        assert_eq!(
            next_subject("CN=Agency Device CA,O=Agency,C=US", 2),
            "CN=Agency Device CA G2,O=Agency,C=US"
        );
        assert_eq!(
            next_subject("CN=Agency CA G2,O=A", 3),
            "CN=Agency CA G3,O=A"
        );
        assert_eq!(
            next_subject("O=Smith\\, Jones,CN=X", 2),
            "O=Smith\\, Jones,CN=X G2"
        );
        assert_eq!(base_cn("Gateway"), "Gateway");
    }
}
