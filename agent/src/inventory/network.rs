//! `AWS:Network`: every interface but loopback, with all its IPv4 and IPv6
//! addresses and masks (SSM keeps one per family; we keep them all, comma
//! separated, masks in address order), MAC, default gateways
//! (`/proc/net/route`, `/proc/net/ipv6_route`), DNS servers (`resolv.conf`)
//! and the DHCP server from dhclient or systemd-networkd leases.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;

use super::{Entry, Sources, entry};

#[derive(Default)]
struct Iface {
    v4: Vec<(Ipv4Addr, Ipv4Addr)>,
    v6: Vec<(Ipv6Addr, Ipv6Addr)>,
    mac: String,
}

pub fn interfaces(src: &Sources) -> Result<Vec<Entry>, String> {
    let mut ifs: BTreeMap<String, Iface> = BTreeMap::new();
    for a in getifaddrs().map_err(|e| format!("getifaddrs: {e}"))? {
        if a.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            continue;
        }
        let i = ifs.entry(a.interface_name.clone()).or_default();
        let Some(addr) = a.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            let mask = a
                .netmask
                .and_then(|m| m.as_sockaddr_in().map(|m| m.ip()))
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            i.v4.push((v4.ip(), mask));
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            let mask = a
                .netmask
                .and_then(|m| m.as_sockaddr_in6().map(|m| m.ip()))
                .unwrap_or(Ipv6Addr::UNSPECIFIED);
            i.v6.push((v6.ip(), mask));
        } else if let Some(link) = addr.as_link_addr()
            && let Some(mac) = link.addr()
        {
            i.mac = mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
        }
    }
    let routes4 = std::fs::read_to_string(src.proc_net.join("route")).unwrap_or_default();
    let routes6 = std::fs::read_to_string(src.proc_net.join("ipv6_route")).unwrap_or_default();
    let gw4 = default_gateways_v4(&routes4);
    let gw6 = default_gateways_v6(&routes6);
    let dns = dns_servers(&std::fs::read_to_string(&src.resolv_conf).unwrap_or_default());
    let dhcp = dhcp_servers(&src.dhcp_lease_dirs);
    let join = |v: Vec<String>| v.join(",");
    Ok(ifs
        .into_iter()
        .map(|(name, i)| {
            let mut gateways: Vec<String> = gw4.get(&name).cloned().unwrap_or_default();
            gateways.extend(gw6.get(&name).cloned().unwrap_or_default());
            let ifindex = nix::net::if_::if_nametoindex(name.as_str()).unwrap_or(0);
            let dhcp_server = dhcp
                .get(&name)
                .or_else(|| dhcp.get(&ifindex.to_string()))
                .cloned()
                .unwrap_or_default();
            let mut masks: Vec<String> = i.v4.iter().map(|(_, m)| m.to_string()).collect();
            masks.extend(i.v6.iter().map(|(_, m)| m.to_string()));
            entry([
                ("Name", name.clone()),
                ("SubnetMask", join(masks)),
                ("Gateway", join(gateways)),
                ("DHCPServer", dhcp_server),
                ("DNSServer", dns.join(",")),
                ("MacAddress", i.mac),
                (
                    "IPV4",
                    join(i.v4.iter().map(|(a, _)| a.to_string()).collect()),
                ),
                (
                    "IPV6",
                    join(i.v6.iter().map(|(a, _)| a.to_string()).collect()),
                ),
            ])
        })
        .collect())
}

/// Interface → default IPv4 gateways, from `/proc/net/route` (little-endian hex).
pub fn default_gateways_v4(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 8 || w[1] != "00000000" || w[7] != "00000000" {
            continue;
        }
        if let Ok(g) = u32::from_str_radix(w[2], 16)
            && g != 0
        {
            out.entry(w[0].to_string())
                .or_default()
                .push(Ipv4Addr::from(g.to_le_bytes()).to_string());
        }
    }
    out
}

/// Interface → default IPv6 gateways, from `/proc/net/ipv6_route`.
pub fn default_gateways_v6(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 10 || w[0].bytes().any(|b| b != b'0') || w[1] != "00" {
            continue;
        }
        if let Ok(g) = u128::from_str_radix(w[4], 16)
            && g != 0
        {
            out.entry(w[9].to_string())
                .or_default()
                .push(Ipv6Addr::from(g).to_string());
        }
    }
    out
}

/// `nameserver` lines of resolv.conf.
pub fn dns_servers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then(|| w.next().map(str::to_string))?
        })
        .collect()
}

/// Interface name (dhclient) or index (networkd) → DHCP server address.
fn dhcp_servers(dirs: &[std::path::PathBuf]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            if text.contains("lease {") {
                out.extend(parse_dhclient_leases(&text));
            } else if let Some(server) =
                text.lines().find_map(|l| l.strip_prefix("SERVER_ADDRESS="))
            {
                // networkd names its lease files by interface index.
                let idx = file_name(&p);
                out.insert(idx, server.trim().to_string());
            }
        }
    }
    out
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// dhclient lease blocks: the last lease per interface wins.
pub fn parse_dhclient_leases(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for block in text.split("lease {").skip(1) {
        let body = block.split('}').next().unwrap_or("");
        let mut iface = None;
        let mut server = None;
        for l in body.lines() {
            let l = l.trim().trim_end_matches(';');
            if let Some(v) = l.strip_prefix("interface ") {
                iface = Some(v.trim_matches('"').to_string());
            } else if let Some(v) = l.strip_prefix("option dhcp-server-identifier ") {
                server = Some(v.trim().to_string());
            }
        }
        if let (Some(i), Some(s)) = (iface, server) {
            out.insert(i, s);
        }
    }
    out
}
