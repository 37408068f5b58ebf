//! `[profiles.NAME.wifi]` and `[profiles.NAME.vpn]`: the network a profile's certificate is
//! for, so the exported Apple profile installs the Wi-Fi (EAP-TLS) or VPN (IKEv2) settings
//! that use the certificate the SCEP payload enrolls. The configuration reads them; the
//! profile writer (`profiles`) turns them into payloads.

use serde::{Deserialize, Serialize};

/// An EAP-TLS Wi-Fi network (`com.apple.wifi.managed`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WifiSettings {
    /// The network name.
    pub ssid: String,
    /// Whether the network hides its name.
    pub hidden: bool,
    /// `WPA2`, `WPA3` or `Any` (WPA2/WPA3 Enterprise).
    pub encryption: String,
    /// The RADIUS servers' certificate names the device accepts (`radius.agency.gov`,
    /// `*.radius.agency.gov`): EAP-TLS without them would trust any server the anchor
    /// certified.
    pub trusted_server_names: Vec<String>,
    /// PEM file of the CA that issued the RADIUS servers' certificates; empty: Sigil's own
    /// root (the RADIUS certificates come from this CA).
    pub radius_ca_file: String,
}

/// An IKEv2 VPN authenticated with the certificate (`com.apple.vpn.managed`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct VpnSettings {
    /// The name shown on the device.
    pub name: String,
    /// The VPN server's address.
    pub remote_address: String,
    /// The server's IKE identity (its certificate's name).
    pub remote_identifier: String,
    /// The device's IKE identity (the name in its certificate).
    pub local_identifier: String,
}

impl WifiSettings {
    /// Check what a device will need.
    pub fn check(&self) -> Result<(), String> {
        if self.ssid.is_empty() || self.ssid.len() > 32 {
            return Err("wifi.ssid must be 1 to 32 bytes".into());
        }
        if !["WPA2", "WPA3", "Any"].contains(&self.encryption.as_str()) {
            return Err("wifi.encryption must be WPA2, WPA3 or Any".into());
        }
        if self.trusted_server_names.is_empty()
            || self
                .trusted_server_names
                .iter()
                .any(|n| n.trim().is_empty())
        {
            return Err(
                "wifi.trusted_server_names must name the RADIUS servers' certificates (without them a device trusts any server the anchor certified)"
                    .into(),
            );
        }
        if !self.radius_ca_file.is_empty() {
            self.radius_ca()?;
        }
        Ok(())
    }

    /// The RADIUS servers' CA (DER), when one is configured.
    pub fn radius_ca(&self) -> Result<Option<Vec<u8>>, String> {
        if self.radius_ca_file.is_empty() {
            return Ok(None);
        }
        let pem = std::fs::read(&self.radius_ca_file)
            .map_err(|e| format!("wifi.radius_ca_file {}: {e}", self.radius_ca_file))?;
        let cert = openssl::x509::X509::from_pem(&pem).map_err(|e| {
            format!(
                "wifi.radius_ca_file {} is not a PEM certificate: {e}",
                self.radius_ca_file
            )
        })?;
        cert.to_der().map(Some).map_err(|e| e.to_string())
    }
}

impl VpnSettings {
    /// Check what a device will need.
    pub fn check(&self) -> Result<(), String> {
        for (k, v) in [
            ("name", &self.name),
            ("remote_address", &self.remote_address),
            ("remote_identifier", &self.remote_identifier),
            ("local_identifier", &self.local_identifier),
        ] {
            if v.trim().is_empty() {
                return Err(format!("vpn.{k} is required"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_says_what_a_device_needs() {
        let wifi = WifiSettings {
            ssid: "agency-secure".into(),
            encryption: "WPA2".into(),
            trusted_server_names: vec!["radius.agency.gov".into()],
            ..Default::default()
        };
        wifi.check().unwrap();
        let open_trust = WifiSettings {
            trusted_server_names: vec![],
            ..wifi.clone()
        };
        assert!(open_trust
            .check()
            .unwrap_err()
            .contains("trusted_server_names"));
        let wep = WifiSettings {
            encryption: "WEP".into(),
            ..wifi.clone()
        };
        assert!(wep.check().is_err());
        let missing = WifiSettings {
            radius_ca_file: "/nonexistent/radius.pem".into(),
            ..wifi
        };
        assert!(missing
            .check()
            .unwrap_err()
            .contains("/nonexistent/radius.pem"));
        assert!(VpnSettings::default()
            .check()
            .unwrap_err()
            .contains("vpn.name"));
    }
}
