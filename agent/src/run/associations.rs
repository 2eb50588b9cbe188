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
//!
//! A file that is absent holds nothing yet. One that cannot be read or does
//! not parse is an error naming it, never taken silently for empty: a set
//! whose file or any envelope is damaged is not run from, and its digest is
//! withheld so the coordinator sends the set again; any other damaged file
//! is set aside as `NAME.corrupt` (kept for the operator, never overwritten)
//! with an error naming both paths, and started afresh.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, MutexGuard};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tether_documents::StepAction;
use tether_proto as pb;
use tether_util::now_ms;
use tether_util::time::parse_timestamp_ms;
use tracing::{debug, error, info, warn};

use super::Agent;
use crate::envelope;
use crate::inventory::{self, Identity, Item, Selection};
use crate::state::{StateError, write_private};

/// Output kept per association run in its report.
const RUN_OUTPUT_CHARS: usize = 2500;
/// The held set of associations, as received.
const SET_FILE: &str = "set.json";
/// Per association: version, first seen, last run.
const RUNS_FILE: &str = "runs.json";
/// Items and run outcomes not yet stored by the coordinator.
const OUTBOX_FILE: &str = "outbox.json";
/// The last full content per inventory type.
const LATEST_FILE: &str = "latest.json";
/// Type → the content hash the coordinator holds.
const ACKED_FILE: &str = "acked.json";

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

/// A state file's content: the empty value when the file is absent (nothing
/// stored yet); an error naming the file when it cannot be read or does not
/// parse.
fn read_json<T: DeserializeOwned + Default>(path: &Path) -> Result<T, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// A state file's content as [`read_json`] reads it; a damaged file is set
/// aside (see [`set_aside`]) and started afresh.
fn load<T: DeserializeOwned + Default>(path: &Path) -> T {
    read_json(path).unwrap_or_else(|e| {
        set_aside(path, &e);
        T::default()
    })
}

/// Moves a damaged state file to `NAME.corrupt` beside it, where the next
/// write cannot overwrite it, and says so at error level with why.
fn set_aside(path: &Path, why: &StateError) {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    let aside = PathBuf::from(aside);
    match std::fs::rename(path, &aside) {
        Ok(()) => {
            error!(error = %why, kept_as = %aside.display(), "state file damaged; set aside and started afresh")
        }
        Err(e) => {
            error!(error = %why, set_aside_error = %e, "state file damaged and could not be set aside; started afresh")
        }
    }
}

fn write_json<T: Serialize>(p: &Path, v: &T) {
    let data = match serde_json::to_vec(v) {
        Ok(data) => data,
        Err(e) => {
            error!(path = %p.display(), error = %e, "cannot encode state file; left as it was");
            return;
        }
    };
    if let Err(e) = write_private(p, &data) {
        error!(path = %p.display(), error = %e, "cannot write state file");
    }
}

/// The verified associations of a stored set, or an error naming the file
/// (and the envelope) when the file or any envelope in it is damaged: every
/// one verified when it was stored.
fn verified_set(
    path: &Path,
    key: &[u8],
    instance_id: &str,
) -> Result<(String, Vec<pb::SignedAssociation>), StateError> {
    let set: StoredSet = read_json(path)?;
    let corrupt = |detail: String| StateError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut held = Vec::with_capacity(set.envelopes.len());
    for (i, (payload, signature)) in set.envelopes.iter().enumerate() {
        let decode = |what: &str, text: &str| {
            b64()
                .decode(text)
                .map_err(|e| corrupt(format!("envelope {i}: {what} is not base64: {e}")))
        };
        let env = pb::AssociationEnvelope {
            payload: decode("payload", payload)?,
            signature: decode("signature", signature)?,
        };
        let a = envelope::verify_association(&env, key, instance_id)
            .map_err(|r| corrupt(format!("envelope {i} no longer verifies: {r}")))?;
        held.push(a);
    }
    Ok((set.digest, held))
}

/// Run states whose times a date can hold; an error naming the file and the
/// association of the first that cannot.
fn checked_runs(
    path: &Path,
    runs: BTreeMap<String, RunState>,
) -> Result<BTreeMap<String, RunState>, StateError> {
    for (id, st) in &runs {
        for ms in std::iter::once(st.first_seen_ms).chain(st.last_run_ms) {
            if DateTime::from_timestamp_millis(ms).is_none() {
                return Err(StateError::Corrupt {
                    path: path.to_path_buf(),
                    detail: format!("association {id}: time {ms} ms is out of range"),
                });
            }
        }
    }
    Ok(runs)
}

impl Local {
    pub fn new(state_dir: &std::path::Path) -> std::io::Result<Local> {
        let assoc_dir = state_dir.join("associations");
        let inv_dir = state_dir.join("inventory");
        tether_util::fs::create_private_dir_all(&assoc_dir)?;
        tether_util::fs::create_private_dir_all(&inv_dir)?;
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

    /// The digest of the set held, for the poll; empty when the stored set
    /// is damaged, so the coordinator sends it again.
    pub fn digest(&self, key: &[u8], instance_id: &str) -> String {
        let _g = self.guard();
        verified_set(&self.assoc_dir.join(SET_FILE), key, instance_id)
            .map(|(digest, _)| digest)
            .unwrap_or_default()
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
            &self.assoc_dir.join(SET_FILE),
            &StoredSet {
                digest: set.digest,
                envelopes: kept,
            },
        );
        drop(_g);
        self.bell.notify_one();
    }

    /// The held associations, verified again; an error naming the set's
    /// file when it is damaged (its digest is then withheld from the poll,
    /// so the coordinator sends the set again).
    pub fn associations(
        &self,
        key: &[u8],
        instance_id: &str,
    ) -> Result<Vec<pb::SignedAssociation>, StateError> {
        let _g = self.guard();
        verified_set(&self.assoc_dir.join(SET_FILE), key, instance_id).map(|(_, held)| held)
    }

    /// Per association, its version, when it was first seen and last run;
    /// a damaged file is set aside and the associations count as new.
    pub fn runs(&self) -> BTreeMap<String, RunState> {
        let _g = self.guard();
        let path = self.assoc_dir.join(RUNS_FILE);
        read_json(&path)
            .and_then(|runs| checked_runs(&path, runs))
            .unwrap_or_else(|e| {
                set_aside(&path, &e);
                BTreeMap::new()
            })
    }

    fn save_runs(&self, runs: &BTreeMap<String, RunState>) {
        let _g = self.guard();
        write_json(&self.assoc_dir.join(RUNS_FILE), runs);
    }

    /// Queues gathered items and a run outcome for upload.
    pub fn queue(&self, items: Vec<Item>, run: Run) {
        let _g = self.guard();
        let mut out: Outbox = load(&self.inv_dir.join(OUTBOX_FILE));
        let mut latest: BTreeMap<String, Item> = load(&self.inv_dir.join(LATEST_FILE));
        for i in items {
            latest.insert(i.type_name.clone(), i.clone());
            out.items.insert(i.type_name.clone(), i);
        }
        out.runs.push(run);
        let excess = out.runs.len().saturating_sub(MAX_PENDING_RUNS);
        out.runs.drain(..excess);
        write_json(&self.inv_dir.join(OUTBOX_FILE), &out);
        write_json(&self.inv_dir.join(LATEST_FILE), &latest);
        drop(_g);
        self.upload_bell.notify_one();
    }

    /// The upload request for what is queued (hash only where acknowledged),
    /// and what it contains, to clear once stored.
    fn request(&self) -> Option<Pending> {
        let _g = self.guard();
        let outbox = self.inv_dir.join(OUTBOX_FILE);
        let out: Outbox = load(&outbox);
        if out.items.is_empty() && out.runs.is_empty() {
            return None;
        }
        let acked: BTreeMap<String, String> = load(&self.inv_dir.join(ACKED_FILE));
        let items = out
            .items
            .values()
            .map(|i| {
                let unchanged = acked.get(&i.type_name) == Some(&i.content_hash);
                to_pb(i, unchanged, &outbox)
            })
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
        let path = self.inv_dir.join(LATEST_FILE);
        let latest: BTreeMap<String, Item> = load(&path);
        types
            .iter()
            .filter_map(|t| latest.get(t))
            .map(|i| to_pb(i, false, &path))
            .collect()
    }

    /// The coordinator stored `sent` and the first `runs` outcomes.
    fn stored(&self, sent: &[(String, String)], runs: usize) {
        let _g = self.guard();
        let mut out: Outbox = load(&self.inv_dir.join(OUTBOX_FILE));
        let mut acked: BTreeMap<String, String> = load(&self.inv_dir.join(ACKED_FILE));
        for (t, h) in sent {
            if out.items.get(t).is_some_and(|i| &i.content_hash == h) {
                out.items.remove(t);
            }
            acked.insert(t.clone(), h.clone());
        }
        out.runs.drain(..runs.min(out.runs.len()));
        write_json(&self.inv_dir.join(OUTBOX_FILE), &out);
        write_json(&self.inv_dir.join(ACKED_FILE), &acked);
    }
}

/// An upload request, the (type, hash) pairs it carries, and how many runs.
type Pending = (pb::PutInventoryRequest, Vec<(String, String)>, usize);

/// The upload form of an item stored in `source`. An item whose capture time
/// does not parse goes with the time it is sent, and an error naming the file
/// and the type: its content stays good.
fn to_pb(i: &Item, unchanged: bool, source: &Path) -> pb::InventoryItem {
    let capture_time_ms = parse_timestamp_ms(&i.capture_time).unwrap_or_else(|| {
        error!(path = %source.display(), type_name = %i.type_name, capture_time = %i.capture_time, "stored inventory item's capture time is not a timestamp; sending it with the current time");
        now_ms()
    });
    pb::InventoryItem {
        type_name: i.type_name.clone(),
        schema_version: i.schema_version.clone(),
        capture_time_ms,
        content_hash: i.content_hash.clone(),
        content_json: if unchanged {
            String::new()
        } else {
            serde_json::to_string(&i.content).unwrap_or_default()
        },
        unchanged,
    }
}

fn ms_to_dt(ms: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("time {ms} ms is out of range"))
}

/// When an association is next due, in ms; `None` = never again.
pub fn next_due(a: &pb::SignedAssociation, st: &RunState) -> Result<Option<i64>, String> {
    if a.schedule_expression.trim().is_empty() {
        return Ok(st.last_run_ms.is_none().then_some(st.first_seen_ms));
    }
    let sched = tether_schedule::parse(&a.schedule_expression)
        .map_err(|e| format!("schedule expression: {e}"))?;
    let next = match st.last_run_ms {
        Some(last) => sched.next_after(ms_to_dt(last)?, ms_to_dt(last)?),
        None if a.apply_only_at_cron_interval && sched.is_cron() => {
            let seen = ms_to_dt(st.first_seen_ms)?;
            sched.next_after(seen, seen)
        }
        // A new association (or a new version) runs once right away.
        None => return Ok(Some(st.first_seen_ms)),
    };
    Ok(next.map(|t| t.timestamp_millis()))
}

/// Brings times of `st` later than `now` back to `now`: a clock set back
/// would otherwise put the next run off by as much as it went back (a run
/// at 14:00 by a clock then set back to 12:00, on a 30-minute rate, would
/// next run at 14:30). A clock that jumps forward needs nothing: what fell
/// due meanwhile runs once, not once per missed interval. Returns whether
/// anything changed.
pub fn clock_went_back(st: &mut RunState, now: i64) -> bool {
    let mut changed = false;
    if st.first_seen_ms > now {
        st.first_seen_ms = now;
        changed = true;
    }
    if let Some(last) = st.last_run_ms
        && last > now
    {
        st.last_run_ms = Some(now);
        changed = true;
    }
    changed
}

impl Agent {
    /// Runs due associations; sleeps until the next one is due or a new set arrives.
    pub(super) async fn scheduler(self: Arc<Self>) {
        loop {
            let now = now_ms();
            let held = match self
                .assoc
                .associations(&self.signing_key(), &self.reg.instance_id)
            {
                Ok(held) => held,
                Err(e) => {
                    // Its digest is withheld from the poll, so the coordinator
                    // sends the set again and `replace` rings the bell.
                    error!(error = %e, "held associations are damaged; none run until the coordinator sends them again");
                    tokio::select! {
                        _ = self.assoc.bell.notified() => {}
                        _ = tokio::time::sleep(SCHEDULER_TICK) => {}
                    }
                    continue;
                }
            };
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
                if clock_went_back(st, now) {
                    warn!(association_id = %a.association_id, "this node's clock went back since the association last ran; its schedule counts from now");
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
                            self.assoc.queue(Vec::new(), failed_run(a, e));
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

    /// The association's parameters with its `{{ssm:…}}` references
    /// resolved, and its `{{ssm-secure:…}}` values opened: asked of the
    /// coordinator at each run (a rotated password reaches the next run), so
    /// a run that uses references needs the coordinator; one without any
    /// does not ask.
    async fn resolve_references(
        &self,
        a: &pb::SignedAssociation,
    ) -> Result<(String, Vec<pb::SecretValue>), String> {
        let p = &a.parameters_json;
        if !(p.contains("{{") && (p.contains("ssm:") || p.contains("ssm-secure:"))) {
            return Ok((p.clone(), Vec::new()));
        }
        let req = pb::ResolveReferencesRequest {
            association_id: a.association_id.clone(),
            association_version: a.association_version.clone(),
        };
        let resp = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.resolve_references(req).await }
            })
            .await
            .map_err(|s| {
                format!(
                    "cannot resolve the association's parameter references: {}",
                    s.message()
                )
            })?
            .into_inner();
        let mut params: BTreeMap<String, Vec<String>> = serde_json::from_str(p)
            .map_err(|e| format!("the association's parameters do not parse: {e}"))?;
        for v in params.values_mut().flatten() {
            for pv in &resp.values {
                if v.contains(&pv.reference) {
                    *v = v.replace(&pv.reference, &pv.value);
                }
            }
        }
        let secrets = match &resp.secrets {
            Some(sealed) => {
                let purpose =
                    pb::seal::association_purpose(&a.association_id, &a.association_version);
                pb::seal::open(&self.sealing, &self.reg.instance_id, &purpose, sealed).map_err(
                    |e| format!("cannot open the association's SecureString parameters: {e}"),
                )?
            }
            None => Vec::new(),
        };
        let json = serde_json::to_string(&params)
            .map_err(|e| format!("the association's parameters do not serialize: {e}"))?;
        Ok((json, secrets))
    }

    /// Runs one association: inventory steps in-process, script steps under
    /// supervisors like a command's.
    async fn run_association(&self, a: &pb::SignedAssociation) -> (Vec<Item>, Run) {
        let started = now_ms();
        if let Some(policy) = &self.cfg.node_policy
            && let Err(refusal) = policy.check(&a.document_name, &a.requested_by)
        {
            // failed_run logs it (errors.log) with the reason.
            return (Vec::new(), failed_run(a, refusal.to_string()));
        }
        info!(association_id = %a.association_id, document = %a.document_name, requested_by = %a.requested_by, "association run starting");
        let (parameters_json, secrets) = match self.resolve_references(a).await {
            Ok(resolved) => resolved,
            Err(e) => return (Vec::new(), failed_run(a, e)),
        };
        let steps = match super::plan(&a.document_name, &a.document_content, &parameters_json) {
            Ok(s) => s,
            Err(e) => return (Vec::new(), failed_run(a, e)),
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
                requested_by: a.requested_by.clone(),
                ..Default::default()
            };
            let dir = self
                .state
                .path("associations")
                .join("runs")
                .join(&run_id)
                .join(i.to_string());
            if let Err(e) = tether_util::fs::create_private_dir_all(&dir) {
                failed = true;
                output.push_str(&format!("{}: {}: {e}\n", step.name, dir.display()));
                continue;
            }
            match self.run_step(&cmd, i, step, &dir, &secrets).await {
                Ok(r) => {
                    // Output that cannot be read is reported as such, never as none.
                    let read = |n: &str| match crate::exec::read_output(&dir, n) {
                        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        Err(e) => format!("{}: {e}\n", step.name),
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

    /// A clock set back two hours after a run does not put the next run off
    /// by two hours; one jumping forward makes what fell due run once.
    #[test]
    fn schedules_count_from_now_after_the_clock_went_back() {
        let rate = assoc("rate(30 minutes)", false);
        let ran_at = ms("2026-11-22T14:00:00Z");
        let mut st = RunState {
            version: "1".into(),
            first_seen_ms: ms("2026-11-22T13:00:00Z"),
            last_run_ms: Some(ran_at),
        };
        // Forward by two hours: due (once: the next is counted from that run).
        let later = ms("2026-11-22T16:00:00Z");
        assert!(!clock_went_back(&mut st, later));
        assert!(next_due(&rate, &st).unwrap().unwrap() <= later);
        // Back to 12:00: due 30 minutes from then, not at 14:30.
        let back = ms("2026-11-22T12:00:00Z");
        assert!(clock_went_back(&mut st, back));
        assert_eq!(st.first_seen_ms, back);
        assert_eq!(next_due(&rate, &st), Ok(Some(ms("2026-11-22T12:30:00Z"))));
        assert!(!clock_went_back(&mut st, back), "once only");
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

    #[test]
    fn a_damaged_set_is_not_run_from_and_its_digest_is_withheld() {
        use ring::signature::{Ed25519KeyPair, KeyPair};
        const ME: &str = "mi-0123456789abcdef0";
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let local = Local::new(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap_or_else(|e| panic!("{e}"));
        let k = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap_or_else(|e| panic!("{e}"));
        let public = k.public_key().as_ref().to_vec();
        let content = r#"{"schemaVersion":"2.2"}"#.to_string();
        let a = pb::SignedAssociation {
            instance_id: ME.into(),
            association_id: "6a1f3c2e-8b4d-4e5f-9a0b-1c2d3e4f5a6b".into(),
            association_version: "1".into(),
            document_hash: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content.as_bytes())),
            document_content: content,
            ..Default::default()
        };
        let payload = prost::Message::encode_to_vec(&a);
        let mut covered = pb::ASSOCIATION_SIGNING_CONTEXT.to_vec();
        covered.extend_from_slice(&payload);
        let set = pb::AssociationSet {
            digest: "d1".into(),
            associations: vec![pb::AssociationEnvelope {
                signature: k.sign(&covered).as_ref().to_vec(),
                payload,
            }],
        };
        // Nothing held yet: no digest, no associations, no error.
        assert_eq!(local.digest(&public, ME), "");
        assert!(local.associations(&public, ME).is_ok_and(|h| h.is_empty()));
        local.replace(set.clone(), &public, ME);
        assert_eq!(local.digest(&public, ME), "d1");
        assert_eq!(local.associations(&public, ME).ok(), Some(vec![a.clone()]));

        // A signature damaged on disk: named, not run from, digest withheld.
        let path = dir.path().join("associations").join(SET_FILE);
        let mut stored: StoredSet = read_json(&path).unwrap_or_else(|e| panic!("{e}"));
        stored.envelopes[0].1 = b64().encode([0u8; 64]);
        write_json(&path, &stored);
        let e = local
            .associations(&public, ME)
            .map_or_else(|e| e.to_string(), |h| panic!("damaged set read as {h:?}"));
        assert!(
            e.contains("set.json") && e.contains("envelope 0 no longer verifies"),
            "{e}"
        );
        assert_eq!(local.digest(&public, ME), "");
        // Not JSON at all.
        std::fs::write(&path, b"{\"Digest\": ").unwrap_or_else(|e| panic!("{e}"));
        let e = local
            .associations(&public, ME)
            .map_or_else(|e| e.to_string(), |h| panic!("damaged set read as {h:?}"));
        assert!(e.contains("set.json: not valid"), "{e}");
        // The coordinator sends the set again.
        local.replace(set, &public, ME);
        assert_eq!(local.digest(&public, ME), "d1");
        assert_eq!(local.associations(&public, ME).ok(), Some(vec![a]));
    }

    #[test]
    fn damaged_state_files_are_set_aside_not_taken_for_empty() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let local = Local::new(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let outbox = dir.path().join("inventory").join(OUTBOX_FILE);
        let aside = dir.path().join("inventory").join("outbox.json.corrupt");
        std::fs::write(&outbox, b"not json").unwrap_or_else(|e| panic!("{e}"));
        // The damaged outbox is kept beside, whole; the new run is queued.
        local.queue(Vec::new(), Run::default());
        assert_eq!(
            std::fs::read(&aside).unwrap_or_else(|e| panic!("{e}")),
            b"not json"
        );
        let (_, _, runs) = local.request().unwrap_or_else(|| panic!("lost"));
        assert_eq!(runs, 1);

        // Run states with a time no date can hold are damage too.
        let runs_path = dir.path().join("associations").join(RUNS_FILE);
        assert!(local.runs().is_empty());
        assert!(!runs_path.exists(), "absent stays absent");
        let bad = r#"{"6a1f3c2e-8b4d-4e5f-9a0b-1c2d3e4f5a6b": {"Version": "1", "FirstSeenMs": 1, "LastRunMs": 9223372036854775807}}"#;
        std::fs::write(&runs_path, bad).unwrap_or_else(|e| panic!("{e}"));
        let e = read_json(&runs_path)
            .and_then(|r| checked_runs(&runs_path, r))
            .map_or_else(|e| e.to_string(), |r| panic!("read as {r:?}"));
        assert!(
            e.contains("runs.json")
                && e.contains("association 6a1f3c2e-8b4d-4e5f-9a0b-1c2d3e4f5a6b"),
            "{e}"
        );
        assert!(local.runs().is_empty());
        assert!(dir.path().join("associations/runs.json.corrupt").exists());
        let fine: BTreeMap<String, RunState> = [("x".to_string(), RunState::default())]
            .into_iter()
            .collect();
        local.save_runs(&fine);
        assert_eq!(local.runs(), fine);
    }
}
