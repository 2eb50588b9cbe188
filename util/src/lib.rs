//! The few helpers that both `tether` and `tether-agent` need, written once:
//! the clock in milliseconds, timestamps as SSM writes and accepts them, and
//! owner-only files written atomically.
//!
//! Std and chrono only: the static agent links this crate, so it must stay
//! small, and it must never do anything but what its names say.

pub mod fs;
pub mod time;

pub use time::now_ms;
