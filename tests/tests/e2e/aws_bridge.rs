//! The AWS bridge: one Tether coordinator drives instances that "AWS SSM"
//! manages beside its own agents. "AWS" is a second Tether coordinator's
//! SSM-compatible API (real agents, real outputs; everything moto lacks) and
//! moto's server (SendCommand batches, GetCommandInvocation).

use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::aws::{AwsClient, Moto, profile_env, write_bridge_config};
use tether_tests::{Agent, Coordinator, wait_for};

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn listed(coord: &Coordinator, args: &[&str], id: &str) -> Option<Value> {
    let v = coord.json(args);
    v["InstanceInformationList"]
        .as_array()?
        .iter()
        .find(|i| i["InstanceId"] == id)
        .cloned()
}

#[test]
fn one_command_runs_on_our_agents_and_on_instances_another_ssm_manages() {
    let tmp = tempfile::tempdir().unwrap();
    let remote_dir = tmp.path().join("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    // "AWS" throttles the bridge's first sends and polls beyond the SDK's own retries.
    let remote = Coordinator::start_with_env(
        &remote_dir,
        &[(
            "TETHER_TEST_SSM_THROTTLE",
            "SendCommand:4,GetCommandInvocation:4",
        )],
    );
    let remote_node = Agent::start(&remote_dir, "r1", &remote);
    let key = AwsClient::issue(&remote);

    let local_dir = tmp.path().join("local");
    write_bridge_config(
        &local_dir,
        &format!(
            "refresh_seconds = 1\n[[accounts]]\nname = \"lab\"\nregion = \"us-east-1\"\nprofile = \"lab\"\n\
             endpoint_url = \"{}\"\nca_bundle = \"{}\"\n",
            key.endpoint,
            key.ca_bundle.display()
        ),
    );
    let env = profile_env(&local_dir, "lab", &key);
    let local = Coordinator::start_with_env(&local_dir, &env_refs(&env));
    let local_node = Agent::start(&local_dir, "l1", &local);

    // The remote node is listed from "AWS", beside ours, and says so.
    let info = wait_for("the bridged instance", Duration::from_secs(30), || {
        listed(
            &local,
            &["describe-instance-information"],
            &remote_node.instance_id,
        )
    });
    assert_eq!(info["Source"], json!("aws:lab"), "{info}");
    assert_eq!(info["ResourceType"], json!("ManagedInstance"), "{info}");
    assert_eq!(info["PingStatus"], json!("Online"), "{info}");
    assert_eq!(info["PlatformType"], json!("Linux"), "{info}");
    let ours = listed(
        &local,
        &["describe-instance-information"],
        &local_node.instance_id,
    )
    .unwrap();
    assert!(ours.get("Source").is_none(), "{ours}");

    // One command, both kinds, one history.
    let command_id = local.send(
        &[&local_node.instance_id, &remote_node.instance_id],
        &json!({"commands": ["echo mixed-$AWS_SSM_INSTANCE_ID"]}),
    );
    for id in [&local_node.instance_id, &remote_node.instance_id] {
        let inv = local.wait_invocation(&command_id, id, Duration::from_secs(60));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
        assert_eq!(
            inv["StandardOutputContent"],
            json!(format!("mixed-{id}\n")),
            "{inv}"
        );
    }
    let invs = local.json(&[
        "list-command-invocations",
        "--command-id",
        &command_id,
        "--details",
    ]);
    let invs = invs["CommandInvocations"].as_array().unwrap();
    assert_eq!(invs.len(), 2);
    assert!(invs.iter().all(|i| i["Status"] == "Success"), "{invs:?}");
    assert!(
        local.log().contains("AWS SendCommand deferred"),
        "the bridge should have backed off: {}",
        local.log()
    );
    let cmd = local.json(&["list-commands", "--command-id", &command_id]);
    assert_eq!(cmd["Commands"][0]["Status"], json!("Success"), "{cmd}");
    assert_eq!(cmd["Commands"][0]["CompletedCount"], json!(2), "{cmd}");
    // The remote SSM ran its part as a command of its own, for its node only.
    let theirs = remote.json(&["list-commands"]);
    let theirs = theirs["Commands"].as_array().unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["InstanceIds"], json!([remote_node.instance_id]));

    // Tags that AWS keeps on its managed instances target them too.
    let out = remote.cli(&[
        "add-tags-to-resource",
        "--resource-type",
        "ManagedInstance",
        "--resource-id",
        &remote_node.instance_id,
        "--tags",
        "Key=Env,Value=cloud",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the AWS tags to arrive", Duration::from_secs(30), || {
        listed(
            &local,
            &[
                "describe-instance-information",
                "--filters",
                "Key=tag:Env,Values=cloud",
            ],
            &remote_node.instance_id,
        )
    });
    let by_tag = local.json(&[
        "send-command",
        "--targets",
        "Key=tag:Env,Values=cloud",
        "--document-name",
        "AWS-RunShellScript",
        "--parameters",
        "commands=echo tagged",
    ]);
    assert_eq!(by_tag["Command"]["TargetCount"], json!(1), "{by_tag}");
    let tagged = by_tag["Command"]["CommandId"].as_str().unwrap();
    let inv = local.wait_invocation(tagged, &remote_node.instance_id, Duration::from_secs(60));
    assert_eq!(inv["StandardOutputContent"], json!("tagged\n"), "{inv}");

    // cancel-command reaches the AWS side; AWS's verdict comes back.
    let long = local.send(
        &[&remote_node.instance_id],
        &json!({"commands": ["sleep 60"]}),
    );
    wait_for("the remote step to start", Duration::from_secs(30), || {
        let v = local.invocation(&long, &remote_node.instance_id);
        (v["Status"] == "InProgress").then_some(())
    });
    wait_for(
        "the remote agent to run it",
        Duration::from_secs(30),
        || {
            let v = remote.json(&["list-command-invocations"]);
            v["CommandInvocations"]
                .as_array()?
                .iter()
                .any(|i| i["Status"] == "InProgress")
                .then_some(())
        },
    );
    let out = local.cli(&["cancel-command", "--command-id", &long]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inv = local.wait_invocation(&long, &remote_node.instance_id, Duration::from_secs(60));
    assert_eq!(inv["Status"], json!("Cancelled"), "{inv}");
    let theirs = remote.json(&["list-command-invocations"]);
    assert!(
        theirs["CommandInvocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["Status"] == "Cancelled"),
        "{theirs}"
    );

    // An AWS refusal lands on the invocation it concerns, with its code.
    let out = remote.cli(&["delete-access-key", "--access-key-id", &key.access_key_id]);
    assert!(out.status.success());
    let refused = local.send(&[&remote_node.instance_id], &json!({"commands": ["true"]}));
    let inv = local.wait_invocation(&refused, &remote_node.instance_id, Duration::from_secs(60));
    assert_eq!(inv["Status"], json!("Failed"), "{inv}");
    assert_eq!(inv["StatusDetails"], json!("Undeliverable"), "{inv}");
    let why = inv["StandardErrorContent"].as_str().unwrap();
    assert!(
        why.contains("refused SendCommand") && why.contains("UnrecognizedClientException"),
        "{why}"
    );
    // The coordinator and its own agents carry on.
    let after = local.send(
        &[&local_node.instance_id],
        &json!({"commands": ["echo still"]}),
    );
    let inv = local.wait_invocation(&after, &local_node.instance_id, Duration::from_secs(30));
    assert_eq!(inv["StandardOutputContent"], json!("still\n"));

    // The bridge's calls are in the metrics, and what "AWS" throttled too.
    let metrics = local.json(&["get-metrics"]);
    let families = super::metrics::parse(metrics["Metrics"].as_str().expect("Metrics"));
    let calls = |op: &str| {
        super::metrics::sample(
            &families,
            "tether_bridge_calls_total",
            &json!({ "operation": op }),
        )
    };
    for op in [
        "DescribeInstanceInformation",
        "SendCommand",
        "GetCommandInvocation",
        "CancelCommand",
    ] {
        assert!(calls(op) >= 1.0, "{op}: {metrics}");
    }
    let throttled = super::metrics::sample(
        &families,
        "tether_bridge_throttles_total",
        &json!({"operation": "SendCommand"}),
    );
    assert!(throttled >= 1.0, "{metrics}");
    assert!(calls("SendCommand") > throttled, "{metrics}");
    assert_eq!(
        super::metrics::sample(
            &families,
            "tether_replica_leader",
            &json!({"role": "bridge"})
        ),
        1.0,
        "{metrics}"
    );
}

#[test]
fn sixty_aws_targets_go_to_moto_in_batches_of_fifty() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let ids: Vec<String> = (1..=60).map(|i| format!("i-{i:017x}")).collect();
    write_bridge_config(
        tmp.path(),
        &format!(
            "refresh_seconds = 1\n[[accounts]]\nname = \"moto\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{}\"\ninstance_ids = {}\n",
            moto.endpoint,
            serde_json::to_string(&ids).unwrap()
        ),
    );
    let coord = Coordinator::start_with_env(
        tmp.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let info = wait_for(
        "the configured EC2 instances",
        Duration::from_secs(30),
        || listed(&coord, &["describe-instance-information"], &ids[59]),
    );
    assert_eq!(info["ResourceType"], json!("EC2Instance"), "{info}");
    assert_eq!(info["SourceType"], json!("AWS::EC2::Instance"), "{info}");
    assert_eq!(info["Source"], json!("aws:moto"), "{info}");

    let targets = json!([
        {"Key": "InstanceIds", "Values": ids[..30]},
        {"Key": "InstanceIds", "Values": ids[30..]},
    ])
    .to_string();
    let sent = coord.json(&[
        "send-command",
        "--targets",
        &targets,
        "--document-name",
        "AWS-RunShellScript",
        "--comment",
        "to moto",
        "--parameters",
        "commands=uptime",
    ]);
    assert_eq!(sent["Command"]["TargetCount"], json!(60), "{sent}");
    let command_id = sent["Command"]["CommandId"].as_str().unwrap().to_string();
    let done = wait_for("the command to finish", Duration::from_secs(60), || {
        let v = coord.json(&["list-commands", "--command-id", &command_id]);
        (v["Commands"][0]["Status"] == "Success").then_some(v)
    });
    assert_eq!(done["Commands"][0]["CompletedCount"], json!(60), "{done}");
    let inv = coord.invocation(&command_id, &ids[7]);
    assert_eq!(inv["Status"], json!("Success"), "{inv}");

    // moto saw two SendCommand calls: 50 IDs, then 10, with our parameters.
    let seen = moto.python(
        "cmds = ssm.list_commands()['Commands']\n\
         print(json.dumps([{'n': len(c['InstanceIds']), 'ids': c['InstanceIds'], 'comment': c['Comment'], \
         'doc': c['DocumentName'], 'params': c['Parameters']} for c in cmds]))",
    );
    let seen = seen.as_array().unwrap();
    let mut sizes: Vec<u64> = seen.iter().map(|c| c["n"].as_u64().unwrap()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![10, 50], "{seen:?}");
    let mut all: Vec<String> = seen
        .iter()
        .flat_map(|c| c["ids"].as_array().unwrap().iter())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    all.sort();
    assert_eq!(all, ids);
    for c in seen {
        assert_eq!(c["comment"], json!("to moto"));
        assert_eq!(c["doc"], json!("AWS-RunShellScript"));
        assert_eq!(c["params"], json!({"commands": ["uptime"]}));
    }

    // A document of Tether's own is published to AWS on first use, as stored.
    let content = json!({
        "schemaVersion": "2.2",
        "description": "Say hello",
        "parameters": {"who": {"type": "String", "default": "world"}},
        "mainSteps": [{"action": "aws:runShellScript", "name": "hello",
                       "inputs": {"runCommand": ["echo hello {{ who }}"]}}]
    })
    .to_string();
    coord.json(&[
        "create-document",
        "--name",
        "Tether-Hello",
        "--content",
        &content,
        "--document-type",
        "Command",
    ]);
    let hello = coord.json(&[
        "send-command",
        "--instance-ids",
        &ids[0],
        &ids[1],
        "--document-name",
        "Tether-Hello",
        "--parameters",
        "who=moto",
    ]);
    let hello_id = hello["Command"]["CommandId"].as_str().unwrap().to_string();
    wait_for(
        "the custom-document command",
        Duration::from_secs(60),
        || {
            let v = coord.json(&["list-commands", "--command-id", &hello_id]);
            (v["Commands"][0]["Status"] == "Success").then_some(())
        },
    );
    let published = moto.python(
        &[
            "d = ssm.get_document(Name='Tether-Hello')",
            "c = [c for c in ssm.list_commands()['Commands'] if c['DocumentName'] == 'Tether-Hello']",
            "print(json.dumps({'content': d['Content'], 'type': d['DocumentType'], 'sent': len(c), 'params': c[0]['Parameters']}))",
        ]
        .join("\n"),
    );
    assert_eq!(published["content"], json!(content), "{published}");
    assert_eq!(published["type"], json!("Command"));
    assert_eq!(published["sent"], json!(1));
    assert_eq!(published["params"], json!({"who": ["moto"]}));

    // An AWS document of the same name with other content is never overwritten:
    // the invocations say why they could not run.
    moto.python(
        &[
            "theirs = {'schemaVersion': '2.2', 'description': 'theirs', 'mainSteps': [{'action': 'aws:runShellScript', 'name': 'x', 'inputs': {'runCommand': ['true']}}]}",
            "ssm.update_document(Name='Tether-Hello', DocumentVersion='$LATEST', Content=json.dumps(theirs))",
            "ssm.update_document_default_version(Name='Tether-Hello', DocumentVersion='2')",
            "print('{}')",
        ]
        .join("\n"),
    );
    let again = coord.json(&[
        "send-command",
        "--instance-ids",
        &ids[2],
        "--document-name",
        "Tether-Hello",
    ]);
    let again_id = again["Command"]["CommandId"].as_str().unwrap().to_string();
    let inv = coord.wait_invocation(&again_id, &ids[2], Duration::from_secs(60));
    assert_eq!(inv["StatusDetails"], json!("Undeliverable"), "{inv}");
    let why = inv["StandardErrorContent"].as_str().unwrap();
    assert!(why.contains("with other content"), "{why}");
}
