//! The operator CLI: `aws ssm` verbs and flags, turned into SSM requests sent
//! to the coordinator's operator service, with the response printed as the aws
//! CLI prints it.
//!
//! The verbs are built from botocore's SSM model ([`tether_ssm::model`]): one per
//! operation in [`Operation::ALL`] (SSM's, and Tether's own from the same
//! model), one flag per input member, named and
//! parsed as the aws CLI does, plus its paging flags. This module owns flag
//! parsing and printing only; what each operation means is decided by the
//! coordinator's action layer on the other side of the wire.

pub mod config;
pub mod output;
pub mod shorthand;

use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use clap::{Arg, ArgAction, ArgMatches, Args, Command};
use serde_json::{Map, Value, json};
use tether_proto as pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use tether_ssm::{Operation, model};

pub use config::OperatorConfig;
use output::OutputFormat;

/// Exit status for service-side errors, as the aws CLI.
pub const EXIT_SERVICE_ERROR: u8 = 255;
/// Exit status for usage errors.
pub const EXIT_USAGE: u8 = 2;

/// Global options shared by every verb.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// operator.json to use (default: $TETHER_CONFIG, ~/.config/tether/operator.json, /var/lib/tether/operator.json)
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Output format: json, text or table
    #[arg(long, global = true, default_value = "json")]
    pub output: String,
}

/// A failure the CLI reports on stderr, with its exit status.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub exit: u8,
}

impl CliError {
    fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            exit: EXIT_USAGE,
        }
    }
    fn service(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            exit: EXIT_SERVICE_ERROR,
        }
    }
}

/// Tether's own flags on SSM verbs: boolean request members the coordinator
/// understands beyond the SSM model, as (operation, flag, member, help).
const EXTRA_FLAGS: &[(&str, &str, &str, &str)] = &[(
    "GetCommandInvocation",
    "full-output",
    "FullOutput",
    "Tether: the whole stored output instead of SSM's first 24,000 / 8,000 characters.",
)];

/// Tether's own flags on SSM verbs that change what the CLI does rather than
/// the request: (operation, flag, help).
const CLIENT_FLAGS: &[(&str, &str, &str)] = &[(
    "GetCommandInvocation",
    "follow",
    "Tether: stream the invocation's output as it is produced, step by step, until it ends; exit 0 if it succeeded, 1 if not.",
)];

/// How often `--follow` looks for new output.
const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The flags the aws CLI adds to verbs whose results come in pages.
const PAGING_FLAGS: [(&str, &str); 4] = [
    (
        "max-items",
        "The total number of items to print; a NextToken is printed when there are more.",
    ),
    (
        "starting-token",
        "Where to start: the NextToken printed by an earlier call with --max-items.",
    ),
    (
        "page-size",
        "How many items to ask for in each call (all are still fetched).",
    ),
    ("no-paginate", "Make one call only and print its NextToken."),
];

/// The verbs this coordinator serves, one per operation it implements (the
/// `aws ssm` verbs, then Tether's own), with the flags of the model's input
/// members.
pub fn verbs() -> Vec<Command> {
    Operation::ALL.iter().map(|op| verb(op.name())).collect()
}

fn verb(operation: &str) -> Command {
    let m = model::model();
    let mut cmd = Command::new(model::cli_name(operation))
        .about(m.operation_help(operation))
        .args_override_self(true);
    for member in m.input_members(operation) {
        let flag = model::cli_name(member.name);
        let arg = Arg::new(flag.clone()).long(flag.clone()).help(member.help);
        cmd = match m.shape_type(member.shape) {
            "boolean" => {
                let no = format!("no-{flag}");
                cmd.arg(arg.action(ArgAction::SetTrue).overrides_with(no.clone()))
                    .arg(
                        Arg::new(no.clone())
                            .long(no)
                            .action(ArgAction::SetTrue)
                            .hide(true)
                            .overrides_with(flag),
                    )
            }
            "list" => cmd.arg(
                arg.required(member.required)
                    .num_args(1..)
                    .action(ArgAction::Set),
            ),
            "integer" | "long" => cmd.arg(
                arg.required(member.required)
                    .num_args(1)
                    .allow_negative_numbers(true),
            ),
            _ => cmd.arg(arg.required(member.required).num_args(1)),
        };
    }
    for (_, flag, _, help) in EXTRA_FLAGS.iter().filter(|e| e.0 == operation) {
        cmd = cmd.arg(
            Arg::new(*flag)
                .long(*flag)
                .help(*help)
                .action(ArgAction::SetTrue),
        );
    }
    for (_, flag, help) in CLIENT_FLAGS.iter().filter(|e| e.0 == operation) {
        cmd = cmd.arg(
            Arg::new(*flag)
                .long(*flag)
                .help(*help)
                .action(ArgAction::SetTrue),
        );
    }
    if m.paginator(operation).is_some() {
        for (flag, help) in PAGING_FLAGS {
            let arg = Arg::new(flag).long(flag).help(help);
            cmd = cmd.arg(if flag == "no-paginate" {
                arg.action(ArgAction::SetTrue)
            } else {
                arg.num_args(1)
            });
        }
    }
    cmd
}

/// The operation a verb name stands for, if this coordinator serves it.
pub fn operation_of(verb: &str) -> Option<&'static str> {
    Operation::ALL
        .iter()
        .map(|op| op.name())
        .find(|op| model::cli_name(op) == verb)
}

fn parse_error(flag: &str, e: impl std::fmt::Display) -> CliError {
    CliError::usage(format!("Error parsing parameter '--{flag}': {e}"))
}

/// The SSM request body for a verb's parsed flags, members in model order.
pub fn request(operation: &str, matches: &ArgMatches) -> Result<Value, CliError> {
    let m = model::model();
    let mut body = Map::new();
    for member in m.input_members(operation) {
        let flag = model::cli_name(member.name);
        let value = match m.shape_type(member.shape) {
            "boolean" => {
                if matches.get_flag(&flag) {
                    Some(Value::Bool(true))
                } else if matches.get_flag(&format!("no-{flag}")) {
                    Some(Value::Bool(false))
                } else {
                    None
                }
            }
            "list" => match matches.get_many::<String>(&flag) {
                Some(raws) => {
                    let raws: Vec<String> = raws.cloned().collect();
                    Some(
                        shorthand::parse_list_arg(&raws, &m.cli_shape(member.shape))
                            .map_err(|e| parse_error(&flag, e))?,
                    )
                }
                None => None,
            },
            "timestamp" => match matches.get_one::<String>(&flag) {
                Some(raw) => Some(json!(
                    parse_timestamp(raw).ok_or_else(|| parse_error(
                        &flag,
                        format!(
                            "{raw:?} is not a timestamp (ISO 8601 such as 2030-01-10T20:30:00Z, or epoch seconds)"
                        )
                    ))?
                )),
                None => None,
            },
            _ => match matches.get_one::<String>(&flag) {
                Some(raw) => Some(
                    shorthand::parse_value(raw, &m.cli_shape(member.shape))
                        .map_err(|e| parse_error(&flag, e))?,
                ),
                None => None,
            },
        };
        if let Some(v) = value {
            body.insert(member.name.to_owned(), v);
        }
    }
    for (_, flag, member, _) in EXTRA_FLAGS.iter().filter(|e| e.0 == operation) {
        if matches.get_flag(flag) {
            body.insert((*member).to_owned(), Value::Bool(true));
        }
    }
    Ok(Value::Object(body))
}

/// A timestamp flag as epoch seconds: ISO 8601 (with or without zone, or a
/// date alone, taken as UTC) or a number of seconds, as the aws CLI accepts.
fn parse_timestamp(raw: &str) -> Option<f64> {
    tether_util::time::parse_timestamp_ms(raw).map(|ms| ms as f64 / 1000.0)
}

/// The aws CLI's paging flags, as given.
#[derive(Debug, Default)]
struct Paging {
    max_items: Option<usize>,
    starting_token: Option<String>,
    page_size: Option<i64>,
    no_paginate: bool,
}

impl Paging {
    fn of(matches: &ArgMatches) -> Result<Self, CliError> {
        let number = |flag: &str| -> Result<Option<i64>, CliError> {
            matches
                .get_one::<String>(flag)
                .map(|v| {
                    v.trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            parse_error(flag, format!("{v:?} is not a positive integer"))
                        })
                })
                .transpose()
        };
        Ok(Paging {
            max_items: number("max-items")?.map(|n| n as usize),
            starting_token: matches.get_one::<String>("starting-token").cloned(),
            page_size: number("page-size")?,
            no_paginate: matches.get_flag("no-paginate"),
        })
    }
}

/// The aws CLI's resume token: base64 of `{"NextToken": …, "boto_truncate_amount": n}`.
fn encode_resume(input_token: &str, token: Option<&str>, skip: usize) -> String {
    let mut t = Map::new();
    if let Some(token) = token {
        t.insert(input_token.to_owned(), json!(token));
    }
    if skip > 0 {
        t.insert("boto_truncate_amount".into(), json!(skip));
    }
    base64::engine::general_purpose::STANDARD.encode(Value::Object(t).to_string())
}

/// Reads a resume token; a token that is not one of ours is the service's own.
fn decode_resume(input_token: &str, raw: &str) -> (Option<String>, usize) {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(Value::is_object);
    match decoded {
        Some(t) => (
            t.get(input_token)
                .and_then(Value::as_str)
                .map(str::to_owned),
            t.get("boto_truncate_amount")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize,
        ),
        None => (Some(raw.to_owned()), 0),
    }
}

/// Calls a paged operation as the aws CLI does: every page merged into one
/// response unless the request names a page itself or `--no-paginate` is
/// given, `--max-items` cut with a resume token, `--page-size` per call.
async fn paginate(
    channel: &Channel,
    token: &str,
    operation: &str,
    mut body: Value,
    p: &model::Paginator,
    paging: Paging,
) -> Result<Value, CliError> {
    let explicit =
        body.get(p.input_token).is_some() || p.limit_key.is_some_and(|k| body.get(k).is_some());
    if explicit || paging.no_paginate {
        return call(channel.clone(), token, operation, &body).await;
    }
    if let (Some(n), Some(k)) = (paging.page_size, p.limit_key) {
        body[k] = json!(n);
    }
    let (mut page_token, mut skip) = match &paging.starting_token {
        Some(raw) => decode_resume(p.input_token, raw),
        None => (None, 0),
    };
    let primary = p.result_keys.first().copied().unwrap_or("");
    let mut merged: Option<Value> = None;
    loop {
        let mut req = body.clone();
        if let Some(t) = &page_token {
            req[p.input_token] = json!(t);
        }
        let mut page = call(channel.clone(), token, operation, &req).await?;
        for key in &p.result_keys {
            if let Some(items) = page.get_mut(*key).and_then(Value::as_array_mut) {
                items.drain(..skip.min(items.len()));
            }
        }
        let next = page
            .get(p.output_token)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let in_page = page[primary].as_array().map_or(0, Vec::len);
        let before = match &mut merged {
            None => {
                merged = Some(page);
                0
            }
            Some(all) => {
                let before = all[primary].as_array().map_or(0, Vec::len);
                for key in &p.result_keys {
                    if let (Some(Value::Array(items)), Some(Value::Array(more))) =
                        (all.get_mut(*key), page.get_mut(*key))
                    {
                        items.append(more);
                    }
                }
                before
            }
        };
        let Some(all) = merged.as_mut() else {
            break;
        };
        if let Some(max) = paging.max_items
            && before + in_page >= max
        {
            let taken = max - before;
            for key in &p.result_keys {
                if let Some(items) = all.get_mut(*key).and_then(Value::as_array_mut) {
                    items.truncate(max);
                }
            }
            let resume = if taken < in_page {
                Some(encode_resume(
                    p.input_token,
                    page_token.as_deref(),
                    skip + taken,
                ))
            } else {
                next.as_deref()
                    .map(|n| encode_resume(p.input_token, Some(n), 0))
            };
            if let Some(obj) = all.as_object_mut() {
                obj.remove(p.output_token);
                if let Some(r) = resume {
                    obj.insert("NextToken".into(), json!(r));
                }
            }
            return Ok(merged.unwrap_or(Value::Null));
        }
        match next {
            Some(t) => {
                page_token = Some(t);
                skip = 0;
            }
            None => break,
        }
    }
    let mut all = merged.unwrap_or_else(|| json!({}));
    if let Some(obj) = all.as_object_mut() {
        obj.remove(p.output_token);
    }
    Ok(all)
}

/// Finds operator.json: --config, $TETHER_CONFIG, ~/.config/tether, /var/lib/tether.
pub fn config_path(flag: Option<&PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(p) = flag {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("TETHER_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut tried = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".config/tether/operator.json");
        if p.exists() {
            return Ok(p);
        }
        tried.push(p);
    }
    let p = PathBuf::from("/var/lib/tether/operator.json");
    if p.exists() {
        return Ok(p);
    }
    tried.push(p);
    Err(CliError::service(format!(
        "no operator config found (tried {}); pass --config or set TETHER_CONFIG to the operator.json that `tether serve` wrote",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

pub fn load_config(path: &PathBuf) -> Result<OperatorConfig, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::service(format!(
            "cannot read operator config {}: {e}",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::service(format!(
            "operator config {} is not valid: {e}",
            path.display()
        ))
    })
}

pub async fn connect(cfg: &OperatorConfig) -> Result<Channel, CliError> {
    let uri: http::Uri = cfg.endpoint.parse().map_err(|e| {
        CliError::service(format!(
            "Endpoint {:?} in operator config is not a URL: {e}",
            cfg.endpoint
        ))
    })?;
    let host = uri
        .host()
        .unwrap_or("localhost")
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cfg.ca_certificate))
        .domain_name(host);
    let endpoint = Endpoint::from(uri)
        .tls_config(tls)
        .map_err(|e| CliError::service(format!("TLS configuration: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(10));
    endpoint.connect().await.map_err(|e| {
        let mut msg = format!(
            "Could not connect to the endpoint URL: \"{}\"",
            cfg.endpoint
        );
        let mut src: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        CliError::service(msg)
    })
}

/// Calls one operation and returns its response JSON.
pub async fn call(
    channel: Channel,
    token: &str,
    operation: &str,
    body: &Value,
) -> Result<Value, CliError> {
    let mut client = pb::operator_client::OperatorClient::new(channel)
        .max_decoding_message_size(pb::MAX_MESSAGE_BYTES);
    let mut req = tonic::Request::new(pb::OperatorCall {
        operation: operation.to_string(),
        request_json: body.to_string(),
    });
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| CliError::service("the operator token in the config is not valid text"))?;
    req.metadata_mut().insert(pb::OPERATOR_TOKEN_HEADER, auth);
    match client.invoke(req).await {
        Ok(r) => serde_json::from_str(&r.into_inner().response_json)
            .map_err(|e| CliError::service(format!("the coordinator sent invalid JSON: {e}"))),
        Err(status) => {
            let kind = status
                .metadata()
                .get(pb::ERROR_TYPE_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_else(|| match status.code() {
                    tonic::Code::Unauthenticated => "UnrecognizedClientException".into(),
                    tonic::Code::Unavailable => "ServiceUnavailable".into(),
                    _ => "InternalServerError".into(),
                });
            Err(CliError::service(format!(
                "An error occurred ({kind}) when calling the {operation} operation: {}",
                status.message()
            )))
        }
    }
}

/// Runs a verb: builds the request from its flags, calls the coordinator
/// (following pages as the aws CLI does), prints the response.
pub async fn run(global: &Global, verb: &str, matches: &ArgMatches) -> ExitCode {
    match run_inner(global, verb, matches).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", e.message);
            ExitCode::from(e.exit)
        }
    }
}

async fn run_inner(global: &Global, verb: &str, matches: &ArgMatches) -> Result<String, CliError> {
    let format: OutputFormat = global.output.parse().map_err(|_| {
        CliError::usage(format!(
            "--output: {:?} is not one of json, text, table",
            global.output
        ))
    })?;
    let Some(operation) = operation_of(verb) else {
        return Err(CliError::usage(format!("unknown verb {verb:?}")));
    };
    let body = request(operation, matches)?;
    let path = config_path(global.config.as_ref())?;
    let cfg = load_config(&path)?;
    let channel = connect(&cfg).await?;
    if operation == "GetCommandInvocation" && matches.get_flag("follow") {
        return follow(&channel, &cfg.token, &body).await;
    }
    let mut response = match model::model().paginator(operation) {
        Some(p) => {
            let paging = Paging::of(matches)?;
            paginate(&channel, &cfg.token, operation, body, &p, paging).await?
        }
        None => call(channel, &cfg.token, operation, &body).await?,
    };
    output::timestamps_to_iso(&mut response);
    let mut out = output::render(operation, &response, format);
    if operation == "CreateActivation" && format == OutputFormat::Text {
        out.push_str(&install_snippet(&cfg, &response));
    }
    Ok(out)
}

/// `get-command-invocation --follow`: prints each step's output as it grows
/// (stdout to stdout, stderr to stderr) until the invocation ends.
async fn follow(channel: &Channel, token: &str, request: &Value) -> Result<String, CliError> {
    use std::io::Write as _;
    let command_id = request["CommandId"].clone();
    let instance_id = request["InstanceId"].clone();
    let only = request.get("PluginName").and_then(Value::as_str);
    // Per step: what has been printed of (stdout, stderr).
    let mut printed: Vec<(String, String, String)> = Vec::new();
    loop {
        let listed = call(
            channel.clone(),
            token,
            "ListCommandInvocations",
            &json!({"CommandId": command_id, "InstanceId": instance_id, "Details": true}),
        )
        .await?;
        let Some(inv) = listed["CommandInvocations"].get(0).cloned() else {
            return Err(CliError::service(format!(
                "An error occurred (InvocationDoesNotExist) when calling the GetCommandInvocation operation: command {command_id} has no invocation on instance {instance_id}"
            )));
        };
        let status = inv["Status"].as_str().unwrap_or("").to_owned();
        let done = matches!(
            status.as_str(),
            "Success" | "Failed" | "TimedOut" | "Cancelled"
        );
        let steps: Vec<String> = inv["CommandPlugins"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["Name"].as_str().map(str::to_owned))
                    .filter(|n| only.is_none_or(|o| o == n))
                    .collect()
            })
            .unwrap_or_default();
        for name in &steps {
            let step = call(
                channel.clone(),
                token,
                "GetCommandInvocation",
                &json!({"CommandId": command_id, "InstanceId": instance_id,
                        "PluginName": name, "FullOutput": true}),
            )
            .await?;
            let i = match printed.iter().position(|(n, _, _)| n == name) {
                Some(i) => i,
                None => {
                    if steps.len() > 1 {
                        eprintln!("--- step {name} ---");
                    }
                    printed.push((name.clone(), String::new(), String::new()));
                    printed.len() - 1
                }
            };
            let entry = &mut printed[i];
            let out = step["StandardOutputContent"].as_str().unwrap_or("");
            let err = step["StandardErrorContent"].as_str().unwrap_or("");
            let mut so = std::io::stdout().lock();
            let _ = so.write_all(new_part(&entry.1, out).as_bytes());
            let _ = so.flush();
            let mut se = std::io::stderr().lock();
            let _ = se.write_all(new_part(&entry.2, err).as_bytes());
            let _ = se.flush();
            entry.1 = out.to_owned();
            entry.2 = err.to_owned();
        }
        if done {
            let code = inv["CommandPlugins"]
                .as_array()
                .and_then(|ps| ps.last())
                .and_then(|p| p["ResponseCode"].as_i64())
                .unwrap_or(-1);
            return if status == "Success" {
                Ok(String::new())
            } else {
                Err(CliError {
                    message: format!(
                        "the invocation ended {status} ({}, response code {code})",
                        inv["StatusDetails"].as_str().unwrap_or("")
                    ),
                    exit: 1,
                })
            };
        }
        tokio::time::sleep(FOLLOW_INTERVAL).await;
    }
}

/// What `now` adds to what was printed: the part after their common prefix.
fn new_part<'a>(printed: &str, now: &'a str) -> &'a str {
    let common = printed
        .char_indices()
        .zip(now.chars())
        .find(|((_, a), b)| a != b)
        .map_or(printed.len().min(now.len()), |((i, _), _)| i);
    now.get(common..).unwrap_or("")
}

/// A ready-to-paste user-data snippet for a new activation (see [`config::user_data_snippet`]).
fn install_snippet(cfg: &OperatorConfig, activation: &Value) -> String {
    let http = if cfg.advertised_http_endpoint.is_empty() {
        &cfg.http_endpoint
    } else {
        &cfg.advertised_http_endpoint
    };
    config::user_data_snippet(
        http,
        &cfg.ca_pin,
        activation["ActivationId"].as_str().unwrap_or(""),
        activation["ActivationCode"].as_str().unwrap_or(""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(operation: &str, args: &[&str]) -> Result<Value, CliError> {
        let name = model::cli_name(operation);
        let matches = verb(operation)
            .try_get_matches_from(std::iter::once(name.as_str()).chain(args.iter().copied()))
            .map_err(|e| CliError::usage(e.to_string()))?;
        request(operation, &matches)
    }

    #[test]
    fn every_operation_is_in_the_model() {
        for op in Operation::ALL.map(Operation::name) {
            assert!(model::model().operation(op).is_some(), "{op}");
            assert_eq!(operation_of(&model::cli_name(op)), Some(op));
        }
        // Tether's own verbs keep the names they always had.
        for verb in [
            "list-inventory-changes",
            "create-access-key",
            "list-access-keys",
            "delete-access-key",
        ] {
            assert!(operation_of(verb).is_some(), "{verb}");
        }
        // clap's own consistency checks on every generated verb.
        for v in verbs() {
            v.debug_assert();
        }
    }

    #[test]
    fn send_command_request_from_aws_style_flags() {
        let body = parse(
            "SendCommand",
            &[
                "--instance-ids",
                "mi-0123456789abcdef0",
                "mi-0123456789abcdef1",
                "--document-name",
                "AWS-RunShellScript",
                "--timeout-seconds",
                "60",
                "--comment",
                "IP config",
                "--parameters",
                "commands=ifconfig",
                "--targets",
                "Key=tag:Env,Values=lab,prod",
            ],
        )
        .unwrap();
        assert_eq!(
            body,
            json!({
                "InstanceIds": ["mi-0123456789abcdef0", "mi-0123456789abcdef1"],
                "Targets": [{"Key": "tag:Env", "Values": ["lab", "prod"]}],
                "DocumentName": "AWS-RunShellScript",
                "TimeoutSeconds": 60,
                "Comment": "IP config",
                "Parameters": {"commands": ["ifconfig"]},
            })
        );
    }

    #[test]
    fn flags_are_checked_before_sending() {
        let err = parse(
            "CreateActivation",
            &["--iam-role", "r", "--registration-limit", "ten"],
        )
        .unwrap_err();
        assert_eq!(err.exit, EXIT_USAGE);
        assert!(
            err.message.contains("--registration-limit"),
            "{}",
            err.message
        );
        let err = parse("CreateActivation", &["--description", "x"]).unwrap_err();
        assert!(err.message.contains("--iam-role"), "{}", err.message);
        let err = parse(
            "CreateActivation",
            &["--iam-role", "r", "--expiration-date", "soon"],
        )
        .unwrap_err();
        assert!(err.message.contains("--expiration-date"), "{}", err.message);
    }

    #[test]
    fn booleans_timestamps_and_extras() {
        let body = parse(
            "ListCommandInvocations",
            &["--command-id", "c", "--details"],
        )
        .unwrap();
        assert_eq!(body, json!({"CommandId": "c", "Details": true}));
        let body = parse("ListCommandInvocations", &["--no-details"]).unwrap();
        assert_eq!(body, json!({"Details": false}));
        let body = parse(
            "CreateActivation",
            &[
                "--iam-role",
                "r",
                "--expiration-date",
                "2030-01-10T20:30:00Z",
            ],
        )
        .unwrap();
        assert_eq!(body["ExpirationDate"], json!(1894307400.0));
        let body = parse(
            "GetCommandInvocation",
            &[
                "--command-id",
                "c",
                "--instance-id",
                "mi-1",
                "--full-output",
            ],
        )
        .unwrap();
        assert_eq!(body["FullOutput"], json!(true));
    }

    #[test]
    fn list_flags_take_words_as_the_aws_cli() {
        // awscli: a list of scalars takes each word as one element (no comma
        // splitting), a single JSON list as the whole list, and a repeated
        // flag's last occurrence wins (argparse).
        for (args, want) in [
            (&["--instance-ids", "a,b", "c"][..], json!(["a,b", "c"])),
            (
                &["--instance-ids", r#"["a","b","c"]"#],
                json!(["a", "b", "c"]),
            ),
            (
                &["--instance-ids", "a", "--instance-ids", "b", "c"],
                json!(["b", "c"]),
            ),
        ] {
            let mut all = vec!["--document-name", "d"];
            all.extend_from_slice(args);
            let body = parse("SendCommand", &all).unwrap();
            assert_eq!(body["InstanceIds"], want, "{args:?}");
        }
    }

    #[test]
    fn follow_prints_only_what_is_new() {
        assert_eq!(new_part("", "abc"), "abc");
        assert_eq!(new_part("abc", "abcdef"), "def");
        assert_eq!(new_part("abc", "abc"), "");
        // A partial character shown as U+FFFD is completed later.
        assert_eq!(new_part("ab\u{fffd}", "abé!"), "é!");
    }

    #[test]
    fn resume_tokens_round_trip() {
        let t = encode_resume("NextToken", Some("b2Zmc2V0OjUw"), 3);
        assert_eq!(
            decode_resume("NextToken", &t),
            (Some("b2Zmc2V0OjUw".into()), 3)
        );
        assert_eq!(
            decode_resume("NextToken", "raw-token"),
            (Some("raw-token".into()), 0)
        );
        assert_eq!(
            decode_resume("NextToken", &encode_resume("NextToken", None, 2)),
            (None, 2)
        );
    }
}
