//! The [`Document`]: parses and validates a whole Command document (schema
//! 1.2 or 2.2, JSON or YAML) so that a document accepted here can always be
//! planned, and offers the three things the rest of Tether asks of one —
//! its identity (name, hash, platforms), parameter resolution, and the plan
//! of steps for one platform.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::error::DocumentError;
use crate::format::DocumentFormat;
use crate::node::{self, Node, Obj};
use crate::parameter::{self, ParameterDef};
use crate::step::{self, PlatformType, Step, StepDef};

/// The schema versions Tether runs.
pub const SUPPORTED_SCHEMA_VERSIONS: [&str; 2] = ["1.2", "2.2"];

/// A parsed and validated Command document.
#[derive(Clone, Debug)]
pub struct Document {
    pub name: String,
    /// `1.2` or `2.2`.
    pub schema_version: String,
    pub description: String,
    /// In document order.
    pub parameters: Vec<ParameterDef>,
    /// The document text exactly as given.
    pub content: String,
    pub format: DocumentFormat,
    steps: Vec<StepDef>,
    /// Parameters that are a step's whole `timeoutSeconds`, range-checked on resolve.
    timeout_params: Vec<String>,
}

impl Document {
    /// Parses and validates a Command document, JSON or YAML (told apart by
    /// [`DocumentFormat::detect`]).
    pub fn parse(name: &str, content: &str) -> Result<Document, DocumentError> {
        Document::parse_as(name, content, DocumentFormat::detect(content))
    }

    /// Parses and validates a Command document in the given format.
    pub fn parse_as(
        name: &str,
        content: &str,
        format: DocumentFormat,
    ) -> Result<Document, DocumentError> {
        let root = node::load(content, format)?;
        let doc = Obj::root(&root)?;
        doc.only(&[
            "schemaVersion",
            "description",
            "parameters",
            "runtimeConfig",
            "mainSteps",
        ])?;

        // An unquoted YAML `schemaVersion: 2.2` is a number; take its text.
        let schema_version = match doc.required("schemaVersion")? {
            Node::String(s) => s.clone(),
            Node::Number(n) => n.to_string(),
            other => return Err(node::wrong_type("schemaVersion", "a string", other)),
        };
        let (section, other_section) = match schema_version.as_str() {
            "1.2" => ("runtimeConfig", "mainSteps"),
            // 2.0: the schema of AWS-GatherSoftwareInventory.
            "2.0" | "2.2" => ("mainSteps", "runtimeConfig"),
            _ => {
                return Err(DocumentError::UnsupportedSchemaVersion {
                    value: schema_version,
                });
            }
        };
        if doc.get(other_section).is_some() {
            return Err(DocumentError::WrongSchemaSection {
                field: other_section.to_owned(),
                schema_version,
                expected: section,
            });
        }

        let parameters = match doc.get("parameters") {
            None | Some(Node::Null) => Vec::new(),
            Some(node) => parameter::parse_definitions(node)?,
        };
        let section_node = doc.required(section)?;
        let steps = if section == "runtimeConfig" {
            step::parse_runtime_config(section_node)?
        } else {
            step::parse_main_steps(section_node)?
        };
        // 2.0 is accepted for inventory policy documents only.
        if schema_version == "2.0"
            && steps
                .iter()
                .any(|s| s.action != step::StepAction::SoftwareInventory)
        {
            return Err(DocumentError::UnsupportedSchemaVersion {
                value: schema_version,
            });
        }
        if steps.is_empty() {
            return Err(DocumentError::NoSteps {
                field: section.to_owned(),
            });
        }
        check_steps(&steps, &parameters)?;

        let timeout_params = steps
            .iter()
            .filter_map(|s| s.timeout_seconds.as_ref()?.whole_param())
            .filter(|name| {
                parameters
                    .iter()
                    .any(|d| d.name == *name && !d.kind.is_list())
            })
            .map(str::to_owned)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();

        Ok(Document {
            name: name.to_owned(),
            schema_version,
            description: doc.opt_string("description")?.unwrap_or_default(),
            parameters,
            content: content.to_owned(),
            format,
            steps,
            timeout_params,
        })
    }

    /// The document text in `format`, as `GetDocument --document-format`
    /// returns it: the stored text when it is already in that format, else
    /// the same tree written in the other one (member order kept).
    pub fn content_as(&self, format: DocumentFormat) -> String {
        if format == self.format {
            return self.content.clone();
        }
        // The content parsed when the document was accepted, so it loads
        // again — without the byte-order mark the loader skipped too.
        let content = crate::format::strip_bom(&self.content);
        let tree: serde_json::Value = match self.format {
            DocumentFormat::Json => serde_json::from_str(content),
            DocumentFormat::Yaml => serde_yaml_ng::from_str(content)
                .map_err(|e| <serde_json::Error as serde::de::Error>::custom(e.to_string())),
        }
        .unwrap_or(serde_json::Value::Null);
        match format {
            DocumentFormat::Json => serde_json::to_string_pretty(&tree).unwrap_or_default(),
            DocumentFormat::Yaml => serde_yaml_ng::to_string(&tree).unwrap_or_default(),
        }
    }

    /// Lowercase hex SHA-256 of `content` (SSM's `Hash`, `HashType` Sha256).
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.content.as_bytes()))
    }

    /// Platforms at least one step runs on, in SSM's order (Windows, Linux, MacOS).
    pub fn platform_types(&self) -> Vec<PlatformType> {
        let on: Vec<PlatformType> = self.steps.iter().flat_map(StepDef::platforms).collect();
        PlatformType::ALL
            .into_iter()
            .filter(|p| on.contains(p))
            .collect()
    }

    /// The definition of parameter `name`.
    pub fn parameter(&self, name: &str) -> Option<&ParameterDef> {
        self.parameters.iter().find(|d| d.name == name)
    }

    /// Whether a step of it does `action`.
    pub fn has_action(&self, action: crate::StepAction) -> bool {
        self.steps.iter().any(|s| s.action == action)
    }

    /// Step names in document order.
    pub fn step_names(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.name.as_str()).collect()
    }

    /// Applies defaults and validates `given` (SSM form: name → values).
    ///
    /// Unknown names and missing required parameters are refused; each value
    /// is checked against its definition (type, `allowedValues`,
    /// `allowedPattern` as a whole-value match, `minItems`/`maxItems`,
    /// `minChars`/`maxChars`), and a parameter feeding `timeoutSeconds` must
    /// also be in 1..172800. The result holds every defined parameter.
    pub fn resolve_parameters(
        &self,
        given: &BTreeMap<String, Vec<String>>,
    ) -> Result<BTreeMap<String, Vec<String>>, DocumentError> {
        parameter::resolve(&self.name, &self.parameters, &self.timeout_params, given)
    }

    /// The steps to run on `platform`, with `params` from
    /// [`Document::resolve_parameters`].
    ///
    /// Placeholders are replaced only where the document wrote them, and a
    /// value is inserted as is, never interpolated again. A `runCommand` entry
    /// that is exactly `{{ name }}` becomes all of that parameter's values,
    /// one line each; inside a longer string a list parameter is written as a
    /// JSON array. A step whose precondition names another platform, or whose
    /// action does not run on `platform`, comes back with `skipped` set.
    pub fn plan(
        &self,
        params: &BTreeMap<String, Vec<String>>,
        platform: PlatformType,
    ) -> Result<Vec<Step>, DocumentError> {
        self.steps
            .iter()
            .map(|s| s.plan(&self.parameters, params, platform))
            .collect()
    }
}

/// Step names are unique and every placeholder names a defined parameter.
fn check_steps(steps: &[StepDef], parameters: &[ParameterDef]) -> Result<(), DocumentError> {
    let mut names = BTreeSet::new();
    for step in steps {
        if !names.insert(step.name.as_str()) {
            return Err(DocumentError::DuplicateStepName {
                field: step.path.clone(),
                name: step.name.clone(),
            });
        }
        for (field, template) in step.templates() {
            if let Some(name) = template
                .params()
                .find(|p| !parameters.iter().any(|d| d.name == *p))
            {
                return Err(DocumentError::UndefinedParameter {
                    field,
                    name: name.to_owned(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
