//! The packages built by `packaging/build.sh` (scripts/test.sh builds them
//! first): their contents, modes, config files and scripts, inspected with
//! dpkg-deb and rpm; then the agent's .deb installed, upgraded, removed and
//! purged with dpkg inside a throwaway root, to show what its maintainer
//! scripts do to the state.

use std::path::{Path, PathBuf};
use std::process::Command;

use tether_tests::root::Root;

fn packages_dir() -> PathBuf {
    let debug = tether_tests::bin("tether");
    let dir = debug
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("packages");
    assert!(
        dir.is_dir(),
        "{} not found: run packaging/build.sh first (scripts/test.sh does)",
        dir.display()
    );
    dir
}

fn package(prefix: &str, ext: &str) -> PathBuf {
    std::fs::read_dir(packages_dir())
        .expect("test setup")
        .map(|e| e.expect("test setup").path())
        .find(|p| {
            let n = p
                .file_name()
                .expect("test setup")
                .to_string_lossy()
                .into_owned();
            n.starts_with(prefix) && n.ends_with(ext) && !n.starts_with(&format!("{prefix}-agent"))
        })
        .unwrap_or_else(|| panic!("no {prefix}*{ext} in {}", packages_dir().display()))
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dpkg-deb -c` lines as (mode string, owner, path).
fn deb_entries(deb: &Path) -> Vec<(String, String, String)> {
    run("dpkg-deb", &["-c", deb.to_str().expect("test setup")])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[5].trim_start_matches('.').to_string(),
            )
        })
        .collect()
}

fn assert_entry(entries: &[(String, String, String)], path: &str, mode: &str) {
    let e = entries
        .iter()
        .find(|(_, _, p)| p == path)
        .unwrap_or_else(|| panic!("{path} not in the package: {entries:#?}"));
    assert_eq!(e.0, mode, "{path}");
    assert!(
        matches!(e.1.as_str(), "0/0" | "root/root"),
        "{path} owned by {}",
        e.1
    );
}

#[test]
fn debs_carry_binaries_units_init_scripts_config_and_maintainer_scripts() {
    let agent = package("tether-agent", ".deb");
    let e = deb_entries(&agent);
    assert_entry(&e, "/usr/bin/tether-agent", "-rwxr-xr-x");
    assert_entry(&e, "/lib/systemd/system/tether-agent.service", "-rw-r--r--");
    assert_entry(&e, "/etc/init.d/tether-agent", "-rwxr-xr-x");
    assert_entry(&e, "/etc/tether/agent.toml", "-rw-r--r--");
    let control = tempfile::tempdir().unwrap();
    run(
        "dpkg-deb",
        &[
            "-e",
            agent.to_str().unwrap(),
            control.path().to_str().unwrap(),
        ],
    );
    let read = |f: &str| std::fs::read_to_string(control.path().join(f)).unwrap();
    assert!(read("conffiles").contains("/etc/tether/agent.toml"));
    assert!(read("control").contains("Package: tether-agent"));
    assert!(read("postinst").contains("install -d -m 0700 /var/lib/tether-agent"));
    assert!(read("prerm").contains("stop"));
    assert!(read("postrm").contains("purge)"));

    let coord = package("tether_", ".deb");
    let e = deb_entries(&coord);
    assert_entry(&e, "/usr/bin/tether", "-rwxr-xr-x");
    assert_entry(&e, "/usr/share/tether/tether-agent", "-rwxr-xr-x");
    assert_entry(&e, "/lib/systemd/system/tether.service", "-rw-r--r--");
    assert_entry(&e, "/etc/init.d/tether", "-rwxr-xr-x");
    assert_entry(&e, "/etc/tether/coordinator.env", "-rw-r-----");
    let control = tempfile::tempdir().unwrap();
    run(
        "dpkg-deb",
        &[
            "-e",
            coord.to_str().unwrap(),
            control.path().to_str().unwrap(),
        ],
    );
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(
        postinst.contains("-o tether -g tether /var/lib/tether"),
        "{postinst}"
    );
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/tether.service"),
    )
    .unwrap();
    for hardening in [
        "User=tether",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
}

#[test]
fn rpms_carry_the_same_files_modes_config_and_scriptlets() {
    for (prefix, files, config, script) in [
        (
            "tether-agent",
            vec![
                ("/usr/bin/tether-agent", "-rwxr-xr-x"),
                ("/usr/lib/systemd/system/tether-agent.service", "-rw-r--r--"),
                ("/etc/rc.d/init.d/tether-agent", "-rwxr-xr-x"),
                ("/etc/tether/agent.toml", "-rw-r--r--"),
            ],
            "/etc/tether/agent.toml",
            "install -d -m 0700 /var/lib/tether-agent",
        ),
        (
            "tether-0",
            vec![
                ("/usr/bin/tether", "-rwxr-xr-x"),
                ("/usr/share/tether/tether-agent", "-rwxr-xr-x"),
                ("/usr/lib/systemd/system/tether.service", "-rw-r--r--"),
                ("/etc/rc.d/init.d/tether", "-rwxr-xr-x"),
                ("/etc/tether/coordinator.env", "-rw-r-----"),
            ],
            "/etc/tether/coordinator.env",
            "useradd --system",
        ),
    ] {
        let rpm = package(prefix, ".rpm");
        let p = rpm.to_str().unwrap();
        let listing = run("rpm", &["-qlvp", p]);
        for (path, mode) in files {
            let line = listing
                .lines()
                .find(|l| l.ends_with(&format!(" {path}")))
                .unwrap_or_else(|| panic!("{path} not in {p}: {listing}"));
            assert!(line.starts_with(mode), "{line}");
            assert!(line.contains("root"), "{line}");
        }
        assert!(run("rpm", &["-qcp", p]).contains(config));
        let scripts = run("rpm", &["-qp", "--scripts", p]);
        assert!(scripts.contains(script), "{scripts}");
        assert!(scripts.contains("preuninstall scriptlet"), "{scripts}");
    }
}

/// A throwaway root with an empty dpkg database.
fn dpkg_root(dir: &Path) -> Root {
    let root = Root::new(dir);
    for d in ["/var/lib/dpkg/info", "/var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.path(d)).expect("dpkg directories");
    }
    std::fs::write(root.path("/var/lib/dpkg/status"), "").expect("dpkg status");
    root
}

/// Waits for the root's session; returns its log, and the log with dpkg's for messages.
fn session(root: &mut Root) -> (String, String) {
    let log = root.wait();
    let dpkg = std::fs::read_to_string(root.path("/tmp/dpkg.log")).unwrap_or_default();
    let ctx = format!("{log}\n--- dpkg:\n{dpkg}");
    (log, ctx)
}

#[test]
fn the_agent_deb_keeps_state_on_upgrade_and_remove_and_purge_deletes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut root = dpkg_root(tmp.path());
    std::fs::copy(package("tether-agent", ".deb"), root.path("/opt/agent.deb")).unwrap();
    root.spawn(
        r#"
        dpkg -i /opt/agent.deb >/tmp/dpkg.log 2>&1; echo "install exit $?"
        stat -c '%a %n' /var/lib/tether-agent /var/log/tether /usr/bin/tether-agent
        echo '{"InstanceId":"mi-0123456789abcdef0"}' > /var/lib/tether-agent/registration.json
        echo '# edited' >> /etc/tether/agent.toml
        chmod 0770 /var/log/tether
        dpkg -i /opt/agent.deb >>/tmp/dpkg.log 2>&1; echo "upgrade exit $?"
        stat -c 'after upgrade %a %n' /var/log/tether
        cat /var/lib/tether-agent/registration.json; tail -n1 /etc/tether/agent.toml
        dpkg -r tether-agent >>/tmp/dpkg.log 2>&1; echo "remove exit $?"
        test -x /usr/bin/tether-agent || echo "binary removed"
        test -s /var/lib/tether-agent/registration.json && echo "state kept after remove"
        dpkg -P tether-agent >>/tmp/dpkg.log 2>&1; echo "purge exit $?"
        test -e /var/lib/tether-agent || echo "state deleted by purge"
        test -e /etc/tether/agent.toml || echo "config deleted by purge"
        "#,
    );
    let (log, ctx) = session(&mut root);
    for want in [
        "install exit 0",
        "700 /var/lib/tether-agent",
        "700 /var/log/tether",
        "755 /usr/bin/tether-agent",
        "upgrade exit 0",
        "after upgrade 700 /var/log/tether",
        "{\"InstanceId\":\"mi-0123456789abcdef0\"}",
        "# edited",
        "remove exit 0",
        "binary removed",
        "state kept after remove",
        "purge exit 0",
        "state deleted by purge",
        "config deleted by purge",
    ] {
        assert!(log.contains(want), "missing {want:?} in:\n{ctx}");
    }
}

#[test]
fn the_coordinator_deb_adds_its_user_and_runs_under_sysv_until_removed_and_purged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut root = dpkg_root(tmp.path());
    // Loopback with kernel-chosen ports: this machine's network is shared.
    std::fs::create_dir_all(root.path("/etc/tether")).unwrap();
    std::fs::write(
        root.path("/etc/tether/coordinator.env"),
        "TETHER_LISTEN=127.0.0.1:0\nTETHER_HTTP_LISTEN=127.0.0.1:0\n",
    )
    .unwrap();
    std::fs::copy(package("tether_", ".deb"), root.path("/opt/tether.deb")).unwrap();
    root.spawn(
        r#"
        dpkg -i --force-depends --force-confold /opt/tether.deb >/tmp/dpkg.log 2>&1; echo "install exit $?"
        getent passwd tether >/dev/null && echo "user tether exists"
        stat -c '%a %U:%G %n' /var/lib/tether /var/log/tether-coordinator
        i=0; while [ ! -s /var/log/tether-coordinator/coordinator.log ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        stat -c '%a %U:%G %n' /var/log/tether-coordinator/coordinator.log
        /etc/init.d/tether status; echo "status exit $?"
        ps -o user= -p "$(cat /var/run/tether/tether.pid)"
        i=0; while [ ! -s /var/lib/tether/operator.json ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        stat -c '%U %n' /var/lib/tether/operator.json
        # An upgrade from the shared log directory of older packages.
        mkdir -p /var/log/tether && chgrp tether /var/log/tether && chmod 0770 /var/log/tether
        echo old > /var/log/tether/coordinator.log.3 && chown tether /var/log/tether/coordinator.log.3
        dpkg -i --force-depends --force-confold /opt/tether.deb >>/tmp/dpkg.log 2>&1; echo "upgrade exit $?"
        stat -c 'shared %a %U:%G %n' /var/log/tether
        cat /var/log/tether-coordinator/coordinator.log.3
        dpkg -r tether >>/tmp/dpkg.log 2>&1; echo "remove exit $?"
        /etc/init.d/tether status >/dev/null 2>&1; echo "after remove status exit $?"
        test -s /var/lib/tether/operator.json && echo "state kept after remove"
        dpkg -P tether >>/tmp/dpkg.log 2>&1; echo "purge exit $?"
        test -e /var/lib/tether || echo "state deleted by purge"
        getent passwd tether >/dev/null || echo "user deleted by purge"
        "#,
    );
    let (log, ctx) = session(&mut root);
    for want in [
        "install exit 0",
        "user tether exists",
        "700 tether:tether /var/lib/tether",
        "700 tether:tether /var/log/tether-coordinator",
        "600 tether:tether /var/log/tether-coordinator/coordinator.log",
        "tether is running (pid",
        "status exit 0",
        "tether /var/lib/tether/operator.json",
        "upgrade exit 0",
        "shared 700 root:root /var/log/tether",
        "old\n",
        "remove exit 0",
        "after remove status exit 3",
        "state kept after remove",
        "purge exit 0",
        "state deleted by purge",
        "user deleted by purge",
    ] {
        assert!(log.contains(want), "missing {want:?} in:\n{ctx}");
    }
    assert!(
        log.lines().any(|l| l.trim() == "tether"),
        "the coordinator does not run as tether:\n{ctx}"
    );
}
