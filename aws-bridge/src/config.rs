//! The bridge's configuration: a TOML file (`tether serve --aws-config FILE`,
//! or `aws.toml` in the data directory when present) naming the AWS accounts
//! and regions whose SSM-managed instances Tether drives.
//!
//! ```toml
//! refresh_seconds = 60            # how often each account's instances are re-described
//!
//! [[accounts]]
//! name = "prod-use1"              # shown as the instances' Source: aws:prod-use1
//! region = "us-east-1"
//! profile = "prod"                # optional; else the standard chain (env, profile, role)
//! endpoint_url = "https://..."    # optional (a VPC endpoint, moto, another Tether)
//! ca_bundle = "/etc/ssl/extra.pem"  # optional extra trust root for endpoint_url
//! instance_ids = ["i-0123456789abcdef0"]  # optional: targetable even when
//!                                 # DescribeInstanceInformation is not allowed
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use tether_ssm::limits;

/// Why the bridge configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u64,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
}

fn default_refresh() -> u64 {
    limits::DEFAULT_BRIDGE_REFRESH_SECS
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    pub region: String,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub ca_bundle: Option<PathBuf>,
    /// Instances to bridge even if DescribeInstanceInformation does not list
    /// them (an IAM policy without it, or an endpoint that lacks it).
    #[serde(default)]
    pub instance_ids: Vec<String>,
}

impl BridgeConfig {
    /// Parses and checks a configuration file's text.
    pub fn parse(text: &str) -> Result<BridgeConfig, String> {
        let cfg: BridgeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if cfg.refresh_seconds == 0 {
            return Err("refresh_seconds must be at least 1".into());
        }
        for (i, a) in cfg.accounts.iter().enumerate() {
            let valid_name = !a.name.is_empty()
                && a.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid_name {
                return Err(format!(
                    "accounts[{i}].name {:?} must be non-empty letters, digits, '-', '_' or '.'",
                    a.name
                ));
            }
            if a.region.is_empty() {
                return Err(format!("accounts[{i}] ({}): region is required", a.name));
            }
            if cfg.accounts[..i].iter().any(|b| b.name == a.name) {
                return Err(format!("accounts[{i}].name {:?} is used twice", a.name));
            }
            if let Some(bad) = a.instance_ids.iter().find(|id| {
                let hex = |s: &str, n: &[usize]| {
                    n.contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
                };
                !(id.strip_prefix("i-").is_some_and(|h| hex(h, &[8, 17]))
                    || id.strip_prefix("mi-").is_some_and(|h| hex(h, &[17])))
            }) {
                return Err(format!(
                    "accounts[{i}] ({}): instance_ids: {bad:?} is not an EC2 (i-<8 or 17 hex>) or managed (mi-<17 hex>) instance ID",
                    a.name
                ));
            }
            if let Some(u) = &a.endpoint_url
                && !(u.starts_with("https://") || u.starts_with("http://"))
            {
                return Err(format!(
                    "accounts[{i}] ({}): endpoint_url {u:?} must start with https:// or http://",
                    a.name
                ));
            }
        }
        Ok(cfg)
    }

    /// Reads `path`.
    pub fn load(path: &Path) -> Result<BridgeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_checked() {
        let ok = BridgeConfig::parse(
            "[[accounts]]\nname = \"lab\"\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:5000\"\n",
        )
        .unwrap();
        assert_eq!(ok.refresh_seconds, limits::DEFAULT_BRIDGE_REFRESH_SECS);
        assert_eq!(ok.accounts[0].name, "lab");
        let cases = [
            (
                "[[accounts]]\nname = \"\"\nregion = \"r\"\n",
                "accounts[0].name",
            ),
            (
                "[[accounts]]\nname = \"a\"\nregion = \"\"\n",
                "region is required",
            ),
            (
                "[[accounts]]\nname = \"a\"\nregion = \"r\"\n[[accounts]]\nname = \"a\"\nregion = \"r\"\n",
                "used twice",
            ),
            (
                "[[accounts]]\nname = \"a\"\nregion = \"r\"\nendpoint_url = \"ftp://x\"\n",
                "endpoint_url",
            ),
            (
                "[[accounts]]\nname = \"a\"\nregion = \"r\"\nregoin = \"x\"\n",
                "regoin",
            ),
            ("refresh_seconds = 0\n", "refresh_seconds"),
            (
                "[[accounts]]\nname = \"a\"\nregion = \"r\"\ninstance_ids = [\"i-xyz\"]\n",
                "\"i-xyz\" is not an EC2",
            ),
        ];
        for (text, want) in cases {
            let e = BridgeConfig::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
