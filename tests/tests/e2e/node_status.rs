//! `tether-agent status` on a node: each way of not reaching the coordinator
//! is named by its stage (DNS, TCP, TLS with the pin), and `https_proxy` is
//! honoured through a real HTTP CONNECT proxy on loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use tether_tests::closed_port::ClosedPort;
use tether_tests::{Agent, Coordinator};

/// A minimal HTTP CONNECT proxy on loopback; records the targets asked for.
fn connect_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("test setup");
    let port = listener.local_addr().expect("test setup").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().take(20) {
            let Ok(mut client) = client else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().expect("test setup"));
                let mut line = String::new();
                reader.read_line(&mut line).expect("test setup");
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                log.lock().expect("test setup").push(format!(
                    "{} {target}",
                    line.split_whitespace().next().unwrap_or("")
                ));
                let Ok(upstream) = TcpStream::connect(&target) else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                    return;
                };
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .expect("test setup");
                let (mut c2, mut u2) = (
                    client.try_clone().expect("test setup"),
                    upstream.try_clone().expect("test setup"),
                );
                let mut upstream = upstream;
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut reader, &mut upstream);
                let _ = upstream.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, seen)
}

#[test]
fn status_goes_through_https_proxy_unless_no_proxy_excludes_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let agent = Agent::start(tmp.path(), "n1", &coord);
    let (port, seen) = connect_proxy();
    let proxy = format!("http://127.0.0.1:{port}");

    let (ok, out) = agent.status(&[("https_proxy", &proxy)]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("Proxy:         {proxy}")), "{out}");
    assert!(out.contains("TLS:           ok"), "{out}");
    assert!(out.contains("Coordinator:   reachable"), "{out}");
    let target = format!("CONNECT 127.0.0.1:{}", coord.port);
    assert!(
        seen.lock().unwrap().contains(&target),
        "{:?}",
        seen.lock().expect("test setup")
    );

    let before = seen.lock().unwrap().len();
    let (ok, out) = agent.status(&[("https_proxy", &proxy), ("no_proxy", "127.0.0.1")]);
    assert!(ok, "{out}");
    assert!(out.contains("Proxy:         none"), "{out}");
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "no_proxy was not honoured"
    );

    // A proxy that refuses the tunnel is named as such.
    let refusing = ClosedPort::new();
    let dead = refusing.port();
    let (ok, out) = agent.status(&[("https_proxy", &format!("http://127.0.0.1:{dead}"))]);
    assert!(!ok);
    assert!(
        out.contains("UNREACHABLE: proxy http://127.0.0.1:"),
        "{out}"
    );
}

#[test]
fn status_names_the_failing_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let mut agent = Agent::start(tmp.path(), "n1", &coord);
    // A command makes a poll complete at once, so there is a last poll to show.
    let cmd = coord.send(
        &[&agent.instance_id],
        &serde_json::json!({"commands": ["true"]}),
    );
    coord.wait_invocation(&cmd, &agent.instance_id, std::time::Duration::from_secs(30));
    agent.crash();
    let (ok, out) = agent.status(&[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("DNS:") || out.contains("TCP:           connected"),
        "{out}"
    );
    assert!(out.contains("Last poll:     20"), "{out}");

    agent.set_endpoint(&format!("https://localhost:{}", coord.port));
    let (ok, out) = agent.status(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("DNS:           localhost -> "), "{out}");

    agent.set_endpoint(&format!(
        "https://tether-no-such-host.invalid:{}",
        coord.port
    ));
    let (ok, out) = agent.status(&[]);
    assert!(!ok);
    assert!(
        out.contains("UNREACHABLE: DNS: cannot resolve \"tether-no-such-host.invalid\""),
        "{out}"
    );

    let closed_port = ClosedPort::new();
    let closed = closed_port.port();
    agent.set_endpoint(&format!("https://127.0.0.1:{closed}"));
    let (ok, out) = agent.status(&[]);
    assert!(!ok);
    assert!(
        out.contains("UNREACHABLE: TCP: cannot connect to 127.0.0.1:"),
        "{out}"
    );

    // Another coordinator: another CA, so the pin does not match.
    std::fs::create_dir_all(tmp.path().join("other")).unwrap();
    let other = Coordinator::start(&tmp.path().join("other"));
    agent.set_endpoint(&format!("https://127.0.0.1:{}", other.port));
    let (ok, out) = agent.status(&[]);
    assert!(!ok);
    assert!(out.contains("UNREACHABLE: TLS: CA pin mismatch"), "{out}");
}
