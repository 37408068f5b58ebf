//! `sigil audit verify`: the audit log checked a page at a time against its seals; `sigil
//! audit export`: the log as JSON lines, written a page at a time.

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

/// `sigil audit export [--out FILE]`: every record as a JSON line, oldest first. A file is
/// written beside its name and renamed into place once whole: an export that fails halfway
/// leaves no truncated file under that name.
pub(super) fn export(config: &Config, out: Option<&std::path::Path>) -> Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let page = sigil::authority::audit_seal::PAGE;
    with_store(config, OpenMode::Existing, |store| async move {
        let Some(path) = out else {
            let mut sink = std::io::BufWriter::new(std::io::stdout().lock());
            write_records(store.as_ref(), page, &mut sink).await?;
            return sink.flush().context("cannot write the export");
        };
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        let written = async {
            let mut sink = std::io::BufWriter::new(
                std::fs::File::create(&partial)
                    .with_context(|| format!("cannot write {}", partial.display()))?,
            );
            write_records(store.as_ref(), page, &mut sink).await?;
            sink.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot write {}", partial.display()))?;
            std::fs::rename(&partial, path)
                .with_context(|| format!("cannot write {}", path.display()))
        }
        .await;
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written
    })
}

/// Write every record of `store`'s log as a JSON line, reading `page` records at a time: the
/// memory a log of any length needs is one page's. How many were written.
async fn write_records(
    store: &dyn sigil::store::Store,
    page: usize,
    sink: &mut dyn std::io::Write,
) -> Result<usize> {
    let (mut after, mut written) = (0, 0);
    loop {
        let records = store.audit_records(after, page.max(1)).await?;
        let Some(last) = records.last() else {
            return Ok(written);
        };
        after = last.seq;
        for r in &records {
            serde_json::to_writer(&mut *sink, r)?;
            sink.write_all(b"\n")?;
        }
        written += records.len();
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_export_reads_page_after_page_and_writes_every_record_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = sigil::store::SqliteStore::open(&dir.path().join("sigil.db"))
            .await
            .unwrap();
        use sigil::store::AuditStore;
        for i in 0..7 {
            store
                .audit("test", "exported", &format!("r{i}"), &serde_json::json!({}))
                .await
                .unwrap();
        }
        let mut out = Vec::new();
        // Pages of 3: three full, one short, then an empty one ends it.
        let n = super::write_records(&store, 3, &mut out).await.unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(n, lines.len());
        let seqs: Vec<i64> = lines.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
        let mut sorted = seqs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seqs, sorted, "in order, each once");
        assert_eq!(
            seqs.len() as i64,
            *seqs.last().unwrap(),
            "from the first record"
        );
        let subjects: Vec<&str> = lines
            .iter()
            .filter(|l| l["action"] == "exported")
            .map(|l| l["subject"].as_str().unwrap())
            .collect();
        assert_eq!(subjects, ["r0", "r1", "r2", "r3", "r4", "r5", "r6"]);
    }
}
