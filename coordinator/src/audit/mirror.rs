//! The audit mirror: each record this replica appends, as one JSON line
//! (the CloudTrail event, with the chain's fields) in a file for log
//! shippers — default `/var/log/tether/coordinator/audit.log`, `--audit-log
//! PATH|off`. The directory is the coordinator's own, made as its other log
//! directory is (`util::fs::private_log_dir`: 0700, refused when another
//! user owns it or others may write it); the files are 0600, opened without
//! following links, and rotated by size (64 MiB, 10 kept: `limits`). The
//! database is the trail of record: a line that cannot be written is logged,
//! never a refused request.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use tether_ssm::limits::{AUDIT_LOG_KEEP, AUDIT_LOG_MAX_BYTES};

/// The mirror's default file.
pub const DEFAULT_PATH: &str = "/var/log/tether/coordinator/audit.log";

/// An open mirror file.
pub struct Mirror {
    path: PathBuf,
    file: parking_lot::Mutex<file_rotate::FileRotate<file_rotate::suffix::AppendCount>>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror").field("path", &self.path).finish()
    }
}

impl Mirror {
    /// Opens (creating) the mirror at `path`, after checking its directory
    /// and file as the coordinator's log is checked.
    pub fn open(path: &Path) -> std::io::Result<Mirror> {
        let nofollow = nix::fcntl::OFlag::O_NOFOLLOW.bits();
        let uid = nix::unistd::geteuid().as_raw();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        tether_util::fs::private_log_dir(&dir, uid)?;
        tether_util::fs::check_log_file(path, uid, nofollow)?;
        tether_util::fs::narrow_rotated_logs(path, uid)?;
        let file = file_rotate::FileRotate::new(
            path,
            file_rotate::suffix::AppendCount::new(AUDIT_LOG_KEEP),
            file_rotate::ContentLimit::BytesSurpassed(AUDIT_LOG_MAX_BYTES),
            file_rotate::compression::Compression::None,
            Some(tether_util::fs::log_open_options(nofollow)),
        );
        Ok(Mirror {
            path: path.to_path_buf(),
            file: parking_lot::Mutex::new(file),
        })
    }

    /// Appends one line per value.
    pub fn write(&self, lines: &[serde_json::Value]) {
        let mut buf = Vec::with_capacity(lines.len() * 512);
        for l in lines {
            if serde_json::to_writer(&mut buf, l).is_ok() {
                buf.push(b'\n');
            }
        }
        let mut f = self.file.lock();
        if let Err(e) = f.write_all(&buf).and_then(|()| f.flush()) {
            tracing::error!(file = %self.path.display(), error = %e, "cannot write the audit mirror");
        }
    }
}
