//! A real PostgreSQL server for the tests: Debian's binaries
//! (`/usr/lib/postgresql/<version>/bin`, the newest version installed) run a
//! throwaway cluster in a fresh temporary directory, listening only on
//! 127.0.0.1 at a free port and on a unix socket inside that directory, with
//! trust authentication and no fsync. [`PgCluster`] stops the server and
//! removes the directory when dropped. Databases are made and queried through
//! `psql`, so this module needs no PostgreSQL client library and never speaks
//! the wire protocol itself. It never skips: without the binaries it panics
//! naming the package to install.
//!
//! As root (CI, `scripts/test.sh`) the server runs as Debian's `postgres` user,
//! since `initdb` and `postgres` refuse to run as root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

/// Where Debian's `postgresql-<version>` packages put the server binaries.
pub const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

/// Connections the server accepts: three coordinators, each with a full pool,
/// plus the tests' own `psql` calls.
pub const MAX_CONNECTIONS: u32 = 300;

/// How long `pg_ctl` may wait for the server to start or stop.
const PG_CTL_WAIT_SECS: u32 = 60;

/// Attempts at a free port (another process may take the one we picked
/// between our probe and the server's bind).
const PORT_ATTEMPTS: u32 = 5;

/// The role every test connects as (made by `initdb -U`).
pub const SUPERUSER: &str = "postgres";

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`; panics
/// naming the Debian package when there is none.
pub fn bin_dir() -> PathBuf {
    let newest = std::fs::read_dir(DEBIAN_PG_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server binaries in {DEBIAN_PG_ROOT}/<version>/bin/initdb: \
             install Debian's `postgresql` package (as root: apt-get install postgresql; \
             scripts/test.sh does this)"
        ),
    }
}

/// A database name no other test, in this process or another one running at
/// the same time on the same server, will pick: pid, time and a counter.
pub fn unique_database_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or_default();
    format!("{prefix}_{}_{millis}_{n}", std::process::id())
}

/// Checks that `name` is safe to put in SQL unquoted: lowercase letters,
/// digits and `_`, starting with a letter, at most 63 bytes (PostgreSQL's limit).
fn check_database_name(name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    assert!(
        ok,
        "database name {name:?}: use 1-63 lowercase letters, digits and _, starting with a letter"
    );
}

/// The URL of database `name` on the server at `server_url` (a URL without a
/// database, such as `postgres://postgres@127.0.0.1:5432`).
pub fn database_url(server_url: &str, name: &str) -> String {
    format!("{}/{name}", server_url.trim_end_matches('/'))
}

/// Runs `sql` with `psql` against the database at `url`, stopping at the
/// first error; returns its unaligned, tuples-only output. Panics with psql's
/// error otherwise.
pub fn psql(url: &str, sql: &str) -> String {
    let out = psql_output(url, sql);
    assert!(
        out.status.success(),
        "psql {url} -c {sql:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn psql_output(url: &str, sql: &str) -> Output {
    Command::new(bin_dir().join("psql"))
        .args([
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-d",
            url,
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .expect("run psql")
}

/// Creates database `name` on the server at `server_url` and returns its URL.
pub fn create_database(server_url: &str, name: &str) -> String {
    check_database_name(name);
    psql(
        &database_url(server_url, "postgres"),
        &format!("CREATE DATABASE {name}"),
    );
    database_url(server_url, name)
}

/// Drops database `name` on the server at `server_url`, closing any
/// connection still open to it. Errors are returned, not raised, so that a
/// `Drop` can call it.
pub fn drop_database(server_url: &str, name: &str) -> Result<(), String> {
    check_database_name(name);
    let out = psql_output(
        &database_url(server_url, "postgres"),
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The `postgres` user's uid and gid when we are root (the server refuses to
/// run as root); `None` when we can run it ourselves.
fn server_user() -> Option<nix::unistd::User> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    match nix::unistd::User::from_name(SUPERUSER) {
        Ok(Some(user)) => Some(user),
        _ => panic!(
            "running as root, but there is no `{SUPERUSER}` user to run PostgreSQL as: \
             install Debian's `postgresql` package (it creates the user)"
        ),
    }
}

/// A throwaway PostgreSQL cluster and its running server.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    user: Option<nix::unistd::User>,
    /// How long [`PgCluster::start`] took (initdb and server start).
    pub started_in: Duration,
}

impl PgCluster {
    /// Creates a cluster in a fresh temporary directory and starts its server
    /// on 127.0.0.1 at a free port; returns once it accepts connections.
    pub fn start() -> PgCluster {
        let began = Instant::now();
        let bin = bin_dir();
        let user = server_user();
        let dir = tempfile::Builder::new()
            .prefix("tether-pg-")
            .tempdir()
            .expect("temporary directory for the PostgreSQL cluster");
        // Only the server's user (and root) may reach its socket: trust
        // authentication lets anyone who can connect in.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("make the cluster directory private");
        if let Some(u) = &user {
            nix::unistd::chown(dir.path(), Some(u.uid), Some(u.gid))
                .expect("give the cluster directory to the postgres user");
        }
        let mut cluster = PgCluster {
            dir,
            bin,
            port: 0,
            user,
            started_in: Duration::ZERO,
        };
        cluster.init();
        cluster.start_server();
        cluster.started_in = began.elapsed();
        cluster
    }

    /// The data directory (PGDATA).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The cluster's temporary directory (data, socket, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's URL, without a database: `postgres://postgres@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        create_database(&self.url(), name)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The postmaster's pid, from `postmaster.pid` (None once it is gone).
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A command for one of the server binaries, run as the server's user.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        if let Some(u) = &self.user {
            cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        }
        cmd
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn init(&self) {
        let data = self.data_dir();
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        if let Err(e) = self.run("initdb", &mut cmd) {
            panic!("{e}");
        }
        // Only loopback and our own socket; durability is not what tests need.
        let settings = format!(
            "\n# tether tests\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             max_connections = {MAX_CONNECTIONS}\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            self.dir.path().display()
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .expect("append the test settings to postgresql.conf");
    }

    fn start_server(&mut self) {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut cmd = self.command("pg_ctl");
            cmd.arg("start")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", &PG_CTL_WAIT_SECS.to_string()])
                .args(["-o", &format!("-p {port}")])
                // pg_ctl's server would otherwise keep our stdout open.
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            match self.run("pg_ctl start", &mut cmd) {
                Ok(()) => {
                    self.port = port;
                    return;
                }
                Err(e) => {
                    let log = self.log();
                    last = format!("{e}\nserver log:\n{log}");
                    if !log.contains("could not bind") && !log.contains("in use") {
                        break;
                    }
                }
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    /// Stops the server (`pg_ctl stop -m MODE`: `fast` ends every session
    /// and checkpoints, `immediate` stops as a crash would, recovering from
    /// the WAL at the next start) for a test that restarts it; see
    /// [`PgCluster::start_again`].
    pub fn stop_server(&self, mode: StopMode) {
        self.stop_with(mode);
    }

    /// Starts the stopped server again on the same port and data; returns
    /// once it accepts connections.
    pub fn start_again(&mut self) {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", &PG_CTL_WAIT_SECS.to_string()])
            .args(["-o", &format!("-p {}", self.port)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Err(e) = self.run("pg_ctl start", &mut cmd) {
            panic!(
                "PostgreSQL did not start again: {e}\nserver log:\n{}",
                self.log()
            );
        }
    }

    /// Makes commits durable across a server crash: the test settings turn
    /// `synchronous_commit` off, which may lose the last commits (already
    /// acknowledged) when the server is stopped `immediate`.
    pub fn synchronous_commit(&self) {
        let url = database_url(&self.url(), "postgres");
        psql(&url, "ALTER SYSTEM SET synchronous_commit = on");
        psql(&url, "SELECT pg_reload_conf()");
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), killing it if
    /// that fails.
    fn stop(&self) {
        self.stop_with(StopMode::Immediate);
    }

    fn stop_with(&self, mode: StopMode) {
        let pid = self.pid();
        if pid.is_none() {
            return;
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop").arg("-D").arg(self.data_dir()).args([
            "-m",
            mode.as_str(),
            "-w",
            "-t",
            &PG_CTL_WAIT_SECS.to_string(),
        ]);
        if let (Err(e), Some(pid)) = (self.run("pg_ctl stop", &mut cmd), pid) {
            eprintln!("{e}; killing the server (pid {pid})");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// How [`PgCluster::stop_server`] stops the server (`pg_ctl stop -m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Sessions ended, a checkpoint, a clean shutdown.
    Fast,
    /// Every process killed at once; the next start recovers from the WAL.
    Immediate,
}

impl StopMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
        // The temporary directory goes with `self.dir`.
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}
