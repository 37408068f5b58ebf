//! Checks a configuration profile against Apple's published payload schemas
//! (`apple/device-management`, `mdm/profiles/*.yaml`, kept as JSON in
//! `testdata/apple-device-management/` with their licence): every required key present, no key
//! the schema does not declare, each value of its declared type, values from `rangelist` when
//! the schema gives one, recursively through dictionaries and arrays.

use plist::Value;
use serde_json::Value as Json;

fn schema(name: &str) -> Json {
    let path = format!(
        "{}/testdata/apple-device-management/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no schema for payload type `{name}` ({path}): {e}"));
    serde_json::from_str(&text).unwrap()
}

fn type_ok(kind: &str, v: &Value) -> bool {
    match kind {
        "<string>" => v.as_string().is_some(),
        "<integer>" => v.as_signed_integer().is_some() || v.as_unsigned_integer().is_some(),
        "<real>" => v.as_real().is_some() || v.as_signed_integer().is_some(),
        "<boolean>" => v.as_boolean().is_some(),
        "<data>" => v.as_data().is_some(),
        "<date>" => v.as_date().is_some(),
        "<array>" => v.as_array().is_some(),
        "<dictionary>" => v.as_dictionary().is_some(),
        "<any>" => true,
        other => panic!("schema type {other} unknown to the checker"),
    }
}

fn in_range(range: &Json, v: &Value) -> bool {
    range.as_array().unwrap().iter().any(|r| match r {
        Json::String(s) => v.as_string() == Some(s.as_str()),
        Json::Number(n) => v.as_signed_integer().map(|i| i as f64).or(v.as_real()) == n.as_f64(),
        Json::Bool(b) => v.as_boolean() == Some(*b),
        _ => false,
    })
}

/// Check one value against its key's schema entry.
fn check_value(path: &str, spec: &Json, v: &Value, problems: &mut Vec<String>) {
    let kind = spec["type"].as_str().unwrap_or("<any>");
    if !type_ok(kind, v) {
        problems.push(format!("{path}: expected {kind}, found {v:?}"));
        return;
    }
    if let Some(range) = spec.get("rangelist") {
        if !in_range(range, v) {
            problems.push(format!("{path}: {v:?} is not one of {range}"));
        }
    }
    let Some(sub) = spec.get("subkeys").and_then(Json::as_array) else {
        return;
    };
    match (kind, v) {
        ("<dictionary>", Value::Dictionary(d)) => check_dict(path, sub, d, problems),
        ("<array>", Value::Array(items)) => {
            // An array's single subkey describes its items.
            if let Some(item) = sub.first() {
                for (i, x) in items.iter().enumerate() {
                    check_value(&format!("{path}[{i}]"), item, x, problems);
                }
            }
        }
        _ => {}
    }
}

/// Check a dictionary against a list of key specs.
fn check_dict(path: &str, keys: &[Json], d: &plist::Dictionary, problems: &mut Vec<String>) {
    for spec in keys {
        let key = spec["key"].as_str().unwrap();
        if spec["presence"] == "required" && d.get(key).is_none() {
            problems.push(format!("{path}.{key}: required, missing"));
        }
    }
    for (k, v) in d {
        match keys.iter().find(|s| s["key"] == k.as_str()) {
            Some(spec) => check_value(&format!("{path}.{k}"), spec, v, problems),
            None => problems.push(format!("{path}.{k}: not a key of the schema")),
        }
    }
}

/// Every problem of a profile (the top level and each payload by its `PayloadType`).
pub fn problems(profile: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let top = profile.as_dictionary().expect("a profile is a dictionary");
    let mut top_keys = schema("TopLevel")["payloadkeys"]
        .as_array()
        .unwrap()
        .clone();
    // Its PayloadContent items are payloads, each checked below by its own type.
    for k in &mut top_keys {
        if k["key"] == "PayloadContent" {
            k.as_object_mut().unwrap().remove("subkeys");
        }
    }
    check_dict("Configuration", &top_keys, top, &mut problems);
    let common = schema("CommonPayloadKeys")["payloadkeys"]
        .as_array()
        .unwrap()
        .clone();
    for (i, p) in top
        .get("PayloadContent")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let d = p.as_dictionary().expect("a payload is a dictionary");
        let kind = d.get("PayloadType").and_then(Value::as_string).unwrap();
        let mut keys = schema(kind)["payloadkeys"].as_array().unwrap().clone();
        for c in &common {
            if !keys.iter().any(|k| k["key"] == c["key"]) {
                keys.push(c.clone());
            }
        }
        check_dict(
            &format!("PayloadContent[{i}]({kind})"),
            &keys,
            d,
            &mut problems,
        );
    }
    problems
}

#[test]
fn the_checker_finds_what_apple_would_refuse() {
    let mut scep = plist::Dictionary::new();
    scep.insert(
        "PayloadType".into(),
        Value::String("com.apple.security.scep".into()),
    );
    scep.insert("PayloadVersion".into(), Value::Integer(1.into()));
    scep.insert("PayloadIdentifier".into(), Value::String("x.scep".into()));
    scep.insert("PayloadUUID".into(), Value::String("u".into()));
    let mut content = plist::Dictionary::new();
    content.insert("Keysize".into(), Value::Integer(3072.into()));
    content.insert("Colour".into(), Value::String("red".into()));
    content.insert("Challenge".into(), Value::Integer(7.into()));
    scep.insert("PayloadContent".into(), Value::Dictionary(content));
    let mut top = plist::Dictionary::new();
    top.insert("PayloadType".into(), Value::String("Configuration".into()));
    top.insert("PayloadVersion".into(), Value::Integer(1.into()));
    top.insert("PayloadIdentifier".into(), Value::String("x".into()));
    top.insert("PayloadUUID".into(), Value::String("v".into()));
    top.insert(
        "PayloadContent".into(),
        Value::Array(vec![Value::Dictionary(scep)]),
    );
    let found = problems(&Value::Dictionary(top)).join("\n");
    for want in [
        "PayloadContent.URL: required, missing",
        "Keysize: Integer(3072) is not one of",
        "Colour: not a key of the schema",
        "Challenge: expected <string>",
    ] {
        assert!(found.contains(want), "{want} not in:\n{found}");
    }
}
