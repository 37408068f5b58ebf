//! The domain's settings built from the configuration: what the authority and the store are
//! opened with (the raw configuration structs stay here, out of the domain).

use super::{invalid, Config, ConfigError};

impl Config {
    /// What the authority needs to open: its keys, profiles, integrations and policies.
    pub fn authority_settings(&self) -> Result<crate::authority::AuthoritySettings, ConfigError> {
        let public = self.server.public_url.trim_end_matches('/');
        let mut profiles = Vec::new();
        for (name, p) in &self.profiles {
            let cert = p
                .cert_profile(name)
                .map_err(|m| invalid(&format!("profiles.{name}"), &m))?;

            profiles.push(crate::authority::Profile {
                name: name.clone(),
                cert,
                policy: p.clone(),
                registration_only: self.registration_only(name),
            });
        }
        Ok(crate::authority::AuthoritySettings {
            token: self.hsm.token.clone(),
            ca_key: self.hsm.ca_key_uri()?,
            ra_sign: self.hsm.ra_key_uri()?,
            ra_decrypt: self.hsm.ra_decrypt_key_uri()?,
            profiles,
            default_profile: self.scep.default_profile.clone(),
            include_root: self.scep.include_root,
            reservation_secs: self.scep.reservation_secs.clamp(1, 3600) as i64,
            directories: self.directories.clone(),
            credentials: self.credentials.clone(),
            public_url: public.to_string(),
            data_dir: self.server.data_dir.clone(),
            ocsp_validity_secs: (self.ocsp.validity_minutes * 60) as i64,
            responder_days: self.ocsp.responder_days,
            notify: self.notify.clone(),
            people: crate::authority::PeoplePolicy {
                session_idle_secs: i64::from(self.identity.session_idle_minutes) * 60,
                session_max_secs: i64::from(self.identity.session_max_hours) * 3600,
                grants: if self.identity.grants == "idp" {
                    crate::authority::GrantPolicy::IdentityProvider
                } else {
                    crate::authority::GrantPolicy::TwoAdmins
                },
            },
            challenge_authorities: Default::default(),
            audit: self.audit.clone(),
        })
    }

    /// Where the store is.
    pub fn store_settings(&self) -> crate::store::StoreSettings {
        crate::store::StoreSettings {
            database_url: self.database.url.clone(),
            pool_size: self.database.pool_size,
            ca_file: (!self.database.ca_file.is_empty())
                .then(|| std::path::PathBuf::from(&self.database.ca_file)),
            sqlite_path: self.server.data_dir.join("sigil.db"),
        }
    }
}
