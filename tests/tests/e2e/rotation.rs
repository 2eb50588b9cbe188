//! Key material over time: client certificates renewed at half-life and an
//! expired one named with its remedy (a lifetime of a minute), a
//! deregistered node refused at once by every replica, and a rotation of
//! the CA and the command-signing key that reaches every node — also one
//! that was offline throughout — with none registered again by hand.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tether_tests::{Agent, Coordinator, TestDatabase, wait_for};

/// (not_before, not_after) of the agent's client certificate, and its PEM.
fn client_cert(agent: &Agent) -> ((i64, i64), String) {
    let pem = std::fs::read_to_string(agent.state_dir.join("agent.crt")).expect("agent.crt");
    let validity = tether_agent::tls::cert_validity(&pem).expect("agent.crt parses");
    (validity, pem)
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Waits until the clock is past `secs` (epoch seconds).
fn sleep_past(secs: i64) {
    let left = secs + 1 - now_secs();
    if left > 0 {
        std::thread::sleep(Duration::from_secs(left as u64));
    }
}

fn run_echo(coord: &Coordinator, agent: &Agent, text: &str) {
    let cmd = coord.send(
        &[&agent.instance_id],
        &json!({"commands": [format!("echo {text}")]}),
    );
    let inv = coord.wait_invocation(&cmd, &agent.instance_id, Duration::from_secs(40));
    assert_eq!(inv["Status"], json!("Success"), "{inv}");
    assert_eq!(
        inv["StandardOutputContent"],
        json!(format!("{text}\n")),
        "{inv}"
    );
}

#[test]
fn client_certificates_renew_at_half_life_and_an_expired_one_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let coord =
        Coordinator::start_with_env(tmp.path(), &[("TETHER_CLIENT_CERT_LIFETIME_SECS", "60")]);
    let a = Agent::start(tmp.path(), "a", &coord);
    let mut b = Agent::start(tmp.path(), "b", &coord);
    // B goes offline at once, and stays away past its certificate's end.
    b.crash();
    let ((_, b_until), _) = client_cert(&b);

    let ((before, until), first) = client_cert(&a);
    assert!(
        (55..=70).contains(&(until - now_secs())) && until - before <= 70,
        "the certificate lasts the minute asked for: {before}..{until}"
    );
    // Renewed at half-life, well before the end, into a new certificate.
    let ((_, renewed_until), renewed) = wait_for(
        "A to renew its certificate",
        Duration::from_secs(60),
        || {
            let (validity, pem) = client_cert(&a);
            (pem != first).then_some((validity, pem))
        },
    );
    assert!(
        now_secs() < until,
        "renewed before the first certificate ended"
    );
    assert!(renewed_until > until, "{renewed_until} after {until}");
    assert_ne!(renewed, first);
    assert!(
        a.log().contains("client certificate renewed"),
        "{}",
        a.log()
    );
    // The key beside it is the renewed certificate's: nothing half-written stays.
    assert!(!a.state_dir.join("agent.key.next").exists());
    assert!(!a.state_dir.join("agent.crt.next").exists());
    // Past the first certificate's end, A goes on working on the renewed one.
    sleep_past(until);
    run_echo(&coord, &a, "still-here");
    let (ok, status) = a.status(&[]);
    assert!(ok, "{status}");
    assert!(status.contains("Certificate:   valid until"), "{status}");

    // B comes back after its certificate ended: it says what it is and what to do.
    sleep_past(b_until);
    b.run();
    wait_for(
        "B to name its expired certificate and the remedy",
        Duration::from_secs(30),
        || {
            let log = b.errors_log();
            (log.contains("expired at")
                && log.contains(&b.state_dir.join("agent.crt").display().to_string())
                && log.contains("tether-agent register --endpoint")
                && log.contains("--force"))
            .then_some(())
        },
    );
    let (ok, status) = b.status(&[]);
    assert!(!ok, "{status}");
    assert!(
        status.contains("Certificate:   EXPIRED")
            && status.contains(&b.instance_id)
            && status.contains("--force"),
        "{status}"
    );
    // The coordinator never saw it again.
    let listed = coord.json(&["describe-instance-information"]);
    let b_info = listed["InstanceInformationList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["InstanceId"] == json!(b.instance_id))
        .cloned()
        .unwrap_or_default();
    assert_ne!(b_info["PingStatus"], json!("Online"), "{listed}");
}

/// Replicas on one PostgreSQL database with one secrets directory.
fn replicas(
    tmp: &Path,
    names: &[&str],
    db: &TestDatabase,
    extra: &[(&str, &str)],
) -> Vec<Coordinator> {
    let secrets = tmp.join("secrets");
    let secrets = secrets.to_str().expect("a UTF-8 path").to_string();
    let mut env = vec![
        ("TETHER_DATABASE", db.url.as_str()),
        ("TETHER_SECRETS_DIR", secrets.as_str()),
    ];
    env.extend_from_slice(extra);
    names
        .iter()
        .map(|n| {
            let dir = tmp.join(n);
            std::fs::create_dir_all(&dir).expect("a replica's directory");
            Coordinator::start_with_env(&dir, &env)
        })
        .collect()
}

#[test]
fn a_deregistered_node_is_refused_within_a_second_on_another_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let db = TestDatabase::postgres();
    let r = replicas(tmp.path(), &["a", "b"], &db, &[]);
    let (a, b) = (&r[0], &r[1]);
    // The node polls replica B only; the operator deregisters it through A.
    let (id, code) = a.activation(1);
    let mut node = Agent::register(tmp.path(), "n", &b.endpoint(), &b.ca_pin(), (&id, &code));
    node.run();
    b.wait_online(&node.instance_id, Duration::from_secs(20));
    run_echo(b, &node, "before");
    let (ok, status) = node.status(&[]);
    assert!(ok, "{status}");

    a.json(&[
        "deregister-managed-instance",
        "--instance-id",
        &node.instance_id,
    ]);
    // B admits agents from memory and looks for deregistrations made
    // anywhere every second: its calls through B are refused within that.
    let status = wait_for("B to refuse the node", Duration::from_secs(10), || {
        let (ok, status) = node.status(&[]);
        (!ok).then_some(status)
    });
    assert!(
        status.contains(&format!("instance {} was deregistered", node.instance_id)),
        "{status}"
    );
    // And the daemon, at its next poll there.
    wait_for("B to refuse the daemon", Duration::from_secs(40), || {
        node.errors_log()
            .contains("refuses this agent")
            .then_some(())
    });
    let listed = b.json(&["describe-instance-information"]);
    assert_eq!(listed["InstanceInformationList"], json!([]), "{listed}");
}

/// `GET https://localhost:PORT/PATH` with curl, trusting only the CA in the
/// replica's operator.json (the one in force when it started): the status
/// and the body.
fn https_get(replica: &Coordinator, path: &str) -> (u16, String) {
    let ca = replica.dir.with_extension("first-ca.pem");
    std::fs::write(
        &ca,
        replica.operator()["CaCertificate"]
            .as_str()
            .expect("CaCertificate"),
    )
    .expect("write the CA");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://localhost:{}{path}", replica.http_port))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

/// registration.json of an agent, parsed.
fn registration(agent: &Agent) -> serde_json::Value {
    let text = std::fs::read_to_string(agent.state_dir.join("registration.json"))
        .expect("registration.json");
    serde_json::from_str(&text).expect("registration.json is JSON")
}

/// The CA certificates an agent trusts (its ca.pem).
fn trusted_cas(agent: &Agent) -> usize {
    std::fs::read_to_string(agent.state_dir.join("ca.pem"))
        .expect("ca.pem")
        .matches("BEGIN CERTIFICATE")
        .count()
}

/// Where the rotation stands, as `replica` answers.
fn rotation(replica: &Coordinator) -> serde_json::Value {
    replica.json(&["describe-trust-rotation"])["Rotation"].clone()
}

#[test]
fn a_rotation_of_the_ca_and_signing_key_reaches_every_node_also_one_offline_throughout() {
    let tmp = tempfile::tempdir().unwrap();
    let db = TestDatabase::postgres();
    let r = replicas(tmp.path(), &["a", "b"], &db, &[]);
    let (a, b) = (&r[0], &r[1]);
    let endpoints = format!("{},{}", a.endpoint(), b.endpoint());
    let old_pin = a.ca_pin();
    let before = rotation(a);
    assert_eq!(
        (before["Generation"].clone(), before["Phase"].clone()),
        (json!(1), json!("Settled")),
        "{before}"
    );
    assert_eq!(before["CaPin"], json!(old_pin));
    let old_key = before["CommandSigningPublicKey"]
        .as_str()
        .unwrap()
        .to_string();

    let (id, code) = a.activation(3);
    let mut nodes: Vec<Agent> = ["n1", "n2", "away"]
        .iter()
        .map(|n| {
            let mut g = Agent::register(tmp.path(), n, &endpoints, &old_pin, (&id, &code));
            g.run();
            a.wait_online(&g.instance_id, Duration::from_secs(20));
            g
        })
        .collect();
    for g in &nodes {
        run_echo(a, g, "before");
    }
    // One node goes offline for the whole rotation.
    let mut away = nodes.pop().unwrap();
    away.crash();
    let away_cert = client_cert(&away).1;

    // Steps out of order are refused, naming the phase.
    let out = a.cli(&["switch-trust-rotation"]);
    assert!(!out.status.success());
    let err = tether_tests::stderr_of(&out);
    assert!(
        err.contains("the rotation is Settled, not Introduced"),
        "{err}"
    );

    // 1. Introduce: every replica and every online node learns the next keys.
    let started = a.json(&["start-trust-rotation"])["Rotation"].clone();
    assert_eq!(started["Phase"], json!("Introduced"), "{started}");
    assert_eq!(
        started["TrustedCaPins"].as_array().unwrap().len(),
        2,
        "{started}"
    );
    assert_eq!(
        started["CaPin"],
        json!(old_pin),
        "nothing is issued by the new CA yet"
    );
    wait_for(
        "B to load the introduced keys",
        Duration::from_secs(10),
        || (rotation(b)["TrustedCaPins"] == started["TrustedCaPins"]).then_some(()),
    );
    let again = a.cli(&["start-trust-rotation"]);
    assert!(!again.status.success(), "a second start is refused");
    for g in &nodes {
        wait_for(
            "a node to learn the next keys",
            Duration::from_secs(40),
            || {
                let reg = registration(g);
                (trusted_cas(g) == 2
                    && reg["AcceptedCommandSigningKeys"].as_array().map(Vec::len) == Some(1))
                .then_some(())
            },
        );
        run_echo(b, g, "introduced");
    }

    // 2. Switch, through the other replica: new CA and key in force.
    let switched = b.json(&["switch-trust-rotation"])["Rotation"].clone();
    assert_eq!(
        (switched["Generation"].clone(), switched["Phase"].clone()),
        (json!(2), json!("Switched")),
        "{switched}"
    );
    let new_pin = switched["CaPin"].as_str().unwrap().to_string();
    let new_key = switched["CommandSigningPublicKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_pin, old_pin);
    assert_ne!(new_key, old_key);
    wait_for("A to switch", Duration::from_secs(10), || {
        (rotation(a)["CaPin"] == json!(new_pin)).then_some(())
    });
    for g in &nodes {
        wait_for(
            "a node to take the new key and a certificate from the new CA",
            Duration::from_secs(40),
            || {
                let reg = registration(g);
                (reg["CommandSigningKey"] == json!(new_key) && reg["CaPin"] == json!(new_pin))
                    .then_some(())
            },
        );
        wait_for(
            "a node to renew from the new CA",
            Duration::from_secs(40),
            || {
                g.log()
                    .contains("the client certificate was issued by another CA")
                    .then_some(())
            },
        );
        wait_for("the renewal", Duration::from_secs(40), || {
            g.log().contains("client certificate renewed").then_some(())
        });
        run_echo(a, g, "switched-a");
        run_echo(b, g, "switched-b");
    }

    // 3. Finish: the old keys are gone from the secrets directory.
    let finished = a.json(&["finish-trust-rotation"])["Rotation"].clone();
    assert_eq!(finished["Phase"], json!("Settled"), "{finished}");
    assert_eq!(finished["TrustedCaPins"], json!([new_pin]), "{finished}");
    let secrets = tmp.path().join("secrets");
    assert!(!secrets.join("ca.key").exists() && !secrets.join("signing.key").exists());
    wait_for("B to finish", Duration::from_secs(10), || {
        (rotation(b)["Phase"] == json!("Settled")).then_some(())
    });
    for g in &nodes {
        wait_for(
            "a node to drop the old keys",
            Duration::from_secs(40),
            || {
                let reg = registration(g);
                (trusted_cas(g) == 1 && reg.get("AcceptedCommandSigningKeys").is_none())
                    .then_some(())
            },
        );
        run_echo(b, g, "finished");
        let (ok, status) = g.status(&[]);
        assert!(ok, "{status}");
    }

    // An HTTPS client that trusts only the old CA (operator.json's, written
    // before the rotation) still verifies every replica, and is told the new pin;
    // the install script hands out the new pin at once.
    for replica in [a, b] {
        let (code, health) = https_get(replica, "/health");
        assert_eq!(code, 200, "{health}");
        assert!(health.contains(&new_pin), "{health}");
        let (code, script) = https_get(replica, "/install.sh");
        assert_eq!(code, 200, "{script}");
        assert!(script.contains(&new_pin) && !script.contains(&old_pin));
    }

    // The node offline throughout comes back knowing only the old CA and
    // key: it verifies the server through the cross-signed CA, takes the
    // new key through the old key's endorsement, renews its certificate,
    // and runs commands signed by the new key.
    assert_eq!(registration(&away)["CommandSigningKey"], json!(old_key));
    away.run();
    wait_for(
        "the returning node to take the new keys",
        Duration::from_secs(60),
        || {
            let reg = registration(&away);
            (reg["CommandSigningKey"] == json!(new_key) && reg["CaPin"] == json!(new_pin))
                .then_some(())
        },
    );
    run_echo(a, &away, "back");
    wait_for(
        "the returning node's new certificate",
        Duration::from_secs(40),
        || (client_cert(&away).1 != away_cert).then_some(()),
    );
    run_echo(b, &away, "renewed");
    let (ok, status) = away.status(&[]);
    assert!(ok, "{status}");

    // New nodes register with the new pin.
    let (id, code) = b.activation(1);
    let mut fresh = Agent::register(tmp.path(), "fresh", &endpoints, &new_pin, (&id, &code));
    fresh.run();
    a.wait_online(&fresh.instance_id, Duration::from_secs(20));
    run_echo(a, &fresh, "fresh");

    // Each step is in the audit trail.
    let events = a.json(&["lookup-events", "--max-results", "50"]);
    let names: Vec<&str> = events["Events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["EventName"].as_str())
        .collect();
    for step in [
        "StartTrustRotation",
        "SwitchTrustRotation",
        "FinishTrustRotation",
    ] {
        assert!(names.contains(&step), "{step} in {names:?}");
    }
}
