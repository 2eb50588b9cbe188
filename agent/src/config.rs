//! `/etc/tether/agent.toml`: the agent's settings file. Every key is optional
//! and a missing file means the defaults; the command line and the environment
//! override it. Parsing is pure ([`AgentToml::parse`]); [`AgentToml::load`]
//! reads the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::{self, NodePolicy, PolicyError, PolicySource, PolicyToml};

/// Where `tether-agent run` looks for its settings by default.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tether/agent.toml";
/// Log directory when neither the command line nor the file names one.
pub const DEFAULT_LOG_DIR: &str = "/var/log/tether";
/// Log level when neither the environment nor the file sets one.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Size at which a log file is rotated, and how many rotated files are kept.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_LOG_KEEP: usize = 5;
/// Smallest rotation size accepted (smaller would rotate on every line).
pub const MIN_LOG_MAX_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("{path}: log.max_bytes = {value} is below the minimum of {MIN_LOG_MAX_BYTES}")]
    MaxBytesTooSmall { path: PathBuf, value: u64 },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// `[policy] file` names a file that cannot be read: the node refuses
    /// to start rather than run without the policy its owner wrote.
    #[error("{config} [policy] names {path}, which cannot be read: {source}")]
    PolicyFile {
        config: PathBuf,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The `[log]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogToml {
    pub level: Option<String>,
    pub dir: Option<PathBuf>,
    pub max_bytes: Option<u64>,
    pub keep: Option<usize>,
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentToml {
    /// The local user steps run as (default: the agent's own user). Only
    /// this file chooses it; no document can.
    pub run_as_user: Option<String>,
    #[serde(default)]
    pub log: LogToml,
    /// The node's own policy ([`crate::policy`]), or the file holding it.
    pub policy: Option<PolicyToml>,
}

/// The node's policy, resolved: the rules and the file they came from when
/// it is not agent.toml itself (held to StrictModes like agent.toml).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvedPolicy {
    pub policy: Option<NodePolicy>,
    pub file: Option<PathBuf>,
}

/// Where and how the agent logs, all sources resolved.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogSettings {
    pub dir: PathBuf,
    pub level: String,
    pub max_bytes: u64,
    pub keep: usize,
}

impl AgentToml {
    /// Parses the file's text; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<AgentToml, ConfigError> {
        let cfg: AgentToml = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string().trim_end().to_string(),
        })?;
        if let Some(value) = cfg.log.max_bytes
            && value < MIN_LOG_MAX_BYTES
        {
            return Err(ConfigError::MaxBytesTooSmall {
                path: path.to_path_buf(),
                value,
            });
        }
        Ok(cfg)
    }

    /// Reads `path`; a missing file is the defaults.
    pub fn load(path: &Path) -> Result<AgentToml, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentToml::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The node's policy: `[policy]`'s rules, or the file it names, read
    /// now (`path` is agent.toml's, for errors). A named file that is
    /// missing or bad is an error: the node does not start without the
    /// policy its owner wrote.
    pub fn node_policy(&self, path: &Path) -> Result<ResolvedPolicy, ConfigError> {
        match policy::source(path, self.policy.as_ref())? {
            PolicySource::None => Ok(ResolvedPolicy::default()),
            PolicySource::Inline(p) => Ok(ResolvedPolicy {
                policy: Some(p),
                file: None,
            }),
            PolicySource::File(file) => {
                let text =
                    std::fs::read_to_string(&file).map_err(|source| ConfigError::PolicyFile {
                        config: path.to_path_buf(),
                        path: file.clone(),
                        source,
                    })?;
                let t: PolicyToml = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: file.clone(),
                    detail: e.to_string().trim_end().to_string(),
                })?;
                let name = file.display().to_string();
                Ok(ResolvedPolicy {
                    policy: NodePolicy::from_toml(&name, &t, false)?,
                    file: Some(file),
                })
            }
        }
    }

    /// The log settings: `dir_flag` (command line or env) and `level_env` win
    /// over the file, which wins over the defaults.
    pub fn log_settings(
        &self,
        dir_flag: Option<PathBuf>,
        level_env: Option<String>,
    ) -> LogSettings {
        LogSettings {
            dir: dir_flag
                .or_else(|| self.log.dir.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_DIR)),
            level: level_env
                .filter(|l| !l.trim().is_empty())
                .or_else(|| self.log.level.clone())
                .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string()),
            max_bytes: self.log.max_bytes.unwrap_or(DEFAULT_LOG_MAX_BYTES),
            keep: self.log.keep.unwrap_or(DEFAULT_LOG_KEEP),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses_to_the_defaults() {
        let p = Path::new("agent.toml");
        let text = include_str!("../../packaging/etc/agent.toml");
        let cfg = AgentToml::parse(p, text).unwrap();
        assert_eq!(
            cfg.log_settings(None, None),
            LogSettings {
                dir: DEFAULT_LOG_DIR.into(),
                level: "info".into(),
                max_bytes: DEFAULT_LOG_MAX_BYTES,
                keep: DEFAULT_LOG_KEEP
            }
        );
    }

    #[test]
    fn file_values_apply_and_the_environment_wins() {
        let p = Path::new("/etc/tether/agent.toml");
        let cfg = AgentToml::parse(
            p,
            "[log]\nlevel = \"debug\"\ndir = \"/tmp/x\"\nmax_bytes = 5000\nkeep = 2\n",
        )
        .unwrap();
        let s = cfg.log_settings(None, None);
        assert_eq!((s.level.as_str(), s.max_bytes, s.keep), ("debug", 5000, 2));
        assert_eq!(s.dir, PathBuf::from("/tmp/x"));
        let s = cfg.log_settings(Some("/d".into()), Some("warn".into()));
        assert_eq!((s.level.as_str(), s.dir), ("warn", PathBuf::from("/d")));
    }

    #[test]
    fn run_as_user_is_read_from_the_top_of_the_file() {
        let p = Path::new("/etc/tether/agent.toml");
        let cfg = AgentToml::parse(
            p,
            "run_as_user = \"tether-steps\"\n[log]\nlevel = \"info\"\n",
        )
        .unwrap();
        assert_eq!(cfg.run_as_user.as_deref(), Some("tether-steps"));
        assert_eq!(AgentToml::parse(p, "").unwrap().run_as_user, None);
        let e = AgentToml::parse(p, "run_as_user = 0\n").unwrap_err();
        assert!(e.to_string().contains("run_as_user"), "{e}");
    }

    #[test]
    fn the_policy_is_read_inline_or_from_the_file_named() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("agent.toml");
        let cfg = AgentToml::parse(
            &config,
            "[policy]\ndeny_documents = [\"AWS-RunShellScript\"]\n",
        )
        .unwrap();
        let r = cfg.node_policy(&config).unwrap();
        assert_eq!(r.file, None);
        let p = r.policy.expect("inline policy");
        let e = p.check("AWS-RunShellScript", "").unwrap_err().to_string();
        assert!(e.contains(&format!("{} [policy]", config.display())), "{e}");

        let file = tmp.path().join("node-policy.toml");
        let cfg = AgentToml::parse(
            &config,
            &format!("[policy]\nfile = \"{}\"\n", file.display()),
        )
        .unwrap();
        // Named but missing: an error, never "no policy".
        let e = cfg.node_policy(&config).unwrap_err().to_string();
        assert!(
            e.contains("node-policy.toml") && e.contains("cannot be read"),
            "{e}"
        );
        std::fs::write(&file, "allow_documents = [\"Acme-*\"]\n").unwrap();
        let r = cfg.node_policy(&config).unwrap();
        assert_eq!(r.file.as_deref(), Some(file.as_path()));
        let e = r
            .policy
            .unwrap()
            .check("AWS-RunShellScript", "")
            .unwrap_err();
        assert!(e.to_string().contains("node-policy.toml"), "{e}");
        std::fs::write(&file, "allow_documents = \"Acme-*\"\n").unwrap();
        let e = cfg.node_policy(&config).unwrap_err().to_string();
        assert!(
            e.contains("node-policy.toml") && e.contains("allow_documents"),
            "{e}"
        );
        assert_eq!(
            AgentToml::parse(&config, "")
                .unwrap()
                .node_policy(&config)
                .unwrap(),
            ResolvedPolicy::default()
        );
    }

    #[test]
    fn bad_files_name_the_file_and_the_key() {
        let p = Path::new("/etc/tether/agent.toml");
        let e = AgentToml::parse(p, "[log]\nlevle = \"debug\"\n").unwrap_err();
        assert!(
            e.to_string().contains("/etc/tether/agent.toml") && e.to_string().contains("levle"),
            "{e}"
        );
        let e = AgentToml::parse(p, "[log]\nmax_bytes = 10\n").unwrap_err();
        assert!(e.to_string().contains("log.max_bytes = 10"), "{e}");
    }
}
