//! One-time challenges (the NDES dynamic-challenge model): generated here, stored only as a
//! SHA-256 hash with a public id, the actor that minted it, a profile, an expiry and optional
//! bindings, and consumed in the same database transaction that records the certificate.
//!
//! Bindings bind the whole name: once a challenge binds a CN or SANs, the certificate carries
//! exactly the bound name (the CN, through the profile's subject template if it has one) and
//! the bound SANs, whatever else the CSR asks for.

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::pki::Csr;
use crate::reason::Reason;
use crate::store::{now, ChallengeRecord, Store, StoreError};

/// What a one-time challenge is bound to; every field set must match the CSR.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Bindings {
    /// The subject common name the CSR must carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cn: Option<String>,
    /// SANs the CSR must carry, as `dns:…`, `email:…`, `uri:…`, `upn:…`, `ip:…`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    /// The device the challenge was issued for (recorded on the certificate, not in the CSR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// A full subject decided beforehand (a registration built it from the MDM's facts): the
    /// certificate gets this subject and exactly `sans`, whatever the CSR asks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The registration the challenge was minted for; its enrollment counts as approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration: Option<String>,
    /// The credential profile of that registration: its key type and size are enforced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl Bindings {
    /// Read stored bindings (JSON).
    pub fn from_json(json: &str) -> Result<Bindings, String> {
        serde_json::from_str(json)
            .map_err(|_| "the one-time challenge has unreadable bindings".to_string())
    }

    /// The identity the certificate must carry, when the bindings fix one: a decided subject,
    /// or the bound CN (through `cert`'s subject template), or, with SANs bound alone, the
    /// CSR's CN (checked by [`bindings_met`] to be one of them) and nothing else; the SANs are
    /// exactly the bound ones.
    pub fn identity(
        &self,
        cert: &crate::pki::CertProfile,
        csr: &Csr,
    ) -> Option<crate::pki::Identity> {
        let subject = match (&self.subject, &self.cn) {
            (Some(s), _) => s.clone(),
            (None, Some(cn)) => cert.subject_for_cn(cn),
            (None, None) if !self.sans.is_empty() => match csr.common_name() {
                Some(cn) => cert.subject_for_cn(cn),
                None => String::new(),
            },
            (None, None) => return None,
        };
        Some(crate::pki::Identity {
            subject,
            sans: self.sans.clone(),
        })
    }
}

/// Does the CSR meet the bindings (JSON as stored)? Bindings are exact, not minimums: a CN
/// binding needs exactly that one CN; once anything is bound, the CSR's SANs must be exactly
/// the bound ones (none when only a CN is bound); SANs bound without a CN allow no CN or one
/// of the bound names.
///
/// Bindings with a decided `subject` are met by any CSR: the certificate gets that identity.
pub fn bindings_met(b: &Bindings, csr: &Csr) -> Result<(), String> {
    if b.subject.is_some() || (b.cn.is_none() && b.sans.is_empty()) {
        return Ok(());
    }
    let cns: Vec<&str> = csr
        .subject
        .iter()
        .filter(|a| a.oid == [2, 5, 4, 3])
        .map(|a| a.value.as_str())
        .collect();
    match &b.cn {
        Some(cn) => {
            if cns.as_slice() != [cn.as_str()] {
                return Err(format!(
                    "the one-time challenge is bound to CN `{cn}`, the CSR asks for {cns:?}"
                ));
            }
        }
        None => {
            let bound_names: Vec<String> = b
                .sans
                .iter()
                .filter_map(|s| s.split_once(':').map(|(_, v)| v.to_ascii_lowercase()))
                .collect();
            if cns.len() > 1
                || cns
                    .iter()
                    .any(|c| !bound_names.contains(&c.to_ascii_lowercase()))
            {
                return Err(format!(
                    "the one-time challenge binds SANs only; the CSR's CN {cns:?} is not one of them"
                ));
            }
        }
    }
    let mut have: Vec<String> = csr.sans.iter().map(|s| normalise(&s.to_string())).collect();
    let mut want: Vec<String> = b.sans.iter().map(|s| normalise(s)).collect();
    have.sort();
    have.dedup();
    want.sort();
    want.dedup();
    if have != want {
        return Err(format!(
            "the one-time challenge is bound to SANs {want:?}; the CSR asks for {have:?}"
        ));
    }
    Ok(())
}

/// Compare SANs the way their types compare: DNS names and email domains without case, the
/// rest exactly.
fn normalise(s: &str) -> String {
    match s.split_once(':') {
        Some(("dns", v)) => format!("dns:{}", v.to_ascii_lowercase()),
        Some(("email", v)) => match v.rsplit_once('@') {
            Some((local, domain)) => format!("email:{local}@{}", domain.to_ascii_lowercase()),
            None => format!("email:{v}"),
        },
        Some((kind, v)) => format!("{}:{v}", kind.to_ascii_lowercase()),
        None => s.to_owned(),
    }
}

/// Check bindings when a challenge is made: known SAN kinds, sane sizes.
pub fn validate(b: &Bindings) -> Result<(), String> {
    if b.sans.len() > 20 {
        return Err("at most 20 SANs may be bound".into());
    }
    for s in &b.sans {
        match s.split_once(':') {
            Some(("dns" | "email" | "uri" | "upn" | "ip", v))
                if !v.is_empty() && v.len() <= 512 => {}
            _ => {
                return Err(format!(
                    "SAN binding `{s}` must be dns:…, email:…, uri:…, upn:… or ip:…"
                ))
            }
        }
    }
    for v in [&b.cn, &b.device_id, &b.registration, &b.credential]
        .into_iter()
        .flatten()
    {
        if v.is_empty() || v.len() > 256 {
            return Err(
                "cn, device_id, registration and credential must be 1 to 256 characters".into(),
            );
        }
    }
    if let Some(s) = &b.subject {
        if s.len() > 1024 {
            return Err("subject must be at most 1024 characters".into());
        }
        crate::pki::parse_dn(s).map_err(|e| format!("subject: {e}"))?;
    }
    Ok(())
}

/// The alphabet of generated challenges: PrintableString-safe (Windows encodes the challenge
/// as PrintableString), unambiguous letters and digits.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A fresh random challenge of 32 characters (about 185 bits).
pub fn generate() -> Result<String, StoreError> {
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut b = [0u8; 64];
        openssl::rand::rand_bytes(&mut b)
            .map_err(|e| StoreError::Unavailable(Reason::context("random", e)))?;
        for x in b {
            // Rejection sampling keeps the distribution uniform.
            if (x as usize) < 256 - 256 % ALPHABET.len() && out.len() < 32 {
                out.push(ALPHABET[x as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// A fresh challenge's record for `profile`, valid `ttl_secs`, minted by `actor`, with the
/// challenge itself (to show once).
pub fn mint(
    profile: &str,
    bindings: &Bindings,
    ttl_secs: i64,
    actor: &str,
) -> Result<(String, ChallengeRecord), StoreError> {
    validate(bindings).map_err(|why| StoreError::Invalid(why.into()))?;
    let challenge = generate()?;
    let mut id = [0u8; 8];
    openssl::rand::rand_bytes(&mut id)
        .map_err(|e| StoreError::Unavailable(Reason::context("random", e)))?;
    let record = ChallengeRecord {
        id: format!("chl_{}", hex::encode(id)),
        hash: hex::encode(sha2::Sha256::digest(challenge.as_bytes())),
        created_by: actor.into(),
        profile: profile.into(),
        bindings: serde_json::to_string(bindings)
            .map_err(|e| StoreError::Invalid(crate::reason::Reason::caused_by(e)))?,
        expires_at: now() + ttl_secs.max(1),
        used_at: None,
    };
    Ok((challenge, record))
}

/// May a one-time challenge be minted for `profile` outside a registration? Not when the
/// profile issues only through registrations (a credential names it), nor by an integration
/// token whose scope does not name it (`scope`: the token's, `None` for the command line and
/// admins). The error names the rule.
pub fn may_mint(
    profile: &str,
    registration_only: bool,
    scope: Option<&crate::store::TokenScope>,
) -> Result<(), String> {
    if registration_only {
        return Err(format!(
            "profile `{profile}` issues only through registrations (a credential names it): its challenges come from approved registrations' SCEP payloads, not from here"
        ));
    }
    if let Some(scope) = scope {
        if !scope.allows_profile(profile) {
            return Err(format!(
                "this token may not mint challenges for profile `{profile}` (its scope: {})",
                if scope.profiles.is_empty() {
                    "no profiles".to_string()
                } else {
                    scope.profiles.join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// A challenge just minted: the secret (shown once) and its public record's fields.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The challenge itself.
    pub challenge: String,
    /// Its public id (`chl_…`).
    pub id: String,
    /// The profile it is for.
    pub profile: String,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
}

/// Store a challenge minted by [`mint`] (audited as `challenge_created` by `actor`).
pub async fn create(
    store: &dyn Store,
    profile: &str,
    bindings: &Bindings,
    ttl_secs: i64,
    actor: &str,
) -> Result<Minted, StoreError> {
    let (challenge, record) = mint(profile, bindings, ttl_secs, actor)?;
    store.insert_challenge(&record, actor).await?;
    Ok(Minted {
        challenge,
        id: record.id,
        profile: record.profile,
        expires_at: record.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::extension::SubjectAlternativeName;

    #[test]
    fn generated_challenges_are_printable_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
    }

    /// The letters are drawn evenly: Pearson's chi-square over 200,000 letters (56 degrees of
    /// freedom) stays under 130 but about once in ten million runs, while a draw without the
    /// rejection step (28 letters a quarter likelier) lands near 2,500 and one that keeps a
    /// single extra byte value near 200.
    #[test]
    fn generated_challenges_use_the_whole_alphabet_evenly() {
        let mut counts = [0u32; 256];
        for _ in 0..6250 {
            for c in generate().unwrap().bytes() {
                counts[c as usize] += 1;
            }
        }
        let total: u32 = counts.iter().sum();
        assert_eq!(total, 200_000);
        let expected = f64::from(total) / ALPHABET.len() as f64;
        let chi2: f64 = ALPHABET
            .iter()
            .map(|&c| (f64::from(counts[c as usize]) - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 130.0, "chi-square {chi2:.1}");
    }

    /// A CSR with these CNs (in order) and SANs (`dns:`, `email:`, `uri:`, `ip:`).
    fn csr(cns: &[&str], sans: &[&str]) -> Csr {
        let group =
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap())
            .unwrap();
        let mut req = openssl::x509::X509ReqBuilder::new().unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        for cn in cns {
            name.append_entry_by_text("CN", cn).unwrap();
        }
        name.append_entry_by_text("O", "Agency").unwrap();
        req.set_subject_name(&name.build()).unwrap();
        req.set_pubkey(&key).unwrap();
        if !sans.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for s in sans {
                match s.split_once(':').unwrap() {
                    ("dns", v) => san.dns(v),
                    ("email", v) => san.email(v),
                    ("uri", v) => san.uri(v),
                    ("ip", v) => san.ip(v),
                    other => panic!("{other:?}"),
                };
            }
            let ctx = req.x509v3_context(None);
            let ext = san.build(&ctx).unwrap();
            let mut stack = openssl::stack::Stack::new().unwrap();
            stack.push(ext).unwrap();
            req.add_extensions(&stack).unwrap();
        }
        req.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        crate::pki::parse_csr(&req.build().to_der().unwrap()).unwrap()
    }

    fn bound(cn: Option<&str>, sans: &[&str]) -> Bindings {
        Bindings {
            cn: cn.map(String::from),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            ..Bindings::default()
        }
    }

    #[test]
    fn nothing_bound_or_a_decided_subject_is_met_by_any_request() {
        let any = csr(&["a", "b"], &["dns:x.example"]);
        assert_eq!(bindings_met(&Bindings::default(), &any), Ok(()));
        let decided = Bindings {
            subject: Some("CN=decided".into()),
            cn: Some("other".into()),
            sans: vec!["dns:y.example".into()],
            ..Bindings::default()
        };
        assert_eq!(bindings_met(&decided, &any), Ok(()));
        // A device ID alone binds no name.
        let device = Bindings {
            device_id: Some("dev-1".into()),
            ..Bindings::default()
        };
        assert_eq!(bindings_met(&device, &any), Ok(()));
    }

    #[test]
    fn a_bound_cn_needs_exactly_that_cn_and_no_sans() {
        let b = bound(Some("laptop-7"), &[]);
        assert_eq!(bindings_met(&b, &csr(&["laptop-7"], &[])), Ok(()));
        for (cns, sans) in [
            (vec!["laptop-8"], vec![]),
            (vec!["LAPTOP-7"], vec![]),
            (vec![], vec![]),
            (vec!["laptop-7", "laptop-7"], vec![]),
            (vec!["laptop-7", "other"], vec![]),
            (vec!["laptop-7"], vec!["dns:laptop-7.example"]),
        ] {
            assert!(
                bindings_met(&b, &csr(&cns, &sans)).is_err(),
                "{cns:?} {sans:?} passed a CN binding"
            );
        }
    }

    #[test]
    fn bound_sans_are_exact_and_compared_the_way_their_kinds_compare() {
        let b = bound(
            Some("dev"),
            &["dns:Host.Example", "email:Jane@Agency.GOV", "uri:urn:x:Y"],
        );
        // Order, duplicates and the case of DNS names and email domains do not matter.
        let ok = csr(
            &["dev"],
            &[
                "uri:urn:x:Y",
                "email:Jane@agency.gov",
                "dns:host.example",
                "dns:HOST.example",
            ],
        );
        assert_eq!(bindings_met(&b, &ok), Ok(()));
        for sans in [
            // The local part of an email and a URI compare exactly.
            vec!["dns:host.example", "email:jane@agency.gov", "uri:urn:x:Y"],
            vec!["dns:host.example", "email:Jane@agency.gov", "uri:urn:x:y"],
            // One missing, one added.
            vec!["dns:host.example", "email:Jane@agency.gov"],
            vec![
                "dns:host.example",
                "email:Jane@agency.gov",
                "uri:urn:x:Y",
                "dns:extra.example",
            ],
            vec![],
        ] {
            assert!(
                bindings_met(&b, &csr(&["dev"], &sans)).is_err(),
                "{sans:?} passed"
            );
        }
    }

    #[test]
    fn sans_bound_without_a_cn_allow_no_cn_or_one_of_the_names() {
        let b = bound(None, &["dns:a.example", "email:j@agency.gov"]);
        let sans = ["dns:a.example", "email:j@agency.gov"];
        assert_eq!(bindings_met(&b, &csr(&[], &sans)), Ok(()));
        assert_eq!(bindings_met(&b, &csr(&["A.example"], &sans)), Ok(()));
        assert_eq!(bindings_met(&b, &csr(&["j@agency.gov"], &sans)), Ok(()));
        assert!(bindings_met(&b, &csr(&["b.example"], &sans)).is_err());
        assert!(bindings_met(&b, &csr(&["a.example", "a.example"], &sans)).is_err());
        assert!(bindings_met(&b, &csr(&["a.example"], &sans[..1])).is_err());
    }

    #[test]
    fn the_identity_is_the_decided_subject_or_the_bound_cn_and_exactly_the_bound_sans() {
        let plain = crate::authority::ProfileSettings::default()
            .cert_profile("p")
            .unwrap();
        let templated = crate::authority::ProfileSettings {
            subject: "CN={cn},OU=Devices,O=Agency".into(),
            ..Default::default()
        }
        .cert_profile("t")
        .unwrap();
        let request = csr(&["asked"], &["dns:asked.example"]);
        assert_eq!(Bindings::default().identity(&plain, &request), None);
        let device_only = Bindings {
            device_id: Some("d".into()),
            ..Bindings::default()
        };
        assert_eq!(device_only.identity(&plain, &request), None);

        let decided = Bindings {
            subject: Some("CN=Jane Doe,O=Agency".into()),
            cn: Some("ignored".into()),
            sans: vec!["upn:jane@agency.gov".into()],
            ..Bindings::default()
        };
        let i = decided.identity(&templated, &request).unwrap();
        assert_eq!(i.subject, "CN=Jane Doe,O=Agency");
        assert_eq!(i.sans, vec!["upn:jane@agency.gov".to_string()]);

        let cn = bound(Some("laptop, 7"), &[]);
        let i = cn.identity(&templated, &request).unwrap();
        assert_eq!(i.subject, "CN=laptop\\, 7,OU=Devices,O=Agency");
        assert!(i.sans.is_empty(), "the CSR's SANs do not come along");
        assert_eq!(
            cn.identity(&plain, &request).unwrap().subject,
            "CN=laptop\\, 7"
        );

        let sans = bound(None, &["dns:asked.example"]);
        let i = sans.identity(&plain, &request).unwrap();
        assert_eq!(i.subject, "CN=asked");
        assert_eq!(i.sans, vec!["dns:asked.example".to_string()]);
        let i = sans
            .identity(&plain, &csr(&[], &["dns:asked.example"]))
            .unwrap();
        assert_eq!(i.subject, "");
    }

    #[test]
    fn sans_normalise_by_kind() {
        assert_eq!(normalise("dns:A.Example"), "dns:a.example");
        assert_eq!(normalise("email:Jane@A.GOV"), "email:Jane@a.gov");
        assert_eq!(normalise("email:no-at-sign"), "email:no-at-sign");
        assert_eq!(normalise("URI:urn:A"), "uri:urn:A");
        assert_eq!(normalise("upn:Jane@A.GOV"), "upn:Jane@A.GOV");
        assert_eq!(normalise("plain"), "plain");
    }

    #[test]
    fn bindings_are_validated_when_a_challenge_is_made() {
        let ok = Bindings {
            cn: Some("c".repeat(256)),
            sans: (0..20).map(|i| format!("dns:h{i}.example")).collect(),
            device_id: Some("d".into()),
            registration: Some("reg_1".into()),
            credential: Some("derived".into()),
            subject: Some("CN=Jane,O=Agency".into()),
        };
        assert_eq!(validate(&ok), Ok(()));
        for kind in ["dns", "email", "uri", "upn", "ip"] {
            assert_eq!(validate(&bound(None, &[&format!("{kind}:v")])), Ok(()));
            assert_eq!(
                validate(&bound(None, &[&format!("{kind}:{}", "v".repeat(512))])),
                Ok(())
            );
            assert!(validate(&bound(None, &[&format!("{kind}:{}", "v".repeat(513))])).is_err());
            assert!(validate(&bound(None, &[&format!("{kind}:")])).is_err());
        }
        let too_many = Bindings {
            sans: (0..21).map(|i| format!("dns:h{i}.example")).collect(),
            ..Bindings::default()
        };
        assert!(validate(&too_many).is_err());
        assert!(validate(&bound(None, &["other:x"])).is_err());
        assert!(validate(&bound(None, &["dns.example"])).is_err());
        let long = "x".repeat(257);
        for b in [
            Bindings {
                cn: Some(String::new()),
                ..Bindings::default()
            },
            Bindings {
                cn: Some(long.clone()),
                ..Bindings::default()
            },
            Bindings {
                device_id: Some(long.clone()),
                ..Bindings::default()
            },
            Bindings {
                registration: Some(String::new()),
                ..Bindings::default()
            },
            Bindings {
                credential: Some(long.clone()),
                ..Bindings::default()
            },
            Bindings {
                subject: Some("not a name".into()),
                ..Bindings::default()
            },
            Bindings {
                subject: Some(format!("CN={}", "x".repeat(1022))),
                ..Bindings::default()
            },
        ] {
            assert!(validate(&b).is_err(), "{b:?} passed");
        }
        assert_eq!(
            validate(&Bindings {
                subject: Some(format!("CN={}", "x".repeat(61))),
                ..Bindings::default()
            }),
            Ok(())
        );
        // A subject of exactly 1024 characters is taken; one more is not.
        let subject = |last: usize| {
            let mut s = "CN=a".to_string();
            for _ in 0..15 {
                s.push_str(&format!(",OU={}", "x".repeat(60)));
            }
            s.push_str(&format!(",OU={}", "y".repeat(last)));
            s
        };
        assert_eq!(subject(56).len(), 1024);
        let with = |s: String| Bindings {
            subject: Some(s),
            ..Bindings::default()
        };
        assert_eq!(validate(&with(subject(56))), Ok(()));
        assert!(validate(&with(subject(57))).is_err());
    }

    #[test]
    fn a_minted_challenge_is_stored_as_a_hash_with_an_id_an_actor_and_an_expiry() {
        let b = bound(Some("dev"), &[]);
        let before = now();
        let (secret, r) = mint("default", &b, 600, "token:abc").unwrap();
        assert_eq!(r.hash, hex::encode(sha2::Sha256::digest(secret.as_bytes())));
        assert!(r.id.starts_with("chl_") && r.id.len() == 20, "{}", r.id);
        assert_eq!(r.created_by, "token:abc");
        assert_eq!(r.profile, "default");
        assert_eq!(Bindings::from_json(&r.bindings), Ok(b));
        assert!((before + 600..=now() + 600).contains(&r.expires_at));
        assert_eq!(r.used_at, None);
        // A TTL below a second still makes a challenge that expires, not one that never does.
        let (_, r) = mint("default", &Bindings::default(), -5, "cli").unwrap();
        assert!((before + 1..=now() + 1).contains(&r.expires_at));
        // Bad bindings make no challenge.
        assert!(mint("default", &bound(None, &["bad"]), 60, "cli").is_err());
        assert!(Bindings::from_json("{\"cn\": 1}").is_err());
        assert!(Bindings::from_json("{\"unknown\": true}").is_err());
    }

    #[test]
    fn minting_outside_a_registration_follows_the_profile_and_the_tokens_scope() {
        let scope = |p: &[&str]| crate::store::TokenScope {
            profiles: p.iter().map(|s| s.to_string()).collect(),
            directories: Vec::new(),
        };
        assert_eq!(may_mint("wifi", false, None), Ok(()));
        assert_eq!(may_mint("wifi", false, Some(&scope(&["wifi"]))), Ok(()));
        assert_eq!(may_mint("wifi", false, Some(&scope(&["*"]))), Ok(()));
        let e = may_mint("wifi", false, Some(&scope(&["vpn"]))).unwrap_err();
        assert!(e.contains("vpn"), "{e}");
        let e = may_mint("wifi", false, Some(&scope(&[]))).unwrap_err();
        assert!(e.contains("no profiles"), "{e}");
        // A registration-only profile refuses everyone, admins and the command line too.
        for s in [None, Some(scope(&["*"])), Some(scope(&["derived"]))] {
            let e = may_mint("derived", true, s.as_ref()).unwrap_err();
            assert!(e.contains("only through registrations"), "{e}");
        }
    }
}
