//! Controlling Run Command: tags and tag targets, cancelling running and
//! pending work, following output live, and invocations whose node went away.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tether_tests::{Agent, Coordinator, bin, wait_for};

fn service_error(coord: &Coordinator, args: &[&str]) -> String {
    let out = coord.cli(args);
    assert_eq!(out.status.code(), Some(254), "tether {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn targets_of(coord: &Coordinator, command_id: &str) -> Vec<String> {
    let v = coord.json(&["list-command-invocations", "--command-id", command_id]);
    let mut ids: Vec<String> = v["CommandInvocations"]
        .as_array()
        .expect("CommandInvocations")
        .iter()
        .map(|i| i["InstanceId"].as_str().expect("InstanceId").to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn processes_matching(pattern: &str) -> usize {
    let out = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("run ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == pattern)
        .count()
}

#[test]
fn tags_select_targets_and_activation_tags_are_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let act = coord.json(&[
        "create-activation",
        "--iam-role",
        "SSMServiceRole",
        "--registration-limit",
        "2",
        "--tags",
        "Key=Role,Value=web",
    ]);
    let pair = (
        act["ActivationId"].as_str().unwrap(),
        act["ActivationCode"].as_str().unwrap(),
    );
    let a = Agent::start_with_activation(tmp.path(), "a", &coord, pair, &[]);
    let b = Agent::start_with_activation(tmp.path(), "b", &coord, pair, &[]);
    let c = Agent::start(tmp.path(), "c", &coord);
    let tags = |id: &str| {
        coord.json(&[
            "list-tags-for-resource",
            "--resource-type",
            "ManagedInstance",
            "--resource-id",
            id,
        ])["TagList"]
            .clone()
    };
    assert_eq!(
        tags(&a.instance_id),
        json!([{"Key": "Role", "Value": "web"}])
    );
    assert_eq!(tags(&c.instance_id), json!([]));
    for (agent, env) in [(&a, "lab"), (&b, "prod"), (&c, "dev")] {
        let tag = format!("Key=Env,Value={env}");
        coord.json(&[
            "add-tags-to-resource",
            "--resource-type",
            "ManagedInstance",
            "--resource-id",
            &agent.instance_id,
            "--tags",
            &tag,
        ]);
    }
    assert_eq!(
        tags(&b.instance_id),
        json!([{"Key": "Role", "Value": "web"}, {"Key": "Env", "Value": "prod"}])
    );

    let send = |target: &str| -> String {
        let v = coord.json(&[
            "send-command",
            "--targets",
            target,
            "--document-name",
            "AWS-RunShellScript",
            "--parameters",
            "commands=echo tagged",
        ]);
        v["Command"]["CommandId"].as_str().unwrap().to_string()
    };
    let by_tag = send("Key=tag:Env,Values=lab,prod");
    assert_eq!(
        targets_of(&coord, &by_tag),
        sorted(&[&a.instance_id, &b.instance_id])
    );
    let by_key = send("Key=tag-key,Values=Role");
    assert_eq!(
        targets_of(&coord, &by_key),
        sorted(&[&a.instance_id, &b.instance_id])
    );
    let by_id = send(&format!("Key=InstanceIds,Values={}", c.instance_id));
    assert_eq!(targets_of(&coord, &by_id), vec![c.instance_id.clone()]);
    for (cmd, agents) in [(&by_tag, vec![&a, &b]), (&by_id, vec![&c])] {
        for agent in agents {
            let inv = coord.wait_invocation(cmd, &agent.instance_id, Duration::from_secs(30));
            assert_eq!(inv["StandardOutputContent"], json!("tagged\n"), "{inv}");
        }
    }
    let e = service_error(
        &coord,
        &[
            "send-command",
            "--targets",
            "Key=tag:Env,Values=nowhere",
            "--document-name",
            "AWS-RunShellScript",
            "--parameters",
            "commands=true",
        ],
    );
    assert!(e.contains("No Instances In Tag"), "{e}");

    // Retagging changes what a tag target selects.
    coord.json(&[
        "remove-tags-from-resource",
        "--resource-type",
        "ManagedInstance",
        "--resource-id",
        &a.instance_id,
        "--tag-keys",
        "Env",
    ]);
    assert_eq!(
        tags(&a.instance_id),
        json!([{"Key": "Role", "Value": "web"}])
    );
    let again = send("Key=tag:Env,Values=lab,prod");
    assert_eq!(targets_of(&coord, &again), vec![b.instance_id.clone()]);

    let e = service_error(
        &coord,
        &[
            "list-tags-for-resource",
            "--resource-type",
            "PatchBaseline",
            "--resource-id",
            "pb-0123456789abcdef0",
        ],
    );
    assert!(e.contains("(InvalidResourceType)"), "{e}");
    let e = service_error(
        &coord,
        &[
            "add-tags-to-resource",
            "--resource-type",
            "ManagedInstance",
            "--resource-id",
            "mi-0000000000000000f",
            "--tags",
            "Key=A,Value=b",
        ],
    );
    assert!(e.contains("(InvalidResourceId)"), "{e}");
}

#[test]
fn cancel_kills_a_running_process_tree_and_pending_work_never_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let a = Agent::start(tmp.path(), "a", &coord);
    let mut b = Agent::start(tmp.path(), "b", &coord);
    let me = a.instance_id.as_str();

    // Sleeps no other test (or other checkout's test run) uses.
    let (s1, s2) = (
        format!("sleep 3117.{}", std::process::id()),
        format!("sleep 3118.{}", std::process::id()),
    );
    let running = coord.send(
        &[me],
        &json!({"commands": [format!("{s1} & {s2}"), "echo never"]}),
    );
    wait_for(
        "the step's processes to start",
        Duration::from_secs(20),
        || (processes_matching(&s1) == 1 && processes_matching(&s2) == 1).then_some(()),
    );
    let started = Instant::now();
    assert_eq!(
        coord.json(&["cancel-command", "--command-id", &running]),
        serde_json::Value::Null
    );
    let inv = coord.wait_invocation(&running, me, Duration::from_secs(20));
    assert_eq!(
        (inv["Status"].clone(), inv["StatusDetails"].clone()),
        (json!("Cancelled"), json!("Cancelled")),
        "{inv}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        processes_matching(&s1) + processes_matching(&s2),
        0,
        "the whole process tree was killed"
    );
    let c = &coord.json(&["list-commands", "--command-id", &running])["Commands"][0];
    assert_eq!(c["Status"], json!("Cancelled"));

    // An offline node's queued invocation is cancelled at once and never runs.
    b.crash();
    let marker = tmp.path().join("ran");
    let queued = coord.send(
        &[&b.instance_id],
        &json!({"commands": [format!("touch {}", marker.display())]}),
    );
    coord.json(&[
        "cancel-command",
        "--command-id",
        &queued,
        "--instance-ids",
        &b.instance_id,
    ]);
    let inv = coord.invocation(&queued, &b.instance_id);
    assert_eq!(inv["Status"], json!("Cancelled"), "{inv}");
    b.run();
    wait_for("b to come back", Duration::from_secs(20), || {
        let v = coord.json(&["describe-instance-information"]);
        v["InstanceInformationList"]
            .as_array()?
            .iter()
            .any(|i| i["InstanceId"] == b.instance_id.as_str() && i["PingStatus"] == "Online")
            .then_some(())
    });
    // Proof that b has polled past the point where the cancelled invocation
    // would have reached it: work sent after it has come back and run. The
    // cancelled one would have come in the same poll or an earlier one, and
    // the agent logs "command accepted" on receipt, before running anything.
    let later = coord.send(&[&b.instance_id], &json!({"commands": ["echo later"]}));
    let inv = coord.wait_invocation(&later, &b.instance_id, Duration::from_secs(30));
    assert_eq!(inv["StandardOutputContent"], json!("later\n"), "{inv}");
    assert!(b.logged("command accepted", &later), "{}", b.log());
    assert!(
        !b.logged("command accepted", &queued),
        "a cancelled invocation must not reach the agent: {}",
        b.log()
    );
    assert!(!marker.exists(), "a cancelled invocation must not run");

    let e = service_error(
        &coord,
        &[
            "cancel-command",
            "--command-id",
            "00000000-0000-4000-8000-000000000000",
        ],
    );
    assert!(e.contains("(InvalidCommandId)"), "{e}");
    let e = service_error(
        &coord,
        &[
            "cancel-command",
            "--command-id",
            &queued,
            "--instance-ids",
            me,
        ],
    );
    assert!(e.contains("(InvalidInstanceId)"), "{e}");
    // Cancelling what already ended changes nothing.
    coord.json(&["cancel-command", "--command-id", &running]);
    assert_eq!(coord.invocation(&running, me)["Status"], json!("Cancelled"));
}

#[test]
fn follow_streams_output_while_the_command_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let a = Agent::start(tmp.path(), "a", &coord);
    let me = a.instance_id.as_str();
    let id = coord.send(
        &[me],
        &json!({"commands": ["echo first", "sleep 4", "echo second"]}),
    );
    let mut child = Command::new(bin("tether"))
        .arg("--config")
        .arg(coord.operator_json())
        .args([
            "get-command-invocation",
            "--command-id",
            &id,
            "--instance-id",
            me,
            "--follow",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    // That line came while the command was still running.
    assert_eq!(coord.invocation(&id, me)["Status"], json!("InProgress"));
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "second\n");
    assert!(child.wait().unwrap().success());

    let failing = coord.send(&[me], &json!({"commands": ["echo oops >&2", "exit 3"]}));
    let out = coord.cli(&[
        "get-command-invocation",
        "--command-id",
        &failing,
        "--instance-id",
        me,
        "--follow",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("oops\n") && err.contains("ended Failed"),
        "{err}"
    );
}

#[test]
fn a_node_restarted_mid_command_reports_it_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let mut agent = Agent::start(tmp.path(), "a", &coord);
    let me = agent.instance_id.clone();
    let sleeper = format!("sleep 3119.{}", std::process::id());
    let id = coord.send(&[&me], &json!({"commands": [sleeper.as_str()]}));
    wait_for("the step to start", Duration::from_secs(20), || {
        (processes_matching(&sleeper) == 1).then_some(())
    });
    // A host restart takes the agent, the step's supervisor and the step.
    agent.crash();
    let step = agent
        .state_dir
        .join("spool")
        .join(&id)
        .join("steps")
        .join("0");
    let pid: i32 = std::fs::read_to_string(step.join("supervisor.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = Command::new("pkill")
        .args(["-KILL", "-xf", &sleeper])
        .status();
    agent.run();
    let inv = coord.wait_invocation(&id, &me, Duration::from_secs(30));
    assert_eq!(inv["Status"], json!("Failed"), "{inv}");
    assert!(
        inv["StandardErrorContent"]
            .as_str()
            .unwrap()
            .contains("restarted"),
        "{inv}"
    );
}

#[test]
fn a_silent_agent_is_presumed_lost_until_its_result_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let coord =
        Coordinator::start_with_env(tmp.path(), &[("TETHER_AGENT_SILENT_TIMEOUT_SECS", "2")]);
    let mut agent = Agent::start(tmp.path(), "a", &coord);
    let me = agent.instance_id.clone();
    let id = coord.send(&[&me], &json!({"commands": ["sleep 8", "echo done"]}));
    wait_for("the command to start", Duration::from_secs(20), || {
        (coord.invocation(&id, &me)["Status"] == "InProgress").then_some(())
    });
    // The agent goes away; its step goes on under the supervisor.
    agent.crash();
    let inv = coord.wait_invocation(&id, &me, Duration::from_secs(20));
    assert_eq!(
        inv["Status"],
        json!("Failed"),
        "nothing stays InProgress forever: {inv}"
    );
    assert!(
        coord.log().contains("its agent did not answer"),
        "{}",
        coord.log()
    );
    // When it returns, its real result replaces the presumption.
    agent.run();
    wait_for("the real result", Duration::from_secs(30), || {
        let v = coord.invocation(&id, &me);
        (v["Status"] == "Success").then_some(v)
    });
    assert_eq!(
        coord.invocation(&id, &me)["StandardOutputContent"],
        json!("done\n")
    );
}

#[test]
fn exit_codes_skip_or_reboot_and_an_agent_runs_a_bounded_number_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let rebooted = tmp.path().join("rebooted");
    let reboot = format!("touch {}", rebooted.display());
    let a = Agent::start_with_env(
        tmp.path(),
        "a",
        &coord,
        &[
            ("TETHER_AGENT_REBOOT_COMMAND", reboot.as_str()),
            ("TETHER_AGENT_MAX_CONCURRENT_COMMANDS", "1"),
        ],
    );
    let me = a.instance_id.as_str();

    // 169: failure, and the rest of the commands are not run.
    let failed = coord.send(
        &[me],
        &json!({"commands": ["echo before", "exit 169", "echo after"]}),
    );
    let inv = coord.wait_invocation(&failed, me, Duration::from_secs(30));
    assert_eq!(inv["Status"], json!("Failed"), "{inv}");
    assert_eq!(inv["ResponseCode"], json!(169));
    assert_eq!(inv["StandardOutputContent"], json!("before\n"));

    // 194: success, then the (harmless, configured) reboot command runs.
    let reboots = coord.send(&[me], &json!({"commands": ["echo patching", "exit 194"]}));
    let inv = coord.wait_invocation(&reboots, me, Duration::from_secs(30));
    assert_eq!(inv["Status"], json!("Success"), "{inv}");
    wait_for("the reboot command to run", Duration::from_secs(10), || {
        rebooted.exists().then_some(())
    });

    // One command at a time on this agent: the second waits for the first.
    let log = tmp.path().join("order");
    let script = format!("echo start >> {0}; sleep 1; echo end >> {0}", log.display());
    let first = coord.send(&[me], &json!({"commands": [script.clone()]}));
    let second = coord.send(&[me], &json!({"commands": [script]}));
    for id in [&first, &second] {
        let inv = coord.wait_invocation(id, me, Duration::from_secs(30));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
    }
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "start\nend\n".repeat(2)
    );
}
