//! From the bytes a transport received to a typed [`Request`]: the one door
//! every request comes through, whichever transport carried it (the operator
//! gRPC channel, AWS JSON 1.1 over HTTPS, the web console to come), so that
//! the same bad request gets the same error code and message everywhere.
//!
//! The order is AWS's: the operation must be known, the body must be JSON,
//! then the body is checked against the model ([`crate::validate`]) and only
//! then turned into the operation's typed input ([`crate::input`]).

use serde::de::{self, Deserializer};
use serde_json::Value;

use crate::input::{Operation, Request};
use crate::{ApiError, model, validate};

/// A point in time from a request, in milliseconds since the Unix epoch:
/// epoch seconds on the wire (as SSM sends them) or a timestamp string in
/// any spelling [`tether_util::time::parse_timestamp_ms`] accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub ms: i64,
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(|secs| Timestamp {
                    ms: (secs * 1000.0).round() as i64,
                })
                .ok_or_else(|| de::Error::custom(format!("{n} is not a timestamp"))),
            Value::String(s) => tether_util::time::parse_timestamp_ms(&s)
                .map(|ms| Timestamp { ms })
                .ok_or_else(|| de::Error::custom(format!("{s:?} is not a timestamp"))),
            other => Err(de::Error::custom(format!("{other} is not a timestamp"))),
        }
    }
}

impl Operation {
    /// The operation of this name, if Tether serves it.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Whether it is one of SSM's operations (served on the HTTPS API too)
    /// rather than one of Tether's own (served to operators only).
    pub fn is_ssm(self) -> bool {
        model::model().is_ssm_operation(self.name())
    }

    /// Its action name in IAM policies (`ssm:SendCommand`, `iam:CreateUser`,
    /// `tether:CreateOperatorConfig`).
    pub fn action(self) -> String {
        format!(
            "{}:{}",
            model::model().action_service(self.name()),
            self.name()
        )
    }

    /// Whether it changes something (creates, updates, deletes, sends,
    /// cancels) rather than only reads: AWS names every read `Describe*`,
    /// `List*` or `Get*` (CloudTrail's `LookupEvents`, IAM's
    /// `SimulatePrincipalPolicy` and Tether's `VerifyAuditTrail` read too).
    /// A signed request that changes something is accepted once; reads may
    /// repeat. The audit trail records a change before it is made.
    pub fn changes_something(self) -> bool {
        let name = self.name();
        !["Describe", "List", "Get", "Lookup", "Simulate", "Verify"]
            .iter()
            .any(|read| name.starts_with(read))
    }

    /// The operation of this name, or the error AWS gives for an unknown one.
    pub fn named(name: &str) -> Result<Operation, ApiError> {
        Operation::from_name(name).ok_or_else(|| {
            ApiError::new(
                "UnknownOperationException",
                format!("operation {name:?} is not supported by this coordinator"),
            )
        })
    }
}

impl Request {
    /// Parses and validates the body of a call to `operation`: empty (or only
    /// whitespace) is an empty input, anything else must be a JSON object.
    pub fn from_json(operation: Operation, body: &[u8]) -> Result<Request, ApiError> {
        let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(body).map_err(|e| {
                ApiError::new(
                    "SerializationException",
                    format!(
                        "{}: the request body is not valid JSON: {e}",
                        operation.name()
                    ),
                )
            })?
        };
        Request::from_value(operation, value)
    }

    /// Validates `input` against the model and types it.
    pub fn from_value(operation: Operation, input: Value) -> Result<Request, ApiError> {
        let input = match input {
            Value::Null => Value::Object(Default::default()),
            Value::Object(m) => Value::Object(m),
            other => {
                return Err(ApiError::new(
                    "SerializationException",
                    format!(
                        "{}: the request body must be a JSON object, got {other}",
                        operation.name()
                    ),
                ));
            }
        };
        validate::request(operation.name(), &input)?;
        Request::from_value_unchecked(operation, input).map_err(|e| {
            ApiError::new(
                "SerializationException",
                format!("{}: {e}", operation.name()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_changes() {
        let changes: Vec<&str> = Operation::ALL
            .into_iter()
            .filter(|op| op.changes_something())
            .map(Operation::name)
            .collect();
        for op in [
            "SendCommand",
            "CancelCommand",
            "CreateDocument",
            "DeleteAccessKey",
        ] {
            assert!(changes.contains(&op), "{op}");
        }
        for op in [
            "GetCommandInvocation",
            "ListCommands",
            "DescribeDocument",
            "LookupEvents",
            "VerifyAuditTrail",
            "SimulatePrincipalPolicy",
        ] {
            assert!(!changes.contains(&op), "{op}");
        }
    }

    #[test]
    fn every_operation_parses_an_empty_or_minimal_request_or_names_what_is_missing() {
        for op in Operation::ALL {
            match Request::from_json(op, b"") {
                Ok(r) => assert_eq!(r.operation(), op),
                Err(e) => {
                    assert_eq!(e.kind, "ValidationException", "{}: {e}", op.name());
                    assert!(e.message.contains("Member must not be null"), "{e}");
                }
            }
        }
    }

    #[test]
    fn typed_members_and_errors() {
        let op = Operation::SendCommand;
        let r = Request::from_json(
            op,
            br#"{"DocumentName":"AWS-RunShellScript","InstanceIds":["mi-0123456789abcdef0"],
                 "Parameters":{"commands":["id"]},"TimeoutSeconds":60}"#,
        )
        .unwrap();
        let Request::SendCommand(s) = r else {
            panic!("not a SendCommand")
        };
        assert_eq!(s.document_name, "AWS-RunShellScript");
        assert_eq!(
            s.instance_ids.as_deref(),
            Some(&["mi-0123456789abcdef0".to_string()][..])
        );
        assert_eq!(s.timeout_seconds, Some(60));
        assert!(s.targets.is_none());

        let e = Request::from_json(op, b"{not json").unwrap_err();
        assert_eq!(e.kind, "SerializationException");
        assert!(
            e.message
                .starts_with("SendCommand: the request body is not valid JSON")
        );
        let e = Request::from_json(op, b"[1]").unwrap_err();
        assert_eq!(e.kind, "SerializationException");
        let e = Request::from_json(op, br#"{"DocumentName":"x","Comment":7}"#).unwrap_err();
        assert_eq!(e.kind, "SerializationException");
        assert!(e.message.contains("comment must be a string"), "{e}");

        let r = Request::from_json(
            Operation::ListInventoryChanges,
            br#"{"InstanceId":"mi-0123456789abcdef0","StartTime":"2030-01-10T20:30:00Z","EndTime":1893443400}"#,
        )
        .unwrap();
        let Request::ListInventoryChanges(l) = r else {
            panic!("not ListInventoryChanges")
        };
        assert_eq!(
            l.start_time,
            Some(Timestamp {
                ms: 1_894_307_400_000
            })
        );
        assert_eq!(
            l.end_time,
            Some(Timestamp {
                ms: 1_893_443_400_000
            })
        );

        let r = Request::from_json(
            Operation::GetCommandInvocation,
            br#"{"CommandId":"8d0d0b5f-6a5c-4f2e-9b1a-2c3d4e5f6a7b","InstanceId":"mi-0123456789abcdef0","FullOutput":true}"#,
        )
        .unwrap();
        let Request::GetCommandInvocation(g) = r else {
            panic!("not GetCommandInvocation")
        };
        assert_eq!(g.full_output, Some(true));
    }

    #[test]
    fn operations_by_name() {
        assert_eq!(
            Operation::from_name("SendCommand"),
            Some(Operation::SendCommand)
        );
        assert!(Operation::SendCommand.is_ssm());
        assert!(!Operation::CreateAccessKey.is_ssm());
        assert_eq!(
            Operation::named("FlyToTheMoon").unwrap_err().kind,
            "UnknownOperationException"
        );
    }
}
