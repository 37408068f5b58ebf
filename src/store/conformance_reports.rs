//! Conformance: what the console's charts and the certificate listings read, counted,
//! matched and ordered by the store (the same on every engine).

use std::sync::Arc;

use super::conformance::cert;
use super::*;

/// Certificates counted per span and profile by notAfter (valid only) and by when they were
/// stored; the expiring listing is valid certificates only, soonest ending first.
pub(super) async fn spans_and_expiring_order(s: Arc<dyn Store>) {
    const WEEK: i64 = 7 * 86_400;
    let at = now();
    let base = at + 1_000;
    let mk = |serial: &str, profile: &str, not_after: i64, revoked: bool| {
        let mut c = cert(serial, &format!("tx-{serial}"), "CN=span", not_after);
        c.profile = profile.into();
        if revoked {
            c.status = CertStatus::Revoked;
            c.revoked_at = Some(at);
            c.revocation_reason = Some(1);
        }
        c
    };
    let certs = [
        mk("5a01", "span-a", base + WEEK + 20, false),
        mk("5a02", "span-a", base + WEEK + 10, false),
        mk("5a03", "span-a", base + 3 * WEEK, false),
        mk("5a04", "span-b", base + 10, false),
        // Revoked, expired, and past the last span: none is counted by notAfter.
        mk("5a05", "span-a", base + 5, true),
        mk("5a06", "span-a", at - 10, false),
        mk("5a07", "span-a", base + 4 * WEEK, false),
    ];
    assert_eq!(s.import_certificates(&certs, "test").await.unwrap(), 7);
    let ours = |v: Vec<SpanCount>| -> Vec<(u32, String, i64)> {
        v.into_iter()
            .filter(|c| c.profile.starts_with("span-"))
            .map(|c| (c.span, c.profile, c.count))
            .collect()
    };
    let ending = ours(
        s.counts_per_span(SpanOf::ValidEnding, base, WEEK, 4)
            .await
            .unwrap(),
    );
    assert_eq!(
        ending,
        [
            (0, "span-b".to_string(), 1),
            (1, "span-a".to_string(), 2),
            (3, "span-a".to_string(), 1)
        ],
        "by span, then profile"
    );
    let stored = ours(
        s.counts_per_span(SpanOf::Stored, at - 100, 1_000, 1)
            .await
            .unwrap(),
    );
    assert_eq!(
        stored,
        [(0, "span-a".to_string(), 6), (0, "span-b".to_string(), 1)]
    );
    assert!(ours(
        s.counts_per_span(SpanOf::Stored, at + 10_000, 1_000, 3)
            .await
            .unwrap()
    )
    .is_empty());

    // One window for the chart, the counts and the expiry scan: a certificate ending at the
    // window's start is still valid then (RFC 5280) and counted; one ending at its end is the
    // next window's.
    let edge = [
        mk("5a08", "span-e", base, false),
        mk("5a09", "span-e", base + WEEK, false),
    ];
    assert_eq!(s.import_certificates(&edge, "test").await.unwrap(), 2);
    let chart: Vec<_> = s
        .counts_per_span(SpanOf::ValidEnding, base, WEEK, 1)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.profile == "span-e")
        .map(|c| c.count)
        .collect();
    assert_eq!(chart, [1], "the chart's first week");
    // (A one-second window: the certificate ending at its start alone.)
    let counted: Vec<_> = s
        .expiring_counts(base, 1)
        .await
        .unwrap()
        .into_iter()
        .filter(|(p, _)| p == "span-e")
        .collect();
    assert_eq!(counted, [("span-e".to_string(), 1)], "the counts");
    let scanned: Vec<_> = s
        .expiring_unannounced(base, WEEK, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.profile == "span-e")
        .map(|c| c.serial)
        .collect();
    assert_eq!(scanned, ["5a08"], "the expiry scan");

    // Expiring: valid only, soonest ending first (not newest first), a limit keeps the soonest.
    let expiring = |status: Option<CertStatus>, limit: usize| CertFilter {
        profile: Some("span-a".into()),
        status,
        expiring_within_secs: Some(5 * WEEK),
        limit,
        ..CertFilter::default()
    };
    let serials = |v: Vec<CertificateRecord>| v.into_iter().map(|c| c.serial).collect::<Vec<_>>();
    assert_eq!(
        serials(s.certificates(&expiring(None, 0)).await.unwrap()),
        ["5a02", "5a01", "5a03", "5a07"]
    );
    assert_eq!(
        serials(s.certificates(&expiring(None, 2)).await.unwrap()),
        ["5a02", "5a01"]
    );
    assert!(s
        .certificates(&expiring(Some(CertStatus::Revoked), 0))
        .await
        .unwrap()
        .is_empty());

    // Subject text is matched as typed: `_` and `%` are not wildcards; case does not matter.
    let named = [
        mk("5b01", "span-c", base, false),
        mk("5b02", "span-c", base, false),
        mk("5b03", "span-c", base, false),
    ];
    let mut named = named.to_vec();
    named[0].subject = "CN=lab_1,O=Agency".into();
    named[1].subject = "CN=labX1,O=Agency".into();
    named[2].subject = "CN=100% sure,O=Agency".into();
    assert_eq!(s.import_certificates(&named, "test").await.unwrap(), 3);
    let find = |text: &str| CertFilter {
        profile: Some("span-c".into()),
        subject_contains: Some(text.into()),
        ..CertFilter::default()
    };
    let mut found = serials(s.certificates(&find("lab_1")).await.unwrap());
    found.sort();
    assert_eq!(found, ["5b01"], "`_` is itself");
    assert_eq!(
        serials(s.certificates(&find("0% s")).await.unwrap()),
        ["5b03"],
        "`%` is itself"
    );
    assert!(s.certificates(&find("%")).await.unwrap().len() == 1);
    let mut any_case = serials(s.certificates(&find("LAB")).await.unwrap());
    any_case.sort();
    assert_eq!(any_case, ["5b01", "5b02"]);
}

/// The newest audit records, newest first, matched by action, actor and subject text (ASCII
/// case not minding, `%` and `_` as typed), at most the limit.
pub(super) async fn newest_audit_records(s: Arc<dyn Store>) {
    let details = serde_json::json!({});
    for (actor, action, subject) in [
        ("piv:Auditor@agency.gov", "report_viewed", "q_1"),
        ("token:mdm", "challenge_created", "qX1"),
        ("piv:auditor@agency.gov", "report_viewed", "100% q"),
        ("token:mdm", "report_viewed", "q_2"),
    ] {
        s.audit(actor, action, subject, &details).await.unwrap();
    }
    let q = |action: &str, actor: &str, subject: &str| AuditQuery {
        action: action.into(),
        actor: actor.into(),
        subject: subject.into(),
    };
    let subjects = |v: Vec<AuditRecord>| v.into_iter().map(|r| r.subject).collect::<Vec<_>>();
    let all = s.audit_newest(&q("", "", ""), 3).await.unwrap();
    assert_eq!(
        subjects(all.clone()),
        ["q_2", "100% q", "qX1"],
        "newest first, limited"
    );
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq));
    assert_eq!(
        subjects(
            s.audit_newest(&q("REPORT", "auditor@", ""), 10)
                .await
                .unwrap()
        ),
        ["100% q", "q_1"],
        "case does not matter; every text must match"
    );
    assert_eq!(
        subjects(s.audit_newest(&q("", "", "q_"), 10).await.unwrap()),
        ["q_2", "q_1"],
        "`_` is itself"
    );
    assert_eq!(
        subjects(s.audit_newest(&q("", "", "0%"), 10).await.unwrap()),
        ["100% q"],
        "`%` is itself"
    );
}

#[test]
fn span_bounds_keep_a_width_of_a_second_at_least_and_saturate() {
    assert_eq!(SpanOf::bounds(100, 10, 3), (100, 10, 130));
    assert_eq!(SpanOf::bounds(100, 0, 3), (100, 1, 103));
    assert_eq!(SpanOf::bounds(100, -5, 2), (100, 1, 102));
    assert_eq!(SpanOf::bounds(i64::MAX - 5, 10, 3).2, i64::MAX);
}
