//! IAM's policy language, as users copy it from AWS: parsing (with a refusal
//! that names the statement and the field, IAM's `MalformedPolicyDocument`)
//! and evaluation of a request against a principal's policies — an explicit
//! `Deny` beats an `Allow`, which beats the implicit deny.
//!
//! - [`policy`]: the grammar — `Version`, `Statement` (one or a list) with
//!   `Sid`, `Effect`, `Action`/`NotAction`, `Resource`/`NotResource`,
//!   `Condition`.
//! - [`condition`]: condition operators (string, numeric, date, boolean, IP
//!   address, ARN, `Null`; `…IfExists`; `ForAnyValue:`/`ForAllValues:`).
//! - [`eval`]: a request (action, resource, context keys) and the decision,
//!   naming the statement that decided.
//! - [`glob`]: IAM's wildcards (`*`, `?`).
//!
//! Pure: no IO, no clock (the request carries `aws:CurrentTime`), so every
//! rule is tested with tables. What the names mean — which actions and
//! resources exist — is the caller's [`policy::Vocabulary`].

pub mod condition;
pub mod context;
pub mod error;
pub mod eval;
pub mod glob;
pub mod policy;

pub use eval::{Context, Decision, Request, evaluate};
pub use policy::{Effect, Policy, PolicyError, Vocabulary};

#[cfg(test)]
mod tests;
