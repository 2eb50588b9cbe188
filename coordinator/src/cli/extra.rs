//! Tether's own verbs, for operations SSM does not have (so they are not in
//! the botocore model the other verbs are built from). Each maps its flags
//! to the request of one coordinator operation, like the model-built verbs.

use clap::{Arg, ArgMatches, Command};
use serde_json::{Map, Value, json};

use super::{CliError, parse_error, parse_timestamp};

/// (verb, operation).
const VERBS: [(&str, &str); 1] = [("list-inventory-changes", "ListInventoryChanges")];

pub fn commands() -> Vec<Command> {
    vec![
        Command::new("list-inventory-changes")
            .about("Tether: what changed in a node's inventory between two times (packages added, removed, upgraded; addresses changed).")
            .arg(Arg::new("instance-id").long("instance-id").required(true).num_args(1).help("The managed instance."))
            .arg(Arg::new("type-name").long("type-name").num_args(1).help("Only this inventory type, e.g. AWS:Application."))
            .arg(Arg::new("start-time").long("start-time").num_args(1).help("From this time (ISO 8601 or epoch seconds); default: before the first capture."))
            .arg(Arg::new("end-time").long("end-time").num_args(1).help("To this time; default: now.")),
    ]
}

/// The operation a Tether verb stands for.
pub fn operation_of(verb: &str) -> Option<&'static str> {
    VERBS.iter().find(|(v, _)| *v == verb).map(|(_, op)| *op)
}

pub fn request(matches: &ArgMatches) -> Result<Value, CliError> {
    let mut body = Map::new();
    for (flag, member) in [("instance-id", "InstanceId"), ("type-name", "TypeName")] {
        if let Some(v) = matches.get_one::<String>(flag) {
            body.insert(member.into(), json!(v));
        }
    }
    for (flag, member) in [("start-time", "StartTime"), ("end-time", "EndTime")] {
        if let Some(raw) = matches.get_one::<String>(flag) {
            let secs = parse_timestamp(raw).ok_or_else(|| {
                parse_error(
                    flag,
                    format!("{raw:?} is not a timestamp (ISO 8601 or epoch seconds)"),
                )
            })?;
            body.insert(member.into(), json!(secs));
        }
    }
    Ok(Value::Object(body))
}
