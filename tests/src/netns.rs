//! Network namespaces the chaos tests make themselves (`ip netns`), joined
//! by a veth pair, with the faults they inject: the link cut, packets
//! dropped at random by nftables (`numgen`; this kernel has no netem), and
//! new connections redirected through a delaying relay. Every name is
//! unique to the test process, every address lives only inside these
//! namespaces, and everything is deleted on drop, also when a test panics.
//! Needs root and `ip` (iproute2) and `nft` (nftables), which
//! `scripts/test.sh` installs; a missing tool fails the test, never skips it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Runs a tool that must succeed; panics naming it and its output.
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): scripts/test.sh installs it (iproute2, nftables)")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One network namespace, deleted on drop (processes started in it must be
/// stopped before: drop their handles first).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace named `tether-<pid>-<n>-<role>`, its loopback up.
    pub fn new(role: &str) -> Netns {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the chaos tests make network namespaces: run them as root (CI does)"
        );
        let name = format!(
            "tether-{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The prefix that runs a program inside (see [`crate::wrapped`]).
    pub fn wrap(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name]
            .map(String::from)
            .to_vec()
    }

    /// Its handle, for `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// `nft` inside, reading `script` (`nft -f -`).
    pub fn nft(&self, script: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run ip netns exec nft");
        child
            .stdin
            .take()
            .expect("nft stdin")
            .write_all(script.as_bytes())
            .expect("write nft script");
        let out = child.wait_with_output().expect("wait for nft");
        assert!(
            out.status.success(),
            "nft failed ({}) on {script:?}: {}: scripts/test.sh installs nftables",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair: `node` (10.77.0.2, interface `v0`)
/// and `coord` (10.77.0.1, and 10.77.0.3 for the delaying relay, `v1`).
pub struct Link {
    pub node: Netns,
    pub coord: Netns,
}

/// The coordinator's address as nodes know it.
pub const COORD_ADDR: &str = "10.77.0.1";
/// A second address of the coordinator's namespace: the relay's upstream,
/// which the redirect does not match.
pub const COORD_RELAY_ADDR: &str = "10.77.0.3";

impl Link {
    pub fn new() -> Link {
        let node = Netns::new("node");
        let coord = Netns::new("coord");
        node.ip(&[
            "link",
            "add",
            "v0",
            "type",
            "veth",
            "peer",
            "name",
            "v1",
            "netns",
            &coord.name,
        ]);
        node.ip(&["addr", "add", "10.77.0.2/24", "dev", "v0"]);
        coord.ip(&["addr", "add", "10.77.0.1/24", "dev", "v1"]);
        coord.ip(&["addr", "add", "10.77.0.3/24", "dev", "v1"]);
        node.ip(&["link", "set", "v0", "up"]);
        coord.ip(&["link", "set", "v1", "up"]);
        // The fault table: present from the start so each fault is a flush
        // and an add; it matches nothing until a fault is set.
        node.nft(
            "table inet chaos {\n\
               chain input { type filter hook input priority 0; }\n\
               chain output { type filter hook output priority 0; }\n\
               chain nat { type nat hook output priority -100; }\n\
             }\n",
        );
        Link { node, coord }
    }

    /// Cuts the link (`ip link set down`) or restores it.
    pub fn set_up(&self, up: bool) {
        self.node
            .ip(&["link", "set", "v0", if up { "up" } else { "down" }]);
    }

    /// Drops `percent` % of the packets crossing the link, each way (0: none).
    pub fn drop_percent(&self, percent: u32) {
        let mut script =
            String::from("flush chain inet chaos input\nflush chain inet chaos output\n");
        if percent > 0 {
            script.push_str(&format!(
                "add rule inet chaos input iifname \"v0\" numgen random mod 100 < {percent} drop\n\
                 add rule inet chaos output oifname \"v0\" numgen random mod 100 < {percent} drop\n"
            ));
        }
        self.node.nft(&script);
    }

    /// Sends the node's new connections to `COORD_ADDR:port` to
    /// `127.0.0.1:relay_port` inside the node's namespace (a relay that
    /// forwards to `COORD_RELAY_ADDR`), and resets the ones open directly,
    /// so that every connection goes through the relay; `None` undoes it.
    pub fn redirect(&self, port: u16, relay_port: Option<u16>) {
        let mut script =
            String::from("flush chain inet chaos nat\nflush chain inet chaos output\n");
        if let Some(relay) = relay_port {
            script.push_str(&format!(
                "add rule inet chaos nat ip daddr {COORD_ADDR} tcp dport {port} dnat ip to 127.0.0.1:{relay}\n\
                 add rule inet chaos output ip daddr {COORD_ADDR} tcp dport {port} reject with tcp reset\n"
            ));
        }
        // DNAT to loopback needs route_localnet on the outgoing interface.
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.node.name,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.conf.all.route_localnet=1",
            ],
        );
        self.node.nft(&script);
    }
}

impl Default for Link {
    fn default() -> Self {
        Self::new()
    }
}
