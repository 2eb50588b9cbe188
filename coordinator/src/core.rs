//! The coordinator's shared state and the agent-facing logic. It takes and
//! gives domain values; the gRPC edge (`grpc.rs`) converts protobuf to and
//! from them, and the action layer (`actions`) uses the same [`Coordinator`]
//! for operator requests.
//!
//! - [`registration`]: activations turned into managed instances.
//! - [`delivery`]: long polls — envelopes, cancels, association sets.
//! - [`intake`]: reports, certificate renewals, inventory uploads.
//! - [`writer`]: the hot path's writes, batched on one task.
//! - [`sweep`]: pings, timeouts, history pruning.
//! - [`trust`]: each node's sealing key (up) and trust bundle (down), and
//!   secrets sealed to a node.
//! - [`admission`]: agents admitted from memory, deregistrations watched.
//! - [`bell`]: per-instance wake-ups and the rule that lets a poll skip the
//!   database.
//! - [`stats`]: what this replica counts (atomics), and their Prometheus text.

pub mod admission;
pub mod bell;
pub mod delivery;
pub mod intake;
pub mod registration;
pub mod releases;
pub mod stats;
pub mod sweep;
pub mod trust;
pub mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tether_ssm::limits;
use tether_store::{Store, StoreError};

use crate::associations::Targeted;
use crate::pki::Pki;
use crate::replicas::{self, Bus};
use crate::signing::EnvelopeHook;

pub use delivery::{Delivery, Poll};
pub use intake::Report;
pub use registration::{RegisterError, Registered, Registration, code_hash};
pub use sweep::Timeouts;

/// The agent is expected to acknowledge a delivered envelope within this time;
/// otherwise the reply was lost and the invocation is delivered again.
const REDELIVER_AFTER_MS: i64 = 30_000;

/// How long read associations, and an agent's association set found
/// current (`bell::Bell::associations_current`), are trusted without a
/// change notice (a safety net: every change of associations or instance
/// tags on any replica clears them at once).
const ASSOCIATION_CACHE_TTL: Duration = Duration::from_secs(30);

/// Why an agent call was refused.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("instance {0} is not registered with this coordinator")]
    UnknownInstance(String),
    #[error("instance {0} was deregistered")]
    Deregistered(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// This replica cannot serve now (it cannot reach its database): the
    /// agent should try another.
    #[error("this coordinator cannot serve now: {0}")]
    Unavailable(String),
    /// The agent sent something malformed.
    #[error("{0}")]
    BadRequest(String),
    /// What the agent asked for does not exist (a release).
    #[error("{0}")]
    NotFound(String),
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        AgentError::Internal(e.to_string())
    }
}

/// The coordinator: storage and keys, and the parts that serve agents.
pub struct Coordinator {
    pub store: Store,
    pub pki: Arc<Pki>,
    /// When the coordinator stops waiting for agents, and how long history is kept.
    pub timeouts: Timeouts,
    /// The account ID and region in ARNs.
    pub account: crate::account::Account,
    /// What `operator.json` says (its token aside): the template of the
    /// operator configs issued to users.
    pub operator_config: Option<tether_cli::OperatorConfig>,
    /// This replica's operator.json, which RotateRootToken rewrites.
    pub operator_config_path: Option<std::path::PathBuf>,
    /// The audit trail (`crate::audit`): `tether serve` gives it the audit
    /// key and the mirror; without them records are still chained.
    pub audit: Arc<crate::audit::Trail>,
    /// The key-encryption keys of SecureString parameters (set by
    /// `server::run` once the store is open; `None` refuses SecureStrings).
    pub parameter_keys: Option<Arc<crate::parameter_keys::Keyring>>,
    /// The web console's sessions on this replica (`crate::console`).
    pub console: crate::sessions::Sessions,
    /// How long a poll is held (an agent may ask for less).
    poll_hold: Duration,
    /// The lifetime of the client certificates issued to agents
    /// (`tether serve --client-cert-lifetime`); agents renew at half of it.
    pub client_cert_lifetime: Duration,
    /// The most one poll response carries (tests make it smaller).
    pub delivery_budget: usize,
    /// Deliberately corrupt envelopes (end-to-end tests only).
    hook: Option<EnvelopeHook>,
    bells: bell::Bells,
    /// Agents admitted from memory ([`admission`]).
    admitted: admission::Admitted,
    /// Commands being delivered, read once ([`delivery`]).
    delivering: delivery::Delivering,
    /// Each node's sealing key as last seen ([`trust`]).
    sealing_keys: trust::SealingKeys,
    associations: AssociationCache,
    writer: writer::Writer,
    sweeper: sweep::Sweeper,
    limiter: Mutex<registration::FailureLimiter>,
    /// Set when the server is stopping: held polls return at once.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Whether the last readiness check reached the database
    /// ([`Coordinator::check_readiness`]); while it is false agents are
    /// answered Unavailable, so that they move to another replica.
    ready: tokio::sync::watch::Sender<bool>,
    /// Readiness checks failed in a row.
    failed_checks: std::sync::atomic::AtomicU32,
    /// Set when replicas share a PostgreSQL database: wake-ups go to them too.
    bus: OnceLock<Bus>,
    /// What this replica counts (`stats::render` writes it out).
    pub metrics: stats::Metrics,
}

/// Every association, as last read, and the generation it was read at.
#[derive(Debug, Default)]
struct AssociationCache {
    /// Bumped whenever associations (or the instance tags they may target)
    /// change anywhere; part of what a settled poll remembers.
    generation: AtomicU64,
    /// What was last read (each poll matches them against its instance;
    /// reading them per poll cost a query each).
    read: tokio::sync::Mutex<Option<AssociationsRead>>,
}

/// When associations were read, at which generation, and what was read.
type AssociationsRead = (tokio::time::Instant, u64, Arc<Vec<Targeted>>);

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

impl Coordinator {
    pub fn new(store: Store, pki: Arc<Pki>) -> Self {
        let audit = Arc::new(crate::audit::Trail::new(
            store.clone(),
            crate::account::Account::default(),
            "local".into(),
        ));
        Coordinator {
            store,
            pki,
            timeouts: Timeouts::default(),
            account: crate::account::Account::default(),
            operator_config: None,
            operator_config_path: None,
            audit,
            parameter_keys: None,
            console: crate::sessions::Sessions::default(),
            poll_hold: limits::LONG_POLL_HOLD,
            client_cert_lifetime: limits::CLIENT_CERT_LIFETIME,
            delivery_budget: limits::MAX_POLL_RESPONSE_BYTES,
            hook: EnvelopeHook::from_env(),
            bells: bell::Bells::default(),
            admitted: admission::Admitted::default(),
            delivering: delivery::Delivering::default(),
            sealing_keys: trust::SealingKeys::default(),
            associations: AssociationCache::default(),
            writer: writer::Writer::default(),
            sweeper: sweep::Sweeper::default(),
            limiter: Mutex::new(registration::FailureLimiter::default()),
            stopping: tokio::sync::watch::Sender::new(false),
            ready: tokio::sync::watch::Sender::new(true),
            failed_checks: std::sync::atomic::AtomicU32::new(0),
            bus: OnceLock::new(),
            metrics: stats::Metrics::default(),
        }
    }

    /// Releases every held poll so that a graceful shutdown does not wait out
    /// the hold time; agents simply poll again (and reconnect to the next run).
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Whether this replica can serve: its database answered the last
    /// readiness check, and it is not stopping.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow() && !*self.stopping.borrow()
    }

    /// Checks that the database answers within
    /// [`limits::READINESS_CHECK_TIMEOUT`], and records the verdict (logged
    /// when it changes): unready after [`limits::READINESS_FAILURES`]
    /// failed checks in a row, ready again after one that passes. `tether serve` runs it every
    /// [`limits::READINESS_CHECK_INTERVAL`].
    pub async fn check_readiness(&self) -> bool {
        let verdict =
            match tokio::time::timeout(limits::READINESS_CHECK_TIMEOUT, self.store.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "no answer within {} s",
                    limits::READINESS_CHECK_TIMEOUT.as_secs()
                )),
            };
        let failures = match verdict {
            Ok(()) => 0,
            Err(_) => self.failed_checks.fetch_add(1, Ordering::SeqCst) + 1,
        };
        if failures == 0 {
            self.failed_checks.store(0, Ordering::SeqCst);
        }
        // One failed check may be a blip; two in a row are not.
        let ok = failures < limits::READINESS_FAILURES;
        let was = *self.ready.borrow();
        // Only a change wakes whoever waits on it (held polls do).
        self.ready
            .send_if_modified(|r| std::mem::replace(r, ok) != ok);
        match verdict {
            Err(e) if was && !ok => tracing::error!(error = %e,
                "the database cannot be reached: not ready; agents are sent to other replicas"),
            Err(e) => tracing::warn!(error = %e, failures, "readiness check failed"),
            Ok(()) if !was => tracing::info!("the database answers again: ready"),
            Ok(()) => {}
        }
        ok
    }

    /// Resolves once this replica cannot reach its database (at once if it
    /// cannot now): calls in flight are answered Unavailable rather than
    /// left waiting on a database that is gone.
    pub async fn until_unready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| !*r).await;
    }

    /// Refuses an agent's call while this replica cannot serve it.
    pub fn serving(&self) -> Result<(), AgentError> {
        if *self.ready.borrow() {
            Ok(())
        } else {
            Err(AgentError::Unavailable(
                "it cannot reach its database".into(),
            ))
        }
    }

    /// Wakes the instances whose invocation of `command_id` waits for a slot.
    pub async fn ring_waiting(&self, command_id: &str) -> Result<(), StoreError> {
        if self.unlimited(command_id) == Some(true) {
            return Ok(()); // nothing waits for a slot
        }
        for instance_id in self.store.waiting_instances(command_id).await? {
            self.ring(&instance_id);
        }
        Ok(())
    }

    /// Wakes the instance's held poll (or the next one) because work is
    /// waiting, on this replica and, through the bus, on the others.
    pub fn ring(&self, instance_id: &str) {
        self.bells.get(instance_id).ring();
        if let Some(bus) = self.bus.get() {
            bus.publish(instance_id);
        }
    }

    /// Wakes the held polls of `instance_ids` just after the current task
    /// yields — on the other replicas (through the bus) at once. An
    /// operator's answer that set the work (SendCommand, CancelCommand) is
    /// on its way out first instead of queueing behind the polls it wakes:
    /// at 10,000 targets those are 10,000 tasks on a two-core machine.
    pub fn ring_after_answer(&self, instance_ids: Vec<String>) {
        if instance_ids.is_empty() {
            return;
        }
        if let Some(bus) = self.bus.get() {
            for id in &instance_ids {
                bus.publish(id);
            }
        }
        let bells: Vec<Arc<bell::Bell>> =
            instance_ids.iter().map(|id| self.bells.get(id)).collect();
        tokio::spawn(async move {
            // Twice: the spawned task may run first (tokio's LIFO slot); the
            // answer's stream and its connection task go before the rings.
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            for b in bells {
                b.ring();
            }
        });
    }

    /// Sends this replica's wake-ups to the others (see [`crate::replicas`]).
    pub fn attach_bus(&self, bus: Bus) {
        let _ = self.bus.set(bus);
    }

    /// Associations, or the instance tags they may target, changed (here or,
    /// when `announce` is false, on another replica): every agent's set is
    /// looked at again, here and — when `announce` — on the other replicas.
    pub async fn associations_changed(&self, announce: bool) {
        self.associations.generation.fetch_add(1, Ordering::SeqCst);
        *self.associations.read.lock().await = None;
        self.bells.ring_all();
        if announce && let Some(bus) = self.bus.get() {
            bus.publish(replicas::ASSOCIATIONS_CHANGED);
        }
    }

    fn association_generation(&self) -> u64 {
        self.associations.generation.load(Ordering::SeqCst)
    }

    /// Every association with its targets, from memory when nothing changed
    /// since it was read. Each row's targets are read once here, not at
    /// every poll; one that does not read back reaches nobody, loudly.
    pub async fn associations(&self) -> Result<Arc<Vec<Targeted>>, StoreError> {
        let mut read = self.associations.read.lock().await;
        let generation = self.association_generation();
        if let Some((at, g, rows)) = read.as_ref()
            && *g == generation
            && at.elapsed() < ASSOCIATION_CACHE_TTL
        {
            return Ok(rows.clone());
        }
        let mut rows = Vec::new();
        for row in self.store.associations().await? {
            let id = row.association_id.clone();
            match Targeted::parse(row) {
                Ok(t) => rows.push(t),
                Err(e) => tracing::error!(association_id = %id, error = %e,
                    "stored association's targets are corrupt: it reaches no instance until fixed"),
            }
        }
        let rows = Arc::new(rows);
        *read = Some((tokio::time::Instant::now(), generation, rows.clone()));
        Ok(rows)
    }
}

/// What the other replicas announce reaches this replica's polls.
impl replicas::Wakeups for Coordinator {
    fn ring_local(&self, instance_id: &str) {
        self.bells.ring_if_known(instance_id);
    }

    async fn everything_may_have_changed(&self) {
        self.associations_changed(false).await;
    }
}
