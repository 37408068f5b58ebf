//! Jamf Pro: an API client (OAuth2 client credentials at `/api/oauth/token`) or a user
//! (`/api/v1/auth/token` with basic authentication), then the computers inventory
//! (`/api/v3/computers-inventory`, RSQL filter on `userAndLocation.email`) and the mobile
//! devices (`/api/v2/mobile-devices/detail`, filter on `emailAddress`), page by page. Jamf has
//! no compliance state of its own: devices are `unknown` there (Jamf's compliance lives in
//! Intune's device compliance integration).

use async_trait::async_trait;
use serde_json::Value;

use super::api::{json_at, Api, Auth, Failure};
use super::JamfSettings;
use super::{timestamp, Compliance, Device, DirectoryError, MdmDirectory};

pub(crate) struct Jamf {
    pub(super) api: Api,
    pub(super) base: String,
    token_url: String,
    client_id: String,
    username: String,
    computers_api: String,
}

impl Jamf {
    pub(crate) fn new(api: Api, c: &JamfSettings) -> Jamf {
        let base = c.base_url.trim_end_matches('/').to_string();
        let token_url = if c.token_url.is_empty() {
            format!("{base}/api/oauth/token")
        } else {
            c.token_url.clone()
        };
        Jamf {
            api,
            base,
            token_url,
            client_id: c.client_id.clone(),
            username: c.username.clone(),
            computers_api: c.computers_api.clone(),
        }
    }

    pub(super) async fn auth(&self) -> Result<Auth, DirectoryError> {
        let t = self
            .api
            .token(|| async {
                if !self.client_id.is_empty() {
                    return self
                        .api
                        .client_credentials(&self.token_url, &self.client_id, None)
                        .await;
                }
                let password = self.api.secret(&self.api.password, "password")?;
                let url = format!("{}/api/v1/auth/token", self.base);
                let v = self
                    .api
                    .send("token request", &|| {
                        self.api
                            .client()
                            .post(&url)
                            .basic_auth(&self.username, Some(&password))
                            .header(reqwest::header::ACCEPT, "application/json")
                    })
                    .await
                    .map_err(Failure::into_error)?
                    .ok_or_else(|| self.api.nonsense("token request: empty answer"))?;
                let token = json_at(&v, "/token");
                if token.is_empty() {
                    return Err(self.api.nonsense("token request: no `token` in the answer"));
                }
                // `expires` is an ISO time; the token lives about 20 minutes.
                let lifetime = timestamp(&json_at(&v, "/expires"))
                    .and_then(|t| {
                        time::OffsetDateTime::parse(
                            &t,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                    })
                    .map(|t| (t.unix_timestamp() - crate::clock::now()).max(0) as u64)
                    .unwrap_or(600);
                Ok((token, lifetime))
            })
            .await?;
        Ok(Auth::Bearer(t))
    }

    /// Every page of one Jamf listing.
    async fn pages(
        &self,
        what: &str,
        path: &str,
        sections: &[&str],
        filter: &str,
    ) -> Result<Vec<Value>, DirectoryError> {
        let mut out = Vec::new();
        let mut page = 0u32;
        loop {
            let mut url = format!(
                "{}{path}?page={page}&page-size={}",
                self.base, self.api.page_size
            );
            for s in sections {
                url.push_str("&section=");
                url.push_str(s);
            }
            url.push_str("&filter=");
            url.push_str(&urlencoding::encode(filter));
            let v = self
                .api
                .get_json(what, &url, &[], || self.auth())
                .await?
                .ok_or_else(|| self.api.nonsense(format!("{what}: empty answer")))?;
            let (Some(total), Some(results)) = (
                v.get("totalCount").and_then(Value::as_u64),
                v.get("results").and_then(Value::as_array),
            ) else {
                return Err(self
                    .api
                    .nonsense(format!("{what}: no `totalCount` and `results`")));
            };
            out.extend(results.iter().cloned());
            if out.len() > self.api.max_devices {
                return Err(self.api.nonsense(format!(
                    "more than {} devices for one user",
                    self.api.max_devices
                )));
            }
            if results.is_empty() || out.len() as u64 >= total {
                return Ok(out);
            }
            page += 1;
        }
    }
}

/// An RSQL string literal.
fn rsql(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn computer(v: &Value) -> Device {
    let s = |p: &str| json_at(v, p);
    Device {
        id: format!("computer:{}", s("/id")),
        name: s("/general/name"),
        model: s("/hardware/model"),
        os: s("/operatingSystem/name"),
        os_version: s("/operatingSystem/version"),
        serial_number: s("/hardware/serialNumber"),
        udid: s("/udid"),
        imei: String::new(),
        compliance: Compliance::Unknown,
        managed: s("/general/remoteManagement/managed") == "true",
        last_check_in: timestamp(&s("/general/lastContactTime")),
        user: s("/userAndLocation/email"),
        flags: Vec::new(),
    }
}

fn mobile(v: &Value) -> Device {
    let s = |p: &str| json_at(v, p);
    Device {
        id: format!("mobile:{}", s("/mobileDeviceId")),
        name: s("/general/displayName"),
        model: s("/hardware/model"),
        os: s("/deviceType"),
        os_version: s("/general/osVersion"),
        serial_number: s("/hardware/serialNumber"),
        udid: s("/general/udid"),
        imei: s("/network/imei").replace(' ', ""),
        compliance: Compliance::Unknown,
        managed: s("/general/managed") == "true",
        last_check_in: timestamp(&s("/general/lastInventoryUpdateDate")),
        user: s("/userAndLocation/emailAddress"),
        flags: Vec::new(),
    }
}

#[async_trait]
impl MdmDirectory for Jamf {
    fn kind(&self) -> &'static str {
        "jamf"
    }

    async fn devices(&self, email: &str) -> Result<Vec<Device>, DirectoryError> {
        let computers = self
            .pages(
                "computers-inventory",
                &format!("/api/{}/computers-inventory", self.computers_api),
                &[
                    "GENERAL",
                    "HARDWARE",
                    "OPERATING_SYSTEM",
                    "USER_AND_LOCATION",
                ],
                &format!("userAndLocation.email=={}", rsql(email)),
            )
            .await?;
        let mobiles = self
            .pages(
                "mobile-devices",
                "/api/v2/mobile-devices/detail",
                &["GENERAL", "HARDWARE", "USER_AND_LOCATION", "NETWORK"],
                &format!("emailAddress=={}", rsql(email)),
            )
            .await?;
        let mut out: Vec<Device> = computers.iter().map(computer).collect();
        out.extend(mobiles.iter().map(mobile));
        Ok(out)
    }
}
