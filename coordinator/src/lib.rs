//! `tether`: the coordinator server and the operator CLI, as one library with two
//! thin entry points in `main.rs`.
//!
//! - [`limits`]: every limit and default of the contract.
//! - [`state`]: the invocation and command state machines (pure).
//! - [`pki`]: CA, server and client certificates, the command-signing key.
//! - [`store`]: SQLite persistence.
//! - [`core`]: registration, long-poll dispatch, signed envelopes, result intake.
//! - [`associations`]: signed association sets for polling agents, inventory intake.
//! - [`api`]: the SSM operations on SSM JSON — the one place that knows those shapes.
//! - [`grpc`]: the gRPC services (agents by client certificate, operators by token).
//! - [`http`]: the HTTPS listener.
//! - [`ssm_http`]: the SSM-compatible API on it (AWS JSON 1.1, SigV4).
//! - [`sigv4`]: SigV4 signature verification (pure).
//! - [`validate`]: SSM requests checked against botocore's model (pure).
//! - [`bridge`]: AWS-managed instances and their invocations through real AWS SSM.
//! - [`access_keys`]: the SigV4 access keys (`create-access-key` and friends).
//! - [`server`]: `tether serve`.
//! - [`model`]: botocore's SSM API model, embedded (operations, shapes, paginators).
//! - [`cli`]: the operator CLI: `aws ssm` verbs and flags built from [`model`].

pub mod access_keys;
pub mod api;
pub mod associations;
pub mod bridge;
pub mod cli;
pub mod core;
pub mod grpc;
pub mod http;
pub mod install;
pub mod limits;
pub mod model;
pub mod pki;
pub mod replicas;
pub mod server;
pub mod sigv4;
pub mod ssm_http;
pub mod state;
pub mod store;
pub mod validate;
