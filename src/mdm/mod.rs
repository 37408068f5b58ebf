//! MDM directories: where the registration flow learns which devices a user has.
//!
//! [`MdmDirectory`] is the one question Sigil asks an MDM: "which managed devices does this
//! user (by email) have?". Connectors: Microsoft Intune (Graph `managedDevices`, app-only
//! OAuth2), Jamf Pro (computers and mobile-device inventory, API client or user bearer token),
//! Workspace ONE UEM (user search, then device search; basic or OAuth2 with the tenant code),
//! a generic HTTP JSON connector whose URL and field mapping are configuration, and an
//! inventory file (JSON or CSV) for deployments without MDM API access.
//!
//! Every connector pages through the vendor's listing, retries timeouts, 429 and 5xx with
//! exponential backoff (honouring `Retry-After`), and turns anything unexpected into a
//! [`DirectoryError`] that says what went wrong, so a registration can stay open and show why.
//! [`assess`] then flags what an officer must look at (non-compliant, unmanaged, stale,
//! another user's): devices are flagged, never hidden.

mod api;
mod file;
mod generic;
mod intune;
mod jamf;
pub mod push;
mod settings;
mod workspace_one;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::reason::Reason;

pub use api::json_at;
pub use settings::{
    DirectorySettings, FileSettings, GenericSettings, HttpSettings, IntuneSettings, JamfSettings,
    Secrets, WorkspaceOneSettings,
};

/// What the MDM says about a device's compliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compliance {
    /// Meets the MDM's compliance policies.
    Compliant,
    /// Fails them (or is in a grace period, in conflict, in error).
    NonCompliant,
    /// The MDM does not say.
    Unknown,
}

/// One managed device, as the MDM reports it. Empty text means the MDM did not say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The MDM's device ID (Jamf: `computer:ID` or `mobile:ID`).
    pub id: String,
    /// Device name.
    pub name: String,
    /// Model.
    pub model: String,
    /// Operating system.
    pub os: String,
    /// OS version.
    pub os_version: String,
    /// Serial number.
    pub serial_number: String,
    /// UDID (Apple devices).
    pub udid: String,
    /// IMEI (phones).
    pub imei: String,
    /// Compliance state.
    pub compliance: Compliance,
    /// Whether the MDM manages it (enrolled, remote management on).
    pub managed: bool,
    /// Last check-in (RFC 3339, UTC), if known.
    pub last_check_in: Option<String>,
    /// The user the MDM assigns it to (email or UPN), if given.
    pub user: String,
    /// What an officer should look at; empty when nothing.
    #[serde(default)]
    pub flags: Vec<String>,
}

impl Device {
    /// The value of a credential placeholder (`{serial_number}`, `{udid}`, …) for this device.
    pub fn fact(&self, name: &str) -> Option<String> {
        let v = match name {
            "device_id" => &self.id,
            "serial_number" => &self.serial_number,
            "udid" => &self.udid,
            "imei" => &self.imei,
            "model" => &self.model,
            "name" => &self.name,
            _ => return None,
        };
        Some(v.clone())
    }
}

/// Why the directory could not answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    /// No answer in time, or no connection (after the retries).
    #[error("{directory}: the MDM is unreachable: {reason}")]
    Unreachable {
        /// Directory name.
        directory: String,
        /// What happened, and the HTTP client's error underneath when there is one.
        #[source]
        reason: crate::reason::Reason,
    },
    /// The MDM refused (bad credentials, missing permission, bad request) or kept failing.
    #[error("{directory}: the MDM answered HTTP {status}: {message}")]
    Refused {
        /// Directory name.
        directory: String,
        /// HTTP status.
        status: u16,
        /// The MDM's own message, when it gave one.
        message: String,
    },
    /// The MDM answered something that is not what its API documents.
    #[error("{directory}: the MDM's answer does not make sense: {reason}")]
    Nonsense {
        /// Directory name.
        directory: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The connector is not configured right (a secret file missing).
    #[error("{directory}: {reason}")]
    Config {
        /// Directory name.
        directory: String,
        /// What is missing.
        reason: String,
    },
}

/// A directory of managed devices.
#[async_trait]
pub trait MdmDirectory: Send + Sync {
    /// The connector kind (`intune`, `jamf`, `workspace_one`, `generic`).
    fn kind(&self) -> &'static str;
    /// The managed devices of the user with this email, as the MDM reports them (not yet
    /// assessed).
    async fn devices(&self, email: &str) -> Result<Vec<Device>, DirectoryError>;
}

/// Build the connector for `[directories.<name>]`.
pub fn connect(name: &str, settings: &DirectorySettings) -> Result<Arc<dyn MdmDirectory>, Reason> {
    let api = |http: HttpSettings| {
        let secrets = settings
            .secrets()
            .map_err(|e| Reason::new(format!("directories.{name}: {e}")))?;
        api::Api::new(name, http, secrets)
    };
    Ok(match settings {
        DirectorySettings::File(s) => Arc::new(file::FileDirectory::new(name, &s.path)),
        DirectorySettings::Intune(s) => Arc::new(intune::Intune::new(api(s.http())?, s)),
        DirectorySettings::Jamf(s) => Arc::new(jamf::Jamf::new(api(s.http())?, s)),
        DirectorySettings::WorkspaceOne(s) => {
            Arc::new(workspace_one::WorkspaceOne::new(api(s.http())?, s))
        }
        DirectorySettings::Generic(s) => Arc::new(generic::Generic::new(api(s.http())?, s)),
    })
}

/// Devices not seen for this long are flagged as stale.
pub const STALE_AFTER_DAYS: i64 = 30;

/// Flag what an officer should look at, drop exact duplicates, and sort by name. `now` is Unix
/// seconds.
pub fn assess(devices: Vec<Device>, email: &str, now: i64) -> Vec<Device> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for mut d in devices {
        if !d.id.is_empty() && !seen.insert(d.id.clone()) {
            continue;
        }
        let mut flags = Vec::new();
        if d.id.is_empty() {
            flags.push("the MDM gives no device ID: it cannot be chosen".to_string());
        }
        match d.compliance {
            Compliance::Compliant => {}
            Compliance::NonCompliant => flags.push("non-compliant".into()),
            Compliance::Unknown => flags.push("compliance unknown".into()),
        }
        if !d.managed {
            flags.push("not managed".into());
        }
        if d.serial_number.is_empty() {
            flags.push("no serial number".into());
        }
        match d.last_check_in.as_deref().and_then(unix_of) {
            None => flags.push("no check-in time".into()),
            Some(t) if now - t > STALE_AFTER_DAYS * 86_400 => {
                flags.push(format!("last check-in over {STALE_AFTER_DAYS} days ago"))
            }
            Some(_) => {}
        }
        if !d.user.is_empty() && !d.user.eq_ignore_ascii_case(email) {
            flags.push(format!("assigned to another user ({})", d.user));
        }
        d.flags = flags;
        out.push(d);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    out
}

fn unix_of(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// An MDM timestamp (RFC 3339, with or without offset; Workspace ONE's zone-less UTC) as
/// RFC 3339 UTC; `None` for empty, zero or unreadable times.
pub(crate) fn timestamp(text: &str) -> Option<String> {
    let t = text.trim();
    if t.is_empty() || t.starts_with("0001-01-01") {
        return None;
    }
    let parsed = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .or_else(|| {
            // Zone-less: UTC (Workspace ONE's LastSeen).
            time::OffsetDateTime::parse(
                &format!("{t}Z"),
                &time::format_description::well_known::Rfc3339,
            )
            .ok()
        })?;
    Some(crate::clock::rfc3339(parsed.unix_timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> Device {
        Device {
            id: id.into(),
            name: format!("dev {id}"),
            model: "iPhone".into(),
            os: "iOS".into(),
            os_version: "17.4".into(),
            serial_number: "F2L".into(),
            udid: String::new(),
            imei: String::new(),
            compliance: Compliance::Compliant,
            managed: true,
            last_check_in: Some("2026-11-20T10:00:00Z".into()),
            user: "alice@agency.gov".into(),
            flags: Vec::new(),
        }
    }

    #[test]
    fn assessment_flags_and_never_hides() {
        let now = unix_of("2026-11-21T00:00:00Z").unwrap();
        let mut bad = device("2");
        bad.compliance = Compliance::NonCompliant;
        bad.managed = false;
        bad.serial_number.clear();
        bad.last_check_in = Some("2026-01-01T00:00:00Z".into());
        bad.user = "mallory@agency.gov".into();
        let mut unknown = device("3");
        unknown.compliance = Compliance::Unknown;
        unknown.last_check_in = None;
        let out = assess(
            vec![device("1"), bad, unknown, device("1")],
            "ALICE@agency.gov",
            now,
        );
        assert_eq!(out.len(), 3, "duplicates dropped, nothing hidden");
        assert!(out[0].flags.is_empty(), "{:?}", out[0].flags);
        let f = out[1].flags.join("; ");
        for want in [
            "non-compliant",
            "not managed",
            "no serial number",
            "over 30 days",
            "another user",
        ] {
            assert!(f.contains(want), "{f}");
        }
        assert!(out[2].flags.join(";").contains("compliance unknown"));
        assert!(out[2].flags.join(";").contains("no check-in"));
    }

    #[test]
    fn timestamps_are_normalised() {
        assert_eq!(
            timestamp("2017-01-01T00:02:49.3205976-08:00").as_deref(),
            Some("2017-01-01T08:02:49Z")
        );
        assert_eq!(
            timestamp("2021-06-28T04:35:20.150").as_deref(),
            Some("2021-06-28T04:35:20Z")
        );
        assert_eq!(timestamp("0001-01-01T00:00:00.000"), None);
        assert_eq!(timestamp("yesterday"), None);
    }
}
