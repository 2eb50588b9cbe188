//! `tether-agent status`: what an operator needs to see on a node — whether it
//! is registered, whether the coordinator answers (TLS, client certificate),
//! how far the clocks differ, when the daemon last polled, what is running.

use std::time::Duration;

use tether_proto as pb;

use crate::spool::Stage;
use crate::state::StateDir;
use crate::{now_ms, run, tls};

/// Clock difference beyond which `status` tells the operator to sync time.
const SKEW_WARN_MS: i64 = 30_000;

fn ago(ms: i64) -> String {
    let secs = (now_ms() - ms) / 1000;
    let at = chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    format!("{at} ({secs} s ago)")
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
    println!("Endpoint:      {}", reg.endpoint);
    println!("Activation:    {}", reg.activation_id);
    println!("Registered:    {}", ago(reg.registered_at_ms));
    let mut healthy = true;

    let reach = async {
        let channel = run::build_channel(state, &reg)?;
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
            println!("Coordinator:   reachable (TLS and client certificate accepted)");
            if skew.abs() > SKEW_WARN_MS {
                healthy = false;
                println!(
                    "Clock skew:    {:.1} s {} the coordinator: sync the time (chrony, systemd-timesyncd or ntpdate)",
                    skew.abs() as f64 / 1000.0,
                    if skew > 0 { "behind" } else { "ahead of" }
                );
            } else {
                println!("Clock skew:    {:+.1} s (ok)", skew as f64 / 1000.0);
            }
        }
        Err(e) => {
            healthy = false;
            println!("Coordinator:   UNREACHABLE: {e}");
        }
    }
    let st = state.load_status();
    match st.last_poll_ms {
        Some(t) => println!("Last poll:     {}", ago(t)),
        None => println!("Last poll:     never (is `tether-agent run` running?)"),
    }
    if let Some(e) = st.last_error {
        println!("Last error:    {e}");
    }
    let spool = run::spool_summary(state);
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
    if healthy { 0 } else { 1 }
}
