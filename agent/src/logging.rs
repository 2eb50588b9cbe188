//! The agent's logs: `agent.log` (everything at the configured level) and
//! `errors.log` (errors only) in the log directory, one plain line per event:
//! `2006-01-02 15:04:05.000 LEVEL message key=value`, like amazon-ssm-agent's.
//! Each file is rotated by size (`agent.log.1` is the newest rotated file) and
//! only the configured number of rotated files is kept (file-rotate).
//! Secrets (activation codes, keys) are never passed to the logger.
//!
//! The directory is the agent's own: created 0700, and refused (logging goes
//! to stderr, saying why) when it exists but is not owned by the agent's
//! user or is writable by anyone else — a shared directory lets its other
//! writers swap a log file for a link to a file the root agent would then
//! append to. The files are 0600 and opened with `O_NOFOLLOW` (also when
//! file-rotate reopens them after a rotation), and checked to be regular
//! files of the agent's own with a single link.

use std::path::Path;
use std::sync::Mutex;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt;
use tracing_subscriber::fmt::time::ChronoUtc;
use tracing_subscriber::prelude::*;

use crate::config::LogSettings;

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";
/// The two log files.
pub const AGENT_LOG: &str = "agent.log";
pub const ERRORS_LOG: &str = "errors.log";

fn stderr_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_timer(ChronoUtc::new(TIME_FORMAT.into()))
}

/// A size-rotated log file: rotated when a write takes it past `max_bytes`
/// (so lines are never split), `keep` rotated files kept.
pub fn rotating_file(path: &Path, max_bytes: u64, keep: usize) -> FileRotate<AppendCount> {
    FileRotate::new(
        path,
        AppendCount::new(keep),
        ContentLimit::BytesSurpassed(max_bytes as usize),
        Compression::None,
        Some(tether_util::fs::log_open_options(nofollow())),
    )
}

/// The platform's `O_NOFOLLOW`.
fn nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// Makes `dir` the agent's log directory and its two files ready: see the
/// module doc. The error says what is wrong and the fix.
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    let uid = crate::state::effective_uid();
    tether_util::fs::private_log_dir(dir, uid)?;
    for f in [AGENT_LOG, ERRORS_LOG] {
        // FileRotate opens lazily; prove now that the files can be written.
        tether_util::fs::check_log_file(&dir.join(f), uid, nofollow())?;
        tether_util::fs::narrow_rotated_logs(&dir.join(f), uid)?;
    }
    Ok(())
}

/// `level`: a level, or `target=level` directives after an optional default
/// (`info,tether_agent::run=debug`); the default level if it does not parse.
fn filter(level: &str) -> Targets {
    level
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO))
}

/// Logs to rotated files in `settings.dir` (created if needed) and warnings to
/// stderr; if the directory cannot be used, everything goes to stderr with a
/// warning.
pub fn init(settings: &LogSettings) {
    let dir = &settings.dir;
    let usable = prepare(dir);
    match usable {
        Ok(()) => {
            let file = |name: &str| {
                Mutex::new(rotating_file(
                    &dir.join(name),
                    settings.max_bytes,
                    settings.keep,
                ))
            };
            let all_layer = fmt::layer()
                .with_writer(file(AGENT_LOG))
                .with_ansi(false)
                .with_target(false)
                .with_timer(ChronoUtc::new(TIME_FORMAT.into()))
                .with_filter(filter(&settings.level));
            let err_layer = fmt::layer()
                .with_writer(file(ERRORS_LOG))
                .with_ansi(false)
                .with_target(false)
                .with_timer(ChronoUtc::new(TIME_FORMAT.into()))
                .with_filter(LevelFilter::ERROR);
            tracing_subscriber::registry()
                .with(all_layer)
                .with(err_layer)
                .with(stderr_layer().with_filter(LevelFilter::WARN))
                .init();
        }
        Err(e) => {
            tracing_subscriber::registry()
                .with(stderr_layer().with_filter(filter(&settings.level)))
                .init();
            tracing::error!(dir = %dir.display(), error = %e, "cannot write logs there; logging to stderr");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_level_is_a_level_or_target_directives() {
        use tracing::Level;
        let f = filter("debug");
        assert!(f.would_enable("tether_agent::run", &Level::DEBUG));
        assert!(!f.would_enable("h2", &Level::TRACE));
        let f = filter("info,tether_agent::run=debug");
        assert!(f.would_enable("tether_agent::run::upstream", &Level::DEBUG));
        assert!(!f.would_enable("tether_agent::update", &Level::DEBUG));
        assert!(f.would_enable("hyper", &Level::INFO));
        let f = filter("WARN");
        assert!(!f.would_enable("tether_agent", &Level::INFO));
        // What does not parse is the default, info.
        let f = filter("tether_agent=loud");
        assert!(f.would_enable("tether_agent", &Level::INFO));
        assert!(!f.would_enable("tether_agent", &Level::DEBUG));
    }

    #[test]
    fn files_rotate_by_size_and_keep_only_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        let mut f = rotating_file(&path, 1000, 2);
        let line = format!("{}\n", "x".repeat(99));
        for i in 0..100 {
            write!(f, "{i:03}{line}").unwrap();
        }
        f.flush().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["agent.log", "agent.log.1", "agent.log.2"]);
        for n in &names {
            let text = std::fs::read_to_string(dir.path().join(n)).unwrap();
            assert!(text.len() <= 1000 + 103, "{n}: {} bytes", text.len());
            assert!(
                text.lines().all(|l| l.len() == 102),
                "{n}: a line was split"
            );
        }
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.ends_with(&format!("099{line}")));
    }
}
