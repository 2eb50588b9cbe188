//! The SSM-compatible HTTP API with real AWS clients: the aws CLI and boto3
//! (from the virtual environment `scripts/test.sh` creates) pointed at the
//! coordinator with `--endpoint-url` and a key from `tether create-access-key`.

use serde_json::{Value, json};
use tether_tests::aws::AwsClient;
use tether_tests::{Agent, Coordinator};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_aws_cli_runs_the_tutorial_workflow_against_tether() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let aws = AwsClient::issue(&coord);

    // $ aws ssm create-activation --default-instance-name MyXoServers --iam-role SSMServiceRole ...
    let act = aws.aws_json(&[
        "create-activation",
        "--default-instance-name",
        "MyXoServers",
        "--iam-role",
        "SSMServiceRole",
        "--registration-limit",
        "10",
        "--tags",
        "Key=Env,Value=lab",
    ]);
    let (id, code) = (
        act["ActivationId"].as_str().unwrap(),
        act["ActivationCode"].as_str().unwrap(),
    );
    let nodes: Vec<Agent> = ["n1", "n2"]
        .iter()
        .map(|n| Agent::start_with_activation(tmp.path(), n, &coord, (id, code), &[]))
        .collect();
    let ids: Vec<&str> = nodes.iter().map(|n| n.instance_id.as_str()).collect();

    // $ aws ssm describe-instance-information
    let info = aws.aws_json(&["describe-instance-information"]);
    let list = info["InstanceInformationList"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{info}");
    for i in list {
        assert_eq!(i["PingStatus"], json!("Online"), "{i}");
        assert_eq!(i["ResourceType"], json!("ManagedInstance"), "{i}");
        assert_eq!(i["ActivationId"], json!(id), "{i}");
        // aws CLI v1 prints timestamps as they came over the wire: epoch seconds.
        let registered = i["RegistrationDate"].as_f64().unwrap_or(0.0);
        let now = chrono::Utc::now().timestamp() as f64;
        assert!((now - registered).abs() < 300.0, "{i}");
    }

    // $ aws ssm send-command --instance-ids ... --document-name AWS-RunShellScript --parameters commands=...
    let mut args = vec![
        "send-command",
        "--document-name",
        "AWS-RunShellScript",
        "--comment",
        "IP config",
        "--parameters",
        "commands=echo aws-$AWS_SSM_INSTANCE_ID",
        "--instance-ids",
    ];
    args.extend(&ids);
    let sent = aws.aws_json(&args);
    let command_id = sent["Command"]["CommandId"].as_str().unwrap().to_string();
    assert_eq!(sent["Command"]["TargetCount"], json!(2), "{sent}");

    // $ aws ssm wait command-executed --command-id ... --instance-id ...
    for iid in &ids {
        let out = aws.aws(&[
            "wait",
            "command-executed",
            "--command-id",
            &command_id,
            "--instance-id",
            iid,
        ]);
        assert!(out.status.success(), "wait: {}", stderr(&out));
    }

    // $ aws ssm list-command-invocations --command-id ... --details
    let invs = aws.aws_json(&[
        "list-command-invocations",
        "--command-id",
        &command_id,
        "--details",
    ]);
    let invs = invs["CommandInvocations"].as_array().unwrap();
    assert_eq!(invs.len(), 2);
    for inv in invs {
        let iid = inv["InstanceId"].as_str().unwrap();
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
        assert_eq!(
            inv["CommandPlugins"][0]["Output"],
            json!(format!("aws-{iid}\n")),
            "{inv}"
        );
    }

    // $ aws ssm get-command-invocation --command-id ... --instance-id ...
    let one = aws.aws_json(&[
        "get-command-invocation",
        "--command-id",
        &command_id,
        "--instance-id",
        ids[1],
    ]);
    assert_eq!(
        one["StandardOutputContent"],
        json!(format!("aws-{}\n", ids[1]))
    );
    assert_eq!(one["Comment"], json!("IP config"));

    // $ aws ssm send-command --targets Key=tag:Env,Values=lab ...
    let by_tag = aws.aws_json(&[
        "send-command",
        "--targets",
        "Key=tag:Env,Values=lab",
        "--document-name",
        "AWS-RunShellScript",
        "--parameters",
        "commands=hostname",
    ]);
    assert_eq!(by_tag["Command"]["TargetCount"], json!(2), "{by_tag}");
    let tag_command = by_tag["Command"]["CommandId"].as_str().unwrap();
    for iid in &ids {
        let out = aws.aws(&[
            "wait",
            "command-executed",
            "--command-id",
            tag_command,
            "--instance-id",
            iid,
        ]);
        assert!(out.status.success(), "wait: {}", stderr(&out));
    }

    // $ aws ssm create-association --name AWS-GatherSoftwareInventory --targets "Key=instanceids,Values=..."
    //       --schedule-expression "cron(0 0/30 * 1/1 * ? *)" --parameters networkConfig=Enabled,...
    let targets = format!("Key=instanceids,Values={},{}", ids[0], ids[1]);
    let assoc = aws.aws_json(&[
        "create-association",
        "--name",
        "AWS-GatherSoftwareInventory",
        "--targets",
        &targets,
        "--schedule-expression",
        "cron(0 0/30 * 1/1 * ? *)",
        "--parameters",
        "networkConfig=Enabled,windowsUpdates=Disabled,applications=Enabled",
    ]);
    assert_eq!(
        assoc["AssociationDescription"]["Name"],
        json!("AWS-GatherSoftwareInventory"),
        "{assoc}"
    );
    // $ aws ssm list-inventory-entries --instance-id <id> --type-name AWS:Application
    for iid in &ids {
        let apps = tether_tests::wait_for(
            "the inventory to be uploaded",
            std::time::Duration::from_secs(60),
            || {
                let v = aws.aws_json(&[
                    "list-inventory-entries",
                    "--instance-id",
                    iid,
                    "--type-name",
                    "AWS:Application",
                ]);
                (!v["Entries"].as_array()?.is_empty()).then_some(v)
            },
        );
        assert_eq!(apps["TypeName"], json!("AWS:Application"), "{apps}");
        assert_eq!(apps["InstanceId"], json!(iid), "{apps}");
    }

    // Auto-pagination one item per page (--page-size is MaxResults) sees every command.
    let all = aws.aws_json(&["list-commands", "--page-size", "1"]);
    let listed: Vec<&Value> = all["Commands"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 2, "{all}");

    // Service-side validation errors come back as the aws CLI shows them.
    let out = aws.aws(&[
        "send-command",
        "--document-name",
        "AWS-RunShellScript",
        "--instance-ids",
        ids[0],
        "--parameters",
        "commands=true",
        "--timeout-seconds",
        "2592001",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("(ValidationException)") && err.contains("'timeoutSeconds'"),
        "{err}"
    );
}

#[test]
fn boto3_drives_the_api_and_bad_signatures_are_refused_with_aws_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let aws = AwsClient::issue(&coord);
    let nodes: Vec<Agent> = ["b1", "b2"]
        .iter()
        .map(|n| Agent::start(tmp.path(), n, &coord))
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/ssm_api_boto3.py");
    let out = aws
        .command("python3")
        .arg(script)
        .args(nodes.iter().map(|n| n.instance_id.as_str()))
        .env("SSM_ENDPOINT", &aws.endpoint)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"checked\": \"ok\""));
}

#[test]
fn access_keys_are_listed_without_secrets_sealed_at_rest_and_deletion_locks_out() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let aws = AwsClient::issue(&coord);
    assert_eq!(aws.access_key_id.len(), 20);
    assert_eq!(aws.secret_access_key.len(), 40);
    assert!(aws.aws(&["list-commands"]).status.success());

    let listed = coord.json(&["list-access-keys"]);
    let keys = listed["AccessKeyMetadata"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{listed}");
    assert_eq!(keys[0]["AccessKeyId"], json!(aws.access_key_id));
    assert_eq!(keys[0]["Status"], json!("Active"));
    // As IAM: when a key was last used is GetAccessKeyLastUsed's to say.
    let used = coord.json(&[
        "get-access-key-last-used",
        "--access-key-id",
        &aws.access_key_id,
    ]);
    assert!(
        used["AccessKeyLastUsed"]["LastUsedDate"].is_string(),
        "{used}"
    );
    assert!(!listed.to_string().contains(&aws.secret_access_key));

    // Neither the database nor anything else in the data directory holds the secret in clear.
    for entry in std::fs::read_dir(&coord.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes
                    .windows(aws.secret_access_key.len())
                    .any(|w| w == aws.secret_access_key.as_bytes()),
                "{} holds the secret in clear",
                path.display()
            );
        }
    }

    // Keys survive a restart (the sealing key is in the data directory).
    let mut coord = coord;
    coord.restart();
    assert!(aws.aws(&["list-commands"]).status.success());

    let out = coord.cli(&["delete-access-key", "--access-key-id", &aws.access_key_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let refused = aws.aws(&["list-commands"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("UnrecognizedClientException"),
        "{}",
        stderr(&refused)
    );
    let again = coord.cli(&["delete-access-key", "--access-key-id", &aws.access_key_id]);
    assert_eq!(again.status.code(), Some(254));
    assert!(
        stderr(&again).contains("NoSuchEntity"),
        "{}",
        stderr(&again)
    );
    assert!(again.stdout.is_empty());
}
