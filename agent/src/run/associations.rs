//! Associations on the agent: the signed set the coordinator hands out, kept
//! on disk and run on schedule by the agent itself — also while the
//! coordinator is unreachable — and the inventory outbox that uploads what
//! they gathered when it is back.
//!
//! Files in `STATE/associations/`: `set.json` (the verified envelopes as
//! received, re-verified on load), `runs.json` (per association: version,
//! when first seen, last run). In `STATE/inventory/`: `outbox.json` (items
//! and run outcomes not yet stored by the coordinator), `latest.json` (the
//! last full content per type, for the coordinator's re-send requests) and
//! `acked.json` (type → hash the coordinator holds). A type whose hash equals
//! the acknowledged one is sent as its hash alone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};
use tether_documents::{Document, PlatformType, StepAction};
use tether_proto as pb;
use tether_util::now_ms;
use tracing::{debug, error, info, warn};

use super::Agent;
use crate::envelope;
use crate::inventory::{self, Identity, Item, Selection};
use crate::state::write_private;

/// Output kept per association run in its report.
const RUN_OUTPUT_CHARS: usize = 2500;
/// Run outcomes kept in the outbox while the coordinator is unreachable.
const MAX_PENDING_RUNS: usize = 500;
/// The scheduler looks again at least this often.
const SCHEDULER_TICK: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StoredSet {
    digest: String,
    /// (payload, signature), base64.
    envelopes: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RunState {
    pub version: String,
    pub first_seen_ms: i64,
    pub last_run_ms: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Run {
    pub association_id: String,
    pub association_version: String,
    pub status: String,
    pub detail: String,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub output: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Outbox {
    items: BTreeMap<String, Item>,
    runs: Vec<Run>,
}

/// The association and inventory files, and the lock that serialises them.
pub struct Local {
    assoc_dir: PathBuf,
    inv_dir: PathBuf,
    lock: Mutex<()>,
    /// Rung when a new set arrives.
    pub bell: tokio::sync::Notify,
    /// Rung when the outbox has something.
    pub upload_bell: tokio::sync::Notify,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(p: &std::path::Path) -> T {
    match std::fs::read(p) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            error!(path = %p.display(), error = %e, "unreadable state file; starting it afresh");
            T::default()
        }),
        Err(_) => T::default(),
    }
}

fn write_json<T: Serialize>(p: &std::path::Path, v: &T) {
    let data = serde_json::to_vec(v).unwrap_or_default();
    if let Err(e) = write_private(p, &data) {
        error!(path = %p.display(), error = %e, "cannot write state file");
    }
}

impl Local {
    pub fn new(state_dir: &std::path::Path) -> std::io::Result<Local> {
        let assoc_dir = state_dir.join("associations");
        let inv_dir = state_dir.join("inventory");
        std::fs::create_dir_all(&assoc_dir)?;
        std::fs::create_dir_all(&inv_dir)?;
        Ok(Local {
            assoc_dir,
            inv_dir,
            lock: Mutex::new(()),
            bell: tokio::sync::Notify::new(),
            upload_bell: tokio::sync::Notify::new(),
        })
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock()
    }

    /// The digest of the set held, for the poll.
    pub fn digest(&self) -> String {
        let _g = self.guard();
        read_json::<StoredSet>(&self.assoc_dir.join("set.json")).digest
    }

    /// Keeps a new set: only envelopes that verify are stored.
    pub fn replace(&self, set: pb::AssociationSet, key: &[u8], instance_id: &str) {
        let mut kept = Vec::new();
        for env in set.associations {
            match envelope::verify_association(&env, key, instance_id) {
                Ok(a) => {
                    info!(association_id = %a.association_id, version = %a.association_version, document = %a.document_name, schedule = %a.schedule_expression, "association received");
                    kept.push((b64().encode(&env.payload), b64().encode(&env.signature)));
                }
                Err(r) => error!(reason = %r, "association refused"),
            }
        }
        let _g = self.guard();
        write_json(
            &self.assoc_dir.join("set.json"),
            &StoredSet {
                digest: set.digest,
                envelopes: kept,
            },
        );
        drop(_g);
        self.bell.notify_one();
    }

    /// The held associations, verified again.
    pub fn associations(&self, key: &[u8], instance_id: &str) -> Vec<pb::SignedAssociation> {
        let _g = self.guard();
        let set: StoredSet = read_json(&self.assoc_dir.join("set.json"));
        set.envelopes
            .iter()
            .filter_map(|(p, s)| {
                let env = pb::AssociationEnvelope {
                    payload: b64().decode(p).ok()?,
                    signature: b64().decode(s).ok()?,
                };
                envelope::verify_association(&env, key, instance_id).ok()
            })
            .collect()
    }

    pub fn runs(&self) -> BTreeMap<String, RunState> {
        let _g = self.guard();
        read_json(&self.assoc_dir.join("runs.json"))
    }

    fn save_runs(&self, runs: &BTreeMap<String, RunState>) {
        let _g = self.guard();
        write_json(&self.assoc_dir.join("runs.json"), runs);
    }

    /// Queues gathered items and a run outcome for upload.
    pub fn queue(&self, items: Vec<Item>, run: Run) {
        let _g = self.guard();
        let mut out: Outbox = read_json(&self.inv_dir.join("outbox.json"));
        let mut latest: BTreeMap<String, Item> = read_json(&self.inv_dir.join("latest.json"));
        for i in items {
            latest.insert(i.type_name.clone(), i.clone());
            out.items.insert(i.type_name.clone(), i);
        }
        out.runs.push(run);
        let excess = out.runs.len().saturating_sub(MAX_PENDING_RUNS);
        out.runs.drain(..excess);
        write_json(&self.inv_dir.join("outbox.json"), &out);
        write_json(&self.inv_dir.join("latest.json"), &latest);
        drop(_g);
        self.upload_bell.notify_one();
    }

    /// The upload request for what is queued (hash only where acknowledged),
    /// and what it contains, to clear once stored.
    fn request(&self) -> Option<Pending> {
        let _g = self.guard();
        let out: Outbox = read_json(&self.inv_dir.join("outbox.json"));
        if out.items.is_empty() && out.runs.is_empty() {
            return None;
        }
        let acked: BTreeMap<String, String> = read_json(&self.inv_dir.join("acked.json"));
        let items = out
            .items
            .values()
            .map(|i| to_pb(i, acked.get(&i.type_name) == Some(&i.content_hash)))
            .collect();
        let runs = out
            .runs
            .iter()
            .map(|r| pb::AssociationRun {
                association_id: r.association_id.clone(),
                association_version: r.association_version.clone(),
                status: r.status.clone(),
                detail: r.detail.clone(),
                started_at_ms: r.started_at_ms,
                ended_at_ms: r.ended_at_ms,
                output: r.output.clone(),
            })
            .collect();
        let sent = out
            .items
            .values()
            .map(|i| (i.type_name.clone(), i.content_hash.clone()))
            .collect();
        Some((
            pb::PutInventoryRequest { items, runs },
            sent,
            out.runs.len(),
        ))
    }

    /// Full content of the latest gathering of `types`.
    fn full(&self, types: &[String]) -> Vec<pb::InventoryItem> {
        let _g = self.guard();
        let latest: BTreeMap<String, Item> = read_json(&self.inv_dir.join("latest.json"));
        types
            .iter()
            .filter_map(|t| latest.get(t))
            .map(|i| to_pb(i, false))
            .collect()
    }

    /// The coordinator stored `sent` and the first `runs` outcomes.
    fn stored(&self, sent: &[(String, String)], runs: usize) {
        let _g = self.guard();
        let mut out: Outbox = read_json(&self.inv_dir.join("outbox.json"));
        let mut acked: BTreeMap<String, String> = read_json(&self.inv_dir.join("acked.json"));
        for (t, h) in sent {
            if out.items.get(t).is_some_and(|i| &i.content_hash == h) {
                out.items.remove(t);
            }
            acked.insert(t.clone(), h.clone());
        }
        out.runs.drain(..runs.min(out.runs.len()));
        write_json(&self.inv_dir.join("outbox.json"), &out);
        write_json(&self.inv_dir.join("acked.json"), &acked);
    }
}

/// An upload request, the (type, hash) pairs it carries, and how many runs.
type Pending = (pb::PutInventoryRequest, Vec<(String, String)>, usize);

fn to_pb(i: &Item, unchanged: bool) -> pb::InventoryItem {
    pb::InventoryItem {
        type_name: i.type_name.clone(),
        schema_version: i.schema_version.clone(),
        capture_time_ms: DateTime::parse_from_rfc3339(&i.capture_time)
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|_| now_ms()),
        content_hash: i.content_hash.clone(),
        content_json: if unchanged {
            String::new()
        } else {
            serde_json::to_string(&i.content).unwrap_or_default()
        },
        unchanged,
    }
}

fn ms_to_dt(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// When an association is next due, in ms; `None` = never again.
pub fn next_due(a: &pb::SignedAssociation, st: &RunState) -> Result<Option<i64>, String> {
    if a.schedule_expression.trim().is_empty() {
        return Ok(st.last_run_ms.is_none().then_some(st.first_seen_ms));
    }
    let sched = tether_schedule::parse(&a.schedule_expression).map_err(|e| e.to_string())?;
    let next = match st.last_run_ms {
        Some(last) => sched.next_after(ms_to_dt(last), ms_to_dt(last)),
        None if a.apply_only_at_cron_interval && sched.is_cron() => {
            sched.next_after(ms_to_dt(st.first_seen_ms), ms_to_dt(st.first_seen_ms))
        }
        // A new association (or a new version) runs once right away.
        None => return Ok(Some(st.first_seen_ms)),
    };
    Ok(next.map(|t| t.timestamp_millis()))
}

impl Agent {
    /// Runs due associations; sleeps until the next one is due or a new set arrives.
    pub(super) async fn scheduler(self: Arc<Self>) {
        loop {
            let now = now_ms();
            let held = self
                .assoc
                .associations(&self.signing_key, &self.reg.instance_id);
            let mut runs = self.assoc.runs();
            runs.retain(|id, _| held.iter().any(|a| &a.association_id == id));
            let mut wake = now + SCHEDULER_TICK.as_millis() as i64;
            for a in &held {
                let st = runs.entry(a.association_id.clone()).or_default();
                if st.version != a.association_version {
                    *st = RunState {
                        version: a.association_version.clone(),
                        first_seen_ms: now,
                        last_run_ms: None,
                    };
                }
                match next_due(a, st) {
                    Ok(Some(t)) if t <= now => {
                        let run = self.run_association(a).await;
                        st.last_run_ms = Some(now_ms());
                        self.assoc.queue(run.0, run.1);
                        if let Ok(Some(t)) = next_due(a, st) {
                            wake = wake.min(t);
                        }
                    }
                    Ok(Some(t)) => wake = wake.min(t),
                    Ok(None) => {}
                    Err(e) => {
                        if st.last_run_ms.is_none() {
                            st.last_run_ms = Some(now);
                            self.assoc.queue(
                                Vec::new(),
                                failed_run(a, format!("schedule expression: {e}")),
                            );
                        }
                    }
                }
            }
            self.assoc.save_runs(&runs);
            let nap = Duration::from_millis((wake - now_ms()).max(50) as u64);
            tokio::select! {
                _ = self.assoc.bell.notified() => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// Runs one association: inventory steps in-process, script steps under
    /// supervisors like a command's.
    async fn run_association(&self, a: &pb::SignedAssociation) -> (Vec<Item>, Run) {
        let started = now_ms();
        info!(association_id = %a.association_id, document = %a.document_name, "association run starting");
        let doc = match Document::parse(&a.document_name, &a.document_content) {
            Ok(d) => d,
            Err(e) => return (Vec::new(), failed_run(a, e.to_string())),
        };
        let params: BTreeMap<String, Vec<String>> =
            serde_json::from_str(&a.parameters_json).unwrap_or_default();
        let steps = match doc.plan(&params, PlatformType::Linux) {
            Ok(s) => s,
            Err(e) => return (Vec::new(), failed_run(a, e.to_string())),
        };
        let mut items = Vec::new();
        let mut output = String::new();
        let mut failed = false;
        let run_id = format!("{}-{}", a.association_id, started);
        for (i, step) in steps.iter().enumerate() {
            if step.skipped.is_some() {
                continue;
            }
            if step.action == StepAction::SoftwareInventory {
                let params: BTreeMap<String, Vec<String>> = step
                    .inputs
                    .iter()
                    .map(|(k, v)| (k.clone(), vec![v.clone()]))
                    .collect();
                let sel = Selection::from_parameters(&params);
                let src = self.cfg.inventory_sources.clone();
                let me = Identity {
                    instance_id: self.reg.instance_id.clone(),
                    info: {
                        let (host, port) = self.upstream.host();
                        crate::sysinfo::host_info(&host, port).await
                    },
                };
                let gathered =
                    tokio::task::spawn_blocking(move || inventory::gather(&sel, &src, &me)).await;
                match gathered {
                    Ok((got, problems)) => {
                        output.push_str(&format!(
                            "{}: gathered {}\n",
                            step.name,
                            got.iter()
                                .map(|i| format!("{} ({} entries)", i.type_name, i.content.len()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                        for p in problems {
                            warn!(problem = %p, "inventory source not read");
                            output.push_str(&format!("warning: {p}\n"));
                        }
                        items.extend(got);
                    }
                    Err(e) => {
                        failed = true;
                        output.push_str(&format!("{}: gathering failed: {e}\n", step.name));
                    }
                }
                continue;
            }
            let cmd = pb::SignedCommand {
                instance_id: a.instance_id.clone(),
                command_id: a.association_id.clone(),
                document_name: a.document_name.clone(),
                document_version: a.document_version.clone(),
                document_content: a.document_content.clone(),
                document_hash: a.document_hash.clone(),
                parameters_json: a.parameters_json.clone(),
                ..Default::default()
            };
            let dir = self
                .state
                .path("associations")
                .join("runs")
                .join(&run_id)
                .join(i.to_string());
            if let Err(e) = std::fs::create_dir_all(&dir) {
                failed = true;
                output.push_str(&format!("{}: {}: {e}\n", step.name, dir.display()));
                continue;
            }
            match self.run_step(&cmd, i, step, &dir).await {
                Ok(r) => {
                    let read = |n: &str| {
                        String::from_utf8_lossy(&std::fs::read(dir.join(n)).unwrap_or_default())
                            .into_owned()
                    };
                    output.push_str(&read(crate::exec::STDOUT_FILE));
                    output.push_str(&read(crate::exec::STDERR_FILE));
                    if r.exit_code != 0 || r.timed_out || r.error.is_some() {
                        failed = true;
                        output.push_str(&format!(
                            "{}: exit code {}{}\n",
                            step.name,
                            r.exit_code,
                            r.error.map(|e| format!(" ({e})")).unwrap_or_default()
                        ));
                    }
                }
                Err(e) => {
                    failed = true;
                    output.push_str(&format!("{}: {e}\n", step.name));
                }
            }
        }
        if let Err(e) =
            std::fs::remove_dir_all(self.state.path("associations").join("runs").join(&run_id))
        {
            debug!(error = %e, "no run directory to remove");
        }
        let status = if failed { "Failed" } else { "Success" };
        info!(association_id = %a.association_id, status, "association run finished");
        (
            items,
            Run {
                association_id: a.association_id.clone(),
                association_version: a.association_version.clone(),
                status: status.into(),
                detail: if failed {
                    "a step failed".into()
                } else {
                    String::new()
                },
                started_at_ms: started,
                ended_at_ms: now_ms(),
                output: output.chars().take(RUN_OUTPUT_CHARS).collect(),
            },
        )
    }

    /// Sends the outbox whenever it has something, after a random delay so a
    /// fleet on the same schedule does not upload in the same second.
    pub(super) async fn uploader(self: Arc<Self>) {
        let mut backoff = super::backoff(self.cfg.max_backoff);
        loop {
            let mut wait = Duration::from_secs(60);
            if let Some((req, sent, runs)) = self.assoc.request() {
                let jitter = self.cfg.upload_jitter.as_millis() as u64;
                if jitter > 0 {
                    let ms = rand::random::<u64>() % jitter;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                let unchanged = req.items.iter().filter(|i| i.unchanged).count();
                match self.upload(req).await {
                    Ok(()) => {
                        self.assoc.stored(&sent, runs);
                        backoff = super::backoff(self.cfg.max_backoff);
                        info!(
                            types = sent.len(),
                            unchanged, runs, "inventory stored by the coordinator"
                        );
                        continue;
                    }
                    Err(e) => {
                        wait = backoff.next().unwrap_or(self.cfg.max_backoff);
                        warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "inventory not uploaded yet; it stays queued");
                    }
                }
            }
            tokio::select! {
                _ = self.assoc.upload_bell.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn upload(&self, req: pb::PutInventoryRequest) -> Result<(), String> {
        let r = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.put_inventory(req).await }
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        self.note_server_time(r.server_time_ms);
        if !r.resend_type_names.is_empty() {
            info!(types = ?r.resend_type_names, "the coordinator asks for full inventory content");
            let items = self.assoc.full(&r.resend_type_names);
            self.call(|mut c| {
                let items = items.clone();
                async move {
                    c.put_inventory(pb::PutInventoryRequest {
                        items,
                        runs: Vec::new(),
                    })
                    .await
                }
            })
            .await
            .map_err(|s| s.message().to_string())?;
        }
        Ok(())
    }
}

fn failed_run(a: &pb::SignedAssociation, detail: String) -> Run {
    error!(association_id = %a.association_id, %detail, "association run failed");
    let now = now_ms();
    Run {
        association_id: a.association_id.clone(),
        association_version: a.association_version.clone(),
        status: "Failed".into(),
        detail: detail.clone(),
        started_at_ms: now,
        ended_at_ms: now,
        output: detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assoc(schedule: &str, only_cron: bool) -> pb::SignedAssociation {
        pb::SignedAssociation {
            schedule_expression: schedule.into(),
            apply_only_at_cron_interval: only_cron,
            ..Default::default()
        }
    }

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn new_associations_run_at_once_unless_only_at_cron_interval() {
        let seen = ms("2026-11-22T01:10:00Z");
        let fresh = RunState {
            version: "1".into(),
            first_seen_ms: seen,
            last_run_ms: None,
        };
        let cron = "cron(0 0/30 * 1/1 * ? *)";
        assert_eq!(next_due(&assoc(cron, false), &fresh), Ok(Some(seen)));
        assert_eq!(
            next_due(&assoc(cron, true), &fresh),
            Ok(Some(ms("2026-11-22T01:30:00Z")))
        );
        // ApplyOnlyAtCronInterval means nothing to a rate.
        assert_eq!(
            next_due(&assoc("rate(1 hour)", true), &fresh),
            Ok(Some(seen))
        );
        let ran = RunState {
            last_run_ms: Some(ms("2026-11-22T01:30:05Z")),
            ..fresh.clone()
        };
        assert_eq!(
            next_due(&assoc(cron, false), &ran),
            Ok(Some(ms("2026-11-22T02:00:00Z")))
        );
        assert_eq!(
            next_due(&assoc("rate(30 minutes)", false), &ran),
            Ok(Some(ms("2026-11-22T02:00:05Z")))
        );
        // No schedule: once.
        assert_eq!(next_due(&assoc("", false), &fresh), Ok(Some(seen)));
        assert_eq!(next_due(&assoc("", false), &ran), Ok(None));
        assert!(next_due(&assoc("rate(5 minute)", false), &fresh).is_err());
    }

    #[test]
    fn outbox_sends_unchanged_types_as_hashes_and_clears_what_was_stored() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let local = Local::new(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let item = |v: &str| {
            Item::new(
                "Custom:X",
                "1.0",
                vec![[("A".to_string(), v.to_string())].into_iter().collect()],
            )
        };
        local.queue(vec![item("1")], Run::default());
        let (req, sent, runs) = local.request().unwrap_or_else(|| panic!("empty"));
        assert!(!req.items[0].unchanged && !req.items[0].content_json.is_empty());
        assert_eq!(runs, 1);
        local.stored(&sent, runs);
        assert!(local.request().is_none());
        // Same content again: only its hash travels.
        local.queue(vec![item("1")], Run::default());
        let (req, sent, runs) = local.request().unwrap_or_else(|| panic!("empty"));
        assert!(req.items[0].unchanged && req.items[0].content_json.is_empty());
        assert_eq!(
            local.full(&["Custom:X".into()])[0].content_json,
            r#"[{"A":"1"}]"#
        );
        // Something queued meanwhile survives the clearing.
        local.queue(vec![item("2")], Run::default());
        local.stored(&sent, runs);
        let (req, _, runs) = local.request().unwrap_or_else(|| panic!("lost"));
        assert_eq!((req.items.len(), runs), (1, 1));
        assert!(!req.items[0].unchanged);
    }
}
