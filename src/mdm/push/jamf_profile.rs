//! Jamf Pro, a configuration profile per device (`per_device_profile`): the registration's
//! profile (its SCEP payload with the device's one-time challenge, and the CA's chain) becomes a
//! Jamf configuration profile of its own, scoped to that one computer or mobile device, through
//! the Classic API (`/JSSResource/osxconfigurationprofiles`,
//! `/JSSResource/mobiledeviceconfigurationprofiles`; POST to `id/0` creates, PUT and DELETE by
//! `name/…`). Jamf signs and installs it. A profile scoped to a static group is the same for
//! every device and cannot carry a registration's challenge; this one can.
//!
//! The profile is named after the registration (`sigil-<registration>`), so every step finds it
//! without keeping Jamf's id: a delivery creates it (or, when a lost answer left it there,
//! updates it; every attempt carries a fresh challenge, which voids the one before), a re-push
//! updates it with a challenge that renews the certificate (`redeploy_on_update = All`: Jamf
//! installs it again), a withdrawal deletes it (one already gone is not an error). Not tried
//! against a real Jamf: whether Jamf keeps its own top-level payload identifier across an
//! update, so the device replaces the profile rather than adding a second, is to be checked.

use async_trait::async_trait;
use reqwest::{Method, StatusCode};

use super::super::api::{vendor_words, Body};
use super::super::jamf::Jamf;
use super::jamf::{call, device, look_up, refused};
use super::{Delivery, PushError, PushEvent, PushTarget};

pub(super) struct DeviceProfile {
    pub(super) mdm: Jamf,
}

/// The Classic API's resource, the XML root and the scope's element names for a computer or a
/// mobile device.
struct Kind {
    resource: &'static str,
    root: &'static str,
    method_element: &'static str,
    /// What only this kind's `general` says: a computer profile's level (System) and that the
    /// user cannot remove it; a mobile device's profile takes Jamf's defaults (its removal is
    /// Apple's `PayloadRemovalDisallowed`, honoured on supervised devices).
    general_extra: &'static str,
    all: &'static str,
    list: &'static str,
    item: &'static str,
}

const COMPUTER: Kind = Kind {
    resource: "osxconfigurationprofiles",
    root: "os_x_configuration_profile",
    method_element: "distribution_method",
    general_extra: "<user_removable>false</user_removable><level>System</level>",
    all: "all_computers",
    list: "computers",
    item: "computer",
};

const MOBILE: Kind = Kind {
    resource: "mobiledeviceconfigurationprofiles",
    root: "configuration_profile",
    method_element: "deployment_method",
    general_extra: "",
    all: "all_mobile_devices",
    list: "mobile_devices",
    item: "mobile_device",
};

/// Text for an XML element's content.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The profile's name in Jamf: one per registration.
fn name(target: &PushTarget) -> String {
    format!("sigil-{}", target.registration)
}

/// The Classic API's document for the profile, scoped to device `id` alone.
fn document(kind: &Kind, target: &PushTarget, id: u64, plist: &str) -> String {
    let Kind {
        root,
        method_element,
        general_extra,
        all,
        list,
        item,
        ..
    } = kind;
    let description = format!(
        "{} for {}, registration {}: made by Sigil, which updates and deletes it",
        target.credential, target.email, target.registration
    );
    format!(
        "<{root}><general><name>{name}</name><description>{description}</description>\
         <{method_element}>Install Automatically</{method_element}>{general_extra}\
         <redeploy_on_update>All</redeploy_on_update>\
         <payloads>{payloads}</payloads></general>\
         <scope><{all}>false</{all}><{list}><{item}><id>{id}</id></{item}></{list}></scope></{root}>",
        name = escape(&name(target)),
        description = escape(&description),
        payloads = escape(plist),
    )
}

/// What Jamf answered a step that did not succeed: its status and body.
type Answer = (StatusCode, Vec<u8>);

const CREATE: &str = "create the device's profile";
const UPDATE: &str = "update the device's profile";

impl DeviceProfile {
    /// One step: `Ok(Ok(()))` when Jamf took it, `Ok(Err(answer))` when it answered otherwise.
    async fn step(
        &self,
        what: &str,
        method: Method,
        path: &str,
        xml: &str,
    ) -> Result<Result<(), Answer>, PushError> {
        let (status, body) =
            call(&self.mdm, what, method, path, Body::Xml(xml.to_string())).await?;
        Ok(if status.is_success() {
            Ok(())
        } else {
            Err((status, body))
        })
    }

    /// Create the profile, or update it when it is already there (a retry after a lost
    /// answer); for a re-push, update it, or create it again when it was deleted in Jamf by
    /// hand. Any other refusal is reported in Jamf's words. Answers what was done.
    async fn put(
        &self,
        kind: &Kind,
        target: &PushTarget,
        id: u64,
        update_first: bool,
    ) -> Result<String, PushError> {
        let Some(profile) = &target.profile else {
            return Err(PushError::Unavailable(
                "no configuration profile was made for the device".into(),
            ));
        };
        let plist = String::from_utf8_lossy(profile);
        let xml = document(kind, target, id, &plist);
        let by_name = format!("/JSSResource/{}/name/{}", kind.resource, name(target));
        let create = format!("/JSSResource/{}/id/0", kind.resource);
        let done = |how: &str| format!("profile {} {how} for {} {id}", name(target), kind.item);
        let fail = |what: &str, (status, body): Answer| refused(&self.mdm, what, status, &body);
        if update_first {
            match self.step(UPDATE, Method::PUT, &by_name, &xml).await? {
                Ok(()) => return Ok(done("updated")),
                Err((status, _)) if status == StatusCode::NOT_FOUND => {}
                Err(answer) => return Err(fail(UPDATE, answer)),
            }
            return match self.step(CREATE, Method::POST, &create, &xml).await? {
                Ok(()) => Ok(done("created again")),
                Err(answer) => Err(fail(CREATE, answer)),
            };
        }
        match self.step(CREATE, Method::POST, &create, &xml).await? {
            Ok(()) => Ok(done("created")),
            // Jamf answers 409 to any invalid profile; only "Duplicate name" says it holds
            // this one already.
            Err((status, body))
                if status == StatusCode::CONFLICT
                    && vendor_words(&body).contains("Duplicate name") =>
            {
                match self.step(UPDATE, Method::PUT, &by_name, &xml).await? {
                    Ok(()) => Ok(done("updated")),
                    Err(answer) => Err(fail(UPDATE, answer)),
                }
            }
            Err(answer) => Err(fail(CREATE, answer)),
        }
    }

    async fn delete(&self, kind: &Kind, target: &PushTarget) -> Result<String, PushError> {
        let what = "delete the device's profile";
        let path = format!("/JSSResource/{}/name/{}", kind.resource, name(target));
        let (status, body) = call(&self.mdm, what, Method::DELETE, &path, Body::None).await?;
        if status.is_success() {
            Ok(format!("profile {} deleted", name(target)))
        } else if status == StatusCode::NOT_FOUND {
            Ok(format!("profile {} was not there", name(target)))
        } else {
            Err(refused(&self.mdm, what, status, &body))
        }
    }
}

#[async_trait]
impl Delivery for DeviceProfile {
    fn kind(&self) -> &'static str {
        "jamf"
    }

    fn renews(&self) -> bool {
        true
    }

    fn carries_payload(&self) -> bool {
        true
    }

    fn carries_profile(&self) -> bool {
        true
    }

    /// Each registration has a profile of its own, named after it.
    fn shared_by_registrations(&self) -> bool {
        false
    }

    async fn push(&self, event: PushEvent, target: &PushTarget) -> Result<String, PushError> {
        let (computer, id) = device(target)?;
        let kind = if computer { &COMPUTER } else { &MOBILE };
        match event {
            // The profile goes whether or not Jamf still knows the device.
            PushEvent::Withdraw => self.delete(kind, target).await,
            // A retried delivery whose first attempt landed and whose device has enrolled since:
            // no challenge is minted for an issued registration, and none is needed.
            PushEvent::Deliver if target.profile.is_none() && target.serial.is_some() => {
                Ok(format!(
                    "delivered already: the device enrolled (certificate {})",
                    target.serial.as_deref().unwrap_or_default()
                ))
            }
            PushEvent::Deliver => {
                look_up(&self.mdm, target, computer, id).await?;
                self.put(kind, target, id, false).await
            }
            PushEvent::Renew => {
                look_up(&self.mdm, target, computer, id).await?;
                self.put(kind, target, id, true).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> PushTarget {
        PushTarget {
            push: "p1".into(),
            attempt: 1,
            registration: "reg_1".into(),
            email: "a&b@agency.gov".into(),
            credential: "mac".into(),
            device_id: "computer:4".into(),
            serial: None,
            not_after: None,
            scep_payload: None,
            profile: None,
        }
    }

    #[test]
    fn the_document_scopes_one_device_and_escapes_the_profile() {
        let plist = "<?xml version=\"1.0\"?><plist><dict><key>Challenge</key><string>x&y</string></dict></plist>";
        let xml = document(&COMPUTER, &target(), 4, plist);
        assert!(xml.starts_with("<os_x_configuration_profile><general><name>sigil-reg_1</name>"));
        assert!(xml.contains("<payloads>&lt;?xml version=&quot;1.0&quot;?&gt;&lt;plist&gt;"));
        assert!(xml.contains("x&amp;y"));
        assert!(xml.contains("a&amp;b@agency.gov"));
        assert!(xml.contains(
            "<scope><all_computers>false</all_computers><computers><computer><id>4</id></computer></computers></scope>"
        ));
        let xml = document(&MOBILE, &target(), 9, plist);
        assert!(xml.starts_with("<configuration_profile>"));
        assert!(xml.contains("<deployment_method>Install Automatically</deployment_method>"));
        assert!(
            !xml.contains("<level>") && !xml.contains("user_removable"),
            "{xml}"
        );
        assert!(xml.contains(
            "<mobile_devices><mobile_device><id>9</id></mobile_device></mobile_devices>"
        ));
        assert!(
            !xml.contains("<plist>"),
            "the profile is text inside <payloads>"
        );
    }
}
