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
