//! Parameter Store (issue 15): versions, labels, selectors, paths and
//! recursion, and SSM's error types, through the tether CLI and through
//! boto3 and the aws CLI; SecureString values sealed at rest (a scan of every
//! byte the coordinator wrote finds no secret in clear, base64 or hex); a
//! restricted user reads String values but not SecureString ones; key
//! rotation keeps every value readable; a wrong or missing key file stops the
//! start with a named error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tether_tests::aws::AwsClient;
use tether_tests::{Coordinator, bin, stderr_of as stderr, success_json};

const SECRET: &str = "Dj-Passw0rd!7f3a9c-e2e-0b1d";

/// Asserts a CLI call failed with SSM error `code` and returns its message.
fn refused(out: &Output, code: &str) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(254), "expected {code}: {err}");
    assert!(err.contains(&format!("({code})")), "expected {code}: {err}");
    err
}

/// Every form of `secret` the scan looks for: clear, hex (both cases) and
/// base64 at each of the three alignments (the characters that depend on
/// the secret's bytes alone).
fn forms(secret: &str) -> Vec<(String, Vec<u8>)> {
    let b = secret.as_bytes();
    let mut out = vec![
        ("clear".to_string(), b.to_vec()),
        ("hex".to_string(), hex::encode(b).into_bytes()),
        ("HEX".to_string(), hex::encode_upper(b).into_bytes()),
    ];
    for k in 0..3usize {
        let mut padded = vec![0u8; k];
        padded.extend_from_slice(b);
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE,
        ] {
            let e = engine.encode(&padded);
            let skip = if k == 0 { 0 } else { 4 };
            let core = &e[skip..e.len() - 4];
            out.push((format!("base64+{k}"), core.as_bytes().to_vec()));
        }
    }
    out
}

/// Every file under `root` that holds `secret` in any of its [`forms`].
pub fn scan(root: &Path, secret: &str) -> Vec<String> {
    let forms = forms(secret);
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_default();
                for (form, needle) in &forms {
                    if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                        found.push(format!("{} ({form})", p.display()));
                    }
                }
            }
        }
    }
    found
}

/// Scans answers (CLI output, API answers) for the secret.
pub fn scan_text(what: &str, text: &str, secret: &str) {
    for (form, needle) in forms(secret) {
        assert!(
            !text
                .as_bytes()
                .windows(needle.len())
                .any(|w| w == needle.as_slice()),
            "{what} holds the secret ({form}): {text}"
        );
    }
}

#[test]
fn versions_labels_selectors_paths_and_errors_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coord = Coordinator::start(dir.path());
    let put = |args: &[&str]| {
        let mut a = vec!["put-parameter"];
        a.extend_from_slice(args);
        coord.json(&a)
    };

    // Create; a second put without --overwrite is refused; with it, version 2.
    let v = put(&[
        "--name",
        "/app/db/host",
        "--value",
        "db1",
        "--type",
        "String",
        "--description",
        "primary",
    ]);
    assert_eq!(v, json!({"Version": 1, "Tier": "Standard"}));
    refused(
        &coord.cli(&[
            "put-parameter",
            "--name",
            "/app/db/host",
            "--value",
            "db2",
            "--type",
            "String",
        ]),
        "ParameterAlreadyExists",
    );
    let v = put(&["--name", "/app/db/host", "--value", "db2", "--overwrite"]);
    assert_eq!(v["Version"], json!(2));
    put(&[
        "--name",
        "/app/db/port",
        "--value",
        "5432",
        "--type",
        "String",
    ]);
    put(&[
        "--name",
        "/app/db/replicas",
        "--value",
        "r1,r2,r3",
        "--type",
        "StringList",
    ]);
    put(&[
        "--name",
        "/app/web/url",
        "--value",
        "https://x",
        "--type",
        "String",
    ]);
    put(&[
        "--name",
        "/app/db/password",
        "--value",
        SECRET,
        "--type",
        "SecureString",
    ]);
    put(&["--name", "toplevel", "--value", "t", "--type", "String"]);

    // Latest, by version, by label.
    let p = coord.json(&["get-parameter", "--name", "/app/db/host"]);
    assert_eq!(p["Parameter"]["Value"], json!("db2"));
    assert_eq!(p["Parameter"]["Version"], json!(2));
    assert_eq!(p["Parameter"]["Type"], json!("String"));
    assert_eq!(p["Parameter"]["DataType"], json!("text"));
    assert!(
        p["Parameter"]["ARN"]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:ssm:us-east-1:")
                && a.ends_with(":parameter/app/db/host")),
        "{p}"
    );
    let p = coord.json(&["get-parameter", "--name", "/app/db/host:1"]);
    assert_eq!(p["Parameter"]["Value"], json!("db1"));
    assert_eq!(p["Parameter"]["Selector"], json!(":1"));
    let l = coord.json(&[
        "label-parameter-version",
        "--name",
        "/app/db/host",
        "--parameter-version",
        "1",
        "--labels",
        "stable",
        "9bad",
    ]);
    assert_eq!(l, json!({"InvalidLabels": ["9bad"], "ParameterVersion": 1}));
    let p = coord.json(&["get-parameter", "--name", "/app/db/host:stable"]);
    assert_eq!(p["Parameter"]["Value"], json!("db1"));
    assert_eq!(p["Parameter"]["Selector"], json!(":stable"));
    // Moving the label to version 2.
    coord.json(&[
        "label-parameter-version",
        "--name",
        "/app/db/host",
        "--labels",
        "stable",
    ]);
    let p = coord.json(&["get-parameter", "--name", "/app/db/host:stable"]);
    assert_eq!(p["Parameter"]["Version"], json!(2));
    refused(
        &coord.cli(&["get-parameter", "--name", "/app/db/host:7"]),
        "ParameterVersionNotFound",
    );
    refused(
        &coord.cli(&["get-parameter", "--name", "/app/db/host:nolabel"]),
        "ParameterVersionNotFound",
    );
    refused(
        &coord.cli(&["get-parameter", "--name", "/nope"]),
        "ParameterNotFound",
    );

    // GetParameters: found and invalid.
    let g = coord.json(&[
        "get-parameters",
        "--names",
        "/app/db/host:1",
        "/app/db/port",
        "/nope",
    ]);
    assert_eq!(g["InvalidParameters"], json!(["/nope"]));
    let values: Vec<&str> = g["Parameters"]
        .as_array()
        .expect("Parameters")
        .iter()
        .map(|p| p["Value"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(values, ["db1", "5432"]);

    // Paths: one level and recursive, filters.
    let names = |v: &Value| -> Vec<String> {
        v["Parameters"]
            .as_array()
            .expect("Parameters")
            .iter()
            .map(|p| p["Name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let one = coord.json(&["get-parameters-by-path", "--path", "/app"]);
    assert!(names(&one).is_empty(), "{one}");
    let db = coord.json(&["get-parameters-by-path", "--path", "/app/db"]);
    assert_eq!(
        names(&db),
        [
            "/app/db/host",
            "/app/db/password",
            "/app/db/port",
            "/app/db/replicas"
        ]
    );
    let all = coord.json(&["get-parameters-by-path", "--path", "/", "--recursive"]);
    assert_eq!(names(&all).len(), 5, "{all}");
    // The secure one answers its ciphertext unless decryption is asked for.
    let secure = all["Parameters"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["Name"] == "/app/db/password"))
        .expect("the SecureString");
    assert_ne!(secure["Value"], json!(SECRET));
    scan_text(
        "get-parameters-by-path without decryption",
        &all.to_string(),
        SECRET,
    );
    let dec = coord.json(&[
        "get-parameters-by-path",
        "--path",
        "/app",
        "--recursive",
        "--with-decryption",
        "--parameter-filters",
        "Key=Type,Values=SecureString",
    ]);
    assert_eq!(names(&dec), ["/app/db/password"]);
    assert_eq!(dec["Parameters"][0]["Value"], json!(SECRET));
    refused(
        &coord.cli(&[
            "get-parameters-by-path",
            "--path",
            "/app",
            "--parameter-filters",
            "Key=Tier,Values=Standard",
        ]),
        "InvalidFilterKey",
    );
    refused(
        &coord.cli(&[
            "get-parameters-by-path",
            "--path",
            "/app",
            "--parameter-filters",
            "Key=Label,Option=BeginsWith,Values=x",
        ]),
        "InvalidFilterOption",
    );
    let labelled = coord.json(&[
        "get-parameters-by-path",
        "--path",
        "/app/db",
        "--parameter-filters",
        "Key=Label,Values=stable",
    ]);
    assert_eq!(names(&labelled), ["/app/db/host"]);
    // Paged: the CLI gathers every page (MaxResults 1 makes five).
    let paged = coord.json(&[
        "get-parameters-by-path",
        "--path",
        "/",
        "--recursive",
        "--page-size",
        "1",
    ]);
    assert_eq!(names(&paged).len(), 5, "{paged}");

    // DescribeParameters and its filters.
    let d = coord.json(&[
        "describe-parameters",
        "--parameter-filters",
        "Key=Name,Option=BeginsWith,Values=/app/db",
    ]);
    assert_eq!(names(&d).len(), 4, "{d}");
    let d = coord.json(&[
        "describe-parameters",
        "--parameter-filters",
        "Key=Type,Values=SecureString",
    ]);
    assert_eq!(names(&d), ["/app/db/password"]);
    assert_eq!(d["Parameters"][0]["KeyId"], json!("alias/tether/default"));
    assert!(!d.to_string().contains(SECRET));
    let d = coord.json(&[
        "describe-parameters",
        "--parameter-filters",
        "Key=Path,Option=OneLevel,Values=/app/web",
    ]);
    assert_eq!(names(&d), ["/app/web/url"]);
    refused(
        &coord.cli(&[
            "describe-parameters",
            "--parameter-filters",
            "Key=Label,Values=x",
        ]),
        "InvalidFilterKey",
    );

    // History with labels; unlabel.
    let h = coord.json(&["get-parameter-history", "--name", "/app/db/host"]);
    let hist = h["Parameters"].as_array().expect("history");
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[0]["Value"], json!("db1"));
    assert_eq!(hist[0]["Description"], json!("primary"));
    assert_eq!(hist[1]["Labels"], json!(["stable"]));
    assert!(
        hist[1]["LastModifiedUser"]
            .as_str()
            .is_some_and(|u| u.ends_with(":root")),
        "{h}"
    );
    let u = coord.json(&[
        "unlabel-parameter-version",
        "--name",
        "/app/db/host",
        "--parameter-version",
        "2",
        "--labels",
        "stable",
        "other",
    ]);
    assert_eq!(
        u,
        json!({"RemovedLabels": ["stable"], "InvalidLabels": ["other"]})
    );
    refused(
        &coord.cli(&[
            "unlabel-parameter-version",
            "--name",
            "/app/db/host",
            "--parameter-version",
            "9",
            "--labels",
            "x",
        ]),
        "ParameterVersionNotFound",
    );

    // Names, patterns, depth.
    let deep = "/l".repeat(16);
    refused(
        &coord.cli(&[
            "put-parameter",
            "--name",
            &deep,
            "--value",
            "x",
            "--type",
            "String",
        ]),
        "HierarchyLevelLimitExceededException",
    );
    refused(
        &coord.cli(&[
            "put-parameter",
            "--name",
            "/awsy/x",
            "--value",
            "x",
            "--type",
            "String",
        ]),
        "ValidationException",
    );
    refused(
        &coord.cli(&[
            "put-parameter",
            "--name",
            "/app/count",
            "--value",
            "twelve",
            "--type",
            "String",
            "--allowed-pattern",
            "^\\d+$",
        ]),
        "ParameterPatternMismatchException",
    );
    put(&[
        "--name",
        "/app/count",
        "--value",
        "12",
        "--type",
        "String",
        "--allowed-pattern",
        "^\\d+$",
    ]);
    // The pattern stays with the parameter.
    refused(
        &coord.cli(&[
            "put-parameter",
            "--name",
            "/app/count",
            "--value",
            "x",
            "--overwrite",
        ]),
        "ParameterPatternMismatchException",
    );
    refused(
        &coord.cli(&[
            "put-parameter",
            "--name",
            "/app/x",
            "--value",
            "1",
            "--type",
            "String",
            "--allowed-pattern",
            "([",
        ]),
        "InvalidAllowedPatternException",
    );
    refused(
        &coord.cli(&[
            "put-parameter",
            "--name",
            "/app/k",
            "--value",
            "1",
            "--type",
            "SecureString",
            "--key-id",
            "alias/none",
        ]),
        "InvalidKeyId",
    );
    refused(
        &coord.cli(&[
            "put-parameter",
            "--name",
            "/app/k",
            "--value",
            "1",
            "--type",
            "String",
            "--tier",
            "Advanced",
        ]),
        "ValidationException",
    );

    // 100 versions: the oldest goes; a labelled oldest stops the 101st.
    put(&["--name", "/v", "--value", "0", "--type", "String"]);
    for i in 1..100 {
        put(&["--name", "/v", "--value", &i.to_string(), "--overwrite"]);
    }
    let h = coord.json(&["get-parameter-history", "--name", "/v"]);
    assert_eq!(h["Parameters"].as_array().map(Vec::len), Some(100));
    coord.json(&[
        "label-parameter-version",
        "--name",
        "/v",
        "--parameter-version",
        "2",
        "--labels",
        "keep",
    ]);
    put(&["--name", "/v", "--value", "100", "--overwrite"]);
    let h = coord.json(&["get-parameter-history", "--name", "/v"]);
    assert_eq!(h["Parameters"][0]["Version"], json!(2), "version 1 went");
    let err = refused(
        &coord.cli(&[
            "put-parameter",
            "--name",
            "/v",
            "--value",
            "101",
            "--overwrite",
        ]),
        "ParameterMaxVersionLimitExceeded",
    );
    assert!(err.contains("keep"), "{err}");
    // Ten labels on one version, not eleven.
    let ten: Vec<String> = (0..10).map(|i| format!("l{i}")).collect();
    let mut args = vec![
        "label-parameter-version",
        "--name",
        "/v",
        "--parameter-version",
        "50",
        "--labels",
    ];
    args.extend(ten.iter().map(String::as_str));
    coord.json(&args);
    refused(
        &coord.cli(&[
            "label-parameter-version",
            "--name",
            "/v",
            "--parameter-version",
            "50",
            "--labels",
            "l10",
        ]),
        "ParameterVersionLabelLimitExceeded",
    );

    // Delete.
    coord.json(&["delete-parameter", "--name", "/app/web/url"]);
    refused(
        &coord.cli(&["delete-parameter", "--name", "/app/web/url"]),
        "ParameterNotFound",
    );
    let d = coord.json(&["delete-parameters", "--names", "/app/db/port", "/gone"]);
    assert_eq!(
        d,
        json!({"DeletedParameters": ["/app/db/port"], "InvalidParameters": ["/gone"]})
    );
    refused(
        &coord.cli(&["get-parameter-history", "--name", "/app/db/port"]),
        "ParameterNotFound",
    );

    // Tags through the tag verbs.
    coord.json(&[
        "add-tags-to-resource",
        "--resource-type",
        "Parameter",
        "--resource-id",
        "/app/db/host",
        "--tags",
        "Key=team,Value=db",
    ]);
    let d = coord.json(&[
        "describe-parameters",
        "--parameter-filters",
        "Key=tag:team,Values=db",
    ]);
    assert_eq!(names(&d), ["/app/db/host"]);

    // Nothing the coordinator wrote holds the secret.
    let found = scan(dir.path(), SECRET);
    assert!(found.is_empty(), "the secret is stored in clear: {found:?}");
}

/// Runs `tether serve` on `data_dir` expecting it to refuse to start;
/// answers its stderr.
fn failed_start(coord: &Coordinator) -> String {
    let mut cmd = Command::new(bin("tether"));
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(&coord.dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--http-listen")
        .arg("127.0.0.1:0")
        .args(
            coord
                .database
                .iter()
                .flat_map(|d| ["--database", d.url.as_str()]),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start tether serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(!status.success(), "tether serve started");
            let out = child.wait_with_output().expect("output");
            return stderr(&out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tether serve neither started nor stopped");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn key_file(coord: &Coordinator, key: &str) -> PathBuf {
    coord
        .dir
        .join("parameter-keys")
        .join(format!("{}.key", key.replace('/', "+")))
}

#[test]
fn key_rotation_keeps_values_readable_and_bad_key_files_stop_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut coord = Coordinator::start(dir.path());
    let k = coord.json(&[
        "create-parameter-key",
        "--key-id",
        "alias/tether/db-team",
        "--description",
        "db team",
    ]);
    assert_eq!(k["Key"]["Generation"], json!(1));
    refused(
        &coord.cli(&["create-parameter-key", "--key-id", "alias/tether/db-team"]),
        "AlreadyExistsException",
    );
    let put = |name: &str, value: &str, key: Option<&str>| {
        let mut a = vec![
            "put-parameter",
            "--name",
            name,
            "--value",
            value,
            "--type",
            "SecureString",
            "--overwrite",
        ];
        if let Some(k) = key {
            a.extend(["--key-id", k]);
        }
        coord.json(&a);
    };
    let get = |coord: &Coordinator, name: &str| -> String {
        coord.json(&["get-parameter", "--name", name, "--with-decryption"])["Parameter"]["Value"]
            .as_str()
            .expect("Value")
            .to_string()
    };
    put("/s/before-default", "value-before-default-0001", None);
    put(
        "/s/before-team",
        "value-before-team-0002",
        Some("alias/tether/db-team"),
    );
    put(
        "/s/before-team",
        "value-before-team-0003",
        Some("alias/tether/db-team"),
    );
    let r = coord.json(&["rotate-parameter-key", "--key-id", "alias/tether/db-team"]);
    assert_eq!(r["Key"]["Generation"], json!(2), "{r}");
    assert_eq!(r["RewrappedDataKeys"], json!(2), "{r}");
    let r = coord.json(&["rotate-parameter-key", "--key-id", "alias/tether/default"]);
    assert_eq!(r["RewrappedDataKeys"], json!(1), "{r}");
    put(
        "/s/after-team",
        "value-after-team-0004",
        Some("alias/tether/db-team"),
    );
    assert_eq!(
        get(&coord, "/s/before-default"),
        "value-before-default-0001"
    );
    assert_eq!(get(&coord, "/s/before-team"), "value-before-team-0003");
    assert_eq!(get(&coord, "/s/before-team:1"), "value-before-team-0002");
    assert_eq!(get(&coord, "/s/after-team"), "value-after-team-0004");
    let keys = coord.json(&["list-parameter-keys"]);
    let team = keys["Keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["KeyId"] == "alias/tether/db-team"))
        .expect("the team key");
    assert_eq!(team["WrappedDataKeys"], json!(3), "{keys}");
    assert_eq!(team["Generation"], json!(2));

    // After a restart every value still opens.
    coord.restart();
    assert_eq!(get(&coord, "/s/before-team:1"), "value-before-team-0002");
    assert_eq!(get(&coord, "/s/after-team"), "value-after-team-0004");

    // A wrong key file: a named startup error, not garbage.
    coord.stop();
    let path = key_file(&coord, "alias/tether/db-team");
    let good = std::fs::read(&path).expect("the team key file");
    let text = String::from_utf8(good.clone()).expect("text");
    let wrong: String = text
        .lines()
        .map(|l| match l.split_once(' ') {
            Some((g, _)) if g.parse::<i64>().is_ok() => format!("{g} {}\n", "ab".repeat(32)),
            _ => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&path, wrong).expect("write");
    let err = failed_start(&coord);
    assert!(
        err.contains("alias/tether/db-team") && err.contains("wrong or stale key file"),
        "{err}"
    );
    // A missing one too.
    std::fs::remove_file(&path).expect("remove");
    let err = failed_start(&coord);
    assert!(
        err.contains("alias/tether/db-team") && err.contains("is missing"),
        "{err}"
    );
    // Restored, it starts and decrypts again.
    std::fs::write(&path, &good).expect("restore");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    coord.restart();
    assert_eq!(get(&coord, "/s/after-team"), "value-after-team-0004");

    for secret in [
        "value-before-default-0001",
        "value-before-team-0002",
        "value-before-team-0003",
        "value-after-team-0004",
    ] {
        let found = scan(&coord.dir, secret);
        assert!(found.is_empty(), "{secret} is stored in clear: {found:?}");
    }
}

const READER_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "ReadParameters", "Effect": "Allow",
     "Action": ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:DescribeParameters"],
     "Resource": "*"}
  ]
}"#;

const DECRYPT_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "DecryptDefault", "Effect": "Allow", "Action": "kms:Decrypt",
     "Resource": "arn:aws:kms:*:*:alias/tether/default"}
  ]
}"#;

#[test]
fn a_restricted_user_reads_strings_but_not_secure_strings_and_boto3_agrees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coord = Coordinator::start(dir.path());
    coord.json(&[
        "put-parameter",
        "--name",
        "/team/plain",
        "--value",
        "visible",
        "--type",
        "String",
    ]);
    coord.json(&[
        "put-parameter",
        "--name",
        "/team/secret",
        "--value",
        SECRET,
        "--type",
        "SecureString",
    ]);
    coord.json(&["create-user", "--user-name", "reader"]);
    coord.json(&[
        "put-user-policy",
        "--user-name",
        "reader",
        "--policy-name",
        "read",
        "--policy-document",
        READER_POLICY,
    ]);
    let config = coord.json(&[
        "create-operator-config",
        "--user-name",
        "reader",
        "--expires-in",
        "1d",
    ]);
    let reader = dir.path().join("reader.json");
    std::fs::write(&reader, config.to_string()).expect("write");
    let as_reader = |args: &[&str]| {
        Command::new(bin("tether"))
            .arg("--config")
            .arg(&reader)
            .args(args)
            .output()
            .expect("run tether")
    };
    let v = success_json(
        "reader get",
        &as_reader(&["get-parameter", "--name", "/team/plain"]),
    );
    assert_eq!(v["Parameter"]["Value"], json!("visible"));
    // Without decryption the SecureString answers only its ciphertext.
    let v = success_json(
        "reader get",
        &as_reader(&["get-parameter", "--name", "/team/secret"]),
    );
    assert_ne!(v["Parameter"]["Value"], json!(SECRET));
    let err = refused(
        &as_reader(&[
            "get-parameter",
            "--name",
            "/team/secret",
            "--with-decryption",
        ]),
        "AccessDeniedException",
    );
    assert!(
        err.contains("kms:Decrypt") && err.contains("alias/tether/default"),
        "{err}"
    );
    scan_text("the refusal", &err, SECRET);
    refused(
        &as_reader(&[
            "get-parameters-by-path",
            "--path",
            "/team",
            "--with-decryption",
        ]),
        "AccessDeniedException",
    );
    refused(
        &as_reader(&[
            "put-parameter",
            "--name",
            "/team/x",
            "--value",
            "1",
            "--type",
            "String",
        ]),
        "AccessDeniedException",
    );
    // Granted kms:Decrypt on the key, it reads the value.
    coord.json(&[
        "put-user-policy",
        "--user-name",
        "reader",
        "--policy-name",
        "decrypt",
        "--policy-document",
        DECRYPT_POLICY,
    ]);
    let v = success_json(
        "reader get decrypted",
        &as_reader(&[
            "get-parameter",
            "--name",
            "/team/secret",
            "--with-decryption",
        ]),
    );
    assert_eq!(v["Parameter"]["Value"], json!(SECRET));

    // The audit trail has both: the refused and the allowed decryption
    // (written before their answers), and the plain read (batched, so
    // waited for) — and never the value.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let events = loop {
        let page = coord.json(&[
            "lookup-events",
            "--lookup-attributes",
            "AttributeKey=Username,AttributeValue=reader",
        ]);
        scan_text("lookup-events", &page.to_string(), SECRET);
        let events: Vec<Value> = page["Events"]
            .as_array()
            .unwrap_or_else(|| panic!("Events: {page}"))
            .iter()
            .filter(|e| e["EventName"] == json!("GetParameter"))
            .map(|e| {
                serde_json::from_str(e["CloudTrailEvent"].as_str().expect("CloudTrailEvent"))
                    .expect("CloudTrailEvent is JSON")
            })
            .collect();
        let plain_read = events
            .iter()
            .any(|r| r["requestParameters"]["Name"] == json!("/team/plain"));
        if plain_read || std::time::Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let decrypting = |r: &&Value| {
        r["requestParameters"]["Name"] == json!("/team/secret")
            && r["requestParameters"]["WithDecryption"] == json!(true)
    };
    assert!(
        events
            .iter()
            .filter(decrypting)
            .any(|r| r["errorCode"] == json!("AccessDeniedException")),
        "the refused decryption is in the trail: {events:#?}"
    );
    assert!(
        events
            .iter()
            .filter(decrypting)
            .any(|r| r.get("errorCode").is_none()),
        "the allowed decryption is in the trail: {events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|r| r["requestParameters"]["Name"] == json!("/team/plain")
                && r.get("errorCode").is_none()),
        "the String read is in the trail: {events:#?}"
    );

    // boto3 (root's access key) and the aws CLI over HTTPS.
    let aws = AwsClient::issue(&coord);
    let out = aws
        .command("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/py/parameters_boto3.py"
        ))
        .env("SSM_ENDPOINT", &aws.endpoint)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "boto3: {}\n{}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    let v = aws.aws_json(&[
        "put-parameter",
        "--name",
        "/cli/secret",
        "--value",
        "aws-cli-secret-value-42",
        "--type",
        "SecureString",
    ]);
    assert_eq!(v["Version"], json!(1));
    let v = aws.aws_json(&[
        "get-parameters-by-path",
        "--path",
        "/cli",
        "--recursive",
        "--with-decryption",
    ]);
    assert_eq!(
        v["Parameters"][0]["Value"],
        json!("aws-cli-secret-value-42")
    );
    let found = scan(dir.path(), "aws-cli-secret-value-42");
    assert!(found.is_empty(), "{found:?}");
}

const SENDER_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Send", "Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "*"},
    {"Sid": "Read", "Effect": "Allow", "Action": ["ssm:List*", "ssm:Get*"], "Resource": "*"},
    {"Sid": "NotTheAdjoinTree", "Effect": "Deny", "Action": "ssm:GetParameters",
     "Resource": "arn:aws:ssm:*:*:parameter/adjoin/*"}
  ]
}"#;

#[test]
fn commands_resolve_plain_references_at_send_and_history_keeps_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coord = Coordinator::start(dir.path());
    let agent = tether_tests::Agent::start(dir.path(), "node1", &coord);
    coord.json(&[
        "put-parameter",
        "--name",
        "/adjoin/user",
        "--value",
        "svc-join",
        "--type",
        "String",
    ]);
    coord.json(&[
        "put-parameter",
        "--name",
        "/adjoin/user",
        "--value",
        "svc-join-2",
        "--overwrite",
    ]);
    coord.json(&[
        "put-parameter",
        "--name",
        "/adjoin/password",
        "--value",
        SECRET,
        "--type",
        "SecureString",
    ]);

    let params =
        json!({"commands": ["echo user={{ssm:/adjoin/user}} old={{ ssm:/adjoin/user:1 }}"]});
    let id = coord.send(&[&agent.instance_id], &params);
    let inv = coord.wait_invocation(&id, &agent.instance_id, Duration::from_secs(60));
    assert_eq!(inv["Status"], json!("Success"), "{inv}");
    assert_eq!(
        inv["StandardOutputContent"],
        json!("user=svc-join-2 old=svc-join\n"),
        "{inv}"
    );
    // The history keeps the reference, never the value.
    let listed = coord.json(&["list-commands", "--command-id", &id]);
    let shown = listed["Commands"][0]["Parameters"]["commands"][0].clone();
    assert_eq!(
        shown,
        json!("echo user={{ssm:/adjoin/user}} old={{ ssm:/adjoin/user:1 }}"),
        "{listed}"
    );

    // A missing parameter is refused, naming it; nothing is sent.
    let before = coord.json(&["list-commands"])["Commands"]
        .as_array()
        .map(Vec::len);
    let missing = json!({"commands": ["echo {{ssm:/adjoin/none}}"]}).to_string();
    let err = refused(
        &coord.cli(&[
            "send-command",
            "--document-name",
            "AWS-RunShellScript",
            "--instance-ids",
            &agent.instance_id,
            "--parameters",
            &missing,
        ]),
        "InvalidParameters",
    );
    assert!(err.contains("/adjoin/none"), "{err}");
    // A String named with ssm-secure (or the reverse) is refused.
    let wrong = json!({"commands": ["echo {{ssm:/adjoin/password}}"]}).to_string();
    refused(
        &coord.cli(&[
            "send-command",
            "--document-name",
            "AWS-RunShellScript",
            "--instance-ids",
            &agent.instance_id,
            "--parameters",
            &wrong,
        ]),
        "InvalidParameters",
    );

    // A user who may send but not read /adjoin/* is refused; nothing sent.
    coord.json(&["create-user", "--user-name", "sender"]);
    coord.json(&[
        "put-user-policy",
        "--user-name",
        "sender",
        "--policy-name",
        "send",
        "--policy-document",
        SENDER_POLICY,
    ]);
    let config = coord.json(&[
        "create-operator-config",
        "--user-name",
        "sender",
        "--expires-in",
        "1d",
    ]);
    let sender = dir.path().join("sender.json");
    std::fs::write(&sender, config.to_string()).expect("write");
    let as_sender = |args: &[&str]| {
        Command::new(bin("tether"))
            .arg("--config")
            .arg(&sender)
            .args(args)
            .output()
            .expect("run tether")
    };
    let plain = json!({"commands": ["echo {{ssm:/adjoin/user}}"]}).to_string();
    let err = refused(
        &as_sender(&[
            "send-command",
            "--document-name",
            "AWS-RunShellScript",
            "--instance-ids",
            &agent.instance_id,
            "--parameters",
            &plain,
        ]),
        "AccessDeniedException",
    );
    assert!(
        err.contains("ssm:GetParameters") && err.contains("parameter/adjoin/user"),
        "{err}"
    );
    let after = coord.json(&["list-commands"])["Commands"]
        .as_array()
        .map(Vec::len);
    assert_eq!(before, after, "a refused command was stored");
    let found = scan(dir.path(), SECRET);
    assert!(found.is_empty(), "{found:?}");
}
