//! One cron field at a time: lists, ranges, steps and names, plus the special
//! forms of the two day fields. Every refusal names the field and the rule.

use crate::{ScheduleError, YEAR_MAX, YEAR_MIN};

pub(crate) const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
pub(crate) const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The day-of-month field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayOfMonth {
    /// `?`
    Any,
    /// Bit d (1..=31) set: day d fires.
    Days(u32),
    /// `L`: the last day of the month.
    Last,
    /// `LW`: the last weekday of the month.
    LastWeekday,
    /// `nW`: the weekday nearest day n, within the month.
    NearestWeekday(u32),
}

/// The day-of-week field (1 = Sunday ... 7 = Saturday).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayOfWeek {
    /// `?`
    Any,
    /// Bit w (1..=7) set: weekday w fires.
    Days(u8),
    /// `nL`: the last weekday n of the month.
    Last(u32),
    /// `n#k`: the k-th weekday n of the month.
    Nth(u32, u32),
}

pub(crate) fn error(expr: &str, field: &'static str, value: &str, why: &str) -> ScheduleError {
    ScheduleError::Field {
        expr: expr.to_string(),
        field,
        value: value.to_string(),
        why: why.to_string(),
    }
}

/// Every value a list/range/step field names, each within `lo..=hi`.
fn values(
    expr: &str,
    field: &'static str,
    value: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
) -> Result<Vec<u32>, ScheduleError> {
    let err = |why: String| error(expr, field, value, &why);
    if value.is_empty() {
        return Err(err("is empty".into()));
    }
    let number = |s: &str| -> Result<u32, ScheduleError> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(lo + i as u32);
        }
        match s.parse::<u32>() {
            Ok(v) if s.chars().all(|c| c.is_ascii_digit()) && (lo..=hi).contains(&v) => Ok(v),
            Ok(_) | Err(_) if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() => Err(err(
                format!("{s} is out of range: {field} must be between {lo} and {hi}"),
            )),
            _ if s.contains(['L', 'W', '#']) => Err(err(format!(
                "{s:?}: L, W and # are allowed only alone in day-of-month (L, LW, nW) or day-of-week (L, nL, n#k)"
            ))),
            _ => {
                let named = if names.is_empty() {
                    String::new()
                } else {
                    format!(" or a name ({}-{})", names[0], names[names.len() - 1])
                };
                Err(err(format!(
                    "{s:?} is not a number between {lo} and {hi}{named}"
                )))
            }
        }
    };
    let mut out = Vec::new();
    for item in value.split(',') {
        if item == "?" {
            return Err(err(
                "? is allowed only in day-of-month or day-of-week, alone".into(),
            ));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step = match s.parse::<u32>() {
                    Ok(v) if v >= 1 && s.chars().all(|c| c.is_ascii_digit()) => v,
                    _ => {
                        return Err(err(format!(
                            "step {s:?} must be a whole number of at least 1"
                        )));
                    }
                };
                (r, Some(step))
            }
            None => (item, None),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((x, y)) = range.split_once('-') {
            let (x, y) = (number(x)?, number(y)?);
            if x > y {
                return Err(err(format!(
                    "range {range:?} runs backwards: its start must not exceed its end"
                )));
            }
            (x, y)
        } else {
            let x = number(range)?;
            // `a/s` runs from a to the field's end.
            (x, if step.is_some() { hi } else { x })
        };
        let step = step.unwrap_or(1);
        let mut v = a;
        while v <= b {
            out.push(v);
            v += step;
        }
    }
    Ok(out)
}

pub(crate) fn numeric(
    expr: &str,
    field: &'static str,
    value: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
) -> Result<u64, ScheduleError> {
    Ok(values(expr, field, value, lo, hi, names)?
        .into_iter()
        .fold(0, |acc, v| acc | (1 << v)))
}

pub(crate) fn years(expr: &str, value: &str) -> Result<Vec<i32>, ScheduleError> {
    let mut ys: Vec<i32> = values(expr, "year", value, YEAR_MIN as u32, YEAR_MAX as u32, &[])?
        .into_iter()
        .map(|y| y as i32)
        .collect();
    ys.sort_unstable();
    ys.dedup();
    Ok(ys)
}

pub(crate) fn day_of_month(expr: &str, value: &str) -> Result<DayOfMonth, ScheduleError> {
    match value {
        "?" => return Ok(DayOfMonth::Any),
        "L" => return Ok(DayOfMonth::Last),
        "LW" => return Ok(DayOfMonth::LastWeekday),
        _ => {}
    }
    if let Some(n) = value.strip_suffix('W') {
        return match n.parse::<u32>() {
            Ok(d) if (1..=31).contains(&d) && n.chars().all(|c| c.is_ascii_digit()) => {
                Ok(DayOfMonth::NearestWeekday(d))
            }
            _ => Err(error(
                expr,
                "day-of-month",
                value,
                "W follows one day number between 1 and 31 (e.g. 15W)",
            )),
        };
    }
    if value.starts_with("L-") {
        return Err(error(
            expr,
            "day-of-month",
            value,
            "offsets from the last day (L-n) are not accepted; use L or LW",
        ));
    }
    numeric(expr, "day-of-month", value, 1, 31, &[]).map(|b| DayOfMonth::Days(b as u32))
}

pub(crate) fn day_of_week(expr: &str, value: &str) -> Result<DayOfWeek, ScheduleError> {
    let day = |s: &str| -> Result<u32, ScheduleError> {
        values(expr, "day-of-week", s, 1, 7, &DAYS).and_then(|v| match v.as_slice() {
            [d] => Ok(*d),
            _ => Err(error(
                expr,
                "day-of-week",
                value,
                "L and # follow a single day (e.g. 6L, MON#2)",
            )),
        })
    };
    match value {
        "?" => return Ok(DayOfWeek::Any),
        // Alone, L is the last day of the week: Saturday.
        "L" => return Ok(DayOfWeek::Days(1 << 7)),
        _ => {}
    }
    if let Some((d, k)) = value.split_once('#') {
        let w = day(d)?;
        return match k.parse::<u32>() {
            Ok(n) if (1..=5).contains(&n) && k.len() == 1 => Ok(DayOfWeek::Nth(w, n)),
            _ => Err(error(
                expr,
                "day-of-week",
                value,
                "the number after # must be between 1 and 5 (the week of the month)",
            )),
        };
    }
    if let Some(d) = value.strip_suffix('L')
        && !DAYS.iter().any(|n| n.eq_ignore_ascii_case(value))
    {
        return Ok(DayOfWeek::Last(day(d)?));
    }
    numeric(expr, "day-of-week", value, 1, 7, &DAYS).map(|b| DayOfWeek::Days(b as u8))
}
