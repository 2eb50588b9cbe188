use std::collections::BTreeMap;

use super::*;
use crate::builtin::builtin;
use crate::parameter::ParameterType;
use crate::step::StepAction;

/// Parameters as a test writes them: name and values.
type Given<'a> = &'a [(&'a str, &'a [&'a str])];

fn params(pairs: Given<'_>) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, vs)| {
            (
                (*k).to_owned(),
                vs.iter().map(|v| (*v).to_owned()).collect(),
            )
        })
        .collect()
}

fn lines(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

fn parse(content: &str) -> Document {
    match Document::parse("test", content) {
        Ok(doc) => doc,
        Err(e) => panic!("document does not parse: {e}\n{content}"),
    }
}

/// Resolves `given` and plans for `platform`.
fn run(
    doc: &Document,
    given: Given<'_>,
    platform: PlatformType,
) -> Result<Vec<Step>, DocumentError> {
    let resolved = doc.resolve_parameters(&params(given))?;
    doc.plan(&resolved, platform)
}

fn step(name: &str, action: StepAction, commands: &[&str], dir: &str, timeout: u32) -> Step {
    Step {
        name: name.to_owned(),
        action,
        commands: lines(commands),
        working_directory: dir.to_owned(),
        timeout_seconds: timeout,
        skipped: None,
        inputs: Default::default(),
    }
}

#[test]
fn builtins_resolve_and_plan() {
    let cases = [
        (
            "AWS-RunShellScript",
            StepAction::RunShellScript,
            "0.aws:runShellScript",
            PlatformType::Linux,
        ),
        (
            "AWS-RunPowerShellScript",
            StepAction::RunPowerShellScript,
            "0.aws:runPowerShellScript",
            PlatformType::Windows,
        ),
    ];
    for (name, action, step_name, platform) in cases {
        let doc = builtin(name).expect("built-in exists");
        assert_eq!(doc.name, name);
        assert_eq!(doc.schema_version, "1.2");
        let names: Vec<&str> = doc.parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["commands", "workingDirectory", "executionTimeout"],
            "{name}"
        );
        let resolved = doc
            .resolve_parameters(&params(&[("commands", &["echo hi"])]))
            .expect("resolves");
        assert_eq!(
            resolved,
            params(&[
                ("commands", &["echo hi"]),
                ("workingDirectory", &[""]),
                ("executionTimeout", &["3600"])
            ]),
            "{name}"
        );
        let steps = doc.plan(&resolved, platform).expect("plans");
        assert_eq!(
            steps,
            [step(step_name, action, &["echo hi"], "", 3600)],
            "{name}"
        );

        let steps = run(
            &doc,
            &[
                ("commands", &["cd /tmp", "ls\n-la"]),
                ("workingDirectory", &["/srv"]),
                ("executionTimeout", &["172800"]),
            ],
            platform,
        )
        .expect("plans");
        assert_eq!(
            steps,
            [step(
                step_name,
                action,
                &["cd /tmp", "ls\n-la"],
                "/srv",
                172_800
            )],
            "{name}"
        );
    }
}

#[test]
fn builtin_metadata() {
    let shell = builtin("AWS-RunShellScript").expect("built-in exists");
    assert_eq!(
        shell.platform_types(),
        [PlatformType::Linux, PlatformType::MacOs]
    );
    assert_eq!(
        shell.description,
        "Run a shell script or specify the commands to run."
    );
    let commands = shell.parameter("commands").expect("defined");
    assert_eq!(commands.kind, ParameterType::StringList);
    assert_eq!(commands.min_items, Some(1));
    assert_eq!(commands.default, None);
    assert_eq!(commands.display_type.as_deref(), Some("textarea"));
    let timeout = shell.parameter("executionTimeout").expect("defined");
    assert_eq!(timeout.default, Some(serde_json::json!("3600")));
    assert_eq!(shell.format, DocumentFormat::Json);

    let ps = builtin("AWS-RunPowerShellScript").expect("built-in exists");
    assert_eq!(
        ps.platform_types(),
        [
            PlatformType::Windows,
            PlatformType::Linux,
            PlatformType::MacOs
        ]
    );
}

#[test]
fn builtin_parameters_are_refused_when_wrong() {
    let cases: &[(Given<'_>, &str)] = &[
        (
            &[("commands", &["true"]), ("executionTimeout", &["0"])],
            r#"parameter "executionTimeout": value "0" is out of range 1..172800"#,
        ),
        (
            &[("commands", &["true"]), ("executionTimeout", &["172801"])],
            r#"parameter "executionTimeout": value "172801" is out of range 1..172800"#,
        ),
        (
            &[("commands", &["true"]), ("executionTimeout", &["abc"])],
            r#"parameter "executionTimeout": value "abc" is not a whole number of seconds in 1..172800"#,
        ),
        (
            &[("commands", &["true"]), ("executionTimeout", &["007"])],
            r#"parameter "executionTimeout": value "007" does not match allowedPattern"#,
        ),
        (
            &[("commands", &["true"]), ("executionTimeout", &["60", "70"])],
            r#"parameter "executionTimeout": type String takes exactly one value, 2 values given"#,
        ),
        (
            &[("commands", &["true"]), ("timeout", &["60"])],
            r#"parameter "timeout" is not defined by document"#,
        ),
        (
            &[("workingDirectory", &["/tmp"])],
            r#"parameter "commands" is required (it has no default) but was not given"#,
        ),
        (
            &[("commands", &[])],
            r#"parameter "commands": 0 values given, minItems is 1"#,
        ),
    ];
    for name in crate::builtin_names()
        .iter()
        .filter(|n| n.starts_with("AWS-Run"))
    {
        let doc = builtin(name).expect("built-in exists");
        for (given, needle) in cases {
            match doc.resolve_parameters(&params(given)) {
                Err(e) => assert!(
                    e.to_string().contains(needle),
                    "{name} {given:?}: {e:?} lacks {needle:?}"
                ),
                Ok(r) => panic!("{name} {given:?}: accepted as {r:?}"),
            }
        }
    }
}

#[test]
fn plan_checks_timeout_even_unresolved() {
    // `plan` is handed parameters that skipped `resolve_parameters`.
    let doc = builtin("AWS-RunShellScript").expect("built-in exists");
    let cases = [
        (
            "0",
            r#"parameter "executionTimeout": value "0" is out of range 1..172800"#,
        ),
        (
            "172801",
            r#"parameter "executionTimeout": value "172801" is out of range 1..172800"#,
        ),
        (
            "abc",
            r#"parameter "executionTimeout": value "abc" is not a whole number"#,
        ),
    ];
    for (timeout, want) in cases {
        let given = params(&[
            ("commands", &["true"]),
            ("workingDirectory", &[""]),
            ("executionTimeout", &[timeout]),
        ]);
        let err = doc.plan(&given, PlatformType::Linux).expect_err("refused");
        assert!(err.to_string().starts_with(want), "{err}");
    }
    let err = doc
        .plan(&params(&[("commands", &["true"])]), PlatformType::Linux)
        .expect_err("refused");
    assert_eq!(
        err,
        DocumentError::UnresolvedParameter {
            name: "workingDirectory".to_owned()
        }
    );
}

#[test]
fn interpolation_does_not_reinterpret_values() {
    let doc = parse(
        r#"{
  "schemaVersion": "2.2",
  "parameters": {
    "dir": {"type": "String"},
    "msg": {"type": "String", "default": "hello"},
    "names": {"type": "StringList", "default": ["a", "b"]},
    "commands": {"type": "StringList"}
  },
  "mainSteps": [{
    "action": "aws:runShellScript",
    "name": "s",
    "inputs": {
      "runCommand": ["cd {{ dir }} && echo {{msg}}", "{{ commands }}", "for n in {{ names }}; do :; done", "docker ps --format '{{.Names}}'"],
      "workingDirectory": "{{ dir }}"
    }
  }]
}"#,
    );
    let steps = run(
        &doc,
        &[
            ("dir", &["{{ msg }}"]),
            ("commands", &["echo {{ dir }}", "{{ msg }}"]),
        ],
        PlatformType::Linux,
    )
    .expect("plans");
    assert_eq!(
        steps,
        [step(
            "s",
            StepAction::RunShellScript,
            &[
                "cd {{ msg }} && echo hello",
                "echo {{ dir }}",
                "{{ msg }}",
                r#"for n in ["a","b"]; do :; done"#,
                "docker ps --format '{{.Names}}'",
            ],
            "{{ msg }}",
            3600,
        )]
    );
}

#[test]
fn schema_1_2_run_command_forms() {
    let doc = parse(
        r#"{
  "schemaVersion": "1.2",
  "description": "two plugins",
  "parameters": {
    "commands": {"type": "StringList", "minItems": 1},
    "timeout": {"type": "Integer", "default": 30}
  },
  "runtimeConfig": {
    "aws:runShellScript": {
      "properties": [
        {"id": "0.aws:runShellScript", "runCommand": ["set -e", "{{ commands }}", "echo done"], "timeoutSeconds": "{{ timeout }}"},
        {"id": "1.aws:runShellScript", "runCommand": "uptime", "timeoutSeconds": 45}
      ]
    },
    "aws:runPowerShellScript": {
      "properties": {"runCommand": ["Get-Date"]}
    }
  }
}"#,
    );
    assert_eq!(
        doc.step_names(),
        [
            "0.aws:runShellScript",
            "1.aws:runShellScript",
            "0.aws:runPowerShellScript"
        ]
    );
    let steps = run(&doc, &[("commands", &["a", "b\nc"])], PlatformType::Linux).expect("plans");
    assert_eq!(
        steps,
        [
            step(
                "0.aws:runShellScript",
                StepAction::RunShellScript,
                &["set -e", "a", "b\nc", "echo done"],
                "",
                30
            ),
            step(
                "1.aws:runShellScript",
                StepAction::RunShellScript,
                &["uptime"],
                "",
                45
            ),
            step(
                "0.aws:runPowerShellScript",
                StepAction::RunPowerShellScript,
                &["Get-Date"],
                "",
                3600
            ),
        ]
    );
    let windows = run(&doc, &[("commands", &["a"])], PlatformType::Windows).expect("plans");
    let skipped: Vec<Option<&str>> = windows.iter().map(|s| s.skipped.as_deref()).collect();
    assert_eq!(
        skipped,
        [
            Some("action aws:runShellScript does not run on Windows"),
            Some("action aws:runShellScript does not run on Windows"),
            None,
        ]
    );
    let err = run(
        &doc,
        &[("commands", &["a"]), ("timeout", &["0"])],
        PlatformType::Linux,
    )
    .expect_err("refused");
    assert_eq!(
        err.to_string(),
        r#"parameter "timeout": value "0" is out of range 1..172800"#
    );
}

const TWO_STEPS: &str = r#"{
  "schemaVersion": "2.2",
  "description": "Linux and Windows",
  "mainSteps": [
    {
      "action": "aws:runShellScript",
      "name": "unix",
      "precondition": {"StringEquals": ["platformType", "Linux"]},
      "inputs": {"runCommand": ["uname -a"], "timeoutSeconds": "60"}
    },
    {
      "action": "aws:runPowerShellScript",
      "name": "windows",
      "precondition": {"StringEquals": ["platformType", "Windows"]},
      "inputs": {"runCommand": ["Get-ComputerInfo"], "workingDirectory": "C:\\Temp"}
    }
  ]
}"#;

#[test]
fn preconditions_skip_steps_for_other_platforms() {
    let doc = parse(TWO_STEPS);
    assert_eq!(
        doc.platform_types(),
        [PlatformType::Windows, PlatformType::Linux]
    );
    let cases = [
        (
            PlatformType::Linux,
            [
                None,
                Some(
                    "precondition StringEquals [platformType, Windows] does not match platform Linux",
                ),
            ],
        ),
        (
            PlatformType::Windows,
            [
                Some(
                    "precondition StringEquals [platformType, Linux] does not match platform Windows",
                ),
                None,
            ],
        ),
    ];
    for (platform, want) in cases {
        let steps = run(&doc, &[], platform).expect("plans");
        let skipped: Vec<Option<&str>> = steps.iter().map(|s| s.skipped.as_deref()).collect();
        assert_eq!(skipped, want, "{platform}");
    }
    let linux = run(&doc, &[], PlatformType::Linux).expect("plans");
    assert_eq!(
        linux[0],
        step("unix", StepAction::RunShellScript, &["uname -a"], "", 60)
    );
    assert_eq!(linux[1].commands, ["Get-ComputerInfo"]);
    assert_eq!(linux[1].working_directory, "C:\\Temp");
}

#[test]
fn yaml_documents_mean_the_same() {
    let yaml = r#"---
schemaVersion: 2.2
description: Linux and Windows
mainSteps:
- action: aws:runShellScript
  name: unix
  precondition:
    StringEquals: [platformType, Linux]
  inputs:
    runCommand:
    - uname -a
    timeoutSeconds: 60
- action: aws:runPowerShellScript
  name: windows
  precondition:
    StringEquals:
    - platformType
    - Windows
  inputs:
    runCommand: [Get-ComputerInfo]
    workingDirectory: 'C:\Temp'
"#;
    let from_yaml = parse(yaml);
    let from_json = parse(TWO_STEPS);
    assert_eq!(from_yaml.format, DocumentFormat::Yaml);
    assert_eq!(from_yaml.schema_version, "2.2");
    assert_eq!(from_yaml.description, from_json.description);
    for platform in PlatformType::ALL {
        assert_eq!(
            run(&from_yaml, &[], platform),
            run(&from_json, &[], platform),
            "{platform}"
        );
    }
}

#[test]
fn hash_is_sha256_of_content() {
    let content = r#"{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runShellScript","name":"a","inputs":{"runCommand":["true"]}}]}"#;
    let doc = parse(content);
    assert_eq!(doc.content, content);
    assert_eq!(
        doc.hash(),
        "78209b42fbb7dae93c517141f25615318203623f5a233e684f08a7567bd46b1e"
    );
    assert_eq!(parse(content).hash(), doc.hash());
    let shell = builtin("AWS-RunShellScript").expect("built-in exists");
    assert_eq!(
        shell.hash(),
        "99749de5e62f71e5ebe9a55c2321e2c394796afe7208cff048696541e6f6771e"
    );
}

#[test]
fn invalid_documents_are_refused() {
    let step = r#"{"action":"aws:runShellScript","name":"a","inputs":{"runCommand":["true"]}}"#;
    let v22 = |rest: &str| format!(r#"{{"schemaVersion":"2.2",{rest}}}"#);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "document content is empty"),
        (
            "{\n  \"schemaVersion\": \"2.2\",\n  \"mainSteps\": [\n}".to_owned(),
            "document content is not valid JSON: expected value (line 4, column 1)",
        ),
        (
            "[1, 2]".to_owned(),
            "document: expected an object, found a list",
        ),
        (
            format!(r#"{{"mainSteps":[{step}]}}"#),
            "schemaVersion: required field is missing",
        ),
        (
            format!(r#"{{"schemaVersion":"2.0","mainSteps":[{step}]}}"#),
            r#"schemaVersion: value "2.0" is not supported"#,
        ),
        (
            format!(r#"{{"schemaVersion":1.2,"mainSteps":[{step}]}}"#),
            r#"mainSteps: not allowed with schemaVersion "1.2" (use runtimeConfig)"#,
        ),
        (
            v22(r#""mainSteps":[]"#),
            "mainSteps: the document defines no steps",
        ),
        (
            v22(r#""description":"x""#),
            "mainSteps: required field is missing",
        ),
        (
            r#"{"schemaVersion":"1.2","runtimeConfig":{}}"#.to_owned(),
            "runtimeConfig: the document defines no steps",
        ),
        (
            v22(r#""mainSteps":[{"action":"aws:runDocument","name":"a","inputs":{}}]"#),
            r#"mainSteps[0].action: action "aws:runDocument" is not supported"#,
        ),
        (
            r#"{"schemaVersion":"1.2","runtimeConfig":{"aws:applications":{"properties":[]}}}"#
                .to_owned(),
            r#"runtimeConfig.aws:applications: action "aws:applications" is not supported"#,
        ),
        (
            v22(&format!(r#""mainSteps":[{step},{step}]"#)),
            r#"mainSteps[1]: step name "a" is used by more than one step"#,
        ),
        (
            v22(
                r#""mainSteps":[{"action":"aws:runShellScript","name":"","inputs":{"runCommand":[]}}]"#,
            ),
            "mainSteps[0]: step name must not be empty",
        ),
        (
            v22(
                r#""mainSteps":[{"action":"aws:runShellScript","name":"a\u0000b","inputs":{"runCommand":[]}}]"#,
            ),
            r#"mainSteps[0]: step name "a\0b" contains a NUL character (U+0000); use printable characters only"#,
        ),
        (
            v22(
                r#""mainSteps":[{"action":"aws:runShellScript","name":"ok\u001b[2J","inputs":{"runCommand":[]}}]"#,
            ),
            r#"mainSteps[0]: step name "ok\u{1b}[2J" contains a control character (U+001B)"#,
        ),
        (
            v22(
                r#""mainSteps":[{"action":"aws:runShellScript","name":"two\nlines","inputs":{"runCommand":[]}}]"#,
            ),
            "contains a control character (U+000A)",
        ),
        (
            v22(
                r#""mainSteps":[{"action":"aws:runShellScript","name":"abc\u202edcb","inputs":{"runCommand":[]}}]"#,
            ),
            "contains a bidirectional control (U+202E)",
        ),
        (
            r#"{"schemaVersion":"1.2","runtimeConfig":{"aws:runShellScript":{"properties":[{"id":"0.a\u0000","runCommand":["x"]}]}}}"#.to_owned(),
            r#"runtimeConfig.aws:runShellScript.properties[0]: step name "0.a\0" contains a NUL character"#,
        ),
        (
            v22(r#""mainSteps":[{"action":"aws:runShellScript","inputs":{"runCommand":[]}}]"#),
            "mainSteps[0].name: required field is missing",
        ),
        (
            v22(
                r#""mainSteps":[{"action":"aws:runShellScript","name":"a","inputs":{"commands":["x"]}}]"#,
            ),
            "mainSteps[0].inputs.commands: unknown field (allowed here: runCommand, workingDirectory, timeoutSeconds)",
        ),
        (
            v22(
                r#""mainSteps":[{"action":"aws:runShellScript","name":"a","inputs":{"runCommand":[1]}}]"#,
            ),
            "mainSteps[0].inputs.runCommand[0]: expected a string, found a number",
        ),
        (
            v22(
                r#""mainSteps":[{"action":"aws:runShellScript","name":"a","inputs":{"runCommand":["echo {{ who }}"]}}]"#,
            ),
            "mainSteps[0].inputs.runCommand[0]: placeholder {{ who }} names a parameter the document does not define",
        ),
        (
            v22(
                r#""mainSteps":[{"action":"aws:runShellScript","name":"a","inputs":{"runCommand":[],"workingDirectory":"{{dir}}"}}]"#,
            ),
            "mainSteps[0].inputs.workingDirectory: placeholder {{ dir }} names a parameter",
        ),
        (
            v22(
                r#""mainSteps":[{"action":"aws:runShellScript","name":"a","inputs":{"runCommand":[],"timeoutSeconds":"0"}}]"#,
            ),
            r#"mainSteps[0].inputs.timeoutSeconds: value "0" is out of range 1..172800"#,
        ),
        (
            v22(
                r#""mainSteps":[{"action":"aws:runShellScript","name":"a","inputs":{"runCommand":[],"timeoutSeconds":"1h"}}]"#,
            ),
            r#"value "1h" is not a whole number of seconds"#,
        ),
        (
            v22(&format!(
                r#""parameters":{{"p":{{"type":"Float"}}}},"mainSteps":[{step}]"#
            )),
            r#"parameter "p": type "Float" is unknown"#,
        ),
        (
            v22(&format!(
                r#""parameters":{{"p":{{"type":"String","default":"x","allowedPattern":"[0-9]+"}}}},"mainSteps":[{step}]"#
            )),
            r#"parameter "p": default value "x" does not match allowedPattern "[0-9]+""#,
        ),
        (
            v22(&format!(
                r#""parameters":{{"my-param":{{"type":"String"}}}},"mainSteps":[{step}]"#
            )),
            r#"parameters: name "my-param" is invalid"#,
        ),
        (
            v22(&format!(r#""mainSteps":[{step}],"outputs":[]"#)),
            "outputs: unknown field",
        ),
        (
            v22(
                r#""mainSteps":[{"action":"aws:runShellScript","name":"a","precondition":{"StringEquals":["platformType","BeOS"]},"inputs":{"runCommand":[]}}]"#,
            ),
            r#"mainSteps[0].precondition: platform type "BeOS" is unknown"#,
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n  - name: a\n    name: b\n".to_owned(),
            r#"document content is not valid YAML: mainSteps[0]: duplicate key "name" (line 3, column 5)"#,
        ),
    ];
    for (content, want) in cases {
        match Document::parse("bad", &content) {
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with(want) || msg.contains(want),
                    "{content}\n  got:  {msg}\n  want: {want}"
                );
            }
            Ok(doc) => panic!("accepted: {content}\n{doc:?}"),
        }
    }
}

#[test]
fn content_converts_between_json_and_yaml() {
    let json = r#"{"schemaVersion":"2.2","description":"d","mainSteps":[{"action":"aws:runShellScript","name":"a","inputs":{"runCommand":["echo hi"]}}]}"#;
    let doc = Document::parse("c", json).unwrap();
    assert_eq!(doc.content_as(DocumentFormat::Json), json);
    let yaml = doc.content_as(DocumentFormat::Yaml);
    assert!(
        yaml.starts_with("schemaVersion: '2.2'\ndescription: d\n"),
        "{yaml}"
    );
    let back = Document::parse("c", &yaml).unwrap();
    assert_eq!(back.format, DocumentFormat::Yaml);
    assert_eq!(back.step_names(), vec!["a"]);
    let again: serde_json::Value =
        serde_json::from_str(&back.content_as(DocumentFormat::Json)).unwrap();
    assert_eq!(
        again,
        serde_json::from_str::<serde_json::Value>(json).unwrap()
    );
}

/// Found by the `document` fuzz target: a JSON document uploaded with a
/// byte-order mark was accepted, and then answered as `null` in YAML.
#[test]
fn content_with_a_byte_order_mark_converts_too() {
    let json = "\u{feff}{\"schemaVersion\":\"2.2\",\"description\":\"d\",\"mainSteps\":[{\"action\":\"aws:runShellScript\",\"name\":\"a\",\"inputs\":{\"runCommand\":[\"echo hi\"]}}]}";
    for (format, text) in [
        (DocumentFormat::Json, json.to_string()),
        (
            DocumentFormat::Yaml,
            "\u{feff}schemaVersion: '2.2'\nmainSteps:\n- action: aws:runShellScript\n  name: a\n  inputs:\n    runCommand: [echo hi]\n".to_string(),
        ),
    ] {
        let doc = Document::parse_as("c", &text, format).unwrap();
        for other in [DocumentFormat::Json, DocumentFormat::Yaml] {
            let converted = doc.content_as(other);
            let again = Document::parse_as("c", &converted, other)
                .unwrap_or_else(|e| panic!("{format} as {other}: {e}\n{converted}"));
            assert_eq!(again.step_names(), vec!["a"], "{format} as {other}");
        }
    }
}
