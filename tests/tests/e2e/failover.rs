//! Agents that know several coordinator endpoints (issue 7's replicas, the
//! agent's side): registration passes over an endpoint that does not answer
//! and stops at a refusal; the daemon starts on the endpoint its instance ID
//! hashes to and moves on when that one stops answering — mid-command, with
//! the result stored once — and returns to it when it is back; `status`
//! names the endpoint that fails and is healthy while one answers. One real
//! coordinator stands for the replicas (two SQLite coordinators would not
//! share state): a closed port is a dead replica, and a TCP relay in front of
//! the coordinator is a replica that can be killed and started again.

use std::time::{Duration, Instant};

use serde_json::json;
use tether_agent::endpoints;
use tether_tests::closed_port::ClosedPort;
use tether_tests::relay::Relay;
use tether_tests::{Agent, Coordinator, register, wait_for};

/// `a` and `b` in the order that makes the agent `instance_id` start on `first`.
fn starting_on(instance_id: &str, first: &str, other: &str) -> String {
    let mut list = vec![first.to_string(), other.to_string()];
    if endpoints::start_index(instance_id, 2) != 0 {
        list.reverse();
    }
    assert_eq!(
        list[endpoints::start_index(instance_id, 2)],
        first,
        "test setup"
    );
    endpoints::join(&list)
}

fn switch_line(from: &str, to: &str) -> String {
    format!("coordinator {from} unreachable; switching to {to}")
}

#[test]
fn registration_passes_over_a_dead_endpoint_and_stops_at_a_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let (live, pin) = (coord.endpoint(), coord.ca_pin());
    let (closed, closed2) = (ClosedPort::new(), ClosedPort::new());
    let (dead, dead2) = (closed.endpoint(), closed2.endpoint());
    let (id, code) = coord.activation(2);

    // A malformed entry is named, and nothing is registered.
    let list = format!("{live}, http://127.0.0.1:1");
    let out = register(&tmp.path().join("bad"), &list, &id, &code, &pin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("\"http://127.0.0.1:1\" is not an https://HOST:PORT URL"),
        "{err}"
    );
    assert!(!tmp.path().join("bad/registration.json").exists());

    // Nothing answers: each endpoint's failure is named.
    let out = register(
        &tmp.path().join("none"),
        &format!("{dead},{dead2}"),
        &id,
        &code,
        &pin,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no coordinator in --endpoint answered")
            && err.contains(&dead)
            && err.contains(&dead2),
        "{err}"
    );

    // Another coordinator (another CA) does not pass the pin: named too.
    std::fs::create_dir_all(tmp.path().join("other")).unwrap();
    let other = Coordinator::start(&tmp.path().join("other"));
    let foreign = other.endpoint();
    let out = register(
        &tmp.path().join("foreign"),
        &format!("{foreign},{dead}"),
        &id,
        &code,
        &pin,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{foreign}: CA pin mismatch")) && err.contains(&dead),
        "{err}"
    );

    // The dead endpoint first: passed over (and said so), the list kept whole.
    let list = format!(" {dead} ,\t{live} ");
    let out = register(&tmp.path().join("n1"), &list, &id, &code, &pin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("passed over {dead}: cannot reach the coordinator"))
            && err.contains(&format!("registered through {live}")),
        "{err}"
    );
    let reg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("n1/registration.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(reg["Endpoint"], json!(format!("{dead},{live}")));

    // A refusal ends registration at once: the dead endpoint after it is never tried.
    let out = register(
        &tmp.path().join("refused"),
        &format!("{live},{dead}"),
        &id,
        "WRONGCODEWRONGCODE00",
        &pin,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("registration refused by the coordinator"),
        "{err}"
    );
    assert!(!err.contains(&dead), "{err}");
}

#[test]
fn an_agent_starting_on_a_dead_endpoint_moves_on_and_status_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let (live, pin) = (coord.endpoint(), coord.ca_pin());
    let closed = ClosedPort::new();
    let dead = closed.endpoint();
    let (id, code) = coord.activation(2);
    let list = format!("{dead},{live}");

    // One agent whose start index is the dead endpoint, one whose is the live one.
    let mut on_dead = Agent::register(tmp.path(), "on-dead", &list, &pin, (&id, &code));
    on_dead.set_endpoint(&starting_on(&on_dead.instance_id, &dead, &live));
    let mut on_live = Agent::register(tmp.path(), "on-live", &list, &pin, (&id, &code));
    on_live.set_endpoint(&starting_on(&on_live.instance_id, &live, &dead));

    let t0 = Instant::now();
    on_dead.run();
    let switched = switch_line(&dead, &live);
    wait_for(
        "the agent to move off the dead endpoint",
        Duration::from_secs(20),
        || on_dead.log().contains(&switched).then_some(()),
    );
    println!(
        "agent starting on a dead endpoint moved on after {:?}",
        t0.elapsed()
    );
    on_live.run();
    coord.wait_online(&on_live.instance_id, Duration::from_secs(20));

    let ids = [on_dead.instance_id.as_str(), on_live.instance_id.as_str()];
    let cmd = coord.send(
        &ids,
        &json!({"commands": ["echo \"$AWS_SSM_INSTANCE_ID\""]}),
    );
    for me in ids {
        let inv = coord.wait_invocation(&cmd, me, Duration::from_secs(30));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
        assert_eq!(inv["StandardOutputContent"], json!(format!("{me}\n")));
    }
    assert!(!on_live.log().contains("switching to"), "{}", on_live.log());

    // status: one line per endpoint, the dead one named with its stage, healthy.
    let (ok, out) = on_dead.status(&[]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "Coordinator:   {dead}: UNREACHABLE: TCP: cannot connect to 127.0.0.1:"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "Coordinator:   {live}: reachable (TLS and client certificate accepted)"
        )),
        "{out}"
    );
    assert!(
        out.contains("Answering:     1 of 2 coordinator endpoints"),
        "{out}"
    );

    // No endpoint answering is unhealthy.
    let closed2 = ClosedPort::new();
    on_dead.set_endpoint(&format!("{dead},{}", closed2.endpoint()));
    let (ok, out) = on_dead.status(&[]);
    assert!(!ok, "{out}");
    assert!(out.contains("Answering:     0 of 2"), "{out}");
}

#[test]
fn a_replica_killed_mid_command_loses_nothing_and_its_agent_moves_on() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let (direct, pin) = (coord.endpoint(), coord.ca_pin());
    let relay = Relay::start(coord.port);
    let relayed = format!("https://127.0.0.1:{}", relay.port);
    let (id, code) = coord.activation(1);
    let list = format!("{relayed},{direct}");
    let mut agent = Agent::register(tmp.path(), "a", &list, &pin, (&id, &code));
    agent.set_endpoint(&starting_on(&agent.instance_id, &relayed, &direct));
    agent.env = vec![("TETHER_AGENT_RETURN_HOME_SECS".into(), "2".into())];
    agent.run();
    coord.wait_online(&agent.instance_id, Duration::from_secs(20));
    let me = agent.instance_id.as_str();
    wait_for(
        "the agent to poll through the relay",
        Duration::from_secs(20),
        || (relay.accepted() > 0).then_some(()),
    );

    let cmd = coord.send(&[me], &json!({"commands": ["sleep 3", "echo done"]}));
    wait_for("the command to start", Duration::from_secs(20), || {
        (coord.invocation(&cmd, me)["Status"] == "InProgress").then_some(())
    });
    let killed = Instant::now();
    relay.kill();
    let switched = switch_line(&relayed, &direct);
    wait_for("the agent to move on", Duration::from_secs(20), || {
        agent.log().contains(&switched).then_some(())
    });
    println!(
        "agent moved to another endpoint {:?} after its replica was killed",
        killed.elapsed()
    );

    let inv = coord.wait_invocation(&cmd, me, Duration::from_secs(40));
    assert_eq!(inv["Status"], json!("Success"), "{inv}");
    assert_eq!(inv["StandardOutputContent"], json!("done\n"));
    let invs = coord.json(&["list-command-invocations", "--command-id", &cmd]);
    assert_eq!(invs["CommandInvocations"].as_array().unwrap().len(), 1);
    let listed = coord.json(&["list-commands", "--command-id", &cmd]);
    assert_eq!(
        listed["Commands"][0]["CompletedCount"],
        json!(1),
        "{listed}"
    );

    // New work reaches it where it is now.
    let next = coord.send(&[me], &json!({"commands": ["echo again"]}));
    let inv = coord.wait_invocation(&next, me, Duration::from_secs(30));
    assert_eq!(inv["StandardOutputContent"], json!("again\n"));

    // The replica comes back where it was: the agent returns to it (after 2 to
    // 4 s away here, and its current poll), and works through it.
    let back = Relay::start_on(relay.port, coord.port);
    wait_for(
        "the agent to return to its own endpoint",
        Duration::from_secs(60),
        || (back.accepted() > 0).then_some(()),
    );
    assert!(
        agent
            .log()
            .contains(&format!("returning to coordinator {relayed}")),
        "{}",
        agent.log()
    );
    let last = coord.send(&[me], &json!({"commands": ["echo home"]}));
    let inv = coord.wait_invocation(&last, me, Duration::from_secs(30));
    assert_eq!(inv["StandardOutputContent"], json!("home\n"));
}

#[test]
fn an_agent_with_several_endpoints_returns_after_a_coordinator_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut coord = Coordinator::start(tmp.path());
    let (live, pin) = (coord.endpoint(), coord.ca_pin());
    let closed = ClosedPort::new();
    let dead = closed.endpoint();
    let (id, code) = coord.activation(1);
    let mut agent = Agent::register(
        tmp.path(),
        "a",
        &format!("{dead},{live}"),
        &pin,
        (&id, &code),
    );
    agent.run();
    coord.wait_online(&agent.instance_id, Duration::from_secs(20));
    let me = agent.instance_id.as_str();

    // A result produced while no endpoint answers arrives once, after the restart.
    let cmd = coord.send(&[me], &json!({"commands": ["sleep 3", "echo done"]}));
    wait_for("the command to start", Duration::from_secs(20), || {
        (coord.invocation(&cmd, me)["Status"] == "InProgress").then_some(())
    });
    coord.crash();
    // The agent finishes the command while no endpoint answers it.
    wait_for(
        "the command to finish on the agent",
        Duration::from_secs(20),
        || agent.logged("command finished", &cmd).then_some(()),
    );
    let (ok, out) = agent.status(&[]);
    assert!(!ok, "{out}");
    assert!(out.contains("Answering:     0 of 2"), "{out}");
    coord.restart();
    let inv = coord.wait_invocation(&cmd, me, Duration::from_secs(40));
    assert_eq!(inv["Status"], json!("Success"), "{inv}");
    assert_eq!(inv["StandardOutputContent"], json!("done\n"));
    let invs = coord.json(&["list-command-invocations", "--command-id", &cmd]);
    assert_eq!(invs["CommandInvocations"].as_array().unwrap().len(), 1);

    let next = coord.send(&[me], &json!({"commands": ["echo after restart"]}));
    let inv = coord.wait_invocation(&next, me, Duration::from_secs(40));
    assert_eq!(inv["StandardOutputContent"], json!("after restart\n"));
}
