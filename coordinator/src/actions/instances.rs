//! Managed instances: DescribeInstanceInformation (Tether's agents and the
//! instances bridged from AWS, in one list) and DeregisterManagedInstance.

use serde_json::{Value, json};
use tether_ssm::input::{DeregisterManagedInstanceRequest, DescribeInstanceInformationRequest};
use tether_ssm::{ApiError, limits};
use tether_store::InstanceRow;
use tether_util::time::now_ms;

use super::wire::{Page, tag_pairs, ts};
use crate::core::Coordinator;

fn ping_status(last_ping_ms: Option<i64>, now: i64) -> &'static str {
    match last_ping_ms {
        Some(t) if now - t <= limits::ONLINE_GRACE.as_millis() as i64 => "Online",
        _ => "ConnectionLost",
    }
}

/// One instance as DescribeInstanceInformation answers it; `target` is the
/// fleet's target agent version (`IsLatestVersion` is whether the agent runs
/// it; true when none is set, or for an instance AWS manages).
fn instance_json(i: &InstanceRow, now: i64, target: Option<&str>) -> Value {
    let latest = i.aws.is_some() || target.is_none_or(|t| t == i.agent_version);
    let mut v = json!({
        "InstanceId": i.instance_id,
        "PingStatus": ping_status(i.last_ping_ms, now),
        "AgentVersion": i.agent_version,
        "IsLatestVersion": latest,
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

/// The filter keys DescribeInstanceInformation knows, beyond `tag:KEY` and `tag-key`.
const KEYS: [&str; 7] = [
    "InstanceIds",
    "AgentVersion",
    "PingStatus",
    "PlatformTypes",
    "ActivationIds",
    "IamRole",
    "ResourceType",
];

pub(super) async fn describe(
    c: &Coordinator,
    r: DescribeInstanceInformationRequest,
) -> Result<Value, ApiError> {
    let page = Page::of(
        "DescribeInstanceInformation",
        r.next_token.as_deref(),
        r.max_results,
        limits::DEFAULT_PAGE_SIZE,
    )?;
    let mut filters: Vec<(String, Vec<String>)> = Vec::new();
    for f in r.instance_information_filter_list.unwrap_or_default() {
        filters.push((f.key, f.value_set));
    }
    for f in r.filters.unwrap_or_default() {
        filters.push((f.key, f.values));
    }
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
    let target = c.store.target_version().await?;
    let with_tags = r.include_tags.unwrap_or(false);
    let name_contains = r
        .name_contains
        .as_deref()
        .map(str::to_lowercase)
        .filter(|n| !n.is_empty());
    let mut summary = r.summarize.unwrap_or(false).then(Summary::default);
    let mut all = Vec::new();
    for i in c.store.all_instances().await? {
        if let Some(n) = &name_contains
            && ![&i.name, &i.computer_name, &i.instance_id]
                .iter()
                .any(|f| f.to_lowercase().contains(n.as_str()))
        {
            continue;
        }
        let mut v = instance_json(&i, now, target.as_deref());
        let tags = tag_pairs(&format!("instance {}", i.instance_id), &i.tags_json)?;
        let keep = filters.iter().all(|(k, vs)| {
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
        });
        if keep {
            if let Some(s) = &mut summary {
                s.count(&v);
            }
            if with_tags {
                v["Tags"] = tags
                    .iter()
                    .map(|(k, tv)| json!({"Key": k, "Value": tv}))
                    .collect();
            }
            all.push(v);
        }
    }
    let mut answer = page.of_list("InstanceInformationList", all);
    if let Some(s) = summary {
        answer["Summary"] = s.into_json();
    }
    Ok(answer)
}

/// Tether's `Summary` of DescribeInstanceInformation (`Summarize`): the
/// instances the filters keep, counted by ping status and platform type.
#[derive(Default)]
struct Summary {
    total: u64,
    ping: std::collections::BTreeMap<String, u64>,
    platform: std::collections::BTreeMap<String, u64>,
}

impl Summary {
    fn count(&mut self, v: &Value) {
        self.total += 1;
        let field = |k: &str| v[k].as_str().unwrap_or("").to_string();
        *self.ping.entry(field("PingStatus")).or_default() += 1;
        *self.platform.entry(field("PlatformType")).or_default() += 1;
    }

    fn into_json(self) -> Value {
        json!({
            "Total": self.total,
            "PingStatus": self.ping,
            "PlatformType": self.platform,
        })
    }
}

pub(super) async fn deregister(
    c: &Coordinator,
    r: DeregisterManagedInstanceRequest,
) -> Result<Value, ApiError> {
    let id = r.instance_id;
    if !tether_ssm::ids::is_managed_instance_id(&id) {
        return Err(ApiError::new(
            "InvalidInstanceId",
            format!(
                "DeregisterManagedInstance: {id:?} is not a managed instance ID (mi- and 17 hex digits)"
            ),
        ));
    }
    let Some(commands) = c.store.deregister_instance(&id, now_ms()).await? else {
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
