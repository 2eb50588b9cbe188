//! `tether`: the coordinator server and the operator CLI, as one library with two
//! thin entry points in `main.rs`.
//!
//! - [`pki`]: CA, server and client certificates, the command-signing key.
//! - [`core`]: registration, long-poll dispatch, signed envelopes, result intake.
//! - [`associations`]: signed association sets for polling agents, inventory intake.
//! - [`api`]: the SSM operations on SSM JSON — the one place that knows those shapes.
//! - [`grpc`]: the gRPC services (agents by client certificate, operators by token).
//! - [`http`]: the HTTPS listener.
//! - [`ssm_http`]: the SSM-compatible API on it (AWS JSON 1.1, SigV4).
//! - [`sigv4`]: SigV4 signature verification (pure).
//! - [`access_keys`]: the SigV4 access keys (`create-access-key` and friends).
//! - [`server`]: `tether serve`.

pub mod access_keys;
pub mod api;
pub mod associations;
pub mod core;
pub mod grpc;
pub mod http;
pub mod install;
pub mod pki;
pub mod replicas;
pub mod server;
pub mod sigv4;
pub mod ssm_http;
