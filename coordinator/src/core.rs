//! The coordinator's shared state and the agent-facing logic: registration,
//! long-poll dispatch, signed envelopes and result intake.
//!
//! The gRPC layer (`grpc.rs`) only translates protobuf to calls here; the SSM
//! action layer (`api.rs`) uses the same [`Coordinator`] for operator requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use sha2::{Digest, Sha256};
use tether_proto as pb;
use tether_util::time::{iso_ms, now_ms};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::pki::Pki;
use tether_ssm::limits;
use tether_ssm::state::Detail;
use tether_store::{
    self, Claim, CommandRow, HostInfo, InstanceRow, InvocationResult, OutputChunk, PluginResult,
    Store, WriteOp,
};

/// Hex SHA-256 of an activation code under its salt.
pub fn code_hash(salt: &[u8], code: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(code.as_bytes());
    h.finalize().to_vec()
}

/// Deliberately wrong envelopes, for end-to-end tests of the agent's checks.
/// Set with `TETHER_TEST_ENVELOPE_HOOK`; it can only make delivery fail, never
/// let anything unsigned through, because the agent verifies regardless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeHook {
    /// Change the parameters after signing.
    TamperParameters,
    /// Sign an envelope addressed to another instance.
    Misaddress,
    /// Sign an envelope that has already expired.
    Expired,
    /// Send no signature.
    Unsigned,
    /// After each invocation finishes, send its envelope again, byte for byte.
    Replay,
}

impl EnvelopeHook {
    pub fn from_env() -> Option<EnvelopeHook> {
        let v = std::env::var("TETHER_TEST_ENVELOPE_HOOK").ok()?;
        let hook = match v.as_str() {
            "tamper-parameters" => EnvelopeHook::TamperParameters,
            "misaddress" => EnvelopeHook::Misaddress,
            "expired" => EnvelopeHook::Expired,
            "unsigned" => EnvelopeHook::Unsigned,
            "replay" => EnvelopeHook::Replay,
            _ => return None,
        };
        warn!(hook = %v, "TEST HOOK ACTIVE: envelopes are deliberately corrupted");
        Some(hook)
    }
}

/// Counts failed registration attempts per source address.
#[derive(Debug, Default)]
struct FailureLimiter {
    failures: HashMap<IpAddr, (u32, Instant)>,
}

impl FailureLimiter {
    /// Seconds the source must wait, if it is over its budget.
    fn blocked_for(&mut self, ip: IpAddr) -> Option<u64> {
        let window = limits::FAILED_REGISTRATION_WINDOW;
        match self.failures.get(&ip) {
            Some((n, since)) if since.elapsed() < window => (*n
                >= limits::MAX_FAILED_REGISTRATIONS_PER_SOURCE)
                .then(|| (window - since.elapsed()).as_secs().max(1)),
            Some(_) => {
                self.failures.remove(&ip);
                None
            }
            None => None,
        }
    }

    fn record_failure(&mut self, ip: IpAddr) {
        let window = limits::FAILED_REGISTRATION_WINDOW;
        let entry = self.failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        if self.failures.len() > 100_000 {
            self.failures
                .retain(|_, (_, since)| since.elapsed() < window);
        }
    }
}

/// Why a registration was refused; the message goes to the agent verbatim.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("activation {0} does not exist")]
    UnknownActivation(String),
    #[error("the activation code is wrong for activation {0}")]
    WrongCode(String),
    #[error("activation {id} expired at {at}")]
    Expired { id: String, at: String },
    #[error("activation {0} was deleted")]
    Deleted(String),
    #[error("activation {id} has reached its registration limit of {limit}")]
    LimitReached { id: String, limit: i64 },
    #[error("too many failed registration attempts from {ip}; retry in {secs} s")]
    RateLimited { ip: IpAddr, secs: u64 },
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why an agent call was refused.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("instance {0} is not registered with this coordinator")]
    UnknownInstance(String),
    #[error("instance {0} was deregistered")]
    Deregistered(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<tether_store::StoreError> for AgentError {
    fn from(e: tether_store::StoreError) -> Self {
        AgentError::Internal(e.to_string())
    }
}

/// The coordinator: storage, keys and the agents' wake-up bells.
pub struct Coordinator {
    pub store: Store,
    pub pki: Arc<Pki>,
    bells: Mutex<HashMap<String, Arc<Bell>>>,
    /// Bumped whenever associations (or the instance tags they may target)
    /// change anywhere; part of what a settled poll remembers.
    association_gen: std::sync::atomic::AtomicU64,
    /// Every association, as last read, with the generation it was read at
    /// (each poll matches them against its instance; reading them from the
    /// database per poll cost a query each).
    association_cache: tokio::sync::Mutex<Option<AssociationCache>>,
    /// Instances with a poll held open right now, and how many: they are
    /// connected even when their last ping is old.
    polling: Mutex<HashMap<String, usize>>,
    /// When each agent was last heard from, not yet written: pings are
    /// stored in one transaction per sweep instead of one write per call.
    seen: Mutex<HashMap<String, i64>>,
    /// Claims and results on their way to the writer task, which stores what
    /// has queued up in one transaction ([`Coordinator::run_writer`]).
    writes: tokio::sync::mpsc::UnboundedSender<WriteJob>,
    writes_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<WriteJob>>>,
    writer_running: std::sync::atomic::AtomicBool,
    limiter: Mutex<FailureLimiter>,
    hook: Option<EnvelopeHook>,
    /// Set when the server is stopping: held polls return at once.
    stopping: tokio::sync::watch::Sender<bool>,
    /// How long a poll is held (shortened in tests through the agent's wait_ms).
    pub poll_hold: Duration,
    /// When the coordinator stops waiting for agents, and how long history is kept.
    pub timeouts: Timeouts,
    last_prune_ms: std::sync::atomic::AtomicI64,
    /// Set when replicas share a PostgreSQL database: wake-ups go to them too.
    bus: std::sync::OnceLock<crate::replicas::Bus>,
}

/// How long the coordinator waits on agents before deciding for them, and how
/// long it keeps history (`tether serve` flags; defaults in [`limits`]).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// A cancellation the agent has not confirmed in this time ends as Cancelled.
    pub cancel_confirm: Duration,
    /// A running invocation whose agent is silent this long ends as Failed,
    /// presumed lost (a later report from the agent still replaces it).
    pub agent_silent: Duration,
    /// Commands older than this are pruned with their invocations.
    pub history_retention: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            cancel_confirm: limits::CANCEL_CONFIRM_TIMEOUT,
            agent_silent: limits::AGENT_SILENT_TIMEOUT,
            history_retention: limits::HISTORY_RETENTION,
        }
    }
}

/// An instance's wake-up bell, and what the last look at its work found.
#[derive(Debug, Default)]
struct Bell {
    notify: Notify,
    /// Bumped by every ring: work may be waiting.
    rung: std::sync::atomic::AtomicU64,
    /// The last look at the database, once its findings are handed over:
    /// the `rung` count and association generation it was taken at, the
    /// association digest the agent holds since, and when. A poll within
    /// [`SETTLED_FOR`] of it that finds the three unchanged skips the
    /// database and waits.
    settled: Mutex<Option<(WorkMark, tokio::time::Instant)>>,
    /// When a look last handed over envelopes or cancels (or the bell was
    /// made: a previous run or another replica may have): work that falls due
    /// by time can only follow a hand-over.
    handed_over: Mutex<Option<tokio::time::Instant>>,
}

/// Where an instance's work stands: its bell's ring count, the association
/// generation, and the association digest its agent holds.
type WorkMark = (u64, u64, String);

/// The associations as last read: when, at which generation, and the rows.
#[derive(Debug)]
struct AssociationCache {
    read_at: tokio::time::Instant,
    generation: u64,
    rows: Arc<Vec<tether_store::AssociationRow>>,
}

/// How long a look at an instance's work stands in for the next one while
/// something handed over may still fall due by time (a redelivery after 30 s,
/// a cancel resent every 30 s): such work is found at most this late.
const SETTLED_FOR: Duration = Duration::from_secs(5);

/// With nothing handed over for this long, nothing can fall due by time, and
/// a look stands until something rings — or, as a safety net, for
/// [`SETTLED_AT_MOST`].
const QUIET_AFTER: Duration = Duration::from_secs(120);
const SETTLED_AT_MOST: Duration = Duration::from_secs(300);

/// How long read associations are trusted without a change notice (a
/// safety net: every change on any replica clears them at once).
const ASSOCIATION_CACHE_TTL: Duration = Duration::from_secs(30);

/// A write for the writer task, and where to say whether it took effect.
type WriteJob = (
    Write,
    tokio::sync::oneshot::Sender<Result<(bool, Write), String>>,
);

/// What the writer task stores.
#[derive(Debug)]
enum Write {
    /// An agent's result: command, instance, outcome.
    Finish(String, String, InvocationResult),
    /// A delivery claim with its signed envelope.
    Claim {
        command_id: String,
        instance_id: String,
        unlimited: bool,
        envelope: pb::CommandEnvelope,
    },
}

/// Most writes stored in one transaction.
const WRITE_BATCH: usize = 512;

/// Counts a poll as held while it lives.
struct HeldPoll<'a> {
    polling: &'a Mutex<HashMap<String, usize>>,
    id: String,
}

impl Bell {
    fn ring(&self) {
        self.rung.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Where this instance's work stands now, to compare with `settled`.
    fn mark(&self, association_gen: u64, digest: &str) -> WorkMark {
        (
            self.rung.load(std::sync::atomic::Ordering::SeqCst),
            association_gen,
            digest.to_string(),
        )
    }

    /// Whether the last look still stands: nothing rang or changed since,
    /// and nothing it handed over can have fallen due by time.
    fn is_settled(&self, now: &WorkMark) -> bool {
        let quiet = self
            .handed_over
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(tokio::time::Instant::now)
            .elapsed()
            >= QUIET_AFTER;
        self.settled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|(at, when)| {
                at == now
                    && (when.elapsed() < SETTLED_FOR || quiet && when.elapsed() < SETTLED_AT_MOST)
            })
    }

    /// Records a look: where the work stood, and whether it handed anything over.
    fn settle(&self, at: WorkMark, handed_over: bool) {
        let now = tokio::time::Instant::now();
        let mut last = self.handed_over.lock().unwrap_or_else(|e| e.into_inner());
        if handed_over || last.is_none() {
            *last = Some(now);
        }
        *self.settled.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, now));
    }
}

impl<'a> HeldPoll<'a> {
    fn new(polling: &'a Mutex<HashMap<String, usize>>, id: &str) -> Self {
        *polling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_default() += 1;
        HeldPoll {
            polling,
            id: id.to_string(),
        }
    }
}

impl Drop for HeldPoll<'_> {
    fn drop(&mut self) {
        let mut p = self.polling.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = p.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                p.remove(&self.id);
            }
        }
    }
}

/// How often history past its retention is looked for, and how many commands
/// one pruning transaction removes (so pruning never stalls the server).
const PRUNE_EVERY_MS: i64 = 3_600_000;
const PRUNE_BATCH: i64 = 500;

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

/// The agent is expected to acknowledge a delivered envelope within this time;
/// otherwise the reply was lost and the invocation is delivered again.
const REDELIVER_AFTER_MS: i64 = 30_000;

impl Coordinator {
    pub fn new(store: Store, pki: Arc<Pki>) -> Self {
        let (writes, writes_rx) = tokio::sync::mpsc::unbounded_channel();
        Coordinator {
            store,
            pki,
            bells: Mutex::new(HashMap::new()),
            association_gen: std::sync::atomic::AtomicU64::new(0),
            association_cache: tokio::sync::Mutex::new(None),
            polling: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            writes,
            writes_rx: Mutex::new(Some(writes_rx)),
            writer_running: std::sync::atomic::AtomicBool::new(false),
            limiter: Mutex::new(FailureLimiter::default()),
            hook: EnvelopeHook::from_env(),
            stopping: tokio::sync::watch::Sender::new(false),
            poll_hold: limits::LONG_POLL_HOLD,
            timeouts: Timeouts::default(),
            last_prune_ms: std::sync::atomic::AtomicI64::new(0),
            bus: std::sync::OnceLock::new(),
        }
    }

    fn bell(&self, instance_id: &str) -> Arc<Bell> {
        let mut bells = self.bells.lock().unwrap_or_else(|e| e.into_inner());
        bells.entry(instance_id.to_string()).or_default().clone()
    }

    /// Releases every held poll so that a graceful shutdown does not wait out
    /// the hold time; agents simply poll again (and reconnect to the next run).
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Wakes the instances whose invocation of `command_id` waits for a slot.
    pub async fn ring_waiting(&self, command_id: &str) -> Result<(), tether_store::StoreError> {
        for instance_id in self.store.waiting_instances(command_id).await? {
            self.ring(&instance_id);
        }
        Ok(())
    }

    /// Wakes the instance's held poll (or the next one) because work is
    /// waiting, on this replica and, through the bus, on the others.
    pub fn ring(&self, instance_id: &str) {
        self.bell(instance_id).ring();
        if let Some(bus) = self.bus.get() {
            bus.publish(instance_id);
        }
    }

    /// Sends this replica's wake-ups to the others (see [`crate::replicas`]).
    pub fn attach_bus(&self, bus: crate::replicas::Bus) {
        let _ = self.bus.set(bus);
    }

    /// Wakes the instance's poll if this replica has seen it poll (another
    /// replica announced work for it).
    pub fn ring_local(&self, instance_id: &str) {
        let bell = self
            .bells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance_id)
            .cloned();
        if let Some(b) = bell {
            b.ring();
        }
    }

    /// Wakes every poll on this replica, held now or next: each re-reads its work.
    pub fn ring_local_all(&self) {
        let bells: Vec<Arc<Bell>> = self
            .bells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for b in bells {
            b.ring();
        }
    }

    /// Associations, or the instance tags they may target, changed (here or,
    /// when `announce` is false, on another replica): every agent's set is
    /// looked at again, here and — when `announce` — on the other replicas.
    pub async fn associations_changed(&self, announce: bool) {
        self.association_gen
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *self.association_cache.lock().await = None;
        self.ring_local_all();
        if announce && let Some(bus) = self.bus.get() {
            bus.publish(crate::replicas::ASSOCIATIONS_CHANGED);
        }
    }

    /// Every association, from memory when nothing changed since it was read.
    pub async fn associations(
        &self,
    ) -> Result<Arc<Vec<tether_store::AssociationRow>>, tether_store::StoreError> {
        let mut cache = self.association_cache.lock().await;
        let generation = self
            .association_gen
            .load(std::sync::atomic::Ordering::SeqCst);
        if let Some(c) = cache.as_ref()
            && c.generation == generation
            && c.read_at.elapsed() < ASSOCIATION_CACHE_TTL
        {
            return Ok(c.rows.clone());
        }
        let rows = Arc::new(self.store.associations().await?);
        *cache = Some(AssociationCache {
            read_at: tokio::time::Instant::now(),
            generation,
            rows: rows.clone(),
        });
        Ok(rows)
    }

    /// The instances with a poll held open on this replica right now.
    fn held_polls(&self) -> Vec<String> {
        self.polling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    // ----- registration -----

    pub async fn register(
        &self,
        source: Option<IpAddr>,
        req: pb::RegisterRequest,
    ) -> Result<pb::RegisterResponse, RegisterError> {
        let ip = source.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if let Some(secs) = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .blocked_for(ip)
        {
            return Err(RegisterError::RateLimited { ip, secs });
        }
        let result = self.try_register(req).await;
        if let Err(e) = &result
            && !matches!(e, RegisterError::Internal(_))
        {
            warn!(%ip, error = %e, "registration refused");
            self.limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record_failure(ip);
        }
        result
    }

    async fn try_register(
        &self,
        req: pb::RegisterRequest,
    ) -> Result<pb::RegisterResponse, RegisterError> {
        let internal = |e: tether_store::StoreError| RegisterError::Internal(e.to_string());
        let id = req.activation_id.trim().to_string();
        let Some(act) = self.store.activation(&id).await.map_err(internal)? else {
            return Err(RegisterError::UnknownActivation(id));
        };
        let expected = code_hash(&act.code_salt, req.activation_code.trim());
        let ok: bool =
            subtle::ConstantTimeEq::ct_eq(expected.as_slice(), act.code_hash.as_slice()).into();
        if !ok {
            return Err(RegisterError::WrongCode(id));
        }
        if act.deleted_ms.is_some() {
            return Err(RegisterError::Deleted(id));
        }
        let now = now_ms();
        if act.expiration_ms <= now {
            return Err(RegisterError::Expired {
                id,
                at: iso_ms(act.expiration_ms),
            });
        }
        if act.registrations_count >= act.registration_limit {
            return Err(RegisterError::LimitReached {
                id,
                limit: act.registration_limit,
            });
        }
        let instance_id = new_instance_id();
        let cert = self
            .pki
            .issue_client_cert(&instance_id, &req.csr_pem, limits::CLIENT_CERT_LIFETIME)
            .map_err(|e| RegisterError::BadRequest(e.to_string()))?;
        let info = req.info.unwrap_or_default();
        let name = if req.name.trim().is_empty() {
            act.default_instance_name.clone()
        } else {
            req.name.trim().to_string()
        };
        let row = InstanceRow {
            instance_id: instance_id.clone(),
            activation_id: id.clone(),
            name,
            iam_role: act.iam_role.clone(),
            registration_ms: now,
            last_ping_ms: Some(now),
            platform_type: info.platform_type,
            platform_name: info.platform_name,
            platform_version: info.platform_version,
            computer_name: info.computer_name,
            ip_address: info.ip_address,
            agent_version: info.agent_version,
            deregistered_ms: None,
            tags_json: act.tags_json.clone(),
            aws: None,
        };
        match self.store.register_instance(&row, now).await {
            Ok(()) => {}
            Err(tether_store::StoreError::Registration(_)) => {
                return Err(RegisterError::LimitReached {
                    id,
                    limit: act.registration_limit,
                });
            }
            Err(e) => return Err(internal(e)),
        }
        info!(%instance_id, activation_id = %id, "instance registered");
        Ok(pb::RegisterResponse {
            instance_id,
            client_certificate_pem: cert,
            ca_certificate_pem: self.pki.ca_cert_pem.clone(),
            command_signing_public_key: self.pki.signing_public_key(),
            server_time_ms: now_ms(),
        })
    }

    // ----- agent calls -----

    /// The registered, live instance behind a client certificate.
    pub async fn authorize_agent(&self, instance_id: &str) -> Result<InstanceRow, AgentError> {
        match self.store.instance(instance_id).await? {
            None => Err(AgentError::UnknownInstance(instance_id.to_string())),
            Some(i) if i.deregistered_ms.is_some() => {
                Err(AgentError::Deregistered(instance_id.to_string()))
            }
            Some(i) => Ok(i),
        }
    }

    /// A long poll: returns at once with whatever is deliverable, else waits
    /// for the instance's bell or the hold time.
    pub async fn poll(
        &self,
        instance: &InstanceRow,
        req: pb::PollRequest,
    ) -> Result<pb::PollResponse, AgentError> {
        let id = &instance.instance_id;
        let info = req.info.map(|i| HostInfo {
            platform_type: i.platform_type,
            platform_name: i.platform_name,
            platform_version: i.platform_version,
            computer_name: i.computer_name,
            ip_address: i.ip_address,
            agent_version: i.agent_version,
        });
        match &info {
            // Host facts (sent every few minutes) are written at once.
            Some(h) => self.store.ping(id, Some(h), now_ms()).await?,
            None => self.seen(id),
        }
        let hold = if req.wait_ms == 0 {
            self.poll_hold
        } else {
            Duration::from_millis(u64::from(req.wait_ms)).min(self.poll_hold)
        };
        let deadline = tokio::time::Instant::now() + hold;
        let bell = self.bell(id);
        let _held = HeldPoll::new(&self.polling, id);
        let mut stopping = self.stopping.subscribe();
        // A look at the database is skipped while the last one stands (see
        // `Bell::is_settled`): an agent polling again right after its result,
        // or an idle one, costs no query.
        loop {
            let association_gen = self
                .association_gen
                .load(std::sync::atomic::Ordering::SeqCst);
            let before = bell.mark(association_gen, &req.associations_digest);
            let (envelopes, cancels, associations) = if bell.is_settled(&before) {
                Default::default()
            } else {
                let envelopes = self.envelopes_for(id).await?;
                let cancels = self.cancels_for(id).await?;
                let associations =
                    crate::associations::set_if_changed(self, instance, &req.associations_digest)
                        .await?;
                // What was found is handed over now: the agent holds it next time.
                let digest = associations
                    .as_ref()
                    .map_or(before.2.clone(), |a| a.digest.clone());
                bell.settle(
                    (before.0, before.1, digest),
                    !envelopes.is_empty() || !cancels.is_empty(),
                );
                (envelopes, cancels, associations)
            };
            if !envelopes.is_empty()
                || !cancels.is_empty()
                || associations.is_some()
                || tokio::time::Instant::now() >= deadline
                || *stopping.borrow()
            {
                self.seen(id);
                return Ok(pb::PollResponse {
                    envelopes,
                    server_time_ms: now_ms(),
                    cancels,
                    associations,
                });
            }
            // A redelivery may fall due while we wait: look again at least every 10 s.
            let nap = deadline.min(tokio::time::Instant::now() + Duration::from_secs(10));
            tokio::select! {
                _ = bell.notify.notified() => {}
                _ = tokio::time::sleep_until(nap) => {}
                _ = stopping.changed() => {}
            }
        }
    }

    async fn envelopes_for(
        &self,
        instance_id: &str,
    ) -> Result<Vec<pb::CommandEnvelope>, AgentError> {
        let now = now_ms();
        let mut out = Vec::new();
        for cmd in self
            .store
            .deliverable(instance_id, now, REDELIVER_AFTER_MS)
            .await?
        {
            // MaxConcurrency: without a free slot it waits; a finishing
            // invocation rings the waiting instances.
            let envelope = self.seal(instance_id, &cmd, now);
            let claim = Write::Claim {
                command_id: cmd.command_id.clone(),
                instance_id: instance_id.to_string(),
                unlimited: cmd.concurrency_limit >= cmd.target_count,
                envelope,
            };
            if let (true, Write::Claim { envelope, .. }) = self.write(claim).await? {
                out.push(envelope);
            }
        }
        if out.is_empty()
            && self.hook == Some(EnvelopeHook::Replay)
            && let Some(cmd) = self.store.last_finished_command(instance_id).await?
            && let Some((payload, signature)) = self.store.last_envelope(&cmd, instance_id).await?
        {
            out.push(pb::CommandEnvelope { payload, signature });
        }
        Ok(out)
    }

    /// Signed cancellations due for this instance (resent until its agent
    /// reports the invocation, at most every [`REDELIVER_AFTER_MS`]).
    async fn cancels_for(&self, instance_id: &str) -> Result<Vec<pb::CommandEnvelope>, AgentError> {
        let now = now_ms();
        let mut out = Vec::new();
        for command_id in self
            .store
            .cancels_due(instance_id, now, REDELIVER_AFTER_MS)
            .await?
        {
            let payload = pb::SignedCancel {
                instance_id: instance_id.to_string(),
                command_id: command_id.clone(),
                issued_at_ms: now,
                expires_at_ms: now + limits::ENVELOPE_LIFETIME.as_millis() as i64,
            }
            .encode_to_vec();
            let mut signed = pb::CANCEL_SIGNING_CONTEXT.to_vec();
            signed.extend_from_slice(&payload);
            let signature = self.pki.sign(&signed);
            self.store
                .mark_cancel_sent(&command_id, instance_id, now)
                .await?;
            out.push(pb::CommandEnvelope { payload, signature });
        }
        Ok(out)
    }

    /// Builds and signs the envelope for one invocation.
    fn seal(&self, instance_id: &str, cmd: &CommandRow, now: i64) -> pb::CommandEnvelope {
        let mut signed = pb::SignedCommand {
            instance_id: instance_id.to_string(),
            command_id: cmd.command_id.clone(),
            document_name: cmd.document_name.clone(),
            document_version: cmd.document_version.clone(),
            document_content: cmd.document_content.clone(),
            document_hash: cmd.document_hash.clone(),
            parameters_json: cmd.resolved_json.clone(),
            issued_at_ms: now,
            expires_at_ms: now + limits::ENVELOPE_LIFETIME.as_millis() as i64,
            nonce: hex::encode(rand::random::<[u8; 16]>()),
        };
        match self.hook {
            Some(EnvelopeHook::Misaddress) => signed.instance_id = "mi-00000000000000000".into(),
            Some(EnvelopeHook::Expired) => {
                signed.issued_at_ms = now - 2 * 3_600_000;
                signed.expires_at_ms = now - 3_600_000;
            }
            _ => {}
        }
        let payload = signed.encode_to_vec();
        let signature = self.pki.sign(&payload);
        match self.hook {
            Some(EnvelopeHook::TamperParameters) => {
                signed.parameters_json = r#"{"commands":["echo tampered"]}"#.into();
                pb::CommandEnvelope {
                    payload: signed.encode_to_vec(),
                    signature,
                }
            }
            Some(EnvelopeHook::Unsigned) => pb::CommandEnvelope {
                payload,
                signature: Vec::new(),
            },
            _ => pb::CommandEnvelope { payload, signature },
        }
    }

    /// Stores what an agent reports. Idempotent: a report for an invocation that
    /// is already terminal changes nothing.
    pub async fn report(
        &self,
        instance: &InstanceRow,
        req: pb::ReportRequest,
    ) -> Result<pb::ReportResponse, AgentError> {
        let id = &instance.instance_id;
        let now = now_ms();
        self.seen(id);
        for r in req.reports {
            let state =
                pb::InvocationState::try_from(r.state).unwrap_or(pb::InvocationState::Unspecified);
            let start = (r.started_at_ms > 0).then_some(r.started_at_ms);
            let end = (r.ended_at_ms > 0).then_some(r.ended_at_ms);
            match state {
                pb::InvocationState::InProgress => {
                    self.store
                        .mark_started(&r.command_id, id, start, now)
                        .await?;
                    // Live output of the running step, if the report carries any.
                    for p in r.plugins {
                        let chunk = OutputChunk {
                            step_index: i64::from(p.step_index),
                            name: p.name,
                            start_ms: (p.started_at_ms > 0).then_some(p.started_at_ms),
                            stdout_offset: p.stdout_offset,
                            stdout: p.stdout,
                            stderr_offset: p.stderr_offset,
                            stderr: p.stderr,
                        };
                        self.store.append_output(&r.command_id, id, &chunk).await?;
                    }
                }
                pb::InvocationState::Refused => {
                    // Only an invocation the agent never accepted can fail this
                    // way; a refused replay of a finished one changes nothing.
                    warn!(instance_id = %id, command_id = %r.command_id, detail = %r.detail,
                        "agent refused a command envelope");
                    let result = InvocationResult {
                        detail: Detail::Failed,
                        response_code: -1,
                        start_ms: None,
                        end_ms: Some(now),
                        plugins: vec![PluginResult {
                            name: "envelope".into(),
                            detail: Detail::Failed,
                            response_code: -1,
                            start_ms: None,
                            end_ms: Some(now),
                            stdout: Vec::new(),
                            stderr: format!("the agent refused the command envelope: {}", r.detail)
                                .into_bytes(),
                            stdout_truncated: false,
                            stderr_truncated: false,
                        }],
                    };
                    let pending = self
                        .store
                        .invocation_status(&r.command_id, id)
                        .await?
                        .is_some_and(|status| status == "Pending");
                    if pending {
                        self.store
                            .finish_invocation(&r.command_id, id, &result, now)
                            .await?;
                    }
                }
                pb::InvocationState::Unspecified => {
                    warn!(instance_id = %id, command_id = %r.command_id, "report without a state ignored");
                }
                terminal => {
                    let detail = detail_of(terminal);
                    let plugins = r
                        .plugins
                        .into_iter()
                        .map(|p| PluginResult {
                            name: p.name,
                            detail: detail_of(
                                pb::InvocationState::try_from(p.state)
                                    .unwrap_or(pb::InvocationState::Failed),
                            ),
                            response_code: i64::from(p.response_code),
                            start_ms: (p.started_at_ms > 0).then_some(p.started_at_ms),
                            end_ms: (p.ended_at_ms > 0).then_some(p.ended_at_ms),
                            stdout: p.stdout,
                            stderr: p.stderr,
                            stdout_truncated: p.stdout_truncated,
                            stderr_truncated: p.stderr_truncated,
                        })
                        .collect();
                    let result = InvocationResult {
                        detail,
                        response_code: i64::from(r.response_code),
                        start_ms: start,
                        end_ms: end,
                        plugins,
                    };
                    let stored = self.store_result(&r.command_id, id, result).await?;
                    if stored {
                        self.ring_waiting(&r.command_id).await?;
                        info!(instance_id = %id, command_id = %r.command_id, status = detail.as_str(), "invocation finished");
                    }
                }
            }
        }
        Ok(pb::ReportResponse {
            server_time_ms: now_ms(),
        })
    }

    /// Stores one agent result (see [`Coordinator::write`]).
    async fn store_result(
        &self,
        command_id: &str,
        instance_id: &str,
        result: InvocationResult,
    ) -> Result<bool, AgentError> {
        let job = Write::Finish(command_id.to_string(), instance_id.to_string(), result);
        Ok(self.write(job).await?.0)
    }

    /// Stores one hot-path write through the writer task, batched with
    /// whatever queued up meanwhile, or directly when no writer runs. Gives
    /// back whether it took effect, and the write itself.
    async fn write(&self, job: Write) -> Result<(bool, Write), AgentError> {
        use std::sync::atomic::Ordering;
        if !self.writer_running.load(Ordering::Acquire) {
            let now = now_ms();
            let done = match &job {
                Write::Finish(c, i, r) => self.store.finish_invocation(c, i, r, now).await?,
                Write::Claim {
                    command_id,
                    instance_id,
                    unlimited,
                    envelope,
                } => {
                    self.store
                        .claim_delivery(
                            command_id,
                            instance_id,
                            now,
                            REDELIVER_AFTER_MS,
                            *unlimited,
                            &envelope.payload,
                            &envelope.signature,
                        )
                        .await?
                }
            };
            return Ok((done, job));
        }
        // The writer hands the job back with the outcome.
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.writes.send((job, tx)).is_err() {
            return Err(AgentError::Internal("the writer stopped".into()));
        }
        match rx.await {
            Ok(Ok((done, job))) => Ok((done, job)),
            Ok(Err(e)) => Err(AgentError::Internal(e)),
            Err(_) => Err(AgentError::Internal("the writer stopped".into())),
        }
    }

    /// The writer: stores the hot path's queued writes (delivery claims and
    /// agent results), up to [`WRITE_BATCH`] per transaction, and answers
    /// each. One writer means the writes never contend for SQLite's lock.
    /// Runs until the coordinator stops; `tether serve` starts it.
    pub async fn run_writer(self: Arc<Self>) {
        use std::sync::atomic::Ordering;
        let Some(mut rx) = self
            .writes_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        self.writer_running.store(true, Ordering::Release);
        let mut batch: Vec<WriteJob> = Vec::with_capacity(WRITE_BATCH);
        while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
            let ops: Vec<WriteOp<'_>> = batch
                .iter()
                .map(|(job, _)| match job {
                    Write::Finish(c, i, r) => WriteOp::Finish(c, i, r),
                    Write::Claim {
                        command_id,
                        instance_id,
                        unlimited,
                        envelope,
                    } => WriteOp::Claim(Claim {
                        command_id,
                        instance_id,
                        redeliver_after_ms: REDELIVER_AFTER_MS,
                        unlimited: *unlimited,
                        payload: &envelope.payload,
                        signature: &envelope.signature,
                    }),
                })
                .collect();
            let outcome = self.store.write_batch(&ops, now_ms()).await;
            drop(ops);
            for (k, (job, reply)) in batch.drain(..).enumerate() {
                let _ = reply.send(match &outcome {
                    Ok(done) => Ok((done.get(k).copied().unwrap_or(false), job)),
                    Err(e) => Err(e.to_string()),
                });
            }
        }
    }

    pub async fn renew_certificate(
        &self,
        instance: &InstanceRow,
        req: pb::RenewCertificateRequest,
    ) -> Result<pb::RenewCertificateResponse, AgentError> {
        let pem = self
            .pki
            .issue_client_cert(
                &instance.instance_id,
                &req.csr_pem,
                limits::CLIENT_CERT_LIFETIME,
            )
            .map_err(|e| AgentError::Internal(e.to_string()))?;
        Ok(pb::RenewCertificateResponse {
            client_certificate_pem: pem,
            server_time_ms: now_ms(),
        })
    }

    /// Notes that an agent was heard from now (written by the next sweep).
    fn seen(&self, instance_id: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(instance_id.to_string(), now_ms());
    }

    /// Writes the pings noted since the last flush, in one transaction.
    pub async fn flush_pings(&self) {
        let batch: Vec<(String, i64)> =
            std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        if let Err(e) = self.store.pings(&batch).await {
            warn!(error = %e, count = batch.len(), "pings not stored; they will be noted again");
        }
    }

    /// Periodic housekeeping: pings, delivery timeouts, cancellations nobody
    /// confirmed, invocations whose agent fell silent, and old history.
    pub async fn sweep(&self) {
        self.flush_pings().await;
        // Replicas on one database: one of them ends timeouts and prunes.
        match self.store.lead(tether_store::Lead::Sweep).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                warn!(error = %e, "cannot tell whether this replica runs the sweep");
                return;
            }
        }
        let now = now_ms();
        match self.store.sweep_delivery_timeouts(now).await {
            Ok(0) => {}
            Ok(n) => info!(count = n, "invocations reached their delivery timeout"),
            Err(e) => warn!(error = %e, "delivery-timeout sweep failed"),
        }
        let connected = self.held_polls();
        match self
            .store
            .sweep_unconfirmed(
                now,
                self.timeouts.cancel_confirm.as_millis() as i64,
                self.timeouts.agent_silent.as_millis() as i64,
                &connected,
            )
            .await
        {
            Ok(ended) => {
                for (command_id, instance_id, detail) in ended {
                    warn!(%command_id, %instance_id, status = detail.as_str(),
                        "invocation ended by the coordinator: its agent did not answer");
                }
            }
            Err(e) => warn!(error = %e, "unconfirmed-invocation sweep failed"),
        }
        if now
            - self
                .last_prune_ms
                .load(std::sync::atomic::Ordering::Relaxed)
            >= PRUNE_EVERY_MS
        {
            self.last_prune_ms
                .store(now, std::sync::atomic::Ordering::Relaxed);
            let before = now - self.timeouts.history_retention.as_millis() as i64;
            match self.store.prune_history(before, PRUNE_BATCH).await {
                Ok(0) => {}
                Ok(n) => info!(commands = n, "command history past its retention pruned"),
                Err(e) => warn!(error = %e, "history pruning failed"),
            }
        }
    }
}

fn detail_of(state: pb::InvocationState) -> Detail {
    match state {
        pb::InvocationState::Success => Detail::Success,
        pb::InvocationState::TimedOut => Detail::ExecutionTimedOut,
        pb::InvocationState::Cancelled => Detail::Cancelled,
        pb::InvocationState::InProgress => Detail::InProgress,
        _ => Detail::Failed,
    }
}

/// `mi-` followed by 17 lowercase hex digits.
pub fn new_instance_id() -> String {
    let bytes: [u8; 9] = rand::random();
    let hex = hex::encode(bytes);
    format!("mi-{}", &hex[..17])
}

/// What the other replicas announce reaches this replica's polls.
impl crate::replicas::Wakeups for Coordinator {
    fn ring_local(&self, instance_id: &str) {
        Coordinator::ring_local(self, instance_id);
    }

    async fn everything_may_have_changed(&self) {
        self.associations_changed(false).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_have_the_ssm_shape() {
        for _ in 0..100 {
            let id = new_instance_id();
            assert_eq!(id.len(), 20);
            assert!(id.starts_with("mi-"));
            assert!(
                id[3..]
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn failures_beyond_the_budget_block_the_source_only() {
        let mut l = FailureLimiter::default();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..limits::MAX_FAILED_REGISTRATIONS_PER_SOURCE {
            assert!(l.blocked_for(a).is_none());
            l.record_failure(a);
        }
        assert!(l.blocked_for(a).is_some());
        assert!(l.blocked_for(b).is_none());
    }
}
