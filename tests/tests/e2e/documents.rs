//! Command documents end to end: create, version, describe, get (in either
//! format), list, delete, and running them — several steps, parameters with
//! rules, a skip exit code, a platform precondition — and every invalid input
//! refused with the field and rule named.

use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::{Agent, Coordinator};

const DEPLOY_YAML: &str = r#"schemaVersion: "2.2"
description: Three steps, a skip code and a Windows-only step
parameters:
  greeting:
    type: String
    default: hello
    allowedPattern: "^[a-z]+$"
  count:
    type: String
    default: "2"
    allowedValues: ["1", "2", "3"]
mainSteps:
  - action: aws:runShellScript
    name: first
    inputs:
      runCommand:
        - echo "one-{{ greeting }}"
        - seq {{ count }}
  - action: aws:runPowerShellScript
    name: windowsOnly
    precondition:
      StringEquals: [platformType, Windows]
    inputs:
      runCommand: [Write-Output never]
  - action: aws:runShellScript
    name: second
    inputs:
      runCommand:
        - echo two
        - exit 168
  - action: aws:runShellScript
    name: third
    inputs:
      runCommand: [echo three]
"#;

fn error_of(coord: &Coordinator, args: &[&str]) -> String {
    let out = coord.cli(args);
    assert_eq!(
        out.status.code(),
        Some(254),
        "tether {args:?} should fail as a service error; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn plugins_of(coord: &Coordinator, command_id: &str) -> Vec<Value> {
    let v = coord.json(&[
        "list-command-invocations",
        "--command-id",
        command_id,
        "--details",
    ]);
    v["CommandInvocations"][0]["CommandPlugins"]
        .as_array()
        .expect("CommandPlugins")
        .clone()
}

#[test]
fn documents_are_created_versioned_listed_and_run_step_by_step() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let agent = Agent::start(tmp.path(), "a", &coord);
    let file = tmp.path().join("deploy.yaml");
    std::fs::write(&file, DEPLOY_YAML).unwrap();
    let content = format!("file://{}", file.display());

    let created = coord.json(&[
        "create-document",
        "--name",
        "Deploy-App",
        "--content",
        &content,
        "--document-format",
        "YAML",
        "--document-type",
        "Command",
        "--version-name",
        "v-one",
        "--tags",
        "Key=Team,Value=ops",
    ]);
    let d = &created["DocumentDescription"];
    assert_eq!(d["Name"], json!("Deploy-App"));
    assert_eq!(d["DocumentVersion"], json!("1"));
    assert_eq!(d["LatestVersion"], json!("1"));
    assert_eq!(d["DefaultVersion"], json!("1"));
    assert_eq!(d["SchemaVersion"], json!("2.2"));
    assert_eq!(d["DocumentFormat"], json!("YAML"));
    assert_eq!(d["HashType"], json!("Sha256"));
    assert_eq!(d["Status"], json!("Active"));
    assert_eq!(d["PlatformTypes"], json!(["Windows", "Linux", "MacOS"]));
    assert_eq!(d["Parameters"][0]["Name"], json!("greeting"));
    assert_eq!(d["Parameters"][0]["DefaultValue"], json!("hello"));
    assert_eq!(d["Tags"], json!([{"Key": "Team", "Value": "ops"}]));

    // The same name again is refused; reserved prefixes too.
    let e = error_of(
        &coord,
        &[
            "create-document",
            "--name",
            "Deploy-App",
            "--content",
            &content,
            "--document-format",
            "YAML",
        ],
    );
    assert!(e.contains("(DocumentAlreadyExists)"), "{e}");
    let e = error_of(
        &coord,
        &[
            "create-document",
            "--name",
            "AWS-Mine",
            "--content",
            &content,
            "--document-format",
            "YAML",
        ],
    );
    assert!(e.contains("may not begin with \"aws\""), "{e}");

    // GetDocument converts to JSON on request and keeps the text otherwise.
    let got = coord.json(&["get-document", "--name", "Deploy-App"]);
    assert_eq!(got["Content"], json!(DEPLOY_YAML));
    assert_eq!(got["VersionName"], json!("v-one"));
    let as_json = coord.json(&[
        "get-document",
        "--name",
        "Deploy-App",
        "--document-format",
        "JSON",
    ]);
    let tree: Value = serde_json::from_str(as_json["Content"].as_str().unwrap()).unwrap();
    assert_eq!(tree["mainSteps"][2]["name"], json!("second"));
    assert_eq!(as_json["DocumentFormat"], json!("JSON"));

    // Version 2 (JSON): a different greeting default.
    let v2 = DEPLOY_YAML.replace("default: hello", "default: howdy");
    let v2_file = tmp.path().join("deploy2.yaml");
    std::fs::write(&v2_file, &v2).unwrap();
    let v2_content = format!("file://{}", v2_file.display());
    let updated = coord.json(&[
        "update-document",
        "--name",
        "Deploy-App",
        "--content",
        &v2_content,
        "--document-format",
        "YAML",
        "--document-version",
        "$LATEST",
    ]);
    assert_eq!(
        updated["DocumentDescription"]["DocumentVersion"],
        json!("2")
    );
    assert_eq!(updated["DocumentDescription"]["DefaultVersion"], json!("1"));
    let e = error_of(
        &coord,
        &[
            "update-document",
            "--name",
            "Deploy-App",
            "--content",
            &v2_content,
            "--document-format",
            "YAML",
        ],
    );
    assert!(e.contains("(DuplicateDocumentContent)"), "{e}");
    let e = error_of(
        &coord,
        &[
            "update-document",
            "--name",
            "Deploy-App",
            "--content",
            &content,
            "--document-format",
            "YAML",
            "--document-version",
            "1",
        ],
    );
    assert!(
        e.contains("(InvalidDocumentVersion)") && e.contains("only the latest version (2"),
        "{e}"
    );
    let versions = coord.json(&["list-document-versions", "--name", "Deploy-App"]);
    let versions = versions["DocumentVersions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["DocumentVersion"], json!("2"));
    assert_eq!(versions[0]["IsDefaultVersion"], json!(false));
    assert_eq!(versions[1]["IsDefaultVersion"], json!(true));

    // list-documents: built-ins and ours, with filters.
    let all = coord.json(&["list-documents"]);
    let names: Vec<&str> = all["DocumentIdentifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["Name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"AWS-RunShellScript") && names.contains(&"Deploy-App"),
        "{names:?}"
    );
    let mine = coord.json(&["list-documents", "--filters", "Key=Owner,Values=Self"]);
    assert_eq!(mine["DocumentIdentifiers"].as_array().unwrap().len(), 1);
    assert_eq!(mine["DocumentIdentifiers"][0]["Owner"], json!("Self"));
    let by_tag = coord.json(&["list-documents", "--filters", "Key=tag:Team,Values=ops"]);
    assert_eq!(
        by_tag["DocumentIdentifiers"][0]["Name"],
        json!("Deploy-App")
    );
    let by_prefix = coord.json(&["list-documents", "--filters", "Key=Name,Values=AWS-Run"]);
    assert!(
        by_prefix["DocumentIdentifiers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["Owner"] == "Amazon")
    );
    let e = error_of(
        &coord,
        &["list-documents", "--filters", "Key=Colour,Values=red"],
    );
    assert!(
        e.contains("(InvalidFilterKey)") && e.contains("Colour"),
        "{e}"
    );

    // Running it: the default version (1) by default, version 2 on request.
    let run = |extra: &[&str]| -> String {
        let mut args = vec![
            "send-command",
            "--document-name",
            "Deploy-App",
            "--instance-ids",
            &agent.instance_id,
        ];
        args.extend_from_slice(extra);
        let v = coord.json(&args);
        assert_eq!(v["Command"]["DocumentName"], json!("Deploy-App"));
        v["Command"]["CommandId"].as_str().unwrap().to_string()
    };
    let c1 = run(&[]);
    let inv = coord.wait_invocation_any_step(&c1, &agent.instance_id);
    assert_eq!(inv["Status"], json!("Success"), "{inv}");
    let plugins = plugins_of(&coord, &c1);
    let summary: Vec<(String, String, String)> = plugins
        .iter()
        .map(|p| {
            (
                p["Name"].as_str().unwrap().into(),
                p["Status"].as_str().unwrap().into(),
                p["Output"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        summary[0],
        ("first".into(), "Success".into(), "one-hello\n1\n2\n".into())
    );
    assert_eq!(summary[1].0, "windowsOnly");
    assert_eq!(summary[1].1, "Success");
    assert!(
        summary[1].2.contains("precondition"),
        "a skipped step says why: {summary:?}"
    );
    assert_eq!(
        summary[2],
        ("second".into(), "Success".into(), "two\n".into())
    );
    assert_eq!(summary[3].0, "third");
    assert!(
        summary[3].2.contains("skipped"),
        "168 skips the rest: {summary:?}"
    );
    assert_eq!(plugins[2]["ResponseCode"], json!(168));
    let step = coord.json(&[
        "get-command-invocation",
        "--command-id",
        &c1,
        "--instance-id",
        &agent.instance_id,
        "--plugin-name",
        "second",
    ]);
    assert_eq!(step["StandardOutputContent"], json!("two\n"));
    assert_eq!(step["ResponseCode"], json!(168));

    let c2 = run(&["--document-version", "2", "--parameters", "count=3"]);
    coord.wait_invocation_any_step(&c2, &agent.instance_id);
    let cmd = coord.json(&["list-commands", "--command-id", &c2]);
    assert_eq!(cmd["Commands"][0]["DocumentVersion"], json!("2"));
    assert_eq!(
        plugins_of(&coord, &c2)[0]["Output"],
        json!("one-howdy\n1\n2\n3\n")
    );

    // Invalid parameters are refused at send time, naming the rule.
    for (params, needle) in [
        ("greeting=Hello", "allowedPattern"),
        ("count=4", "allowedValues"),
        ("colour=red", "\"colour\" is not defined"),
    ] {
        let out = coord.cli(&[
            "send-command",
            "--document-name",
            "Deploy-App",
            "--instance-ids",
            &agent.instance_id,
            "--parameters",
            params,
        ]);
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(254), "{params}");
        assert!(
            e.contains("(InvalidParameters)") && e.contains(needle),
            "{params}: {e}"
        );
    }
    let e = error_of(
        &coord,
        &[
            "send-command",
            "--document-name",
            "Deploy-App",
            "--document-version",
            "7",
            "--instance-ids",
            &agent.instance_id,
        ],
    );
    assert!(e.contains("(InvalidDocumentVersion)"), "{e}");

    // The default moves to 2; version 1 can then be deleted, the default cannot.
    let moved = coord.json(&[
        "update-document-default-version",
        "--name",
        "Deploy-App",
        "--document-version",
        "2",
    ]);
    assert_eq!(moved["Description"]["DefaultVersion"], json!("2"));
    let e = error_of(
        &coord,
        &[
            "delete-document",
            "--name",
            "Deploy-App",
            "--document-version",
            "2",
        ],
    );
    assert!(
        e.contains("(InvalidDocumentOperation)") && e.contains("default version"),
        "{e}"
    );
    coord.json(&[
        "delete-document",
        "--name",
        "Deploy-App",
        "--version-name",
        "v-one",
    ]);
    let e = error_of(
        &coord,
        &[
            "describe-document",
            "--name",
            "Deploy-App",
            "--document-version",
            "1",
        ],
    );
    assert!(e.contains("(InvalidDocumentVersion)"), "{e}");
    let described = coord.json(&["describe-document", "--name", "Deploy-App"]);
    assert_eq!(described["Document"]["DocumentVersion"], json!("2"));
    // History keeps what ran, even after the document goes.
    coord.json(&["delete-document", "--name", "Deploy-App"]);
    let e = error_of(&coord, &["get-document", "--name", "Deploy-App"]);
    assert!(e.contains("(InvalidDocument)"), "{e}");
    let old = coord.json(&["list-commands", "--command-id", &c1]);
    assert_eq!(old["Commands"][0]["Status"], json!("Success"));
    let e = error_of(&coord, &["delete-document", "--name", "AWS-RunShellScript"]);
    assert!(e.contains("(InvalidDocumentOperation)"), "{e}");
}

#[test]
fn every_invalid_document_is_refused_naming_the_field_and_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let step = r#"{"action":"aws:runShellScript","name":"s","inputs":{"runCommand":["true"]}}"#;
    let cases: Vec<(String, &str, &str)> = vec![
        ("{\"schemaVersion\":\"2.2\",".into(), "InvalidDocumentContent", "not valid JSON"),
        (r#"{"schemaVersion":"3.0","mainSteps":[]}"#.into(), "InvalidDocumentSchemaVersion", "schemaVersion"),
        (r#"{"schemaVersion":"2.2","mainSteps":[]}"#.into(), "InvalidDocumentContent", "mainSteps: the document defines no steps"),
        (r#"{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runDocker","name":"s","inputs":{}}]}"#.into(), "InvalidDocumentContent", "mainSteps[0].action"),
        (format!(r#"{{"schemaVersion":"2.2","mainSteps":[{step},{step}]}}"#), "InvalidDocumentContent", "used by more than one step"),
        (r#"{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runShellScript","name":"s","inputs":{"runCommand":["echo {{ nope }}"]}}]}"#.into(), "InvalidDocumentContent", "{{ nope }}"),
        (format!(r#"{{"schemaVersion":"2.2","parameters":{{"p":{{"type":"Float"}}}},"mainSteps":[{step}]}}"#), "InvalidDocumentContent", "parameter \"p\""),
        (format!(r#"{{"schemaVersion":"2.2","mainSteps":[{step}],"colour":"red"}}"#), "InvalidDocumentContent", "colour: unknown field"),
    ];
    for (i, (content, kind, needle)) in cases.iter().enumerate() {
        let name = format!("Bad-{i}");
        let e = error_of(
            &coord,
            &["create-document", "--name", &name, "--content", content],
        );
        assert!(
            e.contains(&format!("({kind})")) && e.contains(needle),
            "case {i}: want {kind} / {needle}, got {e}"
        );
    }
    // Refused documents leave nothing behind.
    let mine = coord.json(&["list-documents", "--filters", "Key=Owner,Values=Self"]);
    assert_eq!(mine["DocumentIdentifiers"], json!([]));
    let e = error_of(
        &coord,
        &["create-document", "--name", "x", "--content", "{}"],
    );
    // The model's pattern refuses it on every transport, as AWS's front end does.
    assert!(
        e.contains("(ValidationException)") && e.contains("Value 'x' at 'name'"),
        "{e}"
    );
    let e = error_of(
        &coord,
        &[
            "create-document",
            "--name",
            "Too-Big",
            "--content",
            &"#".repeat(70_000),
            "--document-format",
            "YAML",
        ],
    );
    assert!(e.contains("(MaxDocumentSizeExceeded)"), "{e}");
    let e = error_of(
        &coord,
        &[
            "send-command",
            "--document-name",
            "Nope-Doc",
            "--instance-ids",
            "mi-0123456789abcdef0",
        ],
    );
    assert!(
        e.contains("(InvalidDocument)") && e.contains("Nope-Doc"),
        "{e}"
    );
}

trait WaitAnyStep {
    fn wait_invocation_any_step(&self, command_id: &str, instance_id: &str) -> Value;
}

impl WaitAnyStep for Coordinator {
    /// Waits for a multi-step invocation (get-command-invocation needs a
    /// step name there, so this reads list-command-invocations).
    fn wait_invocation_any_step(&self, command_id: &str, instance_id: &str) -> Value {
        tether_tests::wait_for(
            "a multi-step invocation to finish",
            Duration::from_secs(30),
            || {
                let v = self.json(&[
                    "list-command-invocations",
                    "--command-id",
                    command_id,
                    "--instance-id",
                    instance_id,
                ]);
                let inv = v["CommandInvocations"][0].clone();
                let s = inv["Status"].as_str().unwrap_or("");
                (!matches!(s, "Pending" | "InProgress" | "Delayed" | "Cancelling")).then_some(inv)
            },
        )
    }
}
