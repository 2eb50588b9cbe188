//! `tether-test-relay TARGET DELAY_MS`: a TCP relay on 127.0.0.1 (any free
//! port) to TARGET that holds every byte back DELAY_MS each way. Prints
//! `listening on PORT`, then `accepted` per connection. The chaos tests run
//! it inside a network namespace (`ip netns exec`) and kill it when done.

use std::time::Duration;

use tether_tests::relay::Relay;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (target, delay_ms) = match args.as_slice() {
        [t, d] => match (t.parse(), d.parse::<u64>()) {
            (Ok(t), Ok(d)) => (t, d),
            _ => {
                eprintln!(
                    "tether-test-relay: expected HOST:PORT and milliseconds, got {t:?} {d:?}"
                );
                std::process::exit(2);
            }
        },
        _ => {
            eprintln!("usage: tether-test-relay TARGET DELAY_MS");
            std::process::exit(2);
        }
    };
    let relay = Relay::start_delayed(target, Duration::from_millis(delay_ms));
    println!("listening on {}", relay.port);
    let mut seen = 0;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        while seen < relay.accepted() {
            println!("accepted");
            seen += 1;
        }
    }
}
