//! Inventory gatherers (Linux): what `aws:softwareInventory` collects, as SSM
//! inventory types — `AWS:Application`, `AWS:Network`, `AWS:AWSComponent`,
//! `AWS:InstanceInformation`, `AWS:Service` and `Custom:*`.
//!
//! Everything is read from files (`/var/lib/dpkg/status`, the rpm database,
//! `/snap`, `/proc`, `/sys`, `/etc/resolv.conf`, DHCP leases, custom JSON
//! files); at most one process is started for a whole gathering (`systemctl`,
//! only where systemd runs), never one per package. Each type carries a
//! content hash over its entries (not its capture time), so an unchanged type
//! can be sent as its hash alone. Paths are in [`Sources`] so tests point them
//! at fixtures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod network;
pub mod packages;
mod rpmdb;
pub mod services;

/// One inventory entry: attribute name to string value, as SSM keeps them.
pub type Entry = BTreeMap<String, String>;

/// One gathered inventory type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Item {
    pub type_name: String,
    pub schema_version: String,
    /// ISO 8601, UTC.
    pub capture_time: String,
    pub content_hash: String,
    pub content: Vec<Entry>,
}

impl Item {
    pub fn new(type_name: &str, schema_version: &str, mut content: Vec<Entry>) -> Item {
        content.sort();
        Item {
            type_name: type_name.to_string(),
            schema_version: schema_version.to_string(),
            capture_time: tether_util::time::iso_secs(chrono::Utc::now().timestamp()),
            content_hash: content_hash(&content),
            content,
        }
    }
}

/// Lowercase hex SHA-256 of the entries in their canonical (sorted) JSON form.
pub fn content_hash(content: &[Entry]) -> String {
    let json = serde_json::to_vec(content).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// Which types to gather: the `AWS-GatherSoftwareInventory` parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub applications: bool,
    pub aws_components: bool,
    pub network_config: bool,
    pub instance_detailed_information: bool,
    pub services: bool,
    pub custom_inventory: bool,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            applications: true,
            aws_components: true,
            network_config: true,
            instance_detailed_information: true,
            services: true,
            custom_inventory: true,
        }
    }
}

impl Selection {
    /// From the document's parameters (`Enabled` / `Disabled`; absent = the default).
    pub fn from_parameters(params: &BTreeMap<String, Vec<String>>) -> Selection {
        let on = |name: &str, default: bool| {
            params
                .get(name)
                .and_then(|v| v.first())
                .map_or(default, |v| v.eq_ignore_ascii_case("Enabled"))
        };
        let d = Selection::default();
        Selection {
            applications: on("applications", d.applications),
            aws_components: on("awsComponents", d.aws_components),
            network_config: on("networkConfig", d.network_config),
            instance_detailed_information: on(
                "instanceDetailedInformation",
                d.instance_detailed_information,
            ),
            services: on("services", d.services),
            custom_inventory: on("customInventory", d.custom_inventory),
        }
    }
}

/// Where the gatherers read from.
#[derive(Clone, Debug)]
pub struct Sources {
    pub dpkg_dir: PathBuf,
    pub rpm_dir: PathBuf,
    pub snap_dir: PathBuf,
    pub resolv_conf: PathBuf,
    pub dhcp_lease_dirs: Vec<PathBuf>,
    pub proc_net: PathBuf,
    pub custom_dir: PathBuf,
    /// `systemctl`, used only when `/run/systemd/system` exists.
    pub systemctl: String,
    pub systemd_marker: PathBuf,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            dpkg_dir: "/var/lib/dpkg".into(),
            rpm_dir: "/var/lib/rpm".into(),
            snap_dir: "/snap".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            dhcp_lease_dirs: vec![
                "/var/lib/dhcp".into(),
                "/var/lib/dhclient".into(),
                "/run/systemd/netif/leases".into(),
            ],
            proc_net: "/proc/net".into(),
            custom_dir: DEFAULT_CUSTOM_DIR.into(),
            systemctl: "systemctl".into(),
            systemd_marker: "/run/systemd/system".into(),
        }
    }
}

/// Where `Custom:*` inventory files are read from unless configured.
pub const DEFAULT_CUSTOM_DIR: &str = "/etc/tether/inventory";

/// What the agent says of itself and its host.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    pub instance_id: String,
    pub info: tether_proto::AgentInfo,
}

/// Gathers the selected types. A source that cannot be read yields an empty
/// type (and a problem line), never a failed gathering.
pub fn gather(sel: &Selection, src: &Sources, me: &Identity) -> (Vec<Item>, Vec<String>) {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    if sel.applications {
        let (apps, p) = packages::applications(src);
        problems.extend(p);
        items.push(Item::new("AWS:Application", "1.1", apps));
    }
    if sel.aws_components {
        items.push(Item::new("AWS:AWSComponent", "1.0", vec![component()]));
    }
    if sel.network_config {
        match network::interfaces(src) {
            Ok(n) => items.push(Item::new("AWS:Network", "1.0", n)),
            Err(e) => problems.push(format!("AWS:Network: {e}")),
        }
    }
    if sel.instance_detailed_information {
        items.push(Item::new(
            "AWS:InstanceInformation",
            "1.0",
            vec![instance_information(me)],
        ));
    }
    if sel.services && src.systemd_marker.exists() {
        match services::systemd_units(&src.systemctl) {
            Ok(s) => items.push(Item::new("AWS:Service", "1.0", s)),
            Err(e) => problems.push(format!("AWS:Service: {e}")),
        }
    }
    if sel.custom_inventory {
        let (custom, p) = custom(&src.custom_dir);
        items.extend(custom);
        problems.extend(p);
    }
    (items, problems)
}

fn entry<const N: usize>(pairs: [(&str, String); N]) -> Entry {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn component() -> Entry {
    entry([
        ("Name", "tether-agent".into()),
        ("ApplicationType", "Agent".into()),
        ("Publisher", "Tether".into()),
        ("Version", crate::version::current().into()),
        (
            "Architecture",
            packages::architecture(std::env::consts::ARCH),
        ),
        (
            "InstalledTime",
            std::env::current_exe()
                .ok()
                .and_then(|p| packages::mtime_iso(&p))
                .unwrap_or_default(),
        ),
    ])
}

fn instance_information(me: &Identity) -> Entry {
    entry([
        ("AgentType", "tether-agent".into()),
        ("AgentVersion", me.info.agent_version.clone()),
        ("ComputerName", me.info.computer_name.clone()),
        ("InstanceId", me.instance_id.clone()),
        ("InstanceStatus", "Active".into()),
        ("IpAddress", me.info.ip_address.clone()),
        ("PlatformName", me.info.platform_name.clone()),
        ("PlatformType", me.info.platform_type.clone()),
        ("PlatformVersion", me.info.platform_version.clone()),
        ("ResourceType", "ManagedInstance".into()),
    ])
}

/// The SSM custom inventory file format.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CustomFile {
    #[serde(default = "one_point_oh")]
    schema_version: String,
    type_name: String,
    content: serde_json::Value,
}

fn one_point_oh() -> String {
    "1.0".into()
}

/// `Custom:*` types from `*.json` files in `dir` (a missing directory is no custom inventory).
pub fn custom(dir: &Path) -> (Vec<Item>, Vec<String>) {
    let mut items: Vec<Item> = Vec::new();
    let mut problems = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (items, problems);
    };
    let mut paths: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let parsed = std::fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<CustomFile>(&b).map_err(|e| e.to_string()));
        let f = match parsed {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("{}: {e}", p.display()));
                continue;
            }
        };
        if !f.type_name.starts_with("Custom:") || f.type_name.len() <= "Custom:".len() {
            problems.push(format!(
                "{}: TypeName {:?} must start with Custom: and name the type",
                p.display(),
                f.type_name
            ));
            continue;
        }
        let rows: Vec<&serde_json::Value> = match &f.content {
            serde_json::Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let mut content = Vec::new();
        for r in rows {
            let Some(obj) = r.as_object() else {
                problems.push(format!(
                    "{}: Content must be an object or a list of objects",
                    p.display()
                ));
                continue;
            };
            content.push(
                obj.iter()
                    .map(|(k, v)| {
                        let s = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                        (k.clone(), s)
                    })
                    .collect(),
            );
        }
        if items.iter().any(|i| i.type_name == f.type_name) {
            problems.push(format!(
                "{}: type {} is defined by an earlier file",
                p.display(),
                f.type_name
            ));
            continue;
        }
        items.push(Item::new(&f.type_name, &f.schema_version, content));
    }
    (items, problems)
}

#[cfg(test)]
mod tests;
