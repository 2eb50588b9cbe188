//! A verb's options and the request they make, as the aws CLI builds them:
//! one option per input member of the model (`--instance-ids`, booleans as
//! `--details`/`--no-details`), Tether's own flags, the paging options and
//! `--cli-input-json`/`--cli-input-yaml`/`--generate-cli-skeleton`; the
//! values read as awscli reads them (shorthand, JSON, `file://`), the
//! `--cli-input-*` document underneath them, and the whole request checked
//! before anything is sent with botocore's own checks and words (its
//! `ParamValidator`: required members, types, minimum lengths and values;
//! the coordinator checks the rest). Skeletons (`--generate-cli-skeleton`)
//! are botocore's `ArgumentGenerator`'s.
//!
//! Pure but for `file://` values (read by [`crate::shorthand`]).

use serde_json::{Map, Value, json};
use tether_ssm::model::{self, Model};

use crate::args::{Arity, OptSpec, Parsed};
use crate::errors::CliError;
use crate::output::py_str;
use crate::shorthand::{self, ShorthandError};

/// Tether's own flags on SSM verbs that become request members the
/// coordinator understands beyond the SSM model: (operation, flag, member, help).
pub const EXTRA_FLAGS: &[(&str, &str, &str, &str)] = &[
    (
        "GetCommandInvocation",
        "--full-output",
        "FullOutput",
        "Tether: the whole stored output instead of SSM's first 24,000 / 8,000 characters.",
    ),
    (
        "DescribeInstanceInformation",
        "--include-tags",
        "IncludeTags",
        "Tether: each instance's tags too, as Tags (Key, Value).",
    ),
    (
        "DescribeInstanceInformation",
        "--name-contains",
        "NameContains",
        "Tether: only the instances whose name, computer name or ID contains this text (any case).",
    ),
    (
        "DescribeInstanceInformation",
        "--summarize",
        "Summarize",
        "Tether: the answer's Summary counts the instances the filters keep, by ping status and platform type, across every page.",
    ),
    (
        "ListCommands",
        "--requested-by",
        "RequestedBy",
        "Tether: only the commands this principal sent: its ARN, a user's name, or root.",
    ),
    (
        "CreateAccessKey",
        "--expires-in",
        "ExpiresIn",
        "Tether: the key is refused after this long: a number and a unit, s, m, h or d (e.g. 90d).",
    ),
];

/// Those of [`EXTRA_FLAGS`] that take a value (a string); the others are
/// switches.
const EXTRA_VALUE_FLAGS: &[&str] = &["--expires-in", "--name-contains", "--requested-by"];

/// Tether's own flags that change what the CLI does rather than the
/// request: (operation, flag, help).
pub const CLIENT_FLAGS: &[(&str, &str, &str)] = &[(
    "GetCommandInvocation",
    "--follow",
    "Tether: stream the invocation's output as it is produced, step by step, until it ends; exit 0 if it succeeded, 1 if not.",
)];

/// Tether's own flags that take a value and change what the CLI does:
/// (operation, flag, help).
pub const CLIENT_VALUE_FLAGS: &[(&str, &str, &str)] = &[(
    "AddAgentRelease",
    "--file",
    "Tether: the binary to add: the CLI fills in --size and --sha256 and sends it in parts of 1 MiB (an interrupted upload goes on where the coordinator's copy ends).",
)];

/// The options the aws CLI adds to verbs whose results come in pages.
pub const PAGING_FLAGS: [(&str, &str); 3] = [
    (
        "--starting-token",
        "A token to specify where to start paginating: the NextToken from a previously truncated response.",
    ),
    (
        "--page-size",
        "The size of each page to get in the service call; all items are still fetched.",
    ),
    (
        "--max-items",
        "The total number of items to return; a NextToken is printed when there are more.",
    ),
];

/// The options every verb takes for its whole input.
pub const INPUT_FLAGS: [(&str, &str); 3] = [
    (
        "--cli-input-json",
        "Reads arguments from the JSON string provided (the format of --generate-cli-skeleton); arguments on the command line override it.",
    ),
    (
        "--cli-input-yaml",
        "Reads arguments from the YAML string provided (the format of --generate-cli-skeleton yaml-input).",
    ),
    (
        "--generate-cli-skeleton",
        "Prints a skeleton of the input (input, the default, or yaml-input) without sending anything, or, with output, of the answer.",
    ),
];

/// One option of a verb and what it stands for.
#[derive(Debug, Clone)]
pub struct VerbOption {
    pub spec: OptSpec,
    /// The input member it sets, if it sets one.
    pub member: Option<model::Member>,
    /// `true` for `--no-x` of a boolean member.
    pub negated: bool,
    pub help: String,
}

/// Every option of the verb for `operation`, in the order `help` lists
/// them. Required members are required unless `relaxed` (a `--cli-input-*`
/// document or a skeleton was asked for, as the aws CLI relaxes them).
pub fn options(operation: &str, relaxed: bool) -> Vec<VerbOption> {
    let m = model::model();
    let mut out = Vec::new();
    for member in m.input_members(operation) {
        let flag = format!("--{}", model::cli_name(member.name));
        let kind = m.shape_type(member.shape);
        let required = member.required && !relaxed;
        match kind {
            "boolean" => {
                out.push(VerbOption {
                    spec: OptSpec::new(flag.clone(), Arity::Flag),
                    help: member.help.clone(),
                    member: Some(member.clone()),
                    negated: false,
                });
                out.push(VerbOption {
                    spec: OptSpec::new(format!("--no-{}", &flag[2..]), Arity::Flag),
                    help: String::new(),
                    member: Some(member),
                    negated: true,
                });
            }
            "list" => out.push(VerbOption {
                spec: OptSpec::new(flag, Arity::Many).required(required),
                help: member.help.clone(),
                member: Some(member),
                negated: false,
            }),
            _ => out.push(VerbOption {
                spec: OptSpec::new(flag, Arity::One).required(required),
                help: member.help.clone(),
                member: Some(member),
                negated: false,
            }),
        }
    }
    let plain = |name: &str, arity: Arity, help: &str| VerbOption {
        spec: OptSpec::new(name, arity),
        member: None,
        negated: false,
        help: help.to_owned(),
    };
    for (_, flag, _, help) in EXTRA_FLAGS.iter().filter(|e| e.0 == operation) {
        let arity = if EXTRA_VALUE_FLAGS.contains(flag) {
            Arity::One
        } else {
            Arity::Flag
        };
        out.push(plain(flag, arity, help));
    }
    for (_, flag, help) in CLIENT_FLAGS.iter().filter(|e| e.0 == operation) {
        out.push(plain(flag, Arity::Flag, help));
    }
    for (_, flag, help) in CLIENT_VALUE_FLAGS.iter().filter(|e| e.0 == operation) {
        out.push(plain(flag, Arity::One, help));
    }
    if m.paginator(operation).is_some() {
        for (flag, help) in PAGING_FLAGS {
            let mut o = plain(flag, Arity::One, help);
            if flag != "--starting-token" {
                o.spec = o.spec.integer();
            }
            out.push(o);
        }
    }
    for (flag, help) in INPUT_FLAGS {
        let mut o = if flag == "--generate-cli-skeleton" {
            plain(flag, Arity::Optional("input"), help)
        } else {
            plain(flag, Arity::One, help)
        };
        if flag == "--generate-cli-skeleton" {
            o.spec = o.spec.choices(&["input", "output", "yaml-input"]);
        }
        out.push(o);
    }
    out
}

/// Whether `words` ask for something that relaxes required options
/// (`--cli-input-json`, `--cli-input-yaml`, `--generate-cli-skeleton`, or a
/// prefix of one).
pub fn relaxes_required(words: &[String]) -> bool {
    words.iter().any(|w| {
        let name = w.split('=').next().unwrap_or("");
        name.len() > 4 && INPUT_FLAGS.iter().any(|(flag, _)| flag.starts_with(name))
    })
}

/// The request the parsed options make, members in model order: the
/// `--cli-input-*` document first, each option given replacing its member.
pub fn request(
    operation: &str,
    opts: &[VerbOption],
    parsed: &Parsed,
    base: Option<Value>,
) -> Result<Value, CliError> {
    let m = model::model();
    let mut given = match base {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    for o in opts {
        let Some(member) = &o.member else { continue };
        let Some(words) = parsed.values.get(&o.spec.name) else {
            continue;
        };
        let value = match m.shape_type(member.shape) {
            "boolean" => Value::Bool(!o.negated),
            "list" => shorthand::parse_list_arg(words, &m.cli_shape(member.shape))
                .map_err(|e| value_error(&o.spec.name, e))?,
            kind => {
                let raw = words.last().map(String::as_str).unwrap_or("");
                scalar(kind, raw, member.shape).map_err(|e| value_error(&o.spec.name, e))?
            }
        };
        given.insert(member.name.to_owned(), value);
    }
    for (_, flag, member, _) in EXTRA_FLAGS.iter().filter(|e| e.0 == operation) {
        if EXTRA_VALUE_FLAGS.contains(flag) {
            if let Some(v) = parsed.one(flag) {
                given.insert((*member).to_owned(), Value::String(v.to_owned()));
            }
        } else if parsed.flag(flag) {
            given.insert((*member).to_owned(), Value::Bool(true));
        }
    }
    // Model order, then anything else (unknown members, refused below).
    let mut body = Map::new();
    for member in m.input_members(operation) {
        if let Some(v) = given.remove(member.name) {
            body.insert(member.name.to_owned(), v);
        }
    }
    body.extend(given);
    Ok(Value::Object(body))
}

/// A scalar option's value as awscli's `unpack_scalar_cli_arg` makes it.
fn scalar(kind: &str, raw: &str, shape: &str) -> Result<Value, ShorthandError> {
    let m = model::model();
    match kind {
        "integer" | "long" => {
            raw.trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| ShorthandError::InvalidInteger {
                    location: "value".into(),
                    value: raw.to_owned(),
                })
        }
        // botocore checks timestamps; they travel as epoch seconds.
        "timestamp" => Ok(Value::String(raw.to_owned())),
        "double" | "float" => Ok(raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .unwrap_or_else(|| Value::String(raw.to_owned()))),
        _ => shorthand::parse_value(raw, &m.cli_shape(shape)),
    }
}

fn value_error(flag: &str, e: ShorthandError) -> CliError {
    match e {
        // Python's `int()` failing inside awscli: a general error.
        ShorthandError::InvalidInteger { .. } => CliError::General(e.to_string()),
        other => CliError::parameter(flag, other),
    }
}

/// `--cli-input-json` / `--cli-input-yaml`: a JSON (or YAML) object of
/// input members, `file://` allowed, as the aws CLI reads it.
pub fn cli_input(parsed: &Parsed) -> Result<Option<Value>, CliError> {
    let (flag, yaml) = match (
        parsed.one("--cli-input-json"),
        parsed.one("--cli-input-yaml"),
    ) {
        (Some(_), Some(_)) => {
            return Err(CliError::parameter(
                "--cli-input-json",
                "--cli-input-json and --cli-input-yaml cannot both be given",
            ));
        }
        (Some(j), None) => (("--cli-input-json", j), false),
        (None, Some(y)) => (("--cli-input-yaml", y), true),
        (None, None) => return Ok(None),
    };
    let (name, raw) = flag;
    let text = match shorthand::parse_value(raw, &model::Shape::String) {
        Ok(Value::String(t)) => t,
        Ok(_) => raw.to_owned(),
        Err(e) => return Err(CliError::parameter(name, e)),
    };
    let value: Value = if yaml {
        serde_yaml_ng::from_str(&text).map_err(|e| {
            CliError::parameter(name, format!("Invalid YAML: {e}\nYAML received: {text}"))
        })?
    } else {
        serde_json::from_str(&text).map_err(|e| {
            CliError::parameter(name, format!("Invalid JSON: {e}\nJSON received: {text}"))
        })?
    };
    if !value.is_object() {
        return Err(CliError::parameter(
            name,
            format!("Invalid JSON received: the input must be an object, not {value}"),
        ));
    }
    Ok(Some(value))
}

// ---------------------------------------------------------------------------
// botocore's ParamValidator.

/// Checks `request` against the operation's input shape as botocore does
/// before sending, with its words, every problem listed.
pub fn validate(operation: &str, request: &Value) -> Result<(), CliError> {
    let m = model::model();
    let Some(shape) = m.input_shape(operation) else {
        return Ok(());
    };
    let mut problems = Vec::new();
    check(m, request, shape, "", &mut problems);
    // Tether's own extra members (FullOutput) are not in the model.
    problems.retain(|p| {
        !EXTRA_FLAGS
            .iter()
            .any(|(op, _, member, _)| *op == operation && p.contains(&format!("\"{member}\"")))
    });
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::Validation(problems.join("\n")))
    }
}

/// Python's `str(type(x))` for a decoded JSON value.
fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<class 'NoneType'>",
        Value::Bool(_) => "<class 'bool'>",
        Value::Number(n) if n.is_f64() => "<class 'float'>",
        Value::Number(_) => "<class 'int'>",
        Value::String(_) => "<class 'str'>",
        Value::Array(_) => "<class 'list'>",
        Value::Object(_) => "<class 'dict'>",
    }
}

fn shown_name(name: &str) -> &str {
    if name.is_empty() {
        "input"
    } else {
        name.strip_prefix('.').unwrap_or(name)
    }
}

fn invalid_type(problems: &mut Vec<String>, name: &str, v: &Value, valid: &str) {
    problems.push(format!(
        "Invalid type for parameter {}, value: {}, type: {}, valid types: {valid}",
        shown_name(name),
        py_str(v),
        py_type(v)
    ));
}

fn range(problems: &mut Vec<String>, shape: &Value, name: &str, n: i64, what: &str, shown: &str) {
    if let Some(min) = shape["min"].as_i64()
        && n < min
    {
        problems.push(format!(
            "Invalid {what} for parameter {}, value: {shown}, valid min {what}: {min}",
            shown_name(name)
        ));
    }
}

fn check(m: &'static Model, v: &Value, shape_name: &str, name: &str, problems: &mut Vec<String>) {
    let Some(shape) = m.shape(shape_name) else {
        return;
    };
    match shape["type"].as_str().unwrap_or("string") {
        "structure" => {
            let Some(obj) = v.as_object() else {
                return invalid_type(problems, name, v, "<class 'dict'>");
            };
            for req in shape["required"].as_array().into_iter().flatten() {
                if let Some(r) = req.as_str()
                    && !obj.contains_key(r)
                {
                    problems.push(format!(
                        "Missing required parameter in {}: \"{r}\"",
                        shown_name(name)
                    ));
                }
            }
            let members = m.members(shape_name);
            let mut known = Vec::new();
            for (key, value) in obj {
                match members.iter().find(|(n, _)| n == key) {
                    Some((_, def)) => known.push((key, value, def["shape"].as_str().unwrap_or(""))),
                    None => problems.push(format!(
                        "Unknown parameter in {}: \"{key}\", must be one of: {}",
                        shown_name(name),
                        members
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
            for (key, value, member_shape) in known {
                check(m, value, member_shape, &format!("{name}.{key}"), problems);
            }
        }
        "list" => {
            let Some(items) = v.as_array() else {
                return invalid_type(problems, name, v, "<class 'list'>, <class 'tuple'>");
            };
            range(
                problems,
                shape,
                name,
                items.len() as i64,
                "length",
                &items.len().to_string(),
            );
            let member = shape["member"]["shape"].as_str().unwrap_or("");
            for (i, item) in items.iter().enumerate() {
                check(m, item, member, &format!("{name}[{i}]"), problems);
            }
        }
        "map" => {
            let Some(entries) = v.as_object() else {
                return invalid_type(problems, name, v, "<class 'dict'>");
            };
            let key_shape = shape["key"]["shape"].as_str().unwrap_or("");
            let value_shape = shape["value"]["shape"].as_str().unwrap_or("");
            for (k, item) in entries {
                check(
                    m,
                    &json!(k),
                    key_shape,
                    &format!("{name} (key: {k})"),
                    problems,
                );
                check(m, item, value_shape, &format!("{name}.{k}"), problems);
            }
        }
        "string" => match v.as_str() {
            Some(s) => {
                let n = s.chars().count() as i64;
                range(problems, shape, name, n, "length", &n.to_string());
            }
            None => invalid_type(problems, name, v, "<class 'str'>"),
        },
        "integer" | "long" => match v {
            Value::Number(n) if n.as_i64().is_some() => {
                let n = n.as_i64().unwrap_or_default();
                range(problems, shape, name, n, "value", &n.to_string());
            }
            // Python's bool is an int.
            Value::Bool(b) => range(problems, shape, name, i64::from(*b), "value", &py_str(v)),
            _ => invalid_type(problems, name, v, "<class 'int'>"),
        },
        "double" | "float" if !(v.is_number() || v.is_boolean()) => invalid_type(
            problems,
            name,
            v,
            "<class 'float'>, <class 'decimal.Decimal'>, <class 'int'>",
        ),
        "boolean" if !v.is_boolean() => invalid_type(problems, name, v, "<class 'bool'>"),
        "timestamp" => {
            let ok = match v {
                Value::Number(_) => true,
                Value::String(s) => tether_util::time::parse_timestamp_ms(s).is_some(),
                _ => false,
            };
            if !ok {
                invalid_type(
                    problems,
                    name,
                    v,
                    "<class 'datetime.datetime'>, timestamp-string",
                );
            }
        }
        _ => {}
    }
}

/// Timestamp members as epoch seconds, as they travel (after [`validate`]).
pub fn timestamps_to_epoch(operation: &str, request: &mut Value) {
    let m = model::model();
    if let Some(shape) = m.input_shape(operation) {
        to_epoch(m, request, shape);
    }
}

fn to_epoch(m: &'static Model, v: &mut Value, shape_name: &str) {
    let Some(shape) = m.shape(shape_name) else {
        return;
    };
    match (shape["type"].as_str().unwrap_or(""), v) {
        ("structure", Value::Object(obj)) => {
            for (name, def) in m.members(shape_name) {
                if let (Some(item), Some(s)) = (obj.get_mut(name), def["shape"].as_str()) {
                    to_epoch(m, item, s);
                }
            }
        }
        ("list", Value::Array(items)) => {
            let member = shape["member"]["shape"].as_str().unwrap_or("");
            items.iter_mut().for_each(|i| to_epoch(m, i, member));
        }
        ("map", Value::Object(obj)) => {
            let value = shape["value"]["shape"].as_str().unwrap_or("");
            obj.values_mut().for_each(|i| to_epoch(m, i, value));
        }
        ("timestamp", v @ Value::String(_)) => {
            if let Some(ms) = v.as_str().and_then(tether_util::time::parse_timestamp_ms) {
                *v = json!(ms as f64 / 1000.0);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Skeletons (botocore's ArgumentGenerator).

/// A sample value of `shape`: `""` for strings (the first value of an
/// enum), 0, `true`, one-element lists, `{"KeyName": …}` maps, every member
/// of a structure, timestamps as `1970-01-01T00:00:00`.
pub fn skeleton(shape_name: &str) -> Value {
    skeleton_at(shape_name, &mut Vec::new())
}

fn skeleton_at(shape_name: &str, stack: &mut Vec<String>) -> Value {
    let m = model::model();
    let Some(shape) = m.shape(shape_name) else {
        return json!("");
    };
    if stack.iter().any(|s| s == shape_name) {
        return Value::Null;
    }
    stack.push(shape_name.to_owned());
    let out = match shape["type"].as_str().unwrap_or("string") {
        "structure" => {
            let mut o = Map::new();
            for (name, def) in m.members(shape_name) {
                let v = skeleton_at(def["shape"].as_str().unwrap_or(""), stack);
                if !v.is_null() {
                    o.insert(name.to_owned(), v);
                }
            }
            Value::Object(o)
        }
        "list" => {
            let v = skeleton_at(shape["member"]["shape"].as_str().unwrap_or(""), stack);
            if v.is_null() { json!([]) } else { json!([v]) }
        }
        "map" => {
            let v = skeleton_at(shape["value"]["shape"].as_str().unwrap_or(""), stack);
            json!({ "KeyName": v })
        }
        "integer" | "long" => json!(0),
        "float" | "double" => json!(0.0),
        "boolean" => json!(true),
        "timestamp" => json!("1970-01-01T00:00:00"),
        _ => shape["enum"].get(0).cloned().unwrap_or_else(|| json!("")),
    };
    stack.pop();
    out
}

/// The input skeleton in YAML with each member's first sentence (and, for
/// an enum, its values) as a comment, as `--generate-cli-skeleton
/// yaml-input` prints it.
pub fn yaml_skeleton(operation: &str) -> String {
    let m = model::model();
    let mut out = String::new();
    if let Some(shape) = m.input_shape(operation) {
        yaml_structure(&mut out, shape, "", "", &mut vec![shape.to_owned()]);
    }
    out
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "''".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

fn yaml_comment(m: &'static Model, shape_name: &str, def: &Value, required: bool) -> String {
    let mut c = model::first_sentence(def["documentation"].as_str().unwrap_or(""));
    if let Some(values) = m.shape(shape_name).and_then(|s| s["enum"].as_array()) {
        let names: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
        c.push_str(&format!(" Valid values are: {}.", names.join(", ")));
    }
    if required {
        c = format!("[REQUIRED] {c}");
    }
    c
}

/// A structure's members as YAML lines; `first_prefix` starts the first
/// line (`- ` inside a list), `indent` the others.
fn yaml_structure(
    out: &mut String,
    shape_name: &str,
    first_prefix: &str,
    indent: &str,
    stack: &mut Vec<String>,
) {
    let m = model::model();
    let required: Vec<&str> = m
        .shape(shape_name)
        .and_then(|s| s["required"].as_array())
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (i, (name, def)) in m.members(shape_name).into_iter().enumerate() {
        let member_shape = def["shape"].as_str().unwrap_or("");
        if stack.iter().any(|s| s == member_shape) {
            continue;
        }
        let lead = if i == 0 { first_prefix } else { indent };
        // ruamel puts two spaces before the first key's comment, one after.
        let gap = if i == 0 { "  " } else { " " };
        let comment = yaml_comment(m, member_shape, def, required.contains(&name));
        let comment = if comment.is_empty() {
            String::new()
        } else {
            format!("{gap}# {comment}")
        };
        let kind = m.shape_type(member_shape);
        let child_indent = format!("{indent}  ");
        match kind {
            "structure" => {
                out.push_str(&format!("{lead}{name}:{comment}\n"));
                stack.push(member_shape.to_owned());
                yaml_structure(out, member_shape, &child_indent, &child_indent, stack);
                stack.pop();
            }
            "list" => {
                out.push_str(&format!("{lead}{name}:{comment}\n"));
                yaml_list(out, member_shape, indent, stack);
            }
            "map" => {
                out.push_str(&format!("{lead}{name}:{comment}\n"));
                let value_shape = m
                    .shape(member_shape)
                    .and_then(|s| s["value"]["shape"].as_str())
                    .unwrap_or("");
                match m.shape_type(value_shape) {
                    "list" => {
                        out.push_str(&format!("{child_indent}KeyName:\n"));
                        yaml_list(out, value_shape, &child_indent, stack);
                    }
                    "structure" => {
                        out.push_str(&format!("{child_indent}KeyName:\n"));
                        let deeper = format!("{child_indent}  ");
                        yaml_structure(out, value_shape, &deeper, &deeper, stack);
                    }
                    _ => out.push_str(&format!(
                        "{child_indent}KeyName: {}\n",
                        yaml_scalar(&skeleton(value_shape))
                    )),
                }
            }
            _ => out.push_str(&format!(
                "{lead}{name}: {}{comment}\n",
                yaml_scalar(&skeleton(member_shape))
            )),
        }
    }
}

fn yaml_list(out: &mut String, list_shape: &str, indent: &str, stack: &mut Vec<String>) {
    let m = model::model();
    let member = m
        .shape(list_shape)
        .and_then(|s| s["member"]["shape"].as_str())
        .unwrap_or("");
    match m.shape_type(member) {
        "structure" => {
            stack.push(member.to_owned());
            yaml_structure(
                out,
                member,
                &format!("{indent}- "),
                &format!("{indent}  "),
                stack,
            );
            stack.pop();
        }
        _ => out.push_str(&format!("{indent}- {}\n", yaml_scalar(&skeleton(member)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse_known;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    fn build(operation: &str, line: &str) -> Result<Value, CliError> {
        let opts = options(operation, false);
        let specs: Vec<OptSpec> = opts.iter().map(|o| o.spec.clone()).collect();
        let parsed = parse_known(&specs, &words(line))?;
        let body = request(operation, &opts, &parsed, cli_input(&parsed)?)?;
        validate(operation, &body)?;
        Ok(body)
    }

    #[test]
    fn requests_are_built_and_checked_as_botocore_checks_them() {
        assert_eq!(
            build(
                "SendCommand",
                "--parameters commands=ifconfig --document-name AWS-RunShellScript --instance-ids mi-0123456789abcdef0 --timeout-seconds 60"
            )
            .unwrap(),
            json!({"InstanceIds": ["mi-0123456789abcdef0"], "DocumentName": "AWS-RunShellScript",
                   "TimeoutSeconds": 60, "Parameters": {"commands": ["ifconfig"]}})
        );
        assert_eq!(
            build("ListCommandInvocations", "--no-details --command-id c").unwrap_err(),
            CliError::Validation(
                "Invalid length for parameter CommandId, value: 1, valid min length: 36".into()
            )
        );
        // Every problem, in botocore's words and order.
        for (op, line, want) in [
            (
                "ListCommands",
                "--max-results 0 --command-id x",
                "Invalid length for parameter CommandId, value: 1, valid min length: 36\nInvalid value for parameter MaxResults, value: 0, valid min value: 1",
            ),
            (
                "SendCommand",
                r#"--document-name AWS-RunShellScript --instance-ids a --timeout-seconds 1 --parameters {"commands":[1]}"#,
                "Invalid value for parameter TimeoutSeconds, value: 1, valid min value: 30\nInvalid type for parameter Parameters.commands[0], value: 1, type: <class 'int'>, valid types: <class 'str'>",
            ),
            (
                "SendCommand",
                "--document-name AWS-RunShellScript --instance-ids a --cloud-watch-output-config CloudWatchOutputEnabled=maybe",
                "Invalid type for parameter CloudWatchOutputConfig.CloudWatchOutputEnabled, value: maybe, type: <class 'str'>, valid types: <class 'bool'>",
            ),
            (
                "CreateActivation",
                "--iam-role r --expiration-date soon",
                "Invalid type for parameter ExpirationDate, value: soon, type: <class 'str'>, valid types: <class 'datetime.datetime'>, timestamp-string",
            ),
            (
                "SendCommand",
                "--document-name AWS-RunShellScript --targets Key=tag:x,Values=a,Bogus=1",
                "Unknown parameter in Targets[0]: \"Bogus\", must be one of: Key, Values",
            ),
            (
                "SendCommand",
                "--cli-input-json {\"InstanceIds\":[\"mi-0123456789abcdef0\"]}",
                "Missing required parameter in input: \"DocumentName\"",
            ),
        ] {
            let opts = options(op, super::relaxes_required(&words(line)));
            let specs: Vec<OptSpec> = opts.iter().map(|o| o.spec.clone()).collect();
            let parsed = parse_known(&specs, &words(line)).unwrap();
            let body = request(op, &opts, &parsed, cli_input(&parsed).unwrap()).unwrap();
            assert_eq!(
                validate(op, &body),
                Err(CliError::Validation(want.into())),
                "{line}"
            );
        }
        // `int()` failing is the aws CLI's general error.
        let err = build(
            "SendCommand",
            "--document-name d --instance-ids a --timeout-seconds abc",
        )
        .unwrap_err();
        assert_eq!(
            err,
            CliError::General("invalid literal for int() with base 10: 'abc'".into())
        );
        assert_eq!(err.exit(), 255);
        // Shorthand syntax errors name the flag.
        let err = build(
            "SendCommand",
            "--document-name d --instance-ids a --parameters commands",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Error parsing parameter '--parameters': Expected: '='"),
            "{err}"
        );
    }

    #[test]
    fn cli_input_json_lies_under_the_flags() {
        let body = build(
            "SendCommand",
            r#"--cli-input-json {"DocumentName":"AWS-RunShellScript","InstanceIds":["mi-0123456789abcdef0"],"Comment":"from-json"} --comment from-flag"#,
        )
        .unwrap();
        assert_eq!(body["Comment"], json!("from-flag"));
        assert_eq!(body["DocumentName"], json!("AWS-RunShellScript"));
        let mut t = json!({"ExpirationDate": "2030-01-10T20:30:00Z"});
        timestamps_to_epoch("CreateActivation", &mut t);
        assert_eq!(t["ExpirationDate"], json!(1894307400.0));
    }

    #[test]
    fn skeletons_are_botocores() {
        assert_eq!(
            skeleton("GetCommandInvocationRequest"),
            json!({"CommandId": "", "InstanceId": "", "PluginName": ""})
        );
        let send = skeleton("SendCommandRequest");
        assert_eq!(send["DocumentHashType"], json!("Sha256"));
        assert_eq!(send["Parameters"], json!({"KeyName": [""]}));
        assert_eq!(send["Targets"], json!([{"Key": "", "Values": [""]}]));
        assert_eq!(
            yaml_skeleton("GetCommandInvocation"),
            "CommandId: ''  # [REQUIRED] (Required) The parent command ID of the invocation plugin.\n\
             InstanceId: '' # [REQUIRED] (Required) The ID of the managed node targeted by the command.\n\
             PluginName: '' # The name of the step for which you want detailed results.\n"
        );
        let y = yaml_skeleton("ListCommands");
        assert!(y.contains("Filters: # (Optional) One or more filters.\n- key: InvokedAfter  # [REQUIRED] The name of the filter. Valid values are: InvokedAfter, InvokedBefore, Status, ExecutionStage, DocumentName.\n  value: '' # [REQUIRED] The filter value.\n"), "{y}");
    }
}
