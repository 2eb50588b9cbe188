//! `tether-agent run`: the daemon. Long-polls the coordinator over mutual TLS,
//! verifies each envelope, spools it, runs its steps under supervisors, and
//! reports results until the coordinator has stored them.
//!
//! Order of durability: an envelope is written to the spool before it is
//! acknowledged, a step's outcome is on disk before the invocation's report is
//! built, and the report is on disk before it is sent; so a crash at any point
//! either resumes the work or re-sends the result, and the coordinator's
//! idempotent intake makes a re-send harmless.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use parking_lot::Mutex;
use tether_documents::{Document, PlatformType, Step, StepAction};
use tether_proto as pb;
use tether_util::now_ms;
use tokio::sync::{Notify, Semaphore};
use tonic::transport::Channel;
use tracing::{debug, error, info, warn};

use crate::envelope::{self, Refusal};
use crate::exec::{self, StepResult, StepSpec};
use crate::outcome::{self, Next};
use crate::policy::NodePolicy;
use crate::spool::{Spool, Stage};
use crate::state::{Registration, StateDir, StateError};
use crate::{endpoints, inventory, register, runas, sysinfo, tls};

pub(crate) mod associations;
mod upstream;

/// How the daemon behaves; defaults suit production, tests shorten them.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Longest a poll is held by the coordinator.
    pub poll_wait: Duration,
    /// Output kept per stream per step.
    pub output_cap_bytes: u64,
    /// This executable, re-run as the step supervisor.
    pub agent_exe: PathBuf,
    /// PowerShell for aws:runPowerShellScript steps.
    pub pwsh: String,
    /// Command run (with `sh -c`) after reporting a step that exited 194.
    pub reboot_command: String,
    /// Documents run at once.
    pub max_concurrent: usize,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// How steps run.
    pub executor: Executor,
    /// Inventory uploads wait a random time up to this, so a fleet on one
    /// schedule does not upload in the same second.
    pub upload_jitter: Duration,
    /// Where the inventory gatherers read.
    pub inventory_sources: inventory::Sources,
    /// An agent that moved off its own coordinator endpoint goes back after
    /// between this and twice this (at random), so replicas stay shared.
    pub return_home_after: Duration,
    /// The settings file the agent read (held to StrictModes with the state).
    pub config_file: Option<PathBuf>,
    /// `run_as_user` of the settings file: whom steps run as (None: the agent's own user).
    pub run_as_user: Option<String>,
    /// The node's own policy (None: every command that verifies runs).
    pub node_policy: Option<NodePolicy>,
    /// The file the policy was read from when agent.toml names one (held
    /// to StrictModes with agent.toml).
    pub policy_file: Option<PathBuf>,
    /// How the agent is restarted after a self-update (run with `sh -c`);
    /// `None`: through the init system that runs it, else by re-executing
    /// itself (`crate::update::detect_restart`).
    pub restart_command: Option<String>,
    /// How long a self-updated agent has to report in before the previous
    /// one is restored.
    pub update_health_timeout: Duration,
    /// Where the agent logs (the update worker logs there too).
    pub log: Option<crate::config::LogSettings>,
    /// Whether SIGUSR1 makes the process re-execute itself (the daemon, so
    /// that an update restarts an agent run by hand; not an agent run
    /// inside another program, such as tether-bench).
    pub reexec_on_signal: bool,
}

/// How steps run: under a detached supervisor with their real interpreter
/// (`sh`, `pwsh`), or not at all — every step succeeds at once with no output,
/// which lets `tether-bench` measure everything but the steps themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Executor {
    #[default]
    Supervised,
    NoOp,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            poll_wait: Duration::from_secs(20),
            output_cap_bytes: 16 * 1024 * 1024,
            agent_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("tether-agent")),
            pwsh: "pwsh".into(),
            reboot_command: "shutdown -r +1".into(),
            max_concurrent: 5,
            max_backoff: Duration::from_secs(60),
            executor: Executor::default(),
            upload_jitter: DEFAULT_UPLOAD_JITTER,
            inventory_sources: inventory::Sources::default(),
            return_home_after: DEFAULT_RETURN_HOME_AFTER,
            config_file: None,
            run_as_user: None,
            node_policy: None,
            policy_file: None,
            restart_command: None,
            update_health_timeout: crate::update::DEFAULT_HEALTH_TIMEOUT,
            log: None,
            reexec_on_signal: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("registration.json: CommandSigningKey is not hex")]
    BadSigningKey,
    #[error("registration.json: no coordinator endpoint")]
    NoEndpoint,
    #[error(transparent)]
    RunAs(#[from] crate::runas::RunAsError),
    #[error("cannot re-execute the agent after an update: {0}")]
    Reexec(std::io::Error),
}

/// Default least time an agent stays on another replica before returning to its own.
pub const DEFAULT_RETURN_HOME_AFTER: Duration = Duration::from_secs(600);

/// Default upper bound of the random delay before an inventory upload.
pub const DEFAULT_UPLOAD_JITTER: Duration = Duration::from_secs(30);

/// Largest report batch sent in one call: half the message limit, so one
/// report with every stream at its cap still goes through after [`fit_report`].
const REPORT_BUDGET_BYTES: usize = pb::MAX_MESSAGE_BYTES / 2;
/// How long a received command may run before the agent tells the
/// coordinator it started (the coordinator delivers again after 30 s without).
const ACK_DELAY: Duration = Duration::from_millis(1000);
/// How often a running step's new output is sent to the coordinator, the most
/// sent at once, and how much of each stream is sent live (the final report
/// carries all of it, up to the output cap).
const LIVE_OUTPUT_INTERVAL: Duration = Duration::from_secs(1);
const LIVE_OUTPUT_CHUNK_BYTES: u64 = 256 * 1024;
const LIVE_OUTPUT_CAP_BYTES: u64 = 4 * 1024 * 1024;
/// The longest the agent waits before looking at its certificate again,
/// the shortest, and the longest before retrying a failed renewal.
const RENEWAL_CHECK_MAX: Duration = Duration::from_secs(6 * 3600);
const RENEWAL_CHECK_MIN: Duration = Duration::from_secs(1);
const RENEWAL_RETRY_MAX: Duration = Duration::from_secs(300);
/// How often the reporter looks through the whole spool (and prunes it).
/// How long past its hold a poll's answer is awaited. An answer that comes
/// after the agent gave up is lost with the envelopes it carried, which then
/// wait 30 s for their redelivery: under a fan-out to 10,000 nodes answers
/// came up to 17 s late, so 15 s lost some. A dead connection is found by
/// the HTTP/2 keep-alive (30 s + 20 s), not by this.
const POLL_GRACE: Duration = Duration::from_secs(45);

const REPORT_RESCAN: Duration = Duration::from_secs(30);
/// Reported commands are kept this long (replays are refused by expiry after that).
const SPOOL_RETENTION: Duration = Duration::from_secs(24 * 3600);

struct Agent {
    state: StateDir,
    reg: Registration,
    /// The command-signing keys accepted: the current one first, then any
    /// the coordinator's trust bundle accepts besides it (a rotation).
    signing_keys: parking_lot::RwLock<Vec<Vec<u8>>>,
    /// Set (and the renewer woken) when the trust bundle says another CA
    /// issues client certificates now: renew at once.
    renew_now: Notify,
    force_renewal: std::sync::atomic::AtomicBool,
    cfg: AgentConfig,
    spool: Spool,
    upstream: upstream::Upstream,
    /// Coordinator clock minus ours, in ms, from the last reply.
    skew_ms: AtomicI64,
    report_bell: Notify,
    /// Commands whose report was just saved (or asked for again): the
    /// reporter sends these at once without listing the whole spool.
    fresh_reports: Mutex<Vec<String>>,
    running: Mutex<HashSet<String>>,
    /// Commands cancelled before their envelope reached us: never run them.
    cancelled_unseen: Mutex<HashSet<String>>,
    slots: Semaphore,
    assoc: associations::Local,
    /// This node's sealing key: the coordinator seals command secrets to it.
    sealing: tether_proto::seal::NodeKey,
    /// The digest of the trust bundle last received ("" = none yet).
    trust_digest: Mutex<String>,
}

/// A mutual-TLS channel to one of the registered coordinator's endpoints,
/// from the stored key material.
pub fn build_channel(state: &StateDir, endpoint: &str) -> Result<Channel, RunError> {
    let mut channels = upstream::build_channels(state, &[endpoint.to_string()])?;
    channels.pop().ok_or(RunError::NoEndpoint)
}

impl Agent {
    fn client(channel: Channel) -> pb::agent_client::AgentClient<Channel> {
        pb::agent_client::AgentClient::new(channel)
            .max_decoding_message_size(pb::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(pb::MAX_MESSAGE_BYTES)
    }

    /// Makes a call on the endpoint in use. A transport failure moves the
    /// agent to the next endpoint, where the call is made once more at once
    /// (what the agent sends is idempotent at the coordinator, so a call that
    /// did arrive before the failure does no harm twice); after that, the
    /// caller's own backoff applies.
    async fn call<T, F, Fut>(&self, f: F) -> Result<tonic::Response<T>, tonic::Status>
    where
        F: Fn(pb::agent_client::AgentClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let (used, channel) = self.upstream.current();
        match f(Self::client(channel)).await {
            Err(status) if self.upstream.failed(used, &status) => {
                let (used, channel) = self.upstream.current();
                let again = f(Self::client(channel)).await;
                if let Err(status) = &again {
                    self.upstream.failed(used, status);
                }
                again
            }
            done => done,
        }
    }

    fn now(&self) -> i64 {
        now_ms() + self.skew_ms.load(Ordering::Relaxed)
    }

    fn note_server_time(&self, server_ms: i64) {
        if server_ms <= 0 {
            return;
        }
        let skew = server_ms - now_ms();
        let before = self.skew_ms.swap(skew, Ordering::Relaxed);
        if skew.abs() > 60_000 && (before - skew).abs() > 30_000 {
            warn!(
                skew_seconds = skew / 1000,
                "this node's clock differs from the coordinator's by {} s; sync the time (chrony, systemd-timesyncd or ntpdate)",
                skew.abs() / 1000
            );
        }
    }

    fn save_status(&self, last_error: Option<String>) {
        // status.json is rewritten whole at every poll: a damaged one is
        // replaced, and said so.
        let mut s = self.state.load_status().unwrap_or_else(|e| {
            warn!(error = %e, "status.json unreadable; writing it afresh");
            Default::default()
        });
        if last_error.is_none() {
            s.last_poll_ms = Some(now_ms());
        }
        s.last_error = last_error;
        s.clock_skew_ms = Some(self.skew_ms.load(Ordering::Relaxed));
        s.pid = Some(std::process::id());
        if let Err(e) = self.state.save_status(&s) {
            debug!(error = %e, "could not save status.json");
        }
    }

    // ----- receiving -----

    /// Sends one report at once (acknowledgements, refusals, cancellations, live output).
    async fn send_one(
        &self,
        report: pb::InvocationReport,
    ) -> Result<tonic::Response<pb::ReportResponse>, tonic::Status> {
        self.call(|mut c| {
            let reports = vec![report.clone()];
            async move { c.report(pb::ReportRequest { reports }).await }
        })
        .await
    }

    async fn receive(self: &Arc<Self>, env: pb::CommandEnvelope) {
        let checked = envelope::with_any_key(&self.keys(), |k| {
            envelope::verify(&env, k, &self.reg.instance_id, self.now())
        });
        let cmd = match checked {
            Ok(cmd) => cmd,
            Err(refusal) => {
                let id = envelope::claimed_command_id(&env);
                self.refuse(id, refusal).await;
                return;
            }
        };
        let id = cmd.command_id.clone();
        if self.cancelled_unseen.lock().contains(&id) {
            info!(command_id = %id, "command was cancelled before it arrived; not running it");
            return;
        }
        let seen = match self.spool.nonce(&id) {
            Ok(seen) => seen,
            Err(e) => {
                // Whether it ran already cannot be told: not now. The
                // coordinator delivers it again if it is not acknowledged.
                error!(command_id = %id, error = %e, "cannot tell whether the command was received before; not running it now");
                return;
            }
        };
        if let Some(nonce) = seen {
            if nonce == cmd.nonce {
                self.refuse(Some(id.clone()), Refusal::Replayed(id)).await;
            } else {
                // A redelivery: our acknowledgement was lost. Say where we are.
                debug!(command_id = %id, "command delivered again; re-sending its state");
                match self.spool.stage(&id) {
                    Stage::Running => self.ack(&id).await,
                    Stage::Finished | Stage::Reported => {
                        if let Err(e) = self.spool.unmark_reported(&id) {
                            warn!(command_id = %id, error = %e, "cannot queue the report again");
                        }
                        self.queue_report(id);
                    }
                }
            }
            return;
        }
        // The node's own policy, on what the signature vouches for (the
        // document's name and who sent it); after the redelivery check, so
        // a command accepted before the policy changed is not refused
        // halfway through.
        if let Some(policy) = &self.cfg.node_policy
            && let Err(refusal) = policy.check(&cmd.document_name, &cmd.requested_by)
        {
            self.refuse(Some(id), Refusal::NodePolicy(refusal)).await;
            return;
        }
        if let Err(e) = self.spool.accept(&cmd, &env) {
            // Nothing runs that is not on disk first; what could be written
            // goes, so that a restart does not take it for a received
            // command. The invocation ends Failed with the reason (the
            // coordinator delivers again if this report is lost).
            error!(command_id = %id, error = %e, "cannot spool the command; not running it");
            if let Err(e) = self.spool.discard(&id) {
                error!(command_id = %id, error = %e, "cannot remove the half-written command from the spool");
            }
            let detail = format!("the agent could not record the command, so it did not run: {e}");
            let now = now_ms();
            let report = pb::InvocationReport {
                command_id: id.clone(),
                state: pb::InvocationState::Failed as i32,
                response_code: -1,
                started_at_ms: now,
                ended_at_ms: now,
                detail: detail.clone(),
                plugins: vec![pb::PluginReport {
                    name: "document".into(),
                    state: pb::InvocationState::Failed as i32,
                    response_code: -1,
                    stderr: detail.into_bytes(),
                    started_at_ms: now,
                    ended_at_ms: now,
                    ..Default::default()
                }],
            };
            if let Err(s) = self.send_one(report).await {
                warn!(command_id = %id, error = %s.message(), "could not report the failure; the coordinator will deliver the command again");
            }
            return;
        }
        info!(command_id = %id, document = %cmd.document_name, requested_by = %cmd.requested_by, "command accepted");
        self.start(id.clone());
        // A command that ends within ACK_DELAY is acknowledged by its result
        // alone: one call and one write fewer per invocation on a busy fleet.
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ACK_DELAY).await;
            if me.spool.stage(&id) == Stage::Running {
                me.ack(&id).await;
            }
        });
    }

    /// A signed cancellation: stops the command's running step (its whole
    /// process group) and keeps later steps from starting; a command we never
    /// received is reported Cancelled at once and will not run if it arrives.
    async fn cancel(self: &Arc<Self>, env: pb::CommandEnvelope) {
        let cancel = match envelope::with_any_key(&self.keys(), |k| {
            envelope::verify_cancel(&env, k, &self.reg.instance_id, self.now())
        }) {
            Ok(c) => c,
            Err(refusal) => {
                error!(reason = %refusal, "cancellation refused");
                return;
            }
        };
        let id = cancel.command_id;
        if !self.spool.has(&id) {
            info!(command_id = %id, "cancelled before it reached this agent");
            self.cancelled_unseen.lock().insert(id.clone());
            let report = pb::InvocationReport {
                command_id: id.clone(),
                state: pb::InvocationState::Cancelled as i32,
                response_code: -1,
                ended_at_ms: now_ms(),
                detail: "cancelled before it reached the agent".into(),
                ..Default::default()
            };
            if let Err(s) = self.send_one(report).await {
                warn!(command_id = %id, error = %s.message(), "could not report the cancellation; the coordinator will ask again");
            }
            return;
        }
        if self.spool.stage(&id) != Stage::Running {
            debug!(command_id = %id, "cancellation for a command that already finished; its result stands");
            return;
        }
        info!(command_id = %id, "cancelling the command");
        if let Err(e) = self.spool.mark_cancelled(&id) {
            error!(command_id = %id, error = %e, "cannot record the cancellation");
        }
        let dirs = self.spool.step_dirs(&id).unwrap_or_else(|e| {
            error!(command_id = %id, error = %e, "cannot find the running step to stop; later steps will not start");
            Vec::new()
        });
        for dir in dirs {
            if crate::update::past_point_of_no_return(&dir) {
                warn!(command_id = %id, "the agent update is swapping binaries; it is not cancelled now (it ends with a working agent either way)");
                continue;
            }
            if matches!(exec::read_result(&dir), Ok(None))
                && let Err(e) = exec::request_cancel(&dir)
            {
                error!(command_id = %id, error = %e, "cannot ask the step to stop");
            }
        }
    }

    async fn refuse(&self, command_id: Option<String>, refusal: Refusal) {
        let id = command_id.as_deref().unwrap_or("?");
        match &refusal {
            Refusal::NodePolicy(_) => {
                error!(command_id = id, reason = %refusal, "command refused by this node's policy")
            }
            _ => error!(command_id = id, reason = %refusal, "command envelope refused"),
        }
        let Some(command_id) = command_id else {
            return;
        };
        let report = pb::InvocationReport {
            command_id,
            state: pb::InvocationState::Refused as i32,
            response_code: -1,
            detail: refusal.to_string(),
            ..Default::default()
        };
        if let Err(s) = self.send_one(report).await {
            warn!(error = %s.message(), "could not send the refusal");
        }
    }

    /// Tells the coordinator the command was accepted and is starting.
    async fn ack(&self, command_id: &str) {
        let report = pb::InvocationReport {
            command_id: command_id.to_string(),
            state: pb::InvocationState::InProgress as i32,
            started_at_ms: now_ms(),
            ..Default::default()
        };
        match self.send_one(report).await {
            Ok(r) => self.note_server_time(r.into_inner().server_time_ms),
            Err(s) => {
                debug!(command_id, error = %s.message(), "acknowledgement not sent; the coordinator will deliver again")
            }
        }
    }

    // ----- running -----

    fn start(self: &Arc<Self>, command_id: String) {
        {
            let mut running = self.running.lock();
            if !running.insert(command_id.clone()) {
                return;
            }
        }
        let me = self.clone();
        tokio::spawn(async move {
            let permit = me.slots.acquire().await;
            let report = me.execute(&command_id).await;
            me.keep_report(&report.0, report.1).await;
            drop(permit);
            me.running.lock().remove(&command_id);
            me.queue_report(command_id);
        });
    }

    /// Hands a saved report to the reporter, which sends it at once.
    fn queue_report(&self, command_id: String) {
        self.fresh_reports.lock().push(command_id);
        self.report_bell.notify_one();
    }

    /// Saves a finished command's report in the spool, where the reporter
    /// finds it. While it cannot be saved (a full disk), the report goes to
    /// the coordinator from memory, and once stored there the command is
    /// marked reported (an empty file); until either works, both are tried
    /// again, so the invocation never stays unfinished for want of space.
    async fn keep_report(&self, report: &pb::InvocationReport, reboot: bool) {
        let id = &report.command_id;
        let mut backoff = backoff(self.cfg.max_backoff);
        loop {
            let e = match self.spool.save_report(report, reboot) {
                Ok(()) => return,
                Err(e) => e,
            };
            error!(command_id = %id, error = %e, "cannot save the report; sending it from memory");
            match self
                .send_one(fit_report(report.clone(), REPORT_BUDGET_BYTES))
                .await
            {
                Ok(r) => match self.spool.mark_reported(id) {
                    Ok(_) => {
                        let stored = r.into_inner();
                        self.note_server_time(stored.server_time_ms);
                        info!(command_id = %id, "report stored by the coordinator without a copy in the spool");
                        return;
                    }
                    Err(e) => {
                        error!(command_id = %id, error = %e, "cannot mark the report stored")
                    }
                },
                Err(s) => {
                    warn!(command_id = %id, error = %s.message(), "report not delivered; trying again")
                }
            }
            tokio::time::sleep(backoff.next().unwrap_or(self.cfg.max_backoff)).await;
        }
    }

    /// Runs (or resumes) every step of a spooled command; returns its report
    /// and whether a step asked for a reboot.
    async fn execute(&self, command_id: &str) -> (pb::InvocationReport, bool) {
        let failed = |detail: String| {
            error!(command_id, %detail, "command failed before running");
            let now = now_ms();
            pb::InvocationReport {
                command_id: command_id.to_string(),
                state: pb::InvocationState::Failed as i32,
                response_code: -1,
                started_at_ms: now,
                ended_at_ms: now,
                detail: detail.clone(),
                plugins: vec![pb::PluginReport {
                    name: "document".into(),
                    state: pb::InvocationState::Failed as i32,
                    response_code: -1,
                    stderr: detail.into_bytes(),
                    started_at_ms: now,
                    ended_at_ms: now,
                    ..Default::default()
                }],
            }
        };
        let cmd = match self.spool.command(command_id) {
            Ok(c) => c,
            Err(e) => return (failed(e.to_string()), false),
        };
        let steps = match plan(
            &cmd.document_name,
            &cmd.document_content,
            &cmd.parameters_json,
        ) {
            Ok(s) => s,
            Err(e) => return (failed(e), false),
        };
        // SecureString values, opened in memory (again after a restart: the
        // spool holds only what was sealed to this node).
        let secrets = match self.open_secrets(&cmd) {
            Ok(s) => s,
            Err(e) => return (failed(e), false),
        };
        let mut plugins = Vec::new();
        let mut invocation = outcome::Invocation::default();
        let started = now_ms();
        for (i, step) in steps.iter().enumerate() {
            let dir = self.spool.step_dir(command_id, i);
            let cancelled = self.spool.is_cancelled(command_id);
            let set_up = dir.join(exec::SPEC_FILE).exists();
            match invocation.next_step(cancelled, set_up, step.skipped.as_deref()) {
                Next::Run => {}
                Next::Cancelled => {
                    let now = now_ms();
                    plugins.push(pb::PluginReport {
                        name: step.name.clone(),
                        state: pb::InvocationState::Cancelled as i32,
                        response_code: -1,
                        stderr: b"the command was cancelled before this step started".to_vec(),
                        started_at_ms: now,
                        ended_at_ms: now,
                        ..Default::default()
                    });
                    continue;
                }
                Next::Skip(why) => {
                    let now = now_ms();
                    plugins.push(pb::PluginReport {
                        name: step.name.clone(),
                        state: pb::InvocationState::Success as i32,
                        response_code: 0,
                        stdout: why.into_bytes(),
                        started_at_ms: now,
                        ended_at_ms: now,
                        ..Default::default()
                    });
                    continue;
                }
            }
            let result = match self.run_step(&cmd, i, step, &dir, &secrets).await {
                Ok(r) => r,
                Err(e) => StepResult {
                    exit_code: -1,
                    timed_out: false,
                    cancelled: false,
                    stdout_truncated: false,
                    stderr_truncated: false,
                    started_at_ms: now_ms(),
                    ended_at_ms: now_ms(),
                    error: Some(e),
                },
            };
            let state = invocation.ran(outcome::Ended {
                exit_code: result.exit_code,
                timed_out: result.timed_out,
                cancelled: result.cancelled,
                error: result.error.is_some(),
            });
            // Output that cannot be read is reported as such, never as none.
            let mut unread = Vec::new();
            let mut read = |name: &str| {
                exec::read_output(&dir, name).unwrap_or_else(|e| {
                    error!(command_id, error = %e, "step output unreadable; reporting why");
                    unread.push(e.to_string());
                    Vec::new()
                })
            };
            let stdout = read(exec::STDOUT_FILE);
            let mut stderr = read(exec::STDERR_FILE);
            for err in result.error.iter().chain(&unread) {
                if !stderr.is_empty() {
                    stderr.push(b'\n');
                }
                stderr.extend_from_slice(err.as_bytes());
            }
            if result.cancelled {
                stderr.extend_from_slice(
                    b"\nthe command was cancelled; the step's processes were killed",
                );
            }
            if result.timed_out {
                stderr.extend_from_slice(
                    format!(
                        "\nthe step exceeded its executionTimeout of {} s and was killed",
                        step.timeout_seconds
                    )
                    .as_bytes(),
                );
            }
            plugins.push(pb::PluginReport {
                name: step.name.clone(),
                state: invocation_state(state) as i32,
                response_code: result.exit_code,
                stdout,
                stderr,
                stdout_truncated: result.stdout_truncated,
                stderr_truncated: result.stderr_truncated,
                started_at_ms: result.started_at_ms,
                ended_at_ms: result.ended_at_ms,
                step_index: i as u32,
                ..Default::default()
            });
        }
        let done = invocation.outcome();
        let overall = invocation_state(done.status);
        info!(command_id, status = ?overall, exit_code = done.response_code, "command finished");
        let report = pb::InvocationReport {
            command_id: command_id.to_string(),
            state: overall as i32,
            response_code: done.response_code,
            started_at_ms: plugins.first().map_or(started, |p| p.started_at_ms),
            ended_at_ms: plugins.last().map_or_else(now_ms, |p| p.ended_at_ms),
            detail: String::new(),
            plugins,
        };
        (report, done.reboot)
    }

    /// The values of the command's `{{ssm-secure:…}}` references, opened
    /// with this node's sealing key (none when it has none).
    fn open_secrets(&self, cmd: &pb::SignedCommand) -> Result<Vec<pb::SecretValue>, String> {
        let Some(sealed) = &cmd.secrets else {
            return Ok(Vec::new());
        };
        let purpose = tether_proto::seal::command_purpose(&cmd.command_id);
        tether_proto::seal::open(&self.sealing, &self.reg.instance_id, &purpose, sealed)
            .map_err(|e| format!("cannot open the command's SecureString parameters: {e}"))
    }

    /// Runs one step under a supervisor, or picks up one that is already
    /// running or finished (after an agent restart). With `secrets`, the
    /// step is sealed: their values are put into its script in memory (see
    /// [`exec::Handoff`]) and masked in its output.
    async fn run_step(
        &self,
        cmd: &pb::SignedCommand,
        index: usize,
        step: &Step,
        dir: &std::path::Path,
        secrets: &[pb::SecretValue],
    ) -> Result<StepResult, String> {
        if self.cfg.executor == Executor::NoOp {
            let now = now_ms();
            return Ok(StepResult {
                exit_code: 0,
                timed_out: false,
                cancelled: false,
                stdout_truncated: false,
                stderr_truncated: false,
                started_at_ms: now,
                ended_at_ms: now,
                error: None,
            });
        }
        if let Some(r) = exec::read_result(dir).map_err(|e| e.to_string())? {
            return Ok(r);
        }
        let spec_file = dir.join(exec::SPEC_FILE);
        let mut fresh = !spec_file.exists();
        if !fresh
            && exec::never_started(dir, exec::SUPERVISOR_GRACE)
                .await
                .map_err(|e| e.to_string())?
        {
            // Set up, but the agent stopped before it spawned the supervisor:
            // the step never ran, so it is set up again (a sealed step's
            // script exists only in memory) and run now.
            info!(command_id = %cmd.command_id, step = %step.name, "a step set up before the agent restarted never started; starting it now");
            std::fs::remove_file(&spec_file)
                .map_err(|e| format!("{}: {e}", spec_file.display()))?;
            fresh = true;
        }
        if fresh {
            crate::state::ensure_dir(dir).map_err(|e| e.to_string())?;
            let (script_name, program, args) = match step.action {
                StepAction::RunShellScript => ("script.sh", "sh".to_string(), vec![]),
                StepAction::SoftwareInventory => {
                    return Err(
                        "aws:softwareInventory runs from an association (create-association), not as a command"
                            .into(),
                    );
                }
                StepAction::UpdateAgent => {
                    let spec = self.update_step(step, dir)?;
                    spec.write(dir).map_err(|e| e.to_string())?;
                    exec::spawn_supervisor(&self.cfg.agent_exe, dir).map_err(|e| e.to_string())?;
                    info!(command_id = %cmd.command_id, step = %step.name, "agent update started");
                    return tokio::select! {
                        r = exec::wait_result(dir) => r.map_err(|e| e.to_string()),
                        never = self.stream_output(&cmd.command_id, index, &step.name, dir) => match never {},
                    };
                }
                StepAction::RunPowerShellScript => (
                    "script.ps1",
                    self.cfg.pwsh.clone(),
                    vec![
                        "-NoProfile".to_string(),
                        "-NonInteractive".to_string(),
                        "-File".to_string(),
                    ],
                ),
            };
            let mut body = step.commands.join("\n");
            body.push('\n');
            let handoff = if secrets.is_empty() {
                None
            } else {
                Some(sealed_step(step, std::mem::take(&mut body), secrets)?)
            };
            let script = match &handoff {
                Some(_) => None,
                None => {
                    let script = dir.join(script_name);
                    write_executable(&script, body.as_bytes())
                        .map_err(|e| format!("{}: {e}", script.display()))?;
                    Some(script)
                }
            };
            let working_directory = if step.working_directory.trim().is_empty() {
                None
            } else {
                Some(PathBuf::from(step.working_directory.trim()))
            };
            // Read again for each step, so account changes apply without a restart.
            let user =
                runas::resolve(self.cfg.run_as_user.as_deref()).map_err(|e| e.to_string())?;
            let vars = runas::step_variables(&cmd.command_id, &self.reg.instance_id);
            let spec = StepSpec {
                program,
                args,
                working_directory,
                timeout_seconds: step.timeout_seconds,
                env: runas::environment(std::env::vars_os(), &user, &vars),
                output_cap_bytes: self.cfg.output_cap_bytes,
                clean_env: true,
                script,
                run_as: Some(user),
                sealed: handoff.is_some(),
            };
            spec.write(dir).map_err(|e| e.to_string())?;
            match &handoff {
                Some(h) => exec::spawn_sealed_supervisor(&self.cfg.agent_exe, dir, h),
                None => exec::spawn_supervisor(&self.cfg.agent_exe, dir),
            }
            .map_err(|e| e.to_string())?;
            // A cancellation that came in while the step was being set up.
            if self.spool.is_cancelled(&cmd.command_id) {
                exec::request_cancel(dir).map_err(|e| e.to_string())?;
            }
        } else {
            info!(command_id = %cmd.command_id, step = %step.name, "resuming a step started before the agent restarted");
        }
        tokio::select! {
            r = exec::wait_result(dir) => r.map_err(|e| e.to_string()),
            never = self.stream_output(&cmd.command_id, index, &step.name, dir) => match never {},
        }
    }

    /// The supervised step of `tether:updateAgent`: the agent binary itself
    /// as `__update DIR`, as the agent's own user, with what to do in
    /// `update.json` (see [`crate::update`]). No time limit on the
    /// supervisor: the worker applies executionTimeout to the download and
    /// never stops halfway through a swap.
    fn update_step(&self, step: &Step, dir: &std::path::Path) -> Result<StepSpec, String> {
        let (version, allow_downgrade) = crate::update::UpdateRequest::inputs(&step.inputs)?;
        let request = crate::update::UpdateRequest {
            version,
            allow_downgrade,
            state_dir: self.state.dir.clone(),
            agent_exe: self.cfg.agent_exe.clone(),
            health_timeout_secs: self.cfg.update_health_timeout.as_secs().max(1),
            timeout_seconds: step.timeout_seconds,
            restart: crate::update::detect_restart(self.cfg.restart_command.as_deref()),
            log: self.cfg.log.clone(),
        };
        request.write(dir).map_err(|e| e.to_string())?;
        Ok(StepSpec {
            program: self.cfg.agent_exe.to_string_lossy().into_owned(),
            args: vec![
                crate::update::UPDATE_SUBCOMMAND.to_string(),
                dir.to_string_lossy().into_owned(),
            ],
            working_directory: None,
            timeout_seconds: 0,
            env: Vec::new(),
            output_cap_bytes: self.cfg.output_cap_bytes,
            clean_env: false,
            script: None,
            run_as: None,
            sealed: false,
        })
    }

    /// Sends a running step's new output to the coordinator every
    /// [`LIVE_OUTPUT_INTERVAL`], so `get-command-invocation --follow` shows it
    /// as it is produced. Best effort: what fails to go now goes next time,
    /// and the final report carries everything. Never returns.
    async fn stream_output(
        &self,
        command_id: &str,
        index: usize,
        name: &str,
        dir: &std::path::Path,
    ) -> std::convert::Infallible {
        // Association runs are not commands: their outcome goes with the inventory upload.
        if !self.spool.has(command_id) {
            return std::future::pending().await;
        }
        let mut sent = [0u64; 2];
        let mut ticker = tokio::time::interval(LIVE_OUTPUT_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let mut chunks = [Vec::new(), Vec::new()];
            for (k, file) in [exec::STDOUT_FILE, exec::STDERR_FILE].iter().enumerate() {
                let room = LIVE_OUTPUT_CAP_BYTES.saturating_sub(sent[k]);
                chunks[k] =
                    read_from(&dir.join(file), sent[k], room.min(LIVE_OUTPUT_CHUNK_BYTES)).await;
            }
            if chunks.iter().all(Vec::is_empty) {
                continue;
            }
            let lens = [chunks[0].len() as u64, chunks[1].len() as u64];
            let [stdout, stderr] = chunks;
            let report = pb::InvocationReport {
                command_id: command_id.to_string(),
                state: pb::InvocationState::InProgress as i32,
                plugins: vec![pb::PluginReport {
                    name: name.to_string(),
                    state: pb::InvocationState::InProgress as i32,
                    step_index: index as u32,
                    stdout_offset: sent[0] as i64,
                    stdout,
                    stderr_offset: sent[1] as i64,
                    stderr,
                    ..Default::default()
                }],
                ..Default::default()
            };
            let sent_ok = self.send_one(report).await;
            match sent_ok {
                Ok(_) => {
                    sent[0] += lens[0];
                    sent[1] += lens[1];
                }
                Err(s) => {
                    debug!(command_id, error = %s.message(), "live output not sent; will retry")
                }
            }
        }
    }

    // ----- reporting -----

    /// Sends every finished, unreported command; loops until shutdown. A
    /// report just saved is sent the moment the reporter is rung, without
    /// listing the spool; the whole spool is looked through at start, every
    /// [`REPORT_RESCAN`] and after a failure (so nothing saved is left behind).
    async fn reporter(self: Arc<Self>) {
        let mut backoff = backoff(self.cfg.max_backoff);
        let mut rescan = true;
        let mut pruned_at: Option<tokio::time::Instant> = None;
        loop {
            let mut wait = REPORT_RESCAN;
            let fresh = std::mem::take(&mut *self.fresh_reports.lock());
            let pending: Vec<String> = if rescan {
                match self.spool.unfinished() {
                    Ok(unfinished) => unfinished
                        .into_iter()
                        .filter(|(_, s)| *s == Stage::Finished)
                        .map(|(id, _)| id)
                        .collect(),
                    Err(e) => {
                        wait = backoff.next().unwrap_or(self.cfg.max_backoff);
                        error!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot list the spool; results wait in it");
                        Vec::new()
                    }
                }
            } else {
                let mut ids = fresh;
                ids.sort();
                ids.dedup();
                ids.retain(|id| self.spool.stage(id) == Stage::Finished);
                ids
            };
            rescan = false;
            if !pending.is_empty() {
                match self.send_reports(&pending).await {
                    Ok(()) => backoff = self::backoff(self.cfg.max_backoff),
                    Err(e) => {
                        wait = backoff.next().unwrap_or(self.cfg.max_backoff);
                        rescan = true;
                        warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "results not delivered yet; they stay in the spool");
                    }
                }
            }
            if pruned_at.is_none_or(|at| at.elapsed() >= REPORT_RESCAN) {
                pruned_at = Some(tokio::time::Instant::now());
                match self.spool.prune(SPOOL_RETENTION) {
                    Ok(0) => {}
                    Ok(pruned) => debug!(pruned, "old reported commands removed from the spool"),
                    Err(e) => debug!(error = %e, "old reported commands not pruned"),
                }
            }
            tokio::select! {
                _ = self.report_bell.notified() => {}
                _ = tokio::time::sleep(wait) => rescan = true,
            }
        }
    }

    /// Sends the stored reports of `ids`, in batches that stay under the
    /// message limit. A report that cannot be read from the spool is sent as a
    /// failure naming why, so that its invocation still ends.
    async fn send_reports(&self, ids: &[String]) -> Result<(), String> {
        let mut batch: Vec<(String, pb::InvocationReport)> = Vec::new();
        let mut size = 0;
        for id in ids {
            let report = match self.spool.report(id) {
                Ok(r) => fit_report(r, REPORT_BUDGET_BYTES),
                Err(e) => {
                    error!(command_id = %id, error = %e, "stored report unreadable; reporting a failure");
                    pb::InvocationReport {
                        command_id: id.clone(),
                        state: pb::InvocationState::Failed as i32,
                        response_code: -1,
                        ended_at_ms: now_ms(),
                        detail: format!("the agent could not read its stored result: {e}"),
                        ..Default::default()
                    }
                }
            };
            let len = prost::Message::encoded_len(&report);
            if !batch.is_empty() && size + len > REPORT_BUDGET_BYTES {
                self.send_batch(std::mem::take(&mut batch)).await?;
                size = 0;
            }
            size += len;
            batch.push((id.clone(), report));
        }
        if !batch.is_empty() {
            self.send_batch(batch).await?;
        }
        Ok(())
    }

    async fn send_batch(&self, batch: Vec<(String, pb::InvocationReport)>) -> Result<(), String> {
        let (ids, reports): (Vec<String>, Vec<pb::InvocationReport>) = batch.into_iter().unzip();
        let r = self
            .call(|mut c| {
                let reports = reports.clone();
                async move { c.report(pb::ReportRequest { reports }).await }
            })
            .await
            .map_err(|s| s.message().to_string())?;
        self.note_server_time(r.into_inner().server_time_ms);
        for id in &ids {
            match self.spool.mark_reported(id) {
                Ok(true) => self.reboot(id),
                Ok(false) => {}
                Err(e) => error!(command_id = %id, error = %e, "cannot mark the report sent"),
            }
            info!(command_id = %id, "result stored by the coordinator");
        }
        Ok(())
    }

    fn reboot(&self, command_id: &str) {
        warn!(command_id, command = %self.cfg.reboot_command, "a step exited 194: rebooting as requested");
        if let Err(e) = std::process::Command::new("sh")
            .arg("-c")
            .arg(&self.cfg.reboot_command)
            .spawn()
        {
            error!(error = %e, "the reboot command could not be started");
        }
    }

    // ----- polling -----

    async fn poll_loop(self: Arc<Self>) {
        let mut backoff = backoff(self.cfg.max_backoff);
        let mut last_info_ms = 0;
        let mut reported_in = false;
        let away = self.cfg.return_home_after;
        let return_home_after = away + away.mul_f64(rand::random::<f64>());
        loop {
            self.upstream.go_home_if_due(return_home_after);
            let info = if now_ms() - last_info_ms > 300_000 {
                let (host, port) = self.upstream.host();
                Some(sysinfo::host_info(&host, port).await)
            } else {
                None
            };
            let sent_info = info.is_some();
            let poll = pb::PollRequest {
                info,
                wait_ms: self.cfg.poll_wait.as_millis() as u32,
                associations_digest: self
                    .assoc
                    .digest(&self.signing_key(), &self.reg.instance_id),
                sealing_public_key: self.sealing.public().to_vec(),
                trust_digest: self.trust_digest.lock().clone(),
            };
            let polled = self
                .call(|mut c| {
                    let mut req = tonic::Request::new(poll.clone());
                    req.set_timeout(self.cfg.poll_wait + POLL_GRACE);
                    async move { c.poll(req).await }
                })
                .await;
            match polled {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    if sent_info {
                        last_info_ms = now_ms();
                    }
                    backoff = self::backoff(self.cfg.max_backoff);
                    self.note_server_time(resp.server_time_ms);
                    self.save_status(None);
                    if !reported_in {
                        // State verified and a poll completed: what an
                        // update waits for before it keeps this binary.
                        match crate::update::write_healthy(&self.state) {
                            Ok(()) => {
                                reported_in = true;
                                info!(
                                    version = crate::version::current(),
                                    "reported in to the coordinator"
                                );
                            }
                            Err(e) => {
                                error!(error = %e, "cannot record that this agent reported in")
                            }
                        }
                    }
                    if let Some(trust) = resp.trust {
                        self.take_trust(&trust);
                    }
                    if let Some(set) = resp.associations {
                        self.assoc
                            .replace(set, &self.signing_key(), &self.reg.instance_id);
                    }
                    for env in resp.envelopes {
                        let me = self.clone();
                        tokio::spawn(async move { me.receive(env).await });
                    }
                    for env in resp.cancels {
                        let me = self.clone();
                        tokio::spawn(async move { me.cancel(env).await });
                    }
                }
                Err(status) => {
                    // A node clock far off makes its own certificate look
                    // expired too: the clock's verdict on the coordinator's
                    // certificate comes first, and only a certificate expired
                    // by a clock that passes that check asks for a new
                    // registration.
                    if let Some(advice) = tls::clock_problem(&status)
                        .is_none()
                        .then(|| self.expired_certificate())
                        .flatten()
                    {
                        // Nothing but a new registration mends this: say so.
                        error!("{advice}");
                        self.save_status(Some(advice));
                        tokio::time::sleep(self.cfg.max_backoff).await;
                        continue;
                    }
                    let wait = if status.code() == tonic::Code::PermissionDenied {
                        error!(error = %status.message(), "the coordinator refuses this agent; re-register it");
                        self.cfg.max_backoff
                    } else {
                        backoff.next().unwrap_or(self.cfg.max_backoff)
                    };
                    if let Some(advice) = tls::clock_problem(&status) {
                        // The clock, not the network: say so where it is read.
                        error!(retry_in_ms = wait.as_millis() as u64, "{advice}");
                        self.save_status(Some(advice));
                    } else {
                        warn!(error = %tls::error_chain(&status), retry_in_ms = wait.as_millis() as u64, "poll failed");
                        self.save_status(Some(status.message().to_string()));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// A trust bundle from the coordinator: checked, and its digest kept so
    /// the next poll says we hold it (also when it does not check: the
    /// coordinator would otherwise hand it over at every poll). What it
    /// says of the coordinator's keys (a rotation) is taken.
    fn take_trust(&self, env: &pb::TrustEnvelope) {
        let digest = match envelope::verify_trust_rotating(env, &self.keys(), &self.reg.instance_id)
        {
            Ok((bundle, digest)) => {
                self.take_release_key(&bundle.release_public_key);
                if bundle.sealing_public_key == self.sealing.public() {
                    info!(
                        sealing_key = %tether_proto::seal::short(&bundle.sealing_public_key),
                        "the coordinator holds this node's sealing key: SecureString parameters can reach it"
                    );
                } else {
                    warn!(
                        held = %tether_proto::seal::short(&self.sealing.public()),
                        acknowledged = %tether_proto::seal::short(&bundle.sealing_public_key),
                        "the coordinator acknowledged another sealing key than this node's; it will be sent again"
                    );
                }
                if let Err(e) = self.take_keys(&bundle) {
                    // Not kept: the bundle is taken again at the next poll.
                    error!(error = %e, "the coordinator's new keys could not be stored; will retry");
                    return;
                }
                digest
            }
            Err(refusal) => {
                error!(error = %refusal, "the coordinator's trust bundle does not verify; ignoring it");
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&env.payload))
            }
        };
        *self.trust_digest.lock() = digest;
    }

    /// The command-signing keys and CAs a verified trust bundle names: kept
    /// (registration.json, ca.pem) and in use at once; a client certificate
    /// another CA than the issuing one issued is renewed at once.
    fn take_keys(&self, bundle: &pb::TrustBundle) -> Result<(), RunError> {
        let mut keys = vec![bundle.command_signing_public_key.clone()];
        keys.extend(bundle.accepted_command_signing_keys.iter().cloned());
        keys.retain(|k| k.len() == 32);
        let keys_changed = !keys.is_empty() && *self.signing_keys.read() != keys;
        let ca_pem: String = bundle
            .ca_certificates
            .iter()
            .map(|der| tls::der_to_pem(der))
            .collect();
        let ca_changed = !ca_pem.is_empty() && self.state.ca_pem().ok().as_deref() != Some(&ca_pem);
        if keys_changed || ca_changed {
            let mut reg = self.state.load()?;
            if keys_changed {
                reg.command_signing_key = hex::encode(&keys[0]);
                reg.accepted_command_signing_keys = keys[1..].iter().map(hex::encode).collect();
            }
            if ca_changed && !bundle.issuing_ca_pin.is_empty() {
                reg.ca_pin = bundle.issuing_ca_pin.clone();
            }
            if ca_changed {
                self.state.save_ca_pem(&ca_pem)?;
            }
            self.state.save_registration(&reg)?;
            if ca_changed {
                self.upstream.rebuild(&self.state)?;
                info!(
                    cas = bundle.ca_certificates.len(),
                    issuing_ca = %bundle.issuing_ca_pin,
                    "the coordinator's CA certificates were updated"
                );
            }
            if keys_changed {
                info!(
                    current = %hex::encode(&keys[0]),
                    also_accepted = keys.len() - 1,
                    "the coordinator's command-signing keys were updated"
                );
                *self.signing_keys.write() = keys;
            }
        }
        // A certificate from another CA than the one issuing now: renew it.
        let issuing = bundle
            .ca_certificates
            .iter()
            .find(|der| tls::pin_of(der) == bundle.issuing_ca_pin);
        if let (Some(ca), Ok(cert)) = (issuing, self.state.cert_pem())
            && tls::issued_by(&cert, ca) == Some(false)
        {
            info!(issuing_ca = %bundle.issuing_ca_pin, "the client certificate was issued by another CA; renewing it now");
            self.force_renewal.store(true, Ordering::Release);
            self.renew_now.notify_one();
        }
        Ok(())
    }

    /// The command-signing keys accepted (the current one first).
    fn keys(&self) -> Vec<Vec<u8>> {
        self.signing_keys.read().clone()
    }

    /// The current command-signing key.
    fn signing_key(&self) -> Vec<u8> {
        self.signing_keys
            .read()
            .first()
            .cloned()
            .unwrap_or_default()
    }

    /// The release key of a verified trust bundle, kept when it is new or
    /// changed (empty: the coordinator has none; what is kept stays).
    fn take_release_key(&self, key: &[u8]) {
        if key.is_empty() {
            return;
        }
        match self.state.save_release_key(key) {
            Ok(true) => info!(
                release_key = %hex::encode(key),
                "learnt the coordinator's release key: agent updates signed by it can be installed"
            ),
            Ok(false) => {}
            Err(e) => {
                error!(error = %e, "cannot keep the coordinator's release key; updates are refused until it is kept")
            }
        }
    }

    /// The advice when this node's client certificate has expired: the
    /// coordinator refuses it (at the TLS handshake), and only a new
    /// registration mends that. None while it is valid or unreadable.
    fn expired_certificate(&self) -> Option<String> {
        let pem = self.state.cert_pem().ok()?;
        let (_, not_after) = tls::cert_validity(&pem)?;
        (now_ms() / 1000 >= not_after).then(|| {
            tls::expired_advice(
                &self.state.path(crate::state::CERT_FILE),
                not_after,
                &self.reg,
            )
        })
    }

    /// Renews the client certificate when less than half its life is left;
    /// answers when to look again: at the next half-life (however short
    /// the lifetime the coordinator gives), at most [`RENEWAL_CHECK_MAX`].
    async fn renew_if_due(&self) -> Duration {
        let pem = match self.state.cert_pem() {
            Ok(pem) => pem,
            Err(e) => {
                error!(error = %e, "cannot read the client certificate to see when it expires");
                return RENEWAL_RETRY_MAX;
            }
        };
        let Some((not_before, not_after)) = tls::cert_validity(&pem) else {
            error!(
                path = %self.state.path(crate::state::CERT_FILE).display(),
                "the client certificate does not parse; cannot see when it expires"
            );
            return RENEWAL_RETRY_MAX;
        };
        let now = now_ms() / 1000;
        if now >= not_after {
            // The poll loop says why (an expired certificate, or a node
            // clock that is off), with the handshake's verdict to go by.
            warn!(
                path = %self.state.path(crate::state::CERT_FILE).display(),
                "the client certificate has expired by this node's clock; not renewing"
            );
            return RENEWAL_RETRY_MAX;
        }
        let half = not_before + (not_after - not_before) / 2;
        let forced = self.force_renewal.swap(false, Ordering::AcqRel);
        if now < half && !forced {
            return Duration::from_secs((half - now) as u64)
                .clamp(RENEWAL_CHECK_MIN, RENEWAL_CHECK_MAX);
        }
        // Failures are retried well before the end: an eighth of what is left.
        let retry = Duration::from_secs(((not_after - now) / 8) as u64)
            .clamp(RENEWAL_CHECK_MIN, RENEWAL_RETRY_MAX);
        let Ok((key, csr)) = register::new_key_and_csr() else {
            return retry;
        };
        match self
            .call(|mut c| {
                let csr_pem = csr.clone();
                async move {
                    c.renew_certificate(pb::RenewCertificateRequest { csr_pem })
                        .await
                }
            })
            .await
        {
            Ok(r) => {
                let cert = r.into_inner().client_certificate_pem;
                let Some((_, new_not_after)) = tls::cert_validity(&cert) else {
                    error!("the renewed certificate does not parse; keeping the current one");
                    return retry;
                };
                match self
                    .state
                    .save_client_pair(&key.serialize_pem(), &cert)
                    .map_err(RunError::from)
                    .and_then(|_| self.upstream.rebuild(&self.state))
                {
                    Ok(()) => {
                        info!(
                            not_after = %tls::rfc3339(new_not_after),
                            "client certificate renewed"
                        );
                        Duration::ZERO
                    }
                    Err(e) => {
                        error!(error = %e, "renewed certificate could not be stored");
                        retry
                    }
                }
            }
            Err(s) => {
                warn!(error = %s.message(), "certificate renewal failed; will retry");
                retry
            }
        }
    }
}

/// The wire form of a step's or an invocation's status.
fn invocation_state(status: outcome::Status) -> pb::InvocationState {
    match status {
        outcome::Status::Success => pb::InvocationState::Success,
        outcome::Status::Failed => pb::InvocationState::Failed,
        outcome::Status::TimedOut => pb::InvocationState::TimedOut,
        outcome::Status::Cancelled => pb::InvocationState::Cancelled,
    }
}

/// Shrinks a report's outputs so that its encoding fits in `max` bytes,
/// marking what was cut; the full output stays in the spool.
pub fn fit_report(mut r: pb::InvocationReport, max: usize) -> pb::InvocationReport {
    use prost::Message;
    if r.encoded_len() <= max {
        return r;
    }
    let streams = (r.plugins.len() * 2).max(1);
    let per_stream = max.saturating_sub(64 * 1024) / streams;
    for p in &mut r.plugins {
        if p.stdout.len() > per_stream {
            p.stdout.truncate(per_stream);
            p.stdout_truncated = true;
        }
        if p.stderr.len() > per_stream {
            p.stderr.truncate(per_stream);
            p.stderr_truncated = true;
        }
    }
    r
}

/// Up to `max` bytes of a file from `offset` (nothing if it is not there yet).
async fn read_from(path: &std::path::Path, offset: u64, max: u64) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut out = Vec::new();
    if max == 0 {
        return out;
    }
    if let Ok(mut f) = tokio::fs::File::open(path).await
        && f.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
    {
        let _ = f.take(max).read_to_end(&mut out).await;
    }
    out
}

/// A sealed step's handoff: `body` (the script) with each secret reference
/// replaced by its value — the text SSM would run — and every value to mask.
/// A reference anywhere but the script (the working directory, say) is
/// refused: only the script's text stays in memory.
fn sealed_step(
    step: &Step,
    mut body: String,
    secrets: &[pb::SecretValue],
) -> Result<exec::Handoff, String> {
    for s in secrets {
        if step.working_directory.contains(&s.reference)
            || step.inputs.values().any(|v| v.contains(&s.reference))
        {
            return Err(format!(
                "{} is used outside the script's text (in the step's workingDirectory or inputs); \
                 a SecureString parameter can only be used in the commands",
                s.reference
            ));
        }
        body = body.replace(&s.reference, &s.value);
    }
    Ok(exec::Handoff {
        script: body,
        mask: secrets.iter().map(|s| s.value.clone()).collect(),
    })
}

fn write_executable(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Jittered exponential backoff from 1 s up to `max`, forever.
fn backoff(max: Duration) -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The steps for this node of a signed command's or association's document,
/// with its parameters (JSON: name → values). Public for the fuzz targets
/// only (`crate::fuzzing`).
#[doc(hidden)]
pub fn plan(
    document_name: &str,
    document_content: &str,
    parameters_json: &str,
) -> Result<Vec<Step>, String> {
    let doc = Document::parse(document_name, document_content).map_err(|e| e.to_string())?;
    let params: BTreeMap<String, Vec<String>> =
        serde_json::from_str(parameters_json).map_err(|e| format!("parameters: {e}"))?;
    doc.plan(&params, PlatformType::Linux)
        .map_err(|e| e.to_string())
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    state: StateDir,
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    // StrictModes before anything of the state is believed.
    let trusted: Vec<&std::path::Path> = cfg
        .config_file
        .iter()
        .chain(cfg.policy_file.iter())
        .map(PathBuf::as_path)
        .collect();
    state.check(&trusted)?;
    let step_user = runas::resolve(cfg.run_as_user.as_deref())?;
    let reg = state.load()?;
    let mut signing_keys =
        vec![hex::decode(&reg.command_signing_key).map_err(|_| RunError::BadSigningKey)?];
    for k in &reg.accepted_command_signing_keys {
        signing_keys.push(hex::decode(k).map_err(|_| RunError::BadSigningKey)?);
    }
    let endpoints = reg.endpoints().map_err(tls::TlsError::from)?;
    let order = endpoints::failover_order(&reg.instance_id, endpoints.len());
    let start = order.first().copied().unwrap_or(0);
    let upstream = upstream::Upstream::new(&state, endpoints, order)?;
    let spool = Spool::new(state.spool())?;
    let sealing = state.sealing_key()?;
    let assoc = associations::Local::new(&state.dir).map_err(|e| {
        RunError::State(crate::state::StateError::Io {
            path: state.dir.clone(),
            source: e,
        })
    })?;
    let agent = Arc::new(Agent {
        assoc,
        signing_keys: parking_lot::RwLock::new(signing_keys),
        renew_now: Notify::new(),
        force_renewal: std::sync::atomic::AtomicBool::new(false),
        spool,
        upstream,
        skew_ms: AtomicI64::new(0),
        report_bell: Notify::new(),
        fresh_reports: Mutex::new(Vec::new()),
        running: Mutex::new(HashSet::new()),
        cancelled_unseen: Mutex::new(HashSet::new()),
        slots: Semaphore::new(cfg.max_concurrent.max(1)),
        sealing,
        trust_digest: Mutex::new(String::new()),
        cfg,
        state,
        reg,
    });
    info!(instance_id = %agent.reg.instance_id, endpoints = %agent.reg.endpoint, starting_on = %agent.upstream.endpoint(start), steps_run_as = %step_user.name, version = crate::version::current(), "agent started");
    if let Some(p) = &agent.cfg.node_policy {
        info!(policy = %p.source_name(), "this node's policy restricts what it runs");
    }

    // Resume whatever a previous run left unfinished.
    for (id, stage) in agent.spool.unfinished()? {
        if stage == Stage::Running {
            info!(command_id = %id, "resuming a command from the spool");
            agent.start(id);
        }
    }

    let reporter = tokio::spawn(agent.clone().reporter());
    let poller = tokio::spawn(agent.clone().poll_loop());
    let scheduler = tokio::spawn(agent.clone().scheduler());
    let uploader = tokio::spawn(agent.clone().uploader());
    let renewer = {
        let agent = agent.clone();
        tokio::spawn(async move {
            loop {
                let next = agent.renew_if_due().await;
                tokio::select! {
                    _ = tokio::time::sleep(next) => {}
                    _ = agent.renew_now.notified() => {}
                }
            }
        })
    };
    // How this process was started, for an update's restart by re-execution.
    let launch = crate::update::Launch::this(&agent.cfg.agent_exe);
    let mut usr1 = None;
    if agent.cfg.reexec_on_signal {
        if let Err(e) = launch.save(&agent.state) {
            warn!(error = %e, "cannot record how the agent was started; an update run by hand cannot restart it");
        }
        usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
            .map_err(|e| warn!(error = %e, "cannot handle SIGUSR1; an update run by hand cannot restart the agent"))
            .ok();
    }
    let usr1 = async {
        match usr1.as_mut() {
            Some(s) => s.recv().await,
            None => std::future::pending().await,
        }
    };
    // (A signal stream that ends disables its branch; shutdown still ends the select.)
    let reexec = tokio::select! {
        _ = shutdown => false,
        Some(()) = usr1 => {
            // An update swapped the binary of an agent run by hand.
            info!(exe = %launch.exe.display(), "re-executing the agent (updated); running steps continue under their supervisors");
            true
        }
    };
    if !reexec {
        info!("agent stopping; running steps continue under their supervisors");
    }
    poller.abort();
    reporter.abort();
    scheduler.abort();
    uploader.abort();
    renewer.abort();
    if reexec {
        let e = launch.reexec();
        error!(exe = %launch.exe.display(), error = %e, "cannot re-execute the agent; stopping");
        return Err(RunError::Reexec(e));
    }
    Ok(())
}

/// For `status`: the running and unreported commands in the spool.
pub fn spool_summary(state: &StateDir) -> Result<Vec<(String, Stage)>, StateError> {
    Spool::new(state.spool())?.unfinished()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn oversized_reports_are_cut_to_fit_and_marked() {
        let plugin = |n: usize| pb::PluginReport {
            name: "s".into(),
            stdout: vec![b'o'; n],
            stderr: vec![b'e'; 10],
            ..Default::default()
        };
        let small = pb::InvocationReport {
            plugins: vec![plugin(1000)],
            ..Default::default()
        };
        assert_eq!(fit_report(small.clone(), 1 << 20), small);
        let big = pb::InvocationReport {
            plugins: vec![plugin(3 << 20), plugin(3 << 20)],
            ..Default::default()
        };
        let fitted = fit_report(big, 2 << 20);
        assert!(fitted.encoded_len() <= 2 << 20);
        assert!(
            fitted
                .plugins
                .iter()
                .all(|p| p.stdout_truncated && !p.stderr_truncated)
        );
        assert!(fitted.plugins.iter().all(|p| p.stderr.len() == 10));
    }
}
