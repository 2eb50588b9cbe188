//! A throwaway root for install tests: a directory with its own `/etc`, `/var`,
//! `/tmp` and `/run`, this machine's `/usr` under a copy-on-write overlay (so
//! installing into `/usr/bin` touches nothing outside the directory), entered
//! with `chroot` inside new mount and PID namespaces (`unshare`). Nothing is
//! mounted in this machine's namespace, and every process started inside dies
//! with the namespace. Needs root (CI runs as root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `nsswitch.conf` of the root: the modules that crash a static glibc binary
/// that loads them (systemd, sss) come first.
pub const NSSWITCH: &str = "passwd: systemd sss files\n\
                            group: systemd sss files\n\
                            hosts: systemd sss mymachines files dns\n";

/// The name the coordinator is reached by from inside the root (in its /etc/hosts).
pub const COORDINATOR_NAME: &str = "coordinator.tether.test";

pub struct Root {
    /// The root directory as seen from outside.
    pub dir: PathBuf,
    /// Overlay upper and work directories for /usr.
    work: PathBuf,
    child: Option<Child>,
}

fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("create directory in the root");
    }
    std::fs::write(path, text).expect("write file in the root");
}

impl Root {
    /// Lays out a root in `parent/root`.
    pub fn new(parent: &Path) -> Root {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the install tests build a throwaway root with unshare and chroot: run them as root (CI does)"
        );
        let dir = parent.join("root");
        let work = parent.join("root-work");
        for d in [
            "usr", "dev", "proc", "run", "var/run", "var/lib", "var/log", "etc", "opt",
        ] {
            std::fs::create_dir_all(dir.join(d)).expect("root directory");
        }
        for d in ["usr-upper", "usr-work"] {
            std::fs::create_dir_all(work.join(d)).expect("overlay directory");
        }
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("root /tmp");
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .expect("root /tmp mode");
        // This machine is merged-/usr (Debian 12): the top-level links.
        for (link, to) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            if Path::new("/").join(link).exists() {
                std::os::unix::fs::symlink(to, dir.join(link)).expect("top-level link");
            }
        }
        for f in ["passwd", "group"] {
            std::fs::copy(Path::new("/etc").join(f), dir.join("etc").join(f))
                .expect("copy passwd/group");
        }
        write(
            &dir.join("etc/hosts"),
            &format!("127.0.0.1 localhost {COORDINATOR_NAME}\n::1 localhost ip6-localhost\n"),
        );
        write(&dir.join("etc/nsswitch.conf"), NSSWITCH);
        // Nothing answers there: names must come from /etc/hosts.
        write(
            &dir.join("etc/resolv.conf"),
            "nameserver 127.0.0.254\noptions timeout:1 attempts:1\n",
        );
        write(&dir.join("etc/tether-throwaway-root"), "yes\n");
        std::fs::create_dir_all(dir.join("etc/init.d")).expect("init.d");
        Root {
            dir,
            work,
            child: None,
        }
    }

    /// Starts `script` (sh) inside the root; its stdout and stderr go to
    /// `/tmp/session.log` in the root.
    pub fn spawn(&mut self, script: &str) {
        let setup = r#"set -e
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=/usr,upperdir=$W/usr-upper,workdir=$W/usr-work" "$R/usr"
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
exec chroot "$R" /bin/sh -c "$INNER"
"#;
        let log = std::fs::File::create(self.dir.join("tmp/session.log")).expect("session log");
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--",
                "/bin/sh",
                "-c",
                setup,
            ])
            .env("R", &self.dir)
            .env("W", &self.work)
            .env("INNER", script)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("run unshare (util-linux)");
        self.child = Some(child);
    }

    /// Waits for the session to end; returns its log.
    pub fn wait(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        self.session_log()
    }

    pub fn session_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tmp/session.log")).unwrap_or_default()
    }

    /// A file inside the root, as seen from outside (what was written under
    /// /usr is in the overlay's upper directory).
    pub fn path(&self, inside: &str) -> PathBuf {
        let rel = inside.trim_start_matches('/');
        match rel.strip_prefix("usr/") {
            Some(under_usr) => self.work.join("usr-upper").join(under_usr),
            None => self.dir.join(rel),
        }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The static agent built by `scripts/build-static-agent.sh`, beside the test's target directory.
pub fn static_agent() -> PathBuf {
    let debug = crate::bin("tether-agent");
    let target = debug
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_path_buf();
    let path = target.join("x86_64-unknown-linux-gnu/release/tether-agent");
    assert!(
        path.exists(),
        "{} not found: run scripts/build-static-agent.sh first (scripts/test.sh does)",
        path.display()
    );
    path
}
