//! `sigil serve`: the token, the store bound to its CA, the authority and its background
//! work, then the HTTP server, after checking that the files it reads are there.

use anyhow::{Context, Result};

use sigil::config::Config;

use sigil::store::OpenMode;

use super::integrations::authority_settings;
use super::{configured_ca, open_hsm};

pub(super) fn serve(config: Config) -> Result<()> {
    let hsm = open_hsm(&config)?;
    let ca_uri = config.hsm.ca_key_uri()?;
    let ca_label = ca_uri.label()?.to_owned();
    if hsm.certificate_blocking(&ca_label)?.is_none() {
        anyhow::bail!(
            "no CA certificate `{ca_label}` on token `{}`: run `sigil init` first",
            hsm.token()
        );
    }
    let ca = configured_ca(&config, &hsm)?;
    let listen = config.server.listen.clone();
    actix_web::rt::System::new().block_on(async move {
        let store = sigil::store::open(&config.store_settings(), OpenMode::Migrate)
            .await
            .context("store")?;
        sigil::authority::binding::check(&hsm, store.as_ref(), &ca)
            .await
            .context("store")?;
        let ra = sigil::authority::Authority::open(&hsm, &authority_settings(&config, &hsm)?, store).await?;
        ra.write_profiles_with(sigil::profiles::for_pushes());
        let blind = ra.profiles_without_revocation_pointers();
        if !blind.is_empty() {
            tracing::warn!(
                profiles = %blind.join(", "),
                "certificates of these profiles carry no CRL or OCSP URL, so nobody can learn of their revocation: set server.public_url (SIGIL_SERVER_PUBLIC_URL) to the address devices and relying parties reach, or the profiles' crl_url/ocsp_url"
            );
        }
        ra.record_certificates().await.context("store")?;
        // Compare without the per-node parts (address, data directory, log settings).
        let mut shared = config.clone();
        shared.server = Default::default();
        shared.log = Default::default();
        shared.audit.heads_file = String::new();
        shared.audit.syslog = String::new();
        ra.record_configuration(&shared.to_toml())
            .await
            .context("store")?;
        ra.record_crl_base().await.context("store")?;
        ra.seal_audit().await.context("audit seal")?;
        actix_web::rt::spawn(ra.clone().sealing());
        actix_web::rt::spawn(ra.clone().preparing_ocsp());
        actix_web::rt::spawn(ra.clone().background(std::time::Duration::from_secs(
            config.server.background_interval_secs.max(1),
        )));
        let client_key: Option<std::sync::Arc<dyn sigil::identity::client_assertion::ClientKey>> =
            match config.identity.oidc.as_ref().map(|o| o.client_key.as_str()) {
                Some(label) if !label.is_empty() => Some(std::sync::Arc::new(
                    sigil::ceremony::oidc_client::TokenClientKey::open(&hsm, label)?,
                )),
                _ => None,
            };
        let watcher = ra.clone();
        let state = sigil::http::AppState::new(ra)
            .with_identity(&config.identity, &config.server.public_url, client_key)
            .map_err(anyhow::Error::msg)?
            .with_gateways(config.server.gateway_names.clone())
            .with_trusted_proxies(
                sigil::client_address::TrustedProxies::parse(
                    "server.trusted_proxies",
                    &config.server.trusted_proxies,
                )
                .map_err(anyhow::Error::msg)?,
            );
        tls_files_readable(&config)?;
        // A newer node migrating the store stops this one (see authority::schema_watch).
        let outgrown = std::rc::Rc::new(std::cell::Cell::new(None));
        let seen = outgrown.clone();
        let watch = watcher.watching_schema(SCHEMA_CHECK);
        sigil::http::serve(&config, state, async move { seen.set(Some(watch.await)) })
            .await
            .with_context(|| {
                format!("HTTP server on {listen} (server.listen, SIGIL_SERVER_LISTEN)")
            })?;
        match outgrown.take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    })
}

/// The TLS files `serve` reads, each readable, or an error that names the setting, the path
/// and the working directory relative paths are read from (OpenSSL's own words for a missing
/// file say neither).
fn tls_files_readable(config: &Config) -> Result<()> {
    let s = &config.server;
    if s.tls_cert.is_empty() {
        return Ok(());
    }
    for (setting, path) in [
        (
            "server.tls_cert (SIGIL_SERVER_TLS_CERT)",
            s.tls_cert.as_str(),
        ),
        ("server.tls_key (SIGIL_SERVER_TLS_KEY)", s.tls_key.as_str()),
        (
            "server.client_ca (SIGIL_SERVER_CLIENT_CA)",
            s.client_ca.as_str(),
        ),
    ] {
        if path.is_empty() {
            continue;
        }
        std::fs::File::open(path).with_context(|| {
            let here = std::env::current_dir()
                .map(|d| format!(" (relative paths are read from {})", d.display()))
                .unwrap_or_default();
            format!("{setting}: cannot read `{path}`{here}")
        })?;
    }
    Ok(())
}

/// How often a serving node checks that no newer node has migrated its store.
const SCHEMA_CHECK: std::time::Duration = std::time::Duration::from_secs(5);
