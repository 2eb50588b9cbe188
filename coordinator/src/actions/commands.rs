//! Run Command: SendCommand, ListCommands, ListCommandInvocations,
//! GetCommandInvocation and CancelCommand.
//!
//! SendCommand is four steps, each its own function: the document and its
//! parameters ([`prepare`]), the instances the targets reach
//! ([`resolve_targets`]), the rows stored at once so that every invocation
//! exists when the call returns ([`store_command`]), and the wake-ups of the
//! agents that can receive it ([`dispatch_command`]).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tether_documents::{Document, PlatformType};
use tether_ssm::input::{
    CancelCommandRequest, CommandFilter, GetCommandInvocationRequest,
    ListCommandInvocationsRequest, ListCommandsRequest, SendCommandRequest,
};
use tether_ssm::state::Detail;
use tether_ssm::target::Target;
use tether_ssm::{ApiError, Rate, ids, limits};
use tether_store::{
    self as store, CommandBrief, CommandQuery, CommandRow, InstanceRow, InvocationRow, PluginRow,
};
use tether_util::time::{now_ms, parse_timestamp_ms};

use super::documents;
use super::wire::{self, Page, stored, string_time, tag_pairs, ts};
use crate::authz::{Authority, Resource};
use crate::core::Coordinator;

/// What AWS answers as `DocumentVersion` when SendCommand named none.
const DEFAULT_VERSION: &str = "$DEFAULT";

/// `DocumentVersion` as AWS answers it: as the sender named it (`$DEFAULT`
/// when it named none). Commands stored before the request's spelling was
/// kept answer the version they resolved to.
fn answered_version(c: &CommandBrief) -> &str {
    if c.requested_document_version.is_empty() {
        &c.document_version
    } else {
        &c.requested_document_version
    }
}

/// Tether's documented extra members (`ssm/model/tether-operations.json`,
/// `extraMembers`) on every answer about a command: the version the
/// command resolved to, the SHA-256 of the content it ran, and the ARN of
/// the principal that sent it.
fn add_document_extras(v: &mut Value, c: &CommandBrief) {
    v["ResolvedDocumentVersion"] = json!(c.document_version);
    v["DocumentHash"] = json!(c.document_hash);
    if !c.requested_by.is_empty() {
        v["RequestedBy"] = json!(c.requested_by);
    }
}

/// Members of SendCommand Tether does not take, and why.
fn unsupported(r: &SendCommandRequest) -> Option<(&'static str, &'static str)> {
    const HISTORY: &str = "output is kept in the coordinator's history";
    [
        (
            r.output_s3_bucket_name.is_some(),
            "OutputS3BucketName",
            HISTORY,
        ),
        (
            r.output_s3_key_prefix.is_some(),
            "OutputS3KeyPrefix",
            HISTORY,
        ),
        (r.output_s3_region.is_some(), "OutputS3Region", HISTORY),
        (
            r.service_role_arn.is_some(),
            "ServiceRoleArn",
            "notifications are not supported",
        ),
        (
            r.notification_config.is_some(),
            "NotificationConfig",
            "notifications are not supported",
        ),
        (
            r.alarm_configuration.is_some(),
            "AlarmConfiguration",
            "alarms are not supported",
        ),
        (
            r.cloud_watch_output_config
                .as_ref()
                .and_then(|c| c.cloud_watch_output_enabled)
                == Some(true),
            "CloudWatchOutputConfig",
            HISTORY,
        ),
    ]
    .into_iter()
    .find(|(given, _, _)| *given)
    .map(|(_, member, why)| (member, why))
}

/// The targets of a request, parsed.
pub(super) fn parse_targets(
    op: &str,
    targets: &[tether_ssm::input::Target],
) -> Result<Vec<Target>, ApiError> {
    targets
        .iter()
        .map(|t| {
            Target::parse(
                t.key.as_deref().unwrap_or(""),
                t.values.as_deref().unwrap_or(&[]),
            )
            .map_err(|e| ApiError::new(e.kind, format!("{op}: {}", e.message)))
        })
        .collect()
}

/// What SendCommand will run: the document version, the parameters as given
/// and as resolved against it.
struct Prepared {
    found: documents::Version,
    given: BTreeMap<String, Vec<String>>,
    resolved: BTreeMap<String, Vec<String>>,
}

/// `values`: the parameters with plain `{{ssm:…}}` references replaced
/// (`references::resolve`); the history keeps `r.parameters` as given.
async fn prepare(
    c: &Coordinator,
    r: &SendCommandRequest,
    values: &BTreeMap<String, Vec<String>>,
) -> Result<Prepared, ApiError> {
    let op = "SendCommand";
    let found = documents::find(c, op, &r.document_name, r.document_version.as_deref(), None)
        .await
        .map_err(|e| match e.kind {
            // SendCommand reports a missing document as InvalidDocument, naming what exists.
            "InvalidDocument" => ApiError::new(
                "InvalidDocument",
                format!(
                    "{} (see ListDocuments for the documents available)",
                    e.message
                ),
            ),
            _ => e,
        })?;
    let doc = &found.doc;
    if let Some(hash) = &r.document_hash {
        let hash_type = r.document_hash_type.as_deref().unwrap_or("Sha256");
        if hash_type != "Sha256" || !hash.eq_ignore_ascii_case(&doc.hash()) {
            return Err(ApiError::new(
                "InvalidDocument",
                format!(
                    "SendCommand: DocumentHash {hash} ({hash_type}) does not match document {} (Sha256 {})",
                    r.document_name,
                    doc.hash()
                ),
            ));
        }
    }
    let given = r.parameters.clone().unwrap_or_default();
    let resolved = doc
        .resolve_parameters(values)
        .map_err(|e| ApiError::new("InvalidParameters", format!("{op}: {e}")))?;
    // Interpolation errors (an executionTimeout out of range, say) surface now, not on the node.
    for platform in doc.platform_types() {
        doc.plan(&resolved, platform)
            .map_err(|e| ApiError::new("InvalidParameters", format!("{op}: {e}")))?;
    }
    Ok(Prepared {
        found,
        given,
        resolved,
    })
}

/// The instances `instance_ids` and `targets` reach, in order, each once,
/// with its row when the instance is known (`None`: it can never receive
/// the command).
pub(super) async fn resolve_targets(
    c: &Coordinator,
    instance_ids: &[String],
    targets: &[Target],
) -> Result<Vec<(String, Option<InstanceRow>)>, ApiError> {
    let mut out: Vec<(String, Option<InstanceRow>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut named = instance_ids.to_vec();
    named.extend(targets.iter().flat_map(|t| t.named_ids().iter().cloned()));
    for id in named {
        if seen.insert(id.clone()) {
            let row = c.store.any_instance(&id).await?;
            out.push((id, row));
        }
    }
    if targets.iter().any(|t| t.named_ids().is_empty()) {
        for i in c.store.all_instances().await? {
            let tags = tag_pairs(&format!("instance {}", i.instance_id), &i.tags_json)?;
            let by_selector = targets
                .iter()
                .filter(|t| t.named_ids().is_empty())
                .any(|t| t.matches(&i.instance_id, &tags));
            if by_selector && seen.insert(i.instance_id.clone()) {
                out.push((i.instance_id.clone(), Some(i)));
            }
        }
    }
    Ok(out)
}

/// Stores the command and one invocation per instance, in one transaction.
/// `by`: the sender's ARN and the references with their versions (JSON).
async fn store_command(
    c: &Coordinator,
    by: (&str, &str),
    r: &SendCommandRequest,
    p: &Prepared,
    reached: &[(String, Option<InstanceRow>)],
    rates: (Rate, Rate),
) -> Result<CommandRow, ApiError> {
    let (max_concurrency, max_errors) = rates;
    let targets = reached.len() as u64;
    let row = CommandRow {
        command_id: uuid::Uuid::new_v4().to_string(),
        document_name: r.document_name.clone(),
        document_version: p.found.version.to_string(),
        document_hash: p.found.doc.hash(),
        document_content: p.found.doc.content.clone(),
        parameters_json: json!(p.given).to_string(),
        resolved_json: json!(p.resolved).to_string(),
        comment: r.comment.clone().unwrap_or_default(),
        requested_ms: now_ms(),
        timeout_seconds: r
            .timeout_seconds
            .unwrap_or(limits::DEFAULT_DELIVERY_TIMEOUT_SECS),
        max_concurrency: max_concurrency.to_string(),
        max_errors: max_errors.to_string(),
        concurrency_limit: i64::try_from(max_concurrency.concurrency(targets)).unwrap_or(i64::MAX),
        instance_ids_json: json!(r.instance_ids.as_deref().unwrap_or_default()).to_string(),
        targets_json: json!(
            r.targets
                .iter()
                .flatten()
                .map(|t| json!({"Key": t.key, "Values": t.values}))
                .collect::<Vec<_>>()
        )
        .to_string(),
        status: "Pending".into(),
        status_details: "Pending".into(),
        target_count: reached.len() as i64,
        completed_count: 0,
        error_count: 0,
        delivery_timed_out_count: 0,
        requested_document_version: r
            .document_version
            .clone()
            .unwrap_or_else(|| DEFAULT_VERSION.to_owned()),
        requested_by: by.0.to_owned(),
        references_json: by.1.to_owned(),
    };
    let pairs: Vec<(String, String)> = reached
        .iter()
        .map(|(id, i)| {
            (
                id.clone(),
                i.as_ref()
                    .map(|i| i.computer_name.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    match super::take_change_draft() {
        // Dispatched: the command, its intent and its outcome in one
        // transaction (the outcome names the command ID, known already).
        Some(intent) => {
            let mut outcome = intent.clone();
            outcome.outcome(&Ok(json!({"Command": command_json(&row)?})));
            c.audit
                .with_change(&intent, &outcome, |records, seal| {
                    c.store.insert_command_recorded(&row, &pairs, records, seal)
                })
                .await?;
            super::change_recorded();
        }
        None => c.store.insert_command(&row, &pairs).await?,
    }
    Ok(row)
}

/// Ends at once the invocations that can never be delivered (unknown or
/// deregistered instances) and wakes the agents of the others. Whether any
/// was ended.
async fn dispatch_command(
    c: &Coordinator,
    command_id: &str,
    reached: &[(String, Option<InstanceRow>)],
) -> Result<bool, ApiError> {
    let now = now_ms();
    let mut ended = false;
    for (id, i) in reached {
        if i.as_ref().is_none_or(|i| i.deregistered_ms.is_some()) {
            let result = store::InvocationResult {
                detail: Detail::Undeliverable,
                response_code: -1,
                start_ms: None,
                end_ms: Some(now),
                plugins: Vec::new(),
            };
            c.store
                .finish_invocation(command_id, id, &result, now)
                .await?;
            ended = true;
        } else {
            super::ring_when_recorded(c, id);
        }
    }
    Ok(ended)
}

/// Authorises `action` (`ssm:SendCommand`, `ssm:CreateAssociation`, …) on
/// every instance the targets reached (the door checked the document): one
/// the caller may not touch refuses the whole request, naming it, before
/// anything is stored.
pub(super) fn authorize_instances(
    c: &Coordinator,
    authority: &Authority,
    action: &str,
    reached: &[(String, Option<InstanceRow>)],
) -> Result<(), ApiError> {
    if matches!(authority, Authority::Root { .. }) {
        return Ok(());
    }
    for (id, row) in reached {
        let resource = match row {
            Some(row) => Resource::instance(&c.account, row)?,
            None => Resource::untagged(c.account.instance_arn(id)),
        };
        authority.check(action, &resource)?;
    }
    Ok(())
}

pub(super) async fn send(
    c: &Coordinator,
    authority: &Authority,
    r: SendCommandRequest,
) -> Result<Value, ApiError> {
    if let Some((member, why)) = unsupported(&r) {
        return Err(ApiError::validation(format!(
            "SendCommand: {member} is not supported by Tether ({why})"
        )));
    }
    let instance_ids = r.instance_ids.clone().unwrap_or_default();
    let targets = parse_targets("SendCommand", r.targets.as_deref().unwrap_or_default())?;
    if instance_ids.is_empty() == targets.is_empty() {
        return Err(ApiError::validation(
            "SendCommand: give either InstanceIds or Targets (exactly one of them)",
        ));
    }
    let max_concurrency = match &r.max_concurrency {
        Some(v) => v.parse()?,
        None => Rate::DEFAULT_CONCURRENCY,
    };
    let max_errors = match &r.max_errors {
        Some(v) => v.parse()?,
        None => Rate::DEFAULT_ERRORS,
    };
    let (values, pinned) = super::references::resolve(
        c,
        "SendCommand",
        authority,
        r.parameters.as_ref().unwrap_or(&BTreeMap::new()),
    )
    .await?;
    let prepared = prepare(c, &r, &values).await?;
    let (doc, version) = (&prepared.found.doc, prepared.found.version.to_string());
    let resolved = json!(prepared.resolved).to_string();
    let references = json!(pinned).to_string();
    let parts = [
        &*doc.content,
        &resolved,
        &r.document_name,
        &version,
        &doc.hash(),
    ];
    let sealed = limits::SEALED_BYTES_PER_REFERENCE_BYTE * references.len();
    super::sizes::check_envelope("SendCommand", "the command", &parts, sealed)?;
    let reached = resolve_targets(c, &instance_ids, &targets).await?;
    if reached.is_empty() {
        return Err(ApiError::new(
            "InvalidTarget",
            "SendCommand: No Instances In Tag: the targets match no managed instance",
        ));
    }
    authorize_instances(c, authority, "ssm:SendCommand", &reached)?;
    let reached_ids: Vec<String> = reached.iter().map(|(id, _)| id.clone()).collect();
    super::references::refuse_bridged(&prepared.given, &reached_ids)?;
    if doc.has_action(tether_documents::StepAction::UpdateAgent)
        && let Some(i) = reached_ids.iter().find(|i| i.starts_with("i-"))
    {
        return Err(ApiError::new(
            "UnsupportedPlatformType",
            format!(
                "SendCommand: instance {i} is managed by AWS through the bridge, and AWS updates its own \
                 agent (send it AWS-UpdateSSMAgent); {} updates Tether's agents only",
                r.document_name
            ),
        ));
    }
    let row = store_command(
        c,
        (authority.arn(), &references),
        &r,
        &prepared,
        &reached,
        (max_concurrency, max_errors),
    )
    .await?;
    let undeliverable = dispatch_command(c, &row.command_id, &reached).await?;
    // Undeliverable invocations ended at once changed the command's tally.
    let row = if undeliverable {
        c.store.command(&row.command_id).await?.unwrap_or(row)
    } else {
        row
    };
    Ok(json!({"Command": command_json(&row)?}))
}

/// CancelCommand: invocations not yet handed to their agent end Cancelled at
/// once; delivered ones become Cancelling, and their agents are sent a signed
/// cancellation (the step's whole process group is killed) and report Cancelled.
pub(super) async fn cancel(c: &Coordinator, r: CancelCommandRequest) -> Result<Value, ApiError> {
    let command_id = r.command_id;
    let unknown = || {
        ApiError::new(
            "InvalidCommandId",
            format!("CancelCommand: command {command_id:?} does not exist"),
        )
    };
    if !ids::is_uuid(&command_id) {
        return Err(unknown());
    }
    c.store.command(&command_id).await?.ok_or_else(unknown)?;
    let instance_ids = r.instance_ids.unwrap_or_default();
    if !instance_ids.is_empty() {
        let q = CommandQuery {
            command_id: Some(command_id.clone()),
            limit: i64::MAX,
            ..CommandQuery::default()
        };
        let targeted: Vec<String> = c
            .store
            .invocations(&q)
            .await?
            .into_iter()
            .map(|(i, _)| i.instance_id)
            .collect();
        for (n, id) in instance_ids.iter().enumerate() {
            if instance_ids[..n].contains(id) {
                return Err(ApiError::new(
                    "DuplicateInstanceId",
                    format!("CancelCommand: instance {id} is listed twice"),
                ));
            }
            if !targeted.contains(id) {
                return Err(ApiError::new(
                    "InvalidInstanceId",
                    format!("CancelCommand: command {command_id} was not sent to instance {id:?}"),
                ));
            }
        }
    }
    for outcome in c
        .store
        .cancel_invocations(&command_id, &instance_ids, now_ms())
        .await?
    {
        match outcome {
            store::CancelOutcome::Cancelling(id) => super::ring_when_recorded(c, &id),
            store::CancelOutcome::Cancelled(_) => {}
        }
    }
    Ok(json!({}))
}

fn command_json(c: &CommandRow) -> Result<Value, ApiError> {
    let row = format!("command {}", c.command_id);
    let parameters: Value = stored(&format!("{row}: parameters"), &c.parameters_json)?;
    let instance_ids: Value = stored(&format!("{row}: instance IDs"), &c.instance_ids_json)?;
    let targets: Value = stored(&format!("{row}: targets"), &c.targets_json)?;
    let mut v = json!({
        "CommandId": c.command_id,
        "DocumentName": c.document_name,
        "DocumentVersion": answered_version(&CommandBrief::from(c)),
        "Comment": c.comment,
        "ExpiresAfter": ts(c.requested_ms + c.timeout_seconds * 1000),
        "Parameters": parameters,
        "InstanceIds": instance_ids,
        "Targets": targets,
        "RequestedDateTime": ts(c.requested_ms),
        "Status": c.status,
        "StatusDetails": c.status_details,
        "OutputS3Region": "",
        "OutputS3BucketName": "",
        "OutputS3KeyPrefix": "",
        "MaxConcurrency": c.max_concurrency,
        "MaxErrors": c.max_errors,
        "TargetCount": c.target_count,
        "CompletedCount": c.completed_count,
        "ErrorCount": c.error_count,
        "DeliveryTimedOutCount": c.delivery_timed_out_count,
        "ServiceRole": "",
        "NotificationConfig": {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""},
        "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": false},
        "TimeoutSeconds": c.timeout_seconds,
    });
    add_document_extras(&mut v, &CommandBrief::from(c));
    let references: Value = stored(&format!("{row}: references"), &c.references_json)?;
    if references.as_array().is_some_and(|r| !r.is_empty()) {
        v["ParameterReferences"] = references;
    }
    Ok(v)
}

/// The statuses a `Status` filter may name.
const STATUSES: [&str; 8] = [
    "Pending",
    "InProgress",
    "Delayed",
    "Success",
    "Cancelled",
    "TimedOut",
    "Failed",
    "Cancelling",
];

/// ListCommands / ListCommandInvocations: the filters and the page; a named
/// command must exist.
async fn command_page(
    c: &Coordinator,
    op: &str,
    command_id: Option<&str>,
    instance_id: Option<&str>,
    filters: &[CommandFilter],
    page: Page,
) -> Result<CommandQuery, ApiError> {
    let mut q = CommandQuery {
        offset: page.offset,
        limit: page.size,
        ..CommandQuery::default()
    };
    if let Some(id) = command_id {
        if !ids::is_uuid(id) {
            return Err(ApiError::new(
                "InvalidCommandId",
                format!("{op}: {id:?} is not a command ID (a lowercase UUID)"),
            ));
        }
        if c.store.command(id).await?.is_none() {
            return Err(ApiError::new(
                "InvalidCommandId",
                format!("{op}: command {id} does not exist"),
            ));
        }
        q.command_id = Some(id.to_string());
    }
    q.instance_id = instance_id.map(str::to_string);
    for f in filters {
        let (key, value) = (f.key.as_str(), f.value.as_str());
        let bad = |why: &str| {
            ApiError::new(
                "InvalidFilterKey",
                format!("{op}: filter {key}={value:?}: {why}"),
            )
        };
        match key {
            "InvokedAfter" => {
                q.invoked_after_ms =
                    Some(parse_timestamp_ms(value).ok_or_else(|| bad("not a timestamp"))?)
            }
            "InvokedBefore" => {
                q.invoked_before_ms =
                    Some(parse_timestamp_ms(value).ok_or_else(|| bad("not a timestamp"))?)
            }
            "Status" => {
                if !STATUSES.contains(&value) {
                    return Err(bad(&format!(
                        "status must be one of {}",
                        STATUSES.join(", ")
                    )));
                }
                q.status = Some(value.to_string());
            }
            "DocumentName" => q.document_name = Some(value.to_string()),
            "ExecutionStage" => {
                q.complete = Some(match value {
                    "Executing" => false,
                    "Complete" => true,
                    _ => return Err(bad("ExecutionStage must be Executing or Complete")),
                });
            }
            _ => {
                return Err(bad(
                    "key must be InvokedAfter, InvokedBefore, Status, ExecutionStage or DocumentName",
                ));
            }
        }
    }
    Ok(q)
}

pub(super) async fn list(c: &Coordinator, r: ListCommandsRequest) -> Result<Value, ApiError> {
    let op = "ListCommands";
    let page = Page::of(
        op,
        r.next_token.as_deref(),
        r.max_results,
        limits::DEFAULT_PAGE_SIZE,
    )?;
    let mut q = command_page(
        c,
        op,
        r.command_id.as_deref(),
        r.instance_id.as_deref(),
        r.filters.as_deref().unwrap_or_default(),
        page,
    )
    .await?;
    if let Some(by) = r.requested_by.as_deref() {
        q.requested_by = Some(requester_arn(c, op, by).await?);
    }
    // The page is cut by the bytes each command lists before any is read whole.
    let sizes = c.store.command_sizes(&q).await?;
    let chosen = wire::fitting(&sizes);
    let mut packer = page.packer();
    let mut consumed = chosen.len();
    for row in c.store.commands_by_id(&chosen).await? {
        if !packer.push(command_json(&row)?) {
            consumed = chosen
                .iter()
                .position(|id| *id == row.command_id)
                .unwrap_or(0);
            break;
        }
    }
    let more = consumed < sizes.len() || sizes.len() as i64 >= page.size;
    Ok(page.answer("Commands", packer, consumed, more))
}

/// The ARN Tether's `RequestedBy` names: an ARN as given, `root`, or a
/// user's name (their ARN with their path; a user deleted since is named
/// with the default path `/`, as most are).
async fn requester_arn(c: &Coordinator, op: &str, by: &str) -> Result<String, ApiError> {
    let by = by.trim();
    if by.is_empty() || by.len() > limits::MAX_REQUESTER_CHARS {
        return Err(ApiError::validation(format!(
            "{op}: RequestedBy {by:?} must be an ARN, a user name or root (1 to {} characters)",
            limits::MAX_REQUESTER_CHARS
        )));
    }
    if by.starts_with("arn:") {
        return Ok(by.to_string());
    }
    if by == "root" {
        return Ok(c.account.root_arn());
    }
    Ok(match c.store.user(by).await? {
        Some(u) => c.account.user_arn(&u.path, &u.user_name),
        None => c.account.user_arn("/", by),
    })
}

/// Characters of `bytes` (as UTF-8, invalid sequences replaced), cut to
/// `limit` characters including the truncation marker when longer.
pub fn truncate_output(bytes: &[u8], limit: usize, already_truncated: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let count = text.chars().count();
    if count <= limit && !already_truncated {
        return text.into_owned();
    }
    let marker = limits::TRUNCATION_MARKER;
    let keep = limit.saturating_sub(marker.chars().count()).min(count);
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(marker);
    out
}

/// Everything stored, with the marker when the agent's cap cut the stream.
fn full_output(bytes: &[u8], truncated: bool) -> String {
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    if truncated {
        s.push_str(limits::TRUNCATION_MARKER);
    }
    s
}

/// One plugin of an invocation as SSM names it: a schema 2.2 step (named
/// by the step), or every property of one schema 1.2 plugin together
/// (named by the plugin, `aws:runShellScript`, as amazon-ssm-agent reports
/// them: it runs a plugin's properties one after another and reports one
/// result). Tether runs and stores each property as its own step; this is
/// how they are answered.
#[derive(Clone, Debug, PartialEq)]
struct PluginLayout {
    /// SSM's `PluginName` / `CommandPlugins[].Name`.
    name: String,
    /// The steps (1.2 property ids, 2.2 step names) it is made of, in order.
    steps: Vec<String>,
}

/// The plugins of the command's document (its Linux plan), before any reported.
fn plugin_layout(cmd: &CommandRow) -> Result<Vec<PluginLayout>, ApiError> {
    let row = format!("command {}", cmd.command_id);
    let doc = Document::parse(&cmd.document_name, &cmd.document_content).map_err(|e| {
        ApiError::new(
            "InternalServerError",
            format!("stored {row}: document no longer parses: {e}"),
        )
    })?;
    let params: BTreeMap<String, Vec<String>> =
        stored(&format!("{row}: resolved parameters"), &cmd.resolved_json)?;
    // A document without Linux steps has none to name here.
    let steps = doc.plan(&params, PlatformType::Linux).unwrap_or_default();
    Ok(group_steps(
        &doc.schema_version,
        steps.iter().map(|s| (s.name.as_str(), s.action.as_str())),
    ))
}

/// The plugins of a stored command (see [`plugin_layout`]), read by its ID:
/// a listing of invocations holds only their commands' briefs.
async fn plugin_layout_of(
    c: &Coordinator,
    command_id: &str,
) -> Result<Vec<PluginLayout>, ApiError> {
    match c.store.command(command_id).await? {
        Some(cmd) => plugin_layout(&cmd),
        // Pruned since its invocations were read.
        None => Ok(Vec::new()),
    }
}

/// Steps as SSM's plugins: 1.2 properties grouped by their plugin (a
/// plugin's properties are contiguous: they come from one `runtimeConfig`
/// key), 2.2 steps one each.
fn group_steps<'a>(
    schema_version: &str,
    steps: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<PluginLayout> {
    let mut out: Vec<PluginLayout> = Vec::new();
    for (step, action) in steps {
        if schema_version == "1.2" {
            if let Some(last) = out.last_mut().filter(|p| p.name == action) {
                last.steps.push(step.to_owned());
                continue;
            }
            out.push(PluginLayout {
                name: action.to_owned(),
                steps: vec![step.to_owned()],
            });
        } else {
            out.push(PluginLayout {
                name: step.to_owned(),
                steps: vec![step.to_owned()],
            });
        }
    }
    out
}

/// The plugins to answer for an invocation: the layout when the reported
/// steps are its steps, else one per reported step under its own name
/// (bridged AWS instances report AWS's plugin names).
fn invocation_plugins(layout: Vec<PluginLayout>, rows: &[PluginRow]) -> Vec<PluginLayout> {
    let known = rows
        .iter()
        .all(|r| layout.iter().any(|p| p.steps.contains(&r.name)));
    if known {
        layout
    } else {
        rows.iter()
            .map(|r| PluginLayout {
                name: r.name.clone(),
                steps: vec![r.name.clone()],
            })
            .collect()
    }
}

/// How amazon-ssm-agent ranks statuses when it merges a plugin's
/// properties (`contracts.MergeResultStatus`): the higher one wins.
fn status_rank(status: &str) -> u8 {
    match status {
        "Success" => 1,
        "Pending" | "Delayed" => 2,
        "InProgress" | "Cancelling" => 3,
        "Failed" => 4,
        "Cancelled" => 5,
        "TimedOut" => 6,
        _ => 0,
    }
}

/// One plugin's result: its steps' rows merged as amazon-ssm-agent merges
/// a plugin's properties (`DefaultIOHandler.Merge`): outputs joined with a
/// newline after each non-empty one, the first non-zero exit code, the
/// highest-ranked status. `None` while none of its steps has reported.
#[derive(Clone, Debug, PartialEq)]
struct PluginResult {
    status: String,
    status_details: String,
    response_code: i64,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_truncated: bool,
    stderr_truncated: bool,
}

fn merge_rows(plugin: &PluginLayout, rows: &[PluginRow], running: bool) -> Option<PluginResult> {
    let mine: Vec<&PluginRow> = plugin
        .steps
        .iter()
        .filter_map(|s| rows.iter().find(|r| &r.name == s))
        .collect();
    let first = mine.first()?;
    let mut out = PluginResult {
        status: first.status.clone(),
        status_details: first.status_details.clone(),
        response_code: first.response_code,
        start_ms: first.start_ms,
        end_ms: first.end_ms,
        stdout: first.stdout.clone(),
        stderr: first.stderr.clone(),
        stdout_truncated: first.stdout_truncated,
        stderr_truncated: first.stderr_truncated,
    };
    let join = |acc: &mut Vec<u8>, more: &[u8]| {
        if !acc.is_empty() {
            acc.push(b'\n');
        }
        acc.extend_from_slice(more);
    };
    for r in &mine[1..] {
        join(&mut out.stdout, &r.stdout);
        join(&mut out.stderr, &r.stderr);
        out.stdout_truncated |= r.stdout_truncated;
        out.stderr_truncated |= r.stderr_truncated;
        if out.response_code == 0 {
            out.response_code = r.response_code;
        }
        if status_rank(&r.status) > status_rank(&out.status) {
            out.status = r.status.clone();
            out.status_details = r.status_details.clone();
        }
        out.start_ms = match (out.start_ms, r.start_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        out.end_ms = out.end_ms.zip(r.end_ms).map(|(a, b)| a.max(b));
    }
    // Steps still to report: the plugin is not done while the invocation runs.
    if running && mine.len() < plugin.steps.len() && status_rank(&out.status) < 3 {
        out.status = "InProgress".into();
        out.status_details = "In Progress".into();
        out.end_ms = None;
    }
    Some(out)
}

fn plugin_json(name: &str, p: &PluginResult) -> Value {
    let mut output = String::from_utf8_lossy(&p.stdout).into_owned();
    if !p.stderr.is_empty() {
        output.push_str("\n----------ERROR-------\n");
        output.push_str(&String::from_utf8_lossy(&p.stderr));
    }
    let mut v = json!({
        "Name": name,
        "Status": p.status,
        "StatusDetails": p.status_details,
        "ResponseCode": p.response_code,
        "Output": truncate_output(output.as_bytes(), limits::LIST_INVOCATIONS_OUTPUT_CHARS,
            p.stdout_truncated || p.stderr_truncated),
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "OutputS3Region": "",
        "OutputS3BucketName": "",
        "OutputS3KeyPrefix": "",
    });
    if let Some(t) = p.start_ms {
        v["ResponseStartDateTime"] = ts(t);
    }
    if let Some(t) = p.end_ms {
        v["ResponseFinishDateTime"] = ts(t);
    }
    v
}

/// Whether an invocation status is not yet final.
fn running(status: &str) -> bool {
    matches!(status, "Pending" | "InProgress" | "Delayed" | "Cancelling")
}

pub(super) async fn list_invocations(
    c: &Coordinator,
    r: ListCommandInvocationsRequest,
) -> Result<Value, ApiError> {
    let op = "ListCommandInvocations";
    let page = Page::of(
        op,
        r.next_token.as_deref(),
        r.max_results,
        limits::DEFAULT_PAGE_SIZE,
    )?;
    let q = command_page(
        c,
        op,
        r.command_id.as_deref(),
        r.instance_id.as_deref(),
        r.filters.as_deref().unwrap_or_default(),
        page,
    )
    .await?;
    let details = r.details.unwrap_or(false);
    let rows = c.store.invocations(&q).await?;
    let mut packer = page.packer();
    // Each command's plugins, read once per page.
    let mut layouts: BTreeMap<String, Vec<PluginLayout>> = BTreeMap::new();
    for (inv, cmd) in &rows {
        let mut v = invocation_json(inv, cmd);
        if details {
            // What Output shows of each step, not the whole of it.
            let reported = c
                .store
                .plugins_head(
                    &inv.command_id,
                    &inv.instance_id,
                    limits::LIST_INVOCATIONS_OUTPUT_BYTES,
                )
                .await?;
            if !layouts.contains_key(&inv.command_id) {
                let layout = plugin_layout_of(c, &inv.command_id).await?;
                layouts.insert(inv.command_id.clone(), layout);
            }
            let layout = layouts.get(&inv.command_id).cloned().unwrap_or_default();
            let plugins = invocation_plugins(layout, &reported);
            let live = running(&inv.status);
            v["CommandPlugins"] = Value::Array(
                plugins
                    .iter()
                    .map(|p| match merge_rows(p, &reported, live) {
                        Some(result) => plugin_json(&p.name, &result),
                        None => json!({"Name": p.name, "Status": inv.status, "StatusDetails": inv.status_details,
                                       "ResponseCode": inv.response_code, "Output": "",
                                       "StandardOutputUrl": "", "StandardErrorUrl": "",
                                       "OutputS3Region": "", "OutputS3BucketName": "", "OutputS3KeyPrefix": ""}),
                    })
                    .collect(),
            );
        }
        if !packer.push(v) {
            break;
        }
    }
    let consumed = packer.len();
    let more = consumed < rows.len() || rows.len() as i64 >= page.size;
    Ok(page.answer("CommandInvocations", packer, consumed, more))
}

fn invocation_json(inv: &InvocationRow, cmd: &CommandBrief) -> Value {
    let mut v = json!({
        "CommandId": inv.command_id,
        "InstanceId": inv.instance_id,
        "InstanceName": inv.instance_name,
        "Comment": cmd.comment,
        "DocumentName": cmd.document_name,
        "DocumentVersion": answered_version(cmd),
        "RequestedDateTime": ts(inv.requested_ms),
        "Status": inv.status,
        "StatusDetails": inv.status_details,
        "TraceOutput": "",
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "CommandPlugins": [],
        "ServiceRole": "",
        "NotificationConfig": {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""},
        "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": false},
    });
    add_document_extras(&mut v, cmd);
    v
}

pub(super) async fn get_invocation(
    c: &Coordinator,
    r: GetCommandInvocationRequest,
) -> Result<Value, ApiError> {
    let (command_id, instance_id) = (r.command_id.as_str(), r.instance_id.as_str());
    if !ids::is_uuid(command_id) {
        return Err(ApiError::new(
            "InvalidCommandId",
            format!("GetCommandInvocation: {command_id:?} is not a command ID (a lowercase UUID)"),
        ));
    }
    let full = r.full_output.unwrap_or(false);
    let q = CommandQuery {
        command_id: Some(command_id.to_string()),
        instance_id: Some(instance_id.to_string()),
        limit: 1,
        ..Default::default()
    };
    let rows = c.store.invocations(&q).await?;
    let Some((inv, cmd)) = rows.first() else {
        return Err(ApiError::new(
            "InvocationDoesNotExist",
            format!(
                "GetCommandInvocation: command {command_id} has no invocation on {instance_id}"
            ),
        ));
    };
    let reported = c.store.plugins(command_id, instance_id).await?;
    let plugins = invocation_plugins(plugin_layout_of(c, command_id).await?, &reported);
    let names: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
    // A plugin by SSM's name, or one step by its own (a 1.2 property id
    // such as `0.aws:runShellScript`, as Tether named them before).
    let chosen: Option<PluginLayout> = match r.plugin_name.as_deref() {
        Some(name) => match plugins.iter().find(|p| p.name == name) {
            Some(p) => Some(p.clone()),
            None if plugins.iter().any(|p| p.steps.iter().any(|s| s == name)) => {
                Some(PluginLayout {
                    name: name.to_owned(),
                    steps: vec![name.to_owned()],
                })
            }
            None => {
                return Err(ApiError::new(
                    "InvalidPluginName",
                    format!(
                        "GetCommandInvocation: the document has no plugin {name:?} (plugins: {})",
                        names.join(", ")
                    ),
                ));
            }
        },
        None if plugins.len() > 1 && !reported.is_empty() => {
            return Err(ApiError::new(
                "InvalidPluginName",
                format!(
                    "GetCommandInvocation: the document has {} plugins ({}); name one with PluginName",
                    plugins.len(),
                    names.join(", ")
                ),
            ));
        }
        None => plugins.first().cloned(),
    };
    let result = chosen
        .as_ref()
        .and_then(|p| merge_rows(p, &reported, running(&inv.status)));
    let (stdout, stderr) = match &result {
        Some(p) if full => (
            full_output(&p.stdout, p.stdout_truncated),
            full_output(&p.stderr, p.stderr_truncated),
        ),
        Some(p) => (
            truncate_output(
                &p.stdout,
                limits::GET_INVOCATION_STDOUT_CHARS,
                p.stdout_truncated,
            ),
            truncate_output(
                &p.stderr,
                limits::GET_INVOCATION_STDERR_CHARS,
                p.stderr_truncated,
            ),
        ),
        None => (String::new(), String::new()),
    };
    let (status, details, code, start, end) = match result {
        Some(p) => (
            p.status,
            p.status_details,
            p.response_code,
            p.start_ms,
            p.end_ms,
        ),
        None => (
            inv.status.clone(),
            inv.status_details.clone(),
            inv.response_code,
            inv.start_ms,
            inv.end_ms,
        ),
    };
    let elapsed = match (start, end) {
        (Some(s), Some(e)) if e >= s => format!("PT{:.3}S", (e - s) as f64 / 1000.0),
        _ => String::new(),
    };
    let mut v = json!({
        "CommandId": inv.command_id,
        "InstanceId": inv.instance_id,
        "Comment": cmd.comment,
        "DocumentName": cmd.document_name,
        "DocumentVersion": answered_version(cmd),
        "PluginName": chosen.map(|p| p.name).unwrap_or_default(),
        "ResponseCode": code,
        "ExecutionStartDateTime": string_time(start),
        "ExecutionElapsedTime": elapsed,
        "ExecutionEndDateTime": string_time(end),
        "Status": status,
        "StatusDetails": details,
        "StandardOutputContent": stdout,
        "StandardOutputUrl": "",
        "StandardErrorContent": stderr,
        "StandardErrorUrl": "",
        "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": false},
    });
    add_document_extras(&mut v, cmd);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_truncation_counts_characters_and_ends_with_the_marker() {
        assert_eq!(truncate_output(b"hello", 10, false), "hello");
        let long = "é".repeat(30_000);
        let cut = truncate_output(long.as_bytes(), 24_000, false);
        assert_eq!(cut.chars().count(), 24_000);
        assert!(cut.ends_with("--output truncated--"));
        let cut = truncate_output(b"short", 8_000, true);
        assert!(cut.starts_with("short") && cut.ends_with("--output truncated--"));
        assert_eq!(truncate_output(&[0xff, b'a'], 10, false), "\u{fffd}a");
    }

    fn row(name: &str, status: &str, code: i64, out: &str, err: &str) -> PluginRow {
        PluginRow {
            seq: 0,
            name: name.into(),
            status: status.into(),
            status_details: status.into(),
            response_code: code,
            start_ms: Some(10),
            end_ms: Some(20),
            stdout: out.as_bytes().to_vec(),
            stderr: err.as_bytes().to_vec(),
            stdout_truncated: false,
            stderr_truncated: false,
        }
    }

    #[test]
    fn schema_1_2_properties_are_one_plugin_named_as_ssm_names_it() {
        let steps = [
            ("0.aws:runShellScript", "aws:runShellScript"),
            ("1.aws:runShellScript", "aws:runShellScript"),
            ("0.aws:runPowerShellScript", "aws:runPowerShellScript"),
        ];
        let layout = group_steps("1.2", steps.iter().copied());
        assert_eq!(
            layout,
            [
                PluginLayout {
                    name: "aws:runShellScript".into(),
                    steps: vec!["0.aws:runShellScript".into(), "1.aws:runShellScript".into()],
                },
                PluginLayout {
                    name: "aws:runPowerShellScript".into(),
                    steps: vec!["0.aws:runPowerShellScript".into()],
                },
            ]
        );
        // 2.2 steps are plugins under their own names.
        let two = group_steps(
            "2.2",
            [
                ("first", "aws:runShellScript"),
                ("second", "aws:runShellScript"),
            ]
            .into_iter(),
        );
        assert_eq!(
            two.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["first", "second"]
        );

        // Properties merge as amazon-ssm-agent merges them: outputs joined
        // after each non-empty one, first non-zero code, worst status.
        let rows = [
            row("0.aws:runShellScript", "Success", 0, "a\n", ""),
            row("1.aws:runShellScript", "Failed", 3, "b\n", "oops\n"),
        ];
        let merged = merge_rows(&layout[0], &rows, false).unwrap();
        assert_eq!(String::from_utf8_lossy(&merged.stdout), "a\n\nb\n");
        assert_eq!(String::from_utf8_lossy(&merged.stderr), "oops\n");
        assert_eq!(
            (merged.status.as_str(), merged.response_code),
            ("Failed", 3)
        );
        // Only the first property has reported while the invocation runs.
        let merged = merge_rows(&layout[0], &rows[..1], true).unwrap();
        assert_eq!(merged.status, "InProgress");
        assert_eq!(merged.end_ms, None);
        assert!(merge_rows(&layout[1], &rows, true).is_none());

        // Rows the layout does not know (a bridged instance's) answer as reported.
        let bridged = [row("aws:runShellScript", "Success", 0, "", "")];
        let plugins = invocation_plugins(layout.clone(), &bridged);
        assert_eq!(plugins.len(), 1);
        assert_eq!(plugins[0].steps, ["aws:runShellScript"]);
        assert_eq!(invocation_plugins(layout.clone(), &rows), layout);
    }
}
