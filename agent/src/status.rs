//! `tether-agent status`: what an operator needs to see on a node — whether it
//! is registered; whether each coordinator endpoint answers, stage by stage
//! (proxy in use, DNS, TCP, TLS with the CA pin, client certificate), so a
//! failure names its stage and its endpoint; how far the clocks differ, when
//! the daemon last polled, what is running. Healthy when at least one
//! endpoint answers all the way with a clock in step.
//!
//! `--output json` gives the same facts as one JSON object with stable
//! PascalCase keys ([`Report`]), for node-side monitoring; the exit code
//! is the same either way.

use std::time::Duration;

use serde::Serialize;
use tether_proto as pb;
use tether_util::now_ms;
use tether_util::time::iso_ms;

use crate::spool::Stage;
use crate::state::StateDir;
use crate::{endpoints, net, run, tls};

/// Clock difference beyond which `status` tells the operator to sync time.
const SKEW_WARN_MS: i64 = 30_000;

/// The facts `status` finds, as `--output json` prints them: every key is
/// always there (`null` when the fact could not be learnt).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    /// Whether the state directory holds a registration.
    pub registered: bool,
    /// Why it does not (or why it does not read).
    pub registration_error: Option<String>,
    pub instance_id: Option<String>,
    /// The coordinator endpoints, in order; the first is the node's own.
    pub endpoints: Vec<String>,
    /// Why the stored endpoint list is not valid.
    pub endpoint_error: Option<String>,
    pub activation_id: Option<String>,
    /// When it registered (ISO 8601).
    pub registered_at: Option<String>,
    pub agent_version: String,
    pub platform: String,
    /// Hex of the release key updates verify against (none yet: null).
    pub release_key: Option<String>,
    /// Whether the state's files are owner-only (the daemon refuses them otherwise).
    pub files_safe: Option<bool>,
    pub files_error: Option<String>,
    /// When the client certificate expires (ISO 8601).
    pub certificate_expires: Option<String>,
    /// Whether it is valid now.
    pub certificate_valid: Option<bool>,
    pub certificate_error: Option<String>,
    /// Each endpoint, checked now.
    pub coordinators: Vec<EndpointCheck>,
    /// How many endpoints answered all the way with a clock in step.
    pub answering: usize,
    /// Whether at least one endpoint answered all the way (TLS, pin, client certificate).
    pub connected: bool,
    /// The clock difference at the first endpoint that answered, in ms
    /// (positive: this node is behind).
    pub clock_skew_ms: Option<i64>,
    /// The daemon's last poll (ISO 8601), i.e. its last contact.
    pub last_poll: Option<String>,
    pub last_poll_age_seconds: Option<i64>,
    /// The daemon's last error, if it recorded one.
    pub last_error: Option<String>,
    /// Invocations in the spool (running, or finished and not yet reported).
    pub spool_depth: Option<usize>,
    /// Steps running now, and their command IDs.
    pub running: Option<usize>,
    pub running_commands: Vec<String>,
    /// Results finished and not yet stored by the coordinator.
    pub pending_results: Option<usize>,
    pub spool_error: Option<String>,
    /// The verdict the exit code gives (0 healthy, 1 not).
    pub healthy: bool,
}

/// One endpoint's check.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointCheck {
    pub endpoint: String,
    /// Answered all the way (TLS with the pinned CA, client certificate accepted).
    pub reachable: bool,
    /// Where it failed, naming the stage (DNS, TCP, TLS, …).
    pub error: Option<String>,
    pub clock_skew_ms: Option<i64>,
    /// Whether the clocks are within 30 s of each other.
    pub clock_in_step: Option<bool>,
    /// The proxy in use for it (`https_proxy`), if any.
    pub proxy: Option<String>,
}

/// Where the report goes: printed line by line as facts come (text), or
/// gathered for one JSON object.
struct Out {
    text: bool,
    report: Report,
}

impl Out {
    fn line(&self, line: std::fmt::Arguments<'_>) {
        if self.text {
            println!("{line}");
        }
    }
}

fn ago(ms: i64) -> String {
    let secs = (now_ms() - ms) / 1000;
    let at = chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    format!("{at} ({secs} s ago)")
}

/// Checks the way to the coordinator one stage at a time, printing each that
/// passes; the first that fails is returned (its message names the stage).
async fn reach_stages(
    out: &Out,
    check: &mut EndpointCheck,
    endpoint: &str,
    ca_pin: &str,
) -> Result<(), String> {
    let (host, port) = endpoints::split_endpoint(endpoint).map_err(|e| e.to_string())?;
    match net::proxy_for(&host, port) {
        Some(p) => {
            out.line(format_args!(
                "Proxy:         {p} (https_proxy; no_proxy does not exclude {host})"
            ));
            check.proxy = Some(p.to_string());
        }
        None => {
            out.line(format_args!("Proxy:         none"));
            let ips = net::resolve(&host).await.map_err(|e| e.to_string())?;
            let ips: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
            out.line(format_args!("DNS:           {host} -> {}", ips.join(", ")));
        }
    }
    let tcp = net::connect(&host, port).await.map_err(|e| e.to_string())?;
    out.line(format_args!("TCP:           connected to {host}:{port}"));
    let pin = tls::parse_pin(ca_pin).map_err(|e| e.to_string())?;
    let verifier = std::sync::Arc::new(tls::PinnedCaVerifier::new(pin));
    let cfg = tls::pinned_config(verifier.clone()).map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|e| format!("TLS: {host:?} is not a valid server name: {e}"))?;
    let handshake = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg)).connect(name, tcp);
    match tokio::time::timeout(Duration::from_secs(10), handshake).await {
        Ok(Ok(_)) => {
            out.line(format_args!(
                "TLS:           ok, the coordinator's CA matches the pin {ca_pin}"
            ));
            Ok(())
        }
        Ok(Err(e)) => {
            let why = verifier
                .problem
                .lock()
                .clone()
                .unwrap_or_else(|| e.to_string());
            Err(format!("TLS: {why}"))
        }
        Err(_) => Err("TLS: no handshake within 10 s".to_string()),
    }
}

/// Checks one endpoint stage by stage, then with the client certificate, and
/// prints its verdict (prefixed with `label`) and the clock difference there;
/// true when it answered all the way with a clock in step.
async fn check_endpoint(
    out: &mut Out,
    state: &StateDir,
    reg: &crate::state::Registration,
    endpoint: &str,
    label: &str,
) -> bool {
    let mut check = EndpointCheck {
        endpoint: endpoint.to_string(),
        ..EndpointCheck::default()
    };
    let healthy = check_stages(out, &mut check, state, reg, endpoint, label).await;
    if check.reachable && out.report.clock_skew_ms.is_none() {
        out.report.clock_skew_ms = check.clock_skew_ms;
    }
    out.report.coordinators.push(check);
    healthy
}

async fn check_stages(
    out: &Out,
    check: &mut EndpointCheck,
    state: &StateDir,
    reg: &crate::state::Registration,
    endpoint: &str,
    label: &str,
) -> bool {
    if let Err(stage) = reach_stages(out, check, endpoint, &reg.ca_pin).await {
        out.line(format_args!("Coordinator:   {label}UNREACHABLE: {stage}"));
        check.error = Some(stage);
        return false;
    }
    let reach = async {
        let channel = run::build_channel(state, endpoint)?;
        let mut client = pb::agent_client::AgentClient::new(channel);
        let t0 = now_ms();
        let mut req = tonic::Request::new(pb::PingRequest {});
        req.set_timeout(Duration::from_secs(10));
        let r = client
            .ping(req)
            .await
            .map_err(|s| anyhow::anyhow!(tls::error_chain(&s)))?;
        let mid = (t0 + now_ms()) / 2;
        Ok::<_, anyhow::Error>(r.into_inner().server_time_ms - mid)
    };
    match reach.await {
        Ok(skew) => {
            out.line(format_args!(
                "Coordinator:   {label}reachable (TLS and client certificate accepted)"
            ));
            check.reachable = true;
            check.clock_skew_ms = Some(skew);
            check.clock_in_step = Some(skew.abs() <= SKEW_WARN_MS);
            if skew.abs() > SKEW_WARN_MS {
                out.line(format_args!(
                    "Clock skew:    {:.1} s {} the coordinator: sync the time (chrony, systemd-timesyncd or ntpdate)",
                    skew.abs() as f64 / 1000.0,
                    if skew > 0 { "behind" } else { "ahead of" }
                ));
                false
            } else {
                out.line(format_args!(
                    "Clock skew:    {:+.1} s (ok)",
                    skew as f64 / 1000.0
                ));
                true
            }
        }
        Err(e) => {
            out.line(format_args!("Coordinator:   {label}UNREACHABLE: {e}"));
            check.error = Some(e.to_string());
            false
        }
    }
}

/// Prints the status report — as text, or with `json` as one JSON object
/// ([`Report`]) — and returns the process exit code (0 healthy, 1 not).
pub async fn status(state: &StateDir, json: bool) -> i32 {
    let mut out = Out {
        text: !json,
        report: Report {
            agent_version: crate::version::current().to_string(),
            platform: crate::version::platform(),
            ..Report::default()
        },
    };
    let healthy = gather(&mut out, state).await;
    out.report.healthy = healthy;
    if json {
        match serde_json::to_string_pretty(&out.report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("tether-agent status: the report could not be written as JSON: {e}");
                return 1;
            }
        }
    }
    if healthy { 0 } else { 1 }
}

/// Finds every fact, printing each as it comes in text mode; true when healthy.
async fn gather(out: &mut Out, state: &StateDir) -> bool {
    let reg = match state.load() {
        Ok(r) => r,
        Err(e) => {
            out.line(format_args!("Registration:  NOT REGISTERED: {e}"));
            out.report.registration_error = Some(e.to_string());
            return false;
        }
    };
    out.report.registered = true;
    out.report.instance_id = Some(reg.instance_id.clone());
    out.report.activation_id = Some(reg.activation_id.clone());
    out.report.registered_at = Some(iso_ms(reg.registered_at_ms));
    out.line(format_args!("Instance ID:   {}", reg.instance_id));
    let endpoints = match reg.endpoints() {
        Ok(e) => e,
        Err(e) => {
            out.line(format_args!(
                "Endpoint:      {}: NOT VALID: {e}",
                reg.endpoint
            ));
            out.report.endpoints = vec![reg.endpoint.clone()];
            out.report.endpoint_error = Some(e.to_string());
            return false;
        }
    };
    out.report.endpoints = endpoints.clone();
    let several = endpoints.len() > 1;
    out.line(format_args!(
        "{:15}{}",
        if several { "Endpoints:" } else { "Endpoint:" },
        endpoints.join(", ")
    ));
    out.line(format_args!("Activation:    {}", reg.activation_id));
    out.line(format_args!("Registered:    {}", ago(reg.registered_at_ms)));
    out.line(format_args!(
        "Agent:         {} ({})",
        crate::version::current(),
        crate::version::platform()
    ));
    match state.release_key() {
        Ok(Some(k)) => {
            out.line(format_args!(
                "Release key:   {} (updates verify against it)",
                hex::encode(k)
            ));
            out.report.release_key = Some(hex::encode(k));
        }
        Ok(None) => out.line(format_args!(
            "Release key:   none yet (it comes with the next trust bundle; updates are refused until then)"
        )),
        Err(e) => out.line(format_args!("Release key:   UNREADABLE: {e}")),
    }
    // The daemon refuses to start on files others could have written.
    let safe = match state.check(&[]) {
        Ok(()) => {
            out.line(format_args!(
                "Files:         owner-only ({})",
                state.dir.display()
            ));
            true
        }
        Err(e) => {
            out.line(format_args!("Files:         UNSAFE: {e}"));
            out.report.files_error = Some(e.to_string());
            false
        }
    };
    out.report.files_safe = Some(safe);
    // A certificate that expired while the node was offline is refused by
    // every replica: say so, and what mends it, before reaching them.
    let certificate_ok = match state
        .cert_pem()
        .ok()
        .as_deref()
        .and_then(tls::cert_validity)
    {
        Some((not_before, not_after)) if now_ms() / 1000 < not_after => {
            out.line(format_args!(
                "Certificate:   valid until {} (renewed from {})",
                tls::rfc3339(not_after),
                tls::rfc3339(not_before + (not_after - not_before) / 2)
            ));
            out.report.certificate_expires = Some(iso_ms(not_after * 1000));
            true
        }
        Some((_, not_after)) => {
            let advice = tls::expired_advice(&state.path(crate::state::CERT_FILE), not_after, &reg);
            out.line(format_args!("Certificate:   EXPIRED: {advice}"));
            out.report.certificate_expires = Some(iso_ms(not_after * 1000));
            out.report.certificate_error = Some(advice);
            false
        }
        None => {
            let path = state.path(crate::state::CERT_FILE);
            out.line(format_args!(
                "Certificate:   UNREADABLE: {}",
                path.display()
            ));
            out.report.certificate_error = Some(format!("unreadable: {}", path.display()));
            false
        }
    };
    out.report.certificate_valid = Some(certificate_ok);
    let mut answering = 0;
    for endpoint in &endpoints {
        // With several endpoints each verdict names its endpoint; with one,
        // the lines read as they always have.
        let label = if several {
            out.line(format_args!("-- {endpoint}"));
            format!("{endpoint}: ")
        } else {
            String::new()
        };
        if check_endpoint(out, state, &reg, endpoint, &label).await {
            answering += 1;
        }
    }
    if several {
        out.line(format_args!(
            "Answering:     {answering} of {} coordinator endpoints",
            endpoints.len()
        ));
    }
    out.report.answering = answering;
    out.report.connected = out.report.coordinators.iter().any(|c| c.reachable);
    let healthy = answering > 0 && safe && certificate_ok;
    match state.load_status() {
        Ok(st) => {
            match st.last_poll_ms {
                Some(t) => {
                    out.line(format_args!("Last poll:     {}", ago(t)));
                    out.report.last_poll = Some(iso_ms(t));
                    out.report.last_poll_age_seconds = Some((now_ms() - t) / 1000);
                }
                None => out.line(format_args!(
                    "Last poll:     never (is `tether-agent run` running?)"
                )),
            }
            if let Some(e) = st.last_error {
                out.line(format_args!("Last error:    {e}"));
                out.report.last_error = Some(e);
            }
        }
        Err(e) => out.line(format_args!("Last poll:     UNKNOWN: {e}")),
    }
    match run::spool_summary(state) {
        Ok(spool) => {
            let running: Vec<&str> = spool
                .iter()
                .filter(|(_, s)| *s == Stage::Running)
                .map(|(id, _)| id.as_str())
                .collect();
            let unreported = spool.iter().filter(|(_, s)| *s == Stage::Finished).count();
            out.line(format_args!(
                "Running:       {}{}",
                running.len(),
                if running.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", running.join(", "))
                }
            ));
            out.line(format_args!("Unreported:    {unreported}"));
            out.report.spool_depth = Some(spool.len());
            out.report.running = Some(running.len());
            out.report.running_commands = running.iter().map(|s| s.to_string()).collect();
            out.report.pending_results = Some(unreported);
        }
        Err(e) => {
            out.line(format_args!("Spool:         UNREADABLE: {e}"));
            out.report.spool_error = Some(e.to_string());
        }
    }
    healthy
}
