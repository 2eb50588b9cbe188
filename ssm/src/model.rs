//! The SSM API model: botocore's `ssm/2014-11-06` service, paginator and
//! waiter definitions, embedded in the binary (see `ssm/model/README.md`),
//! with Tether's own operations and extra answer members merged in.
//!
//! This module owns reading the model and answering questions about it:
//! which operations exist, each operation's input and output members and
//! their shapes, which operations page their results, which waiters exist,
//! which shapes are sensitive and which members are timestamps. The operator CLI builds its
//! verbs and flags from it, so they are exactly those of `aws ssm`. It does
//! no IO, and knows nothing of what an operation means.
//!
//! Each operation and shape is kept as its JSON text and parsed the first
//! time it is asked for: a CLI call reads a handful of the model's 1,500
//! shapes, and parsing all of them was most of what a call cost. The
//! service file is decompressed at build time (`build.rs`), and the
//! timestamp member names, which depend on every shape, are generated
//! (`timestamps.rs`, by `codegen.rs`).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

static SERVICE: &str = include_str!(concat!(env!("OUT_DIR"), "/ssm-service-2.json"));
static PAGINATORS: &str = include_str!("../model/ssm-paginators-1.json");
static TETHER_OPERATIONS: &str = include_str!("../model/tether-operations.json");
static WAITERS: &str = include_str!("../model/ssm-waiters-2.json");

/// How deep a recursive shape (e.g. `InventoryAggregator`) is followed when
/// turned into a flag shape; deeper values are taken as JSON, unchecked.
const MAX_SHAPE_DEPTH: usize = 8;

/// The parsed model.
#[derive(Debug)]
pub struct Model {
    operations: Section,
    shapes: Section,
    paginators: Value,
    waiters: Value,
    /// Tether's extra answer members, by output shape (`extraMembers`).
    extra_members: Value,
    /// The operations of SSM's own model (the others are Tether's).
    ssm_operations: std::collections::BTreeSet<String>,
}

/// How an operation pages its results (botocore's paginator entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paginator {
    /// Request member carrying the token (`NextToken`).
    pub input_token: &'static str,
    /// Response member carrying the next token (`NextToken`).
    pub output_token: &'static str,
    /// Request member limiting a page (`MaxResults`), if any.
    pub limit_key: Option<&'static str>,
    /// Response members whose lists are merged across pages.
    pub result_keys: Vec<&'static str>,
}

/// A botocore waiter (`waiters-2.json`): call `operation` every `delay`
/// seconds, at most `max_attempts` times, until an acceptor says success
/// or failure.
#[derive(Debug, Clone)]
pub struct Waiter {
    /// `CommandExecuted`.
    pub name: &'static str,
    /// The operation it calls (`GetCommandInvocation`).
    pub operation: &'static str,
    pub delay: u64,
    pub max_attempts: u64,
    /// In order; the first that matches decides.
    pub acceptors: Vec<Acceptor>,
}

/// One acceptor of a waiter.
#[derive(Debug, Clone)]
pub struct Acceptor {
    pub state: AcceptorState,
    pub matcher: Matcher,
}

/// What a matching acceptor means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptorState {
    Success,
    Failure,
    Retry,
}

/// What an acceptor matches: a JMESPath expression's value against the
/// expected value (`path`), all or any of its list values (`pathAll`,
/// `pathAny`), the HTTP status, or the error code.
#[derive(Debug, Clone)]
pub enum Matcher {
    Path(&'static str, &'static Value),
    PathAll(&'static str, &'static Value),
    PathAny(&'static str, &'static Value),
    Status(u64),
    Error(&'static str),
}

/// One input member of an operation.
#[derive(Debug, Clone)]
pub struct Member {
    /// PascalCase name as in the API (`InstanceIds`).
    pub name: &'static str,
    /// The shape's name in the model (`InstanceIdList`).
    pub shape: &'static str,
    /// Whether the model lists it as required.
    pub required: bool,
    /// First sentence of its documentation, as plain text.
    pub help: String,
    /// Its whole documentation, as the model has it (HTML).
    pub documentation: &'static str,
}

/// The shape a flag expects, enough to coerce shorthand as awscli does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A string (also what `fileb://` content becomes, base64-encoded).
    String,
    /// An integer (`integer` or `long` in the botocore model).
    Integer,
    /// A boolean, written `true` or `false` in shorthand.
    Boolean,
    /// A list of the inner shape.
    List(Box<Shape>),
    /// A map from string keys to the inner shape.
    Map(Box<Shape>),
    /// A structure with the given members, in model order.
    Structure(Vec<(&'static str, Shape)>),
    /// Anything, taken as given (a recursive shape's deepest levels).
    Any,
}

impl Shape {
    /// The kind's name, as error messages call it.
    pub fn kind(&self) -> &'static str {
        match self {
            Shape::String => "string",
            Shape::Integer => "integer",
            Shape::Boolean => "boolean",
            Shape::List(_) => "list",
            Shape::Map(_) => "map",
            Shape::Structure(_) => "structure",
            Shape::Any => "value",
        }
    }

    /// Whether it holds one value rather than a collection.
    pub fn is_scalar(&self) -> bool {
        matches!(self, Shape::String | Shape::Integer | Shape::Boolean)
    }
}

/// A section of the model (`operations` or `shapes`): each entry's JSON
/// text, parsed the first time the entry is asked for.
#[derive(Debug, Default)]
struct Section {
    entries: HashMap<&'static str, Entry>,
}

#[derive(Debug)]
struct Entry {
    text: &'static RawValue,
    parsed: OnceLock<Value>,
}

impl Section {
    fn get(&'static self, name: &str) -> Option<&'static Value> {
        let e = self.entries.get(name)?;
        Some(e.parsed.get_or_init(|| {
            // The text was read as JSON when the model loaded.
            serde_json::from_str(e.text.get()).unwrap_or(Value::Null)
        }))
    }

    fn names(&'static self) -> impl Iterator<Item = &'static str> {
        self.entries.keys().copied()
    }
}

/// A model file's sections as text (and Tether's extra answer members).
#[derive(Deserialize)]
struct Sections {
    #[serde(borrow, default)]
    operations: HashMap<&'static str, &'static RawValue>,
    #[serde(borrow, default)]
    shapes: HashMap<&'static str, &'static RawValue>,
    #[serde(rename = "extraMembers", default)]
    extra_members: Value,
}

/// The embedded model, read on first use.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        // The embedded files are fixed at build time and checked by the
        // tests, so a failure here is a build defect, not bad input.
        #[allow(clippy::expect_used)]
        let service: Sections = serde_json::from_str(SERVICE).expect("embedded SSM model is JSON");
        #[allow(clippy::expect_used)]
        let tether: Sections =
            serde_json::from_str(TETHER_OPERATIONS).expect("embedded Tether operations are JSON");
        let ssm_operations = service.operations.keys().map(|k| (*k).to_owned()).collect();
        // Tether's own operations join SSM's, shape by shape; none may
        // replace one of SSM's (the tests check there is no clash).
        let section = |ssm: HashMap<&'static str, &'static RawValue>,
                       ours: HashMap<&'static str, &'static RawValue>| {
            let mut entries: HashMap<&'static str, Entry> = ssm
                .into_iter()
                .map(|(k, text)| {
                    (
                        k,
                        Entry {
                            text,
                            parsed: OnceLock::new(),
                        },
                    )
                })
                .collect();
            for (k, text) in ours {
                entries.entry(k).or_insert(Entry {
                    text,
                    parsed: OnceLock::new(),
                });
            }
            Section { entries }
        };
        #[allow(clippy::expect_used)]
        Model {
            operations: section(service.operations, tether.operations),
            shapes: section(service.shapes, tether.shapes),
            paginators: serde_json::from_str(PAGINATORS).expect("embedded SSM paginators are JSON"),
            waiters: serde_json::from_str(WAITERS).expect("embedded SSM waiters are JSON"),
            extra_members: tether.extra_members,
            ssm_operations,
        }
    })
}

impl Model {
    /// The operation's definition, if the model has it.
    pub fn operation(&'static self, name: &str) -> Option<&'static Value> {
        self.operations.get(name)
    }

    /// Whether the operation is SSM's own, rather than one of Tether's
    /// (`model/tether-operations.json`).
    pub fn is_ssm_operation(&'static self, name: &str) -> bool {
        self.ssm_operations.contains(name)
    }

    /// Every operation of SSM's own model, by name.
    pub fn ssm_operation_names(&'static self) -> impl Iterator<Item = &'static str> {
        self.ssm_operations.iter().map(String::as_str)
    }

    /// The AWS service whose action names an operation in IAM policies:
    /// `ssm` for SSM's, the service it was copied from for the imported
    /// ones (`iam`, `cloudtrail`), `tether` for Tether's own.
    pub fn action_service(&'static self, operation: &str) -> &'static str {
        if self.is_ssm_operation(operation) {
            return "ssm";
        }
        self.operation(operation)
            .and_then(|op| op["imported"].as_str())
            .and_then(|s| s.split(' ').next())
            .unwrap_or("tether")
    }

    /// A shape's definition by name.
    pub fn shape(&'static self, name: &str) -> Option<&'static Value> {
        self.shapes.get(name)
    }

    /// The operation's input members in model order (none when it takes no input).
    pub fn input_members(&'static self, operation: &str) -> Vec<Member> {
        let Some(input) = self
            .operation(operation)
            .and_then(|op| op["input"]["shape"].as_str())
            .and_then(|s| self.shape(s))
        else {
            return Vec::new();
        };
        let required: Vec<&str> = input["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(members) = input["members"].as_object() else {
            return Vec::new();
        };
        members
            .iter()
            .filter_map(|(name, m)| {
                Some(Member {
                    name: name.as_str(),
                    shape: m["shape"].as_str()?,
                    required: required.contains(&name.as_str()),
                    help: first_sentence(m["documentation"].as_str().unwrap_or("")),
                    documentation: m["documentation"].as_str().unwrap_or(""),
                })
            })
            .collect()
    }

    /// The operation's summary: the first sentence of its documentation.
    pub fn operation_help(&'static self, operation: &str) -> String {
        self.operation(operation)
            .and_then(|op| op["documentation"].as_str())
            .map(first_sentence)
            .unwrap_or_default()
    }

    /// The model type of a shape (`string`, `integer`, `list`, ...).
    pub fn shape_type(&'static self, name: &str) -> &'static str {
        self.shape(name)
            .and_then(|s| s["type"].as_str())
            .unwrap_or("string")
    }

    /// The flag shape for a model shape, for parsing shorthand and JSON.
    pub fn cli_shape(&'static self, name: &str) -> Shape {
        self.cli_shape_at(name, 0)
    }

    fn cli_shape_at(&'static self, name: &str, depth: usize) -> Shape {
        let Some(shape) = self.shape(name) else {
            return Shape::String;
        };
        let child = |v: &'static Value| {
            let n = v["shape"].as_str().unwrap_or("String");
            self.cli_shape_at(n, depth + 1)
        };
        match shape["type"].as_str().unwrap_or("string") {
            "integer" | "long" => Shape::Integer,
            "boolean" => Shape::Boolean,
            "list" if depth < MAX_SHAPE_DEPTH => Shape::List(Box::new(child(&shape["member"]))),
            "map" if depth < MAX_SHAPE_DEPTH => Shape::Map(Box::new(child(&shape["value"]))),
            "structure" if depth < MAX_SHAPE_DEPTH => Shape::Structure(
                shape["members"]
                    .as_object()
                    .map(|ms| ms.iter().map(|(k, v)| (k.as_str(), child(v))).collect())
                    .unwrap_or_default(),
            ),
            "list" | "map" | "structure" => Shape::Any,
            _ => Shape::String,
        }
    }

    /// The operation's input shape name, if it takes input.
    pub fn input_shape(&'static self, operation: &str) -> Option<&'static str> {
        self.operation(operation)?["input"]["shape"].as_str()
    }

    /// The operation's output shape name, if it answers with one.
    pub fn output_shape(&'static self, operation: &str) -> Option<&'static str> {
        self.operation(operation)?["output"]["shape"].as_str()
    }

    /// A structure's members in model order: (name, member definition).
    pub fn members(&'static self, shape: &str) -> Vec<(&'static str, &'static Value)> {
        self.shape(shape)
            .and_then(|s| s["members"].as_object())
            .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
            .unwrap_or_default()
    }

    /// The members Tether adds to SSM's answers of this output shape
    /// (`extraMembers` in `model/tether-operations.json`): (name, member
    /// definition). The aws CLI and the SDKs drop them; the tether CLI prints
    /// them after the model's members.
    pub fn extra_members(&'static self, shape: &str) -> Vec<(&'static str, &'static Value)> {
        self.extra_members
            .get(shape)
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
            .unwrap_or_default()
    }

    /// Every (output shape, member) pair of Tether's extra answer members.
    pub fn all_extra_members(&'static self) -> Vec<(&'static str, &'static str)> {
        self.extra_members
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(shape, members)| Some((shape.as_str(), members.as_object()?)))
            .flat_map(|(shape, members)| members.keys().map(move |m| (shape, m.as_str())))
            .collect()
    }

    /// Whether botocore's model marks the shape sensitive (its values are
    /// secrets: SecureString values, command parameters, secret keys).
    pub fn is_sensitive(&'static self, shape: &str) -> bool {
        self.shape(shape)
            .is_some_and(|s| s["sensitive"].as_bool() == Some(true))
    }

    /// The member names that hold timestamps in answers: `timestamp`-typed
    /// in a shape some operation answers with, and `string`-typed in no
    /// shape at all (so a name alone says how to show its value). They
    /// depend on every shape: generated (`timestamps.rs`) by
    /// [`Model::compute_timestamp_members`], which a test runs.
    pub fn timestamp_members(&'static self) -> &'static std::collections::BTreeSet<&'static str> {
        static NAMES: OnceLock<std::collections::BTreeSet<&'static str>> = OnceLock::new();
        NAMES.get_or_init(|| {
            crate::timestamps::TIMESTAMP_MEMBERS
                .iter()
                .copied()
                .collect()
        })
    }

    /// [`Model::timestamp_members`] from the model itself (parses every shape).
    pub fn compute_timestamp_members(&'static self) -> std::collections::BTreeSet<&'static str> {
        let m = self;
        let mut reached = std::collections::BTreeSet::new();
        let mut todo: Vec<&'static str> = m
            .operations
            .names()
            .filter_map(|op| m.operation(op)?["output"]["shape"].as_str())
            .collect();
        while let Some(name) = todo.pop() {
            if !reached.insert(name) {
                continue;
            }
            let Some(shape) = m.shape(name) else { continue };
            for child in [&shape["member"], &shape["key"], &shape["value"]] {
                todo.extend(child["shape"].as_str());
            }
            todo.extend(
                m.members(name)
                    .iter()
                    .filter_map(|(_, v)| v["shape"].as_str()),
            );
        }
        let typed = |shapes: &mut dyn Iterator<Item = &'static str>, kind: &str| {
            shapes
                .flat_map(|s| m.members(s))
                .filter(|(_, v)| v["shape"].as_str().map(|s| m.shape_type(s)) == Some(kind))
                .map(|(name, _)| name)
                .collect::<std::collections::BTreeSet<_>>()
        };
        let strings = typed(&mut m.shapes.names(), "string");
        typed(&mut reached.iter().copied(), "timestamp")
            .into_iter()
            .filter(|n| !strings.contains(n))
            .collect()
    }

    /// The names of botocore's SSM waiters (`CommandExecuted`).
    pub fn waiter_names(&'static self) -> Vec<&'static str> {
        self.waiters["waiters"]
            .as_object()
            .map(|w| w.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// A waiter by name (`CommandExecuted`).
    pub fn waiter(&'static self, name: &str) -> Option<Waiter> {
        let w = self.waiters["waiters"].get(name)?;
        let acceptors = w["acceptors"]
            .as_array()?
            .iter()
            .filter_map(|a| {
                let state = match a["state"].as_str()? {
                    "success" => AcceptorState::Success,
                    "failure" => AcceptorState::Failure,
                    "retry" => AcceptorState::Retry,
                    _ => return None,
                };
                let expected = &a["expected"];
                let argument = a["argument"].as_str().unwrap_or("");
                let matcher = match a["matcher"].as_str()? {
                    "path" => Matcher::Path(argument, expected),
                    "pathAll" => Matcher::PathAll(argument, expected),
                    "pathAny" => Matcher::PathAny(argument, expected),
                    "status" => Matcher::Status(expected.as_u64()?),
                    "error" => Matcher::Error(expected.as_str()?),
                    _ => return None,
                };
                Some(Acceptor { state, matcher })
            })
            .collect();
        Some(Waiter {
            name: self.waiters["waiters"].as_object()?.get_key_value(name)?.0,
            operation: w["operation"].as_str()?,
            delay: w["delay"].as_u64()?,
            max_attempts: w["maxAttempts"].as_u64()?,
            acceptors,
        })
    }

    /// How the operation pages its results, if it does.
    pub fn paginator(&'static self, operation: &str) -> Option<Paginator> {
        let p = self.paginators["pagination"].get(operation)?;
        let keys = |v: &'static Value| -> Vec<&'static str> {
            match v {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            }
        };
        Some(Paginator {
            input_token: keys(&p["input_token"]).first().copied()?,
            output_token: keys(&p["output_token"]).first().copied()?,
            limit_key: p["limit_key"].as_str(),
            result_keys: keys(&p["result_key"]),
        })
    }
}

/// botocore's `xform_name(name, "-")`: the aws CLI's name for an operation or
/// member (`DescribeInstanceInformation` → `describe-instance-information`,
/// `OutputS3BucketName` → `output-s3-bucket-name`).
pub fn cli_name(name: &str) -> String {
    static RES: OnceLock<[regex::Regex; 3]> = OnceLock::new();
    // Constant patterns, checked by the tests.
    #[allow(clippy::expect_used)]
    let [special, first_cap, end_cap] = RES.get_or_init(|| {
        [
            regex::Regex::new("[A-Z]{2,}s$").expect("pattern"),
            regex::Regex::new("(.)([A-Z][a-z]+)").expect("pattern"),
            regex::Regex::new("([a-z0-9])([A-Z])").expect("pattern"),
        ]
    });
    if name.contains('-') {
        return name.to_owned();
    }
    let mut name = name.to_owned();
    if let Some(m) = special.find(&name) {
        let matched = m.as_str().to_lowercase();
        name = format!("{}-{matched}", &name[..m.start()]);
    }
    let s1 = first_cap.replace_all(&name, "${1}-${2}");
    end_cap.replace_all(&s1, "${1}-${2}").to_lowercase()
}

/// The first sentence of an HTML documentation string, as plain text.
pub fn first_sentence(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.find(". ") {
        Some(i) => text[..=i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_model_loads() {
        let m = model();
        assert!(m.operation("SendCommand").is_some());
        let members = m.input_members("SendCommand");
        let doc = members.iter().find(|m| m.name == "DocumentName").unwrap();
        assert!(doc.required);
        assert_eq!(m.shape_type("InstanceIdList"), "list");
    }

    #[test]
    fn tethers_operations_join_without_replacing_any_of_ssms() {
        let m = model();
        let tether: Value = serde_json::from_str(TETHER_OPERATIONS).unwrap();
        for part in ["operations", "shapes"] {
            for (name, v) in tether[part].as_object().unwrap() {
                let have = match part {
                    "operations" => m.operation(name),
                    _ => m.shape(name),
                };
                assert_eq!(have, Some(v), "{part} {name} clashes with SSM's");
            }
        }
        assert!(m.is_ssm_operation("SendCommand"));
        assert!(!m.is_ssm_operation("ListInventoryChanges"));
        assert_eq!(m.action_service("SendCommand"), "ssm");
        assert_eq!(m.action_service("CreateUser"), "iam");
        assert_eq!(m.action_service("LookupEvents"), "cloudtrail");
        assert_eq!(m.action_service("CreateOperatorConfig"), "tether");
        assert!(m.ssm_operation_names().any(|n| n == "StartSession"));
        let members = m.input_members("ListInventoryChanges");
        assert!(members.iter().any(|x| x.name == "InstanceId" && x.required));
    }

    #[test]
    fn names_match_botocore_xform_name() {
        // Expected values printed by botocore.xform_name(name, '-').
        for (name, want) in [
            (
                "DescribeInstanceInformation",
                "describe-instance-information",
            ),
            (
                "InstanceInformationFilterList",
                "instance-information-filter-list",
            ),
            ("OutputS3BucketName", "output-s3-bucket-name"),
            ("CloudWatchOutputConfig", "cloud-watch-output-config"),
            ("ListTagsForResource", "list-tags-for-resource"),
            ("DocumentARN", "document-arn"),
            ("SyncSourceARNs", "sync-source-arns"),
            ("MaxConcurrency", "max-concurrency"),
            ("IamRole", "iam-role"),
            ("InstanceIds", "instance-ids"),
        ] {
            assert_eq!(cli_name(name), want, "{name}");
        }
    }

    #[test]
    fn shapes_and_paginators() {
        let m = model();
        assert_eq!(
            m.cli_shape("Targets"),
            Shape::List(Box::new(Shape::Structure(vec![
                ("Key", Shape::String),
                ("Values", Shape::List(Box::new(Shape::String))),
            ])))
        );
        // A recursive shape ends instead of recursing forever.
        let _ = m.cli_shape("InventoryAggregatorList");
        let p = m.paginator("ListCommands").unwrap();
        assert_eq!(p.result_keys, vec!["Commands"]);
        assert_eq!(p.limit_key, Some("MaxResults"));
        assert!(m.paginator("GetCommandInvocation").is_none());
    }

    #[test]
    fn waiters_extras_sensitive_shapes_and_timestamps_come_from_the_model() {
        let m = model();
        assert_eq!(m.waiter_names(), ["CommandExecuted"]);
        let w = m.waiter("CommandExecuted").unwrap();
        assert_eq!(
            (w.operation, w.delay, w.max_attempts),
            ("GetCommandInvocation", 5, 20)
        );
        assert!(w.acceptors.iter().any(|a| a.state == AcceptorState::Retry
            && matches!(a.matcher, Matcher::Error("InvocationDoesNotExist"))));
        let extras: Vec<&str> = m
            .extra_members("GetCommandInvocationResult")
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(
            extras,
            ["ResolvedDocumentVersion", "DocumentHash", "RequestedBy"]
        );
        // Extras never shadow a member of the model.
        for (shape, member) in m.all_extra_members() {
            assert!(m.shape(shape).is_some(), "{shape}");
            assert!(
                !m.members(shape).iter().any(|(n, _)| *n == member),
                "{shape}.{member}"
            );
        }
        assert!(m.is_sensitive("PSParameterValue"));
        assert!(m.is_sensitive("accessKeySecretType"));
        assert!(m.is_sensitive("TetherOperatorToken"));
        assert!(!m.is_sensitive("DocumentName"));
        let ts = m.timestamp_members();
        for name in [
            "RequestedDateTime",
            "ExpiresAfter",
            "LastPingDateTime",
            "RegistrationDate",
        ] {
            assert!(ts.contains(name), "{name}");
        }
        // Strings everywhere, strings in some shapes, or only in requests: not by name.
        for name in [
            "ExecutionStartDateTime",
            "StartDate",
            "EndDate",
            "CaptureTime",
            "ScheduledEndTime",
        ] {
            assert!(!ts.contains(name), "{name}");
        }
    }

    #[test]
    fn documentation_becomes_one_plain_sentence() {
        assert_eq!(
            first_sentence("<p>Runs <i>commands</i> on one or more nodes. More.</p>"),
            "Runs commands on one or more nodes."
        );
    }
}
