//! The agent's logs: `agent.log` (everything at the configured level) and
//! `errors.log` (errors only) in the log directory, one plain line per event:
//! `2006-01-02 15:04:05.000 LEVEL message key=value`, like amazon-ssm-agent's.
//! Each file is rotated by size (`agent.log.1` is the newest rotated file) and
//! only the configured number of rotated files is kept (file-rotate).
//! Secrets (activation codes, keys) are never passed to the logger.

use std::path::Path;
use std::sync::Mutex;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::time::ChronoUtc;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogSettings;

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";
/// Mode of the log files (the directory is 0750).
const LOG_FILE_MODE: u32 = 0o640;

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
        Some({
            use std::os::unix::fs::OpenOptionsExt;
            let mut o = std::fs::OpenOptions::new();
            o.read(true).create(true).append(true).mode(LOG_FILE_MODE);
            o
        }),
    )
}

fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new(crate::config::DEFAULT_LOG_LEVEL))
}

/// Logs to rotated files in `settings.dir` (created if needed) and warnings to
/// stderr; if the directory cannot be used, everything goes to stderr with a
/// warning.
pub fn init(settings: &LogSettings) {
    let dir = &settings.dir;
    let usable = std::fs::create_dir_all(dir).and_then(|_| {
        // FileRotate opens lazily; prove now that the files can be written.
        for f in ["agent.log", "errors.log"] {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(f))?;
        }
        Ok(())
    });
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
                .with_writer(file("agent.log"))
                .with_ansi(false)
                .with_target(false)
                .with_timer(ChronoUtc::new(TIME_FORMAT.into()))
                .with_filter(filter(&settings.level));
            let err_layer = fmt::layer()
                .with_writer(file("errors.log"))
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
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write logs there; logging to stderr");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

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
