//! People make their own API tokens: a person signed in makes a token in a role they hold,
//! owned by them (so the two-person rule sees them behind it, not an admin who made it for
//! them); an officer's waits for an admin. Against the real identity provider of `idp.rs`.

use serde_json::{json, Value};

use crate::identity::{signed_in, start};

#[test]
fn people_make_their_own_tokens_in_the_roles_they_hold() {
    let (s, _idp, _dir) = start();
    let base = s.base.clone();
    let url = format!("{base}/api/v1/tokens");
    let (olga, olga_csrf) = signed_in(&s, "olga");
    // Olga (an officer) makes an officer token for her script: hers, waiting for an admin.
    let (status, made) = olga.api(
        "POST",
        &url,
        Some(&olga_csrf),
        Some(json!({"role": "officer", "name": "olga-script"})),
    );
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["awaiting_approval"], true);
    assert!(made["owner"].as_str().unwrap().ends_with("#olga"), "{made}");
    let secret = made["token"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    // Not in a role she lacks, and no integration token.
    for body in [
        json!({"role": "admin", "name": "x"}),
        json!({"role": "auditor", "name": "x"}),
        json!({"role": "mdm", "name": "x", "profiles": ["*"], "directories": ["*"]}),
    ] {
        let (status, why) = olga.api("POST", &url, Some(&olga_csrf), Some(body.clone()));
        assert_eq!(status, 403, "{body}: {why}");
    }
    // Ursula (staff: a user) makes a user token in her own name only: a user token acts for
    // the email it is named after.
    let (ursula, ursula_csrf) = signed_in(&s, "ursula");
    let (status, why) = ursula.api(
        "POST",
        &url,
        Some(&ursula_csrf),
        Some(json!({"role": "user", "name": "oscar@agency.test"})),
    );
    assert_eq!(status, 403, "{why}");
    assert!(
        why["message"]
            .as_str()
            .unwrap()
            .contains("ursula@agency.test"),
        "{why}"
    );
    let (status, mine) = ursula.api(
        "POST",
        &url,
        Some(&ursula_csrf),
        Some(json!({"role": "user", "name": "Ursula@agency.test"})),
    );
    assert_eq!(status, 201, "{mine}");
    assert_eq!(mine["awaiting_approval"], false);
    let ursula_token = mine["token"].as_str().unwrap().to_string();
    let ursula_id = mine["id"].as_str().unwrap().to_string();
    // Each sees only their own.
    let (status, list) = olga.api("GET", &url, None, None);
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    // A token makes, lists and revokes no token (its person is its maker, who may not be the
    // one holding it): people sign in for that.
    let r = s
        .http
        .post(&url)
        .bearer_auth(&ursula_token)
        .json(&json!({"role": "user", "name": "ursula@agency.test"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = s.http.get(&url).bearer_auth(&ursula_token).send().unwrap();
    assert_eq!(r.status(), 403);
    let r = s
        .http
        .delete(format!("{url}/{ursula_id}"))
        .bearer_auth(&ursula_token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // A token a person makes for themselves expires: by 90 days at the latest.
    assert!(mine["expires_at"].is_string(), "{mine}");
    let (status, why) = ursula.api(
        "POST",
        &url,
        Some(&ursula_csrf),
        Some(json!({"role": "user", "name": "ursula@agency.test", "expires_in_days": 365})),
    );
    assert_eq!(status, 403, "{why}");
    // An admin approves Olga's; then it works.
    let (adam, adam_csrf) = signed_in(&s, "adam");
    let (status, why) = adam.api(
        "POST",
        &format!("{url}/{id}/approve"),
        Some(&adam_csrf),
        None,
    );
    assert_eq!(status, 204, "{why}");
    let approvals = |token: &str| {
        s.http
            .get(format!("{base}/api/v1/approvals"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(approvals(&secret), 200);
    // Olga revokes her own token, never another's.
    let (status, _) = olga.api(
        "DELETE",
        &format!("{url}/{ursula_id}"),
        Some(&olga_csrf),
        None,
    );
    assert_eq!(status, 404);
    let (status, _): (u16, Value) =
        olga.api("DELETE", &format!("{url}/{id}"), Some(&olga_csrf), None);
    assert_eq!(status, 204);
    assert_eq!(approvals(&secret), 401);
}

/// The identity provider takes a role away: at the person's next sign-in the tokens they made
/// in it stop working (revoked, on the record, saying why); the role they keep keeps its
/// token; when every role goes, the refused sign-in takes the rest.
#[test]
fn a_token_goes_when_the_identity_provider_takes_its_role_away() {
    let (s, mut idp, _dir) = start();
    let base = s.base.clone();
    let url = format!("{base}/api/v1/tokens");
    // Oscar (an officer, and staff: a user) makes an officer token and a user token.
    let (oscar, oscar_csrf) = signed_in(&s, "oscar");
    let make = |body: Value| {
        let (status, made) = oscar.api("POST", &url, Some(&oscar_csrf), Some(body));
        assert_eq!(status, 201, "{made}");
        (
            made["id"].as_str().unwrap().to_string(),
            made["token"].as_str().unwrap().to_string(),
        )
    };
    let (officer_id, officer) = make(json!({"role": "officer", "name": "oscar-script"}));
    let (user_id, user) = make(json!({"role": "user", "name": "oscar@agency.test"}));
    let (adam, adam_csrf) = signed_in(&s, "adam");
    let (status, why) = adam.api(
        "POST",
        &format!("{url}/{officer_id}/approve"),
        Some(&adam_csrf),
        None,
    );
    assert_eq!(status, 204, "{why}");
    let status = |path: &str, token: &str| {
        s.http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status("/api/v1/approvals", &officer), 200);
    assert_eq!(status("/api/v1/registrations", &user), 200);

    // He leaves the officers' group. His tokens work until the provider says so: at his
    // next sign-in (as staff, a user) the officer token goes, the user token stays.
    idp.set_groups("oscar", &["staff"]);
    let (again, _) = signed_in(&s, "oscar");
    assert_eq!(again.session(&base).unwrap()["roles"], json!(["user"]));
    assert_eq!(status("/api/v1/approvals", &officer), 401);
    assert_eq!(status("/api/v1/registrations", &user), 200);
    // The session he opened before is bound by what the provider says now: no longer an
    // officer there either, so it makes no officer token.
    assert_eq!(oscar.session(&base).unwrap()["roles"], json!(["user"]));
    let (code, why) = oscar.api(
        "POST",
        &url,
        Some(&oscar_csrf),
        Some(json!({"role": "officer", "name": "kept"})),
    );
    assert_eq!(code, 403, "{why}");
    let audit = s
        .http
        .get(format!("{base}/api/v1/audit?limit=10000"))
        .bearer_auth(&s.admin)
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    let withdrawn: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "token_role_withdrawn")
        .collect();
    assert_eq!(withdrawn.len(), 1, "{withdrawn:?}");
    assert_eq!(withdrawn[0]["subject"], officer_id.as_str());
    // Sigil withdrew it on the provider's word; Oscar is named as its maker, not its revoker.
    assert_eq!(withdrawn[0]["actor"], "sigil:sign-in");
    let details: Value = serde_json::from_str(withdrawn[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["role"], "officer", "{details}");
    assert!(
        details["maker"].as_str().unwrap().ends_with("#oscar"),
        "{details}"
    );

    // Then every group: the sign-in is refused, and the user token goes with it.
    idp.set_groups("oscar", &[]);
    let mut b = crate::web_client::Browser::new(&s, None);
    let page = b.oidc_sign_in(&base, "oscar");
    assert_eq!(page.status, 403, "{}", page.body);
    assert_eq!(status("/api/v1/registrations", &user), 401);
    let (_, listed) = adam.api("GET", &url, None, None);
    for id in [&officer_id, &user_id] {
        let t = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id.as_str())
            .unwrap();
        assert!(t["revoked_at"].is_string(), "{t}");
    }

    // An admin's tokens: an integration token and an officer token for a colleague.
    let make = |body: Value| {
        let (code, made) = adam.api("POST", &url, Some(&adam_csrf), Some(body));
        assert_eq!(code, 201, "{made}");
        made["id"].as_str().unwrap().to_string()
    };
    let integration =
        make(json!({"role": "mdm", "name": "inventory-sync", "directories": ["inventory"]}));
    let colleague = make(json!({"role": "officer", "name": "for-olga"}));
    let (alice, _) = signed_in(&s, "alice");
    let active = |id: &str| {
        let (_, all) = alice.api("GET", &url, None, None);
        all.as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id && t["revoked_at"].is_null())
    };
    // A provider that leaves the groups out of the ID token (Entra past 200 groups) says
    // nothing about them: the sign-in is refused for want of a role, and nothing is taken.
    idp.drop_groups("adam");
    let mut b = crate::web_client::Browser::new(&s, None);
    assert_eq!(b.oidc_sign_in(&base, "adam").status, 403);
    assert!(active(&integration) && active(&colleague));
    // Moved from the admins to the staff: what he made as an admin in a role he no longer
    // holds goes; the integration token serves a system, and stays.
    idp.set_groups("adam", &["staff"]);
    let (staff_adam, staff_csrf) = signed_in(&s, "adam");
    assert!(!active(&colleague));
    assert!(active(&integration));
    // No longer an admin, he neither sees nor revokes the integration token he made as one.
    let (code, mine) = staff_adam.api("GET", &url, None, None);
    assert_eq!(code, 200, "{mine}");
    assert!(!mine.to_string().contains(integration.as_str()), "{mine}");
    let (code, _) = staff_adam.api(
        "DELETE",
        &format!("{url}/{integration}"),
        Some(&staff_csrf),
        None,
    );
    assert_eq!(code, 404);
    assert!(active(&integration));
}
