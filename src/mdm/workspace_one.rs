//! Workspace ONE UEM (formerly AirWatch): basic authentication or an OAuth2 client, always with
//! the tenant code (`aw-tenant-code`). The device search takes an enrollment user name, not an
//! email, so the email is first looked up with `/API/system/users/search?email=`, then each
//! of that person's enrollment users' devices is listed with `/API/mdm/devices/search`, page
//! by page. An empty result is `204 No Content`.

use async_trait::async_trait;
use serde_json::Value;

use super::api::{json_at, Api, Auth};
use super::WorkspaceOneSettings;
use super::{timestamp, Compliance, Device, DirectoryError, MdmDirectory};

pub(crate) struct WorkspaceOne {
    pub(super) api: Api,
    pub(super) base: String,
    token_url: String,
    client_id: String,
    username: String,
}

impl WorkspaceOne {
    pub(crate) fn new(api: Api, c: &WorkspaceOneSettings) -> WorkspaceOne {
        WorkspaceOne {
            api,
            base: c.base_url.trim_end_matches('/').to_string(),
            token_url: c.token_url.clone(),
            client_id: c.client_id.clone(),
            username: c.username.clone(),
        }
    }

    pub(super) async fn auth(&self) -> Result<Auth, DirectoryError> {
        if self.client_id.is_empty() {
            let password = self.api.secret(&self.api.password, "password")?;
            return Ok(Auth::Basic(self.username.clone(), password));
        }
        let t = self
            .api
            .token(|| {
                self.api
                    .client_credentials(&self.token_url, &self.client_id, None)
            })
            .await?;
        Ok(Auth::Bearer(t))
    }

    async fn get(&self, what: &str, url: &str) -> Result<Option<Value>, DirectoryError> {
        let headers = [
            (
                "aw-tenant-code",
                self.api.secret(&self.api.api_key, "tenant code")?,
            ),
            ("Accept", "application/json;version=1".to_string()),
        ];
        self.api.get_json(what, url, &headers, || self.auth()).await
    }

    /// Every page of a Workspace ONE search (`{<list>: [...], Page, PageSize, Total}`).
    async fn pages(&self, what: &str, url: &str, list: &str) -> Result<Vec<Value>, DirectoryError> {
        let mut out = Vec::new();
        let mut page = 0u64;
        loop {
            let paged = format!("{url}&page={page}&pagesize={}", self.api.page_size);
            let Some(v) = self.get(what, &paged).await? else {
                return Ok(out); // 204: nothing (more)
            };
            let Some(items) = v.get(list).and_then(Value::as_array) else {
                return Err(self.api.nonsense(format!("{what}: no `{list}` array")));
            };
            out.extend(items.iter().cloned());
            if out.len() > self.api.max_devices {
                return Err(self.api.nonsense(format!(
                    "more than {} entries for one user",
                    self.api.max_devices
                )));
            }
            let total = v.get("Total").and_then(Value::as_u64).unwrap_or(0);
            if items.is_empty() || out.len() as u64 >= total {
                return Ok(out);
            }
            page += 1;
        }
    }
}

fn compliance(s: &str) -> Compliance {
    match s.to_ascii_lowercase().as_str() {
        "compliant" => Compliance::Compliant,
        "noncompliant" | "non-compliant" | "notcompliant" => Compliance::NonCompliant,
        _ => Compliance::Unknown,
    }
}

fn device(v: &Value) -> Device {
    let s = |p: &str| json_at(v, p);
    let id = match s("/Id/Value") {
        id if id.is_empty() => s("/Uuid"),
        id => id,
    };
    Device {
        id,
        name: match s("/DeviceFriendlyName") {
            n if n.is_empty() => s("/DeviceReportedName"),
            n => n,
        },
        model: s("/Model"),
        os: s("/Platform"),
        // Despite its name, OperatingSystem is the version.
        os_version: s("/OperatingSystem"),
        serial_number: s("/SerialNumber"),
        udid: s("/Udid"),
        imei: s("/Imei"),
        compliance: compliance(&s("/ComplianceStatus")),
        managed: s("/EnrollmentStatus") == "Enrolled",
        last_check_in: timestamp(&s("/LastSeen")),
        user: match s("/UserEmailAddress") {
            u if u.is_empty() => s("/UserName"),
            u => u,
        },
        flags: Vec::new(),
    }
}

#[async_trait]
impl MdmDirectory for WorkspaceOne {
    fn kind(&self) -> &'static str {
        "workspace_one"
    }

    async fn devices(&self, email: &str) -> Result<Vec<Device>, DirectoryError> {
        let users = self
            .pages(
                "users/search",
                &format!(
                    "{}/API/system/users/search?email={}",
                    self.base,
                    urlencoding::encode(email)
                ),
                "Users",
            )
            .await?;
        let mut names: Vec<String> = users
            .iter()
            .filter(|u| json_at(u, "/Email").eq_ignore_ascii_case(email))
            .map(|u| json_at(u, "/UserName"))
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            let devices = self
                .pages(
                    "devices/search",
                    &format!(
                        "{}/API/mdm/devices/search?user={}",
                        self.base,
                        urlencoding::encode(&name)
                    ),
                    "Devices",
                )
                .await?;
            out.extend(devices.iter().map(device));
        }
        Ok(out)
    }
}
