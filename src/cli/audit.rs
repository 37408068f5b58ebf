//! `sigil audit verify`: the audit log checked a page at a time against its seals.

use anyhow::Result;

use super::{open_hsm, with_store, Config, OpenMode};

/// `sigil audit verify [--heads FILE]`: the chain and the stored head, read a page at a time;
/// the store's latest seal; and every seal of the heads file. Seals are checked with the audit
/// key's public half from the token, never from the database being checked.
pub(super) fn verify(config: &Config, heads: Option<&std::path::Path>) -> Result<()> {
    use sigil::authority::audit_seal;
    let hsm = open_hsm(config)?;
    let uri = sigil::hsm::KeyUri::labelled(hsm.token(), &config.audit.key);
    let key = if hsm.key_exists(&uri)? {
        Some(hsm.public_key_blocking(&uri)?.to_openssl()?)
    } else {
        None
    };
    hsm.close();
    let mut seals = match heads {
        Some(path) => Some(audit_seal::read_seals(path)?),
        None => None,
    };
    with_store(config, OpenMode::Existing, |store| async move {
        let stored = audit_seal::stored_seal(store.as_ref()).await?;
        if key.is_none() && (stored.is_some() || seals.is_some()) {
            anyhow::bail!(
                "no audit key `{}` on the token: the seals cannot be checked",
                config.audit.key
            );
        }
        let seals = seals.as_mut().map(|s| s as &mut dyn Iterator<Item = _>);
        let check = audit_seal::check_log(
            store.as_ref(),
            stored,
            key.is_some(),
            key.as_ref(),
            seals,
            audit_seal::PAGE,
        )
        .await?;
        if let Some(problem) = &check.problem {
            anyhow::bail!("audit log {problem}");
        }
        let sealed = match check.signed_head_seq {
            Some(s) if check.unsealed > 0 => format!(
                "sealed by the audit key up to record {s} ({} records since, not yet sealed: they are sealed when sigil serve runs)",
                check.unsealed
            ),
            Some(s) => format!("sealed by the audit key up to record {s}"),
            None => "no seal in the store yet".into(),
        };
        let file = match heads {
            Some(path) => format!(
                "; {} seals of {} match the log",
                check.heads_checked,
                path.display()
            ),
            None => String::new(),
        };
        println!(
            "audit log intact: {} records, head {}; {sealed}{file}",
            check.records, check.head_seq
        );
        Ok(())
    })
}
