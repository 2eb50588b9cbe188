//! Run Command end to end: output, exit codes, failures, timeouts, history.

use std::time::Duration;

use serde_json::json;
use tether_tests::{Agent, Coordinator, wait_for};

#[test]
fn a_command_on_two_agents_returns_each_ones_output() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let a = Agent::start(tmp.path(), "a", &coord);
    let b = Agent::start(tmp.path(), "b", &coord);
    let v = coord.json(&[
        "send-command",
        "--instance-ids", &a.instance_id, &b.instance_id,
        "--document-name", "AWS-RunShellScript",
        "--comment", "IP config",
        "--parameters", r#"{"commands":["echo out-$TETHER_INSTANCE_ID", "echo err-$SSM_COMMAND_ID >&2", "pwd"],"workingDirectory":["/tmp"]}"#,
    ]);
    let cmd = &v["Command"];
    let id = cmd["CommandId"].as_str().unwrap().to_string();
    assert_eq!(cmd["TargetCount"], json!(2));
    assert_eq!(cmd["Comment"], json!("IP config"));
    assert_eq!(cmd["DocumentName"], json!("AWS-RunShellScript"));
    // Every invocation exists as soon as SendCommand returns.
    for agent in [&a, &b] {
        let inv = coord.invocation(&id, &agent.instance_id);
        assert!(
            inv["Status"] == "Pending"
                || inv["Status"] == "InProgress"
                || inv["Status"] == "Success",
            "{inv}"
        );
    }
    for agent in [&a, &b] {
        let inv = coord.wait_invocation(&id, &agent.instance_id, Duration::from_secs(30));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
        assert_eq!(inv["StatusDetails"], json!("Success"));
        assert_eq!(inv["ResponseCode"], json!(0));
        // As AWS names a schema 1.2 plugin; no version named: `$DEFAULT`,
        // the version it resolved to and the content's hash beside it.
        assert_eq!(inv["PluginName"], json!("aws:runShellScript"));
        assert_eq!(inv["DocumentVersion"], json!("$DEFAULT"));
        assert_eq!(inv["ResolvedDocumentVersion"], json!("1"));
        assert_eq!(
            inv["DocumentHash"].as_str().map(str::len),
            Some(64),
            "{inv}"
        );
        assert_eq!(
            inv["StandardOutputContent"],
            json!(format!("out-{}\n/tmp\n", agent.instance_id))
        );
        // Scripts name the plugin as AWS does; the property id still works.
        for name in ["aws:runShellScript", "0.aws:runShellScript"] {
            let named = coord.json(&[
                "get-command-invocation",
                "--command-id",
                &id,
                "--instance-id",
                &agent.instance_id,
                "--plugin-name",
                name,
            ]);
            assert_eq!(named["PluginName"], json!(name));
            assert_eq!(named["StandardOutputContent"], inv["StandardOutputContent"]);
        }
        assert_eq!(inv["StandardErrorContent"], json!(format!("err-{id}\n")));
        assert!(
            inv["ExecutionStartDateTime"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        assert!(
            inv["ExecutionElapsedTime"]
                .as_str()
                .unwrap()
                .starts_with("PT")
        );
    }
    let cmds = coord.json(&["list-commands", "--command-id", &id]);
    let c = &cmds["Commands"][0];
    assert_eq!(
        (
            c["Status"].clone(),
            c["CompletedCount"].clone(),
            c["ErrorCount"].clone()
        ),
        (json!("Success"), json!(2), json!(0))
    );
    assert!(
        c["RequestedDateTime"].as_str().unwrap().contains('T'),
        "timestamps print as ISO 8601: {c}"
    );

    let invs = coord.json(&["list-command-invocations", "--command-id", &id, "--details"]);
    let list = invs["CommandInvocations"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for inv in list {
        let plugin = &inv["CommandPlugins"][0];
        assert_eq!(plugin["Name"], json!("aws:runShellScript"));
        assert_eq!(plugin["Status"], json!("Success"));
        let output = plugin["Output"].as_str().unwrap();
        assert!(
            output.starts_with("out-mi-") && output.contains("----------ERROR-------\nerr-"),
            "{output}"
        );
    }
    let brief = coord.json(&["list-command-invocations", "--command-id", &id]);
    assert_eq!(brief["CommandInvocations"][0]["CommandPlugins"], json!([]));
}

#[test]
fn failing_and_timed_out_commands_end_with_their_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let a = Agent::start(tmp.path(), "a", &coord);
    let me = a.instance_id.as_str();

    let failing = coord.send(&[me], &json!({"commands": ["echo before", "exit 3"]}));
    let inv = coord.wait_invocation(&failing, me, Duration::from_secs(30));
    assert_eq!(
        (inv["Status"].clone(), inv["StatusDetails"].clone()),
        (json!("Failed"), json!("Failed"))
    );
    assert_eq!(inv["ResponseCode"], json!(3));
    assert_eq!(inv["StandardOutputContent"], json!("before\n"));
    let c = &coord.json(&["list-commands", "--command-id", &failing])["Commands"][0];
    assert_eq!(
        (c["Status"].clone(), c["ErrorCount"].clone()),
        (json!("Failed"), json!(1))
    );

    let started = std::time::Instant::now();
    // A sleep no other test (or other checkout's test run) uses.
    let sleeper = format!("sleep 60.{}", std::process::id());
    let slow = coord.send(
        &[me],
        &json!({"commands": ["echo started", format!("{sleeper} & {sleeper}")], "executionTimeout": ["2"]}),
    );
    let inv = coord.wait_invocation(&slow, me, Duration::from_secs(30));
    assert_eq!(
        (inv["Status"].clone(), inv["StatusDetails"].clone()),
        (json!("TimedOut"), json!("Execution Timed Out"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout was enforced"
    );
    assert_eq!(inv["StandardOutputContent"], json!("started\n"));
    let c = &coord.json(&["list-commands", "--command-id", &slow])["Commands"][0];
    assert_eq!(
        (c["Status"].clone(), c["StatusDetails"].clone()),
        (json!("TimedOut"), json!("Execution Timed Out"))
    );

    // The step's whole process group was killed: none of its sleeps is left.
    let ps = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ps -eo args | grep -c '^{sleeper}$' || true"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "0");
}

#[test]
fn long_and_binary_output_is_kept_and_cut_like_ssm() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let a = Agent::start(tmp.path(), "a", &coord);
    let me = a.instance_id.as_str();
    let id = coord.send(
        &[me],
        &json!({"commands": [
            "head -c 30000 /dev/zero | tr '\\0' x",
            "printf '\\377\\376 not utf-8' >&2"
        ]}),
    );
    let inv = coord.wait_invocation(&id, me, Duration::from_secs(30));
    let out = inv["StandardOutputContent"].as_str().unwrap();
    assert_eq!(out.chars().count(), 24_000);
    assert!(out.ends_with("--output truncated--"));
    assert_eq!(
        inv["StandardErrorContent"],
        json!("\u{fffd}\u{fffd} not utf-8")
    );
    let full = coord.json(&[
        "get-command-invocation",
        "--command-id",
        &id,
        "--instance-id",
        me,
        "--full-output",
    ]);
    assert_eq!(
        full["StandardOutputContent"].as_str().unwrap().len(),
        30_000
    );
    let listed = coord.json(&["list-command-invocations", "--command-id", &id, "--details"]);
    let output = listed["CommandInvocations"][0]["CommandPlugins"][0]["Output"]
        .as_str()
        .unwrap();
    assert_eq!(output.chars().count(), 2_500);
}

#[test]
fn an_offline_agent_gets_queued_work_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let mut a = Agent::start(tmp.path(), "a", &coord);
    let online = Agent::start(tmp.path(), "online", &coord);
    a.crash();
    let me = a.instance_id.clone();
    let id = coord.send(
        &[&me, &online.instance_id],
        &json!({"commands": ["echo queued"]}),
    );
    // The same command has gone out to the node that is there and come back:
    // the coordinator has dispatched it, and the offline node's share waits.
    let there = coord.wait_invocation(&id, &online.instance_id, Duration::from_secs(30));
    assert_eq!(there["Status"], json!("Success"), "{there}");
    assert_eq!(coord.invocation(&id, &me)["Status"], json!("Pending"));
    a.run();
    let inv = coord.wait_invocation(&id, &me, Duration::from_secs(30));
    assert_eq!(inv["StandardOutputContent"], json!("queued\n"));
    wait_for(
        "the agent to log the command",
        Duration::from_secs(5),
        || a.logged("command accepted", &id).then_some(()),
    );
}

/// PowerShell cannot be installed here: a stand-in `pwsh` records how it was
/// invoked and runs the script with sh, which checks the invocation contract
/// (`pwsh -NoProfile -NonInteractive -File script.ps1`).
#[test]
fn powershell_steps_run_through_pwsh_with_a_stand_in_executable() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let fake = tmp.path().join("pwsh");
    let args_file = tmp.path().join("pwsh-args");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" > {}\nfor last; do :; done\nexec sh \"$last\"\n",
            args_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = Agent::start_with_env(
        tmp.path(),
        "a",
        &coord,
        &[("TETHER_AGENT_PWSH", fake.to_str().unwrap())],
    );
    let v = coord.json(&[
        "send-command",
        "--instance-ids",
        &agent.instance_id,
        "--document-name",
        "AWS-RunPowerShellScript",
        "--parameters",
        "commands=echo from-ps",
    ]);
    let id = v["Command"]["CommandId"].as_str().unwrap();
    let inv = coord.wait_invocation(id, &agent.instance_id, Duration::from_secs(30));
    assert_eq!(inv["Status"], json!("Success"), "{inv}");
    assert_eq!(inv["PluginName"], json!("aws:runPowerShellScript"));
    assert_eq!(inv["StandardOutputContent"], json!("from-ps\n"));
    let args = std::fs::read_to_string(&args_file).unwrap();
    assert!(
        args.starts_with("-NoProfile -NonInteractive -File /")
            && args.trim_end().ends_with("script.ps1"),
        "{args}"
    );
}

#[test]
fn a_command_never_picked_up_ends_as_delivery_timed_out() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let mut a = Agent::start(tmp.path(), "a", &coord);
    a.crash();
    let v = coord.json(&[
        "send-command",
        "--instance-ids",
        &a.instance_id,
        "--document-name",
        "AWS-RunShellScript",
        "--parameters",
        "commands=true",
        "--timeout-seconds",
        "30",
    ]);
    let id = v["Command"]["CommandId"].as_str().unwrap();
    let inv = coord.wait_invocation(id, &a.instance_id, Duration::from_secs(45));
    assert_eq!(
        (inv["Status"].clone(), inv["StatusDetails"].clone()),
        (json!("TimedOut"), json!("Delivery Timed Out"))
    );
    let c = &coord.json(&["list-commands", "--command-id", id])["Commands"][0];
    assert_eq!(
        (
            c["Status"].clone(),
            c["DeliveryTimedOutCount"].clone(),
            c["ErrorCount"].clone()
        ),
        (json!("TimedOut"), json!(1), json!(0))
    );
    // The agent, back later, does not run it: a command sent after it is back
    // has reached it and run (the timed-out one, were it delivered, would
    // have come in the same poll or an earlier one, and is logged on receipt).
    a.run();
    let later = coord.send(&[&a.instance_id], &json!({"commands": ["echo later"]}));
    let inv = coord.wait_invocation(&later, &a.instance_id, Duration::from_secs(30));
    assert_eq!(inv["StandardOutputContent"], json!("later\n"), "{inv}");
    assert!(a.logged("command accepted", &later), "{}", a.log());
    assert!(!a.logged("command accepted", id), "{}", a.log());
}

#[test]
fn huge_output_is_capped_per_stream_and_the_result_still_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let a = Agent::start(tmp.path(), "a", &coord);
    let me = a.instance_id.as_str();
    // 20 MB on stdout against the default 16 MiB cap.
    let id = coord.send(
        &[me],
        &json!({"commands": ["head -c 20000000 /dev/zero | tr '\\0' y", "echo tail >&2"]}),
    );
    let inv = coord.wait_invocation(&id, me, Duration::from_secs(60));
    assert_eq!(inv["Status"], json!("Success"));
    assert_eq!(inv["StandardErrorContent"], json!("tail\n"));
    let full = coord.json(&[
        "get-command-invocation",
        "--command-id",
        &id,
        "--instance-id",
        me,
        "--full-output",
    ]);
    let out = full["StandardOutputContent"].as_str().unwrap();
    assert!(out.ends_with("--output truncated--"));
    assert_eq!(out.len(), 16 * 1024 * 1024 + "\n--output truncated--".len());
}

#[test]
fn the_output_cap_is_configurable() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let a = Agent::start_with_env(
        tmp.path(),
        "a",
        &coord,
        &[("TETHER_AGENT_OUTPUT_CAP_BYTES", "1000")],
    );
    let me = a.instance_id.as_str();
    let id = coord.send(
        &[me],
        &json!({"commands": ["seq 1 10000", "echo exit-code-kept", "exit 4"]}),
    );
    let inv = coord.wait_invocation(&id, me, Duration::from_secs(30));
    assert_eq!(
        (inv["Status"].clone(), inv["ResponseCode"].clone()),
        (json!("Failed"), json!(4))
    );
    let out = inv["StandardOutputContent"].as_str().unwrap();
    assert!(
        out.starts_with("1\n2\n3\n") && out.ends_with("--output truncated--"),
        "{out}"
    );
    assert_eq!(out.len(), 1000 + "\n--output truncated--".len());
}

#[test]
fn max_concurrency_and_max_errors_follow_ssm() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let agents: Vec<Agent> = ["a", "b", "c"]
        .iter()
        .map(|n| Agent::start(tmp.path(), n, &coord))
        .collect();
    let ids: Vec<&str> = agents.iter().map(|a| a.instance_id.as_str()).collect();
    let log = tmp.path().join("order");
    let script = format!(
        "echo start >> {0}; sleep 0.5; echo end >> {0}",
        log.display()
    );
    let params = json!({"commands": [script]}).to_string();
    let mut args = vec![
        "send-command",
        "--document-name",
        "AWS-RunShellScript",
        "--parameters",
        &params,
        "--max-concurrency",
        "1",
        "--instance-ids",
    ];
    args.extend(&ids);
    let v = coord.json(&args);
    let id = v["Command"]["CommandId"].as_str().unwrap().to_string();
    assert_eq!(v["Command"]["MaxConcurrency"], json!("1"));
    for i in &ids {
        let inv = coord.wait_invocation(&id, i, Duration::from_secs(30));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
    }
    // One at a time: the steps never overlapped.
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "start\nend\n".repeat(3)
    );

    // With MaxErrors 0, the first failure stops the rest: they end Terminated.
    let mut args = vec![
        "send-command",
        "--document-name",
        "AWS-RunShellScript",
        "--parameters",
        "commands=exit 7",
        "--max-concurrency",
        "1",
        "--max-errors",
        "0",
        "--instance-ids",
    ];
    args.extend(&ids);
    let v = coord.json(&args);
    let id = v["Command"]["CommandId"].as_str().unwrap().to_string();
    let mut details: Vec<String> = ids
        .iter()
        .map(|i| {
            coord.wait_invocation(&id, i, Duration::from_secs(30))["StatusDetails"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    details.sort();
    assert_eq!(details, ["Failed", "Terminated", "Terminated"]);
    let c = &coord.json(&["list-commands", "--command-id", &id])["Commands"][0];
    assert_eq!(
        (
            c["Status"].clone(),
            c["ErrorCount"].clone(),
            c["CompletedCount"].clone()
        ),
        (json!("Failed"), json!(1), json!(3))
    );
}

/// Steps get a clean, documented environment (README "What a step sees"):
/// nothing of the agent's own but the locale, time zone, proxies and PATH,
/// plus the user's HOME/USER/LOGNAME/SHELL and the step variables.
#[test]
fn steps_get_a_clean_environment_and_nothing_else_of_the_agents() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let agent = Agent::start_with_env(
        tmp.path(),
        "a",
        &coord,
        &[
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "C"),
            ("TZ", "UTC"),
            ("no_proxy", "example.invalid"),
            ("AGENT_ONLY_SECRET", "must-not-leak"),
            ("LD_PRELOAD", ""),
        ],
    );
    let id = coord.send(&[&agent.instance_id], &json!({"commands": ["env"]}));
    let inv = coord.wait_invocation(&id, &agent.instance_id, Duration::from_secs(30));
    assert_eq!(inv["Status"], "Success", "{inv}");
    let out = inv["StandardOutputContent"].as_str().unwrap();
    let env: std::collections::BTreeMap<&str, &str> =
        out.lines().filter_map(|l| l.split_once('=')).collect();
    for (k, v) in [
        ("LANG", "C.UTF-8"),
        ("LC_TIME", "C"),
        ("TZ", "UTC"),
        ("no_proxy", "example.invalid"),
        ("HOME", "/root"),
        ("USER", "root"),
        ("LOGNAME", "root"),
        ("TETHER_COMMAND_ID", id.as_str()),
        ("SSM_COMMAND_ID", id.as_str()),
        ("TETHER_INSTANCE_ID", agent.instance_id.as_str()),
        ("AWS_SSM_INSTANCE_ID", agent.instance_id.as_str()),
        ("AWS_SSM_PLATFORM_NAME", "Linux"),
    ] {
        assert_eq!(env.get(k).copied(), Some(v), "{k} in:\n{out}");
    }
    assert!(
        env.contains_key("PATH") && env.contains_key("SHELL"),
        "{out}"
    );
    let documented = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "no_proxy",
        "TETHER_COMMAND_ID",
        "TETHER_INSTANCE_ID",
        "SSM_COMMAND_ID",
        "AWS_SSM_INSTANCE_ID",
        "AWS_SSM_PLATFORM_NAME",
        // Set by sh itself.
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
    ];
    let extra: Vec<&&str> = env
        .keys()
        .filter(|k| !documented.contains(*k) && !k.starts_with("LC_"))
        .collect();
    assert!(
        extra.is_empty(),
        "undocumented variables {extra:?} in:\n{out}"
    );
    assert!(
        !out.contains("must-not-leak") && !out.contains("TETHER_AGENT_"),
        "{out}"
    );
}

/// A local user made for one test, removed (with its home) when dropped.
struct TestUser(String);

impl TestUser {
    fn new(tag: &str) -> TestUser {
        assert!(
            nix::unistd::geteuid().is_root(),
            "run_as_user tests create a user with useradd: run them as root (CI does)"
        );
        let name = format!("tether-{tag}-{}", std::process::id());
        let out = std::process::Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", &name])
            .output()
            .expect("useradd (Debian package passwd)");
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TestUser(name)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel")
            .args(["--remove", &self.0])
            .output();
    }
}

/// `run_as_user` in agent.toml: commands and association steps run as that
/// user, with its home and groups, and cannot read the agent's state. No
/// document can choose another.
#[test]
fn steps_run_as_the_user_the_nodes_configuration_names() {
    let user = TestUser::new("steps");
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let config = tmp.path().join("agent.toml");
    std::fs::write(&config, format!("run_as_user = \"{}\"\n", user.0)).unwrap();
    let config_env = config.display().to_string();
    let agent = Agent::start_with_env(
        tmp.path(),
        "a",
        &coord,
        &[("TETHER_AGENT_CONFIG", &config_env)],
    );
    assert!(
        agent.log().contains(&format!("steps_run_as={}", user.0)),
        "{}",
        agent.log()
    );
    let key = agent.state_dir.join("agent.key");
    let id = coord.send(
        &[&agent.instance_id],
        &json!({"commands": [
            "id -un",
            "echo \"$HOME $USER $LOGNAME\"",
            format!("cat {} 2>&1 || echo no-key", key.display()),
            "touch /root/not-yours 2>/dev/null || echo no-root",
        ]}),
    );
    let inv = coord.wait_invocation(&id, &agent.instance_id, Duration::from_secs(30));
    assert_eq!(inv["Status"], "Success", "{inv}");
    let out = inv["StandardOutputContent"].as_str().unwrap();
    let home = format!("/home/{}", user.0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], user.0, "{out}");
    assert_eq!(lines[1], format!("{home} {} {}", user.0, user.0), "{out}");
    assert!(
        lines[2].contains("Permission denied") && lines[3] == "no-key",
        "{out}"
    );
    assert_eq!(lines[4], "no-root", "{out}");
    assert!(!std::path::Path::new("/root/not-yours").exists());

    // Association steps too, also when they run on the agent's schedule.
    let created = coord.json(&[
        "create-association",
        "--name",
        "AWS-RunShellScript",
        "--targets",
        &format!("Key=InstanceIds,Values={}", agent.instance_id),
        "--parameters",
        r#"{"commands":["id -un > \"$HOME/assoc-ran\""]}"#,
    ]);
    let assoc = created["AssociationDescription"]["AssociationId"]
        .as_str()
        .unwrap()
        .to_string();
    let marker = std::path::PathBuf::from(&home).join("assoc-ran");
    // The shell creates the file before `id` writes to it: wait for a line.
    let ran = wait_for("the association's step", Duration::from_secs(60), || {
        std::fs::read_to_string(&marker)
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    assert_eq!(ran.trim(), user.0);
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&marker).unwrap());
    assert_ne!(owner, 0, "written as the user, not as root");
    assert!(!assoc.is_empty());

    // An unknown user stops the agent at start, saying which.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "run_as_user = \"no-such-user-here\"\n").unwrap();
    let out = std::process::Command::new(tether_tests::bin("tether-agent"))
        .arg("run")
        .arg("--state-dir")
        .arg(tmp.path().join("b"))
        .arg("--log-dir")
        .arg(tmp.path().join("b-log"))
        .env("TETHER_AGENT_CONFIG", &bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("run_as_user = \"no-such-user-here\": no such local user"),
        "{err}"
    );
}
