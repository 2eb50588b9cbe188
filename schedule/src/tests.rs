//! Tables of accepted and refused expressions, and property tests that check
//! next-run times against a separate brute-force reference.

use super::*;
use chrono::NaiveDateTime;
use proptest::prelude::*;

fn t(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
        .map(|d| d.and_utc())
        .unwrap_or_else(|e| panic!("bad test time {s}: {e}"))
}

fn next(expr: &str, after: &str) -> String {
    let s = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    s.next_after(t(after), t(after))
        .map(|d| d.format("%Y-%m-%d %H:%M %a").to_string())
        .unwrap_or_else(|| "none".into())
}

#[test]
fn accepted_forms_and_their_next_runs() {
    let table = [
        // The tutorial's expression: every 30 minutes.
        (
            "cron(0 0/30 * 1/1 * ? *)",
            "2026-11-22 01:10",
            "2026-11-22 01:30 Sun",
        ),
        (
            "cron(0/30 * 1/1 * ? *)",
            "2026-11-22 01:30",
            "2026-11-22 02:00 Sun",
        ),
        (
            "cron(15 10 ? * MON-FRI *)",
            "2026-11-21 12:00",
            "2026-11-23 10:15 Mon",
        ),
        (
            "cron(0 2 ? * SUN#2 *)",
            "2026-11-01 00:00",
            "2026-11-08 02:00 Sun",
        ),
        (
            "cron(0 2 ? * 1#2 *)",
            "2026-11-01 00:00",
            "2026-11-08 02:00 Sun",
        ),
        (
            "cron(0 23 ? * 6L *)",
            "2026-11-01 00:00",
            "2026-11-27 23:00 Fri",
        ),
        (
            "cron(0 12 L * ? *)",
            "2027-02-01 00:00",
            "2027-02-28 12:00 Sun",
        ),
        (
            "cron(0 12 L * ? *)",
            "2028-02-01 00:00",
            "2028-02-29 12:00 Tue",
        ),
        (
            "cron(0 9 LW * ? *)",
            "2026-05-01 00:00",
            "2026-05-29 09:00 Fri",
        ),
        // 1 Nov 2026 is a Sunday: the nearest weekday in the month is Monday the 2nd.
        (
            "cron(0 9 1W * ? *)",
            "2026-10-31 00:00",
            "2026-11-02 09:00 Mon",
        ),
        // 15 Aug 2026 is a Saturday: Friday the 14th.
        (
            "cron(0 9 15W AUG ? *)",
            "2026-08-01 00:00",
            "2026-08-14 09:00 Fri",
        ),
        (
            "cron(0 0 ? * L *)",
            "2026-11-22 00:00",
            "2026-11-28 00:00 Sat",
        ),
        (
            "cron(0 0 29 FEB ? 2027-2030)",
            "2026-01-01 00:00",
            "2028-02-29 00:00 Tue",
        ),
        (
            "cron(*/10 * * JAN,jul ? *)",
            "2026-06-30 23:55",
            "2026-07-01 00:00 Wed",
        ),
        (
            "cron(5-15/5 3 ? * * *)",
            "2026-11-22 03:10",
            "2026-11-22 03:15 Sun",
        ),
        ("cron(0 0 1 1 ? 2025)", "2026-01-01 00:00", "none"),
        ("rate(1 minute)", "2026-11-22 01:00", "2026-11-22 01:01 Sun"),
        (
            "rate(30 minutes)",
            "2026-11-22 01:00",
            "2026-11-22 01:30 Sun",
        ),
        ("rate(1 hour)", "2026-11-22 01:00", "2026-11-22 02:00 Sun"),
        ("rate(12 hours)", "2026-11-22 01:00", "2026-11-22 13:00 Sun"),
        ("rate(1 day)", "2026-11-22 01:00", "2026-11-23 01:00 Mon"),
        ("rate(7 days)", "2026-11-22 01:00", "2026-11-29 01:00 Sun"),
    ];
    for (expr, after, want) in table {
        assert_eq!(next(expr, after), want, "{expr} after {after}");
    }
}

#[test]
fn rates_count_periods_from_their_anchor() {
    let s = parse("rate(30 minutes)").unwrap_or_else(|e| panic!("{e}"));
    let anchor = t("2026-11-22 01:07");
    assert_eq!(
        s.next_after(t("2026-11-22 02:00"), anchor),
        Some(t("2026-11-22 02:07"))
    );
    assert_eq!(
        s.next_after(t("2026-11-22 02:07"), anchor),
        Some(t("2026-11-22 02:37"))
    );
    assert_eq!(
        s.next_after(t("2026-11-22 00:00"), anchor),
        Some(t("2026-11-22 01:37"))
    );
}

#[test]
fn refusals_name_the_field_and_the_rule() {
    let table = [
        ("every 5 minutes", "must be cron(...) or rate(...)"),
        ("rate(5 minute)", "plural unit: rate(5 minutes)"),
        ("rate(1 minutes)", "singular unit: rate(1 minute)"),
        ("rate(1 hours)", "singular unit: rate(1 hour)"),
        ("rate(2 day)", "plural unit: rate(2 days)"),
        (
            "rate(0 minutes)",
            "value \"0\" must be a whole number of at least 1",
        ),
        ("rate(-5 minutes)", "must be a whole number"),
        (
            "rate(5 weeks)",
            "unit \"weeks\" must be minute(s), hour(s) or day(s)",
        ),
        ("rate(5)", "must be rate(N unit)"),
        ("cron(0 12 * * ?)", "has 5 fields; it needs 6"),
        ("cron(0 0 12 * * ? * *)", "has 8 fields"),
        ("cron(30 0 12 * * ? *)", "seconds field \"30\""),
        (
            "cron(60 * * * ? *)",
            "minutes field \"60\": 60 is out of range: minutes must be between 0 and 59",
        ),
        (
            "cron(0 24 * * ? *)",
            "hours field \"24\": 24 is out of range",
        ),
        ("cron(0 0 32 * ? *)", "day-of-month field \"32\""),
        ("cron(0 0 * 13 ? *)", "month field \"13\""),
        (
            "cron(0 0 * FOO ? *)",
            "month field \"FOO\": \"FOO\" is not a number between 1 and 12 or a name (JAN-DEC)",
        ),
        ("cron(0 0 ? * 8 *)", "day-of-week field \"8\""),
        ("cron(0 0 ? * XYZ *)", "day-of-week field \"XYZ\""),
        (
            "cron(0 0 * * * *)",
            "cannot both be set: use ? in one of them",
        ),
        ("cron(0 0 ? * ? *)", "cannot both be ?"),
        ("cron(0 0 1 * MON *)", "cannot both be set"),
        ("cron(0 0 * * ? 1969)", "year field \"1969\""),
        ("cron(0 0 * * ? 2200)", "year field \"2200\""),
        ("cron(10-5 * * * ? *)", "runs backwards"),
        (
            "cron(0/0 * * * ? *)",
            "step \"0\" must be a whole number of at least 1",
        ),
        (
            "cron(? * * * ? *)",
            "minutes field \"?\": ? is allowed only in day-of-month or day-of-week",
        ),
        ("cron(0 0 L * ? *)", ""), // accepted: checked below
        (
            "cron(0 0 32W * ? *)",
            "W follows one day number between 1 and 31",
        ),
        (
            "cron(0 0 L-3 * ? *)",
            "offsets from the last day (L-n) are not accepted",
        ),
        (
            "cron(0 0 ? * MON#6 *)",
            "the number after # must be between 1 and 5",
        ),
        ("cron(0 0 ? * 2-3#2 *)", "L and # follow a single day"),
        (
            "cron(0 L * * ? *)",
            "hours field \"L\": \"L\": L, W and # are allowed only alone",
        ),
        ("cron(0 0 30 FEB ? *)", "no date matches every field"),
        ("cron(0 0 1,L * ? *)", "day-of-month field \"1,L\""),
    ];
    for (expr, want) in table {
        match parse(expr) {
            Ok(_) if want.is_empty() => {}
            Ok(s) => panic!("{expr} was accepted as {s:?}; wanted a refusal containing {want:?}"),
            Err(e) => {
                assert!(!want.is_empty(), "{expr} refused: {e}");
                let msg = e.to_string();
                assert!(
                    msg.contains(want),
                    "{expr}: {msg:?} does not contain {want:?}"
                );
                assert!(
                    msg.contains(expr),
                    "{expr}: the message should quote the expression: {msg}"
                );
            }
        }
    }
}

/// The walk's cost is bounded by construction: each turn jumps to a year or
/// a month that may fire, or looks at one day of such a month. These are the
/// expressions that make it look furthest; each is held to the turns its
/// calendar needs (a year of February only: a jump in, its days, a jump
/// out), not to a time.
#[test]
fn the_walk_jumps_what_cannot_fire_and_its_turns_stay_bounded() {
    let table: &[(&str, &str, &str, u32)] = &[
        // Leap days: four years of February's days and two jumps.
        (
            "cron(0 0 29 2 ? *)",
            "2024-03-01 00:00",
            "2028-02-29 00:00 Tue",
            5 * (2 + 29),
        ),
        // 2100 is not a leap year: eight years to the next leap day.
        (
            "cron(0 0 29 FEB ? 2096-2110)",
            "2096-03-01 00:00",
            "2104-02-29 00:00 Fri",
            9 * (2 + 29),
        ),
        // A year far ahead is one jump, not a walk through the years between.
        (
            "cron(0 0 1 1 ? 2199)",
            "1970-01-01 00:00",
            "2199-01-01 00:00 Tue",
            2,
        ),
        (
            "cron(0 12 L DEC ? 2150,2199)",
            "2151-01-01 00:00",
            "2199-12-31 12:00 Tue",
            2 + 31,
        ),
        // The fifth Sunday of February: only in a leap year starting on a Sunday.
        (
            "cron(0 0 ? FEB 1#5 *)",
            "2004-03-01 00:00",
            "2032-02-29 00:00 Sun",
            29 * (2 + 29),
        ),
        // Past the year field's last year: nothing, at once.
        ("cron(0 0 1 1 ? 2030)", "2030-06-01 00:00", "none", 2),
        // Past the last year of all: nothing, walking only to the end of 2199.
        (
            "cron(0 0 29 2 ? *)",
            "2196-03-01 00:00",
            "none",
            4 * (2 + 29),
        ),
    ];
    for &(expr, after, want, bound) in table {
        assert_eq!(next(expr, after), want, "{expr} after {after}");
        let Ok(Schedule::Cron(c)) = parse(expr) else {
            panic!("{expr}")
        };
        let mut turns = 0;
        c.walk(t(after), &mut turns);
        assert!(
            turns <= bound,
            "{expr} after {after}: {turns} turns, more than {bound}"
        );
    }
    // The longest search parsing makes: an expression that never fires is
    // walked from the first year to the last, and refused, in turns bounded
    // by the same rule (230 years of one month's days and two jumps).
    let impossible = "cron(0 0 30 FEB ? *)";
    assert!(parse(impossible).is_err());
    let c = Cron {
        minutes: 1,
        hours: 1,
        day_of_month: DayOfMonth::Days(1 << 30),
        months: 1 << 2,
        day_of_week: DayOfWeek::Any,
        years: None,
    };
    let mut turns = 0;
    let from = Utc.with_ymd_and_hms(YEAR_MIN, 1, 1, 0, 0, 0).single();
    assert_eq!(c.walk(from.unwrap_or_default(), &mut turns), None);
    let years = (YEAR_MAX - YEAR_MIN + 1) as u32;
    assert!(
        turns <= years * (2 + 29),
        "{impossible}: {turns} turns for {years} years"
    );
}

// ----- the independent reference -----

/// Brute force from the field strings themselves: a separate reading of each
/// field (no shared parser), days scanned one by one, minutes one by one.
mod reference {
    use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike, Weekday};

    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

    fn num(s: &str, names: &[&str], base: u32) -> u32 {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| i as u32 + base)
            .unwrap_or_else(|| s.parse().unwrap_or(u32::MAX))
    }

    /// Whether `v` is among the values a plain list/range/step field names.
    fn plain(field: &str, v: u32, lo: u32, hi: u32, names: &[&str]) -> bool {
        field.split(',').any(|item| {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, s.parse::<u32>().unwrap_or(1)),
                None => (item, 0),
            };
            let (a, b) = match range {
                "*" => (lo, hi),
                r => match r.split_once('-') {
                    Some((x, y)) => (num(x, names, lo), num(y, names, lo)),
                    None if step > 0 => (num(r, names, lo), hi),
                    None => (num(r, names, lo), num(r, names, lo)),
                },
            };
            v >= a && v <= b && (step == 0 || (v - a).is_multiple_of(step))
        })
    }

    fn month_days(d: NaiveDate) -> Vec<NaiveDate> {
        (1..=31).filter_map(|x| d.with_day(x)).collect()
    }

    fn is_weekday(d: NaiveDate) -> bool {
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
    }

    fn dom(field: &str, d: NaiveDate) -> bool {
        let days = month_days(d);
        let last = days.last().map_or(0, |l| l.day());
        match field {
            "?" => true,
            "L" => d.day() == last,
            "LW" => days.iter().rev().find(|x| is_weekday(**x)) == Some(&d),
            f if f.ends_with('W') => {
                let n: i64 = f.trim_end_matches('W').parse().unwrap_or(0);
                if n > i64::from(last) {
                    return false;
                }
                // The closest weekday of the month to day n.
                days.iter()
                    .filter(|x| is_weekday(**x))
                    .min_by_key(|x| (i64::from(x.day()) - n).abs())
                    == Some(&d)
            }
            f => plain(f, d.day(), 1, 31, &[]),
        }
    }

    fn dow(field: &str, d: NaiveDate) -> bool {
        let w = d.weekday().num_days_from_sunday() + 1;
        let same: Vec<NaiveDate> = month_days(d)
            .into_iter()
            .filter(|x| x.weekday() == d.weekday())
            .collect();
        match field {
            "?" => true,
            "L" => w == 7,
            f if f.contains('#') => {
                let (day, k) = f.split_once('#').unwrap_or(("", ""));
                num(day, &DAYS, 1) == w
                    && same.iter().position(|x| *x == d).map(|i| i + 1) == k.parse::<usize>().ok()
            }
            f if f.ends_with('L') && !DAYS.contains(&f) => {
                num(f.trim_end_matches('L'), &DAYS, 1) == w && same.last() == Some(&d)
            }
            f => plain(f, w, 1, 7, &DAYS),
        }
    }

    /// First matching minute strictly after `after`, looking `days` days ahead.
    pub fn next(fields: &[String; 6], after: NaiveDateTime, days: i64) -> Option<NaiveDateTime> {
        let start_day = after.date();
        for i in 0..=days {
            let d = start_day + chrono::Duration::days(i);
            let year_ok = fields[5] == "*" || plain(&fields[5], d.year() as u32, 1970, 2199, &[]);
            if !(year_ok
                && plain(&fields[3], d.month(), 1, 12, &MONTHS)
                && dom(&fields[2], d)
                && dow(&fields[4], d))
            {
                continue;
            }
            for m in 0..1440 {
                let at = d.and_hms_opt(m / 60, m % 60, 0)?;
                if at > after
                    && plain(&fields[1], at.hour(), 0, 23, &[])
                    && plain(&fields[0], at.minute(), 0, 59, &[])
                {
                    return Some(at);
                }
            }
        }
        None
    }
}

fn plain_field(lo: u32, hi: u32) -> impl Strategy<Value = String> {
    (lo..=hi, lo..=hi, 1..=(hi - lo).max(1), 0..6u8).prop_map(move |(a, b, s, k)| {
        let (a, b) = (a.min(b), a.max(b));
        match k {
            0 => "*".into(),
            1 => a.to_string(),
            2 => format!("{a}-{b}"),
            3 => format!("{a}/{s}"),
            4 => format!("*/{s}"),
            _ => format!("{a},{b}"),
        }
    })
}

/// Day fields without `L`, `W` or `#`: the expressions the `cron` crate
/// computed before our walk took them over.
fn plain_days_fields() -> impl Strategy<Value = (String, String)> {
    let dow = prop_oneof![
        plain_field(1, 7),
        Just("MON-FRI".to_string()),
        Just("SUN,SAT".to_string()),
        Just("TUE-THU,SAT".to_string()),
    ];
    prop_oneof![
        plain_field(1, 31).prop_map(|d| (d, "?".to_string())),
        dow.prop_map(|w| ("?".to_string(), w)),
    ]
}

fn days_fields() -> impl Strategy<Value = (String, String)> {
    let dom = prop_oneof![
        plain_field(1, 31),
        Just("L".to_string()),
        Just("LW".to_string()),
        (1..=31u32).prop_map(|n| format!("{n}W")),
    ];
    let dow = prop_oneof![
        plain_field(1, 7),
        Just("MON-FRI".to_string()),
        Just("SUN,SAT".to_string()),
        Just("L".to_string()),
        (1..=7u32).prop_map(|n| format!("{n}L")),
        (1..=7u32, 1..=5u32).prop_map(|(n, k)| format!("{n}#{k}")),
        (0..7usize, 1..=4u32).prop_map(|(n, k)| format!(
            "{}#{k}",
            ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"][n]
        )),
    ];
    prop_oneof![
        dom.prop_map(|d| (d, "?".to_string())),
        dow.prop_map(|w| ("?".to_string(), w)),
    ]
}

fn months_field() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("*".to_string()),
        2 => plain_field(1, 12),
        1 => Just("JAN-MAR".to_string()),
        1 => Just("FEB,AUG".to_string()),
    ]
}

fn years_field() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just("*".to_string()),
        2 => (2026..=2030u32).prop_map(|y| format!("{y}-2031")),
        1 => (2026..=2029u32).prop_map(|y| format!("{y},{}", y + 2)),
        // Beyond the reference's horizon: the walk jumps there.
        1 => (2100..=2199u32).prop_map(|y| format!("{y}")),
    ]
}

/// Checks one generated expression against the reference: the same next
/// run within the horizon (nothing in it when the reference finds nothing),
/// a refusal only when nothing ever fires, and the walk's turns within its
/// bound (1 + 32 × 12 a year, up to the year it stops in).
fn check_against_reference(
    fields: [String; 6],
    seconds: bool,
    start: i64,
) -> Result<(), TestCaseError> {
    let expr = format!(
        "cron({}{})",
        if seconds { "0 " } else { "" },
        fields.join(" ")
    );
    let after = DateTime::from_timestamp(start, 0).unwrap_or_default();
    let want = reference::next(&fields, after.naive_utc(), HORIZON_DAYS);
    match parse(&expr) {
        Ok(s) => {
            let got = s.next_after(after, after);
            match want {
                Some(w) => prop_assert_eq!(got.map(|g| g.naive_utc()), Some(w), "{}", expr),
                None => prop_assert!(
                    got.is_none_or(|g| g.naive_utc()
                        > after.naive_utc() + chrono::Duration::days(HORIZON_DAYS - 1)),
                    "{} fired at {:?}; the reference found nothing",
                    expr,
                    got
                ),
            }
            let Schedule::Cron(c) = &s else {
                return Err(TestCaseError::fail(format!("{expr} is not a cron")));
            };
            let mut turns = 0;
            prop_assert_eq!(c.walk(after, &mut turns), got);
            let last_year = got.map_or(YEAR_MAX, |g| g.year());
            let years = (last_year - after.year() + 1) as u32;
            prop_assert!(
                turns <= years * (12 + 31 * 12),
                "{}: {} turns over {} years",
                expr,
                turns,
                years
            );
        }
        // Only impossible dates are refused among generated expressions.
        Err(e) => prop_assert!(
            want.is_none(),
            "{} refused ({}) but fires at {:?}",
            expr,
            e,
            want
        ),
    }
    Ok(())
}

const HORIZON_DAYS: i64 = 6 * 366;

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn next_runs_match_the_brute_force_reference(
        minute in plain_field(0, 59),
        hour in plain_field(0, 23),
        days in days_fields(),
        month in months_field(),
        year in years_field(),
        start in 1_767_225_600i64..1_830_000_000i64,
        seconds in proptest::bool::ANY,
    ) {
        check_against_reference([minute, hour, days.0, month, days.1, year], seconds, start)?;
    }

    /// Lists, ranges, steps and names only — what the `cron` crate used to
    /// compute — held to the same reference on their own.
    #[test]
    fn plain_expressions_match_the_brute_force_reference(
        minute in plain_field(0, 59),
        hour in plain_field(0, 23),
        days in plain_days_fields(),
        month in months_field(),
        year in years_field(),
        start in 1_767_225_600i64..1_830_000_000i64,
        seconds in proptest::bool::ANY,
    ) {
        check_against_reference([minute, hour, days.0, month, days.1, year], seconds, start)?;
    }

    #[test]
    fn rates_fire_on_whole_periods_after_the_anchor(n in 1u32..500, unit in 0..3usize, anchor in 0i64..1_000_000_000, gap in 0i64..100_000_000) {
        let (s, p) = [("minute", 60), ("hour", 3600), ("day", 86400)][unit];
        let expr = if n == 1 { format!("rate(1 {s})") } else { format!("rate({n} {s}s)") };
        let sched = parse(&expr).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let a = DateTime::from_timestamp(anchor, 0).unwrap_or_default();
        let after = DateTime::from_timestamp(anchor + gap, 0).unwrap_or_default();
        let next = sched.next_after(after, a).map(|d| d.timestamp()).unwrap_or_default();
        let period = i64::from(n) * p;
        prop_assert!(next > anchor + gap && next - (anchor + gap) <= period);
        prop_assert_eq!((next - anchor) % period, 0);
    }
}
