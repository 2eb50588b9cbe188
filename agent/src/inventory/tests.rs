use super::*;

const STATUS: &str = "Package: openssl
Status: install ok installed
Priority: optional
Section: utils
Installed-Size: 2264
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Version: 3.0.15-1~deb12u1
Depends: libc6 (>= 2.34)
Description: Secure Sockets Layer toolkit - cryptographic utility
 This package is part of the OpenSSL project's implementation.
Homepage: https://www.openssl.org/

Package: removed-thing
Status: deinstall ok config-files
Architecture: all
Version: 1.0

Package: tzdata
Status: install ok installed
Section: localization
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: all
Version: 2024a-0+deb12u1
Description: time zone and daylight-saving time data

Package: libc6
Status: install ok installed
Section: libs
Architecture: arm64
Version: 1:2.36-9+deb12u9
Description: GNU C Library: Shared libraries
";

#[test]
fn dpkg_status_gives_installed_packages_with_ssm_fields() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("openssl.list"), "/usr/bin/openssl\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let apps = packages::dpkg(STATUS, dir.path());
    assert_eq!(apps.len(), 3, "{apps:?}");
    let o = &apps[0];
    assert_eq!(o["Name"], "openssl");
    assert_eq!(o["Version"], "3.0.15");
    assert_eq!(o["Release"], "1~deb12u1");
    assert_eq!(o["Epoch"], "");
    assert_eq!(o["Architecture"], "x86_64");
    assert_eq!(o["ApplicationType"], "utils");
    assert_eq!(o["URL"], "https://www.openssl.org/");
    assert_eq!(
        o["Summary"],
        "Secure Sockets Layer toolkit - cryptographic utility"
    );
    assert!(o["Publisher"].starts_with("Debian OpenSSL Team"));
    assert_eq!(o["PackageId"], "openssl_3.0.15-1~deb12u1_amd64.deb");
    assert!(o["InstalledTime"].ends_with('Z'), "{o:?}");
    assert_eq!(apps[1]["Architecture"], "all");
    let libc = &apps[2];
    assert_eq!(
        (&*libc["Epoch"], &*libc["Version"], &*libc["Release"]),
        ("1", "2.36", "9+deb12u9")
    );
    assert_eq!(libc["Architecture"], "aarch64");
}

#[test]
fn debian_versions_split_into_epoch_upstream_revision() {
    for (v, want) in [
        ("1.2.3", ("", "1.2.3", "")),
        ("1:2.36-9", ("1", "2.36", "9")),
        ("2.0-beta-3ubuntu1", ("", "2.0-beta", "3ubuntu1")),
    ] {
        assert_eq!(packages::split_deb_version(v), want, "{v}");
    }
}

/// An rpm header with the given (tag, type, value) entries.
fn rpm_blob(tags: &[(u32, u32, &str)]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    for (tag, ty, v) in tags {
        let off = data.len() as u32;
        if *ty == 4 {
            data.extend_from_slice(&v.parse::<u32>().unwrap_or(0).to_be_bytes());
        } else {
            data.extend_from_slice(v.as_bytes());
            data.push(0);
        }
        for x in [*tag, *ty, off, 1] {
            index.extend_from_slice(&x.to_be_bytes());
        }
    }
    let mut b = (tags.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend(index);
    b.extend(data);
    b
}

#[test]
fn rpm_headers_decode_into_entries() {
    let blob = rpm_blob(&[
        (1000, 6, "bash"),
        (1001, 6, "5.2.26"),
        (1002, 6, "3.fc40"),
        (1004, 9, "The GNU Bourne Again shell"),
        (1008, 4, "1700000000"),
        (1011, 6, "Fedora Project"),
        (1016, 6, "Unspecified"),
        (1020, 6, "https://www.gnu.org/software/bash"),
        (1022, 6, "x86_64"),
    ]);
    let e = packages::rpm_header(&blob).unwrap_or_else(|| panic!("not decoded"));
    assert_eq!(e["Name"], "bash");
    assert_eq!(e["Version"], "5.2.26");
    assert_eq!(e["Release"], "3.fc40");
    assert_eq!(e["InstalledTime"], "2023-11-14T22:13:20Z");
    assert_eq!(e["Publisher"], "Fedora Project");
    assert_eq!(e["PackageId"], "bash-5.2.26-3.fc40.x86_64.rpm");
    // Truncated or garbage blobs are skipped, not a panic.
    assert!(packages::rpm_header(&blob[..blob.len() - 10]).is_none());
    assert!(packages::rpm_header(&[0xff; 12]).is_none());
}

/// `rpmdb.sqlite` as rpm lays it out (its `Packages` table), written by
/// SQLite itself, with a package per name; `summary_len` bytes of summary
/// make headers that spill onto overflow pages.
fn write_rpmdb(db: &Path, names: &[String], summary_len: usize) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
         CREATE TABLE IF NOT EXISTS 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS 'Name' (key 'TEXT' NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL);",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for name in names {
        insert_rpm(&conn, name, summary_len);
    }
    conn
}

fn insert_rpm(conn: &rusqlite::Connection, name: &str, summary_len: usize) {
    let summary = format!("{name} {}", "s".repeat(summary_len));
    conn.execute(
        "INSERT INTO Packages (blob) VALUES (?1)",
        [rpm_blob(&[
            (1000, 6, name),
            (1001, 6, "1.0"),
            (1004, 9, &summary),
            (1022, 6, "x86_64"),
        ])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

fn rpm_names(dir: &Path) -> Vec<String> {
    packages::rpm(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|a| a["Name"].clone())
        .collect()
}

#[test]
fn rpm_sqlite_database_is_read_without_the_rpm_tool() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = ["bash", "gpg-pubkey", "coreutils"].map(String::from).into();
    drop(write_rpmdb(&dir.path().join("rpmdb.sqlite"), &names, 10));
    assert_eq!(rpm_names(dir.path()), ["bash", "coreutils"]);
    let apps = packages::rpm(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(apps[0]["Summary"], format!("bash {}", "s".repeat(10)));
    // No database: no rpm packages, no problem.
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rpm_names(empty.path()), Vec::<String>::new());
}

#[test]
fn rpm_databases_of_many_pages_and_overflowing_headers_are_read_whole() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // 400 rows: a b-tree of interior pages; every third header is larger
    // than a page and continues on overflow pages (a chain of several).
    let names: Vec<String> = (0..400).map(|i| format!("pkg{i:03}")).collect();
    let conn = write_rpmdb(&dir.path().join("rpmdb.sqlite"), &names[..0], 0);
    for (i, n) in names.iter().enumerate() {
        insert_rpm(&conn, n, if i % 3 == 0 { 20_000 } else { 100 });
    }
    drop(conn);
    let apps = packages::rpm(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<&str> = apps.iter().map(|a| a["Name"].as_str()).collect();
    assert_eq!(got, names.iter().map(String::as_str).collect::<Vec<_>>());
    for (i, a) in apps.iter().enumerate() {
        let len = if i % 3 == 0 { 20_000 } else { 100 };
        assert_eq!(a["Summary"].len(), names[i].len() + 1 + len, "{}", names[i]);
    }
}

#[test]
fn rpm_commits_still_in_the_wal_are_read_and_a_torn_tail_is_not() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("rpmdb.sqlite");
    let names: Vec<String> = ["a", "b", "c"].map(String::from).into();
    let conn = write_rpmdb(&db, &names, 10);
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap_or_else(|e| panic!("{e}"));
    // Committed after the checkpoint: only in rpmdb.sqlite-wal (the
    // connection stays open, so nothing is checkpointed).
    conn.execute("DELETE FROM Packages WHERE hnum = 2", [])
        .unwrap_or_else(|e| panic!("{e}"));
    insert_rpm(&conn, "d", 5000);
    let wal = dir.path().join("rpmdb.sqlite-wal");
    assert!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0);
    assert_eq!(rpm_names(dir.path()), ["a", "c", "d"]);

    // A copy without the -shm index, and with a frame half written after
    // the last commit (a writer killed mid-way): the committed state still.
    let copy = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&db, copy.path().join("rpmdb.sqlite")).unwrap_or_else(|e| panic!("{e}"));
    let mut w = std::fs::read(&wal).unwrap_or_else(|e| panic!("{e}"));
    let frame = w[32..32 + 24].to_vec();
    w.extend_from_slice(&frame);
    w.extend(std::iter::repeat_n(0x5a, 1000));
    std::fs::write(copy.path().join("rpmdb.sqlite-wal"), &w).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rpm_names(copy.path()), ["a", "c", "d"]);
    // A WAL from another database (its salts differ) is not applied.
    std::fs::write(copy.path().join("rpmdb.sqlite-wal"), b"not a wal")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rpm_names(copy.path()), ["a", "b", "c"]);
    drop(conn);
}

#[test]
fn rpm_database_that_is_not_one_is_a_named_problem() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("rpmdb.sqlite");
    std::fs::write(&db, b"\x00".repeat(4096)).unwrap_or_else(|e| panic!("{e}"));
    let e = packages::rpm(dir.path()).expect_err("garbage read as a database");
    assert!(
        e.contains("rpmdb.sqlite") && e.contains("no SQLite header"),
        "{e}"
    );
    // A database without rpm's table.
    std::fs::remove_file(&db).unwrap_or_else(|e| panic!("{e}"));
    rusqlite::Connection::open(&db)
        .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
        .unwrap_or_else(|e| panic!("{e}"));
    let e = packages::rpm(dir.path()).expect_err("no Packages table");
    assert!(e.contains("no Packages table"), "{e}");
}

fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The real thing: packages built by rpmbuild and installed by rpm into a
/// database of its own, read back as `rpm -qa` lists them.
#[test]
fn real_rpm_databases_read_as_rpm_lists_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let top = dir.path().join("build");
    let dbpath = dir.path().join("db");
    let mut spec = String::from(
        "Name: tether-probe\nVersion: 2.5\nRelease: 7%{?dist}\nEpoch: 3\n\
         Summary: The probe package\nLicense: Apache-2.0\nURL: https://example.invalid/probe\n\
         Vendor: Tether tests\nGroup: Applications/System\nBuildArch: noarch\n\
         %description\nA package for the agent's rpm database test.\n%files\n",
    );
    // 60 more (one with a summary long enough to overflow a page).
    for i in 0..60 {
        let summary = if i == 7 {
            "x".repeat(9000)
        } else {
            format!("probe {i}")
        };
        spec.push_str(&format!(
            "%package -n probe-{i:02}\nSummary: {summary}\nVersion: 1.{i}\n\
             %description -n probe-{i:02}\nProbe {i}.\n%files -n probe-{i:02}\n"
        ));
    }
    let spec_path = dir.path().join("probe.spec");
    std::fs::write(&spec_path, spec).unwrap_or_else(|e| panic!("{e}"));
    run(std::process::Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args(["--quiet", "-bb"])
        .arg(&spec_path));
    run(std::process::Command::new("rpm")
        .arg("--dbpath")
        .arg(&dbpath)
        .arg("--initdb"));
    let rpms: Vec<PathBuf> = std::fs::read_dir(top.join("RPMS/noarch"))
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|e| e.unwrap_or_else(|e| panic!("{e}")).path())
        .collect();
    assert_eq!(rpms.len(), 61);
    run(std::process::Command::new("rpm")
        .arg("--dbpath")
        .arg(&dbpath)
        .args([
            "-i",
            "--justdb",
            "--nodeps",
            "--nosignature",
            "--ignorearch",
            "--ignoreos",
        ])
        .args(&rpms));
    let listed = run(std::process::Command::new("rpm")
        .arg("--dbpath")
        .arg(&dbpath)
        .args([
            "-qa",
            "--queryformat",
            "%{NAME}|%{VERSION}|%{RELEASE}|%{EPOCH}|%{ARCH}|%{INSTALLTIME}|%{SUMMARY}|%{VENDOR}|%{URL}\\n",
        ]));
    let mut want: Vec<String> = listed.lines().map(|l| l.replace("(none)", "")).collect();
    want.sort();
    let mut got: Vec<String> = packages::rpm(&dbpath)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|a| {
            let secs = chrono::DateTime::parse_from_rfc3339(&a["InstalledTime"])
                .map(|t| t.timestamp().to_string())
                .unwrap_or_default();
            [
                &*a["Name"],
                &*a["Version"],
                &*a["Release"],
                &*a["Epoch"],
                &*a["Architecture"],
                &secs,
                &*a["Summary"],
                &*a["Publisher"],
                &*a["URL"],
            ]
            .join("|")
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), 61);
    assert_eq!(got, want);
    assert!(
        got.iter()
            .any(|l| l.starts_with("tether-probe|2.5|7|3|noarch|"))
    );
}

#[test]
fn snaps_come_from_their_meta_files() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let meta = dir.path().join("lxd/current/meta");
    std::fs::create_dir_all(&meta).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        meta.join("snap.yaml"),
        "name: lxd\nversion: '5.21.2'\nsummary: LXD - container and VM manager\narchitectures:\n  - amd64\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let s = packages::snaps(dir.path());
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["Version"], "5.21.2");
    assert_eq!(s[0]["ApplicationType"], "snap");
}

#[test]
fn routes_dns_and_leases_parse() {
    let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
    assert_eq!(
        network::default_gateways_v4(route)["eth0"],
        vec!["192.168.1.1".to_string()]
    );
    let route6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n\
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n";
    assert_eq!(
        network::default_gateways_v6(route6)["eth0"],
        vec!["fe80::1".to_string()]
    );
    assert_eq!(
        network::dns_servers("# x\nnameserver 10.0.0.2\nsearch lab\nnameserver 2001:db8::53\n"),
        vec!["10.0.0.2".to_string(), "2001:db8::53".to_string()]
    );
    let leases = "lease {\n  interface \"eth0\";\n  fixed-address 10.0.0.5;\n  option dhcp-server-identifier 10.0.0.1;\n}\nlease {\n  interface \"eth0\";\n  option dhcp-server-identifier 10.0.0.9;\n}\n";
    assert_eq!(network::parse_dhclient_leases(leases)["eth0"], "10.0.0.9");
}

#[test]
fn systemctl_output_becomes_service_entries() {
    let units = "ssh.service loaded active running OpenBSD Secure Shell server\n\
● cron.service loaded failed failed Regular background program processing daemon\n\
getty@tty1.service loaded inactive dead Getty on tty1\n";
    let files =
        "ssh.service enabled enabled\ncron.service enabled enabled\ngetty@.service static -\n";
    let s = services::parse(units, files);
    assert_eq!(s.len(), 3);
    assert_eq!(
        (&*s[0]["Name"], &*s[0]["Status"], &*s[0]["StartType"]),
        ("ssh", "Running", "Automatic")
    );
    assert_eq!(s[0]["DisplayName"], "OpenBSD Secure Shell server");
    assert_eq!(s[1]["Status"], "Failed");
    assert_eq!(s[2]["Status"], "Stopped");
}

#[test]
fn custom_inventory_files_become_custom_types() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let w =
        |n: &str, t: &str| std::fs::write(dir.path().join(n), t).unwrap_or_else(|e| panic!("{e}"));
    w(
        "rack.json",
        r#"{"SchemaVersion":"1.0","TypeName":"Custom:RackInfo","Content":{"Location":"DC1","Slot":4}}"#,
    );
    w(
        "disks.json",
        r#"{"TypeName":"Custom:Disks","Content":[{"Dev":"sda"},{"Dev":"sdb"}]}"#,
    );
    w("bad.json", r#"{"TypeName":"AWS:Application","Content":{}}"#);
    w("broken.json", "{");
    w("notes.txt", "ignored");
    let (items, problems) = custom(dir.path());
    let names: Vec<&str> = items.iter().map(|i| i.type_name.as_str()).collect();
    assert_eq!(names, ["Custom:Disks", "Custom:RackInfo"]);
    assert_eq!(items[1].content[0]["Slot"], "4");
    assert_eq!(items[0].content.len(), 2);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("must start with Custom:"))
    );
}

#[test]
fn content_hash_ignores_capture_time_and_order() {
    let a = Item::new(
        "Custom:X",
        "1.0",
        vec![entry([("A", "1".into())]), entry([("A", "2".into())])],
    );
    let b = Item::new(
        "Custom:X",
        "1.0",
        vec![entry([("A", "2".into())]), entry([("A", "1".into())])],
    );
    assert_eq!(a.content_hash, b.content_hash);
    let c = Item::new("Custom:X", "1.0", vec![entry([("A", "3".into())])]);
    assert_ne!(a.content_hash, c.content_hash);
}

#[test]
fn parameters_select_types() {
    let p: BTreeMap<String, Vec<String>> = [
        ("applications", "Enabled"),
        ("networkConfig", "Disabled"),
        ("services", "Disabled"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
    .collect();
    let s = Selection::from_parameters(&p);
    assert!(s.applications && !s.network_config && !s.services && s.aws_components);
}

/// This machine's own packages and interfaces, read-only.
#[tokio::test]
async fn gathers_this_machine() {
    let me = Identity {
        instance_id: "mi-0123456789abcdef0".into(),
        info: crate::sysinfo::host_info("127.0.0.1", 9).await,
    };
    let (items, problems) = gather(&Selection::default(), &Sources::default(), &me);
    assert!(problems.is_empty(), "{problems:?}");
    let by = |t: &str| items.iter().find(|i| i.type_name == t);
    let apps = by("AWS:Application").unwrap_or_else(|| panic!("no applications"));
    if Path::new("/var/lib/dpkg/status").exists() {
        assert!(
            apps.content.iter().any(|a| a["Name"] == "dpkg"),
            "dpkg itself is installed"
        );
    }
    let net = by("AWS:Network").unwrap_or_else(|| panic!("no network"));
    assert!(net.content.iter().all(|n| n["Name"] != "lo"));
    let info = by("AWS:InstanceInformation").unwrap_or_else(|| panic!("no info"));
    assert_eq!(info.content[0]["InstanceId"], "mi-0123456789abcdef0");
    assert_eq!(
        by("AWS:AWSComponent").map(|c| c.content[0]["Name"].as_str()),
        Some("tether-agent")
    );
}
