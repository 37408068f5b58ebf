//! Microsoft Intune through Microsoft Graph: app-only OAuth2 (client credentials against
//! Entra ID), then `GET /v1.0/deviceManagement/managedDevices` filtered by the user's
//! principal name, following `@odata.nextLink` page by page.

use async_trait::async_trait;
use serde_json::Value;

use super::api::{json_at, Api, Auth};
use super::IntuneSettings;
use super::{timestamp, Compliance, Device, DirectoryError, MdmDirectory};

const FIELDS: &str = "id,deviceName,model,manufacturer,operatingSystem,osVersion,serialNumber,udid,imei,complianceState,managementState,managementAgent,lastSyncDateTime,userPrincipalName,emailAddress";

pub(crate) struct Intune {
    pub(super) api: Api,
    pub(super) base: String,
    token_url: String,
    client_id: String,
    scope: String,
}

impl Intune {
    pub(crate) fn new(api: Api, c: &IntuneSettings) -> Intune {
        let base = if c.base_url.is_empty() {
            "https://graph.microsoft.com".to_string()
        } else {
            c.base_url.trim_end_matches('/').to_string()
        };
        let token_url = if c.token_url.is_empty() {
            format!(
                "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
                c.tenant_id
            )
        } else {
            c.token_url.clone()
        };
        let scope = if c.scope.is_empty() {
            "https://graph.microsoft.com/.default".to_string()
        } else {
            c.scope.clone()
        };
        Intune {
            api,
            base,
            token_url,
            client_id: c.client_id.clone(),
            scope,
        }
    }

    pub(super) async fn auth(&self) -> Result<Auth, DirectoryError> {
        let t = self
            .api
            .token(|| {
                self.api
                    .client_credentials(&self.token_url, &self.client_id, Some(&self.scope))
            })
            .await?;
        Ok(Auth::Bearer(t))
    }
}

fn compliance(state: &str) -> Compliance {
    match state {
        "compliant" => Compliance::Compliant,
        "noncompliant" | "conflict" | "error" | "inGracePeriod" => Compliance::NonCompliant,
        _ => Compliance::Unknown,
    }
}

fn device(v: &Value) -> Device {
    let s = |p: &str| json_at(v, p);
    let management = s("/managementState");
    Device {
        id: s("/id"),
        name: s("/deviceName"),
        model: [s("/manufacturer"), s("/model")]
            .into_iter()
            .filter(|x| !x.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        os: s("/operatingSystem"),
        os_version: s("/osVersion"),
        serial_number: s("/serialNumber"),
        udid: s("/udid"),
        imei: s("/imei"),
        compliance: compliance(&s("/complianceState")),
        // managementState is absent from v1.0 answers for most tenants: a device Graph lists
        // under managedDevices is managed unless it says otherwise.
        managed: management.is_empty() || management == "managed",
        last_check_in: timestamp(&s("/lastSyncDateTime")),
        user: {
            let upn = s("/userPrincipalName");
            if upn.is_empty() {
                s("/emailAddress")
            } else {
                upn
            }
        },
        flags: Vec::new(),
    }
}

#[async_trait]
impl MdmDirectory for Intune {
    fn kind(&self) -> &'static str {
        "intune"
    }

    async fn devices(&self, email: &str) -> Result<Vec<Device>, DirectoryError> {
        // OData string literal: ' doubled.
        let filter = format!("userPrincipalName eq '{}'", email.replace('\'', "''"));
        let mut url = format!(
            "{}/v1.0/deviceManagement/managedDevices?$filter={}&$select={FIELDS}&$top={}",
            self.base,
            urlencoding::encode(&filter),
            self.api.page_size
        );
        let mut out = Vec::new();
        loop {
            let page = self
                .api
                .get_json("managedDevices", &url, &[], || self.auth())
                .await?
                .ok_or_else(|| self.api.nonsense("managedDevices: empty answer"))?;
            let Some(items) = page.get("value").and_then(Value::as_array) else {
                return Err(self.api.nonsense("managedDevices: no `value` array"));
            };
            out.extend(items.iter().map(device));
            if out.len() > self.api.max_devices {
                return Err(self.api.nonsense(format!(
                    "more than {} devices for one user",
                    self.api.max_devices
                )));
            }
            match page.get("@odata.nextLink").and_then(Value::as_str) {
                None => break,
                // The bearer token only ever goes to the configured Graph host.
                Some(next) if next.starts_with(&format!("{}/", self.base)) => {
                    url = next.to_string()
                }
                Some(next) => {
                    return Err(self
                        .api
                        .nonsense(format!("@odata.nextLink `{next}` leaves {}", self.base)))
                }
            }
        }
        Ok(out)
    }
}
