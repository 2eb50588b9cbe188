//! Helpers of the chaos suite (`tests/e2e/chaos.rs`): a CLI handle threads
//! can share while the coordinator restarts, steps that leave a trace of each
//! run (one line with the command ID in a file per node), the audit that
//! proves from the coordinator's history that every invocation is terminal,
//! ran at most once and has its result stored, a tmpfs in a private mount
//! namespace, and a small seeded random source.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{bin, wrapped};

/// `TETHER_CHAOS_SCALE`: the share of the full run (1,000 commands,
/// 100 kills) the kill loop makes; default 0.1 (CI), 1 for the full run.
pub const SCALE_ENV: &str = "TETHER_CHAOS_SCALE";

/// The scale asked for (see [`SCALE_ENV`]); panics on a value that is not a
/// number in (0, 10].
pub fn scale() -> f64 {
    match std::env::var(SCALE_ENV) {
        Ok(v) if !v.is_empty() => match v.parse::<f64>() {
            Ok(s) if s > 0.0 && s <= 10.0 => s,
            _ => panic!("{SCALE_ENV}={v:?}: expected a number in (0, 10]"),
        },
        _ => 0.1,
    }
}

/// The operator CLI of one coordinator, usable from any thread (it holds
/// only the config path and the command prefix).
#[derive(Clone, Debug)]
pub struct Cli {
    pub config: PathBuf,
    pub wrap: Vec<String>,
}

impl Cli {
    pub fn of(coord: &crate::Coordinator) -> Cli {
        Cli {
            config: coord.operator_json(),
            wrap: coord.wrap.clone(),
        }
    }

    /// Runs a verb; its JSON, or its stderr (and status) when it failed.
    pub fn try_json(&self, args: &[&str]) -> Result<Value, String> {
        let out = wrapped(&self.wrap, bin("tether"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .map_err(|e| format!("run tether: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ));
        }
        if out.stdout.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("invalid JSON: {e}"))
    }

    /// Sends the tracing step to `instances` (delivery timeout in seconds);
    /// the command ID once the coordinator acknowledged it.
    pub fn send(
        &self,
        instances: &[&str],
        ran_dir: &Path,
        sleep: &str,
        timeout_secs: u32,
    ) -> Result<String, String> {
        let params = step_parameters(ran_dir, sleep).to_string();
        let timeout = timeout_secs.to_string();
        let mut args = vec![
            "send-command",
            "--document-name",
            "AWS-RunShellScript",
            "--timeout-seconds",
            &timeout,
            "--parameters",
            &params,
            "--instance-ids",
        ];
        args.extend_from_slice(instances);
        let v = self.try_json(&args)?;
        v["Command"]["CommandId"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("no CommandId in {v}"))
    }

    /// Every invocation in the history (`list-command-invocations
    /// --details`, all pages).
    pub fn invocations(&self) -> Result<Vec<Value>, String> {
        let v = self.try_json(&["list-command-invocations", "--details"])?;
        Ok(v["CommandInvocations"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

/// The step of every chaos command: appends its command ID to
/// `ran_dir/<instance>` (the trace the audit counts), sleeps `sleep`
/// seconds, and prints `done <command ID>` (the result the audit looks for).
pub fn step_parameters(ran_dir: &Path, sleep: &str) -> Value {
    let d = ran_dir.display();
    json!({"commands": [
        format!("echo \"$TETHER_COMMAND_ID\" >> {d}/\"$TETHER_INSTANCE_ID\""),
        format!("sleep {sleep}"),
        "echo \"done $TETHER_COMMAND_ID\"",
    ]})
}

fn terminal(status: &str) -> bool {
    !matches!(status, "Pending" | "InProgress" | "Delayed" | "Cancelling")
}

/// What the audit found.
#[derive(Debug, Default)]
pub struct Audit {
    /// Invocations in the history.
    pub invocations: usize,
    /// Count per final status, by its details (`Success`, `Delivery Timed Out`, ...).
    pub statuses: BTreeMap<String, usize>,
    /// Acknowledged (command, instance) pairs missing from the history, or
    /// Success without the step's output stored.
    pub lost: Vec<String>,
    /// (command, instance) that ran more than once, with the count.
    pub duplicates: Vec<String>,
    /// Invocations that ended other than Success: details, runs and output.
    pub others: Vec<String>,
    /// Runs the history does not account for: a trace line of an
    /// invocation that ended Delivery Timed Out, or of none at all.
    pub unexplained: Vec<String>,
}

impl Audit {
    /// Panics unless nothing was lost, duplicated or unexplained.
    pub fn assert_clean(&self) {
        assert!(
            self.lost.is_empty() && self.duplicates.is_empty() && self.unexplained.is_empty(),
            "audit failed: {self:#?}"
        );
    }

    pub fn count(&self, status: &str) -> usize {
        self.statuses.get(status).copied().unwrap_or(0)
    }
}

/// Waits (up to `timeout`) until every invocation in the history is
/// terminal, then checks it against the acknowledged commands (command ID →
/// its instances) and the trace files in `ran_dir`.
pub fn audit(
    cli: &Cli,
    acknowledged: &BTreeMap<String, Vec<String>>,
    ran_dir: &Path,
    timeout: Duration,
) -> Audit {
    let start = Instant::now();
    let invs = loop {
        match cli.invocations() {
            Ok(invs)
                if invs
                    .iter()
                    .all(|i| terminal(i["Status"].as_str().unwrap_or(""))) =>
            {
                break invs;
            }
            Ok(invs) => {
                let open: Vec<String> = invs
                    .iter()
                    .filter(|i| !terminal(i["Status"].as_str().unwrap_or("")))
                    .map(|i| format!("{} {} {}", i["CommandId"], i["InstanceId"], i["Status"]))
                    .collect();
                assert!(
                    start.elapsed() < timeout,
                    "after {timeout:?} {} invocations are not terminal: {open:?}",
                    open.len()
                );
            }
            Err(e) => assert!(
                start.elapsed() < timeout,
                "list-command-invocations still fails after {timeout:?}: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // Runs per (command, instance), from the trace files.
    let mut runs: BTreeMap<(String, String), usize> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(ran_dir) {
        for e in entries.flatten() {
            let instance = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            for line in text.lines().filter(|l| !l.is_empty()) {
                *runs
                    .entry((line.to_string(), instance.clone()))
                    .or_default() += 1;
            }
        }
    }
    let mut a = Audit {
        invocations: invs.len(),
        ..Audit::default()
    };
    let mut seen = BTreeSet::new();
    for i in &invs {
        let (c, n) = (
            i["CommandId"].as_str().unwrap_or("").to_string(),
            i["InstanceId"].as_str().unwrap_or("").to_string(),
        );
        let status = i["Status"].as_str().unwrap_or("").to_string();
        let detail = i["StatusDetails"].as_str().unwrap_or("").to_string();
        *a.statuses.entry(detail.clone()).or_default() += 1;
        let ran = runs.get(&(c.clone(), n.clone())).copied().unwrap_or(0);
        if ran > 1 {
            a.duplicates.push(format!("{c} on {n}: ran {ran} times"));
        }
        if status != "Success" {
            let out: String = i["CommandPlugins"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| p["Output"].as_str().unwrap_or(""))
                        .collect::<String>()
                })
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            a.others.push(format!(
                "{c} on {n}: {detail}, ran {ran} times, output {out:?}"
            ));
        }
        match status.as_str() {
            "Success" => {
                let out = i["CommandPlugins"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .map(|p| p["Output"].as_str().unwrap_or(""))
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                if !out.contains(&format!("done {c}")) || ran == 0 {
                    a.lost.push(format!(
                        "{c} on {n}: Success but output {out:?}, ran {ran} times"
                    ));
                }
            }
            "TimedOut" if detail == "Delivery Timed Out" && ran > 0 => {
                a.unexplained.push(format!(
                    "{c} on {n}: Delivery Timed Out but ran {ran} times"
                ));
            }
            _ => {}
        }
        seen.insert((c, n));
    }
    for (c, instances) in acknowledged {
        for n in instances {
            if !seen.contains(&(c.clone(), n.clone())) {
                a.lost
                    .push(format!("{c} on {n}: acknowledged, not in the history"));
            }
        }
    }
    for ((c, n), ran) in &runs {
        if !seen.contains(&(c.clone(), n.clone())) {
            a.unexplained
                .push(format!("{c} on {n}: ran {ran} times, not in the history"));
        }
    }
    a
}

/// A seeded xorshift source (`TETHER_CHAOS_SEED` repeats a run's choices).
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> Rng {
        let seed = std::env::var("TETHER_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        eprintln!("chaos seed: TETHER_CHAOS_SEED={seed}");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

/// A tmpfs of `size` mounted on `dir` inside a private mount namespace held
/// by a sleeping process (`unshare --mount`): nothing is mounted in this
/// machine's namespace; processes run inside with [`Tmpfs::wrap`]. The
/// holder is killed on drop, and the mount dies with its namespace.
pub struct Tmpfs {
    pub dir: PathBuf,
    holder: Child,
}

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the disk-full test mounts a tmpfs in a private mount namespace: run it as root (CI does)"
        );
        std::fs::create_dir_all(dir).expect("tmpfs mount point");
        let mut holder = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                "mount -t tmpfs -o \"size=$SIZE,mode=0700\" tmpfs \"$DIR\" && echo mounted && exec sleep 100000",
            ])
            .env("DIR", dir)
            .env("SIZE", size)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run unshare (util-linux)");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(holder.stdout.take().expect("holder stdout"))
            .read_line(&mut line)
            .expect("read from unshare");
        assert_eq!(
            line.trim(),
            "mounted",
            "mounting the tmpfs on {} failed",
            dir.display()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
            holder,
        }
    }

    /// The prefix that runs a program in the namespace that sees the tmpfs.
    pub fn wrap(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            "-t".into(),
            self.holder.id().to_string(),
            "-m".into(),
            "--".into(),
        ]
    }

    /// Runs `sh -c script` inside; its success and output.
    pub fn sh(&self, script: &str) -> (bool, String) {
        let out = wrapped(&self.wrap(), "/bin/sh")
            .args(["-c", script])
            .env("DIR", &self.dir)
            .output()
            .expect("run nsenter (util-linux)");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Where Debian's `libfaketime` puts the multi-threaded preload library.
pub const LIBFAKETIME_MT: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// A node clock the test moves while the agent runs: libfaketime preloaded
/// into the (dynamically linked, debug) agent, reading its offset from a
/// file at every call (`FAKETIME_TIMESTAMP_FILE`, no cache). Only the wall
/// clock moves (`FAKETIME_DONT_FAKE_MONOTONIC`), as when someone sets the
/// time: timers and timeouts keep running at their pace.
pub struct FakeClock {
    pub file: PathBuf,
}

impl FakeClock {
    /// A clock at the real time, its offset kept in `file`.
    pub fn new(file: &Path) -> FakeClock {
        assert!(
            Path::new(LIBFAKETIME_MT).exists(),
            "{LIBFAKETIME_MT} is missing: install Debian's `faketime` package (scripts/test.sh does)"
        );
        let c = FakeClock {
            file: file.to_path_buf(),
        };
        c.set("+0");
        c
    }

    /// Moves the clock to the real time plus `offset`, libfaketime's
    /// relative form (`+2h`, `-90m`, `+0`, `+2000d`).
    pub fn set(&self, offset: &str) {
        std::fs::write(&self.file, format!("{offset}\n")).expect("write the faketime file");
    }

    /// The environment that puts a process on this clock.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("LD_PRELOAD", LIBFAKETIME_MT.to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
            ("DONT_FAKE_MONOTONIC", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}
