//! The operator CLI's contract: aws-style flags and outputs, the aws CLI
//! v2's exit statuses (254 service error, 252 bad parameters or syntax, 255
//! anything else) and its error text, nothing on stdout on error; and the
//! same bytes as the real aws CLI v2 for the invocations scripts use.

use serde_json::json;
use tether_tests::{Agent, Coordinator};

/// Refused invocations: (arguments, exit status, what stderr must contain).
/// Arguments are split at spaces; `$ME` is a registered instance, `$UNKNOWN`
/// an ID nothing has, `$MANY` 51 well-formed instance IDs (one over the limit).
#[rustfmt::skip]
const REFUSED: &[(&str, i32, &str)] = &[
    // Service errors: 254, the error code or the offending field named.
    ("get-command-invocation --command-id $UNKNOWN --instance-id $ME", 254, "(InvocationDoesNotExist)"),
    ("list-commands --command-id $UNKNOWN", 254, "(InvalidCommandId)"),
    ("send-command --instance-ids $ME --document-name AWS-RunShellScript --parameters executionTimeout=0,commands=true", 254, "executionTimeout"),
    ("send-command --instance-ids $ME --document-name AWS-RunShellScript --parameters executionTimeout=172801,commands=true", 254, "executionTimeout"),
    ("send-command --instance-ids $ME --document-name AWS-RunShellScript", 254, "(InvalidParameters)"),
    ("send-command --instance-ids $ME --document-name AWS-RunShellScript --parameters command=true", 254, "command"),
    ("send-command --instance-ids $ME --document-name No-Such-Doc --parameters commands=true", 254, "(InvalidDocument)"),
    ("send-command --instance-ids bogus --document-name AWS-RunShellScript --parameters commands=true", 254, "(ValidationException) when calling the SendCommand operation: 1 validation error detected: Value 'bogus' at 'instanceIds.1.member'"),
    ("send-command --document-name AWS-RunShellScript --parameters commands=true --instance-ids $MANY", 254, "at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to 50"),
    ("create-activation --iam-role r --registration-limit 1001", 254, "Value '1001' at 'registrationLimit'"),
    ("create-activation --iam-role r --expiration-date 2020-01-01T00:00:00Z", 254, "ExpirationDate"),
    ("delete-activation --activation-id $UNKNOWN", 254, "(InvalidActivationId)"),
    // botocore's checks before sending: 252, its words.
    ("send-command --instance-ids $ME --document-name AWS-RunShellScript --parameters commands=true --timeout-seconds 5", 252, "\nParameter validation failed:\nInvalid value for parameter TimeoutSeconds, value: 5, valid min value: 30\n"),
    ("list-commands --command-id x --max-results 0", 252, "Parameter validation failed:\nInvalid length for parameter CommandId, value: 1, valid min length: 36\nInvalid value for parameter MaxResults, value: 0, valid min value: 1\n"),
    ("create-activation --iam-role r --expiration-date soon", 252, "Invalid type for parameter ExpirationDate, value: soon, type: <class 'str'>, valid types: <class 'datetime.datetime'>, timestamp-string"),
    // Syntax: 252, argparse's words after the usage.
    ("send-command --instance-ids $ME", 252, "tether: error: the following arguments are required: --document-name\n\n"),
    ("send-command --document x", 252, "tether: error: ambiguous option: --document could match --document-name, --document-version, --document-hash, --document-hash-type"),
    ("list-commands --bogus x", 252, "\nUnknown options: --bogus, x\n"),
    ("list-commands --output yaml", 252, "argument --output: Invalid choice, valid choices are:"),
    ("list-commands --query Commands[", 252, "Bad value for --query Commands["),
    ("no-such-verb", 252, "argument command: Invalid choice"),
    ("send-comand", 252, "Invalid choice: 'send-comand', maybe you meant:\n\n  * send-command"),
    // Python's int() failing inside the aws CLI: its general error, 255.
    ("create-activation --iam-role r --registration-limit ten", 255, "\ninvalid literal for int() with base 10: 'ten'\n"),
    ("wait command-executed --command-id zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz --instance-id $ME", 255, "\nWaiter CommandExecuted failed: An error occurred (InvalidCommandId): "),
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
        assert!(
            err.starts_with('\n'),
            "tether {invocation}: a blank line first: {err:?}"
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

/// How a row's outputs must agree.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Same {
    /// stdout, stderr and the exit status, byte for byte.
    Bytes,
    /// The same once Tether's documented extra members
    /// (`ssm/model/tether-operations.json`, `extraMembers`) are taken out of
    /// its JSON: the aws CLI drops members its model does not have.
    ModuloExtras,
    /// An argparse refusal: the same exit status and error line; the usage
    /// above it names the program (`aws` or `tether`).
    ModuloProgram,
}

/// Invocations from the tutorial and from runbooks, run through both the
/// aws CLI v2 (against the HTTPS API) and `tether` (over gRPC) against one
/// coordinator. `$A`/`$B` are the two nodes, `$CMD` a command sent to both,
/// `$UNKNOWN` a command ID nothing has.
#[rustfmt::skip]
const BOTH: &[(&str, Same)] = &[
    // The fleet.
    ("describe-instance-information", Same::Bytes),
    ("describe-instance-information --output text", Same::Bytes),
    ("describe-instance-information --output table", Same::Bytes),
    ("describe-instance-information --query InstanceInformationList[?PingStatus=='Online'].InstanceId --output text", Same::Bytes),
    ("describe-instance-information --filters Key=tag:Env,Values=lab --query InstanceInformationList[].InstanceId", Same::Bytes),
    ("describe-instance-information --instance-information-filter-list key=PingStatus,valueSet=Online --query length(InstanceInformationList)", Same::Bytes),
    ("describe-instance-information --query InstanceInformationList[].{Id:InstanceId,Name:Name,Ping:PingStatus} --output table", Same::Bytes),
    ("describe-instance-information --query InstanceInformationList[0].InstanceId", Same::Bytes),
    // Paging.
    ("describe-instance-information --max-items 1", Same::Bytes),
    ("describe-instance-information --max-items 1 --output text", Same::Bytes),
    ("describe-instance-information --page-size 1 --query InstanceInformationList[].InstanceId --output text", Same::Bytes),
    ("list-commands --max-items 1 --query Commands[].CommandId", Same::Bytes),
    // Text output applies the query to each page: two lines, one per page.
    ("list-commands --page-size 1 --query Commands[].CommandId --output text", Same::Bytes),
    // Run Command.
    ("list-commands", Same::ModuloExtras),
    ("list-commands --query Commands[].[CommandId,Status,DocumentName,DocumentVersion] --output text", Same::Bytes),
    ("list-commands --command-id $CMD --query Commands[0].{S:Status,T:TargetCount,C:CompletedCount}", Same::Bytes),
    ("list-command-invocations --command-id $CMD --details", Same::ModuloExtras),
    ("list-command-invocations --command-id $CMD --details --query CommandInvocations[].CommandPlugins[].[Name,Status,Output] --output text", Same::Bytes),
    ("list-command-invocations --instance-id $A --filters key=Status,value=Success --query CommandInvocations[].CommandId --output text", Same::Bytes),
    ("get-command-invocation --command-id $CMD --instance-id $A", Same::ModuloExtras),
    ("get-command-invocation --command-id $CMD --instance-id $A --query StandardOutputContent --output text", Same::Bytes),
    ("get-command-invocation --command-id $CMD --instance-id $A --plugin-name aws:runShellScript --query [Status,ResponseCode,PluginName,DocumentVersion] --output text", Same::Bytes),
    ("wait command-executed --command-id $CMD --instance-id $B", Same::Bytes),
    // Documents, tags, activations.
    ("list-documents --filters Key=Owner,Values=Self", Same::Bytes),
    ("list-documents --query DocumentIdentifiers[?Owner=='Amazon'].Name --output text", Same::Bytes),
    ("describe-document --name AWS-RunShellScript --query Document.[Name,Status,SchemaVersion,DocumentVersion] --output text", Same::Bytes),
    ("get-document --name Tether-Hello --query Content --output text", Same::Bytes),
    ("list-tags-for-resource --resource-type ManagedInstance --resource-id $A", Same::Bytes),
    ("list-tags-for-resource --resource-type ManagedInstance --resource-id $A --output table", Same::Bytes),
    ("describe-activations --query ActivationList[].[DefaultInstanceName,RegistrationsCount,RegistrationLimit] --output text", Same::Bytes),
    // Skeletons.
    ("send-command --generate-cli-skeleton", Same::Bytes),
    ("get-command-invocation --generate-cli-skeleton yaml-input", Same::Bytes),
    // Refusals.
    ("list-commands --max-results 0", Same::Bytes),
    ("list-commands --command-id $UNKNOWN", Same::Bytes),
    ("get-command-invocation --command-id $UNKNOWN --instance-id $A", Same::Bytes),
    ("send-command --document-name AWS-RunShellScript --instance-ids bogus --parameters commands=true", Same::Bytes),
    ("send-command --document-name AWS-RunShellScript --instance-ids $A --parameters commands=true --timeout-seconds 5", Same::Bytes),
    ("create-activation --iam-role r --expiration-date soon", Same::Bytes),
    ("send-command --instance-ids $A", Same::ModuloProgram),
    ("send-command --document x", Same::ModuloProgram),
    ("list-commands --bogus x", Same::ModuloProgram),
    ("list-commands --color bogus", Same::ModuloProgram),
];

/// `text` without the lines of Tether's extra members (they close their
/// objects, so the line before loses its comma).
fn without_extras(text: &str) -> String {
    let extras: Vec<String> = tether_ssm::model::model()
        .all_extra_members()
        .into_iter()
        .map(|(_, m)| format!("\"{m}\": "))
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut dropped = false;
    for line in text.lines() {
        if extras
            .iter()
            .any(|e| line.trim_start().starts_with(e.as_str()))
        {
            dropped = true;
            continue;
        }
        if dropped
            && line.trim_start().starts_with('}')
            && let Some(last) = out.last_mut()
            && let Some(stripped) = last.strip_suffix(',')
        {
            *last = stripped.to_owned();
        }
        dropped = false;
        out.push(line.to_owned());
    }
    let mut joined = out.join("\n");
    if text.ends_with('\n') {
        joined.push('\n');
    }
    joined
}

/// An argparse refusal's text after the usage lines.
fn after_usage(stderr: &str) -> String {
    stderr
        .split_once("\n\n")
        .and_then(|(_, rest)| rest.split_once("help\n\n").map(|(_, r)| r))
        .unwrap_or(stderr)
        .replace("aws: error: ", "PROGRAM: error: ")
        .replace("tether: error: ", "PROGRAM: error: ")
}

#[test]
fn the_aws_cli_v2_and_tether_print_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let key = tether_tests::aws::AwsClient::issue(&coord);
    let act = coord.json(&[
        "create-activation",
        "--iam-role",
        "SSMServiceRole",
        "--default-instance-name",
        "web",
        "--registration-limit",
        "2",
        "--tags",
        "Key=Env,Value=lab",
    ]);
    let (id, code) = (
        act["ActivationId"].as_str().unwrap(),
        act["ActivationCode"].as_str().unwrap(),
    );
    let a = Agent::start_with_activation(tmp.path(), "a", &coord, (id, code), &[]);
    let b = Agent::start_with_activation(tmp.path(), "b", &coord, (id, code), &[]);
    let (ia, ib) = (a.instance_id.as_str(), b.instance_id.as_str());
    assert!(
        coord
            .cli(&[
                "add-tags-to-resource",
                "--resource-type",
                "ManagedInstance",
                "--resource-id",
                ia,
                "--tags",
                "Key=Role,Value=web"
            ])
            .status
            .success()
    );
    let doc = tmp.path().join("hello.yaml");
    std::fs::write(
        &doc,
        "schemaVersion: '2.2'\ndescription: hello\nmainSteps:\n- action: aws:runShellScript\n  name: hello\n  inputs:\n    runCommand: [echo hello]\n",
    )
    .unwrap();
    let created = coord.cli(&[
        "create-document",
        "--name",
        "Tether-Hello",
        "--document-type",
        "Command",
        "--document-format",
        "YAML",
        "--content",
        &format!("file://{}", doc.display()),
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    // A runbook's send: the command ID alone, from both.
    let mut sent = Vec::new();
    for out in [
        key.aws_v2(&[
            "send-command",
            "--instance-ids",
            ia,
            ib,
            "--document-name",
            "AWS-RunShellScript",
            "--comment",
            "IP config",
            "--parameters",
            "commands=uname",
            "--query",
            "Command.CommandId",
            "--output",
            "text",
        ]),
        coord.cli(&[
            "send-command",
            "--instance-ids",
            ia,
            ib,
            "--document-name",
            "AWS-RunShellScript",
            "--comment",
            "IP config",
            "--parameters",
            "commands=uname",
            "--query",
            "Command.CommandId",
            "--output",
            "text",
        ]),
    ] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let id = text.strip_suffix('\n').unwrap().to_owned();
        assert!(tether_ssm::ids::is_uuid(&id), "{text:?}");
        sent.push(id);
    }
    // Both wait the same way (tether's own waiter, then the aws CLI's).
    for (i, command) in sent.iter().enumerate() {
        for node in [ia, ib] {
            let args = [
                "wait",
                "command-executed",
                "--command-id",
                command,
                "--instance-id",
                node,
            ];
            let out = if i == 0 {
                coord.cli(&args)
            } else {
                key.aws_v2(&args)
            };
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.stdout.is_empty());
        }
    }
    let cmd = sent[1].as_str();

    let mut compared = 0;
    for &(line, same) in BOTH {
        let args: Vec<&str> = line
            .split(' ')
            .map(|w| match w {
                "$A" => ia,
                "$B" => ib,
                "$CMD" => cmd,
                "$UNKNOWN" => "00000000-0000-4000-8000-000000000000",
                w => w,
            })
            .collect();
        // A node's ping may land between the two calls: the outputs must
        // agree on one of a few tries (a real difference never does).
        let mut last = String::new();
        let agreed = (0..4).any(|_| {
            let theirs = key.aws_v2(&args);
            let ours = coord.cli(&args);
            let (o_out, o_err) = (
                String::from_utf8_lossy(&ours.stdout).into_owned(),
                String::from_utf8_lossy(&ours.stderr).into_owned(),
            );
            let (t_out, t_err) = (
                String::from_utf8_lossy(&theirs.stdout).into_owned(),
                String::from_utf8_lossy(&theirs.stderr).into_owned(),
            );
            let (o_out, o_err, t_err) = match same {
                Same::Bytes => (o_out, o_err, t_err),
                Same::ModuloExtras => (without_extras(&o_out), o_err, t_err),
                Same::ModuloProgram => (o_out, after_usage(&o_err), after_usage(&t_err)),
            };
            let ok = ours.status.code() == theirs.status.code() && o_out == t_out && o_err == t_err;
            if !ok {
                last = format!(
                    "aws CLI v2 ({:?}):\n{t_out}{t_err}\ntether ({:?}):\n{o_out}{o_err}",
                    theirs.status.code(),
                    ours.status.code()
                );
            }
            ok
        });
        assert!(agreed, "{line}: the outputs differ\n{last}");
        compared += 1;
    }
    assert!(compared >= 40, "{compared}");
    // The extras are there, and only where documented.
    let inv = coord.json(&[
        "get-command-invocation",
        "--command-id",
        cmd,
        "--instance-id",
        ia,
    ]);
    assert_eq!(inv["DocumentVersion"], json!("$DEFAULT"));
    assert_eq!(inv["ResolvedDocumentVersion"], json!("1"));
    assert_eq!(inv["PluginName"], json!("aws:runShellScript"));
}

#[test]
fn profiles_debug_skeletons_help_and_completion() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let tether = tether_tests::bin("tether");
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = std::process::Command::new(&tether);
        c.env_remove("TETHER_CONFIG").env_remove("TETHER_PROFILE");
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args).output().unwrap()
    };
    // Named profiles: several coordinators from one config file.
    let file = tmp.path().join("config");
    std::fs::write(
        &file,
        format!(
            "[default]\noperator_config = /nonexistent/operator.json\n\n[profile lab]\noperator_config = {}\noutput = text\n",
            coord.operator_json().display()
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = run(
        &[("TETHER_CONFIG_FILE", file)],
        &["--profile", "lab", "list-commands"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "text output of no commands prints nothing"
    );
    let out = run(
        &[("TETHER_CONFIG_FILE", file), ("TETHER_PROFILE", "lab")],
        &["list-commands", "--output", "json"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\n    \"Commands\": []\n}\n"
    );
    let out = run(&[("TETHER_CONFIG_FILE", file)], &["list-commands"]);
    assert_eq!(
        out.status.code(),
        Some(253),
        "the default profile's operator.json is missing"
    );
    let out = run(
        &[("TETHER_CONFIG_FILE", file)],
        &["--profile", "nope", "list-commands"],
    );
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "\nThe config profile (nope) could not be found\n"
    );

    // --debug: the request, the answer and timings, secrets redacted.
    let out = coord.cli(&["--debug", "create-access-key"]);
    assert!(out.status.success());
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = key["AccessKey"]["SecretAccessKey"].as_str().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("Making request for OperationModel(name=CreateAccessKey)"),
        "{log}"
    );
    assert!(log.contains("Response received in "), "{log}");
    assert!(
        !log.contains(secret),
        "the secret key is in the debug log: {log}"
    );
    let token: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(coord.operator_json()).unwrap()).unwrap();
    assert!(
        !log.contains(token["Token"].as_str().unwrap()),
        "the operator token is in the debug log"
    );
    let out = coord.cli(&[
        "--debug",
        "send-command",
        "--instance-ids",
        "mi-0123456789abcdef0",
        "--document-name",
        "AWS-RunShellScript",
        "--parameters",
        "commands=echo hunter2",
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("SendCommand") && !log.contains("hunter2"),
        "{log}"
    );

    // --cli-input-json under the flags; skeletons.
    let out = coord.cli(&[
        "list-commands",
        "--cli-input-json",
        r#"{"MaxResults": 0}"#,
        "--max-results",
        "5",
        "--no-paginate",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = coord.cli(&["list-commands", "--cli-input-yaml", "MaxResults: 0"]);
    assert_eq!(out.status.code(), Some(252));
    let out = coord.cli(&[
        "get-command-invocation",
        "--command-id",
        "00000000-0000-4000-8000-000000000000",
        "--instance-id",
        "mi-0123456789abcdef0",
        "--generate-cli-skeleton",
        "output",
    ]);
    let skeleton: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(skeleton["PluginName"], json!(""));
    assert_eq!(skeleton["ResponseCode"], json!(0));

    // Help and completion from the model.
    for args in [&["send-command", "help"][..], &["send-command", "--help"]] {
        let out = coord.cli(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(
            text.contains("--document-name (string)")
                && text.contains("Key=string,Values=string,string"),
            "{text}"
        );
    }
    let out = coord.cli(&["wait", "command-executed", "help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("every 5 seconds"));
    let out = coord.cli(&["completion", "bash"]);
    let script = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        script.contains("send-command)") && script.contains("Sha256 Sha1"),
        "{script}"
    );
    // The script completes in a real bash.
    let check = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{script}\nCOMP_WORDS=(tether send-command --document-hash-type S); COMP_CWORD=3; _tether; echo \"${{COMPREPLY[@]}}\""
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout), "Sha256 Sha1\n");
    let out = coord.cli(&["completion", "zsh"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("#compdef tether\n"));
}

#[test]
fn terminal_escapes_from_a_node_never_reach_the_operators_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let agent = Agent::start(tmp.path(), "a", &coord);
    let me = agent.instance_id.as_str();
    // ESC sequences (colour, a window title), BEL and a C1 CSI.
    let id = coord.send(
        &[me],
        &json!({"commands": [r"printf '\033[31mred\033[0m\033]0;pwned\007|\302\233|\n'"]}),
    );
    coord.wait_invocation(&id, me, std::time::Duration::from_secs(30));
    let args = [
        "get-command-invocation",
        "--command-id",
        &id,
        "--instance-id",
        me,
        "--query",
        "StandardOutputContent",
    ];
    // Through a pipe: the bytes, as the aws CLI prints them.
    for (query, format) in [
        ("StandardOutputContent", "text"),
        ("[StandardOutputContent]", "table"),
    ] {
        let out = coord.cli(&[&args[..5], &["--query", query, "--output", format]].concat());
        assert!(out.status.success());
        assert!(
            out.stdout.contains(&0x1b),
            "{format}: a pipe gets the bytes"
        );
    }
    // On a terminal (script(1) gives tether a pty): shown escaped.
    let line = [
        tether_tests::bin("tether").display().to_string(),
        "--config".into(),
        coord.operator_json().display().to_string(),
    ]
    .into_iter()
    .chain(args.iter().map(|a| a.to_string()))
    .chain(["--output".to_owned(), "text".to_owned()])
    .collect::<Vec<_>>()
    .join(" ");
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .expect("script(1), from bsdutils");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.stdout.contains(&0x1b) && !out.stdout.contains(&0x07),
        "{shown:?}"
    );
    assert!(
        shown.contains(r"\x1b[31mred\x1b[0m\x1b]0;pwned\x07|\x9b|"),
        "{shown:?}"
    );
}
