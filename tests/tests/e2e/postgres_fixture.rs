//! The PostgreSQL fixture itself (`tether_tests::postgres`): a throwaway
//! cluster from Debian's binaries serves two databases on loopback only, and
//! dropping it stops the server and removes its directory.

use std::time::Duration;

use tether_tests::postgres::{PgCluster, psql};
use tether_tests::wait_for;

#[test]
fn a_cluster_serves_two_databases_on_loopback_and_is_gone_once_dropped() {
    let cluster = PgCluster::start();
    eprintln!("PostgreSQL cluster started in {:?}", cluster.started_in);
    let url = cluster.url();
    assert!(
        url.starts_with("postgres://postgres@127.0.0.1:"),
        "server URL: {url}"
    );

    let a = cluster.create_database("fixture_a");
    let b = cluster.create_database("fixture_b");
    assert_eq!(a, format!("{url}/fixture_a"));
    assert_eq!(b, format!("{url}/fixture_b"));
    psql(&a, "CREATE TABLE t (v text); INSERT INTO t VALUES ('in a')");
    psql(&b, "CREATE TABLE t (v text); INSERT INTO t VALUES ('in b')");
    assert_eq!(psql(&a, "SELECT v FROM t"), "in a\n");
    assert_eq!(psql(&b, "SELECT v FROM t"), "in b\n");
    assert_eq!(
        psql(&a, "SELECT current_database()"),
        "fixture_a\n",
        "the URL names its database"
    );

    // Listening on 127.0.0.1 only, with room for three coordinators' pools.
    assert_eq!(psql(&a, "SHOW listen_addresses"), "127.0.0.1\n");
    assert_eq!(psql(&a, "SHOW max_connections"), "300\n");
    let socket_dir = psql(&a, "SHOW unix_socket_directories");
    assert_eq!(socket_dir.trim(), cluster.dir().display().to_string());

    let pid = cluster.pid().expect("postmaster.pid names the server");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists(), "server process {pid} runs");
    let dir = cluster.dir().to_path_buf();
    drop(cluster);

    assert!(!dir.exists(), "{} removed", dir.display());
    // `pg_ctl stop -w` returned once the postmaster was gone; allow its
    // parent a moment to reap it.
    wait_for(
        &format!("server process {pid} to end"),
        Duration::from_secs(5),
        || {
            let stat = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
            // Gone, or a zombie waiting for init to reap it.
            (stat.is_empty() || stat.contains(") Z ")).then_some(())
        },
    );
    let refused = tether_tests::postgres::drop_database(&url, "fixture_a");
    assert!(
        refused.is_err(),
        "the server no longer answers: {refused:?}"
    );
}

#[test]
fn database_names_are_unique_across_calls() {
    let a = tether_tests::postgres::unique_database_name("e2e");
    let b = tether_tests::postgres::unique_database_name("e2e");
    assert_ne!(a, b);
    assert!(
        a.starts_with(&format!("e2e_{}_", std::process::id())),
        "{a}"
    );
}
