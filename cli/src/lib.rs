//! The operator CLI: `aws ssm` verbs and flags, turned into SSM requests sent
//! to the coordinator's operator service, with the answer printed as the aws
//! CLI v2 prints it, and refusals printed and exited as it refuses.
//!
//! The verbs are built from botocore's SSM model ([`tether_ssm::model`]): one per
//! operation in [`Operation::ALL`] (SSM's, and Tether's own from the same
//! model), one option per input member, named and read as the aws CLI does
//! ([`args`], [`params`], [`shorthand`]), its paging options, `--cli-input-*`
//! and skeletons; the global options (`--output`, `--query`, `--profile`,
//! `--debug`, timeouts…) anywhere on the line; `tether wait WAITER` for
//! botocore's waiters ([`waiter`]); help and completion from the same model
//! ([`help`]). This module owns the run of one command line: what it asks,
//! the calls (pages followed as the aws CLI follows them), and what is
//! printed; what each operation means is decided by the coordinator's
//! action layer on the other side of the wire.

pub mod args;
pub mod config;
pub mod errors;
pub mod help;
pub mod output;
pub mod params;
pub mod profiles;
pub mod query;
pub mod shorthand;
pub mod waiter;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tether_proto as pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use tether_ssm::{Operation, model};

use args::{ArgError, Arity, OptSpec, Parsed};
pub use config::OperatorConfig;
pub use errors::CliError;
use output::OutputFormat;
use query::Query;

/// The aws CLI's default connect and read timeouts, in seconds.
const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// How often `--follow` looks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// What a secret is shown as in `--debug` logs.
const REDACTED: &str = "****";

/// Members whose values are secrets though the model does not mark their
/// shapes sensitive: an activation's code registers nodes.
const SECRET_MEMBERS: &[&str] = &["ActivationCode", "SecretAccessKey"];

/// The global options, read anywhere on the line (awscli's main parser).
fn global_specs() -> Vec<OptSpec> {
    vec![
        OptSpec::new("--debug", Arity::Flag),
        OptSpec::new("--no-paginate", Arity::Flag),
        OptSpec::new("--output", Arity::One).choices(&["json", "text", "table"]),
        OptSpec::new("--query", Arity::One),
        OptSpec::new("--profile", Arity::One),
        OptSpec::new("--region", Arity::One),
        OptSpec::new("--version", Arity::Flag),
        OptSpec::new("--color", Arity::One).choices(&["on", "off", "auto"]),
        OptSpec::new("--cli-read-timeout", Arity::One),
        OptSpec::new("--cli-connect-timeout", Arity::One),
        OptSpec::new("--no-cli-pager", Arity::Flag),
        OptSpec::new("--config", Arity::One),
    ]
}

/// The verbs this coordinator serves, one per operation it implements (the
/// `aws ssm` verbs, then Tether's own).
pub fn verbs() -> Vec<String> {
    Operation::ALL
        .iter()
        .map(|op| model::cli_name(op.name()))
        .collect()
}

/// The operation a verb name stands for, if this coordinator serves it.
pub fn operation_of(verb: &str) -> Option<&'static str> {
    Operation::ALL
        .iter()
        .map(|op| op.name())
        .find(|op| model::cli_name(op) == verb)
}

/// Where a command line's verb is (after the global options), if it has one:
/// `tether` itself runs `serve` through its own parser.
pub fn verb_of(words: &[String]) -> Option<String> {
    let parsed = args::parse_known(&global_specs(), words).ok()?;
    parsed
        .rest
        .iter()
        .find(|w| !args::looks_like_option(w))
        .cloned()
}

/// The global options as given, with the profile's settings under them.
#[derive(Debug, Default)]
struct Globals {
    debug: bool,
    paginate: bool,
    output: Option<String>,
    query: Option<String>,
    profile: Option<String>,
    color: Option<String>,
    read_timeout: Option<String>,
    connect_timeout: Option<String>,
    config: Option<PathBuf>,
}

impl Globals {
    fn of(p: &Parsed) -> Globals {
        let s = |n: &str| p.one(n).map(str::to_owned);
        Globals {
            debug: p.flag("--debug"),
            paginate: !p.flag("--no-paginate"),
            output: s("--output"),
            query: s("--query"),
            profile: s("--profile"),
            color: s("--color"),
            read_timeout: s("--cli-read-timeout"),
            connect_timeout: s("--cli-connect-timeout"),
            config: p.one("--config").map(PathBuf::from),
        }
    }
}

/// `--debug`: what happens, on stderr, in the aws CLI's log format, with
/// every secret redacted.
#[derive(Debug, Clone, Copy)]
struct Debug {
    on: bool,
}

impl Debug {
    fn log(&self, message: impl AsRef<str>) {
        if self.on {
            let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S,%3f");
            eprintln!(
                "{now} - MainThread - tether.cli - DEBUG - {}",
                message.as_ref()
            );
        }
    }
}

/// `value` with every secret replaced: members of shapes the model marks
/// sensitive (walked along `shape`) and [`SECRET_MEMBERS`].
fn redact(value: &Value, shape: Option<&str>) -> Value {
    let m = model::model();
    if let Some(s) = shape
        && m.is_sensitive(s)
        && !value.is_null()
    {
        return json!(REDACTED);
    }
    let def = shape.and_then(|s| m.shape(s));
    match value {
        Value::Object(obj) => {
            let kind = def.and_then(|d| d["type"].as_str()).unwrap_or("");
            let members = shape.map(|s| m.members(s)).unwrap_or_default();
            Value::Object(
                obj.iter()
                    .map(|(k, v)| {
                        let child = if kind == "map" {
                            def.and_then(|d| d["value"]["shape"].as_str())
                        } else {
                            members
                                .iter()
                                .find(|(n, _)| n == k)
                                .and_then(|(_, d)| d["shape"].as_str())
                        };
                        let v = if SECRET_MEMBERS.contains(&k.as_str()) && !v.is_null() {
                            json!(REDACTED)
                        } else {
                            redact(v, child)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            )
        }
        Value::Array(items) => {
            let child = def.and_then(|d| d["member"]["shape"].as_str());
            Value::Array(items.iter().map(|i| redact(i, child)).collect())
        }
        other => other.clone(),
    }
}

/// The command line as `--debug` logs it: the values of options whose
/// members are secret replaced.
fn redacted_words(operation: Option<&str>, words: &[String]) -> Vec<String> {
    let m = model::model();
    let secret_flags: Vec<String> = operation
        .map(|op| {
            m.input_members(op)
                .into_iter()
                .filter(|mem| m.is_sensitive(mem.shape) || SECRET_MEMBERS.contains(&mem.name))
                .map(|mem| format!("--{}", model::cli_name(mem.name)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(words.len());
    let mut hide = false;
    for w in words {
        if args::looks_like_option(w) {
            let name = w.split('=').next().unwrap_or("");
            hide = secret_flags.iter().any(|f| f == name);
            if hide && w.contains('=') {
                out.push(format!("{name}={REDACTED}"));
                continue;
            }
            out.push(w.clone());
        } else if hide {
            out.push(REDACTED.to_owned());
        } else {
            out.push(w.clone());
        }
    }
    out
}

/// A connection to the coordinator's operator service.
pub struct Client {
    channel: Channel,
    token: String,
    debug: Debug,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Calls one operation and returns its response JSON.
    pub async fn call(&self, operation: &str, body: &Value) -> Result<Value, CliError> {
        let m = model::model();
        self.debug.log(format!(
            "Making request for OperationModel(name={operation}) with params: {}",
            redact(body, m.input_shape(operation))
        ));
        self.debug.log(format!(
            "Sending gRPC Operator/Invoke {operation} with headers: {{'{}': 'Bearer {REDACTED}'}}",
            pb::OPERATOR_TOKEN_HEADER
        ));
        let started = Instant::now();
        let answer = call(self.channel.clone(), &self.token, operation, body).await;
        let took = started.elapsed();
        match &answer {
            Ok(v) => self.debug.log(format!(
                "Response received in {:.3} ms: {}",
                took.as_secs_f64() * 1000.0,
                redact(v, m.output_shape(operation))
            )),
            Err(e) => self.debug.log(format!(
                "Error received in {:.3} ms: {e}",
                took.as_secs_f64() * 1000.0
            )),
        }
        answer
    }
}

/// Connects to the coordinator of `cfg` with the aws CLI's default timeouts.
pub async fn connect(cfg: &OperatorConfig) -> Result<Channel, CliError> {
    connect_with(
        cfg,
        Some(Duration::from_secs(DEFAULT_TIMEOUT_SECS)),
        Some(Duration::from_secs(DEFAULT_TIMEOUT_SECS)),
    )
    .await
}

/// Connects to the coordinator of `cfg`; `None` timeouts wait forever.
pub async fn connect_with(
    cfg: &OperatorConfig,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
) -> Result<Channel, CliError> {
    let uri: http::Uri = cfg.endpoint.parse().map_err(|e| {
        CliError::config(format!(
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
    let mut endpoint = Endpoint::from(uri)
        .tls_config(tls)
        .map_err(|e| CliError::config(format!("TLS configuration: {e}")))?;
    if let Some(t) = connect_timeout {
        endpoint = endpoint.connect_timeout(t);
    }
    if let Some(t) = read_timeout {
        endpoint = endpoint.timeout(t);
    }
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
        CliError::General(msg)
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
        .map_err(|_| CliError::config("the operator token in the config is not valid text"))?;
    req.metadata_mut().insert(pb::OPERATOR_TOKEN_HEADER, auth);
    match client.invoke(req).await {
        Ok(r) => serde_json::from_str(&r.into_inner().response_json)
            .map_err(|e| CliError::General(format!("the coordinator sent invalid JSON: {e}"))),
        Err(status) => {
            let kind = status
                .metadata()
                .get(pb::ERROR_TYPE_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match (kind, status.code()) {
                (Some(kind), _) => Err(CliError::Service {
                    kind,
                    operation: operation.to_owned(),
                    message: status.message().to_owned(),
                }),
                (None, tonic::Code::Unauthenticated) => Err(CliError::Service {
                    kind: "UnrecognizedClientException".into(),
                    operation: operation.to_owned(),
                    message: status.message().to_owned(),
                }),
                (None, tonic::Code::Cancelled | tonic::Code::DeadlineExceeded) => {
                    Err(CliError::General(format!(
                        "Read timeout on the endpoint: {}",
                        status.message()
                    )))
                }
                (None, _) => Err(CliError::General(format!(
                    "Could not connect to the endpoint: {}",
                    status.message()
                ))),
            }
        }
    }
}

/// The aws CLI's paging options, as given.
#[derive(Debug, Default)]
struct Paging {
    max_items: Option<usize>,
    starting_token: Option<String>,
    page_size: Option<i64>,
    paginate: bool,
}

impl Paging {
    fn of(parsed: &Parsed, paginate: bool) -> Paging {
        let number = |flag: &str| parsed.one(flag).and_then(|v| v.trim().parse::<i64>().ok());
        Paging {
            max_items: number("--max-items").map(|n| n.max(0) as usize),
            starting_token: parsed.one("--starting-token").map(str::to_owned),
            page_size: number("--page-size"),
            paginate,
        }
    }
}

/// The aws CLI's resume token: base64 of `{"NextToken": …, "boto_truncate_amount": n}`.
///
/// Byte for byte botocore's: `json.dumps` of the page's input token (null
/// on the first page) and, when the page was cut, the items taken from it.
fn encode_resume(input_token: &str, token: Option<&str>, skip: usize) -> String {
    let token = token.map_or_else(|| "null".to_owned(), |t| json!(t).to_string());
    let text = if skip > 0 {
        format!("{{\"{input_token}\": {token}, \"boto_truncate_amount\": {skip}}}")
    } else {
        format!("{{\"{input_token}\": {token}}}")
    };
    base64::engine::general_purpose::STANDARD.encode(text)
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

/// An answer as the aws CLI holds it before printing: the pages (the text
/// format prints each, the others merge them), and the resume token when
/// `--max-items` cut the items.
#[derive(Debug)]
struct Answer {
    pages: Vec<Value>,
    merged: Value,
    /// The paginator's result keys, when the answer came in pages.
    result_keys: Vec<&'static str>,
    resume: Option<String>,
}

impl Answer {
    fn single(v: Value) -> Answer {
        Answer {
            pages: Vec::new(),
            merged: v,
            result_keys: Vec::new(),
            resume: None,
        }
    }
}

/// Calls a paged operation as the aws CLI does: every page merged into one
/// response unless the request names a page itself or `--no-paginate` is
/// given, `--max-items` cut with a resume token, `--page-size` per call.
async fn paginate(
    client: &Client,
    operation: &str,
    mut body: Value,
    p: &model::Paginator,
    paging: Paging,
) -> Result<Answer, CliError> {
    let explicit =
        body.get(p.input_token).is_some() || p.limit_key.is_some_and(|k| body.get(k).is_some());
    if explicit || !paging.paginate {
        return Ok(Answer::single(client.call(operation, &body).await?));
    }
    if let (Some(n), Some(k)) = (paging.page_size, p.limit_key) {
        body[k] = json!(n);
    }
    let (mut page_token, mut skip) = match &paging.starting_token {
        Some(raw) => decode_resume(p.input_token, raw),
        None => (None, 0),
    };
    let primary = p.result_keys.first().copied().unwrap_or("");
    let mut pages: Vec<Value> = Vec::new();
    let mut taken = 0usize;
    let mut resume = None;
    loop {
        let mut req = body.clone();
        if let Some(t) = &page_token {
            req[p.input_token] = json!(t);
        }
        let mut page = client.call(operation, &req).await?;
        for key in &p.result_keys {
            if let Some(items) = page.get_mut(*key).and_then(Value::as_array_mut) {
                items.drain(..skip.min(items.len()));
            }
        }
        let next = page
            .get(p.output_token)
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(obj) = page.as_object_mut() {
            obj.remove(p.output_token);
        }
        let in_page = page[primary].as_array().map_or(0, Vec::len);
        if let Some(max) = paging.max_items
            && taken + in_page >= max
        {
            let keep = max - taken;
            for key in &p.result_keys {
                if let Some(items) = page.get_mut(*key).and_then(Value::as_array_mut) {
                    items.truncate(keep);
                }
            }
            resume = if keep < in_page {
                Some(encode_resume(
                    p.input_token,
                    page_token.as_deref(),
                    skip + keep,
                ))
            } else {
                next.as_deref()
                    .map(|n| encode_resume(p.input_token, Some(n), 0))
            };
            pages.push(page);
            break;
        }
        taken += in_page;
        pages.push(page);
        match next {
            Some(t) => {
                page_token = Some(t);
                skip = 0;
            }
            None => break,
        }
    }
    // botocore's build_full_result: the first page's other members, the
    // result keys' items of every page.
    let mut merged = pages.first().cloned().unwrap_or_else(|| json!({}));
    for page in pages.iter().skip(1) {
        for key in &p.result_keys {
            if let (Some(Value::Array(items)), Some(Value::Array(more))) =
                (merged.get_mut(*key), page.get(*key))
            {
                items.extend(more.iter().cloned());
            }
        }
    }
    if let (Some(r), Some(obj)) = (&resume, merged.as_object_mut()) {
        obj.insert("NextToken".into(), json!(r));
    }
    Ok(Answer {
        pages,
        merged,
        result_keys: p.result_keys.clone(),
        resume,
    })
}

/// Finds operator.json: --config, the named profile's `operator_config`,
/// $TETHER_CONFIG, the default profile's, ~/.config/tether, /var/lib/tether.
fn config_path(
    flag: Option<&PathBuf>,
    profile: Option<&(String, profiles::Profile)>,
    named: bool,
) -> Result<PathBuf, CliError> {
    if let Some(p) = flag {
        return Ok(p.clone());
    }
    let from_profile = profile.and_then(|(_, p)| p.get("operator_config"));
    if named && let Some(p) = from_profile {
        return Ok(profiles::expand_home(p));
    }
    if let Some(p) = std::env::var_os("TETHER_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = from_profile {
        return Ok(profiles::expand_home(p));
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
    Err(CliError::config(format!(
        "Unable to locate the operator config (tried {}). Pass --config, set TETHER_CONFIG, or name a profile whose operator_config is the operator.json that `tether serve` wrote.",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Reads operator.json.
pub fn load_config(path: &PathBuf) -> Result<OperatorConfig, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::config(format!(
            "Unable to read the operator config {}: {e}",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::config(format!(
            "The operator config {} is not valid: {e}",
            path.display()
        ))
    })
}

/// What one run prints on stdout.
type Printed = String;

/// Runs one command line (without the program name): prints its output,
/// or its error as the aws CLI v2 prints it, and returns the exit status.
pub async fn main(words: Vec<String>) -> ExitCode {
    match run(&words).await {
        Ok(out) => {
            let out = if std::io::stdout().is_terminal() {
                output::escape_for_terminal(&out)
            } else {
                out
            };
            let mut so = std::io::stdout().lock();
            let _ = so.write_all(out.as_bytes());
            let _ = so.flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            let text = e.stderr();
            let text = if std::io::stderr().is_terminal() {
                output::escape_for_terminal(&text)
            } else {
                text
            };
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
            ExitCode::from(e.exit())
        }
    }
}

async fn run(words: &[String]) -> Result<Printed, CliError> {
    // --help anywhere asks for help, as `help` does.
    let help_asked = words.iter().any(|w| w == "--help" || w == "-h");
    let words: Vec<String> = words
        .iter()
        .filter(|w| *w != "--help" && *w != "-h")
        .cloned()
        .collect();
    let parsed = args::parse_known(&global_specs(), &words)?;
    let g = Globals::of(&parsed);
    let debug = Debug { on: g.debug };
    if parsed.flag("--version") {
        return Ok(format!(
            "tether/{} (aws-cli/2 compatible)\n",
            env!("CARGO_PKG_VERSION")
        ));
    }
    let verb_at = parsed.rest.iter().position(|w| !args::looks_like_option(w));
    let Some(verb_at) = verb_at else {
        if help_asked {
            return Ok(help::top(&verbs()));
        }
        return Err(ArgError::Parse("the following arguments are required: command".into()).into());
    };
    let verb = parsed.rest[verb_at].clone();
    let mut rest = parsed.rest.clone();
    rest.remove(verb_at);
    debug.log(format!("CLI version: tether/{}", env!("CARGO_PKG_VERSION")));
    debug.log(format!(
        "Arguments entered to CLI: {:?}",
        redacted_words(operation_of(&verb), &words)
    ));
    match verb.as_str() {
        "help" => Ok(help::top(&verbs())),
        "completion" => match rest.first().map(String::as_str) {
            Some("bash") => Ok(help::bash(&verbs())),
            Some("zsh") => Ok(help::zsh(&verbs())),
            Some(other) => Err(ArgError::Parse(args::invalid_choice(
                "argument shell",
                other,
                &["bash".to_owned(), "zsh".to_owned()],
            ))
            .into()),
            None => {
                Err(ArgError::Parse("the following arguments are required: shell".into()).into())
            }
        },
        "wait" => wait(&g, debug, &rest, help_asked).await,
        _ => match operation_of(&verb) {
            Some(op) => operation(op, &g, debug, &rest, help_asked).await,
            None => {
                let mut choices = verbs();
                choices.extend(["wait", "completion", "help", "serve"].map(String::from));
                Err(
                    ArgError::Parse(args::invalid_choice("argument command", &verb, &choices))
                        .into(),
                )
            }
        },
    }
}

/// Reads an operation's options from `words`: the request, and what was parsed.
fn read_request(operation: &str, words: &[String]) -> Result<(Value, Parsed), CliError> {
    let opts = params::options(operation, params::relaxes_required(words));
    let specs: Vec<OptSpec> = opts.iter().map(|o| o.spec.clone()).collect();
    let parsed = args::parse_known(&specs, words)?;
    args::missing_required(&specs, &parsed)?;
    if !parsed.rest.is_empty() {
        return Err(ArgError::Unknown(parsed.rest.clone()).into());
    }
    let base = params::cli_input(&parsed)?;
    let request = params::request(operation, &opts, &parsed, base)?;
    Ok((request, parsed))
}

/// The settings in force: the profile's under the global options.
struct Settings {
    format: OutputFormat,
    query: Option<Query>,
    config: PathBuf,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    color: bool,
}

fn settings(g: &Globals) -> Result<Settings, CliError> {
    let named = g.profile.clone().or_else(|| {
        std::env::var("TETHER_PROFILE")
            .ok()
            .filter(|p| !p.is_empty())
    });
    let profile = profiles::select(named.as_deref())?;
    let from_profile = |k: &str| profile.as_ref().and_then(|(_, p)| p.get(k).cloned());
    let format = match g.output.clone().or_else(|| from_profile("output")) {
        None => OutputFormat::Json,
        Some(f) => f.parse().map_err(|e: output::OutputError| {
            CliError::config(format!("Invalid output setting in the profile: {e}"))
        })?,
    };
    let seconds = |v: Option<String>| -> Result<Option<Duration>, CliError> {
        match v {
            None => Ok(Some(Duration::from_secs(DEFAULT_TIMEOUT_SECS))),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(Duration::from_secs(n))),
                // Python's int() failing, as in the aws CLI.
                Err(_) => Err(CliError::General(format!(
                    "invalid literal for int() with base 10: '{v}'"
                ))),
            },
        }
    };
    let color = match g.color.clone().or_else(|| from_profile("color")).as_deref() {
        Some("on") => true,
        Some("off") => false,
        _ => std::io::stdout().is_terminal(),
    };
    Ok(Settings {
        format,
        query: g.query.as_deref().map(Query::compile).transpose()?,
        config: config_path(g.config.as_ref(), profile.as_ref(), named.is_some())?,
        connect_timeout: seconds(
            g.connect_timeout
                .clone()
                .or_else(|| from_profile("cli_connect_timeout")),
        )?,
        read_timeout: seconds(
            g.read_timeout
                .clone()
                .or_else(|| from_profile("cli_read_timeout")),
        )?,
        color,
    })
}

async fn open(s: &Settings, debug: Debug) -> Result<(Client, OperatorConfig), CliError> {
    let cfg = load_config(&s.config)?;
    debug.log(format!(
        "Operator config: {} (endpoint {})",
        s.config.display(),
        cfg.endpoint
    ));
    let started = Instant::now();
    let channel = connect_with(&cfg, s.connect_timeout, s.read_timeout).await?;
    debug.log(format!(
        "Connected to {} in {:.3} ms",
        cfg.endpoint,
        started.elapsed().as_secs_f64() * 1000.0
    ));
    Ok((
        Client {
            channel,
            token: cfg.token.clone(),
            debug,
        },
        cfg,
    ))
}

async fn operation(
    operation: &str,
    g: &Globals,
    debug: Debug,
    words: &[String],
    help_asked: bool,
) -> Result<Printed, CliError> {
    if help_asked || words.first().is_some_and(|w| w == "help") {
        return Ok(help::operation(operation));
    }
    // `add-agent-release --file PATH`: the size and SHA-256 come from the file.
    let release_file = release_file(operation, words)?;
    let words = &match &release_file {
        Some((_, bytes)) => {
            let mut w = words.to_vec();
            w.extend([
                "--size".to_string(),
                bytes.len().to_string(),
                "--sha256".to_string(),
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
            ]);
            w
        }
        None => words.to_vec(),
    };
    let (mut request, parsed) = read_request(operation, words)?;
    let m = model::model();
    match parsed.one("--generate-cli-skeleton") {
        Some("input") => {
            return Ok(output::render(
                operation,
                &m.input_shape(operation)
                    .map(params::skeleton)
                    .unwrap_or(json!({})),
                OutputFormat::Json,
            ));
        }
        Some("yaml-input") => return Ok(params::yaml_skeleton(operation)),
        _ => {}
    }
    // botocore checks each page's request: with --page-size as its limit.
    let mut checked = request.clone();
    if let (Some(p), Some(n)) = (m.paginator(operation), parsed.one("--page-size"))
        && let Some(k) = p.limit_key
        && checked.get(k).is_none()
        && let Ok(n) = n.trim().parse::<i64>()
    {
        checked[k] = json!(n);
    }
    params::validate(operation, &checked)?;
    if parsed.one("--generate-cli-skeleton") == Some("output") {
        let skeleton = m
            .output_shape(operation)
            .map(params::skeleton)
            .unwrap_or(json!({}));
        return Ok(output::render(operation, &skeleton, OutputFormat::Json));
    }
    params::timestamps_to_epoch(operation, &mut request);
    let s = settings(g)?;
    let (client, cfg) = open(&s, debug).await?;
    if operation == "GetCommandInvocation" && parsed.flag("--follow") {
        return follow(&client, &request).await;
    }
    if let Some((_, bytes)) = &release_file {
        let answer = upload_release(&client, request, bytes).await?;
        return print(operation, Answer::single(answer), &s);
    }
    let answer = match m.paginator(operation) {
        Some(p) => {
            paginate(
                &client,
                operation,
                request,
                &p,
                Paging::of(&parsed, g.paginate),
            )
            .await?
        }
        None => Answer::single(client.call(operation, &request).await?),
    };
    let activation = (operation == "CreateActivation").then(|| answer.merged.clone());
    let mut out = print(operation, answer, &s)?;
    if let Some(activation) = activation
        && s.format == OutputFormat::Text
        && s.query.is_none()
    {
        out.push_str(&install_snippet(&cfg, &activation));
    }
    Ok(out)
}

/// Prints an answer as the aws CLI v2 does: members in model order,
/// timestamps as ISO 8601, `--query` applied to the merged answer (to each
/// page, for text), in the format asked.
fn print(operation: &str, answer: Answer, s: &Settings) -> Result<Printed, CliError> {
    let m = model::model();
    let prepare = |mut v: Value| -> Value {
        if let Some(shape) = m.output_shape(operation) {
            output::order_by_model(&mut v, shape);
        }
        output::timestamps_to_iso(&mut v);
        if let Value::Object(o) = &mut v {
            o.remove("ResponseMetadata");
        }
        v
    };
    let apply = |v: Value| -> Result<Value, CliError> {
        match &s.query {
            Some(q) => q.search(&v),
            None => Ok(v),
        }
    };
    if s.format == OutputFormat::Text && !answer.pages.is_empty() {
        // awscli's TextFormatter: each page printed on its own, the first
        // with the answer's other members, then the resume token.
        let mut out = String::new();
        for (i, page) in answer.pages.iter().enumerate() {
            let page = prepare(page.clone());
            let mut current = Map::new();
            if let Value::Object(o) = &page {
                for (k, v) in o {
                    if i == 0 && !answer.result_keys.contains(&k.as_str()) {
                        current.insert(k.clone(), v.clone());
                    }
                }
                for key in &answer.result_keys {
                    if let Some(v) = o.get(*key) {
                        current.insert((*key).to_owned(), v.clone());
                    }
                }
            }
            out.push_str(&output::render(
                operation,
                &apply(Value::Object(current))?,
                OutputFormat::Text,
            ));
        }
        if let Some(r) = &answer.resume {
            out.push_str(&output::render(
                operation,
                &apply(json!({"NextToken": {"NextToken": r}}))?,
                OutputFormat::Text,
            ));
        }
        return Ok(out);
    }
    let value = apply(prepare(answer.merged))?;
    Ok(output::render_styled(operation, &value, s.format, s.color))
}

async fn wait(
    g: &Globals,
    debug: Debug,
    words: &[String],
    help_asked: bool,
) -> Result<Printed, CliError> {
    let m = model::model();
    let names: Vec<String> = m
        .waiter_names()
        .iter()
        .map(|w| waiter::cli_name(w))
        .collect();
    let Some(name) = words.first().filter(|w| !args::looks_like_option(w)) else {
        if help_asked || words.is_empty() {
            return Ok(help::waiter(None));
        }
        return Err(
            ArgError::Parse("the following arguments are required: subcommand".into()).into(),
        );
    };
    if name == "help" {
        return Ok(help::waiter(None));
    }
    let Some(w) = m
        .waiter_names()
        .into_iter()
        .find(|w| waiter::cli_name(w) == *name)
        .and_then(|w| m.waiter(w))
    else {
        return Err(
            ArgError::Parse(args::invalid_choice("argument subcommand", name, &names)).into(),
        );
    };
    let words = &words[1..];
    if help_asked || words.first().is_some_and(|x| x == "help") {
        return Ok(help::waiter(Some(w.name)));
    }
    let (mut request, parsed) = read_request(w.operation, words)?;
    match parsed.one("--generate-cli-skeleton") {
        Some("input") => {
            return Ok(output::render(
                w.operation,
                &m.input_shape(w.operation)
                    .map(params::skeleton)
                    .unwrap_or(json!({})),
                OutputFormat::Json,
            ));
        }
        Some("yaml-input") => return Ok(params::yaml_skeleton(w.operation)),
        _ => {}
    }
    params::validate(w.operation, &request)?;
    params::timestamps_to_epoch(w.operation, &mut request);
    let s = settings(g)?;
    let (client, _) = open(&s, debug).await?;
    let client = &client;
    let request = &request;
    waiter::wait(&w, || async move {
        match client.call(w.operation, request).await {
            Ok(v) => Ok(Ok(v)),
            Err(CliError::Service { kind, message, .. }) => Ok(Err((kind, message))),
            Err(other) => Err(other),
        }
    })
    .await?;
    Ok(String::new())
}

/// The file `add-agent-release --file PATH` names, read whole (releases are
/// bounded by the coordinator's cap; a larger file is refused here).
fn release_file(operation: &str, words: &[String]) -> Result<Option<(String, Vec<u8>)>, CliError> {
    if operation != "AddAgentRelease" {
        return Ok(None);
    }
    let mut path = None;
    for (i, w) in words.iter().enumerate() {
        if let Some(v) = w.strip_prefix("--file=") {
            path = Some(v.to_string());
        } else if w == "--file" {
            path = words.get(i + 1).cloned();
        }
    }
    let Some(path) = path else {
        return Ok(None);
    };
    let meta =
        std::fs::metadata(&path).map_err(|e| CliError::General(format!("--file {path}: {e}")))?;
    if meta.len() > tether_ssm::limits::MAX_AGENT_RELEASE_BYTES {
        return Err(CliError::General(format!(
            "--file {path}: {} bytes; a release holds at most {}",
            meta.len(),
            tether_ssm::limits::MAX_AGENT_RELEASE_BYTES
        )));
    }
    let bytes =
        std::fs::read(&path).map_err(|e| CliError::General(format!("--file {path}: {e}")))?;
    Ok(Some((path, bytes)))
}

/// Sends a release in parts: from the start, or, when the coordinator holds
/// the beginning of the same binary already (an interrupted upload), from
/// where its copy ends.
async fn upload_release(
    client: &Client,
    mut request: Value,
    bytes: &[u8],
) -> Result<Value, CliError> {
    use base64::Engine as _;
    let part = tether_ssm::limits::AGENT_RELEASE_PART_BYTES;
    let mut offset = 0usize;
    if let Ok(list) = client.call("ListAgentReleases", &json!({})).await
        && let Some(held) = list["AgentReleases"].as_array().and_then(|all| {
            all.iter().find(|r| {
                r["AgentVersion"] == request["AgentVersion"]
                    && r["Platform"] == request["Platform"]
                    && r["Sha256"] == request["Sha256"]
                    && r["Status"] == "Uploading"
            })
        })
    {
        offset = held["ReceivedBytes"].as_u64().unwrap_or(0) as usize;
    }
    loop {
        let end = bytes.len().min(offset + part);
        request["Offset"] = json!(offset);
        request["Content"] =
            json!(base64::engine::general_purpose::STANDARD.encode(&bytes[offset..end]));
        let answer = client.call("AddAgentRelease", &request).await?;
        if end >= bytes.len() {
            return Ok(answer);
        }
        offset = end;
    }
}

/// `get-command-invocation --follow`: prints each step's output as it grows
/// (stdout to stdout, stderr to stderr) until the invocation ends.
async fn follow(client: &Client, request: &Value) -> Result<String, CliError> {
    use std::io::Write as _;
    let command_id = request["CommandId"].clone();
    let instance_id = request["InstanceId"].clone();
    let only = request.get("PluginName").and_then(Value::as_str);
    // Per step: what has been printed of (stdout, stderr).
    let mut printed: Vec<(String, String, String)> = Vec::new();
    loop {
        let listed = client
            .call(
                "ListCommandInvocations",
                &json!({"CommandId": command_id, "InstanceId": instance_id, "Details": true}),
            )
            .await?;
        let Some(inv) = listed["CommandInvocations"].get(0).cloned() else {
            return Err(CliError::Service {
                kind: "InvocationDoesNotExist".into(),
                operation: "GetCommandInvocation".into(),
                message: format!(
                    "command {command_id} has no invocation on instance {instance_id}"
                ),
            });
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
            let step = client
                .call(
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
                Err(CliError::Followed(format!(
                    "the invocation ended {status} ({}, response code {code})",
                    inv["StatusDetails"].as_str().unwrap_or("")
                )))
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
    }

    #[test]
    fn the_verb_is_found_after_global_options() {
        let w = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            verb_of(&w("--config x serve --data-dir d")).as_deref(),
            Some("serve")
        );
        assert_eq!(
            verb_of(&w("--output text list-commands")).as_deref(),
            Some("list-commands")
        );
        assert_eq!(verb_of(&w("--debug")), None);
    }

    #[test]
    fn secrets_never_reach_the_debug_log() {
        let body = json!({"Parameters": {"commands": ["echo s3cret"]}, "DocumentName": "AWS-RunShellScript"});
        let shown = redact(&body, Some("SendCommandRequest")).to_string();
        assert!(
            !shown.contains("s3cret") && shown.contains("AWS-RunShellScript"),
            "{shown}"
        );
        let key = json!({"AccessKey": {"AccessKeyId": "TKIA", "SecretAccessKey": "abc"}});
        let shown = redact(&key, Some("CreateAccessKeyResponse")).to_string();
        assert!(!shown.contains("abc") && shown.contains("TKIA"), "{shown}");
        let act = json!({"ActivationId": "i", "ActivationCode": "c0de"});
        assert!(
            !redact(&act, Some("CreateActivationResult"))
                .to_string()
                .contains("c0de")
        );
        let words: Vec<String> = [
            "send-command",
            "--parameters",
            "commands=echo s3cret",
            "--comment",
            "c",
        ]
        .map(String::from)
        .to_vec();
        let shown = redacted_words(Some("SendCommand"), &words);
        assert_eq!(
            shown,
            ["send-command", "--parameters", REDACTED, "--comment", "c"]
        );
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
        // What botocore encodes for a first page cut after one item.
        assert_eq!(
            encode_resume("NextToken", None, 1),
            "eyJOZXh0VG9rZW4iOiBudWxsLCAiYm90b190cnVuY2F0ZV9hbW91bnQiOiAxfQ=="
        );
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
