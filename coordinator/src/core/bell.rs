//! An instance's wake-up bell, and the rule that lets a poll skip the
//! database: a look at an instance's work stands in for the next one while
//! nothing rang, the associations did not change, the agent holds the same
//! association digest, and nothing it handed over can have fallen due by
//! time since.
//!
//! No IO: a ring count, a `Notify`, and instants from tokio's clock (so the
//! settle rule is tested with paused time).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a look at an instance's work stands in for the next one while
/// something handed over may still fall due by time (a redelivery after 30 s,
/// a cancel resent every 30 s): such work is found at most this late.
pub const SETTLED_FOR: Duration = Duration::from_secs(5);

/// With nothing handed over for this long, nothing can fall due by time, and
/// a look stands until something rings — or, as a safety net, for
/// [`SETTLED_AT_MOST`].
pub const QUIET_AFTER: Duration = Duration::from_secs(120);
pub const SETTLED_AT_MOST: Duration = Duration::from_secs(300);

/// Where an instance's work stands: its bell's ring count, the association
/// generation, and the association digest its agent holds.
pub type WorkMark = (u64, u64, String);

/// An instance's wake-up bell, and what the last look at its work found.
#[derive(Debug, Default)]
pub struct Bell {
    notify: Notify,
    /// Bumped by every ring: work may be waiting.
    rung: AtomicU64,
    /// The last look at the database, once its findings are handed over:
    /// where the work stood then, and when.
    settled: Mutex<Option<(WorkMark, Instant)>>,
    /// When a look last handed over envelopes or cancels: work that falls
    /// due by time can only follow a hand-over.
    handed_over: Mutex<HandOver>,
    /// The association set the agent holds or was last handed, as of which
    /// association generation, and since when: while the generation and
    /// the agent's digest are the same, a look needs neither the instance's
    /// tags nor the associations.
    associations: Mutex<Option<(u64, String, Instant)>>,
}

/// What a bell knows of the work handed over to its instance.
#[derive(Clone, Copy, Debug, Default)]
enum HandOver {
    /// The bell is new: a previous run or another replica may have handed
    /// something over (counted from the first look).
    #[default]
    Unknown,
    /// Nothing handed over can still fall due by time.
    Nothing,
    /// The last hand-over.
    At(Instant),
}

impl Bell {
    /// Work may be waiting: wakes the held poll, or the next one.
    pub fn ring(&self) {
        self.rung.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Resolves at the next ring (or at once, if one came since the last wait).
    pub async fn rung(&self) {
        self.notify.notified().await;
    }

    /// Where this instance's work stands now, to compare with the last look.
    pub fn mark(&self, association_gen: u64, digest: &str) -> WorkMark {
        (
            self.rung.load(Ordering::SeqCst),
            association_gen,
            digest.to_string(),
        )
    }

    /// Whether the last look still stands: nothing rang or changed since,
    /// and nothing it handed over can have fallen due by time.
    pub fn is_settled(&self, now: &WorkMark) -> bool {
        let quiet = {
            let mut handed_over = self.handed_over.lock();
            if let HandOver::Unknown = *handed_over {
                *handed_over = HandOver::At(Instant::now());
            }
            match *handed_over {
                HandOver::At(at) => at.elapsed() >= QUIET_AFTER,
                HandOver::Unknown | HandOver::Nothing => true,
            }
        };
        self.settled.lock().as_ref().is_some_and(|(at, when)| {
            at == now && (when.elapsed() < SETTLED_FOR || quiet && when.elapsed() < SETTLED_AT_MOST)
        })
    }

    /// Records a look: where the work stood, and whether it handed anything over.
    pub fn settle(&self, at: WorkMark, handed_over: bool) {
        let now = Instant::now();
        let mut last = self.handed_over.lock();
        if handed_over || matches!(*last, HandOver::Unknown) {
            *last = HandOver::At(now);
        }
        *self.settled.lock() = Some((at, now));
    }

    /// Whether the agent's association set (`digest`) was found current at
    /// association generation `generation` less than `fresh_for` ago.
    pub fn associations_current(&self, generation: u64, digest: &str, fresh_for: Duration) -> bool {
        self.associations
            .lock()
            .as_ref()
            .is_some_and(|(g, d, at)| *g == generation && d == digest && at.elapsed() < fresh_for)
    }

    /// The association set `digest` is current at association generation
    /// `generation`: the agent holds it, or is handed it now.
    pub fn associations_are(&self, generation: u64, digest: &str) {
        *self.associations.lock() = Some((generation, digest.to_string(), Instant::now()));
    }

    /// Something is about to be handed over (a claim or a cancel is about to
    /// be stored): noted before it is, so that a poll dropped between the
    /// store and its answer (the agent gave up waiting) leaves the bell
    /// looking again until the redelivery falls due.
    pub fn handing_over(&self) {
        *self.handed_over.lock() = HandOver::At(Instant::now());
    }

    /// Whether something handed over may still fall due by time, as far as
    /// this bell knows (each look also asks the database what is in flight,
    /// [`Bell::nothing_in_flight`], instead of looking again every few
    /// seconds for [`QUIET_AFTER`]).
    #[cfg(test)]
    fn may_be_in_flight(&self) -> bool {
        !matches!(*self.handed_over.lock(), HandOver::Nothing)
    }

    /// Nothing handed over to the instance can fall due by time (nothing is
    /// delivered and unacknowledged, no cancel is out): the last look stands
    /// until something rings (or [`SETTLED_AT_MOST`]), unless a hand-over
    /// came meanwhile.
    pub fn nothing_in_flight(&self, asked_at: Instant) {
        let mut last = self.handed_over.lock();
        if !matches!(*last, HandOver::At(at) if at > asked_at) {
            *last = HandOver::Nothing;
        }
    }
}

/// Every instance's bell on this replica, and which instances hold a poll
/// open right now (they are connected even when their last ping is old).
#[derive(Debug, Default)]
pub struct Bells {
    bells: Mutex<HashMap<String, Arc<Bell>>>,
    polling: Mutex<HashMap<String, usize>>,
}

impl Bells {
    /// The instance's bell, made on first use.
    pub fn get(&self, instance_id: &str) -> Arc<Bell> {
        self.bells
            .lock()
            .entry(instance_id.to_string())
            .or_default()
            .clone()
    }

    /// Rings the instance's bell if this replica has seen it poll.
    pub fn ring_if_known(&self, instance_id: &str) {
        let bell = self.bells.lock().get(instance_id).cloned();
        if let Some(b) = bell {
            b.ring();
        }
    }

    /// Rings every bell: each poll, held now or next, looks again.
    pub fn ring_all(&self) {
        let bells: Vec<Arc<Bell>> = self.bells.lock().values().cloned().collect();
        for b in bells {
            b.ring();
        }
    }

    /// Counts a poll of `instance_id` as held while the guard lives.
    pub fn hold(&self, instance_id: &str) -> HeldPoll<'_> {
        *self
            .polling
            .lock()
            .entry(instance_id.to_string())
            .or_default() += 1;
        HeldPoll {
            polling: &self.polling,
            id: instance_id.to_string(),
        }
    }

    /// How many instances hold a poll open right now.
    pub fn held_count(&self) -> usize {
        self.polling.lock().len()
    }

    /// The instances with a poll held open right now.
    pub fn held(&self) -> Vec<String> {
        self.polling.lock().keys().cloned().collect()
    }
}

/// Counts a poll as held while it lives.
#[derive(Debug)]
pub struct HeldPoll<'a> {
    polling: &'a Mutex<HashMap<String, usize>>,
    id: String,
}

impl Drop for HeldPoll<'_> {
    fn drop(&mut self) {
        let mut p = self.polling.lock();
        if let Some(n) = p.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                p.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(rung: u64, generation: u64, digest: &str) -> WorkMark {
        (rung, generation, digest.to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn a_look_stands_until_something_changes() {
        let bell = Bell::default();
        let at = bell.mark(0, "d");
        assert!(
            !bell.is_settled(&at),
            "nothing settled before the first look"
        );
        bell.settle(at.clone(), false);
        assert!(bell.is_settled(&at));
        // Each change undoes it: a ring, another association generation,
        // another digest held by the agent.
        bell.ring();
        assert!(!bell.is_settled(&bell.mark(0, "d")));
        assert!(!bell.is_settled(&mark(0, 1, "d")));
        assert!(!bell.is_settled(&mark(0, 0, "other")));
    }

    #[tokio::test(start_paused = true)]
    async fn an_association_set_stays_current_until_a_change_or_its_time() {
        let bell = Bell::default();
        let fresh = Duration::from_secs(30);
        assert!(!bell.associations_current(0, "", fresh), "never looked");
        bell.associations_are(3, "d");
        assert!(bell.associations_current(3, "d", fresh));
        assert!(
            !bell.associations_current(4, "d", fresh),
            "associations or tags changed"
        );
        assert!(
            !bell.associations_current(3, "", fresh),
            "the agent holds another set"
        );
        tokio::time::advance(fresh).await;
        assert!(
            !bell.associations_current(3, "d", fresh),
            "time to look again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_hand_over_a_look_stands_only_briefly() {
        let bell = Bell::default();
        let at = bell.mark(0, "d");
        bell.settle(at.clone(), true);
        tokio::time::advance(SETTLED_FOR - Duration::from_millis(1)).await;
        assert!(bell.is_settled(&at));
        // A redelivery or a resent cancel may fall due now.
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!bell.is_settled(&at));
    }

    #[tokio::test(start_paused = true)]
    async fn once_quiet_a_look_stands_until_the_safety_net() {
        let bell = Bell::default();
        let at = bell.mark(0, "d");
        // The bell is new: a previous run may have handed something over.
        bell.settle(at.clone(), false);
        tokio::time::advance(SETTLED_FOR).await;
        assert!(!bell.is_settled(&at), "not quiet yet");
        tokio::time::advance(QUIET_AFTER).await;
        bell.settle(at.clone(), false);
        tokio::time::advance(SETTLED_AT_MOST - Duration::from_millis(1)).await;
        assert!(bell.is_settled(&at));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!bell.is_settled(&at), "at most SETTLED_AT_MOST");
        // A hand-over starts the short rule again.
        bell.settle(at.clone(), true);
        tokio::time::advance(SETTLED_FOR).await;
        assert!(!bell.is_settled(&at));
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_in_flight_a_new_bell_is_quiet_at_once() {
        let bell = Bell::default();
        let at = bell.mark(0, "d");
        bell.settle(at.clone(), false);
        assert!(bell.may_be_in_flight(), "a new bell knows nothing");
        bell.nothing_in_flight(Instant::now());
        assert!(!bell.may_be_in_flight());
        tokio::time::advance(SETTLED_AT_MOST - Duration::from_millis(1)).await;
        assert!(bell.is_settled(&at), "quiet from the first look");
        // A hand-over after the question was asked is not undone by its answer.
        let asked = Instant::now();
        tokio::time::advance(Duration::from_millis(1)).await;
        bell.settle(at.clone(), true);
        bell.nothing_in_flight(asked);
        tokio::time::advance(SETTLED_FOR).await;
        assert!(!bell.is_settled(&at), "the hand-over's short rule holds");
        assert!(bell.may_be_in_flight());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hand_over_noted_before_its_look_settles_keeps_the_bell_awake() {
        let bell = Bell::default();
        let at = bell.mark(0, "d");
        bell.settle(at.clone(), false);
        bell.nothing_in_flight(Instant::now());
        // A claim stored by a poll dropped before its answer: no settle.
        bell.handing_over();
        tokio::time::advance(SETTLED_FOR).await;
        assert!(!bell.is_settled(&at), "the redelivery is looked for");
        assert!(bell.may_be_in_flight());
    }

    #[tokio::test(start_paused = true)]
    async fn a_ring_wakes_the_held_poll_and_is_not_lost_before_it_waits() {
        let bells = Bells::default();
        let bell = bells.get("mi-1");
        bells.ring_if_known("mi-1");
        // The ring came before the wait: the wait ends at once.
        tokio::time::timeout(Duration::from_secs(1), bell.rung())
            .await
            .expect("the earlier ring wakes the poll");
        bells.ring_if_known("mi-unknown");
        assert!(Arc::ptr_eq(&bell, &bells.get("mi-1")));
    }

    #[test]
    fn held_polls_are_counted_while_they_live() {
        let bells = Bells::default();
        let a = bells.hold("mi-1");
        let b = bells.hold("mi-1");
        assert_eq!(bells.held(), vec!["mi-1".to_string()]);
        drop(a);
        assert_eq!(bells.held(), vec!["mi-1".to_string()]);
        drop(b);
        assert!(bells.held().is_empty());
    }
}
