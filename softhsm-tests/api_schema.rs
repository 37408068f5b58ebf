//! What a live `sigil serve` answers on `/api/v1` against the OpenAPI document it serves: each
//! JSON body checked against the schema of its operation and status (every property it carries
//! is documented, every required one is there, each of the documented type). The walk covers
//! tokens, challenges, certificates, revocation, the approval queue and its decisions, the
//! audit log, profiles and the errors; the registration tests run the same check on the
//! registration flow.

use serde_json::{json, Value};
use sigil::scep::PkiStatus;

use crate::api::{call, enroll_with, new_token};
use crate::scep::{ScepServer, CHALLENGE};

/// The document the server publishes.
pub(crate) fn document(s: &ScepServer) -> Value {
    let r = call(s, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

/// Check a response's body against the schema the document gives `method path` for its
/// status, and return the body. `path` is the pattern (`/certificates/{serial}`).
pub(crate) fn answer(
    doc: &Value,
    method: &str,
    path: &str,
    r: reqwest::blocking::Response,
) -> Value {
    let status = r.status().as_u16().to_string();
    let text = r.text().unwrap();
    let op = &doc["paths"][path][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {path} is not documented");
    let response = &op["responses"][&status];
    assert!(
        response.is_object(),
        "{method} {path} answered {status}, which its operation does not list: {text}"
    );
    let Some(schema) = response["content"]["application/json"].get("schema") else {
        assert!(
            text.is_empty() || response["content"].is_object(),
            "{method} {path} {status}: a body where none is documented: {text}"
        );
        return Value::Null;
    };
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path} {status}: not JSON ({e}): {text}"));
    if let Err(why) = conforms(doc, schema, &body, "$") {
        panic!("{method} {path} {status}: {why}\nbody: {body:#}");
    }
    body
}

/// The documented pattern a concrete API path matches (`/api/v1/registrations/reg_1?x=y` →
/// `/registrations/{id}`).
pub(crate) fn pattern_of(doc: &Value, path: &str) -> String {
    let path = path.trim_start_matches("/api/v1");
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .find(|p| {
            let ps: Vec<&str> = p.split('/').collect();
            ps.len() == segs.len()
                && ps
                    .iter()
                    .zip(&segs)
                    .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')))
        })
        .unwrap_or_else(|| panic!("{path} matches no documented path"))
        .clone()
}

/// Call the API and check the answer against the document; the status and the body.
pub(crate) fn checked_call(
    s: &ScepServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let doc = document(s);
    let r = call(s, method, path, token, body);
    let status = r.status().as_u16();
    (status, answer(&doc, method, &pattern_of(&doc, path), r))
}

/// Does `v` fit `schema` (the subset of JSON Schema utoipa writes)?
pub(crate) fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: {r} is not defined"));
        }
        return conforms(doc, target, v, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let errors: Vec<String> = options
                .iter()
                .filter_map(|o| conforms(doc, o, v, at).err())
                .collect();
            let fits = options.len() - errors.len();
            return match (key, fits) {
                (_, 0) => Err(format!("{at}: fits none of {key}: {}", errors.join(" | "))),
                ("oneOf", n) if n > 1 => Err(format!("{at}: fits {n} schemas of a oneOf")),
                _ => Ok(()),
            };
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            conforms(doc, s, v, at)?;
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let actual = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let fits = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !fits {
            return Err(format!("{at}: {actual}, documented as {types:?}"));
        }
    }
    // Objects are closed: a property the document does not list is an error (stricter than
    // JSON Schema's default, which is the point: the document must name what is sent).
    if let (Some(props), Value::Object(obj)) = (schema.get("properties"), v) {
        let props = props.as_object().unwrap();
        for (k, val) in obj {
            let Some(s) = props.get(k) else {
                return Err(format!("{at}.{k}: not documented"));
            };
            conforms(doc, s, val, &format!("{at}.{k}"))?;
        }
        for req in schema["required"].as_array().into_iter().flatten() {
            let req = req.as_str().unwrap();
            if !obj.contains_key(req) {
                return Err(format!("{at}.{req}: required, missing"));
            }
        }
    }
    if let (Some(items), Value::Array(list)) = (schema.get("items"), v) {
        for (i, item) in list.iter().enumerate() {
            conforms(doc, items, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[test]
fn the_api_answers_what_its_document_says() {
    let s = ScepServer::start();
    let doc = document(&s);
    let (admin, _) = s.host_token("admin", "schema-admin");
    let (officer, _) = new_token(&s, "officer", "schema-officer");
    let (auditor, _) = new_token(&s, "auditor", "schema-auditor");

    // Tokens: made (awaiting a second admin), approved, listed, revoked; errors.
    let made = answer(
        &doc,
        "POST",
        "/tokens",
        call(
            &s,
            "POST",
            "/api/v1/tokens",
            Some(&admin),
            Some(
                json!({"role": "mdm", "name": "schema-mdm", "profiles": ["*"], "directories": ["*"]}),
            ),
        ),
    );
    assert_eq!(made["awaiting_approval"], true);
    let id = made["id"].as_str().unwrap();
    let mdm = made["token"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/tokens/{id}/approve");
    answer(
        &doc,
        "POST",
        "/tokens/{id}/approve",
        call(&s, "POST", &path, Some(&s.second_admin), None),
    );
    answer(
        &doc,
        "POST",
        "/tokens/{id}/approve",
        call(&s, "POST", &path, Some(&s.second_admin), None),
    );
    let listed = answer(
        &doc,
        "GET",
        "/tokens",
        call(&s, "GET", "/api/v1/tokens", Some(&admin), None),
    );
    assert!(listed.as_array().unwrap().len() >= 3);
    answer(
        &doc,
        "POST",
        "/tokens",
        call(
            &s,
            "POST",
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({"role": "king", "name": "x"})),
        ),
    );
    answer(
        &doc,
        "GET",
        "/tokens",
        call(&s, "GET", "/api/v1/tokens", Some(&officer), None),
    );
    answer(
        &doc,
        "GET",
        "/tokens",
        call(&s, "GET", "/api/v1/tokens", Some("sigil_nothing"), None),
    );

    // A challenge, an enrollment with it, the certificate listed, read and revoked.
    let c = answer(
        &doc,
        "POST",
        "/challenges",
        call(
            &s,
            "POST",
            "/api/v1/challenges",
            Some(&mdm),
            Some(json!({"cn": "schema-device", "device_id": "dev-schema"})),
        ),
    );
    answer(
        &doc,
        "POST",
        "/challenges",
        call(
            &s,
            "POST",
            "/api/v1/challenges",
            Some(&mdm),
            Some(json!({"profile": "nope"})),
        ),
    );
    let (_, _, reply) = enroll_with(
        &s,
        "default",
        "schema-device",
        c["challenge"].as_str().unwrap(),
    );
    assert_eq!(reply.status, PkiStatus::Success);
    let certs = answer(
        &doc,
        "GET",
        "/certificates",
        call(
            &s,
            "GET",
            "/api/v1/certificates?device=dev-schema",
            Some(&officer),
            None,
        ),
    );
    let serial = certs[0]["serial"].as_str().unwrap().to_owned();
    answer(
        &doc,
        "GET",
        "/certificates",
        call(
            &s,
            "GET",
            "/api/v1/certificates?status=maybe",
            Some(&officer),
            None,
        ),
    );
    let one = answer(
        &doc,
        "GET",
        "/certificates/{serial}",
        call(
            &s,
            "GET",
            &format!("/api/v1/certificates/{serial}"),
            Some(&auditor),
            None,
        ),
    );
    assert!(one["pem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE"));
    answer(
        &doc,
        "GET",
        "/certificates/{serial}",
        call(&s, "GET", "/api/v1/certificates/00", Some(&auditor), None),
    );
    answer(
        &doc,
        "POST",
        "/certificates/{serial}/revoke",
        call(
            &s,
            "POST",
            &format!("/api/v1/certificates/{serial}/revoke"),
            Some(&officer),
            Some(json!({"reason": "sometimes"})),
        ),
    );
    answer(
        &doc,
        "POST",
        "/certificates/{serial}/revoke",
        call(
            &s,
            "POST",
            &format!("/api/v1/certificates/{serial}/revoke"),
            Some(&officer),
            Some(json!({"reason": "superseded"})),
        ),
    );
    answer(
        &doc,
        "POST",
        "/devices/{id}/revoke",
        call(
            &s,
            "POST",
            "/api/v1/devices/dev-schema/revoke",
            Some(&officer),
            Some(json!({"reason": "superseded"})),
        ),
    );
    let revoked = answer(
        &doc,
        "GET",
        "/certificates/{serial}",
        call(
            &s,
            "GET",
            &format!("/api/v1/certificates/{serial}"),
            Some(&auditor),
            None,
        ),
    );
    assert_eq!(revoked["status"], "revoked");

    // The approval queue with a PENDING enrollment; one approved, one rejected.
    let (_, t1, r) = enroll_with(&s, "approval", "schema-approve", CHALLENGE);
    assert_eq!(r.status, PkiStatus::Pending);
    let (_, t2, _) = enroll_with(&s, "approval", "schema-reject", CHALLENGE);
    let queue = answer(
        &doc,
        "GET",
        "/approvals",
        call(&s, "GET", "/api/v1/approvals", Some(&officer), None),
    );
    let id_of = |tid: &str| {
        queue
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["transaction_id"] == tid)
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let (a, b) = (id_of(&t1), id_of(&t2));
    let done = answer(
        &doc,
        "POST",
        "/approvals/{id}/approve",
        call(
            &s,
            "POST",
            &format!("/api/v1/approvals/{a}/approve"),
            Some(&officer),
            Some(json!({"comment": "ok"})),
        ),
    );
    assert_eq!(done["state"], "issued");
    answer(
        &doc,
        "POST",
        "/approvals/{id}/approve",
        call(
            &s,
            "POST",
            &format!("/api/v1/approvals/{a}/approve"),
            Some(&officer),
            None,
        ),
    );
    let no = answer(
        &doc,
        "POST",
        "/approvals/{id}/reject",
        call(
            &s,
            "POST",
            &format!("/api/v1/approvals/{b}/reject"),
            Some(&officer),
            None,
        ),
    );
    assert_eq!(no["state"], "rejected");

    // The audit log, the credentials, the profiles' values, the DDM asset.
    let log = answer(
        &doc,
        "GET",
        "/audit",
        call(&s, "GET", "/api/v1/audit?limit=500", Some(&auditor), None),
    );
    assert!(log.as_array().unwrap().len() > 5);
    answer(
        &doc,
        "GET",
        "/audit",
        call(&s, "GET", "/api/v1/audit?limit=x", Some(&auditor), None),
    );
    answer(
        &doc,
        "GET",
        "/credentials",
        call(&s, "GET", "/api/v1/credentials", Some(&auditor), None),
    );
    let values = answer(
        &doc,
        "GET",
        "/profiles/{name}/scep-values",
        call(
            &s,
            "GET",
            "/api/v1/profiles/default/scep-values",
            Some(&admin),
            None,
        ),
    );
    assert_eq!(
        values["root_certificate"]["sha256"].as_str().unwrap().len(),
        64
    );
    answer(
        &doc,
        "GET",
        "/profiles/{name}/scep-values",
        call(
            &s,
            "GET",
            "/api/v1/profiles/nope/scep-values",
            Some(&admin),
            None,
        ),
    );
    answer(
        &doc,
        "GET",
        "/profiles/{name}/ddm",
        call(&s, "GET", "/api/v1/profiles/default/ddm", Some(&mdm), None),
    );
    answer(
        &doc,
        "GET",
        "/registrations",
        call(&s, "GET", "/api/v1/registrations", Some(&officer), None),
    );

    // A property the document does not list is caught (the check itself can fail).
    let schema = json!({"$ref": "#/components/schemas/CertificateRevoked"});
    let forged = json!({"serial": "01", "status": "revoked", "reason": "superseded", "extra": 1});
    assert!(conforms(&doc, &schema, &forged, "$").is_err());
    let missing = json!({"serial": "01", "status": "revoked"});
    assert!(conforms(&doc, &schema, &missing, "$").is_err());
    let wrong = json!({"serial": 1, "status": "revoked", "reason": "superseded"});
    assert!(conforms(&doc, &schema, &wrong, "$").is_err());
}
