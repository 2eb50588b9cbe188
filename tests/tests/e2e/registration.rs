//! Registration: success, and each refusal with its message.

use std::time::Duration;

use serde_json::json;
use tether_tests::{Coordinator, register};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn registers_and_refuses_each_bad_attempt_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let (ep, pin) = (coord.endpoint(), coord.ca_pin());
    assert!(
        coord.stdout.iter().any(|l| l == &format!("CA pin: {pin}")),
        "{:?}",
        coord.stdout
    );
    let (id, code) = coord.activation(1);

    // Wrong code, then the right one.
    let out = register(
        &tmp.path().join("n0"),
        &ep,
        &id,
        "ABCDEFGHJKLMNPQRSTUV",
        &pin,
    );
    assert!(!out.status.success());
    let wrong_code = stderr(&out);
    assert!(
        wrong_code.contains("activation ID or code is wrong")
            && wrong_code.contains("check --id and --code"),
        "{wrong_code}"
    );
    // An activation ID that does not exist is answered exactly alike, so
    // that IDs cannot be probed without a code.
    let out = register(
        &tmp.path().join("n3"),
        &ep,
        "00000000-0000-4000-8000-000000000000",
        &code,
        &pin,
    );
    assert!(!out.status.success());
    assert_eq!(stderr(&out), wrong_code);

    let state = tmp.path().join("n1");
    let out = register(&state, &ep, &id, &code, &pin);
    assert!(out.status.success(), "{}", stderr(&out));
    let instance_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        instance_id.starts_with("mi-") && instance_id.len() == 20,
        "{instance_id}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(state.clone()), 0o700);
    assert_eq!(mode(state.join("agent.key")), 0o600);
    assert_eq!(mode(state.join("registration.json")), 0o600);

    // The activation's limit of 1 is used up.
    let out = register(&tmp.path().join("n2"), &ep, &id, &code, &pin);
    assert!(
        stderr(&out).contains("reached its registration limit of 1"),
        "{}",
        stderr(&out)
    );

    // Deleted activation.
    let (id2, code2) = coord.activation(5);
    coord.json(&["delete-activation", "--activation-id", &id2]);
    let out = register(&tmp.path().join("n4"), &ep, &id2, &code2, &pin);
    assert!(stderr(&out).contains("was deleted"), "{}", stderr(&out));

    // Expired activation.
    let soon = chrono_like_now_plus(2);
    let v = coord.json(&[
        "create-activation",
        "--iam-role",
        "r",
        "--expiration-date",
        &soon,
    ]);
    std::thread::sleep(Duration::from_secs(3));
    let out = register(
        &tmp.path().join("n5"),
        &ep,
        v["ActivationId"].as_str().unwrap(),
        v["ActivationCode"].as_str().unwrap(),
        &pin,
    );
    assert!(stderr(&out).contains("expired at"), "{}", stderr(&out));

    // Pin mismatch: nothing is sent to a coordinator we cannot authenticate.
    let wrong_pin = format!("sha256:{}", "ab".repeat(32));
    let (id3, code3) = coord.activation(1);
    let out = register(&tmp.path().join("n6"), &ep, &id3, &code3, &wrong_pin);
    assert!(stderr(&out).contains("CA pin mismatch"), "{}", stderr(&out));
    // ... and the activation was not consumed.
    let acts = coord.json(&[
        "describe-activations",
        "--filters",
        &format!("FilterKey=ActivationIds,FilterValues={id3}"),
    ]);
    assert_eq!(acts["ActivationList"][0]["RegistrationsCount"], json!(0));

    // Malformed pin and unreachable coordinator.
    let out = register(&tmp.path().join("n7"), &ep, &id3, &code3, "sha256:1234");
    assert!(stderr(&out).contains("--ca-pin"), "{}", stderr(&out));
    // Nothing listens on port 1 (tcpmux) here: the connection is refused.
    let nowhere = "https://127.0.0.1:1".to_string();
    let out = register(&tmp.path().join("n8"), &nowhere, &id3, &code3, &pin);
    assert!(
        stderr(&out).contains("cannot reach the coordinator"),
        "{}",
        stderr(&out)
    );

    // Registering a registered node again needs --force.
    let out = register(&state, &ep, &id3, &code3, &pin);
    assert!(
        stderr(&out).contains("already registered"),
        "{}",
        stderr(&out)
    );

    // The registered instance is listed with its activation.
    let info = coord.json(&["describe-instance-information"]);
    let list = info["InstanceInformationList"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["InstanceId"], json!(instance_id));
    assert_eq!(list[0]["ActivationId"], json!(id));
    assert_eq!(list[0]["Name"], json!("testnode"));
    assert_eq!(list[0]["ResourceType"], json!("ManagedInstance"));
    assert_eq!(list[0]["PlatformType"], json!("Linux"));
}

/// ISO 8601 for now + `secs`, as an operator would type it.
fn chrono_like_now_plus(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Ten failures from one source use up its budget: the next failure is told
/// to back off. The right code still registers (the NAT a misconfigured
/// client shares with good nodes does not lock them out), and the
/// coordinator logs the source once, not each attempt.
#[test]
fn repeated_failures_from_one_source_are_rate_limited_but_the_right_code_gets_in() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let (ep, pin) = (coord.endpoint(), coord.ca_pin());
    let (id, code) = coord.activation(1);
    for i in 0..10 {
        // Unknown IDs and wrong codes count alike.
        let who = if i % 2 == 0 {
            id.clone()
        } else {
            format!("00000000-0000-4000-8000-{i:012}")
        };
        let out = register(
            &tmp.path().join(format!("x{i}")),
            &ep,
            &who,
            "ABCDEFGHJKLMNPQRSTUV",
            &pin,
        );
        assert!(
            stderr(&out).contains("activation ID or code is wrong"),
            "{}",
            stderr(&out)
        );
    }
    for i in 10..13 {
        let out = register(
            &tmp.path().join(format!("x{i}")),
            &ep,
            &id,
            "ABCDEFGHJKLMNPQRSTUV",
            &pin,
        );
        assert!(
            stderr(&out).contains("too many failed registration attempts from 127.0.0.1; retry in"),
            "{}",
            stderr(&out)
        );
    }
    let out = register(&tmp.path().join("ok"), &ep, &id, &code, &pin);
    assert!(out.status.success(), "{}", stderr(&out));
    // A right code on a deleted activation is still told so, not to back off.
    let (gone, gone_code) = coord.activation(1);
    coord.json(&["delete-activation", "--activation-id", &gone]);
    let out = register(&tmp.path().join("gone"), &ep, &gone, &gone_code, &pin);
    assert!(
        stderr(&out).contains(&format!("activation {gone} was deleted")),
        "{}",
        stderr(&out)
    );
    let log = coord.log();
    let past = log
        .lines()
        .filter(|l| l.contains("registration failures past their budget"))
        .count();
    assert_eq!(past, 1, "{log}");
    assert!(
        log.contains("why=\"unknown activation ID\"") && log.contains("why=\"wrong code\""),
        "the operator's log tells the two apart: {log}"
    );
}

#[test]
fn status_diagnoses_registration_reachability_and_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let mut coord = tether_tests::Coordinator::start(tmp.path());
    let agent = tether_tests::Agent::start(tmp.path(), "a", &coord);
    let status = |dir: &std::path::Path| {
        std::process::Command::new(tether_tests::bin("tether-agent"))
            .arg("status")
            .arg("--state-dir")
            .arg(dir)
            .output()
            .unwrap()
    };
    let out = status(&agent.state_dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&agent.instance_id), "{text}");
    assert!(
        text.contains("reachable (TLS and client certificate accepted)"),
        "{text}"
    );
    assert!(text.contains("(ok)"), "clock skew line: {text}");

    coord.stop();
    let out = status(&agent.state_dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("UNREACHABLE"), "{text}");

    let out = status(&tmp.path().join("never-registered"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT REGISTERED"));

    // The daemon's log has the SSM-style line format.
    let log = agent.log();
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.len() > 24
            && first.as_bytes()[4] == b'-'
            && first[19..].starts_with('.')
            && first.contains(" INFO "),
        "{first}"
    );
}

/// A node whose clock is two hours off, either way, is told so plainly instead
/// of failing on a certificate error (libfaketime shifts only the agent's clock).
#[test]
fn a_skewed_clock_is_refused_with_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = tether_tests::Coordinator::start(tmp.path());
    let (id, code) = coord.activation(1);
    // libfaketime preloaded directly: the `faketime` wrapper's named
    // semaphore collides with a stale one of a reused pid ("sem_open: File
    // exists").
    let clock = tether_tests::chaos::FakeClock::new(&tmp.path().join("faketime"));
    for (shift, word) in [("-2h", "clock skew"), ("+2h", "ahead of")] {
        clock.set(shift);
        let out = std::process::Command::new(tether_tests::bin("tether-agent"))
            .envs(clock.env())
            .args([
                "register",
                "--endpoint",
                &coord.endpoint(),
                "--id",
                &id,
                "--code",
                &code,
            ])
            .args(["--ca-pin", &coord.ca_pin()])
            .arg("--state-dir")
            .arg(tmp.path().join("skewed"))
            .output()
            .expect("run tether-agent register");
        let err = stderr(&out);
        assert!(!out.status.success());
        assert!(
            err.contains("clock skew") && err.contains(word) && err.contains("sync the time"),
            "{shift}: {err}"
        );
    }
    // Nothing was registered.
    let acts = coord.json(&["describe-activations"]);
    assert!(
        acts["ActivationList"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["RegistrationsCount"] == 0)
    );
}

/// A wrong-code flood on one activation from many sources, each under its
/// own budget: past the activation's budget, failures are told to back off
/// whatever their source, while the right code still registers, from a
/// source that took part in the flood and from a fresh one.
#[test]
fn a_flood_on_one_activation_is_told_to_back_off_but_the_right_code_gets_in() {
    use std::net::{IpAddr, Ipv4Addr};
    use tether_ssm::limits::{
        MAX_FAILED_REGISTRATIONS_PER_ACTIVATION, MAX_FAILED_REGISTRATIONS_PER_SOURCE,
    };
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let (id, code) = coord.activation(2);
    let per_source = MAX_FAILED_REGISTRATIONS_PER_SOURCE - 2;
    let flood = MAX_FAILED_REGISTRATIONS_PER_ACTIVATION + 5;
    let source = |n: u32| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + (n / per_source) as u8));
    let mut last_source = source(0);
    for n in 0..flood {
        last_source = source(n);
        let got =
            tether_tests::raw::register_from(&coord, last_source, &id, "ABCDEFGHJKLMNPQRSTUV");
        let (status, message) = got.expect_err("a wrong code never registers");
        if n < MAX_FAILED_REGISTRATIONS_PER_ACTIVATION {
            assert_eq!(
                (status, message.as_str()),
                (
                    tonic::Code::PermissionDenied,
                    "activation ID or code is wrong"
                ),
                "attempt {n} from {last_source}"
            );
        } else {
            assert_eq!(status, tonic::Code::ResourceExhausted, "{message}");
            assert!(
                message.starts_with(&format!(
                    "too many failed registration attempts for activation {id}; retry in "
                )),
                "attempt {n} from {last_source}: {message}"
            );
        }
    }
    // Another activation is not touched by this one's flood.
    let (other, _) = coord.activation(1);
    let got = tether_tests::raw::register_from(&coord, source(0), &other, "ABCDEFGHJKLMNPQRSTUV");
    assert_eq!(
        got,
        Err((
            tonic::Code::PermissionDenied,
            "activation ID or code is wrong".to_string()
        ))
    );
    // The right code, from a flooding source and from a fresh one.
    for from in [last_source, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 99))] {
        let instance = tether_tests::raw::register_from(&coord, from, &id, &code)
            .unwrap_or_else(|e| panic!("the right code from {from}: {e:?}"));
        assert!(instance.starts_with("mi-"), "{instance}");
    }
    let log = coord.log();
    let past: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("registration failures past their budget"))
        .collect();
    assert_eq!(past.len(), 1, "logged once: {log}");
    assert!(past[0].contains("for activation"), "{}", past[0]);
}
