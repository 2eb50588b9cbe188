//! State Manager associations in SSM JSON: CreateAssociation,
//! ListAssociations, DescribeAssociation, UpdateAssociation,
//! DeleteAssociation and DescribeInstanceAssociationsStatus.
//!
//! The schedule itself runs on the agents (see `crate::associations`); here
//! we validate, store, and add up the per-instance outcomes the agents report
//! into each association's overview.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tether_ssm::input::{
    CreateAssociationRequest, DeleteAssociationRequest, DescribeAssociationRequest,
    DescribeInstanceAssociationsStatusRequest, ListAssociationsRequest, UpdateAssociationRequest,
};
use tether_ssm::{ApiError, Rate, ids, limits};
use tether_store::{AssociationRow, AssociationStatusRow};
use tether_util::time::{now_ms, parse_timestamp_ms};

use super::commands::{authorize_instances, parse_targets, resolve_targets};
use super::documents;
use super::wire::{Page, corrupt, stored, tag_pairs, ts};
use crate::associations::Targeted;
use crate::authz::{Authority, Resource};
use crate::core::Coordinator;

/// The members both CreateAssociation and UpdateAssociation take, checked
/// the same way for both (the model has checked names, enums and patterns).
struct Common<'a> {
    op: &'static str,
    max_concurrency: Option<&'a str>,
    max_errors: Option<&'a str>,
    sync_compliance: Option<&'a str>,
    /// Members of the model Tether does not implement: (given, member, why).
    unsupported: [(bool, &'static str, &'static str); 9],
}

macro_rules! common {
    ($op:expr, $r:expr) => {
        Common {
            op: $op,
            max_concurrency: $r.max_concurrency.as_deref(),
            max_errors: $r.max_errors.as_deref(),
            sync_compliance: $r.sync_compliance.as_deref(),
            unsupported: [
                (
                    $r.output_location.is_some(),
                    "OutputLocation",
                    "output is kept in the coordinator",
                ),
                (
                    $r.automation_target_parameter_name.is_some(),
                    "AutomationTargetParameterName",
                    "Automation documents are not supported",
                ),
                (
                    $r.calendar_names.is_some(),
                    "CalendarNames",
                    "Change Calendar is not supported",
                ),
                (
                    $r.target_locations.is_some(),
                    "TargetLocations",
                    "there is one coordinator, not accounts and Regions",
                ),
                ($r.target_maps.is_some(), "TargetMaps", "use Targets"),
                (
                    $r.alarm_configuration.is_some(),
                    "AlarmConfiguration",
                    "alarms are not supported",
                ),
                (
                    $r.schedule_offset.is_some(),
                    "ScheduleOffset",
                    "agents add their own upload jitter",
                ),
                (
                    $r.duration.is_some(),
                    "Duration",
                    "runs are not cut off by a window",
                ),
                (
                    $r.association_dispatch_assume_role.is_some(),
                    "AssociationDispatchAssumeRole",
                    "there are no IAM roles",
                ),
            ],
        }
    };
}

impl Common<'_> {
    fn check(&self) -> Result<(), ApiError> {
        let op = self.op;
        if let Some((_, member, why)) = self.unsupported.iter().find(|u| u.0) {
            return Err(ApiError::validation(format!(
                "{op}: {member} is not supported by Tether ({why})"
            )));
        }
        // The model's patterns have checked their spelling.
        for v in [self.max_concurrency, self.max_errors]
            .into_iter()
            .flatten()
        {
            v.parse::<Rate>()
                .map_err(|e| ApiError::validation(format!("{op}: {}", e.message)))?;
        }
        if let Some(s) = self.sync_compliance
            && s != "AUTO"
        {
            return Err(ApiError::validation(format!(
                "{op}: SyncCompliance {s:?} is not supported (only AUTO)"
            )));
        }
        Ok(())
    }
}

/// The targets of an association, as given: the operator's spelling of the
/// key is kept (`instanceids` in the tutorial).
fn targets_json(targets: &[tether_ssm::input::Target]) -> String {
    json!(
        targets
            .iter()
            .map(|t| json!({"Key": t.key, "Values": t.values}))
            .collect::<Vec<_>>()
    )
    .to_string()
}

/// Checks the caller may read every parameter the association's
/// parameters reference, and that each exists; they are resolved again at
/// each run, as the association's principal (`references::for_association_run`).
async fn check_references(
    c: &Coordinator,
    op: &str,
    authority: &Authority,
    given: &BTreeMap<String, Vec<String>>,
) -> Result<(), ApiError> {
    super::references::resolve(c, op, authority, given)
        .await
        .map(drop)
}

/// An association's targets read back, its legacy InstanceId among them.
fn targeted(a: &AssociationRow) -> Result<Targeted, ApiError> {
    Targeted::parse(a.clone())
        .map_err(|e| corrupt(&format!("association {}: targets", a.association_id), &e))
}

/// The document (built-in or stored, at the requested version), its version
/// number, and the parameters resolved against it.
async fn document_and_parameters(
    c: &Coordinator,
    op: &str,
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
    let found = documents::find(c, op, name, version, None).await?;
    let resolved = found
        .doc
        .resolve_parameters(given)
        .map_err(|e| ApiError::new("InvalidParameters", format!("{op}: {e}")))?;
    let (resolved_json, version) = (json!(resolved).to_string(), found.version.to_string());
    let parts = [
        &*found.doc.content,
        &resolved_json,
        name,
        &version,
        &found.doc.hash(),
    ];
    super::sizes::check_envelope(op, "the association", &parts, 0)?;
    Ok((found.doc, found.version, resolved))
}

fn schedule_of(op: &str, expr: &str, only_at_cron: bool) -> Result<(), ApiError> {
    if expr.is_empty() {
        if only_at_cron {
            return Err(ApiError::validation(format!(
                "{op}: ApplyOnlyAtCronInterval needs a cron ScheduleExpression"
            )));
        }
        return Ok(());
    }
    let s = tether_schedule::parse(expr)
        .map_err(|e| ApiError::new("InvalidSchedule", format!("{op}: {e}")))?;
    if only_at_cron && !s.is_cron() {
        return Err(ApiError::validation(format!(
            "{op}: ApplyOnlyAtCronInterval applies to cron expressions only, not {expr:?}"
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
    let targets = targeted(a)?.targets;
    for (id, row) in resolve_targets(c, &[], &targets).await? {
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

fn base_json(a: &AssociationRow, rows: &[AssociationStatusRow]) -> Result<Value, ApiError> {
    let targets: Value = stored(
        &format!("association {}: targets", a.association_id),
        &a.targets_json,
    )?;
    let mut v = json!({
        "Name": a.document_name,
        "AssociationId": a.association_id,
        "AssociationVersion": a.association_version.to_string(),
        "DocumentVersion": a.document_version,
        "Targets": targets,
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
    Ok(v)
}

fn description_json(a: &AssociationRow, rows: &[AssociationStatusRow]) -> Result<Value, ApiError> {
    let mut v = base_json(a, rows)?;
    let o = overview(rows);
    let params: Value = stored(
        &format!("association {}: parameters", a.association_id),
        &a.parameters_json,
    )?;
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
    Ok(v)
}

pub(super) async fn create(
    c: &Coordinator,
    authority: &Authority,
    r: CreateAssociationRequest,
) -> Result<Value, ApiError> {
    let op = "CreateAssociation";
    common!(op, r).check()?;
    if r.tags.is_some() {
        return Err(ApiError::validation(
            "CreateAssociation: Tags is not supported by Tether (tags on associations are not supported)",
        ));
    }
    let name = r.name.as_str();
    let instance_id = r.instance_id.as_deref().unwrap_or("");
    let wire_targets = r.targets.clone().unwrap_or_default();
    let targets = parse_targets(op, &wire_targets)?;
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
    let schedule = r.schedule_expression.as_deref().unwrap_or("").trim();
    let only_cron = r.apply_only_at_cron_interval.unwrap_or(false);
    schedule_of(op, schedule, only_cron)?;
    let given = r.parameters.clone().unwrap_or_default();
    check_references(c, op, authority, &given).await?;
    let (doc, version, resolved) =
        document_and_parameters(c, op, name, r.document_version.as_deref(), &given).await?;
    let now = now_ms();
    let a = AssociationRow {
        association_id: uuid::Uuid::new_v4().to_string(),
        association_name: r.association_name.clone().unwrap_or_default(),
        document_name: name.to_string(),
        document_version: version.to_string(),
        document_hash: doc.hash(),
        document_content: doc.content.clone(),
        association_version: 1,
        parameters_json: json!(given).to_string(),
        resolved_json: json!(resolved).to_string(),
        targets_json: targets_json(&wire_targets),
        instance_id: instance_id.to_string(),
        schedule_expression: schedule.to_string(),
        apply_only_at_cron_interval: only_cron,
        max_concurrency: r.max_concurrency.clone().unwrap_or_default(),
        max_errors: r.max_errors.clone().unwrap_or_default(),
        compliance_severity: r.compliance_severity.clone().unwrap_or_default(),
        created_ms: now,
        updated_ms: now,
        last_execution_ms: None,
        last_success_ms: None,
        requested_by: authority.arn().to_string(),
    };
    // The door checked the document; every instance the targets reach now
    // is checked here, as SendCommand's are: one refused instance refuses
    // the association, naming it, with nothing stored.
    authorize_targets(c, authority, "ssm:CreateAssociation", &a).await?;
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
    c.associations_changed(true).await;
    let rows = statuses(c, &a).await?;
    Ok(json!({ "AssociationDescription": description_json(&a, &rows)? }))
}

/// Authorises `action` on every instance the association's targets reach
/// now (root needs nothing, and nothing is resolved for it). Instances
/// that a tag target reaches later are not checked then: the association
/// was authorised as it stood when it was created or updated.
async fn authorize_targets(
    c: &Coordinator,
    authority: &Authority,
    action: &str,
    a: &AssociationRow,
) -> Result<(), ApiError> {
    if matches!(authority, Authority::Root { .. }) {
        return Ok(());
    }
    let t = targeted(a)?;
    let reached = resolve_targets(c, &[], &t.targets).await?;
    authorize_instances(c, authority, action, &reached)
}

/// The association a request names: AssociationId, or Name and InstanceId.
async fn named(
    c: &Coordinator,
    op: &str,
    association_id: Option<&str>,
    name: Option<&str>,
    instance_id: Option<&str>,
) -> Result<AssociationRow, ApiError> {
    let missing = |what: String| {
        ApiError::new(
            "AssociationDoesNotExist",
            format!("{op}: {what} does not exist"),
        )
    };
    if let Some(id) = association_id {
        if !ids::is_uuid(id) {
            return Err(ApiError::validation(format!(
                "{op}: AssociationId {id:?} is not an association ID (a lowercase UUID)"
            )));
        }
        return c
            .store
            .association(id)
            .await?
            .ok_or_else(|| missing(format!("association {id}")));
    }
    match (name, instance_id) {
        (Some(name), Some(instance)) => c
            .store
            .associations()
            .await?
            .into_iter()
            .find(|a| a.document_name == name && a.instance_id == instance)
            .ok_or_else(|| missing(format!("an association of {name} with {instance}"))),
        _ => Err(ApiError::validation(format!(
            "{op}: give AssociationId, or Name and InstanceId"
        ))),
    }
}

/// Only the latest version is kept: an AssociationVersion must name it.
fn check_version(op: &str, wanted: Option<&str>, a: &AssociationRow) -> Result<(), ApiError> {
    match wanted {
        Some(v) if v != "$LATEST" && v != a.association_version.to_string() => Err(ApiError::new(
            "InvalidAssociationVersion",
            format!(
                "{op}: association {} is at version {}; only the latest version is kept (got {v:?})",
                a.association_id, a.association_version
            ),
        )),
        _ => Ok(()),
    }
}

pub(super) async fn describe(
    c: &Coordinator,
    r: DescribeAssociationRequest,
) -> Result<Value, ApiError> {
    let op = "DescribeAssociation";
    let a = named(
        c,
        op,
        r.association_id.as_deref(),
        r.name.as_deref(),
        r.instance_id.as_deref(),
    )
    .await?;
    check_version(op, r.association_version.as_deref(), &a)?;
    let rows = statuses(c, &a).await?;
    Ok(json!({ "AssociationDescription": description_json(&a, &rows)? }))
}

pub(super) async fn update(
    c: &Coordinator,
    authority: &Authority,
    r: UpdateAssociationRequest,
) -> Result<Value, ApiError> {
    let op = "UpdateAssociation";
    common!(op, r).check()?;
    let id = r.association_id.as_str();
    let mut a = named(c, op, Some(id), None, None).await?;
    check_version(op, r.association_version.as_deref(), &a)?;
    if let Some(n) = &r.association_name {
        a.association_name = n.clone();
    }
    if let Some(wire) = &r.targets {
        let targets = parse_targets(op, wire)?;
        if targets.is_empty() && a.instance_id.is_empty() {
            return Err(ApiError::validation(
                "UpdateAssociation: Targets cannot be empty",
            ));
        }
        a.targets_json = targets_json(wire);
    }
    if let Some(s) = &r.schedule_expression {
        a.schedule_expression = s.trim().to_string();
    }
    if let Some(only) = r.apply_only_at_cron_interval {
        a.apply_only_at_cron_interval = only;
    }
    schedule_of(op, &a.schedule_expression, a.apply_only_at_cron_interval)?;
    let name = r.name.clone().unwrap_or_else(|| a.document_name.clone());
    let given: BTreeMap<String, Vec<String>> = match &r.parameters {
        Some(p) => p.clone(),
        None if name == a.document_name => stored(
            &format!("association {}: parameters", a.association_id),
            &a.parameters_json,
        )?,
        None => BTreeMap::new(),
    };
    // Without a DocumentVersion the association keeps the version it had.
    let doc_version = r
        .document_version
        .clone()
        .or_else(|| (name == a.document_name).then(|| a.document_version.clone()));
    check_references(c, op, authority, &given).await?;
    let (doc, version, resolved) =
        document_and_parameters(c, op, &name, doc_version.as_deref(), &given).await?;
    a.document_name = name;
    a.document_version = version.to_string();
    a.document_hash = doc.hash();
    a.document_content = doc.content.clone();
    a.parameters_json = json!(given).to_string();
    a.resolved_json = json!(resolved).to_string();
    for (given, field) in [
        (&r.max_concurrency, &mut a.max_concurrency),
        (&r.max_errors, &mut a.max_errors),
        (&r.compliance_severity, &mut a.compliance_severity),
    ] {
        if let Some(v) = given {
            *field = v.clone();
        }
    }
    // The door checked the association; its document (the new one, when
    // it changes) and every instance its targets reach are checked here.
    authority.check(
        "ssm:UpdateAssociation",
        &Resource::untagged(c.account.ssm_arn("document", &a.document_name)),
    )?;
    authorize_targets(c, authority, "ssm:UpdateAssociation", &a).await?;
    a.association_version += 1;
    a.updated_ms = now_ms();
    // Its runs act for whoever defined what they run.
    a.requested_by = authority.arn().to_string();
    if !c.store.update_association(&a).await? {
        return Err(ApiError::new(
            "AssociationDoesNotExist",
            format!("UpdateAssociation: association {id} does not exist"),
        ));
    }
    c.associations_changed(true).await;
    let rows = statuses(c, &a).await?;
    Ok(json!({ "AssociationDescription": description_json(&a, &rows)? }))
}

pub(super) async fn delete(
    c: &Coordinator,
    r: DeleteAssociationRequest,
) -> Result<Value, ApiError> {
    let a = named(
        c,
        "DeleteAssociation",
        r.association_id.as_deref(),
        r.name.as_deref(),
        r.instance_id.as_deref(),
    )
    .await?;
    c.store.delete_association(&a.association_id).await?;
    c.associations_changed(true).await;
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

pub(super) async fn list(c: &Coordinator, r: ListAssociationsRequest) -> Result<Value, ApiError> {
    let page = Page::of(
        "ListAssociations",
        r.next_token.as_deref(),
        r.max_results,
        limits::DEFAULT_PAGE_SIZE,
    )?;
    let mut filters = Vec::new();
    for f in r.association_filter_list.iter().flatten() {
        let (key, value) = (f.key.as_str(), f.value.as_str());
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
            Some(parse_timestamp_ms(value).ok_or_else(|| {
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
            out.push(base_json(&a, &rows)?);
        }
    }
    Ok(page.of_list("Associations", out))
}

pub(super) async fn instance_statuses(
    c: &Coordinator,
    r: DescribeInstanceAssociationsStatusRequest,
) -> Result<Value, ApiError> {
    let op = "DescribeInstanceAssociationsStatus";
    let id = r.instance_id.as_str();
    let page = Page::of(
        op,
        r.next_token.as_deref(),
        r.max_results,
        limits::DEFAULT_PAGE_SIZE,
    )?;
    let Some(inst) = c.store.instance(id).await? else {
        return Err(ApiError::new(
            "InvalidInstanceId",
            format!("DescribeInstanceAssociationsStatus: instance {id} is not registered"),
        ));
    };
    let reported = c.store.instance_association_statuses(id).await?;
    let tags = tag_pairs(&format!("instance {id}"), &inst.tags_json)?;
    let mut out = Vec::new();
    for a in c.store.associations().await? {
        let row = reported
            .iter()
            .find(|r| r.association_id == a.association_id);
        if row.is_none() && !targeted(&a)?.reaches(id, &tags) {
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
    Ok(page.of_list("InstanceAssociationStatusInfos", out))
}
