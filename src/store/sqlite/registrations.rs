//! SQLite: registrations of derived credentials (compare-and-set steps, the
//! registration's challenge, its link to the certificate) and the expiry of what waited.

use async_trait::async_trait;

use crate::store::RegistrationStore;

use super::SqliteStore;

#[async_trait]
impl RegistrationStore for SqliteStore {
    async fn insert_registration(
        &self,
        r: &RegistrationRecord,
        actor: &str,
    ) -> Result<(), StoreError> {
        let (r, actor) = (r.clone(), actor.to_owned());
        self.with(move |c| insert(c, &r, &actor)).await
    }
    async fn registration(&self, id: &str) -> Result<Option<RegistrationRecord>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| get(c, &id)).await
    }
    async fn registrations(
        &self,
        email: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        let email = email.map(str::to_owned);
        self.with(move |c| list(c, email.as_deref(), limit)).await
    }
    async fn device_registrations(
        &self,
        credential: &str,
        device_id: &str,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        let (credential, device_id) = (credential.to_owned(), device_id.to_owned());
        self.with(move |c| of_device(c, &credential, &device_id))
            .await
    }
    async fn update_registration(
        &self,
        r: &RegistrationRecord,
        from: RegistrationState,
        action: &str,
        actor: &str,
        details: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let (r, action, actor, details) = (
            r.clone(),
            action.to_owned(),
            actor.to_owned(),
            details.clone(),
        );
        self.with(move |c| update(c, &r, from, &action, &actor, &details))
            .await
    }
    async fn registration_challenge(
        &self,
        id: &str,
        challenge: &ChallengeRecord,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let (id, ch, actor) = (id.to_owned(), challenge.clone(), actor.to_owned());
        self.with(move |c| replace_challenge(c, &id, &ch, &actor))
            .await
    }
    async fn expire(
        &self,
        at: i64,
        pending: &[(String, i64)],
    ) -> Result<(usize, usize), StoreError> {
        let pending = pending.to_vec();
        self.with(move |c| expire(c, at, &pending)).await
    }
}

use rusqlite::{params, Connection, OptionalExtension};

use super::{append_audit, err};
use crate::store::registration::{sans_from_json, sans_to_json, REG_COLUMNS};
use crate::store::{
    ChallengeRecord, RegistrationRecord, RegistrationState, StoreError, EXPIRED_REASON,
};

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RegistrationRecord> {
    let state: String = r.get(3)?;
    Ok(RegistrationRecord {
        id: r.get(0)?,
        email: r.get(1)?,
        credential: r.get(2)?,
        state: RegistrationState::parse(&state).unwrap_or(RegistrationState::Expired),
        devices: r.get(4)?,
        directory_error: r.get(5)?,
        device_id: r.get(6)?,
        device: r.get(7)?,
        subject: r.get(8)?,
        sans: sans_from_json(&r.get::<_, String>(9)?),
        created_by: r.get(10)?,
        requested_by: r.get(11)?,
        decided_by: r.get(12)?,
        comment: r.get(13)?,
        challenge_hash: r.get(14)?,
        serial: r.get(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
        expires_at: r.get(18)?,
    })
}

pub(super) fn insert(
    c: &mut Connection,
    r: &RegistrationRecord,
    actor: &str,
) -> Result<(), StoreError> {
    let t = c.transaction().map_err(err)?;
    t.execute(
        &format!(
            "INSERT INTO registrations ({REG_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
             ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        ),
        params![
            r.id,
            r.email,
            r.credential,
            r.state.as_str(),
            r.devices,
            r.directory_error,
            r.device_id,
            r.device,
            r.subject,
            sans_to_json(&r.sans),
            r.created_by,
            r.requested_by,
            r.decided_by,
            r.comment,
            r.challenge_hash,
            r.serial,
            r.created_at,
            r.updated_at,
            r.expires_at
        ],
    )
    .map_err(err)?;
    append_audit(
        &t,
        actor,
        "registration_created",
        &r.id,
        &serde_json::json!({"email": r.email, "credential": r.credential,
            "directory_error": r.directory_error}),
    )?;
    t.commit().map_err(err)
}

pub(super) fn get(c: &mut Connection, id: &str) -> Result<Option<RegistrationRecord>, StoreError> {
    c.query_row(
        &format!("SELECT {REG_COLUMNS} FROM registrations WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()
    .map_err(err)
}

pub(super) fn list(
    c: &mut Connection,
    email: Option<&str>,
    limit: usize,
) -> Result<Vec<RegistrationRecord>, StoreError> {
    let limit = if limit == 0 { i64::MAX } else { limit as i64 };
    let mut stmt = c
        .prepare(&format!(
            "SELECT {REG_COLUMNS} FROM registrations WHERE (?1 IS NULL OR email = ?1) \
             ORDER BY created_at DESC, id LIMIT ?2"
        ))
        .map_err(err)?;
    let rows = stmt
        .query_map(params![email, limit], from_row)
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// A device's registrations for a credential (`?1` the device, `?2` the credential).
fn of_device_sql() -> String {
    format!(
        "SELECT {REG_COLUMNS} FROM registrations WHERE device_id = ?1 AND credential = ?2 \
         ORDER BY created_at DESC, id"
    )
}

fn of_device(
    c: &mut Connection,
    credential: &str,
    device_id: &str,
) -> Result<Vec<RegistrationRecord>, StoreError> {
    let mut stmt = c.prepare(&of_device_sql()).map_err(err)?;
    let rows = stmt
        .query_map(params![device_id, credential], from_row)
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

pub(super) fn update(
    c: &mut Connection,
    r: &RegistrationRecord,
    from: RegistrationState,
    action: &str,
    actor: &str,
    details: &serde_json::Value,
) -> Result<bool, StoreError> {
    let t = c.transaction().map_err(err)?;
    let n = t
        .execute(
            "UPDATE registrations SET state = ?1, devices = ?2, directory_error = ?3, \
             device_id = ?4, device = ?5, subject = ?6, sans = ?7, requested_by = ?8, \
             decided_by = ?9, comment = ?10, updated_at = ?11, expires_at = ?12 \
             WHERE id = ?13 AND state = ?14",
            params![
                r.state.as_str(),
                r.devices,
                r.directory_error,
                r.device_id,
                r.device,
                r.subject,
                sans_to_json(&r.sans),
                r.requested_by,
                r.decided_by,
                r.comment,
                r.updated_at,
                r.expires_at,
                r.id,
                from.as_str()
            ],
        )
        .map_err(err)?;
    if n != 1 {
        return Ok(false);
    }
    // A registration that is no longer approved leaves no usable challenge behind.
    // (The hash the row holds now: a payload collected since `r` was read minted a new one.)
    if r.state != RegistrationState::Approved {
        t.execute(
            "UPDATE challenges SET used_at = ?1, used_by = 'withdrawn' \
             WHERE hash = (SELECT challenge_hash FROM registrations WHERE id = ?2) \
             AND used_at IS NULL",
            params![r.updated_at, r.id],
        )
        .map_err(err)?;
    }
    append_audit(&t, actor, action, &r.id, details)?;
    t.commit().map_err(err)?;
    Ok(true)
}

pub(super) fn replace_challenge(
    c: &mut Connection,
    id: &str,
    ch: &ChallengeRecord,
    actor: &str,
) -> Result<bool, StoreError> {
    let t = c.transaction().map_err(err)?;
    let old: Option<Option<String>> = t
        .query_row(
            "SELECT challenge_hash FROM registrations WHERE id = ?1 \
             AND state IN ('approved', 'issued')",
            [id],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    let Some(old) = old else {
        return Ok(false);
    };
    let at = super::now();
    if let Some(h) = &old {
        t.execute(
            "UPDATE challenges SET used_at = ?1, used_by = 'replaced' \
             WHERE hash = ?2 AND used_at IS NULL",
            params![at, h],
        )
        .map_err(err)?;
    }
    super::challenges::insert_challenge(&t, ch)?;
    t.execute(
        "UPDATE registrations SET challenge_hash = ?1, updated_at = ?2, \
         expires_at = MAX(expires_at, ?3) WHERE id = ?4",
        params![ch.hash, at, ch.expires_at, id],
    )
    .map_err(err)?;
    append_audit(
        &t,
        actor,
        "scep_payload_collected",
        id,
        &serde_json::json!({"profile": ch.profile, "challenge_id": ch.id,
            "challenge_expires_at": crate::store::now_text(ch.expires_at),
            "replaced_previous": old.is_some()}),
    )?;
    t.commit().map_err(err)?;
    Ok(true)
}

/// Inside `record_issued`: the registration whose challenge was just consumed becomes issued;
/// an issued one's renewal challenge (`renewing`: the record renews the certificate the
/// registration holds) leaves it to `relink`.
pub(super) fn link(
    t: &rusqlite::Connection,
    challenge_hash: &str,
    serial: &str,
    renewing: bool,
    actor: &str,
) -> Result<(), StoreError> {
    let found: Option<(String, String)> = t
        .query_row(
            "SELECT id, state FROM registrations WHERE challenge_hash = ?1",
            [challenge_hash],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(err)?;
    let Some((id, state)) = found else {
        return Ok(());
    };
    // A registration's challenge issues while the registration is approved, or, issued, as the
    // renewal of the certificate it holds.
    match (state.as_str(), renewing) {
        ("approved", _) => {}
        ("issued", true) => return Ok(()),
        _ => return Err(StoreError::ChallengeSpent),
    }
    t.execute(
        "UPDATE registrations SET state = 'issued', serial = ?1, updated_at = ?2 WHERE id = ?3",
        params![serial, super::now(), id],
    )
    .map_err(err)?;
    append_audit(
        t,
        actor,
        "registration_issued",
        &id,
        &serde_json::json!({"serial": serial}),
    )
}

/// Inside `record_issued`, for a renewal: the issued registration whose certificate was
/// `old` now has `new`, so its follow-ups (the next renewal, a withdrawal when the new one is
/// revoked) go by the certificate the device holds, and the old one, superseded, ends nothing.
pub(super) fn relink(
    t: &rusqlite::Connection,
    old: &str,
    new: &str,
    actor: &str,
) -> Result<(), StoreError> {
    let id: Option<String> = t
        .prepare_cached(
            "UPDATE registrations SET serial = ?1, updated_at = ?2 \
             WHERE serial = ?3 AND state = 'issued' RETURNING id",
        )
        .and_then(|mut s| {
            s.query_row(params![new, super::now(), old], |r| r.get(0))
                .optional()
        })
        .map_err(err)?;
    match id {
        Some(id) => append_audit(
            t,
            actor,
            "registration_renewed",
            &id,
            &serde_json::json!({"serial": new, "renews": old}),
        ),
        None => Ok(()),
    }
}

pub(super) fn expire(
    c: &mut Connection,
    at: i64,
    pending: &[(String, i64)],
) -> Result<(usize, usize), StoreError> {
    let t = c.transaction().map_err(err)?;
    let regs: Vec<(String, Option<String>, String)> = {
        let mut stmt = t
            .prepare(
                "SELECT id, challenge_hash, state FROM registrations \
                 WHERE state IN ('open', 'requested', 'approved') AND expires_at <= ?1",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([at], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)?
    };
    for (id, hash, state) in &regs {
        t.execute(
            "UPDATE registrations SET state = 'expired', updated_at = ?1 WHERE id = ?2",
            params![at, id],
        )
        .map_err(err)?;
        if let Some(h) = hash {
            t.execute(
                "UPDATE challenges SET used_at = ?1, used_by = 'expired' \
                 WHERE hash = ?2 AND used_at IS NULL",
                params![at, h],
            )
            .map_err(err)?;
        }
        append_audit(
            &t,
            "sigil",
            "expired",
            id,
            &serde_json::json!({"registration": true, "was": state}),
        )?;
    }
    let mut txs = 0;
    for (profile, before) in pending {
        let ids: Vec<(String, String)> = {
            let mut stmt = t
                .prepare(
                    "SELECT id, transaction_id FROM transactions \
                     WHERE state = 'pending' AND profile = ?1 AND created_at <= ?2",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(params![profile, before], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)?
        };
        for (id, tid) in ids {
            t.execute(
                "UPDATE transactions SET state = 'rejected', reason = ?1, csr = NULL, \
                 updated_at = ?2 WHERE id = ?3 AND state = 'pending'",
                params![EXPIRED_REASON, at, id],
            )
            .map_err(err)?;
            append_audit(
                &t,
                "sigil",
                "expired",
                &tid,
                &serde_json::json!({"profile": profile, "reason": EXPIRED_REASON,
                    "transaction": id}),
            )?;
            txs += 1;
        }
    }
    t.commit().map_err(err)?;
    Ok((regs.len(), txs))
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;

    /// A withdrawal reads the device's registrations through their index, not every
    /// registration.
    #[tokio::test]
    async fn a_devices_registrations_are_read_through_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let plan = super::super::query_plan(&store, super::of_device_sql(), Vec::new()).await;
        assert!(plan.contains("USING INDEX registrations_device"), "{plan}");
    }
}
