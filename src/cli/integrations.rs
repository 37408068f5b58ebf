//! The command line's integrations: the OpenID client key on the token, and the Intune
//! connections the authority is opened with.

use std::path::PathBuf;

use anyhow::{Context, Result};
use sigil::config::Config;
use sigil::hsm::Hsm;

use super::open_hsm;

pub(super) fn identity_client_key(
    config: &Config,
    label: Option<String>,
    certificate: Option<PathBuf>,
) -> Result<()> {
    let oidc = config.identity.oidc.clone().unwrap_or_default();
    let label = label
        .or_else(|| Some(oidc.client_key.clone()).filter(|l| !l.is_empty()))
        .unwrap_or_else(|| "sigil-oidc-client".into());
    let client_id = if oidc.client_id.is_empty() {
        "sigil".to_string()
    } else {
        oidc.client_id.clone()
    };
    let hsm = open_hsm(config)?;
    let export = sigil::ceremony::oidc_client::client_key(&hsm, &label, &client_id)?;
    hsm.close();
    if let Some(path) = &certificate {
        std::fs::write(path, sigil::pki::to_pem(&export.certificate))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", serde_json::to_string_pretty(&export.jwks)?);
    eprintln!(
        "client key `{label}` on token `{}` ({}); register the JWKS above{} with the provider, and set identity.oidc.client_key = \"{label}\"",
        config.hsm.token,
        if export.made { "made now" } else { "already there" },
        certificate
            .as_ref()
            .map(|p| format!(" or the certificate in {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

/// The authority's settings, with the Intune connections (their client keys on the token).
pub(super) fn authority_settings(
    config: &Config,
    hsm: &Hsm,
) -> Result<sigil::authority::AuthoritySettings> {
    let mut settings = config.authority_settings()?;
    for name in config.intune.keys() {
        settings.challenge_authorities.insert(
            name.clone(),
            std::sync::Arc::new(intune_connection(config, hsm, name)?),
        );
    }
    Ok(settings)
}

pub(super) fn intune_connection(
    config: &Config,
    hsm: &Hsm,
    name: &str,
) -> Result<sigil::intune::Intune> {
    let settings = config
        .intune
        .get(name)
        .with_context(|| format!("no [intune.{name}] in the configuration"))?;
    let key: Option<std::sync::Arc<dyn sigil::identity::client_assertion::ClientKey>> =
        if settings.client_key.is_empty() {
            None
        } else {
            Some(std::sync::Arc::new(
                sigil::ceremony::oidc_client::TokenClientKey::open(hsm, &settings.client_key)?,
            ))
        };
    sigil::intune::Intune::connect(name, settings, key).map_err(anyhow::Error::msg)
}
