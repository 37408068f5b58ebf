//! Workspace ONE UEM: the profile is installed on (removed from) the device, with the
//! ProfilesV1 API (`POST /API/mdm/profiles/{profileId}/install` and `/remove`, body
//! `{"DeviceId": …}`), the tenant code in `aw-tenant-code`. The device is looked up first
//! (`GET /API/mdm/devices/{id}`) so one Workspace ONE no longer knows is told apart. A re-push
//! installs again, which reinstalls the profile.

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::super::api::{vendor_words, Body};
use super::super::workspace_one::WorkspaceOne;
use super::{Delivery, PushError, PushEvent, PushTarget};

pub(super) struct ProfileInstall {
    pub(super) mdm: WorkspaceOne,
    pub(super) profile: u64,
}

impl ProfileInstall {
    async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<(StatusCode, Vec<u8>), PushError> {
        let url = format!("{}{path}", self.mdm.base);
        let headers = [
            (
                "aw-tenant-code",
                self.mdm.api.secret(&self.mdm.api.api_key, "tenant code")?,
            ),
            ("Accept", "application/json;version=1".to_string()),
        ];
        Ok(self
            .mdm
            .api
            .exchange(what, method, &url, &headers, &body, || self.mdm.auth())
            .await?)
    }

    fn refused(&self, what: &str, status: StatusCode, body: &[u8]) -> PushError {
        PushError::Mdm(self.mdm.api.refused(what, status, body))
    }
}

#[async_trait]
impl Delivery for ProfileInstall {
    fn kind(&self) -> &'static str {
        "workspace_one"
    }

    fn renews(&self) -> bool {
        true
    }

    async fn push(&self, event: PushEvent, target: &PushTarget) -> Result<String, PushError> {
        let Ok(device) = target.device_id.parse::<u64>() else {
            return Err(PushError::Unpushable {
                device: target.device_id.clone(),
                why: "not a Workspace ONE device ID (a number)".into(),
            });
        };
        let what = "device lookup";
        let (status, body) = self
            .call(
                what,
                Method::GET,
                &format!("/API/mdm/devices/{device}"),
                Body::None,
            )
            .await?;
        if status == StatusCode::NOT_FOUND || status == StatusCode::NO_CONTENT {
            return Err(PushError::UnknownDevice {
                device: target.device_id.clone(),
                said: vendor_words(&body),
            });
        }
        if !status.is_success() {
            return Err(self.refused(what, status, &body));
        }
        let (verb, what) = match event {
            PushEvent::Deliver | PushEvent::Renew => ("install", "install profile"),
            PushEvent::Withdraw => ("remove", "remove profile"),
        };
        let (status, body) = self
            .call(
                what,
                Method::POST,
                &format!("/API/mdm/profiles/{}/{verb}", self.profile),
                Body::Json(json!({ "DeviceId": device })),
            )
            .await?;
        if status.is_success() {
            Ok(format!(
                "profile {} {} device {device}",
                self.profile,
                if verb == "install" {
                    "sent to"
                } else {
                    "removed from"
                }
            ))
        } else {
            Err(self.refused(what, status, &body))
        }
    }
}
