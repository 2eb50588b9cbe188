//! Trust for teams (issue 14): associations authorised like SendCommand —
//! their document and every instance their targets reach, nothing stored on
//! a refusal — and run for the principal that created or last updated them;
//! the resources each other operation is checked on, as IAM's Service
//! Authorization Reference gives them (GetCommandInvocation on `*`, the
//! association operations on the association).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::{
    Agent, Coordinator, stderr_of as stderr, success_json, tether_as as cli, wait_for,
};

/// Carol may associate AWS-RunShellScript with lab instances only, and read
/// associations and command invocations — the latter by a statement scoped
/// to instances, which IAM never matches for GetCommandInvocation.
const CAROL_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Doc", "Effect": "Allow",
     "Action": ["ssm:CreateAssociation", "ssm:UpdateAssociation"],
     "Resource": "arn:aws:ssm:*:*:document/AWS-RunShellScript"},
    {"Sid": "Lab", "Effect": "Allow",
     "Action": ["ssm:CreateAssociation", "ssm:UpdateAssociation"],
     "Resource": "arn:aws:ssm:*:*:managed-instance/*",
     "Condition": {"StringEquals": {"ssm:resourceTag/Env": "lab"}}},
    {"Sid": "Mine", "Effect": "Allow",
     "Action": ["ssm:UpdateAssociation", "ssm:DescribeAssociation"],
     "Resource": "arn:aws:ssm:*:*:association/*"},
    {"Sid": "InvocationsByInstance", "Effect": "Allow",
     "Action": "ssm:GetCommandInvocation",
     "Resource": "arn:aws:ssm:*:*:managed-instance/*"},
    {"Sid": "List", "Effect": "Allow",
     "Action": ["ssm:ListAssociations", "ssm:ListCommands"], "Resource": "*"}
  ]
}"#;

/// A refusal with AccessDeniedException; its message.
fn denied(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(254), "{err}");
    assert!(err.contains("(AccessDeniedException)"), "{err}");
    err
}

fn user(coord: &Coordinator, dir: &Path, name: &str, policy: &str) -> PathBuf {
    coord.json(&["create-user", "--user-name", name]);
    let out = coord.cli(&[
        "put-user-policy",
        "--user-name",
        name,
        "--policy-name",
        "p",
        "--policy-document",
        policy,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = dir.join(format!("{name}.json"));
    std::fs::write(
        &path,
        coord
            .json(&["create-operator-config", "--user-name", name])
            .to_string(),
    )
    .expect("write the user's operator.json");
    path
}

fn tag(coord: &Coordinator, a: &Agent, env: &str) {
    let out = coord.cli(&[
        "add-tags-to-resource",
        "--resource-type",
        "ManagedInstance",
        "--resource-id",
        &a.instance_id,
        "--tags",
        &format!("Key=Env,Value={env}"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn association_count(coord: &Coordinator) -> usize {
    coord.json(&["list-associations"])["Associations"]
        .as_array()
        .expect("Associations")
        .len()
}

#[test]
fn associations_are_authorised_on_every_instance_and_run_for_their_author() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let coord = Coordinator::start(dir);
    let account = coord.operator()["AccountId"].as_str().unwrap().to_string();
    let lab = Agent::start(dir, "lab", &coord);
    let prod = Agent::start(dir, "prod", &coord);
    tag(&coord, &lab, "lab");
    tag(&coord, &prod, "prod");
    let carol = user(&coord, dir, "carol", CAROL_POLICY);
    let carol_arn = format!("arn:aws:iam::{account}:user/carol");
    let prod_arn = format!(
        "arn:aws:ssm:us-east-1:{account}:managed-instance/{}",
        prod.instance_id
    );

    // To the lab nodes by tag: allowed, and its runs carry her ARN, signed.
    let marker = dir.join("by-carol");
    let created = success_json(
        "create-association",
        &cli(
            &carol,
            &[
                "create-association",
                "--name",
                "AWS-RunShellScript",
                "--targets",
                "Key=tag:Env,Values=lab",
                "--parameters",
                &format!("commands=touch {}", marker.display()),
            ],
        ),
    );
    let id = created["AssociationDescription"]["AssociationId"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(
        "carol's association to run on lab",
        Duration::from_secs(30),
        || (marker.exists() && lab.logged("association run starting", &id)).then_some(()),
    );
    assert!(
        lab.log()
            .lines()
            .any(|l| l.contains("association run starting")
                && l.contains(&id)
                && l.contains(&carol_arn)),
        "{}",
        lab.log()
    );

    // A target that reaches prod is refused whole, naming prod; nothing stored.
    let targets = format!(
        "Key=InstanceIds,Values={},{}",
        lab.instance_id, prod.instance_id
    );
    let err = denied(&cli(
        &carol,
        &[
            "create-association",
            "--name",
            "AWS-RunShellScript",
            "--targets",
            &targets,
            "--parameters",
            "commands=true",
        ],
    ));
    assert!(
        err.contains(&format!(
            "User: {carol_arn} is not authorized to perform: ssm:CreateAssociation on resource: {prod_arn}"
        )),
        "{err}"
    );
    // Another document: refused at the door, on the document.
    let err = denied(&cli(
        &carol,
        &[
            "create-association",
            "--name",
            "AWS-RunPowerShellScript",
            "--targets",
            "Key=tag:Env,Values=lab",
            "--parameters",
            "commands=true",
        ],
    ));
    assert!(err.contains(":document/AWS-RunPowerShellScript"), "{err}");
    assert_eq!(association_count(&coord), 1);

    // Updating hers to reach prod is refused; the association is unchanged.
    let err = denied(&cli(
        &carol,
        &[
            "update-association",
            "--association-id",
            &id,
            "--targets",
            "Key=tag:Env,Values=prod",
        ],
    ));
    assert!(
        err.contains(&prod_arn) && err.contains("ssm:UpdateAssociation"),
        "{err}"
    );
    let now = coord.json(&["describe-association", "--association-id", &id]);
    assert_eq!(
        now["AssociationDescription"]["AssociationVersion"],
        json!("1"),
        "{now}"
    );
    assert_eq!(
        now["AssociationDescription"]["Targets"],
        json!([{"Key": "tag:Env", "Values": ["lab"]}]),
        "{now}"
    );
    // An update within her rights goes through.
    let v2 = success_json(
        "update-association",
        &cli(
            &carol,
            &[
                "update-association",
                "--association-id",
                &id,
                "--parameters",
                "commands=true",
            ],
        ),
    );
    assert_eq!(
        v2["AssociationDescription"]["AssociationVersion"],
        json!("2"),
        "{v2}"
    );

    // Root updates it: its runs now act for root.
    coord.json(&[
        "update-association",
        "--association-id",
        &id,
        "--parameters",
        "commands=echo root",
    ]);
    let root_arn = format!("arn:aws:iam::{account}:root");
    wait_for("the root's version to run", Duration::from_secs(30), || {
        lab.log()
            .lines()
            .any(|l| {
                l.contains("association run starting") && l.contains(&id) && l.contains(&root_arn)
            })
            .then_some(())
    });

    // DescribeAssociation is checked on the association: a user allowed
    // only another association's ARN is refused this one.
    let other = coord.json(&[
        "create-association",
        "--name",
        "AWS-RunShellScript",
        "--targets",
        "Key=tag:Env,Values=none",
        "--parameters",
        "commands=true",
    ])["AssociationDescription"]["AssociationId"]
        .as_str()
        .unwrap()
        .to_string();
    let dora = user(
        &coord,
        dir,
        "dora",
        &format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"ssm:DescribeAssociation","Resource":"arn:aws:ssm:us-east-1:{account}:association/{other}"}}]}}"#
        ),
    );
    assert!(
        cli(&dora, &["describe-association", "--association-id", &other])
            .status
            .success()
    );
    let err = denied(&cli(
        &dora,
        &["describe-association", "--association-id", &id],
    ));
    assert!(
        err.contains(&format!(
            "on resource: arn:aws:ssm:us-east-1:{account}:association/{id}"
        )),
        "{err}"
    );
    assert!(
        cli(&carol, &["describe-association", "--association-id", &id])
            .status
            .success()
    );
}

/// GetCommandInvocation has no resource type in IAM: it is checked on `*`,
/// so a statement scoped to instances does not allow it (as in AWS), and
/// `"Resource": "*"` does.
#[test]
fn get_command_invocation_is_checked_on_everything_as_in_iam() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let coord = Coordinator::start(dir);
    let node = Agent::start(dir, "node", &coord);
    let carol = user(&coord, dir, "carol", CAROL_POLICY);
    let id = coord.send(&[&node.instance_id], &json!({"commands": ["echo hi"]}));
    coord.wait_invocation(&id, &node.instance_id, Duration::from_secs(30));
    let args = [
        "get-command-invocation",
        "--command-id",
        &id,
        "--instance-id",
        &node.instance_id,
    ];
    let err = denied(&cli(&carol, &args));
    assert!(
        err.contains("is not authorized to perform: ssm:GetCommandInvocation on resource: *"),
        "{err}"
    );
    let reader = user(
        &coord,
        dir,
        "reader",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:GetCommandInvocation","Resource":"*"}]}"#,
    );
    let inv: Value = success_json("get-command-invocation", &cli(&reader, &args));
    assert_eq!(inv["Status"], json!("Success"), "{inv}");
}

/// A refusal exits as the aws CLI v2 exits for it: 254, the status of every
/// error a service answers (awscli's `ClientErrorHandler`, `CLIENT_ERROR_RC`)
/// — not 255, its status for anything else — with the same bytes on stderr,
/// whether the tether CLI carried the request or `/usr/bin/aws` over HTTPS.
#[test]
fn an_access_denied_exits_254_as_the_aws_cli_v2_does() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let coord = Coordinator::start(dir);
    let node = Agent::start(dir, "node", &coord);
    let reader = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:Describe*","ssm:Get*","ssm:List*"],"Resource":"*"}]}"#;
    let bob = user(&coord, dir, "bob", reader);
    let mut key = tether_tests::aws::AwsClient::issue(&coord);
    let out = coord.cli(&["delete-access-key", "--access-key-id", &key.access_key_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let issued = coord.json(&["create-access-key", "--user-name", "bob"]);
    key.access_key_id = issued["AccessKey"]["AccessKeyId"].as_str().unwrap().into();
    key.secret_access_key = issued["AccessKey"]["SecretAccessKey"]
        .as_str()
        .unwrap()
        .into();
    let args = [
        "send-command",
        "--document-name",
        "AWS-RunShellScript",
        "--instance-ids",
        &node.instance_id,
        "--parameters",
        "commands=echo never",
    ];
    let v2 = key.aws_v2(&args);
    let ours = cli(&bob, &args);
    assert_eq!(v2.status.code(), Some(254), "{}", stderr(&v2));
    assert_eq!(ours.status.code(), Some(254), "{}", stderr(&ours));
    assert!(v2.stdout.is_empty() && ours.stdout.is_empty());
    assert!(
        stderr(&v2).contains(
            "(AccessDeniedException) when calling the SendCommand operation: User: arn:aws:iam::"
        ),
        "{}",
        stderr(&v2)
    );
    assert_eq!(stderr(&ours), stderr(&v2));
}
