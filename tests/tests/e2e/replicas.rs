//! Three `tether serve` replicas on one real PostgreSQL server (a cluster in a
//! temporary directory): agents spread over them, a command sent through one
//! is answered by agents long-polling on the others, and a replica killed
//! mid-command loses nothing while its agents move to the survivors.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tether_tests::{Agent, Coordinator, TestDatabase, wait_for};

/// Agents polling on the replica listening on `port`, by their open connections.
fn connections_to(port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-Htn", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn replicas_share_one_database_and_survive_the_loss_of_one() {
    let tmp = tempfile::tempdir().unwrap();
    // A database of its own, on the suite's server or a cluster started for it.
    let db = TestDatabase::postgres();
    let database = db.url.clone();
    let secrets = tmp.path().join("secrets");
    let secrets = secrets.to_str().unwrap();
    let env = [
        ("TETHER_DATABASE", database.as_str()),
        ("TETHER_SECRETS_DIR", secrets),
    ];
    let mut replicas: Vec<Coordinator> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let dir = tmp.path().join(n);
            std::fs::create_dir_all(&dir).unwrap();
            Coordinator::start_with_env(&dir, &env)
        })
        .collect();
    // One CA for all: an agent pinning it trusts every replica.
    assert_eq!(replicas[0].ca_pin(), replicas[1].ca_pin());
    assert_eq!(replicas[0].ca_pin(), replicas[2].ca_pin());
    let endpoints = replicas
        .iter()
        .map(Coordinator::endpoint)
        .collect::<Vec<_>>()
        .join(",");
    let a = &replicas[0];

    // An activation made through A registers nodes through any replica.
    let (id, code) = a.activation(9);
    let pin = replicas[0].ca_pin();
    let agents: Vec<Agent> = (0..9)
        .map(|n| {
            let mut g =
                Agent::register(tmp.path(), &format!("n{n}"), &endpoints, &pin, (&id, &code));
            g.run();
            g
        })
        .collect();
    for g in &agents {
        replicas[2].wait_online(&g.instance_id, Duration::from_secs(20));
    }
    let ids: Vec<&str> = agents.iter().map(|g| g.instance_id.as_str()).collect();
    for r in &replicas {
        let listed = r.json(&["describe-instance-information"]);
        assert_eq!(
            listed["InstanceInformationList"].as_array().unwrap().len(),
            9,
            "every replica sees the whole fleet"
        );
    }
    // The fleet spreads over the replicas (each agent starts at the one its
    // instance ID hashes to).
    let per: Vec<usize> = wait_for("every agent polling", Duration::from_secs(20), || {
        let per: Vec<usize> = replicas.iter().map(|r| connections_to(r.port)).collect();
        (per.iter().sum::<usize>() >= 9).then_some(per)
    });
    assert!(
        per.iter().filter(|n| **n > 0).count() >= 2,
        "agents spread over the replicas: {per:?}"
    );
    // The busiest replica is the one that will die; commands go through the others.
    let doomed = (0..3).max_by_key(|i| per[*i]).unwrap();
    let (one, two) = match doomed {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };

    // Sent through one replica, answered by agents held on the others too —
    // woken by NOTIFY, not at the end of their 20 s hold.
    let cmd = replicas[one].send(&ids, &json!({"commands": ["echo hello from $(hostname)"]}));
    for i in &ids {
        let inv = replicas[two].wait_invocation(&cmd, i, Duration::from_secs(15));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
        assert!(
            inv["StandardOutputContent"]
                .as_str()
                .unwrap()
                .contains("hello from"),
            "{inv}"
        );
    }

    // The busiest replica dies mid-command: its agents move to the others,
    // and every result arrives.
    // Each step waits for a file the test creates once the replica is dead,
    // so all nine are running when it dies however slowly the CLI reads them.
    let release = tmp.path().join("release");
    let wait = format!("while [ ! -e '{}' ]; do sleep 0.1; done", release.display());
    let cmd = replicas[two].send(&ids, &json!({"commands": [wait, "echo done"]}));
    let mut running = std::collections::BTreeSet::new();
    wait_for("every invocation to start", Duration::from_secs(60), || {
        for i in &ids {
            if !running.contains(i) && replicas[one].invocation(&cmd, i)["Status"] == "InProgress" {
                running.insert(*i);
            }
        }
        (running.len() == ids.len()).then_some(())
    });
    replicas[doomed].crash();
    std::fs::write(&release, b"").unwrap();
    for i in &ids {
        let inv = replicas[one].wait_invocation(&cmd, i, Duration::from_secs(60));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
        assert_eq!(inv["StandardOutputContent"], json!("done\n"), "{inv}");
    }
    wait_for(
        "the dead replica's agents polling on the others",
        Duration::from_secs(30),
        || {
            (connections_to(replicas[one].port) + connections_to(replicas[two].port) >= 9)
                .then_some(())
        },
    );
    let listed = replicas[two].json(&["list-commands", "--command-id", &cmd]);
    assert_eq!(listed["Commands"][0]["Status"], json!("Success"));
    assert_eq!(listed["Commands"][0]["CompletedCount"], json!(9));

    // The survivors go on: a new command reaches every node.
    let cmd = replicas[one].send(&ids, &json!({"commands": ["echo after"]}));
    for i in &ids {
        let inv = replicas[two].wait_invocation(&cmd, i, Duration::from_secs(30));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
    }
    drop(agents);
}
