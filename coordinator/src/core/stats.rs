//! What this replica counts, and the Prometheus text it is served as
//! (`crate::metrics` serves it: `/metrics` on the HTTPS listener through the
//! one door's `GetMetrics`, and the plain-HTTP `--metrics-listen`).
//!
//! Counting is atomics only (a poll costs two relaxed additions; no lock on
//! any path that counts), and every series has a fixed, small label set — a
//! status, a reason, a statement, a role, an AWS operation; never an
//! instance or command ID — so an answer is a few kilobytes whatever the
//! fleet. The fleet's sizes (registered, online) are one counting statement
//! per scrape. The exposition itself is `prometheus-client`'s encoder
//! (text format 0.0.4).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tether_ssm::limits;
use tether_util::time::now_ms;
use tracing::warn;

use super::Coordinator;
use super::registration::RegisterError;

/// The content type of the answer (Prometheus text, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How long a scrape waits for the fleet's counts before answering without them.
const COUNTS_TIMEOUT: Duration = Duration::from_secs(2);

/// Upper bounds of the result-latency buckets, in seconds (send → result stored).
const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Upper bounds of the statement-duration buckets, in seconds.
const STATEMENT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Upper bounds of the writer's batch sizes (at most `core::writer::WRITE_BATCH`).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The database statements whose durations are measured: the hot path's
/// batched writes and the reads every poll, delivery or operator request
/// makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Statement {
    /// The writer's batch (claims and results), BEGIN to COMMIT.
    WriteBatch,
    /// The sweep's batch of agents' last-heard times.
    Pings,
    /// An instance's work, at a poll: cancels to send, invocations it may
    /// be handed now, and whether anything handed over is in flight.
    Work,
    /// A command's row, read for its envelope.
    Command,
    /// An agent's instance row, read for each of its calls.
    Instance,
    /// An operator token's row, read for each operator request.
    OperatorToken,
    /// The fleet's counts, read for each scrape.
    AgentCounts,
}

impl Statement {
    const ALL: [Statement; 7] = [
        Statement::WriteBatch,
        Statement::Pings,
        Statement::Work,
        Statement::Command,
        Statement::Instance,
        Statement::OperatorToken,
        Statement::AgentCounts,
    ];

    fn name(self) -> &'static str {
        match self {
            Statement::WriteBatch => "write_batch",
            Statement::Pings => "pings",
            Statement::Work => "work",
            Statement::Command => "command",
            Statement::Instance => "instance",
            Statement::OperatorToken => "operator_token",
            Statement::AgentCounts => "agent_counts",
        }
    }
}

/// A histogram of fixed buckets on atomics (`prometheus-client`'s own
/// takes a mutex per observation).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, and the last for larger values.
    buckets: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(self.buckets.iter())
            .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
            .collect();
        buckets.push((
            f64::INFINITY,
            self.buckets[self.bounds.len()].load(Ordering::Relaxed),
        ));
        HistogramSnapshot {
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
        }
    }
}

#[derive(Debug)]
struct HistogramSnapshot {
    sum: f64,
    count: u64,
    /// Per bucket (not cumulative), the last one `+Inf`.
    buckets: Vec<(f64, u64)>,
}

/// Why a registration was refused, as counted (a closed set).
pub fn refusal_reason(e: &RegisterError) -> &'static str {
    use RegisterError as E;
    match e {
        E::WrongIdOrCode => "wrong_id_or_code",
        E::Expired { .. } => "expired",
        E::Deleted(_) => "deleted",
        E::LimitReached { .. } => "limit_reached",
        E::RateLimited { .. } => "rate_limited",
        E::ActivationRateLimited { .. } => "activation_rate_limited",
        E::BadRequest(_) => "bad_request",
        E::Internal(_) => "internal",
    }
}

const REFUSAL_REASONS: [&str; 8] = [
    "wrong_id_or_code",
    "expired",
    "deleted",
    "limit_reached",
    "rate_limited",
    "activation_rate_limited",
    "bad_request",
    "internal",
];

/// What this replica counts since it started.
#[derive(Debug)]
pub struct Metrics {
    polls: AtomicU64,
    deliveries: AtomicU64,
    result_latency: Histogram,
    statements: Vec<Histogram>,
    batch_sizes: Histogram,
    registrations: AtomicU64,
    refusals: [AtomicU64; REFUSAL_REASONS.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            polls: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            result_latency: Histogram::new(LATENCY_BUCKETS),
            statements: Statement::ALL
                .iter()
                .map(|_| Histogram::new(STATEMENT_BUCKETS))
                .collect(),
            batch_sizes: Histogram::new(BATCH_BUCKETS),
            registrations: AtomicU64::new(0),
            refusals: Default::default(),
        }
    }
}

impl Metrics {
    /// An agent's poll was answered.
    pub fn polled(&self) {
        self.polls.fetch_add(1, Ordering::Relaxed);
    }

    /// Envelopes handed to an agent.
    pub fn delivered(&self, envelopes: usize) {
        if envelopes > 0 {
            self.deliveries
                .fetch_add(envelopes as u64, Ordering::Relaxed);
        }
    }

    /// An agent's result was stored, for a command requested at
    /// `requested_ms`. (Invocations by final status are the store's count,
    /// [`tether_store::Store::finished_counts`]: it sees every path.)
    pub fn result_stored(&self, requested_ms: Option<i64>) {
        if let Some(at) = requested_ms {
            self.result_latency
                .observe((now_ms() - at).max(0) as f64 / 1000.0);
        }
    }

    /// The writer stored a batch of `size` writes.
    pub fn batch(&self, size: usize) {
        self.batch_sizes.observe(size as f64);
    }

    /// A statement took `took`.
    pub fn statement(&self, s: Statement, took: Duration) {
        if let Some(h) = self.statements.get(s as usize) {
            h.observe(took.as_secs_f64());
        }
    }

    /// Runs `f` (a database statement), measuring it as `s`.
    pub async fn timed<T>(&self, s: Statement, f: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = f.await;
        self.statement(s, start.elapsed());
        out
    }

    /// A registration, or why it was refused.
    pub fn registration(&self, refused: Option<&RegisterError>) {
        match refused {
            None => {
                self.registrations.fetch_add(1, Ordering::Relaxed);
            }
            Some(e) => {
                let reason = refusal_reason(e);
                if let Some(i) = REFUSAL_REASONS.iter().position(|r| *r == reason) {
                    self.refusals[i].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Everything one answer holds, read at once.
#[derive(Debug)]
struct Snapshot {
    /// Registered and online instances (None: the database did not answer).
    fleet: Option<(i64, i64)>,
    connected: usize,
    ready: bool,
    polls: u64,
    deliveries: u64,
    finished: Vec<(&'static str, u64)>,
    result_latency: HistogramSnapshot,
    statements: Vec<(&'static str, HistogramSnapshot)>,
    batch_sizes: HistogramSnapshot,
    registrations: u64,
    refusals: Vec<(&'static str, u64)>,
    leads: Vec<(&'static str, bool)>,
    bridge: Vec<(&'static str, u64, u64)>,
    audit_written: u64,
    audit_dropped: u64,
}

/// A single number without labels.
fn plain(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    v: u64,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    match kind {
        MetricType::Counter => m.encode_counter::<NoLabelSet, _, u64>(&v, None),
        _ => m.encode_gauge(&v),
    }
}

/// A number per value of one label.
fn by_label(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    label: &str,
    values: &[(&str, u64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (value, n) in values {
        let labels = [(label, *value)];
        let mut one = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => one.encode_counter::<NoLabelSet, _, u64>(n, None)?,
            _ => one.encode_gauge(n)?,
        }
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        use MetricType::{Counter, Gauge};
        let e = &mut enc;
        {
            let mut m = e.encode_descriptor(
                "tether_build_info",
                "The coordinator's version (always 1).",
                None,
                Gauge,
            )?;
            let labels = [("version", env!("CARGO_PKG_VERSION"))];
            m.encode_family(&labels)?.encode_gauge(&1u64)?;
        }
        if let Some((registered, online)) = self.fleet {
            plain(
                e,
                "tether_agents_registered",
                "Tether's own managed instances registered and not deregistered (the whole fleet, from the database).",
                Gauge,
                registered.max(0) as u64,
            )?;
            plain(
                e,
                "tether_agents_online",
                "Registered instances whose agent was heard from within the Online grace (PingStatus Online; the whole fleet, from the database).",
                Gauge,
                online.max(0) as u64,
            )?;
        }
        plain(
            e,
            "tether_agents_connected",
            "Agents holding a poll open on this replica now.",
            Gauge,
            self.connected as u64,
        )?;
        plain(
            e,
            "tether_ready",
            "Whether this replica serves (its database answers and it is not stopping): 1 or 0.",
            Gauge,
            u64::from(self.ready),
        )?;
        plain(
            e,
            "tether_polls",
            "Agents' polls answered by this replica.",
            Counter,
            self.polls,
        )?;
        plain(
            e,
            "tether_deliveries",
            "Command envelopes handed to agents by this replica (a redelivery counts again).",
            Counter,
            self.deliveries,
        )?;
        by_label(
            e,
            "tether_invocations_finished",
            "Invocations that reached a final status on this replica: agents' results stored, deliveries refused or failed, timeouts and unconfirmed cancellations its sweep ended.",
            Counter,
            "status",
            &self.finished,
        )?;
        {
            let h = &self.result_latency;
            let mut m = e.encode_descriptor(
                "tether_result_latency_seconds",
                "From a command's SendCommand to an agent's result for it stored, per result.",
                None,
                MetricType::Histogram,
            )?;
            m.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        }
        {
            let mut m = e.encode_descriptor(
                "tether_db_statement_duration_seconds",
                "Database statements, by statement: the writer's batch (BEGIN to COMMIT), the pings' batch, and the hot path's reads.",
                None,
                MetricType::Histogram,
            )?;
            for (statement, h) in &self.statements {
                let labels = [("statement", *statement)];
                m.encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
            }
        }
        {
            let h = &self.batch_sizes;
            let mut m = e.encode_descriptor(
                "tether_writer_batch_size",
                "Writes (delivery claims and results) per transaction of the hot path's writer.",
                None,
                MetricType::Histogram,
            )?;
            m.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        }
        plain(
            e,
            "tether_registrations",
            "Agents registered by this replica.",
            Counter,
            self.registrations,
        )?;
        by_label(
            e,
            "tether_registration_refusals",
            "Registrations refused by this replica, by reason.",
            Counter,
            "reason",
            &self.refusals,
        )?;
        let leads: Vec<(&str, u64)> = self
            .leads
            .iter()
            .map(|(role, held)| (*role, u64::from(*held)))
            .collect();
        by_label(
            e,
            "tether_replica_leader",
            "Whether this replica holds the lead of a work done by one replica at a time (sweep, bridge, audit_sign): 1 or 0, as of its last try.",
            Gauge,
            "role",
            &leads,
        )?;
        if !self.bridge.is_empty() {
            let calls: Vec<(&str, u64)> = self.bridge.iter().map(|(o, n, _)| (*o, *n)).collect();
            let throttles: Vec<(&str, u64)> =
                self.bridge.iter().map(|(o, _, n)| (*o, *n)).collect();
            by_label(
                e,
                "tether_bridge_calls",
                "Calls the AWS bridge made to AWS SSM, by operation.",
                Counter,
                "operation",
                &calls,
            )?;
            by_label(
                e,
                "tether_bridge_throttles",
                "Calls AWS SSM throttled, by operation.",
                Counter,
                "operation",
                &throttles,
            )?;
        }
        plain(
            e,
            "tether_audit_records_written",
            "Audit records this replica appended to the trail.",
            Counter,
            self.audit_written,
        )?;
        plain(
            e,
            "tether_audit_records_dropped",
            "Audit records of reads dropped because the background queue was full.",
            Counter,
            self.audit_dropped,
        )?;
        Ok(())
    }
}

/// This replica's metrics in Prometheus' text format (version 0.0.4).
pub async fn render(c: &Coordinator) -> String {
    let since = now_ms() - limits::ONLINE_GRACE.as_millis() as i64;
    let counts = c.metrics.timed(
        Statement::AgentCounts,
        tokio::time::timeout(COUNTS_TIMEOUT, c.store.agent_counts(since)),
    );
    let fleet = match counts.await {
        Ok(Ok(n)) => Some(n),
        Ok(Err(e)) => {
            warn!(error = %e, "metrics: the fleet's counts could not be read");
            None
        }
        Err(_) => {
            warn!("metrics: the fleet's counts did not come within 2 s");
            None
        }
    };
    let m = &c.metrics;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    #[cfg(feature = "aws-bridge")]
    let bridge: Vec<(&'static str, u64, u64)> = tether_aws_bridge::call_counts()
        .into_iter()
        .map(|(call, n, t)| (call.name(), n, t))
        .collect();
    #[cfg(not(feature = "aws-bridge"))]
    let bridge = Vec::new();
    let snapshot = Snapshot {
        fleet,
        connected: c.bells.held_count(),
        ready: c.is_ready(),
        polls: load(&m.polls),
        deliveries: load(&m.deliveries),
        finished: c.store.finished_counts().to_vec(),
        result_latency: m.result_latency.snapshot(),
        statements: Statement::ALL
            .iter()
            .zip(m.statements.iter())
            .map(|(s, h)| (s.name(), h.snapshot()))
            .collect(),
        batch_sizes: m.batch_sizes.snapshot(),
        registrations: load(&m.registrations),
        refusals: REFUSAL_REASONS
            .iter()
            .zip(m.refusals.iter())
            .map(|(r, n)| (*r, load(n)))
            .collect(),
        leads: c
            .store
            .leads()
            .into_iter()
            .map(|(w, held)| (w.name(), held))
            .collect(),
        bridge,
        audit_written: c.audit.written(),
        audit_dropped: c.audit.dropped(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut text = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
        // Writing to a String does not fail; say so if it ever does.
        warn!(error = %e, "metrics could not be encoded");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_value_in_its_bucket_and_sums_them() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 7.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.sum, 10.0);
        assert_eq!(s.buckets, vec![(1.0, 2), (2.0, 1), (f64::INFINITY, 1)]);
    }
}
