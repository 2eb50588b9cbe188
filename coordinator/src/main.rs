//! `tether`: `tether serve` runs the coordinator; every other verb is the operator CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use tether_coordinator::cli;
use tether_coordinator::server::{self, ServeConfig};

#[derive(Parser, Debug)]
#[command(
    name = "tether",
    version,
    about = "Tether coordinator and operator CLI (aws ssm verbs)",
    subcommand_required = true
)]
struct Cli {
    #[command(flatten)]
    global: cli::Global,
    #[command(subcommand)]
    command: Command,
}

/// The verbs that are not SSM operations; the SSM verbs are added from the
/// model by [`cli::verbs`].
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
    /// gRPC listener (agents and operators), HOST:PORT; port 0 picks one.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: String,
    /// HTTPS listener, HOST:PORT; port 0 picks one.
    #[arg(long, default_value = "0.0.0.0:8444")]
    http_listen: String,
    /// Extra name or IP for the server certificate (repeatable).
    #[arg(long)]
    advertise: Vec<String>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
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
    let matches = Cli::command().subcommands(cli::verbs()).get_matches();
    let global = match cli::Global::from_arg_matches(&matches) {
        Ok(g) => g,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some((verb, verb_matches)) = matches.subcommand() else {
        return ExitCode::from(cli::EXIT_USAGE);
    };
    if verb != "serve" {
        return runtime.block_on(cli::run(&global, verb, verb_matches));
    }
    let args = match Cli::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    match args.command {
        Command::Serve(s) => {
            init_logging();
            let cfg = ServeConfig {
                data_dir: s.data_dir,
                listen: s.listen,
                http_listen: s.http_listen,
                advertise: s.advertise,
            };
            match runtime.block_on(server::run(cfg, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tether serve: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
