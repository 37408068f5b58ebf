//! Sign-in with a client certificate (a PIV or CAC card, or any certificate from a CA the
//! agency names): the chain is verified against `[identity.mtls] ca_file`, the person is read
//! from the UPN (or email) in the subject alternative names, and revocation is checked by OCSP
//! or a CRL, failing closed: no answer, no sign-in.

use std::sync::Mutex;
use std::time::Duration;

use openssl::ocsp::{
    OcspCertId, OcspCertStatus, OcspFlag, OcspRequest, OcspResponse, OcspResponseStatus,
};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509Crl, X509StoreContext, X509};

use super::settings::MtlsSettings;
use super::{Assertion, SignInError};
use crate::reason::Reason;

/// The UPN other-name (Microsoft, `1.3.6.1.4.1.311.20.2.3`), as PIV authentication
/// certificates carry it.
const UPN_OID: &str = "1.3.6.1.4.1.311.20.2.3";

/// A CRL read, kept until its nextUpdate (a URL) or until the file changes.
struct CachedCrl {
    der: Vec<u8>,
    until: i64,
    modified: Option<std::time::SystemTime>,
}

/// Client-certificate sign-in.
pub struct Mtls {
    settings: MtlsSettings,
    store: X509Store,
    cas: Vec<X509>,
    http: reqwest::Client,
    crl: Mutex<Option<CachedCrl>>,
}

fn refused(why: impl Into<String>) -> SignInError {
    SignInError::Refused(why.into())
}

fn unknown(why: impl Into<Reason>) -> SignInError {
    let why = why.into();
    let text = format!(
        "the certificate's revocation status cannot be learned ({why}); sign-in fails closed"
    );
    SignInError::Unavailable(why.with_text(text))
}

impl Mtls {
    /// From the settings: reads the CA bundle now.
    pub fn new(settings: &MtlsSettings) -> Result<Mtls, Reason> {
        let file = || format!("identity.mtls.ca_file `{}`", settings.ca_file);
        let pem = std::fs::read(&settings.ca_file).map_err(|e| Reason::context(file(), e))?;
        let cas = X509::stack_from_pem(&pem).map_err(|e| Reason::context(file(), e))?;
        if cas.is_empty() {
            return Err(Reason::new(format!("{} holds no certificate", file())));
        }
        let mut b = X509StoreBuilder::new().map_err(Reason::caused_by)?;
        for c in &cas {
            b.add_cert(c.clone())
                .map_err(|e| Reason::context(file(), e))?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Reason::context("identity.mtls: HTTP client", e))?;
        Ok(Mtls {
            settings: settings.clone(),
            store: b.build(),
            cas,
            http,
            crl: Mutex::new(None),
        })
    }

    /// The CA certificates people's certificates come from (their names go into the TLS
    /// handshake's list of acceptable issuers).
    pub fn authorities(&self) -> &[X509] {
        &self.cas
    }

    /// The role map.
    pub fn roles(&self) -> &super::settings::RoleMap {
        &self.settings.roles
    }

    /// Check a presented certificate (DER) with the chain the client sent, and read the
    /// person from it.
    pub async fn check(&self, leaf: &[u8], chain: &[Vec<u8>]) -> Result<Assertion, SignInError> {
        let cert =
            X509::from_der(leaf).map_err(|_| refused("the client certificate does not read"))?;
        let mut presented = Stack::new().map_err(|e| {
            SignInError::Unavailable(Reason::context("checking the client certificate", e))
        })?;
        for c in chain {
            if let Ok(x) = X509::from_der(c) {
                let _ = presented.push(x);
            }
        }
        let mut ctx = X509StoreContext::new().map_err(|e| {
            SignInError::Unavailable(Reason::context("checking the client certificate", e))
        })?;
        let verified = ctx
            .init(&self.store, &cert, &presented, |c| {
                let ok = c.verify_cert()?;
                let issuer = c.chain().and_then(|ch| ch.get(1).map(|i| i.to_owned()));
                Ok((ok, c.error().error_string().to_string(), issuer))
            })
            .map_err(|e| {
                SignInError::Unavailable(Reason::context("checking the client certificate", e))
            })?;
        let (ok, why, issuer) = verified;
        if !ok {
            return Err(refused(format!(
                "the client certificate is not from a CA trusted for sign-in ({why})"
            )));
        }
        let issuer =
            issuer.ok_or_else(|| refused("the client certificate's issuer is not known"))?;
        for_signing_in(leaf).map_err(refused)?;
        let person = self.person(leaf)?;
        match self.settings.revocation.as_str() {
            "crl" => self.check_crl(&cert, &issuer).await?,
            _ => self.check_ocsp(&cert, &issuer).await?,
        }
        let listed = self.settings.email_for(&person);
        let email = match self.settings.person_from.as_str() {
            "email" => Some(person.clone()),
            // PIV authentication certificates often carry a UPN and no email. The
            // administrator's list says which email a UPN stands for (a CAC's `EDIPI@mil` is
            // no address); otherwise the certificate's email, or a UPN that is an address, so
            // one person signing in by card and by the identity provider is one person.
            _ => listed.clone().or_else(|| {
                san_email(leaf)
                    .or_else(|| person.contains('@').then(|| person.to_ascii_lowercase()))
            }),
        };
        let name = cert
            .subject_name()
            .entries_by_nid(openssl::nid::Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok())
            .unwrap_or_else(|| person.clone());
        // Roles name the person by their UPN, or by the email the administrator's list gives
        // it; never by an email the certificate carries, which another card may carry too.
        let memberships = std::iter::once(person.clone()).chain(listed).collect();
        Ok(Assertion {
            id: format!("piv:{person}"),
            email,
            name,
            memberships,
            // The role lists are Sigil's own: what they do not give, the person does not hold.
            stated: true,
        })
    }

    /// The person: the UPN other-name or the email of the subject alternative names.
    fn person(&self, leaf: &[u8]) -> Result<String, SignInError> {
        let found = if self.settings.person_from == "email" {
            san_email(leaf)
        } else {
            san_upn(leaf)
        };
        found.ok_or_else(|| {
            refused(format!(
                "the client certificate names no person: it has no {} in its subject alternative names",
                if self.settings.person_from == "email" {
                    "email"
                } else {
                    "UPN (the PIV authentication certificate's user principal name)"
                }
            ))
        })
    }

    async fn check_crl(&self, cert: &X509, issuer: &X509) -> Result<(), SignInError> {
        let der = self.crl().await?;
        let crl = X509Crl::from_der(&der)
            .or_else(|_| X509Crl::from_pem(&der))
            .map_err(|e| unknown(Reason::context("the CRL does not read", e)))?;
        let key = issuer
            .public_key()
            .map_err(|e| unknown(Reason::caused_by(e)))?;
        if !crl.verify(&key).unwrap_or(false) {
            return Err(unknown("the CRL is not signed by the certificate's issuer"));
        }
        let now =
            openssl::asn1::Asn1Time::days_from_now(0).map_err(|e| unknown(Reason::caused_by(e)))?;
        match crl.next_update() {
            Some(next) if next > now => {}
            _ => return Err(unknown("the CRL is out of date")),
        }
        match crl.get_by_serial(cert.serial_number()) {
            openssl::x509::CrlStatus::NotRevoked => Ok(()),
            _ => Err(refused("the client certificate is revoked")),
        }
    }

    async fn crl(&self) -> Result<Vec<u8>, SignInError> {
        let now = crate::clock::now();
        if !self.settings.crl_file.is_empty() {
            let path = &self.settings.crl_file;
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if let Some(c) = self.crl.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                if c.modified.is_some() && c.modified == modified {
                    return Ok(c.der.clone());
                }
            }
            // Named by its setting, not its path: the page is shown before sign-in.
            let der = std::fs::read(path)
                .map_err(|e| unknown(Reason::context("identity.mtls.crl_file", e)))?;
            *self.crl.lock().unwrap_or_else(|p| p.into_inner()) = Some(CachedCrl {
                der: der.clone(),
                until: i64::MAX,
                modified,
            });
            return Ok(der);
        }
        if let Some(c) = self.crl.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if c.until > now {
                return Ok(c.der.clone());
            }
        }
        let resp = self
            .http
            .get(&self.settings.crl_url)
            .send()
            .await
            .map_err(|e| unknown(Reason::context(&self.settings.crl_url, e)))?;
        if !resp.status().is_success() {
            return Err(unknown(format!(
                "{} answered {}",
                self.settings.crl_url,
                resp.status()
            )));
        }
        let der = resp
            .bytes()
            .await
            .map_err(|e| unknown(Reason::caused_by(e)))?
            .to_vec();
        let until = x509_parser::parse_x509_crl(&der)
            .ok()
            .and_then(|(_, c)| c.next_update().map(|t| t.timestamp()))
            .unwrap_or(now);
        *self.crl.lock().unwrap_or_else(|p| p.into_inner()) = Some(CachedCrl {
            der: der.clone(),
            until,
            modified: None,
        });
        Ok(der)
    }

    async fn check_ocsp(&self, cert: &X509, issuer: &X509) -> Result<(), SignInError> {
        let url = if self.settings.ocsp_url.is_empty() {
            cert.ocsp_responders()
                .ok()
                .and_then(|r| r.iter().next().map(|s| s.to_string()))
                .ok_or_else(|| unknown("the certificate names no OCSP responder and identity.mtls.ocsp_url is empty"))?
        } else {
            self.settings.ocsp_url.clone()
        };
        let id = || {
            OcspCertId::from_cert(openssl::hash::MessageDigest::sha1(), cert, issuer)
                .map_err(|e| unknown(Reason::caused_by(e)))
        };
        let mut req = OcspRequest::new().map_err(|e| unknown(Reason::caused_by(e)))?;
        req.add_id(id()?)
            .map_err(|e| unknown(Reason::caused_by(e)))?;
        let body = req.to_der().map_err(|e| unknown(Reason::caused_by(e)))?;
        let resp = self
            .http
            .post(&url)
            .header("content-type", "application/ocsp-request")
            .body(body)
            .send()
            .await
            .map_err(|e| unknown(Reason::context(&url, e)))?;
        if !resp.status().is_success() {
            return Err(unknown(format!("{url} answered {}", resp.status())));
        }
        let der = resp
            .bytes()
            .await
            .map_err(|e| unknown(Reason::caused_by(e)))?;
        let answer = OcspResponse::from_der(&der).map_err(|e| unknown(Reason::caused_by(e)))?;
        if answer.status() != OcspResponseStatus::SUCCESSFUL {
            return Err(unknown(format!(
                "the OCSP responder answered {:?}",
                answer.status()
            )));
        }
        let basic = answer.basic().map_err(|e| unknown(Reason::caused_by(e)))?;
        let mut certs = Stack::new().map_err(|e| unknown(Reason::caused_by(e)))?;
        certs
            .push(issuer.clone())
            .map_err(|e| unknown(Reason::caused_by(e)))?;
        basic
            .verify(&certs, &self.store, OcspFlag::empty())
            .map_err(|e| unknown(Reason::context("the OCSP answer does not verify", e)))?;
        let id = id()?;
        let status = basic
            .find_status(&id)
            .ok_or_else(|| unknown("the OCSP answer is about another certificate"))?;
        status
            .check_validity(300, None)
            .map_err(|e| unknown(Reason::context("the OCSP answer is out of date", e)))?;
        if status.status == OcspCertStatus::GOOD {
            Ok(())
        } else if status.status == OcspCertStatus::REVOKED {
            Err(refused("the client certificate is revoked"))
        } else {
            Err(unknown("the OCSP responder does not know the certificate"))
        }
    }
}

/// Extended key usages that make a certificate one for signing in: TLS client authentication,
/// Microsoft's smart card logon and Kerberos PKINIT client authentication (what PIV
/// authentication certificates assert), and any purpose.
const SIGN_IN_PURPOSES: [&str; 4] = [
    "1.3.6.1.5.5.7.3.2",
    "1.3.6.1.4.1.311.20.2.2",
    "1.3.6.1.5.2.3.4",
    "2.5.29.37.0",
];

/// The PIV Card Authentication key's purpose (FIPS 201): that key works without the PIN, so its
/// certificate proves only that the card is present, not who holds it.
const PIV_CARD_AUTH: &str = "2.16.840.1.101.3.6.8";

/// Is this certificate meant for signing in? It is an end entity's; its extended key usage,
/// when it has one, names a sign-in purpose ([`SIGN_IN_PURPOSES`]) and not the PIV card
/// authentication purpose; its key usage, when it has one, allows digital signatures (what the
/// TLS handshake's proof of possession is) and not non-repudiation (the mark of a card's
/// digital-signature certificate, which FIPS 201 keeps apart from the authentication one). A
/// card's signing, encryption or card-authentication certificate from the same CA is refused,
/// whoever holds it.
fn for_signing_in(der: &[u8]) -> Result<(), String> {
    const USE: &str = "use the card's PIV authentication certificate";
    let (_, c) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| "the client certificate does not read".to_string())?;
    let not_for =
        |why: &str| format!("the client certificate is not one for signing in: {why} ({USE})");
    let basic = c
        .basic_constraints()
        .map_err(|_| "the client certificate's basic constraints do not read".to_string())?;
    if basic.is_some_and(|b| b.value.ca) {
        return Err(not_for("it is a CA certificate"));
    }
    let eku = c
        .extended_key_usage()
        .map_err(|_| "the client certificate's extended key usage does not read".to_string())?;
    if let Some(eku) = eku {
        let e = &eku.value;
        if e.other
            .iter()
            .any(|oid| oid.to_id_string() == PIV_CARD_AUTH)
        {
            return Err(not_for(
                "it is a card authentication certificate, usable without the PIN",
            ));
        }
        let named = e.client_auth
            || e.any
            || e.other
                .iter()
                .any(|oid| SIGN_IN_PURPOSES.contains(&oid.to_id_string().as_str()));
        if !named {
            return Err(not_for(
                "its extended key usage names neither client authentication nor smart card logon",
            ));
        }
    }
    let ku = c
        .key_usage()
        .map_err(|_| "the client certificate's key usage does not read".to_string())?;
    if let Some(ku) = ku {
        if !ku.value.digital_signature() {
            return Err(not_for("its key usage does not allow digital signatures"));
        }
        if ku.value.non_repudiation() {
            return Err(not_for(
                "its key usage includes non-repudiation: it is a signing certificate",
            ));
        }
    }
    Ok(())
}

/// The email (rfc822Name) in a certificate's subject alternative names.
fn san_email(der: &[u8]) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = c.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|g| match g {
        x509_parser::extensions::GeneralName::RFC822Name(e) => Some(e.trim().to_ascii_lowercase()),
        _ => None,
    })
}

/// The UPN other-name in a certificate's subject alternative names.
fn san_upn(der: &[u8]) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = c.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|g| match g {
        x509_parser::extensions::GeneralName::OtherName(oid, value)
            if oid.to_id_string() == UPN_OID =>
        {
            upn_value(value).map(|u| u.trim().to_ascii_lowercase())
        }
        _ => None,
    })
}

/// The string inside an other-name's value: `[0] EXPLICIT UTF8String` (the tag may already be
/// stripped by the parser).
fn upn_value(bytes: &[u8]) -> Option<String> {
    use der::{Decode, Reader, Tagged};
    let any = der::asn1::AnyRef::from_der(bytes).ok()?;
    if any.tag() == der::Tag::Utf8String {
        return std::str::from_utf8(any.value()).ok().map(str::to_string);
    }
    // Context-specific [0], constructed: the UTF8String inside.
    let mut r = der::SliceReader::new(any.value()).ok()?;
    let inner: der::asn1::Utf8StringRef<'_> = r.decode().ok()?;
    Some(inner.as_str().to_string())
}
