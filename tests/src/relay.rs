//! A TCP relay on loopback in front of a real listener: a second address for
//! the same coordinator that a test can kill — its listener closed and every
//! connection through it cut at once, as when a replica's process dies.
//! [`Relay::start_delayed`] runs one inside a network namespace that holds
//! every byte back for a while, as a slow link would.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A running relay from `127.0.0.1:port` to `127.0.0.1:target`.
pub struct Relay {
    pub port: u16,
    stopped: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<AtomicUsize>,
}

/// Copies `from` to `to` until either side ends, then closes `to`'s write half.
fn pipe(mut from: impl Read, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// As [`pipe`], holding each chunk back by `delay` (without limiting the
/// throughput: a reader queues, a writer sends each chunk when due).
fn delayed_pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    });
    for (due, chunk) in rx {
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        if to.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Relay {
    pub fn start(target: u16) -> Relay {
        Self::start_on(0, target)
    }

    /// A relay on 127.0.0.1 of this process's namespace (any free port)
    /// forwarding to `target` with every byte held back by `delay` each
    /// way; `tether-test-relay` runs one inside a network namespace.
    pub fn start_delayed(target: SocketAddr, delay: Duration) -> Relay {
        Self::spawn(0, target, Some(delay))
    }

    /// A relay on a given port (0: any free one), e.g. the port of one killed
    /// before, as a replica restarted where its agents expect it.
    pub fn start_on(port: u16, target: u16) -> Relay {
        Self::spawn(port, SocketAddr::from(([127, 0, 0, 1], target)), None)
    }

    /// The relay on 127.0.0.1:`port`.
    fn spawn(port: u16, target: SocketAddr, delay: Option<Duration>) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("relay listener");
        let port = listener.local_addr().expect("relay address").port();
        listener.set_nonblocking(true).expect("relay listener");
        let relay = Relay {
            port,
            stopped: Arc::new(AtomicBool::new(false)),
            streams: Arc::new(Mutex::new(Vec::new())),
            accepted: Arc::new(AtomicUsize::new(0)),
        };
        let (stopped, streams, accepted) = (
            relay.stopped.clone(),
            relay.streams.clone(),
            relay.accepted.clone(),
        );
        std::thread::spawn(move || {
            // The listener goes with this thread, so a killed relay refuses connections.
            while !stopped.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                let Ok(upstream) = TcpStream::connect(target) else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
                    continue;
                };
                {
                    let mut all = streams.lock();
                    if stopped.load(Ordering::SeqCst) {
                        let _ = c2.shutdown(Shutdown::Both);
                        let _ = u2.shutdown(Shutdown::Both);
                        break;
                    }
                    all.extend([c2, u2]);
                }
                let (Ok(c3), Ok(u3)) = (client.try_clone(), upstream.try_clone()) else {
                    continue;
                };
                match delay {
                    Some(d) => {
                        std::thread::spawn(move || delayed_pipe(client, u3, d));
                        std::thread::spawn(move || delayed_pipe(upstream, c3, d));
                    }
                    None => {
                        std::thread::spawn(move || pipe(client, u3));
                        std::thread::spawn(move || pipe(upstream, c3));
                    }
                }
            }
        });
        relay
    }

    /// Connections relayed so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes the listener and cuts every relayed connection.
    pub fn kill(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        for s in self.streams.lock().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        // The accept loop notices within its 20 ms nap and drops the listener.
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `tether-test-relay` (a relay with a delay) started under `wrap`, e.g.
/// inside a network namespace; killed on drop.
pub struct RelayProcess {
    pub port: u16,
    child: std::process::Child,
    accepted: Arc<AtomicUsize>,
}

impl RelayProcess {
    pub fn start(wrap: &[String], target: SocketAddr, delay: Duration) -> RelayProcess {
        use std::io::BufRead;
        let mut child = crate::wrapped(wrap, crate::bin("tether-test-relay"))
            .arg(target.to_string())
            .arg(delay.as_millis().to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start tether-test-relay");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("relay stdout")).lines();
        let port = lines
            .next()
            .and_then(Result::ok)
            .and_then(|l| l.strip_prefix("listening on ").and_then(|p| p.parse().ok()))
            .expect("tether-test-relay prints its port");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for _ in lines.map_while(Result::ok) {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        RelayProcess {
            port,
            child,
            accepted,
        }
    }

    /// Connections relayed so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
