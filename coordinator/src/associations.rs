//! The agent-facing side of associations and inventory: which associations
//! an instance holds (signed, with a digest so an unchanged set is not sent
//! again), and the intake of `PutInventory` uploads.
//!
//! Targets are matched when an agent polls, so an instance tagged after the
//! association was created picks it up on its next poll, as in SSM. The
//! operations on associations are `actions::associations`'.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use tether_ssm::target::{self, Tag, Target};
use tether_store::{
    AssociationRow, AssociationStatusRow, InstanceRow, InventoryPut, InventoryRow, Store,
    StoreError,
};
use tether_util::time::now_ms;
use tracing::warn;

use crate::pki::Pki;
use crate::signing::{self, Signed};

/// Longest run output kept per association and instance.
const MAX_RUN_OUTPUT_CHARS: usize = 2500;

/// An association with whom it targets, parsed once when it is read: its
/// `Targets` and, for an association made with the legacy `InstanceId`,
/// that instance.
#[derive(Clone, Debug)]
pub struct Targeted {
    pub row: AssociationRow,
    pub targets: Vec<Target>,
}

impl Targeted {
    /// Reads the row's targets; the error says why they do not parse.
    pub fn parse(row: AssociationRow) -> Result<Targeted, String> {
        let mut targets = target::targets_from_json(&row.targets_json)?;
        if !row.instance_id.is_empty() {
            targets.push(Target::InstanceIds(vec![row.instance_id.clone()]));
        }
        Ok(Targeted { row, targets })
    }

    /// Whether it reaches the instance with this ID and these tags.
    pub fn reaches(&self, instance_id: &str, tags: &[Tag]) -> bool {
        target::any_matches(&self.targets, instance_id, tags)
    }
}

/// The signed association set an agent holds, and its digest.
#[derive(Clone, Debug, Default)]
pub struct SignedSet {
    pub digest: String,
    pub associations: Vec<Signed>,
}

/// Digest of what the agent needs to know about a set of associations.
pub fn digest<'a>(set: impl IntoIterator<Item = &'a AssociationRow>) -> String {
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

/// The set of `all` that reaches `instance`, signed for it, when it differs
/// from the one its agent holds (`held`, a digest). The error names the
/// instance whose stored tags do not read back.
pub fn set_if_changed(
    pki: &Pki,
    all: &[Targeted],
    instance: &InstanceRow,
    held: &str,
) -> Result<Option<SignedSet>, String> {
    let id = &instance.instance_id;
    let tags = target::tags_from_json(&instance.tags_json)
        .map_err(|e| format!("stored instance {id}: tags are corrupt: {e}"))?;
    let set: Vec<&AssociationRow> = all
        .iter()
        .filter(|a| a.reaches(id, &tags))
        .map(|a| &a.row)
        .collect();
    let d = digest(set.iter().copied());
    if d == held || (set.is_empty() && held.is_empty()) {
        return Ok(None);
    }
    let now = now_ms();
    Ok(Some(SignedSet {
        digest: d,
        associations: set
            .iter()
            .map(|a| signing::association(pki, id, a, now))
            .collect(),
    }))
}

/// One inventory type in an upload.
#[derive(Clone, Debug, Default)]
pub struct InventoryItem {
    pub type_name: String,
    pub schema_version: String,
    pub capture_ms: i64,
    pub content_hash: String,
    /// The entries as JSON (empty when `unchanged`).
    pub content_json: String,
    /// Only the hash: unchanged since the last acknowledged upload.
    pub unchanged: bool,
}

/// One run of an association on the node.
#[derive(Clone, Debug, Default)]
pub struct AssociationRun {
    pub association_id: String,
    pub association_version: String,
    pub status: String,
    pub detail: String,
    pub ended_ms: i64,
    pub output: String,
}

/// What an agent uploads with PutInventory.
#[derive(Clone, Debug, Default)]
pub struct InventoryUpload {
    pub items: Vec<InventoryItem>,
    pub runs: Vec<AssociationRun>,
}

/// The hash the agent computes: SHA-256 of the entries' canonical JSON
/// (each entry's keys sorted, entries sorted).
pub fn content_hash(entries: &[BTreeMap<String, String>]) -> String {
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

/// Stores an upload from instance `id`; items that do not check out are
/// logged and left out, never stored half. Gives back the types the store
/// lacks, for the agent to send in full.
pub async fn put_inventory(
    store: &Store,
    id: &str,
    upload: InventoryUpload,
) -> Result<Vec<String>, StoreError> {
    let puts = inventory_puts(id, upload.items);
    let resend = store.put_inventory(id, &puts).await?;
    for r in upload.runs {
        let status = match r.status.as_str() {
            "Success" | "Failed" => r.status.clone(),
            _ => "Failed".to_string(),
        };
        let stored = store
            .record_association_run(&AssociationStatusRow {
                association_id: r.association_id.clone(),
                instance_id: id.to_string(),
                association_version: r.association_version,
                status,
                detail: r.detail,
                output: r.output.chars().take(MAX_RUN_OUTPUT_CHARS).collect(),
                execution_ms: r.ended_ms,
            })
            .await?;
        if !stored {
            warn!(instance_id = %id, association_id = %r.association_id, "run of a deleted association ignored");
        }
    }
    Ok(resend)
}

/// What of an upload from instance `id` is fit to store: items whose type
/// name is `AWS:<name>` or `Custom:<name>` and whose content is a list of
/// objects of strings with the hash the agent claimed (the rest is logged and
/// left out). Pure: the agent's bytes meet no store here.
pub(crate) fn inventory_puts(id: &str, items: Vec<InventoryItem>) -> Vec<InventoryPut> {
    let mut puts = Vec::new();
    for item in items {
        if !valid_type_name(&item.type_name) {
            warn!(instance_id = %id, type_name = %item.type_name, "inventory type refused: the name must be AWS:<name> or Custom:<name>");
            continue;
        }
        if item.unchanged {
            puts.push(InventoryPut::Unchanged {
                type_name: item.type_name,
                content_hash: item.content_hash,
                capture_ms: item.capture_ms,
            });
            continue;
        }
        let entries: Vec<BTreeMap<String, String>> = match serde_json::from_str(&item.content_json)
        {
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
            instance_id: id.to_string(),
            type_name: item.type_name,
            schema_version: item.schema_version,
            content_hash: hash,
            capture_ms: item.capture_ms,
            content_json: serde_json::to_string(&entries).unwrap_or_default(),
        }));
    }
    puts
}
