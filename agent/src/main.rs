//! `tether-agent`: register, run, status (and the hidden step supervisor).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use tether_agent::run::AgentConfig;
use tether_agent::state::{StateDir, StateError};
use tether_agent::{config, exec, logging, register, run, status, update, version};

/// Exit code of a start refused for its configuration or unsafe files
/// (sysexits' EX_CONFIG; the systemd unit does not restart on it).
const EXIT_CONFIG: u8 = 78;

#[derive(Parser, Debug)]
// The version is set at run time from the binary's marker (`version`).
#[command(name = "tether-agent", version, about = "Tether node agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct StateArg {
    /// State directory (registration, keys, spool).
    #[arg(
        long,
        env = "TETHER_AGENT_STATE_DIR",
        default_value = "/var/lib/tether-agent"
    )]
    state_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Register this node with a coordinator using an activation.
    Register {
        /// Coordinator gRPC endpoint, https://HOST:PORT; for replicas sharing one
        /// CA, several separated by commas (tried in order at registration; the
        /// daemon spreads over them and moves on when one stops answering).
        #[arg(long)]
        endpoint: String,
        /// Activation ID.
        #[arg(long)]
        id: String,
        /// Activation code.
        #[arg(long)]
        code: String,
        /// The coordinator's CA fingerprint, sha256:<64 hex> (printed by `tether serve`).
        #[arg(long)]
        ca_pin: String,
        /// Instance name (default: the activation's default instance name).
        #[arg(long)]
        name: Option<String>,
        /// Register again even if this node is already registered.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Run the agent daemon in the foreground.
    Run {
        #[command(flatten)]
        state: StateArg,
        /// Settings file (log level, directory, rotation); missing means defaults.
        #[arg(long, env = "TETHER_AGENT_CONFIG", default_value = config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Log directory (agent.log, errors.log) [default: the config's log.dir, else /var/log/tether].
        #[arg(long, env = "TETHER_AGENT_LOG_DIR")]
        log_dir: Option<PathBuf>,
        /// PowerShell executable for aws:runPowerShellScript steps.
        #[arg(long, env = "TETHER_AGENT_PWSH", default_value = "pwsh")]
        pwsh: String,
        /// Command run after reporting a step that exited 194.
        #[arg(
            long,
            env = "TETHER_AGENT_REBOOT_COMMAND",
            default_value = "shutdown -r +1"
        )]
        reboot_command: String,
        /// Command that restarts the agent after a self-update (run with `sh -c`)
        /// [default: through systemd, upstart or SysV init when one runs the
        /// agent, else the agent re-executes itself].
        #[arg(long, env = "TETHER_AGENT_RESTART_COMMAND")]
        restart_command: Option<String>,
        /// Seconds a self-updated agent has to report in before the previous
        /// one is restored.
        #[arg(long, env = "TETHER_AGENT_UPDATE_HEALTH_SECS", default_value_t = update::DEFAULT_HEALTH_TIMEOUT.as_secs())]
        update_health_secs: u64,
        /// Output kept per stream per step, in bytes (the rest is counted and dropped).
        #[arg(long, env = "TETHER_AGENT_OUTPUT_CAP_BYTES", default_value_t = 16 * 1024 * 1024)]
        output_cap_bytes: u64,
        /// Longest wait between reconnection attempts, in seconds.
        #[arg(long, env = "TETHER_AGENT_MAX_BACKOFF_SECS", default_value_t = 60)]
        max_backoff_secs: u64,
        /// Commands run at once; more wait for a free slot.
        #[arg(long, env = "TETHER_AGENT_MAX_CONCURRENT_COMMANDS", default_value_t = 5,
              value_parser = clap::value_parser!(u64).range(1..=1000))]
        max_concurrent_commands: u64,
        /// Directory of Custom:* inventory files (*.json in the SSM custom inventory format).
        #[arg(long, env = "TETHER_AGENT_CUSTOM_INVENTORY_DIR", default_value = tether_agent::inventory::DEFAULT_CUSTOM_DIR)]
        custom_inventory_dir: PathBuf,
        /// Inventory uploads wait a random time up to this many seconds (spreads a fleet's uploads).
        #[arg(long, env = "TETHER_AGENT_UPLOAD_JITTER_SECS", default_value_t = tether_agent::run::DEFAULT_UPLOAD_JITTER.as_secs())]
        upload_jitter_secs: u64,
        /// With several coordinator endpoints: seconds before an agent that moved
        /// off its own endpoint returns to it (plus up to as many again, at random).
        #[arg(long, env = "TETHER_AGENT_RETURN_HOME_SECS", default_value_t = tether_agent::run::DEFAULT_RETURN_HOME_AFTER.as_secs())]
        return_home_secs: u64,
    },
    /// Diagnose registration, connectivity, clock skew and running commands
    /// (exit 0 when healthy, 1 when not).
    Status {
        #[command(flatten)]
        state: StateArg,
        /// `text` for a person, `json` for monitoring: the same facts as one
        /// JSON object with stable PascalCase keys (InstanceId, Endpoints,
        /// Registered, Connected, LastPoll, CertificateExpires, AgentVersion,
        /// SpoolDepth, PendingResults, LastError, Healthy, …).
        #[arg(long, value_enum, default_value_t = StatusOutput::Text)]
        output: StatusOutput,
    },
    #[command(name = "__supervise", hide = true)]
    Supervise { dir: PathBuf },
    #[command(name = "__update", hide = true)]
    Update { dir: PathBuf },
}

/// How `tether-agent status` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StatusOutput {
    Text,
    Json,
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("tether-agent: cannot start the async runtime: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    // A step's supervisor starts once per step: straight to work, without
    // building the whole command line parser (the hidden subcommand takes
    // exactly one argument; anything else goes through clap and its errors).
    let mut args = std::env::args_os().skip(1);
    if let (Some(sub), Some(dir), None) = (args.next(), args.next(), args.next())
        && sub == exec::SUPERVISE_SUBCOMMAND
    {
        return ExitCode::from(
            exec::supervise_main(std::path::Path::new(&dir)).clamp(0, 255) as u8,
        );
    }
    let matches = Cli::command().version(version::current()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Supervise { dir } => {
            ExitCode::from(exec::supervise_main(&dir).clamp(0, 255) as u8)
        }
        Command::Update { dir } => ExitCode::from(update::update_main(&dir).clamp(0, 255) as u8),
        Command::Register {
            endpoint,
            id,
            code,
            ca_pin,
            name,
            force,
            state,
        } => {
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            let args = register::RegisterArgs {
                endpoint,
                activation_id: id,
                activation_code: code,
                ca_pin,
                name,
                force,
            };
            match rt.block_on(register::register(&StateDir::new(state.state_dir), args)) {
                Ok(done) => {
                    for (endpoint, why) in &done.skipped {
                        eprintln!(
                            "tether-agent register: passed over {endpoint}: {why}; registered through {}",
                            done.endpoint
                        );
                    }
                    println!("{}", done.instance_id);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tether-agent register: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            state,
            config: config_path,
            log_dir,
            pwsh,
            reboot_command,
            restart_command,
            update_health_secs,
            output_cap_bytes,
            max_backoff_secs,
            max_concurrent_commands,
            custom_inventory_dir,
            upload_jitter_secs,
            return_home_secs,
        } => {
            let file = match config::AgentToml::load(&config_path) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("tether-agent run: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            // A policy the owner wrote but the agent cannot read is a
            // refusal to start, never a node without its policy.
            let policy = match file.node_policy(&config_path) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("tether-agent run: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let log_settings = file.log_settings(log_dir, std::env::var("TETHER_AGENT_LOG").ok());
            logging::init(&log_settings);
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            let cfg = AgentConfig {
                pwsh,
                reboot_command,
                output_cap_bytes,
                max_backoff: Duration::from_secs(max_backoff_secs.max(1)),
                max_concurrent: max_concurrent_commands as usize,
                upload_jitter: Duration::from_secs(upload_jitter_secs),
                return_home_after: Duration::from_secs(return_home_secs.max(1)),
                inventory_sources: tether_agent::inventory::Sources {
                    custom_dir: custom_inventory_dir,
                    ..Default::default()
                },
                config_file: Some(config_path),
                run_as_user: file.run_as_user.clone(),
                node_policy: policy.policy,
                policy_file: policy.file,
                restart_command,
                update_health_timeout: Duration::from_secs(update_health_secs.max(1)),
                log: Some(log_settings),
                reexec_on_signal: true,
                ..AgentConfig::default()
            };
            match rt.block_on(run::run(
                StateDir::new(state.state_dir),
                cfg,
                shutdown_signal(),
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Unsafe files and a bad run_as_user do not mend by
                    // restarting: the units do not restart on this code.
                    let refused = matches!(
                        e,
                        run::RunError::State(StateError::Unsafe(_)) | run::RunError::RunAs(_)
                    );
                    if refused {
                        tracing::error!(error = %e, "refusing to start");
                        eprintln!("tether-agent run: refusing to start: {e}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                    tracing::error!(error = %e, "agent stopped");
                    eprintln!("tether-agent run: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status { state, output } => {
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            let json = output == StatusOutput::Json;
            ExitCode::from(rt.block_on(status::status(&StateDir::new(state.state_dir), json)) as u8)
        }
    }
}
