//! Milliseconds since the Unix epoch, and timestamps as text.
//!
//! One parser for every timestamp a user or a peer hands us, so the CLI and
//! the coordinator accept exactly the same spellings.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// ISO 8601 in UTC with milliseconds, as SSM writes string timestamps
/// (`2017-06-14T21:38:43.363Z`).
pub fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// ISO 8601 in UTC to the second, as SSM writes inventory capture and
/// install times (`2017-06-14T21:38:43Z`).
pub fn iso_secs(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// A timestamp as the aws CLI and SSM accept it, in epoch milliseconds:
/// RFC 3339 (`2030-01-10T20:30:00Z`, any offset), a date and time without a
/// zone (taken as UTC), a bare date (midnight UTC), or epoch seconds (with
/// a fraction). `None` when it is none of these.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis());
    }
    let secs = s.parse::<f64>().ok().filter(|f| f.is_finite())?;
    Some((secs * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_accepted_spelling() {
        for (text, want) in [
            ("2017-01-10T20:30:00.000Z", Some(1_484_080_200_000)),
            ("2017-01-10T20:30:00Z", Some(1_484_080_200_000)),
            ("2017-01-10T21:30:00+01:00", Some(1_484_080_200_000)),
            ("2017-01-10T20:30:00", Some(1_484_080_200_000)),
            ("2017-01-10 20:30:00", Some(1_484_080_200_000)),
            ("2017-01-10", Some(1_484_006_400_000)),
            ("1484080200", Some(1_484_080_200_000)),
            ("1484080200.5", Some(1_484_080_200_500)),
            (" 1484080200 ", Some(1_484_080_200_000)),
            ("yesterday", None),
            ("NaN", None),
            ("", None),
        ] {
            assert_eq!(parse_timestamp_ms(text), want, "{text:?}");
        }
        assert_eq!(iso_ms(1_484_080_200_000), "2017-01-10T20:30:00.000Z");
        assert_eq!(iso_secs(1_484_080_200), "2017-01-10T20:30:00Z");
        assert_eq!(
            parse_timestamp_ms(&iso_secs(1_484_080_200)),
            Some(1_484_080_200_000)
        );
        assert!(now_ms() > 1_484_080_200_000);
    }
}
