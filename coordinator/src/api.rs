//! The SSM action layer: one function per SSM operation, taking and returning the
//! SSM API's own JSON (AWS JSON 1.1 members, timestamps as epoch seconds).
//!
//! This is the only module that knows the SSM JSON shapes. The operator gRPC
//! service calls [`invoke`] today; the SSM-compatible HTTP API will call the
//! same function, so each operation's semantics live in exactly one place.
//! Every input is validated here, with an SSM error type and a message that
//! names the member and the value.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use tether_documents::{Document, PlatformType};

use crate::core::{Coordinator, code_hash};
use tether_ssm::ApiError;
use tether_ssm::limits;
use tether_ssm::state::Detail;
use tether_util::time::{iso_ms, now_ms};
pub mod associations;
mod documents;
mod inventory;
mod tags;

use tether_store::{
    self as store, ActivationRow, CommandQuery, CommandRow, InvocationRow, PluginRow,
};

pub type ApiResult = Result<Value, ApiError>;

/// Runs one SSM operation.
pub async fn invoke(c: &Coordinator, operation: &str, request: &Value) -> ApiResult {
    if crate::access_keys::OPERATIONS.contains(&operation) {
        return crate::access_keys::invoke(c, operation, request).await;
    }
    let req = Req::new(operation, request)?;
    match operation {
        "CreateActivation" => create_activation(c, &req).await,
        "DescribeActivations" => describe_activations(c, &req).await,
        "DeleteActivation" => delete_activation(c, &req).await,
        "DescribeInstanceInformation" => describe_instance_information(c, &req).await,
        "DeregisterManagedInstance" => deregister_managed_instance(c, &req).await,
        "SendCommand" => send_command(c, &req).await,
        "ListCommands" => list_commands(c, &req).await,
        "ListCommandInvocations" => list_command_invocations(c, &req).await,
        "GetCommandInvocation" => get_command_invocation(c, &req).await,
        "CreateDocument" => documents::create_document(c, &req).await,
        "UpdateDocument" => documents::update_document(c, &req).await,
        "DeleteDocument" => documents::delete_document(c, &req).await,
        "GetDocument" => documents::get_document(c, &req).await,
        "DescribeDocument" => documents::describe_document(c, &req).await,
        "ListDocuments" => documents::list_documents(c, &req).await,
        "ListDocumentVersions" => documents::list_document_versions(c, &req).await,
        "UpdateDocumentDefaultVersion" => documents::update_document_default_version(c, &req).await,
        "CancelCommand" => cancel_command(c, &req).await,
        "AddTagsToResource" => tags::add_tags_to_resource(c, &req).await,
        "RemoveTagsFromResource" => tags::remove_tags_from_resource(c, &req).await,
        "ListTagsForResource" => tags::list_tags_for_resource(c, &req).await,
        "CreateAssociation" => associations::create_association(c, &req).await,
        "ListAssociations" => associations::list_associations(c, &req).await,
        "DescribeAssociation" => associations::describe_association(c, &req).await,
        "UpdateAssociation" => associations::update_association(c, &req).await,
        "DeleteAssociation" => associations::delete_association(c, &req).await,
        "DescribeInstanceAssociationsStatus" => {
            associations::describe_instance_associations_status(c, &req).await
        }
        "ListInventoryEntries" => inventory::list_inventory_entries(c, &req).await,
        "GetInventory" => inventory::get_inventory(c, &req).await,
        // Tether's own (no SSM equivalent): inventory changes between two times.
        "ListInventoryChanges" => inventory::list_inventory_changes(c, &req).await,
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!("operation {other} is not supported by this coordinator"),
        )),
    }
}

// ----- request access with validation -----

/// A request body with typed, validating accessors.
struct Req<'a> {
    op: &'a str,
    body: &'a Map<String, Value>,
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'a> Req<'a> {
    fn new(op: &'a str, v: &'a Value) -> Result<Self, ApiError> {
        match v {
            Value::Object(m) => Ok(Req { op, body: m }),
            Value::Null => Ok(Req { op, body: &EMPTY }),
            _ => Err(ApiError::new(
                "SerializationException",
                format!("{op}: the request body must be a JSON object"),
            )),
        }
    }

    fn str(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        match self.body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(ApiError::new(
                "SerializationException",
                format!("{}: {name} must be a string, got {other}", self.op),
            )),
        }
    }

    fn required_str(&self, name: &str) -> Result<&'a str, ApiError> {
        self.str(name)?.ok_or_else(|| {
            ApiError::validation(format!("{}: the member {name} is required", self.op))
        })
    }

    fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            Some(other) => Err(ApiError::new(
                "SerializationException",
                format!("{}: {name} must be an integer, got {other}", self.op),
            )),
        }
    }

    fn int_in(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.int(name)? {
            Some(v) if v < min || v > max => Err(ApiError::validation(format!(
                "{}: {name} must be between {min} and {max}, got {v}",
                self.op
            ))),
            v => Ok(v),
        }
    }

    fn bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.body.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(ApiError::new(
                "SerializationException",
                format!("{}: {name} must be a boolean, got {other}", self.op),
            )),
        }
    }

    fn str_list(&self, name: &str) -> Result<Vec<String>, ApiError> {
        match self.body.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(v) => str_list_of(v).ok_or_else(|| {
                ApiError::new(
                    "SerializationException",
                    format!("{}: {name} must be a list of strings", self.op),
                )
            }),
        }
    }

    fn list(&self, name: &str) -> Result<&'a [Value], ApiError> {
        match self.body.get(name) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(a)) => Ok(a.as_slice()),
            Some(_) => Err(ApiError::new(
                "SerializationException",
                format!("{}: {name} must be a list", self.op),
            )),
        }
    }

    /// An SSM timestamp: epoch seconds on the wire; ISO 8601 accepted too.
    fn timestamp_ms(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64().map(|s| (s * 1000.0).round() as i64)),
            Some(Value::String(s)) => parse_time_ms(s).map(Some).ok_or_else(|| {
                ApiError::validation(format!(
                    "{}: {name} {s:?} is not a timestamp (use ISO 8601, e.g. 2030-01-10T20:30:00Z)",
                    self.op
                ))
            }),
            Some(other) => Err(ApiError::new(
                "SerializationException",
                format!("{}: {name} must be a timestamp, got {other}", self.op),
            )),
        }
    }

    /// Page start from NextToken, and page size from MaxResults.
    fn page(&self, min: i64, max: i64) -> Result<(i64, i64), ApiError> {
        let size = self.int_in("MaxResults", min, max)?.unwrap_or(max);
        let offset = match self.str("NextToken")? {
            None | Some("") => 0,
            Some(t) => decode_token(t).ok_or_else(|| {
                ApiError::new(
                    "InvalidNextToken",
                    format!("{}: NextToken {t:?} is not valid", self.op),
                )
            })?,
        };
        Ok((offset, size))
    }
}

fn str_list_of(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_owned))
        .collect()
}

fn parse_time_ms(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc().timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis());
    }
    s.parse::<f64>().ok().map(|secs| (secs * 1000.0) as i64)
}

fn encode_token(offset: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("offset:{offset}"))
}

fn decode_token(t: &str) -> Option<i64> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(t).ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
        .filter(|o: &i64| *o >= 0)
}

/// Epoch seconds, as SSM timestamps travel on the wire.
fn ts(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// One page of a list held in memory, as `{member: [...], NextToken?}`.
fn page_of(member: &str, all: Vec<Value>, offset: i64, size: i64) -> Value {
    let total = all.len() as i64;
    let page: Vec<Value> = all
        .into_iter()
        .skip(offset as usize)
        .take(size as usize)
        .collect();
    let mut out = json!({ member: page });
    if offset + size < total {
        out["NextToken"] = json!(encode_token(offset + size));
    }
    out
}

/// Adds `NextToken` when a page came back full (there may be more).
fn with_next_token(mut v: Value, got: usize, offset: i64, size: i64) -> Value {
    if got as i64 >= size {
        v["NextToken"] = json!(encode_token(offset + size));
    }
    v
}

fn is_instance_id(s: &str) -> bool {
    let hex17 = |t: &str| t.len() == 17 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (s.strip_prefix("mi-"), s.strip_prefix("i-")) {
        (Some(rest), _) => hex17(rest),
        (_, Some(rest)) => {
            (rest.len() == 8 || rest.len() == 17)
                && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    }
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36 && s == s.to_ascii_lowercase()
}

fn tags_of(req: &Req<'_>) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for t in req.list("Tags")? {
        let key = t.get("Key").and_then(Value::as_str);
        let value = t.get("Value").and_then(Value::as_str);
        match (key, value) {
            (Some(k), Some(v)) if !k.is_empty() && k.len() <= 128 && v.len() <= 256 => {
                out.push(json!({"Key": k, "Value": v}));
            }
            _ => {
                return Err(ApiError::validation(format!(
                    "{}: each tag needs a Key (1-128 characters) and a Value (up to 256), got {t}",
                    req.op
                )));
            }
        }
    }
    Ok(out)
}

// ----- activations -----

async fn create_activation(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let iam_role = req.required_str("IamRole")?;
    if iam_role.len() > 64 {
        return Err(ApiError::validation(format!(
            "CreateActivation: IamRole must be at most 64 characters, got {}",
            iam_role.len()
        )));
    }
    let description = req.str("Description")?.unwrap_or("");
    if description.chars().count() > 256 {
        return Err(ApiError::validation(
            "CreateActivation: Description must be at most 256 characters",
        ));
    }
    let default_name = req.str("DefaultInstanceName")?.unwrap_or("");
    if default_name.chars().count() > 256
        || !default_name
            .chars()
            .all(|ch| ch.is_alphanumeric() || ch.is_whitespace() || "_.:/=+-@".contains(ch))
    {
        return Err(ApiError::validation(format!(
            "CreateActivation: DefaultInstanceName {default_name:?} must be at most 256 letters, digits, spaces and _.:/=+-@"
        )));
    }
    let limit = req
        .int_in("RegistrationLimit", 1, limits::MAX_REGISTRATION_LIMIT)?
        .unwrap_or(limits::DEFAULT_REGISTRATION_LIMIT);
    let now = now_ms();
    let max_ms = now + limits::MAX_ACTIVATION_LIFETIME.as_millis() as i64;
    let expiration = req
        .timestamp_ms("ExpirationDate")?
        .unwrap_or(now + limits::DEFAULT_ACTIVATION_LIFETIME.as_millis() as i64);
    if expiration <= now || expiration > max_ms {
        return Err(ApiError::validation(format!(
            "CreateActivation: ExpirationDate {} must be in the future and at most 30 days ahead (before {})",
            iso_ms(expiration),
            iso_ms(max_ms)
        )));
    }
    let tags = tags_of(req)?;
    let activation_id = uuid::Uuid::new_v4().to_string();
    let code: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..limits::ACTIVATION_CODE_LEN)
            .map(|_| {
                limits::ACTIVATION_CODE_ALPHABET
                    [rng.random_range(0..limits::ACTIVATION_CODE_ALPHABET.len())]
                    as char
            })
            .collect()
    };
    let salt: [u8; 16] = rand::random();
    c.store
        .insert_activation(&ActivationRow {
            activation_id: activation_id.clone(),
            code_salt: salt.to_vec(),
            code_hash: code_hash(&salt, &code),
            description: description.to_string(),
            default_instance_name: default_name.to_string(),
            iam_role: iam_role.to_string(),
            registration_limit: limit,
            registrations_count: 0,
            expiration_ms: expiration,
            created_ms: now,
            deleted_ms: None,
            tags_json: Value::Array(tags).to_string(),
        })
        .await?;
    Ok(json!({"ActivationId": activation_id, "ActivationCode": code}))
}

fn activation_json(a: &ActivationRow, now: i64) -> Value {
    json!({
        "ActivationId": a.activation_id,
        "Description": a.description,
        "DefaultInstanceName": a.default_instance_name,
        "IamRole": a.iam_role,
        "RegistrationLimit": a.registration_limit,
        "RegistrationsCount": a.registrations_count,
        "ExpirationDate": ts(a.expiration_ms),
        "Expired": a.expiration_ms <= now,
        "CreatedDate": ts(a.created_ms),
        "Tags": serde_json::from_str::<Value>(&a.tags_json).unwrap_or_else(|_| json!([])),
    })
}

async fn describe_activations(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let (offset, size) = req.page(1, 50)?;
    let mut filters: Vec<(&str, Vec<String>)> = Vec::new();
    for f in req.list("Filters")? {
        let key = f.get("FilterKey").and_then(Value::as_str).unwrap_or("");
        if !["ActivationIds", "DefaultInstanceName", "IamRole"].contains(&key) {
            return Err(ApiError::new(
                "InvalidFilter",
                format!(
                    "DescribeActivations: FilterKey {key:?} is not one of ActivationIds, DefaultInstanceName, IamRole"
                ),
            ));
        }
        let values = f
            .get("FilterValues")
            .and_then(str_list_of)
            .unwrap_or_default();
        filters.push((key, values));
    }
    let now = now_ms();
    let all: Vec<Value> = c
        .store
        .activations()
        .await?
        .iter()
        .filter(|a| {
            filters.iter().all(|(k, vs)| {
                let field = match *k {
                    "ActivationIds" => &a.activation_id,
                    "DefaultInstanceName" => &a.default_instance_name,
                    _ => &a.iam_role,
                };
                vs.iter().any(|v| v == field)
            })
        })
        .map(|a| activation_json(a, now))
        .collect();
    Ok(page_of("ActivationList", all, offset, size))
}

async fn delete_activation(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let id = req.required_str("ActivationId")?;
    if !c.store.delete_activation(id, now_ms()).await? {
        return Err(ApiError::new(
            "InvalidActivationId",
            format!("DeleteActivation: activation {id} does not exist"),
        ));
    }
    Ok(json!({}))
}

// ----- managed instances -----

fn ping_status(last_ping_ms: Option<i64>, now: i64) -> &'static str {
    match last_ping_ms {
        Some(t) if now - t <= limits::ONLINE_GRACE.as_millis() as i64 => "Online",
        _ => "ConnectionLost",
    }
}

fn instance_json(i: &store::InstanceRow, now: i64) -> Value {
    let mut v = json!({
        "InstanceId": i.instance_id,
        "PingStatus": ping_status(i.last_ping_ms, now),
        "AgentVersion": i.agent_version,
        "IsLatestVersion": true,
        "PlatformType": i.platform_type,
        "PlatformName": i.platform_name,
        "PlatformVersion": i.platform_version,
        "ActivationId": i.activation_id,
        "IamRole": i.iam_role,
        "RegistrationDate": ts(i.registration_ms),
        "ResourceType": "ManagedInstance",
        "Name": i.name,
        "IPAddress": i.ip_address,
        "ComputerName": i.computer_name,
        "SourceId": i.instance_id,
        "SourceType": "AWS::SSM::ManagedInstance",
    });
    if let Some(t) = i.last_ping_ms {
        v["LastPingDateTime"] = ts(t);
    }
    if let Some(aws) = &i.aws {
        // Managed by AWS SSM, reached through the bridge: AWS's facts, and where it comes from.
        v["PingStatus"] = json!(aws.ping_status);
        v["ResourceType"] = json!(aws.resource_type);
        if aws.resource_type == "EC2Instance" {
            v["SourceType"] = json!("AWS::EC2::Instance");
        }
        v["Source"] = json!(format!("aws:{}", aws.account));
    }
    v
}

async fn describe_instance_information(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let (offset, size) = req.page(5, 50)?;
    let mut filters: Vec<(String, Vec<String>)> = Vec::new();
    for f in req.list("InstanceInformationFilterList")? {
        let key = f.get("key").and_then(Value::as_str).unwrap_or("");
        let values = f.get("valueSet").and_then(str_list_of).unwrap_or_default();
        filters.push((key.to_string(), values));
    }
    for f in req.list("Filters")? {
        let key = f.get("Key").and_then(Value::as_str).unwrap_or("");
        let values = f.get("Values").and_then(str_list_of).unwrap_or_default();
        filters.push((key.to_string(), values));
    }
    const KEYS: [&str; 7] = [
        "InstanceIds",
        "AgentVersion",
        "PingStatus",
        "PlatformTypes",
        "ActivationIds",
        "IamRole",
        "ResourceType",
    ];
    for (k, vs) in &filters {
        if !KEYS.contains(&k.as_str()) && !k.starts_with("tag:") && k != "tag-key" {
            return Err(ApiError::new(
                "InvalidInstanceInformationFilterValue",
                format!(
                    "DescribeInstanceInformation: filter key {k:?} is not one of {}, tag:<key>, tag-key",
                    KEYS.join(", ")
                ),
            ));
        }
        if vs.is_empty() {
            return Err(ApiError::new(
                "InvalidInstanceInformationFilterValue",
                format!("DescribeInstanceInformation: filter {k:?} needs at least one value"),
            ));
        }
    }
    let now = now_ms();
    let all: Vec<Value> = c
        .store
        .all_instances()
        .await?
        .iter()
        .map(|i| (i, instance_json(i, now), tag_pairs(&i.tags_json)))
        .filter(|(i, v, tags)| {
            filters.iter().all(|(k, vs)| {
                let any = |field: &str| vs.iter().any(|x| x == field);
                match k.as_str() {
                    "InstanceIds" => any(&i.instance_id),
                    "AgentVersion" => any(&i.agent_version),
                    "PingStatus" => any(v["PingStatus"].as_str().unwrap_or("")),
                    "PlatformTypes" => any(&i.platform_type),
                    "ActivationIds" => any(&i.activation_id),
                    "IamRole" => any(&i.iam_role),
                    "ResourceType" => any(v["ResourceType"].as_str().unwrap_or("")),
                    "tag-key" => tags.iter().any(|(tk, _)| vs.contains(tk)),
                    tag => {
                        let key = tag.trim_start_matches("tag:");
                        tags.iter().any(|(tk, tv)| tk == key && vs.contains(tv))
                    }
                }
            })
        })
        .map(|(_, v, _)| v)
        .collect();
    Ok(page_of("InstanceInformationList", all, offset, size))
}

fn tag_pairs(tags_json: &str) -> Vec<(String, String)> {
    serde_json::from_str::<Vec<Value>>(tags_json)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| {
            Some((
                t.get("Key")?.as_str()?.to_string(),
                t.get("Value")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

async fn deregister_managed_instance(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let id = req.required_str("InstanceId")?;
    if !id.starts_with("mi-") || !is_instance_id(id) {
        return Err(ApiError::new(
            "InvalidInstanceId",
            format!(
                "DeregisterManagedInstance: {id:?} is not a managed instance ID (mi- and 17 hex digits)"
            ),
        ));
    }
    let Some(commands) = c.store.deregister_instance(id, now_ms()).await? else {
        return Err(ApiError::new(
            "InvalidInstanceId",
            format!("DeregisterManagedInstance: instance {id} is not registered"),
        ));
    };
    // Slots its invocations held are free for the others.
    for command_id in commands {
        c.ring_waiting(&command_id).await?;
    }
    Ok(json!({}))
}

// ----- Run Command -----

const UNSUPPORTED_SEND_MEMBERS: [(&str, &str); 6] = [
    (
        "OutputS3BucketName",
        "output is kept in the coordinator's history",
    ),
    (
        "OutputS3KeyPrefix",
        "output is kept in the coordinator's history",
    ),
    (
        "OutputS3Region",
        "output is kept in the coordinator's history",
    ),
    ("ServiceRoleArn", "notifications are not supported"),
    ("NotificationConfig", "notifications are not supported"),
    ("AlarmConfiguration", "alarms are not supported"),
];

/// Targets resolved to (instance ID, name), in order, without duplicates.
async fn resolve_targets(
    c: &Coordinator,
    instance_ids: &[String],
    targets: &[Value],
) -> Result<Vec<(String, Option<store::InstanceRow>)>, ApiError> {
    let mut out: Vec<(String, Option<store::InstanceRow>)> = Vec::new();
    let mut push = |id: String, row: Option<store::InstanceRow>| {
        if !out.iter().any(|(x, _)| *x == id) {
            out.push((id, row));
        }
    };
    for id in instance_ids {
        push(id.clone(), c.store.any_instance(id).await?);
    }
    if !targets.is_empty() {
        let instances = c.store.all_instances().await?;
        for t in targets {
            let key = t.get("Key").and_then(Value::as_str).unwrap_or("");
            let values = t.get("Values").and_then(str_list_of).unwrap_or_default();
            if key.eq_ignore_ascii_case("InstanceIds") {
                for id in values {
                    let row = c.store.any_instance(&id).await?;
                    push(id, row);
                }
            } else if key == "tag-key" {
                for i in &instances {
                    if tag_pairs(&i.tags_json)
                        .iter()
                        .any(|(k, _)| values.contains(k))
                    {
                        push(i.instance_id.clone(), Some(i.clone()));
                    }
                }
            } else if let Some(tag) = key.strip_prefix("tag:") {
                for i in &instances {
                    if tag_pairs(&i.tags_json)
                        .iter()
                        .any(|(k, v)| k == tag && values.contains(v))
                    {
                        push(i.instance_id.clone(), Some(i.clone()));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn validate_targets(op: &str, targets: &[Value]) -> Result<(), ApiError> {
    if targets.len() > 5 {
        return Err(ApiError::validation(format!(
            "{op}: at most 5 Targets, got {}",
            targets.len()
        )));
    }
    for t in targets {
        let key = t.get("Key").and_then(Value::as_str).unwrap_or("");
        let values = t.get("Values").and_then(str_list_of);
        let key_ok = key.eq_ignore_ascii_case("InstanceIds")
            || key == "tag-key"
            || key.strip_prefix("tag:").is_some_and(|k| !k.is_empty());
        if !key_ok {
            return Err(ApiError::new(
                "InvalidTarget",
                format!("{op}: target key {key:?} must be InstanceIds, tag:<name> or tag-key"),
            ));
        }
        match values {
            Some(vs) if !vs.is_empty() && vs.len() <= 50 => {}
            _ => {
                return Err(ApiError::new(
                    "InvalidTarget",
                    format!("{op}: target {key:?} needs 1 to 50 Values"),
                ));
            }
        }
    }
    Ok(())
}

fn parameters_of(req: &Req<'_>) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let mut out = BTreeMap::new();
    match req.body.get("Parameters") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let list = match v {
                    Value::String(s) => vec![s.clone()],
                    other => str_list_of(other).ok_or_else(|| {
                        ApiError::new(
                            "InvalidParameters",
                            format!(
                                "{}: parameter {k:?} must be a list of strings, got {other}",
                                req.op
                            ),
                        )
                    })?,
                };
                out.insert(k.clone(), list);
            }
        }
        Some(other) => {
            return Err(ApiError::new(
                "InvalidParameters",
                format!(
                    "{}: Parameters must be a map of name to list of strings, got {other}",
                    req.op
                ),
            ));
        }
    }
    Ok(out)
}

async fn send_command(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    for (member, why) in UNSUPPORTED_SEND_MEMBERS {
        if req.body.get(member).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::validation(format!(
                "SendCommand: {member} is not supported by Tether ({why})"
            )));
        }
    }
    if req
        .body
        .get("CloudWatchOutputConfig")
        .and_then(|c| c.get("CloudWatchOutputEnabled"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(ApiError::validation(
            "SendCommand: CloudWatchOutputConfig is not supported by Tether (output is kept in the coordinator's history)",
        ));
    }
    let doc_name = req.required_str("DocumentName")?;
    let found = documents::find(c, req.op, doc_name, req.str("DocumentVersion")?, None)
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
    let doc = found.doc;
    if let Some(hash) = req.str("DocumentHash")? {
        let hash_type = req.str("DocumentHashType")?.unwrap_or("Sha256");
        if hash_type != "Sha256" || !hash.eq_ignore_ascii_case(&doc.hash()) {
            return Err(ApiError::new(
                "InvalidDocument",
                format!(
                    "SendCommand: DocumentHash {hash} ({hash_type}) does not match document {doc_name} (Sha256 {})",
                    doc.hash()
                ),
            ));
        }
    }
    let instance_ids = req.str_list("InstanceIds")?;
    let targets = req.list("Targets")?;
    if instance_ids.is_empty() == targets.is_empty() {
        return Err(ApiError::validation(
            "SendCommand: give either InstanceIds or Targets (exactly one of them)",
        ));
    }
    if instance_ids.len() > limits::MAX_INSTANCE_IDS_PER_COMMAND {
        return Err(ApiError::validation(format!(
            "SendCommand: at most {} InstanceIds per command, got {} (use Targets for more)",
            limits::MAX_INSTANCE_IDS_PER_COMMAND,
            instance_ids.len()
        )));
    }
    if let Some(bad) = instance_ids.iter().find(|id| !is_instance_id(id)) {
        return Err(ApiError::new(
            "InvalidInstanceId",
            format!("SendCommand: {bad:?} is not an instance ID (mi-<17 hex> or i-<8 or 17>)"),
        ));
    }
    validate_targets("SendCommand", targets)?;
    let timeout = req
        .int_in(
            "TimeoutSeconds",
            limits::MIN_DELIVERY_TIMEOUT_SECS,
            limits::MAX_DELIVERY_TIMEOUT_SECS,
        )?
        .unwrap_or(limits::DEFAULT_DELIVERY_TIMEOUT_SECS);
    let comment = req.str("Comment")?.unwrap_or("");
    if comment.chars().count() > limits::MAX_COMMENT_CHARS {
        return Err(ApiError::validation(format!(
            "SendCommand: Comment must be at most {} characters, got {}",
            limits::MAX_COMMENT_CHARS,
            comment.chars().count()
        )));
    }
    let max_concurrency = req.str("MaxConcurrency")?.unwrap_or("50");
    if !valid_rate(max_concurrency, false) {
        return Err(ApiError::validation(format!(
            "SendCommand: MaxConcurrency {max_concurrency:?} must be a number from 1 or a percentage from 1% to 100%"
        )));
    }
    let max_errors = req.str("MaxErrors")?.unwrap_or("0");
    if !valid_rate(max_errors, true) {
        return Err(ApiError::validation(format!(
            "SendCommand: MaxErrors {max_errors:?} must be a number from 0 or a percentage from 0% to 100%"
        )));
    }
    let given = parameters_of(req)?;
    let resolved = doc
        .resolve_parameters(&given)
        .map_err(|e| ApiError::new("InvalidParameters", format!("SendCommand: {e}")))?;
    // Interpolation errors (an executionTimeout out of range, say) surface now, not on the node.
    for platform in doc.platform_types() {
        doc.plan(&resolved, platform)
            .map_err(|e| ApiError::new("InvalidParameters", format!("SendCommand: {e}")))?;
    }

    let targets_resolved = resolve_targets(c, &instance_ids, targets).await?;
    if targets_resolved.is_empty() {
        return Err(ApiError::new(
            "InvalidTarget",
            "SendCommand: No Instances In Tag: the targets match no managed instance",
        ));
    }
    let now = now_ms();
    let command_id = uuid::Uuid::new_v4().to_string();
    let row = CommandRow {
        command_id: command_id.clone(),
        document_name: doc_name.to_string(),
        document_version: found.version.to_string(),
        document_hash: doc.hash(),
        document_content: doc.content.clone(),
        parameters_json: serde_json::to_string(&given).unwrap_or_default(),
        resolved_json: serde_json::to_string(&resolved).unwrap_or_default(),
        comment: comment.to_string(),
        requested_ms: now,
        timeout_seconds: timeout,
        max_concurrency: max_concurrency.to_string(),
        max_errors: max_errors.to_string(),
        concurrency_limit: concurrency_limit(max_concurrency, targets_resolved.len() as i64),
        instance_ids_json: serde_json::to_string(&instance_ids).unwrap_or_default(),
        targets_json: Value::Array(targets.to_vec()).to_string(),
        status: "Pending".into(),
        status_details: "Pending".into(),
        target_count: targets_resolved.len() as i64,
        completed_count: 0,
        error_count: 0,
        delivery_timed_out_count: 0,
    };
    let pairs: Vec<(String, String)> = targets_resolved
        .iter()
        .map(|(id, r)| {
            (
                id.clone(),
                r.as_ref()
                    .map(|r| r.computer_name.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    c.store.insert_command(&row, &pairs).await?;
    // Unknown or deregistered instances can never receive it.
    for (id, r) in &targets_resolved {
        if r.as_ref().is_none_or(|r| r.deregistered_ms.is_some()) {
            let result = store::InvocationResult {
                detail: Detail::Undeliverable,
                response_code: -1,
                start_ms: None,
                end_ms: Some(now),
                plugins: Vec::new(),
            };
            c.store
                .finish_invocation(&command_id, id, &result, now)
                .await?;
        } else {
            c.ring(id);
        }
    }
    let row = c.store.command(&command_id).await?.unwrap_or(row);
    Ok(json!({"Command": command_json(&row)}))
}

/// CancelCommand: invocations not yet handed to their agent end Cancelled at
/// once; delivered ones become Cancelling, and their agents are sent a signed
/// cancellation (the step's whole process group is killed) and report Cancelled.
async fn cancel_command(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let command_id = req.required_str("CommandId")?;
    let unknown = || {
        ApiError::new(
            "InvalidCommandId",
            format!("CancelCommand: command {command_id:?} does not exist"),
        )
    };
    if !is_uuid(command_id) {
        return Err(unknown());
    }
    c.store.command(command_id).await?.ok_or_else(unknown)?;
    let instance_ids = req.str_list("InstanceIds")?;
    if !instance_ids.is_empty() {
        let q = CommandQuery {
            command_id: Some(command_id.to_string()),
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
        .cancel_invocations(command_id, &instance_ids, now_ms())
        .await?
    {
        if let store::CancelOutcome::Cancelling(id) = outcome {
            c.ring(&id);
        }
    }
    Ok(json!({}))
}

/// MaxConcurrency (`N` or `N%`, already validated) as a number of invocations,
/// at least 1; a percentage rounds up, as SSM's does.
fn concurrency_limit(max_concurrency: &str, targets: i64) -> i64 {
    match max_concurrency.strip_suffix('%') {
        Some(pct) => {
            let p: i64 = pct.parse().unwrap_or(100);
            ((targets * p + 99) / 100).max(1)
        }
        None => max_concurrency.parse().unwrap_or(50).max(1),
    }
}

/// `N` or `N%`; MaxErrors also allows 0 and 0%.
fn valid_rate(v: &str, zero_ok: bool) -> bool {
    let (num, pct) = match v.strip_suffix('%') {
        Some(n) => (n, true),
        None => (v, false),
    };
    let Ok(n) = num.parse::<u64>() else {
        return false;
    };
    !num.is_empty()
        && (num == "0" || !num.starts_with('0'))
        && (zero_ok || n >= 1)
        && (!pct || n <= 100)
        && v.len() <= 7
}

fn command_json(c: &CommandRow) -> Value {
    json!({
        "CommandId": c.command_id,
        "DocumentName": c.document_name,
        "DocumentVersion": c.document_version,
        "Comment": c.comment,
        "ExpiresAfter": ts(c.requested_ms + c.timeout_seconds * 1000),
        "Parameters": serde_json::from_str::<Value>(&c.parameters_json).unwrap_or_else(|_| json!({})),
        "InstanceIds": serde_json::from_str::<Value>(&c.instance_ids_json).unwrap_or_else(|_| json!([])),
        "Targets": serde_json::from_str::<Value>(&c.targets_json).unwrap_or_else(|_| json!([])),
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
    })
}

/// ListCommands / ListCommandInvocations filters.
fn command_query(req: &Req<'_>) -> Result<CommandQuery, ApiError> {
    let mut q = CommandQuery::default();
    if let Some(id) = req.str("CommandId")? {
        if !is_uuid(id) {
            return Err(ApiError::new(
                "InvalidCommandId",
                format!("{}: {id:?} is not a command ID (a lowercase UUID)", req.op),
            ));
        }
        q.command_id = Some(id.to_string());
    }
    if let Some(id) = req.str("InstanceId")? {
        if !is_instance_id(id) {
            return Err(ApiError::new(
                "InvalidInstanceId",
                format!("{}: {id:?} is not an instance ID", req.op),
            ));
        }
        q.instance_id = Some(id.to_string());
    }
    let filters = req.list("Filters")?;
    if filters.len() > 5 {
        return Err(ApiError::validation(format!(
            "{}: at most 5 Filters",
            req.op
        )));
    }
    for f in filters {
        let key = f.get("key").and_then(Value::as_str).unwrap_or("");
        let value = f.get("value").and_then(Value::as_str).unwrap_or("");
        let bad = |why: &str| {
            ApiError::new(
                "InvalidFilterKey",
                format!("{}: filter {key}={value:?}: {why}", req.op),
            )
        };
        match key {
            "InvokedAfter" => {
                q.invoked_after_ms =
                    Some(parse_time_ms(value).ok_or_else(|| bad("not a timestamp"))?)
            }
            "InvokedBefore" => {
                q.invoked_before_ms =
                    Some(parse_time_ms(value).ok_or_else(|| bad("not a timestamp"))?)
            }
            "Status" => {
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

/// The filters and page of a list verb; a named command must exist.
async fn command_page(c: &Coordinator, req: &Req<'_>) -> Result<CommandQuery, ApiError> {
    let (offset, size) = req.page(1, 50)?;
    let mut q = command_query(req)?;
    if let Some(id) = &q.command_id
        && c.store.command(id).await?.is_none()
    {
        return Err(ApiError::new(
            "InvalidCommandId",
            format!("{}: command {id} does not exist", req.op),
        ));
    }
    q.offset = offset;
    q.limit = size;
    Ok(q)
}

async fn list_commands(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let q = command_page(c, req).await?;
    let (offset, size) = (q.offset, q.limit);
    let rows = c.store.commands(&q).await?;
    let n = rows.len();
    Ok(with_next_token(
        json!({"Commands": rows.iter().map(command_json).collect::<Vec<_>>()}),
        n,
        offset,
        size,
    ))
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

fn step_names(cmd: &CommandRow) -> Vec<String> {
    let Ok(doc) = Document::parse(&cmd.document_name, &cmd.document_content) else {
        return Vec::new();
    };
    let params: BTreeMap<String, Vec<String>> =
        serde_json::from_str(&cmd.resolved_json).unwrap_or_default();
    doc.plan(&params, PlatformType::Linux)
        .map(|steps| steps.into_iter().map(|s| s.name).collect())
        .unwrap_or_default()
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

async fn list_command_invocations(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let q = command_page(c, req).await?;
    let (offset, size) = (q.offset, q.limit);
    let details = req.bool("Details")?;
    let rows = c.store.invocations(&q).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (inv, cmd) in &rows {
        let mut v = invocation_json(inv, cmd);
        if details {
            let plugins = c.store.plugins(&inv.command_id, &inv.instance_id).await?;
            v["CommandPlugins"] = if plugins.is_empty() {
                Value::Array(
                    step_names(cmd)
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
        out.push(v);
    }
    let n = out.len();
    Ok(with_next_token(
        json!({"CommandInvocations": out}),
        n,
        offset,
        size,
    ))
}

fn invocation_json(inv: &InvocationRow, cmd: &CommandRow) -> Value {
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

/// SSM's string timestamps in GetCommandInvocation, e.g. `2017-06-14T21:38:43.363Z`.
fn string_time(ms: Option<i64>) -> String {
    ms.map(iso_ms).unwrap_or_default()
}

async fn get_command_invocation(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let command_id = req.required_str("CommandId")?;
    let instance_id = req.required_str("InstanceId")?;
    if !is_uuid(command_id) {
        return Err(ApiError::new(
            "InvalidCommandId",
            format!("GetCommandInvocation: {command_id:?} is not a command ID (a lowercase UUID)"),
        ));
    }
    if !is_instance_id(instance_id) {
        return Err(ApiError::new(
            "InvalidInstanceId",
            format!("GetCommandInvocation: {instance_id:?} is not an instance ID"),
        ));
    }
    let full = req.bool("FullOutput")?;
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
        step_names(cmd)
    } else {
        plugins.iter().map(|p| p.name.clone()).collect()
    };
    let wanted = req.str("PluginName")?;
    let plugin_name = match wanted {
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

    #[test]
    fn rates_follow_the_ssm_patterns() {
        for (v, zero_ok, ok) in [
            ("50", false, true),
            ("10%", false, true),
            ("100%", false, true),
            ("0", false, false),
            ("0", true, true),
            ("0%", true, true),
            ("101%", true, false),
            ("05", true, false),
            ("x", true, false),
            ("", true, false),
        ] {
            assert_eq!(valid_rate(v, zero_ok), ok, "{v} {zero_ok}");
        }
    }

    #[test]
    fn ids_and_tokens() {
        assert!(is_instance_id("mi-0123456789abcdef0"));
        assert!(is_instance_id("i-0b387c665628f5f9b"));
        assert!(is_instance_id("i-0b387c66"));
        assert!(!is_instance_id("mi-123"));
        assert!(!is_instance_id("x-0123456789abcdef0"));
        assert_eq!(decode_token(&encode_token(150)), Some(150));
        assert_eq!(decode_token("garbage"), None);
        assert_eq!(
            parse_time_ms("2017-01-10T20:30:00.000Z"),
            Some(1_484_080_200_000)
        );
    }
}
