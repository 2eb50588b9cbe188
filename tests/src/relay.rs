//! A TCP relay on loopback in front of a real listener: a second address for
//! the same coordinator that a test can kill — its listener closed and every
//! connection through it cut at once, as when a replica's process dies.

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

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

impl Relay {
    pub fn start(target: u16) -> Relay {
        Self::start_on(0, target)
    }

    /// A relay on a given port (0: any free one), e.g. the port of one killed
    /// before, as a replica restarted where its agents expect it.
    pub fn start_on(port: u16, target: u16) -> Relay {
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
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
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
                std::thread::spawn(move || pipe(client, u3));
                std::thread::spawn(move || pipe(upstream, c3));
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
