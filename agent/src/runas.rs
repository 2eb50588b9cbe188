//! Who a step runs as, and the environment it gets.
//!
//! The user is the node's decision, never a document's: `run_as_user` in
//! `/etc/tether/agent.toml`, by default the agent's own user. It is read from
//! `/etc/passwd` and `/etc/group` ([`tether_util::users`]: the static agent
//! cannot use NSS, so only local accounts are seen).
//!
//! The environment is built from nothing: a step sees [`PASSED_THROUGH`]
//! from the agent's environment (locale, time zone, proxies), `PATH`, the
//! user's `HOME`, `USER`, `LOGNAME` and `SHELL`, and the step variables of
//! the contract ([`step_variables`]) — nothing else of the agent's, so no
//! `TETHER_*` setting or credential of the agent's reaches a script.
//! [`environment`] is pure and table-tested.

use std::ffi::OsString;

use serde::{Deserialize, Serialize};
use tether_util::users::{self, User};

/// Variables a step takes from the agent's environment when they are set.
pub const PASSED_THROUGH: &[&str] = &[
    "LANG",
    "LANGUAGE",
    "TZ",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "ftp_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "FTP_PROXY",
];
/// And every variable whose name starts with this (`LC_ALL`, `LC_CTYPE`, …).
pub const PASSED_THROUGH_PREFIX: &str = "LC_";
/// `PATH` when the agent has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `SHELL` when the user's entry names none.
const DEFAULT_SHELL: &str = "/bin/sh";

/// The user a step runs as, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (with the primary one).
    pub groups: Vec<u32>,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunAsError {
    #[error(
        "run_as_user = {0:?}: no such local user in /etc/passwd (the agent reads local accounts only)"
    )]
    Unknown(String),
    #[error(
        "run_as_user = {name:?}: steps can run as another user only when the agent runs as root (it runs as uid {agent_uid})"
    )]
    NeedsRoot { name: String, agent_uid: u32 },
    #[error("run_as_user: cannot read the local accounts: {0}")]
    Read(#[from] std::io::Error),
}

fn from_user(u: User, groups: Vec<u32>) -> StepUser {
    StepUser {
        name: u.name,
        uid: u.uid,
        gid: u.gid,
        groups,
        shell: if u.shell.is_empty() {
            DEFAULT_SHELL.to_string()
        } else {
            u.shell
        },
        home: u.home,
    }
}

/// The user steps run as: `configured` (agent.toml's `run_as_user`), else
/// the agent's own. A user that is not the agent's needs the agent to run
/// as root. The agent's own user is described from its environment when
/// `/etc/passwd` does not know its uid (a container's arbitrary uid).
pub fn resolve(configured: Option<&str>) -> Result<StepUser, RunAsError> {
    let agent_uid = nix::unistd::geteuid().as_raw();
    let Some(name) = configured.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(match users::user_by_uid(agent_uid)? {
            Some(u) => {
                let groups = users::groups_of(&u)?;
                from_user(u, groups)
            }
            None => {
                let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                let gid = nix::unistd::getegid().as_raw();
                StepUser {
                    name: var("USER").unwrap_or_else(|| agent_uid.to_string()),
                    uid: agent_uid,
                    gid,
                    groups: vec![gid],
                    home: var("HOME").unwrap_or_else(|| "/".to_string()),
                    shell: DEFAULT_SHELL.to_string(),
                }
            }
        });
    };
    let u = users::user_by_name(name)?.ok_or_else(|| RunAsError::Unknown(name.to_string()))?;
    if u.uid != agent_uid && agent_uid != 0 {
        return Err(RunAsError::NeedsRoot {
            name: name.to_string(),
            agent_uid,
        });
    }
    let groups = users::groups_of(&u)?;
    Ok(from_user(u, groups))
}

/// The step variables of the contract, for a command (or an association
/// run, whose ID stands in for the command's).
pub fn step_variables(command_id: &str, instance_id: &str) -> Vec<(String, String)> {
    vec![
        ("TETHER_COMMAND_ID".into(), command_id.into()),
        ("TETHER_INSTANCE_ID".into(), instance_id.into()),
        ("SSM_COMMAND_ID".into(), command_id.into()),
        ("AWS_SSM_INSTANCE_ID".into(), instance_id.into()),
        ("AWS_SSM_PLATFORM_NAME".into(), "Linux".into()),
    ]
}

/// A step's whole environment: what [`PASSED_THROUGH`] finds in `agent_env`,
/// `PATH` (the agent's, else [`DEFAULT_PATH`]), the user's `HOME`, `USER`,
/// `LOGNAME` and `SHELL`, then `step_vars`. Sorted by name; variables whose
/// name or value is not UTF-8 are left out.
pub fn environment(
    agent_env: impl IntoIterator<Item = (OsString, OsString)>,
    user: &StepUser,
    step_vars: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env = std::collections::BTreeMap::new();
    env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
    for (k, v) in agent_env {
        let (Ok(k), Ok(v)) = (k.into_string(), v.into_string()) else {
            continue;
        };
        let wanted = k == "PATH"
            || PASSED_THROUGH.contains(&k.as_str())
            || (k.starts_with(PASSED_THROUGH_PREFIX) && k.len() > PASSED_THROUGH_PREFIX.len());
        if wanted && !(k == "PATH" && v.is_empty()) {
            env.insert(k, v);
        }
    }
    env.insert("HOME".into(), user.home.clone());
    env.insert("USER".into(), user.name.clone());
    env.insert("LOGNAME".into(), user.name.clone());
    env.insert("SHELL".into(), user.shell.clone());
    for (k, v) in step_vars {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> StepUser {
        StepUser {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            home: "/home/alice".into(),
            shell: "/bin/zsh".into(),
        }
    }

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn a_step_gets_the_documented_variables_and_nothing_else_of_the_agents() {
        let agent = os(&[
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/root"),
            ("USER", "root"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "en_GB.UTF-8"),
            ("LC_", "not a locale variable"),
            ("TZ", "Europe/Paris"),
            ("https_proxy", "http://proxy:3128"),
            ("NO_PROXY", "localhost"),
            ("TETHER_CONFIG", "/root/.config/tether/operator.json"),
            ("TETHER_AGENT_STATE_DIR", "/var/lib/tether-agent"),
            ("AWS_SECRET_ACCESS_KEY", "shh"),
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("TETHER_COMMAND_ID", "spoofed"),
        ]);
        let vars = step_variables("cmd-1", "mi-0123456789abcdef0");
        let env = environment(agent, &alice(), &vars);
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("AWS_SSM_INSTANCE_ID", "mi-0123456789abcdef0"),
                ("AWS_SSM_PLATFORM_NAME", "Linux"),
                ("HOME", "/home/alice"),
                ("LANG", "C.UTF-8"),
                ("LC_TIME", "en_GB.UTF-8"),
                ("LOGNAME", "alice"),
                ("NO_PROXY", "localhost"),
                ("PATH", "/usr/bin:/bin"),
                ("SHELL", "/bin/zsh"),
                ("SSM_COMMAND_ID", "cmd-1"),
                ("TETHER_COMMAND_ID", "cmd-1"),
                ("TETHER_INSTANCE_ID", "mi-0123456789abcdef0"),
                ("TZ", "Europe/Paris"),
                ("USER", "alice"),
                ("https_proxy", "http://proxy:3128"),
            ]
        );
    }

    #[test]
    fn an_agent_without_path_gives_its_steps_the_default_one() {
        for agent in [os(&[]), os(&[("PATH", "")])] {
            let env = environment(agent, &alice(), &[]);
            assert!(
                env.contains(&("PATH".to_string(), DEFAULT_PATH.to_string())),
                "{env:?}"
            );
        }
    }

    #[test]
    fn the_agents_own_user_and_named_users_resolve_and_strangers_do_not() {
        let me = resolve(None).unwrap();
        assert_eq!(me.uid, nix::unistd::geteuid().as_raw());
        if me.uid == 0 {
            let root = resolve(Some("root")).unwrap();
            assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        } else {
            // Only root can start a step as someone else.
            let e = resolve(Some("root")).unwrap_err().to_string();
            assert!(e.contains("only when the agent runs as root"), "{e}");
        }
        let e = resolve(Some("no-such-user-here")).unwrap_err().to_string();
        assert!(
            e.contains("run_as_user = \"no-such-user-here\": no such local user"),
            "{e}"
        );
    }
}
