//! The agent-facing side of associations and inventory: which associations
//! an instance holds (signed, with a digest so an unchanged set is not sent
//! again), and the intake of `PutInventory` uploads.
//!
//! Targets are matched when an agent polls, so an instance tagged after the
//! association was created picks it up on its next poll, as in SSM.

use prost::Message;
use sha2::{Digest, Sha256};
use tether_proto as pb;
use tracing::warn;

use crate::api::associations::targets_match;
use crate::core::{AgentError, Coordinator};
use tether_store::{AssociationRow, AssociationStatusRow, InstanceRow, InventoryPut, InventoryRow};
use tether_util::time::now_ms;

/// Longest run output kept per association and instance.
const MAX_RUN_OUTPUT_CHARS: usize = 2500;

/// The associations that target `instance`.
pub async fn for_instance(
    c: &Coordinator,
    instance: &InstanceRow,
) -> Result<Vec<AssociationRow>, AgentError> {
    Ok(c.associations()
        .await?
        .iter()
        .filter(|a| targets_match(a, instance))
        .cloned()
        .collect())
}

/// Digest of what the agent needs to know about a set of associations.
pub fn digest(set: &[AssociationRow]) -> String {
    let mut h = Sha256::new();
    for a in set {
        for part in [
            a.association_id.as_str(),
            &a.association_version.to_string(),
            &a.document_hash,
            &a.resolved_json,
            &a.schedule_expression,
            if a.apply_only_at_cron_interval {
                "1"
            } else {
                "0"
            },
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
    }
    hex::encode(h.finalize())
}

/// The current set for `instance` when it differs from the agent's `held` digest.
pub async fn set_if_changed(
    c: &Coordinator,
    instance: &InstanceRow,
    held: &str,
) -> Result<Option<pb::AssociationSet>, AgentError> {
    let set = for_instance(c, instance).await?;
    let d = digest(&set);
    if d == held || (set.is_empty() && held.is_empty()) {
        return Ok(None);
    }
    let now = now_ms();
    let associations = set
        .iter()
        .map(|a| {
            let signed = pb::SignedAssociation {
                instance_id: instance.instance_id.clone(),
                association_id: a.association_id.clone(),
                association_version: a.association_version.to_string(),
                association_name: a.association_name.clone(),
                document_name: a.document_name.clone(),
                document_version: a.document_version.clone(),
                document_content: a.document_content.clone(),
                document_hash: a.document_hash.clone(),
                parameters_json: a.resolved_json.clone(),
                schedule_expression: a.schedule_expression.clone(),
                apply_only_at_cron_interval: a.apply_only_at_cron_interval,
                created_at_ms: a.created_ms,
                issued_at_ms: now,
            };
            let payload = signed.encode_to_vec();
            let mut covered = pb::ASSOCIATION_SIGNING_CONTEXT.to_vec();
            covered.extend_from_slice(&payload);
            pb::AssociationEnvelope {
                signature: c.pki.sign(&covered),
                payload,
            }
        })
        .collect();
    Ok(Some(pb::AssociationSet {
        digest: d,
        associations,
    }))
}

/// Wakes every instance so held polls pick up a changed association set.
pub async fn ring_all(c: &Coordinator) -> Result<(), tether_store::StoreError> {
    c.associations_changed(true).await;
    Ok(())
}

/// The hash the agent computes: SHA-256 of the entries' canonical JSON
/// (each entry's keys sorted, entries sorted).
pub fn content_hash(entries: &[std::collections::BTreeMap<String, String>]) -> String {
    let mut sorted = entries.to_vec();
    sorted.sort();
    hex::encode(Sha256::digest(
        serde_json::to_vec(&sorted).unwrap_or_default(),
    ))
}

fn valid_type_name(t: &str) -> bool {
    let ok_chars = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    t.strip_prefix("AWS:").is_some_and(ok_chars) || t.strip_prefix("Custom:").is_some_and(ok_chars)
}

/// Stores an upload from `instance`; items that do not check out are logged
/// and left out, never stored half.
pub async fn put_inventory(
    c: &Coordinator,
    instance: &InstanceRow,
    req: pb::PutInventoryRequest,
) -> Result<pb::PutInventoryResponse, AgentError> {
    let id = &instance.instance_id;
    let mut puts = Vec::new();
    for item in req.items {
        if !valid_type_name(&item.type_name) {
            warn!(instance_id = %id, type_name = %item.type_name, "inventory type refused: the name must be AWS:<name> or Custom:<name>");
            continue;
        }
        if item.unchanged {
            puts.push(InventoryPut::Unchanged {
                type_name: item.type_name,
                content_hash: item.content_hash,
                capture_ms: item.capture_time_ms,
            });
            continue;
        }
        let entries: Vec<std::collections::BTreeMap<String, String>> = match serde_json::from_str(
            &item.content_json,
        ) {
            Ok(e) => e,
            Err(e) => {
                warn!(instance_id = %id, type_name = %item.type_name, error = %e, "inventory content refused: not a list of objects of strings");
                continue;
            }
        };
        let hash = content_hash(&entries);
        if hash != item.content_hash {
            warn!(instance_id = %id, type_name = %item.type_name, claimed = %item.content_hash, actual = %hash, "inventory content refused: its hash does not match");
            continue;
        }
        puts.push(InventoryPut::Content(InventoryRow {
            instance_id: id.clone(),
            type_name: item.type_name,
            schema_version: item.schema_version,
            content_hash: hash,
            capture_ms: item.capture_time_ms,
            content_json: serde_json::to_string(&entries).unwrap_or_default(),
        }));
    }
    let resend = c.store.put_inventory(id, &puts).await?;
    for r in req.runs {
        let status = match r.status.as_str() {
            "Success" | "Failed" => r.status.clone(),
            _ => "Failed".to_string(),
        };
        let stored = c
            .store
            .record_association_run(&AssociationStatusRow {
                association_id: r.association_id.clone(),
                instance_id: id.clone(),
                association_version: r.association_version,
                status,
                detail: r.detail,
                output: r.output.chars().take(MAX_RUN_OUTPUT_CHARS).collect(),
                execution_ms: r.ended_at_ms,
            })
            .await?;
        if !stored {
            warn!(instance_id = %id, association_id = %r.association_id, "run of a deleted association ignored");
        }
    }
    Ok(pb::PutInventoryResponse {
        resend_type_names: resend,
        server_time_ms: now_ms(),
    })
}
