//! The benchmark's small mode: 200 real agents (no-op executor) against a real
//! coordinator, on SQLite or, with `TETHER_TEST_DATABASE=postgres`, on a fresh
//! PostgreSQL database. Asserts only that it completes and accounts for every
//! invocation; its timings are for people, not for CI.

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
