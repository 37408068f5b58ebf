//! Schema 6 keys transactions by [`TransactionRecord::key`] instead of the bare
//! transactionID. Records written before it carry the transactionID as their key, and a
//! request signed by one of this CA's certificates as `<transactionID>~renew~<serial>`: this
//! step, run once inside the migration, gives each its new key and splits the serial out.
//!
//! The keys move in two passes (all to a temporary prefix, then each to its new key), so a
//! new key can never meet an old one not yet moved. A PENDING record is never a renewal
//! (renewals are not held for approval), so it gets no renewed serial; and it gets the id of
//! the one-time challenge it spent, so the two-person rule knows its minter.

use super::{StoreError, TransactionRecord};

const TEMPORARY: &str = "v6-rekey:";

/// (new key, transactionID, renewed serial) of one record.
fn rekey(old: &str, signer_sha256: &str, pending: bool) -> (String, String, Option<String>) {
    let (tid, serial) = match old.split_once("~renew~") {
        Some((t, s)) => (t.to_string(), Some(s.to_string())),
        None => (old.to_string(), None),
    };
    let key = TransactionRecord::key(&tid, signer_sha256, serial.as_deref());
    (key, tid, if pending { None } else { serial })
}

/// On SQLite, inside the migration's transaction.
pub(super) fn sqlite(t: &rusqlite::Connection) -> Result<(), StoreError> {
    use super::sqlite::err;
    t.execute(
        "UPDATE transactions SET id = ?1 || id",
        rusqlite::params![TEMPORARY],
    )
    .map_err(err)?;
    let rows: Vec<(String, String, String)> = {
        let mut stmt = t
            .prepare("SELECT id, signer_sha256, state FROM transactions")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)?
    };
    for (temporary, signer, state) in rows {
        let old = temporary.trim_start_matches(TEMPORARY);
        let (key, tid, renews) = rekey(old, &signer, state == "pending");
        t.execute(
            "UPDATE transactions SET id = ?1, transaction_id = ?2, renews = ?3, \
             challenge_id = CASE WHEN state = 'pending' THEN \
               (SELECT c.id FROM challenges c WHERE c.used_by = ?4 ORDER BY c.used_at DESC \
                LIMIT 1) END \
             WHERE id = ?5",
            rusqlite::params![key, tid, renews, old, temporary],
        )
        .map_err(err)?;
    }
    Ok(())
}

/// On PostgreSQL, inside the migration's transaction.
pub(super) async fn postgres(t: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    use super::postgres::err;
    t.execute("UPDATE transactions SET id = $1 || id", &[&TEMPORARY])
        .await
        .map_err(err)?;
    let rows = t
        .query("SELECT id, signer_sha256, state FROM transactions", &[])
        .await
        .map_err(err)?;
    for r in rows {
        let (temporary, signer, state): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let old = temporary.trim_start_matches(TEMPORARY).to_string();
        let (key, tid, renews) = rekey(&old, &signer, state == "pending");
        t.execute(
            "UPDATE transactions SET id = $1, transaction_id = $2, renews = $3, \
             challenge_id = CASE WHEN state = 'pending' THEN \
               (SELECT c.id FROM challenges c WHERE c.used_by = $4 ORDER BY c.used_at DESC \
                LIMIT 1) END \
             WHERE id = $5",
            &[&key, &tid, &renews, &old, &temporary],
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
        let (k, t, r) = rekey("ABC~renew~1f", "sig", false);
        assert_eq!((t.as_str(), r.as_deref()), ("ABC", Some("1f")));
        assert_eq!(k, TransactionRecord::key("ABC", "sig", Some("1f")));
        let (k2, t2, r2) = rekey("ABC", "sig", false);
        assert_eq!((t2.as_str(), r2), ("ABC", None));
        assert_ne!(k, k2);
        assert_eq!(k2.len(), 32);
        // A PENDING record was a PKCSReq with a challenge, never a renewal.
        let (k3, _, r3) = rekey("ABC~renew~1f", "sig", true);
        assert_eq!((k3, r3), (k, None));
    }
}
