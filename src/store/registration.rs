//! The records of the registration flow (derived credentials): a person's email, the devices
//! the MDM reported, the device chosen, the officer's decision, the one-time challenge minted
//! for the device and, at the end, the certificate.

use std::fmt;

/// Where a registration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistrationState {
    /// Created; the device list is shown (or the MDM's error, to retry).
    Open,
    /// A device and credential are requested; waiting for an officer.
    Requested,
    /// Approved: the MDM may collect the SCEP payload; waiting for the device to enroll.
    Approved,
    /// An officer said no.
    Rejected,
    /// The device enrolled; the certificate is linked.
    Issued,
    /// Nothing happened in time.
    Expired,
}

impl RegistrationState {
    /// Every state.
    pub const ALL: [RegistrationState; 6] = [
        RegistrationState::Open,
        RegistrationState::Requested,
        RegistrationState::Approved,
        RegistrationState::Rejected,
        RegistrationState::Issued,
        RegistrationState::Expired,
    ];

    /// The name in the database and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationState::Open => "open",
            RegistrationState::Requested => "requested",
            RegistrationState::Approved => "approved",
            RegistrationState::Rejected => "rejected",
            RegistrationState::Issued => "issued",
            RegistrationState::Expired => "expired",
        }
    }

    /// Parse a state name.
    pub fn parse(s: &str) -> Option<RegistrationState> {
        RegistrationState::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Still waiting for something (and so able to expire).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            RegistrationState::Open | RegistrationState::Requested | RegistrationState::Approved
        )
    }
}

impl fmt::Display for RegistrationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRecord {
    /// `reg_…`.
    pub id: String,
    /// The person's email (lower case).
    pub email: String,
    /// The credential profile (`[credentials.NAME]`).
    pub credential: String,
    /// State.
    pub state: RegistrationState,
    /// The devices the MDM reported, assessed (JSON array).
    pub devices: String,
    /// Why the device list could not be fetched, while it could not.
    pub directory_error: Option<String>,
    /// The device chosen.
    pub device_id: Option<String>,
    /// That device's facts when it was chosen (JSON).
    pub device: Option<String>,
    /// The certificate subject built from the directory facts.
    pub subject: Option<String>,
    /// The certificate SANs built from the directory facts (`email:…`).
    pub sans: Vec<String>,
    /// Who created it (`token:ID`).
    pub created_by: String,
    /// Who filed the request.
    pub requested_by: Option<String>,
    /// Who approved or rejected it.
    pub decided_by: Option<String>,
    /// The officer's comment.
    pub comment: Option<String>,
    /// SHA-256 of the current one-time challenge minted for the device.
    pub challenge_hash: Option<String>,
    /// The certificate issued (hex serial).
    pub serial: Option<String>,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Last changed.
    pub updated_at: i64,
    /// When it expires unless it moves on.
    pub expires_at: i64,
}

/// Columns, in the order the row readers expect.
pub(crate) const REG_COLUMNS: &str = "id, email, credential, state, devices, directory_error, \
     device_id, device, subject, sans, created_by, requested_by, decided_by, comment, \
     challenge_hash, serial, created_at, updated_at, expires_at";

pub(crate) fn sans_to_json(sans: &[String]) -> String {
    serde_json::to_string(sans).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn sans_from_json(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

/// Reason given to a PENDING enrollment that nobody decided in time.
pub const EXPIRED_REASON: &str = "the request expired: no officer decided in time";
