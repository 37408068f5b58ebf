//! A local Intune, written from Microsoft's published contract: the MIT reference library
//! `microsoft/Intune-Resource-Access` (`src/CsrValidation`: `IntuneScepServiceClient`,
//! `IntuneRevocationClient`, `IntuneClient`, their tests and `doc/TestMatrix.csv`) and the
//! Microsoft Graph `servicePrincipals/{appId}/endpoints` document. It answers:
//!
//! - Entra ID's token endpoint (`/{tenant}/oauth2/v2.0/token`, client credentials with a
//!   secret; `invalid_client` and unknown-tenant errors as Entra writes them);
//! - Graph's endpoint discovery for Intune's app id;
//! - `ScepActions/validateRequest`, `successNotification`, `failureNotification`
//!   (`api-version: 2018-02-20`, `{"code","errorDescription"}`);
//! - `CertificateAuthorityRequests/downloadRevocationRequests` and `uploadRevocationResults`
//!   (`api-version: 5019-05-05`).
//!
//! Like Intune, it validates a request by the challenge inside the CSR: each challenge it
//! "issued" (see [`Expect`]) names the subject, SANs, minimum key size, key usage and
//! extended key usage the request must carry, and when the challenge expires. Faults are switched on while it runs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{json, Value};

use crate::fake_mdm::{FakeMdm, Req, Resp};

pub const TENANT: &str = "tenant-1";
pub const CLIENT_ID: &str = "sigil-intune-app";
pub const CLIENT_SECRET: &str = "intune-secret-1";
const INTUNE_APP: &str = "0000000a-0000-0000-c000-000000000000";

/// What a challenge Intune put in a device's SCEP profile vouches for.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// The subject, as Sigil's CSR parser writes it (`CN=…,O=…`).
    pub subject: String,
    /// The SANs (`email:…`, `uri:…`), in any order.
    pub sans: Vec<String>,
    /// The smallest RSA key.
    pub min_bits: u32,
    /// Expired already.
    pub expired: bool,
    /// The profile's key usage (Sigil's keywords); empty: not checked.
    pub key_usage: Vec<String>,
    /// The profile's extended key usages (keywords or dotted OIDs); empty: not checked.
    pub extended_key_usage: Vec<String>,
}

#[derive(Default)]
pub struct State {
    pub challenges: Mutex<HashMap<String, Expect>>,
    /// Tokens handed out and still honoured.
    pub valid_tokens: Mutex<HashSet<String>>,
    pub tokens_issued: AtomicUsize,
    /// `expires_in` of new tokens.
    pub token_life: AtomicI64,
    /// Answer the next N validateRequest calls with 429 and `Retry-After: 1`.
    pub throttle: AtomicUsize,
    /// Answer every validateRequest with 500.
    pub validate_broken: AtomicBool,
    /// Answer every successNotification with 500.
    pub success_broken: AtomicBool,
    /// Answer the discovery with 500.
    pub discovery_broken: AtomicBool,
    /// Refuse Graph as a tenant whose admin has not consented.
    pub no_consent: AtomicBool,
    /// Revocation requests waiting for download.
    pub revocations: Mutex<Vec<Value>>,
    /// Uploaded revocation results.
    pub uploaded: Mutex<Vec<Value>>,
    /// Success and failure notifications received.
    pub notifications: Mutex<Vec<(String, Value)>>,
    /// The public JWKS of a certificate credential registered with the app: client
    /// assertions (`private_key_jwt`) signed by it are accepted instead of the secret.
    pub client_jwks: Mutex<Option<Value>>,
}

/// Entra's check of a client assertion (RFC 7523): RS256 by a registered key, `iss` = `sub`
/// = the client, `aud` = the token endpoint, not expired.
fn assertion_ok(state: &State, jwt: &str, token_url: &str) -> bool {
    let Some(jwks) = state.client_jwks.lock().unwrap().clone() else {
        return false;
    };
    let b64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    let (Some(h), Some(c), Some(sig)) = (b64(parts[0]), b64(parts[1]), b64(parts[2])) else {
        return false;
    };
    let header: Value = serde_json::from_slice(&h).unwrap_or(Value::Null);
    let claims: Value = serde_json::from_slice(&c).unwrap_or(Value::Null);
    if header["alg"] != "RS256"
        || claims["iss"] != CLIENT_ID
        || claims["sub"] != CLIENT_ID
        || claims["aud"] != token_url
        || claims["exp"].as_i64().unwrap_or(0) < sigil::clock::now()
    {
        return false;
    }
    let Some(key) = jwks["keys"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["kid"] == header["kid"]))
    else {
        return false;
    };
    let (Some(n), Some(e)) = (
        key["n"].as_str().and_then(b64),
        key["e"].as_str().and_then(b64),
    ) else {
        return false;
    };
    let rsa = openssl::rsa::Rsa::from_public_components(
        openssl::bn::BigNum::from_slice(&n).unwrap(),
        openssl::bn::BigNum::from_slice(&e).unwrap(),
    )
    .unwrap();
    let pkey = openssl::pkey::PKey::from_rsa(rsa).unwrap();
    let mut v =
        openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
    v.update(format!("{}.{}", parts[0], parts[1]).as_bytes())
        .unwrap();
    v.verify(&sig).unwrap_or(false)
}

pub struct FakeIntune {
    pub http: FakeMdm,
    pub state: Arc<State>,
}

impl FakeIntune {
    pub fn url(&self) -> &str {
        &self.http.url
    }

    pub fn expect(&self, challenge: &str, e: Expect) {
        self.state
            .challenges
            .lock()
            .unwrap()
            .insert(challenge.into(), e);
    }

    /// Requests to paths containing `fragment`.
    pub fn seen(&self, fragment: &str) -> Vec<Req> {
        self.http.seen(fragment)
    }
}

fn code(c: &str, why: &str) -> Resp {
    Resp::json(200, json!({"code": c, "errorDescription": why}))
}

fn bearer_ok(state: &State, req: &Req) -> bool {
    req.bearer()
        .is_some_and(|t| state.valid_tokens.lock().unwrap().contains(t))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

/// Validate a request as Intune does: by the challenge it carries.
fn validate(state: &State, body: &Value) -> Resp {
    let r = &body["request"];
    let (Some(tid), Some(csr), Some(_caller)) = (
        r["transactionId"].as_str(),
        r["certificateRequest"].as_str(),
        r["callerInfo"].as_str(),
    ) else {
        return Resp::json(
            400,
            json!({"error": {"code": "BadRequest", "message": "request.transactionId, certificateRequest and callerInfo are required"}}),
        );
    };
    if tid.is_empty() {
        return Resp::json(
            400,
            json!({"error": {"code": "BadRequest", "message": "empty transactionId"}}),
        );
    }
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(csr) else {
        return code(
            "ChallengeDeserializationError",
            "certificateRequest is not base64",
        );
    };
    let Ok(csr) = sigil::pki::parse_csr(&der) else {
        return code(
            "ChallengeDeserializationError",
            "certificateRequest is not a PKCS#10 request",
        );
    };
    let Some(challenge) = csr.challenge.clone() else {
        return code(
            "ChallengeDecryptionError",
            "the request carries no challenge",
        );
    };
    let Some(e) = state.challenges.lock().unwrap().get(&challenge).cloned() else {
        return code(
            "ChallengeDecryptionError",
            "the challenge was not issued by this tenant",
        );
    };
    if e.expired {
        return code("ChallengeExpired", "the challenge has expired");
    }
    let subject = sigil::pki::name_text(&csr.subject);
    if subject != e.subject {
        return code(
            "SubjectNameMismatch",
            &format!("expected {}, got {subject}", e.subject),
        );
    }
    let mut got: Vec<String> = csr.sans.iter().map(|s| s.to_string()).collect();
    let mut want = e.sans.clone();
    got.sort();
    want.sort();
    if got != want {
        return code(
            "SubjectAltNameMismatch",
            &format!("expected {want:?}, got {got:?}"),
        );
    }
    if let sigil::pki::RequestedKey::Rsa(bits) = csr.key {
        if bits < e.min_bits {
            return code(
                "KeyLengthMismatch",
                &format!(
                    "the key is {bits} bits; the profile asks for {}",
                    e.min_bits
                ),
            );
        }
    }
    let same = |want: &[String], got: Option<Vec<String>>| {
        let mut got = got.unwrap_or_default();
        let mut want = want.to_vec();
        got.sort();
        want.sort();
        want.is_empty() || got == want
    };
    let ku = csr
        .requested_key_usage
        .clone()
        .map(|v| v.iter().map(|s| s.to_string()).collect());
    if !same(&e.key_usage, ku.clone()) {
        return code(
            "KeyUsageMismatch",
            &format!("expected {:?}, got {ku:?}", e.key_usage),
        );
    }
    let eku = csr.requested_extended_key_usage.clone();
    if !same(&e.extended_key_usage, eku.clone()) {
        return code(
            "EnhancedKeyUsageMismatch",
            &format!("expected {:?}, got {eku:?}", e.extended_key_usage),
        );
    }
    code("Success", "")
}

pub fn start() -> FakeIntune {
    let state = Arc::new(State::default());
    state.token_life.store(3599, Ordering::SeqCst);
    let s = state.clone();
    let url_cell: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let url_for = url_cell.clone();
    let http = FakeMdm::start(move |req, _| {
        let base = url_for.lock().unwrap().clone();
        let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        // Entra ID.
        if req.method == "POST" && req.path.ends_with("/oauth2/v2.0/token") {
            let tenant = req
                .path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("");
            if tenant != TENANT {
                return Resp::json(
                    400,
                    json!({"error": "invalid_request", "error_description": format!("AADSTS90002: Tenant '{tenant}' not found.")}),
                );
            }
            let f = req.form();
            let token_url = format!("{base}{}", req.path);
            let by_secret = f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
            let by_assertion = f.get("client_assertion_type").map(String::as_str)
                == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                && f.get("client_assertion")
                    .is_some_and(|a| assertion_ok(&s, a, &token_url));
            if f.get("grant_type").map(String::as_str) != Some("client_credentials")
                || f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || !(by_secret || by_assertion)
            {
                return Resp::json(
                    401,
                    json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
                );
            }
            let scope = f.get("scope").cloned().unwrap_or_default();
            if scope != "https://graph.microsoft.com/.default"
                && scope != "https://api.manage.microsoft.com//.default"
            {
                return Resp::json(
                    400,
                    json!({"error": "invalid_scope", "error_description": format!("AADSTS70011: scope {scope} is not valid.")}),
                );
            }
            let n = s.tokens_issued.fetch_add(1, Ordering::SeqCst);
            let token = format!(
                "tok-{n}-{}",
                if scope.contains("graph") {
                    "graph"
                } else {
                    "intune"
                }
            );
            s.valid_tokens.lock().unwrap().insert(token.clone());
            return Resp::json(
                200,
                json!({"token_type": "Bearer", "expires_in": s.token_life.load(Ordering::SeqCst),
                       "ext_expires_in": 3599, "access_token": token}),
            );
        }
        // Graph: the endpoint discovery.
        if req.method == "GET"
            && req.path == format!("/v1.0/servicePrincipals/appId={INTUNE_APP}/endpoints")
        {
            if !req
                .bearer()
                .is_some_and(|t| t.ends_with("-graph") && bearer_ok(&s, req))
            {
                return Resp::json(
                    401,
                    json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty or invalid."}}),
                );
            }
            if s.no_consent.load(Ordering::SeqCst) {
                return Resp::json(
                    403,
                    json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}}),
                );
            }
            if s.discovery_broken.load(Ordering::SeqCst) {
                return Resp::json(
                    500,
                    json!({"error": {"code": "InternalServerError", "message": "discovery down"}}),
                );
            }
            return Resp::json(
                200,
                json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals('appId%3D0000000a-0000-0000-c000-000000000000')/endpoints",
                       "value": [
                    {"id": "1", "capability": "", "providerId": "", "providerName": "ScepRequestValidationFEService",
                     "providerResourceId": "", "uri": format!("{base}/TrafficGateway/PassThroughRoutingService/StatelessScepRequestValidationFEService")},
                    {"id": "2", "capability": "", "providerId": "", "providerName": "PkiConnectorFEService",
                     "providerResourceId": "", "uri": format!("{base}/RACerts/StatelessPkiConnectorService/Gateway/StatelessPkiConnectorService")},
                ]}),
            );
        }
        // The Intune services.
        let intune_call = req
            .path
            .contains("/StatelessScepRequestValidationFEService/")
            || req.path.contains("/StatelessPkiConnectorService/");
        if intune_call {
            if !req
                .bearer()
                .is_some_and(|t| t.ends_with("-intune") && bearer_ok(&s, req))
            {
                return Resp::json(
                    401,
                    json!({"error": {"code": "Unauthorized", "message": "token invalid or expired"}}),
                );
            }
            if !req.header("client-request-id").is_some_and(is_uuid) {
                return Resp::json(
                    400,
                    json!({"error": {"code": "BadRequest", "message": "client-request-id"}}),
                );
            }
        }
        let api = req.header("api-version").unwrap_or("");
        if req.path.ends_with("/ScepActions/validateRequest") {
            if api != "2018-02-20" {
                return Resp::json(
                    400,
                    json!({"error": {"code": "BadRequest", "message": "api-version"}}),
                );
            }
            if s.throttle
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Resp::json(429, json!({"error": {"code": "TooManyRequests"}}))
                    .with_header("Retry-After", "1");
            }
            if s.validate_broken.load(Ordering::SeqCst) {
                return Resp::json(500, json!({"error": {"code": "InternalServerError"}}));
            }
            return validate(&s, &body);
        }
        for (action, broken) in [
            (
                "successNotification",
                s.success_broken.load(Ordering::SeqCst),
            ),
            ("failureNotification", false),
        ] {
            if req.path.ends_with(&format!("/ScepActions/{action}")) {
                if api != "2018-02-20" {
                    return Resp::json(
                        400,
                        json!({"error": {"code": "BadRequest", "message": "api-version"}}),
                    );
                }
                if broken {
                    return Resp::json(500, json!({"error": {"code": "InternalServerError"}}));
                }
                s.notifications
                    .lock()
                    .unwrap()
                    .push((action.to_string(), body["notification"].clone()));
                return code("Success", "");
            }
        }
        if req
            .path
            .ends_with("/CertificateAuthorityRequests/downloadRevocationRequests")
        {
            if api != "5019-05-05" {
                return Resp::json(
                    400,
                    json!({"error": {"code": "BadRequest", "message": "api-version"}}),
                );
            }
            let max = body["downloadParameters"]["maxRequests"]
                .as_u64()
                .unwrap_or(0) as usize;
            if !(1..=500).contains(&max) {
                return Resp::json(
                    400,
                    json!({"error": {"code": "BadRequest", "message": "maxRequests"}}),
                );
            }
            let mut q = s.revocations.lock().unwrap();
            let n = max.min(q.len());
            let batch: Vec<Value> = q.drain(..n).collect();
            return Resp::json(
                200,
                json!({"@odata.context": "https://manage.microsoft.com/RACerts/StatelessPkiConnectorService/$metadata#Collection(microsoft.management.services.api.caRevocationRequest)",
                       "value": batch}),
            );
        }
        if req
            .path
            .ends_with("/CertificateAuthorityRequests/uploadRevocationResults")
        {
            let Some(results) = body["results"].as_array().filter(|r| !r.is_empty()) else {
                return Resp::json(
                    400,
                    json!({"error": {"code": "BadRequest", "message": "results"}}),
                );
            };
            for r in results {
                let ok = r["succeeded"].as_bool() == Some(true);
                let code = r["errorCode"].as_str().unwrap_or("");
                if ok != (code == "None" || code == "0") {
                    return Resp::json(
                        400,
                        json!({"error": {"code": "BadRequest", "message": "errorCode does not fit succeeded"}}),
                    );
                }
            }
            s.uploaded.lock().unwrap().extend(results.iter().cloned());
            return Resp::json(200, json!({"@odata.context": "…", "value": true}));
        }
        Resp::json(
            404,
            json!({"error": {"code": "NotFound", "message": req.path}}),
        )
    });
    *url_cell.lock().unwrap() = http.url.clone();
    FakeIntune { http, state }
}
