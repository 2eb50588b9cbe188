//! Chaos: faults injected while a stream of commands runs — the network
//! between agents and coordinator cut, lossy and slow (network namespaces and
//! a veth pair made here), coordinator and agents SIGKILLed at random, the
//! coordinator's disk full — and then an audit of the coordinator's history
//! (`tether_tests::chaos::audit`): every invocation terminal, none run twice
//! (each step appends its command ID to a file per node), every acknowledged
//! command and every result stored. Root only (CI runs as root); the tools
//! (`ip`, `nft`, `unshare`, `nsenter`) come from `scripts/test.sh`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;
use tether_tests::chaos::{self, Cli, Rng, Tmpfs};
use tether_tests::netns::{COORD_ADDR, COORD_RELAY_ADDR, Link};
use tether_tests::relay::RelayProcess;
use tether_tests::{Agent, Coordinator, wait_for};

type Ledger = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

/// Sends the tracing step to `instances` every `pace` until `stop`, with a
/// long delivery timeout (none may time out); counts refusals.
fn stream(
    cli: Cli,
    instances: Vec<String>,
    ran: std::path::PathBuf,
    pace: Duration,
    stop: Arc<AtomicBool>,
    ledger: Ledger,
    refused: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let targets: Vec<&str> = instances.iter().map(String::as_str).collect();
        let mut n = 0u32;
        while !stop.load(Ordering::SeqCst) {
            // Every fifth step sleeps a second, so faults land mid-step too.
            let sleep = if n.is_multiple_of(5) { "1" } else { "0" };
            match cli.send(&targets, &ran, sleep, 600) {
                Ok(id) => {
                    ledger.lock().insert(id, instances.clone());
                    n += 1;
                }
                Err(_) => {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
            }
            std::thread::sleep(pace);
        }
    })
}

fn report(name: &str, faults: &str, commands: usize, a: &chaos::Audit, took: Duration) {
    eprintln!(
        "chaos result | {name} | {faults} | {commands} commands | {} invocations | statuses {:?} | lost {} | duplicates {} | {:.0} s",
        a.invocations,
        a.statuses,
        a.lost.len(),
        a.duplicates.len(),
        took.as_secs_f64()
    );
}

#[test]
fn partitions_cut_lossy_and_slow_links_lose_nothing_and_run_nothing_twice() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let ran = tmp.path().join("ran");
    std::fs::create_dir_all(&ran).unwrap();
    let link = Link::new();
    // SQLite in both passes: the coordinator's namespace reaches no server outside.
    let db = tmp.path().join("tether.db");
    let coord = Coordinator::start_in(
        tmp.path(),
        &link.coord.wrap(),
        "0.0.0.0",
        &[
            ("TETHER_ADVERTISE", COORD_ADDR),
            ("TETHER_DATABASE", db.to_str().unwrap()),
        ],
    );
    let cli = Cli::of(&coord);
    let endpoint = format!("https://{COORD_ADDR}:{}", coord.port);
    let agents: Vec<Agent> = (0..2)
        .map(|i| {
            let (id, code) = coord.activation(1);
            let mut a = Agent::register_in(
                &link.node.wrap(),
                tmp.path(),
                &format!("n{i}"),
                &endpoint,
                &coord.ca_pin(),
                (&id, &code),
            );
            a.run();
            coord.wait_online(&a.instance_id, Duration::from_secs(20));
            a
        })
        .collect();
    let ids: Vec<String> = agents.iter().map(|a| a.instance_id.clone()).collect();
    let targets: Vec<&str> = ids.iter().map(String::as_str).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Ledger::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let sender = stream(
        cli.clone(),
        ids.clone(),
        ran.clone(),
        Duration::from_millis(400),
        stop.clone(),
        ledger.clone(),
        refused.clone(),
    );
    std::thread::sleep(Duration::from_secs(3));

    // 1. The link cut for longer than a short delivery timeout.
    link.set_up(false);
    let cut_at = Instant::now();
    let short = cli
        .send(&targets, &ran, "0", 30)
        .expect("send a command with a 30 s delivery timeout during the cut");
    let mut last = Vec::new();
    while cut_at.elapsed() < Duration::from_secs(45) {
        last = cli
            .try_json(&[
                "list-command-invocations",
                "--command-id",
                &short,
                "--details",
            ])
            .map(|v| v["CommandInvocations"].clone())
            .unwrap_or_default()
            .as_array()
            .cloned()
            .unwrap_or_default();
        if last.len() == 2
            && last
                .iter()
                .all(|i| i["StatusDetails"] == "Delivery Timed Out")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        last.len() == 2
            && last
                .iter()
                .all(|i| i["StatusDetails"] == "Delivery Timed Out"),
        "the short command ends Delivery Timed Out while the link is cut: {last:?}"
    );
    let cut_for = cut_at.elapsed();
    link.set_up(true);
    // Agents come back: a command sent after the heal runs on both.
    let probe = cli.send(&targets, &ran, "0", 600).expect("send after heal");
    for id in &ids {
        let inv = coord.wait_invocation(&probe, id, Duration::from_secs(90));
        assert_eq!(inv["Status"], "Success", "after the cut: {inv}");
    }
    ledger.lock().insert(probe, ids.clone());

    // 2. 30 % of the packets dropped each way.
    link.drop_percent(30);
    std::thread::sleep(Duration::from_secs(20));
    link.drop_percent(0);

    // 3. 500 ms each way through a relay in the node's namespace.
    let relay = RelayProcess::start(
        &link.node.wrap(),
        format!("{COORD_RELAY_ADDR}:{}", coord.port)
            .parse()
            .unwrap(),
        Duration::from_millis(500),
    );
    link.redirect(coord.port, Some(relay.port));
    let slow = cli.send(&targets, &ran, "0", 600).expect("send while slow");
    for id in &ids {
        let inv = coord.wait_invocation(&slow, id, Duration::from_secs(90));
        assert_eq!(inv["Status"], "Success", "through the slow link: {inv}");
    }
    ledger.lock().insert(slow, ids.clone());
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        relay.accepted() >= agents.len(),
        "the agents went through the delaying relay ({} connections)",
        relay.accepted()
    );
    link.redirect(coord.port, None);
    drop(relay);

    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    let ledger = ledger.lock().clone();
    let a = chaos::audit(&cli, &ledger, &ran, Duration::from_secs(150));
    report(
        "partitions",
        &format!(
            "link cut {:.0} s, 30 % loss 20 s, 500 ms delay",
            cut_for.as_secs_f64()
        ),
        ledger.len() + 1,
        &a,
        started.elapsed(),
    );
    a.assert_clean();
    // Delivery Timed Out only where due: only the short command, sent while
    // the link was cut, may end so (and then it never ran). Its envelope,
    // handed to a poll held on the cut link, may still arrive after the heal
    // and run once: then its real result replaced the verdict.
    let short_dto = a.count("Delivery Timed Out");
    assert!(short_dto <= 2, "{:?}", a.statuses);
    assert_eq!(
        a.count("Success"),
        a.invocations - short_dto,
        "every other invocation succeeded: {:?}",
        a.statuses
    );
    assert_eq!(
        refused.load(Ordering::SeqCst),
        0,
        "the coordinator refused no send"
    );
}

#[test]
fn kill_9_loops_of_coordinator_and_agents_lose_nothing_and_run_nothing_twice() {
    let started = Instant::now();
    let scale = chaos::scale();
    let commands = ((1000.0 * scale).round() as usize).max(10);
    let kills = ((100.0 * scale).round() as usize).max(3);
    let tmp = tempfile::tempdir().unwrap();
    let ran = tmp.path().join("ran");
    std::fs::create_dir_all(&ran).unwrap();
    let mut coord = Coordinator::start(tmp.path());
    let cli = Cli::of(&coord);
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start(tmp.path(), &format!("n{i}"), &coord))
        .collect();
    let ids: Vec<String> = agents.iter().map(|a| a.instance_id.clone()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Ledger::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (cli, ids, ran, stop, ledger) = (
            cli.clone(),
            ids.clone(),
            ran.clone(),
            stop.clone(),
            ledger.clone(),
        );
        let refused = refused.clone();
        std::thread::spawn(move || {
            let targets: Vec<&str> = ids.iter().map(String::as_str).collect();
            let mut n = 0usize;
            while n < commands && !stop.load(Ordering::SeqCst) {
                let sleep = if n.is_multiple_of(5) { "1" } else { "0" };
                match cli.send(&targets, &ran, sleep, 600) {
                    Ok(id) => {
                        ledger.lock().insert(id, ids.clone());
                        n += 1;
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
    };

    let mut rng = Rng::from_env();
    let (mut coord_kills, mut agent_kills) = (0usize, 0usize);
    for k in 0..kills {
        // Spread over the stream: the k-th kill once k/kills of it was sent.
        let due = k * commands / kills;
        while ledger.lock().len() < due && !sender.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(rng.range(100, 800)));
        if rng.range(0, 3) == 0 {
            coord.crash();
            std::thread::sleep(Duration::from_millis(rng.range(50, 500)));
            coord.restart();
            coord_kills += 1;
        } else {
            let i = rng.range(0, agents.len() as u64) as usize;
            agents[i].crash();
            std::thread::sleep(Duration::from_millis(rng.range(50, 500)));
            agents[i].run();
            agent_kills += 1;
        }
    }
    let killing_took = started.elapsed();
    sender.join().unwrap();
    let ledger = ledger.lock().clone();
    assert_eq!(ledger.len(), commands, "every command was sent in the end");
    let a = chaos::audit(&cli, &ledger, &ran, Duration::from_secs(240));
    report(
        "kill -9",
        &format!(
            "{} SIGKILLs ({coord_kills} coordinator, {agent_kills} agent) in {:.0} s, {} sends refused while down",
            coord_kills + agent_kills,
            killing_took.as_secs_f64(),
            refused.load(Ordering::SeqCst)
        ),
        ledger.len(),
        &a,
        started.elapsed(),
    );
    a.assert_clean();
    // Not asserted (the properties above are): a full-scale run ended 5 of
    // 3,003 invocations Failed, each run once; shown here to be looked into.
    if !a.others.is_empty() {
        eprintln!("chaos kill -9: not Success: {:#?}", a.others);
    }
}

/// The database of a coordinator on a small tmpfs: filled up, then freed.
#[test]
fn a_full_disk_refuses_new_work_by_name_serves_reads_and_loses_nothing() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let ran = tmp.path().join("ran");
    std::fs::create_dir_all(&ran).unwrap();
    let fs = Tmpfs::mount(&tmp.path().join("dbfs"), "16m");
    let db = fs.dir.join("tether.db");
    let coord = Coordinator::start_in(
        tmp.path(),
        &fs.wrap(),
        "127.0.0.1",
        &[("TETHER_DATABASE", db.to_str().unwrap())],
    );
    let cli = Cli::of(&coord);
    let agent = Agent::start(tmp.path(), "n0", &coord);
    let me = agent.instance_id.clone();
    let mut ledger = BTreeMap::new();
    let before = cli.send(&[&me], &ran, "0", 600).expect("send before");
    coord.wait_invocation(&before, &me, Duration::from_secs(30));
    ledger.insert(before.clone(), vec![me.clone()]);
    // A step that finishes while the disk is full: its result must survive.
    let during = cli
        .send(&[&me], &ran, "3", 600)
        .expect("send the long step");
    ledger.insert(during.clone(), vec![me.clone()]);
    wait_for("the long step to start", Duration::from_secs(30), || {
        (coord.invocation(&during, &me)["Status"] == "InProgress").then_some(())
    });

    let (_, out) = fs.sh("dd if=/dev/zero of=\"$DIR/fill\" bs=64k 2>&1; df -k \"$DIR\"");
    assert!(out.contains("No space left"), "the tmpfs filled up: {out}");
    let refusal = cli
        .send(&[&me], &ran, "0", 600)
        .expect_err("new work is refused while the disk is full");
    eprintln!("refused while full: {refusal}");
    assert!(
        refusal.contains("out of disk space"),
        "the refusal names the full disk: {refusal}"
    );
    // Reads are still served.
    let inv = coord.invocation(&before, &me);
    assert_eq!(inv["Status"], "Success", "{inv}");
    let cmds: Value = coord.json(&["list-commands"]);
    assert!(cmds["Commands"].as_array().unwrap().len() >= 2, "{cmds}");
    // The long step ends meanwhile; its report cannot be stored yet.
    std::thread::sleep(Duration::from_secs(5));

    let (ok, out) = fs.sh("rm -f \"$DIR/fill\"");
    assert!(ok, "free the tmpfs: {out}");
    let after = cli
        .send(&[&me], &ran, "0", 600)
        .expect("send after space returns");
    ledger.insert(after.clone(), vec![me.clone()]);
    for id in [&during, &after] {
        let inv = coord.wait_invocation(id, &me, Duration::from_secs(60));
        assert_eq!(inv["Status"], "Success", "{inv}");
    }
    let a = chaos::audit(&cli, &ledger, &ran, Duration::from_secs(60));
    report(
        "disk full",
        "coordinator database on a full 16 MiB tmpfs, then freed",
        ledger.len(),
        &a,
        started.elapsed(),
    );
    a.assert_clean();
    assert_eq!(a.count("Success"), 3, "{:?}", a.statuses);
}
