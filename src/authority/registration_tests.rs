//! Tests of the registration rules that need no store (beside `registration.rs`, which they
//! would push past 800 lines).

use super::*;

#[test]
fn emails_are_checked() {
    for ok in ["alice@agency.gov", "a.b+c@x.example.org"] {
        assert!(valid_email(ok), "{ok}");
    }
    for bad in [
        "",
        "alice",
        "@agency.gov",
        "alice@",
        "alice@gov",
        "a@b@c.gov",
        "alice smith@agency.gov",
        "alice@agency.gov,x",
        "alice@.gov",
        "*@agency.gov",
        "a'b@agency.gov",
    ] {
        assert!(!valid_email(bad), "{bad}");
    }
}

#[test]
fn subject_values_are_escaped() {
    assert_eq!(dn_escape(r"Smith, John\x"), r"Smith\, John\\x");
    let dn = format!("CN={},O=Agency", dn_escape("Smith, John"));
    assert!(crate::pki::parse_dn(&dn).is_ok());
}

#[test]
fn only_people_and_officers_start_or_file_and_integrations_read_nothing() {
    let caller = Caller::token_for_test;
    // Deciding, withdrawing and revoking are an officer's; collecting a payload an
    // integration's: every other role is refused, with the rule named.
    for decider in [Role::Officer, Role::Mdm] {
        for role in [
            Role::User,
            Role::Officer,
            Role::Admin,
            Role::Auditor,
            Role::Mdm,
        ] {
            let r = Authority::only(&caller(role), decider, "decides");
            assert_eq!(r.is_ok(), role == decider, "{role:?} as {decider:?}");
            if let Err(e) = r {
                assert!(e.to_string().starts_with("only an "), "{e}");
            }
        }
    }
    for (role, act, read) in [
        (Role::User, true, true),
        (Role::Officer, true, true),
        (Role::Admin, false, true),
        (Role::Auditor, false, true),
        (Role::Mdm, false, false),
    ] {
        assert_eq!(Authority::may(&caller(role), true).is_ok(), act, "{role:?}");
        assert_eq!(
            Authority::may(&caller(role), false).is_ok(),
            read,
            "{role:?}"
        );
    }
    // A role acted in but not held (a front end that set it unchecked) is lent nothing.
    for lent in [Role::Officer, Role::Mdm, Role::User, Role::Admin] {
        let mut c = caller(Role::Auditor);
        c.role = lent;
        assert!(Authority::only(&c, lent, "decides").is_err(), "{lent:?}");
        assert!(Authority::may(&c, true).is_err(), "{lent:?}");
        assert!(Authority::may(&c, false).is_err(), "{lent:?}");
    }
}
