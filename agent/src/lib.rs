//! `tether-agent`: the node agent, as a library behind a thin `main.rs`.
//!
//! - [`register`]: pinned-CA registration for an instance ID and client certificate.
//! - [`run`]: the daemon — long-poll, verify, spool, execute, report.
//! - [`envelope`]: verification of signed command envelopes (pure).
//! - [`exec`]: the detached step supervisor and the step directory format.
//! - [`outcome`]: what step exit codes mean and how steps add up to an invocation's status (pure).
//! - [`spool`]: per-command durable state.
//! - [`state`]: the registration on disk, and StrictModes over it.
//! - [`runas`]: the user steps run as and their clean environment.
//! - [`policy`]: the node's own policy: which documents and principals it accepts (pure).
//! - [`endpoints`]: the coordinator replicas' list, start index and rotation (pure).
//! - [`tls`]: pinned and mutual TLS, and the channel connector.
//! - [`net`]: name resolution without libc's NSS, proxies, TCP.
//! - [`status`]: the `status` diagnosis.
//! - [`update`]: signed self-update (`tether:updateAgent`): the `__update` worker, verification, swap and rollback.
//! - [`version`]: the agent's version, from a marker embedded in the binary.
//! - [`inventory`]: the inventory gatherers (packages, network, services, custom).
//! - [`sysinfo`], [`logging`], [`config`]: host facts, rotated log files, `/etc/tether/agent.toml`.
//!
//! (`fuzzing` is hidden: what follows a verified envelope, for the fuzz targets in `fuzz/`.)

pub mod config;
pub mod endpoints;
pub mod envelope;
pub mod exec;
#[doc(hidden)]
pub mod fuzzing;
pub mod inventory;
pub mod logging;
pub mod mask;
pub mod net;
pub mod outcome;
pub mod policy;
pub mod register;
pub mod run;
pub mod runas;
pub mod spool;
pub mod state;
pub mod status;
pub mod sysinfo;
pub mod tls;
pub mod update;
pub mod version;
