//! Tether's own verbs, for operations SSM does not have (so they are not in
//! the botocore model the other verbs are built from). Each maps its flags
//! to the request of one coordinator operation, like the model-built verbs.

use clap::{Arg, ArgMatches, Command};
use serde_json::{Map, Value, json};

use super::{CliError, parse_error, parse_timestamp};

/// (verb, operation).
const VERBS: [(&str, &str); 4] = [
    ("list-inventory-changes", "ListInventoryChanges"),
    ("create-access-key", "CreateAccessKey"),
    ("list-access-keys", "ListAccessKeys"),
    ("delete-access-key", "DeleteAccessKey"),
];

pub fn commands() -> Vec<Command> {
    vec![
        Command::new("list-inventory-changes")
            .about("Tether: what changed in a node's inventory between two times (packages added, removed, upgraded; addresses changed).")
            .arg(Arg::new("instance-id").long("instance-id").required(true).num_args(1).help("The managed instance."))
            .arg(Arg::new("type-name").long("type-name").num_args(1).help("Only this inventory type, e.g. AWS:Application."))
            .arg(Arg::new("start-time").long("start-time").num_args(1).help("From this time (ISO 8601 or epoch seconds); default: before the first capture."))
            .arg(Arg::new("end-time").long("end-time").num_args(1).help("To this time; default: now.")),
        // The SigV4 keys of the SSM-compatible HTTP API, with `aws iam`'s names and output.
        Command::new("create-access-key")
            .about("Tether: issue a SigV4 access key for the SSM-compatible HTTP API (the secret is shown once)."),
        Command::new("list-access-keys")
            .about("Tether: list the issued access keys (never their secrets)."),
        Command::new("delete-access-key")
            .about("Tether: delete an access key; requests signed with it are refused from then on.")
            .arg(Arg::new("access-key-id").long("access-key-id").required(true).num_args(1).help("The key to delete.")),
    ]
}

/// The operation a Tether verb stands for.
pub fn operation_of(verb: &str) -> Option<&'static str> {
    VERBS.iter().find(|(v, _)| *v == verb).map(|(_, op)| *op)
}

pub fn request(operation: &str, matches: &ArgMatches) -> Result<Value, CliError> {
    let mut body = Map::new();
    match operation {
        "CreateAccessKey" | "ListAccessKeys" => return Ok(Value::Object(body)),
        "DeleteAccessKey" => {
            if let Some(id) = matches.get_one::<String>("access-key-id") {
                body.insert("AccessKeyId".into(), json!(id));
            }
            return Ok(Value::Object(body));
        }
        _ => {}
    }
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
