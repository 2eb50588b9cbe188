//! Owner-only files, written so that a crash leaves either the old content
//! or the new, never half of it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Writes `data` to `path` atomically with mode 0600: a temporary file beside
/// it (named for this process, so two writers never share one), synced, then
/// renamed over `path`, and the directory synced so the rename survives a
/// crash. On failure the temporary file is removed and `path` is unchanged.
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn replaces_the_file_whole_and_owner_only() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("key.pem");
        write_private(&path, b"first")?;
        write_private(&path, b"second")?;
        assert_eq!(fs::read(&path)?, b"second");
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        // Nothing but the file itself is left behind.
        assert_eq!(fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        // The target is a directory: the rename fails.
        let path = dir.path().join("taken");
        fs::create_dir(&path)?;
        fs::write(path.join("inside"), b"x")?;
        assert!(write_private(&path, b"data").is_err());
        assert_eq!(fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }
}
