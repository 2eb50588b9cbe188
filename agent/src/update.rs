//! Signed self-update: the `tether:updateAgent` step (`Tether-UpdateAgent`).
//!
//! The agent sets the step up like any other ([`crate::exec`]): a detached
//! supervisor runs it, so it outlives the agent's restart. Its program is
//! the agent binary itself in a hidden mode, `tether-agent __update STEP_DIR`
//! ([`update_main`]), reading what to do from `update.json` in the step
//! directory ([`UpdateRequest`]). That worker:
//!
//! 1. refuses when a package manager owns the binary ([`package_owner`]),
//!    naming what to run instead;
//! 2. asks the coordinator for the release's signed manifest (`GetRelease`)
//!    and verifies it with the release key the agent learnt at registration
//!    or from a signed trust bundle ([`verify_manifest`]) — no key, no
//!    update; checks the platform and refuses a downgrade unless
//!    `allowDowngrade` is `true` (the running version already: success,
//!    nothing done);
//! 3. downloads the binary over the agent's mutual-TLS connection into the
//!    state directory, resuming where a broken download stopped, retrying
//!    with backoff (a slow link is not a failure);
//! 4. writes it beside the running binary (mode 0755, synced), checks its
//!    size and SHA-256 against the manifest there, and runs its self-check
//!    (`NEW --version` must print the manifest's version) — all before
//!    anything is swapped;
//! 5. keeps the running binary as `NAME.previous` (a hard link), renames the
//!    new one over `NAME` (atomic), and restarts the agent through whatever
//!    runs it ([`Restart`]);
//! 6. waits up to the health deadline for the new agent to report in: it
//!    writes `healthy.json` in the state directory (its version and pid) once
//!    it has verified its state and completed a poll with the coordinator.
//!    If it does not — it crashed, cannot reach the coordinator, or failed
//!    its self-check — the previous binary is renamed back, the agent is
//!    restarted again, and the step ends Failed with the reason.
//!
//! From the swap on (`swapping` in the step directory) a cancellation is not
//! passed to the step: it always ends with a working agent. The step's own
//! timeout bounds the download only; the swap is bounded by the health
//! deadline. Every stage goes to agent.log and to the step's output.

use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tether_proto as pb;
use tether_util::now_ms;
use tracing::{error, info, warn};

use crate::config::LogSettings;
use crate::state::{StateDir, StateError};
use crate::version;

/// The hidden subcommand of the update worker: `tether-agent __update STEP_DIR`.
pub const UPDATE_SUBCOMMAND: &str = "__update";
/// What the worker is to do, written by the agent into the step directory.
pub const REQUEST_FILE: &str = "update.json";
/// Created in the step directory when the swap starts: from then on the
/// step is not cancelled (it restores the previous agent itself if need be).
pub const SWAPPING_FILE: &str = "swapping";
/// Written by the agent in its state directory once it has verified its
/// state and completed a poll: what the worker waits for.
pub const HEALTHY_FILE: &str = "healthy.json";
/// How the running agent was started (for a restart by re-execution).
pub const LAUNCH_FILE: &str = "launch.json";
/// Locked by the update worker for its lifetime (in the state directory).
pub const LOCK_FILE: &str = "update.lock";
/// Where downloads are kept (in the state directory) until they are whole.
pub const DOWNLOAD_DIR: &str = "updates";
/// Default time the new agent has to report in.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the self-check (`NEW --version`) may take.
const SELF_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a restart command may take.
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);
/// Download attempts in a row that end short without adding a byte before
/// the download is given up (a coordinator that serves less than it signed).
const MAX_SHORT_ATTEMPTS: u32 = 3;
/// The file name of the installed binary's previous version (beside it).
pub const PREVIOUS_SUFFIX: &str = ".previous";

/// Why an update was refused or failed; the step's error says it.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(
        "{path} belongs to the {manager} package {package}: it is not updated in place \
         (the package database would no longer match); update it through the package \
         manager instead: {advice}"
    )]
    Packaged {
        path: PathBuf,
        manager: &'static str,
        package: String,
        advice: &'static str,
    },
    #[error(
        "this agent holds no release key (the coordinator has not sent one yet: it arrives at \
         registration or with the next trust bundle); refusing to install an unverifiable release"
    )]
    NoReleaseKey,
    #[error("the release manifest is not signed by this coordinator's release key")]
    BadSignature,
    #[error("the release manifest does not decode: {0}")]
    BadManifest(String),
    #[error("the coordinator offered version {got:?} when {want:?} was asked for")]
    WrongVersion { want: String, got: String },
    #[error("release {version} is for platform {got:?}, this node is {want:?}")]
    WrongPlatform {
        version: String,
        want: String,
        got: String,
    },
    #[error(
        "release {target} is older than the running {running}; send allowDowngrade=true to install it"
    )]
    Downgrade { running: String, target: String },
    #[error("no release: {0}")]
    NoRelease(String),
    #[error("the download of {version} failed: {detail}")]
    Download { version: String, detail: String },
    #[error(
        "the downloaded binary is {got} bytes, the signed manifest says {want}; nothing was swapped"
    )]
    WrongSize { want: u64, got: u64 },
    #[error(
        "the downloaded binary's SHA-256 is {got}, the signed manifest says {want}; nothing was swapped"
    )]
    WrongDigest { want: String, got: String },
    #[error("the new binary failed its self-check ({detail}); nothing was swapped")]
    SelfCheck { detail: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Other(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UpdateError + '_ {
    move |source| UpdateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How the agent is restarted after its binary was swapped: the configured
/// command, the init system that runs it, or — run by hand — re-executing
/// itself (the worker sends it SIGUSR1; see [`LAUNCH_FILE`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "How")]
pub enum Restart {
    /// `sh -c COMMAND` (`--restart-command`, `TETHER_AGENT_RESTART_COMMAND`).
    Command { command: String },
    /// `systemctl restart UNIT`.
    Systemd { unit: String },
    /// `initctl restart JOB`.
    Upstart { job: String },
    /// `SCRIPT restart` (the SysV init script that started the agent).
    SysV { script: PathBuf },
    /// Run by hand: the agent re-executes itself.
    Exec,
}

impl Restart {
    fn describe(&self) -> String {
        match self {
            Restart::Command { command } => format!("the restart command `{command}`"),
            Restart::Systemd { unit } => format!("systemd (systemctl restart {unit})"),
            Restart::Upstart { job } => format!("upstart (initctl restart {job})"),
            Restart::SysV { script } => format!("SysV init ({} restart)", script.display()),
            Restart::Exec => "re-executing the agent (it runs by hand)".into(),
        }
    }
}

/// The systemd unit of this process, from its cgroup (`…/NAME.service`).
fn systemd_unit(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|l| {
        let path = l.rsplit(':').next()?;
        let last = path.trim_end_matches('/').rsplit('/').next()?;
        last.ends_with(".service").then(|| last.to_string())
    })
}

/// How this agent process was started, decided in the agent (its
/// environment says): a configured command wins; then systemd (the
/// service's cgroup), upstart (`UPSTART_JOB`), SysV (the init script sets
/// `TETHER_AGENT_INIT_SCRIPT`, or the agent is a daemon of init with
/// `/etc/init.d/tether-agent` present); else it runs by hand.
pub fn detect_restart(command: Option<&str>) -> Restart {
    if let Some(c) = command.map(str::trim).filter(|c| !c.is_empty()) {
        return Restart::Command {
            command: c.to_string(),
        };
    }
    // Only the agent's own unit or job: an agent started by hand from
    // inside another service must not restart that service.
    if std::env::var_os("INVOCATION_ID").is_some()
        && let Some(unit) = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|c| systemd_unit(&c))
            .filter(|u| u.contains("tether-agent"))
    {
        return Restart::Systemd { unit };
    }
    if let Some(job) = std::env::var("UPSTART_JOB")
        .ok()
        .filter(|j| j.contains("tether-agent"))
    {
        return Restart::Upstart { job };
    }
    if let Some(script) = std::env::var_os("TETHER_AGENT_INIT_SCRIPT").filter(|s| !s.is_empty()) {
        return Restart::SysV {
            script: PathBuf::from(script),
        };
    }
    let sysv = Path::new("/etc/init.d/tether-agent");
    if nix::unistd::getppid().as_raw() == 1 && sysv.exists() {
        return Restart::SysV {
            script: sysv.to_path_buf(),
        };
    }
    Restart::Exec
}

/// What the update step is to do, written by the agent to [`REQUEST_FILE`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateRequest {
    /// The version to install; empty = the fleet's target.
    pub version: String,
    pub allow_downgrade: bool,
    pub state_dir: PathBuf,
    /// The installed binary that is replaced.
    pub agent_exe: PathBuf,
    pub health_timeout_secs: u64,
    /// The step's executionTimeout (0: none), for the download.
    pub timeout_seconds: u32,
    pub restart: Restart,
    /// The agent's log settings, so the stages land in agent.log.
    pub log: Option<LogSettings>,
}

impl UpdateRequest {
    /// Reads the step's inputs: `version` (empty or a version) and
    /// `allowDowngrade` (`true` or `false`).
    pub fn inputs(
        inputs: &std::collections::BTreeMap<String, String>,
    ) -> Result<(String, bool), String> {
        let version = inputs
            .get("version")
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        if !version.is_empty() && !version::is_valid(&version) {
            return Err(format!(
                "tether:updateAgent: version {version:?} is not a release version \
                 (1-64 of letters, digits and .+_-)"
            ));
        }
        let allow = match inputs.get("allowDowngrade").map(String::as_str) {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(format!(
                    "tether:updateAgent: allowDowngrade is {other:?}; it must be true or false"
                ));
            }
        };
        Ok((version, allow))
    }

    pub fn write(&self, dir: &Path) -> Result<(), UpdateError> {
        let path = dir.join(REQUEST_FILE);
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| UpdateError::Other(e.to_string()))?;
        tether_util::fs::write_private(&path, &json).map_err(io_err(&path))
    }

    pub fn read(dir: &Path) -> Result<Self, UpdateError> {
        let path = dir.join(REQUEST_FILE);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| UpdateError::Other(format!("{}: {e}", path.display())))
    }
}

/// Whether the update step in `dir` is past the point where it may be
/// killed (the swap started).
pub fn past_point_of_no_return(dir: &Path) -> bool {
    dir.join(REQUEST_FILE).exists() && dir.join(SWAPPING_FILE).exists()
}

/// What the new agent writes once it is up: [`HEALTHY_FILE`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthy {
    pub version: String,
    pub pid: u32,
    pub at_ms: i64,
}

/// Records that this agent verified its state and completed a poll.
pub fn write_healthy(state: &StateDir) -> Result<(), StateError> {
    let h = Healthy {
        version: version::current().to_string(),
        pid: std::process::id(),
        at_ms: now_ms(),
    };
    let json = serde_json::to_vec(&h).map_err(|e| StateError::Corrupt {
        path: state.path(HEALTHY_FILE),
        detail: e.to_string(),
    })?;
    crate::state::write_private(&state.path(HEALTHY_FILE), &json)
}

fn read_healthy(state: &Path) -> Option<Healthy> {
    let bytes = std::fs::read(state.join(HEALTHY_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// How the running agent was started: written at every start, read by the
/// worker to re-execute it (or start it again if it died).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Launch {
    pub pid: u32,
    pub exe: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
}

impl Launch {
    /// This process: `exe` (recorded at start: after a swap, /proc/self/exe
    /// names the replaced file) and its arguments.
    pub fn this(exe: &Path) -> Launch {
        Launch {
            pid: std::process::id(),
            exe: exe.to_path_buf(),
            args: std::env::args_os()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        }
    }

    pub fn save(&self, state: &StateDir) -> Result<(), StateError> {
        let json = serde_json::to_vec(self).map_err(|e| StateError::Corrupt {
            path: state.path(LAUNCH_FILE),
            detail: e.to_string(),
        })?;
        crate::state::write_private(&state.path(LAUNCH_FILE), &json)
    }

    fn load(state: &Path) -> Result<Launch, UpdateError> {
        let path = state.join(LAUNCH_FILE);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| UpdateError::Other(format!("{}: {e}", path.display())))
    }

    /// Re-executes this process as recorded (only returns on failure).
    pub fn reexec(&self) -> io::Error {
        use std::os::unix::process::CommandExt as _;
        std::process::Command::new(&self.exe)
            .args(&self.args)
            .exec()
    }
}

/// The package that owns `path` per dpkg or rpm, if one does: `(manager,
/// package)`.
pub fn package_owner(path: &Path) -> Option<(&'static str, String)> {
    let p = path.to_string_lossy();
    let ask = |tool: &str, args: &[&str]| {
        let out = std::process::Command::new(tool)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    if let Some(line) = ask("dpkg-query", &["-S", &p]) {
        // "tether-agent: /usr/bin/tether-agent"
        let pkg = line.split(':').next().unwrap_or(&line).trim().to_string();
        return Some(("dpkg", pkg));
    }
    if let Some(pkg) = ask("rpm", &["-qf", "--qf", "%{NAME}\\n", &p]) {
        return Some(("rpm", pkg));
    }
    None
}

fn refuse_if_packaged(exe: &Path) -> Result<(), UpdateError> {
    // The package owns the path it installed, whatever links lead to it.
    let canonical = exe.canonicalize().unwrap_or_else(|_| exe.to_path_buf());
    for p in [exe, canonical.as_path()] {
        if let Some((manager, package)) = package_owner(p) {
            return Err(UpdateError::Packaged {
                path: p.to_path_buf(),
                manager,
                package,
                advice: if manager == "dpkg" {
                    "apt-get install ./tether-agent_VERSION_ARCH.deb (or from your repository)"
                } else {
                    "dnf install ./tether-agent-VERSION.ARCH.rpm (or yum/zypper, or from your repository)"
                },
            });
        }
    }
    Ok(())
}

/// The manifest of `resp`, verified: signed by `release_key` over
/// [`pb::RELEASE_SIGNING_CONTEXT`] ++ manifest, for `platform`, and the
/// version asked for (when one was).
pub fn verify_manifest(
    resp: &pb::GetReleaseResponse,
    release_key: &[u8],
    want_version: &str,
    platform: &str,
) -> Result<pb::ReleaseManifest, UpdateError> {
    use prost::Message as _;
    let mut signed = pb::RELEASE_SIGNING_CONTEXT.to_vec();
    signed.extend_from_slice(&resp.manifest);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, release_key)
        .verify(&signed, &resp.signature)
        .map_err(|_| UpdateError::BadSignature)?;
    let m = pb::ReleaseManifest::decode(resp.manifest.as_slice())
        .map_err(|e| UpdateError::BadManifest(e.to_string()))?;
    if !version::is_valid(&m.version) {
        return Err(UpdateError::BadManifest(format!(
            "version {:?} is not a release version",
            m.version
        )));
    }
    if m.sha256.len() != 32 {
        return Err(UpdateError::BadManifest(format!(
            "its SHA-256 is {} bytes",
            m.sha256.len()
        )));
    }
    if !want_version.is_empty() && m.version != want_version {
        return Err(UpdateError::WrongVersion {
            want: want_version.to_string(),
            got: m.version,
        });
    }
    if m.platform != platform {
        return Err(UpdateError::WrongPlatform {
            version: m.version,
            want: platform.to_string(),
            got: m.platform,
        });
    }
    Ok(m)
}

/// What to do with a verified release while running `running`.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    Install,
    AlreadyThere,
}

pub fn plan(
    running: &str,
    m: &pb::ReleaseManifest,
    allow_downgrade: bool,
) -> Result<Plan, UpdateError> {
    match version::compare(&m.version, running) {
        std::cmp::Ordering::Equal if m.version == running => Ok(Plan::AlreadyThere),
        std::cmp::Ordering::Less | std::cmp::Ordering::Equal if !allow_downgrade => {
            Err(UpdateError::Downgrade {
                running: running.to_string(),
                target: m.version.clone(),
            })
        }
        _ => Ok(Plan::Install),
    }
}

/// Size and SHA-256 of a file.
pub fn digest_file(path: &Path) -> Result<(u64, [u8; 32]), UpdateError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf).map_err(io_err(path))?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
    Ok((n, h.finalize().into()))
}

/// Checks `path` against the manifest's size and SHA-256.
pub fn check_file(path: &Path, m: &pb::ReleaseManifest) -> Result<(), UpdateError> {
    let (size, sha) = digest_file(path)?;
    if size != m.size {
        return Err(UpdateError::WrongSize {
            want: m.size,
            got: size,
        });
    }
    if sha.as_slice() != m.sha256.as_slice() {
        return Err(UpdateError::WrongDigest {
            want: hex::encode(&m.sha256),
            got: hex::encode(sha),
        });
    }
    Ok(())
}

/// The files of a swap, all in the installed binary's directory: the binary,
/// the new one being staged (`.NAME.new`), and the previous one kept
/// (`NAME.previous`).
#[derive(Clone, Debug)]
pub struct Slots {
    pub exe: PathBuf,
    pub staged: PathBuf,
    pub previous: PathBuf,
}

fn sync_dir(dir: &Path) -> Result<(), UpdateError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl Slots {
    pub fn for_exe(exe: &Path) -> Result<Slots, UpdateError> {
        let name = exe
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| UpdateError::Other(format!("{} names no file", exe.display())))?;
        let dir = exe.parent().unwrap_or(Path::new("/"));
        Ok(Slots {
            exe: exe.to_path_buf(),
            staged: dir.join(format!(".{name}.new")),
            previous: dir.join(format!("{name}{PREVIOUS_SUFFIX}")),
        })
    }

    fn dir(&self) -> &Path {
        self.exe.parent().unwrap_or(Path::new("/"))
    }

    /// Copies `src` to the staged name: mode 0755, synced.
    pub fn stage(&self, src: &Path) -> Result<(), UpdateError> {
        let _ = std::fs::remove_file(&self.staged);
        let mut from = std::fs::File::open(src).map_err(io_err(src))?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&self.staged)
            .map_err(io_err(&self.staged))?;
        io::copy(&mut from, &mut to).map_err(io_err(&self.staged))?;
        // The mode asked for at creation is narrowed by the umask.
        to.set_permissions(std::fs::Permissions::from_mode(0o755))
            .map_err(io_err(&self.staged))?;
        to.sync_all().map_err(io_err(&self.staged))?;
        Ok(())
    }

    /// Keeps the installed binary as `previous` and renames the staged one
    /// over it (atomic: the path always names a whole binary).
    pub fn swap(&self) -> Result<(), UpdateError> {
        let _ = std::fs::remove_file(&self.previous);
        if std::fs::hard_link(&self.exe, &self.previous).is_err() {
            // A file system without hard links: a copy, synced.
            std::fs::copy(&self.exe, &self.previous).map_err(io_err(&self.previous))?;
            std::fs::File::open(&self.previous)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&self.previous))?;
        }
        std::fs::rename(&self.staged, &self.exe).map_err(io_err(&self.exe))?;
        sync_dir(self.dir())
    }

    /// Puts the previous binary back (atomic), keeping the rejected one
    /// nowhere.
    pub fn roll_back(&self) -> Result<(), UpdateError> {
        std::fs::rename(&self.previous, &self.exe).map_err(io_err(&self.exe))?;
        sync_dir(self.dir())
    }

    /// Removes a staged binary that was never swapped in.
    pub fn discard_staged(&self) {
        let _ = std::fs::remove_file(&self.staged);
    }
}

/// Runs `exe --version` and checks it prints `tether-agent VERSION`.
pub async fn self_check(exe: &Path, want: &str) -> Result<(), UpdateError> {
    let run = tokio::process::Command::new(exe)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(SELF_CHECK_TIMEOUT, run).await {
        Err(_) => {
            return Err(UpdateError::SelfCheck {
                detail: format!(
                    "`--version` did not answer within {} s",
                    SELF_CHECK_TIMEOUT.as_secs()
                ),
            });
        }
        Ok(Err(e)) => {
            return Err(UpdateError::SelfCheck {
                detail: format!("it could not be run: {e}"),
            });
        }
        Ok(Ok(out)) => out,
    };
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || printed != format!("tether-agent {want}") {
        return Err(UpdateError::SelfCheck {
            detail: format!(
                "`--version` exited {} printing {printed:?}, not \"tether-agent {want}\"",
                out.status
            ),
        });
    }
    Ok(())
}

/// The step's stdout: each stage, as it happens, and in agent.log.
struct Progress;

impl Progress {
    fn say(&self, line: &str) {
        info!(stage = "update", "{line}");
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The coordinator, over the agent's own mutual-TLS channels (its key,
/// certificate and pinned CA), starting on the agent's home endpoint and
/// moving to the next replica when one stops answering (as the daemon does).
struct Coordinator {
    channels: Vec<tonic::transport::Channel>,
    rotation: crate::endpoints::Rotation,
}

impl Coordinator {
    fn new(state: &StateDir) -> Result<Coordinator, UpdateError> {
        let reg = state.load()?;
        let endpoints = reg
            .endpoints()
            .map_err(|e| UpdateError::Other(e.to_string()))?;
        let tls = |e: crate::tls::TlsError| UpdateError::Other(e.to_string());
        let cfg = crate::tls::mtls_config(&state.ca_pem()?, &state.cert_pem()?, &state.key_pem()?)
            .map_err(tls)?;
        let channels = endpoints
            .iter()
            .map(|e| crate::tls::channel(e, cfg.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(tls)?;
        if channels.is_empty() {
            return Err(UpdateError::Other(
                "registration.json names no coordinator endpoint".into(),
            ));
        }
        let order = crate::endpoints::failover_order(&reg.instance_id, endpoints.len());
        Ok(Coordinator {
            channels,
            rotation: crate::endpoints::Rotation::new(order),
        })
    }

    fn client(
        &self,
    ) -> (
        usize,
        pb::agent_client::AgentClient<tonic::transport::Channel>,
    ) {
        let used = self.rotation.current();
        let channel = self.channels[used % self.channels.len()].clone();
        (
            used,
            pb::agent_client::AgentClient::new(channel)
                .max_decoding_message_size(pb::MAX_MESSAGE_BYTES),
        )
    }

    /// A call on endpoint `used` failed: on a transport failure, the next one.
    fn failed(&self, used: usize, status: &tonic::Status) {
        if crate::tls::is_transport_failure(status) {
            self.rotation.failed(used, now_ms());
        }
    }
}

/// Whether a failed call is worth trying again (the network, a replica
/// going away), rather than the coordinator's answer.
fn transient(status: &tonic::Status) -> bool {
    crate::tls::is_transport_failure(status)
        || matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::ResourceExhausted
                | tonic::Code::Aborted
                | tonic::Code::Unknown
        )
}

fn backoff() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder as _;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

async fn get_release(
    c: &Coordinator,
    version: &str,
    platform: &str,
    deadline: Option<Instant>,
) -> Result<pb::GetReleaseResponse, UpdateError> {
    let mut waits = backoff();
    loop {
        let (used, mut client) = c.client();
        let req = pb::GetReleaseRequest {
            version: version.to_string(),
            platform: platform.to_string(),
        };
        match client.get_release(req).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if transient(&s) && deadline.is_none_or(|d| Instant::now() < d) => {
                c.failed(used, &s);
                let wait = waits.next().unwrap_or(Duration::from_secs(30));
                warn!(error = %crate::tls::error_chain(&s), retry_in_ms = wait.as_millis() as u64, "release manifest not fetched; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(s) => {
                return Err(UpdateError::NoRelease(format!(
                    "{} ({:?})",
                    s.message(),
                    s.code()
                )));
            }
        }
    }
}

/// Downloads the release into `part`, from what it already holds, until it
/// holds `m.size` bytes. Broken streams are resumed with backoff; a stream
/// that ends short without progress [`MAX_SHORT_ATTEMPTS`] times, or that
/// goes past the size, fails.
async fn download(
    c: &Coordinator,
    m: &pb::ReleaseManifest,
    part: &Path,
    deadline: Option<Instant>,
    say: &Progress,
) -> Result<(), UpdateError> {
    let fail = |detail: String| UpdateError::Download {
        version: m.version.clone(),
        detail,
    };
    let mut waits = backoff();
    let mut short = 0u32;
    loop {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(part)
            .map_err(io_err(part))?;
        let start = file.metadata().map_err(io_err(part))?.len();
        if start > m.size {
            drop(file);
            std::fs::remove_file(part).map_err(io_err(part))?;
            return Err(fail(format!(
                "the partial download held {start} bytes, more than the release's {}; removed it",
                m.size
            )));
        }
        if start == m.size {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(fail(format!(
                "the step's executionTimeout passed with {start} of {} bytes downloaded",
                m.size
            )));
        }
        if start > 0 {
            say.say(&format!(
                "resuming the download of {} at byte {start} of {}",
                m.version, m.size
            ));
        }
        let (used, mut client) = c.client();
        let req = pb::DownloadReleaseRequest {
            version: m.version.clone(),
            platform: m.platform.clone(),
            offset: start,
        };
        let mut at = start;
        let outcome: Result<(), Broke> = async {
            let mut stream = client
                .download_release(req)
                .await
                .map_err(Broke::Call)?
                .into_inner();
            while let Some(chunk) = stream.message().await.map_err(Broke::Call)? {
                if chunk.offset != at {
                    return Err(Broke::Bad(format!(
                        "the coordinator sent bytes from {} when {at} was next",
                        chunk.offset
                    )));
                }
                if at + chunk.data.len() as u64 > m.size {
                    return Err(Broke::Bad(format!(
                        "the coordinator sent more than the release's {} bytes",
                        m.size
                    )));
                }
                file.write_all(&chunk.data).map_err(Broke::Disk)?;
                at += chunk.data.len() as u64;
            }
            Ok(())
        }
        .await;
        file.sync_all().map_err(io_err(part))?;
        drop(file);
        match outcome {
            Ok(()) if at == m.size => return Ok(()),
            Ok(()) => {
                if at == start {
                    short += 1;
                } else {
                    short = 0;
                }
                if short >= MAX_SHORT_ATTEMPTS {
                    return Err(fail(format!(
                        "the coordinator ends the download at byte {at} of {} ({short} times)",
                        m.size
                    )));
                }
                let wait = waits.next().unwrap_or(Duration::from_secs(30));
                warn!(
                    at,
                    size = m.size,
                    retry_in_ms = wait.as_millis() as u64,
                    "the download ended short; resuming"
                );
                tokio::time::sleep(wait).await;
            }
            Err(Broke::Bad(why)) => {
                // Bytes that do not follow on are not resumed from.
                let _ = std::fs::remove_file(part);
                return Err(fail(why));
            }
            Err(Broke::Disk(e)) => return Err(io_err(part)(e)),
            Err(Broke::Call(s)) if transient(&s) => {
                c.failed(used, &s);
                let wait = waits.next().unwrap_or(Duration::from_secs(30));
                warn!(error = %crate::tls::error_chain(&s), at, size = m.size, retry_in_ms = wait.as_millis() as u64, "the download broke off; resuming after a pause");
                tokio::time::sleep(wait).await;
            }
            Err(Broke::Call(s)) => {
                return Err(fail(format!("{} ({:?})", s.message(), s.code())));
            }
        }
    }
}

/// How one download attempt broke off.
enum Broke {
    /// The call or the stream failed (resumed when transient).
    Call(tonic::Status),
    /// The coordinator sent what does not fit the manifest.
    Bad(String),
    /// The partial file could not be written.
    Disk(io::Error),
}

/// Runs a command in a session of its own (so nothing it starts belongs to
/// the step's process group, which the supervisor kills when the step
/// ends), its output into `log`; an error with the output when it fails.
async fn run_detached(program: &str, args: &[&str], log: &Path) -> Result<(), String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    crate::exec::new_session(&mut cmd);
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let status = match tokio::time::timeout(RESTART_TIMEOUT, child.wait()).await {
        Ok(r) => r.map_err(|e| format!("{program}: {e}"))?,
        Err(_) => {
            let _ = child.start_kill();
            return Err(format!(
                "{program} {} did not finish within {} s",
                args.join(" "),
                RESTART_TIMEOUT.as_secs()
            ));
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    Err(format!(
        "{program} {} exited {status}: {}",
        args.join(" "),
        text.trim()
    ))
}

/// Whether `pid` is a live process (a zombie — exited, not yet reaped by
/// its parent — is not).
fn alive(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_err() {
        return false;
    }
    // /proc/PID/stat: "PID (COMM) STATE ...", COMM may hold anything.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next()),
            Some('Z') | Some('X')
        ),
        Err(_) => true,
    }
}

/// Starts the agent again as it was launched, in a session of its own
/// (when run by hand and the process is gone).
fn start_again(launch: &Launch) -> Result<(), String> {
    let mut cmd = std::process::Command::new(&launch.exe);
    cmd.args(&launch.args)
        .current_dir(&launch.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    crate::exec::new_session(&mut cmd);
    cmd.spawn()
        .map(drop)
        .map_err(|e| format!("cannot start {}: {e}", launch.exe.display()))
}

/// Restarts the agent through `how`. Returns the pid to watch, when the
/// agent re-executes itself (its death means the new binary crashed).
async fn restart(how: &Restart, state: &Path, dir: &Path) -> Result<Option<u32>, String> {
    let log = dir.join("restart.out");
    match how {
        Restart::Command { command } => run_detached("sh", &["-c", command], &log).await?,
        Restart::Systemd { unit } => run_detached("systemctl", &["restart", unit], &log).await?,
        Restart::Upstart { job } => run_detached("initctl", &["restart", job], &log).await?,
        Restart::SysV { script } => {
            run_detached(&script.to_string_lossy(), &["restart"], &log).await?
        }
        Restart::Exec => {
            let launch = Launch::load(state).map_err(|e| e.to_string())?;
            if alive(launch.pid) {
                let pid = nix::unistd::Pid::from_raw(launch.pid as i32);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1)
                    .map_err(|e| format!("cannot signal the agent (pid {}): {e}", launch.pid))?;
                return Ok(Some(launch.pid));
            }
            start_again(&launch)?;
        }
    }
    Ok(None)
}

/// Waits until an agent of `version` writes [`HEALTHY_FILE`] after `since`,
/// up to `timeout`; the reason when it does not.
async fn wait_healthy(
    state: &Path,
    version: &str,
    since_ms: i64,
    timeout: Duration,
    watch: Option<u32>,
) -> Result<Healthy, String> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(h) = read_healthy(state)
            && h.version == version
            && h.at_ms >= since_ms
            && alive(h.pid)
        {
            return Ok(h);
        }
        if let Some(pid) = watch
            && !alive(pid)
        {
            return Err(format!(
                "the agent (pid {pid}) exited after it was restarted"
            ));
        }
        if Instant::now() >= until {
            return Err(format!(
                "the agent {version} did not report in within {} s (it must verify its state and \
                 complete a poll with the coordinator)",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Entry point of `tether-agent __update STEP_DIR`; returns the step's exit code.
pub fn update_main(dir: &Path) -> i32 {
    let req = match UpdateRequest::read(dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether-agent update: {e}");
            return 1;
        }
    };
    if let Some(log) = &req.log {
        crate::logging::init(log);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether-agent update: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(update(dir, &req)) {
        Ok(()) => 0,
        Err(e) => {
            error!(error = %e, "agent update failed");
            eprintln!("{e}");
            1
        }
    }
}

async fn update(dir: &Path, req: &UpdateRequest) -> Result<(), UpdateError> {
    let say = Progress;
    let running = version::current().to_string();
    let platform = version::platform();
    let state = StateDir::new(req.state_dir.clone());
    // The same trust as the agent's: its files are its own.
    state.check(&[])?;
    let exe = req.agent_exe.clone();
    let slots = Slots::for_exe(&exe)?;
    if dir.join(SWAPPING_FILE).exists() {
        // This worker was killed mid-swap (the host restarted): the
        // agent running now is whatever was last installed; say so.
        return Err(UpdateError::Other(
            "the update was interrupted during the swap (the host restarted?); the agent now \
             running is what was installed last: check its AgentVersion and send the update again"
                .into(),
        ));
    }
    refuse_if_packaged(&exe)?;
    // One update at a time on a node: held until this worker exits.
    let lock_path = state.path(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(UpdateError::Other(
                "another agent update is running on this node; send this one again once it has ended"
                    .into(),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
    }
    let key = state.release_key()?.ok_or(UpdateError::NoReleaseKey)?;
    let deadline = (req.timeout_seconds > 0)
        .then(|| Instant::now() + Duration::from_secs(req.timeout_seconds.into()));
    let asked = if req.version.is_empty() {
        "the fleet's target version".to_string()
    } else {
        req.version.clone()
    };
    say.say(&format!(
        "updating tether-agent {running} ({platform}, {}) to {asked}",
        exe.display()
    ));
    let coord = Coordinator::new(&state)?;
    let resp = get_release(&coord, &req.version, &platform, deadline).await?;
    let m = verify_manifest(&resp, &key, &req.version, &platform)?;
    say.say(&format!(
        "release {} verified: signed by the release key, {} bytes, sha256 {}",
        m.version,
        m.size,
        hex::encode(&m.sha256)
    ));
    if plan(&running, &m, req.allow_downgrade)? == Plan::AlreadyThere {
        say.say(&format!("already at {running}: nothing to do"));
        return Ok(());
    }
    // Download into the state directory, resumably.
    let downloads = state.path(DOWNLOAD_DIR);
    crate::state::ensure_dir(&downloads)?;
    let name = format!("{}.part", hex::encode(&m.sha256));
    let part = downloads.join(&name);
    if let Ok(entries) = std::fs::read_dir(&downloads) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy() != name {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    download(&coord, &m, &part, deadline, &say).await?;
    if let Err(e) = check_file(&part, &m) {
        // Bad bytes are not resumed from.
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    say.say(&format!("downloaded {} ({} bytes)", m.version, m.size));
    // Staged beside the binary, checked there (what is swapped in is what
    // was verified), and run once.
    slots.stage(&part)?;
    if let Err(e) = check_file(&slots.staged, &m) {
        slots.discard_staged();
        return Err(e);
    }
    if let Err(e) = self_check(&slots.staged, &m.version).await {
        slots.discard_staged();
        return Err(e);
    }
    say.say(&format!(
        "verified: size, SHA-256 and self-check (`--version` prints {}) of {}",
        m.version,
        slots.staged.display()
    ));

    // The point of no return: from here the step ends with a working agent.
    std::fs::write(dir.join(SWAPPING_FILE), b"").map_err(io_err(&dir.join(SWAPPING_FILE)))?;
    slots.swap()?;
    say.say(&format!(
        "swapped: {} is {} (the previous {running} kept as {})",
        exe.display(),
        m.version,
        slots.previous.display()
    ));
    let health = Duration::from_secs(req.health_timeout_secs.max(1));
    let _ = std::fs::remove_file(state.path(HEALTHY_FILE));
    let since = now_ms();
    let outcome = match restart(&req.restart, &state.dir, dir).await {
        Ok(watch) => {
            say.say(&format!(
                "restarted through {}; waiting up to {} s for {} to report in",
                req.restart.describe(),
                health.as_secs(),
                m.version
            ));
            wait_healthy(&state.dir, &m.version, since, health, watch).await
        }
        Err(e) => Err(format!("the restart failed: {e}")),
    };
    match outcome {
        Ok(h) => {
            let _ = std::fs::remove_file(&part);
            say.say(&format!(
                "healthy: tether-agent {} (pid {}) reported in; updated {running} -> {}",
                h.version, h.pid, m.version
            ));
            Ok(())
        }
        Err(why) => {
            warn!(reason = %why, "the new agent did not report in; rolling back");
            say.say(&format!("{why}; rolling back to {running}"));
            slots.roll_back()?;
            let since = now_ms();
            let back = match restart(&req.restart, &state.dir, dir).await {
                Ok(watch) => wait_healthy(&state.dir, &running, since, health, watch).await,
                Err(e) => Err(format!("the restart failed: {e}")),
            };
            match back {
                Ok(h) => say.say(&format!(
                    "rolled back: tether-agent {running} (pid {}) reported in again",
                    h.pid
                )),
                Err(e) => {
                    error!(error = %e, "the restored agent has not reported in yet");
                    say.say(&format!(
                        "rolled back: {} is {running} again, but it has not reported in yet: {e}",
                        exe.display()
                    ));
                }
            }
            Err(UpdateError::Other(format!(
                "update to {} rolled back to {running}: {why}",
                m.version
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn key() -> ring::signature::Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn signed(
        k: &ring::signature::Ed25519KeyPair,
        m: &pb::ReleaseManifest,
    ) -> pb::GetReleaseResponse {
        let manifest = m.encode_to_vec();
        let mut msg = pb::RELEASE_SIGNING_CONTEXT.to_vec();
        msg.extend_from_slice(&manifest);
        pb::GetReleaseResponse {
            signature: k.sign(&msg).as_ref().to_vec(),
            manifest,
            server_time_ms: 0,
        }
    }

    fn manifest(version: &str, data: &[u8]) -> pb::ReleaseManifest {
        pb::ReleaseManifest {
            version: version.into(),
            platform: "linux-x86_64".into(),
            size: data.len() as u64,
            sha256: Sha256::digest(data).to_vec(),
            uploaded_at_ms: 1,
        }
    }

    #[test]
    fn only_a_manifest_signed_by_the_release_key_for_this_platform_is_accepted() {
        use ring::signature::KeyPair as _;
        let k = key();
        let public = k.public_key().as_ref().to_vec();
        let m = manifest("0.2.0", b"binary");
        let resp = signed(&k, &m);
        assert_eq!(
            verify_manifest(&resp, &public, "", "linux-x86_64").unwrap(),
            m
        );
        assert_eq!(
            verify_manifest(&resp, &public, "0.2.0", "linux-x86_64").unwrap(),
            m
        );
        // Another key (the command-signing key, say).
        let other = key();
        let e = verify_manifest(&resp, other.public_key().as_ref(), "", "linux-x86_64");
        assert!(matches!(e, Err(UpdateError::BadSignature)), "{e:?}");
        // The manifest changed after signing.
        let mut tampered = resp.clone();
        let mut m2 = m.clone();
        m2.size += 1;
        tampered.manifest = m2.encode_to_vec();
        assert!(matches!(
            verify_manifest(&tampered, &public, "", "linux-x86_64"),
            Err(UpdateError::BadSignature)
        ));
        // Signed without the context (a command-envelope style signature).
        let mut bare = resp.clone();
        bare.signature = k.sign(&resp.manifest).as_ref().to_vec();
        assert!(matches!(
            verify_manifest(&bare, &public, "", "linux-x86_64"),
            Err(UpdateError::BadSignature)
        ));
        let e = verify_manifest(&resp, &public, "0.3.0", "linux-x86_64").unwrap_err();
        assert!(e.to_string().contains("\"0.3.0\""), "{e}");
        let e = verify_manifest(&resp, &public, "", "linux-aarch64").unwrap_err();
        assert!(
            e.to_string().contains("linux-x86_64") && e.to_string().contains("linux-aarch64"),
            "{e}"
        );
    }

    #[test]
    fn downgrades_need_allow_downgrade_and_the_running_version_is_nothing_to_do() {
        let m = manifest("0.1.0", b"x");
        assert_eq!(plan("0.1.0", &m, false).unwrap(), Plan::AlreadyThere);
        assert_eq!(plan("0.0.9", &m, false).unwrap(), Plan::Install);
        let e = plan("0.2.0", &m, false).unwrap_err().to_string();
        assert!(
            e.contains("allowDowngrade=true") && e.contains("0.2.0"),
            "{e}"
        );
        assert_eq!(plan("0.2.0", &m, true).unwrap(), Plan::Install);
        let inputs = |v: &str, d: &str| {
            [("version", v), ("allowDowngrade", d)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            UpdateRequest::inputs(&inputs("", "false")).unwrap(),
            (String::new(), false)
        );
        assert_eq!(
            UpdateRequest::inputs(&inputs("1.2.3", "true")).unwrap(),
            ("1.2.3".into(), true)
        );
        assert!(UpdateRequest::inputs(&inputs("1.2.3", "yes")).is_err());
        assert!(UpdateRequest::inputs(&inputs("../x", "false")).is_err());
    }

    #[test]
    fn a_file_is_checked_against_the_manifest_size_and_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("bin");
        std::fs::write(&f, b"the release").unwrap();
        let m = manifest("0.2.0", b"the release");
        check_file(&f, &m).unwrap();
        std::fs::write(&f, b"the releasX").unwrap();
        let e = check_file(&f, &m).unwrap_err();
        assert!(matches!(e, UpdateError::WrongDigest { .. }), "{e}");
        std::fs::write(&f, b"the rel").unwrap();
        let e = check_file(&f, &m).unwrap_err();
        assert!(
            matches!(e, UpdateError::WrongSize { want: 11, got: 7 }),
            "{e}"
        );
    }

    #[test]
    fn a_swap_keeps_the_previous_binary_and_a_roll_back_restores_it() {
        let tmp = tempfile::tempdir().unwrap();
        let exe = tmp.path().join("tether-agent");
        std::fs::write(&exe, b"old").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let new = tmp.path().join("download");
        std::fs::write(&new, b"new").unwrap();
        let slots = Slots::for_exe(&exe).unwrap();
        assert_eq!(slots.staged, tmp.path().join(".tether-agent.new"));
        assert_eq!(slots.previous, tmp.path().join("tether-agent.previous"));
        slots.stage(&new).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&slots.staged), 0o755);
        assert_eq!(
            std::fs::read(&exe).unwrap(),
            b"old",
            "staging swaps nothing"
        );
        // A process holding the old binary open keeps it through the swap.
        let held = std::fs::File::open(&exe).unwrap();
        slots.swap().unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"new");
        assert_eq!(mode(&exe), 0o755);
        assert_eq!(std::fs::read(&slots.previous).unwrap(), b"old");
        assert!(!slots.staged.exists());
        let mut old = String::new();
        (&held).read_to_string(&mut old).unwrap();
        assert_eq!(old, "old");
        slots.roll_back().unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"old");
        assert!(!slots.previous.exists());
        // A second update replaces the kept previous binary.
        slots.stage(&new).unwrap();
        slots.swap().unwrap();
        std::fs::write(&new, b"newer").unwrap();
        slots.stage(&new).unwrap();
        slots.swap().unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"newer");
        assert_eq!(std::fs::read(&slots.previous).unwrap(), b"new");
    }

    #[tokio::test]
    async fn the_self_check_runs_the_new_binary_and_wants_its_version() {
        let tmp = tempfile::tempdir().unwrap();
        let exe = tmp.path().join("candidate");
        std::fs::write(
            &exe,
            "#!/bin/sh\n[ \"$1\" = --version ] && echo 'tether-agent 0.2.0'\n",
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        self_check(&exe, "0.2.0").await.unwrap();
        let e = self_check(&exe, "0.3.0").await.unwrap_err().to_string();
        assert!(
            e.contains("tether-agent 0.2.0") && e.contains("0.3.0"),
            "{e}"
        );
        std::fs::write(&exe, b"\x7fELFgarbage").unwrap();
        let e = self_check(&exe, "0.2.0").await.unwrap_err().to_string();
        assert!(e.contains("could not be run"), "{e}");
    }

    #[test]
    fn the_restart_follows_the_configured_command_then_the_init_system() {
        assert_eq!(
            detect_restart(Some("  /etc/init.d/x restart ")),
            Restart::Command {
                command: "/etc/init.d/x restart".into()
            }
        );
        assert_eq!(
            systemd_unit("0::/system.slice/tether-agent.service\n").as_deref(),
            Some("tether-agent.service")
        );
        assert_eq!(
            systemd_unit(
                "12:pids:/system.slice/tether-agent.service\n1:name=systemd:/init.scope\n"
            )
            .as_deref(),
            Some("tether-agent.service")
        );
        assert_eq!(systemd_unit("0::/user.slice/session-1.scope\n"), None);
    }

    #[test]
    fn a_binary_a_package_owns_is_named_with_what_to_run_instead() {
        // /usr/bin/dpkg belongs to the dpkg package on this (Debian) machine.
        let e = refuse_if_packaged(Path::new("/usr/bin/dpkg"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dpkg package dpkg") && e.contains("apt-get install"),
            "{e}"
        );
        let tmp = tempfile::tempdir().unwrap();
        let mine = tmp.path().join("tether-agent");
        std::fs::write(&mine, b"x").unwrap();
        refuse_if_packaged(&mine).unwrap();
    }
}
