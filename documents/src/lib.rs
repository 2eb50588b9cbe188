//! The SSM document language: what a Command document may say and what it
//! means. Pure: no IO, no clock, no environment — the built-in documents are
//! compiled in — so every function here is a plain function of its inputs.
//!
//! Modules and what each owns:
//! - `document`: [`Document`] — parse and validate, hash, platforms,
//!   parameter resolution, the plan of steps for one platform.
//! - `parameter`: [`ParameterDef`] — definitions and the checks on values.
//! - `step`: [`Step`], [`StepAction`], [`PlatformType`] — schema 1.2
//!   `runtimeConfig` and 2.2 `mainSteps`, preconditions, planning.
//! - `template`: `{{ name }}` placeholders, interpolated without re-scanning values.
//! - `node`: JSON/YAML loading into an order-preserving tree with field paths.
//! - `builtin`: the embedded `AWS-RunShellScript` and `AWS-RunPowerShellScript`.
//! - `error`: [`DocumentError`], whose messages name field, rule and value.
//! - `format`: [`DocumentFormat`] (JSON or YAML) and its detection.
//! - `message`: how values are quoted in messages; [`UnknownName`].

mod builtin;
mod document;
mod error;
mod format;
mod message;
mod node;
mod parameter;
mod step;
mod template;

pub use builtin::{builtin, builtin_content, builtin_names};
pub use document::{Document, SUPPORTED_SCHEMA_VERSIONS};
pub use error::DocumentError;
pub use format::DocumentFormat;
pub use message::UnknownName;
pub use parameter::{ParameterDef, ParameterType};
pub use step::{PlatformType, Step, StepAction};

/// `executionTimeout` when a document gives no `timeoutSeconds`.
pub const DEFAULT_EXECUTION_TIMEOUT_SECS: u32 = 3600;
/// Shortest step timeout accepted.
pub const MIN_EXECUTION_TIMEOUT_SECS: u32 = 1;
/// Longest step timeout accepted (48 hours); longer is refused, not clamped.
pub const MAX_EXECUTION_TIMEOUT_SECS: u32 = 172_800;
