//! Inventory in SSM JSON: ListInventoryEntries (one instance, one type,
//! filtered), GetInventory (the fleet, with filters and aggregators that
//! count nodes per value), and Tether's own ListInventoryChanges (what
//! changed on a node between two times, from the stored history).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tether_ssm::input::{
    GetInventoryRequest, InventoryAggregator, InventoryFilter, ListInventoryChangesRequest,
    ListInventoryEntriesRequest,
};
use tether_ssm::{ApiError, limits};
use tether_store::InventoryRow;
use tether_util::time::{iso_ms, now_ms};

use super::wire::{Page, stored};
use crate::core::Coordinator;

type Entry = BTreeMap<String, String>;

/// One parsed `InventoryFilter`.
#[derive(Debug, Clone)]
struct Filter {
    type_name: Option<String>,
    attribute: String,
    values: Vec<String>,
    kind: String,
}

/// Filters; `Key` is `Attribute` or `TypeName.Attribute` (`AWS:Application.Name`).
/// The model has checked `Type` against its enum.
fn filters(op: &str, given: &[InventoryFilter], need_type: bool) -> Result<Vec<Filter>, ApiError> {
    let mut out = Vec::new();
    for f in given {
        let (key, values) = (f.key.as_str(), f.values.clone());
        let kind = f.r#type.as_deref().unwrap_or("Equal");
        let (type_name, attribute) = match key.rsplit_once('.') {
            Some((t, a)) if t.contains(':') => (Some(t.to_string()), a.to_string()),
            _ => (None, key.to_string()),
        };
        if attribute.is_empty() || (need_type && type_name.is_none()) {
            return Err(ApiError::new(
                "InvalidFilterKey",
                format!(
                    "{op}: filter Key {key:?} must be {}",
                    if need_type {
                        "TypeName.Attribute, e.g. AWS:Application.Name"
                    } else {
                        "an attribute name, e.g. Name"
                    }
                ),
            ));
        }
        if values.is_empty() && kind != "Exists" {
            return Err(ApiError::new(
                "InvalidFilterValue",
                format!("{op}: filter {key:?} needs at least one value"),
            ));
        }
        if matches!(kind, "LessThan" | "GreaterThan") && values.len() != 1 {
            return Err(ApiError::new(
                "InvalidFilterValue",
                format!("{op}: {kind} filter {key:?} takes exactly one value"),
            ));
        }
        out.push(Filter {
            type_name,
            attribute,
            values,
            kind: kind.to_string(),
        });
    }
    Ok(out)
}

fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

impl Filter {
    fn matches(&self, e: &Entry) -> bool {
        let v = e.get(&self.attribute);
        match self.kind.as_str() {
            "Exists" => v.is_some_and(|v| !v.is_empty()),
            "NotEqual" => v.is_none_or(|v| !self.values.contains(v)),
            _ => {
                let Some(v) = v else { return false };
                match self.kind.as_str() {
                    "BeginWith" => self.values.iter().any(|p| v.starts_with(p.as_str())),
                    "LessThan" => compare(v, &self.values[0]).is_lt(),
                    "GreaterThan" => compare(v, &self.values[0]).is_gt(),
                    _ => self.values.contains(v),
                }
            }
        }
    }
}

/// One stored capture and its entries, read once.
struct Captured {
    row: InventoryRow,
    entries: Vec<Entry>,
}

fn entries(row: &InventoryRow) -> Result<Vec<Entry>, ApiError> {
    stored(
        &format!("inventory {} {}", row.instance_id, row.type_name),
        &row.content_json,
    )
}

/// A capture time as SSM writes it (to the second).
fn capture(ms: i64) -> String {
    tether_util::time::iso_secs(ms.div_euclid(1000))
}

fn valid_type_name(op: &str, t: &str) -> Result<(), ApiError> {
    if t.starts_with("AWS:") || t.starts_with("Custom:") {
        Ok(())
    } else {
        Err(ApiError::new(
            "InvalidTypeNameException",
            format!("{op}: TypeName {t:?} must start with AWS: or Custom: (e.g. AWS:Application)"),
        ))
    }
}

pub(super) async fn list_entries(
    c: &Coordinator,
    r: ListInventoryEntriesRequest,
) -> Result<Value, ApiError> {
    let op = "ListInventoryEntries";
    let (id, type_name) = (r.instance_id.as_str(), r.type_name.as_str());
    valid_type_name(op, type_name)?;
    let fs = filters(op, r.filters.as_deref().unwrap_or_default(), false)?;
    for f in &fs {
        if f.type_name.as_deref().is_some_and(|t| t != type_name) {
            return Err(ApiError::new(
                "InvalidFilterKey",
                format!(
                    "ListInventoryEntries: filter on {} does not apply to TypeName {type_name}",
                    f.type_name.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    let page = Page::of(
        op,
        r.next_token.as_deref(),
        r.max_results,
        limits::DEFAULT_PAGE_SIZE,
    )?;
    if c.store.instance(id).await?.is_none() {
        return Err(ApiError::new(
            "InvalidInstanceId",
            format!("ListInventoryEntries: instance {id} is not registered"),
        ));
    }
    let rows = c.store.inventory(Some(id), Some(type_name)).await?;
    let mut out = json!({"TypeName": type_name, "InstanceId": id, "Entries": []});
    if let Some(row) = rows.first() {
        let all: Vec<Value> = entries(row)?
            .into_iter()
            .filter(|e| fs.iter().all(|f| f.matches(e)))
            .map(|e| json!(e))
            .collect();
        let page = page.of_list("Entries", all);
        out["Entries"] = page["Entries"].clone();
        if let Some(t) = page.get("NextToken") {
            out["NextToken"] = t.clone();
        }
        out["SchemaVersion"] = json!(row.schema_version);
        out["CaptureTime"] = json!(capture(row.capture_ms));
    }
    Ok(out)
}

/// Flattens nested aggregators into (type, attributes) for one count.
fn aggregator_keys(
    op: &str,
    agg: &InventoryAggregator,
    out: &mut Vec<String>,
) -> Result<(), ApiError> {
    if agg.groups.is_some() {
        return Err(ApiError::validation(format!(
            "{op}: aggregator Groups are not supported; use Filters"
        )));
    }
    let expr = agg.expression.as_deref().unwrap_or("");
    if expr
        .rsplit_once('.')
        .is_none_or(|(t, a)| !t.contains(':') || a.is_empty())
    {
        return Err(ApiError::new(
            "InvalidAggregatorException",
            format!(
                "{op}: aggregator Expression {expr:?} must be TypeName.Attribute, e.g. AWS:Application.Version"
            ),
        ));
    }
    out.push(expr.to_string());
    for a in agg.aggregators.iter().flatten() {
        aggregator_keys(op, a, out)?;
    }
    Ok(())
}

pub(super) async fn get(c: &Coordinator, r: GetInventoryRequest) -> Result<Value, ApiError> {
    let op = "GetInventory";
    let fs = filters(op, r.filters.as_deref().unwrap_or_default(), true)?;
    let page = Page::of(
        op,
        r.next_token.as_deref(),
        r.max_results,
        limits::DEFAULT_PAGE_SIZE,
    )?;
    let mut result_types: Vec<String> = Vec::new();
    for a in r.result_attributes.iter().flatten() {
        valid_type_name(op, &a.type_name)?;
        result_types.push(a.type_name.clone());
    }
    let mut agg_exprs = Vec::new();
    for a in r.aggregators.iter().flatten() {
        let mut keys = Vec::new();
        aggregator_keys(op, a, &mut keys)?;
        agg_exprs.push(keys);
    }
    let instances = c.store.instances().await?;
    let registered: BTreeSet<String> = instances.iter().map(|i| i.instance_id.clone()).collect();
    // Everything of registered instances, grouped by instance and type, each
    // content read once.
    let mut fleet: BTreeMap<String, BTreeMap<String, Captured>> = BTreeMap::new();
    for row in c.store.inventory(None, None).await? {
        if !registered.contains(&row.instance_id) {
            continue;
        }
        let entries = entries(&row)?;
        fleet
            .entry(row.instance_id.clone())
            .or_default()
            .insert(row.type_name.clone(), Captured { row, entries });
    }
    // AWS:InstanceInformation as SSM keeps it: current for every instance
    // (its agent version after an update, its address after a move), not
    // as of the last inventory run.
    for i in &instances {
        let types = fleet.entry(i.instance_id.clone()).or_default();
        let stored = types.remove(INSTANCE_INFORMATION);
        types.insert(
            INSTANCE_INFORMATION.to_string(),
            live_information(i, stored),
        );
    }
    // Instances where every filter finds a matching entry in its type.
    let matching: Vec<(&String, &BTreeMap<String, Captured>)> = fleet
        .iter()
        .filter(|(_, types)| {
            fs.iter().all(|f| {
                let t = f.type_name.as_deref().unwrap_or("");
                types
                    .get(t)
                    .is_some_and(|cap| cap.entries.iter().any(|e| f.matches(e)))
            })
        })
        .collect();
    if !agg_exprs.is_empty() {
        let mut data = serde_json::Map::new();
        for keys in agg_exprs {
            let type_name = keys[0].rsplit_once('.').map_or("", |(t, _)| t).to_string();
            if keys
                .iter()
                .any(|k| !k.starts_with(&format!("{type_name}.")))
            {
                return Err(ApiError::new(
                    "InvalidAggregatorException",
                    "GetInventory: nested aggregators must name attributes of one type",
                ));
            }
            let attrs: Vec<String> = keys
                .iter()
                .filter_map(|k| k.rsplit_once('.').map(|(_, a)| a.to_string()))
                .collect();
            // Distinct nodes per combination of values.
            let mut counts: BTreeMap<Vec<String>, BTreeSet<&String>> = BTreeMap::new();
            for (id, types) in &matching {
                let Some(cap) = types.get(&type_name) else {
                    continue;
                };
                for e in &cap.entries {
                    if fs
                        .iter()
                        .filter(|f| f.type_name.as_deref() == Some(type_name.as_str()))
                        .any(|f| !f.matches(e))
                    {
                        continue;
                    }
                    let combo: Vec<String> = attrs
                        .iter()
                        .map(|a| e.get(a).cloned().unwrap_or_default())
                        .collect();
                    counts.entry(combo).or_default().insert(id);
                }
            }
            let content: Vec<Value> = counts
                .into_iter()
                .map(|(combo, ids)| {
                    let mut m = serde_json::Map::new();
                    for (a, v) in attrs.iter().zip(combo) {
                        m.insert(a.clone(), json!(v));
                    }
                    m.insert("Count".into(), json!(ids.len().to_string()));
                    Value::Object(m)
                })
                .collect();
            data.insert(
                type_name.clone(),
                json!({"TypeName": type_name, "SchemaVersion": "", "Content": content}),
            );
        }
        return Ok(json!({"Entities": [{"Data": data}]}));
    }
    if result_types.is_empty() {
        result_types.push("AWS:InstanceInformation".into());
    }
    let all: Vec<Value> = matching
        .iter()
        .map(|(id, types)| {
            let mut data = serde_json::Map::new();
            for t in &result_types {
                let Some(Captured { row, entries }) = types.get(t) else {
                    continue;
                };
                let content: Vec<&Entry> = entries
                    .iter()
                    .filter(|e| {
                        fs.iter()
                            .filter(|f| f.type_name.as_deref() == Some(t.as_str()))
                            .all(|f| f.matches(e))
                    })
                    .collect();
                data.insert(
                    t.clone(),
                    json!({
                        "TypeName": t,
                        "SchemaVersion": row.schema_version,
                        "CaptureTime": capture(row.capture_ms),
                        "ContentHash": row.content_hash,
                        "Content": content,
                    }),
                );
            }
            json!({"Id": id, "Data": data})
        })
        .collect();
    Ok(page.of_list("Entities", all))
}

const INSTANCE_INFORMATION: &str = "AWS:InstanceInformation";

/// An instance's `AWS:InstanceInformation` from what its agent reported
/// last (at its last poll), over the entry its last inventory run stored.
fn live_information(i: &tether_store::InstanceRow, stored: Option<Captured>) -> Captured {
    let mut entry = stored
        .as_ref()
        .and_then(|c| c.entries.first().cloned())
        .unwrap_or_default();
    for (k, v) in [
        ("AgentType", "tether-agent"),
        ("AgentVersion", i.agent_version.as_str()),
        ("ComputerName", i.computer_name.as_str()),
        ("InstanceId", i.instance_id.as_str()),
        ("InstanceStatus", "Active"),
        ("IpAddress", i.ip_address.as_str()),
        ("PlatformName", i.platform_name.as_str()),
        ("PlatformType", i.platform_type.as_str()),
        ("PlatformVersion", i.platform_version.as_str()),
        ("ResourceType", "ManagedInstance"),
    ] {
        entry.insert(k.to_string(), v.to_string());
    }
    let seen = i.last_ping_ms.unwrap_or(i.registration_ms);
    let row = match stored {
        Some(c) => InventoryRow {
            capture_ms: c.row.capture_ms.max(seen),
            ..c.row
        },
        None => InventoryRow {
            instance_id: i.instance_id.clone(),
            type_name: INSTANCE_INFORMATION.to_string(),
            schema_version: "1.0".to_string(),
            content_hash: String::new(),
            capture_ms: seen,
            content_json: String::new(),
        },
    };
    Captured {
        row,
        entries: vec![entry],
    }
}

/// The attributes that identify an entry of `type_name` across captures.
fn identity(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "AWS:Application" => &["Name", "Architecture"],
        "AWS:Network" | "AWS:Service" | "AWS:AWSComponent" => &["Name"],
        "AWS:InstanceInformation" => &["InstanceId"],
        _ => &[],
    }
}

/// What changed in one type between two contents.
pub fn diff(type_name: &str, before: &[Entry], after: &[Entry]) -> Value {
    let id = identity(type_name);
    let key = |e: &Entry| -> Vec<String> {
        if id.is_empty() {
            vec![serde_json::to_string(e).unwrap_or_default()]
        } else {
            id.iter()
                .map(|k| e.get(*k).cloned().unwrap_or_default())
                .collect()
        }
    };
    let b: BTreeMap<Vec<String>, &Entry> = before.iter().map(|e| (key(e), e)).collect();
    let a: BTreeMap<Vec<String>, &Entry> = after.iter().map(|e| (key(e), e)).collect();
    let added: Vec<&Entry> = a
        .iter()
        .filter(|(k, _)| !b.contains_key(*k))
        .map(|(_, e)| *e)
        .collect();
    let removed: Vec<&Entry> = b
        .iter()
        .filter(|(k, _)| !a.contains_key(*k))
        .map(|(_, e)| *e)
        .collect();
    let changed: Vec<Value> = a
        .iter()
        .filter_map(|(k, new)| {
            let old = b.get(k)?;
            let attrs: Vec<&String> = new
                .keys()
                .chain(old.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|attr| new.get(*attr) != old.get(*attr) && *attr != "InstalledTime")
                .collect();
            (!attrs.is_empty()).then(|| json!({"Attributes": attrs, "Before": old, "After": new}))
        })
        .collect();
    json!({"TypeName": type_name, "Added": added, "Removed": removed, "Changed": changed})
}

/// Tether's ListInventoryChanges: `InstanceId`, optional `TypeName`,
/// `StartTime` (default: before the first capture) and `EndTime` (default: now).
pub(super) async fn list_changes(
    c: &Coordinator,
    r: ListInventoryChangesRequest,
) -> Result<Value, ApiError> {
    let id = r.instance_id.as_str();
    let type_name = r.type_name.as_deref();
    let start = r.start_time.map_or(0, |t| t.ms);
    let end = r.end_time.map_or_else(now_ms, |t| t.ms);
    if start > end {
        return Err(ApiError::validation(format!(
            "ListInventoryChanges: StartTime {} is after EndTime {}",
            iso_ms(start),
            iso_ms(end)
        )));
    }
    let before = c.store.inventory_at(id, start).await?;
    if r.by_capture == Some(true) {
        let captures = c.store.inventory_between(id, start, end).await?;
        return Ok(json!({
            "InstanceId": id,
            "StartTime": iso_ms(start),
            "EndTime": iso_ms(end),
            "Changes": changes_by_capture(&before, &captures, type_name)?,
        }));
    }
    let after = c.store.inventory_at(id, end).await?;
    let types: BTreeSet<&String> = before
        .iter()
        .chain(after.iter())
        .map(|r| &r.type_name)
        .filter(|t| type_name.is_none_or(|want| want == t.as_str()))
        .collect();
    let mut changes = Vec::new();
    for t in types {
        // A type absent at one end had no entries then.
        let pick = |rows: &[InventoryRow]| -> Result<Vec<Entry>, ApiError> {
            match rows.iter().find(|r| &r.type_name == t) {
                Some(row) => entries(row),
                None => Ok(Vec::new()),
            }
        };
        let d = diff(t, &pick(&before)?, &pick(&after)?);
        let empty = |k: &str| d[k].as_array().is_none_or(Vec::is_empty);
        if !(empty("Added") && empty("Removed") && empty("Changed")) {
            changes.push(d);
        }
    }
    Ok(json!({
        "InstanceId": id,
        "StartTime": iso_ms(start),
        "EndTime": iso_ms(end),
        "Changes": changes,
    }))
}

/// Each capture's changes against the content before it (the baseline at
/// the window's start, then the previous capture of the same type), oldest
/// first, each with the capture's time (`CaptureTime`).
fn changes_by_capture(
    baseline: &[InventoryRow],
    captures: &[InventoryRow],
    type_name: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let mut last: BTreeMap<&str, Vec<Entry>> = BTreeMap::new();
    for row in baseline {
        last.insert(&row.type_name, entries(row)?);
    }
    let mut out: Vec<(i64, Value)> = Vec::new();
    for row in captures {
        if type_name.is_some_and(|want| want != row.type_name) {
            continue;
        }
        let now = entries(row)?;
        let was = last.remove(row.type_name.as_str()).unwrap_or_default();
        let mut d = diff(&row.type_name, &was, &now);
        let empty = |k: &str| d[k].as_array().is_none_or(Vec::is_empty);
        if !(empty("Added") && empty("Removed") && empty("Changed")) {
            d["CaptureTime"] = json!(iso_ms(row.capture_ms));
            out.push((row.capture_ms, d));
        }
        last.insert(&row.type_name, now);
    }
    out.sort_by_key(|(at, _)| *at);
    Ok(out.into_iter().map(|(_, d)| d).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pairs: &[(&str, &str)]) -> Entry {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn changes_by_capture_diff_each_capture_with_the_one_before() {
        let row = |t: &str, at: i64, json: &str| InventoryRow {
            instance_id: "mi-1".into(),
            type_name: t.into(),
            schema_version: String::new(),
            content_hash: at.to_string(),
            capture_ms: at,
            content_json: json.into(),
        };
        let app =
            |v: &str| format!(r#"[{{"Name":"openssl","Architecture":"x86_64","Version":"{v}"}}]"#);
        let baseline = [row("AWS:Application", 1_000, &app("3.0.11"))];
        let captures = [
            row("AWS:Application", 2_000, &app("3.0.13")),
            row("AWS:Application", 3_000, &app("3.0.15")),
            row("Custom:X", 2_500, r#"[{"A":"1"}]"#),
        ];
        let out = changes_by_capture(&baseline, &captures, None).unwrap();
        let at: Vec<&str> = out
            .iter()
            .map(|c| c["CaptureTime"].as_str().unwrap())
            .collect();
        assert_eq!(at.len(), 3, "{out:?}");
        assert!(at.windows(2).all(|w| w[0] <= w[1]), "oldest first: {at:?}");
        assert_eq!(out[0]["Changed"][0]["Before"]["Version"], "3.0.11");
        assert_eq!(out[0]["Changed"][0]["After"]["Version"], "3.0.13");
        assert_eq!(out[1]["TypeName"], "Custom:X");
        assert_eq!(out[1]["Added"][0]["A"], "1", "no baseline: added");
        assert_eq!(out[2]["Changed"][0]["Before"]["Version"], "3.0.13");
        let only = changes_by_capture(&baseline, &captures, Some("Custom:X")).unwrap();
        assert_eq!(only.len(), 1);
    }

    #[test]
    fn diffs_name_packages_added_removed_and_upgraded() {
        let before = vec![
            e(&[
                ("Name", "openssl"),
                ("Architecture", "x86_64"),
                ("Version", "3.0.11"),
                ("InstalledTime", "a"),
            ]),
            e(&[
                ("Name", "telnet"),
                ("Architecture", "x86_64"),
                ("Version", "0.17"),
            ]),
        ];
        let after = vec![
            e(&[
                ("Name", "openssl"),
                ("Architecture", "x86_64"),
                ("Version", "3.0.15"),
                ("InstalledTime", "b"),
            ]),
            e(&[
                ("Name", "curl"),
                ("Architecture", "x86_64"),
                ("Version", "7.88"),
            ]),
        ];
        let d = diff("AWS:Application", &before, &after);
        assert_eq!(d["Added"][0]["Name"], "curl");
        assert_eq!(d["Removed"][0]["Name"], "telnet");
        assert_eq!(d["Changed"][0]["Attributes"], json!(["Version"]));
        assert_eq!(d["Changed"][0]["Before"]["Version"], "3.0.11");
        // An address change on an interface.
        let d = diff(
            "AWS:Network",
            &[e(&[("Name", "eth0"), ("IPV4", "10.0.0.5")])],
            &[e(&[("Name", "eth0"), ("IPV4", "10.0.0.5,10.0.0.6")])],
        );
        assert_eq!(d["Changed"][0]["After"]["IPV4"], "10.0.0.5,10.0.0.6");
        // Nothing changed: nothing reported.
        let d = diff("Custom:X", &before, &before);
        assert_eq!(
            (
                d["Added"].as_array().unwrap().len(),
                d["Removed"].as_array().unwrap().len()
            ),
            (0, 0)
        );
    }

    #[test]
    fn filters_follow_the_ssm_types() {
        let f = |kind: &str, values: &[&str]| Filter {
            type_name: None,
            attribute: "Version".into(),
            values: values.iter().map(|v| v.to_string()).collect(),
            kind: kind.into(),
        };
        let v = e(&[("Name", "x"), ("Version", "10")]);
        assert!(f("Equal", &["9", "10"]).matches(&v));
        assert!(!f("NotEqual", &["10"]).matches(&v));
        assert!(f("BeginWith", &["1"]).matches(&v));
        assert!(
            f("GreaterThan", &["9"]).matches(&v),
            "numbers compare as numbers"
        );
        assert!(f("LessThan", &["11"]).matches(&v));
        assert!(f("Exists", &[]).matches(&v));
        assert!(!f("Exists", &[]).matches(&e(&[("Name", "x")])));
    }
}
