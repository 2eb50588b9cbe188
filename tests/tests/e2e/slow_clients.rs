//! Slow clients (issue 13, item 3): connections that open and then dawdle —
//! no TLS handshake, no HTTP/2 preface, headers or a body dribbled a byte
//! at a time, a declared body larger than the cap — on both listeners, 20
//! connections of each kind at once on loopback. Each must be let go within
//! its timeout (`tether_ssm::limits`: 10 s for a handshake, a preface or
//! headers, 30 s for a body); the test prints when each kind was closed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::Value;
use tether_tests::Coordinator;

/// Connections of each kind.
const N: usize = 20;
/// Opens one dawdling connection.
type Opener<'a> = Box<dyn Fn() -> Box<dyn Dawdler> + Send + 'a>;

/// How long any connection is watched at most.
const WATCH: Duration = Duration::from_secs(60);

fn client_config(coord: &Coordinator, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let operator: Value = serde_json::from_str(
        &std::fs::read_to_string(coord.operator_json()).expect("operator.json"),
    )
    .expect("operator.json is JSON");
    let mut roots = rustls::RootCertStore::empty();
    let pem = operator["CaCertificate"].as_str().expect("CaCertificate");
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

/// A connection held by a dawdling client; `poke` is called every second
/// until the server closes it (a byte of headers or body, or nothing).
trait Dawdler: Send {
    /// Whether the server has closed the connection (read EOF or an error).
    fn closed(&mut self) -> bool;
    fn poke(&mut self) {}
}

struct Tcp(TcpStream);

impl Dawdler for Tcp {
    fn closed(&mut self) -> bool {
        read_closed(&mut self.0)
    }
}

/// Reads with a short timeout: true once the peer closed (EOF or error);
/// anything it sent (an answer) is read and dropped.
fn read_closed(r: &mut impl Read) -> bool {
    let mut buf = [0u8; 4096];
    match r.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

struct Tls {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    /// Bytes still to send, one per poke.
    drip: Vec<u8>,
}

impl Tls {
    fn open(port: u16, cfg: &Arc<rustls::ClientConfig>, first: &[u8], drip: &[u8]) -> Tls {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let name = ServerName::try_from("localhost").expect("a server name");
        let conn = rustls::ClientConnection::new(cfg.clone(), name).expect("a TLS client");
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("the TLS handshake");
        }
        stream.write_all(first).expect("send");
        stream.flush().expect("send");
        stream
            .sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("a read timeout");
        Tls {
            stream,
            drip: drip.iter().rev().copied().collect(),
        }
    }
}

impl Dawdler for Tls {
    fn closed(&mut self) -> bool {
        read_closed(&mut self.stream)
    }

    fn poke(&mut self) {
        if let Some(b) = self.drip.pop() {
            let _ = self.stream.write_all(&[b]);
            let _ = self.stream.flush();
        }
    }
}

/// Opens `N` connections with `open` at once and watches them all; returns
/// how long after opening each was closed (None: still open after `WATCH`).
fn watch(open: &dyn Fn() -> Box<dyn Dawdler>) -> Vec<Option<Duration>> {
    let mut conns: Vec<Box<dyn Dawdler>> = (0..N).map(|_| open()).collect();
    let start = Instant::now();
    let mut closed = vec![None; N];
    while start.elapsed() < WATCH && closed.iter().any(Option::is_none) {
        let round = Instant::now();
        for (i, c) in conns.iter_mut().enumerate() {
            if closed[i].is_none() {
                if c.closed() {
                    closed[i] = Some(start.elapsed());
                } else {
                    c.poke();
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(round.elapsed()));
    }
    closed
}

/// Prints when the connections of one kind were closed.
fn summary(kind: &str, closed: &[Option<Duration>]) {
    let open = closed.iter().filter(|c| c.is_none()).count();
    let times: Vec<f64> = closed.iter().flatten().map(Duration::as_secs_f64).collect();
    let max = times.iter().copied().fold(0.0, f64::max);
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "slow clients: {kind}: {} of {N} closed (first after {min:.1} s, last after {max:.1} s), {open} still open after {} s",
        times.len(),
        WATCH.as_secs()
    );
}

/// Asserts every connection was closed within `limit`.
fn report(kind: &str, closed: &[Option<Duration>], limit: Duration) {
    let open = closed.iter().filter(|c| c.is_none()).count();
    let max = closed
        .iter()
        .flatten()
        .map(Duration::as_secs_f64)
        .fold(0.0, f64::max);
    assert_eq!(open, 0, "{kind}: connections left open after {WATCH:?}");
    assert!(
        max <= limit.as_secs_f64(),
        "{kind}: closed only after {max:.1} s (expected within {limit:?})"
    );
}

#[test]
fn slow_clients_are_let_go_on_both_listeners() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    // A key for requests that get past the checks made before the body.
    let key = coord.json(&["create-access-key"]);
    let key_id = key["AccessKey"]["AccessKeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let (grpc, https) = (coord.port, coord.http_port);
    let h1 = client_config(&coord, b"http/1.1");
    let h2 = client_config(&coord, b"h2");
    // Generous: the timeout plus the watch's one-second rounds and a loaded machine.
    let slack = Duration::from_secs(10);
    let handshake = Duration::from_secs(10) + slack;
    let headers = Duration::from_secs(10) + slack;
    let body = Duration::from_secs(30) + slack;

    let tcp_only = |port: u16| {
        move || -> Box<dyn Dawdler> {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            Box::new(Tcp(s))
        }
    };
    let kinds: Vec<(&str, Opener, Duration)> = vec![
        (
            "HTTPS, no TLS handshake",
            Box::new(tcp_only(https)),
            handshake,
        ),
        (
            "gRPC, no TLS handshake",
            Box::new(tcp_only(grpc)),
            handshake,
        ),
        (
            "HTTPS, TLS and then nothing",
            Box::new(|| Box::new(Tls::open(https, &h1, b"", b"")) as Box<dyn Dawdler>),
            headers,
        ),
        (
            "HTTPS, headers one byte a second",
            Box::new(|| {
                let drip = b"X-Slow: ".repeat(20);
                Box::new(Tls::open(
                    https,
                    &h1,
                    b"POST / HTTP/1.1\r\nHost: x\r\n",
                    &drip,
                )) as Box<dyn Dawdler>
            }),
            headers,
        ),
        (
            "gRPC, TLS and then no HTTP/2 preface",
            Box::new(|| Box::new(Tls::open(grpc, &h2, b"", b"")) as Box<dyn Dawdler>),
            handshake,
        ),
    ];
    let body_kind = {
        let key_id = key_id.clone();
        let h1 = h1.clone();
        move || -> Box<dyn Dawdler> {
            // Everything the checks before the body look at is right; the
            // signature (over the body) cannot be checked before it arrives.
            let now = chrono::Utc::now();
            let (date, day) = (
                now.format("%Y%m%dT%H%M%SZ").to_string(),
                now.format("%Y%m%d").to_string(),
            );
            let head = format!(
                "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Date: {date}\r\n\
                 X-Amz-Target: AmazonSSM.ListCommands\r\nContent-Type: application/x-amz-json-1.1\r\n\
                 Authorization: AWS4-HMAC-SHA256 Credential={key_id}/{day}/us-east-1/ssm/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}\r\n\
                 Content-Length: 1000\r\n\r\n",
                "0".repeat(64)
            );
            Box::new(Tls::open(https, &h1, head.as_bytes(), &[b' '; 1000]))
        }
    };

    let kinds: Vec<(&str, Opener, Duration)> = kinds
        .into_iter()
        .chain(std::iter::once((
            "HTTPS, body one byte a second",
            Box::new(body_kind) as Opener,
            body,
        )))
        .collect();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = kinds
            .into_iter()
            .map(|(kind, open, limit)| scope.spawn(move || (kind, watch(&*open), limit)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (kind, closed, _) in &results {
        summary(kind, closed);
    }
    for (kind, closed, limit) in &results {
        report(kind, closed, *limit);
    }

    // A body declared larger than the cap is refused before any of it is read.
    let mut s = Tls::open(
        https,
        &h1,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n",
        b"",
    );
    let started = Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(10) {
        let mut buf = [0u8; 4096];
        match s.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !answer.is_empty() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                if !answer.is_empty() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 413") && answer.contains("104857600 bytes"),
        "{answer}"
    );
    println!(
        "slow clients: a declared 100 MiB body refused after {:.3} s",
        started.elapsed().as_secs_f64()
    );

    // The coordinator still serves.
    let out = coord.cli(&["list-commands"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
