//! Secrets in commands (issue 15), the seed's domain-join workflow
//! (`seeds/aws-blog-domain-join.txt`) on two agents: an operator stores
//! `/adjoin/password` as a SecureString and sends a join script that uses it
//! through `{{ssm-secure:…}}`. Its value travels sealed to each node, the
//! script exists only in memory, and every occurrence in the output is
//! masked; then every byte the system wrote (the coordinator's database and
//! WAL, its logs and audit mirror, the agents' state, spool and logs) and
//! every answer about the command (tether CLI, the aws CLI over HTTPS, the
//! live output while it ran, the audit trail) is scanned for the secret in
//! clear, hex and base64: none. The step's SHA-256 of what it received
//! proves it got the right value, also in a step that runs after its agent
//! restarted (the agent opens the sealed values again from its spool).

use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest as _;
use tether_tests::aws::AwsClient;
use tether_tests::{Agent, Coordinator, bin, stderr_of, wait_for};

use super::parameters::{scan, scan_text};

const SECRET: &str = "J0in-Dom@in!pw-8c2e71-e2e-secret";

/// A two-step join document: the first step waits (the test restarts one
/// agent meanwhile), the second uses the password three ways.
const JOIN_DOCUMENT: &str = r#"{
  "schemaVersion": "2.2",
  "description": "Join a domain (test): the password comes from a SecureString parameter.",
  "parameters": {
    "user": {"type": "String"},
    "password": {"type": "String"}
  },
  "mainSteps": [
    {"action": "aws:runShellScript", "name": "prepare",
     "inputs": {"runCommand": ["echo preparing", "sleep 5"]}},
    {"action": "aws:runShellScript", "name": "join",
     "inputs": {"runCommand": [
       "printf '%s' '{{ password }}' | sha256sum | cut -d' ' -f1",
       "echo \"joining as {{ user }} with {{ password }}\"",
       "echo \"stderr too: {{ password }}\" >&2",
       "echo \"script from: $0\""
     ]}}
  ]
}"#;

fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[test]
fn a_domain_join_secret_reaches_two_nodes_sealed_and_is_never_stored_or_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coord = Coordinator::start(dir.path());
    let a1 = Agent::start(dir.path(), "node1", &coord);
    let mut a2 = Agent::start(dir.path(), "node2", &coord);
    for a in [&a1, &a2] {
        // Each agent made its own sealing key (owner-only) and the
        // coordinator acknowledged it in a signed trust bundle.
        let key = a.state_dir.join("sealing.key");
        let mode = std::fs::metadata(&key).expect("sealing.key").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        wait_for("the trust bundle", Duration::from_secs(30), || {
            a.log()
                .contains("the coordinator holds this node's sealing key")
                .then_some(())
        });
    }
    coord.json(&[
        "put-parameter",
        "--name",
        "/adjoin/user",
        "--value",
        "svc-join",
        "--type",
        "String",
    ]);
    coord.json(&[
        "put-parameter",
        "--name",
        "/adjoin/password",
        "--value",
        "an-older-password",
        "--type",
        "SecureString",
    ]);
    coord.json(&[
        "put-parameter",
        "--name",
        "/adjoin/password",
        "--value",
        SECRET,
        "--type",
        "SecureString",
        "--overwrite",
    ]);
    coord.json(&[
        "create-document",
        "--name",
        "Test-DomainJoin",
        "--content",
        JOIN_DOCUMENT,
        "--document-type",
        "Command",
    ]);

    let params = json!({
        "user": ["{{ssm:/adjoin/user}}"],
        "password": ["{{ssm-secure:/adjoin/password}}"],
    })
    .to_string();
    let sent = coord.json(&[
        "send-command",
        "--document-name",
        "Test-DomainJoin",
        "--parameters",
        &params,
        "--instance-ids",
        &a1.instance_id,
        &a2.instance_id,
    ]);
    scan_text("the send-command answer", &sent.to_string(), SECRET);
    let id = sent["Command"]["CommandId"]
        .as_str()
        .expect("CommandId")
        .to_string();
    // The history keeps the references, with the versions they resolved to.
    assert_eq!(
        sent["Command"]["Parameters"]["password"],
        json!(["{{ssm-secure:/adjoin/password}}"])
    );
    let refs = sent["Command"]["ParameterReferences"].clone();
    assert_eq!(
        refs,
        json!([
            {"Reference": "{{ssm-secure:/adjoin/password}}", "Name": "/adjoin/password", "Version": 2, "Secure": true},
            {"Reference": "{{ssm:/adjoin/user}}", "Name": "/adjoin/user", "Version": 1, "Secure": false},
        ]),
        "{sent}"
    );

    // node2's agent is killed while the first step runs (the supervisor goes
    // on), and started again: it opens the sealed values from its spool.
    wait_for(
        "node2 to start the command",
        Duration::from_secs(30),
        || a2.logged("command accepted", &id).then_some(()),
    );
    a2.crash();
    a2.run();

    // The live output while it runs, as an operator following it sees it.
    let join_step = |a: &Agent| {
        coord.json(&[
            "get-command-invocation",
            "--command-id",
            &id,
            "--instance-id",
            &a.instance_id,
            "--plugin-name",
            "join",
        ])
    };
    let mut answers: Vec<String> = Vec::new();
    for a in [&a1, &a2] {
        let inv = wait_for("the join step's output", Duration::from_secs(60), || {
            let v = join_step(a);
            answers.push(v.to_string());
            v["StandardOutputContent"]
                .as_str()
                .is_some_and(|s| s.contains("joining"))
                .then_some(v)
        });
        answers.push(inv.to_string());
    }
    for a in [&a1, &a2] {
        let join = wait_for("the join step to end", Duration::from_secs(60), || {
            let v = join_step(a);
            let s = v["Status"].as_str().unwrap_or("");
            (!matches!(s, "Pending" | "InProgress" | "Delayed")).then_some(v)
        });
        assert_eq!(join["Status"], json!("Success"), "{join}");
        let inv = coord.json(&[
            "list-command-invocations",
            "--command-id",
            &id,
            "--instance-id",
            &a.instance_id,
            "--details",
        ]);
        assert_eq!(
            inv["CommandInvocations"][0]["Status"],
            json!("Success"),
            "{inv}"
        );
        let out = join["StandardOutputContent"].as_str().unwrap_or_default();
        let err = join["StandardErrorContent"].as_str().unwrap_or_default();
        // The step received exactly the value (its SHA-256), the user's
        // plain value was resolved at send, and the script came from memory.
        assert!(
            out.starts_with(&format!("{}\n", sha256_hex(SECRET))),
            "{join}"
        );
        assert!(out.contains("joining as svc-join with ****\n"), "{join}");
        assert!(out.contains("script from: /proc/self/fd/"), "{join}");
        assert_eq!(err, "stderr too: ****\n", "{join}");
        answers.push(inv.to_string());
        answers.push(join.to_string());
    }
    assert!(
        a2.log().contains("resuming a command from the spool"),
        "node2 did not restart mid-command"
    );

    // Every answer about the command.
    for args in [
        vec!["list-commands", "--command-id", id.as_str()],
        vec!["list-command-invocations", "--command-id", &id, "--details"],
        vec!["lookup-events"],
    ] {
        answers.push(coord.json(&args).to_string());
    }
    let aws = AwsClient::issue(&coord);
    for args in [
        vec!["list-commands", "--command-id", id.as_str()],
        vec!["list-command-invocations", "--command-id", &id, "--details"],
        vec![
            "get-command-invocation",
            "--command-id",
            &id,
            "--instance-id",
            &a1.instance_id,
            "--plugin-name",
            "join",
        ],
    ] {
        answers.push(aws.aws_json(&args).to_string());
    }
    for (n, text) in answers.iter().enumerate() {
        scan_text(&format!("answer {n}"), text, SECRET);
    }
    // A history answer shows the masked output, never the value.
    assert!(answers.iter().any(|a| a.contains("with ****")));

    // Every byte written: the coordinator's database (and WAL), its logs and
    // audit mirror, both agents' state, spool and logs.
    drop(a1);
    drop(a2);
    let found = scan(dir.path(), SECRET);
    assert!(found.is_empty(), "the secret was written: {found:?}");
}

/// A sender who may read the parameter but not decrypt it (no
/// `kms:Decrypt` on its key) cannot send a command that references it:
/// AccessDenied, nothing sent. A reference to a missing parameter is refused
/// by name.
#[test]
fn a_sender_who_cannot_decrypt_cannot_send_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coord = Coordinator::start(dir.path());
    let agent = Agent::start(dir.path(), "node1", &coord);
    coord.json(&[
        "put-parameter",
        "--name",
        "/adjoin/password",
        "--value",
        SECRET,
        "--type",
        "SecureString",
    ]);
    coord.json(&["create-user", "--user-name", "sender"]);
    coord.json(&[
        "put-user-policy",
        "--user-name",
        "sender",
        "--policy-name",
        "send",
        "--policy-document",
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":["ssm:SendCommand","ssm:GetParameters","ssm:ListCommands"],"Resource":"*"}]}"#,
    ]);
    let config = coord.json(&[
        "create-operator-config",
        "--user-name",
        "sender",
        "--expires-in",
        "1d",
    ]);
    let sender = dir.path().join("sender.json");
    std::fs::write(&sender, config.to_string()).expect("write");
    let as_sender = |parameters: &str| {
        std::process::Command::new(bin("tether"))
            .arg("--config")
            .arg(&sender)
            .args([
                "send-command",
                "--document-name",
                "AWS-RunShellScript",
                "--instance-ids",
                &agent.instance_id,
                "--parameters",
                parameters,
            ])
            .output()
            .expect("run tether")
    };
    let secure = json!({"commands": ["echo {{ssm-secure:/adjoin/password}}"]}).to_string();
    let out = as_sender(&secure);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(254), "{err}");
    assert!(
        err.contains("(AccessDeniedException)") && err.contains("kms:Decrypt"),
        "{err}"
    );
    let missing = json!({"commands": ["echo {{ssm-secure:/adjoin/none}}"]}).to_string();
    let err = stderr_of(&as_sender(&missing));
    assert!(
        err.contains("(InvalidParameters)") && err.contains("/adjoin/none"),
        "{err}"
    );
    let listed: Value = coord.json(&["list-commands"]);
    assert_eq!(
        listed["Commands"],
        json!([]),
        "a refused command was stored"
    );
    scan_text("the refusal", &err, SECRET);
}

/// An association's references are resolved at each run, as the principal
/// it acts for: a password rotated between two runs reaches the second (the
/// SHA-256 each run records shows which value it received), and neither
/// value is written anywhere in clear.
#[test]
fn an_association_resolves_its_references_at_each_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coord = Coordinator::start(dir.path());
    let agent = Agent::start(dir.path(), "node1", &coord);
    let rotated = format!("{SECRET}-rotated");
    let put = |value: &str, overwrite: bool| {
        let mut args = vec![
            "put-parameter",
            "--name",
            "/adjoin/password",
            "--value",
            value,
            "--type",
            "SecureString",
        ];
        if overwrite {
            args.push("--overwrite");
        }
        coord.json(&args);
    };
    put(SECRET, false);
    coord.json(&[
        "put-parameter",
        "--name",
        "/adjoin/user",
        "--value",
        "svc-join",
        "--type",
        "String",
    ]);
    let marker = dir.path().join("received");
    let params = json!({"commands": [
        format!("printf '%s' '{{{{ssm-secure:/adjoin/password}}}}' | sha256sum | cut -d' ' -f1 >> {}", marker.display()),
        "echo 'user {{ssm:/adjoin/user}} password {{ssm-secure:/adjoin/password}}'",
    ]})
    .to_string();
    let created = coord.json(&[
        "create-association",
        "--name",
        "AWS-RunShellScript",
        "--targets",
        &format!("Key=InstanceIds,Values={}", agent.instance_id),
        "--parameters",
        &params,
        "--schedule-expression",
        "rate(1 day)",
    ]);
    scan_text(
        "the create-association answer",
        &created.to_string(),
        SECRET,
    );
    let id = created["AssociationDescription"]["AssociationId"]
        .as_str()
        .expect("AssociationId")
        .to_string();
    let lines = |n: usize| {
        wait_for("the association's run", Duration::from_secs(60), || {
            let text = std::fs::read_to_string(&marker).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            (lines.len() >= n).then_some(lines)
        })
    };
    assert_eq!(lines(1), [sha256_hex(SECRET)]);

    // Rotated; the association's next run (its new version) gets the new value.
    put(&rotated, true);
    coord.json(&[
        "update-association",
        "--association-id",
        &id,
        "--parameters",
        &params,
    ]);
    assert_eq!(lines(2), [sha256_hex(SECRET), sha256_hex(&rotated)]);
    wait_for("the second run's report", Duration::from_secs(60), || {
        let d = coord.json(&["describe-association", "--association-id", &id]);
        (d["AssociationDescription"]["Overview"]["Status"] == "Success").then_some(())
    });
    // A reference the creator cannot resolve is refused at creation, by name.
    let err = stderr_of(&coord.cli(&[
        "create-association",
        "--name",
        "AWS-RunShellScript",
        "--targets",
        &format!("Key=InstanceIds,Values={}", agent.instance_id),
        "--parameters",
        r#"{"commands":["echo {{ssm-secure:/adjoin/none}}"]}"#,
    ]));
    assert!(
        err.contains("(InvalidParameters)") && err.contains("/adjoin/none"),
        "{err}"
    );
    drop(agent);
    for secret in [SECRET, rotated.as_str()] {
        let found = scan(dir.path(), secret);
        assert!(found.is_empty(), "the secret was written: {found:?}");
    }
}
