//! The AWS SSM bridge: instances that real AWS SSM manages (EC2 or hybrid) in
//! the configured accounts take part in Tether's commands beside its own agents.
//!
//! - **Instances**: every `refresh_seconds`, each account's
//!   DescribeInstanceInformation (and, for `mi-` instances, their tags) is
//!   stored in `aws_instances`; the store's `all_instances` and `any_instance`
//!   hand them to the action layer with their AWS facts, so describe-instance-information
//!   lists them (ResourceType, PingStatus, `Source: aws:<account>`) and
//!   send-command targets them by ID or tag like any instance.
//! - **Commands**: SendCommand creates our invocations as for any instance. The
//!   bridge loop picks up the Pending ones on bridged instances, claims them
//!   through the same atomic `claim_delivery` (so MaxConcurrency holds across
//!   both kinds), sends them with AWS SendCommand in batches of 50 per account,
//!   marks them InProgress and polls GetCommandInvocation until each is
//!   terminal, storing status, exit code and output under *our* command ID.
//! - **Cancelling**: cancel-command marks our invocations Cancelling as for an
//!   agent; the bridge passes that on with AWS CancelCommand and keeps polling
//!   until AWS reports the invocation's end (Cancelled, or whatever it reached).
//! - **Documents**: an `AWS-*` document is AWS's own; any other is created in
//!   the account on first use (same name, content, format) and sent with its
//!   SHA-256, so AWS runs exactly what Tether stored; an AWS document of the
//!   same name with other content is refused, never overwritten.
//! - **Errors** never crash or hang the loop: throttling backs off and retries;
//!   a refusal (auth, invalid instance, unknown document) ends the affected
//!   invocations as Undeliverable with the AWS error code and message in their
//!   StandardErrorContent; polls failing 10 times in a row end them as Failed.
//!
//! The AWS SDK (aws-sdk-ssm, rustls on ring) lives only here and in the tests:
//! never in the agent.

pub mod config;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_ssm::config::{BehaviorVersion, Region};
use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use serde_json::json;
use tracing::{debug, info, warn};

pub use config::{AccountConfig, BridgeConfig};
use tether_ssm::limits;
use tether_ssm::state::Detail;
use tether_store::{
    AwsInstanceRow, AwsInvocationRow, Claim, InvocationResult, Lead, PluginResult, Store,
    StoreError,
};
use tether_util::now_ms;

/// One configured account with its SDK client.
struct Account {
    cfg: AccountConfig,
    client: aws_sdk_ssm::Client,
    /// No SendCommand before this time (backoff after throttling).
    send_after_ms: i64,
    send_throttled: u32,
}

/// The HTTPS client the SDK uses: rustls on ring, the platform's roots plus
/// an optional extra CA (for an endpoint_url with a private CA).
fn http_client(
    extra_ca_pem: Option<Vec<u8>>,
) -> Result<aws_sdk_ssm::config::SharedHttpClient, String> {
    let mut trust = TrustStore::empty().with_native_roots(true);
    if let Some(pem) = extra_ca_pem {
        trust = trust.with_pem_certificate(pem);
    }
    let ctx = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| format!("TLS settings: {e}"))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(ctx)
        .build_https())
}

/// An SDK client for `cfg`, with credentials from the standard chain (or the
/// named profile).
async fn client(cfg: &AccountConfig) -> Result<aws_sdk_ssm::Client, String> {
    let ca = match &cfg.ca_bundle {
        Some(p) => Some(std::fs::read(p).map_err(|e| format!("ca_bundle {}: {e}", p.display()))?),
        None => None,
    };
    let http = http_client(ca)?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(cfg.region.clone()))
        .http_client(http);
    if let Some(p) = &cfg.profile {
        loader = loader.profile_name(p);
    }
    let shared = loader.load().await;
    let mut b = aws_sdk_ssm::config::Builder::from(&shared);
    if let Some(u) = &cfg.endpoint_url {
        b = b.endpoint_url(u);
    }
    Ok(aws_sdk_ssm::Client::from_conf(b.build()))
}

/// The AWS SSM calls the bridge makes, as its metrics name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    DescribeInstanceInformation,
    ListTagsForResource,
    DescribeDocument,
    CreateDocument,
    SendCommand,
    CancelCommand,
    GetCommandInvocation,
}

impl Call {
    pub const ALL: [Call; 7] = [
        Call::DescribeInstanceInformation,
        Call::ListTagsForResource,
        Call::DescribeDocument,
        Call::CreateDocument,
        Call::SendCommand,
        Call::CancelCommand,
        Call::GetCommandInvocation,
    ];

    /// The AWS operation's name.
    pub fn name(self) -> &'static str {
        match self {
            Call::DescribeInstanceInformation => "DescribeInstanceInformation",
            Call::ListTagsForResource => "ListTagsForResource",
            Call::DescribeDocument => "DescribeDocument",
            Call::CreateDocument => "CreateDocument",
            Call::SendCommand => "SendCommand",
            Call::CancelCommand => "CancelCommand",
            Call::GetCommandInvocation => "GetCommandInvocation",
        }
    }
}

/// Calls made and calls AWS throttled, per [`Call`] (in its order), since
/// the process started: atomics, read by the coordinator's metrics.
static CALLS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];
static THROTTLED: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

/// Each call with how often it was made and how often AWS throttled it.
pub fn call_counts() -> Vec<(Call, u64, u64)> {
    Call::ALL
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                *c,
                CALLS[i].load(Ordering::Relaxed),
                THROTTLED[i].load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// Counts one call and, when AWS throttled it, its throttling.
fn counted<T, E: ProvideErrorMetadata, R>(call: Call, result: &Result<T, SdkError<E, R>>) {
    let i = Call::ALL.iter().position(|c| *c == call).unwrap_or(0);
    CALLS[i].fetch_add(1, Ordering::Relaxed);
    if let Err(e) = result
        && is_throttling(e.code())
    {
        THROTTLED[i].fetch_add(1, Ordering::Relaxed);
    }
}

fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ThrottlingException"
                | "Throttling"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
                | "RequestThrottledException"
        )
    )
}

/// Exponential backoff after `attempt` refusals in a row: 1 s, 2 s, 4 s ...
/// up to the ceiling (backon's schedule, without jitter: one account's
/// calls are already spread by the tick).
fn backoff_ms(attempt: u32) -> i64 {
    use backon::BackoffBuilder as _;
    let max = std::time::Duration::from_millis(limits::BRIDGE_MAX_BACKOFF_MS as u64);
    backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_secs(1))
        .with_max_delay(max)
        .without_max_times()
        .build()
        .nth(attempt.min(32) as usize)
        .unwrap_or(max)
        .as_millis() as i64
}

fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(e).to_string(),
    }
}

/// Runs the bridge until the task is dropped.
pub async fn run(store: Store, cfg: BridgeConfig) {
    let mut accounts: HashMap<String, Account> = HashMap::new();
    for a in &cfg.accounts {
        match client(a).await {
            Ok(client) => {
                info!(account = %a.name, region = %a.region, "AWS bridge account ready");
                accounts.insert(
                    a.name.clone(),
                    Account {
                        cfg: a.clone(),
                        client,
                        send_after_ms: 0,
                        send_throttled: 0,
                    },
                );
            }
            Err(e) => warn!(account = %a.name, error = %e, "AWS bridge account disabled"),
        }
    }
    let refresh_ms = cfg.refresh_seconds as i64 * 1000;
    let mut next_refresh: HashMap<String, i64> = HashMap::new();
    let mut tick = tokio::time::interval(limits::BRIDGE_TICK);
    loop {
        tick.tick().await;
        // Replicas on one database: one of them talks to AWS.
        match store.lead(Lead::Bridge).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                warn!(error = %e, "cannot tell whether this replica runs the AWS bridge");
                continue;
            }
        }
        let now = now_ms();
        for (name, acc) in &accounts {
            if next_refresh.get(name).is_none_or(|t| *t <= now) {
                let ok = refresh_instances(&store, acc).await;
                let wait = if ok {
                    refresh_ms
                } else {
                    refresh_ms.min(10_000)
                };
                next_refresh.insert(name.clone(), now_ms() + wait);
            }
        }
        if let Err(e) = send_pending(&store, &mut accounts).await {
            warn!(error = %e, "AWS bridge: sending pending invocations failed");
        }
        if let Err(e) = send_cancels(&store, &accounts).await {
            warn!(error = %e, "AWS bridge: passing on cancellations failed");
        }
        if let Err(e) = poll_running(&store, &accounts).await {
            warn!(error = %e, "AWS bridge: polling AWS invocations failed");
        }
    }
}

/// Re-describes one account's instances; false when AWS could not be read
/// (the previous picture is kept).
async fn refresh_instances(store: &Store, acc: &Account) -> bool {
    let now = now_ms();
    let described = describe_instances(acc, now).await;
    if described.is_none() && acc.cfg.instance_ids.is_empty() {
        return false;
    }
    let mut rows = described.unwrap_or_default();
    for id in &acc.cfg.instance_ids {
        if !rows.iter().any(|r| &r.instance_id == id) {
            // Configured but not described: targetable, its state unknown to us.
            rows.push(AwsInstanceRow {
                instance_id: id.clone(),
                account: acc.cfg.name.clone(),
                resource_type: if id.starts_with("mi-") {
                    "ManagedInstance"
                } else {
                    "EC2Instance"
                }
                .to_string(),
                ping_status: "Inactive".to_string(),
                tags_json: "[]".to_string(),
                seen_ms: now,
                ..AwsInstanceRow::default()
            });
        }
    }
    tag_instances(acc, &mut rows).await;
    let count = rows.len();
    match store.replace_aws_instances(&acc.cfg.name, &rows).await {
        Ok(()) => {
            debug!(account = %acc.cfg.name, count, "AWS instances refreshed");
            true
        }
        Err(e) => {
            warn!(account = %acc.cfg.name, error = %e, "storing AWS instances failed");
            false
        }
    }
}

/// Every instance AWS SSM lists for the account; `None` when it cannot be read.
async fn describe_instances(acc: &Account, now: i64) -> Option<Vec<AwsInstanceRow>> {
    let mut rows = Vec::new();
    let mut pages = acc
        .client
        .describe_instance_information()
        .into_paginator()
        .items()
        .send();
    CALLS[0].fetch_add(1, Ordering::Relaxed);
    while let Some(item) = pages.next().await {
        if let Err(e) = &item
            && is_throttling(e.code())
        {
            THROTTLED[0].fetch_add(1, Ordering::Relaxed);
        }
        let i = match item {
            Ok(i) => i,
            Err(e) => {
                warn!(account = %acc.cfg.name, error = %describe(&e), "AWS DescribeInstanceInformation failed");
                return None;
            }
        };
        let Some(id) = i.instance_id() else { continue };
        let millis =
            |t: Option<&aws_sdk_ssm::primitives::DateTime>| t.and_then(|t| t.to_millis().ok());
        rows.push(AwsInstanceRow {
            instance_id: id.to_string(),
            account: acc.cfg.name.clone(),
            resource_type: i
                .resource_type()
                .map_or("EC2Instance", |r| r.as_str())
                .to_string(),
            ping_status: i.ping_status().map_or("", |p| p.as_str()).to_string(),
            name: i.name().unwrap_or("").to_string(),
            activation_id: i.activation_id().unwrap_or("").to_string(),
            iam_role: i.iam_role().unwrap_or("").to_string(),
            platform_type: i.platform_type().map_or("", |p| p.as_str()).to_string(),
            platform_name: i.platform_name().unwrap_or("").to_string(),
            platform_version: i.platform_version().unwrap_or("").to_string(),
            computer_name: i.computer_name().unwrap_or("").to_string(),
            ip_address: i.ip_address().unwrap_or("").to_string(),
            agent_version: i.agent_version().unwrap_or("").to_string(),
            registration_ms: millis(i.registration_date()),
            last_ping_ms: millis(i.last_ping_date_time()),
            tags_json: "[]".to_string(),
            seen_ms: now,
        });
    }
    Some(rows)
}

/// Tags of the managed (`mi-`) instances; SSM does not tag EC2 instances
/// (their tags are EC2's), so those keep none.
async fn tag_instances(acc: &Account, rows: &mut [AwsInstanceRow]) {
    for row in rows.iter_mut().filter(|r| r.instance_id.starts_with("mi-")) {
        let got = acc
            .client
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::ManagedInstance)
            .resource_id(&row.instance_id)
            .send()
            .await;
        counted(Call::ListTagsForResource, &got);
        match got {
            Ok(t) => {
                let tags: Vec<_> = t
                    .tag_list()
                    .iter()
                    .map(|t| json!({"Key": t.key(), "Value": t.value()}))
                    .collect();
                row.tags_json = serde_json::Value::Array(tags).to_string();
            }
            Err(e) => {
                debug!(instance = %row.instance_id, error = %describe(&e), "AWS ListTagsForResource failed; no tags")
            }
        }
    }
}

/// Ends an invocation that AWS would not take or report, with the reason
/// where an operator reads output.
async fn end_with_error(
    store: &Store,
    command_id: &str,
    instance_id: &str,
    detail: Detail,
    message: &str,
) -> Result<(), StoreError> {
    let now = now_ms();
    let result = InvocationResult {
        detail,
        response_code: -1,
        start_ms: None,
        end_ms: Some(now),
        plugins: vec![PluginResult {
            name: "aws:bridge".to_string(),
            detail,
            response_code: -1,
            start_ms: None,
            end_ms: Some(now),
            stdout: Vec::new(),
            stderr: message.as_bytes().to_vec(),
            stdout_truncated: false,
            stderr_truncated: false,
        }],
    };
    store
        .finish_invocation(command_id, instance_id, &result, now)
        .await?;
    store.delete_aws_invocation(command_id, instance_id).await
}

/// Whether AWS owns the document (`AWS-*`): it exists in every account, and
/// Tether's built-in copy stands in for it rather than replacing it.
fn is_aws_owned(name: &str) -> bool {
    name.starts_with("AWS-") || name.starts_with("Amazon")
}

/// Whether a command's document can be used in an account.
enum Publish {
    Ready,
    /// Throttled or unreachable: try again later.
    Later(String),
    /// This document cannot run there; the reason goes on the invocations.
    Refused(String),
}

/// Makes sure the account has the command's document with the same content:
/// an `AWS-*` document is AWS's own; one AWS lacks is created there (same
/// name, content and format); one AWS has with other content is refused
/// rather than overwritten.
async fn ensure_document(acc: &Account, cmd: &tether_store::CommandRow) -> Publish {
    if is_aws_owned(&cmd.document_name) {
        return Publish::Ready;
    }
    let place = format!("AWS SSM ({}, {})", acc.cfg.name, acc.cfg.region);
    let described = acc
        .client
        .describe_document()
        .name(&cmd.document_name)
        .send()
        .await;
    counted(Call::DescribeDocument, &described);
    match described {
        Ok(d) => {
            let theirs = d.document().and_then(|d| d.hash()).unwrap_or("");
            if theirs.eq_ignore_ascii_case(&cmd.document_hash) {
                Publish::Ready
            } else {
                Publish::Refused(format!(
                    "{place} has a document named {} with other content (SHA-256 {theirs}, Tether's is {}); \
                     publish the same content there or send a document of another name",
                    cmd.document_name, cmd.document_hash
                ))
            }
        }
        Err(e) if e.code() == Some("InvalidDocument") => {
            let format = if serde_json::from_str::<serde_json::Value>(&cmd.document_content).is_ok()
            {
                aws_sdk_ssm::types::DocumentFormat::Json
            } else {
                aws_sdk_ssm::types::DocumentFormat::Yaml
            };
            let created = acc
                .client
                .create_document()
                .name(&cmd.document_name)
                .content(&cmd.document_content)
                .document_type(aws_sdk_ssm::types::DocumentType::Command)
                .document_format(format)
                .send()
                .await;
            counted(Call::CreateDocument, &created);
            match created {
                Ok(_) => {
                    info!(document = %cmd.document_name, account = %acc.cfg.name, "document published to AWS SSM");
                    Publish::Ready
                }
                Err(e) if is_throttling(e.code()) || e.code().is_none() => {
                    Publish::Later(describe(&e))
                }
                Err(e) => Publish::Refused(format!(
                    "{place} refused CreateDocument for {}: {}",
                    cmd.document_name,
                    describe(&e)
                )),
            }
        }
        Err(e) if is_throttling(e.code()) || e.code().is_none() => Publish::Later(describe(&e)),
        Err(e) => Publish::Refused(format!(
            "{place} refused DescribeDocument for {}: {}",
            cmd.document_name,
            describe(&e)
        )),
    }
}

/// Sends the Pending invocations on bridged instances with AWS SendCommand.
async fn send_pending(
    store: &Store,
    accounts: &mut HashMap<String, Account>,
) -> Result<(), StoreError> {
    let pending = store.bridge_pending().await?;
    let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for p in pending {
        groups
            .entry((p.command_id, p.account))
            .or_default()
            .push(p.instance_id);
    }
    for ((command_id, account), ids) in groups {
        let now = now_ms();
        let Some(acc) = accounts.get_mut(&account) else {
            continue;
        };
        if acc.send_after_ms > now {
            continue;
        }
        let Some(cmd) = store.command(&command_id).await? else {
            continue;
        };
        let mut claimed = Vec::new();
        let unlimited = cmd.concurrency_limit >= cmd.target_count;
        for id in ids {
            // No envelope: AWS, not a Tether agent, runs it.
            if store
                .claim_delivery(
                    &Claim {
                        command_id: command_id.clone(),
                        instance_id: id.clone(),
                        // An AWS send is never repeated blindly.
                        redeliver_after_ms: i64::MAX / 2,
                        unlimited,
                        payload: Vec::new(),
                        signature: Vec::new(),
                    },
                    now,
                )
                .await?
            {
                claimed.push(id);
            }
        }
        if claimed.is_empty() {
            continue;
        }
        match ensure_document(acc, &cmd).await {
            Publish::Ready => {}
            Publish::Later(why) => {
                acc.send_throttled += 1;
                acc.send_after_ms = now_ms() + backoff_ms(acc.send_throttled);
                warn!(account = %account, error = %why, "AWS document check deferred");
                for id in &claimed {
                    store.unclaim_delivery(&command_id, id).await?;
                }
                continue;
            }
            Publish::Refused(why) => {
                warn!(command = %command_id, "{why}");
                for id in &claimed {
                    end_with_error(store, &command_id, id, Detail::Undeliverable, &why).await?;
                }
                continue;
            }
        }
        let parameters: HashMap<String, Vec<String>> =
            match serde_json::from_str(&cmd.parameters_json) {
                Ok(p) => p,
                Err(e) => {
                    let why = format!("stored command {command_id}: parameters are corrupt: {e}");
                    warn!(command = %command_id, "{why}");
                    for id in &claimed {
                        end_with_error(store, &command_id, id, Detail::Undeliverable, &why).await?;
                    }
                    continue;
                }
            };
        for batch in claimed.chunks(limits::BRIDGE_SEND_BATCH) {
            let mut req = acc
                .client
                .send_command()
                .document_name(&cmd.document_name)
                .set_instance_ids(Some(batch.to_vec()))
                .set_parameters(Some(parameters.clone()))
                .timeout_seconds(cmd.timeout_seconds.clamp(30, 2_592_000) as i32);
            if !cmd.comment.is_empty() {
                req = req.comment(&cmd.comment);
            }
            if !is_aws_owned(&cmd.document_name) {
                // AWS refuses the send if its copy changed since we checked.
                req = req
                    .document_hash(&cmd.document_hash)
                    .document_hash_type(aws_sdk_ssm::types::DocumentHashType::Sha256);
            }
            let sent = req.send().await;
            counted(Call::SendCommand, &sent);
            match sent {
                Ok(out) => {
                    acc.send_throttled = 0;
                    let aws_id = out
                        .command()
                        .and_then(|c| c.command_id())
                        .unwrap_or("")
                        .to_string();
                    info!(command = %command_id, aws_command = %aws_id, account = %account, count = batch.len(), "sent to AWS SSM");
                    let now = now_ms();
                    for id in batch {
                        store.mark_started(&command_id, id, None, now).await?;
                        store
                            .insert_aws_invocation(&AwsInvocationRow {
                                command_id: command_id.clone(),
                                instance_id: id.clone(),
                                account: account.clone(),
                                aws_command_id: aws_id.clone(),
                                next_poll_ms: now + limits::BRIDGE_POLL_INTERVAL_MS / 2,
                                throttled: 0,
                            })
                            .await?;
                    }
                }
                Err(e) if is_throttling(e.code()) || e.code().is_none() => {
                    // Throttled, or AWS not reached: try again later; the
                    // delivery timeout ends the invocations if it never works.
                    acc.send_throttled += 1;
                    acc.send_after_ms = now_ms() + backoff_ms(acc.send_throttled);
                    warn!(account = %account, error = %describe(&e), retry_in_ms = backoff_ms(acc.send_throttled), "AWS SendCommand deferred");
                    for id in batch {
                        store.unclaim_delivery(&command_id, id).await?;
                    }
                }
                Err(e) => {
                    let why = format!(
                        "AWS SSM ({account}, {}) refused SendCommand: {}",
                        acc.cfg.region,
                        describe(&e)
                    );
                    warn!(command = %command_id, "{why}");
                    for id in batch {
                        end_with_error(store, &command_id, id, Detail::Undeliverable, &why).await?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Passes cancel-command on to AWS for the invocations it sent there.
async fn send_cancels(
    store: &Store,
    accounts: &HashMap<String, Account>,
) -> Result<(), StoreError> {
    for row in store.aws_cancels_due().await? {
        let Some(acc) = accounts.get(&row.account) else {
            continue;
        };
        let cancelled = acc
            .client
            .cancel_command()
            .command_id(&row.aws_command_id)
            .instance_ids(&row.instance_id)
            .send()
            .await;
        counted(Call::CancelCommand, &cancelled);
        match cancelled {
            Ok(_) => {
                info!(command = %row.command_id, instance = %row.instance_id, aws_command = %row.aws_command_id, "cancellation passed on to AWS SSM");
                store
                    .mark_cancel_sent(&row.command_id, &row.instance_id, now_ms())
                    .await?;
                // Poll soon: AWS reports the cancellation as the invocation's end.
                store
                    .reschedule_aws_invocation(&row.command_id, &row.instance_id, now_ms(), 0)
                    .await?;
            }
            // Tried again next tick; the coordinator's sweep ends the
            // invocation as Cancelled if it is never confirmed.
            Err(e) => {
                warn!(command = %row.command_id, instance = %row.instance_id, error = %describe(&e), "AWS CancelCommand failed")
            }
        }
    }
    Ok(())
}

/// Polls the AWS invocations that are due and stores the finished ones.
async fn poll_running(
    store: &Store,
    accounts: &HashMap<String, Account>,
) -> Result<(), StoreError> {
    for row in store.aws_invocations_due(now_ms()).await? {
        let Some(acc) = accounts.get(&row.account) else {
            continue;
        };
        let got = acc
            .client
            .get_command_invocation()
            .command_id(&row.aws_command_id)
            .instance_id(&row.instance_id)
            .send()
            .await;
        counted(Call::GetCommandInvocation, &got);
        let now = now_ms();
        match got {
            Ok(out) => {
                let status_details = out.status_details().unwrap_or("");
                let detail = Detail::parse(status_details)
                    .or_else(|| out.status().and_then(|s| Detail::parse(s.as_str())));
                match detail {
                    Some(d) if d.is_terminal() => {
                        let iso = |s: Option<&str>| {
                            s.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                                .map(|t| t.timestamp_millis())
                        };
                        let (start, end) = (
                            iso(out.execution_start_date_time()),
                            iso(out.execution_end_date_time()).or(Some(now)),
                        );
                        let code = i64::from(out.response_code());
                        let result = InvocationResult {
                            detail: d,
                            response_code: code,
                            start_ms: start,
                            end_ms: end,
                            plugins: vec![PluginResult {
                                name: out
                                    .plugin_name()
                                    .filter(|p| !p.is_empty())
                                    .unwrap_or("aws:runShellScript")
                                    .to_string(),
                                detail: d,
                                response_code: code,
                                start_ms: start,
                                end_ms: end,
                                stdout: out
                                    .standard_output_content()
                                    .unwrap_or("")
                                    .as_bytes()
                                    .to_vec(),
                                stderr: out
                                    .standard_error_content()
                                    .unwrap_or("")
                                    .as_bytes()
                                    .to_vec(),
                                stdout_truncated: false,
                                stderr_truncated: false,
                            }],
                        };
                        store
                            .finish_invocation(&row.command_id, &row.instance_id, &result, now)
                            .await?;
                        store
                            .delete_aws_invocation(&row.command_id, &row.instance_id)
                            .await?;
                        info!(command = %row.command_id, instance = %row.instance_id, status = %d.as_str(), "AWS invocation finished");
                    }
                    _ => {
                        store
                            .reschedule_aws_invocation(
                                &row.command_id,
                                &row.instance_id,
                                now + limits::BRIDGE_POLL_INTERVAL_MS,
                                0,
                            )
                            .await?;
                    }
                }
            }
            Err(e) => {
                let misses = row.throttled + 1;
                if !is_throttling(e.code()) && misses >= limits::BRIDGE_MAX_POLL_FAILURES {
                    let why = format!(
                        "AWS SSM ({}, {}) GetCommandInvocation for AWS command {} kept failing: {}",
                        row.account,
                        acc.cfg.region,
                        row.aws_command_id,
                        describe(&e)
                    );
                    warn!(command = %row.command_id, instance = %row.instance_id, "{why}");
                    end_with_error(
                        store,
                        &row.command_id,
                        &row.instance_id,
                        Detail::Failed,
                        &why,
                    )
                    .await?;
                } else {
                    debug!(command = %row.command_id, error = %describe(&e), "AWS poll failed; backing off");
                    store
                        .reschedule_aws_invocation(
                            &row.command_id,
                            &row.instance_id,
                            now + backoff_ms(misses as u32),
                            misses,
                        )
                        .await?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        let got: Vec<i64> = (0..8).map(backoff_ms).collect();
        assert_eq!(
            got,
            vec![1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
        assert_eq!(backoff_ms(200), limits::BRIDGE_MAX_BACKOFF_MS);
    }

    #[test]
    fn throttling_codes_are_recognised() {
        for code in [
            "ThrottlingException",
            "TooManyRequestsException",
            "RequestLimitExceeded",
        ] {
            assert!(is_throttling(Some(code)), "{code}");
        }
        for code in [
            Some("AccessDeniedException"),
            Some("InvalidInstanceId"),
            None,
        ] {
            assert!(!is_throttling(code), "{code:?}");
        }
    }
}
