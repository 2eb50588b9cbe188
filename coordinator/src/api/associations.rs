//! State Manager associations in SSM JSON: CreateAssociation,
//! ListAssociations, DescribeAssociation, UpdateAssociation,
//! DeleteAssociation and DescribeInstanceAssociationsStatus.
//!
//! The schedule itself runs on the agents (see `crate::associations`); here
//! we validate, store, and add up the per-instance outcomes the agents report
//! into each association's overview.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{
    ApiError, ApiResult, Req, is_instance_id, is_uuid, page_of, parameters_of, resolve_targets,
    str_list_of, tag_pairs, ts, valid_rate, validate_targets,
};
use crate::associations::ring_all;
use crate::core::Coordinator;
use tether_store::{AssociationRow, AssociationStatusRow, InstanceRow};
use tether_util::time::now_ms;

/// Members of the SSM model that Tether does not implement, and why.
const UNSUPPORTED: [(&str, &str); 10] = [
    ("OutputLocation", "output is kept in the coordinator"),
    (
        "AutomationTargetParameterName",
        "Automation documents are not supported",
    ),
    ("CalendarNames", "Change Calendar is not supported"),
    (
        "TargetLocations",
        "there is one coordinator, not accounts and Regions",
    ),
    ("TargetMaps", "use Targets"),
    ("AlarmConfiguration", "alarms are not supported"),
    ("ScheduleOffset", "agents add their own upload jitter"),
    ("Duration", "runs are not cut off by a window"),
    ("AssociationDispatchAssumeRole", "there are no IAM roles"),
    ("Tags", "tags on associations are not supported"),
];

const SEVERITIES: [&str; 5] = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNSPECIFIED"];

fn refuse_unsupported(req: &Req<'_>) -> Result<(), ApiError> {
    for (member, why) in UNSUPPORTED {
        if req.body.get(member).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::validation(format!(
                "{}: {member} is not supported by Tether ({why})",
                req.op
            )));
        }
    }
    Ok(())
}

/// Whether `a` targets `inst`: its legacy InstanceId, `InstanceIds` targets,
/// `tag:<key>` and `tag-key` targets, as SendCommand resolves them.
pub fn targets_match(a: &AssociationRow, inst: &InstanceRow) -> bool {
    if a.instance_id == inst.instance_id {
        return true;
    }
    let targets: Vec<Value> = serde_json::from_str(&a.targets_json).unwrap_or_default();
    let tags = tag_pairs(&inst.tags_json);
    targets.iter().any(|t| {
        let key = t.get("Key").and_then(Value::as_str).unwrap_or("");
        let values = t.get("Values").and_then(str_list_of).unwrap_or_default();
        if key.eq_ignore_ascii_case("InstanceIds") {
            values.iter().any(|v| *v == inst.instance_id || v == "*")
        } else if key == "tag-key" {
            tags.iter().any(|(k, _)| values.contains(k))
        } else if let Some(tag) = key.strip_prefix("tag:") {
            tags.iter().any(|(k, v)| k == tag && values.contains(v))
        } else {
            false
        }
    })
}

fn targets_of(req: &Req<'_>) -> Result<Vec<Value>, ApiError> {
    let targets = req.list("Targets")?;
    validate_targets(req.op, targets)?;
    for t in targets {
        let key = t.get("Key").and_then(Value::as_str).unwrap_or("");
        let values = t.get("Values").and_then(str_list_of).unwrap_or_default();
        if key.eq_ignore_ascii_case("InstanceIds")
            && let Some(bad) = values.iter().find(|v| *v != "*" && !is_instance_id(v))
        {
            return Err(ApiError::new(
                "InvalidTarget",
                format!(
                    "{}: {bad:?} is not an instance ID (mi- or i- and hex digits)",
                    req.op
                ),
            ));
        }
    }
    // Keep the operator's spelling of the key (`instanceids` in the tutorial).
    Ok(targets.to_vec())
}

/// The document (built-in or stored, at the requested version), its version
/// number, and the parameters resolved against it.
async fn document_and_parameters(
    c: &Coordinator,
    req: &Req<'_>,
    name: &str,
    version: Option<&str>,
    given: &BTreeMap<String, Vec<String>>,
) -> Result<
    (
        tether_documents::Document,
        i64,
        BTreeMap<String, Vec<String>>,
    ),
    ApiError,
> {
    let found = super::documents::find(c, req.op, name, version, None).await?;
    let resolved = found
        .doc
        .resolve_parameters(given)
        .map_err(|e| ApiError::new("InvalidParameters", format!("{}: {e}", req.op)))?;
    Ok((found.doc, found.version, resolved))
}

fn schedule_of(req: &Req<'_>, expr: &str, only_at_cron: bool) -> Result<(), ApiError> {
    if expr.is_empty() {
        if only_at_cron {
            return Err(ApiError::validation(format!(
                "{}: ApplyOnlyAtCronInterval needs a cron ScheduleExpression",
                req.op
            )));
        }
        return Ok(());
    }
    let s = tether_schedule::parse(expr)
        .map_err(|e| ApiError::new("InvalidSchedule", format!("{}: {e}", req.op)))?;
    if only_at_cron && !s.is_cron() {
        return Err(ApiError::validation(format!(
            "{}: ApplyOnlyAtCronInterval applies to cron expressions only, not {expr:?}",
            req.op
        )));
    }
    Ok(())
}

fn check_common(req: &Req<'_>) -> Result<(), ApiError> {
    refuse_unsupported(req)?;
    if let Some(n) = req.str("AssociationName")?
        && (n.len() < 3
            || n.len() > 128
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
    {
        return Err(ApiError::validation(format!(
            "{}: AssociationName {n:?} must be 3 to 128 letters, digits, _, - and .",
            req.op
        )));
    }
    for (member, zero_ok) in [("MaxConcurrency", false), ("MaxErrors", true)] {
        if let Some(v) = req.str(member)?
            && !valid_rate(v, zero_ok)
        {
            return Err(ApiError::validation(format!(
                "{}: {member} {v:?} must be a number or a percentage (e.g. 10 or 10%)",
                req.op
            )));
        }
    }
    if let Some(s) = req.str("ComplianceSeverity")?
        && !SEVERITIES.contains(&s)
    {
        return Err(ApiError::validation(format!(
            "{}: ComplianceSeverity {s:?} must be one of {}",
            req.op,
            SEVERITIES.join(", ")
        )));
    }
    if let Some(s) = req.str("SyncCompliance")?
        && s != "AUTO"
    {
        return Err(ApiError::validation(format!(
            "{}: SyncCompliance {s:?} is not supported (only AUTO)",
            req.op
        )));
    }
    Ok(())
}

/// Per-instance outcomes, Pending for targeted instances that have not reported yet.
async fn statuses(
    c: &Coordinator,
    a: &AssociationRow,
) -> Result<Vec<AssociationStatusRow>, ApiError> {
    let mut rows = c.store.association_statuses(&a.association_id).await?;
    let targets: Vec<Value> = serde_json::from_str(&a.targets_json).unwrap_or_default();
    let legacy: Vec<String> = (!a.instance_id.is_empty())
        .then(|| a.instance_id.clone())
        .into_iter()
        .collect();
    for (id, row) in resolve_targets(c, &legacy, &targets).await? {
        if row.is_some() && !rows.iter().any(|r| r.instance_id == id) {
            rows.push(AssociationStatusRow {
                association_id: a.association_id.clone(),
                instance_id: id,
                association_version: a.association_version.to_string(),
                status: "Pending".into(),
                detail: "Associated".into(),
                output: String::new(),
                execution_ms: a.updated_ms,
            });
        }
    }
    Ok(rows)
}

fn overview(rows: &[AssociationStatusRow]) -> Value {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for r in rows {
        *counts.entry(r.status.as_str()).or_default() += 1;
    }
    let status = if counts.contains_key("Failed") {
        "Failed"
    } else if counts.contains_key("Pending") || rows.is_empty() {
        "Pending"
    } else {
        "Success"
    };
    let detailed = if rows.is_empty() { "Creating" } else { status };
    json!({
        "Status": status,
        "DetailedStatus": detailed,
        "AssociationStatusAggregatedCount": counts,
    })
}

fn base_json(a: &AssociationRow, rows: &[AssociationStatusRow]) -> Value {
    let mut v = json!({
        "Name": a.document_name,
        "AssociationId": a.association_id,
        "AssociationVersion": a.association_version.to_string(),
        "DocumentVersion": a.document_version,
        "Targets": serde_json::from_str::<Value>(&a.targets_json).unwrap_or_else(|_| json!([])),
        "Overview": overview(rows),
    });
    if !a.instance_id.is_empty() {
        v["InstanceId"] = json!(a.instance_id);
    }
    if !a.schedule_expression.is_empty() {
        v["ScheduleExpression"] = json!(a.schedule_expression);
    }
    if !a.association_name.is_empty() {
        v["AssociationName"] = json!(a.association_name);
    }
    if let Some(t) = a.last_execution_ms {
        v["LastExecutionDate"] = ts(t);
    }
    v
}

fn description_json(a: &AssociationRow, rows: &[AssociationStatusRow]) -> Value {
    let mut v = base_json(a, rows);
    let o = overview(rows);
    let params: Value = serde_json::from_str(&a.parameters_json).unwrap_or_else(|_| json!({}));
    let m = v.as_object_mut();
    if let Some(m) = m {
        m.insert("Date".into(), ts(a.created_ms));
        m.insert("LastUpdateAssociationDate".into(), ts(a.updated_ms));
        m.insert(
            "Status".into(),
            json!({
                "Date": ts(a.last_execution_ms.unwrap_or(a.updated_ms)),
                "Name": o["Status"],
                "Message": format!("{} instance(s) targeted", rows.len()),
            }),
        );
        m.insert("Parameters".into(), params);
        m.insert(
            "ApplyOnlyAtCronInterval".into(),
            json!(a.apply_only_at_cron_interval),
        );
        if let Some(t) = a.last_success_ms {
            m.insert("LastSuccessfulExecutionDate".into(), ts(t));
        }
        for (k, val) in [
            ("MaxConcurrency", &a.max_concurrency),
            ("MaxErrors", &a.max_errors),
            ("ComplianceSeverity", &a.compliance_severity),
        ] {
            if !val.is_empty() {
                m.insert(k.into(), json!(val));
            }
        }
    }
    v
}

pub(super) async fn create_association(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    check_common(req)?;
    let name = req.required_str("Name")?;
    let instance_id = req.str("InstanceId")?.unwrap_or("");
    let targets = targets_of(req)?;
    match (instance_id.is_empty(), targets.is_empty()) {
        (true, true) => {
            return Err(ApiError::validation(
                "CreateAssociation: give Targets (e.g. Key=InstanceIds,Values=mi-...) or InstanceId",
            ));
        }
        (false, false) => {
            return Err(ApiError::validation(
                "CreateAssociation: give either Targets or InstanceId, not both",
            ));
        }
        _ => {}
    }
    if !instance_id.is_empty() && !is_instance_id(instance_id) {
        return Err(ApiError::new(
            "InvalidInstanceId",
            format!("CreateAssociation: {instance_id:?} is not an instance ID"),
        ));
    }
    let schedule = req.str("ScheduleExpression")?.unwrap_or("").trim();
    let only_cron = req.bool("ApplyOnlyAtCronInterval")?;
    schedule_of(req, schedule, only_cron)?;
    let given = parameters_of(req)?;
    let (doc, version, resolved) =
        document_and_parameters(c, req, name, req.str("DocumentVersion")?, &given).await?;
    let now = now_ms();
    let a = AssociationRow {
        association_id: uuid::Uuid::new_v4().to_string(),
        association_name: req.str("AssociationName")?.unwrap_or("").to_string(),
        document_name: name.to_string(),
        document_version: version.to_string(),
        document_hash: doc.hash(),
        document_content: doc.content.clone(),
        association_version: 1,
        parameters_json: serde_json::to_string(&given).unwrap_or_default(),
        resolved_json: serde_json::to_string(&resolved).unwrap_or_default(),
        targets_json: Value::Array(targets).to_string(),
        instance_id: instance_id.to_string(),
        schedule_expression: schedule.to_string(),
        apply_only_at_cron_interval: only_cron,
        max_concurrency: req.str("MaxConcurrency")?.unwrap_or("").to_string(),
        max_errors: req.str("MaxErrors")?.unwrap_or("").to_string(),
        compliance_severity: req.str("ComplianceSeverity")?.unwrap_or("").to_string(),
        created_ms: now,
        updated_ms: now,
        last_execution_ms: None,
        last_success_ms: None,
    };
    if !a.association_name.is_empty()
        && c.store
            .associations()
            .await?
            .iter()
            .any(|x| x.association_name == a.association_name)
    {
        return Err(ApiError::new(
            "AssociationAlreadyExists",
            format!(
                "CreateAssociation: an association named {:?} already exists",
                a.association_name
            ),
        ));
    }
    c.store.insert_association(&a).await?;
    ring_all(c).await?;
    let rows = statuses(c, &a).await?;
    Ok(json!({ "AssociationDescription": description_json(&a, &rows) }))
}

/// The association a request names: AssociationId, or Name and InstanceId.
async fn named(c: &Coordinator, req: &Req<'_>) -> Result<AssociationRow, ApiError> {
    let missing = |what: String| {
        ApiError::new(
            "AssociationDoesNotExist",
            format!("{}: {what} does not exist", req.op),
        )
    };
    if let Some(id) = req.str("AssociationId")? {
        if !is_uuid(id) {
            return Err(ApiError::validation(format!(
                "{}: AssociationId {id:?} is not an association ID (a lowercase UUID)",
                req.op
            )));
        }
        return c
            .store
            .association(id)
            .await?
            .ok_or_else(|| missing(format!("association {id}")));
    }
    match (req.str("Name")?, req.str("InstanceId")?) {
        (Some(name), Some(instance)) => c
            .store
            .associations()
            .await?
            .into_iter()
            .find(|a| a.document_name == name && a.instance_id == instance)
            .ok_or_else(|| missing(format!("an association of {name} with {instance}"))),
        _ => Err(ApiError::validation(format!(
            "{}: give AssociationId, or Name and InstanceId",
            req.op
        ))),
    }
}

/// Only the latest version is kept: an AssociationVersion must name it.
fn check_version(req: &Req<'_>, a: &AssociationRow) -> Result<(), ApiError> {
    match req.str("AssociationVersion")? {
        Some(v) if v != "$LATEST" && v != a.association_version.to_string() => Err(ApiError::new(
            "InvalidAssociationVersion",
            format!(
                "{}: association {} is at version {}; only the latest version is kept (got {v:?})",
                req.op, a.association_id, a.association_version
            ),
        )),
        _ => Ok(()),
    }
}

pub(super) async fn describe_association(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let a = named(c, req).await?;
    check_version(req, &a)?;
    let rows = statuses(c, &a).await?;
    Ok(json!({ "AssociationDescription": description_json(&a, &rows) }))
}

pub(super) async fn update_association(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    check_common(req)?;
    let id = req.required_str("AssociationId")?;
    let mut a = named(c, req).await?;
    check_version(req, &a)?;
    if let Some(n) = req.str("AssociationName")? {
        a.association_name = n.to_string();
    }
    if req.body.get("Targets").is_some_and(|t| !t.is_null()) {
        let targets = targets_of(req)?;
        if targets.is_empty() && a.instance_id.is_empty() {
            return Err(ApiError::validation(
                "UpdateAssociation: Targets cannot be empty",
            ));
        }
        a.targets_json = Value::Array(targets).to_string();
    }
    if let Some(s) = req.str("ScheduleExpression")? {
        a.schedule_expression = s.trim().to_string();
    }
    if req.body.contains_key("ApplyOnlyAtCronInterval") {
        a.apply_only_at_cron_interval = req.bool("ApplyOnlyAtCronInterval")?;
    }
    schedule_of(req, &a.schedule_expression, a.apply_only_at_cron_interval)?;
    let name = req.str("Name")?.unwrap_or(&a.document_name).to_string();
    let given = if req.body.get("Parameters").is_some_and(|p| !p.is_null()) {
        parameters_of(req)?
    } else if name == a.document_name {
        serde_json::from_str(&a.parameters_json).unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    // Without a DocumentVersion the association keeps the version it had.
    let doc_version = req
        .str("DocumentVersion")?
        .map(str::to_string)
        .or_else(|| (name == a.document_name).then(|| a.document_version.clone()));
    let (doc, version, resolved) =
        document_and_parameters(c, req, &name, doc_version.as_deref(), &given).await?;
    a.document_name = name;
    a.document_version = version.to_string();
    a.document_hash = doc.hash();
    a.document_content = doc.content.clone();
    a.parameters_json = serde_json::to_string(&given).unwrap_or_default();
    a.resolved_json = serde_json::to_string(&resolved).unwrap_or_default();
    for (member, field) in [
        ("MaxConcurrency", &mut a.max_concurrency),
        ("MaxErrors", &mut a.max_errors),
        ("ComplianceSeverity", &mut a.compliance_severity),
    ] {
        if let Some(v) = req.str(member)? {
            *field = v.to_string();
        }
    }
    a.association_version += 1;
    a.updated_ms = now_ms();
    if !c.store.update_association(&a).await? {
        return Err(ApiError::new(
            "AssociationDoesNotExist",
            format!("UpdateAssociation: association {id} does not exist"),
        ));
    }
    ring_all(c).await?;
    let rows = statuses(c, &a).await?;
    Ok(json!({ "AssociationDescription": description_json(&a, &rows) }))
}

pub(super) async fn delete_association(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let a = named(c, req).await?;
    c.store.delete_association(&a.association_id).await?;
    ring_all(c).await?;
    Ok(json!({}))
}

const LIST_FILTER_KEYS: [&str; 7] = [
    "InstanceId",
    "Name",
    "AssociationId",
    "AssociationStatusName",
    "LastExecutedBefore",
    "LastExecutedAfter",
    "AssociationName",
];

pub(super) async fn list_associations(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let (offset, size) = req.page(1, 50)?;
    let mut filters = Vec::new();
    for f in req.list("AssociationFilterList")? {
        let key = f.get("key").and_then(Value::as_str).unwrap_or("");
        let value = f.get("value").and_then(Value::as_str).unwrap_or("");
        if !LIST_FILTER_KEYS.contains(&key) {
            return Err(ApiError::validation(format!(
                "ListAssociations: filter key {key:?} must be one of {}",
                LIST_FILTER_KEYS.join(", ")
            )));
        }
        if value.is_empty() {
            return Err(ApiError::validation(format!(
                "ListAssociations: filter {key:?} needs a value"
            )));
        }
        let time = if key.starts_with("LastExecuted") {
            Some(super::parse_time_ms(value).ok_or_else(|| {
                ApiError::validation(format!(
                    "ListAssociations: {key} {value:?} is not a timestamp"
                ))
            })?)
        } else {
            None
        };
        filters.push((key, value, time));
    }
    let mut out = Vec::new();
    for a in c.store.associations().await? {
        let rows = statuses(c, &a).await?;
        let o = overview(&rows);
        let keep = filters.iter().all(|(k, v, t)| match *k {
            "InstanceId" => a.instance_id == *v || rows.iter().any(|r| r.instance_id == *v),
            "Name" => a.document_name == *v,
            "AssociationId" => a.association_id == *v,
            "AssociationName" => a.association_name == *v,
            "AssociationStatusName" => o["Status"] == *v,
            "LastExecutedBefore" => a.last_execution_ms.zip(*t).is_some_and(|(x, t)| x < t),
            _ => a.last_execution_ms.zip(*t).is_some_and(|(x, t)| x > t),
        });
        if keep {
            out.push(base_json(&a, &rows));
        }
    }
    Ok(page_of("Associations", out, offset, size))
}

pub(super) async fn describe_instance_associations_status(
    c: &Coordinator,
    req: &Req<'_>,
) -> ApiResult {
    let id = req.required_str("InstanceId")?;
    let (offset, size) = req.page(1, 50)?;
    let Some(inst) = c.store.instance(id).await? else {
        return Err(ApiError::new(
            "InvalidInstanceId",
            format!("DescribeInstanceAssociationsStatus: instance {id} is not registered"),
        ));
    };
    let reported = c.store.instance_association_statuses(id).await?;
    let mut out = Vec::new();
    for a in c.store.associations().await? {
        let row = reported
            .iter()
            .find(|r| r.association_id == a.association_id);
        if row.is_none() && !targets_match(&a, &inst) {
            continue;
        }
        let (status, detail, summary, when, version) = match row {
            Some(r) => (
                r.status.clone(),
                r.status.clone(),
                if r.detail.is_empty() {
                    r.output.clone()
                } else {
                    format!("{}: {}", r.detail, r.output)
                },
                r.execution_ms,
                r.association_version.clone(),
            ),
            None => (
                "Pending".into(),
                "Associated".into(),
                "waiting for the agent's first run".into(),
                a.updated_ms,
                a.association_version.to_string(),
            ),
        };
        let mut v = json!({
            "AssociationId": a.association_id,
            "Name": a.document_name,
            "DocumentVersion": a.document_version,
            "AssociationVersion": version,
            "InstanceId": id,
            "ExecutionDate": ts(when),
            "Status": status,
            "DetailedStatus": detail,
            "ExecutionSummary": summary,
        });
        if status == "Failed" {
            v["ErrorCode"] = json!("Failed");
        }
        if !a.association_name.is_empty() {
            v["AssociationName"] = json!(a.association_name);
        }
        out.push(v);
    }
    Ok(page_of("InstanceAssociationStatusInfos", out, offset, size))
}
