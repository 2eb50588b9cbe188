//! The operator CLI: `aws ssm` verbs and flags, turned into SSM requests sent
//! to the coordinator's operator service, with the response printed as the aws
//! CLI prints it.
//!
//! This module owns flag parsing and printing only; what each operation means
//! is decided by the coordinator's action layer on the other side of the wire.

pub mod output;
pub mod shorthand;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use tether_proto as pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::server::OperatorConfig;
use output::OutputFormat;
use shorthand::Shape;

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

// One Verb exists per process run; boxing its variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug, Clone)]
pub enum Verb {
    /// Create an activation: an ID and code that register agents.
    CreateActivation(CreateActivation),
    /// List activations.
    DescribeActivations(ListPage<DescribeActivationsFilters>),
    /// Delete an activation (registered instances stay).
    DeleteActivation(ActivationId),
    /// List managed instances with their ping status and platform.
    DescribeInstanceInformation(ListPage<InstanceFilters>),
    /// Deregister a managed instance.
    DeregisterManagedInstance(InstanceIdArg),
    /// Run a command document on instances.
    SendCommand(SendCommand),
    /// List commands, newest first.
    ListCommands(ListPage<CommandFilters>),
    /// List command invocations, one per instance.
    ListCommandInvocations(ListCommandInvocations),
    /// Show one invocation's status and output.
    GetCommandInvocation(GetCommandInvocation),
}

#[derive(Args, Debug, Clone)]
pub struct CreateActivation {
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub default_instance_name: Option<String>,
    #[arg(long, required = true)]
    pub iam_role: String,
    #[arg(long)]
    pub registration_limit: Option<String>,
    #[arg(long)]
    pub expiration_date: Option<String>,
    #[arg(long, num_args = 1..)]
    pub tags: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DescribeActivationsFilters {
    #[arg(long, num_args = 1..)]
    pub filters: Vec<String>,
}

/// A list verb's paging flags plus its own.
#[derive(Args, Debug, Clone)]
pub struct ListPage<T: Args> {
    #[command(flatten)]
    pub inner: T,
    #[arg(long)]
    pub max_results: Option<String>,
    #[arg(long)]
    pub next_token: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ActivationId {
    #[arg(long, required = true)]
    pub activation_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct InstanceIdArg {
    #[arg(long, required = true)]
    pub instance_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct InstanceFilters {
    #[arg(long, num_args = 1..)]
    pub instance_information_filter_list: Vec<String>,
    #[arg(long, num_args = 1..)]
    pub filters: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SendCommand {
    #[arg(long, num_args = 1..)]
    pub instance_ids: Vec<String>,
    #[arg(long, num_args = 1..)]
    pub targets: Vec<String>,
    #[arg(long, required = true)]
    pub document_name: String,
    #[arg(long)]
    pub document_version: Option<String>,
    #[arg(long)]
    pub document_hash: Option<String>,
    #[arg(long)]
    pub document_hash_type: Option<String>,
    #[arg(long)]
    pub timeout_seconds: Option<String>,
    #[arg(long)]
    pub comment: Option<String>,
    #[arg(long)]
    pub parameters: Option<String>,
    #[arg(long)]
    pub max_concurrency: Option<String>,
    #[arg(long)]
    pub max_errors: Option<String>,
    #[arg(long)]
    pub output_s3_region: Option<String>,
    #[arg(long)]
    pub output_s3_bucket_name: Option<String>,
    #[arg(long)]
    pub output_s3_key_prefix: Option<String>,
    #[arg(long)]
    pub service_role_arn: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct CommandFilters {
    #[arg(long)]
    pub command_id: Option<String>,
    #[arg(long)]
    pub instance_id: Option<String>,
    #[arg(long, num_args = 1..)]
    pub filters: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ListCommandInvocations {
    #[command(flatten)]
    pub list: ListPage<CommandFilters>,
    /// Include each step's output (CommandPlugins).
    #[arg(long, overrides_with = "no_details")]
    pub details: bool,
    #[arg(long, overrides_with = "details")]
    pub no_details: bool,
}

#[derive(Args, Debug, Clone)]
pub struct GetCommandInvocation {
    #[arg(long, required = true)]
    pub command_id: String,
    #[arg(long, required = true)]
    pub instance_id: String,
    #[arg(long)]
    pub plugin_name: Option<String>,
    /// Tether: the whole stored output instead of SSM's first 24,000 / 8,000 characters.
    #[arg(long)]
    pub full_output: bool,
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

fn tag_shape() -> Shape {
    Shape::List(Box::new(Shape::Structure(vec![
        ("Key", Shape::String),
        ("Value", Shape::String),
    ])))
}

fn targets_shape() -> Shape {
    Shape::List(Box::new(Shape::Structure(vec![
        ("Key", Shape::String),
        ("Values", Shape::List(Box::new(Shape::String))),
    ])))
}

fn command_filter_shape() -> Shape {
    Shape::List(Box::new(Shape::Structure(vec![
        ("key", Shape::String),
        ("value", Shape::String),
    ])))
}

/// Builds a request object, leaving out members that were not given.
struct Body {
    map: Map<String, Value>,
}

impl Body {
    fn new() -> Self {
        Body { map: Map::new() }
    }
    fn str(mut self, member: &str, v: &Option<String>) -> Self {
        if let Some(v) = v {
            self.map.insert(member.into(), json!(v));
        }
        self
    }
    fn int(mut self, member: &str, flag: &str, v: &Option<String>) -> Result<Self, CliError> {
        if let Some(v) = v {
            let n: i64 = v.trim().parse().map_err(|_| {
                CliError::usage(format!(
                    "--{flag}: invalid literal for int(): {v:?} (expected an integer)"
                ))
            })?;
            self.map.insert(member.into(), json!(n));
        }
        Ok(self)
    }
    fn list(
        mut self,
        member: &str,
        flag: &str,
        raws: &[String],
        shape: &Shape,
    ) -> Result<Self, CliError> {
        if !raws.is_empty() {
            let v = shorthand::parse_list_arg(raws, shape)
                .map_err(|e| CliError::usage(format!("Error parsing parameter '--{flag}': {e}")))?;
            self.map.insert(member.into(), v);
        }
        Ok(self)
    }
    fn value(
        mut self,
        member: &str,
        flag: &str,
        raw: &Option<String>,
        shape: &Shape,
    ) -> Result<Self, CliError> {
        if let Some(raw) = raw {
            let v = shorthand::parse_value(raw, shape)
                .map_err(|e| CliError::usage(format!("Error parsing parameter '--{flag}': {e}")))?;
            self.map.insert(member.into(), v);
        }
        Ok(self)
    }
    /// MaxResults and NextToken of a list verb.
    fn page<T: Args>(self, p: &ListPage<T>) -> Result<Self, CliError> {
        Ok(self
            .int("MaxResults", "max-results", &p.max_results)?
            .str("NextToken", &p.next_token))
    }
    fn done(self) -> Value {
        Value::Object(self.map)
    }
}

fn list_commands_body(l: &ListPage<CommandFilters>) -> Result<Body, CliError> {
    Body::new()
        .str("CommandId", &l.inner.command_id)
        .str("InstanceId", &l.inner.instance_id)
        .list(
            "Filters",
            "filters",
            &l.inner.filters,
            &command_filter_shape(),
        )?
        .page(l)
}

/// The SSM operation and request body for a verb.
pub fn request(verb: &Verb) -> Result<(&'static str, Value), CliError> {
    Ok(match verb {
        Verb::CreateActivation(a) => {
            let expiration = match &a.expiration_date {
                Some(s) => Some(
                    chrono::DateTime::parse_from_rfc3339(s)
                        .map(|t| t.timestamp_millis() as f64 / 1000.0)
                        .or_else(|_| {
                            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                                .map(|t| t.and_utc().timestamp_millis() as f64 / 1000.0)
                        })
                        .map_err(|_| {
                            CliError::usage(format!(
                                "--expiration-date: {s:?} is not an ISO 8601 timestamp (e.g. 2030-01-10T20:30:00.000Z)"
                            ))
                        })?,
                ),
                None => None,
            };
            let mut body = Body::new()
                .str("Description", &a.description)
                .str("DefaultInstanceName", &a.default_instance_name)
                .str("IamRole", &Some(a.iam_role.clone()))
                .int(
                    "RegistrationLimit",
                    "registration-limit",
                    &a.registration_limit,
                )?
                .list("Tags", "tags", &a.tags, &tag_shape())?;
            if let Some(t) = expiration {
                body.map.insert("ExpirationDate".into(), json!(t));
            }
            ("CreateActivation", body.done())
        }
        Verb::DescribeActivations(p) => (
            "DescribeActivations",
            Body::new()
                .list(
                    "Filters",
                    "filters",
                    &p.inner.filters,
                    &Shape::List(Box::new(Shape::Structure(vec![
                        ("FilterKey", Shape::String),
                        ("FilterValues", Shape::List(Box::new(Shape::String))),
                    ]))),
                )?
                .page(p)?
                .done(),
        ),
        Verb::DeleteActivation(a) => ("DeleteActivation", json!({"ActivationId": a.activation_id})),
        Verb::DescribeInstanceInformation(d) => (
            "DescribeInstanceInformation",
            Body::new()
                .list(
                    "InstanceInformationFilterList",
                    "instance-information-filter-list",
                    &d.inner.instance_information_filter_list,
                    &Shape::List(Box::new(Shape::Structure(vec![
                        ("key", Shape::String),
                        ("valueSet", Shape::List(Box::new(Shape::String))),
                    ]))),
                )?
                .list("Filters", "filters", &d.inner.filters, &targets_shape())?
                .page(d)?
                .done(),
        ),
        Verb::DeregisterManagedInstance(i) => (
            "DeregisterManagedInstance",
            json!({"InstanceId": i.instance_id}),
        ),
        Verb::SendCommand(s) => {
            let mut body = Body::new();
            if !s.instance_ids.is_empty() {
                body.map
                    .insert("InstanceIds".into(), json!(split_ids(&s.instance_ids)));
            }
            let body = body
                .list("Targets", "targets", &s.targets, &targets_shape())?
                .str("DocumentName", &Some(s.document_name.clone()))
                .str("DocumentVersion", &s.document_version)
                .str("DocumentHash", &s.document_hash)
                .str("DocumentHashType", &s.document_hash_type)
                .int("TimeoutSeconds", "timeout-seconds", &s.timeout_seconds)?
                .str("Comment", &s.comment)
                .value(
                    "Parameters",
                    "parameters",
                    &s.parameters,
                    &Shape::Map(Box::new(Shape::List(Box::new(Shape::String)))),
                )?
                .str("MaxConcurrency", &s.max_concurrency)
                .str("MaxErrors", &s.max_errors)
                .str("OutputS3Region", &s.output_s3_region)
                .str("OutputS3BucketName", &s.output_s3_bucket_name)
                .str("OutputS3KeyPrefix", &s.output_s3_key_prefix)
                .str("ServiceRoleArn", &s.service_role_arn);
            ("SendCommand", body.done())
        }
        Verb::ListCommands(l) => ("ListCommands", list_commands_body(l)?.done()),
        Verb::ListCommandInvocations(l) => {
            let mut body = list_commands_body(&l.list)?;
            if l.details {
                body.map.insert("Details".into(), json!(true));
            }
            ("ListCommandInvocations", body.done())
        }
        Verb::GetCommandInvocation(g) => {
            let mut body = Body::new()
                .str("CommandId", &Some(g.command_id.clone()))
                .str("InstanceId", &Some(g.instance_id.clone()))
                .str("PluginName", &g.plugin_name);
            if g.full_output {
                body.map.insert("FullOutput".into(), json!(true));
            }
            ("GetCommandInvocation", body.done())
        }
    })
}

/// `--instance-ids a b` and `--instance-ids a,b` (and a JSON list) all work, as in the aws CLI.
fn split_ids(raw: &[String]) -> Vec<String> {
    if let [one] = raw
        && let Ok(Value::Array(items)) = serde_json::from_str::<Value>(one)
    {
        return items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
    }
    raw.iter()
        .flat_map(|r| r.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The list member that auto-pagination merges, per operation.
fn paged_member(operation: &str) -> Option<&'static str> {
    Some(match operation {
        "DescribeActivations" => "ActivationList",
        "DescribeInstanceInformation" => "InstanceInformationList",
        "ListCommands" => "Commands",
        "ListCommandInvocations" => "CommandInvocations",
        _ => return None,
    })
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

fn load_config(path: &PathBuf) -> Result<OperatorConfig, CliError> {
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

async fn connect(cfg: &OperatorConfig) -> Result<Channel, CliError> {
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

/// Runs a verb: builds the request, calls the coordinator (following NextToken
/// when the user asked for no particular page), prints the response.
pub async fn run(global: &Global, verb: &Verb) -> ExitCode {
    match run_inner(global, verb).await {
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

async fn run_inner(global: &Global, verb: &Verb) -> Result<String, CliError> {
    let format: OutputFormat = global.output.parse().map_err(|_| {
        CliError::usage(format!(
            "--output: {:?} is not one of json, text, table",
            global.output
        ))
    })?;
    let (operation, body) = request(verb)?;
    let path = config_path(global.config.as_ref())?;
    let cfg = load_config(&path)?;
    let channel = connect(&cfg).await?;
    let explicit_page = body.get("MaxResults").is_some() || body.get("NextToken").is_some();
    let mut response = call(channel.clone(), &cfg.token, operation, &body).await?;
    if let (Some(member), false) = (paged_member(operation), explicit_page) {
        while let Some(token) = response
            .get("NextToken")
            .and_then(Value::as_str)
            .map(str::to_owned)
        {
            let mut next_body = body.clone();
            next_body["NextToken"] = json!(token);
            let next = call(channel.clone(), &cfg.token, operation, &next_body).await?;
            if let (Some(Value::Array(all)), Some(Value::Array(more))) =
                (response.get_mut(member), next.get(member))
            {
                all.extend(more.iter().cloned());
            }
            match next.get("NextToken") {
                Some(t) => response["NextToken"] = t.clone(),
                None => {
                    if let Some(m) = response.as_object_mut() {
                        m.remove("NextToken");
                    }
                }
            }
        }
    }
    output::timestamps_to_iso(&mut response);
    let mut out = output::render(operation, &response, format);
    if let (Verb::CreateActivation(_), OutputFormat::Text) = (verb, format) {
        out.push_str(&install_snippet(&cfg, &response));
    }
    Ok(out)
}

/// A ready-to-paste user-data snippet for a new activation.
fn install_snippet(cfg: &OperatorConfig, activation: &Value) -> String {
    let id = activation["ActivationId"].as_str().unwrap_or("");
    let code = activation["ActivationCode"].as_str().unwrap_or("");
    format!(
        "# user-data: register this node with Tether (tether-agent installed on the node)\n\
         tether-agent register --endpoint {} --id {id} --code {code} --ca-pin {}\n",
        cfg.endpoint, cfg.ca_pin
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_command_request_from_aws_style_flags() {
        let verb = Verb::SendCommand(SendCommand {
            instance_ids: vec!["mi-0123456789abcdef0".into(), "mi-0123456789abcdef1".into()],
            targets: vec![],
            document_name: "AWS-RunShellScript".into(),
            document_version: None,
            document_hash: None,
            document_hash_type: None,
            timeout_seconds: Some("60".into()),
            comment: Some("IP config".into()),
            parameters: Some("commands=ifconfig".into()),
            max_concurrency: None,
            max_errors: None,
            output_s3_region: None,
            output_s3_bucket_name: None,
            output_s3_key_prefix: None,
            service_role_arn: None,
        });
        let (op, body) = request(&verb).unwrap();
        assert_eq!(op, "SendCommand");
        assert_eq!(
            body,
            json!({
                "InstanceIds": ["mi-0123456789abcdef0", "mi-0123456789abcdef1"],
                "DocumentName": "AWS-RunShellScript",
                "TimeoutSeconds": 60,
                "Comment": "IP config",
                "Parameters": {"commands": ["ifconfig"]},
            })
        );
    }

    #[test]
    fn integer_flags_are_checked_before_sending() {
        let verb = Verb::CreateActivation(CreateActivation {
            description: None,
            default_instance_name: None,
            iam_role: "r".into(),
            registration_limit: Some("ten".into()),
            expiration_date: None,
            tags: vec![],
        });
        let err = request(&verb).unwrap_err();
        assert_eq!(err.exit, EXIT_USAGE);
        assert!(
            err.message.contains("--registration-limit"),
            "{}",
            err.message
        );
    }

    #[test]
    fn instance_ids_split_like_the_aws_cli() {
        assert_eq!(split_ids(&["a,b".into(), "c".into()]), vec!["a", "b", "c"]);
        assert_eq!(split_ids(&[r#"["a","b"]"#.into()]), vec!["a", "b"]);
    }
}
