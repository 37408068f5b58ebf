//! Telling the MDM what to push. When an officer approves a registration Sigil asks the
//! credential's MDM to deliver its profile to the device, asks it to take the profile back when
//! the credential is revoked or withdrawn, and asks for a re-push inside the renewal window
//! (Apple devices do not renew SCEP certificates on their own). One [`Delivery`] per credential,
//! by the kind of its directory, or a signed webhook for any:
//!
//! - Intune (`intune.rs`): the device's Entra device object joins (leaves) the Entra group the
//!   SCEP and trusted-root profiles are assigned to (Graph group membership).
//! - Jamf Pro (`jamf.rs`): the computer or mobile device joins (leaves) a static group scoped to
//!   the configuration profile (Classic API); a re-push leaves and joins again. Or
//!   (`jamf_profile.rs`, `per_device_profile`): a configuration profile of its own per device,
//!   the registration's with its one-time challenge, scoped to that device; a re-push updates
//!   it (Jamf redeploys), a withdrawal deletes it.
//! - Workspace ONE (`workspace_one.rs`): the profile is installed on (removed from) the device
//!   (`/API/mdm/profiles/{id}/install|remove`); a re-push installs again.
//! - Webhook (`webhook.rs`): a POST of the event, signed with HMAC-SHA-256 over the timestamp
//!   and the body.
//!
//! Deliveries and withdrawals are idempotent on the MDM's side (joining a group twice,
//! removing what is gone), so a retry after a lost answer does no harm; a re-push is not (it
//! reinstalls), and a webhook receiver tells retries apart by the push id it is sent.

mod intune;
mod jamf;
mod jamf_profile;
mod webhook;
mod workspace_one;

pub use webhook::signature;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::reason::Reason;

use super::{DirectoryError, DirectorySettings};

/// `[credentials.NAME.push]`: how the credential's MDM is told to deliver.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PushSettings {
    /// Intune: the Entra group (object ID) the SCEP and trusted-root profiles are assigned to.
    pub group_id: String,
    /// Jamf Pro: the static computer group scoped to the configuration profile.
    pub computer_group_id: u64,
    /// Jamf Pro: the static mobile device group scoped to the configuration profile.
    pub mobile_group_id: u64,
    /// Jamf Pro, instead of static groups: a configuration profile of its own for each device
    /// (the registration's SCEP payload with its one-time challenge, scoped to that one device),
    /// updated to re-push and deleted on withdrawal. A profile scoped to a group is the same for
    /// every device, so it cannot carry a registration's one-time challenge.
    pub per_device_profile: bool,
    /// Workspace ONE: the profile to install.
    pub profile_id: u64,
    /// A webhook to POST each event to (any directory kind); signed when a secret is set.
    pub webhook_url: String,
    /// File holding the webhook's HMAC secret.
    pub secret_file: String,
    /// Environment variable holding the webhook's HMAC secret.
    pub secret_env: String,
    /// Ask for a re-push this many days before the certificate ends (0: never). Intune renews
    /// by itself and is never asked.
    pub renew_within_days: u32,
    /// Seconds before the first retry of a failed push; each retry waits twice as long, at most
    /// an hour.
    pub retry_secs: u64,
    /// Attempts before a push is given up as failed.
    pub max_attempts: u32,
}

impl PushSettings {
    /// Check against the credential's directory kind: exactly one way to deliver, and what it
    /// needs.
    pub fn check(&self, directory_kind: &str) -> Result<(), String> {
        let webhook = !self.webhook_url.is_empty();
        // The webhook carries one-time challenges: only over TLS (plain HTTP to this host only),
        // and only signed.
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| {
                self.webhook_url.strip_prefix(p).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with(':') || rest.starts_with('/')
                })
            });
        if webhook && !(self.webhook_url.starts_with("https://") || loopback) {
            return Err(
                "push.webhook_url must start with https:// (it carries one-time challenges; plain http only to this host)"
                    .into(),
            );
        }
        let secret = crate::secret::SecretSource::from_pair(
            "push.secret",
            &self.secret_file,
            &self.secret_env,
        )?;
        if webhook && !secret.is_set() {
            return Err(
                "push.webhook_url needs push.secret_file or push.secret_env: the receiver must be able to tell Sigil's events from forgeries"
                    .into(),
            );
        }
        let groups = self.computer_group_id > 0 || self.mobile_group_id > 0;
        if self.per_device_profile && directory_kind != "jamf" {
            return Err(format!(
                "push.per_device_profile is for a jamf directory, not `{directory_kind}`"
            ));
        }
        if self.per_device_profile && groups {
            return Err("push: a profile per device (per_device_profile) or static groups (computer_group_id/mobile_group_id), not both".into());
        }
        let mdm = match directory_kind {
            "intune" => !self.group_id.is_empty(),
            "jamf" => groups || self.per_device_profile,
            "workspace_one" => self.profile_id > 0,
            _ => false,
        };
        let asks = !self.group_id.is_empty() || groups || self.profile_id > 0;
        if asks && !mdm {
            return Err(format!(
                "push: a `{directory_kind}` directory takes {}",
                match directory_kind {
                    "intune" => "group_id (the Entra group)",
                    "jamf" => "computer_group_id or mobile_group_id (static groups), or per_device_profile",
                    "workspace_one" => "profile_id",
                    _ => "only webhook_url",
                }
            ));
        }
        if mdm == webhook {
            return Err(format!(
                "push: set exactly one of {} and webhook_url",
                match directory_kind {
                    "intune" => "group_id",
                    "jamf" => "computer_group_id/mobile_group_id/per_device_profile",
                    "workspace_one" => "profile_id",
                    _ => "(nothing else for this directory kind)",
                }
            )
            .replace("one of (nothing else for this directory kind) and ", ""));
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err("push.max_attempts must be 1 to 100".into());
        }
        if self.retry_secs == 0 || self.retry_secs > 3600 {
            return Err("push.retry_secs must be 1 to 3600".into());
        }
        Ok(())
    }
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            group_id: String::new(),
            computer_group_id: 0,
            mobile_group_id: 0,
            per_device_profile: false,
            profile_id: 0,
            webhook_url: String::new(),
            secret_file: String::new(),
            secret_env: String::new(),
            renew_within_days: 14,
            retry_secs: 60,
            max_attempts: 10,
        }
    }
}

/// What a push asks of the MDM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushEvent {
    /// Deliver the credential's profile to the device.
    Deliver,
    /// Take it back.
    Withdraw,
    /// Deliver it again (renewal window).
    Renew,
}

/// The device and credential a push is about.
#[derive(Debug, Clone, Serialize)]
pub struct PushTarget {
    /// The push (the same on every retry of it).
    pub push: String,
    /// Which attempt at it this is (1 for the first).
    pub attempt: i64,
    /// The registration.
    pub registration: String,
    /// The person.
    pub email: String,
    /// The credential profile.
    pub credential: String,
    /// The MDM's device ID (Jamf: `computer:ID` or `mobile:ID`).
    pub device_id: String,
    /// The certificate, once issued (hex serial).
    pub serial: Option<String>,
    /// When it ends (RFC 3339), once issued.
    pub not_after: Option<String>,
    /// For a webhook delivery: the SCEP payload with a fresh one-time challenge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scep_payload: Option<serde_json::Value>,
    /// For a per-device profile: the configuration profile (Apple's XML property list) with the
    /// same SCEP payload and challenge, and the CA's chain.
    #[serde(skip)]
    pub profile: Option<Vec<u8>>,
}

/// Why a push did not go through.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The MDM does not know the device (any more): retrying will not help.
    #[error("the MDM does not know device {device}: {said}")]
    UnknownDevice {
        /// The device ID.
        device: String,
        /// What the MDM said.
        said: String,
    },
    /// Sigil cannot push to this device as configured (an ID it cannot read, no group set up
    /// for that kind of device): the MDM was not asked, so a withdrawal took nothing back.
    #[error("cannot push to device {device}: {why}")]
    Unpushable {
        /// The device ID.
        device: String,
        /// What is missing.
        why: String,
    },
    /// The MDM refused or could not be reached.
    #[error(transparent)]
    Mdm(#[from] DirectoryError),
    /// The webhook could not be reached or refused.
    #[error("webhook: {0}")]
    Webhook(String),
    /// Sigil's own side could not prepare the push (the store, the SCEP payload): try again.
    #[error("temporarily unavailable: {0}")]
    Unavailable(#[source] crate::reason::Reason),
    /// A step that undoes part of the delivery succeeded, the next did not: must be tried
    /// again (a Jamf re-push that left the device out of its group).
    #[error("interrupted: {0}")]
    Interrupted(Box<PushError>),
}

impl PushError {
    /// Would trying again later help? (The MDM down, slow, throttling, failing: yes. A device it
    /// does not know, a request it refuses: no.)
    pub fn retryable(&self) -> bool {
        match self {
            PushError::UnknownDevice { .. } | PushError::Unpushable { .. } => false,
            PushError::Mdm(DirectoryError::Unreachable { .. }) => true,
            PushError::Mdm(DirectoryError::Refused { status, .. }) => {
                *status == 429 || *status == 401 || *status >= 500
            }
            PushError::Mdm(_) => false,
            PushError::Webhook(_) | PushError::Unavailable(_) | PushError::Interrupted(_) => true,
        }
    }
}

/// One way of telling an MDM what to push.
#[async_trait]
pub trait Delivery: Send + Sync {
    /// `intune`, `jamf`, `workspace_one` or `webhook`.
    fn kind(&self) -> &'static str;
    /// Whether this MDM needs to be asked to re-push inside the renewal window.
    fn renews(&self) -> bool;
    /// Whether deliveries carry the SCEP payload (a fresh one-time challenge).
    fn carries_payload(&self) -> bool {
        false
    }
    /// Whether deliveries carry a whole configuration profile (with that payload).
    fn carries_profile(&self) -> bool {
        false
    }
    /// Whether what a delivery leaves in the MDM (a group membership, a profile installed) is
    /// the credential's on that device, shared by every registration of the device for it, so
    /// that withdrawing one registration must not take it back while another holds it. A
    /// profile made for the registration alone is not.
    fn shared_by_registrations(&self) -> bool {
        true
    }
    /// Ask the MDM; answers what it said, in a few words.
    async fn push(&self, event: PushEvent, target: &PushTarget) -> Result<String, PushError>;
}

/// The delivery for a credential whose directory is `directory_name` with `directory`.
pub fn connect(
    directory_name: &str,
    directory: &DirectorySettings,
    push: &PushSettings,
) -> Result<Arc<dyn Delivery>, Reason> {
    push.check(directory.kind())?;
    if !push.webhook_url.is_empty() {
        return Ok(Arc::new(webhook::Webhook::new(push)?));
    }
    let api = |http| {
        let secrets = directory
            .secrets()
            .map_err(|e| Reason::new(format!("directories.{directory_name}: {e}")))?;
        super::api::Api::new(directory_name, http, secrets)
    };
    Ok(match directory {
        DirectorySettings::Intune(s) => Arc::new(intune::GroupMembership {
            mdm: super::intune::Intune::new(api(s.http())?, s),
            group: push.group_id.clone(),
        }),
        DirectorySettings::Jamf(s) if push.per_device_profile => {
            Arc::new(jamf_profile::DeviceProfile {
                mdm: super::jamf::Jamf::new(api(s.http())?, s),
            })
        }
        DirectorySettings::Jamf(s) => Arc::new(jamf::StaticGroup {
            mdm: super::jamf::Jamf::new(api(s.http())?, s),
            computer_group: push.computer_group_id,
            mobile_group: push.mobile_group_id,
        }),
        DirectorySettings::WorkspaceOne(s) => Arc::new(workspace_one::ProfileInstall {
            mdm: super::workspace_one::WorkspaceOne::new(api(s.http())?, s),
            profile: push.profile_id,
        }),
        _ => return Err("push: this directory kind takes only webhook_url".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_takes_its_own_target_and_exactly_one() {
        let base = PushSettings::default();
        let intune = PushSettings {
            group_id: "g".into(),
            ..base.clone()
        };
        intune.check("intune").unwrap();
        assert!(intune
            .check("jamf")
            .unwrap_err()
            .contains("computer_group_id"));
        let both = PushSettings {
            webhook_url: "https://hooks.example/sigil".into(),
            secret_env: "HOOK_SECRET".into(),
            ..intune.clone()
        };
        assert!(both.check("intune").unwrap_err().contains("exactly one"));
        let none = base.clone();
        assert!(none.check("jamf").unwrap_err().contains("exactly one"));
        let unsigned = PushSettings {
            webhook_url: "https://hooks.example/sigil".into(),
            ..base.clone()
        };
        assert!(unsigned.check("file").unwrap_err().contains("secret"));
        let hook = PushSettings {
            webhook_url: "https://hooks.example/sigil".into(),
            secret_env: "HOOK_SECRET".into(),
            ..base.clone()
        };
        hook.check("file").unwrap();
        for (url, ok) in [
            ("http://127.0.0.1:9000/hook", true),
            ("http://localhost/hook", true),
            ("http://hooks.example/sigil", false),
            ("http://127.0.0.1.evil.example/hook", false),
        ] {
            let s = PushSettings {
                webhook_url: url.into(),
                ..hook.clone()
            };
            assert_eq!(s.check("file").is_ok(), ok, "{url}");
        }
        hook.check("generic").unwrap();
        let bad = PushSettings {
            webhook_url: "ftp://x".into(),
            secret_env: "HOOK_SECRET".into(),
            ..base.clone()
        };
        assert!(bad.check("file").unwrap_err().contains("https://"));
        let ws1 = PushSettings {
            profile_id: 7,
            ..base.clone()
        };
        ws1.check("workspace_one").unwrap();
        assert!(ws1.check("file").unwrap_err().contains("only webhook_url"));
        let per_device = PushSettings {
            per_device_profile: true,
            ..base.clone()
        };
        per_device.check("jamf").unwrap();
        assert!(per_device
            .check("workspace_one")
            .unwrap_err()
            .contains("for a jamf directory"));
        let mixed = PushSettings {
            computer_group_id: 3,
            ..per_device.clone()
        };
        assert!(mixed.check("jamf").unwrap_err().contains("not both"));
        let zero = PushSettings {
            max_attempts: 0,
            ..hook
        };
        assert!(zero.check("file").unwrap_err().contains("max_attempts"));
    }

    #[test]
    fn only_what_can_change_is_retried() {
        let refused = |status| {
            PushError::Mdm(DirectoryError::Refused {
                directory: "d".into(),
                status,
                message: String::new(),
            })
        };
        assert!(refused(429).retryable());
        assert!(refused(503).retryable());
        assert!(!refused(403).retryable());
        assert!(!PushError::UnknownDevice {
            device: "1".into(),
            said: String::new()
        }
        .retryable());
    }
}
