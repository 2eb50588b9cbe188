//! Records in CloudTrail's shapes: the event record (`CloudTrailEvent`, and
//! each line of the mirror) and `LookupEvents`' `Event`. Pure.

use serde_json::{Value, json};
use tether_store::AuditRecord;
use tether_util::time::iso_secs;

use crate::account::Account;

/// CloudTrail's `userIdentity` for a record's principal.
fn user_identity(r: &AuditRecord, account: &Account) -> Value {
    let kind = if r.principal_arn.ends_with(":root") {
        "Root"
    } else if r.principal_arn.contains(":user/") {
        "IAMUser"
    } else {
        "TetherAgent"
    };
    let mut id = json!({
        "type": kind,
        "arn": r.principal_arn,
        "accountId": account.id,
    });
    if kind == "IAMUser" {
        id["userName"] = json!(r.user_name);
    }
    if let Some(c) = &r.credential_id {
        id["accessKeyId"] = json!(c);
    }
    id
}

/// The stored JSON of a record's column, or the text itself if it does not
/// parse (verification judges it; a reader still sees it).
fn stored(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// The record as a CloudTrail event record (eventVersion 1.08), with the
/// chain's fields under `additionalEventData.tether`.
pub fn cloudtrail_event(r: &AuditRecord, account: &Account) -> Value {
    let resources: Vec<Value> = match stored(&r.resources_json) {
        Value::Array(items) => items
            .iter()
            .map(|i| {
                json!({
                    "ARN": i["ResourceName"],
                    "accountId": account.id,
                    "type": i["ResourceType"],
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    let outcome = stored(&r.outcome_json);
    let mut e = json!({
        "eventVersion": "1.08",
        "userIdentity": user_identity(r, account),
        "eventTime": iso_secs(r.time_ms.div_euclid(1000)),
        "eventSource": r.event_source,
        "eventName": r.event_name,
        "awsRegion": account.region,
        "sourceIPAddress": r.source,
        "userAgent": match r.transport.as_str() {
            "grpc" => "tether-cli (operator gRPC)",
            "https" => "AWS JSON 1.1 over HTTPS",
            "console" => "Tether web console",
            _ => "tether-agent",
        },
        "requestParameters": stored(&r.request_json),
        "responseElements": if outcome.as_object().is_some_and(|o| o.is_empty()) { Value::Null } else { outcome },
        "requestID": r.request_id,
        "eventID": r.event_id,
        "readOnly": r.read_only,
        "resources": resources,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account.id,
        "eventCategory": "Management",
        "additionalEventData": {
            "tether": {
                "seq": r.seq,
                "kind": r.kind,
                "action": r.action,
                "transport": r.transport,
                "replica": r.replica,
                "timeMs": r.time_ms,
                "prevHash": r.prev_hash,
                "hash": r.hash,
            }
        },
    });
    if let Some(code) = &r.error_code {
        e["errorCode"] = json!(code);
        e["errorMessage"] = json!(r.error_message);
    }
    e
}

/// The record as `LookupEvents` answers it.
pub fn lookup_event(r: &AuditRecord, account: &Account) -> Value {
    let resources = match stored(&r.resources_json) {
        Value::Array(items) => Value::Array(items),
        _ => json!([]),
    };
    let mut e = json!({
        "EventId": r.event_id,
        "EventName": r.event_name,
        "ReadOnly": if r.read_only { "true" } else { "false" },
        "EventTime": r.time_ms as f64 / 1000.0,
        "EventSource": r.event_source,
        "Username": r.user_name,
        "Resources": resources,
        "CloudTrailEvent": cloudtrail_event(r, account).to_string(),
    });
    if let Some(c) = &r.credential_id {
        e["AccessKeyId"] = json!(c);
    }
    e
}
