//! Harness for the end-to-end tests: starts the real `tether` and
//! `tether-agent` binaries on loopback in temporary directories, drives the CLI
//! as a user would, and kills every process it started when dropped.
//!
//! The binaries are looked up next to the test executable's `deps/` directory
//! (`target/debug/`), so build them first: `cargo build --workspace`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod aws;
pub mod chaos;
pub mod closed_port;
pub mod netns;
pub mod postgres;
pub mod raw;
pub mod relay;
pub mod root;

/// `TETHER_TEST_DATABASE=postgres` runs every test coordinator on PostgreSQL
/// (a fresh database each) instead of SQLite in its data directory.
pub const DATABASE_ENV: &str = "TETHER_TEST_DATABASE";

/// A running PostgreSQL server (URL without a database) for those databases;
/// without it each coordinator starts a cluster of its own.
pub const PG_URL_ENV: &str = "TETHER_TEST_PG_URL";

/// Path of a workspace binary built beside the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace` before the tests",
        path.display()
    );
    path
}

/// Polls `f` until it returns Some, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A command for `program` run under `wrap`, a command prefix such as
/// `ip netns exec NAME` or `nsenter -t PID -m --` (empty: run directly). Both
/// exec the program in place, so the child's PID is the program's own.
pub fn wrapped(wrap: &[String], program: impl AsRef<std::ffi::OsStr>) -> Command {
    match wrap.split_first() {
        Some((first, rest)) => {
            let mut cmd = Command::new(first);
            cmd.args(rest).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn kill(child: &mut Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, signal);
    let _ = child.wait();
}

/// The JSON a command that must have succeeded printed (`Null` for nothing);
/// panics naming `what` otherwise.
pub fn success_json(what: &str, out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed invalid JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Where a test coordinator keeps its state when it is not the SQLite file
/// in its data directory.
pub struct TestDatabase {
    /// `postgres://...` URL passed as `tether serve --database`.
    pub url: String,
    /// The database's name on the server.
    name: String,
    /// The server's URL when the database lives on a shared server (it is
    /// dropped with the coordinator).
    shared_server: Option<String>,
    /// The cluster started for this coordinator alone (stopped with it).
    _cluster: Option<postgres::PgCluster>,
}

impl TestDatabase {
    /// The database `TETHER_TEST_DATABASE` asks for: None for SQLite (unset,
    /// empty or `sqlite`); for `postgres`, a new database on the server at
    /// `TETHER_TEST_PG_URL` or, without it, on a cluster of its own.
    pub fn from_env() -> Option<TestDatabase> {
        match std::env::var(DATABASE_ENV).unwrap_or_default().as_str() {
            "" | "sqlite" => None,
            "postgres" => Some(Self::postgres()),
            other => panic!("{DATABASE_ENV}={other:?}: expected `sqlite` or `postgres`"),
        }
    }

    /// A fresh database on PostgreSQL (see [`TestDatabase::from_env`]).
    pub fn postgres() -> TestDatabase {
        let name = postgres::unique_database_name("e2e");
        match std::env::var(PG_URL_ENV) {
            Ok(server) if !server.is_empty() => TestDatabase {
                url: postgres::create_database(&server, &name),
                name,
                shared_server: Some(server),
                _cluster: None,
            },
            _ => {
                let cluster = postgres::PgCluster::start();
                TestDatabase {
                    url: cluster.create_database(&name),
                    name,
                    shared_server: None,
                    _cluster: Some(cluster),
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(server) = &self.shared_server
            && let Err(e) = postgres::drop_database(server, &self.name)
        {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// A running `tether serve`.
pub struct Coordinator {
    pub dir: PathBuf,
    pub port: u16,
    pub http_port: u16,
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    pub stdout: Vec<String>,
    /// PostgreSQL when `TETHER_TEST_DATABASE=postgres`, else None (SQLite in
    /// `dir`); dropped only after `Drop` has killed the coordinator.
    pub database: Option<TestDatabase>,
    /// Prefix of its command lines and of the CLI's (see [`wrapped`]).
    pub wrap: Vec<String>,
    /// Host of both listeners (default 127.0.0.1).
    pub listen_host: String,
}

impl Coordinator {
    /// Starts a coordinator with its data in `dir/coord`. The first start lets
    /// the kernel pick the ports (no race with other tests); restarts reuse
    /// them, where the agents expect the coordinator, and the database.
    pub fn start(dir: &Path) -> Coordinator {
        Self::start_with_env(dir, &[])
    }

    /// As [`Coordinator::start`], with extra environment. A test that names
    /// the database itself (`TETHER_DATABASE`, e.g. replicas sharing one)
    /// keeps it in both passes.
    pub fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Coordinator {
        Self::start_in(dir, &[], "127.0.0.1", env)
    }

    /// As [`Coordinator::start_with_env`], run under `wrap` (and its CLI too)
    /// and listening on `listen_host` (e.g. `0.0.0.0` inside a network namespace).
    pub fn start_in(
        dir: &Path,
        wrap: &[String],
        listen_host: &str,
        env: &[(&str, &str)],
    ) -> Coordinator {
        let own_database = env.iter().any(|(k, _)| *k == "TETHER_DATABASE");
        let mut c = Coordinator {
            dir: dir.join("coord"),
            port: 0,
            http_port: 0,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            stdout: Vec::new(),
            database: if own_database {
                None
            } else {
                TestDatabase::from_env()
            },
            wrap: wrap.to_vec(),
            listen_host: listen_host.to_string(),
        };
        c.launch();
        c
    }

    fn launch(&mut self) {
        let mut cmd = wrapped(&self.wrap, bin("tether"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--listen")
            .arg(format!("{}:{}", self.listen_host, self.port))
            .arg("--http-listen")
            .arg(format!("{}:{}", self.listen_host, self.http_port))
            .args(
                self.database
                    .iter()
                    .flat_map(|d| ["--database", d.url.as_str()]),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.with_extension("log"))
                    .expect("coordinator log file"),
            ));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // The audit mirror goes beside the data directory, unless the test
        // names its own.
        if !self.env.iter().any(|(k, _)| k == "TETHER_AUDIT_LOG") {
            cmd.arg("--audit-log").arg(self.audit_log());
        }
        let mut child = cmd.spawn().expect("start tether serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with("operator config:");
                    lines.push(line);
                    if done {
                        break;
                    }
                }
                Err(_) => panic!(
                    "tether serve did not start; stdout so far: {lines:?}; log: {}",
                    std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
                ),
            }
        }
        let bound = |prefix: &str| -> u16 {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no {prefix:?} line in {lines:?}"))
        };
        self.port = bound("gRPC listening on ");
        self.http_port = bound("HTTPS listening on ");
        self.stdout = lines;
        self.child = Some(child);
    }

    /// The audit mirror the harness gives it (`--audit-log`): `coord.audit/audit.log`
    /// beside its data directory.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.with_extension("audit").join("audit.log")
    }

    /// Runs `statement` directly on the coordinator's database, as someone
    /// with write access to it alone could (`sqlite3` on its SQLite file,
    /// `psql` on PostgreSQL); returns the output, one row a line.
    pub fn sql(&self, statement: &str) -> String {
        if let Some(db) = &self.database {
            return postgres::psql(&db.url, statement);
        }
        let out = Command::new("sqlite3")
            .arg(self.dir.join("tether.db"))
            .args(["-cmd", ".timeout 10000", statement])
            .stdin(Stdio::null())
            .output()
            .expect("run sqlite3 (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "sqlite3 {statement:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the coordinator (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Kills the coordinator without warning (SIGKILL).
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Starts it again on the same data directory and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The running coordinator's process ID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its resident memory now, in KiB (`VmRSS` of /proc), if it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn operator_json(&self) -> PathBuf {
        self.dir.join("operator.json")
    }

    /// operator.json, parsed.
    pub fn operator(&self) -> Value {
        let text = std::fs::read_to_string(self.operator_json()).expect("operator.json");
        serde_json::from_str(&text).expect("operator.json is JSON")
    }

    pub fn endpoint(&self) -> String {
        self.operator()["Endpoint"]
            .as_str()
            .expect("Endpoint")
            .to_string()
    }

    pub fn ca_pin(&self) -> String {
        self.operator()["CaPin"]
            .as_str()
            .expect("CaPin")
            .to_string()
    }

    /// Runs `tether --config operator.json ARGS`.
    pub fn cli(&self, args: &[&str]) -> Output {
        wrapped(&self.wrap, bin("tether"))
            .arg("--config")
            .arg(self.operator_json())
            .args(args)
            .output()
            .expect("run tether")
    }

    /// Runs a CLI verb that must succeed and returns its JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        success_json(&format!("tether {args:?}"), &self.cli(args))
    }

    /// Creates an activation; returns (id, code).
    pub fn activation(&self, limit: u32) -> (String, String) {
        let v = self.json(&[
            "create-activation",
            "--iam-role",
            "SSMServiceRole",
            "--default-instance-name",
            "testnode",
            "--registration-limit",
            &limit.to_string(),
        ]);
        (
            v["ActivationId"]
                .as_str()
                .expect("ActivationId")
                .to_string(),
            v["ActivationCode"]
                .as_str()
                .expect("ActivationCode")
                .to_string(),
        )
    }

    /// Sends AWS-RunShellScript with these commands; returns the command ID.
    pub fn send(&self, instance_ids: &[&str], parameters: &Value) -> String {
        let params = parameters.to_string();
        let mut args = vec![
            "send-command",
            "--document-name",
            "AWS-RunShellScript",
            "--parameters",
            &params,
            "--instance-ids",
        ];
        args.extend_from_slice(instance_ids);
        let v = self.json(&args);
        v["Command"]["CommandId"]
            .as_str()
            .expect("CommandId")
            .to_string()
    }

    pub fn invocation(&self, command_id: &str, instance_id: &str) -> Value {
        self.json(&[
            "get-command-invocation",
            "--command-id",
            command_id,
            "--instance-id",
            instance_id,
        ])
    }

    /// Waits until the invocation reaches a terminal status and returns it.
    pub fn wait_invocation(&self, command_id: &str, instance_id: &str, timeout: Duration) -> Value {
        wait_for(
            &format!("invocation {command_id} on {instance_id} to finish"),
            timeout,
            || {
                let v = self.invocation(command_id, instance_id);
                let s = v["Status"].as_str().unwrap_or("");
                (!matches!(s, "Pending" | "InProgress" | "Delayed" | "Cancelling")).then_some(v)
            },
        )
    }

    /// Waits until `instance_id` shows as Online.
    pub fn wait_online(&self, instance_id: &str, timeout: Duration) {
        wait_for(&format!("{instance_id} to come Online"), timeout, || {
            let v = self.json(&["describe-instance-information"]);
            v["InstanceInformationList"]
                .as_array()?
                .iter()
                .any(|i| i["InstanceId"] == instance_id && i["PingStatus"] == "Online")
                .then_some(())
        });
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.crash();
    }
}

/// A registered node: state and log directories, and its daemon when running.
pub struct Agent {
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    pub instance_id: String,
    /// Extra environment for the daemon (set before `run`).
    pub env: Vec<(String, String)>,
    /// Prefix of the daemon's command line (see [`wrapped`]).
    pub wrap: Vec<String>,
    /// The agent binary the daemon runs (set before `run`; the update tests
    /// give each node a copy of its own, which its self-update replaces).
    pub program: PathBuf,
    child: Option<Child>,
}

/// Runs `tether-agent register` and returns its output.
pub fn register(state_dir: &Path, endpoint: &str, id: &str, code: &str, pin: &str) -> Output {
    register_in(&[], state_dir, endpoint, id, code, pin)
}

/// As [`register`], run under `wrap`.
pub fn register_in(
    wrap: &[String],
    state_dir: &Path,
    endpoint: &str,
    id: &str,
    code: &str,
    pin: &str,
) -> Output {
    wrapped(wrap, bin("tether-agent"))
        .args([
            "register",
            "--endpoint",
            endpoint,
            "--id",
            id,
            "--code",
            code,
            "--ca-pin",
            pin,
        ])
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .expect("run tether-agent register")
}

impl Agent {
    /// Registers a node in `dir/<name>` with a fresh activation and starts its daemon.
    pub fn start(dir: &Path, name: &str, coord: &Coordinator) -> Agent {
        Self::start_with_env(dir, name, coord, &[])
    }

    /// As [`Agent::start`], with extra environment for the daemon.
    pub fn start_with_env(
        dir: &Path,
        name: &str,
        coord: &Coordinator,
        env: &[(&str, &str)],
    ) -> Agent {
        let (id, code) = coord.activation(1);
        Self::start_with_activation(dir, name, coord, (&id, &code), env)
    }

    /// Registers a node with the given activation (ID, code) and starts its daemon.
    pub fn start_with_activation(
        dir: &Path,
        name: &str,
        coord: &Coordinator,
        (id, code): (&str, &str),
        env: &[(&str, &str)],
    ) -> Agent {
        Self::start_in(dir, name, coord, &[], (id, code), env)
    }

    /// As [`Agent::start_with_activation`], registering and running under `wrap`.
    pub fn start_in(
        dir: &Path,
        name: &str,
        coord: &Coordinator,
        wrap: &[String],
        (id, code): (&str, &str),
        env: &[(&str, &str)],
    ) -> Agent {
        let mut a = Self::register_in(
            wrap,
            dir,
            name,
            &coord.endpoint(),
            &coord.ca_pin(),
            (id, code),
        );
        a.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        a.run();
        coord.wait_online(&a.instance_id, Duration::from_secs(20));
        a
    }

    /// Registers a node in `dir/<name>` through `endpoint` (one, or a comma
    /// list) without starting its daemon; panics if registration fails.
    pub fn register(
        dir: &Path,
        name: &str,
        endpoint: &str,
        pin: &str,
        (id, code): (&str, &str),
    ) -> Agent {
        Self::register_in(&[], dir, name, endpoint, pin, (id, code))
    }

    /// As [`Agent::register`], registering (and later running) under `wrap`.
    pub fn register_in(
        wrap: &[String],
        dir: &Path,
        name: &str,
        endpoint: &str,
        pin: &str,
        (id, code): (&str, &str),
    ) -> Agent {
        let state_dir = dir.join(name);
        let out = register_in(wrap, &state_dir, endpoint, id, code, pin);
        assert!(
            out.status.success(),
            "register failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Agent {
            log_dir: dir.join(format!("{name}-log")),
            state_dir,
            instance_id: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            env: Vec::new(),
            wrap: wrap.to_vec(),
            program: bin("tether-agent"),
            child: None,
        }
    }

    /// Starts (or restarts) the daemon.
    pub fn run(&mut self) {
        let mut cmd = wrapped(&self.wrap, &self.program);
        // Test defaults first, so that a test's own environment overrides them
        // (no upload jitter in tests unless a test asks for it).
        cmd.env("TETHER_AGENT_MAX_BACKOFF_SECS", "2")
            .env("TETHER_AGENT_REBOOT_COMMAND", "true")
            .env("TETHER_AGENT_UPLOAD_JITTER_SECS", "0")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = cmd
            .arg("run")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--log-dir")
            .arg(&self.log_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tether-agent run");
        self.child = Some(child);
    }

    /// The daemon's pid, while `run` started it and it was not reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the daemon `run` started has exited (reaping it).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Kills the daemon without warning (SIGKILL); its running steps go on.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, nix::sys::signal::Signal::SIGKILL);
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_dir.join("agent.log")).unwrap_or_default()
    }

    /// Whether agent.log has a line with `message` about `id` (a command or
    /// association ID), e.g. `logged("command accepted", &command_id)`.
    pub fn logged(&self, message: &str, id: &str) -> bool {
        self.log()
            .lines()
            .any(|l| l.contains(message) && l.contains(id))
    }

    /// Runs `tether-agent status` with no proxy but what `env` sets; returns
    /// whether it exited 0, and its output.
    pub fn status(&self, env: &[(&str, &str)]) -> (bool, String) {
        let out = Command::new(bin("tether-agent"))
            .args(["status", "--state-dir"])
            .arg(&self.state_dir)
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .envs(env.iter().copied())
            .output()
            .expect("run tether-agent status");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Points the stored registration at other endpoints (one, or a comma list).
    pub fn set_endpoint(&self, endpoint: &str) {
        let path = self.state_dir.join("registration.json");
        let mut reg: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("registration.json"))
                .expect("registration.json is JSON");
        reg["Endpoint"] = endpoint.into();
        std::fs::write(&path, reg.to_string()).expect("write registration.json");
    }

    pub fn errors_log(&self) -> String {
        std::fs::read_to_string(self.log_dir.join("errors.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.crash();
    }
}

/// Established TCP connections to `port` on this machine (`ss`): a replica's
/// agents, by their open polls.
pub fn connections_to(port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-Htn", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// `tether --config CONFIG ARGS`: the tether CLI as the operator `config`
/// names (a user's operator config, a rotated root's).
pub fn tether_as(config: &Path, args: &[&str]) -> Output {
    Command::new(bin("tether"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run tether")
}

/// A process's standard error, as text.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
