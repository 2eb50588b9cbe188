//! The few helpers that both `tether` and `tether-agent` need, written once:
//! the clock in milliseconds, timestamps as SSM writes and accepts them,
//! owner-only files written atomically, local users and groups read without
//! NSS, and StrictModes (who may have written the files a daemon trusts).
//!
//! Std and chrono only: the static agent links this crate, so it must stay
//! small, and it must never do anything but what its names say.

pub mod fs;
pub mod strict;
pub mod time;
pub mod users;

pub use time::now_ms;
