//! Document parameters: reads their definitions (`type`, `default`,
//! `allowedValues`, `allowedPattern`, `minItems`/`maxItems`,
//! `minChars`/`maxChars`) and checks values in SSM's wire form — every
//! parameter a list of strings — against them. The same checks run on a
//! definition's own default at parse time and on what a caller sends.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use regex_lite::Regex;

use crate::error::DocumentError;
use crate::message::{UnknownName, quote};
use crate::node::{Node, Obj, wrong_type};
use crate::template::is_name_char;

/// The SSM parameter types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParameterType {
    String,
    StringList,
    Integer,
    Boolean,
    StringMap,
    MapList,
}

impl ParameterType {
    pub const ALL: [ParameterType; 6] = [
        ParameterType::String,
        ParameterType::StringList,
        ParameterType::Integer,
        ParameterType::Boolean,
        ParameterType::StringMap,
        ParameterType::MapList,
    ];

    /// The SSM name, as written in a document's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "String",
            ParameterType::StringList => "StringList",
            ParameterType::Integer => "Integer",
            ParameterType::Boolean => "Boolean",
            ParameterType::StringMap => "StringMap",
            ParameterType::MapList => "MapList",
        }
    }

    /// Whether the parameter takes any number of values (else exactly one).
    pub fn is_list(self) -> bool {
        matches!(self, ParameterType::StringList | ParameterType::MapList)
    }
}

impl fmt::Display for ParameterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ParameterType {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ParameterType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                UnknownName::new(
                    "parameter type",
                    s,
                    "String, StringList, Integer, Boolean, StringMap, MapList",
                )
            })
    }
}

/// One entry of a document's `parameters`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParameterDef {
    pub name: String,
    pub kind: ParameterType,
    pub description: String,
    /// The `default` as written in the document; `None` makes the parameter required.
    pub default: Option<serde_json::Value>,
    pub allowed_values: Vec<String>,
    /// Matched against the whole value (as SSM does), not a substring.
    pub allowed_pattern: Option<String>,
    pub display_type: Option<String>,
    pub min_items: Option<usize>,
    pub max_items: Option<usize>,
    pub min_chars: Option<usize>,
    pub max_chars: Option<usize>,
}

/// A broken rule, before we know whether a default or a sent value broke it.
enum Violation {
    Count(String),
    Value { value: String, rule: String },
}

impl Violation {
    fn value(value: &str, rule: String) -> Violation {
        Violation::Value {
            value: value.to_owned(),
            rule,
        }
    }

    fn into_sent_error(self, name: &str) -> DocumentError {
        match self {
            Violation::Count(rule) => DocumentError::InvalidParameterCount {
                name: name.to_owned(),
                rule,
            },
            Violation::Value { value, rule } => DocumentError::InvalidParameterValue {
                name: name.to_owned(),
                value,
                rule,
            },
        }
    }

    fn into_default_error(self, name: &str) -> DocumentError {
        let reason = match self {
            Violation::Count(rule) => rule,
            Violation::Value { value, rule } => format!("value {} {rule}", quote(&value)),
        };
        DocumentError::InvalidDefault {
            name: name.to_owned(),
            reason,
        }
    }
}

impl ParameterDef {
    /// The default in SSM's wire form (a list of strings), or `None` when the
    /// parameter has no default or the default cannot be expressed for its type.
    pub fn default_values(&self) -> Option<Vec<String>> {
        self.default
            .as_ref()
            .and_then(|d| default_to_values(self.kind, d).ok())
    }

    /// Checks `values` against this definition.
    pub fn check(&self, values: &[String]) -> Result<(), DocumentError> {
        self.violation(values, false)
            .map_err(|v| v.into_sent_error(&self.name))
    }

    /// Like [`ParameterDef::check`], plus the execution-timeout range, checked
    /// first, for a parameter that feeds a step's `timeoutSeconds`: "is out of
    /// range 1..172800" says more than a failed `allowedPattern`.
    pub(crate) fn check_as_timeout(&self, values: &[String]) -> Result<(), DocumentError> {
        self.violation(values, true)
            .map_err(|v| v.into_sent_error(&self.name))
    }

    fn violation(&self, values: &[String], as_timeout: bool) -> Result<(), Violation> {
        let count = values.len();
        if self.kind.is_list() {
            if let Some(min) = self.min_items.filter(|&min| count < min) {
                return Err(Violation::Count(format!(
                    "{} given, minItems is {min}",
                    plural(count, "value")
                )));
            }
            if let Some(max) = self.max_items.filter(|&max| count > max) {
                return Err(Violation::Count(format!(
                    "{} given, maxItems is {max}",
                    plural(count, "value")
                )));
            }
        } else if count != 1 {
            return Err(Violation::Count(format!(
                "type {} takes exactly one value, {} given",
                self.kind,
                plural(count, "value")
            )));
        }
        let pattern = self.compiled_pattern().map_err(|reason| {
            Violation::Count(format!("allowedPattern cannot be used: {reason}"))
        })?;
        for value in values {
            if as_timeout {
                check_timeout(value).map_err(|rule| Violation::value(value, rule))?;
            }
            self.check_one(value, pattern.as_ref())?;
        }
        Ok(())
    }

    fn check_one(&self, value: &str, pattern: Option<&Regex>) -> Result<(), Violation> {
        match self.kind {
            ParameterType::Integer if !is_integer(value) => {
                return Err(Violation::value(value, "is not an integer".to_owned()));
            }
            ParameterType::Boolean if value != "true" && value != "false" => {
                return Err(Violation::value(
                    value,
                    "is not a boolean (true or false)".to_owned(),
                ));
            }
            ParameterType::StringMap | ParameterType::MapList if !is_json_object(value) => {
                return Err(Violation::value(
                    value,
                    "is not a JSON object (a map of strings)".to_owned(),
                ));
            }
            _ => {}
        }
        if !self.allowed_values.is_empty() && !self.allowed_values.iter().any(|a| a == value) {
            return Err(Violation::value(
                value,
                format!(
                    "is not one of the allowedValues [{}]",
                    self.allowed_values
                        .iter()
                        .map(|a| quote(a))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let (Some(re), Some(source)) = (pattern, &self.allowed_pattern)
            && !re.is_match(value)
        {
            return Err(Violation::value(
                value,
                format!("does not match allowedPattern {}", quote(source)),
            ));
        }
        let chars = value.chars().count();
        if let Some(min) = self.min_chars.filter(|&min| chars < min) {
            return Err(Violation::value(
                value,
                format!("has {}, minChars is {min}", plural(chars, "character")),
            ));
        }
        if let Some(max) = self.max_chars.filter(|&max| chars > max) {
            return Err(Violation::value(
                value,
                format!("has {}, maxChars is {max}", plural(chars, "character")),
            ));
        }
        Ok(())
    }

    fn compiled_pattern(&self) -> Result<Option<Regex>, String> {
        self.allowed_pattern
            .as_deref()
            .map(compile_pattern)
            .transpose()
    }
}

/// SSM matches `allowedPattern` against the whole value: `172801` must not
/// pass `([1-9][0-9]{0,4})|...` by its first five digits.
fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| e.to_string())
}

/// Checks an execution timeout in seconds; the error is the rule broken.
pub(crate) fn check_timeout(value: &str) -> Result<u32, String> {
    let range = format!(
        "{}..{}",
        crate::MIN_EXECUTION_TIMEOUT_SECS,
        crate::MAX_EXECUTION_TIMEOUT_SECS
    );
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("is not a whole number of seconds in {range}"));
    }
    match value.parse::<u32>() {
        Ok(secs)
            if (crate::MIN_EXECUTION_TIMEOUT_SECS..=crate::MAX_EXECUTION_TIMEOUT_SECS)
                .contains(&secs) =>
        {
            Ok(secs)
        }
        _ => Err(format!("is out of range {range}")),
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn is_integer(value: &str) -> bool {
    value.parse::<i64>().is_ok() && !value.starts_with('+')
}

fn is_json_object(value: &str) -> bool {
    matches!(
        serde_json::from_str::<serde_json::Value>(value),
        Ok(serde_json::Value::Object(_))
    )
}

/// A default as written converted to the wire form; the error is the rule broken.
fn default_to_values(
    kind: ParameterType,
    default: &serde_json::Value,
) -> Result<Vec<String>, String> {
    use serde_json::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    };
    let found = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    match kind {
        ParameterType::String | ParameterType::Integer | ParameterType::Boolean => {
            scalar(default).map(|s| vec![s]).ok_or_else(|| {
                format!(
                    "must be a single value for type {kind}, found {}",
                    found(default)
                )
            })
        }
        ParameterType::StringList => match default {
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    scalar(item).ok_or_else(|| {
                        format!(
                            "items must be strings for type StringList, found {}",
                            found(item)
                        )
                    })
                })
                .collect(),
            other => scalar(other).map(|s| vec![s]).ok_or_else(|| {
                format!(
                    "must be a list of strings for type StringList, found {}",
                    found(other)
                )
            }),
        },
        ParameterType::StringMap => match default {
            Value::Object(_) => Ok(vec![default.to_string()]),
            Value::String(s) => Ok(vec![s.clone()]),
            other => Err(format!(
                "must be an object for type StringMap, found {}",
                found(other)
            )),
        },
        ParameterType::MapList => match default {
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::Object(_) => Ok(item.to_string()),
                    Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "items must be objects for type MapList, found {}",
                        found(other)
                    )),
                })
                .collect(),
            other => Err(format!(
                "must be a list of objects for type MapList, found {}",
                found(other)
            )),
        },
    }
}

/// Reads the `parameters` object of a document, in document order.
pub(crate) fn parse_definitions(node: &Node) -> Result<Vec<ParameterDef>, DocumentError> {
    let params = Obj::new("parameters", node)?;
    params
        .entries()
        .iter()
        .map(|(name, def)| parse_definition(name, def))
        .collect()
}

const DEFINITION_FIELDS: &[&str] = &[
    "type",
    "description",
    "default",
    "allowedValues",
    "allowedPattern",
    "displayType",
    "minItems",
    "maxItems",
    "minChars",
    "maxChars",
];

fn parse_definition(name: &str, node: &Node) -> Result<ParameterDef, DocumentError> {
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err(DocumentError::InvalidParameterName {
            name: name.to_owned(),
        });
    }
    let path = format!("parameters.{name}");
    let obj = Obj::new(&path, node)?;
    obj.only(DEFINITION_FIELDS)?;

    let kind = match obj.required("type")? {
        Node::String(s) => {
            s.parse::<ParameterType>()
                .map_err(|_| DocumentError::UnknownParameterType {
                    name: name.to_owned(),
                    value: s.clone(),
                })?
        }
        other => return Err(wrong_type(&obj.child("type"), "a string", other)),
    };
    let allowed_values = match obj.get("allowedValues") {
        None | Some(Node::Null) => Vec::new(),
        Some(Node::List(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.scalar_text().ok_or_else(|| {
                    wrong_type(
                        &format!("{}[{i}]", obj.child("allowedValues")),
                        "a string",
                        item,
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(wrong_type(&obj.child("allowedValues"), "a list", other)),
    };
    let allowed_pattern = obj.opt_string("allowedPattern")?;
    if let Some(pattern) = &allowed_pattern {
        compile_pattern(pattern).map_err(|reason| DocumentError::InvalidPattern {
            name: name.to_owned(),
            pattern: pattern.clone(),
            reason,
        })?;
    }
    let def = ParameterDef {
        name: name.to_owned(),
        kind,
        description: obj.opt_string("description")?.unwrap_or_default(),
        default: match obj.get("default") {
            None | Some(Node::Null) => None,
            Some(node) => Some(node.to_json()),
        },
        allowed_values,
        allowed_pattern,
        display_type: obj.opt_string("displayType")?,
        min_items: count_field(&obj, "minItems")?,
        max_items: count_field(&obj, "maxItems")?,
        min_chars: count_field(&obj, "minChars")?,
        max_chars: count_field(&obj, "maxChars")?,
    };
    check_limits(&def)?;
    if let Some(default) = &def.default {
        let values =
            default_to_values(kind, default).map_err(|reason| DocumentError::InvalidDefault {
                name: name.to_owned(),
                reason,
            })?;
        def.violation(&values, false)
            .map_err(|v| v.into_default_error(name))?;
    }
    Ok(def)
}

fn count_field(obj: &Obj<'_>, key: &str) -> Result<Option<usize>, DocumentError> {
    match obj.get(key) {
        None | Some(Node::Null) => Ok(None),
        Some(Node::Number(n)) => match n.as_u64().and_then(|v| usize::try_from(v).ok()) {
            Some(v) => Ok(Some(v)),
            None => Err(DocumentError::WrongType {
                field: obj.child(key),
                expected: "a non-negative integer",
                found: "a number outside that range",
            }),
        },
        Some(other) => Err(wrong_type(&obj.child(key), "a non-negative integer", other)),
    }
}

/// Limits that cannot apply to the type, or that no value could satisfy.
fn check_limits(def: &ParameterDef) -> Result<(), DocumentError> {
    let invalid = |field: &'static str, reason: String| DocumentError::InvalidParameterDefinition {
        name: def.name.clone(),
        field,
        reason,
    };
    if !def.kind.is_list() {
        for (field, set) in [("minItems", def.min_items), ("maxItems", def.max_items)] {
            if set.is_some() {
                return Err(invalid(
                    field,
                    format!("applies only to StringList and MapList, not {}", def.kind),
                ));
            }
        }
    }
    if !matches!(def.kind, ParameterType::String | ParameterType::StringList) {
        for (field, set) in [("minChars", def.min_chars), ("maxChars", def.max_chars)] {
            if set.is_some() {
                return Err(invalid(
                    field,
                    format!("applies only to String and StringList, not {}", def.kind),
                ));
            }
        }
    }
    for (field, min, max) in [
        ("minItems", def.min_items, def.max_items),
        ("minChars", def.min_chars, def.max_chars),
    ] {
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            return Err(invalid(
                field,
                format!("{min} is greater than the maximum {max}"),
            ));
        }
    }
    Ok(())
}

/// Applies defaults and checks `given` against `defs`; see [`crate::Document::resolve_parameters`].
pub(crate) fn resolve(
    document: &str,
    defs: &[ParameterDef],
    timeout_params: &[String],
    given: &BTreeMap<String, Vec<String>>,
) -> Result<BTreeMap<String, Vec<String>>, DocumentError> {
    if let Some(unknown) = given.keys().find(|k| !defs.iter().any(|d| &d.name == *k)) {
        return Err(DocumentError::UnknownParameter {
            document: document.to_owned(),
            name: unknown.clone(),
        });
    }
    let mut resolved = BTreeMap::new();
    for def in defs {
        let values = match given.get(&def.name) {
            Some(values) => values.clone(),
            None => match &def.default {
                Some(default) => default_to_values(def.kind, default).map_err(|reason| {
                    DocumentError::InvalidDefault {
                        name: def.name.clone(),
                        reason,
                    }
                })?,
                None => {
                    return Err(DocumentError::MissingParameter {
                        name: def.name.clone(),
                    });
                }
            },
        };
        if timeout_params.contains(&def.name) {
            def.check_as_timeout(&values)?;
        } else {
            def.check(&values)?;
        }
        resolved.insert(def.name.clone(), values);
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(json: &str) -> Result<ParameterDef, DocumentError> {
        let node: Node = serde_json::from_str(json).expect("test JSON is valid");
        parse_definition("p", &node)
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn values_are_checked_against_rules() {
        // (definition, values, expected error substring or None for ok)
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            (r#"{"type":"String"}"#, &["x"], None),
            (
                r#"{"type":"String"}"#,
                &[],
                Some("type String takes exactly one value, 0 values given"),
            ),
            (r#"{"type":"String"}"#, &["a", "b"], Some("2 values given")),
            (
                r#"{"type":"String","allowedValues":["a","b"]}"#,
                &["c"],
                Some(r#"value "c" is not one of the allowedValues ["a", "b"]"#),
            ),
            (
                r#"{"type":"String","allowedPattern":"[a-z]+"}"#,
                &["abc"],
                None,
            ),
            (
                r#"{"type":"String","allowedPattern":"[a-z]+"}"#,
                &["abc1"],
                Some(r#"value "abc1" does not match allowedPattern "[a-z]+""#),
            ),
            (
                r#"{"type":"String","minChars":2,"maxChars":3}"#,
                &["a"],
                Some("has 1 character, minChars is 2"),
            ),
            (
                r#"{"type":"String","minChars":2,"maxChars":3}"#,
                &["abcd"],
                Some("has 4 characters, maxChars is 3"),
            ),
            (r#"{"type":"String","maxChars":2}"#, &["éé"], None),
            (
                r#"{"type":"StringList","minItems":1}"#,
                &[],
                Some("0 values given, minItems is 1"),
            ),
            (
                r#"{"type":"StringList","maxItems":1}"#,
                &["a", "b"],
                Some("2 values given, maxItems is 1"),
            ),
            (
                r#"{"type":"StringList","allowedPattern":"\\d+"}"#,
                &["1", "x"],
                Some(r#"value "x" does not match"#),
            ),
            // SSM's patterns are Java's: `\d` is ASCII digits only, not "٣".
            (
                r#"{"type":"String","allowedPattern":"\\d+"}"#,
                &["\u{0663}"],
                Some("does not match"),
            ),
            (
                r#"{"type":"String","allowedPattern":"(?i)[a-z]+"}"#,
                &["AbC"],
                None,
            ),
            (r#"{"type":"Integer"}"#, &["-42"], None),
            (
                r#"{"type":"Integer"}"#,
                &["4.2"],
                Some(r#"value "4.2" is not an integer"#),
            ),
            (r#"{"type":"Integer"}"#, &["+4"], Some("is not an integer")),
            (r#"{"type":"Boolean"}"#, &["true"], None),
            (r#"{"type":"Boolean"}"#, &["yes"], Some("is not a boolean")),
            (r#"{"type":"StringMap"}"#, &[r#"{"k":"v"}"#], None),
            (
                r#"{"type":"StringMap"}"#,
                &["[1]"],
                Some("is not a JSON object"),
            ),
            (
                r#"{"type":"MapList"}"#,
                &[r#"{"a":"1"}"#, r#"{"b":"2"}"#],
                None,
            ),
            (
                r#"{"type":"MapList"}"#,
                &["x"],
                Some("is not a JSON object"),
            ),
        ];
        for (json, values, want) in cases {
            let d = def(json).expect("definition parses");
            let got = d.check(&strings(values));
            match (want, got) {
                (None, Ok(())) => {}
                (Some(needle), Err(e)) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with("parameter \"p\": "), "{msg}");
                    assert!(
                        msg.contains(needle),
                        "{json} {values:?}: {msg:?} lacks {needle:?}"
                    );
                }
                (want, got) => panic!("{json} {values:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn definitions_are_checked() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"type":"Strin"}"#,
                r#"parameter "p": type "Strin" is unknown"#,
            ),
            (
                r#"{"description":"x"}"#,
                "parameters.p.type: required field is missing",
            ),
            (
                r#"{"type":"String","required":true}"#,
                "parameters.p.required: unknown field",
            ),
            (
                r#"{"type":"String","allowedPattern":"("}"#,
                r#"parameter "p": allowedPattern "(" is not a valid regular expression"#,
            ),
            (
                r#"{"type":"String","allowedPattern":"\\p{L}+"}"#,
                r#"parameter "p": allowedPattern "\\p{L}+" is not a valid regular expression"#,
            ),
            (
                r#"{"type":"String","minItems":1}"#,
                r#"parameter "p": minItems: applies only to StringList and MapList, not String"#,
            ),
            (
                r#"{"type":"Integer","maxChars":1}"#,
                "maxChars: applies only to String and StringList",
            ),
            (
                r#"{"type":"StringList","minItems":3,"maxItems":2}"#,
                "minItems: 3 is greater than the maximum 2",
            ),
            (
                r#"{"type":"StringList","minItems":-1}"#,
                "parameters.p.minItems: expected a non-negative integer",
            ),
            (
                r#"{"type":"String","default":"x","allowedValues":["a"]}"#,
                r#"parameter "p": default value "x" is not one of the allowedValues ["a"]"#,
            ),
            (
                r#"{"type":"String","default":"0","allowedPattern":"[1-9]"}"#,
                r#"parameter "p": default value "0" does not match allowedPattern"#,
            ),
            (
                r#"{"type":"StringList","default":[],"minItems":1}"#,
                r#"parameter "p": default 0 values given, minItems is 1"#,
            ),
            (
                r#"{"type":"String","default":["a"]}"#,
                "default must be a single value for type String, found a list",
            ),
            (
                r#"{"type":"Integer","default":"x"}"#,
                r#"default value "x" is not an integer"#,
            ),
            (r#"{"type":"Boolean","default":1}"#, "is not a boolean"),
            (
                r#"{"type":"StringMap","default":[]}"#,
                "default must be an object for type StringMap, found a list",
            ),
            (
                r#"{"type":"MapList","default":[1]}"#,
                "default items must be objects for type MapList, found a number",
            ),
            (
                r#"{"type":"String","allowedValues":[{}]}"#,
                "parameters.p.allowedValues[0]: expected a string, found an object",
            ),
        ];
        for (json, needle) in cases {
            match def(json) {
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(needle), "{json}: {msg:?} lacks {needle:?}");
                }
                Ok(d) => panic!("{json}: accepted as {d:?}"),
            }
        }
    }

    #[test]
    fn defaults_convert_to_wire_form() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            (r#"{"type":"String","default":""}"#, Some(&[""])),
            (r#"{"type":"String","default":3600}"#, Some(&["3600"])),
            (r#"{"type":"Integer","default":5}"#, Some(&["5"])),
            (r#"{"type":"Boolean","default":true}"#, Some(&["true"])),
            (
                r#"{"type":"StringList","default":["a","b"]}"#,
                Some(&["a", "b"]),
            ),
            (r#"{"type":"StringList","default":[]}"#, Some(&[])),
            (
                r#"{"type":"StringMap","default":{"k":"v"}}"#,
                Some(&[r#"{"k":"v"}"#]),
            ),
            (
                r#"{"type":"MapList","default":[{"k":"v"}]}"#,
                Some(&[r#"{"k":"v"}"#]),
            ),
            (r#"{"type":"String","default":null}"#, None),
            (r#"{"type":"String"}"#, None),
        ];
        for (json, want) in cases {
            let d = def(json).expect("definition parses");
            let want = want.map(strings);
            assert_eq!(d.default_values(), want, "{json}");
        }
    }

    #[test]
    fn timeouts_are_range_checked() {
        let cases = [
            ("1", Ok(1)),
            ("3600", Ok(3600)),
            ("172800", Ok(172_800)),
            ("0", Err("is out of range 1..172800")),
            ("172801", Err("is out of range 1..172800")),
            ("99999999999", Err("is out of range 1..172800")),
            ("abc", Err("is not a whole number of seconds in 1..172800")),
            ("", Err("is not a whole number of seconds in 1..172800")),
            ("+5", Err("is not a whole number of seconds in 1..172800")),
            (" 5", Err("is not a whole number of seconds in 1..172800")),
        ];
        for (value, want) in cases {
            assert_eq!(
                check_timeout(value),
                want.map_err(str::to_owned),
                "{value:?}"
            );
        }
    }
}
