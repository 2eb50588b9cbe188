//! Evaluation: does a principal's set of policies allow a request?
//!
//! IAM's order: a statement that applies with `Effect: Deny` denies,
//! whatever else applies; else one that applies with `Allow` allows; else
//! the request is denied implicitly. A statement applies when its action
//! and resource patterns match and every condition holds.

pub use crate::context::Context;
use crate::glob;
use crate::policy::{Effect, Patterns, Policy, Statement, Version};

/// One request: an action (`ssm:SendCommand`) on a resource (an ARN).
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub action: &'a str,
    pub resource: &'a str,
    pub context: &'a Context,
}

/// Which statement decided: the policy's index in the list evaluated, the
/// statement's index in it, and its `Sid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decider {
    pub policy: usize,
    pub statement: usize,
    pub sid: Option<String>,
}

/// The outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed(Decider),
    /// A `Deny` statement applies.
    ExplicitlyDenied(Decider),
    /// No statement allows it.
    ImplicitlyDenied,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed(_))
    }
}

/// Policy variables of the 2012 language, substituted in resources and
/// condition values: `${key}`, `${key, 'default'}`, and the escapes `${*}`,
/// `${?}`, `${$}`. None when a variable cannot be resolved (the pattern then
/// matches nothing, as in IAM).
pub fn substitute(text: &str, ctx: &Context) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Some(out);
        };
        let inner = after[..end].trim();
        match inner {
            "*" | "?" | "$" => out.push_str(inner),
            _ => {
                let (key, default) = match inner.split_once(',') {
                    Some((k, d)) => {
                        let d = d.trim();
                        let d = d
                            .strip_prefix('\'')
                            .and_then(|d| d.strip_suffix('\''))
                            .unwrap_or(d);
                        (k.trim(), Some(d))
                    }
                    None => (inner, None),
                };
                out.push_str(ctx.one(key).or(default)?);
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn matches(p: &Patterns, text: &str, fold: bool, resolve: &dyn Fn(&str) -> Option<String>) -> bool {
    let any = p
        .patterns
        .iter()
        .any(|pat| resolve(pat).is_some_and(|pat| glob::matches(&pat, text, fold)));
    any != p.negated
}

/// Whether `s` of a policy of `version` applies to `req`.
pub fn applies(s: &Statement, version: Version, req: &Request<'_>) -> bool {
    let resolve = |text: &str| -> Option<String> {
        match version {
            Version::V2012 => substitute(text, req.context),
            Version::V2008 => Some(text.to_string()),
        }
    };
    // Actions have no variables, and match without case.
    matches(&s.action, req.action, true, &|t| Some(t.to_string()))
        && matches(&s.resource, req.resource, false, &resolve)
        && s.conditions.iter().all(|c| c.holds(req.context, &resolve))
}

/// Evaluates `req` against every policy of the principal.
pub fn evaluate(policies: &[&Policy], req: &Request<'_>) -> Decision {
    let mut allowed = None;
    for (p, policy) in policies.iter().enumerate() {
        for (i, s) in policy.statements.iter().enumerate() {
            if !applies(s, policy.version, req) {
                continue;
            }
            let decider = Decider {
                policy: p,
                statement: i,
                sid: s.sid.clone(),
            };
            match s.effect {
                Effect::Deny => return Decision::ExplicitlyDenied(decider),
                Effect::Allow => {
                    allowed.get_or_insert(decider);
                }
            }
        }
    }
    match allowed {
        Some(d) => Decision::Allowed(d),
        None => Decision::ImplicitlyDenied,
    }
}
