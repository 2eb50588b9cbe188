//! Installing on a node: the static agent resolving names without NSS, and the
//! user-data snippet run as root in a throwaway root (chroot in new mount and
//! PID namespaces, /usr copy-on-write) against a coordinator on loopback —
//! installing, registering and starting the agent under SysV init, running a
//! command (through the second of two endpoints given to install.sh), and the
//! SysV script's status and stop.

use std::time::Duration;

use serde_json::json;
use tether_tests::root::{COORDINATOR_NAME, Root, static_agent};
use tether_tests::{Coordinator, wait_for};

fn coordinator(dir: &std::path::Path) -> Coordinator {
    let agent = static_agent();
    Coordinator::start_with_env(
        dir,
        &[
            ("TETHER_ADVERTISE", COORDINATOR_NAME),
            ("TETHER_AGENT_BINARY", agent.to_str().expect("utf-8 path")),
        ],
    )
}

#[test]
fn the_static_agent_resolves_names_without_loading_nss_modules() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = coordinator(tmp.path());
    let (id, code) = coord.activation(1);
    let mut root = Root::new(tmp.path());
    std::fs::copy(static_agent(), root.path("/opt/tether-agent")).unwrap();
    let endpoint = format!("https://{COORDINATOR_NAME}:{}", coord.port);
    root.spawn(&format!(
        "strace -f -e trace=open,openat -o /tmp/agent.strace \
           /opt/tether-agent register --endpoint {endpoint} --id {id} --code {code} \
           --ca-pin {} --state-dir /var/lib/tether-agent >/tmp/register.out 2>&1
         echo \"register exit $?\"
         strace -f -e trace=open,openat -o /tmp/getent.strace getent hosts {COORDINATOR_NAME}
         echo \"getent exit $?\"",
        coord.ca_pin()
    ));
    let log = root.wait();
    let out = std::fs::read_to_string(root.path("/tmp/register.out")).unwrap_or_default();
    assert!(log.contains("register exit 0"), "{log}\n{out}");
    assert!(out.trim().starts_with("mi-"), "{out}");

    let agent_trace = std::fs::read_to_string(root.path("/tmp/agent.strace")).unwrap();
    assert!(
        agent_trace.contains("\"/etc/hosts\""),
        "the agent should have read /etc/hosts itself:\n{agent_trace}"
    );
    let nss: Vec<&str> = agent_trace
        .lines()
        .filter(|l| l.contains("libnss_") || l.contains("nsswitch.conf"))
        .collect();
    assert!(nss.is_empty(), "the static agent touched NSS: {nss:#?}");
    // The control: a libc lookup in the same root does load the listed modules.
    let getent_trace = std::fs::read_to_string(root.path("/tmp/getent.strace")).unwrap();
    assert!(log.contains("getent exit 0"), "{log}");
    assert!(
        getent_trace.contains("libnss_systemd"),
        "getent should have tried libnss_systemd:\n{getent_trace}"
    );
}

/// The snippet `create-activation --output text` printed (from its `#!/bin/sh`).
fn snippet(text: &str) -> String {
    let start = text
        .find("#!/bin/sh")
        .unwrap_or_else(|| panic!("no snippet in {text}"));
    text[start..].to_string()
}

#[test]
fn the_user_data_snippet_installs_registers_and_starts_the_agent_under_sysv() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = coordinator(tmp.path());
    let out = coord.cli(&[
        "create-activation",
        "--iam-role",
        "SSMServiceRole",
        "--default-instance-name",
        "rootnode",
        "--output",
        "text",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user_data = snippet(&String::from_utf8_lossy(&out.stdout));
    assert!(user_data.contains(&format!("https://{COORDINATOR_NAME}:{}", coord.http_port)));
    // Replicas: install.sh --endpoint passes a comma list (a space in it, and
    // a dead replica first) to `register` as one argument.
    let closed = tether_tests::closed_port::ClosedPort::new();
    let dead = closed.port();
    let endpoints = format!(
        "https://{COORDINATOR_NAME}:{dead}, https://{COORDINATOR_NAME}:{}",
        coord.port
    );
    let user_data = user_data.replace(
        "sh \"$d/install.sh\" --id",
        &format!("sh \"$d/install.sh\" --endpoint '{endpoints}' --id"),
    );
    assert!(user_data.contains("--endpoint 'https://"), "{user_data}");

    let mut root = Root::new(tmp.path());
    std::fs::write(root.path("/opt/user-data.sh"), &user_data).unwrap();
    // First run installs; the second must change nothing; then the SysV
    // script reports status and, once the test has run a command, stops it.
    root.spawn(
        r#"
        echo "== first run"; sh /opt/user-data.sh; echo "first exit $?"
        cat /var/run/tether-agent.pid > /tmp/pid1
        sha256sum /usr/bin/tether-agent /etc/init.d/tether-agent /etc/tether/ca.pem /etc/tether/agent.toml /var/lib/tether-agent/registration.json > /tmp/sums1
        echo "== second run"; sh /opt/user-data.sh; echo "second exit $?"
        sha256sum /usr/bin/tether-agent /etc/init.d/tether-agent /etc/tether/ca.pem /etc/tether/agent.toml /var/lib/tether-agent/registration.json > /tmp/sums2
        /etc/init.d/tether-agent status; echo "status exit $?"
        touch /tmp/ready
        i=0; while [ ! -e /tmp/go ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
        /etc/init.d/tether-agent stop; echo "stop exit $?"
        /etc/init.d/tether-agent status; echo "stopped status exit $?"
        "#,
    );
    wait_for("the install to finish", Duration::from_secs(120), || {
        root.path("/tmp/ready").exists().then_some(())
    });
    let log = root.session_log();
    assert!(log.contains("first exit 0"), "{log}");
    assert!(log.contains("second exit 0"), "{log}");
    assert!(log.contains("installed /usr/bin/tether-agent"), "{log}");
    assert!(log.contains("registered as mi-"), "{log}");
    assert!(log.contains("running under SysV init"), "{log}");
    let second = &log[log.find("== second run").unwrap()..];
    assert!(
        second.contains("/usr/bin/tether-agent is up to date"),
        "{second}"
    );
    assert!(second.contains("already registered"), "{second}");
    assert!(second.contains("is already running"), "{second}");
    assert!(
        !second.contains("wrote "),
        "the second run rewrote a file: {second}"
    );
    assert_eq!(
        std::fs::read_to_string(root.path("/tmp/sums1")).unwrap(),
        std::fs::read_to_string(root.path("/tmp/sums2")).unwrap()
    );
    assert!(log.contains("tether-agent is running (pid"), "{log}");
    assert!(log.contains("status exit 0"), "{log}");

    // What was installed, with its modes; the binary is the coordinator's.
    let mode = |p: &str| {
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(root.path(p)).unwrap().permissions(),
        ) & 0o7777
    };
    assert_eq!(mode("/usr/bin/tether-agent"), 0o755);
    assert_eq!(mode("/etc/init.d/tether-agent"), 0o755);
    assert_eq!(mode("/var/lib/tether-agent"), 0o700);
    assert_eq!(mode("/var/log/tether"), 0o700);
    assert_eq!(mode("/var/log/tether/agent.log"), 0o600);
    assert_eq!(mode("/var/log/tether/errors.log"), 0o600);
    assert_eq!(
        std::fs::read(root.path("/usr/bin/tether-agent")).unwrap(),
        std::fs::read(static_agent()).unwrap()
    );
    assert!(
        !std::path::Path::new("/usr/bin/tether-agent").exists() || {
            // Installing in the root never touched this machine's /usr.
            std::fs::read("/usr/bin/tether-agent").unwrap()
                != std::fs::read(static_agent()).unwrap()
        }
    );

    // The node is Online and runs a command, inside the root.
    let reg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.path("/var/lib/tether-agent/registration.json")).unwrap(),
    )
    .unwrap();
    let iid = reg["InstanceId"].as_str().unwrap().to_string();
    assert_eq!(reg["Endpoint"], json!(endpoints.replace(", ", ",")));
    coord.wait_online(&iid, Duration::from_secs(30));
    let cmd = coord.send(
        &[&iid],
        &json!({"commands": ["cat /etc/tether-throwaway-root", "echo pid1=$(cat /proc/1/comm)"]}),
    );
    let inv = coord.wait_invocation(&cmd, &iid, Duration::from_secs(60));
    assert_eq!(inv["Status"], "Success", "{inv}");
    let stdout = inv["StandardOutputContent"].as_str().unwrap();
    assert!(stdout.starts_with("yes\n"), "{stdout}");
    let agent_log = std::fs::read_to_string(root.path("/var/log/tether/agent.log")).unwrap();
    assert!(agent_log.contains(" INFO "), "{agent_log}");

    // Stop through the SysV script.
    std::fs::write(root.path("/tmp/go"), "").unwrap();
    let log = root.wait();
    assert!(log.contains("stop exit 0"), "{log}");
    assert!(log.contains("tether-agent is stopped"), "{log}");
    assert!(log.contains("stopped status exit 3"), "{log}");
    assert!(!root.path("/var/run/tether-agent.pid").exists());
}
