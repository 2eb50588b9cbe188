//! The SSM API as Tether speaks it, on every transport: botocore's model of
//! the service (embedded), validation of a request against it, the errors,
//! the invocation and command statuses, and the contract's limits.
//!
//! - [`model`]: botocore's `ssm/2014-11-06` model and paginators, embedded.
//! - [`validate`]: a request checked against the model, as AWS's front end does.
//! - [`error`]: [`ApiError`], an SSM error type and a message.
//! - [`state`]: the invocation and command state machines.
//! - [`target`], [`rate`], [`ids`]: the domain's values — what a target
//!   selects, rate control, the shapes of IDs — parsed once, one rule each.
//! - [`redact`]: secrets out of a request before it is recorded or shown.
//! - [`limits`]: every limit and default of the outside contract.
//! - [`input`]: the typed input of every operation, generated from the model
//!   by [`codegen`]; [`request`] turns a transport's bytes into one.
//!
//! Pure: no IO (the model is embedded, decompressed at build time), no async runtime.
//! The coordinator, the store and the CLI all build on it; it builds on none
//! of them.

#[cfg(test)]
mod codegen;
pub mod error;
pub mod ids;
#[rustfmt::skip]
pub mod input;
pub mod limits;
pub mod model;
pub mod rate;
pub mod redact;
pub mod request;
pub mod state;
pub mod target;
#[rustfmt::skip]
pub mod timestamps;
pub mod validate;

pub use error::ApiError;
pub use input::{Operation, Request};
pub use rate::Rate;
pub use request::Timestamp;
pub use target::Target;
