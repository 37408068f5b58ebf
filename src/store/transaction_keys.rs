//! Schema 6 keys transactions by [`TransactionRecord::key`] instead of the bare
//! transactionID. Records written before it carry the transactionID as their key, and a
//! renewal's as `<transactionID>~renew~<serial>`: this step, run once inside the migration,
//! gives each its new key and splits the renewed serial out.

use super::{StoreError, TransactionRecord};

/// (old key, new key, transactionID, renewed serial) of one record.
fn rekey(old: &str, signer_sha256: &str) -> (String, String, Option<String>) {
    let (tid, renews) = match old.split_once("~renew~") {
        Some((t, s)) => (t.to_string(), Some(s.to_string())),
        None => (old.to_string(), None),
    };
    (
        TransactionRecord::key(&tid, signer_sha256, renews.as_deref()),
        tid,
        renews,
    )
}

/// On SQLite, inside the migration's transaction.
pub(super) fn sqlite(t: &rusqlite::Connection) -> Result<(), StoreError> {
    use super::sqlite::err;
    let rows: Vec<(String, String)> = {
        let mut stmt = t
            .prepare("SELECT id, signer_sha256 FROM transactions")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)?
    };
    for (old, signer) in rows {
        let (key, tid, renews) = rekey(&old, &signer);
        t.execute(
            "UPDATE transactions SET id = ?1, transaction_id = ?2, renews = ?3 WHERE id = ?4",
            rusqlite::params![key, tid, renews, old],
        )
        .map_err(err)?;
    }
    Ok(())
}

/// On PostgreSQL, inside the migration's transaction.
pub(super) async fn postgres(t: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    use super::postgres::err;
    let rows = t
        .query("SELECT id, signer_sha256 FROM transactions", &[])
        .await
        .map_err(err)?;
    for r in rows {
        let (old, signer): (String, String) = (r.get(0), r.get(1));
        let (key, tid, renews) = rekey(&old, &signer);
        t.execute(
            "UPDATE transactions SET id = $1, transaction_id = $2, renews = $3 WHERE id = $4",
            &[&key, &tid, &renews, &old],
        )
        .await
        .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_keys_are_split_and_rekeyed() {
        let (k, t, r) = rekey("ABC~renew~1f", "sig");
        assert_eq!((t.as_str(), r.as_deref()), ("ABC", Some("1f")));
        assert_eq!(k, TransactionRecord::key("ABC", "sig", Some("1f")));
        let (k2, t2, r2) = rekey("ABC", "sig");
        assert_eq!((t2.as_str(), r2), ("ABC", None));
        assert_ne!(k, k2);
        assert_eq!(k2.len(), 32);
    }
}
