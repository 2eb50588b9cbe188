//! Facts about this host that the agent reports on each poll: platform, name,
//! version, computer name and the IP address it reaches the coordinator from.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use tether_proto as pb;

/// NAME and VERSION_ID from os-release text.
pub fn parse_os_release(text: &str) -> (String, String) {
    let mut name = String::new();
    let mut version = String::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "NAME" => name = v,
            "VERSION_ID" => version = v,
            _ => {}
        }
    }
    (name, version)
}

/// The local address used to reach `ip:port` (no packet is sent).
pub fn source_ip_towards(ip: IpAddr, port: u16) -> Option<String> {
    let bind = if ip.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.connect(SocketAddr::new(ip, port)).ok()?;
    Some(sock.local_addr().ok()?.ip().to_string())
}

/// This host's facts, with the IP address seen towards the coordinator (its
/// name resolved by [`crate::net`], never by libc).
pub async fn host_info(coordinator_host: &str, coordinator_port: u16) -> pb::AgentInfo {
    let towards = crate::net::resolve(coordinator_host)
        .await
        .ok()
        .and_then(|ips| ips.first().copied());
    let (platform_name, platform_version) = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .map(|t| parse_os_release(&t))
        .unwrap_or_default();
    let computer_name = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    pb::AgentInfo {
        platform_type: "Linux".into(),
        platform_name,
        platform_version,
        computer_name,
        ip_address: towards
            .and_then(|ip| source_ip_towards(ip, coordinator_port))
            .unwrap_or_default(),
        agent_version: crate::version::current().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_fields() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n";
        assert_eq!(
            parse_os_release(text),
            ("Debian GNU/Linux".into(), "12".into())
        );
    }

    #[test]
    fn loopback_source_ip() {
        assert_eq!(
            source_ip_towards([127, 0, 0, 1].into(), 9).as_deref(),
            Some("127.0.0.1")
        );
    }
}
