//! Installing agents from the coordinator: the agent binary it serves (with its
//! SHA-256), the install script rendered for this coordinator
//! (`install.sh`, with the repository's systemd unit and SysV script inside),
//! and the user-data snippet `create-activation --output text` prints.
//!
//! Rendering is pure; [`AgentDownload::load`] is the only IO.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const INSTALL_TEMPLATE: &str = include_str!("install.sh");
const SYSTEMD_UNIT: &str = include_str!("../../systemd/tether-agent.service");
const SYSV_SCRIPT: &str = include_str!("../../init.d/tether-agent");
const AGENT_TOML: &str = include_str!("../../packaging/etc/agent.toml");

/// Where the agent binary served to nodes is looked for, after `--agent-binary`:
/// beside the running `tether`, then where the coordinator's package puts it.
pub const PACKAGED_AGENT_BINARY: &str = "/usr/share/tether/tether-agent";

/// The agent binary served at `/agent/tether-agent`.
#[derive(Debug, Clone)]
pub struct AgentDownload {
    pub path: PathBuf,
    pub bytes: hyper::body::Bytes,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("no agent binary to serve: {tried} (give --agent-binary or TETHER_AGENT_BINARY)")]
    NoAgentBinary { tried: String },
    #[error("--agent-binary {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl AgentDownload {
    /// Reads the binary from `explicit`, else the default places.
    pub fn load(explicit: Option<&Path>) -> Result<AgentDownload, InstallError> {
        let candidates: Vec<PathBuf> = match explicit {
            Some(p) => vec![p.to_path_buf()],
            None => {
                let mut c = Vec::new();
                if let Ok(exe) = std::env::current_exe()
                    && let Some(dir) = exe.parent()
                {
                    c.push(dir.join("tether-agent"));
                }
                c.push(PathBuf::from(PACKAGED_AGENT_BINARY));
                c
            }
        };
        for path in &candidates {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let sha256 = hex::encode(Sha256::digest(&bytes));
                    return Ok(AgentDownload {
                        path: path.clone(),
                        bytes: bytes.into(),
                        sha256,
                    });
                }
                Err(source) if explicit.is_some() => {
                    return Err(InstallError::Read {
                        path: path.clone(),
                        source,
                    });
                }
                Err(_) => {}
            }
        }
        Err(InstallError::NoAgentBinary {
            tried: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// The install script for this coordinator. Values are put inside single
/// quotes in the template, so they are quoted for that.
pub fn render_script(
    endpoint: &str,
    http_endpoint: &str,
    ca_pin: &str,
    agent_sha256: &str,
) -> String {
    let inner = |s: &str| s.replace('\'', r"'\''");
    INSTALL_TEMPLATE
        .replace("@ENDPOINT@", &inner(endpoint))
        .replace("@HTTP_ENDPOINT@", &inner(http_endpoint))
        .replace("@CA_PIN@", &inner(ca_pin))
        .replace("@AGENT_SHA256@", &inner(agent_sha256))
        .replace("@SYSTEMD_UNIT@", SYSTEMD_UNIT)
        .replace("@SYSV_SCRIPT@", SYSV_SCRIPT)
        .replace("@AGENT_TOML@", AGENT_TOML)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_carries_this_coordinators_values_and_the_service_files() {
        let s = render_script(
            "https://c.example:8443",
            "https://c.example:8444",
            "sha256:ab",
            "cd",
        );
        assert!(s.contains("ENDPOINT='https://c.example:8443'"));
        assert!(s.contains("HTTP_ENDPOINT='https://c.example:8444'"));
        assert!(s.contains("CA_PIN='sha256:ab'"));
        assert!(s.contains("AGENT_SHA256='cd'"));
        assert!(s.contains("KillMode=process"));
        assert!(s.contains("# chkconfig: 2345"));
        assert!(!s.contains("@SYSTEMD_UNIT@") && !s.contains("@ENDPOINT@"));
    }
}
