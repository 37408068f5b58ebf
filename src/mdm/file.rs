//! A device inventory in a file: small deployments without MDM API access (or a test bench)
//! list their devices in JSON or CSV, and the registration flow reads them like an MDM's.
//!
//! JSON: an array of objects; CSV: a header row, one device a line. Columns are the device
//! fields: `id` (required), `user` (the person's email), `name`, `model`, `os`,
//! `os_version`, `serial_number`, `udid`, `imei`, `compliance` (`compliant`,
//! `noncompliant`, `unknown`, or true/false), `managed` (true/false, default true) and
//! `last_check_in` (RFC 3339). The file is read at every lookup, so an edit counts at once.

use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::Value;

use super::{timestamp, Compliance, Device, DirectoryError, MdmDirectory};

/// The largest inventory file read.
const MAX_BYTES: u64 = 16 * 1024 * 1024;

pub(crate) struct FileDirectory {
    name: String,
    path: PathBuf,
}

impl FileDirectory {
    pub(crate) fn new(name: &str, path: &str) -> FileDirectory {
        FileDirectory {
            name: name.into(),
            path: PathBuf::from(path),
        }
    }

    fn config(&self, reason: String) -> DirectoryError {
        DirectoryError::Config {
            directory: self.name.clone(),
            reason,
        }
    }

    fn read(&self) -> Result<Vec<std::collections::BTreeMap<String, String>>, DirectoryError> {
        let shown = self.path.display();
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| self.config(format!("cannot read the inventory {shown}: {e}")))?;
        if meta.len() > MAX_BYTES {
            return Err(self.config(format!(
                "the inventory {shown} is larger than {MAX_BYTES} bytes"
            )));
        }
        let bytes = std::fs::read(&self.path)
            .map_err(|e| self.config(format!("cannot read the inventory {shown}: {e}")))?;
        let text = String::from_utf8_lossy(&bytes);
        let is_json = text.trim_start().starts_with('[');
        let rows = if is_json {
            parse_json(&text)
        } else {
            parse_csv(&bytes)
        };
        rows.map_err(|e| self.config(format!("the inventory {shown}: {e}")))
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn parse_json(text: &str) -> Result<Vec<std::collections::BTreeMap<String, String>>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = v
        .as_array()
        .ok_or("a JSON inventory is an array of devices")?;
    items
        .iter()
        .enumerate()
        .map(|(i, d)| {
            d.as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), cell(v))).collect())
                .ok_or_else(|| format!("item {i} is not an object"))
        })
        .collect()
}

fn parse_csv(bytes: &[u8]) -> Result<Vec<std::collections::BTreeMap<String, String>>, String> {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(bytes);
    let headers: Vec<String> = r
        .headers()
        .map_err(|e| format!("CSV header: {e}"))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if !headers.iter().any(|h| h == "id") {
        return Err("the CSV header has no `id` column".into());
    }
    r.records()
        .map(|rec| {
            let rec = rec.map_err(|e| format!("CSV: {e}"))?;
            Ok(headers
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_owned))
                .collect())
        })
        .collect()
}

/// One row as a device.
fn device(row: &std::collections::BTreeMap<String, String>) -> Device {
    let f = |k: &str| row.get(k).cloned().unwrap_or_default();
    let compliance = match f("compliance").to_ascii_lowercase().as_str() {
        "compliant" | "true" | "yes" => Compliance::Compliant,
        "" | "unknown" => Compliance::Unknown,
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
        managed: !matches!(
            f("managed").to_ascii_lowercase().as_str(),
            "false" | "no" | "0"
        ),
        last_check_in: timestamp(&f("last_check_in")),
        user: f("user"),
        flags: Vec::new(),
    }
}

#[async_trait]
impl MdmDirectory for FileDirectory {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn devices(&self, email: &str) -> Result<Vec<Device>, DirectoryError> {
        let rows = self.read()?;
        Ok(rows
            .iter()
            .map(device)
            .filter(|d| d.user.trim().eq_ignore_ascii_case(email.trim()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn json_and_csv_inventories_list_a_persons_devices() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("devices.json");
        std::fs::write(
            &json,
            r#"[{"id": "d1", "user": "Alice@agency.gov", "name": "Alice's iPhone",
                 "serial_number": "F2L", "compliance": "compliant",
                 "last_check_in": "2026-12-01T10:00:00Z", "managed": true},
                {"id": "d2", "user": "bob@agency.gov"}]"#,
        )
        .unwrap();
        let d = FileDirectory::new("inv", json.to_str().unwrap());
        let found = d.devices("alice@agency.gov").await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].serial_number, "F2L");
        assert_eq!(found[0].compliance, Compliance::Compliant);
        let csv = dir.path().join("devices.csv");
        std::fs::write(
            &csv,
            "id,user,name,compliance,managed\nl1, alice@agency.gov ,\"Laptop, 14\",noncompliant,false\n",
        )
        .unwrap();
        let d = FileDirectory::new("inv", csv.to_str().unwrap());
        let found = d.devices("alice@agency.gov").await.unwrap();
        assert_eq!(found[0].name, "Laptop, 14");
        assert_eq!(found[0].compliance, Compliance::NonCompliant);
        assert!(!found[0].managed);
        // Bad files say what is wrong.
        std::fs::write(&csv, "user,name\nalice@agency.gov,x\n").unwrap();
        let e = d.devices("alice@agency.gov").await.unwrap_err();
        assert!(e.to_string().contains("no `id` column"), "{e}");
        std::fs::write(&json, "[1, 2]").unwrap();
        let e = FileDirectory::new("inv", json.to_str().unwrap())
            .devices("a@b.c")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not an object"), "{e}");
        let e = FileDirectory::new("inv", "/nonexistent/devices.json")
            .devices("a@b.c")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot read the inventory"), "{e}");
    }
}
