//! `tether-test-postgres`: one throwaway PostgreSQL cluster for a whole test
//! pass (`scripts/test.sh` runs it as a coprocess). Prints the server's URL
//! (without a database) as its first line on stdout, then keeps the server
//! until its stdin closes or it gets SIGINT, SIGTERM or SIGHUP, and then stops
//! it and removes its directory — so a test script that dies, whatever the
//! way, leaves no server behind once its end of the pipe is closed.

use std::io::{Read, Write};
use std::sync::mpsc;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use tether_tests::postgres::PgCluster;

fn main() {
    // Blocked here and in every thread, so that they arrive only through
    // `wait` below; the server's processes start with a clear mask (std
    // resets it when it spawns).
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None) {
        eprintln!("tether-test-postgres: cannot block signals: {e}");
        std::process::exit(1);
    }

    let cluster = PgCluster::start();
    println!("{}", cluster.url());
    let _ = std::io::stdout().flush();
    eprintln!(
        "tether-test-postgres: PostgreSQL on {} ({}), started in {:.2} s; \
         close stdin or send SIGTERM to stop it",
        cluster.url(),
        cluster.dir().display(),
        cluster.started_in.as_secs_f64()
    );

    let (done, finished) = mpsc::channel::<String>();
    let on_eof = done.clone();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = on_eof.send("stdin closed".into());
    });
    std::thread::spawn(move || {
        let why = match signals.wait() {
            Ok(signal) => format!("{signal}"),
            Err(e) => format!("sigwait failed: {e}"),
        };
        let _ = done.send(why);
    });
    let why = finished.recv().unwrap_or_default();
    eprintln!("tether-test-postgres: {why}; stopping PostgreSQL");
    drop(cluster);
}
