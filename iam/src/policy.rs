//! The policy grammar: JSON in, a [`Policy`] out, or a refusal naming the
//! statement and the field (IAM's `MalformedPolicyDocument`).

use serde_json::{Map, Value};

use crate::condition::Condition;
pub use crate::error::PolicyError;
use crate::error::refuse;

/// `Version`: the 2012 language has policy variables; the 2008 one (also
/// what an absent `Version` means) takes `${…}` literally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2008,
    V2012,
}

/// What a statement does when it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// `Action`/`NotAction` or `Resource`/`NotResource`: the patterns, and
/// whether the statement applies to what they do *not* match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patterns {
    pub negated: bool,
    pub patterns: Vec<String>,
}

/// One statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub action: Patterns,
    pub resource: Patterns,
    /// Every condition must hold (they are ANDed).
    pub conditions: Vec<Condition>,
}

/// A parsed policy document.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub version: Version,
    pub statements: Vec<Statement>,
}

/// What the caller's world has: the actions and resources a policy may
/// name. A name with no wildcard that the vocabulary does not know is a
/// refusal (a typo would otherwise never match and never be noticed).
#[derive(Clone, Debug, Default)]
pub struct Vocabulary {
    /// Every action, `service:Name` (e.g. `ssm:SendCommand`).
    pub actions: Vec<String>,
    /// The services a resource ARN may name, each with its resource types
    /// (the part of the resource before `/`), e.g. `("ssm", ["document", …])`.
    pub resources: Vec<(String, Vec<String>)>,
}

/// One string or a list of strings (`"Action": "ssm:*"` or `["ssm:A", "ssm:B"]`).
fn strings(at: &str, field: &str, v: &Value) -> Result<Vec<String>, PolicyError> {
    let one = |x: &Value| match x {
        Value::String(s) => Ok(s.clone()),
        other => Err(refuse(
            at,
            format!("{field} must be a string or a list of strings, got {other}"),
        )),
    };
    let list = match v {
        Value::Array(items) => items.iter().map(one).collect::<Result<Vec<_>, _>>()?,
        other => vec![one(other)?],
    };
    if list.is_empty() {
        return Err(refuse(at, format!("{field} must name at least one value")));
    }
    Ok(list)
}

/// Exactly one of `field` and `Not{field}`.
fn patterns(at: &str, obj: &Map<String, Value>, field: &str) -> Result<Patterns, PolicyError> {
    let not = format!("Not{field}");
    match (obj.get(field), obj.get(&not)) {
        (Some(v), None) => Ok(Patterns {
            negated: false,
            patterns: strings(at, field, v)?,
        }),
        (None, Some(v)) => Ok(Patterns {
            negated: true,
            patterns: strings(at, &not, v)?,
        }),
        (Some(_), Some(_)) => Err(refuse(at, format!("give {field} or {not}, not both"))),
        (None, None) => Err(refuse(at, format!("{field} (or {not}) is required"))),
    }
}

impl Vocabulary {
    fn check_action(&self, at: &str, field: &str, a: &str) -> Result<(), PolicyError> {
        if a == "*" {
            return Ok(());
        }
        let Some((service, name)) = a.split_once(':') else {
            return Err(refuse(
                at,
                format!("{field} {a:?} must be service:Action (e.g. ssm:SendCommand) or *"),
            ));
        };
        if self.actions.is_empty() {
            return Ok(());
        }
        let known_service = self.actions.iter().any(|k| {
            k.split_once(':')
                .is_some_and(|(s, _)| s.eq_ignore_ascii_case(service))
        });
        if !known_service && !service.contains(['*', '?']) {
            return Err(refuse(
                at,
                format!("{field} {a:?}: there is no service {service:?}"),
            ));
        }
        if name.is_empty() {
            return Err(refuse(at, format!("{field} {a:?} names no action")));
        }
        if !a.contains(['*', '?']) && !self.actions.iter().any(|k| k.eq_ignore_ascii_case(a)) {
            let close: Vec<&String> = self
                .actions
                .iter()
                .filter(|k| {
                    k.split_once(':')
                        .is_some_and(|(s, n)| s.eq_ignore_ascii_case(service) && similar(n, name))
                })
                .collect();
            let hint = match close.first() {
                Some(k) => format!(" (did you mean {k}?)"),
                None => String::new(),
            };
            return Err(refuse(
                at,
                format!("{field} {a:?} is not an action Tether knows{hint}"),
            ));
        }
        Ok(())
    }

    fn check_resource(&self, at: &str, field: &str, r: &str) -> Result<(), PolicyError> {
        if r == "*" {
            return Ok(());
        }
        let parts: Vec<&str> = r.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" {
            return Err(refuse(
                at,
                format!(
                    "{field} {r:?} must be * or an ARN (arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE)"
                ),
            ));
        }
        let wild = |s: &str| s.contains(['*', '?']);
        let (partition, service, account, resource) = (parts[1], parts[2], parts[4], parts[5]);
        if partition != "aws" && !wild(partition) {
            return Err(refuse(
                at,
                format!("{field} {r:?}: the partition must be aws, not {partition:?}"),
            ));
        }
        let account_ok = account.is_empty()
            || wild(account)
            || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()));
        if !account_ok {
            return Err(refuse(
                at,
                format!("{field} {r:?}: the account {account:?} must be 12 digits"),
            ));
        }
        if self.resources.is_empty() || wild(service) {
            return Ok(());
        }
        let Some((_, types)) = self.resources.iter().find(|(s, _)| s == service) else {
            let known: Vec<&str> = self.resources.iter().map(|(s, _)| s.as_str()).collect();
            return Err(refuse(
                at,
                format!(
                    "{field} {r:?}: there is no service {service:?} (Tether's are {})",
                    known.join(", ")
                ),
            ));
        };
        let kind = resource.split(['/', ':']).next().unwrap_or(resource);
        if !wild(kind) && !types.iter().any(|t| t == kind) {
            return Err(refuse(
                at,
                format!(
                    "{field} {r:?}: {service} has no resource type {kind:?} (it has {})",
                    types.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// Whether two names differ by at most two edits (a typo).
fn similar(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (
        a.to_ascii_lowercase().chars().collect(),
        b.to_ascii_lowercase().chars().collect(),
    );
    if a.len().abs_diff(b.len()) > 2 {
        return false;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()] <= 2
}

const STATEMENT_FIELDS: [&str; 8] = [
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
    "Principal",
];

impl Policy {
    /// Parses a policy document, checking its names against `vocabulary`.
    pub fn parse(text: &str, vocabulary: &Vocabulary) -> Result<Policy, PolicyError> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| refuse("", format!("the policy is not valid JSON: {e}")))?;
        let Value::Object(doc) = doc else {
            return Err(refuse("", "the policy must be a JSON object"));
        };
        for key in doc.keys() {
            if !["Version", "Id", "Statement"].contains(&key.as_str()) {
                return Err(refuse(
                    "",
                    format!("unknown field {key:?} (a policy has Version, Id and Statement)"),
                ));
            }
        }
        let version = match doc.get("Version") {
            None => Version::V2008,
            Some(Value::String(v)) if v == "2012-10-17" => Version::V2012,
            Some(Value::String(v)) if v == "2008-10-17" => Version::V2008,
            Some(other) => {
                return Err(refuse(
                    "",
                    format!("Version {other} is not 2012-10-17 (or 2008-10-17)"),
                ));
            }
        };
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) if !list.is_empty() => list.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            Some(_) => {
                return Err(refuse(
                    "",
                    "Statement must be a statement or a non-empty list of statements",
                ));
            }
            None => return Err(refuse("", "Statement is required")),
        };
        let mut out = Vec::with_capacity(statements.len());
        let mut sids: Vec<String> = Vec::new();
        for (i, s) in statements.into_iter().enumerate() {
            let Value::Object(obj) = s else {
                return Err(refuse(
                    &format!("Statement {}: ", i + 1),
                    "a statement must be a JSON object",
                ));
            };
            let sid = match obj.get("Sid") {
                None => None,
                Some(Value::String(s)) if s.chars().all(|c| c.is_ascii_alphanumeric()) => {
                    Some(s.clone())
                }
                Some(other) => {
                    return Err(refuse(
                        &format!("Statement {}: ", i + 1),
                        format!("Sid {other} must be letters and digits only"),
                    ));
                }
            };
            let at = match &sid {
                Some(sid) => format!("Statement {} (Sid {sid}): ", i + 1),
                None => format!("Statement {}: ", i + 1),
            };
            if let Some(sid) = &sid {
                if sids.contains(sid) {
                    return Err(refuse(&at, "the Sid is used by another statement"));
                }
                sids.push(sid.clone());
            }
            for key in obj.keys() {
                if !STATEMENT_FIELDS.contains(&key.as_str()) {
                    return Err(refuse(
                        &at,
                        format!(
                            "unknown field {key:?} (a statement has {})",
                            STATEMENT_FIELDS[..7].join(", ")
                        ),
                    ));
                }
            }
            if obj.contains_key("Principal") {
                return Err(refuse(
                    &at,
                    "Principal: a user's policy must not name a principal (it applies to the user)",
                ));
            }
            let effect = match obj.get("Effect") {
                Some(Value::String(e)) if e == "Allow" => Effect::Allow,
                Some(Value::String(e)) if e == "Deny" => Effect::Deny,
                Some(other) => {
                    return Err(refuse(&at, format!("Effect {other} must be Allow or Deny")));
                }
                None => return Err(refuse(&at, "Effect is required (Allow or Deny)")),
            };
            let action = patterns(&at, obj, "Action")?;
            let field = if action.negated {
                "NotAction"
            } else {
                "Action"
            };
            for a in &action.patterns {
                vocabulary.check_action(&at, field, a)?;
            }
            let resource = patterns(&at, obj, "Resource")?;
            let field = if resource.negated {
                "NotResource"
            } else {
                "Resource"
            };
            for r in &resource.patterns {
                vocabulary.check_resource(&at, field, r)?;
            }
            let conditions = match obj.get("Condition") {
                None => Vec::new(),
                Some(c) => Condition::parse_block(&at, c)?,
            };
            out.push(Statement {
                sid,
                effect,
                action,
                resource,
                conditions,
            });
        }
        Ok(Policy {
            version,
            statements: out,
        })
    }
}
