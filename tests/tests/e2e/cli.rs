//! The operator CLI's contract: aws-style flags and outputs, exit statuses 255
//! (service error) and 2 (usage), nothing on stdout on error.

use serde_json::json;
use tether_tests::{Agent, Coordinator};

/// Refused invocations: (arguments, exit status, what stderr must contain).
/// Arguments are split at spaces; `$ME` is a registered instance, `$UNKNOWN`
/// an ID nothing has, `$MANY` 51 well-formed instance IDs (one over the limit).
#[rustfmt::skip]
const REFUSED: &[(&str, i32, &str)] = &[
    // Service errors: 255, the error code or the offending field named.
    ("get-command-invocation --command-id $UNKNOWN --instance-id $ME", 255, "(InvocationDoesNotExist)"),
    ("list-commands --command-id $UNKNOWN", 255, "(InvalidCommandId)"),
    ("send-command --instance-ids $ME --document-name AWS-RunShellScript --parameters executionTimeout=0,commands=true", 255, "executionTimeout"),
    ("send-command --instance-ids $ME --document-name AWS-RunShellScript --parameters executionTimeout=172801,commands=true", 255, "executionTimeout"),
    ("send-command --instance-ids $ME --document-name AWS-RunShellScript", 255, "(InvalidParameters)"),
    ("send-command --instance-ids $ME --document-name AWS-RunShellScript --parameters command=true", 255, "command"),
    ("send-command --instance-ids $ME --document-name No-Such-Doc --parameters commands=true", 255, "(InvalidDocument)"),
    ("send-command --instance-ids bogus --document-name AWS-RunShellScript --parameters commands=true", 255, "(ValidationException) when calling the SendCommand operation: 1 validation error detected: Value 'bogus' at 'instanceIds.1.member'"),
    ("send-command --instance-ids $ME --document-name AWS-RunShellScript --parameters commands=true --timeout-seconds 5", 255, "Value '5' at 'timeoutSeconds' failed to satisfy constraint: Member must have value greater than or equal to 30"),
    ("send-command --document-name AWS-RunShellScript --parameters commands=true --instance-ids $MANY", 255, "at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to 50"),
    ("create-activation --iam-role r --registration-limit 1001", 255, "Value '1001' at 'registrationLimit'"),
    ("create-activation --iam-role r --expiration-date 2020-01-01T00:00:00Z", 255, "ExpirationDate"),
    ("delete-activation --activation-id $UNKNOWN", 255, "(InvalidActivationId)"),
    // Usage errors: 2, the flag or verb named.
    ("send-command --instance-ids $ME", 2, "--document-name"),
    ("create-activation --iam-role r --registration-limit ten", 2, "--registration-limit"),
    ("no-such-verb", 2, "no-such-verb"),
];

#[test]
fn bad_requests_get_clear_errors_and_aws_exit_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let agent = Agent::start(tmp.path(), "a", &coord);
    let many: Vec<String> = (0..51).map(|i| format!("mi-{i:017x}")).collect();
    for &(invocation, code, needle) in REFUSED {
        let args: Vec<&str> = invocation
            .split(' ')
            .flat_map(|a| match a {
                "$ME" => vec![agent.instance_id.as_str()],
                "$UNKNOWN" => vec!["00000000-0000-4000-8000-000000000000"],
                "$MANY" => many.iter().map(String::as_str).collect(),
                a => vec![a],
            })
            .collect();
        let out = coord.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "tether {invocation}: {err}");
        assert!(
            out.stdout.is_empty(),
            "tether {invocation} printed on stdout"
        );
        assert!(
            err.contains(needle),
            "tether {invocation}: expected {needle:?} in {err}"
        );
    }
    // Nothing was stored by the refused requests.
    assert_eq!(coord.json(&["list-commands"])["Commands"], json!([]));
}

#[test]
fn shorthand_text_and_file_parameters_work_like_the_aws_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let agent = Agent::start(tmp.path(), "a", &coord);
    let me = agent.instance_id.as_str();
    // The tutorial's form, with --output text.
    let out = coord.cli(&[
        "send-command",
        "--instance-ids",
        me,
        "--document-name",
        "AWS-RunShellScript",
        "--comment",
        "IP config",
        "--parameters",
        "commands=uname",
        "--output",
        "text",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("COMMAND\t"), "{text}");
    let id = first
        .split('\t')
        .find(|f| f.len() == 36 && f.matches('-').count() == 4)
        .unwrap()
        .to_string();
    let inv = coord.wait_invocation(&id, me, std::time::Duration::from_secs(30));
    assert_eq!(inv["StandardOutputContent"], json!("Linux\n"));

    let file = tmp.path().join("params.json");
    std::fs::write(&file, r#"{"commands": ["echo from-file"]}"#).unwrap();
    let v = coord.json(&[
        "send-command",
        "--instance-ids",
        me,
        "--document-name",
        "AWS-RunShellScript",
        "--parameters",
        &format!("file://{}", file.display()),
    ]);
    let id = v["Command"]["CommandId"].as_str().unwrap();
    let inv = coord.wait_invocation(id, me, std::time::Duration::from_secs(30));
    assert_eq!(inv["StandardOutputContent"], json!("from-file\n"));

    let act = coord.cli(&[
        "create-activation",
        "--iam-role",
        "SSMServiceRole",
        "--tags",
        "Key=Env,Value=lab",
        "--output",
        "text",
    ]);
    let text = String::from_utf8_lossy(&act.stdout);
    assert!(
        text.contains("u='https://127.0.0.1:") && text.contains("install.sh\" --id '"),
        "{text}"
    );
    let table = coord.cli(&["describe-activations", "--output", "table"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("DescribeActivations"));
}
