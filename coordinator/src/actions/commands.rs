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
use crate::core::Coordinator;

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

async fn prepare(c: &Coordinator, r: &SendCommandRequest) -> Result<Prepared, ApiError> {
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
        .resolve_parameters(&given)
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
async fn store_command(
    c: &Coordinator,
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
    c.store.insert_command(&row, &pairs).await?;
    Ok(row)
}

/// Ends at once the invocations that can never be delivered (unknown or
/// deregistered instances) and wakes the agents of the others.
async fn dispatch_command(
    c: &Coordinator,
    command_id: &str,
    reached: &[(String, Option<InstanceRow>)],
) -> Result<(), ApiError> {
    let now = now_ms();
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
        } else {
            c.ring(id);
        }
    }
    Ok(())
}

pub(super) async fn send(c: &Coordinator, r: SendCommandRequest) -> Result<Value, ApiError> {
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
    let prepared = prepare(c, &r).await?;
    let (doc, version) = (&prepared.found.doc, prepared.found.version.to_string());
    let resolved = json!(prepared.resolved).to_string();
    let parts = [
        &*doc.content,
        &resolved,
        &r.document_name,
        &version,
        &doc.hash(),
    ];
    super::sizes::check_envelope("SendCommand", "the command", &parts)?;
    let reached = resolve_targets(c, &instance_ids, &targets).await?;
    if reached.is_empty() {
        return Err(ApiError::new(
            "InvalidTarget",
            "SendCommand: No Instances In Tag: the targets match no managed instance",
        ));
    }
    let row = store_command(c, &r, &prepared, &reached, (max_concurrency, max_errors)).await?;
    dispatch_command(c, &row.command_id, &reached).await?;
    let row = c.store.command(&row.command_id).await?.unwrap_or(row);
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
        if let store::CancelOutcome::Cancelling(id) = outcome {
            c.ring(&id);
        }
    }
    Ok(json!({}))
}

fn command_json(c: &CommandRow) -> Result<Value, ApiError> {
    let row = format!("command {}", c.command_id);
    let parameters: Value = stored(&format!("{row}: parameters"), &c.parameters_json)?;
    let instance_ids: Value = stored(&format!("{row}: instance IDs"), &c.instance_ids_json)?;
    let targets: Value = stored(&format!("{row}: targets"), &c.targets_json)?;
    Ok(json!({
        "CommandId": c.command_id,
        "DocumentName": c.document_name,
        "DocumentVersion": c.document_version,
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
    }))
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
    let q = command_page(
        c,
        op,
        r.command_id.as_deref(),
        r.instance_id.as_deref(),
        r.filters.as_deref().unwrap_or_default(),
        page,
    )
    .await?;
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

/// The names of the steps the command runs (on Linux), before any reported.
fn step_names(cmd: &CommandRow) -> Result<Vec<String>, ApiError> {
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
    Ok(doc
        .plan(&params, PlatformType::Linux)
        .map(|steps| steps.into_iter().map(|s| s.name).collect())
        .unwrap_or_default())
}

/// The step names of a stored command (see [`step_names`]).
async fn step_names_of(c: &Coordinator, command_id: &str) -> Result<Vec<String>, ApiError> {
    match c.store.command(command_id).await? {
        Some(cmd) => step_names(&cmd),
        // Pruned since its invocations were read.
        None => Ok(Vec::new()),
    }
}

fn plugin_json(p: &PluginRow) -> Value {
    let mut output = String::from_utf8_lossy(&p.stdout).into_owned();
    if !p.stderr.is_empty() {
        output.push_str("\n----------ERROR-------\n");
        output.push_str(&String::from_utf8_lossy(&p.stderr));
    }
    let mut v = json!({
        "Name": p.name,
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
    for (inv, cmd) in &rows {
        let mut v = invocation_json(inv, cmd);
        if details {
            let plugins = c
                .store
                .plugins_head(
                    &inv.command_id,
                    &inv.instance_id,
                    limits::LIST_INVOCATIONS_OUTPUT_BYTES,
                )
                .await?;
            v["CommandPlugins"] = if plugins.is_empty() {
                Value::Array(
                    step_names_of(c, &inv.command_id)
                        .await?
                        .into_iter()
                        .map(|name| {
                            json!({"Name": name, "Status": inv.status, "StatusDetails": inv.status_details,
                                   "ResponseCode": inv.response_code, "Output": "",
                                   "StandardOutputUrl": "", "StandardErrorUrl": "",
                                   "OutputS3Region": "", "OutputS3BucketName": "", "OutputS3KeyPrefix": ""})
                        })
                        .collect(),
                )
            } else {
                Value::Array(plugins.iter().map(plugin_json).collect())
            };
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
    json!({
        "CommandId": inv.command_id,
        "InstanceId": inv.instance_id,
        "InstanceName": inv.instance_name,
        "Comment": cmd.comment,
        "DocumentName": cmd.document_name,
        "DocumentVersion": cmd.document_version,
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
    })
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
    let plugins = c.store.plugins(command_id, instance_id).await?;
    let names: Vec<String> = if plugins.is_empty() {
        step_names_of(c, command_id).await?
    } else {
        plugins.iter().map(|p| p.name.clone()).collect()
    };
    let plugin_name = match r.plugin_name.as_deref() {
        Some(name) if !names.iter().any(|n| n == name) => {
            return Err(ApiError::new(
                "InvalidPluginName",
                format!(
                    "GetCommandInvocation: the document has no step {name:?} (steps: {})",
                    names.join(", ")
                ),
            ));
        }
        Some(name) => name.to_string(),
        None if names.len() > 1 && !plugins.is_empty() => {
            return Err(ApiError::new(
                "InvalidPluginName",
                format!(
                    "GetCommandInvocation: the document has {} steps ({}); name one with PluginName",
                    names.len(),
                    names.join(", ")
                ),
            ));
        }
        None => names.first().cloned().unwrap_or_default(),
    };
    let plugin = plugins.iter().find(|p| p.name == plugin_name);
    let (stdout, stderr) = match plugin {
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
    let (status, details, code, start, end) = match plugin {
        Some(p) => (
            p.status.clone(),
            p.status_details.clone(),
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
    Ok(json!({
        "CommandId": inv.command_id,
        "InstanceId": inv.instance_id,
        "Comment": cmd.comment,
        "DocumentName": cmd.document_name,
        "DocumentVersion": cmd.document_version,
        "PluginName": plugin_name,
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
    }))
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
}
