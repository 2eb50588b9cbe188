//! `tether-bench`: starts a real coordinator (`tether serve`, as its own
//! process so its memory and CPU can be read on their own) and N simulated
//! agents in this process — each with its own registration, client
//! certificate, TLS connection and long poll, running the real agent code with
//! only the step executor swapped (`--executor noop`, or `sh` for real
//! `sh -c` steps under supervisors) — and measures:
//!
//! - registrations per second;
//! - fan-out: one send-command to all N until every result is stored, with
//!   p50/p99 invocation latency;
//! - steady state: coordinator RSS and CPU per idle connected agent;
//! - a reconnect storm: the coordinator killed and restarted under all N
//!   agents, until every one has polled again, with its peak load and the
//!   kernel's listen-queue overflows;
//! - history: list-commands / list-command-invocations latency over a
//!   synthetic history of M invocations.
//!
//! It also measures the floor — a bare tonic call answered once over N open
//! TLS connections — and gives figures as ratios to it, since absolute times
//! on shared machines drift. The last line printed is one JSON object with
//! every figure.
//!
//! With `--real-agents` the agents are real `tether-agent` processes instead
//! (see `real.rs`), and the one-node latency an operator's script sees is
//! measured too. Either way the commit and the machine (cores, memory) are
//! printed first and are in the JSON line.

mod console;
mod real;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use tether_agent::register::{self, RegisterArgs};
use tether_agent::run::{self, AgentConfig, Executor};
use tether_agent::state::StateDir;
use tether_cli as cli;
use tether_cli::OperatorConfig;
use tether_store::Store;
use tether_store::bench::SyntheticHistory;
use tether_util::now_ms;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tonic::transport::Channel;

#[derive(Parser, Debug)]
#[command(
    name = "tether-bench",
    about = "Measure a Tether coordinator under N agents: simulated, or real processes (--real-agents)"
)]
struct Args {
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Step executor of the simulated agents: noop or sh.
    #[arg(long, default_value = "noop", value_parser = ["noop", "sh"])]
    executor: String,
    /// Invocations of synthetic history for the list-latency figures (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    history_invocations: usize,
    /// Seconds of idle measurement for the steady-state figures.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Seconds after the last agent connected before the idle measurement
    /// begins (the first polls' looks, the audit trail's signing of the
    /// registrations and the first ping flushes settle meanwhile).
    #[arg(long, default_value_t = 2)]
    settle_secs: u64,
    /// Skip the reconnect storm.
    #[arg(long)]
    skip_storm: bool,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 64)]
    register_parallelism: usize,
    /// The `tether` binary (default: beside this one).
    #[arg(long)]
    tether: Option<PathBuf>,
    /// Where the coordinator's data and the agents' state go (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The coordinator's database (`tether serve --database`): an empty
    /// PostgreSQL database's `postgres://` URL (default: SQLite in the work directory).
    #[arg(long)]
    database: Option<String>,
    /// Run N real `tether-agent` processes (registered with `tether-agent
    /// register`, each with its own state directory, running real
    /// `/bin/true` steps) instead of simulated agents, and measure the
    /// one-node latency; no reconnect storm or history.
    #[arg(long)]
    real_agents: bool,
    /// With --real-agents: sends of the one-node latency (each a `tether
    /// send-command` process, then a `tether get-command-invocation` process
    /// every 50 ms until the status is terminal).
    #[arg(long, default_value_t = 20)]
    latency_sends: usize,
    /// With --real-agents: where the agents' state directories go (default:
    /// /dev/shm, as in the simulated mode; a disk shows a node's fsyncs).
    #[arg(long)]
    agents_dir: Option<PathBuf>,
    /// Who sends the commands and lists history: `root` (the bootstrap
    /// token, which skips policy evaluation) or `user` (an IAM user whose
    /// inline policy allows SendCommand only on documents and on managed
    /// instances tagged `Bench=1`, so every target is evaluated against
    /// a condition on its tags — what a team's operator costs).
    #[arg(long, default_value = "root", value_parser = ["root", "user"])]
    principal: String,
    /// The commit measured, as printed (default: `git rev-parse --short HEAD`
    /// of the current directory, `-dirty` when it has changes).
    #[arg(long)]
    commit: Option<String>,
    /// Measure the web console's fleet page over N registered instances
    /// (synthetic rows in the coordinator's database) instead of agents.
    #[arg(long, default_value_t = 0)]
    console_fleet: usize,
    /// With --console-fleet: requests of each page measured.
    #[arg(long, default_value_t = 30)]
    console_renders: usize,
    /// Internal: serve the floor's echo service and print its port and certificate.
    #[arg(long, hide = true)]
    floor_server: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The simulated agents' own logs, to stderr: errors unless TETHER_BENCH_LOG says otherwise.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TETHER_BENCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.floor_server {
        return rt.block_on(floor_server());
    }
    let result = rt.block_on(bench(args))?;
    println!("{result}");
    Ok(())
}

/// 10,000 agents need 10,000 sockets here and in the coordinator (which inherits it).
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn say(line: impl AsRef<str>) {
    eprintln!("tether-bench: {}", line.as_ref());
}

async fn bench(args: Args) -> anyhow::Result<Value> {
    let n = args.agents;
    if n == 0 {
        bail!("--agents must be at least 1");
    }
    let tmp = tempfile::tempdir()?;
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    // Agent state on tmpfs where there is one: the figures are the coordinator's, not this disk's.
    let agents_tmp = tempfile::tempdir_in(if Path::new("/dev/shm").is_dir() {
        Path::new("/dev/shm")
    } else {
        work.as_path()
    })?;
    let tether = match &args.tether {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("bench executable has no directory")?
            .join("tether"),
    };
    let commit = args.commit.clone().unwrap_or_else(git_commit);
    let (cores, mem_kb, cpu) = machine();
    say(format!(
        "commit {commit}; machine: {cores} cores ({cpu}), {} MiB memory",
        mem_kb / 1024
    ));
    let mut out = json!({"agents": n, "executor": args.executor,
                         "commit": commit, "cores": cores, "memory_kb": mem_kb, "cpu": cpu});
    if args.console_fleet > 0 {
        out["executor"] = json!("console");
        console::bench(&args, &tether, &work, &mut out).await?;
        return Ok(out);
    }
    if args.real_agents {
        out["executor"] = json!("real-agents");
        real::bench(&args, &tether, &work, &mut out).await?;
        return Ok(out);
    }

    // ----- floor -----
    let floor = floor_ms(n).await?;
    say(format!(
        "floor: one tonic call over each of {n} TLS connections in {floor:.1} ms"
    ));
    out["floor_ms"] = json!(round(floor));

    // ----- coordinator -----
    let mut coord = Coord::start(&tether, &work.join("coord"), args.database.clone()).await?;
    let cfg = cli::load_config(&coord.dir.join("operator.json"))
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let root = Operator::connect(cfg.clone()).await?;
    let cfg = match args.principal.as_str() {
        "user" => bench_user(&root).await?,
        _ => cfg,
    };
    let op = Operator::connect(cfg.clone()).await?;
    out["principal"] = json!(args.principal);
    let baseline = coord.sample()?;
    say(format!(
        "coordinator up: RSS {} KiB with no agent",
        baseline.rss_kb
    ));

    // ----- registration -----
    let mut activations = Vec::new();
    for _ in 0..n.div_ceil(1000) {
        let a = root
            .call(
                "CreateActivation",
                json!({"IamRole": "BenchRole", "RegistrationLimit": 1000,
                       "Tags": [{"Key": "Bench", "Value": "1"}]}),
            )
            .await?;
        activations.push((
            a["ActivationId"].as_str().unwrap_or_default().to_string(),
            a["ActivationCode"].as_str().unwrap_or_default().to_string(),
        ));
    }
    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(args.register_parallelism.max(1)));
    let mut set = JoinSet::new();
    for i in 0..n {
        let (id, code) = activations[i / 1000].clone();
        let dir = agents_tmp.path().join(format!("a{i}"));
        let endpoint = cfg.endpoint.clone();
        let pin = cfg.ca_pin.clone();
        let slots = slots.clone();
        set.spawn(async move {
            let _permit = slots.acquire().await;
            register::register(
                &StateDir::new(dir.clone()),
                RegisterArgs {
                    endpoint,
                    activation_id: id,
                    activation_code: code,
                    ca_pin: pin,
                    name: Some(format!("bench-{i}")),
                    force: false,
                },
            )
            .await
            .map(|_| dir)
        });
    }
    let mut dirs = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        dirs.push(r?.map_err(|e| anyhow::anyhow!("registration failed: {e}"))?);
    }
    let reg_secs = started.elapsed().as_secs_f64();
    say(format!(
        "registered {n} agents in {reg_secs:.2} s ({:.0}/s)",
        n as f64 / reg_secs
    ));
    out["registrations_per_sec"] = json!(round(n as f64 / reg_secs));

    // ----- agents -----
    let (stop_tx, stop_rx) = watch::channel(false);
    let agent_cfg = AgentConfig {
        executor: if args.executor == "sh" {
            Executor::Supervised
        } else {
            Executor::NoOp
        },
        agent_exe: tether.with_file_name("tether-agent"),
        ..AgentConfig::default()
    };
    let mut agents = JoinSet::new();
    let since = now_ms();
    for dir in dirs {
        let cfg = agent_cfg.clone();
        let mut stop = stop_rx.clone();
        agents.spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            run::run(StateDir::new(dir), cfg, shutdown).await
        });
    }
    let db = coord.db().await?;
    let connected = wait_polled(&db, n, since, Duration::from_secs(300)).await?;
    say(format!(
        "all {n} agents polling after {:.2} s",
        connected.as_secs_f64()
    ));

    // ----- steady state -----
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let a = coord.sample()?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let b = coord.sample()?;
    let rss_per_agent = (b.rss_kb.saturating_sub(baseline.rss_kb)) as f64 * 1024.0 / n as f64;
    let cpu_pct =
        (b.cpu_ticks - a.cpu_ticks) as f64 / ticks_per_sec() / args.idle_secs as f64 * 100.0;
    say(format!(
        "idle: coordinator RSS {} KiB = {:.1} KB per agent above its empty size; CPU {:.2}% of a core ({:.4}% per 1,000 agents)",
        b.rss_kb,
        rss_per_agent / 1000.0,
        cpu_pct,
        cpu_pct * 1000.0 / n as f64
    ));
    out["idle_rss_kb_total"] = json!(b.rss_kb);
    out["idle_rss_bytes_per_agent"] = json!(round(rss_per_agent));
    out["idle_cpu_pct"] = json!(round(cpu_pct));

    // ----- fan-out -----
    let FanOut {
        send_ms,
        total_ms: fanout_ms,
        cpu_ms: fanout_cpu_ms,
        lat,
        by_status,
        succeeded,
        completed,
    } = fan_out(&coord, &op, &db, n, "true", Duration::from_millis(20)).await?;
    out["send_command_ms"] = json!(round(send_ms));
    say(format!(
        "fan-out: {n} invocations done in {fanout_ms:.0} ms ({:.2}x the floor; send-command itself {send_ms:.0} ms; coordinator CPU {fanout_cpu_ms:.0} ms = {:.0} us per invocation); latency p50 {} ms, p99 {} ms; statuses {by_status:?}; CompletedCount {completed}",
        fanout_ms / floor,
        fanout_cpu_ms * 1000.0 / n as f64,
        pct(&lat, 50.0),
        pct(&lat, 99.0)
    ));
    out["fanout_total_ms"] = json!(round(fanout_ms));
    out["fanout_ratio_to_floor"] = json!(round(fanout_ms / floor));
    out["fanout_coordinator_cpu_ms"] = json!(round(fanout_cpu_ms));
    out["invocation_p50_ms"] = json!(pct(&lat, 50.0));
    out["invocation_p99_ms"] = json!(pct(&lat, 99.0));
    out["invocations_accounted"] = json!(lat.len());
    out["invocations_succeeded"] = json!(succeeded);
    out["command_completed_count"] = json!(completed);

    // ----- reconnect storm -----
    if !args.skip_storm {
        let overflows_before = listen_overflows();
        coord.kill();
        let since = now_ms();
        let started = Instant::now();
        coord.relaunch().await?;
        let ready = started.elapsed();
        let mut peak_rss = 0;
        let mut peak_cpu = 0.0f64;
        let mut last = coord.sample()?;
        let mut last_at = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let polled = polled_since(&db, since).await?;
            let s = coord.sample()?;
            let dt = last_at.elapsed().as_secs_f64();
            if dt > 0.05 {
                peak_cpu = peak_cpu
                    .max((s.cpu_ticks - last.cpu_ticks) as f64 / ticks_per_sec() / dt * 100.0);
                last = s;
                last_at = Instant::now();
            }
            peak_rss = peak_rss.max(s.rss_kb);
            if polled as usize >= n {
                break;
            }
            if Instant::now() > deadline {
                bail!("reconnect storm: only {polled} of {n} agents back in 300 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let storm_ms = started.elapsed().as_secs_f64() * 1000.0;
        let overflows = listen_overflows().saturating_sub(overflows_before);
        say(format!(
            "reconnect storm: coordinator ready in {:.2} s, all {n} agents back in {:.2} s ({:.1}x the floor); peak RSS {} KiB, peak CPU {:.0}%; listen-queue overflows {overflows}",
            ready.as_secs_f64(),
            storm_ms / 1000.0,
            storm_ms / floor,
            peak_rss,
            peak_cpu
        ));
        out["storm_ready_ms"] = json!(round(ready.as_secs_f64() * 1000.0));
        out["storm_all_back_ms"] = json!(round(storm_ms));
        out["storm_ratio_to_floor"] = json!(round(storm_ms / floor));
        out["storm_peak_rss_kb"] = json!(peak_rss);
        out["storm_peak_cpu_pct"] = json!(round(peak_cpu));
        out["storm_listen_overflows"] = json!(overflows);
    }

    // The agents are done with; history is measured without them.
    let _ = stop_tx.send(true);
    agents.abort_all();
    while agents.join_next().await.is_some() {}

    // ----- history -----
    if args.history_invocations > 0 {
        let started = Instant::now();
        let content = tether_documents::builtin_content("AWS-RunShellScript").unwrap_or_default();
        db.bench()
            .seed_history(SyntheticHistory {
                commands: args.history_invocations.div_ceil(PER_COMMAND),
                per_command: PER_COMMAND,
                now_ms: now_ms(),
                document_content: content,
            })
            .await?;
        say(format!(
            "history: {} synthetic invocations stored in {:.1} s",
            args.history_invocations,
            started.elapsed().as_secs_f64()
        ));
        let op = Operator::connect(cfg.clone()).await?;
        let commands = args.history_invocations.div_ceil(PER_COMMAND);
        let sample_cmd = db.bench().history_command(17.min(commands - 1)).await?;
        let mut worst: f64 = 0.0;
        for (label, operation, body) in [
            ("list-commands", "ListCommands", json!({"MaxResults": 50})),
            (
                "list-command-invocations --command-id",
                "ListCommandInvocations",
                json!({"CommandId": sample_cmd, "MaxResults": 50}),
            ),
            (
                "list-command-invocations --command-id --details",
                "ListCommandInvocations",
                json!({"CommandId": sample_cmd, "MaxResults": 50, "Details": true}),
            ),
            (
                "list-command-invocations",
                "ListCommandInvocations",
                json!({"MaxResults": 50}),
            ),
            (
                "list-commands (second page)",
                "ListCommands",
                json!({"MaxResults": 50, "NextToken": "b2Zmc2V0OjUw"}),
            ),
        ] {
            let mut times = Vec::new();
            for _ in 0..100 {
                let t = Instant::now();
                let r = op.call(operation, body.clone()).await?;
                times.push((t.elapsed().as_secs_f64() * 1_000_000.0) as i64);
                if r.as_object().is_none_or(|o| o.is_empty()) {
                    bail!("{label}: empty answer");
                }
            }
            let (p50, p99) = p50_p99_ms(&mut times);
            worst = worst.max(p99);
            say(format!(
                "history: {label}: p50 {p50:.2} ms, p99 {p99:.2} ms"
            ));
            out[format!("list_p99_ms: {label}")] = json!(round(p99));
        }
        out["history_invocations"] = json!(args.history_invocations);
        out["list_worst_p99_ms"] = json!(round(worst));
    }
    coord.kill();
    Ok(out)
}

/// The commit of the working directory, `-dirty` with uncommitted changes.
fn git_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head)
            if git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()) =>
        {
            format!("{head}-dirty")
        }
        Some(head) => head,
        None => "unknown".into(),
    }
}

/// Cores, memory (KiB) and CPU model of this machine.
fn machine() -> (usize, u64, String) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|v| v.split_once(':'))
        .map_or_else(|| "unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    (cores, mem_kb, cpu)
}

/// A process's resident memory, KiB (0 when it is gone).
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The p50 and p99 of timings in microseconds, in milliseconds (sorts them).
pub(crate) fn p50_p99_ms(times: &mut [i64]) -> (f64, f64) {
    times.sort_unstable();
    (
        pct(times, 50.0) as f64 / 1000.0,
        pct(times, 99.0) as f64 / 1000.0,
    )
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ticks_per_sec() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// The kernel's count of connections dropped because a listen queue was full.
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    if let [names, values] = lines.as_slice() {
        for (k, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if k == "ListenOverflows" {
                return v.parse().unwrap_or(0);
            }
        }
    }
    0
}

/// How many instances have polled since `since_ms` (pings are stored by the
/// coordinator's 2 s sweep).
async fn polled_since(db: &Store, since_ms: i64) -> anyhow::Result<i64> {
    Ok(db.bench().polled_since(since_ms).await?)
}

/// Waits until `n` instances have polled since `since_ms`.
async fn wait_polled(
    db: &Store,
    n: usize,
    since_ms: i64,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let polled = polled_since(db, since_ms).await?;
        if polled as usize >= n {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("only {polled} of {n} agents polled within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Commands of synthetic history hold this many invocations each.
const PER_COMMAND: usize = 100;

/// Coordinator memory and CPU, from /proc.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rss_kb: u64,
    cpu_ticks: u64,
}

/// `tether serve` as a child process.
struct Coord {
    bin: PathBuf,
    dir: PathBuf,
    /// `--database`, or the SQLite file in `dir`.
    database: String,
    listen: String,
    http_listen: String,
    child: Option<Child>,
}

impl Coord {
    async fn start(bin: &Path, dir: &Path, database: Option<String>) -> anyhow::Result<Coord> {
        let mut c = Coord {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            database: database
                .unwrap_or_else(|| dir.join("tether.db").to_string_lossy().into_owned()),
            listen: "127.0.0.1:0".into(),
            http_listen: "127.0.0.1:0".into(),
            child: None,
        };
        c.relaunch().await?;
        Ok(c)
    }

    /// Starts `tether serve` (again, on the same ports) and waits until it serves.
    async fn relaunch(&mut self) -> anyhow::Result<()> {
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--database", &self.database])
            .args(["--listen", &self.listen, "--http-listen", &self.http_listen])
            .arg("--audit-log")
            .arg(self.dir.join("audit").join("audit.log"))
            .env("TETHER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let stdout = tokio::process::ChildStdout::from_std(child.stdout.take().context("stdout")?)?;
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("gRPC listening on ") {
                self.listen = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
            if let Some(rest) = line.strip_prefix("HTTPS listening on ") {
                self.http_listen = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
            if line.starts_with("operator config:") {
                // Keep draining so the child never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                self.child = Some(child);
                return Ok(());
            }
        }
        bail!("tether serve exited before it was ready")
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn sample(&self) -> anyhow::Result<Sample> {
        let pid = self.child.as_ref().context("coordinator not running")?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let after = stat.rsplit_once(')').map_or("", |x| x.1);
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok(Sample {
            rss_kb,
            cpu_ticks: ticks(11) + ticks(12),
        })
    }

    /// A connection to the coordinator's database, for counting and for
    /// seeding history (opened after the coordinator has migrated it).
    async fn db(&self) -> anyhow::Result<Store> {
        Ok(Store::open_url(&self.database).await?)
    }
}

impl Drop for Coord {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The operator side, through the same client the CLI uses.
/// The IAM user `bench-operator` with the bench's policy, and an operator
/// configuration carrying a token of its own.
async fn bench_user(root: &Operator) -> anyhow::Result<OperatorConfig> {
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Documents", "Effect": "Allow", "Action": "ssm:SendCommand",
             "Resource": "arn:aws:ssm:*:*:document/*"},
            {"Sid": "TaggedNodes", "Effect": "Allow", "Action": "ssm:SendCommand",
             "Resource": "arn:aws:ssm:*:*:managed-instance/*",
             "Condition": {"StringEquals": {"ssm:resourceTag/Bench": "1"}}},
            {"Sid": "Read", "Effect": "Allow",
             "Action": ["ssm:List*", "ssm:Get*", "ssm:Describe*"], "Resource": "*"},
            {"Sid": "KeepDocuments", "Effect": "Deny", "Action": "ssm:DeleteDocument",
             "Resource": "*"}
        ]
    });
    root.call("CreateUser", json!({"UserName": "bench-operator"}))
        .await?;
    root.call(
        "PutUserPolicy",
        json!({"UserName": "bench-operator", "PolicyName": "bench",
               "PolicyDocument": policy.to_string()}),
    )
    .await?;
    let v = root
        .call(
            "CreateOperatorConfig",
            json!({"UserName": "bench-operator"}),
        )
        .await?;
    Ok(serde_json::from_value(v)?)
}

/// What one fan-out cost: see [`fan_out`].
struct FanOut {
    send_ms: f64,
    total_ms: f64,
    /// The coordinator's CPU over the whole fan-out.
    cpu_ms: f64,
    /// Each invocation's send-to-stored latency, sorted.
    lat: Vec<i64>,
    by_status: Vec<(String, i64)>,
    succeeded: i64,
    /// The command's CompletedCount as ListCommands answers it.
    completed: i64,
}

/// Sends `script` to every agent tagged `Bench=1` (MaxConcurrency and
/// MaxErrors 100 %), then reads the command's own tally (one row, not a
/// count over its invocations) every `poll` until all `n` invocations are
/// stored, within 600 s.
async fn fan_out(
    coord: &Coord,
    op: &Operator,
    db: &Store,
    n: usize,
    script: &str,
    poll: Duration,
) -> anyhow::Result<FanOut> {
    let cpu_before = coord.sample()?.cpu_ticks;
    let started = Instant::now();
    let sent = op
        .call(
            "SendCommand",
            json!({"DocumentName": "AWS-RunShellScript",
                   "Targets": [{"Key": "tag:Bench", "Values": ["1"]}],
                   "MaxConcurrency": "100%", "MaxErrors": "100%",
                   "Parameters": {"commands": [script]}}),
        )
        .await?;
    let command_id = sent["Command"]["CommandId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let send_ms = started.elapsed().as_secs_f64() * 1000.0;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = db.bench().completed_count(&command_id).await?;
        if done as usize >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("fan-out: only {done} of {n} invocations finished in 600 s");
        }
        tokio::time::sleep(poll).await;
    }
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Coordinator CPU per invocation: what the fan-out cost it, whatever
    // else the machine was doing meanwhile.
    let cpu_ms = (coord.sample()?.cpu_ticks - cpu_before) as f64 / ticks_per_sec() * 1000.0;
    let lat = db.bench().latencies_ms(&command_id).await?;
    let by_status = db.bench().status_counts(&command_id).await?;
    let succeeded = by_status
        .iter()
        .find(|(s, _)| s == "Success")
        .map_or(0, |x| x.1);
    let cmd = op
        .call("ListCommands", json!({"CommandId": command_id}))
        .await?;
    let completed = cmd["Commands"][0]["CompletedCount"].as_i64().unwrap_or(-1);
    Ok(FanOut {
        send_ms,
        total_ms,
        cpu_ms,
        lat,
        by_status,
        succeeded,
        completed,
    })
}

struct Operator {
    channel: Channel,
    token: String,
}

impl Operator {
    async fn connect(cfg: OperatorConfig) -> anyhow::Result<Operator> {
        let channel = cli::connect(&cfg)
            .await
            .map_err(|e| anyhow::anyhow!(e.to_string()))?;
        Ok(Operator {
            channel,
            token: cfg.token,
        })
    }

    async fn call(&self, operation: &str, body: Value) -> anyhow::Result<Value> {
        cli::call(self.channel.clone(), &self.token, operation, &body)
            .await
            .map_err(|e| anyhow::anyhow!(e.to_string()))
    }
}

// ----- the floor: a bare tonic service over N TLS connections -----

struct Echo;

#[tonic::async_trait]
impl tether_proto::registration_server::Registration for Echo {
    async fn register(
        &self,
        _: tonic::Request<tether_proto::RegisterRequest>,
    ) -> Result<tonic::Response<tether_proto::RegisterResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("echo only"))
    }

    async fn server_time(
        &self,
        _: tonic::Request<tether_proto::ServerTimeRequest>,
    ) -> Result<tonic::Response<tether_proto::ServerTimeResponse>, tonic::Status> {
        Ok(tonic::Response::new(tether_proto::ServerTimeResponse {
            server_time_ms: 1,
        }))
    }
}

/// The floor's server: the bare echo service over TLS, in its own process as
/// the coordinator is. Prints `PORT` and then the certificate PEM, and serves
/// until its standard input closes.
async fn floor_server() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let identity =
        tonic::transport::Identity::from_pem(cert.cert.pem(), cert.signing_key.serialize_pem());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    print!("{}", cert.cert.pem());
    println!("END");
    let stdin_closed = async {
        let mut buf = String::new();
        let mut stdin = BufReader::new(tokio::io::stdin());
        while matches!(stdin.read_line(&mut buf).await, Ok(n) if n > 0) {}
    };
    tonic::transport::Server::builder()
        .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?
        .add_service(tether_proto::registration_server::RegistrationServer::new(
            Echo,
        ))
        .serve_with_incoming_shutdown(tokio_stream_listener(listener), stdin_closed)
        .await?;
    Ok(())
}

/// Milliseconds to answer one unary call on each of `n` already open TLS
/// connections, all at once: what no coordinator can beat on this machine.
async fn floor_ms(n: usize) -> anyhow::Result<f64> {
    let mut server = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--floor-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(server.stdout.take().context("floor server stdout")?).lines();
    let port: u16 = lines
        .next_line()
        .await?
        .context("floor server said nothing")?
        .trim()
        .parse()?;
    let mut pem = String::new();
    while let Some(line) = lines.next_line().await? {
        if line == "END" {
            break;
        }
        pem.push_str(&line);
        pem.push('\n');
    }
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pem))
        .domain_name("localhost");
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        let ch = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
            .tls_config(tls.clone())?
            .connect()
            .await?;
        channels.push(ch);
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for ch in channels.iter().cloned() {
        set.spawn(async move {
            tether_proto::registration_client::RegistrationClient::new(ch)
                .server_time(tether_proto::ServerTimeRequest {})
                .await
        });
    }
    while let Some(r) = set.join_next().await {
        r?.map_err(|s| anyhow::anyhow!("floor call failed: {s}"))?;
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    drop(channels);
    drop(server.stdin.take());
    let _ = server.wait().await;
    Ok(ms)
}

/// A TCP listener as the stream of connections tonic serves.
fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::wrappers::TcpListenerStream::new(listener)
}
