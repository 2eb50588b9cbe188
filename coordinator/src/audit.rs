//! The audit trail: who did what, through which door, with what outcome —
//! append-only and tamper-evident, in one order across replicas.
//!
//! - What is recorded ([`Trail`], called from `actions::dispatch`): every
//!   request that changes something, every refused request, every allowed
//!   read, and agents' registrations; each with the time, the principal's
//!   ARN, the credential's ID (never its secret), the source address, the
//!   transport, the action (`ssm:SendCommand`, `iam:CreateUser`,
//!   `tether:…`), the request with its secrets redacted
//!   (`tether_ssm::redact`; members over 8 KiB as their size and SHA-256),
//!   the outcome (an error code, or the IDs the answer names) and the
//!   replica. One record per request, whatever it fans out to.
//! - When: a change is preceded by an **intent** record, appended before it
//!   is made; if that append fails (a full disk, the database gone) the
//!   change is refused with nothing done. Its **outcome** record follows
//!   before the answer is sent; if that append fails, the record waits in
//!   the background queue and is retried (the intent already stands in the
//!   trail, so nothing changed unrecorded). Refusals are appended before
//!   the refusal is answered. Allowed reads go to the background queue
//!   ([`Trail::run_flusher`]: batches of up to 512, at most 0.5 s late plus
//!   the append), and are never refused for want of their record.
//! - The chain (`chain.rs`): each record carries the SHA-256 of the one
//!   before over a canonical encoding; appends are serialised across
//!   replicas (`Store::append_audit`). The head is signed
//!   ([`Trail::run_signer`], one replica at a time, every 30 s by default,
//!   at most 60) with the Ed25519 key `audit.key` in the secrets directory,
//!   and the newest signed head is kept both in `audit_heads` and beside
//!   the key in `audit-head.json`. The signer first checks that the chain
//!   still extends the last signed head, so it never signs over a cut.
//! - Verification (`verify.rs`, `tether verify-audit-trail`) and reading
//!   (`lookup-events`, `event.rs`: CloudTrail's shapes).
//! - The mirror (`mirror.rs`): each record as one JSON line in `audit.log`.

pub mod chain;
pub mod event;
pub mod mirror;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tether_ssm::limits::{
    AUDIT_BATCH, AUDIT_FLUSH_INTERVAL, AUDIT_MEMBER_MAX_BYTES, AUDIT_QUEUE, AUDIT_REQUEST_MAX_BYTES,
};
use tether_ssm::{ApiError, Operation, Request};
use tether_store::{AuditRecord, Lead, Store, StoreError};
use tether_util::time::now_ms;
use tokio::sync::mpsc;

use crate::account::Account;

pub use chain::AuditKey;
pub use mirror::Mirror;

/// Whether a request's record is appended before its answer (and, for a
/// change, an intent before it is made). Changes are; reads are batched.
/// A read that hands out a secret (a decrypted parameter) belongs here too.
pub fn recorded_before_answer(request: &Request) -> bool {
    request.operation().changes_something() || decrypts(request)
}

/// Whether a read asks for SecureString values in clear (`WithDecryption`).
fn decrypts(request: &Request) -> bool {
    match request {
        Request::GetParameter(r) => r.with_decryption == Some(true),
        Request::GetParameters(r) => r.with_decryption == Some(true),
        Request::GetParametersByPath(r) => r.with_decryption == Some(true),
        Request::GetParameterHistory(r) => r.with_decryption == Some(true),
        _ => false,
    }
}

/// Who sent a request, as its credential says (the action layer fills it
/// from its `Caller`).
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    /// The user, or None for the root principal.
    pub user_name: Option<&'a str>,
    pub credential_id: Option<&'a str>,
    pub source: Option<std::net::IpAddr>,
    /// `grpc` or `https`.
    pub transport: &'static str,
}

/// One request as the trail will record it.
#[derive(Clone, Debug)]
pub struct Draft {
    pub request_id: String,
    pub time_ms: i64,
    pub principal_arn: String,
    pub user_name: String,
    pub credential_id: Option<String>,
    pub source: Option<String>,
    pub transport: &'static str,
    pub operation: String,
    pub action: String,
    pub event_source: String,
    pub read_only: bool,
    /// The ARNs the request names.
    pub resources: Vec<String>,
    /// The request's JSON body as received (redacted when recorded).
    pub body: Vec<u8>,
    /// IDs the answer names (`CommandId`, `AccessKeyId`, …).
    pub outcome: Value,
    pub error: Option<(String, String)>,
}

/// The event source CloudTrail would name for an action's service.
fn event_source(action: &str) -> String {
    let service = action.split(':').next().unwrap_or("tether");
    format!("{service}.amazonaws.com")
}

impl Draft {
    /// A draft of `operation` (typed or not) from `who`.
    pub fn new(
        account: &Account,
        who: &Who<'_>,
        operation: &str,
        action: String,
        read_only: bool,
        body: &[u8],
    ) -> Draft {
        let (principal_arn, user_name) = match who.user_name {
            Some(user_name) => (account.user_arn("/", user_name), user_name.to_string()),
            None => (account.root_arn(), "root".into()),
        };
        Draft {
            request_id: uuid::Uuid::new_v4().to_string(),
            time_ms: now_ms(),
            principal_arn,
            user_name,
            credential_id: who.credential_id.map(str::to_string),
            source: who.source.map(|s| s.to_string()),
            transport: who.transport,
            operation: operation.to_string(),
            event_source: event_source(&action),
            action,
            read_only,
            resources: Vec::new(),
            body: body.to_vec(),
            outcome: json!({}),
            error: None,
        }
    }

    /// A draft of a typed request.
    pub fn of(account: &Account, who: &Who<'_>, op: Operation, body: &[u8]) -> Draft {
        Draft::new(
            account,
            who,
            op.name(),
            op.action(),
            !op.changes_something(),
            body,
        )
    }

    /// A request refused before it had a principal (no credential, an
    /// unknown one, a bad signature): `anonymous`, with the credential ID it
    /// claimed, if any (bounded: outside input).
    pub fn unauthenticated(
        transport: &'static str,
        source: Option<std::net::IpAddr>,
        credential_id: Option<&str>,
        why: &str,
    ) -> Draft {
        Draft {
            request_id: uuid::Uuid::new_v4().to_string(),
            time_ms: now_ms(),
            principal_arn: "anonymous".into(),
            user_name: "anonymous".into(),
            credential_id: credential_id.map(|c| c.chars().take(128).collect()),
            source: source.map(|s| s.to_string()),
            transport,
            operation: "Authenticate".into(),
            action: "tether:Authenticate".into(),
            event_source: "tether.amazonaws.com".into(),
            read_only: true,
            resources: Vec::new(),
            body: Vec::new(),
            outcome: json!({}),
            error: Some((
                "UnrecognizedClientException".into(),
                why.chars().take(1024).collect(),
            )),
        }
    }

    /// An agent's registration with `activation_id` from `source`, as
    /// `instance_id` (`ssm:RegisterManagedInstance`; the code is never
    /// recorded).
    pub fn registration(
        account: &Account,
        source: Option<std::net::IpAddr>,
        activation_id: &str,
        instance_id: Option<&str>,
        name: &str,
    ) -> Draft {
        // Outside input: bounded before it is recorded.
        let activation_id: String = activation_id.chars().take(128).collect();
        let activation_id = activation_id.as_str();
        let name: String = name.chars().take(256).collect();
        let body = json!({"ActivationId": activation_id, "Name": name});
        Draft {
            request_id: uuid::Uuid::new_v4().to_string(),
            time_ms: now_ms(),
            principal_arn: account.ssm_arn("activation", activation_id),
            user_name: "tether-agent".into(),
            credential_id: Some(activation_id.to_string()),
            source: source.map(|s| s.to_string()),
            transport: "grpc",
            operation: "RegisterManagedInstance".into(),
            action: "ssm:RegisterManagedInstance".into(),
            event_source: "ssm.amazonaws.com".into(),
            read_only: false,
            resources: instance_id
                .map(|i| account.instance_arn(i))
                .into_iter()
                .collect(),
            body: body.to_string().into_bytes(),
            outcome: match instance_id {
                Some(i) => json!({"InstanceId": i}),
                None => json!({}),
            },
            error: None,
        }
    }

    /// The principal's ARN as its authority says (a user's with its path).
    pub fn principal(&mut self, arn: &str) {
        self.principal_arn = arn.to_string();
    }

    /// Sets the outcome from an answer or an error.
    pub fn outcome(&mut self, outcome: &Result<Value, ApiError>) {
        match outcome {
            Ok(answer) if !self.read_only => self.outcome = ids_of(answer),
            Ok(_) => {}
            Err(e) => self.error = Some((e.kind.to_string(), e.message.clone())),
        }
    }

    /// The record of this draft, of `kind`, as `replica` appends it.
    pub fn record(&self, kind: &str, replica: &str) -> AuditRecord {
        let resources: Vec<Value> = self
            .resources
            .iter()
            .filter(|a| a.starts_with("arn:"))
            .map(|a| json!({"ResourceType": resource_type(a), "ResourceName": a}))
            .collect();
        let (error_code, error_message) = match &self.error {
            Some((c, m)) => (Some(c.clone()), Some(m.clone())),
            None => (None, None),
        };
        AuditRecord {
            seq: 0,
            event_id: uuid::Uuid::new_v4().to_string(),
            request_id: self.request_id.clone(),
            time_ms: if kind == "outcome" {
                now_ms()
            } else {
                self.time_ms
            },
            kind: kind.to_string(),
            principal_arn: self.principal_arn.clone(),
            user_name: self.user_name.clone(),
            credential_id: self.credential_id.clone(),
            source: self.source.clone(),
            transport: self.transport.to_string(),
            action: self.action.clone(),
            event_name: self.operation.clone(),
            event_source: self.event_source.clone(),
            read_only: self.read_only,
            resources_json: Value::Array(resources).to_string(),
            request_json: request_json(&self.operation, &self.body).to_string(),
            outcome_json: self.outcome.to_string(),
            error_code,
            error_message,
            replica: replica.to_string(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
}

/// CloudTrail's resource type for an ARN (`AWS::SSM::ManagedInstance`).
pub fn resource_type(arn: &str) -> String {
    let mut parts = arn.splitn(6, ':');
    let service = parts.nth(2).unwrap_or("");
    let rest = parts.nth(2).unwrap_or("");
    let kind = rest.split('/').next().unwrap_or(rest);
    let pascal: String = kind
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect();
    let service = match service {
        "ssm" | "iam" | "ec2" | "kms" => service.to_ascii_uppercase(),
        s => {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
    };
    format!("AWS::{service}::{pascal}")
}

/// The request body as recorded: redacted, each member over
/// [`AUDIT_MEMBER_MAX_BYTES`] replaced by its size and SHA-256 (and the
/// whole so if it is still over [`AUDIT_REQUEST_MAX_BYTES`]). A body that
/// is not JSON (it was refused for that) is recorded by size and hash.
pub fn request_json(operation: &str, body: &[u8]) -> Value {
    let digest = |b: &[u8]| hex::encode(Sha256::digest(b));
    if body.iter().all(u8::is_ascii_whitespace) {
        return json!({});
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return json!({"TetherUnparsedBody": {"Bytes": body.len(), "Sha256": digest(body)}});
    };
    let redacted = tether_ssm::redact::request(operation, &parsed);
    let Value::Object(members) = redacted else {
        return redacted;
    };
    let capped: Map<String, Value> = members
        .into_iter()
        .map(|(k, v)| {
            let text = v.to_string();
            if text.len() > AUDIT_MEMBER_MAX_BYTES {
                (k, json!({"TetherOmitted": {"Bytes": text.len(), "Sha256": digest(text.as_bytes())}}))
            } else {
                (k, v)
            }
        })
        .collect();
    let capped = Value::Object(capped);
    let text = capped.to_string();
    if text.len() > AUDIT_REQUEST_MAX_BYTES {
        return json!({"TetherOmitted": {"Bytes": text.len(), "Sha256": digest(text.as_bytes())}});
    }
    capped
}

/// The IDs an answer names: string members whose names end in `Id`, at the
/// top and one object down (`Command.CommandId`, `AccessKey.AccessKeyId`).
/// Secrets are never among them (redacted first all the same).
pub fn ids_of(answer: &Value) -> Value {
    let answer = tether_ssm::redact::value(answer, None);
    let mut out = Map::new();
    let mut take = |obj: &Map<String, Value>| {
        for (k, v) in obj {
            if k.ends_with("Id")
                && let Value::String(s) = v
            {
                out.insert(k.clone(), Value::String(s.clone()));
            }
        }
    };
    if let Value::Object(top) = &answer {
        take(top);
        for v in top.values() {
            if let Value::Object(inner) = v {
                take(inner);
            }
        }
    }
    Value::Object(out)
}

/// A record waiting for the background appender.
type Pending = (Draft, &'static str);

/// The trail as one replica writes it.
pub struct Trail {
    store: Store,
    replica: String,
    account: Account,
    key: Option<AuditKey>,
    mirror: Option<Mirror>,
    queue: mpsc::Sender<Pending>,
    receiver: parking_lot::Mutex<Option<mpsc::Receiver<Pending>>>,
    stop: tokio::sync::Notify,
    /// Records appended by this replica, and reads' records dropped (metrics).
    written: std::sync::atomic::AtomicU64,
    dropped: std::sync::atomic::AtomicU64,
    /// When each (principal, source) last had a successful `/metrics`
    /// scrape recorded (see [`Trail::scrape_to_record`]).
    scrapes: parking_lot::Mutex<std::collections::HashMap<String, i64>>,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail")
            .field("replica", &self.replica)
            .field("key", &self.key.is_some())
            .field("mirror", &self.mirror)
            .finish_non_exhaustive()
    }
}

/// Why a change was refused for want of its intent record.
fn unrecorded(e: &StoreError) -> ApiError {
    tracing::error!(error = %e, "the audit trail cannot be written: refusing the change");
    ApiError::new(
        "InternalServerError",
        format!("the audit trail cannot be written, so nothing was changed: {e}"),
    )
}

impl Trail {
    /// A trail on `store`, without a key (heads are not signed) or a mirror.
    pub fn new(store: Store, account: Account, replica: String) -> Trail {
        let (queue, receiver) = mpsc::channel(AUDIT_QUEUE);
        Trail {
            store,
            replica,
            account,
            key: None,
            mirror: None,
            queue,
            receiver: parking_lot::Mutex::new(Some(receiver)),
            stop: tokio::sync::Notify::new(),
            written: Default::default(),
            dropped: Default::default(),
            scrapes: Default::default(),
        }
    }

    /// Whether a successful `/metrics` scrape of this principal from this
    /// source is recorded: the first, then one an hour
    /// ([`limits::METRICS_SCRAPE_RECORD_EVERY`]) — a scraper every 15 s would
    /// otherwise write 5,760 records a day that say nothing new. Refusals
    /// are always recorded (they never come here). At most
    /// [`limits::METRICS_SCRAPE_RECORD_KEYS`] scrapers are remembered; past
    /// that the oldest is forgotten (its next scrape is recorded).
    pub fn scrape_to_record(
        &self,
        principal: &str,
        source: Option<std::net::IpAddr>,
        now_ms: i64,
    ) -> bool {
        let key = format!(
            "{principal} {}",
            source.map(|s| s.to_string()).unwrap_or_default()
        );
        let every = tether_ssm::limits::METRICS_SCRAPE_RECORD_EVERY.as_millis() as i64;
        let mut seen = self.scrapes.lock();
        if let Some(last) = seen.get(&key)
            && now_ms - *last < every
        {
            return false;
        }
        if seen.len() >= tether_ssm::limits::METRICS_SCRAPE_RECORD_KEYS
            && !seen.contains_key(&key)
            && let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
        {
            seen.remove(&oldest);
        }
        seen.insert(key, now_ms);
        true
    }

    pub fn with_key(mut self, key: AuditKey) -> Trail {
        self.key = Some(key);
        self
    }

    pub fn with_mirror(mut self, mirror: Option<Mirror>) -> Trail {
        self.mirror = mirror;
        self
    }

    pub fn account(&self) -> &Account {
        &self.account
    }

    pub fn key(&self) -> Option<&AuditKey> {
        self.key.as_ref()
    }

    /// Appends records now (and mirrors them).
    async fn append(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        let stored = self.store.append_audit(records, &chain::hash).await?;
        self.mirrored(&stored);
        Ok(())
    }

    /// Records this replica appended to the chain since it started.
    pub fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records of reads dropped because the background queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes records appended to the chain to the mirror, if there is one
    /// (and counts them).
    fn mirrored(&self, stored: &[AuditRecord]) {
        self.written
            .fetch_add(stored.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(m) = &self.mirror {
            let lines: Vec<Value> = stored
                .iter()
                .map(|r| event::cloudtrail_event(r, &self.account))
                .collect();
            m.write(&lines);
        }
    }

    /// A change written with its own records (SendCommand): `write` stores
    /// the change and appends `intent`'s intent record and `outcome`'s
    /// outcome record to the chain in one transaction (`Ok(Err)`: the
    /// records could not be appended, so nothing was stored — refused as
    /// [`Trail::intent`] refuses). Two lock turns fewer than an intent
    /// before and an outcome after.
    pub async fn with_change<F, Fut>(
        &self,
        intent: &Draft,
        outcome: &Draft,
        write: F,
    ) -> Result<(), ApiError>
    where
        F: FnOnce(Vec<AuditRecord>, &'static tether_store::Seal) -> Fut,
        Fut: std::future::Future<Output = Result<Result<Vec<AuditRecord>, StoreError>, StoreError>>,
    {
        let records = vec![
            intent.record("intent", &self.replica),
            outcome.record("outcome", &self.replica),
        ];
        match write(records, &chain::hash).await? {
            Ok(stored) => {
                self.mirrored(&stored);
                Ok(())
            }
            Err(e) => Err(unrecorded(&e)),
        }
    }

    /// The intent of a change, appended before it is made: a refusal when
    /// it cannot be.
    pub async fn intent(&self, draft: &Draft) -> Result<(), ApiError> {
        self.required(draft, "intent").await
    }

    /// A record of `kind` that must be appended before going on: a refusal
    /// when it cannot be.
    pub async fn required(&self, draft: &Draft, kind: &str) -> Result<(), ApiError> {
        self.append(vec![draft.record(kind, &self.replica)])
            .await
            .map_err(|e| unrecorded(&e))
    }

    /// A record appended before the answer; if it cannot be, it waits in the
    /// background queue (the answer is not held back: for a change its
    /// intent stands in the trail; a refusal is refused all the same).
    pub async fn now(&self, draft: Draft, kind: &'static str) {
        if let Err(e) = self.append(vec![draft.record(kind, &self.replica)]).await {
            tracing::error!(error = %e, kind, operation = %draft.operation, "cannot append an audit record now; it is queued");
            self.later(draft, kind);
        }
    }

    /// An intent and its outcome appended together, before the answer, for
    /// a change that stored nothing (queued, as [`Trail::now`], if they
    /// cannot be).
    pub async fn now_both(&self, intent: &Draft, outcome: Draft) {
        let records = vec![
            intent.record("intent", &self.replica),
            outcome.record("outcome", &self.replica),
        ];
        if let Err(e) = self.append(records).await {
            tracing::error!(error = %e, operation = %outcome.operation, "cannot append audit records now; they are queued");
            self.later(intent.clone(), "intent");
            self.later(outcome, "outcome");
        }
    }

    /// A record for the background appender (never blocks; a full queue
    /// drops it, logged).
    pub fn later(&self, draft: Draft, kind: &'static str) {
        if let Err(e) = self.queue.try_send((draft, kind)) {
            let (d, _) = match &e {
                mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p) => p,
            };
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(operation = %d.operation, principal = %d.principal_arn, "audit queue full: a read's record is dropped");
        }
    }

    /// Appends queued records in batches until stopped (then flushes what
    /// is left). Spawned once by `tether serve`.
    pub async fn run_flusher(self: Arc<Self>) {
        let Some(mut rx) = self.receiver.lock().take() else {
            return;
        };
        let mut held: Vec<AuditRecord> = Vec::new();
        let mut stopping = false;
        loop {
            if held.is_empty() && !stopping {
                tokio::select! {
                    p = rx.recv() => match p {
                        Some((d, kind)) => held.push(d.record(kind, &self.replica)),
                        None => stopping = true,
                    },
                    () = self.stop.notified() => stopping = true,
                }
            }
            let deadline = tokio::time::Instant::now() + AUDIT_FLUSH_INTERVAL;
            while held.len() < AUDIT_BATCH {
                if stopping {
                    match rx.try_recv() {
                        Ok((d, kind)) => held.push(d.record(kind, &self.replica)),
                        Err(_) => break,
                    }
                    continue;
                }
                tokio::select! {
                    p = rx.recv() => match p {
                        Some((d, kind)) => held.push(d.record(kind, &self.replica)),
                        None => { stopping = true; }
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                    () = self.stop.notified() => stopping = true,
                }
            }
            if held.is_empty() {
                if stopping {
                    return;
                }
                continue;
            }
            match self.append(held.clone()).await {
                Ok(()) => held.clear(),
                Err(e) => {
                    tracing::error!(error = %e, records = held.len(), "cannot append audit records; retrying");
                    if held.len() > AUDIT_QUEUE {
                        let drop = held.len() - AUDIT_QUEUE;
                        held.drain(..drop);
                        tracing::error!(
                            dropped = drop,
                            "audit records dropped: the database refused them too long"
                        );
                    }
                    if stopping {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Stops the flusher after it appended what is queued.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    /// Signs the chain head every `interval` on the replica that leads the
    /// work. Spawned once by `tether serve` when there is a key.
    pub async fn run_signer(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.store.lead(Lead::AuditSign).await {
                Ok(true) => {
                    if let Err(e) = self.sign_head().await {
                        tracing::error!(error = %e, "cannot sign the audit trail's head");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot tell who signs the audit trail"),
            }
        }
    }

    /// Signs the current head if it moved since the last signed one and the
    /// chain still extends that one (never over a cut or a rewrite).
    pub async fn sign_head(&self) -> anyhow::Result<Option<tether_store::AuditHead>> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let Some((seq, hash)) = self.store.audit_chain_head().await? else {
            return Ok(None);
        };
        let last = match verify::newest_head(&self.store, key).await? {
            Ok(h) => h,
            Err(f) => anyhow::bail!("not signing: {f}"),
        };
        let (from_seq, from_hash) = match &last {
            Some(h) if h.seq == seq && h.hash == hash => return Ok(None),
            Some(h) => (h.seq, h.hash.clone()),
            None => (0, tether_store::GENESIS_HASH.to_string()),
        };
        if from_seq > 0 {
            // The signed record must still be there, unchanged.
            let at = self.store.audit_records_after(from_seq - 1, 1).await?;
            if at
                .first()
                .is_none_or(|r| r.seq != from_seq || r.hash != from_hash)
            {
                anyhow::bail!(
                    "not signing: audit record {from_seq}, covered by the last signed head, is missing or changed (run tether verify-audit-trail)"
                );
            }
        }
        match verify::walk(&self.store, from_seq, &from_hash, Some(seq)).await? {
            Ok(w) if w.seq == seq && w.hash == hash => {}
            Ok(w) => anyhow::bail!(
                "not signing: the chain walked from the last signed head ends at {} (head {seq})",
                w.seq
            ),
            Err(f) => anyhow::bail!("not signing: {f}"),
        }
        let head = key.sign(seq, &hash, now_ms(), &self.replica);
        self.store.insert_audit_head(&head).await?;
        key.write_head(&head)?;
        tracing::debug!(seq, "audit trail head signed");
        Ok(Some(head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_types_follow_cloudtrail() {
        assert_eq!(
            resource_type("arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-0123"),
            "AWS::SSM::ManagedInstance"
        );
        assert_eq!(
            resource_type("arn:aws:ssm:us-east-1:123456789012:document/AWS-RunShellScript"),
            "AWS::SSM::Document"
        );
        assert_eq!(
            resource_type("arn:aws:iam::123456789012:user/alice"),
            "AWS::IAM::User"
        );
    }

    #[test]
    fn requests_are_recorded_redacted_and_capped() {
        let body = serde_json::to_vec(&json!({
            "UserName": "alice",
            "Content": "x".repeat(AUDIT_MEMBER_MAX_BYTES + 1),
            "SecretAccessKey": "s3cr3t",
        }))
        .unwrap();
        let r = request_json("CreateUser", &body);
        assert_eq!(r["UserName"], "alice");
        assert_eq!(r["SecretAccessKey"], tether_ssm::redact::REDACTED);
        assert_eq!(
            r["Content"]["TetherOmitted"]["Bytes"],
            AUDIT_MEMBER_MAX_BYTES + 3
        );
        assert_eq!(request_json("ListUsers", b""), json!({}));
        assert!(
            request_json("ListUsers", b"{nope")
                .get("TetherUnparsedBody")
                .is_some()
        );
    }

    #[test]
    fn decrypting_reads_are_recorded_before_their_answer() {
        let req = |op: &str, body: &str| {
            Request::from_json(tether_ssm::Operation::named(op).unwrap(), body.as_bytes()).unwrap()
        };
        assert!(recorded_before_answer(&req(
            "PutParameter",
            r#"{"Name":"/a","Value":"v","Type":"String"}"#
        )));
        assert!(recorded_before_answer(&req(
            "GetParameter",
            r#"{"Name":"/a","WithDecryption":true}"#
        )));
        assert!(recorded_before_answer(&req(
            "GetParameters",
            r#"{"Names":["/a"],"WithDecryption":true}"#
        )));
        assert!(recorded_before_answer(&req(
            "GetParametersByPath",
            r#"{"Path":"/","WithDecryption":true}"#
        )));
        assert!(recorded_before_answer(&req(
            "GetParameterHistory",
            r#"{"Name":"/a","WithDecryption":true}"#
        )));
        assert!(!recorded_before_answer(&req(
            "GetParameter",
            r#"{"Name":"/a"}"#
        )));
        assert!(!recorded_before_answer(&req(
            "GetParameter",
            r#"{"Name":"/a","WithDecryption":false}"#
        )));
        assert!(!recorded_before_answer(&req("ListCommands", "{}")));
    }

    #[test]
    fn outcomes_name_ids_never_secrets() {
        let ids = ids_of(&json!({
            "AccessKey": {"AccessKeyId": "TKIA1", "SecretAccessKey": "s", "UserName": "a"},
            "ActivationId": "act", "ActivationCode": "code",
            "Command": {"CommandId": "c1", "InstanceIds": ["mi-1"]},
        }));
        assert_eq!(
            ids,
            json!({"AccessKeyId": "TKIA1", "ActivationId": "act", "CommandId": "c1"})
        );
    }

    /// A scraper's successful scrapes: the first of each hour per
    /// principal and source; the oldest scraper forgotten past the cap.
    #[tokio::test]
    async fn scrapes_are_recorded_once_an_hour_per_principal_and_source() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let trail = Trail::new(store, Account::default(), "r1".into());
        let ip = |n: u8| Some(std::net::IpAddr::from([10, 0, 0, n]));
        let hour = tether_ssm::limits::METRICS_SCRAPE_RECORD_EVERY.as_millis() as i64;
        assert!(trail.scrape_to_record("arn:root", ip(1), 0));
        for at in [15_000, 30_000, hour - 1] {
            assert!(!trail.scrape_to_record("arn:root", ip(1), at), "{at}");
        }
        assert!(
            trail.scrape_to_record("arn:root", ip(2), 15_000),
            "another source"
        );
        assert!(
            trail.scrape_to_record("arn:user/w", ip(1), 15_000),
            "another principal"
        );
        assert!(
            trail.scrape_to_record("arn:root", ip(1), hour),
            "an hour on"
        );
        assert!(!trail.scrape_to_record("arn:root", ip(1), hour + 15_000));
        for n in 0..tether_ssm::limits::METRICS_SCRAPE_RECORD_KEYS {
            trail.scrape_to_record(&format!("arn:user/{n}"), None, hour + 20_000);
        }
        assert!(
            trail.scrapes.lock().len() <= tether_ssm::limits::METRICS_SCRAPE_RECORD_KEYS,
            "bounded"
        );
    }

    /// The trail on a real SQLite store: intents and outcomes chained, a
    /// head signed once (and not again until it moves), verification, and
    /// queued reads appended by the flusher before it stops.
    #[tokio::test]
    async fn records_chain_heads_sign_and_reads_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let account = Account::default();
        let trail = Arc::new(
            Trail::new(store.clone(), account.clone(), "r1".into())
                .with_key(AuditKey::load_or_create(dir.path()).unwrap()),
        );
        let caller = Who {
            user_name: None,
            credential_id: None,
            source: Some("127.0.0.1".parse().unwrap()),
            transport: "grpc",
        };
        for i in 0..3 {
            let body = format!(r#"{{"UserName":"u{i}"}}"#);
            let mut d = Draft::of(&account, &caller, Operation::CreateUser, body.as_bytes());
            trail.intent(&d).await.unwrap();
            d.outcome(&Ok(
                json!({"User": {"UserId": format!("id{i}"), "UserName": format!("u{i}")}}),
            ));
            trail.now(d, "outcome").await;
        }
        let head = trail.sign_head().await.unwrap().expect("a head is signed");
        assert_eq!(head.seq, 6);
        assert!(trail.key().unwrap().verifies(&head));
        assert!(
            trail.sign_head().await.unwrap().is_none(),
            "nothing new to sign"
        );
        let v = verify::verify(&store, trail.key()).await.unwrap().unwrap();
        assert_eq!(v.records, 6);
        assert_eq!(v.signed.map(|h| h.seq), Some(6));
        let rows = store.audit_records_after(0, 10).await.unwrap();
        assert_eq!(rows[1].kind, "outcome");
        assert_eq!(rows[1].request_id, rows[0].request_id);
        assert_eq!(rows[1].outcome_json, r#"{"UserId":"id0"}"#);
        assert_eq!(rows[0].principal_arn, account.root_arn());
        assert_eq!(rows[0].action, "iam:CreateUser");
        assert_eq!(rows[0].event_source, "iam.amazonaws.com");

        let flusher = tokio::spawn(trail.clone().run_flusher());
        trail.later(
            Draft::of(&account, &caller, Operation::ListUsers, b""),
            "read",
        );
        trail.stop();
        flusher.await.unwrap();
        let (seq, _) = store.audit_chain_head().await.unwrap().unwrap();
        assert_eq!(
            seq, 7,
            "the queued read was appended before the flusher stopped"
        );
        let v = verify::verify(&store, trail.key()).await.unwrap().unwrap();
        assert_eq!(v.records, 7);
    }
}
