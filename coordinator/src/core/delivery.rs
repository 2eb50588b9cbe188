//! Long polls: what an agent is handed — signed envelopes of the invocations
//! it may run now (MaxConcurrency permitting), signed cancellations, and its
//! association set when the one it holds is out of date — at once when
//! something is there, else when its bell rings or the hold ends.

use std::time::Duration;

use tether_store::{Claim, HostInfo, InstanceRow, WriteOp};
use tether_util::time::now_ms;

use super::{AgentError, Coordinator, REDELIVER_AFTER_MS};
use crate::associations::{self, SignedSet};
use crate::signing::{self, EnvelopeHook, Signed};

/// One poll, as the agent asks it.
#[derive(Clone, Debug, Default)]
pub struct Poll {
    /// How long it will wait for an answer (None: the coordinator's hold).
    pub wait: Option<Duration>,
    /// The digest of the association set it holds.
    pub associations_digest: String,
    /// Host facts, sent every few minutes.
    pub host: Option<HostInfo>,
}

/// What a poll hands over.
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    pub envelopes: Vec<Signed>,
    pub cancels: Vec<Signed>,
    /// The current association set, when the agent's is out of date.
    pub associations: Option<SignedSet>,
}

impl Delivery {
    fn is_empty(&self) -> bool {
        self.envelopes.is_empty() && self.cancels.is_empty() && self.associations.is_none()
    }
}

impl Coordinator {
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
    pub async fn poll(&self, instance: &InstanceRow, req: Poll) -> Result<Delivery, AgentError> {
        let id = &instance.instance_id;
        match &req.host {
            // Host facts (sent every few minutes) are written at once.
            Some(h) => self.store.ping(id, Some(h), now_ms()).await?,
            None => self.seen(id),
        }
        let hold = req.wait.map_or(self.poll_hold, |w| w.min(self.poll_hold));
        let deadline = tokio::time::Instant::now() + hold;
        let bell = self.bells.get(id);
        let _held = self.bells.hold(id);
        let mut stopping = self.stopping.subscribe();
        // A look at the database is skipped while the last one stands (see
        // `bell::Bell::is_settled`): an agent polling again right after its
        // result, or an idle one, costs no query.
        loop {
            let association_gen = self.association_generation();
            let before = bell.mark(association_gen, &req.associations_digest);
            let found = if bell.is_settled(&before) {
                Delivery::default()
            } else {
                let found = Delivery {
                    envelopes: self.envelopes_for(id).await?,
                    cancels: self.cancels_for(id).await?,
                    associations: self
                        .association_set_if_changed(instance, &req.associations_digest)
                        .await?,
                };
                // What was found is handed over now: the agent holds it next time.
                let digest = found
                    .associations
                    .as_ref()
                    .map_or(before.2.clone(), |a| a.digest.clone());
                bell.settle(
                    (before.0, before.1, digest),
                    !found.envelopes.is_empty() || !found.cancels.is_empty(),
                );
                found
            };
            if !found.is_empty() || tokio::time::Instant::now() >= deadline || *stopping.borrow() {
                self.seen(id);
                return Ok(found);
            }
            // A redelivery may fall due while we wait: look again at least every 10 s.
            let nap = deadline.min(tokio::time::Instant::now() + Duration::from_secs(10));
            tokio::select! {
                _ = bell.rung() => {}
                _ = tokio::time::sleep_until(nap) => {}
                _ = stopping.changed() => {}
            }
        }
    }

    /// The instance's association set when it differs from the one its agent holds.
    async fn association_set_if_changed(
        &self,
        instance: &InstanceRow,
        held: &str,
    ) -> Result<Option<SignedSet>, AgentError> {
        let all = self.associations().await?;
        associations::set_if_changed(&self.pki, &all, instance, held).map_err(AgentError::Internal)
    }

    /// Envelopes of the invocations the instance may run now, each claimed
    /// (with its envelope kept for a redelivery) before it is handed over.
    async fn envelopes_for(&self, instance_id: &str) -> Result<Vec<Signed>, AgentError> {
        let now = now_ms();
        let mut out = Vec::new();
        for cmd in self
            .store
            .deliverable(instance_id, now, REDELIVER_AFTER_MS)
            .await?
        {
            // MaxConcurrency: without a free slot it waits; a finishing
            // invocation rings the waiting instances.
            let envelope = signing::command(&self.pki, self.hook, instance_id, &cmd, now);
            let claim = WriteOp::Claim(Claim {
                command_id: cmd.command_id.clone(),
                instance_id: instance_id.to_string(),
                redeliver_after_ms: REDELIVER_AFTER_MS,
                unlimited: cmd.concurrency_limit >= cmd.target_count,
                payload: envelope.payload,
                signature: envelope.signature,
            });
            if let (true, WriteOp::Claim(c)) = self.write(claim).await? {
                out.push(Signed {
                    payload: c.payload,
                    signature: c.signature,
                });
            }
        }
        if out.is_empty()
            && self.hook == Some(EnvelopeHook::Replay)
            && let Some(cmd) = self.store.last_finished_command(instance_id).await?
            && let Some((payload, signature)) = self.store.last_envelope(&cmd, instance_id).await?
        {
            out.push(Signed { payload, signature });
        }
        Ok(out)
    }

    /// Signed cancellations due for this instance (resent until its agent
    /// reports the invocation, at most every [`REDELIVER_AFTER_MS`]).
    async fn cancels_for(&self, instance_id: &str) -> Result<Vec<Signed>, AgentError> {
        let now = now_ms();
        let mut out = Vec::new();
        for command_id in self
            .store
            .cancels_due(instance_id, now, REDELIVER_AFTER_MS)
            .await?
        {
            let signed = signing::cancel(&self.pki, instance_id, &command_id, now);
            self.store
                .mark_cancel_sent(&command_id, instance_id, now)
                .await?;
            out.push(signed);
        }
        Ok(out)
    }
}
