//! PostgreSQL: registrations of derived credentials (compare-and-set steps, the
//! registration's challenge, its link to the certificate) and the expiry of what waited.

use async_trait::async_trait;

use crate::store::RegistrationStore;

use super::PostgresStore;

#[async_trait]
impl RegistrationStore for PostgresStore {
    async fn insert_registration(
        &self,
        r: &RegistrationRecord,
        actor: &str,
    ) -> Result<(), StoreError> {
        insert(&self.pool, r, actor).await
    }
    async fn registration(&self, id: &str) -> Result<Option<RegistrationRecord>, StoreError> {
        get(&self.pool, id).await
    }
    async fn registrations(
        &self,
        email: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        list(&self.pool, email, limit).await
    }
    async fn device_registrations(
        &self,
        credential: &str,
        device_id: &str,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        of_device(&self.pool, credential, device_id).await
    }
    async fn update_registration(
        &self,
        r: &RegistrationRecord,
        from: RegistrationState,
        action: &str,
        actor: &str,
        details: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        update(&self.pool, r, from, action, actor, details).await
    }
    async fn registration_challenge(
        &self,
        id: &str,
        challenge: &ChallengeRecord,
        actor: &str,
    ) -> Result<bool, StoreError> {
        replace_challenge(&self.pool, id, challenge, actor).await
    }
    async fn expire(
        &self,
        at: i64,
        pending: &[(String, i64)],
    ) -> Result<(usize, usize), StoreError> {
        expire(&self.pool, at, pending).await
    }
}

use deadpool_postgres::{Pool, Transaction};

use super::issue::AuditEntry;
use super::{append_audit, err, pool_err};
use crate::store::registration::{sans_from_json, sans_to_json, REG_COLUMNS};
use crate::store::{
    ChallengeRecord, RegistrationRecord, RegistrationState, StoreError, EXPIRED_REASON,
};

fn from_row(r: &tokio_postgres::Row) -> RegistrationRecord {
    RegistrationRecord {
        id: r.get(0),
        email: r.get(1),
        credential: r.get(2),
        state: RegistrationState::parse(&r.get::<_, String>(3))
            .unwrap_or(RegistrationState::Expired),
        devices: r.get(4),
        directory_error: r.get(5),
        device_id: r.get(6),
        device: r.get(7),
        subject: r.get(8),
        sans: sans_from_json(&r.get::<_, String>(9)),
        created_by: r.get(10),
        requested_by: r.get(11),
        decided_by: r.get(12),
        comment: r.get(13),
        challenge_hash: r.get(14),
        serial: r.get(15),
        created_at: r.get(16),
        updated_at: r.get(17),
        expires_at: r.get(18),
    }
}

pub(super) async fn insert(
    pool: &Pool,
    r: &RegistrationRecord,
    actor: &str,
) -> Result<(), StoreError> {
    let mut c = pool.get().await.map_err(pool_err)?;
    let t = c.transaction().await.map_err(err)?;
    t.execute(
        &format!(
            "INSERT INTO registrations ({REG_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
             $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        ),
        &[
            &r.id,
            &r.email,
            &r.credential,
            &r.state.as_str(),
            &r.devices,
            &r.directory_error,
            &r.device_id,
            &r.device,
            &r.subject,
            &sans_to_json(&r.sans),
            &r.created_by,
            &r.requested_by,
            &r.decided_by,
            &r.comment,
            &r.challenge_hash,
            &r.serial,
            &r.created_at,
            &r.updated_at,
            &r.expires_at,
        ],
    )
    .await
    .map_err(err)?;
    append_audit(
        &t,
        actor,
        "registration_created",
        &r.id,
        &serde_json::json!({"email": r.email, "credential": r.credential,
            "directory_error": r.directory_error}),
    )
    .await?;
    t.commit().await.map_err(err)
}

pub(super) async fn get(pool: &Pool, id: &str) -> Result<Option<RegistrationRecord>, StoreError> {
    let c = pool.get().await.map_err(pool_err)?;
    Ok(c.query_opt(
        &format!("SELECT {REG_COLUMNS} FROM registrations WHERE id = $1"),
        &[&id],
    )
    .await
    .map_err(err)?
    .as_ref()
    .map(from_row))
}

pub(super) async fn list(
    pool: &Pool,
    email: Option<&str>,
    limit: usize,
) -> Result<Vec<RegistrationRecord>, StoreError> {
    let c = pool.get().await.map_err(pool_err)?;
    let limit = if limit == 0 { i64::MAX } else { limit as i64 };
    Ok(c.query(
        &format!(
            "SELECT {REG_COLUMNS} FROM registrations WHERE ($1::TEXT IS NULL OR email = $1) \
             ORDER BY created_at DESC, id LIMIT $2"
        ),
        &[&email, &limit],
    )
    .await
    .map_err(err)?
    .iter()
    .map(from_row)
    .collect())
}

async fn of_device(
    pool: &Pool,
    credential: &str,
    device_id: &str,
) -> Result<Vec<RegistrationRecord>, StoreError> {
    let c = pool.get().await.map_err(pool_err)?;
    Ok(c.query(
        &format!(
            "SELECT {REG_COLUMNS} FROM registrations WHERE device_id = $1 AND credential = $2 \
             ORDER BY created_at DESC, id"
        ),
        &[&device_id, &credential],
    )
    .await
    .map_err(err)?
    .iter()
    .map(from_row)
    .collect())
}

pub(super) async fn update(
    pool: &Pool,
    r: &RegistrationRecord,
    from: RegistrationState,
    action: &str,
    actor: &str,
    details: &serde_json::Value,
) -> Result<bool, StoreError> {
    let mut c = pool.get().await.map_err(pool_err)?;
    let t = c.transaction().await.map_err(err)?;
    let n = t
        .execute(
            "UPDATE registrations SET state = $1, devices = $2, directory_error = $3, \
             device_id = $4, device = $5, subject = $6, sans = $7, requested_by = $8, \
             decided_by = $9, comment = $10, updated_at = $11, expires_at = $12 \
             WHERE id = $13 AND state = $14",
            &[
                &r.state.as_str(),
                &r.devices,
                &r.directory_error,
                &r.device_id,
                &r.device,
                &r.subject,
                &sans_to_json(&r.sans),
                &r.requested_by,
                &r.decided_by,
                &r.comment,
                &r.updated_at,
                &r.expires_at,
                &r.id,
                &from.as_str(),
            ],
        )
        .await
        .map_err(err)?;
    if n != 1 {
        return Ok(false);
    }
    // A registration that is no longer approved leaves no usable challenge behind.
    // (The hash the row holds now: a payload collected since `r` was read minted a new one.)
    if r.state != RegistrationState::Approved {
        t.execute(
            "UPDATE challenges SET used_at = $1, used_by = 'withdrawn' \
             WHERE hash = (SELECT challenge_hash FROM registrations WHERE id = $2) \
             AND used_at IS NULL",
            &[&r.updated_at, &r.id],
        )
        .await
        .map_err(err)?;
    }
    append_audit(&t, actor, action, &r.id, details).await?;
    t.commit().await.map_err(err)?;
    Ok(true)
}

pub(super) async fn replace_challenge(
    pool: &Pool,
    id: &str,
    ch: &ChallengeRecord,
    actor: &str,
) -> Result<bool, StoreError> {
    let mut c = pool.get().await.map_err(pool_err)?;
    let t = c.transaction().await.map_err(err)?;
    let Some(row) = t
        .query_opt(
            "SELECT challenge_hash FROM registrations WHERE id = $1 \
             AND state IN ('approved', 'issued') FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(err)?
    else {
        return Ok(false);
    };
    let old: Option<String> = row.get(0);
    let at = super::now();
    if let Some(h) = &old {
        t.execute(
            "UPDATE challenges SET used_at = $1, used_by = 'replaced' \
             WHERE hash = $2 AND used_at IS NULL",
            &[&at, h],
        )
        .await
        .map_err(err)?;
    }
    super::challenges::insert_challenge(&t, ch).await?;
    t.execute(
        "UPDATE registrations SET challenge_hash = $1, updated_at = $2, \
         expires_at = GREATEST(expires_at, $3) WHERE id = $4",
        &[&ch.hash, &at, &ch.expires_at, &id],
    )
    .await
    .map_err(err)?;
    append_audit(
        &t,
        actor,
        "scep_payload_collected",
        id,
        &serde_json::json!({"profile": ch.profile, "challenge_id": ch.id,
            "challenge_expires_at": crate::store::now_text(ch.expires_at),
            "replaced_previous": old.is_some()}),
    )
    .await?;
    t.commit().await.map_err(err)?;
    Ok(true)
}

/// Inside `record_issued`: the registration whose challenge was just consumed becomes issued.
/// The registration rows of an issuance made with a registration's challenge: the
/// registration becomes issued with `serial`. Returns its audit record, for the caller to
/// chain (see `postgres_issue`).
pub(super) async fn link_rows(
    t: &Transaction<'_>,
    challenge_hash: &str,
    serial: &str,
    renewing: bool,
    actor: &str,
) -> Result<Option<AuditEntry>, StoreError> {
    let Some(row) = t
        .query_opt(
            "SELECT id, state FROM registrations WHERE challenge_hash = $1 FOR UPDATE",
            &[&challenge_hash],
        )
        .await
        .map_err(err)?
    else {
        return Ok(None);
    };
    let (id, state): (String, String) = (row.get(0), row.get(1));
    // A registration's challenge issues while the registration is approved, or, issued, as the
    // renewal of the certificate it holds (`relink_rows` moves it).
    match (state.as_str(), renewing) {
        ("approved", _) => {}
        ("issued", true) => return Ok(None),
        _ => return Err(StoreError::ChallengeSpent),
    }
    t.execute(
        "UPDATE registrations SET state = 'issued', serial = $1, updated_at = $2 WHERE id = $3",
        &[&serial, &super::now(), &id],
    )
    .await
    .map_err(err)?;
    Ok(Some(AuditEntry {
        actor: actor.into(),
        action: "registration_issued".into(),
        subject: id,
        details: serde_json::json!({"serial": serial}),
    }))
}

/// The registration rows of a renewal: the issued registration whose certificate was `old`
/// now has `new` (its next renewal and its withdrawal go by the certificate the device holds;
/// the superseded one ends nothing). Returns its audit record, for the caller to chain.
pub(super) async fn relink_rows(
    t: &Transaction<'_>,
    old: &str,
    new: &str,
    actor: &str,
) -> Result<Option<AuditEntry>, StoreError> {
    let row = t
        .query_opt(
            "UPDATE registrations SET serial = $1, updated_at = $2 \
             WHERE serial = $3 AND state = 'issued' RETURNING id",
            &[&new, &super::now(), &old],
        )
        .await
        .map_err(err)?;
    Ok(row.map(|r| AuditEntry {
        actor: actor.into(),
        action: "registration_renewed".into(),
        subject: r.get(0),
        details: serde_json::json!({"serial": new, "renews": old}),
    }))
}

pub(super) async fn expire(
    pool: &Pool,
    at: i64,
    pending: &[(String, i64)],
) -> Result<(usize, usize), StoreError> {
    let mut c = pool.get().await.map_err(pool_err)?;
    let t = c.transaction().await.map_err(err)?;
    // Rows first, the audit head last (in one append), the order every writer takes.
    let mut audits = Vec::new();
    let regs = t
        .query(
            "SELECT id, challenge_hash, state FROM registrations \
             WHERE state IN ('open', 'requested', 'approved') AND expires_at <= $1 FOR UPDATE",
            &[&at],
        )
        .await
        .map_err(err)?;
    for r in &regs {
        let (id, hash, state): (String, Option<String>, String) = (r.get(0), r.get(1), r.get(2));
        t.execute(
            "UPDATE registrations SET state = 'expired', updated_at = $1 WHERE id = $2",
            &[&at, &id],
        )
        .await
        .map_err(err)?;
        if let Some(h) = hash {
            t.execute(
                "UPDATE challenges SET used_at = $1, used_by = 'expired' \
                 WHERE hash = $2 AND used_at IS NULL",
                &[&at, &h],
            )
            .await
            .map_err(err)?;
        }
        audits.push(AuditEntry {
            actor: "sigil".into(),
            action: "expired".into(),
            subject: id,
            details: serde_json::json!({"registration": true, "was": state}),
        });
    }
    let mut txs = 0;
    for (profile, before) in pending {
        let ids = t
            .query(
                "SELECT id, transaction_id FROM transactions \
                 WHERE state = 'pending' AND profile = $1 AND created_at <= $2 FOR UPDATE",
                &[profile, before],
            )
            .await
            .map_err(err)?;
        for row in ids {
            let (id, tid): (String, String) = (row.get(0), row.get(1));
            t.execute(
                "UPDATE transactions SET state = 'rejected', reason = $1, csr = NULL, \
                 updated_at = $2 WHERE id = $3 AND state = 'pending'",
                &[&EXPIRED_REASON, &at, &id],
            )
            .await
            .map_err(err)?;
            audits.push(AuditEntry {
                actor: "sigil".into(),
                action: "expired".into(),
                subject: tid,
                details: serde_json::json!({"profile": profile, "reason": EXPIRED_REASON,
                    "transaction": id}),
            });
            txs += 1;
        }
    }
    super::issue::append_audits(&t, &audits).await?;
    t.commit().await.map_err(err)?;
    Ok((regs.len(), txs))
}
