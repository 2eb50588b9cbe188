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
    // The rows the filters keep, with their tags; JSON is built only for
    // those on the page (a fleet of 10,000 is read whole at every page).
    let mut kept = Vec::new();
    for i in c.store.all_instances().await? {
        if let Some(n) = &name_contains
            && ![&i.name, &i.computer_name, &i.instance_id]
                .iter()
                .any(|f| f.to_lowercase().contains(n.as_str()))
        {
            continue;
        }
        let tags = tag_pairs(&format!("instance {}", i.instance_id), &i.tags_json)?;
        let ping = match &i.aws {
            Some(aws) => aws.ping_status.as_str(),
            None => ping_status(i.last_ping_ms, now),
        };
        let resource_type = i
            .aws
            .as_ref()
            .map_or("ManagedInstance", |a| a.resource_type.as_str());
        let keep = filters.iter().all(|(k, vs)| {
            let any = |field: &str| vs.iter().any(|x| x == field);
            match k.as_str() {
                "InstanceIds" => any(&i.instance_id),
                "AgentVersion" => any(&i.agent_version),
                "PingStatus" => any(ping),
                "PlatformTypes" => any(&i.platform_type),
                "ActivationIds" => any(&i.activation_id),
                "IamRole" => any(&i.iam_role),
                "ResourceType" => any(resource_type),
                "tag-key" => tags.iter().any(|(tk, _)| vs.contains(tk)),
                tag => {
                    let key = tag.trim_start_matches("tag:");
                    tags.iter().any(|(tk, tv)| tk == key && vs.contains(tv))
                }
            }
        });
        if keep {
            if let Some(s) = &mut summary {
                s.count(ping, &i.platform_type);
            }
            kept.push((i, tags));
        }
    }
    let start = usize::try_from(page.offset).unwrap_or(usize::MAX);
    let mut packer = page.packer();
    for (i, tags) in kept.iter().skip(start) {
        let mut v = instance_json(i, now, target.as_deref());
        if with_tags {
            v["Tags"] = tags
                .iter()
                .map(|(k, tv)| json!({"Key": k, "Value": tv}))
                .collect();
        }
        if !packer.push(v) {
            break;
        }
    }
    let taken = packer.len();
    let more = start.saturating_add(taken) < kept.len();
    let mut answer = page.answer("InstanceInformationList", packer, taken, more);
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
    fn count(&mut self, ping: &str, platform: &str) {
        self.total += 1;
        match self.ping.get_mut(ping) {
            Some(n) => *n += 1,
            None => {
                self.ping.insert(ping.to_string(), 1);
            }
        }
        match self.platform.get_mut(platform) {
            Some(n) => *n += 1,
            None => {
                self.platform.insert(platform.to_string(), 1);
            }
        }
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
    // Its agent is refused from its next call on (other replicas find
    // the deregistration within a second: core::admission).
    c.forget_instance(&id);
    // Slots its invocations held are free for the others.
    for command_id in commands {
        c.ring_waiting(&command_id).await?;
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tether_store::Store;

    use super::*;
    use crate::pki::Pki;

    #[tokio::test]
    async fn tethers_extras_tag_filter_by_name_and_count_across_pages() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["localhost".to_string()]).unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let c = Coordinator::new(store, Arc::new(pki));
        let now = now_ms();
        crate::core::admission::tests::open_activation(&c).await;
        for n in 0..60 {
            let role = if n % 3 == 0 { "db" } else { "web" };
            let row = InstanceRow {
                instance_id: format!("mi-{n:017x}"),
                activation_id: "act".into(),
                name: format!("node-{n:02}"),
                platform_type: "Linux".into(),
                tags_json: json!([{"Key": "role", "Value": role}]).to_string(),
                ..InstanceRow::default()
            };
            c.store.register_instance(&row, now).await.unwrap();
        }
        let ask =
            |v: Value| -> DescribeInstanceInformationRequest { serde_json::from_value(v).unwrap() };
        let first = describe(
            &c,
            ask(
                json!({"MaxResults": 50, "IncludeTags": true, "Summarize": true,
                "Filters": [{"Key": "tag:role", "Values": ["web"]}]}),
            ),
        )
        .await
        .unwrap();
        let list = first["InstanceInformationList"].as_array().unwrap();
        assert_eq!(list.len(), 40, "every web instance on one page");
        assert_eq!(list[0]["Tags"], json!([{"Key": "role", "Value": "web"}]));
        assert_eq!(first["Summary"]["Total"], 40);
        assert_eq!(first["Summary"]["PlatformType"]["Linux"], 40);
        assert!(first.get("NextToken").is_none());

        // Paged: the summary counts every page's instances, each page the same.
        let page = describe(&c, ask(json!({"MaxResults": 25, "Summarize": true})))
            .await
            .unwrap();
        assert_eq!(
            page["InstanceInformationList"].as_array().unwrap().len(),
            25
        );
        assert_eq!(page["Summary"]["Total"], 60);
        assert!(page["InstanceInformationList"][0].get("Tags").is_none());
        let token = page["NextToken"].as_str().unwrap().to_string();
        let last = describe(&c, ask(json!({"MaxResults": 50, "NextToken": token})))
            .await
            .unwrap();
        assert_eq!(
            last["InstanceInformationList"].as_array().unwrap().len(),
            35
        );
        assert!(last.get("Summary").is_none(), "only when asked");

        let named = describe(&c, ask(json!({"NameContains": "NODE-1"})))
            .await
            .unwrap();
        let ids: Vec<&str> = named["InstanceInformationList"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["Name"].as_str())
            .collect();
        assert_eq!(ids.len(), 10, "node-10 to node-19, any case: {ids:?}");
    }
}
