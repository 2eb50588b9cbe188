//! Several `tether serve` replicas on one PostgreSQL database.
//!
//! A replica keeps nothing that another needs: commands, invocations, results
//! and registrations are in the database; the key material is in the shared
//! `--secrets-dir`. What a replica does hold is the agents' long polls, so two
//! things cross replicas:
//!
//! - **Wake-ups.** `Coordinator::ring` wakes a poll held on this replica and
//!   publishes the instance on the [`CHANNEL`] (PostgreSQL `NOTIFY`, sent by
//!   [`publish`] in batches); every replica `LISTEN`s ([`listen`]) and wakes
//!   the polls it holds. A notification lost while a listener reconnects
//!   wakes every poll of that replica, and a held poll re-reads the database
//!   at the end of its hold anyway, so nothing waits longer than one hold.
//! - **Work done once.** Timeout sweeps, history pruning and the AWS bridge
//!   run on the replica holding their session advisory lock
//!   ([`tether_store::Store::lead`]); when it dies, its connection closes, the
//!   lock is free and another replica takes the work at its next tick.

use std::future::Future;
use std::sync::Arc;

use backon::BackoffBuilder as _;
use tether_store::{Listener, Store};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// What a replica does when another announces something: the coordinator
/// implements it, so this module needs nothing of the coordinator itself.
pub trait Wakeups: Send + Sync + 'static {
    /// Wakes the poll this replica holds (or holds next) for the instance.
    fn ring_local(&self, instance_id: &str);
    /// Associations or instance tags changed elsewhere, or announcements
    /// may have been lost: every agent's work is looked at again.
    fn everything_may_have_changed(&self) -> impl Future<Output = ()> + Send;
}

/// The PostgreSQL notification channel for wake-ups.
pub const CHANNEL: &str = "tether_ring";

/// Announced in place of an instance ID: associations (or instance tags)
/// changed, so every agent's association set is looked at again.
pub const ASSOCIATIONS_CHANGED: &str = "@associations";

/// NOTIFY payloads must stay under 8,000 bytes.
const MAX_PAYLOAD: usize = 7_000;

/// Past this many instances in one batch, wake every held poll instead.
const RING_ALL_AFTER: usize = 500;

/// Where this replica's wake-ups go to reach the others.
#[derive(Debug)]
pub struct Bus {
    tx: mpsc::UnboundedSender<String>,
    /// Marks this replica's own notifications, which it has already acted on.
    origin: String,
}

impl Bus {
    /// A bus and the receiving end for [`publish`].
    pub fn new() -> (Bus, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let origin = hex::encode(rand::random::<[u8; 8]>());
        (Bus { tx, origin }, rx)
    }

    /// The mark on this replica's announcements.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Queues a wake-up for the other replicas.
    pub fn publish(&self, instance_id: &str) {
        let _ = self.tx.send(instance_id.to_string());
    }
}

/// What one batch of wake-ups becomes: `origin|id,id,...` payloads, or a
/// single `origin|*` (wake everyone, associations changed included) when the
/// batch is large.
pub fn payloads(origin: &str, ids: &[String]) -> Vec<String> {
    if ids.len() > RING_ALL_AFTER {
        return vec![format!("{origin}|*")];
    }
    let mut out = Vec::new();
    let mut cur = format!("{origin}|");
    let empty = cur.len();
    for id in ids {
        if cur.len() > empty && cur.len() + 1 + id.len() > MAX_PAYLOAD {
            out.push(std::mem::replace(&mut cur, format!("{origin}|")));
        }
        if cur.len() > empty {
            cur.push(',');
        }
        cur.push_str(id);
    }
    if cur.len() > empty {
        out.push(cur);
    }
    out
}

/// Sends queued wake-ups, whatever queued up since the last send in one go.
pub async fn publish(store: Store, origin: String, mut rx: mpsc::UnboundedReceiver<String>) {
    while let Some(first) = rx.recv().await {
        let mut ids = vec![first];
        while let Ok(id) = rx.try_recv() {
            ids.push(id);
        }
        ids.sort();
        ids.dedup();
        for p in payloads(&origin, &ids) {
            if let Err(e) = store.notify(CHANNEL, &p).await {
                warn!(error = %e, "could not tell the other replicas of new work");
            }
        }
    }
}

/// Wakes this replica's held polls for what the other replicas announce.
/// Reconnects by itself; a gap wakes every held poll.
pub async fn listen<W: Wakeups>(wakeups: Arc<W>, origin: String, database_url: String) {
    let retry = || {
        backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(500))
            .with_max_delay(std::time::Duration::from_secs(10))
            .without_max_times()
            .build()
    };
    let mut delays = retry();
    loop {
        let mut listener = match Store::listen(&database_url, CHANNEL).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot listen for other replicas' wake-ups; retrying");
                if let Some(d) = delays.next() {
                    tokio::time::sleep(d).await;
                }
                continue;
            }
        };
        delays = retry();
        info!(channel = CHANNEL, "listening for other replicas' wake-ups");
        // Whatever was announced before this listener existed.
        wakeups.everything_may_have_changed().await;
        hear(&*wakeups, &origin, &mut listener).await;
    }
}

/// Acts on announcements until the listener fails.
async fn hear<W: Wakeups>(wakeups: &W, origin: &str, listener: &mut Listener) {
    loop {
        match listener.recv().await {
            Ok(Some(payload)) => {
                let Some((from, ids)) = payload.split_once('|') else {
                    continue;
                };
                if from == origin {
                    continue;
                }
                if ids == "*" {
                    wakeups.everything_may_have_changed().await;
                    continue;
                }
                for id in ids.split(',') {
                    if id == ASSOCIATIONS_CHANGED {
                        wakeups.everything_may_have_changed().await;
                    } else {
                        wakeups.ring_local(id);
                    }
                }
            }
            // The connection dropped and is made again on the next call;
            // announcements in between are lost.
            Ok(None) => wakeups.everything_may_have_changed().await,
            Err(e) => {
                warn!(error = %e, "lost the wake-up listener; reconnecting");
                wakeups.everything_may_have_changed().await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fit_a_notification_and_large_ones_wake_everyone() {
        let ids: Vec<String> = (0..400).map(|i| format!("mi-{i:017}")).collect();
        let p = payloads("o", &ids);
        assert!(p.len() > 1, "400 IDs do not fit one payload");
        assert!(
            p.iter()
                .all(|s| s.len() <= MAX_PAYLOAD && s.starts_with("o|"))
        );
        let back: Vec<&str> = p.iter().flat_map(|s| s["o|".len()..].split(',')).collect();
        assert_eq!(back, ids.iter().map(String::as_str).collect::<Vec<_>>());
        let many: Vec<String> = (0..=RING_ALL_AFTER).map(|i| i.to_string()).collect();
        assert_eq!(payloads("o", &many), ["o|*"]);
        assert!(payloads("o", &[]).is_empty());
    }
}
