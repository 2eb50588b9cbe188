//! StrictModes, as OpenSSH's sshd applies it to `~/.ssh`: before a daemon
//! trusts the files that make its identity (keys, certificates, the CA it
//! pins, what it will run), it makes sure nobody else could have put them
//! there.
//!
//! The rules, for a [`Policy`] made for the uid the process runs as:
//! - every file and directory of the tree (the directory itself and all
//!   below it, symbolic links not followed) is owned by that uid or by root,
//!   and is writable by its owner only;
//! - a file named as a secret (a private key) is also readable by its owner
//!   only;
//! - every directory above, up to `/`, is owned by that uid or by root and is
//!   writable by its owner only — except a root-owned directory with the
//!   sticky bit (`/tmp`), where nobody can rename or remove another's entry.
//!
//! Unlike sshd, which stops at the user's home directory, the walk goes all
//! the way to `/`: a directory anyone can write anywhere above lets them
//! rename the whole tree away and put their own in its place. Paths are
//! resolved first (`canonicalize`), so a symbolic link to the tree is judged
//! by where it leads; so is a link inside the tree (the file or directory it
//! leads to, not what such a directory holds, and the directories above it).
//! Missing paths are not errors: what does not exist yet
//! is judged by the directories it would be created in.
//!
//! Nothing is changed here: a daemon that finds its tree unsafe refuses to
//! start with the [`Unsafe`] message, which names the path, its mode and
//! owner, and the fix. Tightening a mode silently would hide that someone
//! may already have replaced what the tree holds.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::users::{describe_uid, name_of};

const GROUP_WRITE: u32 = 0o020;
const OTHER_WRITE: u32 = 0o002;
const STICKY: u32 = 0o1000;

/// Why a path cannot be trusted.
#[derive(Debug)]
pub enum Unsafe {
    /// Someone other than the owner may write it.
    Writable {
        path: PathBuf,
        mode: u32,
        owner: u32,
        /// The tree it lies above, for a directory above the tree.
        above: Option<PathBuf>,
    },
    /// Owned by a user other than the process's (and not root).
    Owner {
        path: PathBuf,
        mode: u32,
        owner: u32,
        expected: u32,
        above: Option<PathBuf>,
    },
    /// A private key that someone other than the owner may read.
    Readable {
        path: PathBuf,
        mode: u32,
        owner: u32,
    },
    /// The path could not be examined.
    Io { path: PathBuf, source: io::Error },
}

fn who(mode: u32, group: u32, other: u32) -> &'static str {
    match (mode & group != 0, mode & other != 0) {
        (true, true) => "its group and everyone else",
        (true, false) => "its group",
        _ => "everyone else",
    }
}

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsafe::Writable {
                path,
                mode,
                owner,
                above,
            } => {
                let p = path.display();
                write!(
                    f,
                    "{p} is writable by {} (mode {mode:04o}, owner {})",
                    who(*mode, GROUP_WRITE, OTHER_WRITE),
                    describe_uid(*owner)
                )?;
                match above {
                    Some(tree) => write!(
                        f,
                        ", and it is a directory above {}: whoever can write it can put a tree of their own in its place. \
                         Fix: chmod go-w {p}, or move {} under directories only root can change",
                        tree.display(),
                        tree.display()
                    ),
                    None => write!(
                        f,
                        ": whoever can write it can replace what is trusted there. \
                         Fix: check what it holds, then chmod go-w {p}"
                    ),
                }
            }
            Unsafe::Owner {
                path,
                mode,
                owner,
                expected,
                above,
            } => {
                let p = path.display();
                let expected_name = describe_uid(*expected);
                let nor_root = if *expected == 0 { "" } else { ", nor by root" };
                write!(
                    f,
                    "{p} is owned by {}, not by {expected_name} that this process runs as{nor_root} (mode {mode:04o})",
                    describe_uid(*owner)
                )?;
                match above {
                    Some(tree) => write!(
                        f,
                        ", and it is a directory above {}: its owner can put a tree of their own in its place. \
                         Fix: chown root {p}, or move {} elsewhere",
                        tree.display(),
                        tree.display()
                    ),
                    None => write!(
                        f,
                        ": its owner can replace what is trusted there. \
                         Fix: check what it holds, then chown {} {p}",
                        name_of(*expected)
                    ),
                }
            }
            Unsafe::Readable { path, mode, owner } => write!(
                f,
                "{} holds a private key and is readable by {} (mode {mode:04o}, owner {}). \
                 Fix: chmod 0600 {}, and consider the key disclosed",
                path.display(),
                who(*mode, 0o070, 0o007),
                describe_uid(*owner),
                path.display()
            ),
            Unsafe::Io { path, source } => {
                write!(f, "cannot examine {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for Unsafe {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Unsafe::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The checks for one process: whom it trusts (its own uid and root), and
/// the directories above already found safe.
#[derive(Debug)]
pub struct Policy {
    uid: u32,
    checked: HashSet<PathBuf>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Unsafe + '_ {
    move |source| Unsafe::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `Ok(None)` for a path that does not exist (or vanished meanwhile).
fn lstat(path: &Path) -> Result<Option<std::fs::Metadata>, Unsafe> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

impl Policy {
    /// Checks for a process running as `uid` (its effective uid).
    pub fn new(uid: u32) -> Policy {
        Policy {
            uid,
            checked: HashSet::new(),
        }
    }

    fn trusted(&self, owner: u32) -> bool {
        owner == self.uid || owner == 0
    }

    /// One entry of a tree (not followed if it is a symbolic link).
    fn entry(&self, path: &Path, meta: &std::fs::Metadata, secret: bool) -> Result<(), Unsafe> {
        let (mode, owner) = (meta.mode() & 0o7777, meta.uid());
        if !self.trusted(owner) {
            return Err(Unsafe::Owner {
                path: path.to_path_buf(),
                mode,
                owner,
                expected: self.uid,
                above: None,
            });
        }
        // A symbolic link's own mode means nothing: the tree walk judges
        // where it leads (`check_file`).
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        if mode & (GROUP_WRITE | OTHER_WRITE) != 0 {
            return Err(Unsafe::Writable {
                path: path.to_path_buf(),
                mode,
                owner,
                above: None,
            });
        }
        if secret && meta.is_file() && mode & 0o077 != 0 {
            return Err(Unsafe::Readable {
                path: path.to_path_buf(),
                mode,
                owner,
            });
        }
        Ok(())
    }

    /// Every directory above `path` (already resolved), up to `/`.
    fn above(&mut self, path: &Path, tree: &Path) -> Result<(), Unsafe> {
        self.chain(path.parent(), tree)
    }

    /// `first` and every directory above it, up to `/`.
    fn chain(&mut self, first: Option<&Path>, tree: &Path) -> Result<(), Unsafe> {
        let mut dir = first;
        while let Some(d) = dir {
            if d.as_os_str().is_empty() {
                break;
            }
            if self.checked.contains(d) {
                break;
            }
            let meta = std::fs::metadata(d).map_err(io_err(d))?;
            let (mode, owner) = (meta.mode() & 0o7777, meta.uid());
            if !self.trusted(owner) {
                return Err(Unsafe::Owner {
                    path: d.to_path_buf(),
                    mode,
                    owner,
                    expected: self.uid,
                    above: Some(tree.to_path_buf()),
                });
            }
            let shared = mode & (GROUP_WRITE | OTHER_WRITE) != 0;
            if shared && !(owner == 0 && mode & STICKY != 0) {
                return Err(Unsafe::Writable {
                    path: d.to_path_buf(),
                    mode,
                    owner,
                    above: Some(tree.to_path_buf()),
                });
            }
            self.checked.insert(d.to_path_buf());
            dir = d.parent();
        }
        Ok(())
    }

    /// The nearest existing path at or above `path`, resolved, and whether
    /// it is `path` itself.
    fn resolve(path: &Path) -> Result<(PathBuf, bool), Unsafe> {
        let mut p = path.to_path_buf();
        let mut itself = true;
        loop {
            match std::fs::canonicalize(&p) {
                Ok(real) => return Ok((real, itself)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => match p.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => {
                        p = parent.to_path_buf();
                        itself = false;
                    }
                    // A relative path with no existing component: judge
                    // the working directory.
                    _ => {
                        let cwd = std::env::current_dir().map_err(io_err(path))?;
                        return Ok((cwd, false));
                    }
                },
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
    }

    /// Checks the directory `dir`, everything under it, and every directory
    /// above it. Files whose names are in `secrets` (anywhere in the tree)
    /// must also be unreadable by others. A `dir` that does not exist yet
    /// is judged by the directories it would be created in.
    pub fn check_tree(&mut self, dir: &Path, secrets: &[&str]) -> Result<(), Unsafe> {
        let (real, itself) = Self::resolve(dir)?;
        if !itself {
            return self.chain(Some(&real), dir);
        }
        let mut stack = vec![real.clone()];
        while let Some(d) = stack.pop() {
            let Some(meta) = lstat(&d)? else { continue };
            self.entry(&d, &meta, false)?;
            if !meta.is_dir() {
                continue;
            }
            let entries = match std::fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&d)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err(&d))?;
                let path = entry.path();
                // Files come and go while a daemon's helpers run (atomic
                // writes through temporary files): a vanished one is fine.
                let Some(meta) = lstat(&path)? else { continue };
                let secret = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| secrets.contains(&n));
                if meta.is_dir() {
                    stack.push(path);
                } else if meta.file_type().is_symlink() {
                    // What the daemon reads through it is what it leads to.
                    self.entry(&path, &meta, false)?;
                    self.check_file(&path, secret)?;
                } else {
                    self.entry(&path, &meta, secret)?;
                }
            }
        }
        self.above(&real, dir)
    }

    /// Checks one file (a private key when `secret`), if it exists, and
    /// every directory above it; a missing file is judged by the directory
    /// it would be created in.
    pub fn check_file(&mut self, path: &Path, secret: bool) -> Result<(), Unsafe> {
        let (real, itself) = Self::resolve(path)?;
        if !itself {
            return self.chain(Some(&real), path);
        }
        if let Some(meta) = lstat(&real)? {
            self.entry(&real, &meta, secret)?;
        }
        self.above(&real, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn uid_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().uid()
    }

    /// A tree as the agent writes it, in a private temporary directory.
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        fs::create_dir(&state).unwrap();
        chmod(&state, 0o700);
        fs::create_dir(state.join("spool")).unwrap();
        chmod(&state.join("spool"), 0o700);
        for f in ["registration.json", "agent.key", "spool/nonce"] {
            fs::write(state.join(f), b"x").unwrap();
            chmod(&state.join(f), 0o600);
        }
        (tmp, state)
    }

    #[test]
    fn an_owner_only_tree_passes_and_so_does_a_missing_one() {
        let (tmp, state) = tree();
        let me = uid_of(&state);
        Policy::new(me).check_tree(&state, &["agent.key"]).unwrap();
        // Readable by others is fine for what is not a secret.
        chmod(&state.join("registration.json"), 0o644);
        chmod(&state, 0o755);
        Policy::new(me).check_tree(&state, &["agent.key"]).unwrap();
        // Not created yet: judged by where it would be.
        Policy::new(me)
            .check_tree(&tmp.path().join("later/state"), &[])
            .unwrap();
        Policy::new(me)
            .check_file(&tmp.path().join("later/x.db"), false)
            .unwrap();
    }

    #[test]
    fn a_tree_anyone_can_write_is_named_with_its_mode_owner_and_fix() {
        let (_tmp, state) = tree();
        let me = uid_of(&state);
        chmod(&state, 0o777);
        let e = Policy::new(me).check_tree(&state, &[]).unwrap_err();
        assert!(matches!(e, Unsafe::Writable { mode: 0o777, .. }), "{e:?}");
        let text = e.to_string();
        let p = state.canonicalize().unwrap();
        assert!(
            text.contains(&format!(
                "{} is writable by its group and everyone else (mode 0777, owner ",
                p.display()
            )) && text.contains(&format!(
                "Fix: check what it holds, then chmod go-w {}",
                p.display()
            )),
            "{text}"
        );
        chmod(&state, 0o700);
        // Deep inside too.
        chmod(&state.join("spool"), 0o770);
        let e = Policy::new(me).check_tree(&state, &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("spool is writable by its group (mode 0770"),
            "{e}"
        );
        chmod(&state.join("spool"), 0o700);
        chmod(&state.join("spool/nonce"), 0o606);
        let e = Policy::new(me).check_tree(&state, &[]).unwrap_err();
        assert!(
            e.to_string().contains("nonce is writable by everyone else"),
            "{e}"
        );
    }

    #[test]
    fn a_private_key_others_can_read_is_refused() {
        let (_tmp, state) = tree();
        let me = uid_of(&state);
        chmod(&state.join("agent.key"), 0o640);
        let e = Policy::new(me)
            .check_tree(&state, &["agent.key"])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("holds a private key and is readable by its group (mode 0640")
                && e.to_string().contains("Fix: chmod 0600"),
            "{e}"
        );
        let e = Policy::new(me)
            .check_file(&state.join("agent.key"), true)
            .unwrap_err();
        assert!(matches!(e, Unsafe::Readable { .. }), "{e:?}");
    }

    #[test]
    fn a_tree_owned_by_someone_else_is_refused_unless_it_is_root() {
        let (_tmp, state) = tree();
        let owner = uid_of(&state);
        // As seen by a process running as another uid (no chown needed:
        // the owner is "someone else" to that process).
        let other = owner.wrapping_add(4242);
        if owner == 0 {
            // Root-owned is trusted by everyone.
            Policy::new(other).check_tree(&state, &[]).unwrap();
            // And root sees a file given to nobody as someone else's.
            std::os::unix::fs::chown(state.join("agent.key"), Some(65534), None).unwrap();
            let e = Policy::new(0).check_tree(&state, &[]).unwrap_err();
            assert!(
                matches!(
                    e,
                    Unsafe::Owner {
                        owner: 65534,
                        expected: 0,
                        ..
                    }
                ),
                "{e:?}"
            );
            let text = e.to_string();
            assert!(
                text.contains("agent.key is owned by")
                    && text.contains(
                        "(uid 65534), not by root (uid 0) that this process runs as (mode 0600)"
                    )
                    && text.contains("Fix: check what it holds, then chown root "),
                "{text}"
            );
        } else {
            let e = Policy::new(other).check_tree(&state, &[]).unwrap_err();
            assert!(matches!(e, Unsafe::Owner { .. }), "{e:?}");
        }
    }

    #[test]
    fn a_directory_above_anyone_can_write_is_refused_unless_root_owned_and_sticky() {
        let (tmp, state) = tree();
        let me = uid_of(&state);
        chmod(tmp.path(), 0o777);
        let e = Policy::new(me).check_tree(&state, &[]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("and it is a directory above") && text.contains("Fix: chmod go-w"),
            "{text}"
        );
        // Sticky, like /tmp: fine when root owns it.
        chmod(tmp.path(), 0o1777);
        let got = Policy::new(me).check_tree(&state, &[]);
        assert_eq!(got.is_ok(), me == 0, "{got:?}");
        chmod(tmp.path(), 0o700);
        // Files too: a database in a directory anyone can write.
        chmod(&state, 0o777);
        let e = Policy::new(me)
            .check_file(&state.join("x.db"), false)
            .unwrap_err();
        assert!(e.to_string().contains("directory above"), "{e}");
    }

    #[test]
    fn a_symbolic_link_in_the_tree_is_judged_by_where_it_leads() {
        let (tmp, state) = tree();
        let me = uid_of(&state);
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        chmod(&outside, 0o700);
        let ca = outside.join("ca.pem");
        fs::write(&ca, b"x").unwrap();
        chmod(&ca, 0o644);
        std::os::unix::fs::symlink(&ca, state.join("ca.pem")).unwrap();
        Policy::new(me).check_tree(&state, &["agent.key"]).unwrap();
        // The file it leads to, anyone can write.
        chmod(&ca, 0o666);
        let e = Policy::new(me).check_tree(&state, &[]).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "{} is writable by its group and everyone else (mode 0666",
                ca.canonicalize().unwrap().display()
            )),
            "{e}"
        );
        chmod(&ca, 0o644);
        // A key reached through a link must be private where it lies.
        fs::remove_file(state.join("agent.key")).unwrap();
        std::os::unix::fs::symlink(&ca, state.join("agent.key")).unwrap();
        let e = Policy::new(me)
            .check_tree(&state, &["agent.key"])
            .unwrap_err();
        assert!(matches!(e, Unsafe::Readable { .. }), "{e:?}");
        fs::remove_file(state.join("agent.key")).unwrap();
        // The directory it lies in, anyone can write.
        chmod(&outside, 0o777);
        let e = Policy::new(me).check_tree(&state, &[]).unwrap_err();
        assert!(e.to_string().contains("directory above"), "{e}");
        chmod(&outside, 0o700);
        // A link that leads nowhere yet is judged by the tree it is in.
        std::os::unix::fs::symlink(outside.join("none"), state.join("later")).unwrap();
        Policy::new(me).check_tree(&state, &[]).unwrap();
    }

    #[test]
    fn a_symbolic_link_to_the_tree_is_judged_by_where_it_leads() {
        let (tmp, state) = tree();
        let me = uid_of(&state);
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&state, &link).unwrap();
        Policy::new(me).check_tree(&link, &[]).unwrap();
        chmod(&state, 0o757);
        let e = Policy::new(me).check_tree(&link, &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains(&state.canonicalize().unwrap().display().to_string()),
            "{e}"
        );
    }
}
