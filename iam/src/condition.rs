//! Condition operators, as IAM defines them.
//!
//! A `Condition` block is `{Operator: {Key: value or [values]}}`. Every
//! operator and every key in it must hold (AND); a key holds when any of its
//! values matches (OR) — for a negated operator (`StringNotEquals`, …), when
//! none does. A key absent from the request fails a condition, except a
//! negated one, one suffixed `IfExists`, `ForAllValues:`, and `Null`
//! (which asks exactly that).

use std::net::IpAddr;

use serde_json::Value;

use crate::context::Context;
use crate::error::{PolicyError, refuse as refuse_at};
use crate::glob;

/// What an operator compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    String,
    StringIgnoreCase,
    StringLike,
    Numeric,
    Date,
    Bool,
    Ip,
    Arn,
    ArnLike,
    Null,
}

/// How: equal, less, greater…
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    Equals,
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
}

/// How a key with several values in the request is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOperator {
    /// A single-valued key (any of its values matching will do).
    Single,
    /// `ForAnyValue:`: at least one value of the request matches.
    AnyValue,
    /// `ForAllValues:`: every value of the request matches (none: true).
    AllValues,
}

/// One key of one operator of a `Condition` block.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// As written (`StringEquals`, `ForAnyValue:StringLikeIfExists`, …).
    pub operator: String,
    pub kind: Kind,
    pub compare: Compare,
    pub negated: bool,
    pub if_exists: bool,
    pub set: SetOperator,
    /// The context key, as written (keys are matched without case).
    pub key: String,
    pub values: Vec<String>,
}

/// The operators IAM has: (name, kind, comparison, negated).
const OPERATORS: &[(&str, Kind, Compare, bool)] = &[
    ("StringEquals", Kind::String, Compare::Equals, false),
    ("StringNotEquals", Kind::String, Compare::Equals, true),
    (
        "StringEqualsIgnoreCase",
        Kind::StringIgnoreCase,
        Compare::Equals,
        false,
    ),
    (
        "StringNotEqualsIgnoreCase",
        Kind::StringIgnoreCase,
        Compare::Equals,
        true,
    ),
    ("StringLike", Kind::StringLike, Compare::Equals, false),
    ("StringNotLike", Kind::StringLike, Compare::Equals, true),
    ("NumericEquals", Kind::Numeric, Compare::Equals, false),
    ("NumericNotEquals", Kind::Numeric, Compare::Equals, true),
    ("NumericLessThan", Kind::Numeric, Compare::LessThan, false),
    (
        "NumericLessThanEquals",
        Kind::Numeric,
        Compare::LessThanEquals,
        false,
    ),
    (
        "NumericGreaterThan",
        Kind::Numeric,
        Compare::GreaterThan,
        false,
    ),
    (
        "NumericGreaterThanEquals",
        Kind::Numeric,
        Compare::GreaterThanEquals,
        false,
    ),
    ("DateEquals", Kind::Date, Compare::Equals, false),
    ("DateNotEquals", Kind::Date, Compare::Equals, true),
    ("DateLessThan", Kind::Date, Compare::LessThan, false),
    (
        "DateLessThanEquals",
        Kind::Date,
        Compare::LessThanEquals,
        false,
    ),
    ("DateGreaterThan", Kind::Date, Compare::GreaterThan, false),
    (
        "DateGreaterThanEquals",
        Kind::Date,
        Compare::GreaterThanEquals,
        false,
    ),
    ("Bool", Kind::Bool, Compare::Equals, false),
    ("IpAddress", Kind::Ip, Compare::Equals, false),
    ("NotIpAddress", Kind::Ip, Compare::Equals, true),
    ("ArnEquals", Kind::Arn, Compare::Equals, false),
    ("ArnNotEquals", Kind::Arn, Compare::Equals, true),
    ("ArnLike", Kind::ArnLike, Compare::Equals, false),
    ("ArnNotLike", Kind::ArnLike, Compare::Equals, true),
    ("Null", Kind::Null, Compare::Equals, false),
];

/// A date as IAM accepts it: ISO 8601 (any of its usual spellings) or epoch
/// seconds; in milliseconds.
pub fn parse_date(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis());
    }
    s.parse::<i64>().ok().map(|secs| secs.saturating_mul(1000))
}

fn parse_ip(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Condition {
    /// Parses a statement's `Condition` block; `at` names the statement.
    pub fn parse_block(at: &str, block: &Value) -> Result<Vec<Condition>, PolicyError> {
        let Value::Object(ops) = block else {
            return Err(refuse_at(at, "Condition must be an object of operators"));
        };
        let mut out = Vec::new();
        for (name, keys) in ops {
            let (set, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
                (SetOperator::AnyValue, r)
            } else if let Some(r) = name.strip_prefix("ForAllValues:") {
                (SetOperator::AllValues, r)
            } else {
                (SetOperator::Single, name.as_str())
            };
            let (base, if_exists) = match rest.strip_suffix("IfExists") {
                Some(b) => (b, true),
                None => (rest, false),
            };
            let Some(&(_, kind, compare, negated)) = OPERATORS.iter().find(|(n, ..)| *n == base)
            else {
                return Err(refuse_at(
                    at,
                    format!(
                        "Condition: unknown operator {name:?} (e.g. StringEquals, StringLike, Bool, DateLessThan, IpAddress)"
                    ),
                ));
            };
            if kind == Kind::Null && (if_exists || set != SetOperator::Single) {
                return Err(refuse_at(
                    at,
                    format!("Condition: {name:?}: Null takes no IfExists and no set operator"),
                ));
            }
            let Value::Object(keys) = keys else {
                return Err(refuse_at(
                    at,
                    format!("Condition {name}: must be an object of condition keys"),
                ));
            };
            if keys.is_empty() {
                return Err(refuse_at(at, format!("Condition {name}: names no key")));
            }
            for (key, v) in keys {
                let values: Vec<String> = match v {
                    Value::Array(list) => list.iter().map(value_text).collect::<Option<_>>(),
                    one => value_text(one).map(|s| vec![s]),
                }
                .filter(|vs: &Vec<String>| !vs.is_empty())
                .ok_or_else(|| {
                    refuse_at(
                        at,
                        format!(
                            "Condition {name} {key}: the value must be a string, number or boolean, or a non-empty list of them"
                        ),
                    )
                })?;
                for value in &values {
                    let ok = match kind {
                        Kind::Numeric => value.parse::<f64>().is_ok(),
                        Kind::Date => parse_date(value).is_some(),
                        Kind::Bool | Kind::Null => {
                            value.eq_ignore_ascii_case("true")
                                || value.eq_ignore_ascii_case("false")
                        }
                        Kind::Ip => parse_ip(value).is_some(),
                        _ => true,
                    };
                    if !ok {
                        return Err(refuse_at(
                            at,
                            format!(
                                "Condition {name} {key}: {value:?} is not a valid value for {base}"
                            ),
                        ));
                    }
                }
                out.push(Condition {
                    operator: name.clone(),
                    kind,
                    compare,
                    negated,
                    if_exists,
                    set,
                    key: key.clone(),
                    values,
                });
            }
        }
        Ok(out)
    }

    /// Whether this condition holds for the request's context; `resolve`
    /// substitutes policy variables in a condition value (None: unresolvable,
    /// the value matches nothing).
    pub fn holds(&self, ctx: &Context, resolve: &dyn Fn(&str) -> Option<String>) -> bool {
        let present = ctx.get(&self.key);
        if self.kind == Kind::Null {
            let absent = present.is_none_or(|v| v.is_empty());
            return self
                .values
                .iter()
                .any(|v| v.eq_ignore_ascii_case("true") == absent);
        }
        let values: Vec<String> = self.values.iter().filter_map(|v| resolve(v)).collect();
        let Some(actual) = present.filter(|v| !v.is_empty()) else {
            return match self.set {
                // Every value of none: vacuously true.
                SetOperator::AllValues => true,
                // Any value of none: false.
                SetOperator::AnyValue => self.if_exists,
                SetOperator::Single => self.if_exists || self.negated,
            };
        };
        // Whether one value of the request matches one of the condition's
        // values under the positive form of the operator.
        let matches_one = |a: &str| values.iter().any(|want| self.positive(a, want));
        match self.set {
            SetOperator::Single | SetOperator::AnyValue => {
                if self.negated {
                    // StringNotEquals: the value is none of them.
                    match self.set {
                        SetOperator::Single => !actual.iter().any(|a| matches_one(a)),
                        _ => actual.iter().any(|a| !matches_one(a)),
                    }
                } else {
                    actual.iter().any(|a| matches_one(a))
                }
            }
            SetOperator::AllValues => {
                if self.negated {
                    actual.iter().all(|a| !matches_one(a))
                } else {
                    actual.iter().all(|a| matches_one(a))
                }
            }
        }
    }

    /// The operator's positive comparison of a request value with a
    /// condition value.
    fn positive(&self, actual: &str, want: &str) -> bool {
        use std::cmp::Ordering;
        let by = |o: Option<Ordering>| match (o, self.compare) {
            (Some(o), Compare::Equals) => o == Ordering::Equal,
            (Some(o), Compare::LessThan) => o == Ordering::Less,
            (Some(o), Compare::LessThanEquals) => o != Ordering::Greater,
            (Some(o), Compare::GreaterThan) => o == Ordering::Greater,
            (Some(o), Compare::GreaterThanEquals) => o != Ordering::Less,
            (None, _) => false,
        };
        match self.kind {
            Kind::String | Kind::Arn => actual == want,
            Kind::StringIgnoreCase => actual.eq_ignore_ascii_case(want),
            Kind::StringLike | Kind::ArnLike => glob::matches(want, actual, false),
            Kind::Numeric => by(actual
                .parse::<f64>()
                .ok()
                .zip(want.parse::<f64>().ok())
                .and_then(|(a, w)| a.partial_cmp(&w))),
            Kind::Date => by(parse_date(actual)
                .zip(parse_date(want))
                .map(|(a, w)| a.cmp(&w))),
            Kind::Bool => actual.eq_ignore_ascii_case(want),
            Kind::Ip => match (actual.parse::<IpAddr>(), parse_ip(want)) {
                (Ok(a), Some(net)) => net.contains(&a),
                _ => false,
            },
            Kind::Null => false,
        }
    }
}
