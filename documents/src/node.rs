//! The document text as a tree: loads JSON or YAML into an order-preserving
//! [`Node`] and offers path-aware accessors, so every later error can name the
//! field it is about (`mainSteps[1].inputs.runCommand`). Owns duplicate-key
//! rejection and syntax errors with line and column; knows nothing of SSM.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::DocumentError;
use crate::format::{DocumentFormat, strip_bom};

/// A JSON/YAML value whose objects keep their keys in document order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// What kind of value this is, for "expected X, found Y" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::List(_) => "a list",
            Node::Map(_) => "an object",
        }
    }

    /// The text of a scalar (string, number or boolean); `None` otherwise.
    pub(crate) fn scalar_text(&self) -> Option<String> {
        match self {
            Node::String(s) => Some(s.clone()),
            Node::Number(n) => Some(n.to_string()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Null | Node::List(_) | Node::Map(_) => None,
        }
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            Node::Null => serde_json::Value::Null,
            Node::Bool(b) => serde_json::Value::Bool(*b),
            Node::Number(n) => serde_json::Value::Number(n.clone()),
            Node::String(s) => serde_json::Value::String(s.clone()),
            Node::List(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Node::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parses `content` in `format` into a tree.
pub(crate) fn load(content: &str, format: DocumentFormat) -> Result<Node, DocumentError> {
    let text = strip_bom(content);
    if text.trim().is_empty() {
        return Err(DocumentError::Empty);
    }
    match format {
        DocumentFormat::Json => serde_json::from_str::<Node>(text).map_err(|e| {
            let (line, column) = (e.line(), e.column());
            syntax_error(format, e.to_string(), line, column)
        }),
        DocumentFormat::Yaml => serde_yaml_ng::from_str::<Node>(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            syntax_error(format, e.to_string(), line, column)
        }),
    }
}

fn syntax_error(
    format: DocumentFormat,
    message: String,
    line: usize,
    column: usize,
) -> DocumentError {
    // Both parsers append the position to their message; we report it apart.
    let suffix = format!(" at line {line} column {column}");
    let message = message
        .strip_suffix(&suffix)
        .map(str::to_owned)
        .unwrap_or(message);
    DocumentError::Syntax {
        format,
        message,
        line,
        column,
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON or YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        serde_json::Number::from_f64(v)
            .map(Node::Number)
            .ok_or_else(|| E::custom(format!("number {v} is not finite")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut seen = BTreeSet::new();
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// An object in the tree together with its path, for precise errors.
#[derive(Clone, Copy)]
pub(crate) struct Obj<'a> {
    pub(crate) path: &'a str,
    entries: &'a [(String, Node)],
}

impl<'a> Obj<'a> {
    /// Views `node` (found at `path`) as an object, or says what it is instead.
    pub(crate) fn new(path: &'a str, node: &'a Node) -> Result<Obj<'a>, DocumentError> {
        match node {
            Node::Map(entries) => Ok(Obj { path, entries }),
            other => Err(wrong_type(path, "an object", other)),
        }
    }

    /// Views the document root as an object; members' paths are their bare keys.
    pub(crate) fn root(node: &'a Node) -> Result<Obj<'a>, DocumentError> {
        match node {
            Node::Map(entries) => Ok(Obj { path: "", entries }),
            other => Err(wrong_type("document", "an object", other)),
        }
    }

    pub(crate) fn entries(&self) -> &'a [(String, Node)] {
        self.entries
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The path of a member of this object.
    pub(crate) fn child(&self, key: &str) -> String {
        join_path(self.path, key)
    }

    /// Rejects members other than `allowed`: a misspelt key would otherwise be
    /// silently ignored and the document would run differently than written.
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), DocumentError> {
        match self
            .entries
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            Some((key, _)) => Err(DocumentError::UnknownField {
                field: self.child(key),
                allowed: allowed.join(", "),
            }),
            None => Ok(()),
        }
    }

    pub(crate) fn required(&self, key: &str) -> Result<&'a Node, DocumentError> {
        self.get(key).ok_or_else(|| DocumentError::MissingField {
            field: self.child(key),
        })
    }

    /// An optional string member; null counts as absent.
    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<String>, DocumentError> {
        match self.get(key) {
            None | Some(Node::Null) => Ok(None),
            Some(Node::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong_type(&self.child(key), "a string", other)),
        }
    }
}

pub(crate) fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn wrong_type(field: &str, expected: &'static str, found: &Node) -> DocumentError {
    DocumentError::WrongType {
        field: field.to_owned(),
        expected,
        found: found.kind(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_in_both_formats() {
        let cases = [
            (r#"{"b": 1, "a": 2, "c": 3}"#, DocumentFormat::Json),
            ("b: 1\na: 2\nc: 3\n", DocumentFormat::Yaml),
        ];
        for (text, format) in cases {
            let Ok(Node::Map(entries)) = load(text, format) else {
                panic!("{text:?} did not load as an object");
            };
            let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["b", "a", "c"], "{format}");
        }
    }

    #[test]
    fn syntax_errors_carry_position() {
        let cases = [
            (
                "{\n  \"a\": 1,\n  \"a\": 2\n}",
                DocumentFormat::Json,
                "duplicate key \"a\"",
                3,
            ),
            (
                "{\n  \"a\": 1,\n}",
                DocumentFormat::Json,
                "trailing comma",
                3,
            ),
            (
                "a: 1\na: 2\n",
                DocumentFormat::Yaml,
                "duplicate key \"a\"",
                1,
            ),
            ("a: [1, 2\n", DocumentFormat::Yaml, "", 2),
        ];
        for (text, format, needle, want_line) in cases {
            match load(text, format) {
                Err(DocumentError::Syntax { message, line, .. }) => {
                    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
                    assert_eq!(line, want_line, "{text:?}: {message}");
                }
                other => panic!("{text:?}: expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn detects_format() {
        let cases = [
            ("{}", DocumentFormat::Json),
            ("\u{feff}  \n{\"a\":1}", DocumentFormat::Json),
            ("---\na: 1", DocumentFormat::Yaml),
            ("schemaVersion: '2.2'", DocumentFormat::Yaml),
        ];
        for (text, want) in cases {
            assert_eq!(DocumentFormat::detect(text), want, "{text:?}");
        }
    }
}
