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
