//! `tether-bench --real-agents`: N real `tether-agent` processes on this
//! machine, each registered with `tether-agent register` into a state
//! directory of its own and run as `tether-agent run`, against a real
//! coordinator, executing real `AWS-RunShellScript` steps (`/bin/true`) under
//! their supervisors. Measures what the simulated mode measures — fan-out
//! until every result is stored, the coordinator's CPU per invocation,
//! send-command's answer time, idle coordinator RSS and CPU per agent — and
//! the one-node latency an operator's script sees: a `tether send-command`
//! process, then a new `tether get-command-invocation` process every 50 ms
//! until the status is terminal, from the start of the first to the end of
//! the last, `--latency-sends` times.
//!
//! Floors, measured in the same run: N `sh -c /bin/true` spawned at once and
//! waited for (what N real steps cost this machine), one such spawn (median),
//! and one `tether` CLI call (a new process: start, TLS, one call; median).
//! The one-node floor is one step plus two CLI calls (the send and the poll
//! that sees the result).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tether_util::now_ms;
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::{Args, Coord, FanOut, Operator, fan_out, pct, round, say, ticks_per_sec, wait_polled};

/// Polls of the one-node latency: a new CLI process at most this often.
const CLI_POLL: Duration = Duration::from_millis(50);
/// Statuses of `get-command-invocation` that end the wait.
const TERMINAL: [&str; 4] = ["Success", "Failed", "Cancelled", "TimedOut"];

/// The agents' processes, stopped (SIGTERM, then SIGKILL) when dropped.
struct Agents {
    children: Vec<Child>,
}

impl Agents {
    fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// Mean resident memory of the agents' processes, KiB.
    fn mean_rss_kb(&self) -> f64 {
        let pids = self.pids();
        let total: u64 = pids.iter().map(|p| crate::rss_kb(*p)).sum();
        total as f64 / pids.len().max(1) as f64
    }

    async fn stop(&mut self) {
        for c in &self.children {
            if let Some(pid) = c.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for c in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(5), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
        self.children.clear();
    }
}

/// The real-process benchmark; adds its figures to `out`.
pub(crate) async fn bench(
    args: &Args,
    tether: &Path,
    work: &Path,
    out: &mut Value,
) -> anyhow::Result<()> {
    let n = args.agents;
    let agent_bin = tether.with_file_name("tether-agent");
    if !agent_bin.is_file() {
        bail!(
            "--real-agents needs the agent binary beside tether: {} is missing",
            agent_bin.display()
        );
    }
    // Agent state on tmpfs by default, as in the simulated mode: N nodes do
    // not share one disk; --agents-dir puts it elsewhere (a disk, to see a
    // node's own fsyncs), and keeps it.
    let _tmp;
    let agents_root = match &args.agents_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            _tmp = tempfile::tempdir_in(if Path::new("/dev/shm").is_dir() {
                Path::new("/dev/shm")
            } else {
                work
            })?;
            _tmp.path().to_path_buf()
        }
    };
    out["agents_dir"] = json!(agents_root.display().to_string());

    // ----- floors -----
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(spawn_floor_ms(n).await?);
    }
    runs.sort_by(f64::total_cmp);
    let step_floor = runs[1];
    let mut ones = Vec::new();
    for _ in 0..20 {
        ones.push(spawn_floor_ms(1).await?);
    }
    ones.sort_by(f64::total_cmp);
    let one_step_floor = ones[ones.len() / 2];
    say(format!(
        "floor: {n} parallel `sh -c /bin/true` in {step_floor:.1} ms (median of 3); one in {one_step_floor:.2} ms (median of 20)"
    ));
    out["step_floor_ms"] = json!(round(step_floor));
    out["one_step_floor_ms"] = json!(round(one_step_floor));

    // ----- coordinator -----
    let mut coord = Coord::start(tether, &work.join("coord"), args.database.clone()).await?;
    let config = coord.dir.join("operator.json");
    let cfg = tether_cli::load_config(&config).map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let op = Operator::connect(cfg.clone()).await?;
    let baseline = coord.sample()?;

    // ----- registration, by the agent binary -----
    let mut activations = Vec::new();
    for _ in 0..n.div_ceil(1000) {
        let a = op
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
        let dir = agents_root.join(format!("a{i}"));
        let (bin, endpoint, pin) = (agent_bin.clone(), cfg.endpoint.clone(), cfg.ca_pin.clone());
        let slots = slots.clone();
        set.spawn(async move {
            let _permit = slots.acquire().await;
            let out = Command::new(&bin)
                .arg("register")
                .arg("--state-dir")
                .arg(dir.join("state"))
                .args(["--endpoint", &endpoint, "--id", &id, "--code", &code])
                .args(["--ca-pin", &pin, "--name", &format!("bench-{i}")])
                .env("TETHER_AGENT_CONFIG", dir.join("agent.toml"))
                .stdin(Stdio::null())
                .output()
                .await?;
            if !out.status.success() {
                bail!(
                    "tether-agent register failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let instance = String::from_utf8_lossy(&out.stdout).trim().to_string();
            Ok((i, dir, instance))
        });
    }
    let mut registered = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        registered.push(r??);
    }
    registered.sort_by_key(|r| r.0);
    let reg_secs = started.elapsed().as_secs_f64();
    say(format!(
        "registered {n} agents (tether-agent register) in {reg_secs:.2} s ({:.0}/s)",
        n as f64 / reg_secs
    ));
    out["registrations_per_sec"] = json!(round(n as f64 / reg_secs));

    // ----- agents -----
    let since = now_ms();
    let mut agents = Agents {
        children: Vec::with_capacity(n),
    };
    for (_, dir, _) in &registered {
        let child = Command::new(&agent_bin)
            .arg("run")
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--log-dir")
            .arg(dir.join("log"))
            // No settings file: the defaults, whatever /etc holds.
            .env("TETHER_AGENT_CONFIG", dir.join("agent.toml"))
            .env("TETHER_AGENT_REBOOT_COMMAND", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", agent_bin.display()))?;
        agents.children.push(child);
    }
    let db = coord.db().await?;
    let connected = wait_polled(&db, n, since, Duration::from_secs(300)).await?;
    say(format!(
        "all {n} agent processes polling after {:.2} s",
        connected.as_secs_f64()
    ));

    // ----- steady state -----
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a = coord.sample()?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let b = coord.sample()?;
    let rss_per_agent = (b.rss_kb.saturating_sub(baseline.rss_kb)) as f64 * 1024.0 / n as f64;
    let cpu_pct =
        (b.cpu_ticks - a.cpu_ticks) as f64 / ticks_per_sec() / args.idle_secs as f64 * 100.0;
    let agent_rss = agents.mean_rss_kb();
    say(format!(
        "idle: coordinator RSS {} KiB = {:.1} KB per agent above its empty size; CPU {:.2}% of a core; each agent process {agent_rss:.0} KiB RSS",
        b.rss_kb,
        rss_per_agent / 1000.0,
        cpu_pct,
    ));
    out["idle_rss_kb_total"] = json!(b.rss_kb);
    out["idle_rss_bytes_per_agent"] = json!(round(rss_per_agent));
    out["idle_cpu_pct"] = json!(round(cpu_pct));
    out["agent_idle_rss_kb"] = json!(round(agent_rss));

    // ----- fan-out -----
    let FanOut {
        send_ms,
        total_ms: fanout_ms,
        cpu_ms: fanout_cpu_ms,
        lat,
        by_status,
        succeeded,
        completed,
    } = fan_out(&coord, &op, &db, n, "/bin/true", Duration::from_millis(5)).await?;
    say(format!(
        "fan-out: {n} real /bin/true steps, send -> all stored in {fanout_ms:.0} ms ({:.2}x the step floor; send-command itself {send_ms:.0} ms; coordinator CPU {fanout_cpu_ms:.0} ms = {:.0} us per invocation); latency p50 {} ms, p99 {} ms; statuses {by_status:?}; CompletedCount {completed}",
        fanout_ms / step_floor,
        fanout_cpu_ms * 1000.0 / n as f64,
        pct(&lat, 50.0),
        pct(&lat, 99.0)
    ));
    out["send_command_ms"] = json!(round(send_ms));
    out["fanout_total_ms"] = json!(round(fanout_ms));
    out["fanout_ratio_to_step_floor"] = json!(round(fanout_ms / step_floor));
    out["fanout_coordinator_cpu_ms"] = json!(round(fanout_cpu_ms));
    out["fanout_coordinator_cpu_us_per_invocation"] =
        json!(round(fanout_cpu_ms * 1000.0 / n as f64));
    out["invocation_p50_ms"] = json!(pct(&lat, 50.0));
    out["invocation_p99_ms"] = json!(pct(&lat, 99.0));
    out["invocations_accounted"] = json!(lat.len());
    out["invocations_succeeded"] = json!(succeeded);
    out["command_completed_count"] = json!(completed);

    // ----- one node, as an operator's script sees it -----
    let instance = registered[0].2.clone();
    let cli = Cli {
        tether: tether.to_path_buf(),
        config,
    };
    let mut cli_ms = Vec::new();
    let mut latencies = Vec::new();
    let mut polls = Vec::new();
    let mut one_ok = 0;
    for _ in 0..args.latency_sends {
        // Let the agent's next poll settle in, as between an operator's commands.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t0 = Instant::now();
        let sent = cli
            .run(&[
                "send-command",
                "--document-name",
                "AWS-RunShellScript",
                "--instance-ids",
                &instance,
                "--parameters",
                "commands=/bin/true",
            ])
            .await?;
        cli_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        let command_id = sent["Command"]["CommandId"]
            .as_str()
            .context("send-command answered no CommandId")?
            .to_string();
        let mut n_polls = 0;
        let status = loop {
            let at = Instant::now();
            n_polls += 1;
            let got = cli
                .run(&[
                    "get-command-invocation",
                    "--command-id",
                    &command_id,
                    "--instance-id",
                    &instance,
                ])
                .await?;
            cli_ms.push(at.elapsed().as_secs_f64() * 1000.0);
            let status = got["Status"].as_str().unwrap_or_default().to_string();
            if TERMINAL.contains(&status.as_str()) {
                break status;
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("one-node latency: {command_id} still {status:?} after 120 s");
            }
            tokio::time::sleep_until((at + CLI_POLL).into()).await;
        };
        latencies.push((t0.elapsed().as_secs_f64() * 1000.0 * 100.0).round() as i64);
        polls.push(n_polls);
        if status == "Success" {
            one_ok += 1;
        }
    }
    if !latencies.is_empty() {
        latencies.sort_unstable();
        cli_ms.sort_by(f64::total_cmp);
        let (p50, p99) = (
            pct(&latencies, 50.0) as f64 / 100.0,
            pct(&latencies, 99.0) as f64 / 100.0,
        );
        let cli_call = cli_ms[cli_ms.len() / 2];
        let floor = one_step_floor + 2.0 * cli_call;
        let mean_polls = polls.iter().sum::<usize>() as f64 / polls.len() as f64;
        say(format!(
            "one node: send -> terminal as a new CLI process polling every 50 ms sees it: median {p50:.1} ms, p99 {p99:.1} ms over {} sends ({one_ok} Success; {mean_polls:.1} polls each); one CLI call {cli_call:.1} ms (median); floor (one step + two CLI calls) {floor:.1} ms, ratio {:.2}",
            latencies.len(),
            p50 / floor
        ));
        out["one_node_latency_p50_ms"] = json!(round(p50));
        out["one_node_latency_p99_ms"] = json!(round(p99));
        out["one_node_sends"] = json!(latencies.len());
        out["one_node_succeeded"] = json!(one_ok);
        out["one_node_polls_mean"] = json!(round(mean_polls));
        out["cli_call_ms"] = json!(round(cli_call));
        out["one_node_floor_ms"] = json!(round(floor));
        out["one_node_ratio_to_floor"] = json!(round(p50 / floor));
    }

    agents.stop().await;
    coord.kill();
    Ok(())
}

/// Milliseconds to spawn `n` `sh -c /bin/true` at once and wait for all of them.
async fn spawn_floor_ms(n: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        children.push(
            Command::new("sh")
                .args(["-c", "/bin/true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("spawning sh -c /bin/true")?,
        );
    }
    for mut c in children {
        let status = c.wait().await?;
        if !status.success() {
            bail!("sh -c /bin/true exited {status}");
        }
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// The operator CLI, a new process per call.
struct Cli {
    tether: PathBuf,
    config: PathBuf,
}

impl Cli {
    async fn run(&self, words: &[&str]) -> anyhow::Result<Value> {
        let out = Command::new(&self.tether)
            .args(words)
            .arg("--config")
            .arg(&self.config)
            .args(["--output", "json"])
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", self.tether.display()))?;
        if !out.status.success() {
            bail!(
                "tether {} failed: {}",
                words.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "tether {} printed no JSON: {}",
                words.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}
