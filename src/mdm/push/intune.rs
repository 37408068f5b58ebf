//! Intune: the device joins the Entra group its SCEP and trusted-root profiles are assigned to
//! (Microsoft Graph v1.0, "Add members": `POST /groups/{id}/members/$ref` with the device's
//! directory object; "Remove member": `DELETE /groups/{id}/members/{object}/$ref`). The managed
//! device's `azureADDeviceId` leads to its directory object (`GET /devices?$filter=deviceId eq
//! '…'`). Intune renews SCEP certificates by itself: it is never asked to re-push.

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::super::api::{json_at, vendor_words, Body};
use super::super::intune::Intune;
use super::{Delivery, PushError, PushEvent, PushTarget};

pub(super) struct GroupMembership {
    pub(super) mdm: Intune,
    pub(super) group: String,
}

impl GroupMembership {
    async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<(StatusCode, Vec<u8>), PushError> {
        let url = format!("{}{path}", self.mdm.base);
        Ok(self
            .mdm
            .api
            .exchange(what, method, &url, &[], &body, || self.mdm.auth())
            .await?)
    }

    fn refused(&self, what: &str, status: StatusCode, body: &[u8]) -> PushError {
        PushError::Mdm(self.mdm.api.refused(what, status, body))
    }

    /// The device's Entra directory object ID.
    async fn directory_object(&self, device: &str) -> Result<String, PushError> {
        let what = "managed device";
        let path = format!(
            "/v1.0/deviceManagement/managedDevices/{}?$select=id,azureADDeviceId",
            urlencoding::encode(device)
        );
        let (status, body) = self.call(what, Method::GET, &path, Body::None).await?;
        if status == StatusCode::NOT_FOUND {
            return Err(PushError::UnknownDevice {
                device: device.into(),
                said: vendor_words(&body),
            });
        }
        if !status.is_success() {
            return Err(self.refused(what, status, &body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| PushError::Mdm(self.mdm.api.nonsense(format!("{what}: {e}"))))?;
        let entra = json_at(&v, "/azureADDeviceId");
        if entra.is_empty() || entra == "00000000-0000-0000-0000-000000000000" {
            return Err(PushError::UnknownDevice {
                device: device.into(),
                said: "the device is not registered in Entra ID (no azureADDeviceId)".into(),
            });
        }
        let what = "directory device";
        let path = format!(
            "/v1.0/devices?$filter={}&$select=id",
            urlencoding::encode(&format!("deviceId eq '{}'", entra.replace('\'', "''")))
        );
        let (status, body) = self.call(what, Method::GET, &path, Body::None).await?;
        if !status.is_success() {
            return Err(self.refused(what, status, &body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| PushError::Mdm(self.mdm.api.nonsense(format!("{what}: {e}"))))?;
        let id = json_at(&v, "/value/0/id");
        if id.is_empty() {
            return Err(PushError::UnknownDevice {
                device: device.into(),
                said: format!("no Entra device object with deviceId {entra}"),
            });
        }
        Ok(id)
    }
}

#[async_trait]
impl Delivery for GroupMembership {
    fn kind(&self) -> &'static str {
        "intune"
    }

    fn renews(&self) -> bool {
        false
    }

    async fn push(&self, event: PushEvent, target: &PushTarget) -> Result<String, PushError> {
        let object = self.directory_object(&target.device_id).await?;
        let group = urlencoding::encode(&self.group).into_owned();
        match event {
            PushEvent::Deliver | PushEvent::Renew => {
                let what = "add group member";
                let body = json!({
                    "@odata.id": format!("{}/v1.0/directoryObjects/{object}", self.mdm.base)
                });
                let (status, answer) = self
                    .call(
                        what,
                        Method::POST,
                        &format!("/v1.0/groups/{group}/members/$ref"),
                        Body::Json(body),
                    )
                    .await?;
                let words = vendor_words(&answer);
                if status.is_success() {
                    Ok(format!("device {object} added to group {}", self.group))
                } else if status == StatusCode::BAD_REQUEST && words.contains("already exist") {
                    Ok(format!("device {object} already in group {}", self.group))
                } else {
                    Err(self.refused(what, status, &answer))
                }
            }
            PushEvent::Withdraw => {
                let what = "remove group member";
                let (status, answer) = self
                    .call(
                        what,
                        Method::DELETE,
                        &format!("/v1.0/groups/{group}/members/{object}/$ref"),
                        Body::None,
                    )
                    .await?;
                if status.is_success() {
                    return Ok(format!("device {object} removed from group {}", self.group));
                }
                if status != StatusCode::NOT_FOUND {
                    return Err(self.refused(what, status, &answer));
                }
                // Graph answers 404 both when the device is not a member and when the group
                // does not exist (a group_id mistyped or changed since the deliver): only the
                // first means there is nothing to take back.
                let what = "group";
                let (status, body) = self
                    .call(
                        what,
                        Method::GET,
                        &format!("/v1.0/groups/{group}?$select=id"),
                        Body::None,
                    )
                    .await?;
                if status.is_success() {
                    Ok(format!("device {object} not in group {}", self.group))
                } else {
                    Err(self.refused(
                        &format!("group {} (push.group_id)", self.group),
                        status,
                        &body,
                    ))
                }
            }
        }
    }
}
