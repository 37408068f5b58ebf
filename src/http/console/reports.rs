//! `/console/reports`: certificates expiring per week for the next 26 weeks by profile, and
//! certificates issued per day over the last 30 days; charts and the same numbers as tables.
//! The store counts them (one aggregate query each): a page view reads no certificate, so a
//! fleet of a million costs two index reads, not a million rows.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::charts::stacked_bars;
use super::{render, unavailable, Visit};
use crate::authority::access::Role;
use crate::authority::{SpanCount, SpanOf};
use crate::http::AppState;

const WEEKS: usize = 26;
const DAYS: usize = 30;
const DAY: i64 = 86_400;

/// Counts per bucket and series, from the store's counts per span and profile.
fn tally(counts: &[SpanCount], buckets: usize) -> Vec<(String, Vec<u64>)> {
    let mut by: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for c in counts {
        let b = c.span as usize;
        if b < buckets {
            by.entry(c.profile.clone())
                .or_insert_with(|| vec![0; buckets])[b] += c.count.max(0) as u64;
        }
    }
    by.into_iter().collect()
}

fn table(labels: &[String], series: &[(String, Vec<u64>)]) -> serde_json::Value {
    let rows: Vec<_> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({"label": l, "counts": series.iter().map(|(_, v)| v[i]).collect::<Vec<_>>(),
                   "total": series.iter().map(|(_, v)| v[i]).sum::<u64>()})
        })
        .collect();
    json!({"series": series.iter().map(|(n, _)| n).collect::<Vec<_>>(), "rows": rows})
}

fn day_label(t: i64) -> String {
    crate::clock::rfc3339(t).chars().take(10).collect()
}

/// `MM-DD`, for the chart's axis (the table has the whole date).
fn short(labels: &[String]) -> Vec<String> {
    labels.iter().map(|l| l.chars().skip(5).collect()).collect()
}

pub(super) async fn reports(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let visit = match Visit::open(&req, &state, &[Role::Admin, Role::Auditor, Role::Officer]).await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = crate::clock::now();
    let week_labels: Vec<String> = (0..WEEKS)
        .map(|w| day_label(now + w as i64 * 7 * DAY))
        .collect();
    let expiring = match state
        .ra
        .counts_per_span(SpanOf::ValidEnding, now, 7 * DAY, WEEKS as u32)
        .await
    {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let by_week = tally(&expiring, WEEKS);
    // The last 30 whole days and today: from the midnight 29 days back.
    let since = now - DAYS as i64 * DAY;
    let first_day = since - since.rem_euclid(DAY) + DAY;
    let day_labels: Vec<String> = (0..DAYS)
        .map(|d| day_label(first_day + d as i64 * DAY))
        .collect();
    let issued = match state
        .ra
        .counts_per_span(SpanOf::Stored, first_day, DAY, DAYS as u32)
        .await
    {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let by_day = tally(&issued, DAYS);
    render(
        StatusCode::OK,
        "reports.html",
        "Reports",
        Some(&visit),
        json!({
            "expiring_chart": stacked_bars(
                "expiring",
                "Certificates expiring per week, next 26 weeks, by profile",
                &short(&week_labels),
                &by_week,
            ),
            "expiring": table(&week_labels, &by_week),
            "issued_chart": stacked_bars(
                "issued",
                "Certificates issued per day, last 30 days, by profile",
                &short(&day_labels),
                &by_day,
            ),
            "issued": table(&day_labels, &by_day),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_per_bucket_and_drops_what_is_outside() {
        let c = |span: u32, profile: &str, count: i64| SpanCount {
            span,
            profile: profile.to_string(),
            count,
        };
        let t = tally(&[c(0, "a", 2), c(2, "b", 1), c(5, "a", 4)], 3);
        assert_eq!(
            t,
            vec![
                ("a".to_string(), vec![2, 0, 0]),
                ("b".to_string(), vec![0, 0, 1])
            ]
        );
    }
}
