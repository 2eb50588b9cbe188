//! Nothing is lost: history across coordinator restarts, and results of
//! commands whose agent or coordinator went away mid-command.

use std::time::Duration;

use serde_json::json;
use tether_tests::{Agent, Coordinator, wait_for};

#[test]
fn history_survives_a_coordinator_restart_and_agents_reconnect() {
    let tmp = tempfile::tempdir().unwrap();
    let mut coord = Coordinator::start(tmp.path());
    let pin = coord.ca_pin();
    let agent = Agent::start(tmp.path(), "a", &coord);
    let me = agent.instance_id.as_str();
    let first = coord.send(&[me], &json!({"commands": ["echo before restart"]}));
    coord.wait_invocation(&first, me, Duration::from_secs(30));

    coord.restart();
    assert_eq!(coord.ca_pin(), pin, "the CA (and so the pin) is reused");
    let inv = coord.invocation(&first, me);
    assert_eq!(inv["StandardOutputContent"], json!("before restart\n"));
    let cmds = coord.json(&["list-commands"]);
    assert_eq!(cmds["Commands"].as_array().unwrap().len(), 1);

    // The agent comes back by itself and takes new work.
    let second = coord.send(&[me], &json!({"commands": ["echo after restart"]}));
    let inv = coord.wait_invocation(&second, me, Duration::from_secs(40));
    assert_eq!(inv["StandardOutputContent"], json!("after restart\n"));
}

#[test]
fn a_result_produced_while_the_coordinator_is_down_arrives_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut coord = Coordinator::start(tmp.path());
    let agent = Agent::start(tmp.path(), "a", &coord);
    let me = agent.instance_id.as_str();
    let id = coord.send(&[me], &json!({"commands": ["sleep 3", "echo done"]}));
    wait_for("the command to start", Duration::from_secs(20), || {
        (coord.invocation(&id, me)["Status"] == "InProgress").then_some(())
    });
    coord.crash();
    // The agent finishes the command while nothing answers it.
    wait_for(
        "the command to finish on the agent",
        Duration::from_secs(20),
        || agent.logged("command finished", &id).then_some(()),
    );
    coord.restart();
    let inv = coord.wait_invocation(&id, me, Duration::from_secs(40));
    assert_eq!(inv["Status"], json!("Success"));
    assert_eq!(inv["StandardOutputContent"], json!("done\n"));
    let invs = coord.json(&["list-command-invocations", "--command-id", &id]);
    assert_eq!(invs["CommandInvocations"].as_array().unwrap().len(), 1);
}

#[test]
fn an_agent_killed_mid_command_reports_the_result_after_restarting() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let mut agent = Agent::start(tmp.path(), "a", &coord);
    let me = agent.instance_id.clone();
    let counter = tmp.path().join("count");
    let id = coord.send(
        &[&me],
        &json!({"commands": [format!("echo run >> {}", counter.display()), "sleep 3", "echo finished"]}),
    );
    wait_for("the command to start", Duration::from_secs(20), || {
        (coord.invocation(&id, &me)["Status"] == "InProgress").then_some(())
    });
    agent.crash();
    std::thread::sleep(Duration::from_secs(1));
    agent.run();
    let inv = coord.wait_invocation(&id, &me, Duration::from_secs(40));
    assert_eq!(inv["Status"], json!("Success"), "{inv}");
    assert_eq!(inv["StandardOutputContent"], json!("finished\n"));
    // The step kept running under its supervisor: it ran exactly once.
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "run\n");
    assert!(agent.log().contains("resuming"), "{}", agent.log());
}
