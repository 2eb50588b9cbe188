//! Rate control: `MaxConcurrency` and `MaxErrors`, a count (`10`) or a
//! percentage of the targets (`10%`), parsed once and resolved against the
//! number of targets by one rule each.

use std::fmt;
use std::str::FromStr;

use crate::ApiError;

/// A count or a percentage, as SSM's `MaxConcurrency` and `MaxErrors` take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    Count(u64),
    /// 0 to 100.
    Percent(u8),
}

impl FromStr for Rate {
    type Err = ApiError;

    /// `N` or `N%` (0 to 100), without leading zeros, as the model's
    /// patterns allow; whether 0 is allowed is the caller's rule.
    fn from_str(s: &str) -> Result<Rate, ApiError> {
        let bad = || {
            ApiError::validation(format!(
                "{s:?} is not a rate: give a number (e.g. 10) or a percentage from 0% to 100% (e.g. 10%)"
            ))
        };
        let (digits, percent) = match s.strip_suffix('%') {
            Some(d) => (d, true),
            None => (s, false),
        };
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        if percent {
            u8::try_from(n)
                .ok()
                .filter(|p| *p <= 100)
                .map(Rate::Percent)
                .ok_or_else(bad)
        } else {
            Ok(Rate::Count(n))
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Count(n) => write!(f, "{n}"),
            Rate::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Rate {
    /// SSM's default MaxConcurrency.
    pub const DEFAULT_CONCURRENCY: Rate = Rate::Count(50);
    /// SSM's default MaxErrors.
    pub const DEFAULT_ERRORS: Rate = Rate::Count(0);

    /// How many of `targets` invocations may run at once: a percentage
    /// rounds up, as SSM's does, and at least one always may.
    pub fn concurrency(self, targets: u64) -> u64 {
        match self {
            Rate::Count(n) => n.max(1),
            Rate::Percent(p) => (targets * u64::from(p)).div_ceil(100).max(1),
        }
    }

    /// How many of `targets` invocations may fail before the command stops
    /// (a percentage rounds down).
    pub fn errors_allowed(self, targets: u64) -> u64 {
        match self {
            Rate::Count(n) => n,
            Rate::Percent(p) => targets * u64::from(p) / 100,
        }
    }

    /// Whether it is zero (`0` or `0%`): MaxConcurrency refuses that.
    pub fn is_zero(self) -> bool {
        matches!(self, Rate::Count(0) | Rate::Percent(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_the_model_allows() {
        for (text, want) in [
            ("50", Some(Rate::Count(50))),
            ("0", Some(Rate::Count(0))),
            ("10%", Some(Rate::Percent(10))),
            ("100%", Some(Rate::Percent(100))),
            ("0%", Some(Rate::Percent(0))),
            ("101%", None),
            ("05", None),
            ("x", None),
            ("", None),
            ("%", None),
            ("-1", None),
            ("1.5", None),
            ("99999999999999999999", None),
        ] {
            assert_eq!(text.parse::<Rate>().ok(), want, "{text:?}");
            if let Some(r) = want {
                assert_eq!(r.to_string(), text);
            }
        }
    }

    #[test]
    fn resolved_against_the_targets() {
        for (rate, targets, concurrency, errors) in [
            (Rate::Count(50), 10, 50, 50),
            (Rate::Count(0), 10, 1, 0),
            (Rate::Percent(10), 10, 1, 1),
            (Rate::Percent(10), 15, 2, 1),
            (Rate::Percent(50), 3, 2, 1),
            (Rate::Percent(100), 7, 7, 7),
            (Rate::Percent(1), 1, 1, 0),
            (Rate::Percent(0), 10, 1, 0),
        ] {
            assert_eq!(
                rate.concurrency(targets),
                concurrency,
                "{rate} of {targets}"
            );
            assert_eq!(rate.errors_allowed(targets), errors, "{rate} of {targets}");
        }
    }
}
