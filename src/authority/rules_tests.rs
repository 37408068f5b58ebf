//! The rules a request is held to, each tried from both sides of its line: renewals (status,
//! profile, identity, key, validity and window), the CSR's challenge (none, static, one-time)
//! and the credential key rule.

use super::*;
use crate::authority::challenge::Bindings;
use crate::authority::ProfileSettings;
use crate::store::CertStatus;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::SubjectAlternativeName;
use time::Duration;

fn ec_key() -> PKey<Private> {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap()
}

fn rsa_key(bits: u32) -> PKey<Private> {
    PKey::from_rsa(openssl::rsa::Rsa::generate(bits).unwrap()).unwrap()
}

fn name(attrs: &[(&str, &str)]) -> openssl::x509::X509Name {
    let mut n = openssl::x509::X509NameBuilder::new().unwrap();
    for (k, v) in attrs {
        n.append_entry_by_text(k, v).unwrap();
    }
    n.build()
}

fn san_ext(sans: &[&str]) -> SubjectAlternativeName {
    let mut san = SubjectAlternativeName::new();
    for s in sans {
        match s.split_once(':').unwrap() {
            ("dns", v) => san.dns(v),
            ("email", v) => san.email(v),
            other => panic!("{other:?}"),
        };
    }
    san
}

/// A CSR for `key` with this subject, SANs (`dns:`, `email:`) and challenge password.
fn csr_with(
    key: &PKey<Private>,
    subject: &[(&str, &str)],
    sans: &[&str],
    challenge: Option<&str>,
) -> Csr {
    let mut req = openssl::x509::X509ReqBuilder::new().unwrap();
    req.set_subject_name(&name(subject)).unwrap();
    req.set_pubkey(key).unwrap();
    if !sans.is_empty() {
        let ext = san_ext(sans).build(&req.x509v3_context(None)).unwrap();
        let mut stack = openssl::stack::Stack::new().unwrap();
        stack.push(ext).unwrap();
        req.add_extensions(&stack).unwrap();
    }
    req.sign(key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    let der = req.build().to_der().unwrap();
    // The challenge is set as the reader would have read it: what is under test is the
    // rule, not the reader (csr.rs tests that).
    Csr {
        challenge: challenge.map(String::from),
        ..crate::pki::parse_csr(&der).unwrap()
    }
}

fn csr(key: &PKey<Private>, subject: &[(&str, &str)], sans: &[&str]) -> Csr {
    csr_with(key, subject, sans, None)
}

/// A certificate for `key` valid from `not_before` to `not_after`, with this subject and SANs.
fn cert(
    key: &PKey<Private>,
    subject: &[(&str, &str)],
    sans: &[&str],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Vec<u8> {
    let ca = ec_key();
    let mut b = openssl::x509::X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let serial = openssl::bn::BigNum::from_u32(0x5e).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name(subject)).unwrap();
    b.set_issuer_name(&name(&[("CN", "Test CA")])).unwrap();
    b.set_pubkey(key).unwrap();
    let t = |at: OffsetDateTime| openssl::asn1::Asn1Time::from_unix(at.unix_timestamp()).unwrap();
    b.set_not_before(&t(not_before)).unwrap();
    b.set_not_after(&t(not_after)).unwrap();
    if !sans.is_empty() {
        let ext = san_ext(sans).build(&b.x509v3_context(None, None)).unwrap();
        b.append_extension(ext).unwrap();
    }
    b.sign(&ca, openssl::hash::MessageDigest::sha256()).unwrap();
    b.build().to_der().unwrap()
}

fn record(der: Vec<u8>, profile: &str) -> CertificateRecord {
    CertificateRecord {
        serial: "5e".into(),
        der,
        subject: String::new(),
        sans: String::new(),
        issuer: String::new(),
        not_before: 0,
        not_after: 0,
        profile: profile.into(),
        status: CertStatus::Valid,
        revoked_at: None,
        revocation_reason: None,
        transaction_id: "tx".into(),
        device_id: None,
        renewed_by: None,
    }
}

fn profile_from(name: &str, policy: ProfileSettings) -> Profile {
    Profile {
        name: name.into(),
        cert: policy.cert_profile(name).unwrap(),
        policy,
        registration_only: false,
    }
}

fn profile(name: &str) -> Profile {
    profile_from(name, ProfileSettings::default())
}

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

const SUBJECT: &[(&str, &str)] = &[("CN", "laptop-7"), ("O", "Agency")];
const SANS: &[&str] = &["dns:laptop-7.agency.gov", "email:jane@agency.gov"];
/// notBefore and notAfter of the certificates under renewal: a year, seconds exact.
const NB: i64 = 1_800_000_000;
const NA: i64 = NB + 365 * 86_400;
/// Inside the default 30-day window.
const IN_WINDOW: i64 = NA - 10 * 86_400;

/// The certificate being renewed, its key, and a CSR that renews it properly (new key).
fn renewable() -> (CertificateRecord, Csr) {
    let old = ec_key();
    let rec = record(cert(&old, SUBJECT, SANS, at(NB), at(NA)), "devices");
    (rec, csr(&ec_key(), SUBJECT, SANS))
}

fn no_credentials() -> HashMap<String, CredentialSettings> {
    HashMap::new()
}

fn refusal(p: &Profile, rec: &CertificateRecord, csr: &Csr, now: i64) -> Option<String> {
    renewal_refusal(p, rec, csr, &no_credentials(), at(now))
}

#[test]
fn a_proper_renewal_in_its_window_is_accepted() {
    let (rec, req) = renewable();
    assert_eq!(refusal(&profile("devices"), &rec, &req, IN_WINDOW), None);
}

#[test]
fn revoked_held_superseded_or_renewed_certificates_renew_nothing() {
    let (rec, req) = renewable();
    let p = profile("devices");
    for (reason, words) in [
        (Some(6), "is on hold (certificateHold)"),
        (Some(4), "was superseded"),
        (Some(1), "is revoked"),
        (None, "is revoked"),
    ] {
        let revoked = CertificateRecord {
            status: CertStatus::Revoked,
            revocation_reason: reason,
            ..rec.clone()
        };
        let why = refusal(&p, &revoked, &req, IN_WINDOW).unwrap();
        assert_eq!(why, format!("the signing certificate (serial 5e) {words}"));
    }
    let renewed = CertificateRecord {
        renewed_by: Some("77".into()),
        ..rec
    };
    let why = refusal(&p, &renewed, &req, IN_WINDOW).unwrap();
    assert!(why.contains("already renewed (by 77)"), "{why}");
}

#[test]
fn a_certificate_renews_only_under_its_own_profile() {
    let (rec, req) = renewable();
    let why = refusal(&profile("wifi"), &rec, &req, IN_WINDOW).unwrap();
    assert_eq!(
        why,
        format!(
            "the signing certificate (serial {}) was issued under profile `devices`, not `wifi`",
            rec.serial
        )
    );
}

#[test]
fn an_unreadable_record_renews_nothing() {
    let (rec, req) = renewable();
    let broken = CertificateRecord {
        der: b"not a certificate".to_vec(),
        ..rec
    };
    let why = refusal(&profile("devices"), &broken, &req, IN_WINDOW).unwrap();
    assert_eq!(why, "the recorded certificate does not read");
}

#[test]
fn a_renewal_keeps_the_whole_subject_unless_the_profile_forces_it() {
    let (rec, _) = renewable();
    let p = profile("devices");
    let key = ec_key();
    for subject in [
        &[("CN", "laptop-8"), ("O", "Agency")][..],
        &[("CN", "laptop-7"), ("O", "Other")],
        &[("CN", "laptop-7")],
        &[("CN", "laptop-7"), ("O", "Agency"), ("OU", "x")],
        &[("O", "Agency"), ("CN", "laptop-7")],
    ] {
        let why = refusal(&p, &rec, &csr(&key, subject, SANS), IN_WINDOW);
        assert_eq!(
            why.as_deref(),
            Some("a renewal must keep the subject of the certificate being renewed"),
            "{subject:?}"
        );
    }
    // A forced subject: only the CN comes from the CSR, so only the CN must match.
    let forced = profile_from(
        "devices",
        ProfileSettings {
            subject: "CN={cn},O=Agency".into(),
            ..ProfileSettings::default()
        },
    );
    assert!(forced.cert.subject_template.is_some());
    let other_o = csr(&key, &[("CN", "laptop-7"), ("O", "Other")], SANS);
    assert_eq!(refusal(&forced, &rec, &other_o, IN_WINDOW), None);
    let other_cn = csr(&key, &[("CN", "laptop-8"), ("O", "Agency")], SANS);
    assert!(refusal(&forced, &rec, &other_cn, IN_WINDOW).is_some());
    let no_cn = csr(&key, &[("O", "Agency")], SANS);
    assert!(refusal(&forced, &rec, &no_cn, IN_WINDOW).is_some());
}

#[test]
fn a_renewal_keeps_the_sans_in_any_order() {
    let (rec, _) = renewable();
    let p = profile("devices");
    let key = ec_key();
    let reordered = csr(&key, SUBJECT, &[SANS[1], SANS[0]]);
    assert_eq!(refusal(&p, &rec, &reordered, IN_WINDOW), None);
    for sans in [
        &[SANS[0]][..],
        &[],
        &[SANS[0], SANS[1], "dns:extra.agency.gov"],
        &[SANS[0], "email:john@agency.gov"],
    ] {
        let why = refusal(&p, &rec, &csr(&key, SUBJECT, sans), IN_WINDOW);
        assert_eq!(
            why.as_deref(),
            Some("a renewal must keep the subject alternative names of the certificate being renewed"),
            "{sans:?}"
        );
    }
}

fn credential(profile: &str, key_type: &str, key_size: u32) -> CredentialSettings {
    CredentialSettings {
        profile: profile.into(),
        key_type: key_type.into(),
        key_size,
        ..CredentialSettings::default()
    }
}

#[test]
fn a_renewal_keeps_the_key_rule_of_every_credential_naming_the_profile() {
    let (rec, req) = renewable();
    let p = profile("devices");
    let mut creds = HashMap::new();
    // A credential of another profile does not apply.
    creds.insert("wifi".to_string(), credential("wifi", "rsa", 4096));
    assert_eq!(renewal_refusal(&p, &rec, &req, &creds, at(IN_WINDOW)), None);
    creds.insert("piv".to_string(), credential("devices", "ec", 256));
    assert_eq!(renewal_refusal(&p, &rec, &req, &creds, at(IN_WINDOW)), None);
    creds.insert("strict".to_string(), credential("devices", "rsa", 2048));
    let why = renewal_refusal(&p, &rec, &req, &creds, at(IN_WINDOW)).unwrap();
    assert_eq!(
        why,
        "credential profile `strict` needs a rsa key; the CSR has p256"
    );
}

#[test]
fn a_profile_may_demand_a_new_key_on_renewal() {
    let old = ec_key();
    let rec = record(cert(&old, SUBJECT, SANS, at(NB), at(NA)), "devices");
    let same_key = csr(&old, SUBJECT, SANS);
    let new_key = csr(&ec_key(), SUBJECT, SANS);
    assert_eq!(
        refusal(&profile("devices"), &rec, &same_key, IN_WINDOW),
        None
    );
    let strict = profile_from(
        "devices",
        ProfileSettings {
            renewal_same_key: false,
            ..ProfileSettings::default()
        },
    );
    assert_eq!(
        refusal(&strict, &rec, &same_key, IN_WINDOW).as_deref(),
        Some("profile `devices` needs a new key on renewal; the CSR reuses the old one")
    );
    assert_eq!(refusal(&strict, &rec, &new_key, IN_WINDOW), None);
}

#[test]
fn a_renewal_happens_while_the_certificate_is_valid_and_inside_its_window() {
    let (rec, req) = renewable();
    let p = profile("devices");
    let invalid = Some("the signing certificate is not valid now");
    // Validity is inclusive at both ends.
    let short = record(
        cert(&ec_key(), SUBJECT, SANS, at(NB), at(NB + 86_400)),
        "devices",
    );
    assert_eq!(refusal(&p, &short, &req, NB).as_deref(), None);
    assert_eq!(refusal(&p, &short, &req, NB - 1).as_deref(), invalid);
    assert_eq!(refusal(&p, &rec, &req, NA).as_deref(), None);
    assert_eq!(refusal(&p, &rec, &req, NA + 1).as_deref(), invalid);
    // The window opens exactly `renewal_days` before notAfter.
    let opens = NA - 30 * 86_400;
    assert_eq!(refusal(&p, &rec, &req, opens), None);
    let early = refusal(&p, &rec, &req, opens - 1).unwrap();
    let when = (at(NA) - Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(
        early,
        format!("too early to renew: the renewal window opens on {when}")
    );
    let wide = profile_from(
        "devices",
        ProfileSettings {
            renewal_days: 400,
            ..ProfileSettings::default()
        },
    );
    assert_eq!(refusal(&wide, &rec, &req, NB + 1), None);
}

fn static_profile(challenge: &str) -> Profile {
    profile_from(
        "devices",
        ProfileSettings {
            challenge_sha256: hex::encode(sha2::Sha256::digest(challenge.as_bytes())),
            ..ProfileSettings::default()
        },
    )
}

#[test]
fn no_challenge_counts_only_where_the_profile_allows_it() {
    let req = csr(&ec_key(), SUBJECT, &[]);
    assert!(req.challenge.is_none());
    assert_eq!(
        first_look(&profile("devices"), &req),
        FirstLook::Decided(Err(Refusal::Other(
            "the CSR carries no challenge password".into()
        )))
    );
    let open = profile_from(
        "devices",
        ProfileSettings {
            allow_without_challenge: true,
            ..ProfileSettings::default()
        },
    );
    assert_eq!(first_look(&open, &req), FirstLook::Decided(Ok(None)));
}

#[test]
fn the_static_challenge_counts_except_on_a_registration_only_profile() {
    let key = ec_key();
    let right = csr_with(&key, SUBJECT, &[], Some("s3cret-static"));
    let wrong = csr_with(&key, SUBJECT, &[], Some("s3cret-statiC"));
    let p = static_profile("s3cret-static");
    assert_eq!(first_look(&p, &right), FirstLook::Decided(Ok(None)));
    let hash_of = |c: &str| hex::encode(sha2::Sha256::digest(c.as_bytes()));
    assert_eq!(
        first_look(&p, &wrong),
        FirstLook::OneTime(hash_of("s3cret-statiC"))
    );
    // No static challenge configured: everything is looked up.
    assert_eq!(
        first_look(&profile("devices"), &right),
        FirstLook::OneTime(hash_of("s3cret-static"))
    );
    let registration_only = Profile {
        registration_only: true,
        ..static_profile("s3cret-static")
    };
    assert_eq!(
        first_look(&registration_only, &right),
        FirstLook::OneTime(hash_of("s3cret-static"))
    );
}

fn stored(bindings: &Bindings, expires_at: i64) -> ChallengeRecord {
    ChallengeRecord {
        id: "chl_1".into(),
        hash: "h".into(),
        created_by: "token:tok_1".into(),
        profile: "devices".into(),
        bindings: serde_json::to_string(bindings).unwrap(),
        expires_at,
        used_at: None,
    }
}

const NOW: i64 = 1_900_000_000;

fn use_of(p: &Profile, c: ChallengeRecord, req: &Csr) -> Result<OneTime, Refusal> {
    one_time_use(p, c, "h".into(), req, &no_credentials(), NOW)
}

#[test]
fn a_one_time_challenge_counts_once_for_its_profile_until_it_expires() {
    let req = csr(&ec_key(), SUBJECT, &[]);
    let p = profile("devices");
    let b = Bindings {
        device_id: Some("dev-1".into()),
        ..Bindings::default()
    };
    assert_eq!(
        use_of(&p, stored(&b, NOW + 1), &req),
        Ok(OneTime {
            hash: "h".into(),
            id: "chl_1".into(),
            bindings: b.clone(),
        })
    );
    assert_eq!(
        use_of(&profile("wifi"), stored(&b, NOW + 1), &req),
        Err(Refusal::Other(
            "the one-time challenge is for profile `devices`".into()
        ))
    );
    let used = ChallengeRecord {
        used_at: Some(NOW - 5),
        ..stored(&b, NOW + 1)
    };
    assert_eq!(
        use_of(&p, used, &req),
        Err(Refusal::Spent(
            "the one-time challenge was already used".into()
        ))
    );
    assert_eq!(
        use_of(&p, stored(&b, NOW), &req),
        Err(Refusal::Other("the one-time challenge has expired".into()))
    );
    let unreadable = ChallengeRecord {
        bindings: "{\"cn\": 7}".into(),
        ..stored(&b, NOW + 1)
    };
    assert_eq!(
        use_of(&p, unreadable, &req),
        Err(Refusal::Other(
            "the one-time challenge has unreadable bindings".into()
        ))
    );
}

#[test]
fn a_one_time_challenge_holds_the_request_to_its_bindings() {
    let p = profile("devices");
    let b = Bindings {
        cn: Some("laptop-7".into()),
        ..Bindings::default()
    };
    let key = ec_key();
    assert!(use_of(
        &p,
        stored(&b, NOW + 60),
        &csr(&key, &[("CN", "laptop-7")], &[])
    )
    .is_ok());
    let other = use_of(
        &p,
        stored(&b, NOW + 60),
        &csr(&key, &[("CN", "laptop-8")], &[]),
    );
    assert!(matches!(other, Err(Refusal::Bound(_))), "{other:?}");
}

#[test]
fn a_registration_only_profile_takes_only_a_registrations_challenge() {
    let p = Profile {
        registration_only: true,
        ..profile("devices")
    };
    let req = csr(&ec_key(), SUBJECT, &[]);
    let minted = Bindings::default();
    assert_eq!(
        use_of(&p, stored(&minted, NOW + 60), &req),
        Err(Refusal::Bound(
            "profile `devices` issues only through a registration's challenge (an officer's approval); this challenge was not minted by one".into()
        ))
    );
    let registration = Bindings {
        registration: Some("reg_1".into()),
        subject: Some("CN=laptop-7,O=Agency".into()),
        ..Bindings::default()
    };
    assert!(use_of(&p, stored(&registration, NOW + 60), &req).is_ok());
    // The same challenge on an ordinary profile counts too.
    assert!(use_of(&profile("devices"), stored(&registration, NOW + 60), &req).is_ok());
}

#[test]
fn a_registrations_challenge_holds_the_key_to_its_credential() {
    let p = profile("devices");
    let b = Bindings {
        registration: Some("reg_1".into()),
        credential: Some("piv".into()),
        ..Bindings::default()
    };
    let req = csr(&ec_key(), SUBJECT, &[]);
    let mut creds = HashMap::new();
    creds.insert("piv".to_string(), credential("devices", "rsa", 2048));
    let refused = one_time_use(&p, stored(&b, NOW + 60), "h".into(), &req, &creds, NOW);
    assert_eq!(
        refused,
        Err(Refusal::Bound(
            "credential profile `piv` needs a rsa key; the CSR has p256".into()
        ))
    );
    creds.insert("piv".to_string(), credential("devices", "ecdsa", 256));
    assert!(one_time_use(&p, stored(&b, NOW + 60), "h".into(), &req, &creds, NOW).is_ok());
    // A credential no longer configured refuses rather than waving the request through.
    let gone = one_time_use(
        &p,
        stored(&b, NOW + 60),
        "h".into(),
        &req,
        &no_credentials(),
        NOW,
    );
    assert_eq!(
        gone,
        Err(Refusal::Bound(
            "the challenge is for credential profile `piv`, which is no longer configured".into()
        ))
    );
}

#[test]
fn the_key_rule_wants_the_type_and_at_least_the_size() {
    let mut creds = HashMap::new();
    let rule = |creds: &HashMap<String, CredentialSettings>, key: &PKey<Private>| {
        key_rule(creds, "c", &csr(key, SUBJECT, &[]))
    };
    let rsa2048 = rsa_key(2048);
    let p256 = ec_key();
    let p384 = PKey::from_ec_key(
        openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP384R1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    creds.insert("c".to_string(), credential("devices", "RSA", 2048));
    assert_eq!(rule(&creds, &rsa2048), Ok(()));
    assert!(rule(&creds, &p256).is_err());
    creds.insert("c".to_string(), credential("devices", "rsa", 2049));
    assert_eq!(
        rule(&creds, &rsa2048),
        Err("credential profile `c` needs a key of at least 2049 bits; the CSR's has 2048".into())
    );
    for word in ["ec", "ECC", "ecdsa"] {
        creds.insert("c".to_string(), credential("devices", word, 256));
        assert_eq!(rule(&creds, &p256), Ok(()), "{word}");
        assert_eq!(rule(&creds, &p384), Ok(()), "{word}");
        assert!(rule(&creds, &rsa2048).is_err(), "{word}");
    }
    creds.insert("c".to_string(), credential("devices", "ec", 384));
    assert!(rule(&creds, &p256).is_err());
    assert_eq!(rule(&creds, &p384), Ok(()));
    creds.insert("c".to_string(), credential("devices", "p256", 256));
    assert_eq!(rule(&creds, &p256), Ok(()));
    assert!(rule(&creds, &p384).is_err());
    creds.insert("c".to_string(), credential("devices", "p384", 0));
    assert_eq!(rule(&creds, &p384), Ok(()));
    assert!(rule(&creds, &p256).is_err());
}

/// The order of the checks decides which refusal a request breaking several rules gets, and
/// the kind matters: only `Spent` sends the enrollment to look for an earlier answer to the
/// same transaction.
#[test]
fn when_a_challenge_breaks_several_rules_the_first_decides_the_refusal() {
    let p = profile("devices");
    let req = csr(&ec_key(), &[("CN", "laptop-8")], &[]);
    let none = Bindings::default();
    let used = |c: ChallengeRecord| ChallengeRecord {
        used_at: Some(NOW - 5),
        ..c
    };
    // Used, and for another profile: the profile is named.
    let r = use_of(&profile("wifi"), used(stored(&none, NOW + 60)), &req);
    assert_eq!(
        r,
        Err(Refusal::Other(
            "the one-time challenge is for profile `devices`".into()
        ))
    );
    // Used and expired since: spent.
    let r = use_of(&p, used(stored(&none, NOW - 60)), &req);
    assert_eq!(
        r,
        Err(Refusal::Spent(
            "the one-time challenge was already used".into()
        ))
    );
    // Expired, with unreadable bindings: expired.
    let broken = ChallengeRecord {
        bindings: "not json".into(),
        ..stored(&none, NOW)
    };
    assert_eq!(
        use_of(&p, broken, &req),
        Err(Refusal::Other("the one-time challenge has expired".into()))
    );
    // Not a registration's, on a registration-only profile, and its bound name unmet: the
    // registration rule speaks.
    let bound = Bindings {
        cn: Some("laptop-7".into()),
        credential: Some("gone".into()),
        ..Bindings::default()
    };
    let only = Profile {
        registration_only: true,
        ..profile("devices")
    };
    match use_of(&only, stored(&bound, NOW + 60), &req) {
        Err(Refusal::Bound(m)) => assert!(m.contains("only through a registration"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The bound name unmet and the credential gone: the name speaks.
    match use_of(&p, stored(&bound, NOW + 60), &req) {
        Err(Refusal::Bound(m)) => assert!(!m.contains("credential"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_renewal_challenge_renews_only_a_recorded_live_certificate_of_its_profile() {
    let p = profile("derived");
    let live = CertificateRecord {
        not_after: 1_000,
        ..record(Vec::new(), "derived")
    };
    let check = |rec: Option<&CertificateRecord>, now: i64| {
        challenge_renewal_refusal(&p, "5e", rec, None, now)
    };
    assert_eq!(check(Some(&live), 999), None);
    // The challenge outlived the certificate: checked when it is used.
    let why = check(Some(&live), 1_000).unwrap();
    assert!(why.contains("has ended"), "{why}");
    assert!(check(None, 0).unwrap().contains("not recorded"));
    let revoked = CertificateRecord {
        status: CertStatus::Revoked,
        ..live.clone()
    };
    assert!(check(Some(&revoked), 0).unwrap().contains("revoked"));
    let renewed = CertificateRecord {
        renewed_by: Some("77".into()),
        ..live.clone()
    };
    assert!(check(Some(&renewed), 0)
        .unwrap()
        .contains("already renewed (by 77)"));
    let elsewhere = CertificateRecord {
        profile: "wifi".into(),
        ..live
    };
    assert!(check(Some(&elsewhere), 0)
        .unwrap()
        .contains("issued under profile `wifi`"));
}

#[test]
fn a_renewal_challenge_is_minted_only_inside_the_window() {
    let p = profile("derived");
    let end = 100 * 86_400;
    let live = CertificateRecord {
        not_after: end,
        ..record(Vec::new(), "derived")
    };
    let mint =
        |days: u32, now: i64| challenge_renewal_refusal(&p, "5e", Some(&live), Some(days), now);
    assert_eq!(mint(30, end - 30 * 86_400), None);
    assert_eq!(mint(30, end - 1), None);
    let early = mint(30, end - 30 * 86_400 - 1).unwrap();
    assert!(early.contains("30 days before it ends"), "{early}");
    assert!(mint(30, end).unwrap().contains("has ended"));
    assert!(
        mint(0, end - 1).is_some(),
        "no window: no renewal challenge"
    );
    // A window wider than the clock saturates instead of wrapping.
    let ancient = CertificateRecord {
        not_after: i64::MIN + 1,
        ..live.clone()
    };
    assert_eq!(
        challenge_renewal_refusal(&p, "5e", Some(&ancient), Some(u32::MAX), i64::MIN),
        None
    );
}
