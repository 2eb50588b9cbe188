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

#[test]
fn rpm_sqlite_database_is_read_without_the_rpm_tool() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("rpmdb.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap_or_else(|e| panic!("{e}"));
    conn.execute_batch(
        "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for name in ["bash", "gpg-pubkey", "coreutils"] {
        conn.execute(
            "INSERT INTO Packages (blob) VALUES (?1)",
            [rpm_blob(&[
                (1000, 6, name),
                (1001, 6, "1.0"),
                (1022, 6, "x86_64"),
            ])],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    drop(conn);
    let apps = packages::rpm(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = apps.iter().map(|a| a["Name"].as_str()).collect();
    assert_eq!(names, ["bash", "coreutils"]);
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
