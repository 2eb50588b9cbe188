//! Which agents may call: an instance whose registration was read once is
//! admitted from memory on its next polls, reports and pings, so that an
//! idle fleet costs no database read per poll. A deregistration on this
//! replica forgets its instance at once; one on another replica is found by
//! [`Coordinator::forget_deregistered`], which every replica runs every
//! [`WATCH_EVERY`] — so a deregistered agent is refused everywhere within
//! about a second.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tether_util::time::now_ms;
use tracing::warn;

use super::{AgentError, Coordinator};

/// How often each replica looks for deregistrations made anywhere.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How far back each look reaches before the previous one: deregistrations
/// are stamped by the clock of the replica that made them, and replicas'
/// clocks may disagree by this much.
const CLOCK_SLACK_MS: i64 = 300_000;

/// The instances admitted from memory, and when deregistrations were last
/// looked for.
#[derive(Debug, Default)]
pub(super) struct Admitted {
    live: Mutex<HashSet<String>>,
    /// When the last look for deregistrations began (0: never).
    looked_ms: AtomicI64,
}

impl Coordinator {
    /// Admits the agent behind a client certificate: registered and not
    /// deregistered. From memory once its registration was read.
    pub async fn admit_agent(&self, instance_id: &str) -> Result<(), AgentError> {
        if self.admitted.live.lock().contains(instance_id) {
            return Ok(());
        }
        // Read before the look that could forget it began: a deregistration
        // racing this read is then found by the next look.
        let looked = self.admitted.looked_ms.load(Ordering::Acquire);
        self.authorize_agent(instance_id).await?;
        if self.admitted.looked_ms.load(Ordering::Acquire) == looked {
            self.admitted.live.lock().insert(instance_id.to_string());
        }
        Ok(())
    }

    /// Forgets an instance deregistered on this replica: its agent is
    /// refused from its next call on.
    pub fn forget_instance(&self, instance_id: &str) {
        self.admitted.live.lock().remove(instance_id);
    }

    /// One look for instances deregistered (on any replica) since the last
    /// look, which are forgotten. When the database cannot be read, every
    /// admission is forgotten: each agent's next call reads its own row.
    pub async fn forget_deregistered(&self) {
        let started = now_ms();
        let last = self.admitted.looked_ms.swap(started, Ordering::AcqRel);
        let since = if last == 0 { 0 } else { last - CLOCK_SLACK_MS };
        match self.store.deregistered_since(since).await {
            Ok(gone) => {
                let mut live = self.admitted.live.lock();
                for id in gone {
                    live.remove(&id);
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot look for deregistered instances; agents are admitted by reading their registration again");
                self.admitted.live.lock().clear();
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use tether_store::{ActivationRow, InstanceRow, Store};

    use super::*;
    use crate::pki::Pki;

    /// Opens activation "act" (100 registrations, an hour) for the tests'
    /// instances.
    pub(crate) async fn open_activation(c: &Coordinator) {
        let now = now_ms();
        c.store
            .insert_activation(&ActivationRow {
                activation_id: "act".into(),
                code_salt: Vec::new(),
                code_hash: Vec::new(),
                description: String::new(),
                default_instance_name: String::new(),
                iam_role: String::new(),
                registration_limit: 100,
                registrations_count: 0,
                expiration_ms: now + 3_600_000,
                created_ms: now,
                deleted_ms: None,
                tags_json: "[]".into(),
            })
            .await
            .unwrap();
    }

    /// Registers `id` under activation "act" ([`open_activation`]).
    pub(crate) async fn registered(c: &Coordinator, id: &str) -> InstanceRow {
        let now = now_ms();
        let row = InstanceRow {
            instance_id: id.into(),
            activation_id: "act".into(),
            tags_json: "[]".into(),
            ..InstanceRow::default()
        };
        c.store.register_instance(&row, now).await.unwrap();
        row
    }

    /// Two replicas on one database: an agent admitted from memory on one
    /// is refused there once the other deregisters it and the next look
    /// for deregistrations runs; one deregistered here is refused at once.
    #[tokio::test]
    async fn a_deregistration_anywhere_ends_an_admission_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Arc::new(Pki::load_or_create(dir.path(), &["localhost".to_string()]).unwrap());
        let db = dir.path().join("t.db");
        let here = Coordinator::new(Store::open(&db).await.unwrap(), pki.clone());
        let there = Coordinator::new(Store::open(&db).await.unwrap(), pki);
        open_activation(&here).await;
        registered(&here, "mi-1").await;
        registered(&here, "mi-2").await;
        here.forget_deregistered().await;
        assert!(matches!(
            here.admit_agent("mi-9").await,
            Err(AgentError::UnknownInstance(_))
        ));
        here.admit_agent("mi-1").await.unwrap();
        here.admit_agent("mi-2").await.unwrap();
        assert!(here.admitted.live.lock().contains("mi-1"));

        // Deregistered by the other replica: still admitted here from
        // memory until the next look, refused from then on.
        there
            .store
            .deregister_instance("mi-1", now_ms())
            .await
            .unwrap();
        here.admit_agent("mi-1").await.unwrap();
        here.forget_deregistered().await;
        assert!(matches!(
            here.admit_agent("mi-1").await,
            Err(AgentError::Deregistered(_))
        ));
        here.admit_agent("mi-2").await.unwrap();

        // Deregistered here: refused at once.
        here.store
            .deregister_instance("mi-2", now_ms())
            .await
            .unwrap();
        here.forget_instance("mi-2");
        assert!(matches!(
            here.admit_agent("mi-2").await,
            Err(AgentError::Deregistered(_))
        ));
    }
}
