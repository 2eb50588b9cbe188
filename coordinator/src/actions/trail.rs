//! Reading and verifying the audit trail: CloudTrail's `LookupEvents`
//! (`cloudtrail:LookupEvents`) and Tether's `VerifyAuditTrail`
//! (`tether:VerifyAuditTrail`). The trail itself is `crate::audit`.

use serde_json::{Value, json};
use tether_ssm::input::{LookupEventsRequest, VerifyAuditTrailRequest};
use tether_ssm::{ApiError, limits};
use tether_store::{AuditAttribute, AuditQuery};

use super::wire;
use crate::audit::{event, verify as chain_verify};
use crate::core::Coordinator;

/// LookupEvents: newest first, at most one lookup attribute (CloudTrail's
/// rule), within StartTime..EndTime, pages of MaxResults (50 at most) with
/// an opaque NextToken. An intent whose outcome is recorded is shown as
/// that outcome; every other record is one event.
pub async fn lookup_events(c: &Coordinator, r: LookupEventsRequest) -> Result<Value, ApiError> {
    if r.event_category.is_some() {
        return Err(ApiError::new(
            "InvalidEventCategoryException",
            "EventCategory insight: Tether records management events only",
        ));
    }
    let attributes = r.lookup_attributes.unwrap_or_default();
    if attributes.len() > 1 {
        return Err(ApiError::new(
            "InvalidLookupAttributesException",
            format!(
                "LookupAttributes: at most one attribute is allowed, got {}",
                attributes.len()
            ),
        ));
    }
    let attribute = match attributes.into_iter().next() {
        None => None,
        Some(a) => {
            let key = match a.attribute_key.as_str() {
                "EventId" => AuditAttribute::EventId,
                "EventName" => AuditAttribute::EventName,
                "ReadOnly" => AuditAttribute::ReadOnly,
                "Username" => AuditAttribute::Username,
                "ResourceType" => AuditAttribute::ResourceType,
                "ResourceName" => AuditAttribute::ResourceName,
                "EventSource" => AuditAttribute::EventSource,
                "AccessKeyId" => AuditAttribute::AccessKeyId,
                other => {
                    return Err(ApiError::new(
                        "InvalidLookupAttributesException",
                        format!("LookupAttributes: unknown AttributeKey {other:?}"),
                    ));
                }
            };
            if key == AuditAttribute::ReadOnly
                && !matches!(a.attribute_value.as_str(), "true" | "false")
            {
                return Err(ApiError::new(
                    "InvalidLookupAttributesException",
                    format!(
                        "LookupAttributes: ReadOnly is true or false, got {:?}",
                        a.attribute_value
                    ),
                ));
            }
            Some((key, a.attribute_value))
        }
    };
    let start_ms = r.start_time.map(|t| t.ms);
    let end_ms = r.end_time.map(|t| t.ms);
    if let (Some(s), Some(e)) = (start_ms, end_ms)
        && s > e
    {
        return Err(ApiError::new(
            "InvalidTimeRangeException",
            "StartTime is after EndTime",
        ));
    }
    let before_seq = match &r.next_token {
        None => None,
        Some(t) => Some(
            t.strip_prefix("ev-")
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidNextTokenException",
                        format!("NextToken {t:?} was not given by LookupEvents"),
                    )
                })?,
        ),
    };
    let limit = r
        .max_results
        .unwrap_or(limits::LOOKUP_EVENTS_MAX_RESULTS)
        .clamp(1, limits::LOOKUP_EVENTS_MAX_RESULTS);
    let rows = c
        .store
        .lookup_audit(&AuditQuery {
            attribute,
            start_ms,
            end_ms,
            before_seq,
            limit: limit + 1,
        })
        .await?;
    let more = rows.len() as i64 > limit;
    let page = &rows[..rows.len().min(limit as usize)];
    let events: Vec<Value> = page
        .iter()
        .map(|r| event::lookup_event(r, &c.account))
        .collect();
    let mut answer = json!({ "Events": events });
    if more && let Some(last) = page.last() {
        answer["NextToken"] = json!(format!("ev-{}", last.seq));
    }
    Ok(answer)
}

/// VerifyAuditTrail: the whole chain and the newest signed head; a trail
/// that does not hold is `AuditTrailInvalid` naming the first record that
/// does not (its sequence number, event ID, and what failed).
pub async fn verify(c: &Coordinator, _r: VerifyAuditTrailRequest) -> Result<Value, ApiError> {
    match chain_verify::verify(&c.store, c.audit.key()).await? {
        Ok(v) => {
            let mut answer = json!({ "RecordsChecked": v.records });
            if let Some((seq, event_id)) = v.head {
                answer["HeadSequence"] = json!(seq);
                answer["HeadEventId"] = json!(event_id);
            }
            if let Some(h) = v.signed {
                answer["SignedHeadSequence"] = json!(h.seq);
                answer["SignedHeadTime"] = wire::ts(h.signed_ms);
                answer["SignedHeadReplica"] = json!(h.replica);
            }
            Ok(answer)
        }
        Err(f) => {
            tracing::error!(seq = f.seq, event_id = ?f.event_id, what = %f.what, "the audit trail does not verify");
            Err(ApiError::new("AuditTrailInvalid", f.to_string()))
        }
    }
}
