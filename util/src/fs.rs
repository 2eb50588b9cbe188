//! Owner-only files, written so that a crash leaves either the old content
//! or the new, never half of it.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Creates `dir` and any missing parents with mode 0700, and makes `dir`
/// itself 0700 if it already existed (the caller owns it).
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Options that open a log file the way a logger should: appending,
/// created 0600, and never through a symbolic link — `nofollow` is the
/// platform's `O_NOFOLLOW` (its value differs between architectures and std
/// does not name it; callers pass `nix`'s).
pub fn log_open_options(nofollow: i32) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true)
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nofollow);
    o
}

/// Makes `dir` usable as a private log directory for a process running as
/// `uid`: created (with missing parents) 0700 if absent; if present, it
/// must be owned by `uid` and writable by nobody else, or the error says
/// so, naming its mode, owner and the fix. An existing directory is never
/// chmod-ed: it may be anything (`/tmp`, `/var/log`) that a setting named.
pub fn private_log_dir(dir: &Path, uid: u32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return DirBuilder::new().recursive(true).mode(0o700).create(dir);
        }
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    // A link to a directory is judged by the directory.
    let meta = fs::metadata(dir)?;
    let (mode, owner) = (meta.mode() & 0o7777, meta.uid());
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if owner != uid {
        return Err(io::Error::other(format!(
            "{} is owned by {}, not by {} that writes its logs there (mode {mode:04o}). Fix: chown {} {}, or log elsewhere",
            dir.display(),
            crate::users::describe_uid(owner),
            crate::users::describe_uid(uid),
            crate::users::name_of(uid),
            dir.display()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} is writable by others than its owner (mode {mode:04o}, owner {}): they could replace or remove its logs. Fix: chmod 0700 {}",
            dir.display(),
            crate::users::describe_uid(owner),
            dir.display()
        )));
    }
    Ok(())
}

/// Opens the log file `path` once as a logger will ([`log_open_options`]),
/// creating it, and checks what it got: a regular file of its own (owned by
/// `uid`, one link — not a hard link to a file elsewhere), which it then
/// narrows to 0600 if an older version left it readable.
pub fn check_log_file(path: &Path, uid: u32, nofollow: i32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let file = log_open_options(nofollow).open(path).map_err(named)?;
    let meta = file.metadata().map_err(named)?;
    if !meta.is_file() || meta.uid() != uid || meta.nlink() != 1 {
        return Err(io::Error::other(format!(
            "{} is not a log file of its own (owner {}, {} links, mode {:04o}): refusing to write to it. Fix: remove it",
            path.display(),
            crate::users::describe_uid(meta.uid()),
            meta.nlink(),
            meta.mode() & 0o7777
        )));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(named)?;
    }
    Ok(())
}

/// Narrows the rotated copies of `base` in its directory (`base.1`, …)
/// to 0600: regular files owned by `uid` only, links are left alone.
pub fn narrow_rotated_logs(base: &Path, uid: u32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let (Some(dir), Some(name)) = (base.parent(), base.file_name()) else {
        return Ok(());
    };
    let prefix = format!("{}.", name.to_string_lossy());
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let meta = entry.metadata()?;
        if meta.is_file() && meta.uid() == uid && meta.mode() & 0o077 != 0 {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Opens (creating it 0600) the lock file `path` and takes its exclusive
/// lock, held until the returned file is dropped (or the process ends).
pub fn lock_exclusive(path: &Path) -> io::Result<File> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    lock.lock()?;
    Ok(lock)
}

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

    /// x86_64's and aarch64's O_NOFOLLOW (the tests run on either).
    const NOFOLLOW: i32 = if cfg!(target_arch = "aarch64") {
        0o100000
    } else {
        0o400000
    };

    #[test]
    fn log_files_are_owner_only_and_never_reached_through_links() -> io::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir()?;
        let uid = fs::metadata(dir.path())?.uid();
        let logs = dir.path().join("logs");
        private_log_dir(&logs, uid)?;
        assert_eq!(fs::metadata(&logs)?.permissions().mode() & 0o777, 0o700);
        let log = logs.join("agent.log");
        check_log_file(&log, uid, NOFOLLOW)?;
        assert_eq!(fs::metadata(&log)?.permissions().mode() & 0o777, 0o600);
        // An older version's 0640 file, and its rotated copies, are narrowed.
        fs::set_permissions(&log, fs::Permissions::from_mode(0o640))?;
        fs::write(logs.join("agent.log.1"), b"old")?;
        fs::set_permissions(logs.join("agent.log.1"), fs::Permissions::from_mode(0o644))?;
        check_log_file(&log, uid, NOFOLLOW)?;
        narrow_rotated_logs(&log, uid)?;
        for f in ["agent.log", "agent.log.1"] {
            assert_eq!(
                fs::metadata(logs.join(f))?.permissions().mode() & 0o777,
                0o600,
                "{f}"
            );
        }
        // A symbolic link in its place is not followed.
        let target = dir.path().join("elsewhere");
        fs::write(&target, b"precious")?;
        let errors = logs.join("errors.log");
        std::os::unix::fs::symlink(&target, &errors)?;
        assert!(check_log_file(&errors, uid, NOFOLLOW).is_err());
        assert!(log_open_options(NOFOLLOW).open(&errors).is_err());
        // Nor is a hard link to a file elsewhere written.
        fs::remove_file(&errors)?;
        fs::hard_link(&target, &errors)?;
        let e = check_log_file(&errors, uid, NOFOLLOW)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 links") && e.contains("Fix: remove it"), "{e}");
        assert_eq!(fs::read(&target)?, b"precious");
        Ok(())
    }

    #[test]
    fn a_shared_log_directory_is_refused_and_never_chmod_ed() -> io::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir()?;
        let uid = fs::metadata(dir.path())?.uid();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared)?;
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o770))?;
        let e = private_log_dir(&shared, uid).unwrap_err().to_string();
        assert!(
            e.contains("mode 0770") && e.contains("Fix: chmod 0700"),
            "{e}"
        );
        assert_eq!(fs::metadata(&shared)?.permissions().mode() & 0o777, 0o770);
        let e = private_log_dir(&shared, uid.wrapping_add(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is owned by") && e.contains("Fix: chown"), "{e}");
        // Readable is fine: the files themselves are 0600.
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o755))?;
        private_log_dir(&shared, uid)?;
        Ok(())
    }

    #[test]
    fn private_directories_are_owner_only_all_the_way_down() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let deep = dir.path().join("a/b/c");
        create_private_dir_all(&deep)?;
        for p in ["a", "a/b", "a/b/c"] {
            let mode = fs::metadata(dir.path().join(p))?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{p}");
        }
        fs::set_permissions(&deep, fs::Permissions::from_mode(0o755))?;
        create_private_dir_all(&deep)?;
        assert_eq!(fs::metadata(&deep)?.permissions().mode() & 0o777, 0o700);
        Ok(())
    }

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
