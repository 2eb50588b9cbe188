//! `tether`: the coordinator server and the operator CLI, as one library with two
//! thin entry points in `main.rs`.
//!
//! - [`pki`]: CA, server and client certificates, the command-signing key.
//! - [`parameter_keys`]: the key-encryption keys of SecureString parameters; envelope encryption.
//! - [`core`]: registration, long-poll dispatch, result intake (domain values in and out).
//! - [`signing`]: the bytes that get signed: envelopes, cancels, association sets.
//! - [`associations`]: signed association sets for polling agents, inventory intake.
//! - [`actions`]: the one door of every operator request (typed, validated,
//!   dispatched with its [`credentials::Caller`]); the SSM operations.
//! - [`credentials`]: operator tokens and access keys: who is calling.
//! - [`account`]: the account ID and region in ARNs.
//! - [`authz`]: what a caller may do: IAM-style policies, checked at the one door.
//! - [`audit`]: the audit trail: a hash chain of every request, signed heads, verification, the mirror.
//! - [`grpc`]: the gRPC services (agents by client certificate, operators by token).
//! - [`conn`]: accepting connections: handshake and first-read deadlines, stalled writes.
//! - [`http`]: the HTTPS listener.
//! - [`ssm_http`]: the SSM-compatible API on it (AWS JSON 1.1, SigV4).
//! - [`metrics`]: `/metrics` on it (through the one door) and the plain-HTTP `--metrics-listen`.
//! - [`sigv4`]: SigV4 signature verification (pure).
//! - [`server`]: `tether serve`.
//!
//! (`fuzzing` is hidden: the gRPC edge's conversions, for the fuzz targets in `fuzz/`.)

pub mod account;
pub mod actions;
pub mod associations;
pub mod audit;
pub mod authz;
pub mod conn;
pub mod console;
pub mod core;
pub mod credentials;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
pub mod http;
pub mod install;
pub mod metrics;
pub mod parameter_keys;
pub mod pki;
pub mod replicas;
pub mod server;
pub mod sessions;
pub mod signing;
pub mod sigv4;
pub mod ssm_http;
