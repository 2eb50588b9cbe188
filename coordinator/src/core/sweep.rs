//! Housekeeping every 2 s: pings noted in memory are written in one
//! transaction, and — on the replica that leads the sweep — delivery
//! timeouts, cancellations nobody confirmed, invocations whose agent fell
//! silent, used SigV4 signatures past their replay window, and history past
//! its retention.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tether_ssm::limits;
use tether_store::{HostInfo, Lead, Seen};
use tether_util::time::now_ms;
use tracing::{info, warn};

use super::Coordinator;

/// How often history past its retention is looked for, and how many commands
/// one pruning transaction removes (so pruning never stalls the server).
const PRUNE_EVERY_MS: i64 = 3_600_000;
const PRUNE_BATCH: i64 = 500;

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

/// When each agent was last heard from and the host facts it sent, not yet
/// written, and when history was last pruned.
#[derive(Debug, Default)]
pub(super) struct Sweeper {
    seen: Mutex<HashMap<String, (i64, Option<HostInfo>)>>,
    last_prune_ms: AtomicI64,
}

impl Coordinator {
    /// Notes that an agent was heard from now, with the host facts it sent
    /// (written by the next sweep, within 2 s; facts noted earlier and not
    /// yet written are kept when this poll carried none).
    pub(super) fn seen(&self, instance_id: &str, host: Option<HostInfo>) {
        let now = now_ms();
        let mut seen = self.sweeper.seen.lock();
        match seen.get_mut(instance_id) {
            Some((at, held)) => {
                *at = now;
                if host.is_some() {
                    *held = host;
                }
            }
            None => {
                seen.insert(instance_id.to_string(), (now, host));
            }
        }
    }

    /// Writes the pings and host facts noted since the last flush, in one
    /// transaction; a batch that could not be written is noted again (what
    /// was heard meanwhile wins).
    pub async fn flush_pings(&self) {
        let batch: Vec<Seen> = std::mem::take(&mut *self.sweeper.seen.lock())
            .into_iter()
            .map(|(instance_id, (at_ms, host))| Seen {
                instance_id,
                at_ms,
                host,
            })
            .collect();
        if batch.is_empty() {
            return;
        }
        let stored = self
            .metrics
            .timed(super::stats::Statement::Pings, self.store.pings(&batch))
            .await;
        if let Err(e) = stored {
            warn!(error = %e, count = batch.len(), "pings not stored; noted again for the next sweep");
            let mut seen = self.sweeper.seen.lock();
            for s in batch {
                seen.entry(s.instance_id).or_insert((s.at_ms, s.host));
            }
        }
    }

    /// Periodic housekeeping: pings, delivery timeouts, cancellations nobody
    /// confirmed, invocations whose agent fell silent, and old history.
    pub async fn sweep(&self) {
        self.flush_pings().await;
        // Replicas on one database: one of them ends timeouts and prunes.
        match self.store.lead(Lead::Sweep).await {
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
        let connected = self.bells.held();
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
        // SigV4 signatures a replay could no longer use.
        if let Err(e) = self.store.prune_signatures(now).await {
            warn!(error = %e, "pruning used SigV4 signatures failed");
        }
        if now - self.sweeper.last_prune_ms.load(Ordering::Relaxed) >= PRUNE_EVERY_MS {
            self.sweeper.last_prune_ms.store(now, Ordering::Relaxed);
            let before = now - self.timeouts.history_retention.as_millis() as i64;
            match self.store.prune_history(before, PRUNE_BATCH).await {
                Ok(0) => {}
                Ok(n) => info!(commands = n, "command history past its retention pruned"),
                Err(e) => warn!(error = %e, "history pruning failed"),
            }
        }
    }
}
