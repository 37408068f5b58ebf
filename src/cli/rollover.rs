//! `sigil ca rollover` and `sigil ca activate`: prepare the next CA generation on the token and
//! offer it through GetNextCACert, then switch issuance to it. The old generation stays
//! retired: its CRL and OCSP answers are still served and its certificates still renew.
//! Also `sigil gateway-cert`, which issues from whichever CA is active.

use anyhow::{Context, Result};
use sigil::authority::generations::{cert_key, Generations};
use sigil::ceremony::{self, RolloverOptions};
use sigil::config::Config;
use sigil::hsm::KeySpec;

use super::{open_hsm, with_store};
use sigil::store::OpenMode;

/// `sigil ca rollover`.
pub fn rollover(
    config: &Config,
    ca_key: &str,
    ca_days: u32,
    ca_subject: Option<String>,
    ra_days: u32,
) -> Result<()> {
    let spec = KeySpec::parse(ca_key).with_context(|| {
        format!("--ca-key `{ca_key}`: use rsa2048, rsa3072, rsa4096, p256 or p384")
    })?;
    let hsm = open_hsm(config)?;
    let base = config.hsm.ca_key_uri()?.label()?.to_owned();
    let token = hsm.clone();
    with_store(config, OpenMode::Existing, |store| async move {
        let hsm = token;
        let mut gens = Generations::read(store.as_ref()).await?;
        if let Some(next) = &gens.next {
            anyhow::bail!(
                "a rollover to `{next}` is already prepared: run `sigil ca activate` to switch to it"
            );
        }
        let current = gens.active_or(&base).to_owned();
        let opts = RolloverOptions {
            ca_key: spec,
            ca_days,
            ca_subject,
            ra_days,
        };
        let (h, cfg, data_dir, b, c) = (
            hsm.clone(),
            config.hsm.clone(),
            config.server.data_dir.clone(),
            base.clone(),
            current.clone(),
        );
        let made = tokio::task::spawn_blocking(move || {
            ceremony::rollover(&h, &cfg, &data_dir, &b, &c, &opts)
        })
        .await??;
        for (kind, der) in [
            ("ca", Some(&made.ca)),
            ("ra_sign", Some(&made.ra_sign)),
            ("ra_decrypt", made.ra_decrypt.as_ref()),
            ("link", Some(&made.old_signs_new)),
            ("link_back", Some(&made.new_signs_old)),
        ] {
            if let Some(der) = der {
                store.set_state(&cert_key(kind, &made.label), der).await?;
            }
        }
        // Its delegated OCSP responder, ready before it is activated.
        let (h, label, days) = (hsm.clone(), made.label.clone(), config.ocsp.responder_days);
        let responder = tokio::task::spawn_blocking(move || {
            sigil::authority::responder::make_for_ca(&h, &label, days)
        })
        .await??;
        store
            .set_state(&format!("ocsp_responder:{}", made.label), &responder)
            .await?;
        gens.next = Some(made.label.clone());
        gens.write(store.as_ref()).await?;
        sigil::authority::binding::add_ca(store.as_ref(), &made.ca).await?;
        let fingerprint = sigil::pki::sha256_fingerprint(&made.ca);
        store
            .audit(
                "cli",
                "ca_rollover",
                &made.label,
                &serde_json::json!({
                    "from": current,
                    "subject": sigil::pki::subject_text(&made.ca),
                    "sha256": fingerprint,
                }),
            )
            .await?;
        println!(
            "next CA: {} (key and certificate on token `{}`)",
            made.label,
            hsm.token()
        );
        println!(
            "  subject: {}",
            sigil::pki::subject_text(&made.ca).unwrap_or_default()
        );
        println!("  SHA-256: {fingerprint}");
        println!("  files:   {}", made.dir.display());
        println!(
            "  OCSP responder: `{}` (key and certificate on the token)",
            sigil::authority::responder::label_for(&made.label)
        );
        println!(
            "GetNextCACert now offers it (with its RA certificate and the link certificate signed by `{current}`)."
        );
        println!("Next: distribute the new CA certificate, then run `sigil ca activate` and restart every `sigil serve`.");
        Ok(())
    })?;
    hsm.close();
    Ok(())
}

/// `sigil ca activate`.
pub fn activate(config: &Config) -> Result<()> {
    let base = config.hsm.ca_key_uri()?.label()?.to_owned();
    let data_dir = config.server.data_dir.clone();
    with_store(config, OpenMode::Existing, |store| async move {
        let mut gens = Generations::read(store.as_ref()).await?;
        let Some(next) = gens.next.take() else {
            anyhow::bail!("no rollover is prepared: run `sigil ca rollover` first");
        };
        let old = gens.active_or(&base).to_owned();
        gens.retired.retain(|l| l != &next);
        gens.retired.push(old.clone());
        gens.active = Some(next.clone());
        let ca = store
            .state(&cert_key("ca", &next))
            .await?
            .context("the next CA's certificate is not recorded")?;
        let ra = store
            .state(&cert_key("ra_sign", &next))
            .await?
            .context("the next RA certificate is not recorded")?;
        gens.write(store.as_ref()).await?;
        store
            .audit(
                "cli",
                "ca_activated",
                &next,
                &serde_json::json!({"retired": old}),
            )
            .await?;
        let ca_pem = sigil::pki::to_pem(&ca);
        for (file, text) in [
            ("ca.pem", ca_pem.clone()),
            ("chain.pem", ca_pem),
            ("ra.pem", sigil::pki::to_pem(&ra)),
        ] {
            let path = data_dir.join(file);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        println!("active CA: {next}; `{old}` is retired (its CRL and OCSP stay served)");
        println!("Restart every `sigil serve` to issue from {next}.");
        Ok(())
    })
}

/// `sigil gateway-cert`.
pub fn gateway_cert(
    config: &Config,
    out: &std::path::Path,
    core_names: &[String],
    gateway_name: &str,
    days: u32,
) -> Result<()> {
    let hsm = open_hsm(config)?;
    let base = config.hsm.ca_key_uri()?.label()?.to_owned();
    let files = ceremony::transport_certificates(&hsm, &base, out, core_names, gateway_name, days)?;
    println!(
        "transport CA (on the token as `{base}-transport`): {}",
        files.ca.display()
    );
    println!(
        "core (sigil serve):  {} {}",
        files.core.0.display(),
        files.core.1.display()
    );
    println!(
        "gateway:             {} {}",
        files.gateway.0.display(),
        files.gateway.1.display()
    );
    println!();
    println!(
        "[server]   tls_cert = \"{}\"  tls_key = \"{}\"  client_ca = \"{}\"  gateway_names = [\"{gateway_name}\"]",
        files.core.0.display(),
        files.core.1.display(),
        files.ca.display()
    );
    println!(
        "[gateway]  client_cert = \"{}\"  client_key = \"{}\"  upstream_ca = \"{}\"",
        files.gateway.0.display(),
        files.gateway.1.display(),
        files.ca.display()
    );
    hsm.close();
    Ok(())
}
