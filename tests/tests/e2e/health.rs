//! Health (issue 13, item 9): `/healthz` (alive) and `/readyz` (its database
//! answers) on the HTTPS listener, without authentication; a replica that
//! loses its database turns unready and answers its agents `Unavailable`, so
//! they move to a healthy replica. Two `tether serve` on one real PostgreSQL
//! database; one of them reaches it through a relay the test cuts.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tether_agent::endpoints::start_index;
use tether_tests::aws::AwsClient;
use tether_tests::relay::Relay;
use tether_tests::{Agent, Coordinator, TestDatabase, raw, wait_for};

/// `GET https://127.0.0.1:PORT/PATH` with curl, trusting the coordinator's
/// CA and nothing else, with no credentials: the status and the body.
fn probe(coord: &Coordinator, path: &str) -> (u16, String) {
    let ca = coord.dir.with_extension("probe-ca.pem");
    let operator: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(coord.operator_json()).expect("operator"))
            .expect("operator.json is JSON");
    std::fs::write(&ca, operator["CaCertificate"].as_str().expect("CA")).expect("write the CA");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://localhost:{}{path}", coord.http_port))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some((body, code)) = text.rsplit_once('\n') else {
        panic!("curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let code = code.trim().parse().unwrap_or(0);
    if code == 0 {
        eprintln!("curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (code, body.to_string())
}

/// Established connections to a replica's gRPC port (its agents' polls).
fn connections_to(port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-Htn", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn a_replica_that_loses_its_database_turns_unready_and_its_agents_move() {
    let tmp = tempfile::tempdir().unwrap();
    let db = TestDatabase::postgres();
    // postgres://USER@127.0.0.1:PORT/NAME: replica A reaches it through a relay.
    let (head, tail) = db.url.split_once("@127.0.0.1:").unwrap();
    let (pg_port, name) = tail.split_once('/').unwrap();
    let pg_port: u16 = pg_port.parse().unwrap();
    let relay = Relay::start(pg_port);
    let relayed = format!("{head}@127.0.0.1:{}/{name}", relay.port);
    let secrets = tmp.path().join("secrets");
    let secrets = secrets.to_str().unwrap();
    let start = |n: &str, database: &str| {
        let dir = tmp.path().join(n);
        std::fs::create_dir_all(&dir).unwrap();
        Coordinator::start_with_env(
            &dir,
            &[
                ("TETHER_DATABASE", database),
                ("TETHER_SECRETS_DIR", secrets),
            ],
        )
    };
    let a = start("a", &relayed);
    let b = start("b", &db.url);
    for c in [&a, &b] {
        wait_for("the HTTPS listener", Duration::from_secs(60), || {
            (probe(c, "/healthz").0 == 200).then_some(())
        });
        assert_eq!(probe(c, "/healthz"), (200, "ok\n".into()));
        assert_eq!(probe(c, "/readyz"), (200, "ready\n".into()));
    }
    let aws_a = AwsClient::issue(&a);

    // Two agents at home on A, one on B: each gets the list in the order
    // that makes its home the replica wanted.
    let (id, code) = a.activation(3);
    let pin = a.ca_pin();
    let both = format!("{},{}", a.endpoint(), b.endpoint());
    let mut agents: Vec<Agent> = (0..3)
        .map(|n| {
            let g = Agent::register(tmp.path(), &format!("n{n}"), &both, &pin, (&id, &code));
            let home_a = n < 2;
            let first = (start_index(&g.instance_id, 2) == 0) == home_a;
            g.set_endpoint(&if first {
                both.clone()
            } else {
                format!("{},{}", b.endpoint(), a.endpoint())
            });
            g
        })
        .collect();
    for g in &mut agents {
        g.run();
    }
    wait_for(
        "two agents polling A, one B",
        Duration::from_secs(30),
        || (connections_to(a.port) >= 2 && connections_to(b.port) >= 1).then_some(()),
    );
    let ids: Vec<&str> = agents.iter().map(|g| g.instance_id.as_str()).collect();
    let cmd = b.send(&ids, &json!({"commands": ["echo before"]}));
    for i in &ids {
        let inv = a.wait_invocation(&cmd, i, Duration::from_secs(30));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
    }

    // A loses its database.
    relay.kill();
    let t0 = std::time::Instant::now();
    let (code, body) = wait_for("A to turn unready", Duration::from_secs(20), || {
        let (code, body) = probe(&a, "/readyz");
        (code == 503).then_some((code, body))
    });
    println!(
        "health: A unready after {:.1} s: {code} {}",
        t0.elapsed().as_secs_f64(),
        body.trim()
    );
    assert!(
        !body.contains("mi-"),
        "readiness reveals nothing of the fleet: {body}"
    );
    assert_eq!(probe(&a, "/healthz").0, 200, "still alive");
    assert_eq!(probe(&b, "/readyz").0, 200, "B is not affected");
    // Its agents are answered Unavailable and move to B.
    wait_for("A's agents on B", Duration::from_secs(30), || {
        (connections_to(b.port) >= 3).then_some(())
    });
    println!(
        "health: A's agents on B {:.1} s after the database went",
        t0.elapsed().as_secs_f64()
    );
    for g in &agents[..2] {
        assert!(g.log().contains("switching to"), "{}", g.log());
    }
    let cmd = b.send(&ids, &json!({"commands": ["echo during"]}));
    for i in &ids {
        let inv = b.wait_invocation(&cmd, i, Duration::from_secs(30));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
        assert_eq!(inv["StandardOutputContent"], json!("during\n"), "{inv}");
    }
    // Operators of A are told, on both transports.
    let out = a.cli(&["list-commands"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach its database"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = raw::https(&aws_a, &[("ListCommands", b"{}")]).remove(0);
    assert_eq!(answer.unwrap_err().0, "ServiceUnavailable");

    // The database comes back: A is ready again.
    let _relay = Relay::start_on(relay.port, pg_port);
    wait_for("A to be ready again", Duration::from_secs(30), || {
        (probe(&a, "/readyz").0 == 200).then_some(())
    });
    let listed = a.json(&["list-commands"]);
    assert_eq!(listed["Commands"].as_array().unwrap().len(), 2);
}
