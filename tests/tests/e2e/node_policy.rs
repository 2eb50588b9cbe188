//! The node's own policy (issue 14, "On the node: defence in depth"): a
//! node's owner restricts what it accepts, whatever the coordinator signs.
//! A refused command reaches history as Failed with the reason and never
//! runs; what the policy allows still runs on that node; associations are
//! held to the same rules; the policy file is held to StrictModes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::{Agent, Coordinator, bin, success_json, wait_for};

/// A document of the owner's choosing: a fixed script, not arbitrary shell.
const TOUCH_DOC: &str = r#"{
  "schemaVersion": "2.2",
  "description": "Touch a file",
  "parameters": {"path": {"type": "String"}},
  "mainSteps": [{"action": "aws:runShellScript", "name": "touch",
                 "inputs": {"runCommand": ["touch {{path}}"]}}]
}"#;

/// `tether --config CONFIG ARGS`, which must succeed.
fn as_user(config: &Path, args: &[&str]) -> Value {
    let out = Command::new(bin("tether"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run tether");
    success_json(&format!("tether {args:?}"), &out)
}

fn command_id(v: &Value) -> String {
    v["Command"]["CommandId"]
        .as_str()
        .expect("CommandId")
        .to_string()
}

/// The association's status on `instance` once its agent has reported a run.
fn association_run(coord: &Coordinator, instance: &str, association_id: &str) -> Value {
    wait_for(
        &format!("association {association_id} to run on {instance}"),
        Duration::from_secs(30),
        || {
            let st = coord.json(&[
                "describe-instance-associations-status",
                "--instance-id",
                instance,
            ]);
            st["InstanceAssociationStatusInfos"]
                .as_array()?
                .iter()
                .find(|i| i["AssociationId"] == association_id && i["Status"] != "Pending")
                .cloned()
        },
    )
}

/// Creates an association of `doc` with `instance`, as root or as the user
/// of `config`; returns its ID.
fn associate(
    coord: &Coordinator,
    config: Option<&Path>,
    instance: &str,
    doc: &str,
    params: &str,
) -> String {
    let target = format!("Key=InstanceIds,Values={instance}");
    let args = [
        "create-association",
        "--name",
        doc,
        "--targets",
        &target,
        "--parameters",
        params,
    ];
    let v = match config {
        Some(config) => as_user(config, &args),
        None => coord.json(&args),
    };
    v["AssociationDescription"]["AssociationId"]
        .as_str()
        .expect("AssociationId")
        .to_string()
}

#[test]
fn a_node_policy_refuses_what_its_owner_forbids_and_runs_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let coord = Coordinator::start(dir);

    // The owner's policy, in a file agent.toml names: no arbitrary shell,
    // and nothing from mallory.
    let policy = dir.join("node-policy.toml");
    std::fs::write(
        &policy,
        "run_shell_script = false\ndeny_principals = [\"mallory\"]\n",
    )
    .unwrap();
    let agent_toml = dir.join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!("[policy]\nfile = \"{}\"\n", policy.display()),
    )
    .unwrap();
    let config = agent_toml.to_str().unwrap();
    let guarded = Agent::start_with_env(dir, "guarded", &coord, &[("TETHER_AGENT_CONFIG", config)]);
    let open = Agent::start(dir, "open", &coord);
    wait_for(
        "the policy's line in agent.log",
        Duration::from_secs(5),
        || {
            guarded
                .log()
                .contains("this node's policy restricts what it runs")
                .then_some(())
        },
    );

    // One command to both nodes: the guarded one refuses it, the other runs
    // it (MaxErrors 1: with SSM's default of 0, a refusal that comes back
    // before the other node's envelope has gone out terminates it).
    let marker = dir.join("shell-ran");
    let sent = coord.json(&[
        "send-command",
        "--document-name",
        "AWS-RunShellScript",
        "--max-errors",
        "1",
        "--parameters",
        &json!({"commands": [format!("touch {}-$TETHER_INSTANCE_ID", marker.display())]})
            .to_string(),
        "--instance-ids",
        &guarded.instance_id,
        &open.instance_id,
    ]);
    let id = command_id(&sent);
    let refused = coord.wait_invocation(&id, &guarded.instance_id, Duration::from_secs(30));
    assert_eq!(refused["Status"], json!("Failed"), "{refused}");
    assert_eq!(refused["StatusDetails"], json!("Failed"), "{refused}");
    let why = refused["StandardErrorContent"].as_str().unwrap();
    let expected = format!(
        "this node's policy ({}) does not accept it: document AWS-RunShellScript runs arbitrary commands and run_shell_script = false",
        policy.display()
    );
    assert!(why.contains(&expected), "{why}");
    let ran = coord.wait_invocation(&id, &open.instance_id, Duration::from_secs(30));
    assert_eq!(ran["Status"], json!("Success"), "{ran}");
    // Only the open node ran it.
    let ran_on = |a: &Agent| dir.join(format!("shell-ran-{}", a.instance_id)).exists();
    assert!(ran_on(&open) && !ran_on(&guarded));
    // History says so too, and the node logged it.
    let listed = coord.json(&["list-command-invocations", "--command-id", &id]);
    let statuses: Vec<(&str, &str)> = listed["CommandInvocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["InstanceId"].as_str().unwrap(),
                i["Status"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&(guarded.instance_id.as_str(), "Failed"))
            && statuses.contains(&(open.instance_id.as_str(), "Success")),
        "{listed}"
    );
    wait_for("the refusal in errors.log", Duration::from_secs(5), || {
        guarded
            .errors_log()
            .contains("command refused by this node's policy")
            .then_some(())
    });
    assert!(
        guarded.errors_log().contains(&id),
        "{}",
        guarded.errors_log()
    );

    // A document the policy allows still runs on the guarded node.
    coord.json(&[
        "create-document",
        "--name",
        "Acme-Touch",
        "--content",
        TOUCH_DOC,
        "--document-type",
        "Command",
    ]);
    let touched = dir.join("touched-by-root");
    let sent = coord.json(&[
        "send-command",
        "--document-name",
        "Acme-Touch",
        "--parameters",
        &json!({"path": [touched.to_str().unwrap()]}).to_string(),
        "--instance-ids",
        &guarded.instance_id,
    ]);
    let inv = coord.wait_invocation(
        &command_id(&sent),
        &guarded.instance_id,
        Duration::from_secs(30),
    );
    assert_eq!(inv["Status"], json!("Success"), "{inv}");
    assert!(touched.exists());

    // Mallory may send anything as far as the coordinator is concerned; the
    // node refuses her by the principal signed into the envelope.
    coord.json(&["create-user", "--user-name", "mallory"]);
    let out = coord.cli(&[
        "put-user-policy",
        "--user-name",
        "mallory",
        "--policy-name",
        "all",
        "--policy-document",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:*","Resource":"*"}]}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mallory = dir.join("mallory.json");
    std::fs::write(
        &mallory,
        coord
            .json(&["create-operator-config", "--user-name", "mallory"])
            .to_string(),
    )
    .unwrap();
    let hers = dir.join("touched-by-mallory");
    let sent = as_user(
        &mallory,
        &[
            "send-command",
            "--document-name",
            "Acme-Touch",
            "--parameters",
            &json!({"path": [hers.to_str().unwrap()]}).to_string(),
            "--instance-ids",
            &guarded.instance_id,
        ],
    );
    let account = coord.operator()["AccountId"].as_str().unwrap().to_string();
    let inv = coord.wait_invocation(
        &command_id(&sent),
        &guarded.instance_id,
        Duration::from_secs(30),
    );
    assert_eq!(inv["Status"], json!("Failed"), "{inv}");
    let why = inv["StandardErrorContent"].as_str().unwrap();
    assert!(
        why.contains(&format!(
            "principal arn:aws:iam::{account}:user/mallory matches deny_principals \"mallory\""
        )),
        "{why}"
    );
    assert!(!hers.exists());

    // Associations go through the same check when they run.
    let shell = associate(
        &coord,
        None,
        &guarded.instance_id,
        "AWS-RunShellScript",
        &format!("commands=touch {}", dir.join("assoc-shell").display()),
    );
    let st = association_run(&coord, &guarded.instance_id, &shell);
    assert_eq!(st["Status"], json!("Failed"), "{st}");
    assert!(
        st["ExecutionSummary"]
            .as_str()
            .unwrap()
            .contains("document AWS-RunShellScript runs arbitrary commands"),
        "{st}"
    );
    let by_mallory = associate(
        &coord,
        Some(&mallory),
        &guarded.instance_id,
        "Acme-Touch",
        &format!("path={}", dir.join("assoc-mallory").display()),
    );
    let st = association_run(&coord, &guarded.instance_id, &by_mallory);
    assert_eq!(st["Status"], json!("Failed"), "{st}");
    assert!(
        st["ExecutionSummary"]
            .as_str()
            .unwrap()
            .contains("user/mallory matches deny_principals"),
        "{st}"
    );
    let allowed = associate(
        &coord,
        None,
        &guarded.instance_id,
        "Acme-Touch",
        &format!("path={}", dir.join("assoc-root").display()),
    );
    let st = association_run(&coord, &guarded.instance_id, &allowed);
    assert_eq!(st["Status"], json!("Success"), "{st}");
    assert!(dir.join("assoc-root").exists());
    assert!(!dir.join("assoc-shell").exists());
    assert!(!dir.join("assoc-mallory").exists());
}

/// A policy file anyone could rewrite restricts nothing: the agent refuses
/// to start (exit 78) naming it, as it does for agent.toml; a policy file
/// agent.toml names but that is missing or malformed stops it too.
#[test]
fn a_policy_file_that_is_unsafe_missing_or_malformed_stops_the_agent() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let coord = Coordinator::start(dir);
    let (id, code) = coord.activation(1);
    let node = Agent::register(
        dir,
        "node",
        &coord.endpoint(),
        &coord.ca_pin(),
        (&id, &code),
    );
    let policy = dir.join("node-policy.toml");
    let agent_toml = dir.join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!("[policy]\nfile = \"{}\"\n", policy.display()),
    )
    .unwrap();
    let run = || {
        Command::new(bin("tether-agent"))
            .arg("run")
            .arg("--state-dir")
            .arg(&node.state_dir)
            .arg("--log-dir")
            .arg(&node.log_dir)
            .env("TETHER_AGENT_CONFIG", &agent_toml)
            .output()
            .expect("run tether-agent")
    };
    let refused = |why: &str| {
        let out = run();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(78), "{err}");
        assert!(err.contains(why), "{err}");
    };
    refused(&format!("names {}, which cannot be read", policy.display()));
    std::fs::write(&policy, "deny_documents = [\"AWS RunShellScript\"]\n").unwrap();
    refused("deny_documents: pattern \"AWS RunShellScript\" holds white space");
    std::fs::write(&policy, "run_shell_script = false\n").unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o666)).unwrap();
    refused(&format!(
        "{} is writable by",
        policy.canonicalize().unwrap().display()
    ));
}
