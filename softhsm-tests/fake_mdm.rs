//! Local HTTP servers that answer like the MDM vendors' APIs, with the documented response
//! shapes (Microsoft Graph `managedDevices`, Jamf Pro inventory, Workspace ONE UEM search):
//! OAuth2 token endpoints, bearer checks, paging, and switchable failures (429 with
//! Retry-After, 5xx, garbage, slowness). Each records the requests it saw.
//!
//! Plain HTTP/1.1 on loopback, one thread per connection, `Connection: close`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn params(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn form(&self) -> HashMap<String, String> {
        parse_pairs(&self.body).into_iter().collect()
    }

    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

/// An answer.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Resp {
    pub fn json(status: u16, v: Value) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: v.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn text(status: u16, body: &str) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn with_header(mut self, k: &str, v: &str) -> Resp {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn after(mut self, d: Duration) -> Resp {
        self.delay = d;
        self
    }
}

fn parse_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |x: &str| {
                urlencoding::decode(&x.replace('+', " "))
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| x.to_string())
            };
            (dec(k), dec(v))
        })
        .collect()
}

type Handler = dyn Fn(&Req) -> Resp + Send + Sync;

/// What can go wrong, switchable while the fake runs.
#[derive(Default)]
pub struct Faults {
    /// Answer the next N device-list requests with 429 and `Retry-After: 1`.
    pub throttle: AtomicUsize,
    /// Answer every device-list request with 500.
    pub broken: AtomicBool,
    /// Answer device-list requests with an HTML page.
    pub garbage: AtomicBool,
    /// Answer device-list requests after 3 s.
    pub slow: AtomicBool,
}

impl Faults {
    /// A fault answer for a device-list request, if one is switched on.
    pub fn fault(&self) -> Option<Resp> {
        if self.slow.load(Ordering::SeqCst) {
            return Some(Resp::json(200, json!({"value": []})).after(Duration::from_secs(3)));
        }
        if self.broken.load(Ordering::SeqCst) {
            return Some(Resp::json(
                500,
                json!({"error": {"code": "InternalServerError", "message": "the MDM is down"}}),
            ));
        }
        if self.garbage.load(Ordering::SeqCst) {
            return Some(Resp::text(200, "<html><body>Sign in</body></html>"));
        }
        if self
            .throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Some(
                Resp::json(
                    429,
                    json!({"error": {"code": "TooManyRequests", "message": "Too many requests"}}),
                )
                .with_header("Retry-After", "1"),
            );
        }
        None
    }
}

/// A running fake MDM.
pub struct FakeMdm {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Req>>>,
    pub faults: Arc<Faults>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Drop for FakeMdm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl FakeMdm {
    pub fn start(handler: impl Fn(&Req, &Faults) -> Resp + Send + Sync + 'static) -> FakeMdm {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let faults = Arc::new(Faults::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (r2, f2, s2) = (requests.clone(), faults.clone(), stop.clone());
        let handler: Arc<Handler> = Arc::new(move |req: &Req| handler(req, &f2));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (h, r) = (handler.clone(), r2.clone());
                std::thread::spawn(move || serve(conn, &*h, &r));
            }
        });
        FakeMdm {
            url: format!("http://127.0.0.1:{port}"),
            requests,
            faults,
            stop,
            port,
        }
    }

    /// Requests whose path contains `fragment`.
    pub fn seen(&self, fragment: &str) -> Vec<Req> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.contains(fragment))
            .cloned()
            .collect()
    }
}

fn serve(conn: TcpStream, handler: &Handler, log: &Mutex<Vec<Req>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let req = Req {
        method,
        path: path.to_string(),
        query: parse_pairs(query),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    log.lock().unwrap().push(req.clone());
    let resp = handler(&req);
    std::thread::sleep(resp.delay);
    let reason = match resp.status {
        200 => "OK",
        204 => "No Content",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", resp.status);
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        resp.body.len(),
        resp.body
    ));
    let mut conn = conn;
    let _ = conn.write_all(out.as_bytes());
}

pub const CLIENT_ID: &str = "sigil-app";
pub const CLIENT_SECRET: &str = "app-secret-1";
pub const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1Qi.test-access-token";

fn unauthorized() -> Resp {
    Resp::json(
        401,
        json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty or invalid."}}),
    )
}

/// Microsoft Graph + Entra ID: token at `/{tenant}/oauth2/v2.0/token`, devices at
/// `/v1.0/deviceManagement/managedDevices` filtered by `userPrincipalName eq '…'`, `page`
/// devices per page with `@odata.nextLink` and `$skiptoken`.
pub fn intune(devices: Vec<Value>, page: usize) -> FakeMdm {
    FakeMdm::start(intune_handler(devices, page))
}

/// The handler of [`intune`], for fakes that answer more of the vendor's API.
pub fn intune_handler(
    devices: Vec<Value>,
    page: usize,
) -> impl Fn(&Req, &Faults) -> Resp + Send + Sync + 'static {
    move |req: &Req, faults: &Faults| {
        if req.path.ends_with("/oauth2/v2.0/token") {
            if req.method != "POST" {
                return Resp::json(
                    405,
                    json!({"error": "invalid_request", "error_description": "AADSTS900561: The endpoint only accepts POST requests."}),
                );
            }
            let f = req.form();
            if f.get("grant_type").map(String::as_str) != Some("client_credentials")
                || f.get("scope").map(String::as_str)
                    != Some("https://graph.microsoft.com/.default")
            {
                return Resp::json(
                    400,
                    json!({"error": "invalid_request", "error_description": "AADSTS900144: The request body must contain grant_type and scope."}),
                );
            }
            if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
            {
                return Resp::json(
                    401,
                    json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]}),
                );
            }
            return Resp::json(
                200,
                json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": ACCESS_TOKEN}),
            );
        }
        if req.path == "/v1.0/deviceManagement/managedDevices" {
            if req.bearer() != Some(ACCESS_TOKEN) {
                return unauthorized();
            }
            if let Some(f) = faults.fault() {
                return f;
            }
            let filter = req.param("$filter").unwrap_or("");
            let Some(upn) = filter
                .strip_prefix("userPrincipalName eq '")
                .and_then(|r| r.strip_suffix('\''))
            else {
                return Resp::json(
                    400,
                    json!({"error": {"code": "BadRequest", "message": "Invalid filter clause"}}),
                );
            };
            let upn = upn.replace("''", "'");
            let mine: Vec<&Value> = devices
                .iter()
                .filter(|d| {
                    d["userPrincipalName"]
                        .as_str()
                        .unwrap_or("")
                        .eq_ignore_ascii_case(&upn)
                })
                .collect();
            let skip: usize = req
                .param("$skiptoken")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let chunk: Vec<&Value> = mine.iter().skip(skip).take(page).copied().collect();
            let mut v = json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/managedDevices",
                "value": chunk,
            });
            if skip + page < mine.len() {
                let host = req.header("host").unwrap_or("127.0.0.1");
                v["@odata.nextLink"] = json!(format!(
                    "http://{host}/v1.0/deviceManagement/managedDevices?$filter={}&$skiptoken={}",
                    urlencoding::encode(filter),
                    skip + page
                ));
            }
            return Resp::json(200, v);
        }
        Resp::json(
            404,
            json!({"error": {"code": "ResourceNotFound", "message": "no such path"}}),
        )
    }
}

/// A Graph managedDevice as the v1.0 API documents it.
pub fn intune_device(
    id: &str,
    upn: &str,
    name: &str,
    os: &str,
    compliance: &str,
    serial: &str,
    udid: &str,
) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.managedDevice",
        "id": id,
        "userId": "9d2fbb0f-0000-4000-8000-00000000000a",
        "deviceName": name,
        "managedDeviceOwnerType": "company",
        "enrolledDateTime": "2026-01-10T09:00:00Z",
        "lastSyncDateTime": "2026-11-20T08:15:42.1234567Z",
        "operatingSystem": os,
        "complianceState": compliance,
        "managementAgent": "mdm",
        "osVersion": if os == "iOS" { "18.1" } else { "10.0.22631.4460" },
        "emailAddress": upn,
        "userPrincipalName": upn,
        "model": if os == "iOS" { "iPhone 15" } else { "Latitude 7440" },
        "manufacturer": if os == "iOS" { "Apple" } else { "Dell Inc." },
        "imei": if os == "iOS" { "356938035643809" } else { "" },
        "serialNumber": serial,
        "udid": udid,
        "azureADDeviceId": "f1a2b3c4-0000-4000-8000-0000000000aa",
        "isSupervised": true,
    })
}

/// Jamf Pro: `/api/oauth/token` (API client) and `/api/v1/auth/token` (basic), computers at
/// `/api/v{1..4}/computers-inventory`, mobile devices at `/api/v2/mobile-devices/detail`, both
/// with `page`, `page-size`, `section` and an RSQL `filter`.
pub fn jamf(computers: Vec<Value>, mobiles: Vec<Value>) -> FakeMdm {
    FakeMdm::start(jamf_handler(computers, mobiles))
}

/// The handler of [`jamf`], for fakes that answer more of the vendor's API.
pub fn jamf_handler(
    computers: Vec<Value>,
    mobiles: Vec<Value>,
) -> impl Fn(&Req, &Faults) -> Resp + Send + Sync + 'static {
    move |req: &Req, faults: &Faults| {
        if req.path == "/api/oauth/token" && req.method == "POST" {
            let f = req.form();
            if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
            {
                return Resp::json(401, json!({"error": "invalid_client"}));
            }
            return Resp::json(
                200,
                json!({"access_token": ACCESS_TOKEN, "scope": "api-role:2", "token_type": "Bearer", "expires_in": 599}),
            );
        }
        if req.path == "/api/v1/auth/token" && req.method == "POST" {
            // "jamf-reader:pw" in basic authentication.
            if req.header("authorization") != Some("Basic amFtZi1yZWFkZXI6cHc=") {
                return Resp::json(
                    401,
                    json!({"httpStatus": 401, "errors": [{"code": "INVALID_CREDENTIALS", "description": "Unauthorized", "id": "0", "field": null}]}),
                );
            }
            return Resp::json(
                200,
                json!({"token": ACCESS_TOKEN, "expires": "2099-01-01T00:00:00.000Z"}),
            );
        }
        let computer_path =
            req.path.starts_with("/api/v") && req.path.ends_with("/computers-inventory");
        let mobile_path = req.path == "/api/v2/mobile-devices/detail";
        if computer_path || mobile_path {
            if req.bearer() != Some(ACCESS_TOKEN) {
                return Resp::json(
                    401,
                    json!({"httpStatus": 401, "errors": [{"code": "INVALID_TOKEN", "description": "Unauthorized", "id": "0", "field": null}]}),
                );
            }
            if let Some(f) = faults.fault() {
                return f;
            }
            let filter = req.param("filter").unwrap_or("");
            let (field, list) = if computer_path {
                ("userAndLocation.email==", &computers)
            } else {
                ("emailAddress==", &mobiles)
            };
            let Some(email) = filter
                .strip_prefix(field)
                .map(|e| e.trim_matches('"').to_string())
            else {
                return Resp::json(
                    400,
                    json!({"httpStatus": 400, "errors": [{"code": "INVALID_FIELD", "description": "filter", "id": "0", "field": "filter"}]}),
                );
            };
            let pointer = if computer_path {
                "/userAndLocation/email"
            } else {
                "/userAndLocation/emailAddress"
            };
            let mine: Vec<&Value> = list
                .iter()
                .filter(|d| {
                    d.pointer(pointer)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .eq_ignore_ascii_case(&email)
                })
                .collect();
            let page: usize = req.param("page").and_then(|p| p.parse().ok()).unwrap_or(0);
            let size: usize = req
                .param("page-size")
                .and_then(|p| p.parse().ok())
                .unwrap_or(100);
            let chunk: Vec<&Value> = mine.iter().skip(page * size).take(size).copied().collect();
            return Resp::json(200, json!({"totalCount": mine.len(), "results": chunk}));
        }
        Resp::json(404, json!({"httpStatus": 404, "errors": []}))
    }
}

/// Workspace ONE UEM: `/API/system/users/search?email=` then `/API/mdm/devices/search?user=`,
/// both paged with `page` and `pagesize`; 204 when nothing matches; basic authentication
/// ("ws1-reader:pw") and the `aw-tenant-code` header required.
pub fn workspace_one(users: Vec<Value>, devices: Vec<Value>) -> FakeMdm {
    FakeMdm::start(workspace_one_handler(users, devices))
}

/// The handler of [`workspace_one`], for fakes that answer more of the vendor's API.
pub fn workspace_one_handler(
    users: Vec<Value>,
    devices: Vec<Value>,
) -> impl Fn(&Req, &Faults) -> Resp + Send + Sync + 'static {
    move |req: &Req, faults: &Faults| {
        if req.header("aw-tenant-code") != Some("tenant-code-1") {
            return Resp::json(
                401,
                json!({"errorCode": 1013, "message": "Tenant code does not identify an Organization Group.", "activityId": "a1"}),
            );
        }
        if req.header("authorization") != Some("Basic d3MxLXJlYWRlcjpwdw==") {
            return Resp::json(
                401,
                json!({"errorCode": 1005, "message": "User credentials are incorrect.", "activityId": "a2"}),
            );
        }
        let path = req.path.to_ascii_lowercase();
        let page: usize = req.param("page").and_then(|p| p.parse().ok()).unwrap_or(0);
        let size: usize = req
            .param("pagesize")
            .and_then(|p| p.parse().ok())
            .unwrap_or(500);
        let paged = |list: Vec<&Value>, key: &str| {
            if list.is_empty() {
                return Resp {
                    status: 204,
                    headers: Vec::new(),
                    body: String::new(),
                    delay: Duration::ZERO,
                };
            }
            let chunk: Vec<&Value> = list.iter().skip(page * size).take(size).copied().collect();
            Resp::json(
                200,
                json!({key: chunk, "Page": page, "PageSize": size, "Total": list.len()}),
            )
        };
        if path == "/api/system/users/search" {
            let email = req.param("email").unwrap_or("");
            return paged(
                users
                    .iter()
                    .filter(|u| {
                        u["Email"]
                            .as_str()
                            .unwrap_or("")
                            .eq_ignore_ascii_case(email)
                    })
                    .collect(),
                "Users",
            );
        }
        if path == "/api/mdm/devices/search" {
            if let Some(f) = faults.fault() {
                return f;
            }
            let user = req.param("user").unwrap_or("");
            return paged(
                devices
                    .iter()
                    .filter(|d| d["UserName"].as_str() == Some(user))
                    .collect(),
                "Devices",
            );
        }
        Resp::json(
            404,
            json!({"errorCode": 5061, "message": "not found", "activityId": "a3"}),
        )
    }
}
