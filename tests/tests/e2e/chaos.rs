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
use serde_json::json;
use tether_tests::chaos::{self, Cli, FakeClock, Rng, Tmpfs};
use tether_tests::netns::{COORD_ADDR, COORD_RELAY_ADDR, Link};
use tether_tests::postgres::{PgCluster, StopMode};
use tether_tests::relay::RelayProcess;
use tether_tests::{Agent, Coordinator, TestDatabase, wait_for};

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

/// Sends `commands` tracing commands to `instances`, one after the other,
/// through the first of `clis` that takes it (starting with the next one
/// each time, so replicas share the stream); a send no CLI takes is counted
/// in `refused` and tried again.
fn counted_stream(
    clis: Vec<Cli>,
    instances: Vec<String>,
    ran: std::path::PathBuf,
    commands: usize,
    ledger: Ledger,
    refused: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let targets: Vec<&str> = instances.iter().map(String::as_str).collect();
        let mut n = 0usize;
        while n < commands {
            let sleep = if n.is_multiple_of(5) { "1" } else { "0" };
            let sent = (0..clis.len()).find_map(|k| {
                let cli = &clis[(n + k) % clis.len()];
                match cli.send(&targets, &ran, sleep, 600) {
                    Ok(id) => Some(id),
                    Err(_) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                        None
                    }
                }
            });
            match sent {
                Some(id) => {
                    ledger.lock().insert(id, instances.clone());
                    n += 1;
                }
                None => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    })
}

/// Waits until the stream has sent `due` commands (or ended).
fn wait_sent(ledger: &Ledger, due: usize, sender: &std::thread::JoinHandle<()>) {
    while ledger.lock().len() < due && !sender.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Established connections of `tether-agent` processes to `port` (`ss -p`):
/// agents, not the CLI's calls (an agent may keep an idle one to a replica
/// it left).
fn agent_connections_to(port: u16) -> usize {
    let out = std::process::Command::new("ss")
        .args(["-Htnp", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"tether-agent\""))
        .count()
}

/// Whether process `pid` still runs (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
        .unwrap_or(false)
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

/// PostgreSQL restarted (stopped `fast`, then `immediate` as a crash, in
/// turn) under a coordinator while commands stream through it: the
/// coordinator rides it out without a restart of its own, and afterwards
/// every invocation is terminal, none lost, none run twice. A server of the
/// test's own, in both passes (the suite's shared one must not restart).
#[test]
fn postgresql_restarted_mid_run_loses_nothing_and_runs_nothing_twice() {
    let started = Instant::now();
    let scale = chaos::scale();
    let commands = ((400.0 * scale).round() as usize).max(30);
    let restarts = ((10.0 * scale).round() as usize).max(2);
    let tmp = tempfile::tempdir().unwrap();
    let ran = tmp.path().join("ran");
    std::fs::create_dir_all(&ran).unwrap();
    let mut pg = PgCluster::start();
    // The test cluster runs with synchronous_commit off; a crash would then
    // lose acknowledged commits, which is the setting's doing, not Tether's.
    pg.synchronous_commit();
    let url = pg.create_database("chaos_pg_restart");
    let coord = Coordinator::start_with_env(tmp.path(), &[("TETHER_DATABASE", url.as_str())]);
    let pid = coord.pid().expect("coordinator pid");
    let cli = Cli::of(&coord);
    let agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start(tmp.path(), &format!("n{i}"), &coord))
        .collect();
    let ids: Vec<String> = agents.iter().map(|a| a.instance_id.clone()).collect();

    let ledger = Ledger::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let sender = counted_stream(
        vec![cli.clone()],
        ids.clone(),
        ran.clone(),
        commands,
        ledger.clone(),
        refused.clone(),
    );
    let mut rng = Rng::from_env();
    let mut down_for = Duration::ZERO;
    for k in 0..restarts {
        wait_sent(&ledger, (k + 1) * commands / (restarts + 1), &sender);
        std::thread::sleep(Duration::from_millis(rng.range(100, 800)));
        let mode = if k % 2 == 0 {
            StopMode::Fast
        } else {
            StopMode::Immediate
        };
        let t = Instant::now();
        pg.stop_server(mode);
        std::thread::sleep(Duration::from_millis(rng.range(500, 3000)));
        pg.start_again();
        down_for += t.elapsed();
        assert!(
            alive(pid),
            "the coordinator survived the restart ({mode:?})"
        );
    }
    sender.join().unwrap();
    // It recovered by itself: a command sent now runs everywhere.
    let probe = cli.send(
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        &ran,
        "0",
        600,
    );
    let probe = probe.expect("send after the last restart");
    for id in &ids {
        let inv = coord.wait_invocation(&probe, id, Duration::from_secs(60));
        assert_eq!(inv["Status"], "Success", "after the restarts: {inv}");
    }
    ledger.lock().insert(probe, ids.clone());
    let ledger = ledger.lock().clone();
    let a = chaos::audit(&cli, &ledger, &ran, Duration::from_secs(240));
    report(
        "postgres restart",
        &format!(
            "{restarts} PostgreSQL restarts (fast and immediate in turn), down {:.0} s in all, {} sends refused meanwhile",
            down_for.as_secs_f64(),
            refused.load(Ordering::SeqCst)
        ),
        ledger.len(),
        &a,
        started.elapsed(),
    );
    a.assert_clean();
    assert_eq!(
        coord.pid(),
        Some(pid),
        "the coordinator was never restarted"
    );
    assert!(alive(pid), "the coordinator still runs");
    if !a.others.is_empty() {
        eprintln!("chaos postgres restart: not Success: {:#?}", a.others);
    }
    drop(agents);
}

/// Two replicas on one PostgreSQL database, three agents registered with
/// both endpoints; while commands stream through either replica, replicas
/// and agents are SIGKILLed at random (a replica at least once, first) and
/// restarted. A killed replica's agents move to the survivor; nothing is
/// lost or run twice.
#[test]
fn a_replica_killed_in_the_kill_loop_hands_its_agents_over_and_loses_nothing() {
    let started = Instant::now();
    let scale = chaos::scale();
    let commands = ((600.0 * scale).round() as usize).max(30);
    let kills = ((60.0 * scale).round() as usize).max(4);
    let tmp = tempfile::tempdir().unwrap();
    let ran = tmp.path().join("ran");
    std::fs::create_dir_all(&ran).unwrap();
    let db = TestDatabase::postgres();
    let secrets = tmp.path().join("secrets");
    let secrets = secrets.to_str().unwrap();
    let env = [
        ("TETHER_DATABASE", db.url.as_str()),
        ("TETHER_SECRETS_DIR", secrets),
    ];
    let mut replicas: Vec<Coordinator> = ["a", "b"]
        .iter()
        .map(|n| {
            let dir = tmp.path().join(n);
            std::fs::create_dir_all(&dir).unwrap();
            Coordinator::start_with_env(&dir, &env)
        })
        .collect();
    let both = format!("{},{}", replicas[0].endpoint(), replicas[1].endpoint());
    let (id, code) = replicas[0].activation(3);
    let pin = replicas[0].ca_pin();
    let mut agents: Vec<Agent> = (0..3)
        .map(|n| {
            let mut g = Agent::register(tmp.path(), &format!("n{n}"), &both, &pin, (&id, &code));
            g.run();
            g
        })
        .collect();
    for g in &agents {
        replicas[1].wait_online(&g.instance_id, Duration::from_secs(30));
    }
    let ids: Vec<String> = agents.iter().map(|a| a.instance_id.clone()).collect();
    let clis: Vec<Cli> = replicas.iter().map(Cli::of).collect();

    let ledger = Ledger::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let sender = counted_stream(
        clis.clone(),
        ids.clone(),
        ran.clone(),
        commands,
        ledger.clone(),
        refused.clone(),
    );
    let mut rng = Rng::from_env();
    let (mut replica_kills, mut agent_kills) = (0usize, 0usize);
    let mut moved_in = Vec::new();
    let mut probes = 0usize;
    for k in 0..kills {
        wait_sent(&ledger, k * commands / kills, &sender);
        std::thread::sleep(Duration::from_millis(rng.range(100, 800)));
        if k == 0 || rng.range(0, 2) == 0 {
            // The replica that holds more agents' polls now dies.
            let per: Vec<usize> = replicas
                .iter()
                .map(|r| agent_connections_to(r.port))
                .collect();
            let doomed = if per[0] >= per[1] { 0 } else { 1 };
            let survivor = 1 - doomed;
            replicas[doomed].crash();
            let t = Instant::now();
            // Every agent answers a command sent now: with one replica
            // alive, each of them polls the survivor.
            let targets: Vec<&str> = ids.iter().map(String::as_str).collect();
            let probe = clis[survivor]
                .send(&targets, &ran, "0", 600)
                .expect("send through the survivor");
            for i in &ids {
                let inv = replicas[survivor].wait_invocation(&probe, i, Duration::from_secs(60));
                assert_eq!(inv["Status"], "Success", "on the survivor: {inv}");
            }
            moved_in.push(t.elapsed());
            ledger.lock().insert(probe, ids.clone());
            probes += 1;
            std::thread::sleep(Duration::from_millis(rng.range(50, 500)));
            replicas[doomed].restart();
            replica_kills += 1;
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
    assert_eq!(
        ledger.len(),
        commands + probes,
        "every command was sent in the end"
    );
    let a = chaos::audit(&clis[0], &ledger, &ran, Duration::from_secs(240));
    let slowest = moved_in.iter().max().copied().unwrap_or_default();
    report(
        "replica kill -9",
        &format!(
            "{} SIGKILLs ({replica_kills} replica, {agent_kills} agent) in {:.0} s; after each replica kill a command through the survivor ran on every agent within {:.1} s (slowest); {} sends refused by a dead replica",
            replica_kills + agent_kills,
            killing_took.as_secs_f64(),
            slowest.as_secs_f64(),
            refused.load(Ordering::SeqCst)
        ),
        ledger.len(),
        &a,
        started.elapsed(),
    );
    a.assert_clean();
    if !a.others.is_empty() {
        eprintln!("chaos replica kill: not Success: {:#?}", a.others);
    }
}

/// An agent whose state directory (registration, spool) is on a small
/// tmpfs that fills up: a command that cannot be spooled fails naming the
/// full disk and never runs; a step whose output fills the disk fails
/// naming it, with its result recorded; kill -9 and restarts on the full
/// disk start cleanly and run nothing again; once space returns, new
/// commands run.
#[test]
fn a_full_agent_spool_fails_steps_by_name_and_poisons_no_restart() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let ran = tmp.path().join("ran");
    std::fs::create_dir_all(&ran).unwrap();
    let coord = Coordinator::start(tmp.path());
    let cli = Cli::of(&coord);
    let fs = Tmpfs::mount(&tmp.path().join("nodefs"), "8m");
    let (id, code) = coord.activation(1);
    let mut agent = Agent::register_in(
        &fs.wrap(),
        &fs.dir,
        "n0",
        &coord.endpoint(),
        &coord.ca_pin(),
        (&id, &code),
    );
    // Its logs outside the tmpfs, where the test reads them.
    agent.log_dir = tmp.path().join("n0-log");
    agent.run();
    coord.wait_online(&agent.instance_id, Duration::from_secs(20));
    let me = agent.instance_id.clone();
    let mut ledger = BTreeMap::new();
    let output = |inv: &Value| {
        format!(
            "{} {}",
            inv["StandardOutputContent"].as_str().unwrap_or(""),
            inv["StandardErrorContent"].as_str().unwrap_or("")
        )
    };
    let before = cli.send(&[&me], &ran, "0", 600).expect("send before");
    assert_eq!(
        coord.wait_invocation(&before, &me, Duration::from_secs(30))["Status"],
        "Success"
    );
    ledger.insert(before, vec![me.clone()]);

    // 1. The disk full: a new command cannot be spooled.
    let (_, out) = fs.sh("dd if=/dev/zero of=\"$DIR/fill\" bs=64k 2>&1; df -k \"$DIR\"");
    assert!(out.contains("No space left"), "the tmpfs filled up: {out}");
    let unspooled = cli.send(&[&me], &ran, "0", 600).expect("send while full");
    ledger.insert(unspooled.clone(), vec![me.clone()]);
    let inv = coord.wait_invocation(&unspooled, &me, Duration::from_secs(60));
    eprintln!("unspooled: {}", output(&inv));
    assert_eq!(inv["Status"], "Failed", "{inv}");
    assert!(
        output(&inv).contains("disk is full") && output(&inv).contains("did not run"),
        "the failure names the full disk: {inv}"
    );
    // Killed and started again on the full disk: it comes back.
    agent.crash();
    agent.run();
    let probe_full = cli.send(&[&me], &ran, "0", 600).expect("send while full");
    ledger.insert(probe_full.clone(), vec![me.clone()]);
    let inv = coord.wait_invocation(&probe_full, &me, Duration::from_secs(60));
    assert_eq!(inv["Status"], "Failed", "restarted on a full disk: {inv}");
    let (ok, out) = fs.sh("rm -f \"$DIR/fill\"");
    assert!(ok, "free the tmpfs: {out}");
    let after = cli
        .send(&[&me], &ran, "0", 600)
        .expect("send after space returns");
    ledger.insert(after.clone(), vec![me.clone()]);
    assert_eq!(
        coord.wait_invocation(&after, &me, Duration::from_secs(60))["Status"],
        "Success",
        "space returned"
    );

    // 2. A step whose output fills the disk: about 1 MiB left, 4 MiB written.
    let (_, out) = fs.sh(
        "dd if=/dev/zero of=\"$DIR/fill\" bs=64k count=$(( $(df -k --output=avail \"$DIR\" | tail -1) / 64 - 16 )) 2>&1; df -k \"$DIR\"",
    );
    eprintln!("nearly full: {out}");
    let d = ran.display();
    let flood = coord.send(
        &[&me],
        &json!({"commands": [
            format!("echo \"$TETHER_COMMAND_ID\" >> {d}/\"$TETHER_INSTANCE_ID\""),
            "head -c 4000000 /dev/zero | tr '\\0' x",
            "echo \"done $TETHER_COMMAND_ID\"",
        ]}),
    );
    let inv = coord.wait_invocation(&flood, &me, Duration::from_secs(90));
    let text = output(&inv);
    let tail = |s: &str| {
        let n = s.chars().count();
        s.chars().skip(n.saturating_sub(400)).collect::<String>()
    };
    eprintln!("flood: {} {}", inv["Status"], tail(&text));
    assert_eq!(
        inv["Status"], "Failed",
        "a step whose output was cut by the full disk"
    );
    assert!(
        text.contains("disk is full") || text.contains("No space left on device"),
        "the failure names the full disk: {}",
        tail(&text)
    );
    assert!(
        !text.contains("supervisor exited without a result"),
        "the step's own result was recorded: {}",
        tail(&text)
    );
    // Restarts on that disk: nothing runs again, and it still serves.
    agent.crash();
    agent.run();
    std::thread::sleep(Duration::from_secs(3));
    agent.crash();
    let (ok, out) = fs.sh("rm -f \"$DIR/fill\"");
    assert!(ok, "free the tmpfs: {out}");
    agent.run();
    let last = cli.send(&[&me], &ran, "0", 600).expect("send at the end");
    ledger.insert(last.clone(), vec![me.clone()]);
    assert_eq!(
        coord.wait_invocation(&last, &me, Duration::from_secs(60))["Status"],
        "Success"
    );
    // The flood's trace line is its own (the audit counts it, not its output).
    let a = chaos::audit(&cli, &ledger, &ran, Duration::from_secs(60));
    let flood_runs = std::fs::read_to_string(ran.join(&me))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == flood)
        .count();
    report(
        "agent spool full",
        "agent state directory on a full 8 MiB tmpfs (a command arriving, a step's output filling it), 3 kill -9/restarts on it, then freed",
        ledger.len() + 1,
        &a,
        started.elapsed(),
    );
    a.assert_clean();
    assert_eq!(flood_runs, 1, "the flooding step ran once");
    assert_eq!(a.count("Success"), 3, "{:?}", a.statuses);
    assert_eq!(a.count("Failed"), 3, "{:?}", a.statuses);
    for c in [&unspooled, &probe_full] {
        assert!(
            !std::fs::read_to_string(ran.join(&me))
                .unwrap_or_default()
                .contains(c.as_str()),
            "{c}: failed to spool, so it never ran"
        );
    }
}

/// Lines of `path` equal to `line` (0 when it does not exist).
fn lines_in(path: &std::path::Path, line: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == line)
        .count()
}

/// Clock jumps on a node (libfaketime in the agent, only the wall clock):
/// two hours forward, back, 31 minutes forward, and past every certificate's
/// end. What "behaving" means here (docs/reliability.md):
/// - commands run throughout: envelopes are checked against the
///   coordinator's time (the skew each reply carries), so none is refused
///   as expired or from the future;
/// - the daemon warns of the skew in its log, and `tether-agent status`
///   names it with the advice to sync the time;
/// - associations on rate and cron schedules: a jump forward runs what fell
///   due once (not once per missed interval); a jump back neither runs them
///   again nor puts their next run off by the jump;
/// - by a clock past the coordinator's certificate the agent cannot connect
///   and says it is a clock problem; once the clock is right it reconnects
///   by itself and what was sent meanwhile runs.
#[test]
fn clock_jumps_on_a_node_keep_commands_schedules_and_advice_sensible() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let ran = tmp.path().join("ran");
    std::fs::create_dir_all(&ran).unwrap();
    let coord = Coordinator::start(tmp.path());
    let cli = Cli::of(&coord);
    let clock = FakeClock::new(&tmp.path().join("faketime"));
    let env = clock.env();
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut agent = Agent::start_with_env(tmp.path(), "n0", &coord, &env_ref);
    let me = agent.instance_id.clone();
    let mut ledger = BTreeMap::new();
    let run_one = |what: &str, ledger: &mut BTreeMap<String, Vec<String>>| {
        let c = cli.send(&[&me], &ran, "0", 600).expect("send");
        let inv = coord.wait_invocation(&c, &me, Duration::from_secs(90));
        assert_eq!(inv["Status"], "Success", "{what}: {inv}");
        ledger.insert(c, vec![me.clone()]);
    };

    // Two associations, on a rate and on a cron schedule, each appending
    // its name to a trace file; both run once at creation.
    let traces = tmp.path().join("assoc");
    for (name, expr) in [
        ("rate", "rate(30 minutes)"),
        ("cron", "cron(0 0/30 * * * ? *)"),
    ] {
        let params = json!({"commands": [format!("echo {name} >> {}", traces.display())]});
        coord.json(&[
            "create-association",
            "--name",
            "AWS-RunShellScript",
            "--targets",
            &format!("Key=InstanceIds,Values={me}"),
            "--parameters",
            &params.to_string(),
            "--schedule-expression",
            expr,
        ]);
    }
    let runs = |n: usize| lines_in(&traces, "rate") == n && lines_in(&traces, "cron") == n;
    wait_for(
        "both associations to run once",
        Duration::from_secs(60),
        || runs(1).then_some(()),
    );
    run_one("the clock right", &mut ledger);

    // 1. Two hours forward.
    clock.set("+2h");
    run_one("two hours ahead", &mut ledger);
    wait_for("the skew warning", Duration::from_secs(30), || {
        agent
            .log()
            .lines()
            .any(|l| {
                l.contains("differs from the coordinator's by 7") && l.contains("sync the time")
            })
            .then_some(())
    });
    let (ok, status) = agent.status(&env_ref);
    assert!(
        !ok && status.contains("ahead of the coordinator") && status.contains("sync the time"),
        "status names the skew: {status}"
    );
    wait_for("what fell due to run once", Duration::from_secs(60), || {
        runs(2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        runs(2),
        "four missed intervals, one run each: {:?}",
        std::fs::read_to_string(&traces)
    );

    // 2. Back to the right time: nothing runs again, and the schedules
    // count from now rather than from the runs two hours ahead.
    clock.set("+0");
    run_one("set back", &mut ledger);
    let runs_json = agent.state_dir.join("associations").join("runs.json");
    wait_for(
        "the schedules counted from now",
        Duration::from_secs(60),
        || {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&runs_json).ok()?).ok()?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_millis() as i64;
            let all = v.as_object()?;
            (all.len() == 2
                && all
                    .values()
                    .all(|r| r["LastRunMs"].as_i64().is_some_and(|t| t <= now)))
            .then_some(())
        },
    );
    assert!(runs(2), "nothing ran at the jump back");
    let (ok, status) = agent.status(&env_ref);
    assert!(ok && status.contains("(ok)"), "status: {status}");

    // 3. 31 minutes forward: one interval passed since the jump back.
    clock.set("+31m");
    wait_for(
        "both associations to run after one interval",
        Duration::from_secs(60),
        || runs(3).then_some(()),
    );
    clock.set("+0");

    // 4. Past the end of the coordinator's certificate (5 years): a new
    // connection (the agent restarted) is refused, and said to be the clock.
    clock.set("+2000d");
    agent.crash();
    agent.run();
    let (_, status) = agent.status(&env_ref);
    assert!(
        status.contains("clock skew")
            && status.contains("expired")
            && status.contains("sync the time"),
        "status says it is the clock: {status}"
    );
    let waiting = cli.send(&[&me], &ran, "0", 600).expect("send while skewed");
    ledger.insert(waiting.clone(), vec![me.clone()]);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(coord.invocation(&waiting, &me)["Status"], "Pending");
    wait_for(
        "the agent log to name the clock",
        Duration::from_secs(30),
        || agent.log().contains("clock skew").then_some(()),
    );
    clock.set("+0");
    let inv = coord.wait_invocation(&waiting, &me, Duration::from_secs(60));
    assert_eq!(
        inv["Status"], "Success",
        "after the clock was put right: {inv}"
    );
    run_one("put right", &mut ledger);

    let a = chaos::audit(&cli, &ledger, &ran, Duration::from_secs(60));
    report(
        "clock jumps",
        "node clock +2 h, back, +31 min, back, +2000 days (certificates expired), back",
        ledger.len(),
        &a,
        started.elapsed(),
    );
    a.assert_clean();
    assert_eq!(a.count("Success"), ledger.len(), "{:?}", a.statuses);
}
