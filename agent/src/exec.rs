//! Running one step under a detached supervisor process, and the on-disk
//! format of a step directory. The agent writes `step.json` (a [`StepSpec`])
//! and the script into a step directory, then [`spawn_supervisor`] re-executes
//! the agent binary as `tether-agent __supervise STEP_DIR` in a session of its
//! own, so that the step outlives an agent restart. The supervisor
//! ([`supervise`]) starts the step in its own process group, streams its
//! stdout and stderr into files (up to a cap, draining the rest), enforces
//! the timeout, honours the `cancel` file and SIGTERM by killing the whole
//! process group, and finally writes `result.json` (a [`StepResult`])
//! atomically. A step given secret values (a command's SecureString
//! parameters) is *sealed*: its script and the values to mask come to the
//! supervisor through a memory file inherited at [`HANDOFF_FD`] ([`Handoff`]),
//! never through the step directory; the child reads its script from a
//! memory file too, and every value is masked (`crate::mask`) in both
//! streams before they are written. The agent, or a restarted agent, learns the outcome with
//! [`wait_result`] or [`read_result`]; `supervisor.lock`, an exclusive lock
//! the supervisor holds for its lifetime, tells it whether the supervisor is
//! still alive even across reboots and pid reuse.

use std::fs::{File, OpenOptions};
use std::future::pending;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tether_util::now_ms;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// The hidden subcommand that runs a supervisor: `tether-agent __supervise STEP_DIR`.
pub const SUPERVISE_SUBCOMMAND: &str = "__supervise";
/// The step's specification, written by the agent.
pub const SPEC_FILE: &str = "step.json";
/// The step's standard output, written live by the supervisor.
pub const STDOUT_FILE: &str = "stdout";
/// The step's standard error, written live by the supervisor.
pub const STDERR_FILE: &str = "stderr";
/// The supervisor's pid in decimal.
pub const PID_FILE: &str = "supervisor.pid";
/// Locked exclusively by the supervisor for as long as it lives.
pub const LOCK_FILE: &str = "supervisor.lock";
/// The outcome, written atomically once the step is over.
pub const RESULT_FILE: &str = "result.json";
/// Created by the agent to ask the supervisor to kill the step.
pub const CANCEL_FILE: &str = "cancel";
/// The descriptor at which a sealed step's supervisor inherits its [`Handoff`].
pub const HANDOFF_FD: i32 = 3;
/// The name of the memory file of a [`Handoff`] (as `/proc/self/fd` shows it).
const HANDOFF_NAME: &std::ffi::CStr = c"tether-step-handoff";
/// The most a handoff may hold (a script and its secrets).
const MAX_HANDOFF_BYTES: u64 = 64 * 1024 * 1024;
/// Space the supervisor holds while the step runs and gives up to write
/// `result.json` when the step's output filled the disk.
const RESERVE_FILE: &str = "result.reserve";
const RESERVE_BYTES: usize = 64 * 1024;

/// Exit code reported for a step killed because it ran out of time (128 + SIGKILL).
pub const TIMEOUT_EXIT_CODE: i32 = 137;
/// The error of a result synthesised because the supervisor died without writing one.
pub const LOST_SUPERVISOR_ERROR: &str =
    "the step's supervisor exited without a result (agent host restarted?)";

/// How often the supervisor looks for the cancel file and `wait_result` for the result.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long background processes may keep the output pipes open after the
/// step's main process exited, before the process group is killed.
const PIPE_GRACE: Duration = Duration::from_millis(1500);
/// How long to wait for the pipes to close once the process group was killed.
const KILL_DRAIN: Duration = Duration::from_millis(500);
/// How long `wait_result` waits for a supervisor that has left no trace at all.
const NO_SUPERVISOR_GRACE: Duration = Duration::from_secs(5);
/// Size of the buffer output is read into and written from.
const CHUNK: usize = 64 * 1024;
/// Mode of every file the supervisor creates in the step directory.
const PRIVATE_FILE_MODE: u32 = 0o600;

/// Errors of the step directory and of the supervisor.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("could not read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("could not write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{} is not a valid {what}: {source}", path.display())]
    Parse {
        path: PathBuf,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("could not encode the {what} for {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("{} does not hold a pid: {value:?}", path.display())]
    BadPid { path: PathBuf, value: String },
    #[error("another supervisor is already running the step in {}", dir.display())]
    AlreadySupervised { dir: PathBuf },
    #[error("could not start the supervisor {} for {}: {source}", exe.display(), dir.display())]
    SpawnSupervisor {
        exe: PathBuf,
        dir: PathBuf,
        source: io::Error,
    },
    #[error("the supervisor for {} must be started from inside a tokio runtime", dir.display())]
    NoRuntime { dir: PathBuf },
    #[error("could not build the supervisor's runtime for {}: {source}", dir.display())]
    Runtime { dir: PathBuf, source: io::Error },
}

/// What to run, written by the agent to `step.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    /// The interpreter, e.g. `sh` or `pwsh`, looked up in `PATH`.
    pub program: String,
    /// Its arguments, e.g. `["<dir>/script.sh"]`.
    pub args: Vec<String>,
    /// The directory to run in; the supervisor's own when `None`.
    pub working_directory: Option<PathBuf>,
    /// Seconds before the process group is killed; 0 means no limit.
    pub timeout_seconds: u32,
    /// The step's environment: the whole of it when `clean_env`, else
    /// variables added to the supervisor's own (step directories written
    /// before steps got a clean environment).
    pub env: Vec<(String, String)>,
    /// Bytes kept of stdout, and separately of stderr.
    pub output_cap_bytes: u64,
    /// Whether `env` is the step's whole environment.
    #[serde(default)]
    pub clean_env: bool,
    /// The script, passed to `program` as its last argument: by path when
    /// the step runs as the supervisor's own user; as `/proc/self/fd/N` of a
    /// private in-memory copy when it runs as another user, who cannot
    /// reach the agent's owner-only spool.
    #[serde(default)]
    pub script: Option<PathBuf>,
    /// The user the step runs as, when it is not the supervisor's.
    #[serde(default)]
    pub run_as: Option<crate::runas::StepUser>,
    /// The script (and the values to mask in its output) come through the
    /// [`Handoff`] inherited at [`HANDOFF_FD`]: `script` is then `None`.
    #[serde(default)]
    pub sealed: bool,
}

/// What a sealed step's supervisor is handed in memory: the script, with
/// secret values in it, and the values to mask in its output. Never
/// written to disk, never logged (its `Debug` shows only sizes).
#[derive(Clone, Serialize, Deserialize)]
pub struct Handoff {
    pub script: String,
    pub mask: Vec<String>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Handoff {{ script: {} bytes, mask: {} values }}",
            self.script.len(),
            self.mask.len()
        )
    }
}

/// Reads the [`Handoff`] this (sealed) supervisor inherited at [`HANDOFF_FD`],
/// and closes it. Refuses anything at that descriptor that is not a
/// handoff's memory file.
#[allow(unsafe_code)]
fn take_handoff() -> Result<Handoff, String> {
    use std::os::fd::FromRawFd as _;
    let link = std::fs::read_link(format!("/proc/self/fd/{HANDOFF_FD}")).map_err(|e| {
        format!("the sealed step's handoff is missing (descriptor {HANDOFF_FD}: {e})")
    })?;
    let expected = format!("/memfd:{}", HANDOFF_NAME.to_string_lossy());
    if !link.to_string_lossy().starts_with(&expected) {
        return Err(format!(
            "descriptor {HANDOFF_FD} is not the sealed step's handoff ({})",
            link.display()
        ));
    }
    // SAFETY: the descriptor is open (its /proc link exists), is the
    // handoff's memory file (checked above), and nothing else in this
    // process owns it: it was inherited, and is closed when `file` drops.
    let file = unsafe { File::from_raw_fd(HANDOFF_FD) };
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(&file, MAX_HANDOFF_BYTES), &mut bytes)
        .map_err(|e| format!("cannot read the sealed step's handoff: {e}"))?;
    let handoff = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the sealed step's handoff does not parse: {e}"));
    bytes.iter_mut().for_each(|b| *b = 0);
    handoff
}

impl StepSpec {
    /// Writes `step.json` into `dir`, atomically.
    pub fn write(&self, dir: &Path) -> Result<(), ExecError> {
        write_json(&dir.join(SPEC_FILE), "step specification", self)
    }

    /// Reads `step.json` from `dir`.
    pub fn read(dir: &Path) -> Result<Self, ExecError> {
        let path = dir.join(SPEC_FILE);
        let bytes = std::fs::read(&path).map_err(|source| ExecError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ExecError::Parse {
            path,
            what: "step specification",
            source,
        })
    }
}

/// How a step ended, written by the supervisor to `result.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    /// The step's exit code; 128 + signal number if it was killed by a
    /// signal ([`TIMEOUT_EXIT_CODE`] on timeout); -1 if it never ran.
    pub exit_code: i32,
    pub timed_out: bool,
    pub cancelled: bool,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    /// Why the step could not run, or what went wrong around it.
    pub error: Option<String>,
}

impl StepResult {
    fn failed(started_at_ms: i64, error: String) -> Self {
        Self {
            exit_code: -1,
            timed_out: false,
            cancelled: false,
            stdout_truncated: false,
            stderr_truncated: false,
            started_at_ms,
            ended_at_ms: now_ms(),
            error: Some(error),
        }
    }
}

/// Runs the step of `dir` to completion and writes `result.json`; the body
/// of the hidden `__supervise` subcommand, inside its runtime.
///
/// If `result.json` already exists the step is not run again and that result
/// is returned. Problems of the step itself (unreadable `step.json`, missing
/// working directory or program) end up in the result; an error is returned
/// only when no result could be recorded. Installs a SIGTERM handler for the
/// rest of the process's life: SIGTERM kills the step and records it as
/// cancelled.
pub async fn supervise(dir: &Path) -> Result<StepResult, ExecError> {
    let _lock = take_lock(dir)?;
    if let Some(done) = read_result(dir)? {
        return Ok(done);
    }
    // Room for the result, taken before the step can fill the disk: a step
    // whose output filled it still gets its result (and the reason) written.
    let reserve = dir.join(RESERVE_FILE);
    let reserved = std::fs::write(&reserve, vec![0_u8; RESERVE_BYTES]).is_ok();
    let result = run_step(dir).await;
    let path = dir.join(RESULT_FILE);
    let written = match write_json(&path, "step result", &result) {
        Err(ExecError::Write { source, .. }) if reserved && crate::state::is_disk_full(&source) => {
            let _ = std::fs::remove_file(&reserve);
            write_json(&path, "step result", &result)
        }
        other => other,
    };
    let _ = std::fs::remove_file(&reserve);
    written?;
    Ok(result)
}

/// Entry point of `tether-agent __supervise STEP_DIR`: runs [`supervise`] on a
/// current-thread runtime. Returns the supervisor's exit code: 0 once a
/// result is recorded (whatever the step's own exit code), 1 otherwise.
pub fn supervise_main(dir: &Path) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(source) => {
            let err = ExecError::Runtime {
                dir: dir.to_owned(),
                source,
            };
            tracing::error!("{err}");
            return 1;
        }
    };
    match runtime.block_on(supervise(dir)) {
        Ok(_) => 0,
        Err(err) => {
            tracing::error!("{err}");
            1
        }
    }
}

/// Starts the supervisor of `dir`: `agent_exe __supervise dir` in a new
/// session, with standard streams on /dev/null. Returns its pid. Must be
/// called inside a tokio runtime, where a task reaps the supervisor.
pub fn spawn_supervisor(agent_exe: &Path, dir: &Path) -> Result<u32, ExecError> {
    spawn(agent_exe, dir, None)
}

/// [`spawn_supervisor`] for a sealed step (`StepSpec::sealed`): `handoff`
/// goes to the supervisor in a memory file at [`HANDOFF_FD`].
pub fn spawn_sealed_supervisor(
    agent_exe: &Path,
    dir: &Path,
    handoff: &Handoff,
) -> Result<u32, ExecError> {
    let mut bytes = serde_json::to_vec(handoff).map_err(|e| ExecError::Write {
        path: dir.to_owned(),
        source: io::Error::other(e),
    })?;
    let fd = memory_file(HANDOFF_NAME, &bytes).map_err(|source| ExecError::Write {
        path: dir.to_owned(),
        source,
    });
    bytes.iter_mut().for_each(|b| *b = 0);
    let fd = fd?;
    spawn(agent_exe, dir, Some(&fd))
    // The supervisor has its copy (or never will): ours closes here.
}

fn spawn(agent_exe: &Path, dir: &Path, handoff: Option<&OwnedFd>) -> Result<u32, ExecError> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Err(ExecError::NoRuntime {
            dir: dir.to_owned(),
        });
    };
    // A lock file left by a dead supervisor would make `wait_result` declare
    // the new one dead before it takes the lock: remove it, unless its
    // owner still lives.
    let lock_path = dir.join(LOCK_FILE);
    match OpenOptions::new().read(true).open(&lock_path) {
        Ok(file) => match file.try_lock() {
            Ok(()) => {
                remove_if_exists(&lock_path)?;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ExecError::AlreadySupervised {
                    dir: dir.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(ExecError::Read {
                    path: lock_path,
                    source,
                });
            }
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ExecError::Read {
                path: lock_path,
                source,
            });
        }
    }

    let mut cmd = std::process::Command::new(agent_exe);
    cmd.arg(SUPERVISE_SUBCOMMAND)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    detach(&mut cmd, handoff.map(|fd| fd.as_raw_fd()));
    let mut child = Command::from(cmd)
        .spawn()
        .map_err(|source| ExecError::SpawnSupervisor {
            exe: agent_exe.to_owned(),
            dir: dir.to_owned(),
            source,
        })?;
    let pid = child.id().unwrap_or(0);
    runtime.spawn(async move {
        let _ = child.wait().await;
    });
    // The supervisor writes it too, but only once it runs: written here, it
    // lets `wait_result` notice a supervisor that died before that.
    if let Err(err) = write_atomic(&dir.join(PID_FILE), format!("{pid}\n").as_bytes()) {
        tracing::warn!("{err}");
    }
    Ok(pid)
}

/// Puts the process `cmd` starts into a session of its own, so that signals
/// aimed at the agent's process group or terminal do not reach it; and
/// hands it `handoff` at [`HANDOFF_FD`].
#[allow(unsafe_code)]
fn detach(cmd: &mut std::process::Command, handoff: Option<i32>) {
    // SAFETY: the closure runs in the forked child before exec and only makes
    // the setsid, dup2 and fcntl system calls, which are async-signal-safe;
    // it allocates nothing and touches no lock. The child is never a process
    // group leader at that point (its pid is new), so setsid cannot fail
    // with EPERM.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(io::Error::from)?;
            if let Some(fd) = handoff {
                // dup2 leaves the new descriptor open across exec; when it
                // is already HANDOFF_FD, close-on-exec is cleared instead.
                let ok = if fd == HANDOFF_FD {
                    nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) == 0
                } else {
                    nix::libc::dup2(fd, HANDOFF_FD) == HANDOFF_FD
                };
                if !ok {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Puts the process `cmd` starts into a session of its own (outside the
/// caller's process group, which a supervisor kills when its step ends).
pub fn new_session(cmd: &mut std::process::Command) {
    detach(cmd, None);
}

/// `bytes` in a new memory file named `name`, closed on exec (unless the
/// child clears that), its offset back at the start.
fn memory_file(name: &std::ffi::CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC).map_err(io::Error::from)?;
    let mut file = File::from(fd);
    io::Write::write_all(&mut file, bytes)?;
    io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
    Ok(OwnedFd::from(file))
}

/// A copy of `script` in a memory file (closed on exec unless the child
/// clears that), for a step user who cannot read the spool: opened again
/// through `/proc/self/fd/N`, which only the step's own processes can.
fn script_in_memory(script: &Path) -> Result<OwnedFd, ExecError> {
    let bytes = std::fs::read(script).map_err(|source| ExecError::Read {
        path: script.to_owned(),
        source,
    })?;
    memory_file(c"tether-step-script", &bytes).map_err(|source| ExecError::Write {
        path: script.to_owned(),
        source,
    })
}

/// Keeps `fd` (the script's memory file) open across the child's exec.
#[allow(unsafe_code)]
fn keep_in_child(cmd: &mut Command, fd: i32) {
    // SAFETY: the closure runs in the forked child before exec and only
    // makes the fcntl system call, which is async-signal-safe, on a number
    // taken before the fork; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// What the child needs to become the step's user, prepared before the
/// fork (the child may not allocate).
#[derive(Debug)]
struct Identity {
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
    groups: Vec<nix::unistd::Gid>,
    /// The script copy the child must keep across exec.
    keep_fd: Option<i32>,
    /// Entered after the switch, so the user's own permissions apply.
    working_directory: Option<std::ffi::CString>,
}

impl Identity {
    fn new(
        user: &crate::runas::StepUser,
        keep: Option<&OwnedFd>,
        working_directory: Option<&Path>,
    ) -> Result<Identity, String> {
        use std::os::unix::ffi::OsStrExt as _;
        let working_directory = working_directory
            .map(|wd| {
                std::ffi::CString::new(wd.as_os_str().as_bytes())
                    .map_err(|_| format!("working directory {:?} contains a NUL", wd.display()))
            })
            .transpose()?;
        Ok(Identity {
            uid: nix::unistd::Uid::from_raw(user.uid),
            gid: nix::unistd::Gid::from_raw(user.gid),
            groups: user
                .groups
                .iter()
                .map(|g| nix::unistd::Gid::from_raw(*g))
                .collect(),
            keep_fd: keep.map(|fd| fd.as_raw_fd()),
            working_directory,
        })
    }
}

/// Makes the child drop to `id` between fork and exec: supplementary groups,
/// group, user (in that order: each needs the privilege the next drops),
/// then the working directory, then keeps the script copy open.
#[allow(unsafe_code)]
fn become_in_child(cmd: &mut Command, id: Identity) {
    // SAFETY: the closure runs in the forked child before exec. It only
    // makes system calls that are async-signal-safe (setgroups, setgid,
    // setuid, chdir, fcntl) on data prepared before the fork; it allocates
    // nothing and takes no lock. std runs it after setting up the standard
    // streams and the process group, so a failure is reported by spawn.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setgroups(&id.groups).map_err(io::Error::from)?;
            nix::unistd::setgid(id.gid).map_err(io::Error::from)?;
            nix::unistd::setuid(id.uid).map_err(io::Error::from)?;
            if let Some(wd) = &id.working_directory
                && nix::libc::chdir(wd.as_ptr()) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if let Some(fd) = id.keep_fd
                && nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Waits until `dir` holds a result and returns it. If the supervisor died
/// without writing one, returns a result with exit code -1 and
/// [`LOST_SUPERVISOR_ERROR`].
///
/// Not by polling: the supervisor writes the result durably and then exits,
/// and its exit is seen at once through a pidfd (whether this agent started
/// it or an earlier one did), the result read the moment it is there. The
/// directory is still looked at every [`SAFETY_NET`] (every
/// [`POLL_INTERVAL`] where the kernel has no pidfds, before Linux 5.3).
pub async fn wait_result(dir: &Path) -> Result<StepResult, ExecError> {
    let since = Instant::now();
    // The supervisor's exit, once it was seen alive; None when it cannot be
    // watched (then the directory is polled).
    let mut exit: Option<tokio::io::unix::AsyncFd<OwnedFd>> = None;
    let mut watched = false;
    loop {
        if let Some(result) = read_result(dir)? {
            return Ok(result);
        }
        let liveness = supervisor_liveness(dir)?;
        if liveness == Liveness::Dead
            || (liveness == Liveness::Unknown && since.elapsed() >= NO_SUPERVISOR_GRACE)
        {
            // It may have written the result just before exiting.
            if let Some(result) = read_result(dir)? {
                return Ok(result);
            }
            let error = if liveness == Liveness::Dead {
                LOST_SUPERVISOR_ERROR.to_owned()
            } else {
                format!("no supervisor was started for {}", dir.display())
            };
            let now = now_ms();
            let mut lost = StepResult::failed(now, error);
            lost.ended_at_ms = now;
            return Ok(lost);
        }
        if liveness == Liveness::Alive && !watched {
            watched = true;
            exit = supervisor_pid(dir)
                .and_then(pidfd_open)
                .and_then(watch_exit);
            // It may have ended between the look above and the pidfd.
            continue;
        }
        let nap = if exit.is_some() {
            SAFETY_NET
        } else {
            POLL_INTERVAL
        };
        match &exit {
            Some(fd) => {
                tokio::select! {
                    ready = fd.readable() => {
                        if ready.is_ok() {
                            // Exited: look once more, then by the safety net.
                            exit = None;
                        }
                    }
                    () = sleep(nap) => {}
                }
            }
            None => sleep(nap).await,
        }
    }
}

/// A pidfd registered with the runtime: readable once its process exited.
#[allow(unsafe_code)]
fn watch_exit(fd: OwnedFd) -> Option<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is an open descriptor that stays open, and its
    // `as_raw_fd` the same number, for as long as it is owned — here by the
    // AsyncFd, until it drops.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE).ok()
    }
}

/// How often [`wait_result`] looks at the step directory while it watches
/// the supervisor's exit.
const SAFETY_NET: Duration = Duration::from_secs(1);

/// The supervisor's pid from its pid file, when it holds one.
fn supervisor_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
}

/// A pidfd for `pid`: readable once the process has exited. None where the
/// kernel has none (before 5.3) or the process is gone.
#[allow(unsafe_code)]
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // (or -1); it touches no memory of ours. A non-negative result is a
    // descriptor nothing else owns, closed when the OwnedFd drops.
    // (No flags: it is only polled, never read or waited on.)
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: see above: `fd` was just returned to us and is owned by no one else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// After an agent restart, for a step whose spec was written: whether its
/// supervisor was never started (the agent died between writing the spec
/// and spawning it). Waits up to `grace` for a supervisor spawned just
/// before the restart to show itself (it writes its pid before the step's
/// process exists), so `true` means the step never ran and may be set up
/// again; a result, a lock or a pid file means it did.
pub async fn never_started(dir: &Path, grace: Duration) -> Result<bool, ExecError> {
    let since = Instant::now();
    loop {
        if read_result(dir)?.is_some() || supervisor_liveness(dir)? != Liveness::Unknown {
            return Ok(false);
        }
        if since.elapsed() >= grace {
            return Ok(true);
        }
        sleep(POLL_INTERVAL.min(grace)).await;
    }
}

/// [`never_started`]'s usual wait.
pub const SUPERVISOR_GRACE: Duration = NO_SUPERVISOR_GRACE;

/// Reads `result.json` from `dir`, `None` while the step has none.
pub fn read_result(dir: &Path) -> Result<Option<StepResult>, ExecError> {
    let path = dir.join(RESULT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ExecError::Read { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| ExecError::Parse {
            path,
            what: "step result",
            source,
        })
}

/// The step's captured `stdout` or `stderr` (`name`) in `dir`: empty when the
/// step never started and so has none, an error naming the file when it
/// cannot be read.
pub fn read_output(dir: &Path, name: &str) -> Result<Vec<u8>, ExecError> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(ExecError::Read { path, source }),
    }
}

/// Asks the supervisor of `dir` to kill the step, by creating the `cancel` file.
pub fn request_cancel(dir: &Path) -> Result<(), ExecError> {
    let path = dir.join(CANCEL_FILE);
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE_MODE)
        .open(&path)
        .map(drop)
        .map_err(|source| ExecError::Write { path, source })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    Alive,
    Dead,
    /// Neither a lock nor a pid file: no supervisor was started yet.
    Unknown,
}

fn supervisor_liveness(dir: &Path) -> Result<Liveness, ExecError> {
    let lock_path = dir.join(LOCK_FILE);
    match OpenOptions::new().read(true).open(&lock_path) {
        // Locks vanish with their process, also across reboots and pid
        // reuse: a free lock is a dead supervisor. Ours is released when
        // `file` is dropped.
        Ok(file) => {
            return match file.try_lock() {
                Ok(()) => Ok(Liveness::Dead),
                Err(std::fs::TryLockError::WouldBlock) => Ok(Liveness::Alive),
                Err(std::fs::TryLockError::Error(source)) => Err(ExecError::Read {
                    path: lock_path,
                    source,
                }),
            };
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ExecError::Read {
                path: lock_path,
                source,
            });
        }
    }
    // Just spawned, not locked yet: go by the pid.
    let pid_path = dir.join(PID_FILE);
    let text = match std::fs::read_to_string(&pid_path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Liveness::Unknown),
        Err(source) => {
            return Err(ExecError::Read {
                path: pid_path,
                source,
            });
        }
    };
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| ExecError::BadPid {
            path: pid_path,
            value: text.clone(),
        })?;
    Ok(match kill(Pid::from_raw(pid), None) {
        Err(Errno::ESRCH) => Liveness::Dead,
        _ => Liveness::Alive,
    })
}

/// Takes the supervisor lock so that `supervisor.lock` never exists unlocked
/// while its supervisor lives: the lock is taken on a private file first, which
/// is then hard-linked into place (failing if another one is already there).
/// Otherwise an agent checking liveness between the lock file's creation and
/// its locking would take the supervisor for dead, and its probe could even
/// make the supervisor fail to lock.
fn take_lock(dir: &Path) -> Result<File, ExecError> {
    let path = dir.join(LOCK_FILE);
    let private = dir.join(format!("{LOCK_FILE}.{}", std::process::id()));
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ExecError::Write { path, source }
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&private)
        .map_err(write_err(&private))?;
    let locked = file.try_lock();
    let linked = locked
        .map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => io::Error::from(ErrorKind::WouldBlock),
            std::fs::TryLockError::Error(e) => e,
        })
        .and_then(|()| std::fs::hard_link(&private, &path));
    let _ = std::fs::remove_file(&private);
    match linked {
        Ok(()) => Ok(file),
        // Left by an earlier supervisor: ours if its owner is gone.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let existing = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(write_err(&path))?;
            match existing.try_lock() {
                Ok(()) => Ok(existing),
                Err(std::fs::TryLockError::WouldBlock) => Err(ExecError::AlreadySupervised {
                    dir: dir.to_owned(),
                }),
                Err(std::fs::TryLockError::Error(source)) => Err(ExecError::Write { path, source }),
            }
        }
        Err(source) => Err(ExecError::Write { path, source }),
    }
}

/// What the pump of one output stream found.
#[derive(Default)]
struct StreamState {
    truncated: AtomicBool,
    error: Mutex<Option<String>>,
}

impl StreamState {
    fn note_error(&self, error: String) {
        self.error.lock().get_or_insert(error);
    }

    fn error(&self) -> Option<String> {
        self.error.lock().clone()
    }
}

/// Runs the step and always comes back with a result.
async fn run_step(dir: &Path) -> StepResult {
    let started_at_ms = now_ms();
    let spec = match StepSpec::read(dir) {
        Ok(spec) => spec,
        Err(err) => return StepResult::failed(started_at_ms, err.to_string()),
    };
    // A sealed step's script and secrets: read first, whatever happens next.
    let handoff = if spec.sealed {
        match take_handoff() {
            Ok(h) => Some(h),
            Err(error) => return StepResult::failed(started_at_ms, error),
        }
    } else {
        None
    };
    // The agent wrote our pid when it spawned us (durably): written again
    // only when it has not yet, so that a step does not wait on a second
    // fsync for the same bytes.
    let pid_text = format!("{}\n", std::process::id());
    let pid_path = dir.join(PID_FILE);
    if std::fs::read_to_string(&pid_path).ok().as_deref() != Some(pid_text.as_str())
        && let Err(err) = write_atomic(&pid_path, pid_text.as_bytes())
    {
        return StepResult::failed(started_at_ms, err.to_string());
    }
    // Before the child exists, so that no SIGTERM can orphan it.
    let mut sigterm = match signal(SignalKind::terminate()) {
        Ok(sigterm) => Some(sigterm),
        Err(err) => {
            tracing::warn!(
                "could not handle SIGTERM while supervising {}: {err}",
                dir.display()
            );
            None
        }
    };
    if let Some(wd) = &spec.working_directory {
        match std::fs::metadata(wd) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                let error = format!("working directory {:?} is not a directory", wd.display());
                return StepResult::failed(started_at_ms, error);
            }
            Err(e) => {
                let error = format!(
                    "working directory {:?} is not usable: {}",
                    wd.display(),
                    io_desc(&e)
                );
                return StepResult::failed(started_at_ms, error);
            }
        }
    }
    let cancel_path = dir.join(CANCEL_FILE);
    if cancel_path.exists() {
        let mut result = StepResult::failed(
            started_at_ms,
            "cancelled before the step started".to_owned(),
        );
        result.cancelled = true;
        return result;
    }
    let out_path = dir.join(STDOUT_FILE);
    let err_path = dir.join(STDERR_FILE);
    // Opened directly (a step with no output never starts the runtime's
    // blocking threads), written through tokio.
    let create = |path: &Path| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE_MODE)
            .open(path)
            .map(tokio::fs::File::from_std)
    };
    let (out_file, err_file) = match (create(&out_path), create(&err_path)) {
        (Ok(out), Ok(err)) => (out, err),
        (Err(source), _) => {
            let err = ExecError::Write {
                path: out_path,
                source,
            };
            return StepResult::failed(started_at_ms, err.to_string());
        }
        (_, Err(source)) => {
            let err = ExecError::Write {
                path: err_path,
                source,
            };
            return StepResult::failed(started_at_ms, err.to_string());
        }
    };

    // Another user than the supervisor's: the script comes through a
    // private in-memory copy, and the identity changes in the child.
    let switch = spec
        .run_as
        .as_ref()
        .filter(|u| u.uid != nix::unistd::geteuid().as_raw());
    // A sealed step's script exists only in memory, whoever runs it.
    let script_copy = match (&handoff, &spec.script, switch) {
        (Some(h), _, _) => match memory_file(c"tether-step-script", h.script.as_bytes()) {
            Ok(fd) => Some(fd),
            Err(e) => {
                let error = format!("could not hold the sealed step's script in memory: {e}");
                return StepResult::failed(started_at_ms, error);
            }
        },
        (None, Some(script), Some(_)) => match script_in_memory(script) {
            Ok(fd) => Some(fd),
            Err(err) => return StepResult::failed(started_at_ms, err.to_string()),
        },
        _ => None,
    };
    let secrets = crate::mask::Secrets::new(handoff.iter().flat_map(|h| &h.mask));
    drop(handoff);
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    match (&script_copy, &spec.script) {
        (Some(fd), _) => {
            cmd.arg(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        }
        (None, Some(script)) => {
            cmd.arg(script);
        }
        (None, None) => {}
    }
    if spec.clean_env {
        cmd.env_clear();
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let as_user = match switch {
        Some(user) => {
            let identity = match Identity::new(
                user,
                script_copy.as_ref(),
                spec.working_directory.as_deref(),
            ) {
                Ok(identity) => identity,
                Err(error) => return StepResult::failed(started_at_ms, error),
            };
            become_in_child(&mut cmd, identity);
            format!(" as user {:?}", user.name)
        }
        None => {
            if let Some(wd) = &spec.working_directory {
                cmd.current_dir(wd);
            }
            if let Some(fd) = &script_copy {
                keep_in_child(&mut cmd, fd.as_raw_fd());
            }
            String::new()
        }
    };
    let started_at_ms = now_ms();
    let spawned = cmd.spawn();
    // The child has its copy of the script (or never will): ours can go.
    drop(script_copy);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let error = format!(
                "could not start {:?}{as_user}: {}",
                spec.program,
                io_desc(&e)
            );
            return StepResult::failed(started_at_ms, error);
        }
    };
    // The child leads its own process group, so the group id is its pid.
    let pgid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);
    let kill_group = || {
        if let Some(pgid) = pgid {
            match killpg(pgid, Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => tracing::warn!("could not kill process group {pgid}: {e}"),
            }
        }
    };

    let out_state = Arc::new(StreamState::default());
    let err_state = Arc::new(StreamState::default());
    let mut pumps = JoinSet::new();
    if let Some(stdout) = child.stdout.take() {
        let state = Arc::clone(&out_state);
        pumps.spawn(pump(
            stdout,
            out_file,
            out_path.clone(),
            spec.output_cap_bytes,
            state,
            crate::mask::MaskStream::new(secrets.clone()),
        ));
    }
    if let Some(stderr) = child.stderr.take() {
        let state = Arc::clone(&err_state);
        pumps.spawn(pump(
            stderr,
            err_file,
            err_path.clone(),
            spec.output_cap_bytes,
            state,
            crate::mask::MaskStream::new(secrets),
        ));
    }

    let deadline = (spec.timeout_seconds > 0)
        .then(|| Instant::now() + Duration::from_secs(u64::from(spec.timeout_seconds)));
    let mut timed_out = false;
    let mut cancelled = false;
    let mut cancel_poll = tokio::time::interval(POLL_INTERVAL);
    let status = loop {
        let killed = timed_out || cancelled;
        tokio::select! {
            status = child.wait() => break status,
            () = sleep_until_opt(deadline), if !killed => {
                timed_out = true;
                kill_group();
            }
            _ = cancel_poll.tick(), if !killed => {
                if cancel_path.exists() {
                    cancelled = true;
                    kill_group();
                }
            }
            received = recv_opt(&mut sigterm), if !killed => {
                if received {
                    cancelled = true;
                    kill_group();
                } else {
                    sigterm = None;
                }
            }
        }
    };

    // The step is over when its main process is; background processes that
    // still hold the output pipes get a short grace, then the group is killed.
    if timeout(PIPE_GRACE, drain(&mut pumps)).await.is_err() {
        kill_group();
        if timeout(KILL_DRAIN, drain(&mut pumps)).await.is_err() {
            // Something outside the group still holds a pipe.
            pumps.abort_all();
            drain(&mut pumps).await;
        }
    }
    // What the step wrote is on disk before its result is. An empty stream
    // reads the same whether its file survives a crash or not (a missing
    // one reads as no output): it costs no fsync.
    for path in [&out_path, &err_path] {
        if let Ok(file) = File::open(path)
            && file.metadata().is_ok_and(|m| m.len() > 0)
        {
            let _ = file.sync_all();
        }
    }

    let mut error = out_state.error().or_else(|| err_state.error());
    let exit_code = match status {
        Ok(_) if timed_out => TIMEOUT_EXIT_CODE,
        Ok(status) => exit_code(status),
        Err(e) => {
            error.get_or_insert_with(|| format!("could not wait for {:?}: {e}", spec.program));
            -1
        }
    };
    StepResult {
        exit_code,
        timed_out,
        cancelled,
        stdout_truncated: out_state.truncated.load(Ordering::Relaxed),
        stderr_truncated: err_state.truncated.load(Ordering::Relaxed),
        started_at_ms,
        ended_at_ms: now_ms(),
        error,
    }
}

/// Copies `src` to `dst` chunk by chunk, masked by `mask` (secret values
/// become `****`), keeping the first `cap` bytes and draining the rest so
/// that the writer never blocks.
async fn pump<R: AsyncRead + Unpin>(
    mut src: R,
    mut dst: tokio::fs::File,
    path: PathBuf,
    cap: u64,
    state: Arc<StreamState>,
    mut mask: crate::mask::MaskStream,
) {
    let mut buf = vec![0_u8; CHUNK];
    let mut kept: u64 = 0;
    let mut writable = true;
    let mut ended = false;
    while !ended {
        let read = match src.read(&mut buf).await {
            Ok(0) => {
                ended = true;
                mask.finish()
            }
            Ok(n) => mask.push(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                state.note_error(format!(
                    "could not read the output for {}: {e}",
                    path.display()
                ));
                ended = true;
                mask.finish()
            }
        };
        let n = read.len();
        let room = cap.saturating_sub(kept);
        let take = usize::try_from(room).map_or(n, |room| room.min(n));
        if take < n {
            state.truncated.store(true, Ordering::Relaxed);
        }
        if writable && take > 0 {
            let written = async {
                dst.write_all(&read[..take]).await?;
                dst.flush().await
            };
            if let Err(source) = written.await {
                let err = ExecError::Write {
                    path: path.clone(),
                    source,
                };
                state.note_error(err.to_string());
                writable = false;
            }
        }
        kept = kept.saturating_add(take as u64);
    }
}

async fn drain(set: &mut JoinSet<()>) {
    while set.join_next().await.is_some() {}
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => pending().await,
    }
}

/// Waits for the signal; false if the stream ended. Never ends without one.
async fn recv_opt(sig: &mut Option<tokio::signal::unix::Signal>) -> bool {
    match sig {
        Some(sig) => sig.recv().await.is_some(),
        None => pending().await,
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signo)) => 128 + signo,
        (None, None) => -1,
    }
}

/// The bare description of an OS error, e.g. "No such file or directory".
fn io_desc(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_owned(),
        None => e.to_string(),
    }
}

fn remove_if_exists(path: &Path) -> Result<(), ExecError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ExecError::Write {
            path: path.to_owned(),
            source,
        }),
    }
}

fn write_json<T: Serialize>(path: &Path, what: &'static str, value: &T) -> Result<(), ExecError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| ExecError::Encode {
        path: path.to_owned(),
        what,
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Writes `path` atomically (owner-only): readers see either the old file
/// or the whole new one, and the new one survives a crash.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExecError> {
    tether_util::fs::write_private(path, bytes).map_err(|source| ExecError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
#[path = "exec/tests.rs"]
mod tests;
