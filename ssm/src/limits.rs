//! Every limit and default of the outside contract, in one place.
//!
//! Values follow the SSM API model (botocore `ssm/2014-11-06`) unless a comment
//! says Tether deliberately does better.

use std::time::Duration;

/// Instance IDs per SendCommand.
pub const MAX_INSTANCE_IDS_PER_COMMAND: usize = 50;
/// `--comment` length.
pub const MAX_COMMENT_CHARS: usize = 100;
/// Delivery timeout (`--timeout-seconds`): default and range.
pub const DEFAULT_DELIVERY_TIMEOUT_SECS: i64 = 600;
pub const MIN_DELIVERY_TIMEOUT_SECS: i64 = 30;
pub const MAX_DELIVERY_TIMEOUT_SECS: i64 = 2_592_000;

/// Activation registration limit: default and range.
pub const DEFAULT_REGISTRATION_LIMIT: i64 = 1;
pub const MAX_REGISTRATION_LIMIT: i64 = 1000;
/// Activation expiry: default lifetime and the furthest ahead it may be set.
pub const DEFAULT_ACTIVATION_LIFETIME: Duration = Duration::from_secs(24 * 3600);
pub const MAX_ACTIVATION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Length of an activation code and its alphabet (no 0/O, 1/I/l).
pub const ACTIVATION_CODE_LEN: usize = 20;
pub const ACTIVATION_CODE_ALPHABET: &[u8] =
    b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
/// Failed registration attempts per source address, and per activation ID
/// (from every source together), within the window; past either, a failing
/// attempt is answered "too many failed registration attempts". A right code
/// is never refused for it (see `coordinator/src/core/registration.rs`).
pub const MAX_FAILED_REGISTRATIONS_PER_SOURCE: u32 = 10;
pub const MAX_FAILED_REGISTRATIONS_PER_ACTIVATION: u32 = 20;
pub const FAILED_REGISTRATION_WINDOW: Duration = Duration::from_secs(60);
/// Entries the registration failure counters keep before they forget the
/// oldest (a bound on what a flood of made-up sources or IDs can allocate).
pub const MAX_FAILED_REGISTRATION_ENTRIES: usize = 100_000;

/// How long the coordinator holds one agent poll open.
pub const LONG_POLL_HOLD: Duration = Duration::from_secs(20);
/// An agent not heard from for this long is shown as ConnectionLost.
pub const ONLINE_GRACE: Duration = Duration::from_secs(60);
/// How long a signed envelope stays valid after it is issued.
pub const ENVELOPE_LIFETIME: Duration = Duration::from_secs(600);
/// Lifetime of an agent's client certificate (renewed by the agent at
/// half-life): the default of `tether serve --client-cert-lifetime`.
pub const CLIENT_CERT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often every replica looks whether a rotation step changed the
/// trust keys in the shared secrets directory (`rotation.json`).
pub const TRUST_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// The shortest and longest client-certificate lifetime `tether serve`
/// accepts, in seconds: a minute (tests), ten years.
pub const CLIENT_CERT_LIFETIME_MIN_SECS: u64 = 60;
pub const CLIENT_CERT_LIFETIME_MAX_SECS: u64 = 10 * 365 * 24 * 3600;

/// GetCommandInvocation output limits and the marker that ends cut output.
pub const GET_INVOCATION_STDOUT_CHARS: usize = 24_000;
pub const GET_INVOCATION_STDERR_CHARS: usize = 8_000;
/// ListCommandInvocations `--details` plugin Output limit.
pub const LIST_INVOCATIONS_OUTPUT_CHARS: usize = 2_500;
pub const TRUNCATION_MARKER: &str = "\n--output truncated--";

/// Page sizes of the list verbs.
pub const DEFAULT_PAGE_SIZE: i64 = 50;

/// Largest document content accepted (SSM's quota for Command documents).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// `CreatedDate` shown for the built-in documents (2026-01-01T00:00:00Z).
pub const BUILTIN_DOCUMENTS_CREATED_MS: i64 = 1_767_225_600_000;
/// Tags on one resource (SSM's quota).
pub const MAX_TAGS_PER_RESOURCE: usize = 50;

/// A cancellation its agent has not confirmed in this time (the agent is
/// offline) ends as Cancelled without it.
pub const CANCEL_CONFIRM_TIMEOUT: Duration = Duration::from_secs(600);
/// A running invocation whose agent has been silent this long ends as Failed,
/// presumed lost; a result the agent sends later still replaces that. Longer
/// than SSM's longest executionTimeout (48 h), so no honest step is cut short.
pub const AGENT_SILENT_TIMEOUT: Duration = Duration::from_secs(72 * 3600);
/// Command history is kept this long (contract: 30 days by default), then pruned.
pub const HISTORY_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// SSM-compatible HTTP API: how far a SigV4 request's X-Amz-Date may be from
/// the coordinator's clock (as AWS).
pub const SIGV4_MAX_CLOCK_SKEW_SECS: i64 = 300;
/// A signature of a request that changes something is refused when seen again
/// this long after its X-Amz-Date: every moment it could still pass the clock
/// check (two skews: it may be dated up to one skew ahead of the clock).
pub const SIGV4_REPLAY_WINDOW_SECS: i64 = 2 * SIGV4_MAX_CLOCK_SKEW_SECS;

// ----- Sizes. Tether's own caps where the model sets none; every transport
// ----- (HTTPS, the operator's gRPC channel) is held to the same ones.

/// The largest request body of any operation, on any transport (the JSON of
/// an SSM request: AWS's own front end takes no more).
pub const MAX_REQUEST_BODY_BYTES: usize = 4 * 1024 * 1024;
/// A command's or an association's `Parameters`: every name and every value,
/// in UTF-8 bytes, together.
pub const MAX_PARAMETERS_BYTES: usize = 256 * 1024;
/// One signed envelope (a command for one instance, or one association): the
/// document, the resolved parameters and the envelope's own fields. A command
/// whose envelope would be larger is refused at SendCommand; one stored before
/// this cap existed ends Undeliverable when its turn to be delivered comes.
pub const MAX_ENVELOPE_BYTES: usize = 4 * 1024 * 1024;
/// What a command's `{{ssm-secure:…}}` values add to its envelope, counted
/// per byte of its references' record (`references_json`, at least 64 bytes
/// per reference): a value is at most [`MAX_PARAMETER_VALUE_BYTES`], and
/// sealed with its reference, name and version it takes under 64 × 64
/// bytes. Generous for plain references (whose values are in the resolved
/// parameters already), which only makes the bound safe.
pub const SEALED_BYTES_PER_REFERENCE_BYTE: usize = 64;
/// What one poll hands an agent at most: its association set, cancellations
/// and as many envelopes as fit (the rest at its next poll, at once). Below the
/// 40 MiB gRPC message limit, with room for the framing.
pub const MAX_POLL_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Envelopes looked at per poll (the rest wait for the next poll).
pub const MAX_ENVELOPES_PER_POLL: i64 = 256;
/// The items of one list page together, as JSON: a page holds fewer items than
/// asked (and a NextToken) rather than more bytes. An item larger than this
/// alone travels alone on its page.
pub const MAX_LIST_PAGE_BYTES: usize = 1024 * 1024;
/// Output bytes of each step read for ListCommandInvocations `--details`
/// (it shows 2,500 characters: at most 4 bytes each, and the marker).
pub const LIST_INVOCATIONS_OUTPUT_BYTES: usize = 4 * LIST_INVOCATIONS_OUTPUT_CHARS + 4;
/// The largest message of a call made without credentials (Registration:
/// an activation, a CSR, host facts).
pub const MAX_UNAUTHENTICATED_MESSAGE_BYTES: usize = 64 * 1024;
/// The largest operator call on gRPC: a request body and its operation's name.
pub const MAX_OPERATOR_MESSAGE_BYTES: usize = MAX_REQUEST_BODY_BYTES + 4 * 1024;

// ----- Slow clients (both listeners).

/// A TLS handshake not finished in this time is closed (gRPC and HTTPS).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// gRPC: after the handshake, the client's HTTP/2 preface must arrive within this.
pub const GRPC_PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTPS: a request's headers must arrive within this from the moment the
/// server waits for them — also how long an idle keep-alive connection stays.
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTPS: a request's whole body must arrive within this.
pub const HTTP_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTPS: a response the client stops reading for this long is abandoned.
pub const HTTP_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

// ----- Health (`/readyz`, and whether agents are served at all).

/// How often a replica checks that it can reach its database, and how long
/// one check may take before it counts as failed.
pub const READINESS_CHECK_INTERVAL: Duration = Duration::from_secs(2);
pub const READINESS_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Failed checks in a row that make a replica unready (one may be a blip).
pub const READINESS_FAILURES: u32 = 2;
/// Access keys: the ID's prefix and length (20, as AWS) and the secret's length (40, as AWS).
pub const ACCESS_KEY_ID_PREFIX: &str = "TKIA";
pub const ACCESS_KEY_ID_LEN: usize = 20;
pub const ACCESS_KEY_SECRET_LEN: usize = 40;
/// Access keys one user may hold at once (IAM's quota).
pub const ACCESS_KEYS_PER_USER: usize = 2;
/// Inline policies one user may have, and the bytes of all of them
/// together (IAM's 2,048 characters per user, without whitespace, is
/// raised: Tether's policies name many documents and instances).
pub const INLINE_POLICIES_PER_USER: usize = 20;
pub const INLINE_POLICY_BYTES_PER_USER: usize = 64 * 1024;
/// Users in one account.
pub const USERS_PER_ACCOUNT: usize = 5_000;
/// An operator token issued to a user without `--expires-in` lasts this long;
/// none lasts longer than the maximum.
pub const OPERATOR_TOKEN_DEFAULT_TTL_SECS: i64 = 30 * 24 * 3600;
pub const OPERATOR_TOKEN_MAX_TTL_SECS: i64 = 366 * 24 * 3600;

/// The AWS bridge: instance IDs per AWS SendCommand call (AWS's own limit),
/// how often it looks for work and polls AWS invocations, the ceiling of its
/// backoff on throttling, how often it re-describes each account's instances
/// (default), and how many failed polls in a row end an invocation as Failed.
pub const BRIDGE_SEND_BATCH: usize = 50;
pub const BRIDGE_TICK: Duration = Duration::from_secs(1);
pub const BRIDGE_POLL_INTERVAL_MS: i64 = 2_000;
pub const BRIDGE_MAX_BACKOFF_MS: i64 = 60_000;
pub const DEFAULT_BRIDGE_REFRESH_SECS: u64 = 60;
pub const BRIDGE_MAX_POLL_FAILURES: i64 = 10;

/// `TETHER_LOG_FILE` (coordinator.log) is rotated past this size; this many
/// rotated files are kept.
pub const LOG_FILE_MAX_BYTES: usize = 10 * 1024 * 1024;
pub const LOG_FILE_KEEP: usize = 5;

/// The audit trail: allowed reads are appended by a background task in
/// batches at most this late and this large; this many may wait (a burst
/// past it is dropped and logged, never refused).
pub const AUDIT_FLUSH_INTERVAL: Duration = Duration::from_millis(500);
pub const AUDIT_BATCH: usize = 512;
pub const AUDIT_QUEUE: usize = 65_536;
/// How often the chain head is signed (when it moved), by default; at most a minute.
pub const AUDIT_SIGN_INTERVAL: Duration = Duration::from_secs(30);
pub const AUDIT_SIGN_INTERVAL_MAX_SECS: u64 = 60;
/// A request member whose JSON is larger than this is recorded as its size
/// and SHA-256 only (a document's content, a large parameter list).
pub const AUDIT_MEMBER_MAX_BYTES: usize = 8 * 1024;
/// A recorded request larger than this (members capped) is recorded as its
/// size and SHA-256 alone.
pub const AUDIT_REQUEST_MAX_BYTES: usize = 64 * 1024;
/// The audit mirror (`audit.log`) is rotated past this size; this many
/// rotated files are kept.
pub const AUDIT_LOG_MAX_BYTES: usize = 64 * 1024 * 1024;
pub const AUDIT_LOG_KEEP: usize = 10;
/// LookupEvents: CloudTrail's default and largest page.
pub const LOOKUP_EVENTS_MAX_RESULTS: i64 = 50;
/// Parameter Store (SSM's quotas for the Standard tier, the only one Tether
/// has). A name's length: SSM's model allows 2048 characters of which 1037
/// are reserved for its own use, so 1011 are the caller's.
pub const MAX_PARAMETER_NAME_CHARS: usize = 1011;
/// Levels of a parameter's hierarchy (`/a/b/c` has 3).
pub const MAX_PARAMETER_HIERARCHY_DEPTH: usize = 15;
/// A Standard-tier value, in bytes.
pub const MAX_PARAMETER_VALUE_BYTES: usize = 4096;
/// Versions kept per parameter; past it the oldest goes, unless it has a label.
pub const MAX_PARAMETER_VERSIONS: i64 = 100;
/// Labels on one version, and a label's length.
pub const MAX_LABELS_PER_PARAMETER_VERSION: usize = 10;
pub const MAX_PARAMETER_LABEL_CHARS: usize = 100;
/// Standard-tier parameters per account (and region).
pub const MAX_PARAMETERS: i64 = 10_000;
/// Page sizes: GetParametersByPath (default and most, as SSM), DescribeParameters
/// and GetParameterHistory (default; the model caps both at 50).
pub const PARAMETERS_BY_PATH_PAGE: i64 = 10;
pub const DESCRIBE_PARAMETERS_PAGE: i64 = 10;
pub const PARAMETER_HISTORY_PAGE: i64 = 50;
/// The key-encryption key a SecureString uses when `KeyId` names none.
pub const DEFAULT_PARAMETER_KEY: &str = "alias/tether/default";
/// Data keys re-wrapped per store round trip while a key rotates.
pub const PARAMETER_KEY_REWRAP_BATCH: i64 = 200;

/// Largest agent release (binary) the coordinator keeps: the static agent
/// is under 8 MiB; room for debug builds and growth.
pub const MAX_AGENT_RELEASE_BYTES: u64 = 64 * 1024 * 1024;
/// Most agent releases kept at once (every version and platform): delete
/// old ones to add more.
pub const MAX_AGENT_RELEASES: i64 = 50;
/// Largest part of a release in one AddAgentRelease call (base64 in the
/// request, so the request stays under [`MAX_REQUEST_BODY_BYTES`]), and
/// largest chunk of one DownloadRelease message.
pub const AGENT_RELEASE_PART_BYTES: usize = 1024 * 1024;

/// The web console (`/console/`): how long a session lasts from sign-in
/// (`tether serve --console-session-lifetime`, default 8 hours; at most a
/// day), how many sessions one replica holds at once (the oldest goes past
/// it), the largest form it reads, and how often its pages refresh.
pub const CONSOLE_SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
pub const CONSOLE_SESSION_LIFETIME_MAX_SECS: u64 = 24 * 3600;
pub const CONSOLE_MAX_SESSIONS: usize = 10_000;
pub const CONSOLE_MAX_FORM_BYTES: usize = 256 * 1024;
pub const CONSOLE_REFRESH: Duration = Duration::from_secs(2);
/// Rows on one console page (the most the SSM list operations give at once).
pub const CONSOLE_PAGE_ROWS: i64 = 50;

/// The longest `RequestedBy` ListCommands takes (Tether's extra): an IAM
/// user ARN with its path is at most 2048 characters in AWS.
pub const MAX_REQUESTER_CHARS: usize = 2048;

/// How many days of inventory changes the console's instance page shows.
pub const CONSOLE_INVENTORY_CHANGE_DAYS: i64 = 7;

/// A successful `/metrics` scrape over HTTPS (an operator token) is
/// recorded in the audit trail once an hour per principal and source, not
/// at every scrape; refusals always. Scrapers remembered at once.
pub const METRICS_SCRAPE_RECORD_EVERY: Duration = Duration::from_secs(3600);
pub const METRICS_SCRAPE_RECORD_KEYS: usize = 1024;

/// How often the console's fleet page refreshes its table: a page of a
/// fleet of 10,000 reads every instance row (about 0.25 s of the
/// coordinator's time in a release build), and ping statuses move in
/// minutes, not seconds. A hidden tab does not refresh at all.
pub const CONSOLE_FLEET_REFRESH: Duration = Duration::from_secs(10);
