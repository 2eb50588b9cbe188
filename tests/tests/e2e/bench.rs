//! The benchmark's small mode: 200 real agents (no-op executor) against a real
//! coordinator, on SQLite or, with `TETHER_TEST_DATABASE=postgres`, on a fresh
//! PostgreSQL database. Asserts only that it completes and accounts for every
//! invocation; its timings are for people, not for CI. Its commands are sent
//! by a policy-bound IAM user (`--principal user`), so the policy path is on.

use std::process::Command;

use serde_json::Value;
use tether_tests::{TestDatabase, bin};

#[test]
fn the_benchmark_small_mode_completes_and_accounts_for_every_invocation() {
    let tmp = tempfile::tempdir().unwrap();
    let database = TestDatabase::from_env();
    let out = Command::new(bin("tether-bench"))
        .args([
            "--agents",
            "200",
            "--history-invocations",
            "20000",
            "--idle-secs",
            "1",
            "--principal",
            "user",
        ])
        .arg("--work-dir")
        .arg(tmp.path())
        .args(database.iter().flat_map(|d| ["--database", d.url.as_str()]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tether-bench failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let figures: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line is not one JSON object ({e}): {last}"));
    assert_eq!(figures["agents"], 200);
    // Sent and listed by a policy-bound IAM user: every target evaluated.
    assert_eq!(figures["principal"], "user", "{figures}");
    assert_eq!(figures["invocations_accounted"], 200, "{figures}");
    assert_eq!(figures["invocations_succeeded"], 200, "{figures}");
    assert_eq!(figures["command_completed_count"], 200, "{figures}");
    for key in [
        "floor_ms",
        "registrations_per_sec",
        "fanout_total_ms",
        "fanout_ratio_to_floor",
        "invocation_p99_ms",
        "idle_rss_bytes_per_agent",
        "storm_all_back_ms",
        "storm_listen_overflows",
        "list_worst_p99_ms",
    ] {
        assert!(figures[key].is_number(), "{key} missing from {figures}");
    }
    assert!(stderr.contains("reconnect storm:"), "{stderr}");
}

/// `--real-agents`, small: three real `tether-agent` processes registered
/// with `tether-agent register`, real `/bin/true` steps under their
/// supervisors, and the one-node latency through new `tether` CLI
/// processes. Asserts that every invocation and every send is accounted for
/// and that every figure is in the last line; no timing.
#[test]
fn the_benchmark_with_real_agent_processes_accounts_for_every_step_and_send() {
    let tmp = tempfile::tempdir().unwrap();
    let database = TestDatabase::from_env();
    let out = Command::new(bin("tether-bench"))
        .args([
            "--real-agents",
            "--agents",
            "3",
            "--latency-sends",
            "3",
            "--idle-secs",
            "1",
        ])
        .arg("--work-dir")
        .arg(tmp.path())
        .arg("--agents-dir")
        .arg(tmp.path().join("agents"))
        .args(database.iter().flat_map(|d| ["--database", d.url.as_str()]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tether-bench failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let figures: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line is not one JSON object ({e}): {last}"));
    assert_eq!(figures["executor"], "real-agents", "{figures}");
    assert_eq!(figures["agents"], 3);
    assert_eq!(figures["invocations_accounted"], 3, "{figures}");
    assert_eq!(figures["invocations_succeeded"], 3, "{figures}");
    assert_eq!(figures["command_completed_count"], 3, "{figures}");
    assert_eq!(figures["one_node_sends"], 3, "{figures}");
    assert_eq!(figures["one_node_succeeded"], 3, "{figures}");
    for key in [
        "step_floor_ms",
        "one_step_floor_ms",
        "registrations_per_sec",
        "send_command_ms",
        "fanout_total_ms",
        "fanout_ratio_to_step_floor",
        "fanout_coordinator_cpu_us_per_invocation",
        "idle_rss_bytes_per_agent",
        "agent_idle_rss_kb",
        "one_node_latency_p50_ms",
        "one_node_latency_p99_ms",
        "cli_call_ms",
        "one_node_ratio_to_floor",
        "cores",
        "memory_kb",
    ] {
        assert!(figures[key].is_number(), "{key} missing from {figures}");
    }
    assert!(figures["commit"].is_string(), "{figures}");
    assert!(stderr.contains("one node: send -> terminal"), "{stderr}");
    // The agents ran the steps themselves: their logs say so.
    let logs: String = std::fs::read_dir(tmp.path().join("agents"))
        .unwrap()
        .flatten()
        .filter_map(|a| std::fs::read_to_string(a.path().join("log/agent.log")).ok())
        .collect();
    assert!(logs.contains("command finished"), "no agent ran a step");
}
