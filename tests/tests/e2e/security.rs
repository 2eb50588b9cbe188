//! Signed envelopes and operator authentication: what the agent refuses, and
//! that nothing runs when it does. The coordinator's test hook corrupts
//! envelopes after signing; the agent is not weakened in any way.

use std::time::Duration;

use serde_json::json;
use tether_tests::{Agent, Coordinator, wait_for};

/// Sends a command that would create `marker`; returns the final invocation.
fn send_marker(coord: &Coordinator, agent: &Agent, marker: &std::path::Path) -> serde_json::Value {
    let id = coord.send(
        &[&agent.instance_id],
        &json!({"commands": [format!("touch {}", marker.display())]}),
    );
    coord.wait_invocation(&id, &agent.instance_id, Duration::from_secs(30))
}

#[test]
fn corrupted_envelopes_are_refused_and_nothing_runs() {
    for (hook, reason) in [
        ("tamper-parameters", "signature does not verify"),
        ("misaddress", "addressed to mi-00000000000000000"),
        ("expired", "envelope expired"),
        ("unsigned", "not signed"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let coord = Coordinator::start_with_env(tmp.path(), &[("TETHER_TEST_ENVELOPE_HOOK", hook)]);
        let agent = Agent::start(tmp.path(), "a", &coord);
        let marker = tmp.path().join("ran");
        let inv = send_marker(&coord, &agent, &marker);
        assert_eq!(inv["Status"], json!("Failed"), "{hook}: {inv}");
        let stderr = inv["StandardErrorContent"].as_str().unwrap();
        assert!(
            stderr.contains("refused the command envelope") && stderr.contains(reason),
            "{hook}: {stderr}"
        );
        assert!(!marker.exists(), "{hook}: the command ran");
        wait_for("the refusal in errors.log", Duration::from_secs(5), || {
            agent
                .errors_log()
                .contains("command envelope refused")
                .then_some(())
        });
        assert!(
            agent.errors_log().contains(reason),
            "{hook}: {}",
            agent.errors_log()
        );
    }
}

#[test]
fn a_replayed_envelope_is_refused_and_runs_once() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start_with_env(tmp.path(), &[("TETHER_TEST_ENVELOPE_HOOK", "replay")]);
    let agent = Agent::start(tmp.path(), "a", &coord);
    let counter = tmp.path().join("count");
    let id = coord.send(
        &[&agent.instance_id],
        &json!({"commands": [format!("echo once >> {}", counter.display())]}),
    );
    let inv = coord.wait_invocation(&id, &agent.instance_id, Duration::from_secs(30));
    assert_eq!(inv["Status"], json!("Success"));
    // The coordinator now re-sends the same envelope on every poll.
    wait_for("the replay to be refused", Duration::from_secs(30), || {
        agent
            .errors_log()
            .contains("envelope replayed")
            .then_some(())
    });
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "once\n");
    // The stored result is untouched by the refusal.
    let again = coord.invocation(&id, &agent.instance_id);
    assert_eq!(again["Status"], json!("Success"));
    assert_eq!(again["StandardOutputContent"], inv["StandardOutputContent"]);
}

#[test]
fn operators_need_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(coord.operator_json()).unwrap()).unwrap();
    cfg["Token"] = json!("not-the-token");
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, cfg.to_string()).unwrap();
    let out = std::process::Command::new(tether_tests::bin("tether"))
        .args([
            "--config",
            bad.to_str().unwrap(),
            "describe-instance-information",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(254));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("operator token is not valid"), "{err}");

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(coord.operator_json())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    for f in ["ca.key", "server.key", "signing.key"] {
        assert!(coord.dir.join(f).exists(), "{f} created on first start");
    }
    // The store is the SQLite file in the data directory unless the test
    // coordinator runs on PostgreSQL (TETHER_TEST_DATABASE=postgres).
    assert_eq!(
        coord.dir.join("tether.db").exists(),
        coord.database.is_none(),
        "tether.db exists exactly when the store is SQLite"
    );
    let dir_mode = std::fs::metadata(&coord.dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
}

#[test]
fn a_deregistered_instance_is_refused_and_its_commands_undeliverable() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let agent = Agent::start(tmp.path(), "a", &coord);
    coord.json(&[
        "deregister-managed-instance",
        "--instance-id",
        &agent.instance_id,
    ]);
    let v = coord.json(&["describe-instance-information"]);
    assert_eq!(v["InstanceInformationList"], json!([]));
    let id = coord.send(&[&agent.instance_id], &json!({"commands": ["true"]}));
    let inv = coord.invocation(&id, &agent.instance_id);
    assert_eq!(
        (inv["Status"].clone(), inv["StatusDetails"].clone()),
        (json!("Failed"), json!("Undeliverable"))
    );
    wait_for("the agent to be refused", Duration::from_secs(40), || {
        agent
            .errors_log()
            .contains("refuses this agent")
            .then_some(())
    });
}

/// Runs `tether-agent run` on `agent`'s directories in the foreground until
/// it exits (within 20 s); its exit code and stderr.
fn run_agent_once(agent: &Agent, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(tether_tests::bin("tether-agent"))
        .arg("run")
        .arg("--state-dir")
        .arg(&agent.state_dir)
        .arg("--log-dir")
        .arg(&agent.log_dir)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tether-agent run");
    let status = wait_for("the agent to exit", Duration::from_secs(20), || {
        child.try_wait().expect("wait for the agent")
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    (status.code(), err)
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn chown(path: &std::path::Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), None)
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// `nobody` on Debian: a user other than the one the tests run as.
const NOBODY: u32 = 65534;

fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "StrictModes tests give files to another user (chown): run them as root (CI does)"
    );
}

/// StrictModes (issue 13, item 1): with its state directory writable by
/// anyone, or a file of its identity owned by another user, the agent
/// refuses to start — naming the path, its mode and owner, and the fix —
/// and runs again once the files are its own.
#[test]
fn the_agent_refuses_a_state_directory_others_could_have_written() {
    assert_root();
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let mut agent = Agent::start(tmp.path(), "a", &coord);
    agent.crash();
    let state = agent.state_dir.canonicalize().unwrap();

    chmod(&state, 0o777);
    let (code, err) = run_agent_once(&agent, &[]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("refusing to start: refusing to trust the agent's files: ")
            && err.contains(&format!(
                "{} is writable by its group and everyone else (mode 0777, owner root (uid 0))",
                state.display()
            ))
            && err.contains(&format!(
                "Fix: check what it holds, then chmod go-w {}",
                state.display()
            )),
        "{err}"
    );
    // `status` says so too, and is unhealthy.
    let (healthy, text) = agent.status(&[]);
    assert!(
        !healthy && text.contains("Files:         UNSAFE: "),
        "{text}"
    );
    chmod(&state, 0o700);

    // The attack of the issue: the CA and the registration replaced by
    // another user's.
    for file in ["ca.pem", "registration.json", "agent.key"] {
        let path = state.join(file);
        chown(&path, NOBODY);
        let (code, err) = run_agent_once(&agent, &[]);
        assert_eq!(code, Some(78), "{file}: {err}");
        assert!(
            err.contains(&format!(
                "{} is owned by nobody (uid 65534), not by root (uid 0) that this process runs as (mode 0600)",
                path.display()
            )) && err.contains(&format!("Fix: check what it holds, then chown root {}", path.display())),
            "{file}: {err}"
        );
        chown(&path, 0);
    }
    // Deep in the spool too (a command planted for the next start).
    let spool = state.join("spool");
    std::fs::create_dir_all(spool.join("planted")).unwrap();
    chmod(&spool.join("planted"), 0o757);
    let (code, err) = run_agent_once(&agent, &[]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("planted is writable by everyone else (mode 0757"),
        "{err}"
    );
    std::fs::remove_dir(spool.join("planted")).unwrap();

    // A settings file anyone can write could name the user steps run as.
    let config = tmp.path().join("agent.toml");
    std::fs::write(&config, "").unwrap();
    chmod(&config, 0o666);
    let config_env = config.display().to_string();
    let (code, err) = run_agent_once(&agent, &[("TETHER_AGENT_CONFIG", &config_env)]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("agent.toml is writable by"), "{err}");

    // `register --force` will not write keys into such a directory either.
    chmod(&state, 0o775);
    let (id, code) = coord.activation(1);
    let out = std::process::Command::new(tether_tests::bin("tether-agent"))
        .args([
            "register",
            "--force",
            "--endpoint",
            &coord.endpoint(),
            "--id",
            &id,
        ])
        .args(["--code", &code, "--ca-pin", &coord.ca_pin(), "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is writable by its group (mode 0775"),
        "{err}"
    );
    chmod(&state, 0o700);

    // Its own again: it starts and takes commands.
    agent.run();
    let marker = tmp.path().join("ran");
    let inv = send_marker(&coord, &agent, &marker);
    assert_eq!(inv["Status"], "Success", "{inv}");
}

/// The coordinator applies the same rule to its data and secrets directories
/// and its database, wherever `--database` puts it; the database files it
/// makes are 0600 there.
#[test]
fn the_coordinator_refuses_files_others_could_have_written() {
    assert_root();
    let tmp = tempfile::tempdir().unwrap();
    let serve = |data: &std::path::Path, extra: &[&str]| {
        std::process::Command::new(tether_tests::bin("tether"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--audit-log", "off"])
            .args(extra)
            .output()
            .unwrap()
    };
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    chmod(&data, 0o777);
    let out = serve(&data, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "tether serve: refusing to start: {} is writable by its group and everyone else (mode 0777, owner root (uid 0))",
            data.display()
        )) && err.contains("Fix: "),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "nothing was created"
    );
    chmod(&data, 0o700);

    // A first start on a database elsewhere: every file it makes is 0600.
    let shared = tmp.path().join("db");
    std::fs::create_dir(&shared).unwrap();
    let db = shared.join("fleet.db");
    let db_arg = db.display().to_string();
    let mut coord = Coordinator::start_with_env(tmp.path(), &[("TETHER_DATABASE", &db_arg)]);
    let agent = Agent::start(tmp.path(), "a", &coord);
    assert_eq!(
        send_marker(&coord, &agent, &tmp.path().join("m"))["Status"],
        "Success"
    );
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{db_arg}{suffix}");
        let mode = std::fs::metadata(&p).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600,
            "{p}"
        );
    }
    coord.stop();
    let coord_dir = coord.dir.clone();

    // ... and it refuses to open it in a directory anyone can write.
    chmod(&shared, 0o777);
    let out = serve(&coord_dir, &["--database", &db_arg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "{} is writable by its group and everyone else",
            shared.display()
        )) && err.contains(&format!("and it is a directory above {db_arg}")),
        "{err}"
    );
    chmod(&shared, 0o700);

    // A signing key that another user owns.
    let key = coord_dir.join("signing.key");
    chown(&key, NOBODY);
    let out = serve(&coord_dir, &["--database", &db_arg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!("{} is owned by nobody (uid 65534)", key.display())),
        "{err}"
    );
    chown(&key, 0);
    // A private key others can read.
    chmod(&key, 0o644);
    let out = serve(&coord_dir, &["--database", &db_arg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} holds a private key and is readable by its group and everyone else (mode 0644",
            key.display()
        )),
        "{err}"
    );
    chmod(&key, 0o600);
    coord.restart();
    assert_eq!(
        send_marker(&coord, &agent, &tmp.path().join("m2"))["Status"],
        "Success"
    );
}

/// A report from one node for another node's command changes nothing and
/// is logged (it used to be ignored silently).
#[test]
fn a_report_for_another_nodes_command_is_logged_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let a = Agent::start(tmp.path(), "a", &coord);
    // b is registered but not running: the test speaks for it.
    let (id, code) = coord.activation(1);
    let b = Agent::register(
        tmp.path(),
        "b",
        &coord.endpoint(),
        &coord.ca_pin(),
        (&id, &code),
    );
    let cmd = coord.send(
        &[&a.instance_id],
        &json!({"commands": ["sleep 3; echo a-ran"]}),
    );
    let state = tether_agent::state::StateDir::new(b.state_dir.clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = tether_agent::run::build_channel(&state, &coord.endpoint()).unwrap();
        let mut client = tether_proto::agent_client::AgentClient::new(channel);
        let report = tether_proto::InvocationReport {
            command_id: cmd.clone(),
            state: tether_proto::InvocationState::Success as i32,
            response_code: 0,
            ..Default::default()
        };
        let started = tether_proto::InvocationReport {
            state: tether_proto::InvocationState::InProgress as i32,
            ..report.clone()
        };
        for r in [started, report] {
            client
                .report(tether_proto::ReportRequest { reports: vec![r] })
                .await
                .expect("the coordinator takes the report (and ignores it)");
        }
    });
    wait_for("the report to be logged", Duration::from_secs(10), || {
        let log = coord.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("report ignored: this instance has no invocation of that command")
                    && l.contains(&b.instance_id)
                    && l.contains(&cmd)
            })
            .collect();
        (lines.len() == 2).then_some(())
    });
    // a's own invocation is untouched, and ends with a's own result.
    let inv = coord.wait_invocation(&cmd, &a.instance_id, Duration::from_secs(30));
    assert_eq!(inv["Status"], "Success", "{inv}");
    assert_eq!(inv["StandardOutputContent"], "a-ran\n", "{inv}");
}
