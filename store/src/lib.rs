//! Durable state: activations, managed instances, commands, invocations, in
//! SQLite (the embedded default) or PostgreSQL (several replicas on one database).
//!
//! The store knows SQL and nothing of the SSM JSON shapes; it hands plain rows to
//! the action layer. Every multi-row change is one transaction, so a coordinator
//! killed at any instant leaves either the old or the new state, never half.
//!
//! Both engines run the same statements through sqlx's `Any` driver. They are
//! written in the SQL both accept (`ON CONFLICT`, `COALESCE`, `CASE`, 64-bit
//! integers for flags); [`sql`] makes the two spellings that differ —
//! placeholders (`?` for SQLite, `$n` for PostgreSQL) and the two-argument
//! `GREATEST` (SQLite's scalar `MAX`). Each engine has its own migrations:
//! `migrations/sqlite/` and `migrations/postgres/`.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};

use tether_ssm::state::{self, Detail};
use tether_ssm::{Rate, limits};

mod documents;
mod run_control;
pub use documents::{DocumentRow, DocumentVersionRow, VersionConflict};
pub use run_control::{CancelOutcome, OutputChunk};
mod inventory;
pub use inventory::{AssociationRow, AssociationStatusRow, InventoryPut, InventoryRow};
mod access_keys;
pub mod bench;
mod bridge;
pub use access_keys::AccessKeyRow;
mod audit;
mod parameters;
mod releases;
mod users;
pub use audit::{AuditAttribute, AuditHead, AuditQuery, AuditRecord, GENESIS_HASH, Seal};
pub use bridge::{AwsInstanceRow, AwsInvocationRow, BridgePending};
pub use parameters::{
    LabelOutcome, ParameterKeyRow, ParameterRow, ParameterVersionRow, PutOutcome, WrappedKeyRow,
};
pub use releases::{PartOutcome, RELEASE_AVAILABLE, RELEASE_UPLOADING, ReleaseRow};
pub use users::{OperatorTokenRow, UserDeletion, UserRow};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(sqlx::Error),
    /// The disk holding the database is full (SQLite `SQLITE_FULL`,
    /// PostgreSQL `disk_full`): the write was rolled back, nothing half-stored.
    #[error(
        "the coordinator's database is out of disk space ({0}); nothing of this request was stored: free space on its disk and retry"
    )]
    DiskFull(sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// `--database` names neither a PostgreSQL URL nor a SQLite path.
    #[error(
        "--database {0:?}: expected a postgres:// (or postgresql://) URL, or a SQLite file path"
    )]
    BadDatabase(String),
    /// Registration refused; the message is shown to the agent.
    #[error("{0}")]
    Registration(String),
    /// A stored value that does not read back: the row is named, and nothing
    /// is guessed in its place.
    #[error("stored {row} is corrupt: {why}")]
    Corrupt { row: String, why: String },
    /// The SQLite file (or its -wal, -shm) could not be made owner-only.
    #[error("{path}: cannot make it owner-only (0600): {source}")]
    FileMode {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let full = e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| is_disk_full_code(&code));
        if full {
            StoreError::DiskFull(e)
        } else {
            StoreError::Db(e)
        }
    }
}

/// SQLite's `SQLITE_FULL` (13, also as the low byte of an extended code)
/// and PostgreSQL's `disk_full` (53100).
fn is_disk_full_code(code: &str) -> bool {
    code == "53100" || code.parse::<i64>().is_ok_and(|c| c & 0xff == 13)
}

/// A storage failure, as the SSM API reports it: the service's fault, logged
/// here because the caller sees only its summary.
impl From<StoreError> for tether_ssm::ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage error");
        tether_ssm::ApiError::new("InternalServerError", format!("storage error: {e}"))
    }
}

/// Whether `--database` names a PostgreSQL server.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ActivationRow {
    pub activation_id: String,
    pub code_salt: Vec<u8>,
    pub code_hash: Vec<u8>,
    pub description: String,
    pub default_instance_name: String,
    pub iam_role: String,
    pub registration_limit: i64,
    pub registrations_count: i64,
    pub expiration_ms: i64,
    pub created_ms: i64,
    pub deleted_ms: Option<i64>,
    pub tags_json: String,
}

#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct InstanceRow {
    pub instance_id: String,
    pub activation_id: String,
    pub name: String,
    pub iam_role: String,
    pub registration_ms: i64,
    pub last_ping_ms: Option<i64>,
    pub platform_type: String,
    pub platform_name: String,
    pub platform_version: String,
    pub computer_name: String,
    pub ip_address: String,
    pub agent_version: String,
    pub deregistered_ms: Option<i64>,
    pub tags_json: String,
    /// Set for an instance that AWS SSM manages and the bridge reaches.
    #[sqlx(skip)]
    pub aws: Option<AwsFacts>,
}

/// What AWS says of a bridged instance beyond the common columns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AwsFacts {
    /// The bridge account's name in the config.
    pub account: String,
    /// `EC2Instance` or `ManagedInstance`.
    pub resource_type: String,
    /// AWS's PingStatus.
    pub ping_status: String,
}

/// An agent heard from at `at_ms`, with the host facts it sent then, for
/// [`Store::pings`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    pub instance_id: String,
    pub at_ms: i64,
    pub host: Option<HostInfo>,
}

/// What an agent says about its host on every poll.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostInfo {
    pub platform_type: String,
    pub platform_name: String,
    pub platform_version: String,
    pub computer_name: String,
    pub ip_address: String,
    pub agent_version: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CommandRow {
    pub command_id: String,
    pub document_name: String,
    pub document_version: String,
    pub document_hash: String,
    pub document_content: String,
    pub parameters_json: String,
    pub resolved_json: String,
    pub comment: String,
    pub requested_ms: i64,
    pub timeout_seconds: i64,
    pub max_concurrency: String,
    pub max_errors: String,
    /// MaxConcurrency resolved against the target count: invocations delivered at once.
    pub concurrency_limit: i64,
    pub instance_ids_json: String,
    pub targets_json: String,
    pub status: String,
    pub status_details: String,
    pub target_count: i64,
    pub completed_count: i64,
    pub error_count: i64,
    pub delivery_timed_out_count: i64,
    /// `DocumentVersion` as the sender named it (`$DEFAULT` when it named
    /// none); `document_version` is the version it resolved to. Empty for
    /// commands stored before this was kept.
    pub requested_document_version: String,
    /// The ARN of the principal that sent it (empty for commands stored
    /// before this was kept).
    pub requested_by: String,
    /// The parameter references of its parameters, each with the version it
    /// resolved to (JSON list of `{"Reference", "Name", "Version",
    /// "Secure"}`); never a value.
    pub references_json: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct InvocationRow {
    pub command_id: String,
    pub instance_id: String,
    pub instance_name: String,
    pub status: String,
    pub status_details: String,
    pub requested_ms: i64,
    pub delivered_ms: Option<i64>,
    pub acked_ms: Option<i64>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub response_code: i64,
}

/// What a listing of invocations shows of their command: everything but
/// its document, parameters and targets.
#[derive(Clone, Debug)]
pub struct CommandBrief {
    pub command_id: String,
    pub document_name: String,
    /// The version it resolved to.
    pub document_version: String,
    pub document_hash: String,
    /// The version as the sender named it (see [`CommandRow`]).
    pub requested_document_version: String,
    pub comment: String,
    /// The ARN of the principal that sent it (see [`CommandRow`]).
    pub requested_by: String,
}

impl From<&CommandRow> for CommandBrief {
    fn from(c: &CommandRow) -> Self {
        CommandBrief {
            command_id: c.command_id.clone(),
            document_name: c.document_name.clone(),
            document_version: c.document_version.clone(),
            document_hash: c.document_hash.clone(),
            requested_document_version: c.requested_document_version.clone(),
            comment: c.comment.clone(),
            requested_by: c.requested_by.clone(),
        }
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PluginRow {
    pub seq: i64,
    pub name: String,
    pub status: String,
    pub status_details: String,
    pub response_code: i64,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    #[sqlx(try_from = "IntFlag")]
    pub stdout_truncated: bool,
    #[sqlx(try_from = "IntFlag")]
    pub stderr_truncated: bool,
}

/// A 0/1 column read as a flag. SQLite has no boolean type, and sqlx's `Any`
/// driver reads `bool` only from a real boolean, so flags are stored as 0/1
/// integers on both engines and read through this.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IntFlag(i64);

impl sqlx::Type<sqlx::Any> for IntFlag {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <i64 as sqlx::Type<sqlx::Any>>::type_info()
    }
    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <i64 as sqlx::Type<sqlx::Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for IntFlag {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(IntFlag(<i64 as sqlx::Decode<'r, sqlx::Any>>::decode(
            value,
        )?))
    }
}

impl From<IntFlag> for bool {
    fn from(f: IntFlag) -> bool {
        f.0 != 0
    }
}

/// A step's outcome as reported by an agent.
#[derive(Clone, Debug)]
pub struct PluginResult {
    pub name: String,
    pub detail: Detail,
    pub response_code: i64,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

/// An invocation's final outcome.
#[derive(Clone, Debug)]
pub struct InvocationResult {
    pub detail: Detail,
    pub response_code: i64,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub plugins: Vec<PluginResult>,
}

/// Filters of the list verbs, already validated by the action layer.
#[derive(Clone, Debug, Default)]
pub struct CommandQuery {
    pub command_id: Option<String>,
    pub instance_id: Option<String>,
    pub invoked_after_ms: Option<i64>,
    pub invoked_before_ms: Option<i64>,
    pub status: Option<String>,
    pub document_name: Option<String>,
    /// ExecutionStage: Some(true) only terminal, Some(false) only still executing.
    pub complete: Option<bool>,
    /// Only the commands this principal (an ARN) sent.
    pub requested_by: Option<String>,
    /// Skip this many rows (the page token).
    pub offset: i64,
    pub limit: i64,
}

/// The final invocation statuses [`Store::finished_counts`] counts by.
pub const FINAL_STATUSES: [&str; 4] = ["Success", "Failed", "TimedOut", "Cancelled"];

/// Invocations moved into a final status within one transaction, added to
/// the store's counts once it has committed.
#[derive(Debug, Default)]
struct Moved([u64; FINAL_STATUSES.len()]);

impl Moved {
    fn add(&mut self, detail: Detail, n: u64) {
        if let Some(i) = FINAL_STATUSES.iter().position(|s| *s == detail.status()) {
            self.0[i] += n;
        }
    }
}

/// What storing a result did (see [`finish_in`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finished {
    /// The invocation was already final (the result is a late duplicate).
    No,
    /// An unfinished invocation reached its final status.
    Now,
    /// A provisional verdict of the coordinator's (Delivery Timed Out of an
    /// envelope handed over, or a silent agent presumed lost) was replaced by
    /// the agent's real result: final already, not again.
    Replaced,
}

/// A PostgreSQL `LISTEN` (see [`Store::listen`]).
#[derive(Debug)]
pub struct Listener {
    inner: sqlx::postgres::PgListener,
}

impl Listener {
    /// The next notification's payload; `None` when the connection dropped
    /// (it is made again on the next call, and what was announced meanwhile
    /// is lost).
    pub async fn recv(&mut self) -> Result<Option<String>> {
        Ok(self
            .inner
            .try_recv()
            .await?
            .map(|n| n.payload().to_string()))
    }
}

/// The coordinator's database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// The PostgreSQL URL it was opened with (for tests that open it twice).
    #[cfg(test)]
    url: Option<String>,
    /// PostgreSQL: the connections holding this replica's session advisory
    /// locks (see [`Store::lead`]); a lock lives as long as its connection.
    leads: std::sync::Arc<tokio::sync::Mutex<Vec<HeldLead>>>,
    /// The last verdict of [`Store::lead`] for each work, for metrics:
    /// 0 never asked, 1 not this replica, 2 this replica.
    lead_verdicts: std::sync::Arc<[std::sync::atomic::AtomicU8; 3]>,
    /// Invocations this store moved into a final status since it was
    /// opened (see [`Store::finished_counts`]).
    finished: std::sync::Arc<[std::sync::atomic::AtomicU64; FINAL_STATUSES.len()]>,
    /// A connection of its own for [`Store::check`], so that a
    /// busy pool never reads as an unreachable database; made again when it
    /// fails.
    probe: std::sync::Arc<tokio::sync::Mutex<Probe>>,
}

/// The URL [`Store::check`] connects to, and its connection.
#[derive(Default)]
struct Probe {
    url: String,
    conn: Option<sqlx::AnyConnection>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

/// A lead this replica holds, with the connection that holds its lock.
type HeldLead = (Lead, sqlx::pool::PoolConnection<sqlx::Any>);

/// Work that one replica at a time does, each under its own advisory lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lead {
    /// Timeout sweeps and history pruning.
    Sweep,
    /// The AWS bridge.
    Bridge,
    /// Signing the audit trail's head.
    AuditSign,
}

impl Lead {
    /// Every kind of work, in a fixed order.
    pub const ALL: [Lead; 3] = [Lead::Sweep, Lead::Bridge, Lead::AuditSign];

    /// Its name in metrics (`tether_replica_leader{role=…}`).
    pub fn name(self) -> &'static str {
        match self {
            Lead::Sweep => "sweep",
            Lead::Bridge => "bridge",
            Lead::AuditSign => "audit_sign",
        }
    }

    fn index(self) -> usize {
        match self {
            Lead::Sweep => 0,
            Lead::Bridge => 1,
            Lead::AuditSign => 2,
        }
    }

    fn key(self) -> i64 {
        match self {
            Lead::Sweep => WRITE_LOCK + 1,
            Lead::Bridge => WRITE_LOCK + 2,
            Lead::AuditSign => WRITE_LOCK + 3,
        }
    }
}

/// Which SQL engine a store (or one of its connections) speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The engine behind a connection of the pool.
    pub(crate) fn of(conn: &sqlx::AnyConnection) -> Dialect {
        if conn.backend_name() == "PostgreSQL" {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        }
    }
}

/// A statement as `d` spells it. Statements are written for SQLite with `?`
/// (or `?N`) placeholders and `GREATEST(a, b)`; PostgreSQL gets `$N`, SQLite
/// its scalar `MAX(a, b)`. Quoted text is left alone.
pub(crate) fn sql(
    d: Dialect,
    text: impl Into<Cow<'static, str>>,
) -> AssertSqlSafe<Cow<'static, str>> {
    let text = text.into();
    let text = match d {
        Dialect::Sqlite if text.contains("GREATEST(") => {
            Cow::Owned(text.replace("GREATEST(", "MAX("))
        }
        Dialect::Sqlite => text,
        Dialect::Postgres => Cow::Owned(postgres_placeholders(&text)),
    };
    AssertSqlSafe(text)
}

/// `?` becomes `$1`, `$2`, … in order; `?N` becomes `$N`; nothing inside quotes changes.
fn postgres_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut next = 0;
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                out.push('$');
                if chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                    while let Some(d) = chars.next_if(|d| d.is_ascii_digit()) {
                        out.push(d);
                    }
                } else {
                    next += 1;
                    out.push_str(&next.to_string());
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Rows per multi-row INSERT (4 parameters each: well under both engines' limits).
const INSERT_ROWS: usize = 500;

/// Connections per pool: SQLite serialises writers anyway; PostgreSQL
/// replicas share the server's `max_connections`.
const SQLITE_POOL: u32 = 8;
/// The PostgreSQL advisory lock that serialises writers ("tether" + 1).
const WRITE_LOCK: i64 = 0x0074_6574_6865_7201;
const POSTGRES_POOL: u32 = 16;
/// A PostgreSQL connection idle this long is pinged before it is used.
const POSTGRES_PING_IDLE: Duration = Duration::from_secs(1);

const ACTIVATION_COLUMNS: &str = "activation_id, code_salt, code_hash, description, \
    default_instance_name, iam_role, registration_limit, registrations_count, expiration_ms, \
    created_ms, deleted_ms, tags_json";
const INSTANCE_COLUMNS: &str = "instance_id, activation_id, name, iam_role, registration_ms, \
    last_ping_ms, platform_type, platform_name, platform_version, computer_name, ip_address, \
    agent_version, deregistered_ms, tags_json";
const COMMAND_COLUMNS: &str = "command_id, document_name, document_version, document_hash, \
    document_content, parameters_json, resolved_json, comment, requested_ms, timeout_seconds, \
    max_concurrency, max_errors, concurrency_limit, instance_ids_json, targets_json, status, status_details, \
    target_count, completed_count, error_count, delivery_timed_out_count, requested_document_version, requested_by, \
    references_json";
const INVOCATION_COLUMNS: &str = "i.command_id, i.instance_id, i.instance_name, i.status, \
    i.status_details, i.requested_ms, i.delivered_ms, i.acked_ms, i.start_ms, i.end_ms, \
    i.response_code";

/// Makes the SQLite database at `path` owner-only before SQLite opens it: a
/// missing file is created here with mode 0600 (SQLite would create it 0644
/// less the umask), and an existing one, or a companion file left by an
/// earlier run, is narrowed to 0600. SQLite gives the `-wal` and `-shm` files
/// it creates the database file's mode, so they follow. Symbolic links are
/// left alone (the coordinator's StrictModes check judges where they lead).
pub fn owner_only(path: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::FileMode { path, source }
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(path)(e)),
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        match std::fs::symlink_metadata(file) {
            Ok(m) if m.file_type().is_file() && m.mode() & 0o077 != 0 => {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
                    .map_err(err(file))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(file)(e)),
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the SQLite database file and brings its
    /// schema up to date. The file and its `-wal`, `-shm` and `-journal`
    /// companions are owner-only (0600) wherever they are: see [`owner_only`].
    pub async fn open(path: &Path) -> Result<Store> {
        owner_only(path)?;
        const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'/')
            .remove(b'.')
            .remove(b'-')
            .remove(b'_');
        let url = format!(
            "sqlite://{}?mode=rwc",
            percent_encoding::utf8_percent_encode(&path.to_string_lossy(), PATH)
        );
        Self::connect(&url).await
    }

    /// Opens the database `--database` names: a `postgres://` (or
    /// `postgresql://`) URL, or a SQLite file path (created if missing).
    pub async fn open_url(database: &str) -> Result<Store> {
        if is_postgres_url(database) {
            Self::connect(database).await
        } else if database.contains("://") && !database.starts_with("sqlite://") {
            Err(StoreError::BadDatabase(database.to_string()))
        } else {
            Self::open(Path::new(
                database.strip_prefix("sqlite://").unwrap_or(database),
            ))
            .await
        }
    }

    async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let opts: AnyConnectOptions = url.parse()?;
        let dialect = if is_postgres_url(url) {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        };
        let pool = match dialect {
            Dialect::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(SQLITE_POOL)
                    // A SQLite connection is a file handle, not a socket that
                    // can hang up: sqlx's ping before every acquire (a round
                    // trip to the connection's thread per statement) buys
                    // nothing.
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    // A write whose COMMIT failed (a full disk) may leave the
                    // connection inside a transaction SQLite already rolled
                    // back, so sqlx's ROLLBACK fails and every later BEGIN
                    // on it would be refused: such a connection is closed
                    // (the ping first runs the rollback queued on drop).
                    .after_release(|conn, _| {
                        Box::pin(async move {
                            // Not inside a transaction (the thread counts
                            // them as it runs BEGIN, COMMIT and ROLLBACK): no
                            // rollback can be queued, and nothing to check.
                            if !sqlx::Connection::is_in_transaction(&*conn) {
                                return Ok(true);
                            }
                            sqlx::Connection::ping(&mut *conn).await?;
                            let stuck = sqlx::Connection::is_in_transaction(&*conn);
                            if stuck {
                                tracing::warn!(
                                    "closing a database connection left inside a failed transaction"
                                );
                            }
                            Ok(!stuck)
                        })
                    })
                    .connect_with(opts)
                    .await?
            }
            Dialect::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(POSTGRES_POOL)
                    .acquire_timeout(Duration::from_secs(30))
                    // A connection idle for a while is pinged before use (the
                    // server may have restarted); one in steady use is not,
                    // which spares a round trip to the server per statement.
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            // One that does not answer is closed, and
                            // another is taken.
                            Ok(meta.idle_for < POSTGRES_PING_IDLE
                                || sqlx::Connection::ping(&mut *conn).await.is_ok())
                        })
                    })
                    .connect_with(opts)
                    .await?
            }
        };
        match dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Store {
            pool,
            dialect,
            #[cfg(test)]
            url: (dialect == Dialect::Postgres).then(|| url.to_string()),
            leads: Default::default(),
            lead_verdicts: Default::default(),
            finished: Default::default(),
            probe: std::sync::Arc::new(tokio::sync::Mutex::new(Probe {
                url: url.to_string(),
                conn: None,
            })),
        })
    }

    /// How many invocations this store (this replica, since it opened the
    /// database) moved into each final status, by `Status`: every path
    /// counts — agents' results, the AWS bridge's, the sweeps' verdicts,
    /// cancellations, deregistrations, MaxErrors' Terminated — each
    /// invocation once, when its transaction committed; a late result that
    /// replaces a provisional verdict is not counted again.
    pub fn finished_counts(&self) -> [(&'static str, u64); FINAL_STATUSES.len()] {
        std::array::from_fn(|i| {
            (
                FINAL_STATUSES[i],
                self.finished[i].load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }

    /// Adds what a committed transaction moved to [`Store::finished_counts`].
    fn count_finished(&self, moved: &Moved) {
        for (n, c) in moved.0.iter().zip(self.finished.iter()) {
            if *n > 0 {
                c.fetch_add(*n, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Whether this replica does `work` now. Always on SQLite (one
    /// coordinator per file). On PostgreSQL, the replica that holds the
    /// work's session advisory lock keeps it, checking its connection each
    /// time; the others try to take it, which succeeds once its holder's
    /// connection is gone.
    pub async fn lead(&self, work: Lead) -> Result<bool> {
        let verdict = self.lead_once(work).await;
        let noted = match &verdict {
            Ok(true) => 2,
            _ => 1,
        };
        self.lead_verdicts[work.index()].store(noted, std::sync::atomic::Ordering::Relaxed);
        verdict
    }

    /// Whether this replica did each work at its last [`Store::lead`]
    /// (only the works it was asked about: a replica without an AWS bridge
    /// never asks for its lead).
    pub fn leads(&self) -> Vec<(Lead, bool)> {
        Lead::ALL
            .into_iter()
            .filter_map(|w| {
                match self.lead_verdicts[w.index()].load(std::sync::atomic::Ordering::Relaxed) {
                    0 => None,
                    v => Some((w, v == 2)),
                }
            })
            .collect()
    }

    async fn lead_once(&self, work: Lead) -> Result<bool> {
        if self.dialect == Dialect::Sqlite {
            return Ok(true);
        }
        let mut leads = self.leads.lock().await;
        let held = leads.iter().position(|(w, _)| *w == work);
        if let Some(i) = held {
            let conn: &mut sqlx::AnyConnection = &mut leads[i].1;
            if sqlx::query("SELECT 1").execute(conn).await.is_ok() {
                return Ok(true);
            }
            // Never back into the pool: if it still lives it holds the lock.
            let (_, conn) = leads.swap_remove(i);
            let _ = conn.close().await;
        }
        let mut conn = self.pool.acquire().await?;
        let got: bool =
            sqlx::query_scalar::<_, bool>(sql(self.dialect, "SELECT pg_try_advisory_lock(?)"))
                .bind(work.key())
                .fetch_one(&mut *conn)
                .await?;
        if got {
            leads.push((work, conn));
        }
        Ok(got)
    }

    /// Announces `payload` on a PostgreSQL notification channel (nothing on SQLite).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        if self.dialect == Dialect::Postgres {
            sqlx::query(sql(self.dialect, "SELECT pg_notify(?, ?)"))
                .bind(channel)
                .bind(payload)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Listens on a PostgreSQL notification channel, on a connection of its
    /// own to `database_url` (the other end of [`Store::notify`]).
    pub async fn listen(database_url: &str, channel: &str) -> Result<Listener> {
        let mut inner = sqlx::postgres::PgListener::connect(database_url).await?;
        inner.listen(channel).await?;
        Ok(Listener { inner })
    }

    /// Whether the database answers a trivial query, over a connection kept
    /// for this alone on both engines: a saturated pool is not an
    /// unreachable database (10,000 agents reconnecting at once queue
    /// behind the pool for seconds; through the pool this check called a
    /// busy SQLite coordinator unready and sent its agents away).
    pub async fn check(&self) -> Result<()> {
        let mut probe = self.probe.lock().await;
        let url = probe.url.clone();
        let mut conn = match probe.conn.take() {
            Some(c) => c,
            None => {
                use sqlx::Connection;
                let mut conn = sqlx::AnyConnection::connect(&url).await?;
                if self.dialect == Dialect::Sqlite {
                    conn.execute("PRAGMA busy_timeout = 1000;").await?;
                }
                conn
            }
        };
        // On SQLite, a read of the schema: the file itself answers (in WAL
        // mode a reader waits for no writer).
        let probe_sql = match self.dialect {
            Dialect::Sqlite => "SELECT count(*) FROM sqlite_master",
            Dialect::Postgres => "SELECT 1",
        };
        sqlx::query(probe_sql).execute(&mut conn).await?;
        // Kept only once it answered: a failed one is made again next time.
        probe.conn = Some(conn);
        Ok(())
    }

    /// Which engine this store runs on.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A write transaction, serialised with every other writer — the
    /// store's statements read-then-write assuming that. SQLite takes its
    /// write lock at BEGIN (IMMEDIATE): a deferred transaction that reads
    /// first and writes later fails with SQLITE_BUSY_SNAPSHOT when another
    /// writer got in between, and busy_timeout cannot retry that.
    /// PostgreSQL takes a transaction-scoped advisory lock, which serialises
    /// the writers of every replica on the database. Every multi-statement
    /// write uses this.
    pub(crate) async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.dialect {
            Dialect::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT pg_advisory_xact_lock({WRITE_LOCK})"
                )))
                .execute(&mut *tx)
                .await?;
                Ok(tx)
            }
        }
    }

    // ----- activations -----

    pub async fn insert_activation(&self, a: &ActivationRow) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            format!(
                "INSERT INTO activations ({ACTIVATION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
            ),
        ))
        .bind(&a.activation_id)
        .bind(&a.code_salt)
        .bind(&a.code_hash)
        .bind(&a.description)
        .bind(&a.default_instance_name)
        .bind(&a.iam_role)
        .bind(a.registration_limit)
        .bind(a.registrations_count)
        .bind(a.expiration_ms)
        .bind(a.created_ms)
        .bind(a.deleted_ms)
        .bind(&a.tags_json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn activation(&self, id: &str) -> Result<Option<ActivationRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!("SELECT {ACTIVATION_COLUMNS} FROM activations WHERE activation_id = ?"),
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Live (not deleted) activations, oldest first.
    pub async fn activations(&self) -> Result<Vec<ActivationRow>> {
        Ok(sqlx::query_as(sql(self.dialect, format!(
            "SELECT {ACTIVATION_COLUMNS} FROM activations WHERE deleted_ms IS NULL ORDER BY created_ms, activation_id"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks an activation deleted; false if there was no live one.
    pub async fn delete_activation(&self, id: &str, now_ms: i64) -> Result<bool> {
        let r = sqlx::query(sql(
            self.dialect,
            "UPDATE activations SET deleted_ms = ? WHERE activation_id = ? AND deleted_ms IS NULL",
        ))
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Registers a new instance under an activation, counting it against the
    /// limit in the same transaction so concurrent registrations cannot exceed it.
    pub async fn register_instance(&self, inst: &InstanceRow, now_ms: i64) -> Result<()> {
        let mut tx = self.write().await?;
        let claimed = sqlx::query(sql(
            self.dialect,
            "UPDATE activations SET registrations_count = registrations_count + 1 \
             WHERE activation_id = ? AND deleted_ms IS NULL AND expiration_ms > ? \
             AND registrations_count < registration_limit",
        ))
        .bind(&inst.activation_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() != 1 {
            return Err(StoreError::Registration(format!(
                "activation {} has reached its registration limit",
                inst.activation_id
            )));
        }
        sqlx::query(sql(
            self.dialect,
            format!(
                "INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            ),
        ))
        .bind(&inst.instance_id)
        .bind(&inst.activation_id)
        .bind(&inst.name)
        .bind(&inst.iam_role)
        .bind(inst.registration_ms)
        .bind(inst.last_ping_ms)
        .bind(&inst.platform_type)
        .bind(&inst.platform_name)
        .bind(&inst.platform_version)
        .bind(&inst.computer_name)
        .bind(&inst.ip_address)
        .bind(&inst.agent_version)
        .bind(inst.deregistered_ms)
        .bind(&inst.tags_json)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- instances -----

    pub async fn instance(&self, id: &str) -> Result<Option<InstanceRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?"),
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Registered (not deregistered) instances, by ID.
    pub async fn instances(&self) -> Result<Vec<InstanceRow>> {
        Ok(sqlx::query_as(sql(self.dialect, format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE deregistered_ms IS NULL ORDER BY instance_id"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Replaces a live instance's tags; false if it is not registered.
    pub async fn set_instance_tags(&self, id: &str, tags_json: &str) -> Result<bool> {
        let r = sqlx::query(sql(
            self.dialect,
            "UPDATE instances SET tags_json = ? WHERE instance_id = ? AND deregistered_ms IS NULL",
        ))
        .bind(tags_json)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The sealing public key (hex) the node's agent last sent, if any.
    pub async fn sealing_key(&self, instance_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(sql(
            self.dialect,
            "SELECT sealing_public_key FROM instance_keys WHERE instance_id = ?",
        ))
        .bind(instance_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Keeps the sealing public key (hex) the node's agent sent.
    pub async fn set_sealing_key(
        &self,
        instance_id: &str,
        key_hex: &str,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO instance_keys (instance_id, sealing_public_key, updated_ms) VALUES (?, ?, ?) \
             ON CONFLICT (instance_id) DO UPDATE SET sealing_public_key = excluded.sealing_public_key, \
             updated_ms = excluded.updated_ms",
        ))
        .bind(instance_id)
        .bind(key_hex)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// How many of Tether's own instances are registered (not
    /// deregistered), and how many of those were heard from since
    /// `online_since_ms` (PingStatus Online), for metrics: one statement.
    pub async fn agent_counts(&self, online_since_ms: i64) -> Result<(i64, i64)> {
        let (registered, online): (i64, Option<i64>) = sqlx::query_as(sql(
            self.dialect,
            "SELECT COUNT(*), SUM(CASE WHEN last_ping_ms >= ? THEN 1 ELSE 0 END) \
             FROM instances WHERE deregistered_ms IS NULL",
        ))
        .bind(online_since_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok((registered, online.unwrap_or(0)))
    }

    /// Stores many agents' last-heard times at once (never moving one back),
    /// with the host facts of those that sent them: one transaction, so that
    /// 10,000 agents reconnecting at once cost one write turn per sweep
    /// instead of 10,000 statements contending for the pool and the lock.
    pub async fn pings(&self, seen: &[Seen]) -> Result<()> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for s in seen {
            match &s.host {
                Some(h) => sqlx::query(sql(
                    self.dialect,
                    "UPDATE instances SET last_ping_ms = GREATEST(COALESCE(last_ping_ms, 0), ?), \
                     platform_type = ?, platform_name = ?, platform_version = ?, computer_name = ?, \
                     ip_address = ?, agent_version = ? WHERE instance_id = ?",
                ))
                .bind(s.at_ms)
                .bind(&h.platform_type)
                .bind(&h.platform_name)
                .bind(&h.platform_version)
                .bind(&h.computer_name)
                .bind(&h.ip_address)
                .bind(&h.agent_version)
                .bind(&s.instance_id),
                None => sqlx::query(sql(
                    self.dialect,
                    "UPDATE instances SET last_ping_ms = GREATEST(COALESCE(last_ping_ms, 0), ?) \
                     WHERE instance_id = ?",
                ))
                .bind(s.at_ms)
                .bind(&s.instance_id),
            }
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Instances deregistered at or after `since_ms` (by any replica's clock):
    /// what a replica admitting agents from memory must forget.
    pub async fn deregistered_since(&self, since_ms: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(sql(
            self.dialect,
            "SELECT instance_id FROM instances \
             WHERE deregistered_ms IS NOT NULL AND deregistered_ms >= ?",
        ))
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deregisters an instance; its pending invocations become Undeliverable.
    /// Returns the commands those belonged to, or None if it was not registered.
    pub async fn deregister_instance(&self, id: &str, now_ms: i64) -> Result<Option<Vec<String>>> {
        let mut tx = self.write().await?;
        let r = sqlx::query(sql(self.dialect, "UPDATE instances SET deregistered_ms = ? WHERE instance_id = ? AND deregistered_ms IS NULL"),
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(None);
        }
        let pending: Vec<String> = sqlx::query_scalar(sql(self.dialect, "SELECT command_id FROM invocations WHERE instance_id = ? AND acked_ms IS NULL AND status = 'Pending'"),
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let mut moved = Moved::default();
        for command_id in &pending {
            if set_invocation_detail(&mut tx, command_id, id, Detail::Undeliverable, now_ms).await?
            {
                moved.add(Detail::Undeliverable, 1);
            }
            refresh_command(&mut tx, command_id, now_ms, &mut moved).await?;
        }
        tx.commit().await?;
        self.count_finished(&moved);
        Ok(Some(pending))
    }

    // ----- commands -----

    /// Stores a command and one Pending invocation per instance, atomically, so
    /// every invocation exists as soon as SendCommand returns.
    pub async fn insert_command(&self, c: &CommandRow, targets: &[(String, String)]) -> Result<()> {
        let mut tx = self.write().await?;
        self.command_in(&mut tx, c, targets).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::insert_command`] with the change's audit records (its
    /// intent, then its outcome) appended to the chain in the same
    /// transaction: both or neither. `Ok(Err(e))`: the records could not be
    /// appended, so nothing was stored; `Err(e)`: the command could not be.
    pub async fn insert_command_recorded(
        &self,
        c: &CommandRow,
        targets: &[(String, String)],
        records: Vec<AuditRecord>,
        seal: &Seal,
    ) -> Result<std::result::Result<Vec<AuditRecord>, StoreError>> {
        let mut tx = self.write().await?;
        let stored = match self.chain_in(&mut tx, records, seal).await {
            Ok(stored) => stored,
            Err(e) => return Ok(Err(e)),
        };
        self.command_in(&mut tx, c, targets).await?;
        tx.commit().await?;
        Ok(Ok(stored))
    }

    async fn command_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        c: &CommandRow,
        targets: &[(String, String)],
    ) -> Result<()> {
        sqlx::query(sql(self.dialect, format!(
            "INSERT INTO commands ({COMMAND_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        )))
        .bind(&c.command_id)
        .bind(&c.document_name)
        .bind(&c.document_version)
        .bind(&c.document_hash)
        .bind(&c.document_content)
        .bind(&c.parameters_json)
        .bind(&c.resolved_json)
        .bind(&c.comment)
        .bind(c.requested_ms)
        .bind(c.timeout_seconds)
        .bind(&c.max_concurrency)
        .bind(&c.max_errors)
        .bind(c.concurrency_limit)
        .bind(&c.instance_ids_json)
        .bind(&c.targets_json)
        .bind(&c.status)
        .bind(&c.status_details)
        .bind(c.target_count)
        .bind(c.completed_count)
        .bind(c.error_count)
        .bind(c.delivery_timed_out_count)
        .bind(&c.requested_document_version)
        .bind(&c.requested_by)
        .bind(&c.references_json)
        .execute(&mut **tx)
        .await?;
        // Many rows per statement: a 10,000-node command is 20 statements, not 10,000.
        for chunk in targets.chunks(INSERT_ROWS) {
            let text = format!(
                "INSERT INTO invocations (command_id, instance_id, instance_name, status, status_details, requested_ms) \
                 VALUES {}",
                vec!["(?, ?, ?, 'Pending', 'Pending', ?)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(sql(self.dialect, text));
            for (instance_id, instance_name) in chunk {
                q = q
                    .bind(&c.command_id)
                    .bind(instance_id)
                    .bind(instance_name)
                    .bind(c.requested_ms);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub async fn command(&self, id: &str) -> Result<Option<CommandRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE command_id = ?"),
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Commands, newest first, matching the query.
    pub async fn commands(&self, q: &CommandQuery) -> Result<Vec<CommandRow>> {
        let ids: Vec<String> = self
            .command_sizes(q)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        self.commands_by_id(&ids).await
    }

    /// The IDs of the commands matching the query, newest first, each with
    /// the bytes its listing carries (parameters, instance IDs, targets,
    /// comment): what a page is cut by before any row is read whole.
    pub async fn command_sizes(&self, q: &CommandQuery) -> Result<Vec<(String, i64)>> {
        let mut text = "SELECT c.command_id, CAST(octet_length(c.parameters_json) + \
             octet_length(c.instance_ids_json) + octet_length(c.targets_json) + \
             octet_length(c.comment) AS BIGINT) FROM commands c WHERE 1=1"
            .to_string();
        if q.command_id.is_some() {
            text.push_str(" AND c.command_id = ?");
        }
        if q.instance_id.is_some() {
            text.push_str(
                " AND EXISTS (SELECT 1 FROM invocations i WHERE i.command_id = c.command_id AND i.instance_id = ?)",
            );
        }
        push_common_filters(&mut text, q, "c");
        text.push_str(" ORDER BY c.requested_ms DESC, c.command_id LIMIT ? OFFSET ?");
        let mut query = sqlx::query_as::<_, (String, i64)>(sql(self.dialect, text));
        if let Some(id) = &q.command_id {
            query = query.bind(id);
        }
        if let Some(id) = &q.instance_id {
            query = query.bind(id);
        }
        query = bind_common_filters(query, q);
        Ok(query
            .bind(q.limit)
            .bind(q.offset)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The commands of these IDs, in the order given (an ID no longer
    /// stored — pruned meanwhile — is left out).
    pub async fn commands_by_id(&self, ids: &[String]) -> Result<Vec<CommandRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let text = format!(
            "SELECT {COMMAND_COLUMNS} FROM commands WHERE command_id IN ({})",
            vec!["?"; ids.len()].join(", ")
        );
        let mut query = sqlx::query_as::<_, CommandRow>(sql(self.dialect, text));
        for id in ids {
            query = query.bind(id);
        }
        let mut rows = query.fetch_all(&self.pool).await?;
        rows.sort_by_key(|r| ids.iter().position(|id| *id == r.command_id));
        Ok(rows)
    }

    /// Invocations with what their listing shows of their command, newest
    /// first, matching the query. The command's document and parameters are
    /// not read: a page of invocations costs the invocations, whatever their
    /// commands carry.
    pub async fn invocations(
        &self,
        q: &CommandQuery,
    ) -> Result<Vec<(InvocationRow, CommandBrief)>> {
        let mut text = format!(
            "SELECT {INVOCATION_COLUMNS}, c.document_name AS c_document_name, \
             c.document_version AS c_document_version, c.comment AS c_comment, \
             c.document_hash AS c_document_hash, \
             c.requested_document_version AS c_requested_document_version, \
             c.requested_by AS c_requested_by \
             FROM invocations i JOIN commands c ON c.command_id = i.command_id WHERE 1=1"
        );
        if q.command_id.is_some() {
            text.push_str(" AND i.command_id = ?");
        }
        if q.instance_id.is_some() {
            text.push_str(" AND i.instance_id = ?");
        }
        push_common_filters(&mut text, q, "i");
        text.push_str(
            " ORDER BY i.requested_ms DESC, i.command_id, i.instance_id LIMIT ? OFFSET ?",
        );
        let mut query = sqlx::query(sql(self.dialect, text));
        if let Some(id) = &q.command_id {
            query = query.bind(id);
        }
        if let Some(id) = &q.instance_id {
            query = query.bind(id);
        }
        if let Some(t) = q.invoked_after_ms {
            query = query.bind(t);
        }
        if let Some(t) = q.invoked_before_ms {
            query = query.bind(t);
        }
        if let Some(s) = &q.status {
            query = query.bind(s);
        }
        if let Some(d) = &q.document_name {
            query = query.bind(d);
        }
        if let Some(by) = &q.requested_by {
            query = query.bind(by);
        }
        let rows = query
            .bind(q.limit)
            .bind(q.offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let inv = <InvocationRow as sqlx::FromRow<_>>::from_row(r)?;
                let cmd = CommandBrief {
                    command_id: inv.command_id.clone(),
                    document_name: r.try_get("c_document_name")?,
                    document_version: r.try_get("c_document_version")?,
                    comment: r.try_get("c_comment")?,
                    document_hash: r.try_get("c_document_hash")?,
                    requested_document_version: r.try_get("c_requested_document_version")?,
                    requested_by: r.try_get("c_requested_by")?,
                };
                Ok((inv, cmd))
            })
            .collect()
    }

    /// An invocation's `Status`, if it exists.
    pub async fn invocation_status(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(sql(
            self.dialect,
            "SELECT status FROM invocations WHERE command_id = ? AND instance_id = ?",
        ))
        .bind(command_id)
        .bind(instance_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn plugins(&self, command_id: &str, instance_id: &str) -> Result<Vec<PluginRow>> {
        Ok(sqlx::query_as(sql(self.dialect, "SELECT seq, name, status, status_details, response_code, start_ms, end_ms, stdout, stderr, \
             stdout_truncated, stderr_truncated FROM invocation_plugins \
             WHERE command_id = ? AND instance_id = ? ORDER BY seq"),
        )
        .bind(command_id)
        .bind(instance_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// As [`Store::plugins`], with each step's stdout and stderr cut to their
    /// first `head_bytes` (marked truncated when cut): what a listing shows,
    /// without reading whole outputs.
    pub async fn plugins_head(
        &self,
        command_id: &str,
        instance_id: &str,
        head_bytes: usize,
    ) -> Result<Vec<PluginRow>> {
        let n = i64::try_from(head_bytes).unwrap_or(i64::MAX);
        Ok(sqlx::query_as(sql(
            self.dialect,
            "SELECT seq, name, status, status_details, response_code, start_ms, end_ms, \
             CASE WHEN length(stdout) > ?1 THEN substr(stdout, 1, CAST(?1 AS INTEGER)) ELSE stdout END AS stdout, \
             CASE WHEN length(stderr) > ?1 THEN substr(stderr, 1, CAST(?1 AS INTEGER)) ELSE stderr END AS stderr, \
             CASE WHEN length(stdout) > ?1 THEN 1 ELSE stdout_truncated END AS stdout_truncated, \
             CASE WHEN length(stderr) > ?1 THEN 1 ELSE stderr_truncated END AS stderr_truncated \
             FROM invocation_plugins WHERE command_id = ?2 AND instance_id = ?3 ORDER BY seq",
        ))
        .bind(n)
        .bind(command_id)
        .bind(instance_id)
        .fetch_all(&self.pool)
        .await?)
    }

    // ----- delivery -----

    /// What one poll of an instance looks at, in one statement:
    /// - the cancellations to send (its invocations being cancelled whose
    ///   cancel was never sent, or sent `resend_after_ms` ago and not yet
    ///   confirmed), oldest request first;
    /// - the invocations it should be sent now: Pending ones never
    ///   delivered, or delivered but not acknowledged for `resend_after_ms`
    ///   (the reply carrying them may have been lost), within the delivery
    ///   timeout; oldest first, at most `limit`. Each comes as its command's
    ///   ID and the bytes its envelope carries (document, resolved parameters
    ///   and the names and hash), so a poll can choose what fits before
    ///   reading any command whole ([`Store::command`]);
    /// - whether anything handed over may still fall due by time: an
    ///   envelope delivered and not acknowledged (redelivered), or a cancel
    ///   not confirmed (resent).
    pub async fn work(
        &self,
        instance_id: &str,
        now_ms: i64,
        resend_after_ms: i64,
        limit: i64,
    ) -> Result<Work> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(sql(
            self.dialect,
            format!(
                "SELECT kind, command_id, bytes FROM ( \
                 SELECT CAST(0 AS BIGINT) AS kind, command_id, CAST(0 AS BIGINT) AS bytes, \
                 cancel_requested_ms AS o1, command_id AS o2 FROM invocations \
                 WHERE instance_id = ?1 AND status = 'Cancelling' \
                 AND (cancel_sent_ms IS NULL OR cancel_sent_ms <= ?2) \
                 UNION ALL SELECT * FROM ( \
                 SELECT CAST(1 AS BIGINT) AS kind, c.command_id, \
                 CAST(octet_length(c.document_content) + \
                 octet_length(c.resolved_json) + octet_length(c.document_name) + \
                 octet_length(c.document_version) + octet_length(c.document_hash) + \
                 CASE WHEN c.references_json = '[]' THEN 0 \
                 ELSE {} * octet_length(c.references_json) END AS BIGINT) AS bytes, \
                 c.requested_ms AS o1, c.command_id AS o2 \
                 FROM invocations i JOIN commands c ON c.command_id = i.command_id \
                 WHERE i.instance_id = ?1 AND i.status = 'Pending' AND i.acked_ms IS NULL \
                 AND (i.delivered_ms IS NULL OR i.delivered_ms <= ?2) \
                 AND c.requested_ms + c.timeout_seconds * 1000 > ?3 \
                 ORDER BY c.requested_ms, c.command_id LIMIT ?4) deliverable \
                 UNION ALL SELECT CAST(2 AS BIGINT), '', CAST(0 AS BIGINT), CAST(0 AS BIGINT), '' \
                 WHERE EXISTS (SELECT 1 FROM invocations WHERE instance_id = ?1 \
                 AND (status = 'Cancelling' \
                 OR (status = 'Pending' AND acked_ms IS NULL AND delivered_ms IS NOT NULL))) \
                 ) work ORDER BY kind, o1, o2",
                limits::SEALED_BYTES_PER_REFERENCE_BYTE
            ),
        ))
        .bind(instance_id)
        .bind(now_ms - resend_after_ms)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut work = Work::default();
        for (kind, command_id, bytes) in rows {
            match kind {
                0 => work.cancels.push(command_id),
                1 => work.deliverable.push((command_id, bytes)),
                _ => work.in_flight = true,
            }
        }
        Ok(work)
    }

    /// Claims the right to deliver an invocation now, recording the signed
    /// envelope handed over (for audit). Atomic, so concurrent polls never
    /// exceed the command's concurrency limit: a first delivery needs a free
    /// slot (fewer delivered, unfinished invocations than the limit) unless
    /// the limit covers every target (`unlimited`, which spares the count); a
    /// redelivery (acknowledgement lost) already holds one.
    pub async fn claim_delivery(&self, claim: &Claim, now_ms: i64) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        claim_in(&mut conn, claim, now_ms).await
    }

    /// Instances whose invocation of the command waits for a free slot
    /// (none when MaxConcurrency covers every target: nothing waits then).
    pub async fn waiting_instances(&self, command_id: &str) -> Result<Vec<String>> {
        let limited: Option<i64> = sqlx::query_scalar(sql(self.dialect, "SELECT CASE WHEN concurrency_limit < target_count THEN 1 ELSE 0 END FROM commands WHERE command_id = ?"),
        )
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await?;
        if limited != Some(1) {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(sql(
            self.dialect,
            "SELECT instance_id FROM invocations WHERE command_id = ? AND status = 'Pending' \
             AND delivered_ms IS NULL",
        ))
        .bind(command_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The last envelope delivered for an invocation (payload, signature).
    pub async fn last_envelope(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let row = sqlx::query(sql(
            self.dialect,
            "SELECT envelope_payload, envelope_signature FROM invocations \
             WHERE command_id = ? AND instance_id = ? AND envelope_payload IS NOT NULL",
        ))
        .bind(command_id)
        .bind(instance_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }

    /// The most recently finished invocation of an instance (for the replay test hook).
    pub async fn last_finished_command(&self, instance_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(sql(
            self.dialect,
            "SELECT command_id FROM invocations WHERE instance_id = ? AND end_ms IS NOT NULL \
             ORDER BY end_ms DESC LIMIT 1",
        ))
        .bind(instance_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The agent accepted the envelope and started: Pending becomes InProgress.
    /// Returns false when the invocation was already past that point.
    pub async fn mark_started(
        &self,
        command_id: &str,
        instance_id: &str,
        start_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let started = start_in(&mut tx, command_id, instance_id, start_ms, now_ms).await?;
        let mut moved = Moved::default();
        if started {
            refresh_command(&mut tx, command_id, now_ms, &mut moved).await?;
        }
        tx.commit().await?;
        self.count_finished(&moved);
        Ok(started)
    }

    /// Stores an invocation's final outcome. Idempotent: an invocation that is
    /// already terminal keeps its first result, and false is returned.
    pub async fn finish_invocation(
        &self,
        command_id: &str,
        instance_id: &str,
        result: &InvocationResult,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let mut moved = Moved::default();
        let outcome = finish_in(&mut tx, command_id, instance_id, result, now_ms).await?;
        if outcome == Finished::Now {
            moved.add(result.detail, 1);
        }
        if outcome != Finished::No {
            refresh_command(&mut tx, command_id, now_ms, &mut moved).await?;
        }
        tx.commit().await?;
        self.count_finished(&moved);
        Ok(outcome != Finished::No)
    }

    /// The hot path's writes — delivery claims and agent results — as one
    /// transaction, in order (the coordinator's writer batches what queued up
    /// meanwhile, so the writes never wait on each other for SQLite's lock).
    /// Returns, per operation, whether it took effect.
    pub async fn write_batch(&self, ops: &[&WriteOp], now_ms: i64) -> Result<Vec<Applied>> {
        let mut tx = self.write().await?;
        let mut moved = Moved::default();
        let mut done = Vec::with_capacity(ops.len());
        let mut touched: Vec<(&str, i64)> = Vec::new();
        for op in ops {
            let applied = match op {
                WriteOp::Claim(c) => claim_in(&mut tx, c, now_ms).await?,
                WriteOp::Start(st) => {
                    let started = start_in(
                        &mut tx,
                        &st.command_id,
                        &st.instance_id,
                        st.start_ms,
                        now_ms,
                    )
                    .await?;
                    if started && !touched.iter().any(|(c, _)| *c == st.command_id) {
                        touched.push((&st.command_id, 0));
                    }
                    started
                }
                WriteOp::Finish(f) => {
                    let outcome =
                        finish_in(&mut tx, &f.command_id, &f.instance_id, &f.result, now_ms)
                            .await?;
                    if outcome == Finished::Now {
                        moved.add(f.result.detail, 1);
                    }
                    let stored = outcome != Finished::No;
                    if stored && !touched.iter().any(|(c, _)| *c == f.command_id) {
                        touched.push((&f.command_id, 0));
                    }
                    stored
                }
            };
            done.push(Applied {
                applied,
                requested_ms: None,
            });
        }
        for (command_id, requested_ms) in &mut touched {
            *requested_ms = refresh_command(&mut tx, command_id, now_ms, &mut moved).await?;
        }
        tx.commit().await?;
        self.count_finished(&moved);
        // Each stored result learns when its command was requested (read
        // with the command's refresh: no statement more).
        for (op, applied) in ops.iter().zip(done.iter_mut()) {
            if let (WriteOp::Finish(f), true) = (op, applied.applied) {
                applied.requested_ms = touched
                    .iter()
                    .find(|(c, _)| *c == f.command_id)
                    .map(|(_, at)| *at);
            }
        }
        Ok(done)
    }

    /// Ends every invocation whose delivery timeout passed before its agent
    /// accepted it (Delivery Timed Out); one whose envelope was handed over
    /// is only presumed undelivered, so a late result still replaces the
    /// verdict. Returns how many changed.
    pub async fn sweep_delivery_timeouts(&self, now_ms: i64) -> Result<usize> {
        let expired: Vec<(String, String)> = sqlx::query_as(sql(
            self.dialect,
            "SELECT i.command_id, i.instance_id FROM invocations i JOIN commands c \
             ON c.command_id = i.command_id WHERE i.status = 'Pending' AND i.acked_ms IS NULL \
             AND c.requested_ms + c.timeout_seconds * 1000 <= ?",
        ))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        if expired.is_empty() {
            return Ok(0);
        }
        let mut tx = self.write().await?;
        let mut moved = Moved::default();
        let mut changed = 0;
        for (command_id, instance_id) in &expired {
            // A result may have come since the read: it stands.
            if !set_invocation_detail(
                &mut tx,
                command_id,
                instance_id,
                Detail::DeliveryTimedOut,
                now_ms,
            )
            .await?
            {
                continue;
            }
            changed += 1;
            moved.add(Detail::DeliveryTimedOut, 1);
            // An envelope handed over but never acknowledged may still reach
            // the agent (a held poll on a link cut meanwhile) and run: the
            // verdict is then the coordinator's guess, which the agent's
            // real result replaces, as for a silent agent presumed lost.
            sqlx::query(sql(
                self.dialect,
                "UPDATE invocations SET presumed_lost = 1 \
                 WHERE command_id = ? AND instance_id = ? AND delivered_ms IS NOT NULL",
            ))
            .bind(command_id)
            .bind(instance_id)
            .execute(&mut *tx)
            .await?;
        }
        let mut commands: Vec<&String> = expired.iter().map(|(c, _)| c).collect();
        commands.dedup();
        for command_id in commands {
            refresh_command(&mut tx, command_id, now_ms, &mut moved).await?;
        }
        tx.commit().await?;
        self.count_finished(&moved);
        Ok(changed)
    }
}

/// What one write of [`Store::write_batch`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Whether it took effect.
    pub applied: bool,
    /// A result stored: when its command was requested.
    pub requested_ms: Option<i64>,
}

/// One write of the hot path, for [`Store::write_batch`].
#[derive(Debug)]
pub enum WriteOp {
    Claim(Claim),
    Start(Start),
    Finish(Finish),
}

/// An agent's acknowledgement that it accepted an invocation and is
/// starting it (see [`Store::mark_started`]).
#[derive(Debug, Clone)]
pub struct Start {
    pub command_id: String,
    pub instance_id: String,
    /// When the agent says it started (else the time it is stored).
    pub start_ms: Option<i64>,
}

/// What one poll of an instance looks at (see [`Store::work`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Work {
    /// Commands whose cancellation should be (re)sent now, oldest request first.
    pub cancels: Vec<String>,
    /// Invocations to deliver now: the command's ID and the bytes its
    /// envelope carries, oldest first.
    pub deliverable: Vec<(String, i64)>,
    /// Something handed over may still fall due by time.
    pub in_flight: bool,
}

/// A delivery claim (see [`Store::claim_delivery`]): the invocation, the
/// envelope it is delivered in, and the rules the claim must keep.
#[derive(Debug, Clone)]
pub struct Claim {
    pub command_id: String,
    pub instance_id: String,
    /// A delivery not acknowledged for this long may be claimed again.
    pub redeliver_after_ms: i64,
    /// The concurrency limit covers every target, so no slot is counted.
    pub unlimited: bool,
    /// The signed envelope, kept for redelivery (empty for the AWS bridge).
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// An invocation's outcome to store (see [`Store::finish_invocation`]).
#[derive(Debug, Clone)]
pub struct Finish {
    pub command_id: String,
    pub instance_id: String,
    pub result: InvocationResult,
}

async fn claim_in(conn: &mut sqlx::AnyConnection, c: &Claim, now_ms: i64) -> Result<bool> {
    let d = Dialect::of(conn);
    let r = sqlx::query(sql(d, "UPDATE invocations SET delivered_ms = ?1, deliveries = deliveries + 1, \
         envelope_payload = ?6, envelope_signature = ?7 \
         WHERE command_id = ?2 AND instance_id = ?3 AND status = 'Pending' AND acked_ms IS NULL \
         AND (delivered_ms IS NULL OR delivered_ms <= ?1 - ?4) \
         AND (delivered_ms IS NOT NULL OR ?5 OR \
              (SELECT COUNT(*) FROM invocations j WHERE j.command_id = ?2 \
                 AND j.delivered_ms IS NOT NULL AND j.status IN ('Pending', 'InProgress', 'Cancelling')) \
              < (SELECT concurrency_limit FROM commands WHERE command_id = ?2))"),
    )
    .bind(now_ms)
    .bind(&c.command_id)
    .bind(&c.instance_id)
    .bind(c.redeliver_after_ms)
    .bind(c.unlimited)
    .bind(&c.payload)
    .bind(&c.signature)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Marks a pending invocation accepted and in progress; false when it was
/// not pending (already started or finished, or not this instance's).
async fn start_in(
    conn: &mut sqlx::AnyConnection,
    command_id: &str,
    instance_id: &str,
    start_ms: Option<i64>,
    now_ms: i64,
) -> Result<bool> {
    let d = Dialect::of(conn);
    let r = sqlx::query(sql(
        d,
        "UPDATE invocations SET status = 'InProgress', status_details = 'In Progress', \
         acked_ms = ?, start_ms = COALESCE(?, ?) \
         WHERE command_id = ? AND instance_id = ? AND status = 'Pending'",
    ))
    .bind(now_ms)
    .bind(start_ms)
    .bind(now_ms)
    .bind(command_id)
    .bind(instance_id)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Stores one outcome unless the invocation already has one (the first wins,
/// except over the coordinator's own guess that a silent agent was lost).
async fn finish_in(
    conn: &mut sqlx::AnyConnection,
    command_id: &str,
    instance_id: &str,
    result: &InvocationResult,
    now_ms: i64,
) -> Result<Finished> {
    let d = Dialect::of(conn);
    // An unfinished invocation first (the hot path: one statement), then a
    // provisional verdict the real result replaces.
    let mut outcome = Finished::No;
    for (condition, verdict) in [
        (
            format!("status_details IN ({})", unfinished_details()),
            Finished::Now,
        ),
        ("presumed_lost = 1".to_string(), Finished::Replaced),
    ] {
        let r = sqlx::query(sql(
            d,
            format!(
                "UPDATE invocations SET status = ?, status_details = ?, response_code = ?, \
                 start_ms = COALESCE(start_ms, ?), end_ms = ?, acked_ms = COALESCE(acked_ms, ?), \
                 presumed_lost = 0 WHERE command_id = ? AND instance_id = ? AND {condition}"
            ),
        ))
        .bind(result.detail.status())
        .bind(result.detail.as_str())
        .bind(result.response_code)
        .bind(result.start_ms)
        .bind(result.end_ms.unwrap_or(now_ms))
        .bind(now_ms)
        .bind(command_id)
        .bind(instance_id)
        .execute(&mut *conn)
        .await?;
        if r.rows_affected() == 1 {
            outcome = verdict;
            break;
        }
    }
    if outcome == Finished::No {
        return Ok(outcome);
    }
    sqlx::query(sql(
        d,
        "DELETE FROM invocation_plugins WHERE command_id = ? AND instance_id = ?",
    ))
    .bind(command_id)
    .bind(instance_id)
    .execute(&mut *conn)
    .await?;
    for (seq, p) in result.plugins.iter().enumerate() {
        sqlx::query(sql(
            d,
            "INSERT INTO invocation_plugins (command_id, instance_id, seq, name, status, \
             status_details, response_code, start_ms, end_ms, stdout, stderr, stdout_truncated, \
             stderr_truncated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        ))
        .bind(command_id)
        .bind(instance_id)
        .bind(seq as i64)
        .bind(&p.name)
        .bind(plugin_status(p.detail))
        .bind(p.detail.as_str())
        .bind(p.response_code)
        .bind(p.start_ms)
        .bind(p.end_ms)
        .bind(&p.stdout)
        .bind(&p.stderr)
        .bind(i64::from(p.stdout_truncated))
        .bind(i64::from(p.stderr_truncated))
        .execute(&mut *conn)
        .await?;
    }
    Ok(outcome)
}

/// The `StatusDetails` of unfinished invocations, as an SQL list, from
/// [`Detail::is_terminal`] (the one place that decides it).
fn unfinished_details() -> &'static str {
    static LIST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        Detail::ALL
            .iter()
            .filter(|d| !d.is_terminal())
            .map(|d| format!("'{}'", d.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    });
    &LIST
}

/// A plugin's `Status` (CommandPluginStatus has no Delayed or Cancelling).
fn plugin_status(d: Detail) -> &'static str {
    match d {
        Detail::Delayed => "Pending",
        other => other.status(),
    }
}

fn push_common_filters(sql: &mut String, q: &CommandQuery, alias: &str) {
    let requested = if alias == "c" {
        "c.requested_ms"
    } else {
        "i.requested_ms"
    };
    if q.invoked_after_ms.is_some() {
        sql.push_str(&format!(" AND {requested} >= ?"));
    }
    if q.invoked_before_ms.is_some() {
        sql.push_str(&format!(" AND {requested} <= ?"));
    }
    if q.status.is_some() {
        sql.push_str(&format!(" AND {alias}.status = ?"));
    }
    if q.document_name.is_some() {
        sql.push_str(" AND c.document_name = ?");
    }
    if q.requested_by.is_some() {
        sql.push_str(" AND c.requested_by = ?");
    }
    if let Some(complete) = q.complete {
        let not = if complete { "NOT " } else { "" };
        sql.push_str(&format!(
            " AND {alias}.status {not}IN ('Pending', 'InProgress', 'Delayed', 'Cancelling')"
        ));
    }
}

fn bind_common_filters<'q, O>(
    mut query: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments>,
    q: &'q CommandQuery,
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments> {
    if let Some(t) = q.invoked_after_ms {
        query = query.bind(t);
    }
    if let Some(t) = q.invoked_before_ms {
        query = query.bind(t);
    }
    if let Some(s) = &q.status {
        query = query.bind(s);
    }
    if let Some(d) = &q.document_name {
        query = query.bind(d);
    }
    if let Some(by) = &q.requested_by {
        query = query.bind(by);
    }
    query
}

async fn set_invocation_detail(
    tx: &mut sqlx::AnyConnection,
    command_id: &str,
    instance_id: &str,
    detail: Detail,
    now_ms: i64,
) -> Result<bool> {
    let d = Dialect::of(tx);
    let r = sqlx::query(sql(
        d,
        format!(
            "UPDATE invocations SET status = ?, status_details = ?, end_ms = ? \
             WHERE command_id = ? AND instance_id = ? AND status_details IN ({})",
            unfinished_details()
        ),
    ))
    .bind(detail.status())
    .bind(detail.as_str())
    .bind(now_ms)
    .bind(command_id)
    .bind(instance_id)
    .execute(&mut *tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Recomputes a command's status and counts from its invocations. Once the
/// errors exceed MaxErrors, invocations not yet delivered will never be:
/// they end as Terminated (which does not count as an error).
/// Brings a command's status and counts up to date with its invocations;
/// gives back when the command was requested (the same read).
async fn refresh_command(
    tx: &mut sqlx::AnyConnection,
    command_id: &str,
    now_ms: i64,
    moved: &mut Moved,
) -> Result<i64> {
    let d = Dialect::of(tx);
    let (max_errors, requested_ms): (String, i64) = sqlx::query_as(sql(
        d,
        "SELECT max_errors, requested_ms FROM commands WHERE command_id = ?",
    ))
    .bind(command_id)
    .fetch_one(&mut *tx)
    .await?;
    let max_errors: Rate =
        max_errors
            .parse()
            .map_err(|e: tether_ssm::ApiError| StoreError::Corrupt {
                row: format!("command {command_id}: max_errors"),
                why: e.message,
            })?;
    let summarize = async |tx: &mut sqlx::AnyConnection| -> Result<state::CommandSummary> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql(
            d,
            "SELECT status_details, n FROM command_counts WHERE command_id = ? AND n > 0",
        ))
        .bind(command_id)
        .fetch_all(&mut *tx)
        .await?;
        let counts = rows
            .iter()
            .map(|(s, n)| match Detail::parse(s) {
                Some(detail) => Ok((detail, *n)),
                None => Err(StoreError::Corrupt {
                    row: format!("command {command_id}: command_counts"),
                    why: format!("{s:?} is not an invocation status"),
                }),
            })
            .collect::<Result<Vec<(Detail, i64)>>>()?;
        Ok(state::summarize_counts(&counts, max_errors))
    };
    let mut s = summarize(&mut *tx).await?;
    if s.error_count > state::max_errors_allowed(max_errors, s.target_count) {
        let terminated = sqlx::query(sql(
            d,
            "UPDATE invocations SET status = ?, status_details = ?, end_ms = ? \
             WHERE command_id = ? AND status = 'Pending' AND delivered_ms IS NULL",
        ))
        .bind(Detail::Terminated.status())
        .bind(Detail::Terminated.as_str())
        .bind(now_ms)
        .bind(command_id)
        .execute(&mut *tx)
        .await?;
        if terminated.rows_affected() > 0 {
            moved.add(Detail::Terminated, terminated.rows_affected());
            s = summarize(&mut *tx).await?;
        }
    }
    sqlx::query(sql(d, "UPDATE commands SET status = ?, status_details = ?, target_count = ?, completed_count = ?, \
         error_count = ?, delivery_timed_out_count = ? WHERE command_id = ?"),
    )
    .bind(s.status)
    .bind(s.status_details)
    .bind(s.target_count)
    .bind(s.completed_count)
    .bind(s.error_count)
    .bind(s.delivery_timed_out_count)
    .bind(command_id)
    .execute(&mut *tx)
    .await?;
    Ok(requested_ms)
}

#[cfg(test)]
mod tests {
    #[test]
    fn disk_full_codes_are_recognised() {
        for (code, full) in [
            ("13", true),
            ("53100", true),
            ("5", false),
            ("2067", false),
            ("23505", false),
            ("x", false),
        ] {
            assert_eq!(super::is_disk_full_code(code), full, "{code}");
        }
    }

    use super::*;

    /// A claim of command `c` on `instance`, redelivered after 30 s.
    fn claim(instance: &str) -> Claim {
        Claim {
            command_id: "c".into(),
            instance_id: instance.into(),
            redeliver_after_ms: 30_000,
            unlimited: false,
            payload: b"p".to_vec(),
            signature: b"s".to_vec(),
        }
    }

    /// A fresh store: a SQLite file, or a new database on the PostgreSQL
    /// server `TETHER_TEST_PG_URL` names (`postgres://USER@HOST:PORT`;
    /// scripts/test.sh's PostgreSQL pass sets it).
    pub(super) async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = match std::env::var("TETHER_TEST_PG_URL") {
            Ok(server) => Store::open_url(&fresh_pg_database(&server).await)
                .await
                .unwrap(),
            Err(_) => Store::open(&dir.path().join("t.db")).await.unwrap(),
        };
        (dir, s)
    }

    /// Creates an empty database on the server and returns its URL.
    async fn fresh_pg_database(server: &str) -> String {
        use sqlx::Connection;
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "unit_{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let server = server.trim_end_matches('/');
        let mut admin = sqlx::postgres::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        format!("{server}/{name}")
    }

    /// Every pooled connection busy (10,000 agents reconnecting hold them
    /// all for seconds): the readiness check still answers at once, on both
    /// engines, over its own connection.
    #[tokio::test]
    async fn a_saturated_pool_is_not_an_unreachable_database() {
        let (_d, s) = store().await;
        let size = match s.dialect() {
            Dialect::Sqlite => SQLITE_POOL,
            Dialect::Postgres => POSTGRES_POOL,
        };
        let mut held = Vec::new();
        for _ in 0..size {
            held.push(s.pool.acquire().await.unwrap());
        }
        let answered = tokio::time::timeout(Duration::from_secs(2), s.check()).await;
        assert!(
            matches!(answered, Ok(Ok(()))),
            "with all {size} pooled connections held: {answered:?}"
        );
        drop(held);
    }

    /// The bundled SQLite is built with SQLITE_ENABLE_QPSG (.cargo/config.toml):
    /// without it, every statement whose plan looked at a bound value
    /// (`LIMIT ?`, `LIKE ?`) is prepared again each time that value changes,
    /// and the hot path's statements (`deliverable` per poll) were re-prepared
    /// on almost every call.
    #[tokio::test]
    async fn sqlite_plans_are_stable() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).await.unwrap();
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
            .fetch_all(&s.pool)
            .await
            .unwrap();
        assert!(
            options.iter().any(|o| o == "ENABLE_QPSG"),
            "SQLite was built without ENABLE_QPSG (is .cargo/config.toml's [env] read?): {options:?}"
        );
    }

    /// Two stores on one database, as two coordinators would open it.
    pub(super) async fn two_stores() -> (tempfile::TempDir, Store, Store) {
        let (d, a) = store().await;
        let b = match &a.url {
            Some(url) => Store::open_url(url).await.unwrap(),
            None => Store::open(&d.path().join("t.db")).await.unwrap(),
        };
        (d, a, b)
    }

    /// Who leads (`Store::lead`) among two stores on one database, as two
    /// coordinators would open it; each pass of scripts/test.sh checks its
    /// engine's answer.
    #[tokio::test]
    async fn leading_as_the_engine_shares_work() {
        let (_d, a, b) = two_stores().await;
        match a.dialect() {
            Dialect::Sqlite => every_store_leads_on_sqlite(a, b).await,
            Dialect::Postgres => one_store_leads_on_postgres(a, b).await,
        }
    }

    /// SQLite: every caller leads, every time. A SQLite file serves one
    /// coordinator (replicas share work on PostgreSQL only), so there is
    /// nobody to share the work with, and SQLite has no session that could
    /// hold a lock for a replica's lifetime: `lead` answers yes without
    /// asking the database, even to a second store on the same file.
    async fn every_store_leads_on_sqlite(a: Store, b: Store) {
        for work in [Lead::Sweep, Lead::Bridge] {
            let (x, y) = tokio::join!(a.lead(work), b.lead(work));
            assert!(x.unwrap() && y.unwrap(), "{work:?}: both stores lead");
            assert!(a.lead(work).await.unwrap(), "{work:?}: and go on leading");
            assert!(b.lead(work).await.unwrap(), "{work:?}: and go on leading");
        }
        assert!(a.leads.lock().await.is_empty(), "no lock is held");
        assert!(b.leads.lock().await.is_empty(), "no lock is held");
    }

    /// PostgreSQL: of two stores on one database exactly one leads each
    /// work (its session advisory lock), and keeps it; when that store is
    /// dropped its connection closes and the other takes the work over.
    async fn one_store_leads_on_postgres(a: Store, b: Store) {
        // Both ask at once: exactly one wins.
        let (x, y) = tokio::join!(a.lead(Lead::Sweep), b.lead(Lead::Sweep));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(x ^ y, "exactly one leads the sweep: a {x}, b {y}");
        let (leader, other) = if x { (a, b) } else { (b, a) };
        for _ in 0..3 {
            assert!(
                leader.lead(Lead::Sweep).await.unwrap(),
                "the holder keeps it"
            );
            assert!(!other.lead(Lead::Sweep).await.unwrap(), "one at a time");
        }
        // Each work has its own lock: the other store can lead the bridge.
        assert!(other.lead(Lead::Bridge).await.unwrap());
        assert!(!leader.lead(Lead::Bridge).await.unwrap());
        // The leader goes away: once the server has ended its session (on
        // its own time, after the connection closes), the other takes over.
        drop(leader);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !other.lead(Lead::Sweep).await.unwrap() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sweep lock outlived the store that held it"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(other.lead(Lead::Sweep).await.unwrap(), "and keeps it");
        assert!(
            other.lead(Lead::Bridge).await.unwrap(),
            "its own lead stays"
        );
    }

    #[tokio::test]
    async fn an_unknown_database_scheme_is_refused_by_name() {
        let e = Store::open_url("mysql://db.example/tether")
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("\"mysql://db.example/tether\": expected a postgres://"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.db");
        let s = Store::open_url(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        assert_eq!(s.dialect(), Dialect::Sqlite);
        assert!(file.exists());
    }

    /// The SQLite file and the -wal and -shm files SQLite makes beside it are
    /// 0600, wherever `--database` puts them; a file an older version left
    /// readable is narrowed.
    #[tokio::test]
    async fn the_sqlite_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let file = dir.path().join("elsewhere/fleet.db");
        std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
        let s = Store::open(&file).await.unwrap();
        s.add_operator_token("h", 1).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let p = std::path::PathBuf::from(format!("{}{suffix}", file.display()));
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
        s.pool.close().await;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _again = Store::open(&file).await.unwrap();
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn placeholders_for_postgres_skip_quoted_text() {
        assert_eq!(
            postgres_placeholders("SELECT '?' FROM t WHERE a = ? AND b IN (?, ?)"),
            "SELECT '?' FROM t WHERE a = $1 AND b IN ($2, $3)"
        );
        assert_eq!(
            postgres_placeholders("UPDATE t SET a = ?1 WHERE b = ?2 AND c <= ?1 - ?10"),
            "UPDATE t SET a = $1 WHERE b = $2 AND c <= $1 - $10"
        );
        assert_eq!(
            sql(Dialect::Sqlite, "SET x = GREATEST(x, ?)").0,
            "SET x = MAX(x, ?)"
        );
    }

    pub(super) fn activation(id: &str, limit: i64, expiration_ms: i64) -> ActivationRow {
        ActivationRow {
            activation_id: id.into(),
            code_salt: vec![1],
            code_hash: vec![2],
            description: String::new(),
            default_instance_name: String::new(),
            iam_role: "r".into(),
            registration_limit: limit,
            registrations_count: 0,
            expiration_ms,
            created_ms: 0,
            deleted_ms: None,
            tags_json: "[]".into(),
        }
    }

    pub(super) fn command(id: &str) -> CommandRow {
        CommandRow {
            command_id: id.into(),
            document_name: "AWS-RunShellScript".into(),
            document_version: "1".into(),
            document_hash: "h".into(),
            document_content: "{}".into(),
            parameters_json: "{}".into(),
            resolved_json: "{}".into(),
            comment: String::new(),
            requested_ms: 1_000,
            timeout_seconds: 60,
            max_concurrency: "50".into(),
            max_errors: "0".into(),
            concurrency_limit: 50,
            instance_ids_json: "[]".into(),
            targets_json: "[]".into(),
            status: "Pending".into(),
            status_details: "Pending".into(),
            target_count: 2,
            completed_count: 0,
            error_count: 0,
            delivery_timed_out_count: 0,
            requested_document_version: "$DEFAULT".into(),
            requested_by: String::new(),
            references_json: "[]".into(),
        }
    }

    fn result(detail: Detail, out: &str) -> InvocationResult {
        InvocationResult {
            detail,
            response_code: 0,
            start_ms: Some(2_000),
            end_ms: Some(3_000),
            plugins: vec![PluginResult {
                name: "0.aws:runShellScript".into(),
                detail,
                response_code: 0,
                start_ms: Some(2_000),
                end_ms: Some(3_000),
                stdout: out.as_bytes().to_vec(),
                stderr: Vec::new(),
                stdout_truncated: false,
                stderr_truncated: false,
            }],
        }
    }

    #[tokio::test]
    async fn registrations_stop_at_the_limit() {
        let (_d, s) = store().await;
        s.insert_activation(&activation("a", 2, 10_000))
            .await
            .unwrap();
        let inst = |n: &str| InstanceRow {
            instance_id: n.into(),
            activation_id: "a".into(),
            ..Default::default()
        };
        s.register_instance(&inst("mi-1"), 5_000).await.unwrap();
        s.register_instance(&inst("mi-2"), 5_000).await.unwrap();
        assert!(matches!(
            s.register_instance(&inst("mi-3"), 5_000).await,
            Err(StoreError::Registration(_))
        ));
        assert!(s.instance("mi-3").await.unwrap().is_none());
        // An expired activation registers nothing, even under its limit.
        s.insert_activation(&activation("b", 5, 1_000))
            .await
            .unwrap();
        let late = InstanceRow {
            instance_id: "mi-4".into(),
            activation_id: "b".into(),
            ..Default::default()
        };
        assert!(s.register_instance(&late, 5_000).await.is_err());
    }

    /// Acknowledgements go through the writer's batches with claims and
    /// results: each says whether it took, and the command's status follows.
    #[tokio::test]
    async fn a_batch_starts_and_finishes_invocations_in_order() {
        let (_d, s) = store().await;
        let targets = vec![
            ("mi-1".to_string(), String::new()),
            ("mi-2".to_string(), String::new()),
        ];
        s.insert_command(&command("c"), &targets).await.unwrap();
        let start = |instance: &str| {
            WriteOp::Start(Start {
                command_id: "c".into(),
                instance_id: instance.into(),
                start_ms: Some(1_200),
            })
        };
        let (a, b, again, stranger) = (start("mi-1"), start("mi-2"), start("mi-1"), start("mi-9"));
        let done = s
            .write_batch(&[&a, &b, &again, &stranger], 1_500)
            .await
            .unwrap();
        let applied: Vec<bool> = done.iter().map(|d| d.applied).collect();
        assert_eq!(
            applied,
            [true, true, false, false],
            "a second ack and another's change nothing"
        );
        let c = s.command("c").await.unwrap().unwrap();
        assert_eq!(c.status, "InProgress");
        let (inv, _) = s
            .invocations(&CommandQuery {
                command_id: Some("c".into()),
                instance_id: Some("mi-1".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            (inv.status.as_str(), inv.start_ms),
            ("InProgress", Some(1_200))
        );

        // A result in the same batch as its acknowledgement comes after it.
        let late = start("mi-2");
        let fin = WriteOp::Finish(Finish {
            command_id: "c".into(),
            instance_id: "mi-1".into(),
            result: result(Detail::Success, "ok"),
        });
        let done = s.write_batch(&[&fin, &late], 2_000).await.unwrap();
        assert!(done[0].applied && !done[1].applied);
        assert_eq!(done[0].requested_ms, Some(command("c").requested_ms));
        let c = s.command("c").await.unwrap().unwrap();
        assert_eq!((c.status.as_str(), c.completed_count), ("InProgress", 1));
    }

    /// Each write of a batch is judged as if it were stored alone: a second
    /// claim or result of the same invocation in one batch takes no effect,
    /// and the first result stands.
    #[tokio::test]
    async fn each_write_of_a_batch_is_judged_as_if_stored_alone() {
        let (_d, s) = store().await;
        let targets: Vec<(String, String)> = ["mi-1", "mi-2", "mi-3"]
            .iter()
            .map(|i| (i.to_string(), String::new()))
            .collect();
        s.insert_command(&command("c"), &targets).await.unwrap();
        let unlimited = |i: &str| {
            WriteOp::Claim(Claim {
                unlimited: true,
                ..claim(i)
            })
        };
        let start = |i: &str| {
            WriteOp::Start(Start {
                command_id: "c".into(),
                instance_id: i.into(),
                start_ms: None,
            })
        };
        let finish = |i: &str, detail, out: &str| {
            WriteOp::Finish(Finish {
                command_id: "c".into(),
                instance_id: i.into(),
                result: result(detail, out),
            })
        };
        let ops = [
            unlimited("mi-1"),
            unlimited("mi-2"),
            unlimited("mi-1"),
            WriteOp::Claim(claim("mi-3")),
            start("mi-1"),
            start("mi-2"),
            start("mi-9"),
            finish("mi-1", Detail::Success, "first"),
            finish("mi-1", Detail::Failed, "second"),
            finish("mi-2", Detail::Failed, "two"),
        ];
        let refs: Vec<&WriteOp> = ops.iter().collect();
        let done = s.write_batch(&refs, 1_500).await.unwrap();
        let applied: Vec<bool> = done.iter().map(|d| d.applied).collect();
        assert_eq!(
            applied,
            [
                true, true, false, true, true, true, false, true, false, true
            ]
        );
        assert_eq!(s.plugins("c", "mi-1").await.unwrap()[0].stdout, b"first");
        assert_eq!(s.plugins("c", "mi-2").await.unwrap()[0].stdout, b"two");
        let c = s.command("c").await.unwrap().unwrap();
        assert_eq!(
            (c.completed_count, c.error_count, c.status.as_str()),
            (2, 1, "InProgress"),
            "mi-3 delivered, not acknowledged"
        );
        assert!(s.work("mi-3", 1_600, 30_000, 10).await.unwrap().in_flight);
    }

    /// What may fall due by time for an instance: a delivered envelope not
    /// yet acknowledged, a cancel not yet confirmed.
    #[tokio::test]
    async fn a_look_at_work_finds_cancels_deliveries_and_what_is_in_flight() {
        let (_d, s) = store().await;
        let targets = vec![("mi-1".to_string(), String::new())];
        s.insert_command(&command("c"), &targets).await.unwrap();
        assert!(
            !s.work("mi-1", 1_400, 30_000, 10).await.unwrap().in_flight,
            "pending, never delivered"
        );
        assert!(s.claim_delivery(&claim("mi-1"), 1_100).await.unwrap());
        assert!(
            s.work("mi-1", 1_400, 30_000, 10).await.unwrap().in_flight,
            "delivered, not acknowledged"
        );
        assert!(
            !s.work("mi-2", 1_400, 30_000, 10).await.unwrap().in_flight,
            "another instance's"
        );
        assert!(s.mark_started("c", "mi-1", None, 1_200).await.unwrap());
        assert!(
            !s.work("mi-1", 1_400, 30_000, 10).await.unwrap().in_flight,
            "acknowledged"
        );
        s.cancel_invocations("c", &[], 1_300).await.unwrap();
        let work = s.work("mi-1", 1_400, 30_000, 10).await.unwrap();
        assert_eq!(work.cancels, ["c"], "a cancel to send");
        assert!(work.in_flight && work.deliverable.is_empty(), "{work:?}");
        s.mark_cancel_sent("c", "mi-1", 1_400).await.unwrap();
        let work = s.work("mi-1", 1_500, 30_000, 10).await.unwrap();
        assert!(
            work.cancels.is_empty() && work.in_flight,
            "a cancel to confirm: {work:?}"
        );
        assert_eq!(
            s.work("mi-1", 31_400, 30_000, 10).await.unwrap().cancels,
            ["c"],
            "not confirmed: sent again"
        );
    }

    #[tokio::test]
    async fn results_are_stored_once_and_add_up_to_the_command() {
        let (_d, s) = store().await;
        let targets = vec![
            ("mi-1".to_string(), String::new()),
            ("mi-2".to_string(), String::new()),
        ];
        s.insert_command(&command("c"), &targets).await.unwrap();
        assert!(s.mark_started("c", "mi-1", None, 1_500).await.unwrap());
        assert!(
            !s.mark_started("c", "mi-1", None, 1_600).await.unwrap(),
            "second ack is a no-op"
        );
        assert_eq!(s.command("c").await.unwrap().unwrap().status, "InProgress");

        assert!(
            s.finish_invocation("c", "mi-1", &result(Detail::Success, "first"), 3_000)
                .await
                .unwrap()
        );
        assert!(
            !s.finish_invocation("c", "mi-1", &result(Detail::Failed, "second"), 4_000)
                .await
                .unwrap(),
            "a repeated report changes nothing"
        );
        let plugins = s.plugins("c", "mi-1").await.unwrap();
        assert_eq!(plugins.len(), 1);
        assert_eq!(plugins[0].stdout, b"first");

        // mi-2 never picks it up: the sweep ends it at its delivery timeout.
        assert_eq!(s.sweep_delivery_timeouts(1_000 + 59_000).await.unwrap(), 0);
        assert_eq!(s.sweep_delivery_timeouts(1_000 + 60_000).await.unwrap(), 1);
        let c = s.command("c").await.unwrap().unwrap();
        assert_eq!(
            (
                c.status.as_str(),
                c.status_details.as_str(),
                c.completed_count,
                c.delivery_timed_out_count
            ),
            ("Success", "Incomplete", 2, 1)
        );
        // A late report for the timed-out invocation is ignored too.
        assert!(
            !s.finish_invocation("c", "mi-2", &result(Detail::Success, "late"), 70_000)
                .await
                .unwrap()
        );
    }

    /// An envelope handed over but never acknowledged ends Delivery Timed
    /// Out only provisionally: it may still reach the agent (a poll held on a
    /// link cut meanwhile) and run, and then the agent's late real result
    /// replaces the verdict, once. One never handed over keeps it (above).
    #[tokio::test]
    async fn a_handed_over_envelope_times_out_provisionally() {
        let (_d, s) = store().await;
        let targets = vec![
            ("mi-1".to_string(), String::new()),
            ("mi-2".to_string(), String::new()),
        ];
        s.insert_command(&command("c"), &targets).await.unwrap();
        // mi-1's envelope is handed over, never acknowledged; mi-2's never.
        assert!(s.claim_delivery(&claim("mi-1"), 1_100).await.unwrap());
        assert_eq!(s.sweep_delivery_timeouts(1_000 + 60_000).await.unwrap(), 2);
        let details = |s: &Store| {
            let s = s.clone();
            async move {
                let q = CommandQuery {
                    command_id: Some("c".into()),
                    limit: 50,
                    ..Default::default()
                };
                let mut v: Vec<(String, String, String)> = s
                    .invocations(&q)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(i, _)| (i.instance_id, i.status, i.status_details))
                    .collect();
                v.sort();
                v
            }
        };
        let dto = |i: &str| {
            (
                i.to_string(),
                "TimedOut".into(),
                "Delivery Timed Out".into(),
            )
        };
        assert_eq!(details(&s).await, [dto("mi-1"), dto("mi-2")]);
        let c = s.command("c").await.unwrap().unwrap();
        assert_eq!(
            (c.status.as_str(), c.delivery_timed_out_count),
            ("TimedOut", 2)
        );

        // The late real result of the handed-over one replaces the verdict...
        assert!(
            s.finish_invocation("c", "mi-1", &result(Detail::Success, "late"), 70_000)
                .await
                .unwrap(),
            "a late result replaces a provisional Delivery Timed Out"
        );
        assert_eq!(
            details(&s).await,
            [
                ("mi-1".to_string(), "Success".into(), "Success".into()),
                dto("mi-2")
            ]
        );
        assert_eq!(s.plugins("c", "mi-1").await.unwrap()[0].stdout, b"late");
        let c = s.command("c").await.unwrap().unwrap();
        assert_eq!(
            (c.completed_count, c.delivery_timed_out_count),
            (2, 1),
            "the counts follow: {c:?}"
        );
        // ...once: a repeated or different report changes nothing now.
        assert!(
            !s.finish_invocation("c", "mi-1", &result(Detail::Failed, "again"), 71_000)
                .await
                .unwrap()
        );
        assert_eq!(s.plugins("c", "mi-1").await.unwrap()[0].stdout, b"late");
        // Counted once each, at the verdict: the late result replaced a
        // final status, and the repeat changed nothing.
        assert_eq!(
            s.finished_counts(),
            [
                ("Success", 0),
                ("Failed", 0),
                ("TimedOut", 2),
                ("Cancelled", 0)
            ]
        );
        // The one never handed over keeps its verdict: nothing could have run.
        assert!(
            !s.finish_invocation("c", "mi-2", &result(Detail::Success, "x"), 72_000)
                .await
                .unwrap()
        );
        assert_eq!(details(&s).await[1], dto("mi-2"));
    }

    #[tokio::test]
    async fn list_filters_by_execution_stage_and_status() {
        let (_d, s) = store().await;
        s.insert_command(&command("c1"), &[("mi-1".to_string(), String::new())])
            .await
            .unwrap();
        let mut c2 = command("c2");
        c2.requested_ms = 2_000;
        s.insert_command(&c2, &[("mi-1".to_string(), String::new())])
            .await
            .unwrap();
        s.finish_invocation("c2", "mi-1", &result(Detail::Success, "x"), 3_000)
            .await
            .unwrap();
        let ids =
            |rows: Vec<CommandRow>| rows.into_iter().map(|c| c.command_id).collect::<Vec<_>>();
        let q = |complete: Option<bool>, status: Option<&str>| CommandQuery {
            complete,
            status: status.map(str::to_owned),
            limit: 50,
            ..Default::default()
        };
        assert_eq!(ids(s.commands(&q(None, None)).await.unwrap()), ["c2", "c1"]);
        assert_eq!(ids(s.commands(&q(Some(true), None)).await.unwrap()), ["c2"]);
        assert_eq!(
            ids(s.commands(&q(Some(false), None)).await.unwrap()),
            ["c1"]
        );
        assert_eq!(
            ids(s.commands(&q(Some(false), Some("Success"))).await.unwrap()),
            Vec::<String>::new()
        );
        let invs = s.invocations(&q(Some(false), None)).await.unwrap();
        assert_eq!(invs.len(), 1);
        assert_eq!(invs[0].0.command_id, "c1");
    }

    /// RequestedBy over the whole history, paged: on both engines (the
    /// PostgreSQL pass of scripts/test.sh), from the index.
    #[tokio::test]
    async fn list_filters_by_requester_across_pages() {
        let (_d, s) = store().await;
        for n in 0..25 {
            let mut c = command(&format!("c{n:02}"));
            c.requested_ms = 1_000 + n;
            c.requested_by = if n % 5 == 0 {
                "arn:aws:iam::123456789012:user/alice".into()
            } else {
                "arn:aws:iam::123456789012:root".into()
            };
            s.insert_command(&c, &[("mi-1".to_string(), String::new())])
                .await
                .unwrap();
        }
        let page = |offset: i64| CommandQuery {
            requested_by: Some("arn:aws:iam::123456789012:user/alice".into()),
            offset,
            limit: 2,
            ..Default::default()
        };
        let mut seen = Vec::new();
        for offset in [0, 2, 4] {
            seen.extend(
                s.commands(&page(offset))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| c.command_id),
            );
        }
        // Newest first, every one of alice's five, none of root's.
        assert_eq!(seen, ["c20", "c15", "c10", "c05", "c00"]);
        let with_status = CommandQuery {
            status: Some("Pending".into()),
            ..page(0)
        };
        assert_eq!(s.commands(&with_status).await.unwrap().len(), 2);
        let invs = s
            .invocations(&CommandQuery {
                limit: 50,
                ..page(0)
            })
            .await
            .unwrap();
        assert_eq!(invs.len(), 5, "the invocations' listing filters alike");
        // The planner uses the index (SQLite: EXPLAIN QUERY PLAN).
        if s.dialect == Dialect::Sqlite {
            let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
                "EXPLAIN QUERY PLAN SELECT c.command_id FROM commands c WHERE 1=1 \
                 AND c.requested_by = 'x' ORDER BY c.requested_ms DESC, c.command_id LIMIT 2",
            )
            .fetch_all(&s.pool)
            .await
            .unwrap();
            assert!(
                plan.iter()
                    .any(|(_, _, _, d)| d.contains("commands_by_requester")),
                "{plan:?}"
            );
        }
    }

    #[tokio::test]
    async fn sizes_come_before_rows_and_outputs_are_read_in_part() {
        let (_d, s) = store().await;
        let mut big = command("big");
        big.parameters_json = format!(r#"{{"commands":["{}"]}}"#, "é".repeat(1000));
        big.resolved_json = big.parameters_json.clone();
        big.comment = "hi".into();
        s.insert_command(&big, &[("mi-1".to_string(), String::new())])
            .await
            .unwrap();
        let mut small = command("small");
        small.requested_ms = 2_000;
        s.insert_command(&small, &[("mi-1".to_string(), String::new())])
            .await
            .unwrap();
        let q = CommandQuery {
            limit: 10,
            ..Default::default()
        };
        // Bytes, not characters: é is two.
        assert_eq!(
            s.command_sizes(&q).await.unwrap(),
            [
                ("small".to_string(), 2 + 2 + 2),
                ("big".to_string(), 2_017 + 2 + 2 + 2)
            ]
        );
        let rows = s
            .commands_by_id(&["big".into(), "gone".into(), "small".into()])
            .await
            .unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.command_id.as_str()).collect();
        assert_eq!(
            ids,
            ["big", "small"],
            "in the order asked, the missing left out"
        );
        // Envelope bytes: document, resolved parameters, name, version, hash
        // (and room for sealed values when it references parameters).
        assert_eq!(
            s.work("mi-1", 1_100, 30_000, 10).await.unwrap().deliverable,
            [
                ("big".to_string(), 2 + 2_017 + 18 + 1 + 1),
                ("small".to_string(), 2 + 2 + 18 + 1 + 1)
            ]
        );
        assert_eq!(
            s.work("mi-1", 2_100, 30_000, 1)
                .await
                .unwrap()
                .deliverable
                .len(),
            1,
            "at most the limit"
        );
        let mut long = result(Detail::Success, &"x".repeat(100));
        long.plugins[0].stderr = b"short".to_vec();
        let mut empty = long.plugins[0].clone();
        empty.name = "1.empty".into();
        (empty.stdout, empty.stderr) = (Vec::new(), Vec::new());
        long.plugins.push(empty);
        s.finish_invocation("big", "mi-1", &long, 3_000)
            .await
            .unwrap();
        let head = s.plugins_head("big", "mi-1", 10).await.unwrap();
        assert_eq!(head[0].stdout, b"xxxxxxxxxx");
        assert!(head[0].stdout_truncated, "cut, so marked");
        assert_eq!(head[0].stderr, b"short");
        assert!(!head[0].stderr_truncated);
        assert!(head[1].stdout.is_empty() && head[1].stderr.is_empty());
        let briefs = s.invocations(&q).await.unwrap();
        assert_eq!(briefs.len(), 2);
        assert_eq!(
            (
                briefs[1].1.command_id.as_str(),
                briefs[1].1.comment.as_str()
            ),
            ("big", "hi")
        );
    }

    #[tokio::test]
    async fn concurrency_limit_and_error_budget() {
        let (_d, s) = store().await;
        let mut c = command("c");
        c.concurrency_limit = 1;
        let targets: Vec<(String, String)> = ["mi-1", "mi-2", "mi-3"]
            .iter()
            .map(|i| (i.to_string(), String::new()))
            .collect();
        s.insert_command(&c, &targets).await.unwrap();
        assert!(s.claim_delivery(&claim("mi-1"), 1_100).await.unwrap());
        assert!(
            !s.claim_delivery(&claim("mi-2"), 1_100).await.unwrap(),
            "the one slot is taken"
        );
        assert_eq!(s.waiting_instances("c").await.unwrap(), ["mi-2", "mi-3"]);
        // mi-1 fails: MaxErrors 0 is exceeded, so the undelivered rest is Terminated.
        s.finish_invocation("c", "mi-1", &result(Detail::Failed, "boom"), 2_000)
            .await
            .unwrap();
        assert!(s.waiting_instances("c").await.unwrap().is_empty());
        assert!(!s.claim_delivery(&claim("mi-2"), 2_100).await.unwrap());
        let rows = s
            .invocations(&CommandQuery {
                command_id: Some("c".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let details: Vec<&str> = rows
            .iter()
            .map(|(i, _)| i.status_details.as_str())
            .collect();
        assert_eq!(details, ["Failed", "Terminated", "Terminated"]);
        // The Terminated ones are counted too, once (Status Failed).
        assert_eq!(s.finished_counts()[1], ("Failed", 3));
        let c = s.command("c").await.unwrap().unwrap();
        assert_eq!(
            (c.status.as_str(), c.completed_count, c.error_count),
            ("Failed", 3, 1)
        );
    }

    #[tokio::test]
    async fn deliverable_work_respects_acks_redelivery_and_timeouts() {
        let (_d, s) = store().await;
        s.insert_command(&command("c"), &[("mi-1".to_string(), String::new())])
            .await
            .unwrap();
        assert_eq!(
            s.work("mi-1", 1_100, 30_000, 10)
                .await
                .unwrap()
                .deliverable
                .len(),
            1
        );
        assert!(s.claim_delivery(&claim("mi-1"), 1_100).await.unwrap());
        assert!(
            !s.claim_delivery(&claim("mi-1"), 1_150).await.unwrap(),
            "claimed once"
        );
        assert!(
            s.work("mi-1", 1_200, 30_000, 10)
                .await
                .unwrap()
                .deliverable
                .is_empty(),
            "awaiting the ack"
        );
        assert_eq!(
            s.work("mi-1", 31_100, 30_000, 10)
                .await
                .unwrap()
                .deliverable
                .len(),
            1,
            "ack lost: deliver again"
        );
        assert!(
            s.work("mi-1", 61_000, 30_000, 10)
                .await
                .unwrap()
                .deliverable
                .is_empty(),
            "past the delivery timeout"
        );
        assert_eq!(
            s.last_envelope("c", "mi-1").await.unwrap(),
            Some((b"p".to_vec(), b"s".to_vec()))
        );
    }
}
