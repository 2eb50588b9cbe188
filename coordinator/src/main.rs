//! `tether`: `tether serve` runs the coordinator; every other verb is the operator CLI.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tether_cli as cli;
use tether_coordinator::server::{self, ServeConfig};

#[derive(Parser, Debug)]
#[command(
    name = "tether",
    version,
    about = "Tether coordinator (`tether serve`); every other verb is the operator CLI (`tether help`)",
    subcommand_required = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `tether serve`; the operator CLI's verbs are read by [`cli::main`] as the
/// aws CLI reads them.
#[derive(Subcommand, Debug)]
enum Command {
    /// Run the coordinator.
    Serve(Serve),
}

#[derive(clap::Args, Debug)]
struct Serve {
    /// Data directory: key material, database, operator.json.
    #[arg(long, default_value = "/var/lib/tether", env = "TETHER_DATA_DIR")]
    data_dir: PathBuf,
    /// The database: a `postgres://USER@HOST/DB` URL (several replicas may
    /// share one), or a SQLite file path. Default: DATA_DIR/tether.db.
    #[arg(long, env = "TETHER_DATABASE", value_name = "URL|PATH")]
    database: Option<String>,
    /// Where the CA, the command-signing key and the access-key sealing key
    /// live (created on first start). Replicas on one PostgreSQL database
    /// must all see the same files. Default: the data directory.
    #[arg(long, env = "TETHER_SECRETS_DIR")]
    secrets_dir: Option<PathBuf>,
    /// gRPC listener (agents and operators), HOST:PORT; port 0 picks one.
    #[arg(long, default_value = "0.0.0.0:8443", env = "TETHER_LISTEN")]
    listen: String,
    /// HTTPS listener (CA, install script, agent download), HOST:PORT; port 0 picks one.
    #[arg(long, default_value = "0.0.0.0:8444", env = "TETHER_HTTP_LISTEN")]
    http_listen: String,
    /// Name or IP nodes reach this coordinator by (repeatable): put in the
    /// server certificate; the first is used in install snippets.
    #[arg(long, env = "TETHER_ADVERTISE", value_delimiter = ',')]
    advertise: Vec<String>,
    /// Days of command history kept; older commands are pruned.
    #[arg(long, env = "TETHER_HISTORY_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    history_retention_days: u64,
    /// Seconds a running invocation's agent may stay silent before the
    /// invocation ends as Failed, presumed lost (a later result still counts).
    #[arg(long, env = "TETHER_AGENT_SILENT_TIMEOUT_SECS", default_value_t = tether_ssm::limits::AGENT_SILENT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    agent_silent_timeout: u64,
    /// Seconds to wait for an agent to confirm a cancellation before the
    /// invocation ends as Cancelled without it.
    #[arg(long, env = "TETHER_CANCEL_CONFIRM_TIMEOUT_SECS", default_value_t = tether_ssm::limits::CANCEL_CONFIRM_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    cancel_confirm_timeout: u64,
    /// Lifetime of the client certificates issued to agents, in seconds
    /// (60 to ten years; default 30 days). Agents renew theirs at half of
    /// it; an agent offline past the end of its certificate must be
    /// registered again.
    #[arg(long, env = "TETHER_CLIENT_CERT_LIFETIME_SECS", default_value_t = tether_ssm::limits::CLIENT_CERT_LIFETIME.as_secs(), value_parser = clap::value_parser!(u64).range(tether_ssm::limits::CLIENT_CERT_LIFETIME_MIN_SECS..=tether_ssm::limits::CLIENT_CERT_LIFETIME_MAX_SECS))]
    client_cert_lifetime: u64,
    /// AWS bridge configuration (TOML); default: DATA_DIR/aws.toml when it exists.
    #[arg(long)]
    aws_config: Option<PathBuf>,
    /// The agent binary served to nodes (default: tether-agent beside this
    /// binary, else /usr/share/tether/tether-agent).
    #[arg(long, env = "TETHER_AGENT_BINARY")]
    agent_binary: Option<PathBuf>,
    /// The region named in ARNs (`arn:aws:ssm:REGION:ACCOUNT:…`) and in
    /// operator.json; replicas of one database should agree.
    #[arg(long, env = "TETHER_REGION", default_value = tether_coordinator::authz::DEFAULT_REGION, value_parser = region)]
    region: String,
    /// The audit mirror: every audit record as one JSON line, for log
    /// shippers (0600 in a 0700 directory of the coordinator's own, rotated
    /// at 64 MiB, 10 kept), or `off`. The database holds the trail itself.
    #[arg(long, env = "TETHER_AUDIT_LOG", value_name = "PATH|off", default_value = tether_coordinator::audit::mirror::DEFAULT_PATH)]
    audit_log: String,
    /// Also serve `/metrics` (Prometheus text) over plain HTTP on HOST:PORT,
    /// without authentication: bind it to loopback or a private network
    /// only (port 0 picks one). The HTTPS listener's `/metrics` needs an
    /// operator token allowed `tether:GetMetrics`.
    #[arg(long, env = "TETHER_METRICS_LISTEN", value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
    /// Seconds between signatures of the audit chain's head (1 to 60).
    #[arg(long, env = "TETHER_AUDIT_SIGN_INTERVAL", default_value_t = tether_ssm::limits::AUDIT_SIGN_INTERVAL.as_secs(), value_parser = clap::value_parser!(u64).range(1..=tether_ssm::limits::AUDIT_SIGN_INTERVAL_MAX_SECS))]
    audit_sign_interval: u64,
    /// Seconds a web console session lasts from sign-in (60 to a day;
    /// default 8 hours). Sessions live in this replica's memory.
    #[arg(long, env = "TETHER_CONSOLE_SESSION_LIFETIME", default_value_t = tether_ssm::limits::CONSOLE_SESSION_LIFETIME.as_secs(), value_parser = clap::value_parser!(u64).range(1..=tether_ssm::limits::CONSOLE_SESSION_LIFETIME_MAX_SECS))]
    console_session_lifetime: u64,
}

/// A region name as AWS spells them (`us-east-1`, `eu-central-2`, `lab-1`).
fn region(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a region name (lowercase letters, digits and dashes, e.g. us-east-1)"
        ))
    }
}

/// Logs to stderr (journald under systemd), or to `TETHER_LOG_FILE` rotated by
/// size when set (SysV hosts: /var/log/tether-coordinator/coordinator.log).
/// The file's directory is the coordinator's own (created 0700; refused when
/// another user owns it or others can write it), the files are 0600 and
/// opened without following symbolic links; when the file cannot be used,
/// logs go to stderr, which says why.
fn init_logging() {
    use tether_ssm::limits::{LOG_FILE_KEEP, LOG_FILE_MAX_BYTES};
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_timer(tracing_subscriber::fmt::time::ChronoUtc::new(
            "%Y-%m-%d %H:%M:%S%.3f".into(),
        ));
    let Some(path) = std::env::var_os("TETHER_LOG_FILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
    else {
        return builder.with_writer(std::io::stderr).init();
    };
    let nofollow = nix::fcntl::OFlag::O_NOFOLLOW.bits();
    let uid = nix::unistd::geteuid().as_raw();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let usable = tether_util::fs::private_log_dir(&dir, uid)
        .and_then(|()| tether_util::fs::check_log_file(&path, uid, nofollow))
        .and_then(|()| tether_util::fs::narrow_rotated_logs(&path, uid));
    match usable {
        Ok(()) => {
            let file = file_rotate::FileRotate::new(
                path,
                file_rotate::suffix::AppendCount::new(LOG_FILE_KEEP),
                file_rotate::ContentLimit::BytesSurpassed(LOG_FILE_MAX_BYTES),
                file_rotate::compression::Compression::None,
                Some(tether_util::fs::log_open_options(nofollow)),
            );
            builder.with_writer(std::sync::Mutex::new(file)).init();
        }
        Err(e) => {
            builder.with_writer(std::io::stderr).init();
            tracing::error!(file = %path.display(), error = %e, "TETHER_LOG_FILE cannot be used; logging to stderr");
        }
    }
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

fn main() -> ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let serve = cli::verb_of(&words).as_deref() == Some("serve");
    // The CLI makes one call at a time: one thread, none started for it.
    let runtime = if serve {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !serve {
        return runtime.block_on(cli::main(words));
    }
    let args = match Cli::try_parse() {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    match args.command {
        Command::Serve(s) => {
            init_logging();
            let cfg = ServeConfig {
                data_dir: s.data_dir,
                database: s.database,
                secrets_dir: s.secrets_dir,
                listen: s.listen,
                http_listen: s.http_listen,
                advertise: s.advertise,
                timeouts: tether_coordinator::core::Timeouts {
                    cancel_confirm: Duration::from_secs(s.cancel_confirm_timeout),
                    agent_silent: Duration::from_secs(s.agent_silent_timeout),
                    history_retention: Duration::from_secs(s.history_retention_days * 24 * 3600),
                },
                aws_config: s.aws_config,
                agent_binary: s.agent_binary,
                region: s.region,
                audit_log: (s.audit_log != "off").then(|| PathBuf::from(s.audit_log)),
                audit_sign_interval: Duration::from_secs(s.audit_sign_interval),
                client_cert_lifetime: Duration::from_secs(s.client_cert_lifetime),
                metrics_listen: s.metrics_listen,
                console_session_lifetime: Duration::from_secs(s.console_session_lifetime),
            };
            match runtime.block_on(server::run(cfg, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tether serve: {e:#}");
                    // Unsafe files do not mend by restarting: the units do
                    // not restart on this code (sysexits' EX_CONFIG).
                    if e.downcast_ref::<tether_util::strict::Unsafe>().is_some() {
                        return ExitCode::from(78);
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}
