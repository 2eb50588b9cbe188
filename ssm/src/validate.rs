//! Checks an SSM request against botocore's model before it reaches the action
//! layer: required members, JSON types, string lengths, patterns and enums,
//! number ranges, list and map sizes — what AWS's front end refuses with a
//! `ValidationException` ("N validation errors detected: Value ... at
//! 'instanceIds.1.member' failed to satisfy constraint: ...").
//!
//! Pure: it reads the embedded model (`model.rs`) and the request, nothing
//! else. Members the model does not know are left to the action layer (Tether's
//! own extras such as `FullOutput`). The model's patterns are ECMAScript-style
//! (look-ahead included), so they are compiled with `fancy-regex`, once each.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use crate::ApiError;
use crate::model;

/// Past this many problems the message stops listing them.
const MAX_LISTED: usize = 10;

/// Validates `request` as the input of `operation`.
pub fn request(operation: &str, request: &Value) -> Result<(), ApiError> {
    let m = model::model();
    let Some(input) = m
        .operation(operation)
        .and_then(|op| op["input"]["shape"].as_str())
    else {
        return Ok(());
    };
    let empty = Value::Object(Default::default());
    let body = if request.is_null() { &empty } else { request };
    let mut v = Validator::default();
    v.value(input, body, "");
    if let Some(e) = v.type_error {
        return Err(ApiError::new(
            "SerializationException",
            format!("{operation}: {e}"),
        ));
    }
    match v.problems.len() {
        0 => Ok(()),
        n => {
            let listed: Vec<&str> = v
                .problems
                .iter()
                .take(MAX_LISTED)
                .map(String::as_str)
                .collect();
            let noun = if n == 1 { "error" } else { "errors" };
            Err(ApiError::new(
                "ValidationException",
                format!(
                    "{n} validation {noun} detected: {}{}",
                    listed.join("; "),
                    if n > MAX_LISTED { "; ..." } else { "" }
                ),
            ))
        }
    }
}

#[derive(Default)]
struct Validator {
    problems: Vec<String>,
    type_error: Option<String>,
}

/// `InstanceIds` → `instanceIds`, as AWS names members in its messages.
fn camel(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn join(path: &str, part: &str) -> String {
    if path.is_empty() {
        part.to_string()
    } else {
        format!("{path}.{part}")
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::String(s) => format!("'{s}'"),
        other => format!("'{other}'"),
    }
}

fn pattern_matches(pattern: &str, s: &str) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<fancy_regex::Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let Ok(mut cache) = cache.lock() else {
        return true;
    };
    let re = cache.entry(pattern.to_string()).or_insert_with(|| {
        match fancy_regex::Regex::new(pattern) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(%pattern, error = %e, "model pattern does not compile; not checked");
                None
            }
        }
    });
    // A pattern that cannot be compiled, or a match that exceeds the
    // backtracking limit, is not held against the caller.
    re.as_ref().is_none_or(|r| r.is_match(s).unwrap_or(true))
}

impl Validator {
    fn problem(&mut self, value: &Value, path: &str, constraint: String) {
        self.problems.push(format!(
            "Value {} at '{path}' failed to satisfy constraint: {constraint}",
            shown(value)
        ));
    }

    fn wrong_type(&mut self, path: &str, want: &str, got: &Value) {
        if self.type_error.is_none() {
            self.type_error = Some(format!("{path} must be {want}, got {got}"));
        }
    }

    fn length(&mut self, shape: &Value, value: &Value, path: &str, len: usize, what: &str) {
        if let Some(min) = shape["min"].as_u64()
            && (len as u64) < min
        {
            self.problem(
                value,
                path,
                format!("Member must have {what} greater than or equal to {min}"),
            );
        }
        if let Some(max) = shape["max"].as_u64()
            && (len as u64) > max
        {
            self.problem(
                value,
                path,
                format!("Member must have {what} less than or equal to {max}"),
            );
        }
    }

    fn value(&mut self, shape_name: &str, value: &Value, path: &str) {
        let Some(shape) = model::model().shape(shape_name) else {
            return;
        };
        if value.is_null() {
            return;
        }
        match shape["type"].as_str().unwrap_or("string") {
            "structure" => {
                let Some(obj) = value.as_object() else {
                    return self.wrong_type(path, "an object", value);
                };
                let members = shape["members"].as_object();
                for req in shape["required"].as_array().into_iter().flatten() {
                    if let Some(name) = req.as_str()
                        && obj.get(name).is_none_or(Value::is_null)
                    {
                        self.problem(
                            &Value::Null,
                            &join(path, &camel(name)),
                            "Member must not be null".into(),
                        );
                    }
                }
                for (name, member_value) in obj {
                    if let Some(member_shape) = members
                        .and_then(|m| m.get(name))
                        .and_then(|m| m["shape"].as_str())
                    {
                        self.value(member_shape, member_value, &join(path, &camel(name)));
                    }
                }
            }
            "list" => {
                let Some(items) = value.as_array() else {
                    return self.wrong_type(path, "a list", value);
                };
                self.length(shape, value, path, items.len(), "length");
                if let Some(member) = shape["member"]["shape"].as_str() {
                    for (i, item) in items.iter().enumerate() {
                        self.value(member, item, &format!("{}.{}.member", path, i + 1));
                    }
                }
            }
            "map" => {
                let Some(entries) = value.as_object() else {
                    return self.wrong_type(path, "a map (JSON object)", value);
                };
                self.length(shape, value, path, entries.len(), "length");
                for (k, v) in entries {
                    if let Some(key) = shape["key"]["shape"].as_str() {
                        self.value(key, &Value::String(k.clone()), path);
                    }
                    if let Some(val) = shape["value"]["shape"].as_str() {
                        self.value(val, v, &join(path, k));
                    }
                }
            }
            "string" => {
                let Some(s) = value.as_str() else {
                    return self.wrong_type(path, "a string", value);
                };
                self.length(shape, value, path, s.chars().count(), "length");
                if let Some(allowed) = shape["enum"].as_array()
                    && !allowed.iter().any(|a| a.as_str() == Some(s))
                {
                    let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
                    self.problem(
                        value,
                        path,
                        format!("Member must satisfy enum value set: [{}]", names.join(", ")),
                    );
                }
                if let Some(p) = shape["pattern"].as_str()
                    && !pattern_matches(p, s)
                {
                    self.problem(
                        value,
                        path,
                        format!("Member must satisfy regular expression pattern: {p}"),
                    );
                }
            }
            "integer" | "long" => {
                let Some(n) = value.as_i64() else {
                    return self.wrong_type(path, "an integer", value);
                };
                if let Some(min) = shape["min"].as_i64()
                    && n < min
                {
                    self.problem(
                        value,
                        path,
                        format!("Member must have value greater than or equal to {min}"),
                    );
                }
                if let Some(max) = shape["max"].as_i64()
                    && n > max
                {
                    self.problem(
                        value,
                        path,
                        format!("Member must have value less than or equal to {max}"),
                    );
                }
            }
            "boolean" if !value.is_boolean() => self.wrong_type(path, "a boolean", value),
            "double" | "float" if !value.is_number() => self.wrong_type(path, "a number", value),
            "timestamp" => {
                let ok = match value {
                    Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
                    Value::String(s) => tether_util::time::parse_timestamp_ms(s).is_some(),
                    _ => false,
                };
                if !ok {
                    self.wrong_type(
                        path,
                        "a timestamp (epoch seconds, or ISO 8601 such as 2030-01-10T20:30:00Z)",
                        value,
                    );
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// (operation, request, expected error type and message fragment).
    type Case = (&'static str, Value, Option<(&'static str, &'static str)>);

    #[test]
    fn the_model_rules_are_applied_with_aws_messages() {
        let cases: Vec<Case> = vec![
            (
                "SendCommand",
                json!({"DocumentName": "AWS-RunShellScript", "InstanceIds": ["mi-0123456789abcdef0"]}),
                None,
            ),
            (
                "SendCommand",
                json!({"InstanceIds": ["mi-0123456789abcdef0"]}),
                Some((
                    "ValidationException",
                    "1 validation error detected: Value null at 'documentName' failed to satisfy constraint: Member must not be null",
                )),
            ),
            (
                "SendCommand",
                json!({"DocumentName": "AWS-RunShellScript", "InstanceIds": ["not-an-id"]}),
                Some((
                    "ValidationException",
                    "at 'instanceIds.1.member' failed to satisfy constraint: Member must satisfy regular expression pattern",
                )),
            ),
            (
                "SendCommand",
                json!({"DocumentName": "AWS-RunShellScript", "TimeoutSeconds": 2_592_001}),
                Some((
                    "ValidationException",
                    "Value '2592001' at 'timeoutSeconds' failed to satisfy constraint: Member must have value less than or equal to 2592000",
                )),
            ),
            (
                "SendCommand",
                json!({"DocumentName": "AWS-RunShellScript", "Comment": "x".repeat(101)}),
                Some((
                    "ValidationException",
                    "at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100",
                )),
            ),
            (
                "SendCommand",
                json!({"DocumentName": "AWS-RunShellScript", "DocumentHashType": "Md5"}),
                Some((
                    "ValidationException",
                    "Member must satisfy enum value set: [Sha256, Sha1]",
                )),
            ),
            (
                "SendCommand",
                json!({"DocumentName": "AWS-RunShellScript", "MaxConcurrency": "0"}),
                Some(("ValidationException", "at 'maxConcurrency'")),
            ),
            (
                "SendCommand",
                json!({"DocumentName": ["not", "a", "string"]}),
                Some(("SerializationException", "documentName must be a string")),
            ),
            (
                "ListCommands",
                json!({"MaxResults": 0, "CommandId": "nope"}),
                Some(("ValidationException", "2 validation errors detected")),
            ),
            ("ListCommands", Value::Null, None),
            (
                "DescribeInstanceInformation",
                json!({"Filters": [{"Key": "tag:Env", "Values": ["lab"]}], "MaxResults": 5}),
                None,
            ),
            (
                "GetCommandInvocation",
                json!({"CommandId": "8d0d0b5f-6a5c-4f2e-9b1a-2c3d4e5f6a7b", "InstanceId": "mi-0123456789abcdef0", "FullOutput": true}),
                None,
            ),
        ];
        for (op, body, want) in cases {
            let got = request(op, &body);
            match (want, got) {
                (None, Ok(())) => {}
                (Some((kind, text)), Err(e)) => {
                    assert_eq!(e.kind, kind, "{op} {body}: {e}");
                    assert!(e.message.contains(text), "{op} {body}: {}", e.message);
                }
                (want, got) => panic!("{op} {body}: wanted {want:?}, got {got:?}"),
            }
        }
    }
}
