//! Any MDM (or inventory service) with an HTTP JSON device listing: the URL, the
//! authentication, where the devices are in a page, where the next page's URL is, and which
//! JSON pointer holds each device fact are all configuration (`[directories.NAME]` with
//! `kind = "generic"`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;

use super::api::{json_at, Api, Auth};
use super::GenericSettings;
use super::{timestamp, Compliance, Device, DirectoryError, MdmDirectory};

pub(crate) struct Generic {
    api: Api,
    devices_url: String,
    auth: String,
    username: String,
    header: String,
    items: String,
    next: String,
    fields: BTreeMap<String, String>,
    compliant: Vec<String>,
}

impl Generic {
    pub(crate) fn new(api: Api, c: &GenericSettings) -> Generic {
        Generic {
            api,
            devices_url: c.devices_url.clone(),
            auth: c.auth.clone(),
            username: c.username.clone(),
            header: c.api_key_header.clone(),
            items: c.items.clone(),
            next: c.next.clone(),
            fields: c.fields.clone(),
            compliant: c
                .compliant_values
                .iter()
                .map(|v| v.to_ascii_lowercase())
                .collect(),
        }
    }

    async fn auth(&self) -> Result<Auth, DirectoryError> {
        Ok(match self.auth.as_str() {
            "bearer" => Auth::Bearer(self.api.secret(&self.api.api_key, "API key")?),
            "basic" => Auth::Basic(
                self.username.clone(),
                self.api.secret(&self.api.password, "password")?,
            ),
            "header" => Auth::Header(
                self.header.clone(),
                self.api.secret(&self.api.api_key, "API key")?,
            ),
            _ => Auth::None,
        })
    }

    fn device(&self, v: &Value) -> Device {
        let f = |name: &str| {
            self.fields
                .get(name)
                .map(|p| json_at(v, p))
                .unwrap_or_default()
        };
        let compliance = match f("compliance").to_ascii_lowercase() {
            c if c.is_empty() => Compliance::Unknown,
            c if self.compliant.contains(&c) => Compliance::Compliant,
            _ => Compliance::NonCompliant,
        };
        Device {
            id: f("id"),
            name: f("name"),
            model: f("model"),
            os: f("os"),
            os_version: f("os_version"),
            serial_number: f("serial_number"),
            udid: f("udid"),
            imei: f("imei"),
            compliance,
            // Without a mapping, a listed device counts as managed.
            managed: !self.fields.contains_key("managed") || f("managed") == "true",
            last_check_in: timestamp(&f("last_check_in")),
            user: f("user"),
            flags: Vec::new(),
        }
    }
}

/// Scheme and authority of a URL (`https://mdm.example:8443`).
fn origin(url: &str) -> &str {
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

#[async_trait]
impl MdmDirectory for Generic {
    fn kind(&self) -> &'static str {
        "generic"
    }

    async fn devices(&self, email: &str) -> Result<Vec<Device>, DirectoryError> {
        let mut url = self
            .devices_url
            .replace("{email}", &urlencoding::encode(email));
        let home = origin(&self.devices_url).to_string();
        let mut out = Vec::new();
        loop {
            let Some(page) = self
                .api
                .get_json("device list", &url, &[], || self.auth())
                .await?
            else {
                return Ok(out);
            };
            let items = if self.items.is_empty() {
                Some(&page)
            } else {
                page.pointer(&self.items)
            };
            let Some(items) = items.and_then(Value::as_array) else {
                return Err(self.api.nonsense(format!(
                    "device list: no array at `{}`",
                    if self.items.is_empty() {
                        "/"
                    } else {
                        &self.items
                    }
                )));
            };
            out.extend(items.iter().map(|d| self.device(d)));
            if out.len() > self.api.max_devices {
                return Err(self.api.nonsense(format!(
                    "more than {} devices for one user",
                    self.api.max_devices
                )));
            }
            let next = if self.next.is_empty() {
                String::new()
            } else {
                json_at(&page, &self.next)
            };
            if next.is_empty() {
                return Ok(out);
            }
            url = if next.starts_with('/') {
                format!("{home}{next}")
            } else if origin(&next) == home {
                next
            } else {
                // Credentials never go to another host.
                return Err(self
                    .api
                    .nonsense(format!("the next page `{next}` is on another host")));
            };
        }
    }
}
