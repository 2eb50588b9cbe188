//! Schedule expressions exactly as AWS State Manager accepts them for
//! associations, and the times they fire, in UTC.
//!
//! - `rate(N minute|minutes|hour|hours|day|days)`: singular unit when N is 1,
//!   plural otherwise; fires every N units from an anchor (the association's
//!   creation or its last run).
//! - `cron(...)`: six fields (minutes, hours, day-of-month, month, day-of-week,
//!   year), optionally preceded by a seconds field that must be `0`. Exactly one
//!   of day-of-month and day-of-week is `?`. Names (`JAN`, `SUN`), `*`, lists,
//!   ranges, steps (`0/30`, `*/5`, `10-40/10`), `L`, `LW`, `nW` (day-of-month),
//!   `L`, `nL`, `n#k` (day-of-week, 1 = Sunday).
//!
//! Next-run times come from one day walk over the parsed fields, for every
//! expression: whole years and months that cannot match are jumped over, so
//! a search looks at no more than a year's months plus the days of the
//! matching months, per year up to [`YEAR_MAX`]. This crate does no IO;
//! [`ScheduleError`] names the field and why.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc, Weekday};

mod field;
#[cfg(test)]
mod tests;

pub use field::{DayOfMonth, DayOfWeek};

/// Oldest and newest years a cron year field may name (as AWS).
pub const YEAR_MIN: i32 = 1970;
pub const YEAR_MAX: i32 = 2199;

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not `cron(...)` or `rate(...)`.
    #[error(
        "schedule expression {0:?} must be cron(...) or rate(...), e.g. cron(0 0/30 * 1/1 * ? *) or rate(30 minutes)"
    )]
    Form(String),
    /// A rate expression that does not read `rate(N unit)`.
    #[error("rate expression {expr:?}: {why}")]
    Rate { expr: String, why: String },
    /// Wrong number of cron fields.
    #[error(
        "cron expression {expr:?} has {count} fields; it needs 6 (minutes hours day-of-month month day-of-week year), optionally preceded by 0 seconds"
    )]
    FieldCount { expr: String, count: usize },
    /// One cron field is wrong.
    #[error("cron expression {expr:?}: {field} field {value:?}: {why}")]
    Field {
        expr: String,
        field: &'static str,
        value: String,
        why: String,
    },
    /// Day-of-month and day-of-week are both set, or both `?`.
    #[error("cron expression {expr:?}: {why}")]
    Days { expr: String, why: String },
}

/// A rate's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    Minute,
    Hour,
    Day,
}

impl RateUnit {
    fn minutes(self) -> i64 {
        match self {
            RateUnit::Minute => 1,
            RateUnit::Hour => 60,
            RateUnit::Day => 1440,
        }
    }
}

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// Bit m set: minute m fires.
    pub minutes: u64,
    /// Bit h set: hour h fires.
    pub hours: u32,
    pub day_of_month: DayOfMonth,
    /// Bit m (1..=12) set: month m fires.
    pub months: u16,
    pub day_of_week: DayOfWeek,
    /// Years that fire (sorted); `None` = every year.
    pub years: Option<Vec<i32>>,
}

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Rate { every: u32, unit: RateUnit },
    Cron(Box<Cron>),
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses a `cron(...)` or `rate(...)` expression.
pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
    let t = expr.trim();
    if let Some(body) = t.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
        return parse_rate(expr, body);
    }
    if let Some(body) = t.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
        return parse_cron(expr, body).map(|c| Schedule::Cron(Box::new(c)));
    }
    Err(ScheduleError::Form(expr.to_string()))
}

fn parse_rate(expr: &str, body: &str) -> Result<Schedule, ScheduleError> {
    let err = |why: String| ScheduleError::Rate {
        expr: expr.to_string(),
        why,
    };
    let parts: Vec<&str> = body.split_whitespace().collect();
    let [n, unit] = parts.as_slice() else {
        return Err(err(
            "must be rate(N unit) with a whole number N and a unit of minute(s), hour(s) or day(s)"
                .into(),
        ));
    };
    let every: u32 = match n.parse() {
        Ok(v) if v >= 1 && n.chars().all(|c| c.is_ascii_digit()) => v,
        _ => {
            return Err(err(format!(
                "value {n:?} must be a whole number of at least 1"
            )));
        }
    };
    let (singular, plural, u) = match *unit {
        "minute" | "minutes" => ("minute", "minutes", RateUnit::Minute),
        "hour" | "hours" => ("hour", "hours", RateUnit::Hour),
        "day" | "days" => ("day", "days", RateUnit::Day),
        other => {
            return Err(err(format!(
                "unit {other:?} must be minute(s), hour(s) or day(s)"
            )));
        }
    };
    if every == 1 && *unit != singular {
        return Err(err(format!(
            "a value of 1 takes the singular unit: rate(1 {singular})"
        )));
    }
    if every != 1 && *unit != plural {
        return Err(err(format!(
            "a value of {every} takes the plural unit: rate({every} {plural})"
        )));
    }
    Ok(Schedule::Rate { every, unit: u })
}

fn parse_cron(expr: &str, body: &str) -> Result<Cron, ScheduleError> {
    let mut fields: Vec<&str> = body.split_whitespace().collect();
    if fields.len() == 7 {
        if fields[0] != "0" {
            return Err(field::error(
                expr,
                "seconds",
                fields[0],
                "State Manager runs on whole minutes: the seconds field, when given, must be 0",
            ));
        }
        fields.remove(0);
    }
    if fields.len() != 6 {
        return Err(ScheduleError::FieldCount {
            expr: expr.to_string(),
            count: body.split_whitespace().count(),
        });
    }
    let minutes = field::numeric(expr, "minutes", fields[0], 0, 59, &[])?;
    let hours = field::numeric(expr, "hours", fields[1], 0, 23, &[])?;
    let day_of_month = field::day_of_month(expr, fields[2])?;
    let months = field::numeric(expr, "month", fields[3], 1, 12, &field::MONTHS)?;
    let day_of_week = field::day_of_week(expr, fields[4])?;
    let years = if fields[5] == "*" {
        None
    } else {
        let bits = field::years(expr, fields[5])?;
        Some(bits)
    };
    match (&day_of_month, &day_of_week) {
        (DayOfMonth::Any, DayOfWeek::Any) => {
            return Err(ScheduleError::Days {
                expr: expr.to_string(),
                why: "day-of-month and day-of-week cannot both be ?: set one of them".into(),
            });
        }
        (DayOfMonth::Any, _) | (_, DayOfWeek::Any) => {}
        _ => {
            return Err(ScheduleError::Days {
                expr: expr.to_string(),
                why: "day-of-month and day-of-week cannot both be set: use ? in one of them".into(),
            });
        }
    }
    let c = Cron {
        minutes,
        hours: hours as u32,
        day_of_month,
        months: months as u16,
        day_of_week,
        years,
    };
    if c.next_after(Utc.with_ymd_and_hms(YEAR_MIN, 1, 1, 0, 0, 0).single())
        .is_none()
    {
        return Err(ScheduleError::Days {
            expr: expr.to_string(),
            why: "no date matches every field (e.g. the 30th of February)".into(),
        });
    }
    Ok(c)
}

impl Cron {
    /// The first firing strictly after `after` (whole minutes).
    pub fn next_after(&self, after: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        self.walk(after?, &mut 0)
    }

    /// The search: day by day from `after`, up to the end of [`YEAR_MAX`].
    /// Each turn (counted in `turns`) jumps to the next year or month that
    /// may fire, or looks at one day of a month that may fire; so a year
    /// costs at most 1 + 32 turns per month of it that may fire.
    pub(crate) fn walk(&self, after: DateTime<Utc>, turns: &mut u32) -> Option<DateTime<Utc>> {
        let start = after
            .with_second(0)?
            .with_nanosecond(0)?
            .checked_add_signed(Duration::minutes(1))?;
        let mut day = start.date_naive();
        while day.year() <= YEAR_MAX {
            *turns += 1;
            if !self.year_matches(day.year()) {
                day = NaiveDate::from_ymd_opt(self.next_year(day.year())?, 1, 1)?;
                continue;
            }
            if self.months & (1 << day.month()) == 0 {
                day = match (day.month() + 1..=12).find(|m| self.months & (1 << m) != 0) {
                    Some(m) => NaiveDate::from_ymd_opt(day.year(), m, 1)?,
                    None => NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)?,
                };
                continue;
            }
            if self.day_matches(day) {
                let from = if day == start.date_naive() {
                    (start.hour(), start.minute())
                } else {
                    (0, 0)
                };
                for h in from.0..24 {
                    if self.hours & (1 << h) == 0 {
                        continue;
                    }
                    let m0 = if h == from.0 { from.1 } else { 0 };
                    for m in m0..60 {
                        if self.minutes & (1 << m) != 0 {
                            return Some(day.and_hms_opt(h, m, 0)?.and_utc());
                        }
                    }
                }
            }
            day = day.succ_opt()?;
        }
        None
    }

    /// The first year after `y` that may fire; `None` past the year field's last.
    fn next_year(&self, y: i32) -> Option<i32> {
        match &self.years {
            None => Some(y + 1),
            Some(ys) => ys.iter().copied().find(|&n| n > y),
        }
    }

    fn year_matches(&self, y: i32) -> bool {
        self.years
            .as_ref()
            .is_none_or(|ys| ys.binary_search(&y).is_ok())
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        let last = last_day_of_month(d);
        let dom_ok = match &self.day_of_month {
            DayOfMonth::Any => true,
            DayOfMonth::Days(bits) => bits & (1 << d.day()) != 0,
            DayOfMonth::Last => d.day() == last,
            DayOfMonth::LastWeekday => d.day() == nearest_weekday(d, last),
            DayOfMonth::NearestWeekday(n) => *n <= last && d.day() == nearest_weekday(d, *n),
        };
        let dow = d.weekday().number_from_sunday();
        let dow_ok = match &self.day_of_week {
            DayOfWeek::Any => true,
            DayOfWeek::Days(bits) => bits & (1 << dow) != 0,
            DayOfWeek::Last(w) => dow == *w && d.day() + 7 > last,
            DayOfWeek::Nth(w, k) => dow == *w && (d.day() - 1) / 7 + 1 == *k,
        };
        dom_ok && dow_ok
    }
}

fn first_of_next_month(d: NaiveDate) -> Option<NaiveDate> {
    if d.month() == 12 {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
    }
}

fn last_day_of_month(d: NaiveDate) -> u32 {
    first_of_next_month(d)
        .and_then(|n| n.pred_opt())
        .map_or(28, |l| l.day())
}

/// The weekday nearest to day `n` of `d`'s month, never leaving the month (Quartz `nW`).
fn nearest_weekday(d: NaiveDate, n: u32) -> u32 {
    let last = last_day_of_month(d);
    let Some(target) = d.with_day(n) else {
        return 0;
    };
    match target.weekday() {
        Weekday::Sat if n == 1 => 3,
        Weekday::Sat => n - 1,
        Weekday::Sun if n == last => n - 2,
        Weekday::Sun => n + 1,
        _ => n,
    }
}

impl Schedule {
    /// Whether this is a cron expression (ApplyOnlyAtCronInterval applies only to those).
    pub fn is_cron(&self) -> bool {
        matches!(self, Schedule::Cron(_))
    }

    /// The first run strictly after `after`. A rate counts whole periods from
    /// `anchor` (the association's creation or last run); a cron expression
    /// ignores it.
    pub fn next_after(&self, after: DateTime<Utc>, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => c.next_after(Some(after)),
            Schedule::Rate { every, unit } => {
                let period = i64::from(*every) * unit.minutes() * 60_000;
                let since = after.timestamp_millis() - anchor.timestamp_millis();
                let k = if since < 0 { 1 } else { since / period + 1 };
                DateTime::from_timestamp_millis(anchor.timestamp_millis() + k * period)
            }
        }
    }

    /// The period of a rate expression.
    pub fn rate_period(&self) -> Option<std::time::Duration> {
        match self {
            Schedule::Rate { every, unit } => Some(std::time::Duration::from_secs(
                u64::from(*every) * unit.minutes() as u64 * 60,
            )),
            Schedule::Cron(_) => None,
        }
    }
}
