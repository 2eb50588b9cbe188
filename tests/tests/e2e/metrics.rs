//! Metrics and node status (issue 18): `/metrics` on the HTTPS listener for
//! an operator token allowed `tether:GetMetrics` (root, a user allowed it),
//! refused without a token (401) and to a user not allowed (403), each
//! refusal in the audit trail; the text parsed by the official Prometheus
//! client's parser (`prometheus_client` in the test venv), and its counters
//! moving by what a command to two agents does. `--metrics-listen` serves
//! the same over plain HTTP without authentication. `tether-agent status
//! --output json` against the registered instance.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::{Agent, Coordinator, tether_as, wait_for};

/// `GET URL` with curl (the coordinator's CA trusted for https), with an
/// optional bearer token: the status and the body.
fn get(coord: &Coordinator, url: &str, token: Option<&str>) -> (u16, String) {
    let ca = coord.dir.with_extension("metrics-ca.pem");
    std::fs::write(
        &ca,
        coord.operator()["CaCertificate"]
            .as_str()
            .expect("CaCertificate"),
    )
    .expect("write the CA");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args(["-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("curl {url}: {}", String::from_utf8_lossy(&out.stderr)));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn https_metrics(coord: &Coordinator, token: Option<&str>) -> (u16, String) {
    get(
        coord,
        &format!("https://localhost:{}/metrics", coord.http_port),
        token,
    )
}

/// The metrics as the Prometheus client's own parser reads them: family
/// name → its type and samples (sample name, labels, value). The parser
/// refuses what is not the text format.
pub fn parse(text: &str) -> BTreeMap<String, Value> {
    let venv = tether_tests::aws::venv();
    let code = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;
    let mut child = Command::new(venv.join("bin/python3"))
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the metrics");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "prometheus_client could not parse the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// The value of sample `name` with exactly `labels` (0 when absent).
pub fn sample(families: &BTreeMap<String, Value>, name: &str, labels: &Value) -> f64 {
    families
        .values()
        .flat_map(|f| f["samples"].as_array().cloned().unwrap_or_default())
        .find(|s| s[0] == json!(name) && &s[1] == labels)
        .and_then(|s| s[2].as_f64())
        .unwrap_or(0.0)
}

fn family_type(families: &BTreeMap<String, Value>, name: &str) -> String {
    families
        .get(name)
        .unwrap_or_else(|| panic!("no family {name} in {:?}", families.keys()))["type"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A user with an inline policy allowing `actions`, and its operator config.
fn user(coord: &Coordinator, dir: &std::path::Path, name: &str, actions: &[&str]) -> Value {
    coord.json(&["create-user", "--user-name", name]);
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    });
    let out = coord.cli(&[
        "put-user-policy",
        "--user-name",
        name,
        "--policy-name",
        "p",
        "--policy-document",
        &policy.to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = coord.json(&["create-operator-config", "--user-name", name]);
    std::fs::write(dir.join(format!("{name}.json")), config.to_string())
        .expect("write the operator config");
    config
}

/// Audit events named `name` (LookupEvents as root), each with its record.
fn events(coord: &Coordinator, name: &str) -> Vec<Value> {
    let page = coord.json(&[
        "lookup-events",
        "--lookup-attributes",
        &format!("AttributeKey=EventName,AttributeValue={name}"),
    ]);
    page["Events"]
        .as_array()
        .unwrap_or_else(|| panic!("Events: {page}"))
        .iter()
        .map(|e| {
            serde_json::from_str(e["CloudTrailEvent"].as_str().expect("CloudTrailEvent"))
                .expect("CloudTrailEvent is JSON")
        })
        .collect()
}

#[test]
fn metrics_are_served_to_allowed_operators_and_move_when_commands_run() {
    let tmp = tempfile::tempdir().unwrap();
    let coord =
        Coordinator::start_with_env(tmp.path(), &[("TETHER_METRICS_LISTEN", "127.0.0.9:0")]);
    let a = Agent::start(tmp.path(), "a", &coord);
    let b = Agent::start(tmp.path(), "b", &coord);
    let root = coord.operator()["Token"].as_str().unwrap().to_string();

    // Root's token: every series, of the right type.
    let (code, text) = https_metrics(&coord, Some(&root));
    assert_eq!(code, 200, "{text}");
    let before = parse(&text);
    for (family, kind) in [
        ("tether_agents_registered", "gauge"),
        ("tether_agents_online", "gauge"),
        ("tether_agents_connected", "gauge"),
        ("tether_polls", "counter"),
        ("tether_deliveries", "counter"),
        ("tether_invocations_finished", "counter"),
        ("tether_result_latency_seconds", "histogram"),
        ("tether_db_statement_duration_seconds", "histogram"),
        ("tether_writer_batch_size", "histogram"),
        ("tether_registrations", "counter"),
        ("tether_registration_refusals", "counter"),
        ("tether_replica_leader", "gauge"),
        ("tether_bridge_calls", "counter"),
        ("tether_bridge_throttles", "counter"),
        ("tether_audit_records_written", "counter"),
    ] {
        assert_eq!(family_type(&before, family), kind, "{family}");
    }
    let none = json!({});
    assert_eq!(sample(&before, "tether_agents_registered", &none), 2.0);
    assert_eq!(sample(&before, "tether_agents_online", &none), 2.0);
    assert_eq!(sample(&before, "tether_registrations_total", &none), 2.0);
    assert_eq!(
        sample(&before, "tether_replica_leader", &json!({"role": "sweep"})),
        1.0,
        "{text}"
    );
    // Bounded labels: no instance or command ID anywhere.
    assert!(
        !text.contains(&a.instance_id) && !text.contains("mi-"),
        "{text}"
    );
    wait_for(
        "both agents to hold a poll",
        Duration::from_secs(20),
        || {
            let (_, t) = https_metrics(&coord, Some(&root));
            (sample(&parse(&t), "tether_agents_connected", &none) == 2.0).then_some(())
        },
    );

    // A command to both agents: two deliveries, two results Success.
    let (_, text) = https_metrics(&coord, Some(&root));
    let before = parse(&text);
    let command_id = coord.send(
        &[&a.instance_id, &b.instance_id],
        &json!({"commands": ["echo metrics"]}),
    );
    for id in [&a.instance_id, &b.instance_id] {
        let inv = coord.wait_invocation(&command_id, id, Duration::from_secs(30));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
    }
    let (code, text) = https_metrics(&coord, Some(&root));
    assert_eq!(code, 200);
    let after = parse(&text);
    let moved =
        |name: &str, labels: &Value| sample(&after, name, labels) - sample(&before, name, labels);
    assert_eq!(moved("tether_deliveries_total", &none), 2.0, "{text}");
    assert_eq!(
        moved(
            "tether_invocations_finished_total",
            &json!({"status": "Success"})
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        moved(
            "tether_invocations_finished_total",
            &json!({"status": "Failed"})
        ),
        0.0
    );
    assert!(moved("tether_polls_total", &none) >= 2.0, "{text}");
    assert_eq!(
        moved("tether_result_latency_seconds_count", &none),
        2.0,
        "{text}"
    );
    assert!(
        moved(
            "tether_db_statement_duration_seconds_count",
            &json!({"statement": "write_batch"})
        ) >= 1.0,
        "{text}"
    );
    assert!(
        moved("tether_writer_batch_size_sum", &none) >= 4.0,
        "claims and results: {text}"
    );
    assert!(
        moved("tether_audit_records_written_total", &none) >= 2.0,
        "{text}"
    );

    // A registration with a wrong code: counted by its reason, and nothing else.
    let (activation_id, _) = coord.activation(1);
    let out = tether_tests::register(
        &tmp.path().join("wrong"),
        &coord.endpoint(),
        &activation_id,
        "AAAAAAAAAAAAAAAAAAAA",
        &coord.ca_pin(),
    );
    assert!(!out.status.success());
    let (_, text) = https_metrics(&coord, Some(&root));
    let refused = parse(&text);
    let refusals = |m: &BTreeMap<String, Value>, reason: &str| {
        sample(
            m,
            "tether_registration_refusals_total",
            &json!({ "reason": reason }),
        )
    };
    assert_eq!(
        refusals(&refused, "wrong_id_or_code") - refusals(&after, "wrong_id_or_code"),
        1.0,
        "{text}"
    );
    assert_eq!(refusals(&refused, "expired"), 0.0, "{text}");
    assert_eq!(sample(&refused, "tether_registrations_total", &none), 2.0);

    // A user allowed tether:GetMetrics reads them; its read is recorded.
    let watcher = user(&coord, tmp.path(), "watcher", &["tether:GetMetrics"]);
    let (code, text) = https_metrics(&coord, watcher["Token"].as_str());
    assert_eq!(code, 200, "{text}");
    parse(&text);
    // The same operation on the operator channel, for the CLI.
    let out = tether_as(&tmp.path().join("watcher.json"), &["get-metrics"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    parse(answer["Metrics"].as_str().expect("Metrics"));

    // A user allowed other things is refused, and the refusal is recorded.
    let nosy = user(&coord, tmp.path(), "nosy", &["ssm:*"]);
    let (code, text) = https_metrics(&coord, nosy["Token"].as_str());
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("AccessDeniedException"), "{text}");
    assert!(text.contains("tether:GetMetrics"), "{text}");
    let refused = wait_for(
        "nosy's refusal in the trail",
        Duration::from_secs(10),
        || {
            events(&coord, "GetMetrics")
                .into_iter()
                .find(|e| e["userIdentity"]["userName"] == json!("nosy"))
        },
    );
    assert_eq!(
        refused["errorCode"],
        json!("AccessDeniedException"),
        "{refused}"
    );
    // A read is recorded by the trail's queue (`later`), a refusal at once:
    // the watcher's earlier read may land after nosy's refusal.
    wait_for(
        "watcher's read in the trail",
        Duration::from_secs(10),
        || {
            events(&coord, "GetMetrics")
                .iter()
                .any(|e| {
                    e["userIdentity"]["userName"] == json!("watcher") && e["errorCode"].is_null()
                })
                .then_some(())
        },
    );

    // No token, or one the coordinator does not know: 401, recorded.
    let (code, text) = https_metrics(&coord, None);
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("missing operator token"), "{text}");
    let (code, text) = https_metrics(&coord, Some("not-a-token"));
    assert_eq!(code, 401, "{text}");
    wait_for(
        "the unauthenticated refusals in the trail",
        Duration::from_secs(10),
        || {
            let refusals: Vec<Value> = events(&coord, "Authenticate")
                .into_iter()
                .filter(|e| {
                    e["errorMessage"]
                        .as_str()
                        .is_some_and(|m| m.contains("operator token"))
                })
                .collect();
            (refusals.len() >= 2).then_some(())
        },
    );

    // --metrics-listen: plain HTTP on 127.0.0.9, no authentication.
    let addr = coord
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("metrics listening on "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics line in {:?}", coord.stdout))
        .to_string();
    assert!(addr.starts_with("127.0.0.9:"), "{addr}");
    let (code, text) = get(&coord, &format!("http://{addr}/metrics"), None);
    assert_eq!(code, 200, "{text}");
    let plain = parse(&text);
    assert_eq!(sample(&plain, "tether_agents_registered", &none), 2.0);
    assert!(
        sample(
            &plain,
            "tether_invocations_finished_total",
            &json!({"status": "Success"})
        ) >= 2.0
    );
    let (code, text) = get(&coord, &format!("http://{addr}/other"), None);
    assert_eq!(code, 404, "{text}");
}

#[test]
fn agent_status_as_json_names_the_registered_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let agent = Agent::start(tmp.path(), "node", &coord);
    let status = |state: &std::path::Path| {
        let out = Command::new(tether_tests::bin("tether-agent"))
            .args(["status", "--output", "json", "--state-dir"])
            .arg(state)
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .output()
            .expect("run tether-agent status");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --output json is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.code(), report)
    };
    // Its first poll is recorded by the daemon.
    let (code, report) = wait_for("a recorded poll", Duration::from_secs(20), || {
        let (code, report) = status(&agent.state_dir);
        (!report["LastPoll"].is_null()).then_some((code, report))
    });
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["Registered"], json!(true), "{report}");
    assert_eq!(report["InstanceId"], json!(agent.instance_id), "{report}");
    assert_eq!(report["Endpoints"], json!([coord.endpoint()]), "{report}");
    assert_eq!(report["Connected"], json!(true), "{report}");
    assert_eq!(report["Healthy"], json!(true), "{report}");
    assert_eq!(report["CertificateValid"], json!(true), "{report}");
    assert_eq!(report["PendingResults"], json!(0), "{report}");
    assert_eq!(
        report["Coordinators"][0]["Reachable"],
        json!(true),
        "{report}"
    );
    assert!(
        report["Coordinators"][0]["ClockSkewMs"]
            .as_i64()
            .unwrap()
            .abs()
            < 30_000,
        "{report}"
    );
    assert!(
        !report["AgentVersion"].as_str().unwrap().is_empty(),
        "{report}"
    );
    for key in ["CertificateExpires", "LastPoll", "RegisteredAt"] {
        let at = report[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: {report}"));
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "{key} {at} is ISO 8601"
        );
    }
    // What DescribeInstanceInformation says of it agrees.
    let listed = coord.json(&["describe-instance-information"]);
    let mine = listed["InstanceInformationList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["InstanceId"] == report["InstanceId"])
        .unwrap_or_else(|| panic!("{listed}"))
        .clone();
    assert_eq!(mine["AgentVersion"], report["AgentVersion"], "{mine}");

    // An unregistered state directory: the same exit code as the text, and
    // every key still there.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, report) = status(&empty);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["Registered"], json!(false), "{report}");
    assert_eq!(report["Healthy"], json!(false), "{report}");
    assert!(report["RegistrationError"].is_string(), "{report}");
    assert!(
        report.as_object().unwrap().contains_key("InstanceId"),
        "{report}"
    );
    let text = Command::new(tether_tests::bin("tether-agent"))
        .args(["status", "--state-dir"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(text.status.code(), Some(1));
}

/// `tether_invocations_finished_total` moves once per invocation that
/// reaches a final status, on every path: agents' results, MaxErrors'
/// Terminated (never delivered), a cancellation the agent confirms. And a
/// scraper's successful HTTPS scrapes are recorded once an hour, its
/// refusals every time.
#[test]
fn finished_invocations_are_counted_once_on_every_path_and_scrapes_are_recorded_hourly() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let a = Agent::start(tmp.path(), "a", &coord);
    let b = Agent::start(tmp.path(), "b", &coord);
    let root = coord.operator()["Token"].as_str().unwrap().to_string();
    let none = json!({});
    let scrape = || {
        let (code, text) = https_metrics(&coord, Some(&root));
        assert_eq!(code, 200, "{text}");
        parse(&text)
    };
    let finished = |m: &BTreeMap<String, Value>, status: &str| {
        sample(
            m,
            "tether_invocations_finished_total",
            &json!({ "status": status }),
        )
    };

    // MaxConcurrency 1, MaxErrors 0, a step that fails: the first node
    // fails, the other is never delivered and ends Terminated (Failed).
    let before = scrape();
    let sent = coord.json(&[
        "send-command",
        "--document-name",
        "AWS-RunShellScript",
        "--parameters",
        r#"{"commands":["exit 3"]}"#,
        "--instance-ids",
        &a.instance_id,
        &b.instance_id,
        "--max-concurrency",
        "1",
        "--max-errors",
        "0",
    ]);
    let command_id = sent["Command"]["CommandId"].as_str().unwrap().to_string();
    let details = wait_for(
        "one Failed and one Terminated",
        Duration::from_secs(40),
        || {
            let l = coord.json(&["list-command-invocations", "--command-id", &command_id]);
            let mut d: Vec<String> = l["CommandInvocations"]
                .as_array()?
                .iter()
                .map(|i| i["StatusDetails"].as_str().unwrap_or("").to_string())
                .collect();
            d.sort();
            (d == ["Failed", "Terminated"]).then_some(d)
        },
    );
    assert_eq!(details, ["Failed", "Terminated"]);
    let after = scrape();
    assert_eq!(
        finished(&after, "Failed") - finished(&before, "Failed"),
        2.0,
        "the Terminated one counts too"
    );
    assert_eq!(finished(&after, "Success"), finished(&before, "Success"));

    // A cancellation the agent confirms: Cancelling is not final, Cancelled
    // is counted once.
    let command_id = coord.send(&[&a.instance_id], &json!({"commands": ["sleep 30"]}));
    wait_for("the step to start", Duration::from_secs(30), || {
        (coord.invocation(&command_id, &a.instance_id)["Status"] == "InProgress").then_some(())
    });
    coord.json(&["cancel-command", "--command-id", &command_id]);
    let inv = coord.wait_invocation(&command_id, &a.instance_id, Duration::from_secs(30));
    assert_eq!(inv["Status"], "Cancelled", "{inv}");
    let cancelled = scrape();
    assert_eq!(
        finished(&cancelled, "Cancelled") - finished(&after, "Cancelled"),
        1.0
    );
    assert_eq!(finished(&cancelled, "Failed"), finished(&after, "Failed"));
    let total = |m: &BTreeMap<String, Value>| {
        ["Success", "Failed", "TimedOut", "Cancelled"]
            .iter()
            .map(|s| finished(m, s))
            .sum::<f64>()
    };
    assert_eq!(
        total(&cancelled),
        3.0,
        "three invocations, three final statuses"
    );
    assert!(sample(&cancelled, "tether_agents_registered", &none) == 2.0);

    // Scrapes: root scraped five times above; the trail holds one
    // successful GetMetrics over HTTPS (the first of the hour).
    let https_reads = |name: Option<&str>| {
        events(&coord, "GetMetrics")
            .into_iter()
            .filter(|e| {
                e["additionalEventData"]["tether"]["transport"] == json!("https")
                    && e["errorCode"].is_null()
                    && name.is_none_or(|n| e["userIdentity"]["userName"] == json!(n))
            })
            .count()
    };
    let recorded = wait_for("the first scrape's record", Duration::from_secs(10), || {
        let n = https_reads(None);
        (n >= 1).then_some(n)
    });
    assert_eq!(recorded, 1, "one record for five scrapes");
    // A refused scraper: every refusal is recorded.
    let nosy = user(&coord, tmp.path(), "nosy", &["ssm:*"]);
    for _ in 0..3 {
        let (code, _) = https_metrics(&coord, nosy["Token"].as_str());
        assert_eq!(code, 403);
    }
    wait_for("three refusals recorded", Duration::from_secs(10), || {
        let n = events(&coord, "GetMetrics")
            .into_iter()
            .filter(|e| {
                e["userIdentity"]["userName"] == json!("nosy")
                    && e["errorCode"] == json!("AccessDeniedException")
            })
            .count();
        (n == 3).then_some(())
    });
    // Another principal's first scrape is recorded on its own.
    let watcher = user(&coord, tmp.path(), "watcher", &["tether:GetMetrics"]);
    for _ in 0..2 {
        let (code, _) = https_metrics(&coord, watcher["Token"].as_str());
        assert_eq!(code, 200);
    }
    let n = wait_for("watcher's scrape recorded", Duration::from_secs(10), || {
        let n = https_reads(Some("watcher"));
        (n >= 1).then_some(n)
    });
    assert_eq!(n, 1);
    drop((a, b));
}
