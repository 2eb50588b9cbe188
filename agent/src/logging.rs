//! The agent's logs: `agent.log` (everything at the configured level) and
//! `errors.log` (errors only) in the log directory, one plain line per event:
//! `2006-01-02 15:04:05.000 LEVEL message key=value`, like amazon-ssm-agent's.
//! Secrets (activation codes, keys) are never passed to the logger.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::time::ChronoUtc;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, fmt};

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

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// Logs to files in `log_dir` (created if needed) and warnings to stderr; if
/// the directory cannot be used, everything goes to stderr with a warning.
pub fn init(log_dir: &Path, level_env: &str) {
    let filter = || EnvFilter::try_from_env(level_env).unwrap_or_else(|_| EnvFilter::new("info"));
    let files = std::fs::create_dir_all(log_dir).and_then(|_| {
        Ok((
            open_append(&log_dir.join("agent.log"))?,
            open_append(&log_dir.join("errors.log"))?,
        ))
    });
    match files {
        Ok((all, errors)) => {
            let all_layer = fmt::layer()
                .with_writer(Mutex::new(all))
                .with_ansi(false)
                .with_target(false)
                .with_timer(ChronoUtc::new(TIME_FORMAT.into()))
                .with_filter(filter());
            let err_layer = fmt::layer()
                .with_writer(Mutex::new(errors))
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
                .with(stderr_layer().with_filter(filter()))
                .init();
            tracing::warn!(dir = %log_dir.display(), error = %e, "cannot write logs there; logging to stderr");
        }
    }
}
