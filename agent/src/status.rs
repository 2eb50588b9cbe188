//! `tether-agent status`: what an operator needs to see on a node — whether it
//! is registered; whether each coordinator endpoint answers, stage by stage
//! (proxy in use, DNS, TCP, TLS with the CA pin, client certificate), so a
//! failure names its stage and its endpoint; how far the clocks differ, when
//! the daemon last polled, what is running. Healthy when at least one
//! endpoint answers all the way with a clock in step.

use std::time::Duration;

use tether_proto as pb;
use tether_util::now_ms;

use crate::spool::Stage;
use crate::state::StateDir;
use crate::{endpoints, net, run, tls};

/// Clock difference beyond which `status` tells the operator to sync time.
const SKEW_WARN_MS: i64 = 30_000;

fn ago(ms: i64) -> String {
    let secs = (now_ms() - ms) / 1000;
    let at = chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    format!("{at} ({secs} s ago)")
}

/// Checks the way to the coordinator one stage at a time, printing each that
/// passes; the first that fails is returned (its message names the stage).
async fn reach_stages(endpoint: &str, ca_pin: &str) -> Result<(), String> {
    let (host, port) = endpoints::split_endpoint(endpoint).map_err(|e| e.to_string())?;
    match net::proxy_for(&host, port) {
        Some(p) => println!("Proxy:         {p} (https_proxy; no_proxy does not exclude {host})"),
        None => {
            println!("Proxy:         none");
            let ips = net::resolve(&host).await.map_err(|e| e.to_string())?;
            let ips: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
            println!("DNS:           {host} -> {}", ips.join(", "));
        }
    }
    let tcp = net::connect(&host, port).await.map_err(|e| e.to_string())?;
    println!("TCP:           connected to {host}:{port}");
    let pin = tls::parse_pin(ca_pin).map_err(|e| e.to_string())?;
    let verifier = std::sync::Arc::new(tls::PinnedCaVerifier::new(pin));
    let cfg = tls::pinned_config(verifier.clone()).map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|e| format!("TLS: {host:?} is not a valid server name: {e}"))?;
    let handshake = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg)).connect(name, tcp);
    match tokio::time::timeout(Duration::from_secs(10), handshake).await {
        Ok(Ok(_)) => {
            println!("TLS:           ok, the coordinator's CA matches the pin {ca_pin}");
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
    state: &StateDir,
    reg: &crate::state::Registration,
    endpoint: &str,
    label: &str,
) -> bool {
    if let Err(stage) = reach_stages(endpoint, &reg.ca_pin).await {
        println!("Coordinator:   {label}UNREACHABLE: {stage}");
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
            println!("Coordinator:   {label}reachable (TLS and client certificate accepted)");
            if skew.abs() > SKEW_WARN_MS {
                println!(
                    "Clock skew:    {:.1} s {} the coordinator: sync the time (chrony, systemd-timesyncd or ntpdate)",
                    skew.abs() as f64 / 1000.0,
                    if skew > 0 { "behind" } else { "ahead of" }
                );
                false
            } else {
                println!("Clock skew:    {:+.1} s (ok)", skew as f64 / 1000.0);
                true
            }
        }
        Err(e) => {
            println!("Coordinator:   {label}UNREACHABLE: {e}");
            false
        }
    }
}

/// Prints the status report; returns the process exit code (0 healthy, 1 not).
pub async fn status(state: &StateDir) -> i32 {
    let reg = match state.load() {
        Ok(r) => r,
        Err(e) => {
            println!("Registration:  NOT REGISTERED: {e}");
            return 1;
        }
    };
    println!("Instance ID:   {}", reg.instance_id);
    let endpoints = match reg.endpoints() {
        Ok(e) => e,
        Err(e) => {
            println!("Endpoint:      {}: NOT VALID: {e}", reg.endpoint);
            return 1;
        }
    };
    let several = endpoints.len() > 1;
    println!(
        "{:15}{}",
        if several { "Endpoints:" } else { "Endpoint:" },
        endpoints.join(", ")
    );
    println!("Activation:    {}", reg.activation_id);
    println!("Registered:    {}", ago(reg.registered_at_ms));
    println!(
        "Agent:         {} ({})",
        crate::version::current(),
        crate::version::platform()
    );
    match state.release_key() {
        Ok(Some(k)) => println!(
            "Release key:   {} (updates verify against it)",
            hex::encode(k)
        ),
        Ok(None) => println!(
            "Release key:   none yet (it comes with the next trust bundle; updates are refused until then)"
        ),
        Err(e) => println!("Release key:   UNREADABLE: {e}"),
    }
    // The daemon refuses to start on files others could have written.
    let safe = match state.check(&[]) {
        Ok(()) => {
            println!("Files:         owner-only ({})", state.dir.display());
            true
        }
        Err(e) => {
            println!("Files:         UNSAFE: {e}");
            false
        }
    };
    // A certificate that expired while the node was offline is refused by
    // every replica: say so, and what mends it, before reaching them.
    let certificate_ok = match state
        .cert_pem()
        .ok()
        .as_deref()
        .and_then(tls::cert_validity)
    {
        Some((not_before, not_after)) if now_ms() / 1000 < not_after => {
            println!(
                "Certificate:   valid until {} (renewed from {})",
                tls::rfc3339(not_after),
                tls::rfc3339(not_before + (not_after - not_before) / 2)
            );
            true
        }
        Some((_, not_after)) => {
            println!(
                "Certificate:   EXPIRED: {}",
                tls::expired_advice(&state.path(crate::state::CERT_FILE), not_after, &reg)
            );
            false
        }
        None => {
            println!(
                "Certificate:   UNREADABLE: {}",
                state.path(crate::state::CERT_FILE).display()
            );
            false
        }
    };
    let mut answering = 0;
    for endpoint in &endpoints {
        // With several endpoints each verdict names its endpoint; with one,
        // the lines read as they always have.
        let label = if several {
            println!("-- {endpoint}");
            format!("{endpoint}: ")
        } else {
            String::new()
        };
        if check_endpoint(state, &reg, endpoint, &label).await {
            answering += 1;
        }
    }
    if several {
        println!(
            "Answering:     {answering} of {} coordinator endpoints",
            endpoints.len()
        );
    }
    let healthy = answering > 0 && safe && certificate_ok;
    match state.load_status() {
        Ok(st) => {
            match st.last_poll_ms {
                Some(t) => println!("Last poll:     {}", ago(t)),
                None => println!("Last poll:     never (is `tether-agent run` running?)"),
            }
            if let Some(e) = st.last_error {
                println!("Last error:    {e}");
            }
        }
        Err(e) => println!("Last poll:     UNKNOWN: {e}"),
    }
    match run::spool_summary(state) {
        Ok(spool) => {
            let running: Vec<&str> = spool
                .iter()
                .filter(|(_, s)| *s == Stage::Running)
                .map(|(id, _)| id.as_str())
                .collect();
            let unreported = spool.iter().filter(|(_, s)| *s == Stage::Finished).count();
            println!(
                "Running:       {}{}",
                running.len(),
                if running.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", running.join(", "))
                }
            );
            println!("Unreported:    {unreported}");
        }
        Err(e) => println!("Spool:         UNREADABLE: {e}"),
    }
    if healthy { 0 } else { 1 }
}
