//! `tether serve`: the coordinator daemon.
//!
//! First start creates the data directory's key material, database and
//! `operator.json`; later starts reuse them. [`run`] binds the listeners, writes
//! the chosen addresses into `operator.json` before accepting work, and serves
//! until the shutdown future resolves. Tests call it on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tether_cli::OperatorConfig;
use tether_proto as pb;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tracing::{info, warn};

use crate::core::Coordinator;
use crate::credentials::token_hash;
use crate::grpc::Services;
use crate::pki::{Pki, write_private};
use tether_store::Store;
use tether_util::time::now_ms;

/// What `tether serve` was asked to do.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// `--database`: a PostgreSQL URL or a SQLite path; None is `DATA_DIR/tether.db`.
    pub database: Option<String>,
    /// `--secrets-dir`: the key material replicas share; None is the data directory.
    pub secrets_dir: Option<PathBuf>,
    pub listen: String,
    pub http_listen: String,
    pub advertise: Vec<String>,
    /// When the coordinator stops waiting for agents, and how long history is kept.
    pub timeouts: crate::core::Timeouts,
    /// The AWS bridge's configuration (`--aws-config`); `aws.toml` in the
    /// data directory is used when this is unset and that file exists.
    pub aws_config: Option<PathBuf>,
    /// The agent binary served to nodes (default: see [`crate::install::AgentDownload::load`]).
    pub agent_binary: Option<PathBuf>,
}

/// The URL a local client uses for a bound address (loopback for a wildcard).
fn local_url(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    };
    format!("https://{host}:{}", addr.port())
}

/// The URL nodes use for a bound address: the advertised name, if any.
fn advertised_url(advertise: &[String], addr: SocketAddr) -> String {
    match advertise.first() {
        Some(name) if name.contains(':') => format!("https://[{name}]:{}", addr.port()),
        Some(name) => format!("https://{name}:{}", addr.port()),
        None => local_url(addr),
    }
}

fn server_names(advertise: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = hostname::get()
        && let Some(h) = h.to_str()
    {
        names.push(h.to_string());
    }
    names.extend(advertise.iter().cloned());
    names.sort();
    names.dedup();
    names
}

/// Reuses the token in an existing operator.json if the database still knows
/// it; otherwise makes a new one.
async fn operator_token(store: &Store, path: &Path) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path)
        && let Ok(old) = serde_json::from_str::<OperatorConfig>(&text)
    {
        let known = store.operator_token_hashes().await?;
        if known.contains(&token_hash(&old.token)) {
            return Ok(old.token);
        }
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    store
        .add_operator_token(&token_hash(&token), now_ms())
        .await?;
    Ok(token)
}

/// Where the AWS bridge's configuration is, if anywhere: `--aws-config`,
/// else `aws.toml` in the data directory when it exists.
fn bridge_config_path(cfg: &ServeConfig) -> Option<PathBuf> {
    let default = cfg.data_dir.join("aws.toml");
    match &cfg.aws_config {
        Some(p) => Some(p.clone()),
        None if default.exists() => Some(default),
        None => None,
    }
}

/// The AWS bridge's configuration, if any; a bad file stops the start.
#[cfg(feature = "aws-bridge")]
fn bridge_config(cfg: &ServeConfig) -> anyhow::Result<Option<tether_aws_bridge::BridgeConfig>> {
    let Some(path) = bridge_config_path(cfg) else {
        return Ok(None);
    };
    let b = tether_aws_bridge::BridgeConfig::load(&path)?;
    println!(
        "AWS bridge: {} account(s) from {}",
        b.accounts.len(),
        path.display()
    );
    Ok(Some(b))
}

/// Built without the bridge (only the fuzz workspace builds so): a bridge
/// configuration stops the start rather than being ignored.
#[cfg(not(feature = "aws-bridge"))]
fn bridge_config(cfg: &ServeConfig) -> anyhow::Result<Option<std::convert::Infallible>> {
    match bridge_config_path(cfg) {
        Some(path) => anyhow::bail!(
            "{}: this tether was built without the AWS bridge (cargo feature aws-bridge)",
            path.display()
        ),
        None => Ok(None),
    }
}

#[cfg(feature = "aws-bridge")]
fn spawn_bridge(
    store: tether_store::Store,
    cfg: tether_aws_bridge::BridgeConfig,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(tether_aws_bridge::run(store, cfg))
}

#[cfg(not(feature = "aws-bridge"))]
fn spawn_bridge(
    _: tether_store::Store,
    cfg: std::convert::Infallible,
) -> tokio::task::JoinHandle<()> {
    match cfg {}
}

/// A database URL without its password, for messages.
fn redact_url(database: &str) -> String {
    match url::Url::parse(database) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => database.to_string(),
    }
}

/// Runs the coordinator until `shutdown` resolves.
pub async fn run(
    mut cfg: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if cfg.data_dir.is_relative() {
        cfg.data_dir = std::env::current_dir()?.join(&cfg.data_dir);
    }
    let names = server_names(&cfg.advertise);
    let secrets_dir = cfg
        .secrets_dir
        .clone()
        .unwrap_or_else(|| cfg.data_dir.clone());
    let pki = Arc::new(
        Pki::load_or_create_shared(&cfg.data_dir, &secrets_dir, &names).with_context(|| {
            format!(
                "preparing key material in {} (secrets in {})",
                cfg.data_dir.display(),
                secrets_dir.display()
            )
        })?,
    );
    let database = cfg.database.clone().unwrap_or_else(|| {
        cfg.data_dir
            .join("tether.db")
            .to_string_lossy()
            .into_owned()
    });
    let store = Store::open_url(&database)
        .await
        .with_context(|| format!("opening database {}", redact_url(&database)))?;

    // A bad bridge configuration stops the start before anything listens.
    let bridge_cfg = bridge_config(&cfg)?;
    let grpc_listener = TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("binding --listen {}", cfg.listen))?;
    let http_listener = TcpListener::bind(&cfg.http_listen)
        .await
        .with_context(|| format!("binding --http-listen {}", cfg.http_listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let operator_path = cfg.data_dir.join("operator.json");
    let operator = OperatorConfig {
        endpoint: local_url(grpc_addr),
        http_endpoint: local_url(http_addr),
        ca_certificate: pki.ca_cert_pem.clone(),
        ca_pin: pki.pin(),
        token: operator_token(&store, &operator_path).await?,
        advertised_endpoint: advertised_url(&cfg.advertise, grpc_addr),
        advertised_http_endpoint: advertised_url(&cfg.advertise, http_addr),
    };
    write_private(
        &operator_path,
        serde_json::to_string_pretty(&operator)?.as_bytes(),
    )?;

    println!("tether coordinator {}", env!("CARGO_PKG_VERSION"));
    println!("gRPC listening on {grpc_addr} ({})", operator.endpoint);
    println!(
        "HTTPS listening on {http_addr} ({})",
        operator.http_endpoint
    );
    println!("CA pin: {}", operator.ca_pin);
    println!("operator config: {}", operator_path.display());
    info!(grpc = %grpc_addr, https = %http_addr, data_dir = %cfg.data_dir.display(), "coordinator started");

    let mut coordinator = Coordinator::new(store, pki.clone());
    coordinator.timeouts = cfg.timeouts;
    let core = Arc::new(coordinator);
    // Replicas on one PostgreSQL database wake each other's held polls.
    let replica_tasks = if core.store.dialect() == tether_store::Dialect::Postgres {
        let (bus, rx) = crate::replicas::Bus::new();
        let origin = bus.origin().to_string();
        core.attach_bus(bus);
        vec![
            tokio::spawn(crate::replicas::publish(
                core.store.clone(),
                origin.clone(),
                rx,
            )),
            tokio::spawn(crate::replicas::listen(
                core.clone(),
                origin,
                database.clone(),
            )),
        ]
    } else {
        Vec::new()
    };

    let sweeper = {
        let core = core.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                core.sweep().await;
            }
        })
    };

    let writer = tokio::spawn(core.clone().run_writer());
    let downloads = {
        let agent = crate::install::AgentDownload::load(cfg.agent_binary.as_deref());
        match &agent {
            Ok(a) => {
                info!(path = %a.path.display(), sha256 = %a.sha256, "serving the agent binary")
            }
            Err(e) => warn!(error = %e, "nodes cannot install from this coordinator"),
        }
        let script = crate::install::render_script(
            &operator.advertised_endpoint,
            &operator.advertised_http_endpoint,
            &operator.ca_pin,
            agent.as_ref().map(|a| a.sha256.as_str()).unwrap_or(""),
        );
        Arc::new(crate::http::Downloads {
            agent: agent.map_err(|e| e.to_string()),
            script,
        })
    };
    let http = tokio::spawn(crate::http::serve(http_listener, core.clone(), downloads));
    let bridge = bridge_cfg.map(|b| spawn_bridge(core.store.clone(), b));

    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &pki.server_chain_pem,
            &pki.server_key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&pki.ca_cert_pem))
        .client_auth_optional(true);
    let services = Services::new(core.clone());
    let stopping = core.clone();
    let shutdown = async move {
        shutdown.await;
        info!("stopping: releasing held polls");
        stopping.begin_shutdown();
    };
    let max = pb::MAX_MESSAGE_BYTES;
    let result = Server::builder()
        .tls_config(tls)?
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(pb::registration_server::RegistrationServer::new(
            services.clone(),
        ))
        .add_service(
            pb::agent_server::AgentServer::new(services.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            pb::operator_server::OperatorServer::new(services)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .serve_with_incoming_shutdown(
            // Small request/response exchanges: Nagle's algorithm against the
            // peer's delayed ACK would add ~40 ms to each.
            tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
                |s| s.and_then(|s| s.set_nodelay(true).map(|()| s)),
            ),
            shutdown,
        )
        .await;
    sweeper.abort();
    for t in replica_tasks {
        t.abort();
    }
    http.abort();
    writer.abort();
    // Pings noted since the last sweep.
    core.flush_pings().await;
    if let Some(b) = bridge {
        b.abort();
    }
    if let Err(e) = &result {
        warn!(error = %e, "gRPC server stopped with an error");
    }
    result.context("serving gRPC")?;
    info!("coordinator stopped");
    Ok(())
}
