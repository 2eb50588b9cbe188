//! The agent's registration on disk: `registration.json`, its key, its client
//! certificate and the coordinator's CA, in a 0700 directory with 0600 files.
//!
//! Written once by `register` (and the certificate again on renewal), read by
//! `run` and `status`. Nothing here talks to the network.
//!
//! Before any of it is trusted, [`StateDir::check`] applies StrictModes
//! ([`tether_util::strict`]): the whole directory (registration, keys, CA,
//! spool, associations) and every directory above it must be writable by
//! the agent's user only, and the key readable by it only. Whoever could
//! write there could register the node to a coordinator of their own and
//! have the agent run its commands.

use std::fs;
use std::path::{Path, PathBuf};

use tether_util::strict::{Policy, Unsafe};

use serde::{Deserialize, Serialize};

pub const REGISTRATION_FILE: &str = "registration.json";
pub const KEY_FILE: &str = "agent.key";
pub const CERT_FILE: &str = "agent.crt";
pub const CA_FILE: &str = "ca.pem";
/// A renewed key and certificate, written whole before either replaces the
/// pair in use ([`StateDir::save_client_pair`]).
pub const KEY_NEXT_FILE: &str = "agent.key.next";
pub const CERT_NEXT_FILE: &str = "agent.crt.next";
pub const STATUS_FILE: &str = "status.json";
pub const SPOOL_DIR: &str = "spool";
/// The node's X25519 sealing key (64 hex digits), made on first start:
/// secrets for this node are sealed to it (`tether_proto::seal`).
pub const SEALING_KEY_FILE: &str = "sealing.key";
/// The coordinator's release key (64 hex digits, raw Ed25519), learnt at
/// registration or from a signed trust bundle: the only key agent releases
/// are accepted from (`crate::update`).
pub const RELEASE_KEY_FILE: &str = "release.pub";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// ENOSPC or EDQUOT: the disk of the state directory (and its spool) is full.
    #[error(
        "this node's disk is full: {path}: {source}; free space on it (the agent's state \
         directory and spool, where commands and their output are kept)"
    )]
    DiskFull {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("this node is not registered (no {0}); run `tether-agent register` first")]
    NotRegistered(PathBuf),
    /// StrictModes: something the agent would trust could have been written by someone else.
    #[error("refusing to trust the agent's files: {0}")]
    Unsafe(#[from] Unsafe),
}

/// The error of an I/O failure on `path`: [`StateError::DiskFull`] when the
/// disk is full, else [`StateError::Io`].
pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| {
        let path = path.to_path_buf();
        if is_disk_full(&source) {
            StateError::DiskFull { path, source }
        } else {
            StateError::Io { path, source }
        }
    }
}

/// Whether `e` says the disk (or the user's quota on it) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ENOSPC) | Some(nix::libc::EDQUOT)
    ) || e.kind() == std::io::ErrorKind::StorageFull
}

/// What registration established.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Registration {
    pub instance_id: String,
    /// The coordinator replicas, `https://HOST:PORT` comma-joined (one before
    /// replicas existed, so old files read unchanged); see [`crate::endpoints`].
    pub endpoint: String,
    pub activation_id: String,
    pub ca_pin: String,
    /// Hex of the raw Ed25519 key that signs command envelopes.
    pub command_signing_key: String,
    pub registered_at_ms: i64,
    /// Hex of the keys whose signatures are accepted too while the
    /// coordinator rotates its signing key (its trust bundle says which).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_command_signing_keys: Vec<String>,
}

impl Registration {
    /// The stored endpoint list, parsed.
    pub fn endpoints(&self) -> Result<Vec<String>, crate::endpoints::EndpointsError> {
        crate::endpoints::parse(&self.endpoint)
    }
}

/// What the daemon last saw, for `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RunStatus {
    pub last_poll_ms: Option<i64>,
    pub last_error: Option<String>,
    pub clock_skew_ms: Option<i64>,
    pub pid: Option<u32>,
}

/// Creates a directory of the state (and missing parents) with mode 0700.
pub fn ensure_dir(dir: &Path) -> Result<(), StateError> {
    tether_util::fs::create_private_dir_all(dir).map_err(io(dir))
}

/// The uid the agent runs as: the owner its files must have.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Writes a file atomically with mode 0600 ([`tether_util::fs::write_private`]),
/// an error naming it.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), StateError> {
    tether_util::fs::write_private(path, data).map_err(io(path))
}

fn remove_if_there(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

pub fn read_text(path: &Path) -> Result<String, StateError> {
    fs::read_to_string(path).map_err(io(path))
}

/// The agent's state directory and its files.
#[derive(Clone, Debug)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: PathBuf) -> Self {
        StateDir { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.join(SPOOL_DIR)
    }

    /// StrictModes for the whole state directory and `files` (the settings
    /// file, which names the user steps run as, and the node's policy file
    /// when it names one: a policy anyone could write restricts nothing):
    /// see the module doc. A directory or file that does not exist yet
    /// passes if the directories it would be created in do.
    pub fn check(&self, files: &[&Path]) -> Result<(), StateError> {
        let mut policy = Policy::new(effective_uid());
        policy.check_tree(&self.dir, &[KEY_FILE, KEY_NEXT_FILE, SEALING_KEY_FILE])?;
        for file in files {
            policy.check_file(file, false)?;
        }
        Ok(())
    }

    pub fn is_registered(&self) -> bool {
        self.path(REGISTRATION_FILE).exists()
    }

    pub fn load(&self) -> Result<Registration, StateError> {
        let p = self.path(REGISTRATION_FILE);
        if !p.exists() {
            return Err(StateError::NotRegistered(p));
        }
        let text = read_text(&p)?;
        serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: p,
            detail: e.to_string(),
        })
    }

    /// Saves a registration with its key material; the registration file goes
    /// last, so a half-written registration is never taken for a whole one.
    pub fn save(
        &self,
        reg: &Registration,
        key_pem: &str,
        cert_pem: &str,
        ca_pem: &str,
    ) -> Result<(), StateError> {
        ensure_dir(&self.dir)?;
        write_private(&self.path(KEY_FILE), key_pem.as_bytes())?;
        write_private(&self.path(CERT_FILE), cert_pem.as_bytes())?;
        write_private(&self.path(CA_FILE), ca_pem.as_bytes())?;
        let json = serde_json::to_vec_pretty(reg).map_err(|e| StateError::Corrupt {
            path: self.path(REGISTRATION_FILE),
            detail: e.to_string(),
        })?;
        write_private(&self.path(REGISTRATION_FILE), &json)
    }

    /// Rewrites `registration.json` (keys and pin learnt from the
    /// coordinator's trust bundle).
    pub fn save_registration(&self, reg: &Registration) -> Result<(), StateError> {
        let path = self.path(REGISTRATION_FILE);
        let json = serde_json::to_vec_pretty(reg).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        write_private(&path, &json)
    }

    /// Replaces the CA certificates trusted for the coordinator's server
    /// certificate (`ca.pem`).
    pub fn save_ca_pem(&self, ca_pem: &str) -> Result<(), StateError> {
        write_private(&self.path(CA_FILE), ca_pem.as_bytes())
    }

    /// The node's sealing key, made (owner-only) when there is none yet. A
    /// file that does not hold one is an error naming it: the key is never
    /// replaced behind the operator's back (secrets already sealed to it
    /// would no longer open).
    pub fn sealing_key(&self) -> Result<tether_proto::seal::NodeKey, StateError> {
        use tether_proto::seal::NodeKey;
        let path = self.path(SEALING_KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let bytes: Option<[u8; 32]> = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok());
                bytes
                    .map(NodeKey::from_bytes)
                    .ok_or_else(|| StateError::Corrupt {
                        path,
                        detail:
                            "not 64 hex digits (an X25519 key); remove it and restart the agent \
                             to make a new one (commands already sent with SecureString \
                             parameters then fail on this node)"
                                .into(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = NodeKey::generate().map_err(|e| StateError::Corrupt {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
                write_private(
                    &path,
                    format!("{}\n", hex::encode(key.to_bytes())).as_bytes(),
                )?;
                Ok(key)
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Replaces the client key and certificate as a pair, so that a crash
    /// at any moment leaves a key that matches its certificate: both are
    /// written whole beside the pair in use (`agent.key.next`,
    /// `agent.crt.next`), then renamed over it, the key first. A crash
    /// before the certificate's rename is finished by
    /// [`StateDir::finish_client_pair`] at the next start.
    pub fn save_client_pair(&self, key_pem: &str, cert_pem: &str) -> Result<(), StateError> {
        let (key_next, cert_next) = (self.path(KEY_NEXT_FILE), self.path(CERT_NEXT_FILE));
        // A stale certificate beside a new key would be taken for a pair.
        remove_if_there(&cert_next)?;
        write_private(&key_next, key_pem.as_bytes())?;
        write_private(&cert_next, cert_pem.as_bytes())?;
        self.finish_client_pair()
    }

    /// Completes a pair [`StateDir::save_client_pair`] left half-renamed:
    /// when `agent.crt.next` is there, both new files were written whole,
    /// so whatever of them is left is renamed into place; a lone
    /// `agent.key.next` (a crash before its certificate was written) is
    /// dropped and the pair in use stays.
    pub fn finish_client_pair(&self) -> Result<(), StateError> {
        let (key_next, cert_next) = (self.path(KEY_NEXT_FILE), self.path(CERT_NEXT_FILE));
        if !cert_next.exists() {
            return remove_if_there(&key_next);
        }
        if key_next.exists() {
            fs::rename(&key_next, self.path(KEY_FILE)).map_err(io(&key_next))?;
        }
        fs::rename(&cert_next, self.path(CERT_FILE)).map_err(io(&cert_next))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }

    /// The coordinator's release key, `None` before it sent one; an error
    /// naming the file when it does not hold one.
    pub fn release_key(&self) -> Result<Option<[u8; 32]>, StateError> {
        let path = self.path(RELEASE_KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .map(Some)
                .ok_or_else(|| StateError::Corrupt {
                    path,
                    detail: "not 64 hex digits (an Ed25519 public key); remove it: the agent \
                             learns the key again from the coordinator's next trust bundle"
                        .into(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Keeps `key` as the release key (owner-only); whether it changed.
    /// Anything but 32 bytes is refused.
    pub fn save_release_key(&self, key: &[u8]) -> Result<bool, StateError> {
        let path = self.path(RELEASE_KEY_FILE);
        let key: [u8; 32] = key.try_into().map_err(|_| StateError::Corrupt {
            path: path.clone(),
            detail: format!(
                "a release key of {} bytes (Ed25519 keys have 32)",
                key.len()
            ),
        })?;
        if self.release_key().ok().flatten() == Some(key) {
            return Ok(false);
        }
        write_private(&path, format!("{}\n", hex::encode(key)).as_bytes())?;
        Ok(true)
    }

    pub fn key_pem(&self) -> Result<String, StateError> {
        read_text(&self.path(KEY_FILE))
    }
    pub fn cert_pem(&self) -> Result<String, StateError> {
        read_text(&self.path(CERT_FILE))
    }
    pub fn ca_pem(&self) -> Result<String, StateError> {
        read_text(&self.path(CA_FILE))
    }

    /// What the daemon last saw: nothing before it first wrote it; an
    /// error naming `status.json` when it cannot be read or does not parse.
    pub fn load_status(&self) -> Result<RunStatus, StateError> {
        let path = self.path(STATUS_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RunStatus::default()),
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path,
            detail: e.to_string(),
        })
    }

    pub fn save_status(&self, s: &RunStatus) -> Result<(), StateError> {
        let path = self.path(STATUS_FILE);
        let json = serde_json::to_vec_pretty(s).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        write_private(&path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_registration_is_private_and_reloads() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let s = StateDir::new(tmp.path().join("state"));
        assert!(matches!(s.load(), Err(StateError::NotRegistered(_))));
        let reg = Registration {
            instance_id: "mi-0123456789abcdef0".into(),
            endpoint: "https://127.0.0.1:1".into(),
            activation_id: "a".into(),
            ca_pin: "sha256:00".into(),
            command_signing_key: "00".into(),
            registered_at_ms: 1,
            accepted_command_signing_keys: Vec::new(),
        };
        s.save(&reg, "key", "cert", "ca").unwrap();
        assert_eq!(s.load().unwrap(), reg);
        assert_eq!(reg.endpoints().unwrap(), vec!["https://127.0.0.1:1"]);
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(s.dir.clone()), 0o700);
        assert_eq!(mode(s.path(KEY_FILE)), 0o600);
        assert_eq!(mode(s.path(REGISTRATION_FILE)), 0o600);
    }

    #[test]
    fn a_renewal_cut_short_at_any_point_leaves_a_matching_pair() {
        let tmp = tempfile::tempdir().unwrap();
        let s = StateDir::new(tmp.path().to_path_buf());
        let pair = |s: &StateDir| (s.key_pem().unwrap(), s.cert_pem().unwrap());
        s.save_client_pair("key1", "cert1").unwrap();
        assert_eq!(pair(&s), ("key1".into(), "cert1".into()));
        assert!(!s.path(KEY_NEXT_FILE).exists() && !s.path(CERT_NEXT_FILE).exists());
        // Crash after the new key was written, before its certificate: the old pair stays.
        fs::write(s.path(KEY_NEXT_FILE), "key2").unwrap();
        s.finish_client_pair().unwrap();
        assert_eq!(pair(&s), ("key1".into(), "cert1".into()));
        assert!(!s.path(KEY_NEXT_FILE).exists());
        // Crash with both written, none renamed: the new pair is put in place.
        fs::write(s.path(KEY_NEXT_FILE), "key3").unwrap();
        fs::write(s.path(CERT_NEXT_FILE), "cert3").unwrap();
        s.finish_client_pair().unwrap();
        assert_eq!(pair(&s), ("key3".into(), "cert3".into()));
        // Crash after the key's rename, before the certificate's: finished.
        fs::write(s.path(KEY_FILE), "key4").unwrap();
        fs::write(s.path(CERT_NEXT_FILE), "cert4").unwrap();
        s.finish_client_pair().unwrap();
        assert_eq!(pair(&s), ("key4".into(), "cert4".into()));
    }

    #[test]
    fn a_state_directory_others_can_write_is_refused_naming_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let s = StateDir::new(tmp.path().join("state"));
        s.check(&[]).unwrap();
        s.save(
            &Registration {
                instance_id: "mi-0123456789abcdef0".into(),
                endpoint: "https://127.0.0.1:1".into(),
                activation_id: "a".into(),
                ca_pin: "sha256:00".into(),
                command_signing_key: "00".into(),
                registered_at_ms: 1,
                accepted_command_signing_keys: Vec::new(),
            },
            "key",
            "cert",
            "ca",
        )
        .unwrap();
        s.check(&[&tmp.path().join("agent.toml")]).unwrap();
        fs::set_permissions(&s.dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = s.check(&[]).unwrap_err().to_string();
        assert!(
            e.contains("refusing to trust the agent's files")
                && e.contains(&format!(
                    "{} is writable by",
                    s.dir.canonicalize().unwrap().display()
                ))
                && e.contains("mode 0777"),
            "{e}"
        );
        fs::set_permissions(&s.dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(s.path(KEY_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        let e = s.check(&[]).unwrap_err().to_string();
        assert!(e.contains("agent.key holds a private key"), "{e}");
    }

    #[test]
    fn a_policy_file_others_can_write_is_refused_naming_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let s = StateDir::new(tmp.path().join("state"));
        let policy = tmp.path().join("node-policy.toml");
        fs::write(&policy, "run_shell_script = false\n").unwrap();
        s.check(&[&tmp.path().join("agent.toml"), &policy]).unwrap();
        fs::set_permissions(&policy, fs::Permissions::from_mode(0o666)).unwrap();
        let e = s
            .check(&[&tmp.path().join("agent.toml"), &policy])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "{} is writable by",
                policy.canonicalize().unwrap().display()
            )) && e.contains("mode 0666"),
            "{e}"
        );
    }

    #[test]
    fn the_release_key_is_kept_owner_only_and_damage_is_named() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let s = StateDir::new(tmp.path().join("state"));
        ensure_dir(&s.dir).unwrap();
        assert_eq!(s.release_key().unwrap(), None);
        assert!(s.save_release_key(&[7; 32]).unwrap());
        assert!(!s.save_release_key(&[7; 32]).unwrap(), "unchanged");
        assert_eq!(s.release_key().unwrap(), Some([7; 32]));
        let mode = fs::metadata(s.path(RELEASE_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(s.save_release_key(&[8; 32]).unwrap());
        assert!(s.save_release_key(&[1; 31]).is_err());
        assert_eq!(s.release_key().unwrap(), Some([8; 32]));
        fs::write(s.path(RELEASE_KEY_FILE), "zz").unwrap();
        let e = s.release_key().unwrap_err().to_string();
        assert!(
            e.contains(RELEASE_KEY_FILE) && e.contains("64 hex digits"),
            "{e}"
        );
    }

    #[test]
    fn status_is_empty_before_the_daemon_writes_it_and_damage_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let s = StateDir::new(tmp.path().to_path_buf());
        assert_eq!(s.load_status().unwrap(), RunStatus::default());
        let st = RunStatus {
            last_poll_ms: Some(5),
            pid: Some(7),
            ..RunStatus::default()
        };
        s.save_status(&st).unwrap();
        assert_eq!(s.load_status().unwrap(), st);
        fs::write(s.path(STATUS_FILE), b"{\"LastPollMs\": \"soon\"}").unwrap();
        let e = s.load_status().unwrap_err().to_string();
        assert!(e.contains(STATUS_FILE) && e.contains("not valid"), "{e}");
    }

    #[test]
    fn a_registration_written_before_endpoint_lists_loads_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let s = StateDir::new(tmp.path().to_path_buf());
        // registration.json exactly as agents before replicas wrote it.
        let old = r#"{
  "InstanceId": "mi-0123456789abcdef0",
  "Endpoint": "https://coord.example:8443",
  "ActivationId": "5e0c1f4a-0000-4000-8000-000000000000",
  "CaPin": "sha256:00",
  "CommandSigningKey": "00",
  "RegisteredAtMs": 1700000000000
}"#;
        fs::write(s.path(REGISTRATION_FILE), old).unwrap();
        let reg = s.load().unwrap();
        assert_eq!(reg.endpoint, "https://coord.example:8443");
        assert_eq!(reg.endpoints().unwrap(), vec!["https://coord.example:8443"]);

        let reg = Registration {
            endpoint: "https://a:1,https://b:2".into(),
            ..reg
        };
        s.save(&reg, "key", "cert", "ca").unwrap();
        assert_eq!(
            s.load().unwrap().endpoints().unwrap(),
            vec!["https://a:1", "https://b:2"]
        );
    }
}
