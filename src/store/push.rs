//! The records of deliveries to the MDM: after an officer approves a registration Sigil tells
//! the credential's MDM to deliver (add the device to a group, install a profile, call a
//! webhook), undoes it when the credential is revoked or withdrawn, and asks for a re-push
//! inside the renewal window. Each is one row, retried with backoff.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a push asks of the MDM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushAction {
    /// Deliver the credential's profile to the device.
    Deliver,
    /// Take it back (the credential was revoked or withdrawn).
    Withdraw,
    /// Deliver it again inside the renewal window (Apple devices do not renew on their own).
    Renew,
}

impl PushAction {
    /// The name in the database and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PushAction::Deliver => "deliver",
            PushAction::Withdraw => "withdraw",
            PushAction::Renew => "renew",
        }
    }

    /// Read a stored name.
    pub fn parse(s: &str) -> Option<PushAction> {
        [PushAction::Deliver, PushAction::Withdraw, PushAction::Renew]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

impl fmt::Display for PushAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a push stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushState {
    /// Not done yet (queued, or retried after a failure).
    Pending,
    /// The MDM accepted it.
    Delivered,
    /// Given up: the MDM said something that retrying will not change (a device it no longer
    /// knows, a refusal), or the retries ran out.
    Failed,
}

impl PushState {
    /// The name in the database and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PushState::Pending => "pending",
            PushState::Delivered => "delivered",
            PushState::Failed => "failed",
        }
    }

    /// Read a stored name.
    pub fn parse(s: &str) -> Option<PushState> {
        [PushState::Pending, PushState::Delivered, PushState::Failed]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

impl fmt::Display for PushState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    /// `push_…`.
    pub id: String,
    /// The registration it is for.
    pub registration_id: String,
    /// Unique per registration: `deliver`, `withdraw`, `renew:<serial>`.
    pub key: String,
    /// What it asks.
    pub action: PushAction,
    /// Where it stands.
    pub state: PushState,
    /// Attempts made.
    pub attempts: i64,
    /// When it is tried next (Unix seconds; meaningful while pending).
    pub next_at: i64,
    /// What the MDM said last (its own words on a failure).
    pub message: String,
    /// Queued (Unix seconds).
    pub created_at: i64,
    /// Last changed.
    pub updated_at: i64,
}

/// Columns, in the order the row readers expect.
pub(crate) const PUSH_COLUMNS: &str = "id, registration_id, key, action, state, attempts, \
     next_at, message, created_at, updated_at";

/// A push whose stored action or state is unknown reads as failed, with why.
pub(crate) fn push_from_parts(
    parts: (
        String,
        String,
        String,
        String,
        String,
        i64,
        i64,
        String,
        i64,
        i64,
    ),
) -> PushRecord {
    let (
        id,
        registration_id,
        key,
        action,
        state,
        attempts,
        next_at,
        message,
        created_at,
        updated_at,
    ) = parts;
    let (action, state, message) = match (PushAction::parse(&action), PushState::parse(&state)) {
        (Some(a), Some(s)) => (a, s, message),
        _ => (
            PushAction::Deliver,
            PushState::Failed,
            format!("unreadable push record ({action}, {state})"),
        ),
    };
    PushRecord {
        id,
        registration_id,
        key,
        action,
        state,
        attempts,
        next_at,
        message,
        created_at,
        updated_at,
    }
}

/// The audit details of a push.
pub(crate) fn push_details(p: &PushRecord) -> serde_json::Value {
    serde_json::json!({
        "push": p.id, "key": p.key, "action": p.action.as_str(), "state": p.state.as_str(),
        "attempts": p.attempts, "message": p.message,
    })
}

/// The query behind [`crate::store::PushStore::push_follow_ups`] (an approved registration of
/// a pushing credential with no deliver queued, which a failed write after the approval would
/// leave behind, is named too; a registration whose deliver
/// failed for good is followed up too: the MDM may have applied it without Sigil hearing so,
/// and a withdrawal of what was never installed is harmless), for `credentials`
/// credentials, with `p(i)` the engine's i-th placeholder (from 1): `now` first, then each
/// credential's name and renewal horizon (`now` plus its window; `now`: no renewals). It reads
/// every push row once (no index on the action) and, for the delivered registrations only,
/// point lookups by the (registration, key) and serial indexes: one statement per round
/// instead of a store call per registration.
pub(crate) fn follow_ups_sql(credentials: usize, p: impl Fn(usize) -> String) -> String {
    let windows: Vec<String> = (0..credentials)
        .map(|i| {
            format!(
                "(r.credential = {} AND c.not_after < {})",
                p(2 + 2 * i),
                p(3 + 2 * i)
            )
        })
        .collect();
    let names: Vec<String> = (0..credentials).map(|i| p(2 + 2 * i)).collect();
    format!(
        "SELECT id FROM (\
         SELECT r.id FROM registrations r WHERE r.state = 'approved' \
         AND r.credential IN ({names}) \
         AND NOT EXISTS (SELECT 1 FROM pushes q WHERE q.registration_id = r.id \
                         AND q.key = 'deliver') \
         UNION \
         SELECT r.id FROM pushes d JOIN registrations r ON r.id = d.registration_id \
         WHERE d.action = 'deliver' \
         AND r.credential IN ({names}) \
         AND NOT EXISTS (SELECT 1 FROM pushes w WHERE w.registration_id = r.id \
                         AND w.key = 'withdraw') \
         AND (r.state IN ('rejected', 'expired') \
              OR EXISTS (SELECT 1 FROM certificates c WHERE c.serial = r.serial \
                         AND (c.status = 'revoked' \
                              OR (c.not_after >= {now} AND ({windows}) \
                                  AND NOT EXISTS (SELECT 1 FROM pushes n \
                                      WHERE n.registration_id = r.id \
                                      AND n.key = 'renew:' || c.serial)))))\
         ) f ORDER BY id",
        names = names.join(", "),
        now = p(1),
        windows = windows.join(" OR "),
    )
}
