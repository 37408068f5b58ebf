//! Jamf Pro: the computer or mobile device joins (leaves) a static group the configuration
//! profile is scoped to, through the Classic API (`PUT /JSSResource/computergroups/id/{id}`
//! with `computer_additions` / `computer_deletions`; `mobiledevicegroups` with
//! `mobile_device_additions` / `mobile_device_deletions`). The device is looked up first
//! (`/api/v1/computers-inventory/{id}`, `/api/v2/mobile-devices/{id}`), so one Jamf no longer
//! knows is told apart from a failure. A re-push leaves the group and joins again, which makes
//! Jamf remove and reinstall the profile (and the device enroll again).

use async_trait::async_trait;
use reqwest::{Method, StatusCode};

use super::super::api::{vendor_words, Body};
use super::super::jamf::Jamf;
use super::{Delivery, PushError, PushEvent, PushTarget};

pub(super) struct StaticGroup {
    pub(super) mdm: Jamf,
    pub(super) computer_group: u64,
    pub(super) mobile_group: u64,
}

/// A Jamf device: computer or mobile, and its numeric ID.
pub(super) fn parse(device: &str) -> Option<(bool, u64)> {
    let (kind, id) = device.split_once(':')?;
    let id = id.parse().ok()?;
    match kind {
        "computer" => Some((true, id)),
        "mobile" => Some((false, id)),
        _ => None,
    }
}

/// One exchange with Jamf (its Jamf Pro or Classic API, under `base`).
pub(super) async fn call(
    mdm: &Jamf,
    what: &str,
    method: Method,
    path: &str,
    body: Body,
) -> Result<(StatusCode, Vec<u8>), PushError> {
    let url = format!("{}{path}", mdm.base);
    let headers = [("Accept", "application/json, application/xml".to_string())];
    Ok(mdm
        .api
        .exchange(what, method, &url, &headers, &body, || mdm.auth())
        .await?)
}

/// Jamf refused `what`, in its words.
pub(super) fn refused(mdm: &Jamf, what: &str, status: StatusCode, body: &[u8]) -> PushError {
    PushError::Mdm(mdm.api.refused(what, status, body))
}

/// The push's device as a Jamf device (computer or mobile, and its ID), or why it is not one.
pub(super) fn device(target: &PushTarget) -> Result<(bool, u64), PushError> {
    parse(&target.device_id).ok_or_else(|| PushError::Unpushable {
        device: target.device_id.clone(),
        why: "not a Jamf device ID (computer:ID or mobile:ID)".into(),
    })
}

/// Look the device up first, so one Jamf no longer knows is told apart from a failure.
pub(super) async fn look_up(
    mdm: &Jamf,
    target: &PushTarget,
    computer: bool,
    id: u64,
) -> Result<(), PushError> {
    let what = "device lookup";
    let lookup = if computer {
        format!("/api/v1/computers-inventory/{id}?section=GENERAL")
    } else {
        format!("/api/v2/mobile-devices/{id}")
    };
    let (status, body) = call(mdm, what, Method::GET, &lookup, Body::None).await?;
    if status == StatusCode::NOT_FOUND {
        return Err(PushError::UnknownDevice {
            device: target.device_id.clone(),
            said: vendor_words(&body),
        });
    }
    if !status.is_success() {
        return Err(refused(mdm, what, status, &body));
    }
    Ok(())
}

impl StaticGroup {
    async fn membership(&self, computer: bool, id: u64, add: bool) -> Result<String, PushError> {
        let (group, path, root, list, item) = if computer {
            (
                self.computer_group,
                "computergroups",
                "computer_group",
                if add {
                    "computer_additions"
                } else {
                    "computer_deletions"
                },
                "computer",
            )
        } else {
            (
                self.mobile_group,
                "mobiledevicegroups",
                "mobile_device_group",
                if add {
                    "mobile_device_additions"
                } else {
                    "mobile_device_deletions"
                },
                "mobile_device",
            )
        };
        let xml = format!("<{root}><{list}><{item}><id>{id}</id></{item}></{list}></{root}>");
        let what = if add {
            "add to static group"
        } else {
            "remove from static group"
        };
        let (status, body) = call(
            &self.mdm,
            what,
            Method::PUT,
            &format!("/JSSResource/{path}/id/{group}"),
            Body::Xml(xml),
        )
        .await?;
        if status.is_success() {
            Ok(format!(
                "{item} {id} {} static group {group}",
                if add { "in" } else { "out of" }
            ))
        } else {
            Err(refused(&self.mdm, what, status, &body))
        }
    }
}

#[async_trait]
impl Delivery for StaticGroup {
    fn kind(&self) -> &'static str {
        "jamf"
    }

    fn renews(&self) -> bool {
        true
    }

    async fn push(&self, event: PushEvent, target: &PushTarget) -> Result<String, PushError> {
        let (computer, id) = device(target)?;
        if (computer && self.computer_group == 0) || (!computer && self.mobile_group == 0) {
            return Err(PushError::Unpushable {
                device: target.device_id.clone(),
                why: format!(
                    "no static group is configured for {} (push.{})",
                    if computer {
                        "computers"
                    } else {
                        "mobile devices"
                    },
                    if computer {
                        "computer_group_id"
                    } else {
                        "mobile_group_id"
                    }
                ),
            });
        }
        look_up(&self.mdm, target, computer, id).await?;
        match event {
            PushEvent::Deliver => self.membership(computer, id, true).await,
            PushEvent::Withdraw => self.membership(computer, id, false).await,
            PushEvent::Renew => {
                self.membership(computer, id, false).await?;
                // Out of the group now: a failure to join again must be tried again, or the
                // device stays without its profile.
                let joined = self
                    .membership(computer, id, true)
                    .await
                    .map_err(|e| PushError::Interrupted(Box::new(e)))?;
                Ok(format!("redeployed: {joined}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jamf_device_ids() {
        assert_eq!(super::parse("computer:12"), Some((true, 12)));
        assert_eq!(super::parse("mobile:3"), Some((false, 3)));
        assert_eq!(super::parse("printer:3"), None);
        assert_eq!(super::parse("computer:x"), None);
        assert_eq!(super::parse("12"), None);
    }
}
