//! The users' workflow from `shared/seeds/exogeni-ssm-tutorial.txt`, replayed
//! with `tether` in place of `aws ssm`, for the verbs that exist so far.

use std::time::Duration;

use serde_json::json;
use tether_tests::{Agent, Coordinator};

#[test]
fn the_tutorial_run_command_flow_works_with_tether() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    // $ aws ssm create-activation --default-instance-name MyXoServers --iam-role SSMServiceRole
    //       --registration-limit 10 --expiration-date 2017-01-10T20:30:00.000Z
    let expiry = (chrono::Utc::now() + chrono::Duration::days(3))
        .format("%Y-%m-%dT%H:%M:%S.000Z")
        .to_string();
    let act = coord.json(&[
        "create-activation",
        "--default-instance-name",
        "MyXoServers",
        "--iam-role",
        "SSMServiceRole",
        "--registration-limit",
        "10",
        "--expiration-date",
        &expiry,
        "--tags",
        "Key=aws:cloudformation:stack-name,Value=GENIStack",
    ]);
    let (id, code) = (
        act["ActivationId"].as_str().unwrap(),
        act["ActivationCode"].as_str().unwrap(),
    );
    assert_eq!(code.len(), 20);
    let nodes: Vec<Agent> = ["n1", "n2"]
        .iter()
        .map(|n| Agent::start_with_activation(tmp.path(), n, &coord, (id, code), &[]))
        .collect();

    // $ aws ssm describe-instance-information
    let info = coord.json(&["describe-instance-information"]);
    let list = info["InstanceInformationList"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|i| i["Name"] == "MyXoServers"
        && i["PingStatus"] == "Online"
        && i["ActivationId"] == id));

    // $ aws ssm send-command --instance-ids ... --document-name "AWS-RunShellScript"
    //       --comment "IP config" --parameters commands=ifconfig --output text
    let out = coord.cli(&[
        "send-command",
        "--instance-ids",
        &nodes[0].instance_id,
        &nodes[1].instance_id,
        "--document-name",
        "AWS-RunShellScript",
        "--comment",
        "IP config",
        "--parameters",
        "commands=hostname",
        "--output",
        "text",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("COMMAND\t") && first.contains("IP config"),
        "{text}"
    );
    let command_id = first
        .split('\t')
        .find(|f| f.len() == 36 && f.matches('-').count() == 4)
        .unwrap();

    // $ aws ssm send-command --targets "Key=tag:aws:cloudformation:stack-name,Values=GENIStack" ...
    let by_tag = coord.json(&[
        "send-command",
        "--targets",
        "Key=tag:aws:cloudformation:stack-name,Values=GENIStack",
        "--document-name",
        "AWS-RunShellScript",
        "--comment",
        "IP config",
        "--parameters",
        "commands=hostname",
    ]);
    assert_eq!(by_tag["Command"]["TargetCount"], json!(2));

    // $ aws ssm list-command-invocations --command-id <guid> --details
    for n in &nodes {
        coord.wait_invocation(command_id, &n.instance_id, Duration::from_secs(30));
    }
    let invs = coord.json(&[
        "list-command-invocations",
        "--command-id",
        command_id,
        "--details",
    ]);
    let invs = invs["CommandInvocations"].as_array().unwrap();
    assert_eq!(invs.len(), 2);
    let host = String::from_utf8_lossy(
        &std::process::Command::new("hostname")
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for inv in invs {
        assert_eq!(inv["Status"], json!("Success"));
        assert_eq!(inv["CommandPlugins"][0]["Output"], json!(host));
    }
    // $ aws ssm get-command-invocation --command-id <guid> --instance-id <id>
    let one = coord.invocation(command_id, &nodes[1].instance_id);
    assert_eq!(one["StandardOutputContent"], json!(host));
    assert_eq!(one["Comment"], json!("IP config"));
}
