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
use tonic::transport::Server;
use tracing::{info, warn};

use crate::core::Coordinator;
use crate::credentials::token_hash;
use crate::grpc::{Admit, Gate, Services};
use crate::pki::{Pki, write_private};
use tether_ssm::limits;
use tether_store::Store;
use tether_util::strict::{Policy, Unsafe};
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
    /// `--region`: the region named in ARNs.
    pub region: String,
    /// `--audit-log`: the audit mirror's file; None is `off`.
    pub audit_log: Option<PathBuf>,
    /// `--audit-sign-interval`: how often the audit chain's head is signed.
    pub audit_sign_interval: Duration,
    /// `--client-cert-lifetime`: how long agents' client certificates last.
    pub client_cert_lifetime: Duration,
    /// `--metrics-listen`: a plain-HTTP listener serving `/metrics` without
    /// authentication (loopback or a private network), if any.
    pub metrics_listen: Option<String>,
    /// `--console-session-lifetime`: how long a web console session lasts.
    pub console_session_lifetime: Duration,
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
        let known = store.operator_token(&token_hash(&old.token)).await?;
        if known.is_some_and(|t| t.user_name.is_none()) {
            return Ok(old.token);
        }
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    store
        .add_operator_token(&token_hash(&token), now_ms())
        .await?;
    Ok(token)
}

/// A fresh 12-digit account ID (never starting with 0, as AWS's).
fn new_account_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let first = rng.random_range(1..=9u8);
    let rest: String = (0..11)
        .map(|_| char::from(b'0' + rng.random_range(0..=9u8)))
        .collect();
    format!("{first}{rest}")
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

/// The private keys among the coordinator's files: readable by their owner only.
const SECRET_FILES: &[&str] = &[
    "ca.key",
    "signing.key",
    "access-keys.key",
    "server.key",
    crate::audit::chain::KEY_FILE,
];

/// StrictModes (see [`tether_util::strict`]) over everything the coordinator
/// trusts, before it reads any of it: the data directory and the secrets
/// directory (CA, signing and sealing keys, server key, `operator.json`)
/// with all they hold and every directory above them; the SQLite database
/// and its `-wal`/`-shm` files wherever `--database` puts them; the AWS
/// bridge's configuration. What does not exist yet is judged by the
/// directory it will be created in.
pub fn check_files(cfg: &ServeConfig, secrets_dir: &Path) -> Result<(), Unsafe> {
    let mut policy = Policy::new(nix::unistd::geteuid().as_raw());
    policy.check_tree(&cfg.data_dir, SECRET_FILES)?;
    // The CA and signing keys of every rotation generation (`*.key`) too.
    let mut secret_names: Vec<String> = SECRET_FILES.iter().map(|s| s.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(secrets_dir) {
        secret_names.extend(
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".key")),
        );
    }
    let names: Vec<&str> = secret_names.iter().map(String::as_str).collect();
    policy.check_tree(secrets_dir, &names)?;
    // SecureString key-encryption keys: every file is a secret.
    for key in crate::parameter_keys::Keyring::files(secrets_dir) {
        policy.check_file(&key, true)?;
    }
    if let Some(path) = sqlite_path(cfg) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            policy.check_file(Path::new(&name), false)?;
        }
    }
    if let Some(aws) = &cfg.aws_config {
        policy.check_file(aws, false)?;
    }
    Ok(())
}

/// The SQLite file the coordinator uses, if it uses one.
fn sqlite_path(cfg: &ServeConfig) -> Option<PathBuf> {
    match &cfg.database {
        None => Some(cfg.data_dir.join("tether.db")),
        Some(db) if tether_store::is_postgres_url(db) => None,
        Some(db) => Some(PathBuf::from(db.strip_prefix("sqlite://").unwrap_or(db))),
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
    check_files(&cfg, &secrets_dir).context("refusing to start")?;
    let pki = Arc::new(
        Pki::load_or_create_shared(&cfg.data_dir, &secrets_dir, &names).with_context(|| {
            format!(
                "preparing key material in {} (secrets in {})",
                cfg.data_dir.display(),
                secrets_dir.display()
            )
        })?,
    );
    // The audit key beside the other secrets (never in the database), and
    // the mirror: both usable before anything listens, or no start.
    let audit_key = crate::audit::AuditKey::load_or_create(&secrets_dir)
        .with_context(|| format!("preparing the audit key in {}", secrets_dir.display()))?;
    let audit_mirror = match &cfg.audit_log {
        None => None,
        Some(path) => Some(crate::audit::Mirror::open(path).with_context(|| {
            format!(
                "--audit-log {}: cannot use it for the audit mirror (name another file, or `off`)",
                path.display()
            )
        })?),
    };
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
    let metrics_listener = match &cfg.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --metrics-listen {addr}"))?,
        ),
        None => None,
    };
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    // The account ID: made by the first replica to start, kept in the database.
    let account = crate::account::Account {
        id: store
            .setting_or_init("account_id", &new_account_id())
            .await
            .context("reading the account ID")?,
        region: cfg.region.clone(),
    };
    let operator_path = cfg.data_dir.join("operator.json");
    let operator = OperatorConfig {
        endpoint: local_url(grpc_addr),
        http_endpoint: local_url(http_addr),
        ca_certificate: pki.ca_cert_pem(),
        ca_pin: pki.pin(),
        token: operator_token(&store, &operator_path).await?,
        advertised_endpoint: advertised_url(&cfg.advertise, grpc_addr),
        advertised_http_endpoint: advertised_url(&cfg.advertise, http_addr),
        account_id: account.id.clone(),
        region: account.region.clone(),
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
    if let Some(l) = &metrics_listener {
        println!(
            "metrics listening on {} (plain HTTP, no authentication: /metrics)",
            l.local_addr()?
        );
    }
    println!("CA pin: {}", operator.ca_pin);
    println!("operator config: {}", operator_path.display());
    info!(grpc = %grpc_addr, https = %http_addr, data_dir = %cfg.data_dir.display(), "coordinator started");

    let replica = format!(
        "{}:{}",
        hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into()),
        grpc_addr.port()
    );
    let trail = Arc::new(
        crate::audit::Trail::new(store.clone(), account.clone(), replica)
            .with_key(audit_key)
            .with_mirror(audit_mirror),
    );
    // The SecureString keys: every key the database names must be in the
    // secrets directory as the database knows it, or the start stops here.
    let parameter_keys =
        crate::parameter_keys::Keyring::load(&secrets_dir, &store, tether_util::time::now_ms())
            .await
            .context("refusing to start: SecureString parameter keys")?;
    let mut coordinator = Coordinator::new(store, pki.clone());
    coordinator.parameter_keys = Some(Arc::new(parameter_keys));
    coordinator.timeouts = cfg.timeouts;
    coordinator.client_cert_lifetime = cfg.client_cert_lifetime;
    coordinator.console = crate::sessions::Sessions::new(cfg.console_session_lifetime);
    coordinator.account = account;
    coordinator.audit = trail.clone();
    coordinator.operator_config = Some(OperatorConfig {
        token: String::new(),
        ..operator.clone()
    });
    coordinator.operator_config_path = Some(operator_path.clone());
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

    // Agents are admitted from memory: deregistrations made on any replica
    // are looked for every second.
    let deregistrations = {
        let core = core.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::core::admission::WATCH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                core.forget_deregistered().await;
            }
        })
    };
    // Readiness: a replica that cannot reach its database says so on
    // /readyz and sends its agents elsewhere until it can again.
    let readiness = {
        let core = core.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(limits::READINESS_CHECK_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                core.check_readiness().await;
            }
        })
    };
    // Trust keys: a rotation step taken on any replica (rotation.json in
    // the shared secrets directory) is in force here within an interval.
    let trust_reloader = {
        let pki = pki.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(limits::TRUST_RELOAD_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let pki = pki.clone();
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || pki.reload_if_changed()).await
                {
                    tracing::error!(error = %e, "the trust keys could not be reloaded; the ones loaded stay in force");
                }
            }
        })
    };
    let writer = tokio::spawn(core.clone().run_writer());
    let audit_flusher = tokio::spawn(trail.clone().run_flusher());
    let audit_signer = tokio::spawn(trail.clone().run_signer(cfg.audit_sign_interval));
    // The agent download is read and hashed beside the start, not before it.
    let (set_downloads, downloads) = tokio::sync::watch::channel(None);
    let loading = {
        let (binary, operator) = (cfg.agent_binary.clone(), operator.clone());
        tokio::task::spawn_blocking(move || {
            let agent = crate::install::AgentDownload::load(binary.as_deref());
            match &agent {
                Ok(a) => {
                    info!(path = %a.path.display(), sha256 = %a.sha256, "serving the agent binary")
                }
                Err(e) => warn!(error = %e, "nodes cannot install from this coordinator"),
            }
            set_downloads.send_replace(Some(Arc::new(crate::http::Downloads {
                agent: agent.map_err(|e| e.to_string()),
                endpoint: operator.advertised_endpoint.clone(),
                http_endpoint: operator.advertised_http_endpoint.clone(),
            })));
        })
    };
    let http = tokio::spawn(crate::http::serve(http_listener, core.clone(), downloads));
    let metrics_plain =
        metrics_listener.map(|l| tokio::spawn(crate::metrics::serve_plain(l, core.clone())));
    let bridge = bridge_cfg.map(|b| spawn_bridge(core.store.clone(), b));

    let (incoming, acceptor) = crate::conn::grpc_incoming(
        grpc_listener,
        Arc::new(crate::conn::TlsSource::new(
            pki.clone(),
            crate::conn::grpc_tls_config,
        )?),
    );
    let services = Services::new(core.clone());
    let stopping = core.clone();
    let shutdown = async move {
        shutdown.await;
        info!("stopping: releasing held polls");
        stopping.begin_shutdown();
    };
    // Message limits by what the caller proved: nothing (registration: an
    // activation and a CSR), a client certificate (agents: reports carry step
    // output), an operator token (a request body). Gates check the
    // credential before a message is read.
    let max = pb::MAX_MESSAGE_BYTES;
    let agents = pb::agent_server::AgentServer::new(services.clone())
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let operators = pb::operator_server::OperatorServer::new(services.clone())
        .max_decoding_message_size(limits::MAX_OPERATOR_MESSAGE_BYTES)
        .max_encoding_message_size(max);
    let result = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(Gate::new(
            pb::registration_server::RegistrationServer::new(services)
                .max_decoding_message_size(limits::MAX_UNAUTHENTICATED_MESSAGE_BYTES),
            core.clone(),
            Admit::Anyone,
        ))
        .add_service(Gate::new(agents, core.clone(), Admit::Agents))
        .add_service(Gate::new(operators, core.clone(), Admit::Operators))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    acceptor.abort();
    loading.abort();
    sweeper.abort();
    trust_reloader.abort();
    readiness.abort();
    deregistrations.abort();
    for t in replica_tasks {
        t.abort();
    }
    http.abort();
    if let Some(m) = metrics_plain {
        m.abort();
    }
    writer.abort();
    audit_signer.abort();
    // Reads' records still queued are appended before the process ends.
    trail.stop();
    if tokio::time::timeout(Duration::from_secs(5), audit_flusher)
        .await
        .is_err()
    {
        warn!("audit records still queued at shutdown were not all appended");
    }
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
