use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::*;

fn spec(script: &str, timeout_seconds: u32) -> StepSpec {
    StepSpec {
        program: "sh".to_owned(),
        args: vec!["-c".to_owned(), script.to_owned()],
        working_directory: None,
        timeout_seconds,
        env: Vec::new(),
        output_cap_bytes: 1 << 20,
        clean_env: false,
        script: None,
        run_as: None,
        sealed: false,
    }
}

fn step_dir(spec: &StepSpec) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    spec.write(dir.path()).expect("write step.json");
    dir
}

fn output(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).expect("read output")
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .expect("read pid")
        .trim()
        .parse()
        .expect("pid")
}

/// Whether any process that is not a zombie is still in process group `pgid`.
fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killpg(Pid::from_raw(pgid), None) != Err(Errno::ESRCH);
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // After "pid (comm) ": state ppid pgrp ...
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

#[tokio::test]
async fn captures_stdout_and_stderr_separately() {
    let dir = step_dir(&spec("echo out; echo err >&2; echo more", 10));
    let result = supervise(dir.path()).await.expect("supervise");
    assert_eq!(result.exit_code, 0);
    assert_eq!(result.error, None);
    assert!(!result.timed_out && !result.cancelled);
    assert!(!result.stdout_truncated && !result.stderr_truncated);
    assert!(result.started_at_ms <= result.ended_at_ms);
    assert_eq!(output(dir.path(), STDOUT_FILE), b"out\nmore\n");
    assert_eq!(output(dir.path(), STDERR_FILE), b"err\n");
    assert_eq!(read_result(dir.path()).expect("read"), Some(result));
    assert_eq!(
        read_pid(&dir.path().join(PID_FILE)),
        std::process::id() as i32
    );
}

#[tokio::test]
async fn reports_exit_code_env_and_working_directory() {
    let wd = tempfile::tempdir().expect("temp dir");
    let mut spec = spec("pwd; echo \"$TETHER_X\"; exit 3", 10);
    spec.env = vec![("TETHER_X".to_owned(), "x y".to_owned())];
    spec.working_directory = Some(wd.path().to_owned());
    let dir = step_dir(&spec);
    let result = supervise(dir.path()).await.expect("supervise");
    assert_eq!(result.exit_code, 3);
    let expected = format!("{}\nx y\n", wd.path().display());
    assert_eq!(output(dir.path(), STDOUT_FILE), expected.as_bytes());
}

#[tokio::test]
async fn a_clean_environment_is_the_whole_environment_and_output_is_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut spec = spec("env; echo oops >&2", 10);
    spec.clean_env = true;
    spec.env = vec![
        ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
        ("ONLY".to_owned(), "this".to_owned()),
    ];
    let dir = step_dir(&spec);
    let result = supervise(dir.path()).await.expect("supervise");
    assert_eq!(result.exit_code, 0, "{result:?}");
    let out = String::from_utf8(output(dir.path(), STDOUT_FILE)).expect("utf-8");
    let mut names: Vec<&str> = out.lines().filter_map(|l| l.split('=').next()).collect();
    names.sort_unstable();
    // sh adds PWD (and may add SHLVL and _) itself; nothing comes from us.
    names.retain(|n| !matches!(*n, "PWD" | "SHLVL" | "_" | "OLDPWD"));
    assert_eq!(names, ["ONLY", "PATH"], "{out}");
    for f in [STDOUT_FILE, STDERR_FILE, RESULT_FILE, LOCK_FILE] {
        let mode = std::fs::metadata(dir.path().join(f))
            .expect("step file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
}

/// A step for another user runs as that user, with its groups, from a copy
/// of the script it could not otherwise reach (the step directory is the
/// supervisor's, 0700). Only root can switch users: as anyone else the step
/// fails, saying so.
#[tokio::test]
async fn a_step_runs_as_the_configured_user_from_a_script_it_cannot_reach() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "id -u; id -g; id -G; pwd; echo \"$0\"\n").expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut spec = spec("", 10);
    spec.args = Vec::new();
    spec.script = Some(script);
    spec.working_directory = Some("/".into());
    spec.run_as = Some(crate::runas::StepUser {
        name: "nobody".into(),
        uid: 65534,
        gid: 65534,
        groups: vec![65534, 4242],
        home: "/nonexistent".into(),
        shell: "/usr/sbin/nologin".into(),
    });
    spec.write(dir.path()).expect("write");
    let result = supervise(dir.path()).await.expect("supervise");
    let out = String::from_utf8(output(dir.path(), STDOUT_FILE)).expect("utf-8");
    if nix::unistd::geteuid().is_root() {
        assert_eq!(result.exit_code, 0, "{result:?} {out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..4], ["65534", "65534", "65534 4242", "/"], "{out}");
        assert!(lines[4].starts_with("/proc/self/fd/"), "{out}");
    } else {
        let error = result.error.unwrap_or_default();
        assert!(
            error.contains("as user \"nobody\"") && error.contains("Operation not permitted"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn preserves_non_utf8_bytes() {
    let dir = step_dir(&spec(r"printf '\377\376\000abc\200'", 10));
    let result = supervise(dir.path()).await.expect("supervise");
    assert_eq!(result.exit_code, 0);
    assert_eq!(output(dir.path(), STDOUT_FILE), b"\xff\xfe\0abc\x80");
}

#[tokio::test]
async fn truncates_output_over_the_cap_and_drains_the_rest() {
    // 1 MiB is far more than a pipe holds: the child finishes only if drained.
    let mut spec = spec("head -c 1048576 /dev/zero; echo done >&2; exit 5", 10);
    spec.output_cap_bytes = 1000;
    let dir = step_dir(&spec);
    let result = supervise(dir.path()).await.expect("supervise");
    assert_eq!(result.exit_code, 5);
    assert!(result.stdout_truncated);
    assert!(!result.stderr_truncated);
    assert_eq!(output(dir.path(), STDOUT_FILE), vec![0_u8; 1000]);
    assert_eq!(output(dir.path(), STDERR_FILE), b"done\n");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("step.pid");
    let script = format!("sleep 30 & echo $$ > '{}'; sleep 30", pid_file.display());
    spec(&script, 1).write(dir.path()).expect("write");
    let start = Instant::now();
    let result = supervise(dir.path()).await.expect("supervise");
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_millis(2500), "took {elapsed:?}");
    assert!(result.timed_out);
    assert!(!result.cancelled);
    assert_eq!(result.exit_code, TIMEOUT_EXIT_CODE);
    let pgid = read_pid(&pid_file);
    // SIGKILL is delivered asynchronously: on a loaded machine a member may
    // still be on its way out when the supervisor returns.
    let gone = Instant::now() + Duration::from_secs(2);
    while group_alive(pgid) && Instant::now() < gone {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!group_alive(pgid), "process group {pgid} survived");
}

#[tokio::test]
async fn background_process_holding_the_pipes_is_killed_after_a_grace() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("step.pid");
    let script = format!("sleep 30 & echo $$ > '{}'; echo hi", pid_file.display());
    spec(&script, 60).write(dir.path()).expect("write");
    let start = Instant::now();
    let result = supervise(dir.path()).await.expect("supervise");
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert_eq!(result.exit_code, 0);
    assert!(!result.timed_out && !result.cancelled);
    assert_eq!(output(dir.path(), STDOUT_FILE), b"hi\n");
    let pgid = read_pid(&pid_file);
    assert!(!group_alive(pgid), "process group {pgid} survived");
}

#[tokio::test]
async fn background_process_with_its_own_output_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("step.pid");
    let script = format!(
        "sleep 30 >/dev/null 2>&1 & echo $$ > '{}'",
        pid_file.display()
    );
    spec(&script, 60).write(dir.path()).expect("write");
    let start = Instant::now();
    let result = supervise(dir.path()).await.expect("supervise");
    assert!(start.elapsed() < PIPE_GRACE, "waited for the grace");
    assert_eq!(result.exit_code, 0);
    let pgid = read_pid(&pid_file);
    assert!(group_alive(pgid), "the detached sleep was killed");
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}

#[tokio::test]
async fn cancel_file_kills_the_step() {
    let dir = step_dir(&spec("sleep 30", 60));
    let path = dir.path().to_owned();
    let run = tokio::spawn(async move { supervise(&path).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(read_result(dir.path()).expect("read"), None);
    let start = Instant::now();
    request_cancel(dir.path()).expect("cancel");
    let result = run.await.expect("join").expect("supervise");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(result.cancelled);
    assert!(!result.timed_out);
    assert_eq!(result.exit_code, 137);
}

#[tokio::test]
async fn cancel_before_start_does_not_run() {
    let dir = step_dir(&spec("echo ran", 60));
    request_cancel(dir.path()).expect("cancel");
    let result = supervise(dir.path()).await.expect("supervise");
    assert!(result.cancelled);
    assert_eq!(result.exit_code, -1);
    assert!(!dir.path().join(STDOUT_FILE).exists());
}

#[tokio::test]
async fn missing_working_directory_is_a_result() {
    let mut spec = spec("true", 10);
    spec.working_directory = Some("/nonexistent/tether-wd".into());
    let dir = step_dir(&spec);
    let result = supervise(dir.path()).await.expect("supervise");
    assert_eq!(result.exit_code, -1);
    let error = result.error.expect("error");
    assert!(error.contains("/nonexistent/tether-wd"), "{error}");
    assert!(error.contains("No such file or directory"), "{error}");
}

#[tokio::test]
async fn missing_program_is_a_result() {
    let mut spec = spec("", 10);
    spec.program = "tether-no-such-program".to_owned();
    spec.args = Vec::new();
    let dir = step_dir(&spec);
    let result = supervise(dir.path()).await.expect("supervise");
    assert_eq!(result.exit_code, -1);
    assert_eq!(
        result.error.as_deref(),
        Some("could not start \"tether-no-such-program\": No such file or directory")
    );
    assert_eq!(read_result(dir.path()).expect("read"), Some(result));
}

#[tokio::test]
async fn unreadable_spec_is_a_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(SPEC_FILE), b"{not json").expect("write");
    let result = supervise(dir.path()).await.expect("supervise");
    assert_eq!(result.exit_code, -1);
    let error = result.error.expect("error");
    assert!(error.contains(SPEC_FILE), "{error}");
}

#[tokio::test]
async fn result_is_written_atomically_and_once() {
    let dir = step_dir(&spec("sleep 0.3; echo first", 10));
    let path = dir.path().to_owned();
    let run = tokio::spawn(async move { supervise(&path).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!dir.path().join(RESULT_FILE).exists());
    // A second supervisor for the same step is refused while the first runs.
    assert!(matches!(
        supervise(dir.path()).await,
        Err(ExecError::AlreadySupervised { .. })
    ));
    let result = run.await.expect("join").expect("supervise");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    let text = std::fs::read_to_string(dir.path().join(RESULT_FILE)).expect("read");
    let parsed: StepResult = serde_json::from_str(&text).expect("json");
    assert_eq!(parsed, result);
    // Supervising a finished step returns its result without running it again.
    std::fs::write(dir.path().join(STDOUT_FILE), b"").expect("clear");
    assert_eq!(supervise(dir.path()).await.expect("again"), result);
    assert_eq!(output(dir.path(), STDOUT_FILE), b"");
}

#[tokio::test]
async fn wait_result_follows_an_in_process_supervisor() {
    let dir = step_dir(&spec("sleep 0.3; exit 4", 10));
    let path = dir.path().to_owned();
    let run = tokio::spawn(async move { supervise(&path).await });
    let waited = wait_result(dir.path()).await.expect("wait");
    let result = run.await.expect("join").expect("supervise");
    assert_eq!(waited, result);
    assert_eq!(waited.exit_code, 4);
}

#[tokio::test]
async fn wait_result_reports_a_dead_supervisor() {
    // A pid file naming a process that is gone, and no lock.
    let dir = step_dir(&spec("true", 10));
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    std::fs::write(dir.path().join(PID_FILE), format!("{pid}\n")).expect("write");
    let result = wait_result(dir.path()).await.expect("wait");
    assert_eq!(result.exit_code, -1);
    assert_eq!(result.error.as_deref(), Some(LOST_SUPERVISOR_ERROR));

    // A lock nobody holds, as after a reboot, whatever the pid file says.
    let dir = step_dir(&spec("true", 10));
    std::fs::write(
        dir.path().join(PID_FILE),
        format!("{}\n", std::process::id()),
    )
    .expect("pid");
    std::fs::write(dir.path().join(LOCK_FILE), b"").expect("lock");
    let result = wait_result(dir.path()).await.expect("wait");
    assert_eq!(result.error.as_deref(), Some(LOST_SUPERVISOR_ERROR));
}

#[tokio::test]
async fn a_step_set_up_but_never_spawned_is_told_from_one_that_ran() {
    let grace = Duration::from_millis(300);
    // Only the spec: the agent stopped before spawning the supervisor.
    let dir = step_dir(&spec("true", 10));
    let since = Instant::now();
    assert!(never_started(dir.path(), grace).await.expect("check"));
    assert!(since.elapsed() >= grace, "it waits for a late supervisor");

    // A supervisor that shows itself within the grace: it started.
    let dir = step_dir(&spec("true", 10));
    let pid_file = dir.path().join(PID_FILE);
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(pid_file, format!("{}\n", std::process::id())).expect("pid");
    });
    assert!(!never_started(dir.path(), grace).await.expect("check"));
    late.await.expect("join");

    // One that ran and ended, or died: it started (wait_result says how it ended).
    let dir = step_dir(&spec("exit 3", 10));
    supervise(dir.path()).await.expect("supervise");
    assert!(!never_started(dir.path(), grace).await.expect("check"));
    let dir = step_dir(&spec("true", 10));
    std::fs::write(dir.path().join(LOCK_FILE), b"").expect("lock");
    assert!(!never_started(dir.path(), grace).await.expect("check"));
}

#[test]
fn spec_round_trips_and_errors_name_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut written = spec("echo hi", 7);
    written.env = vec![("A".to_owned(), "1".to_owned())];
    written.working_directory = Some("/tmp".into());
    written.write(dir.path()).expect("write");
    assert_eq!(StepSpec::read(dir.path()).expect("read"), written);

    let missing = dir.path().join("missing");
    let err = StepSpec::read(&missing).expect_err("no spec");
    assert!(err.to_string().contains(&missing.display().to_string()));
    assert!(request_cancel(&missing).is_err());
    assert_eq!(read_result(dir.path()).expect("read"), None);
}

#[test]
fn spawn_supervisor_needs_a_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = spawn_supervisor(Path::new("/bin/true"), dir.path()).expect_err("no runtime");
    assert!(matches!(err, ExecError::NoRuntime { .. }));
}

/// Lets this test binary stand in for the agent: `spawn_supervisor` runs it
/// as `<test binary> __supervise DIR`, libtest takes both arguments as
/// filters, and only this test matches.
#[test]
fn __supervise_hook() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, sub, dir] = args.as_slice()
        && sub == SUPERVISE_SUBCOMMAND
    {
        std::process::exit(supervise_main(Path::new(dir)));
    }
}

#[tokio::test]
async fn spawn_supervisor_runs_the_step_detached() {
    let exe = std::env::current_exe().expect("current exe");
    // The shell shares the supervisor's session: field 6 of its stat.
    let dir = step_dir(&spec("cut -d' ' -f6 /proc/$$/stat; exit 2", 10));
    let pid = spawn_supervisor(&exe, dir.path()).expect("spawn");
    let result = tokio::time::timeout(Duration::from_secs(10), wait_result(dir.path()))
        .await
        .expect("in time")
        .expect("wait");
    assert_eq!(result.exit_code, 2, "{result:?}");
    let session = String::from_utf8(output(dir.path(), STDOUT_FILE)).expect("utf8");
    assert_eq!(
        session.trim(),
        pid.to_string(),
        "not in a session of its own"
    );
    assert_eq!(read_pid(&dir.path().join(PID_FILE)), pid as i32);
}

#[tokio::test]
async fn a_sealed_step_runs_from_memory_and_its_secret_is_masked_in_both_streams() {
    let exe = std::env::current_exe().expect("current exe");
    let secret = "hunter2-Zq9!";
    let mut sealed = spec("", 10);
    sealed.args = Vec::new();
    sealed.sealed = true;
    let dir = step_dir(&sealed);
    // The secret whole, echoed twice, split across two writes with a pause
    // between them, and on stderr; $0 shows where the script was read from.
    let script = format!(
        "pw='{secret}'\necho \"pw: $pw and $pw\"\nprintf 'hunt'; sleep 0.3; printf 'er2-Zq9!\\n'\n\
         echo \"err $pw\" >&2\necho \"script: $0\"\n"
    );
    let handoff = Handoff {
        script,
        mask: vec![secret.to_owned()],
    };
    spawn_sealed_supervisor(&exe, dir.path(), &handoff).expect("spawn");
    let result = tokio::time::timeout(Duration::from_secs(10), wait_result(dir.path()))
        .await
        .expect("in time")
        .expect("wait");
    assert_eq!(result.exit_code, 0, "{result:?}");
    let stdout = String::from_utf8(output(dir.path(), STDOUT_FILE)).expect("utf8");
    let stderr = String::from_utf8(output(dir.path(), STDERR_FILE)).expect("utf8");
    assert!(stdout.starts_with("pw: **** and ****\n****\n"), "{stdout}");
    assert!(stdout.contains("script: /proc/self/fd/"), "{stdout}");
    assert_eq!(stderr, "err ****\n");
    // Nothing in the step directory holds the secret, or any script.
    for entry in std::fs::read_dir(dir.path()).expect("read dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            !bytes.windows(4).any(|w| w == b"hunt"),
            "{} holds the secret",
            path.display()
        );
        assert!(!path.ends_with("script.sh"), "a script file was written");
    }
}

#[tokio::test]
async fn a_sealed_step_without_its_handoff_fails_by_name() {
    let mut sealed = spec("", 10);
    sealed.sealed = true;
    let dir = step_dir(&sealed);
    // Started as a plain supervisor: descriptor 3 is not a handoff.
    let exe = std::env::current_exe().expect("current exe");
    spawn_supervisor(&exe, dir.path()).expect("spawn");
    let result = tokio::time::timeout(Duration::from_secs(10), wait_result(dir.path()))
        .await
        .expect("in time")
        .expect("wait");
    assert_eq!(result.exit_code, -1);
    let error = result.error.unwrap_or_default();
    assert!(error.contains("handoff"), "{error}");
}

#[tokio::test]
async fn sigterm_to_the_supervisor_cancels_the_step() {
    let exe = std::env::current_exe().expect("current exe");
    let dir = step_dir(&spec("echo started; sleep 30", 60));
    let pid = spawn_supervisor(&exe, dir.path()).expect("spawn");
    wait_for_output(dir.path(), b"started\n").await;
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).expect("kill");
    let result = tokio::time::timeout(Duration::from_secs(5), wait_result(dir.path()))
        .await
        .expect("in time")
        .expect("wait");
    assert!(result.cancelled, "{result:?}");
    assert_eq!(result.exit_code, 137);
}

#[tokio::test]
async fn killed_supervisor_yields_a_lost_result() {
    let exe = std::env::current_exe().expect("current exe");
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("step.pid");
    let script = format!("echo $$ > '{}'; echo started; sleep 30", pid_file.display());
    spec(&script, 60).write(dir.path()).expect("write");
    let pid = spawn_supervisor(&exe, dir.path()).expect("spawn");
    wait_for_output(dir.path(), b"started\n").await;
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill");
    let result = tokio::time::timeout(Duration::from_secs(5), wait_result(dir.path()))
        .await
        .expect("in time")
        .expect("wait");
    assert_eq!(result.exit_code, -1);
    assert_eq!(result.error.as_deref(), Some(LOST_SUPERVISOR_ERROR));
    // The orphaned step survives its supervisor (by design); clean it up.
    let _ = killpg(Pid::from_raw(read_pid(&pid_file)), Signal::SIGKILL);
}

async fn wait_for_output(dir: &Path, expected: &[u8]) {
    let start = Instant::now();
    while std::fs::read(dir.join(STDOUT_FILE)).ok().as_deref() != Some(expected) {
        assert!(start.elapsed() < Duration::from_secs(5), "no output");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
