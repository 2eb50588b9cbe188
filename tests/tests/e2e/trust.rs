//! Trust for teams (issue 14, first slice): users with IAM-style inline
//! policies, their own operator configs (tether CLI over gRPC) and their own
//! access keys (boto3 and the aws CLI over HTTPS), authorised at the one
//! door; and every credential's lifecycle refused at once.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::aws::AwsClient;
use tether_tests::{
    Agent, Coordinator, TestDatabase, stderr_of as stderr, success_json, tether_as as cli,
};

/// Alice may send only AWS-RunShellScript, only to instances tagged
/// Env=lab, and read; bob may only read.
const ALICE_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "RunShellOnly", "Effect": "Allow", "Action": "ssm:SendCommand",
     "Resource": "arn:aws:ssm:*:*:document/AWS-RunShellScript"},
    {"Sid": "LabNodesOnly", "Effect": "Allow", "Action": "ssm:SendCommand",
     "Resource": "arn:aws:ssm:*:*:managed-instance/*",
     "Condition": {"StringEquals": {"ssm:resourceTag/Env": "lab"}}},
    {"Sid": "Read", "Effect": "Allow",
     "Action": ["ssm:Describe*", "ssm:Get*", "ssm:List*"], "Resource": "*"}
  ]
}"#;

const BOB_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "ReadOnly", "Effect": "Allow",
     "Action": ["ssm:Describe*", "ssm:Get*", "ssm:List*"], "Resource": "*"}
  ]
}"#;

fn cli_json(config: &Path, args: &[&str]) -> Value {
    success_json(&format!("tether {args:?}"), &cli(config, args))
}

/// Asserts a CLI call was refused with AccessDeniedException (the aws CLI
/// v2's exit status for an error the service answered, 254) and returns
/// the message.
pub fn denied(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(254), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("(AccessDeniedException)"), "{err}");
    err
}

/// Asserts a CLI call was refused before reaching any action.
fn unauthenticated(out: &Output) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("AccessDenied"), "{err}");
    err
}

struct Team {
    coord: Coordinator,
    account: String,
    lab: Vec<Agent>,
    prod: Agent,
    alice: PathBuf,
    bob: PathBuf,
}

pub fn user(coord: &Coordinator, dir: &Path, name: &str, policy: &str) -> PathBuf {
    coord.json(&["create-user", "--user-name", name]);
    let out = coord.cli(&[
        "put-user-policy",
        "--user-name",
        name,
        "--policy-name",
        "team",
        "--policy-document",
        policy,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = coord.json(&[
        "create-operator-config",
        "--user-name",
        name,
        "--expires-in",
        "1d",
    ]);
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, config.to_string()).expect("write the user's operator.json");
    path
}

fn team(dir: &Path) -> Team {
    let coord = Coordinator::start(dir);
    let operator: Value = serde_json::from_str(
        &std::fs::read_to_string(coord.operator_json()).expect("operator.json"),
    )
    .expect("operator.json is JSON");
    let account = operator["AccountId"]
        .as_str()
        .expect("AccountId")
        .to_string();
    assert_eq!(account.len(), 12, "{operator}");
    assert!(account.bytes().all(|b| b.is_ascii_digit()), "{operator}");
    assert_eq!(operator["Region"], json!("us-east-1"));
    let tag = |a: &Agent, env: &str| {
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
    };
    let lab: Vec<Agent> = ["lab1", "lab2"]
        .iter()
        .map(|n| Agent::start(dir, n, &coord))
        .collect();
    let prod = Agent::start(dir, "prod1", &coord);
    for a in &lab {
        tag(a, "lab");
    }
    tag(&prod, "prod");
    let alice = user(&coord, dir, "alice", ALICE_POLICY);
    let bob = user(&coord, dir, "bob", BOB_POLICY);
    Team {
        coord,
        account,
        lab,
        prod,
        alice,
        bob,
    }
}

fn command_count(coord: &Coordinator) -> usize {
    coord.json(&["list-commands"])["Commands"]
        .as_array()
        .expect("Commands")
        .len()
}

/// A user's own access key, for the AWS clients.
fn key_of(coord: &Coordinator, user: &str) -> AwsClient {
    let mut c = AwsClient::issue(coord);
    // AwsClient::issue made a root key: replace it with the user's.
    let out = coord.cli(&["delete-access-key", "--access-key-id", &c.access_key_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = coord.json(&["create-access-key", "--user-name", user]);
    assert_eq!(key["AccessKey"]["UserName"], json!(user), "{key}");
    c.access_key_id = key["AccessKey"]["AccessKeyId"]
        .as_str()
        .expect("AccessKeyId")
        .into();
    c.secret_access_key = key["AccessKey"]["SecretAccessKey"]
        .as_str()
        .expect("SecretAccessKey")
        .into();
    c
}

/// The audit trail's events (LookupEvents, read as root) for one lookup
/// attribute, newest first, each with its CloudTrailEvent parsed.
fn audit_events(coord: &Coordinator, key: &str, value: &str) -> Vec<(Value, Value)> {
    let page = coord.json(&[
        "lookup-events",
        "--lookup-attributes",
        &format!("AttributeKey={key},AttributeValue={value}"),
    ]);
    page["Events"]
        .as_array()
        .unwrap_or_else(|| panic!("Events: {page}"))
        .iter()
        .map(|e| {
            let record: Value =
                serde_json::from_str(e["CloudTrailEvent"].as_str().expect("CloudTrailEvent"))
                    .expect("CloudTrailEvent is a JSON string");
            (e.clone(), record)
        })
        .collect()
}

/// The events named `name` among `events`.
fn named<'a>(events: &'a [(Value, Value)], name: &str) -> Vec<&'a (Value, Value)> {
    events
        .iter()
        .filter(|(e, _)| e["EventName"] == json!(name))
        .collect()
}

/// The audit mirror's lines (one JSON record each).
fn mirror(coord: &Coordinator) -> Vec<Value> {
    std::fs::read_to_string(coord.audit_log())
        .expect("the audit mirror")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a mirror line is JSON"))
        .collect()
}

#[test]
fn alice_sends_only_to_lab_bob_only_reads_through_the_tether_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let t = team(tmp.path());
    let (lab1, lab2, prod) = (
        t.lab[0].instance_id.as_str(),
        t.lab[1].instance_id.as_str(),
        t.prod.instance_id.as_str(),
    );
    let alice_arn = format!("arn:aws:iam::{}:user/alice", t.account);

    // Alice's send to lab nodes, by tag, runs; the command says who sent it.
    let sent = cli_json(
        &t.alice,
        &[
            "send-command",
            "--document-name",
            "AWS-RunShellScript",
            "--targets",
            "Key=tag:Env,Values=lab",
            "--parameters",
            "commands=echo from-alice",
        ],
    );
    assert_eq!(sent["Command"]["TargetCount"], json!(2), "{sent}");
    assert_eq!(sent["Command"]["RequestedBy"], json!(alice_arn), "{sent}");
    let command_id = sent["Command"]["CommandId"].as_str().unwrap();
    for id in [lab1, lab2] {
        let inv = t
            .coord
            .wait_invocation(command_id, id, Duration::from_secs(30));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
        assert_eq!(inv["StandardOutputContent"], json!("from-alice\n"), "{inv}");
        assert_eq!(inv["RequestedBy"], json!(alice_arn), "{inv}");
    }
    // The signed envelope names her too, and the node logs it.
    for node in &t.lab {
        assert!(
            node.log().lines().any(|l| l.contains("command accepted")
                && l.contains(command_id)
                && l.contains(&format!("requested_by={alice_arn}"))),
            "{}",
            node.log()
        );
    }
    let before = command_count(&t.coord);

    // A target that reaches one prod node is refused whole, naming it.
    let err = denied(&cli(
        &t.alice,
        &[
            "send-command",
            "--document-name",
            "AWS-RunShellScript",
            "--targets",
            "Key=tag:Env,Values=lab,prod",
            "--parameters",
            "commands=echo never",
        ],
    ));
    let want = format!(
        "User: {alice_arn} is not authorized to perform: ssm:SendCommand on resource: \
         arn:aws:ssm:us-east-1:{}:managed-instance/{prod} because no identity-based policy \
         allows the ssm:SendCommand action",
        t.account
    );
    assert!(err.contains(&want), "{err}\nwant: {want}");
    // Another document: refused on the document.
    let err = denied(&cli(
        &t.alice,
        &[
            "send-command",
            "--document-name",
            "AWS-RunPatchBaseline",
            "--instance-ids",
            lab1,
        ],
    ));
    assert!(err.contains(":document/AWS-RunPatchBaseline "), "{err}");
    // Bob reads, and may not send.
    let listed = cli_json(&t.bob, &["list-commands"]);
    assert_eq!(listed["Commands"].as_array().unwrap().len(), before);
    let err = denied(&cli(
        &t.bob,
        &[
            "send-command",
            "--document-name",
            "AWS-RunShellScript",
            "--instance-ids",
            lab1,
            "--parameters",
            "commands=echo never",
        ],
    ));
    assert!(
        err.contains(&format!(
            "User: arn:aws:iam::{}:user/bob is not authorized",
            t.account
        )),
        "{err}"
    );
    // Nothing was sent by any refused call.
    assert_eq!(command_count(&t.coord), before);
    // Neither may manage users (IAM's action names).
    let err = denied(&cli(&t.bob, &["create-user", "--user-name", "mallory"]));
    assert!(
        err.contains("iam:CreateUser on resource: arn:aws:iam::"),
        "{err}"
    );
    let err = denied(&cli(
        &t.alice,
        &["create-operator-config", "--user-name", "bob"],
    ));
    assert!(err.contains("tether:CreateOperatorConfig"), "{err}");

    // What-if, without doing it.
    let sim = t.coord.json(&[
        "simulate-principal-policy",
        "--policy-source-arn",
        &alice_arn,
        "--action-names",
        "ssm:SendCommand",
        "--resource-arns",
        &format!(
            "arn:aws:ssm:us-east-1:{}:managed-instance/{lab1}",
            t.account
        ),
        &format!(
            "arn:aws:ssm:us-east-1:{}:managed-instance/{prod}",
            t.account
        ),
    ]);
    let decisions: Vec<&str> = sim["EvaluationResults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["EvalDecision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["allowed", "implicitDeny"], "{sim}");
    assert_eq!(
        sim["EvaluationResults"][0]["MatchedStatements"][0]["SourcePolicyId"],
        json!("team"),
        "{sim}"
    );

    // The audit trail: alice's three sends — one allowed, with the command
    // it created, two refused — and bob's refused one, with who, how and
    // the outcome; each also a line of the mirror.
    let alice_events = audit_events(&t.coord, "Username", "alice");
    let sends = named(&alice_events, "SendCommand");
    assert_eq!(sends.len(), 3, "{alice_events:?}");
    let allowed: Vec<_> = sends
        .iter()
        .filter(|(_, r)| r.get("errorCode").is_none())
        .collect();
    assert_eq!(allowed.len(), 1, "{sends:?}");
    let (event, record) = allowed[0];
    assert_eq!(
        record["responseElements"]["CommandId"],
        json!(command_id),
        "{record}"
    );
    assert_eq!(record["userIdentity"]["arn"], json!(alice_arn), "{record}");
    assert_eq!(record["userIdentity"]["type"], json!("IAMUser"), "{record}");
    assert_eq!(
        record["eventSource"],
        json!("ssm.amazonaws.com"),
        "{record}"
    );
    assert_eq!(
        record["requestParameters"]["DocumentName"],
        json!("AWS-RunShellScript")
    );
    assert_eq!(
        record["additionalEventData"]["tether"]["transport"],
        json!("grpc")
    );
    assert_eq!(record["sourceIPAddress"], json!("127.0.0.1"), "{record}");
    assert_eq!(event["ReadOnly"], json!("false"));
    assert_eq!(event["Username"], json!("alice"));
    let token_id = event["AccessKeyId"].as_str().expect("the token's ID");
    assert!(token_id.starts_with("ot-"), "{event}");
    let refused: Vec<_> = sends
        .iter()
        .filter(|(_, r)| r["errorCode"] == json!("AccessDeniedException"))
        .collect();
    assert_eq!(refused.len(), 2, "{sends:?}");
    assert!(
        refused.iter().any(|(_, r)| r["errorMessage"]
            .as_str()
            .unwrap()
            .contains(&format!("managed-instance/{prod}"))),
        "{refused:?}"
    );
    let bob_events = audit_events(&t.coord, "Username", "bob");
    let bob_sends = named(&bob_events, "SendCommand");
    assert_eq!(bob_sends.len(), 1, "{bob_events:?}");
    assert_eq!(bob_sends[0].1["errorCode"], json!("AccessDeniedException"));
    // Bob's allowed read is recorded too (in the background, within a second or so).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while named(&audit_events(&t.coord, "Username", "bob"), "ListCommands").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "bob's list-commands is not in the trail"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = mirror(&t.coord);
    for (e, _) in sends.iter().copied().chain(bob_sends.iter().copied()) {
        let line = lines
            .iter()
            .find(|l| l["eventID"] == e["EventId"])
            .unwrap_or_else(|| panic!("{e} is not in the mirror"));
        assert_eq!(line["eventName"], json!("SendCommand"));
    }
    t.coord.json(&["verify-audit-trail"]);
}

#[test]
fn alice_and_bob_through_boto3_with_their_own_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let t = team(tmp.path());
    let alice = key_of(&t.coord, "alice");
    let bob = key_of(&t.coord, "bob");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/trust_boto3.py");
    let out = alice
        .command("python3")
        .arg(script)
        .args([&t.lab[0].instance_id, &t.prod.instance_id])
        .env("SSM_ENDPOINT", &alice.endpoint)
        .env("ALICE_KEY", &alice.access_key_id)
        .env("ALICE_SECRET", &alice.secret_access_key)
        .env("BOB_KEY", &bob.access_key_id)
        .env("BOB_SECRET", &bob.secret_access_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"checked\": \"ok\""));
    // The aws CLI too: HTTP 400 AccessDeniedException.
    let out = bob.aws(&[
        "send-command",
        "--document-name",
        "AWS-RunShellScript",
        "--instance-ids",
        &t.lab[0].instance_id,
        "--parameters",
        "commands=echo never",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("(AccessDeniedException)"),
        "{}",
        stderr(&out)
    );
    // In the audit trail by access key: bob's refused sends over HTTPS,
    // alice's allowed one; in the mirror too.
    let bob_sends = audit_events(&t.coord, "AccessKeyId", &bob.access_key_id);
    let bob_sends = named(&bob_sends, "SendCommand");
    assert!(
        bob_sends.len() >= 2,
        "boto3's and the aws CLI's: {bob_sends:?}"
    );
    for (e, r) in &bob_sends {
        assert_eq!(r["errorCode"], json!("AccessDeniedException"), "{r}");
        assert_eq!(
            r["additionalEventData"]["tether"]["transport"],
            json!("https")
        );
        assert_eq!(e["Username"], json!("bob"));
    }
    let alice_events = audit_events(&t.coord, "AccessKeyId", &alice.access_key_id);
    let alice_sends = named(&alice_events, "SendCommand");
    assert!(
        alice_sends
            .iter()
            .any(|(_, r)| r.get("errorCode").is_none()
                && r["responseElements"]["CommandId"].is_string()),
        "{alice_sends:?}"
    );
    assert!(
        alice_sends
            .iter()
            .any(|(_, r)| r["errorCode"] == json!("AccessDeniedException")),
        "{alice_sends:?}"
    );
    let lines = mirror(&t.coord);
    for (e, _) in alice_sends.iter().chain(bob_sends.iter()) {
        assert!(
            lines.iter().any(|l| l["eventID"] == e["EventId"]),
            "{e} is not in the mirror"
        );
    }
}

#[test]
fn inactive_keys_expired_or_revoked_tokens_and_deleted_users_are_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let t = team(tmp.path());
    let c = &t.coord;
    let bob = key_of(c, "bob");
    assert!(bob.aws(&["list-commands"]).status.success());

    // Inactive: refused on the next call; Active again: accepted.
    let id = bob.access_key_id.as_str();
    c.json(&[
        "update-access-key",
        "--user-name",
        "bob",
        "--access-key-id",
        id,
        "--status",
        "Inactive",
    ]);
    let out = bob.aws(&["list-commands"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is Inactive"), "{}", stderr(&out));
    let listed = c.json(&["list-access-keys", "--user-name", "bob"]);
    assert_eq!(
        listed["AccessKeyMetadata"][0]["Status"],
        json!("Inactive"),
        "{listed}"
    );
    c.json(&[
        "update-access-key",
        "--user-name",
        "bob",
        "--access-key-id",
        id,
        "--status",
        "Active",
    ]);
    assert!(bob.aws(&["list-commands"]).status.success());
    let used = c.json(&["get-access-key-last-used", "--access-key-id", id]);
    assert_eq!(used["UserName"], json!("bob"), "{used}");
    assert!(
        used["AccessKeyLastUsed"]["LastUsedDate"].is_string(),
        "{used}"
    );

    // A key with an expiry: refused once it passes.
    // (Long enough for a loaded machine to start the aws CLI once before.)
    let issued = std::time::Instant::now();
    let short = c.json(&[
        "create-access-key",
        "--user-name",
        "bob",
        "--expires-in",
        "12s",
    ]);
    let mut short_client = bob.clone();
    short_client.access_key_id = short["AccessKey"]["AccessKeyId"].as_str().unwrap().into();
    short_client.secret_access_key = short["AccessKey"]["SecretAccessKey"]
        .as_str()
        .unwrap()
        .into();
    assert!(short_client.aws(&["list-commands"]).status.success());
    std::thread::sleep(
        (issued + Duration::from_millis(12_200))
            .saturating_duration_since(std::time::Instant::now()),
    );
    let out = short_client.aws(&["list-commands"]);
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));

    // An operator token with an expiry, and a revoked one.
    let issued = std::time::Instant::now();
    let brief = c.json(&[
        "create-operator-config",
        "--user-name",
        "bob",
        "--expires-in",
        "6s",
    ]);
    let brief_path = tmp.path().join("bob-brief.json");
    std::fs::write(&brief_path, brief.to_string()).unwrap();
    assert!(cli(&brief_path, &["list-commands"]).status.success());
    std::thread::sleep(
        (issued + Duration::from_millis(6_200))
            .saturating_duration_since(std::time::Instant::now()),
    );
    let err = unauthenticated(&cli(&brief_path, &["list-commands"]));
    assert!(err.contains("has expired"), "{err}");
    let still = cli_json(&t.alice, &["list-commands"]); // alice's own token still works
    assert!(still["Commands"].is_array());
    let tokens = c.json(&["list-operator-tokens", "--user-name", "alice"]);
    let alice_token = tokens["OperatorTokens"][0]["TokenId"]
        .as_str()
        .unwrap()
        .to_string();
    c.json(&["delete-operator-token", "--token-id", &alice_token]);
    unauthenticated(&cli(&t.alice, &["list-commands"]));

    // A malformed policy is refused naming the statement and the field.
    let out = c.cli(&[
        "put-user-policy",
        "--user-name",
        "bob",
        "--policy-name",
        "bad",
        "--policy-document",
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"Typo","Effect":"Allow","Action":"ssm:SendComand","Resource":"*"}]}"#,
    ]);
    let err = stderr(&out);
    assert!(err.contains("(MalformedPolicyDocument)"), "{err}");
    assert!(err.contains("Typo") && err.contains("Action"), "{err}");
    assert!(
        err.contains("ssm:SendCommand"),
        "a close name is suggested: {err}"
    );

    // Deleting a user: refused while keys or policies remain (as IAM);
    // once deleted, its operator tokens are refused at once.
    let out = c.cli(&["delete-user", "--user-name", "bob"]);
    assert!(
        stderr(&out).contains("(DeleteConflict)"),
        "{}",
        stderr(&out)
    );
    assert!(cli(&t.bob, &["list-commands"]).status.success());
    for k in c.json(&["list-access-keys", "--user-name", "bob"])["AccessKeyMetadata"]
        .as_array()
        .unwrap()
    {
        let id = k["AccessKeyId"].as_str().unwrap();
        c.json(&[
            "delete-access-key",
            "--user-name",
            "bob",
            "--access-key-id",
            id,
        ]);
    }
    assert!(!bob.aws(&["list-commands"]).status.success());
    c.json(&[
        "delete-user-policy",
        "--user-name",
        "bob",
        "--policy-name",
        "team",
    ]);
    c.json(&["delete-user", "--user-name", "bob"]);
    unauthenticated(&cli(&t.bob, &["list-commands"]));
    let users = c.json(&["list-users"]);
    let names: Vec<&str> = users["Users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["UserName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice"], "{users}");
    // Root is untouched by all of it.
    assert!(c.cli(&["list-commands"]).status.success());
}

/// Two replicas on one PostgreSQL database: a credential changed through one
/// is refused by the other on its very next request (each request reads the
/// user, its credential and its policies from the database), and both name
/// the same account in ARNs.
#[test]
fn a_change_through_one_replica_is_refused_at_once_by_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let db = TestDatabase::postgres();
    let secrets = tmp.path().join("secrets");
    let env = [
        ("TETHER_DATABASE", db.url.as_str()),
        ("TETHER_SECRETS_DIR", secrets.to_str().unwrap()),
    ];
    let [a, b] = ["a", "b"].map(|n| {
        let dir = tmp.path().join(n);
        std::fs::create_dir_all(&dir).unwrap();
        Coordinator::start_with_env(&dir, &env)
    });
    let operator = |c: &Coordinator| -> Value {
        serde_json::from_str(&std::fs::read_to_string(c.operator_json()).unwrap()).unwrap()
    };
    assert_eq!(operator(&a)["AccountId"], operator(&b)["AccountId"]);

    // Carol, through replica a; her token and key, used on replica b.
    a.json(&["create-user", "--user-name", "carol"]);
    let out = a.cli(&[
        "put-user-policy",
        "--user-name",
        "carol",
        "--policy-name",
        "read",
        "--policy-document",
        BOB_POLICY,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut config = a.json(&["create-operator-config", "--user-name", "carol"]);
    config["Endpoint"] = operator(&b)["Endpoint"].clone();
    let carol = tmp.path().join("carol.json");
    std::fs::write(&carol, config.to_string()).unwrap();
    let key = key_of(&b, "carol");
    assert!(cli(&carol, &["list-commands"]).status.success());
    assert!(key.aws(&["list-commands"]).status.success());

    // Her policy removed on a: b denies her next read.
    a.json(&[
        "delete-user-policy",
        "--user-name",
        "carol",
        "--policy-name",
        "read",
    ]);
    denied(&cli(&carol, &["list-commands"]));
    // Her key made Inactive on a: b refuses it.
    let id = key.access_key_id.as_str();
    a.json(&[
        "update-access-key",
        "--user-name",
        "carol",
        "--access-key-id",
        id,
        "--status",
        "Inactive",
    ]);
    let out = key.aws(&["list-commands"]);
    assert!(stderr(&out).contains("is Inactive"), "{}", stderr(&out));
    // Her key deleted and then the user on a: b refuses her token.
    a.json(&[
        "delete-access-key",
        "--user-name",
        "carol",
        "--access-key-id",
        id,
    ]);
    a.json(&["delete-user", "--user-name", "carol"]);
    let err = unauthenticated(&cli(&carol, &["list-commands"]));
    assert!(err.contains("not valid"), "{err}");
}
