//! Signed agent self-update (`Tether-UpdateAgent`), with the real binaries:
//! each node runs a copy of the agent of its own, which the update replaces.
//! Version B is version A's binary with its embedded version marker
//! rewritten (no second build). A fleet updated one node at a time (the
//! agents run by hand: they re-execute themselves); a release that crashes on
//! start rolled back, stopping the rollout; tampered, wrongly signed and
//! truncated downloads refused with nothing swapped; a release key learnt
//! from the trust bundle; and an agent under a SysV init script in a
//! throwaway root, restarted through it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::root::{COORDINATOR_NAME, Root};
use tether_tests::{Agent, Coordinator, bin, wait_for};

/// The marker's prefix and the bytes after it (`tether_agent::version`).
const MARKER_PREFIX: &[u8] = b"TETHER-AGENT-VERSION:";
const MARKER_FIELD: usize = 96 - 21;
/// Version B: newer than any A this repository builds.
const B: &str = "99.0.0";
/// How long an updated agent has to report in, in these tests.
const HEALTH_SECS: &str = "20";

fn platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// What `EXE --version` says: `tether-agent V` → V.
fn version_of(exe: &Path) -> String {
    let out = std::process::Command::new(exe)
        .arg("--version")
        .output()
        .expect("run --version");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("tether-agent ")
        .unwrap_or_else(|| panic!("{}: --version printed {out:?}", exe.display()))
        .to_string()
}

/// Agent A: the debug build without its debugging sections (a release
/// holds at most 64 MiB), at `dir/agent-a`.
fn agent_a(dir: &Path) -> PathBuf {
    let a = dir.join("agent-a");
    let out = std::process::Command::new("strip")
        .arg("-o")
        .arg(&a)
        .arg(bin("tether-agent"))
        .output()
        .expect("run strip (binutils; scripts/test.sh installs it)");
    assert!(out.status.success(), "strip: {out:?}");
    a
}

/// A copy of agent A (`a`) at `dst` (mode 0755) whose marker says `version`.
fn agent_with_version(a: &Path, dst: &Path, version: &str) {
    let mut bytes = std::fs::read(a).expect("read agent A");
    let hits: Vec<usize> = bytes
        .windows(MARKER_PREFIX.len())
        .enumerate()
        .filter(|(_, w)| *w == MARKER_PREFIX)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "the version marker must be in the binary once"
    );
    let field = &mut bytes[hits[0] + MARKER_PREFIX.len()..][..MARKER_FIELD];
    field.fill(0);
    field[..version.len()].copy_from_slice(version.as_bytes());
    executable(dst, &bytes);
    assert_eq!(version_of(dst), version);
}

/// Writes `data` to `path` (and its directory), mode 0755.
fn executable(path: &Path, data: impl AsRef<[u8]>) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create the binary's directory");
    }
    std::fs::write(path, data).expect("write the binary");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make it executable");
}

/// Kills, at the end of a test, agents the update started itself (a
/// rollback after the re-executed agent died starts the previous one in a
/// session of its own): by the pid in each node's `launch.json`.
struct Reaper(Vec<PathBuf>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for state in &self.0 {
            let pid = std::fs::read(state.join("launch.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["Pid"].as_i64());
            if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// A registered node running its own copy of agent A (`a`), by hand.
fn node(dir: &Path, agent_a: &Path, name: &str, coord: &Coordinator) -> Agent {
    let (id, code) = coord.activation(1);
    let mut a = Agent::register(dir, name, &coord.endpoint(), &coord.ca_pin(), (&id, &code));
    let exe = dir.join(format!("{name}-bin/tether-agent"));
    executable(&exe, std::fs::read(agent_a).expect("read agent A"));
    a.program = exe;
    a.env = vec![("TETHER_AGENT_UPDATE_HEALTH_SECS".into(), HEALTH_SECS.into())];
    a.run();
    coord.wait_online(&a.instance_id, Duration::from_secs(20));
    a
}

fn add_release(coord: &Coordinator, version: &str, file: &Path) -> Value {
    coord.json(&[
        "add-agent-release",
        "--agent-version",
        version,
        "--platform",
        &platform(),
        "--file",
        file.to_str().expect("a UTF-8 path"),
    ])
}

/// Sends Tether-UpdateAgent for `version` (empty: the fleet's target) to
/// `ids`, one at a time, stopping at the first error; returns the command ID.
fn send_update(coord: &Coordinator, ids: &[&str], version: &str) -> String {
    let params = json!({"version": [version]}).to_string();
    let mut args = vec![
        "send-command",
        "--document-name",
        "Tether-UpdateAgent",
        "--parameters",
        &params,
        "--max-concurrency",
        "1",
        "--max-errors",
        "0",
        "--instance-ids",
    ];
    args.extend_from_slice(ids);
    coord.json(&args)["Command"]["CommandId"]
        .as_str()
        .expect("CommandId")
        .to_string()
}

fn agent_version(coord: &Coordinator, id: &str) -> Option<String> {
    coord.json(&["describe-instance-information"])["InstanceInformationList"]
        .as_array()?
        .iter()
        .find(|i| i["InstanceId"] == id)
        .and_then(|i| i["AgentVersion"].as_str().map(str::to_string))
}

fn output(inv: &Value) -> String {
    format!(
        "{}\n{}",
        inv["StandardOutputContent"].as_str().unwrap_or(""),
        inv["StandardErrorContent"].as_str().unwrap_or("")
    )
}

/// A command every node must still run (they all poll and work).
fn all_still_work(coord: &Coordinator, ids: &[&str]) {
    let id = coord.send(ids, &json!({"commands": ["echo still here"]}));
    for i in ids {
        let inv = coord.wait_invocation(&id, i, Duration::from_secs(60));
        assert_eq!(inv["Status"], "Success", "{inv}");
        assert!(output(&inv).contains("still here"), "{inv}");
    }
}

#[test]
fn a_fleet_is_updated_one_node_at_a_time_by_re_executing_and_reports_the_new_version() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let agent_a = agent_a(tmp.path());
    let a = version_of(&agent_a);
    let release = tmp.path().join("release-b/tether-agent");
    agent_with_version(&agent_a, &release, B);
    let added = add_release(&coord, B, &release);
    assert_eq!(added["AgentRelease"]["Status"], "Available", "{added}");
    // The fleet's target: the update names no version.
    coord.json(&["set-agent-target-version", "--agent-version", B]);
    let mut nodes: Vec<Agent> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| node(tmp.path(), &agent_a, n, &coord))
        .collect();
    let _reaper = Reaper(nodes.iter().map(|n| n.state_dir.clone()).collect());
    let owned: Vec<String> = nodes.iter().map(|n| n.instance_id.clone()).collect();
    let ids: Vec<&str> = owned.iter().map(String::as_str).collect();
    for id in &ids {
        assert_eq!(agent_version(&coord, id).as_deref(), Some(a.as_str()));
    }
    let pids: Vec<Option<u32>> = nodes.iter().map(Agent::pid).collect();
    // The first node already holds half the release, as a download broken
    // off would have left it: it goes on from there.
    let release_bytes = std::fs::read(&release).unwrap();
    let half = release_bytes.len() / 2;
    let updates = nodes[0].state_dir.join("updates");
    std::fs::create_dir_all(&updates).unwrap();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&release_bytes));
    std::fs::write(
        updates.join(format!("{digest}.part")),
        &release_bytes[..half],
    )
    .unwrap();

    // A command running on the first node while it updates: it belongs to
    // its supervisor, goes on through the restart, and is reported.
    let long = coord.send(
        &ids[..1],
        &json!({"commands": ["sleep 12; echo survived the update"]}),
    );
    wait_for("the long command to start", Duration::from_secs(30), || {
        (coord.invocation(&long, ids[0])["Status"] == "InProgress").then_some(())
    });
    let cmd = send_update(&coord, &ids, "");
    let mut windows = Vec::new();
    for id in &ids {
        let inv = coord.wait_invocation(&cmd, id, Duration::from_secs(120));
        assert_eq!(inv["Status"], "Success", "{inv}");
        let out = output(&inv);
        assert!(
            out.contains(&format!("updated {a} -> {B}")) && out.contains("re-executing"),
            "{out}"
        );
        if *id == ids[0] {
            assert!(
                out.contains(&format!("resuming the download of {B} at byte {half}")),
                "{out}"
            );
        }
        windows.push((
            inv["ExecutionStartDateTime"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            inv["ExecutionEndDateTime"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        ));
    }
    let inv = coord.wait_invocation(&long, ids[0], Duration::from_secs(60));
    assert_eq!(inv["Status"], "Success", "{inv}");
    assert!(output(&inv).contains("survived the update"), "{inv}");
    // One node at a time: each started after the one before had ended.
    windows.sort();
    // For the report: each node's update, from the step's start to its end.
    eprintln!("update windows (start, end): {windows:?}");
    assert!(
        windows.iter().all(|(s, e)| !s.is_empty() && !e.is_empty()),
        "{windows:?}"
    );
    for w in windows.windows(2) {
        assert!(w[1].0 >= w[0].1, "updates overlapped: {windows:?}");
    }
    let a_bytes = std::fs::read(&agent_a).unwrap();
    for (n, pid) in nodes.iter_mut().zip(pids) {
        wait_for(
            &format!("{} to report {B}", n.instance_id),
            Duration::from_secs(30),
            || (agent_version(&coord, &n.instance_id).as_deref() == Some(B)).then_some(()),
        );
        let info = coord.json(&["describe-instance-information"]);
        let me = info["InstanceInformationList"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["InstanceId"] == n.instance_id.as_str()))
            .cloned()
            .unwrap_or_default();
        assert_eq!(me["IsLatestVersion"], json!(true), "{me}");
        // Swapped in place, the previous kept beside it.
        assert_eq!(std::fs::read(&n.program).unwrap(), release_bytes);
        let previous = n.program.with_file_name("tether-agent.previous");
        assert_eq!(std::fs::read(&previous).unwrap(), a_bytes);
        // Run by hand: the same process, re-executed.
        assert!(!n.exited(), "the agent's process ended");
        assert_eq!(n.pid(), pid);
        let log = n.log();
        for stage in [
            "release 99.0.0 verified",
            "downloaded 99.0.0",
            "swapped:",
            "re-executing the agent",
            "healthy: tether-agent 99.0.0",
        ] {
            assert!(log.contains(stage), "agent.log lacks {stage:?}:\n{log}");
        }
        // The download is gone once installed.
        let left: Vec<_> = std::fs::read_dir(n.state_dir.join("updates"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }
    // The same version again: nothing to do, and said so.
    let again = send_update(&coord, &ids[..1], B);
    let inv = coord.wait_invocation(&again, ids[0], Duration::from_secs(60));
    assert_eq!(inv["Status"], "Success", "{inv}");
    assert!(output(&inv).contains(&format!("already at {B}")), "{inv}");
    all_still_work(&coord, &ids);
}

#[test]
fn a_release_that_crashes_on_start_is_rolled_back_and_stops_the_rollout() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let agent_a = agent_a(tmp.path());
    let a = version_of(&agent_a);
    // Passes the self-check, then dies at once when run.
    let release = tmp.path().join("release-bad/tether-agent");
    executable(
        &release,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'tether-agent {B}'; exit 0; fi\n\
             echo 'this release crashes on start' >&2\nexit 3\n"
        ),
    );
    add_release(&coord, B, &release);
    let nodes: Vec<Agent> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| node(tmp.path(), &agent_a, n, &coord))
        .collect();
    let _reaper = Reaper(nodes.iter().map(|n| n.state_dir.clone()).collect());
    let ids: Vec<&str> = nodes.iter().map(|n| n.instance_id.as_str()).collect();
    let cmd = send_update(&coord, &ids, B);
    let invs: Vec<Value> = ids
        .iter()
        .map(|id| coord.wait_invocation(&cmd, id, Duration::from_secs(120)))
        .collect();
    let failed: Vec<&Value> = invs
        .iter()
        .filter(|i| i["StatusDetails"] == "Failed")
        .collect();
    assert_eq!(failed.len(), 1, "{invs:#?}");
    let out = output(failed[0]);
    assert!(
        out.contains(&format!("rolled back to {a}")) && out.contains("exited"),
        "{out}"
    );
    // MaxErrors 0: the others never ran it.
    let mut rest: Vec<&str> = invs
        .iter()
        .filter(|i| i["StatusDetails"] != "Failed")
        .map(|i| i["StatusDetails"].as_str().unwrap_or(""))
        .collect();
    rest.sort();
    assert_eq!(rest, ["Terminated", "Terminated"], "{invs:#?}");
    let a_bytes = std::fs::read(&agent_a).unwrap();
    for n in &nodes {
        assert_eq!(
            std::fs::read(&n.program).unwrap(),
            a_bytes,
            "{} is not on A",
            n.instance_id
        );
        assert_eq!(
            agent_version(&coord, &n.instance_id).as_deref(),
            Some(a.as_str())
        );
    }
    let rolled = nodes
        .iter()
        .find(|n| n.instance_id == failed[0]["InstanceId"].as_str().unwrap())
        .unwrap();
    let log = rolled.log();
    assert!(
        log.contains("rolling back") && log.contains("rolled back"),
        "{log}"
    );
    all_still_work(&coord, &ids);
}

/// The coordinator serves bad bytes or a bad signature (its test hook); the
/// agent refuses each before anything is swapped.
#[test]
fn tampered_wrongly_signed_and_truncated_releases_are_refused_and_a_lost_release_key_is_learnt_again()
 {
    let tmp = tempfile::tempdir().unwrap();
    let mut coord = Coordinator::start(tmp.path());
    let agent_a = agent_a(tmp.path());
    let release = tmp.path().join("release-b/tether-agent");
    agent_with_version(&agent_a, &release, B);
    add_release(&coord, B, &release);
    let n = node(tmp.path(), &agent_a, "n1", &coord);
    let _reaper = Reaper(vec![n.state_dir.clone()]);
    assert_eq!(
        std::fs::read_to_string(n.state_dir.join("release.pub"))
            .map(|k| k.trim().len())
            .ok(),
        Some(64),
        "the release key from registration"
    );
    let a_bytes = std::fs::read(&agent_a).unwrap();
    for (hook, why) in [
        ("tamper", "SHA-256"),
        (
            "bad-signature",
            "not signed by this coordinator's release key",
        ),
        ("truncate", "ends the download"),
    ] {
        coord.env = vec![("TETHER_TEST_RELEASE_HOOK".into(), hook.into())];
        coord.restart();
        coord.wait_online(&n.instance_id, Duration::from_secs(30));
        let cmd = send_update(&coord, &[&n.instance_id], B);
        let inv = coord.wait_invocation(&cmd, &n.instance_id, Duration::from_secs(120));
        assert_eq!(inv["Status"], "Failed", "{hook}: {inv}");
        let out = output(&inv);
        assert!(out.contains(why), "{hook}: {out}");
        assert_eq!(std::fs::read(&n.program).unwrap(), a_bytes, "{hook}");
        assert!(
            !n.program.with_file_name("tether-agent.previous").exists(),
            "{hook}: something was swapped"
        );
        assert!(
            !n.program.with_file_name(".tether-agent.new").exists(),
            "{hook}: a staged binary was left"
        );
    }
    coord.env.clear();
    coord.restart();
    coord.wait_online(&n.instance_id, Duration::from_secs(30));
    all_still_work(&coord, &[&n.instance_id]);

    // A node registered before the coordinator had a release key (here: one
    // that lost it) learns it from the signed trust bundle at its next
    // poll, and then updates.
    let mut n = n;
    n.crash();
    let key_file = n.state_dir.join("release.pub");
    let key = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    n.run();
    wait_for("the release key again", Duration::from_secs(30), || {
        (std::fs::read(&key_file).ok()? == key).then_some(())
    });
    // The line is logged after the key is kept (and written by the log's
    // own thread).
    wait_for("the line that says so", Duration::from_secs(10), || {
        n.log()
            .contains("learnt the coordinator's release key")
            .then_some(())
    });
    let (_, status) = n.status(&[]);
    let hex_key = String::from_utf8_lossy(&key).trim().to_string();
    assert!(
        status.contains(&format!("Release key:   {hex_key}")),
        "{status}"
    );
    let cmd = send_update(&coord, &[&n.instance_id], B);
    let inv = coord.wait_invocation(&cmd, &n.instance_id, Duration::from_secs(120));
    assert_eq!(inv["Status"], "Success", "{inv}");
    assert_eq!(
        std::fs::read(&n.program).unwrap(),
        std::fs::read(&release).unwrap()
    );
}

/// Under SysV init in a throwaway root: the init script starts the agent,
/// and the update restarts it through that script (which the agent learns
/// from `TETHER_AGENT_INIT_SCRIPT`); the pid file names the new agent.
#[test]
fn under_sysv_init_the_update_restarts_the_agent_through_its_init_script() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start_with_env(tmp.path(), &[("TETHER_ADVERTISE", COORDINATOR_NAME)]);
    let agent_a = agent_a(tmp.path());
    let release = tmp.path().join("release-b/tether-agent");
    agent_with_version(&agent_a, &release, B);
    add_release(&coord, B, &release);
    let (id, code) = coord.activation(1);
    let mut root = Root::new(tmp.path());
    executable(
        &root.path("/opt/tether/tether-agent"),
        std::fs::read(&agent_a).unwrap(),
    );
    executable(
        &root.path("/etc/init.d/tether-agent"),
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../init.d/tether-agent"),
        )
        .unwrap(),
    );
    let endpoint = format!("https://{COORDINATOR_NAME}:{}", coord.port);
    root.spawn(&format!(
        "export DAEMON=/opt/tether/tether-agent TETHER_AGENT_UPDATE_HEALTH_SECS={HEALTH_SECS}
         $DAEMON register --endpoint {endpoint} --id {id} --code {code} --ca-pin {} \
           --state-dir /var/lib/tether-agent > /tmp/instance-id || exit 1
         /etc/init.d/tether-agent start; echo \"start exit $?\"
         cat /var/run/tether-agent.pid > /tmp/pid-before
         while [ ! -e /tmp/done ]; do sleep 0.2; done
         cat /var/run/tether-agent.pid > /tmp/pid-after
         /etc/init.d/tether-agent status; echo \"status exit $?\"
         /etc/init.d/tether-agent stop",
        coord.ca_pin()
    ));
    let instance = wait_for("registration in the root", Duration::from_secs(30), || {
        let t = std::fs::read_to_string(root.path("/tmp/instance-id")).ok()?;
        t.trim().starts_with("mi-").then(|| t.trim().to_string())
    });
    coord.wait_online(&instance, Duration::from_secs(30));
    let cmd = send_update(&coord, &[&instance], B);
    let inv = coord.wait_invocation(&cmd, &instance, Duration::from_secs(120));
    assert_eq!(inv["Status"], "Success", "{inv}\n{}", root.session_log());
    let out = output(&inv);
    assert!(
        out.contains("SysV init (/etc/init.d/tether-agent restart)")
            && out.contains(&format!("-> {B}")),
        "{out}"
    );
    wait_for("the node to report B", Duration::from_secs(30), || {
        (agent_version(&coord, &instance).as_deref() == Some(B)).then_some(())
    });
    std::fs::write(root.path("/tmp/done"), "").unwrap();
    let log = root.wait();
    assert!(
        log.contains("start exit 0") && log.contains("status exit 0"),
        "{log}"
    );
    let before = std::fs::read_to_string(root.path("/tmp/pid-before")).unwrap();
    let after = std::fs::read_to_string(root.path("/tmp/pid-after")).unwrap();
    assert_ne!(before, after, "the init script started a new agent");
    assert_eq!(
        std::fs::read(root.path("/opt/tether/tether-agent")).unwrap(),
        std::fs::read(&release).unwrap()
    );
    let agent_log = std::fs::read_to_string(root.path("/var/log/tether/agent.log")).unwrap();
    assert!(
        agent_log.contains("healthy: tether-agent 99.0.0"),
        "{agent_log}"
    );
}

/// systemd and upstart cannot run here: what the update relies on is
/// checked by content — the unit leaves supervisors (and so the update's
/// worker) alive across a restart, the upstart job and the SysV script are
/// named so the agent finds them.
#[test]
fn the_init_files_keep_the_update_worker_alive_and_name_the_agent() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(repo.join("systemd/tether-agent.service")).unwrap();
    assert!(unit.contains("\nKillMode=process\n"), "{unit}");
    let sysv = std::fs::read_to_string(repo.join("init.d/tether-agent")).unwrap();
    assert!(
        sysv.contains("TETHER_AGENT_INIT_SCRIPT=$SCRIPT setsid \"$DAEMON\" run"),
        "{sysv}"
    );
    let install = std::fs::read_to_string(repo.join("coordinator/src/install.sh")).unwrap();
    // upstart names the job after its file: UPSTART_JOB=tether-agent.
    assert!(
        install.contains("/etc/init/tether-agent.conf") && install.contains("kill signal TERM"),
        "{install}"
    );
}
