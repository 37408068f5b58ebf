//! The parts of the MDM vendors' APIs a push uses, answering as their published contracts
//! say, on top of the directory fakes of `fake_mdm.rs`; each keeps the state a push changes
//! (group members, installed profiles) and knows a set of devices it can forget.
//!
//! - Microsoft Graph v1.0: `GET /deviceManagement/managedDevices/{id}` (the managedDevice
//!   resource, `azureADDeviceId`), `GET /devices?$filter=deviceId eq '…'` (the device
//!   resource), "Add members" `POST /groups/{id}/members/$ref` (204; 400 "One or more added
//!   object references already exist" when already a member), "Remove member"
//!   `DELETE /groups/{id}/members/{id}/$ref` (204; 404 when not a member, and when the group
//!   does not exist), "Get group" `GET /groups/{id}` (404 `Request_ResourceNotFound` for an
//!   unknown group).
//! - Jamf Pro: `GET /api/v1/computers-inventory/{id}`, `GET /api/v2/mobile-devices/{id}`
//!   (404 for an unknown ID), Classic API `PUT /JSSResource/computergroups/id/{id}` and
//!   `/JSSResource/mobiledevicegroups/id/{id}` with `*_additions` / `*_deletions` (201 with the
//!   group's id in XML); configuration profiles (Classic API reference,
//!   `osxconfigurationprofiles` and `mobiledeviceconfigurationprofiles`): POST `…/id/0` creates
//!   (201 with the new id; 409 "Duplicate name"), PUT and DELETE `…/name/{name}` update and
//!   delete (404 for a name Jamf does not have), the profile's property list entity-escaped in
//!   `general/payloads`, its scope in `scope/computers` or `scope/mobile_devices`.
//! - Workspace ONE UEM: `GET /API/mdm/devices/{id}` (404 "Device not found"), ProfilesV1
//!   `POST /API/mdm/profiles/{profileId}/install` and `/remove` with `{"DeviceId": n}`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::fake_mdm::{self, FakeMdm, Faults, Req, Resp, ACCESS_TOKEN};

/// What a push fake holds: the devices it knows, and who is in (or has) what.
#[derive(Default)]
pub struct PushState {
    pub known: Mutex<BTreeSet<String>>,
    pub members: Mutex<BTreeSet<String>>,
    /// Jamf configuration profiles by name.
    pub profiles: Mutex<BTreeMap<String, JamfProfile>>,
    /// The last configuration profile id Jamf gave.
    pub last_profile_id: std::sync::atomic::AtomicU64,
    /// Refuse every configuration profile's payload (409), as Jamf does one it cannot read.
    pub refuse_payloads: std::sync::atomic::AtomicBool,
}

/// A configuration profile Jamf holds.
#[derive(Clone, Debug)]
pub struct JamfProfile {
    pub id: u64,
    /// `computer:ID` or `mobile:ID`: the one device in its scope.
    pub scope: String,
    /// The property list, unescaped.
    pub plist: String,
    /// How many times it was updated.
    pub updates: u32,
}

impl PushState {
    /// A fake's state that knows these devices.
    fn knowing(known: &[&str]) -> Arc<PushState> {
        let state = Arc::new(PushState::default());
        state
            .known
            .lock()
            .unwrap()
            .extend(known.iter().map(|s| s.to_string()));
        state
    }

    pub fn members(&self) -> Vec<String> {
        self.members.lock().unwrap().iter().cloned().collect()
    }
    pub fn forget(&self, device: &str) {
        self.known.lock().unwrap().remove(device);
    }
    pub fn profiles(&self) -> BTreeMap<String, JamfProfile> {
        self.profiles.lock().unwrap().clone()
    }
}

/// The text of the first `<tag>…</tag>` in `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Jamf's configuration profiles, for a request to `/JSSResource/{resource}/…`.
fn jamf_profiles(req: &Req, st: &PushState, resource: &str, rest: &str) -> Resp {
    let (root, list, item, kind) = if resource == "osxconfigurationprofiles" {
        (
            "os_x_configuration_profile",
            "computers",
            "computer",
            "computer",
        )
    } else {
        (
            "configuration_profile",
            "mobile_devices",
            "mobile_device",
            "mobile",
        )
    };
    let html = |status: u16, text: &str| {
        Resp::text(
            status,
            &format!("<html><body><p>Error: {text}</p></body></html>"),
        )
    };
    let answer = |status: u16, id: u64| {
        Resp::text(
            status,
            &format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><{root}><id>{id}</id></{root}>"),
        )
    };
    let mut profiles = st.profiles.lock().unwrap();
    let by_name = rest.strip_prefix("name/").map(str::to_string);
    if req.method == "DELETE" {
        let Some(name) = by_name else {
            return html(405, "Method Not Allowed");
        };
        return match profiles.remove(&name) {
            Some(p) => answer(200, p.id),
            None => html(
                404,
                "The server has not found anything matching the request URI",
            ),
        };
    }
    if req.method != "POST" && req.method != "PUT" {
        return html(405, "Method Not Allowed");
    }
    let body = &req.body;
    if !body.starts_with(&format!("<{root}>")) || !body.ends_with(&format!("</{root}>")) {
        return html(400, "Unable to parse XML");
    }
    let (Some(general), Some(scope)) = (element(body, "general"), element(body, "scope")) else {
        return html(409, "Problem with general or scope");
    };
    let (Some(name), Some(payloads)) = (element(general, "name"), element(general, "payloads"))
    else {
        return html(409, "Problem with name or payloads");
    };
    // A computer profile's level is System or User; a mobile device profile's is Device Level
    // or User Level, and it has no user_removable (its removal is the payload's).
    let level = element(general, "level");
    let level_ok = if kind == "computer" {
        matches!(level, Some("System" | "User"))
            && element(general, "distribution_method") == Some("Install Automatically")
    } else {
        matches!(level, None | Some("Device Level" | "User Level"))
            && element(general, "user_removable").is_none()
            && element(general, "deployment_method") == Some("Install Automatically")
    };
    if !level_ok {
        return html(409, "Problem with general: level, method or removal");
    }
    if st.refuse_payloads.load(std::sync::atomic::Ordering::SeqCst) {
        return html(409, "Problem with payloads: unable to parse the profile");
    }
    let name = unescape(name);
    let ids: Vec<&str> = element(scope, list)
        .map(|l| {
            l.split(&format!("<{item}><id>"))
                .skip(1)
                .filter_map(|s| s.split("</id>").next())
                .collect()
        })
        .unwrap_or_default();
    let [id] = ids[..] else {
        return html(409, "Problem with scope");
    };
    let device = format!("{kind}:{id}");
    if !st.known.lock().unwrap().contains(&device) {
        return html(409, &format!("Problem with {item} in scope: {id}"));
    }
    let plist = unescape(payloads);
    if req.method == "POST" {
        if rest != "id/0" {
            return html(409, "Unable to create: use id 0");
        }
        if profiles.contains_key(&name) {
            return html(409, "Duplicate name");
        }
        let id = 1 + st
            .last_profile_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        profiles.insert(
            name,
            JamfProfile {
                id,
                scope: device,
                plist,
                updates: 0,
            },
        );
        return answer(201, id);
    }
    let Some(name_in_path) = by_name else {
        return html(409, "Unable to update by id here");
    };
    match profiles.get_mut(&name_in_path) {
        Some(p) => {
            p.scope = device;
            p.plist = plist;
            p.updates += 1;
            answer(201, p.id)
        }
        None => html(
            404,
            "The server has not found anything matching the request URI",
        ),
    }
}

fn graph_error(status: u16, code: &str, message: &str) -> Resp {
    Resp::json(
        status,
        json!({"error": {"code": code, "message": message, "innerError": {"request-id": "r1"}}}),
    )
}

/// Graph with group membership; `group` is the Entra group the profiles are assigned to.
pub fn intune(devices: Vec<Value>, known: &[&str], group: &str) -> (FakeMdm, Arc<PushState>) {
    let state = PushState::knowing(known);
    let base = fake_mdm::intune_handler(devices, 10);
    let (st, group) = (state.clone(), group.to_string());
    let fake = FakeMdm::start(move |req: &Req, faults: &Faults| {
        let members = format!("/v1.0/groups/{group}/members/");
        let push_path = req
            .path
            .starts_with("/v1.0/deviceManagement/managedDevices/")
            || req.path == "/v1.0/devices"
            || req.path.starts_with("/v1.0/groups/");
        if !push_path {
            return base(req, faults);
        }
        if req.bearer() != Some(ACCESS_TOKEN) {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty or invalid.",
            );
        }
        if let Some(f) = faults.fault() {
            return f;
        }
        if let Some(id) = req
            .path
            .strip_prefix("/v1.0/deviceManagement/managedDevices/")
        {
            if !st.known.lock().unwrap().contains(id) {
                return graph_error(404, "ResourceNotFound", &format!("{{\"_version\": 3, \"Message\": \"Resource not found for the segment 'managedDevices'. {id}\"}}"));
            }
            return Resp::json(
                200,
                json!({"id": id, "azureADDeviceId": format!("aad-{id}")}),
            );
        }
        if req.path == "/v1.0/devices" {
            let filter = req.param("$filter").unwrap_or("");
            let Some(aad) = filter
                .strip_prefix("deviceId eq '")
                .and_then(|r| r.strip_suffix('\''))
            else {
                return graph_error(400, "Request_UnsupportedQuery", "Unsupported query.");
            };
            let id = aad.trim_start_matches("aad-");
            let value = if st.known.lock().unwrap().contains(id) {
                json!([{"id": format!("obj-{id}")}])
            } else {
                json!([])
            };
            return Resp::json(200, json!({"value": value}));
        }
        if req.method == "GET" && req.path == format!("/v1.0/groups/{group}") {
            return Resp::json(200, json!({"id": group}));
        }
        let Some(rest) = req.path.strip_prefix(&members) else {
            return graph_error(404, "Request_ResourceNotFound", "Resource does not exist or one of its queried reference-property objects are not present.");
        };
        if req.method == "POST" && rest == "$ref" {
            let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
            let Some(object) = body["@odata.id"]
                .as_str()
                .and_then(|u| u.rsplit_once("/v1.0/directoryObjects/"))
                .map(|(_, id)| id.to_string())
            else {
                return graph_error(
                    400,
                    "Request_BadRequest",
                    "Invalid URL format specified in @odata.bind for members",
                );
            };
            if !st.members.lock().unwrap().insert(object) {
                return graph_error(400, "Request_BadRequest", "One or more added object references already exist for the following modified properties: 'members'.");
            }
            return Resp::text(204, "");
        }
        if req.method == "DELETE" {
            if let Some(object) = rest.strip_suffix("/$ref") {
                if st.members.lock().unwrap().remove(object) {
                    return Resp::text(204, "");
                }
                return graph_error(404, "Request_ResourceNotFound", "Resource does not exist or one of its queried reference-property objects are not present.");
            }
        }
        graph_error(405, "Request_BadRequest", "Method not allowed")
    });
    (fake, state)
}

/// Jamf Pro with static groups: members are `computer:ID@GROUP` and `mobile:ID@GROUP`.
pub fn jamf(
    computers: Vec<Value>,
    mobiles: Vec<Value>,
    known: &[&str],
) -> (FakeMdm, Arc<PushState>) {
    let state = PushState::knowing(known);
    let base = fake_mdm::jamf_handler(computers, mobiles);
    let st = state.clone();
    let fake = FakeMdm::start(move |req: &Req, faults: &Faults| {
        let lookup = req
            .path
            .strip_prefix("/api/v1/computers-inventory/")
            .map(|id| format!("computer:{id}"))
            .or_else(|| {
                req.path
                    .strip_prefix("/api/v2/mobile-devices/")
                    .filter(|id| *id != "detail")
                    .map(|id| format!("mobile:{id}"))
            });
        let group = req
            .path
            .strip_prefix("/JSSResource/computergroups/id/")
            .map(|g| ("computer", g))
            .or_else(|| {
                req.path
                    .strip_prefix("/JSSResource/mobiledevicegroups/id/")
                    .map(|g| ("mobile", g))
            });
        let profiles = [
            "osxconfigurationprofiles",
            "mobiledeviceconfigurationprofiles",
        ]
        .into_iter()
        .find_map(|r| {
            req.path
                .strip_prefix(&format!("/JSSResource/{r}/"))
                .map(|rest| (r, rest.to_string()))
        });
        if lookup.is_none() && group.is_none() && profiles.is_none() {
            return base(req, faults);
        }
        if req.bearer() != Some(ACCESS_TOKEN) {
            return Resp::json(
                401,
                json!({"httpStatus": 401, "errors": [{"code": "INVALID_TOKEN", "description": "Unauthorized"}]}),
            );
        }
        if let Some(f) = faults.fault() {
            return f;
        }
        if let Some((resource, rest)) = profiles {
            return jamf_profiles(req, &st, resource, &rest);
        }
        if let Some(device) = lookup {
            if !st.known.lock().unwrap().contains(&device) {
                return Resp::json(
                    404,
                    json!({"httpStatus": 404, "errors": [{"code": "INVALID_ID", "description": format!("{device} does not exist"), "id": "0", "field": null}]}),
                );
            }
            return Resp::json(
                200,
                json!({"id": device.split(':').nth(1), "general": {"name": "Mac"}}),
            );
        }
        let (kind, gid) = group.unwrap();
        if req.method != "PUT" {
            return Resp::text(405, "<html><body>Method Not Allowed</body></html>");
        }
        let item = if kind == "computer" {
            "computer"
        } else {
            "mobile_device"
        };
        let ids = |list: &str| -> Vec<String> {
            let Some(start) = req.body.find(&format!("<{list}>")) else {
                return Vec::new();
            };
            let end = req
                .body
                .find(&format!("</{list}>"))
                .unwrap_or(req.body.len());
            req.body[start..end]
                .split(&format!("<{item}><id>"))
                .skip(1)
                .filter_map(|s| s.split("</id>").next().map(str::to_string))
                .collect()
        };
        let (adds, dels) = (
            ids(&format!("{item}_additions")),
            ids(&format!("{item}_deletions")),
        );
        if adds.is_empty() && dels.is_empty() {
            return Resp::text(
                409,
                "<html><body><p>Error: Problem with group membership</p></body></html>",
            );
        }
        let mut m = st.members.lock().unwrap();
        for id in adds {
            if !st.known.lock().unwrap().contains(&format!("{kind}:{id}")) {
                return Resp::text(409, &format!("<html><body><p>Error: Problem with {item} in {item}_additions: {id}</p></body></html>"));
            }
            m.insert(format!("{kind}:{id}@{gid}"));
        }
        for id in dels {
            m.remove(&format!("{kind}:{id}@{gid}"));
        }
        let root = if kind == "computer" {
            "computer_group"
        } else {
            "mobile_device_group"
        };
        Resp::text(
            201,
            &format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><{root}><id>{gid}</id></{root}>"),
        )
    });
    (fake, state)
}

/// Workspace ONE with profile installs: members are `DEVICE@PROFILE`.
pub fn workspace_one(
    users: Vec<Value>,
    devices: Vec<Value>,
    known: &[&str],
) -> (FakeMdm, Arc<PushState>) {
    let state = PushState::knowing(known);
    let base = fake_mdm::workspace_one_handler(users, devices);
    let st = state.clone();
    let fake = FakeMdm::start(move |req: &Req, faults: &Faults| {
        let path = req.path.to_ascii_lowercase();
        let device = path
            .strip_prefix("/api/mdm/devices/")
            .filter(|d| *d != "search")
            .map(str::to_string);
        let profile = path.strip_prefix("/api/mdm/profiles/").map(str::to_string);
        if device.is_none() && profile.is_none() {
            return base(req, faults);
        }
        if req.header("aw-tenant-code") != Some("tenant-code-1")
            || req.header("authorization") != Some("Basic d3MxLXJlYWRlcjpwdw==")
        {
            return Resp::json(
                401,
                json!({"errorCode": 1005, "message": "User credentials are incorrect.", "activityId": "a2"}),
            );
        }
        if let Some(f) = faults.fault() {
            return f;
        }
        if let Some(d) = device {
            if !st.known.lock().unwrap().contains(&d) {
                return Resp::json(
                    404,
                    json!({"errorCode": 404, "message": "Device not found", "activityId": "a4"}),
                );
            }
            return Resp::json(200, json!({"Id": {"Value": d.parse::<u64>().unwrap_or(0)}}));
        }
        let profile = profile.unwrap();
        let (pid, verb) = profile.split_once('/').unwrap_or((&profile, ""));
        let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        let Some(d) = body["DeviceId"].as_u64() else {
            return Resp::json(
                400,
                json!({"errorCode": 400, "message": "DeviceId is required", "activityId": "a5"}),
            );
        };
        if !st.known.lock().unwrap().contains(&d.to_string()) {
            return Resp::json(
                400,
                json!({"errorCode": 400, "message": "Invalid device id", "activityId": "a6"}),
            );
        }
        let mut m = st.members.lock().unwrap();
        match (req.method.as_str(), verb) {
            ("POST", "install") => {
                m.insert(format!("{d}@{pid}"));
                Resp::text(200, "")
            }
            ("POST", "remove") => {
                m.remove(&format!("{d}@{pid}"));
                Resp::text(200, "")
            }
            _ => Resp::json(
                404,
                json!({"errorCode": 5061, "message": "not found", "activityId": "a3"}),
            ),
        }
    });
    (fake, state)
}

/// A webhook receiver that answers 200, after failing the first `fail` deliveries with 503,
/// and with 503 while `faults.broken` is set.
pub fn webhook(fail: usize) -> FakeMdm {
    let left = Arc::new(Mutex::new(fail));
    FakeMdm::start(move |_req: &Req, f: &Faults| {
        let mut n = left.lock().unwrap();
        if f.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Resp::text(503, "receiver down");
        }
        if *n > 0 {
            *n -= 1;
            return Resp::text(503, "receiver restarting");
        }
        Resp::json(200, json!({"ok": true}))
    })
}
