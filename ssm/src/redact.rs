//! Secrets out of a request before it is recorded (the audit trail) or shown
//! (`--debug`). Three sources, applied to the request's JSON as the model
//! describes it:
//!
//! - shapes botocore's model marks `sensitive` (SecureString values,
//!   command parameters of some documents, secret keys, operator tokens);
//! - [`SECRET_MEMBERS`]: member names whose values are secrets though the
//!   model does not mark their shapes (an activation's code);
//! - [`RULES`]: members that are secrets depending on their siblings (a
//!   parameter's `Value` when its `Type` is `SecureString`).
//!
//! A new operation with a secret adds its member to one of the two lists, or
//! marks its shape `sensitive` in `model/tether-operations.json`; the audit
//! trail and everything else that records requests follow.

use serde_json::{Map, Value};

use crate::model;

/// What a secret is recorded as.
pub const REDACTED: &str = "****";

/// Members whose values are secrets wherever they appear.
pub const SECRET_MEMBERS: &[&str] = &["ActivationCode", "SecretAccessKey", "Password"];

/// A member that is a secret when `when` holds of the object holding it.
pub struct Rule {
    /// The member's name.
    pub member: &'static str,
    /// Whether, in this object, the member is a secret.
    pub when: fn(&Map<String, Value>) -> bool,
}

/// Members that are secrets by context.
pub const RULES: &[Rule] = &[Rule {
    member: "Value",
    when: |o| o.get("Type").and_then(Value::as_str) == Some("SecureString"),
}];

/// `input` of `operation` with every secret replaced by [`REDACTED`].
pub fn request(operation: &str, input: &Value) -> Value {
    let m = model::model();
    let shape = m
        .operation(operation)
        .and_then(|op| op["input"]["shape"].as_str());
    value(input, shape)
}

/// `value`, of the model's `shape` when known, with every secret replaced.
pub fn value(value: &Value, shape: Option<&str>) -> Value {
    let m = model::model();
    if let Some(s) = shape
        && m.is_sensitive(s)
        && !value.is_null()
    {
        return Value::String(REDACTED.into());
    }
    let def = shape.and_then(|s| m.shape(s));
    match value {
        Value::Object(obj) => {
            let kind = def.and_then(|d| d["type"].as_str()).unwrap_or("");
            let members = shape.map(|s| m.members(s)).unwrap_or_default();
            let secret = |k: &str| {
                SECRET_MEMBERS.contains(&k) || RULES.iter().any(|r| r.member == k && (r.when)(obj))
            };
            Value::Object(
                obj.iter()
                    .map(|(k, v)| {
                        let child = if kind == "map" {
                            def.and_then(|d| d["value"]["shape"].as_str())
                        } else {
                            members
                                .iter()
                                .find(|(n, _)| n == k)
                                .and_then(|(_, d)| d["shape"].as_str())
                        };
                        let v = if secret(k) && !v.is_null() {
                            Value::String(REDACTED.into())
                        } else {
                            self::value(v, child)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            )
        }
        Value::Array(items) => {
            let child = def.and_then(|d| d["member"]["shape"].as_str());
            Value::Array(items.iter().map(|i| self::value(i, child)).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_by_shape_name_and_context() {
        // Sensitive by the model: an operator token in an answer-like value.
        let token = value(
            &json!({"Token": "abc", "Endpoint": "https://x"}),
            Some("CreateOperatorConfigResponse"),
        );
        assert_eq!(token["Endpoint"], "https://x");
        assert_ne!(token["Token"], "abc");
        // By name, anywhere, even without a shape.
        let key = value(
            &json!({"AccessKey": {"AccessKeyId": "TKIA1", "SecretAccessKey": "s3cr3t"}}),
            None,
        );
        assert_eq!(key["AccessKey"]["AccessKeyId"], "TKIA1");
        assert_eq!(key["AccessKey"]["SecretAccessKey"], REDACTED);
        // By context: a SecureString's value, not a String's.
        let secure = value(
            &json!([{"Type": "SecureString", "Value": "pw"}, {"Type": "String", "Value": "v"}]),
            None,
        );
        assert_eq!(secure[0]["Value"], REDACTED);
        assert_eq!(secure[1]["Value"], "v");
        // A request: the document stays; command parameters are sensitive in
        // SSM's model (CloudTrail hides them too).
        let send = request(
            "SendCommand",
            &json!({"DocumentName": "AWS-RunShellScript", "Parameters": {"commands": ["id"]}}),
        );
        assert_eq!(send["DocumentName"], "AWS-RunShellScript");
        assert_eq!(send["Parameters"], REDACTED);
        // PutUserPolicy's document is kept; CreateActivation's code is never in a request.
        let code = value(
            &json!({"ActivationCode": "c0de", "ActivationId": "a"}),
            None,
        );
        assert_eq!(code["ActivationCode"], REDACTED);
    }
}
