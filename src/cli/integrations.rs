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

/// `sigil profile export`.
pub(super) fn export_profile(
    config: &Config,
    name: &str,
    format: &str,
    cn: Option<String>,
    ttl_minutes: u32,
    url: Option<String>,
    out: Option<PathBuf>,
) -> Result<()> {
    if !["mobileconfig", "ddm"].contains(&format) {
        anyhow::bail!("--format `{format}`: mobileconfig or ddm");
    }
    if !(1..=7 * 24 * 60).contains(&ttl_minutes) {
        anyhow::bail!("--ttl-minutes is 1 to 10080");
    }
    let base = match url {
        Some(u) => u,
        None if !config.server.public_url.is_empty() => config.server.public_url.clone(),
        None => anyhow::bail!(
            "where do devices reach SCEP? set server.public_url (SIGIL_SERVER_PUBLIC_URL) or --url"
        ),
    };
    let hsm = open_hsm(config)?;
    let settings = authority_settings(config, &hsm)?;
    let format = format.to_string();
    let name = name.to_string();
    super::with_store(
        config,
        sigil::store::OpenMode::Existing,
        |store| async move {
            let ra = sigil::authority::Authority::open(&hsm, &settings, store).await?;
            ra.profile(Some(&name))?;
            let bindings = sigil::authority::challenge::Bindings {
                cn: cn.clone(),
                ..Default::default()
            };
            let minted = ra
                .mint_challenge(&name, None, &bindings, i64::from(ttl_minutes) * 60, "cli")
                .await?;
            let subject = cn
                .as_deref()
                .map(|c| format!("CN={}", sigil::pki::escape_dn_value(c)))
                .unwrap_or_default();
            let p = sigil::profiles::for_profile(
                &ra,
                &name,
                &format!("{}/scep/{name}", base.trim_end_matches('/')),
                &subject,
                Some(minted.challenge),
            )?;
            let bytes = if format == "ddm" {
                serde_json::to_vec_pretty(&sigil::profiles::ddm_asset(&p))?
            } else {
                let ra2 = ra.clone();
                tokio::task::spawn_blocking(move || sigil::profiles::signed_blocking(&ra2, &p))
                    .await??
            };
            match &out {
                Some(path) => std::fs::write(path, &bytes)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&bytes)?;
                }
            }
            eprintln!(
            "profile `{name}` ({format}) with a one-time challenge (id {}) valid {ttl_minutes} minutes",
            minted.id
        );
            Ok(())
        },
    )
}
