//! CRL partitions: which CRL lists a certificate.
//!
//! One CRL of every revoked certificate grows with the fleet (4.9 MB at 100,000 revocations),
//! and each relying party that checks CRLs downloads all of it. A certificate whose profile
//! leaves `crl_url` to Sigil instead names the CRL of its partition: the ISO week in which its
//! validity ends (`/crl/<ca>/2027-W49.crl`). That CRL lists only the revoked certificates
//! ending that week and says so in a critical issuing distribution point naming its own URL
//! (RFC 5280 §5.2.5), so a relying party never takes it for the whole list.
//!
//! Why the week of notAfter, not the serial: the partition is a fact of the certificate that no
//! setting can change later, so every URL ever put in a certificate keeps meaning the same
//! set; a partition stops growing once its week is issued past, and its entries all expire
//! together. With one year of validity there are about 53 partitions live at a time.

use time::{Date, OffsetDateTime, Time, Weekday};

/// An ISO week: the partition of the certificates whose notAfter falls in it (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CrlPartition {
    year: i32,
    week: u8,
}

impl CrlPartition {
    /// The partition of a certificate that is valid until `not_after`.
    pub fn of(not_after: OffsetDateTime) -> Self {
        let (year, week, _) = not_after
            .to_offset(time::UtcOffset::UTC)
            .date()
            .to_iso_week_date();
        Self { year, week }
    }

    /// A partition's name as it appears in URLs (`2027-W49`); `None` for anything else,
    /// including a week the year does not have.
    pub fn parse(name: &str) -> Option<Self> {
        let b = name.as_bytes();
        if b.len() != 8 || b[4] != b'-' || b[5] != b'W' {
            return None;
        }
        let digits = |s: &[u8]| -> Option<u32> {
            s.iter().try_fold(0u32, |n, d| {
                d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
            })
        };
        let year = i32::try_from(digits(&b[..4])?).ok()?;
        let week = u8::try_from(digits(&b[6..])?).ok()?;
        // Validates the week against the year (53 only in long years) and the year's range.
        Date::from_iso_week_date(year, week, Weekday::Monday).ok()?;
        (year >= 1).then_some(Self { year, week })
    }

    /// The name in URLs: `YYYY-Www`.
    pub fn name(&self) -> String {
        format!("{:04}-W{:02}", self.year, self.week)
    }

    /// The notAfter times this partition holds, as Unix seconds: from Monday 00:00:00 UTC
    /// (inclusive) to the next Monday (exclusive).
    pub fn window(&self) -> (i64, i64) {
        // `parse` and `of` only make weeks that exist, so the fallback is never taken; it
        // keeps this total without a panic path.
        let monday = Date::from_iso_week_date(self.year, self.week, Weekday::Monday)
            .unwrap_or(Date::MIN)
            .with_time(Time::MIDNIGHT)
            .assume_utc()
            .unix_timestamp();
        (monday, monday + 7 * 86_400)
    }
}

/// The placeholder in a CRL URL that becomes the certificate's partition name.
pub const PARTITION_PLACEHOLDER: &str = "{partition}";

/// A certificate's CRL distribution point: `url` with [`PARTITION_PLACEHOLDER`] replaced by
/// the partition of `not_after` (a URL without it is used as it is).
pub fn crl_url_for(url: &str, not_after: OffsetDateTime) -> String {
    if url.contains(PARTITION_PLACEHOLDER) {
        url.replace(PARTITION_PLACEHOLDER, &CrlPartition::of(not_after).name())
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_certificate_belongs_to_the_iso_week_its_validity_ends_in() {
        // 2027-12-06 is a Monday.
        let p = CrlPartition::of(datetime!(2027-12-08 13:00 UTC));
        assert_eq!(p.name(), "2027-W49");
        assert_eq!(
            p.window(),
            (
                datetime!(2027-12-06 0:00 UTC).unix_timestamp(),
                datetime!(2027-12-13 0:00 UTC).unix_timestamp()
            )
        );
        // The last second of Sunday is the same week; Monday midnight is the next.
        assert_eq!(
            CrlPartition::of(datetime!(2027-12-12 23:59:59 UTC)).name(),
            "2027-W49"
        );
        assert_eq!(
            CrlPartition::of(datetime!(2027-12-13 0:00 UTC)).name(),
            "2027-W50"
        );
        // Another offset is the same instant in UTC.
        assert_eq!(
            CrlPartition::of(datetime!(2027-12-13 1:00 +02:00)).name(),
            "2027-W49"
        );
    }

    #[test]
    fn iso_years_cross_calendar_years() {
        // 2027-01-01 is a Friday: it belongs to the last week of 2026 (a long year).
        assert_eq!(
            CrlPartition::of(datetime!(2027-01-01 12:00 UTC)).name(),
            "2026-W53"
        );
        // 2029-12-31 is a Monday: week 1 of 2030.
        assert_eq!(
            CrlPartition::of(datetime!(2029-12-31 12:00 UTC)).name(),
            "2030-W01"
        );
        assert!(CrlPartition::parse("2026-W53").is_some());
        assert!(
            CrlPartition::parse("2027-W53").is_none(),
            "2027 has 52 weeks"
        );
    }

    #[test]
    fn names_round_trip_and_windows_tile_without_gaps() {
        let mut at = datetime!(2026-12-28 0:00 UTC);
        let mut last: Option<CrlPartition> = None;
        for _ in 0..120 {
            let p = CrlPartition::of(at);
            assert_eq!(CrlPartition::parse(&p.name()), Some(p));
            let (start, end) = p.window();
            assert!(start <= at.unix_timestamp() && at.unix_timestamp() < end);
            if let Some(prev) = last.filter(|prev| *prev != p) {
                assert_eq!(prev.window().1, start, "{} then {}", prev.name(), p.name());
            }
            last = Some(p);
            at += time::Duration::days(3);
        }
    }

    #[test]
    fn anything_but_a_week_name_is_refused() {
        for bad in [
            "",
            "2027-W4",
            "2027-W049",
            "2027W49x",
            "2027-w49",
            "2027-W00",
            "2027-W54",
            "0000-W01",
            "+027-W49",
            "2027-W4a",
            "２０２７-W49",
            "../../etc",
            "2027-12-06",
        ] {
            assert_eq!(CrlPartition::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn urls_take_the_partition_only_where_asked() {
        let at = datetime!(2027-12-08 13:00 UTC);
        assert_eq!(
            crl_url_for("https://pki.example/crl/ca/{partition}.crl", at),
            "https://pki.example/crl/ca/2027-W49.crl"
        );
        assert_eq!(
            crl_url_for("https://pki.example/crl/ca.crl", at),
            "https://pki.example/crl/ca.crl"
        );
    }
}
