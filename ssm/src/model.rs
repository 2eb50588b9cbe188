//! The SSM API model: botocore's `ssm/2014-11-06` service and paginator
//! definitions, embedded in the binary (see `ssm/model/README.md`).
//!
//! This module owns reading the model and answering questions about it:
//! which operations exist, each operation's input members and their shapes,
//! and which operations page their results. The operator CLI builds its
//! verbs and flags from it, so they are exactly those of `aws ssm`. It does
//! no IO beyond decompressing the embedded bytes once, and knows nothing of
//! what an operation means.

use std::io::Read as _;
use std::sync::OnceLock;

use serde_json::Value;

static SERVICE_GZ: &[u8] = include_bytes!("../model/ssm-service-2.json.gz");
static PAGINATORS: &str = include_str!("../model/ssm-paginators-1.json");
static TETHER_OPERATIONS: &str = include_str!("../model/tether-operations.json");

/// How deep a recursive shape (e.g. `InventoryAggregator`) is followed when
/// turned into a flag shape; deeper values are taken as JSON, unchecked.
const MAX_SHAPE_DEPTH: usize = 8;

/// The parsed model.
#[derive(Debug)]
pub struct Model {
    service: Value,
    paginators: Value,
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

/// The embedded model, parsed on first use.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mut text = String::new();
        // The embedded bytes are fixed at build time and checked by the tests,
        // so a failure here is a build defect, not bad input.
        #[allow(clippy::expect_used)]
        flate2::read::GzDecoder::new(SERVICE_GZ)
            .read_to_string(&mut text)
            .expect("embedded SSM model is valid gzip");
        #[allow(clippy::expect_used)]
        let mut service: Value = serde_json::from_str(&text).expect("embedded SSM model is JSON");
        #[allow(clippy::expect_used)]
        let tether: Value =
            serde_json::from_str(TETHER_OPERATIONS).expect("embedded Tether operations are JSON");
        let ssm_operations = service["operations"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        // Tether's own operations join SSM's, shape by shape; none may
        // replace one of SSM's (the tests check there is no clash).
        for part in ["operations", "shapes"] {
            if let (Some(into), Some(from)) =
                (service[part].as_object_mut(), tether[part].as_object())
            {
                for (name, v) in from {
                    into.entry(name.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        #[allow(clippy::expect_used)]
        Model {
            service,
            paginators: serde_json::from_str(PAGINATORS).expect("embedded SSM paginators are JSON"),
            ssm_operations,
        }
    })
}

impl Model {
    /// The operation's definition, if the model has it.
    pub fn operation(&'static self, name: &str) -> Option<&'static Value> {
        self.service["operations"].get(name)
    }

    /// Whether the operation is SSM's own, rather than one of Tether's
    /// (`model/tether-operations.json`).
    pub fn is_ssm_operation(&'static self, name: &str) -> bool {
        self.ssm_operations.contains(name)
    }

    /// A shape's definition by name.
    pub fn shape(&'static self, name: &str) -> Option<&'static Value> {
        self.service["shapes"].get(name)
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
                assert_eq!(
                    m.service[part][name], *v,
                    "{part} {name} clashes with SSM's"
                );
            }
        }
        assert!(m.is_ssm_operation("SendCommand"));
        assert!(!m.is_ssm_operation("ListInventoryChanges"));
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
    fn documentation_becomes_one_plain_sentence() {
        assert_eq!(
            first_sentence("<p>Runs <i>commands</i> on one or more nodes. More.</p>"),
            "Runs commands on one or more nodes."
        );
    }
}
