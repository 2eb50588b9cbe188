//! The coordinator replicas an agent knows: the `--endpoint` list
//! (`https://a:8443,https://b:8443`), the replica an agent starts on, the
//! order it moves on in when one stops answering (its own, so a dead
//! replica's agents spread over the others), and when it goes back
//! ([`Rotation`]). Pure: no sockets, no files, no clock of its own.
//!
//! The list is stored comma-joined in `registration.json`'s `Endpoint`, so a
//! registration written before replicas existed (one endpoint) reads as a list
//! of one, and nothing else in the state changes shape.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

/// Separates the endpoints of `--endpoint` and of the stored `Endpoint`.
pub const SEPARATOR: char = ',';

/// Why an endpoint list was refused; each names the entry at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointsError {
    #[error("--endpoint is empty: expected https://HOST:PORT, or several separated by commas")]
    Empty,
    #[error(
        "--endpoint {list:?}: entry {position} is empty; separate endpoints with single commas"
    )]
    EmptyEntry { list: String, position: usize },
    #[error("--endpoint {0:?} is not an https://HOST:PORT URL")]
    Bad(String),
    #[error("--endpoint lists {0} more than once")]
    Duplicate(String),
}

/// Parses a comma-separated list of `https://HOST:PORT` endpoints, ignoring
/// whitespace around each; the order is kept (registration tries it in order).
pub fn parse(list: &str) -> Result<Vec<String>, EndpointsError> {
    if list.trim().is_empty() {
        return Err(EndpointsError::Empty);
    }
    let mut out: Vec<String> = Vec::new();
    for (i, entry) in list.split(SEPARATOR).map(str::trim).enumerate() {
        if entry.is_empty() {
            return Err(EndpointsError::EmptyEntry {
                list: list.to_string(),
                position: i + 1,
            });
        }
        let (host, _) = split_endpoint(entry)?;
        if rustls_pki_types::ServerName::try_from(host.as_str()).is_err() {
            return Err(EndpointsError::Bad(entry.to_string()));
        }
        if out.iter().any(|e| e == entry) {
            return Err(EndpointsError::Duplicate(entry.to_string()));
        }
        out.push(entry.to_string());
    }
    Ok(out)
}

/// Host and port of one `https://HOST:PORT` endpoint (port 443 when none is
/// given; an IPv6 host without its brackets).
pub fn split_endpoint(endpoint: &str) -> Result<(String, u16), EndpointsError> {
    let bad = || EndpointsError::Bad(endpoint.to_string());
    let uri: http::Uri = endpoint.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("https") {
        return Err(bad());
    }
    let host = uri.host().ok_or_else(bad)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(443)))
}

/// The stored form of a parsed list.
pub fn join(endpoints: &[String]) -> String {
    endpoints.join(&SEPARATOR.to_string())
}

/// Where in a list of `n` endpoints the agent `instance_id` starts: a stable
/// hash of the ID (the first 8 bytes of its SHA-256), so a fleet spreads
/// evenly over the replicas and each agent returns to the same one after a
/// restart.
pub fn start_index(instance_id: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (hash64(instance_id) % n as u64) as usize
}

/// The first 8 bytes of the SHA-256 of `s`, big-endian.
fn hash64(s: &str) -> u64 {
    let digest = Sha256::digest(s.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The order in which the agent `instance_id` goes round `n` endpoints: its
/// start index first, then the others in an order of its own (by the hash of
/// the ID and each index). Plain round-robin would send every agent of a dead
/// replica to the one after it, doubling that one's load; an order per agent
/// spreads them over all the others.
pub fn failover_order(instance_id: &str, n: usize) -> Vec<usize> {
    let home = start_index(instance_id, n);
    let mut others: Vec<usize> = (0..n).filter(|&i| i != home).collect();
    others.sort_by_key(|i| hash64(&format!("{instance_id}/{i}")));
    let mut order = Vec::with_capacity(n);
    order.push(home);
    order.extend(others);
    order
}

/// Which endpoint is in use, shared by every task of the daemon: it starts on
/// the first of its order (home), moves round the order when a call fails on
/// the way, and goes back home after a while away.
#[derive(Debug)]
pub struct Rotation {
    /// Endpoint indexes in the order this agent visits them; `order[0]` is home.
    order: Vec<usize>,
    home: usize,
    current: AtomicUsize,
    /// When the endpoint in use last changed (ms since the epoch).
    moved_at_ms: AtomicI64,
}

/// A change of endpoint: from index, to index.
pub type Move = (usize, usize);

impl Rotation {
    /// A rotation over `order` (a permutation of the endpoint indexes, as
    /// [`failover_order`] gives), starting on its first.
    pub fn new(order: Vec<usize>) -> Self {
        let home = order.first().copied().unwrap_or(0);
        Rotation {
            order,
            home,
            current: AtomicUsize::new(home),
            moved_at_ms: AtomicI64::new(0),
        }
    }

    /// The endpoint after `i` in this agent's order.
    fn next(&self, i: usize) -> usize {
        let n = self.order.len();
        let at = self.order.iter().position(|&e| e == i).unwrap_or(0);
        self.order[(at + 1) % n]
    }

    /// The index in use.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }

    /// A call on `used` failed on the way there (at `now_ms`): moves to the
    /// next endpoint unless another call already moved off `used`. Returns the
    /// move made here, if any, and whether the endpoint in use is now another
    /// than `used` (so the call is worth making again at once).
    pub fn failed(&self, used: usize, now_ms: i64) -> (Option<Move>, bool) {
        if self.order.len() < 2 {
            return (None, false);
        }
        let next = self.next(used);
        match self
            .current
            .compare_exchange(used, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                self.moved_at_ms.store(now_ms, Ordering::Release);
                (Some((used, next)), true)
            }
            Err(now) => (None, now != used),
        }
    }

    /// Goes back home if the agent has been elsewhere for `away_ms` or more
    /// by `now_ms`; returns the move made. If home still does not answer,
    /// the next call fails over again as usual.
    pub fn go_home_if_due(&self, away_ms: i64, now_ms: i64) -> Option<Move> {
        let now = self.current();
        if now == self.home || now_ms - self.moved_at_ms.load(Ordering::Acquire) < away_ms {
            return None;
        }
        self.current
            .compare_exchange(now, self.home, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        self.moved_at_ms.store(now_ms, Ordering::Release);
        Some((now, self.home))
    }

    /// When the endpoint in use last changed.
    pub fn moved_at_ms(&self) -> i64 {
        self.moved_at_ms.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_move_round_the_order_once_and_the_agent_goes_home_later() {
        let r = Rotation::new(vec![1, 2, 0]);
        assert_eq!(r.current(), 1);
        // Two calls fail on endpoint 1 at once: one moves, both retry on 2.
        assert_eq!(r.failed(1, 1_000), (Some((1, 2)), true));
        assert_eq!(r.failed(1, 1_001), (None, true));
        assert_eq!(r.current(), 2);
        // Not yet due home; then due.
        assert_eq!(r.go_home_if_due(60_000, 30_000), None);
        assert_eq!(r.go_home_if_due(60_000, 61_000), Some((2, 1)));
        assert_eq!(r.current(), 1);
        assert_eq!(r.go_home_if_due(60_000, 999_000), None, "already home");
        // Everything failing goes all the way round.
        assert_eq!(r.failed(1, 70_000), (Some((1, 2)), true));
        assert_eq!(r.failed(2, 70_001), (Some((2, 0)), true));
        assert_eq!(r.failed(0, 70_002), (Some((0, 1)), true));
        assert_eq!(r.moved_at_ms(), 70_002);
        // One endpoint: nowhere to go.
        let one = Rotation::new(vec![0]);
        assert_eq!(one.failed(0, 1), (None, false));
        assert_eq!(one.go_home_if_due(0, 1), None);
        // Another order: from 1 the agent goes to 0, then 2.
        let r = Rotation::new(vec![1, 0, 2]);
        assert_eq!(r.failed(1, 1), (Some((1, 0)), true));
        assert_eq!(r.failed(0, 2), (Some((0, 2)), true));
        assert_eq!(r.failed(2, 3), (Some((2, 1)), true));
    }

    #[test]
    fn a_dead_replicas_agents_spread_over_all_the_others() {
        for n in [2usize, 3, 4] {
            // next[home][to]: agents of `home` that go to `to` when it dies.
            let mut next = vec![vec![0usize; n]; n];
            for i in 0..6000u64 {
                let id = format!("mi-{:017x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let order = failover_order(&id, n);
                let mut sorted = order.clone();
                sorted.sort();
                assert_eq!(
                    sorted,
                    (0..n).collect::<Vec<_>>(),
                    "a permutation: {order:?}"
                );
                assert_eq!(order[0], start_index(&id, n));
                next[order[0]][order[1]] += 1;
            }
            for (home, went) in next.iter().enumerate() {
                let total: usize = went.iter().sum();
                let fair = total / (n - 1);
                for (to, &got) in went.iter().enumerate().filter(|&(t, _)| t != home) {
                    assert!(
                        got.abs_diff(fair) * 10 < fair,
                        "{n} endpoints: of {total} agents of {home}, {got} go to {to}"
                    );
                }
            }
        }
    }

    #[test]
    fn lists_parse_with_whitespace_and_refusals_name_the_entry() {
        let ok: &[(&str, &[&str])] = &[
            ("https://a:8443", &["https://a:8443"]),
            (
                "https://a:8443,https://b:8443",
                &["https://a:8443", "https://b:8443"],
            ),
            (
                " https://a:8443 ,\thttps://[::1]:9 , https://127.0.0.1:1 ",
                &["https://a:8443", "https://[::1]:9", "https://127.0.0.1:1"],
            ),
        ];
        for (list, want) in ok {
            assert_eq!(parse(list).unwrap(), *want, "{list}");
        }
        let bad: &[(&str, EndpointsError)] = &[
            ("", EndpointsError::Empty),
            ("  ", EndpointsError::Empty),
            (
                "https://a:1,,https://b:1",
                EndpointsError::EmptyEntry {
                    list: "https://a:1,,https://b:1".into(),
                    position: 2,
                },
            ),
            (
                "https://a:1,",
                EndpointsError::EmptyEntry {
                    list: "https://a:1,".into(),
                    position: 2,
                },
            ),
            (
                "https://a:1, http://b:1",
                EndpointsError::Bad("http://b:1".into()),
            ),
            ("https://a:1,b:1", EndpointsError::Bad("b:1".into())),
            (
                "https://a:1, https://a:1",
                EndpointsError::Duplicate("https://a:1".into()),
            ),
        ];
        for (list, want) in bad {
            assert_eq!(parse(list).unwrap_err(), *want, "{list:?}");
        }
        assert!(
            parse("https://a:1, http://b:1")
                .unwrap_err()
                .to_string()
                .contains("\"http://b:1\" is not an https://HOST:PORT URL")
        );
    }

    #[test]
    fn single_endpoints_split_into_host_and_port() {
        let ok: &[(&str, (&str, u16))] = &[
            ("https://127.0.0.1:8443", ("127.0.0.1", 8443)),
            ("https://[::1]:9", ("::1", 9)),
            ("https://coord.example", ("coord.example", 443)),
        ];
        for (endpoint, (host, port)) in ok {
            assert_eq!(
                split_endpoint(endpoint).unwrap(),
                (host.to_string(), *port),
                "{endpoint}"
            );
        }
        for bad in ["http://127.0.0.1:8443", "127.0.0.1:8443", "https://"] {
            assert_eq!(
                split_endpoint(bad).unwrap_err(),
                EndpointsError::Bad(bad.into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn stored_form_round_trips_and_old_single_endpoints_read_as_one() {
        let list = parse("https://a:1 , https://b:2").unwrap();
        assert_eq!(join(&list), "https://a:1,https://b:2");
        assert_eq!(parse(&join(&list)).unwrap(), list);
        assert_eq!(parse("https://a:1").unwrap(), vec!["https://a:1"]);
    }

    #[test]
    fn start_indexes_are_stable_and_spread_a_fleet_evenly() {
        // Pinned: a change here moves every agent of every fleet.
        let id = "mi-0123456789abcdef0";
        assert_eq!(
            [1, 2, 3, 5].map(|n| start_index(id, n)),
            [0, 1, 1, 1],
            "SHA-256({id})[..8] as a big-endian u64, mod n"
        );
        assert_eq!(start_index(id, 0), 0);
        for n in [2usize, 3, 5] {
            let agents = 3000;
            let mut counts = vec![0usize; n];
            for i in 0..agents {
                let id = format!("mi-{:017x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                counts[start_index(&id, n)] += 1;
            }
            let fair = agents / n;
            for (k, c) in counts.iter().enumerate() {
                assert!(
                    c.abs_diff(fair) * 10 < fair,
                    "{n} endpoints: endpoint {k} gets {c} of {agents} agents ({counts:?})"
                );
            }
        }
    }
}
