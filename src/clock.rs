//! Time, one way for the whole program: Unix seconds, and RFC 3339 text for people and JSON.

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Unix seconds as RFC 3339 text (`2026-12-06T08:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// A span of time written as `30d`, `12h`, `45m`, `30s`, or a bare number of days, in
/// seconds.
pub fn parse_span(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: i64 = t[..split].parse().ok()?;
    let mult = match &t[split..] {
        "" | "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_text() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert!(super::now() > 1_700_000_000);
    }
}
