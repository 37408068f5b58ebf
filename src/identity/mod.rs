//! How people prove who they are: an OpenID Connect provider (`oidc.rs`) or a PIV/CAC client
//! certificate (`mtls.rs`). Each turns its proof into an [`Assertion`] (the person and the
//! groups or names that map to roles); the authority then opens a session for it. Nothing
//! here decides what a person may do beyond the role mapping.

pub mod client_assertion;
pub mod mtls;
pub mod oidc;
mod settings;

pub use settings::{IdentitySettings, MtlsSettings, OidcSettings, RoleMap};

/// A person as an identity provider or a certificate vouches for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// `oidc:<issuer>#<claim value>` or `piv:<UPN or email>`.
    pub id: String,
    /// Email, lower case, when known.
    pub email: Option<String>,
    /// Display name.
    pub name: String,
    /// What the role map is matched against: the groups claim (OpenID Connect), or the
    /// person's UPN or email (certificates).
    pub memberships: Vec<String>,
    /// Whether the memberships are stated in full: the ID token carried the groups claim (a
    /// provider may leave it out, as Entra does past 200 groups), or the role lists are Sigil's
    /// own (certificates). Only then does a role missing from them mean the person lost it.
    pub stated: bool,
}

/// Why a sign-in did not happen.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignInError {
    /// The proof does not hold (a token that does not verify, a revoked certificate, a code
    /// used twice): the text says why.
    #[error("{0}")]
    Refused(String),
    /// The proof holds but gives no role in Sigil.
    #[error("{0}")]
    NoRole(String),
    /// The identity provider, OCSP responder or CRL cannot be reached (sign-in fails closed).
    #[error("{0}")]
    Unavailable(#[source] crate::reason::Reason),
}

/// The Sigil roles (names) an assertion's memberships give under `map`; `*` in a role's list
/// gives it to everyone. Comparisons ignore case.
pub fn roles_for(map: &RoleMap, memberships: &[String]) -> Vec<String> {
    map.iter()
        .filter(|(_, who)| {
            who.iter().any(|w| {
                w == "*"
                    || memberships
                        .iter()
                        .any(|m| m.trim().eq_ignore_ascii_case(w.trim()))
            })
        })
        .map(|(role, _)| role.clone())
        .collect()
}

/// The refusal for an assertion that maps to no role. When the map names groups (the
/// identity provider's), the refusal lists the groups that would give one; when it names
/// people (`[identity.mtls]`'s lists of UPNs and emails), it lists nobody: a refusal page must
/// not hand a stranger the names of every officer and admin.
pub fn no_role(a: &Assertion, map: &RoleMap, names_people: bool) -> SignInError {
    let who = a.email.as_deref().unwrap_or(&a.name);
    if names_people {
        return SignInError::NoRole(format!(
            "{who} signed in, but this card's holder is given no role in Sigil; ask an administrator to add you"
        ));
    }
    let mut wanted: Vec<&str> = map.values().flatten().map(String::as_str).collect();
    wanted.sort_unstable();
    wanted.dedup();
    SignInError::NoRole(format!(
        "{who} signed in, but {} gives no role in Sigil; ask for one of: {}",
        if a.memberships.is_empty() {
            "no group".to_string()
        } else {
            format!("none of {}", a.memberships.join(", "))
        },
        wanted.join(", ")
    ))
}

/// Text a visitor's link or browser supplied, fit for a record and a sentence: at most `max`
/// characters, without control characters or the invisible ones that reorder or hide text
/// (bidirectional overrides, zero-width characters, line and paragraph separators).
pub fn as_given(text: &str, max: usize) -> String {
    let invisible = |c: char| {
        c.is_control()
            || matches!(c,
                '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}')
    };
    text.chars().filter(|c| !invisible(*c)).take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_as_given_is_short_and_visible() {
        assert_eq!(as_given("Call\u{202E}555\n\u{200B}now", 100), "Call555now");
        assert_eq!(as_given("ünïcödé", 3), "ünï");
        assert_eq!(as_given("a\u{2028}b\u{FEFF}", 10), "ab");
    }

    #[test]
    fn roles_come_from_memberships() {
        let map: RoleMap = [
            ("officer".to_string(), vec!["Sigil-Officers".to_string()]),
            ("user".to_string(), vec!["*".to_string()]),
            ("admin".to_string(), vec!["sigil-admins".to_string()]),
        ]
        .into();
        assert_eq!(
            roles_for(&map, &["sigil-officers".into()]),
            vec!["officer".to_string(), "user".to_string()]
        );
        assert_eq!(roles_for(&map, &[]), vec!["user".to_string()]);
        let strict: RoleMap = [("officer".to_string(), vec!["o".to_string()])].into();
        assert!(roles_for(&strict, &["x".into()]).is_empty());
        let a = Assertion {
            id: "oidc:i#1".into(),
            email: Some("e@x".into()),
            name: "E".into(),
            memberships: vec!["x".into()],
            stated: true,
        };
        assert!(no_role(&a, &strict, false)
            .to_string()
            .contains("none of x"));
        assert!(no_role(&a, &strict, false).to_string().contains(": o"));
        let people: RoleMap =
            [("officer".to_string(), vec!["oscar@agency.gov".to_string()])].into();
        let refusal = no_role(&a, &people, true).to_string();
        assert!(!refusal.contains("oscar"), "{refusal}");
        assert!(refusal.contains("ask an administrator"), "{refusal}");
    }
}
