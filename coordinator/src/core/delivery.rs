//! Long polls: what an agent is handed — signed envelopes of the invocations
//! it may run now (MaxConcurrency permitting), signed cancellations, and its
//! association set when the one it holds is out of date — at once when
//! something is there, else when its bell rings or the hold ends.

use std::sync::Arc;
use std::time::Duration;

use hashlink::LruCache;
use parking_lot::Mutex;

use tether_ssm::limits;
use tether_ssm::state::Detail;
use tether_store::{
    Claim, CommandRow, HostInfo, InstanceRow, InvocationResult, PluginResult, WriteOp,
};
use tether_util::time::now_ms;

use super::bell::Bell;
use super::stats::Statement;
use super::{ASSOCIATION_CACHE_TTL, AgentError, Coordinator, REDELIVER_AFTER_MS};
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
    /// The node's X25519 sealing public key (empty from older agents).
    pub sealing_public_key: Vec<u8>,
    /// The digest of the trust bundle it holds.
    pub trust_digest: String,
}

/// What a poll hands over.
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    pub envelopes: Vec<Signed>,
    pub cancels: Vec<Signed>,
    /// The current association set, when the agent's is out of date.
    pub associations: Option<SignedSet>,
    /// The node's trust bundle, when the one it holds is out of date.
    pub trust: Option<Signed>,
}

/// How many commands [`Delivering`] keeps.
const DELIVERING: usize = 64;

/// The commands whose envelopes are being made, each read once instead of
/// once per envelope: an envelope carries only what a command was sent with
/// (document, parameters, requester, references), which never changes. The
/// least recently used goes first.
#[derive(Debug)]
pub(super) struct Delivering(Mutex<LruCache<String, Arc<CommandRow>>>);

impl Default for Delivering {
    fn default() -> Self {
        Delivering(Mutex::new(LruCache::new(DELIVERING)))
    }
}

/// The bytes a signed message takes in a poll response (with its framing).
fn signed_bytes(s: &Signed) -> usize {
    s.payload.len() + s.signature.len() + 16
}

impl Delivery {
    fn is_empty(&self) -> bool {
        self.envelopes.is_empty()
            && self.cancels.is_empty()
            && self.associations.is_none()
            && self.trust.is_none()
    }
}

impl Coordinator {
    /// The registered, live instance behind a client certificate.
    pub async fn authorize_agent(&self, instance_id: &str) -> Result<InstanceRow, AgentError> {
        let row = self
            .metrics
            .timed(Statement::Instance, self.store.instance(instance_id))
            .await?;
        match row {
            None => Err(AgentError::UnknownInstance(instance_id.to_string())),
            Some(i) if i.deregistered_ms.is_some() => {
                Err(AgentError::Deregistered(instance_id.to_string()))
            }
            Some(i) => Ok(i),
        }
    }

    /// A long poll of an admitted instance: returns at once with whatever is
    /// deliverable, else waits for the instance's bell or the hold time.
    pub async fn poll(&self, id: &str, req: Poll) -> Result<Delivery, AgentError> {
        self.metrics.polled();
        // Written by the next sweep with everyone else's, host facts (sent
        // every few minutes, and on each connection's first poll) included.
        self.seen(id, req.host.clone());
        // The node's sealing key is kept, and its trust bundle goes with
        // this answer when the one it holds is not the current one.
        let mut trust = match self.note_sealing_key(id, &req.sealing_public_key).await? {
            Some(digest) if digest != req.trust_digest => {
                Some(self.trust_bundle(id, &req.sealing_public_key))
            }
            _ => None,
        };
        let hold = req.wait.map_or(self.poll_hold, |w| w.min(self.poll_hold));
        let deadline = tokio::time::Instant::now() + hold;
        let bell = self.bells.get(id);
        let _held = self.bells.hold(id);
        let mut stopping = self.stopping.subscribe();
        let mut ready = self.ready.subscribe();
        // A look at the database is skipped while the last one stands (see
        // `bell::Bell::is_settled`): an agent polling again right after its
        // result, or an idle one, costs no query.
        loop {
            // A replica that lost its database lets go of its agents.
            self.serving()?;
            let association_gen = self.association_generation();
            let before = bell.mark(association_gen, &req.associations_digest);
            let mut found = if bell.is_settled(&before) {
                Delivery::default()
            } else {
                let asked_at = tokio::time::Instant::now();
                let (found, left_over, in_flight) = self
                    .look(id, &bell, association_gen, &req.associations_digest)
                    .await?;
                // What was found is handed over now: the agent holds it next time.
                let digest = found
                    .associations
                    .as_ref()
                    .map_or(before.2.clone(), |a| a.digest.clone());
                let handed_over = !found.envelopes.is_empty() || !found.cancels.is_empty();
                bell.settle((before.0, before.1, digest), handed_over);
                // Nothing handed over now: unless something handed over
                // earlier (by this run, a previous one, another replica) is
                // still in flight, nothing falls due by time, and the agent's
                // polls cost no look until its bell rings.
                if !handed_over && !in_flight {
                    bell.nothing_in_flight(asked_at);
                }
                if left_over {
                    // More than one response holds: the next poll looks again at once.
                    bell.ring();
                }
                found
            };
            found.trust = trust.take();
            if !found.is_empty() || tokio::time::Instant::now() >= deadline || *stopping.borrow() {
                self.seen(id, None);
                self.metrics.delivered(found.envelopes.len());
                return Ok(found);
            }
            // A redelivery may fall due while we wait: look again at least every 10 s.
            let nap = deadline.min(tokio::time::Instant::now() + Duration::from_secs(10));
            tokio::select! {
                _ = bell.rung() => {}
                _ = tokio::time::sleep_until(nap) => {}
                _ = stopping.changed() => {}
                _ = ready.changed() => {}
            }
        }
    }

    /// One look at the instance's work: what fits one poll response
    /// ([`limits::MAX_POLL_RESPONSE_BYTES`]) — its association set when the
    /// agent's is out of date, the cancellations due, and envelopes oldest
    /// first while they fit —, whether anything deliverable was left for
    /// the next poll, and whether anything handed over before may still
    /// fall due by time. One statement reads the work
    /// ([`tether_store::Store::work`]); the instance's tags and the
    /// associations are read only when the agent's set may be out of date.
    async fn look(
        &self,
        id: &str,
        bell: &Bell,
        association_gen: u64,
        held_digest: &str,
    ) -> Result<(Delivery, bool, bool), AgentError> {
        let mut budget = self.delivery_budget;
        let mut associations =
            if bell.associations_current(association_gen, held_digest, ASSOCIATION_CACHE_TTL) {
                None
            } else {
                // The association set depends on the instance's tags.
                let instance = self.authorize_agent(id).await?;
                let set = self
                    .association_set_if_changed(&instance, held_digest)
                    .await?;
                let digest = set.as_ref().map_or(held_digest, |s| s.digest.as_str());
                bell.associations_are(association_gen, digest);
                set
            };
        if let Some(set) = &associations {
            let bytes: usize = set.associations.iter().map(signed_bytes).sum();
            if bytes > budget {
                // The agent needs its set whole: it keeps the one it holds.
                tracing::error!(instance = %id, bytes, budget,
                    "the instance's association set is larger than one poll response can carry; \
                     it is not sent (delete or narrow associations that reach it)");
                associations = None;
                bell.associations_are(association_gen, held_digest);
            } else {
                budget -= bytes;
            }
        }
        let now = now_ms();
        let work = self
            .metrics
            .timed(
                Statement::Work,
                self.store
                    .work(id, now, REDELIVER_AFTER_MS, limits::MAX_ENVELOPES_PER_POLL),
            )
            .await?;
        let cancels = self.cancels(id, work.cancels, now).await?;
        budget = budget.saturating_sub(cancels.iter().map(signed_bytes).sum());
        let (envelopes, left_over) = self.envelopes(id, work.deliverable, now, budget).await?;
        let found = Delivery {
            envelopes,
            cancels,
            associations,
            trust: None,
        };
        Ok((found, left_over, work.in_flight))
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

    /// Envelopes of the invocations the instance may run now, oldest first
    /// while they fit `budget` bytes, each claimed (with its envelope kept for
    /// a redelivery) before it is handed over; and whether any deliverable
    /// one was left for the next poll. An envelope that could never fit one
    /// (a command stored before [`limits::MAX_ENVELOPE_BYTES`] held) ends
    /// its invocation Undeliverable instead of blocking the others.
    async fn envelopes(
        &self,
        instance_id: &str,
        due: Vec<(String, i64)>,
        now: i64,
        mut budget: usize,
    ) -> Result<(Vec<Signed>, bool), AgentError> {
        let mut out = Vec::new();
        let mut left_over = due.len() as i64 >= limits::MAX_ENVELOPES_PER_POLL;
        for (command_id, variable) in due {
            let bytes = signing::envelope_bytes(usize::try_from(variable).unwrap_or(usize::MAX));
            if bytes > limits::MAX_ENVELOPE_BYTES {
                self.undeliverable(&command_id, instance_id, bytes).await?;
                continue;
            }
            if bytes > budget {
                // In order: it goes first in the next poll's response.
                left_over = true;
                break;
            }
            let Some(cmd) = self.delivering(&command_id).await? else {
                continue; // pruned meanwhile
            };
            // MaxConcurrency: without a free slot it waits; a finishing
            // invocation rings the waiting instances.
            let secrets = match self.sealed_secrets(instance_id, &cmd).await? {
                Ok(secrets) => secrets,
                Err(why) => {
                    self.fail_delivery(&cmd.command_id, instance_id, Detail::Failed, why)
                        .await?;
                    continue;
                }
            };
            let envelope = signing::command(&self.pki, self.hook, instance_id, &cmd, secrets, now);
            let claim = WriteOp::Claim(Claim {
                command_id: cmd.command_id.clone(),
                instance_id: instance_id.to_string(),
                redeliver_after_ms: REDELIVER_AFTER_MS,
                unlimited: cmd.concurrency_limit >= cmd.target_count,
                payload: envelope.payload,
                signature: envelope.signature,
            });
            self.bells.get(instance_id).handing_over();
            if let (true, WriteOp::Claim(c)) = self.write(claim).await? {
                let signed = Signed {
                    payload: c.payload,
                    signature: c.signature,
                };
                budget = budget.saturating_sub(signed_bytes(&signed));
                out.push(signed);
            }
        }
        if out.is_empty()
            && self.hook == Some(EnvelopeHook::Replay)
            && let Some(cmd) = self.store.last_finished_command(instance_id).await?
            && let Some((payload, signature)) = self.store.last_envelope(&cmd, instance_id).await?
        {
            out.push(Signed { payload, signature });
        }
        Ok((out, left_over))
    }

    /// The command an envelope is made from, read once while it is being
    /// delivered (None: pruned meanwhile).
    async fn delivering(&self, command_id: &str) -> Result<Option<Arc<CommandRow>>, AgentError> {
        if let Some(cmd) = self.delivering.0.lock().get(command_id) {
            return Ok(Some(cmd.clone()));
        }
        let Some(cmd) = self
            .metrics
            .timed(Statement::Command, self.store.command(command_id))
            .await?
        else {
            return Ok(None);
        };
        let cmd = Arc::new(cmd);
        self.delivering
            .0
            .lock()
            .insert(command_id.to_string(), cmd.clone());
        Ok(Some(cmd))
    }

    /// Whether a command being delivered lets every invocation run at once
    /// (None: not in memory).
    pub(super) fn unlimited(&self, command_id: &str) -> Option<bool> {
        self.delivering
            .0
            .lock()
            .peek(command_id)
            .map(|c| c.concurrency_limit >= c.target_count)
    }

    /// Ends an invocation whose envelope can never be delivered (too large),
    /// saying so in its output.
    async fn undeliverable(
        &self,
        command_id: &str,
        instance_id: &str,
        bytes: usize,
    ) -> Result<(), AgentError> {
        let why = format!(
            "the command's envelope is {bytes} bytes; at most {} bytes can be delivered to a node \
             (the command was stored before that limit held)",
            limits::MAX_ENVELOPE_BYTES
        );
        self.fail_delivery(command_id, instance_id, Detail::Undeliverable, why)
            .await
    }

    /// Ends an invocation that cannot be handed to its node, with `detail`
    /// and the reason in its output.
    async fn fail_delivery(
        &self,
        command_id: &str,
        instance_id: &str,
        detail: Detail,
        why: String,
    ) -> Result<(), AgentError> {
        tracing::error!(command = %command_id, instance = %instance_id, "{why}");
        let now = now_ms();
        let result = InvocationResult {
            detail,
            response_code: -1,
            start_ms: None,
            end_ms: Some(now),
            plugins: vec![PluginResult {
                name: "tether:delivery".to_string(),
                detail,
                response_code: -1,
                start_ms: None,
                end_ms: Some(now),
                stdout: Vec::new(),
                stderr: why.into_bytes(),
                stdout_truncated: false,
                stderr_truncated: false,
            }],
        };
        self.store
            .finish_invocation(command_id, instance_id, &result, now)
            .await?;
        Ok(())
    }

    /// Signed cancellations of the commands `due` for this instance (resent
    /// until its agent reports the invocation, at most every
    /// [`REDELIVER_AFTER_MS`]), each noted as sent.
    async fn cancels(
        &self,
        instance_id: &str,
        due: Vec<String>,
        now: i64,
    ) -> Result<Vec<Signed>, AgentError> {
        let mut out = Vec::new();
        for command_id in due {
            let signed = signing::cancel(&self.pki, instance_id, &command_id, now);
            self.bells.get(instance_id).handing_over();
            self.store
                .mark_cancel_sent(&command_id, instance_id, now)
                .await?;
            out.push(signed);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tether_store::{CommandQuery, CommandRow, Store};

    use super::*;
    use crate::pki::Pki;

    fn command(id: &str, requested_ms: i64, parameters_bytes: usize) -> CommandRow {
        let params = format!(r#"{{"commands":["{}"]}}"#, "x".repeat(parameters_bytes));
        CommandRow {
            command_id: id.into(),
            document_name: "AWS-RunShellScript".into(),
            document_version: "1".into(),
            requested_document_version: String::new(),
            document_hash: "h".into(),
            document_content: "{}".into(),
            parameters_json: params.clone(),
            resolved_json: params,
            comment: String::new(),
            requested_ms,
            timeout_seconds: 600,
            max_concurrency: "50".into(),
            max_errors: "0".into(),
            concurrency_limit: 50,
            instance_ids_json: r#"["mi-1"]"#.into(),
            targets_json: "[]".into(),
            status: "Pending".into(),
            status_details: "Pending".into(),
            target_count: 1,
            completed_count: 0,
            error_count: 0,
            delivery_timed_out_count: 0,
            requested_by: String::new(),
            references_json: "[]".into(),
        }
    }

    /// A poll that does not wait: whatever one look finds.
    async fn poll_once(c: &Coordinator, instance: &InstanceRow) -> Delivery {
        let poll = Poll {
            wait: Some(Duration::ZERO),
            ..Poll::default()
        };
        c.poll(&instance.instance_id, poll).await.unwrap()
    }

    #[tokio::test]
    async fn a_poll_carries_what_fits_and_the_rest_comes_next() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["localhost".to_string()]).unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let mut c = Coordinator::new(store, Arc::new(pki));
        // Room for two envelopes of 100 KB per response.
        c.delivery_budget = 250_000;
        let now = now_ms();
        let target = [("mi-1".to_string(), String::new())];
        for n in 0..5 {
            let cmd = command(&format!("c{n}"), now + n, 100_000);
            c.store.insert_command(&cmd, &target).await.unwrap();
        }
        // Stored before envelopes were capped: it can never be delivered.
        let huge = command("huge", now - 1, limits::MAX_ENVELOPE_BYTES);
        c.store.insert_command(&huge, &target).await.unwrap();
        super::super::admission::tests::open_activation(&c).await;
        let instance = super::super::admission::tests::registered(&c, "mi-1").await;
        let mut delivered = Vec::new();
        for _ in 0..3 {
            let d = poll_once(&c, &instance).await;
            let bytes: usize = d.envelopes.iter().map(signed_bytes).sum();
            assert!(bytes <= c.delivery_budget, "{bytes} bytes in one response");
            delivered.push(d.envelopes.len());
        }
        assert_eq!(
            delivered,
            [2, 2, 1],
            "oldest first, what fits, the rest at once next"
        );
        assert!(poll_once(&c, &instance).await.envelopes.is_empty());
        let q = CommandQuery {
            command_id: Some("huge".into()),
            limit: 1,
            ..CommandQuery::default()
        };
        let (inv, _) = c.store.invocations(&q).await.unwrap().remove(0);
        assert_eq!(
            (inv.status.as_str(), inv.status_details.as_str()),
            ("Failed", "Undeliverable")
        );
        let why = c.store.plugins("huge", "mi-1").await.unwrap().remove(0);
        let why = String::from_utf8(why.stderr).unwrap();
        assert!(
            why.contains("at most 4194304 bytes can be delivered"),
            "{why}"
        );
    }
}
