//! The API's JSON bodies: one type per answer (and per request the API reads), each the
//! value a handler serialises and the schema the OpenAPI document shows, so the document and
//! the wire cannot say different things.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::authority::{CertStatus, CertificateRecord, PushRecord, RegistrationRecord};
use crate::clock::rfc3339;

/// An error: a stable code for programs and a sentence for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// Machine-readable code (`forbidden`, `not_found`, `bad_json`, …).
    #[schema(example = "not_found")]
    pub error: String,
    /// What went wrong and how to fix it.
    pub message: String,
}

/// A token asked for (admin).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    /// `admin`, `officer`, `auditor`, `mdm` or `user`.
    pub(crate) role: String,
    /// A name people recognise (1 to 100 characters).
    pub(crate) name: String,
    /// Days until it stops working (at least 1); none: it does not expire.
    #[serde(default)]
    pub(crate) expires_in_days: Option<u32>,
    /// mdm tokens: the profiles it may mint challenges for (`*`: all open to integrations).
    #[serde(default)]
    pub(crate) profiles: Vec<String>,
    /// mdm tokens: the directories whose SCEP payloads it may collect (`*`: all).
    #[serde(default)]
    pub(crate) directories: Vec<String>,
}

/// The scope of an integration token.
#[derive(Debug, Serialize, ToSchema)]
pub struct Scope {
    /// Profiles it may mint one-time challenges for (`*`: every profile open to integrations).
    pub profiles: Vec<String>,
    /// Directories whose registrations' SCEP payloads it may collect (`*`: all).
    pub directories: Vec<String>,
}

impl From<&crate::authority::TokenScope> for Scope {
    fn from(s: &crate::authority::TokenScope) -> Self {
        Self {
            profiles: s.profiles.clone(),
            directories: s.directories.clone(),
        }
    }
}

/// A token as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// The token's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it stops working, if it does.
    pub expires_at: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// When it last authenticated a request.
    pub last_used_at: Option<String>,
    /// What an integration token may do.
    pub scope: Scope,
    /// The person who made it (or for whom it was made).
    pub owner: Option<String>,
    /// A token that grants power works only once a second admin approves it.
    pub awaiting_approval: bool,
    /// The admin who approved it.
    pub approved_by: Option<String>,
}

impl From<&crate::authority::TokenRecord> for TokenView {
    fn from(t: &crate::authority::TokenRecord) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            role: t.role.clone(),
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339),
            revoked_at: t.revoked_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
            scope: Scope::from(&t.scope),
            owner: t.owner.clone(),
            awaiting_approval: t.awaiting_approval,
            approved_by: t.approved_by.clone(),
        }
    }
}

/// A token just made: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The secret, for `Authorization: Bearer …` (shown once).
    pub token: String,
    /// The token's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// When it stops working, if it does.
    pub expires_at: Option<String>,
    /// What an integration token may do.
    pub scope: Scope,
    /// The person who made it.
    pub owner: Option<String>,
    /// True when a second admin must approve it before it works.
    pub awaiting_approval: bool,
    /// What to do next, when there is something to do ("" otherwise).
    pub note: String,
}

/// A one-time challenge asked for by an integration (mdm, admin).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NewChallenge {
    /// The certificate profile (default: the default profile).
    pub(crate) profile: Option<String>,
    /// The CN the certificate must carry (the whole subject when bound).
    pub(crate) cn: Option<String>,
    /// SANs the certificate must carry: `dns:…`, `email:…`, `upn:…`, `uri:…`, `ip:…`.
    pub(crate) sans: Vec<String>,
    /// The MDM's device ID, recorded on the certificate for revocation by device.
    pub(crate) device_id: Option<String>,
    /// Minutes until the challenge expires (1 to 10080, default 60).
    pub(crate) ttl_minutes: Option<u32>,
}

/// A one-time challenge: shown once, works once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeIssued {
    /// The challenge password the device puts in its request.
    pub challenge: String,
    /// The challenge's id (in the audit records of its minting and of the certificate).
    pub id: String,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
    /// The profile it enrolls on.
    pub profile: String,
}

/// The filters of the certificate list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CertQuery {
    /// Only this profile's certificates.
    pub(crate) profile: Option<String>,
    /// `valid` or `revoked`.
    pub(crate) status: Option<String>,
    /// Valid certificates ending within this span: `30d`, `12h`, `45m`; listed soonest
    /// ending first.
    pub(crate) expiring_within: Option<String>,
    /// Subjects containing this text.
    pub(crate) subject: Option<String>,
    /// Certificates issued to this MDM device ID.
    pub(crate) device: Option<String>,
    /// At most this many (1 to 10000, default 1000), newest first (soonest ending first
    /// with `expiring_within`).
    pub(crate) limit: Option<usize>,
}

/// An issued certificate.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Subject DN.
    pub subject: String,
    /// Subject alternative names, one line (`DNS:…, email:…`).
    pub sans: String,
    /// Issuer DN.
    pub issuer: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// The profile it was issued on.
    pub profile: String,
    /// `valid` or `revoked`.
    #[schema(example = "valid")]
    pub status: &'static str,
    /// The SCEP transaction it was issued in.
    pub transaction_id: String,
    /// The MDM device ID it was bound to, if any.
    pub device_id: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// Why (RFC 5280 reason name).
    pub revocation_reason: Option<&'static str>,
    /// The certificate in PEM (one certificate only, not in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
}

impl CertificateView {
    /// The view of a record; with `with_pem` the certificate itself too.
    pub(crate) fn of(c: &CertificateRecord, with_pem: bool) -> Self {
        Self {
            serial: c.serial.clone(),
            subject: c.subject.clone(),
            sans: c.sans.clone(),
            issuer: c.issuer.clone(),
            not_before: rfc3339(c.not_before),
            not_after: rfc3339(c.not_after),
            profile: c.profile.clone(),
            status: if c.status == CertStatus::Valid {
                "valid"
            } else {
                "revoked"
            },
            transaction_id: c.transaction_id.clone(),
            device_id: c.device_id.clone(),
            revoked_at: c.revoked_at.map(rfc3339),
            revocation_reason: c.revocation_reason.map(crate::pki::revocation_reason_name),
            pem: with_pem.then(|| crate::pki::to_pem(&c.der)),
        }
    }
}

/// A revocation asked for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Revocation {
    /// RFC 5280 reason: `unspecified`, `keyCompromise`, `affiliationChanged`, `superseded`,
    /// `cessationOfOperation`, `certificateHold`, `privilegeWithdrawn`, …
    #[schema(example = "keyCompromise")]
    pub(crate) reason: String,
}

/// A certificate revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateRevoked {
    /// Its serial.
    pub serial: String,
    /// `revoked`.
    pub status: &'static str,
    /// The reason recorded.
    pub reason: &'static str,
}

/// A device's certificates revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceRevoked {
    /// The MDM device ID.
    pub device_id: String,
    /// The serials revoked.
    pub revoked: Vec<String>,
    /// The reason recorded.
    pub reason: &'static str,
}

/// A registration's credential revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationRevoked {
    /// The registration.
    pub registration: String,
    /// The serials revoked (its certificate and its device's other valid ones).
    pub revoked: Vec<String>,
    /// The reason recorded.
    pub reason: &'static str,
}

/// An officer's decision: an optional comment (an empty body is no comment).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DecisionBody {
    /// The officer's comment.
    pub(crate) comment: String,
}

/// A PENDING enrollment decided (closed: no other property, which tells it from a
/// registration in [`Decided`]).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentDecided {
    /// The enrollment's id.
    pub id: String,
    /// `issued` or `rejected`.
    pub state: &'static str,
    /// The certificate issued, when approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// What an approval or rejection answers: the enrollment's outcome, or the registration.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Decided {
    /// A PENDING enrollment decided.
    Enrollment(EnrollmentDecided),
    /// A registration (`reg_…`) decided.
    Registration(Box<RegistrationView>),
}

/// The audit log's filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Records after this position.
    pub(crate) after: Option<i64>,
    /// At most this many (1 to 10000, default 1000).
    pub(crate) limit: Option<usize>,
}

/// A registration asked for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRegistration {
    /// Whose registration; a signed-in person or a user token may leave it out (their own).
    pub(crate) email: Option<String>,
    /// The credential (`GET /credentials`).
    pub(crate) credential: String,
}

/// The registration list's filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RegistrationQuery {
    /// One person's registrations (officers, admins, auditors).
    pub(crate) email: Option<String>,
    /// `open`, `requested`, `approved`, `rejected`, `issued` or `expired`.
    pub(crate) state: Option<String>,
}

/// The device a registration's request is for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceChoice {
    /// One of the registration's devices, by the MDM's device ID.
    pub(crate) device_id: String,
}

/// One push to the MDM on a registration's behalf.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushView {
    /// `deliver` or `withdraw`.
    pub action: &'static str,
    /// What the MDM knows it by (a group, a profile, a webhook).
    pub key: String,
    /// `pending`, `delivered` or `failed`.
    pub state: &'static str,
    /// Attempts so far.
    pub attempts: i64,
    /// The MDM's last answer or the reason it could not be reached.
    pub message: String,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    /// When the push was made.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

impl From<&PushRecord> for PushView {
    fn from(p: &PushRecord) -> Self {
        Self {
            action: p.action.as_str(),
            key: p.key.clone(),
            state: p.state.as_str(),
            attempts: p.attempts,
            message: p.message.clone(),
            next_attempt_at: (p.state == crate::authority::PushState::Pending)
                .then(|| rfc3339(p.next_at)),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// A registration: a person, a credential, the devices their MDM reports, and where the
/// request stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationView {
    /// `registration` in the approval queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// The registration's id (`reg_…`).
    pub id: String,
    /// Whose.
    pub email: String,
    /// The credential.
    pub credential: String,
    /// `open`, `requested`, `approved`, `rejected`, `issued` or `expired`.
    pub state: &'static str,
    /// The person's devices as the MDM reported them, with the flags that matter.
    #[schema(value_type = Vec<Object>)]
    pub devices: Vec<serde_json::Value>,
    /// Why the MDM could not be asked, when it could not.
    pub directory_error: Option<String>,
    /// The device the request is for.
    pub device_id: Option<String>,
    /// That device's facts when the request was filed.
    #[schema(value_type = Option<Object>)]
    pub device: Option<serde_json::Value>,
    /// The subject the certificate will carry.
    pub subject: Option<String>,
    /// The SANs it will carry.
    pub sans: Vec<String>,
    /// Who started it.
    pub created_by: String,
    /// Who filed the request.
    pub requested_by: Option<String>,
    /// The officer who decided.
    pub decided_by: Option<String>,
    /// The officer's comment.
    pub comment: Option<String>,
    /// The certificate issued.
    pub serial: Option<String>,
    /// When it was started (RFC 3339).
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When an undecided registration expires.
    pub expires_at: String,
    /// Its pushes to the MDM (one registration only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushes: Option<Vec<PushView>>,
}

impl From<&RegistrationRecord> for RegistrationView {
    fn from(r: &RegistrationRecord) -> Self {
        Self {
            kind: None,
            id: r.id.clone(),
            email: r.email.clone(),
            credential: r.credential.clone(),
            state: r.state.as_str(),
            devices: serde_json::from_str(&r.devices).unwrap_or_default(),
            directory_error: r.directory_error.clone(),
            device_id: r.device_id.clone(),
            device: r
                .device
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok()),
            subject: r.subject.clone(),
            sans: r.sans.clone(),
            created_by: r.created_by.clone(),
            requested_by: r.requested_by.clone(),
            decided_by: r.decided_by.clone(),
            comment: r.comment.clone(),
            serial: r.serial.clone(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            expires_at: rfc3339(r.expires_at),
            pushes: None,
        }
    }
}

/// A signed Apple configuration profile (CMS SignedData, DER).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct SignedProfile(pub Vec<u8>);

/// One entry of the approval queue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum QueueItem {
    /// A PENDING enrollment (`kind: enrollment`).
    Enrollment(crate::authority::PendingEnrollment),
    /// A filed registration (`kind: registration`).
    Registration(RegistrationView),
}
