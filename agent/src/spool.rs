//! The agent's spool: one directory per received command, so that nothing is
//! lost across a crash, an agent restart or a coordinator outage.
//!
//! `spool/<command-id>/` holds the verified envelope and its nonce (written
//! before anything runs), one step directory per document step (owned by
//! [`crate::exec`]), the final report once every step is over, and a
//! `reported` marker once the coordinator has stored it.
//!
//! A file or directory that is absent is a stage not reached yet; one that
//! cannot be read is an error naming it, never taken for absent.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use prost::Message;
use tether_proto as pb;

use crate::state::{StateError, write_private};

const ENVELOPE_FILE: &str = "envelope.pb";
const NONCE_FILE: &str = "nonce";
const REPORT_FILE: &str = "report.pb";
const REPORTED_FILE: &str = "reported";
const REBOOT_FILE: &str = "reboot";
const STEPS_DIR: &str = "steps";
const CANCEL_FILE: &str = "cancel";

use crate::state::io;

/// `Ok(None)` when `path` does not exist, the error naming it when it cannot
/// be read.
fn absent_or<T>(path: &Path, read: std::io::Result<T>) -> Result<Option<T>, StateError> {
    match read {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// The spool directory.
#[derive(Clone, Debug)]
pub struct Spool {
    root: PathBuf,
}

/// Where one command stands in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Received; steps running or still to run.
    Running,
    /// Finished; the report waits to be stored by the coordinator.
    Finished,
    /// The coordinator has stored the report.
    Reported,
}

impl Spool {
    pub fn new(root: PathBuf) -> Result<Self, StateError> {
        crate::state::ensure_dir(&root)?;
        Ok(Spool { root })
    }

    pub fn dir(&self, command_id: &str) -> PathBuf {
        self.root.join(command_id)
    }

    pub fn step_dir(&self, command_id: &str, index: usize) -> PathBuf {
        self.dir(command_id).join(STEPS_DIR).join(index.to_string())
    }

    /// Whether the command is spooled here (received and verified).
    pub fn has(&self, command_id: &str) -> bool {
        self.dir(command_id).join(NONCE_FILE).exists()
    }

    /// Records that the coordinator cancelled the command: steps not started
    /// yet never start, also after an agent restart.
    pub fn mark_cancelled(&self, command_id: &str) -> Result<(), StateError> {
        write_private(&self.dir(command_id).join(CANCEL_FILE), b"")
    }

    pub fn is_cancelled(&self, command_id: &str) -> bool {
        self.dir(command_id).join(CANCEL_FILE).exists()
    }

    /// The step directories of a command that exist so far.
    pub fn step_dirs(&self, command_id: &str) -> Result<Vec<PathBuf>, StateError> {
        let steps = self.dir(command_id).join(STEPS_DIR);
        let Some(rd) = absent_or(&steps, fs::read_dir(&steps))? else {
            return Ok(Vec::new());
        };
        rd.map(|e| e.map(|e| e.path()).map_err(io(&steps)))
            .collect()
    }

    /// The nonce of the envelope a command arrived in, if it is spooled.
    pub fn nonce(&self, command_id: &str) -> Result<Option<String>, StateError> {
        let path = self.dir(command_id).join(NONCE_FILE);
        absent_or(&path, fs::read_to_string(&path))
    }

    /// Records a verified envelope before anything runs.
    pub fn accept(
        &self,
        cmd: &pb::SignedCommand,
        env: &pb::CommandEnvelope,
    ) -> Result<(), StateError> {
        let dir = self.dir(&cmd.command_id);
        crate::state::ensure_dir(&dir)?;
        write_private(&dir.join(ENVELOPE_FILE), &env.encode_to_vec())?;
        write_private(&dir.join(NONCE_FILE), cmd.nonce.as_bytes())
    }

    /// Removes what [`Spool::accept`] left of a command it could not
    /// record whole (a full disk), so that a restart never takes the
    /// half-written directory for a received command.
    pub fn discard(&self, command_id: &str) -> Result<(), StateError> {
        let dir = self.dir(command_id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }

    /// The signed command as accepted.
    pub fn command(&self, command_id: &str) -> Result<pb::SignedCommand, StateError> {
        let path = self.dir(command_id).join(ENVELOPE_FILE);
        let bytes = fs::read(&path).map_err(io(&path))?;
        let env =
            pb::CommandEnvelope::decode(bytes.as_slice()).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        pb::SignedCommand::decode(env.payload.as_slice()).map_err(|e| StateError::Corrupt {
            path,
            detail: e.to_string(),
        })
    }

    pub fn stage(&self, command_id: &str) -> Stage {
        let dir = self.dir(command_id);
        if dir.join(REPORTED_FILE).exists() {
            Stage::Reported
        } else if dir.join(REPORT_FILE).exists() {
            Stage::Finished
        } else {
            Stage::Running
        }
    }

    pub fn save_report(&self, r: &pb::InvocationReport, reboot: bool) -> Result<(), StateError> {
        let dir = self.dir(&r.command_id);
        if reboot {
            write_private(&dir.join(REBOOT_FILE), b"")?;
        }
        write_private(&dir.join(REPORT_FILE), &r.encode_to_vec())
    }

    pub fn report(&self, command_id: &str) -> Result<pb::InvocationReport, StateError> {
        let path = self.dir(command_id).join(REPORT_FILE);
        let bytes = fs::read(&path).map_err(io(&path))?;
        pb::InvocationReport::decode(bytes.as_slice()).map_err(|e| StateError::Corrupt {
            path,
            detail: e.to_string(),
        })
    }

    /// Marks a report stored; returns whether the command asked for a reboot.
    pub fn mark_reported(&self, command_id: &str) -> Result<bool, StateError> {
        let dir = self.dir(command_id);
        write_private(&dir.join(REPORTED_FILE), b"")?;
        let reboot = dir.join(REBOOT_FILE);
        Ok(absent_or(&reboot, fs::remove_file(&reboot))?.is_some())
    }

    /// Queues a stored report to be sent again (the coordinator asked for the command anew).
    pub fn unmark_reported(&self, command_id: &str) -> Result<(), StateError> {
        let marker = self.dir(command_id).join(REPORTED_FILE);
        match fs::remove_file(&marker) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&marker)(e)),
        }
    }

    /// Every spooled command ID (directories named like command IDs only).
    pub fn command_ids(&self) -> Result<Vec<String>, StateError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io(&self.root))? {
            let name = entry.map_err(io(&self.root))?.file_name();
            if let Some(name) = name.to_str()
                && crate::envelope::is_command_id(name)
            {
                ids.push(name.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Commands not yet reported, in a stable order.
    pub fn unfinished(&self) -> Result<Vec<(String, Stage)>, StateError> {
        Ok(self
            .command_ids()?
            .into_iter()
            .map(|id| {
                let s = self.stage(&id);
                (id, s)
            })
            .filter(|(_, s)| *s != Stage::Reported)
            .collect())
    }

    /// Removes reported commands older than `keep`, so the spool (and the
    /// inode count) stays bounded.
    pub fn prune(&self, keep: Duration) -> Result<usize, StateError> {
        let mut removed = 0;
        for id in self.command_ids()? {
            let marker = self.dir(&id).join(REPORTED_FILE);
            let old = fs::metadata(&marker)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > keep);
            if old && fs::remove_dir_all(self.dir(&id)).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMD: &str = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";

    #[test]
    fn a_command_moves_through_its_stages_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().join("spool")).unwrap();
        let cmd = pb::SignedCommand {
            command_id: CMD.into(),
            nonce: "abc".into(),
            ..Default::default()
        };
        let env = pb::CommandEnvelope {
            payload: cmd.encode_to_vec(),
            signature: vec![1],
        };
        assert_eq!(spool.nonce(CMD).unwrap(), None);
        assert!(spool.step_dirs(CMD).unwrap().is_empty());
        spool.accept(&cmd, &env).unwrap();
        assert_eq!(spool.nonce(CMD).unwrap().as_deref(), Some("abc"));
        assert_eq!(spool.command(CMD).unwrap(), cmd);
        assert_eq!(
            spool.unfinished().unwrap(),
            vec![(CMD.to_string(), Stage::Running)]
        );
        let report = pb::InvocationReport {
            command_id: CMD.into(),
            response_code: 3,
            ..Default::default()
        };
        spool.save_report(&report, true).unwrap();
        assert_eq!(spool.stage(CMD), Stage::Finished);
        assert_eq!(spool.report(CMD).unwrap(), report);
        assert!(spool.mark_reported(CMD).unwrap());
        assert!(
            !spool.mark_reported(CMD).unwrap(),
            "the reboot is asked once"
        );
        assert!(spool.unfinished().unwrap().is_empty());
        assert_eq!(spool.prune(Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(spool.prune(Duration::ZERO).unwrap(), 1);
        assert!(spool.command_ids().unwrap().is_empty());
    }

    #[test]
    fn what_cannot_be_read_is_an_error_naming_it_not_an_absence() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().join("spool")).unwrap();
        // A nonce that is a directory cannot be read: the command is not
        // taken for unseen (it would run again).
        std::fs::create_dir_all(spool.dir(CMD).join(NONCE_FILE)).unwrap();
        let e = spool.nonce(CMD).unwrap_err().to_string();
        assert!(e.contains(NONCE_FILE), "{e}");
        // Steps that are a file, not a directory.
        std::fs::write(spool.dir(CMD).join(STEPS_DIR), b"").unwrap();
        let e = spool.step_dirs(CMD).unwrap_err().to_string();
        assert!(e.contains(STEPS_DIR), "{e}");
        // A spool that is gone is not an empty one.
        std::fs::remove_dir_all(tmp.path().join("spool")).unwrap();
        let e = spool.unfinished().unwrap_err().to_string();
        assert!(e.contains("spool"), "{e}");
    }
}
