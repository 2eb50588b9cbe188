//! The errors of the document language. Each message names the field or
//! parameter concerned, the rule broken and the offending value, because these
//! messages go back verbatim to the operator who wrote the document or sent
//! the command.

use crate::format::DocumentFormat;
use crate::message::quote;

/// Why a document was refused, or why parameters or a plan were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The document text is empty.
    #[error("document content is empty")]
    Empty,

    /// The text is not well-formed JSON or YAML.
    #[error("document content is not valid {format}: {message} (line {line}, column {column})")]
    Syntax {
        format: DocumentFormat,
        message: String,
        line: usize,
        column: usize,
    },

    /// A field has the wrong kind of value.
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },

    /// A required field is absent.
    #[error("{field}: required field is missing")]
    MissingField { field: String },

    /// A field the document language does not have (or that Tether does not support).
    #[error("{field}: unknown field (allowed here: {allowed})")]
    UnknownField { field: String, allowed: String },

    /// `schemaVersion` is not one Tether runs.
    #[error("schemaVersion: value {} is not supported (supported: \"1.2\", \"2.2\")", quote(.value))]
    UnsupportedSchemaVersion { value: String },

    /// The step section of the other schema version is present.
    #[error("{field}: not allowed with schemaVersion {schema_version:?} (use {expected})")]
    WrongSchemaSection {
        field: String,
        schema_version: String,
        expected: &'static str,
    },

    /// The document defines no step.
    #[error("{field}: the document defines no steps")]
    NoSteps { field: String },

    /// A step uses an action other than the script runners.
    #[error(
        "{field}: action {} is not supported (supported: aws:runShellScript, aws:runPowerShellScript, aws:softwareInventory)",
        quote(.value)
    )]
    UnknownAction { field: String, value: String },

    /// Two steps share a name.
    #[error("{field}: step name {} is used by more than one step", quote(.name))]
    DuplicateStepName { field: String, name: String },

    /// A step name is empty.
    #[error("{field}: step name must not be empty")]
    EmptyStepName { field: String },

    /// A step name holds a control character (NUL, a line break, an escape,
    /// a bidirectional override…): it would be cut short by C code, split a
    /// log line, or drive the terminal of whoever lists the output.
    #[error("{field}: step name {} contains {what} (U+{code:04X}); use printable characters only", quote(.name))]
    StepNameControl {
        field: String,
        name: String,
        what: &'static str,
        code: u32,
    },

    /// A precondition Tether cannot evaluate.
    #[error("{field}: {reason}")]
    InvalidPrecondition { field: String, reason: String },

    /// A parameter name outside `[A-Za-z0-9_]+` (placeholders could not name it).
    #[error("parameters: name {} is invalid: use letters, digits and underscores only", quote(.name))]
    InvalidParameterName { name: String },

    /// A parameter `type` that SSM does not have.
    #[error(
        "parameter {name:?}: type {} is unknown (known: String, StringList, Integer, Boolean, StringMap, MapList)",
        quote(.value)
    )]
    UnknownParameterType { name: String, value: String },

    /// A parameter's `allowedPattern` is not a regular expression we can run.
    #[error("parameter {name:?}: allowedPattern {} is not a valid regular expression: {reason}", quote(.pattern))]
    InvalidPattern {
        name: String,
        pattern: String,
        reason: String,
    },

    /// A parameter definition contradicts itself (e.g. minItems above maxItems, minItems on a String).
    #[error("parameter {name:?}: {field}: {reason}")]
    InvalidParameterDefinition {
        name: String,
        field: &'static str,
        reason: String,
    },

    /// A parameter's `default` breaks the parameter's own rules.
    #[error("parameter {name:?}: default {reason}")]
    InvalidDefault { name: String, reason: String },

    /// A `{{ name }}` placeholder names no defined parameter.
    #[error("{field}: placeholder {{{{ {name} }}}} names a parameter the document does not define")]
    UndefinedParameter { field: String, name: String },

    /// A literal `timeoutSeconds` in the document is out of range or not a number.
    #[error("{field}: value {} {rule}", quote(.value))]
    InvalidTimeout {
        field: String,
        value: String,
        rule: String,
    },

    /// A parameter was given that the document does not define.
    #[error("parameter {} is not defined by document {document:?}", quote(.name))]
    UnknownParameter { document: String, name: String },

    /// A parameter without a default was not given.
    #[error("parameter {name:?} is required (it has no default) but was not given")]
    MissingParameter { name: String },

    /// A given (or default) value breaks the parameter's rules.
    #[error("parameter {name:?}: value {} {rule}", quote(.value))]
    InvalidParameterValue {
        name: String,
        value: String,
        rule: String,
    },

    /// The number of values breaks the parameter's rules.
    #[error("parameter {name:?}: {rule}")]
    InvalidParameterCount { name: String, rule: String },

    /// `plan` was handed parameters that were not resolved first.
    #[error("parameter {name:?} has no value: resolve parameters before planning")]
    UnresolvedParameter { name: String },

    /// A step's interpolated `timeoutSeconds` is out of range or not a number.
    #[error("step {step:?}: timeoutSeconds: value {} {rule}", quote(.value))]
    InvalidStepTimeout {
        step: String,
        value: String,
        rule: String,
    },
}
