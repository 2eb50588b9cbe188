-- Core schema: activations, managed instances, commands and their invocations.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE operator_tokens (
    token_hash      TEXT PRIMARY KEY,   -- hex SHA-256 of the token
    created_ms      INTEGER NOT NULL
);

CREATE TABLE activations (
    activation_id           TEXT PRIMARY KEY,
    code_salt               BLOB NOT NULL,
    code_hash               BLOB NOT NULL,   -- SHA-256(salt || code)
    description             TEXT NOT NULL DEFAULT '',
    default_instance_name   TEXT NOT NULL DEFAULT '',
    iam_role                TEXT NOT NULL,
    registration_limit      INTEGER NOT NULL,
    registrations_count     INTEGER NOT NULL DEFAULT 0,
    expiration_ms           INTEGER NOT NULL,
    created_ms              INTEGER NOT NULL,
    deleted_ms              INTEGER,          -- kept as a tombstone so agents get a clear refusal
    tags_json               TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE instances (
    instance_id         TEXT PRIMARY KEY,
    activation_id       TEXT NOT NULL,
    name                TEXT NOT NULL DEFAULT '',
    iam_role            TEXT NOT NULL DEFAULT '',
    registration_ms     INTEGER NOT NULL,
    last_ping_ms        INTEGER,
    platform_type       TEXT NOT NULL DEFAULT '',
    platform_name       TEXT NOT NULL DEFAULT '',
    platform_version    TEXT NOT NULL DEFAULT '',
    computer_name       TEXT NOT NULL DEFAULT '',
    ip_address          TEXT NOT NULL DEFAULT '',
    agent_version       TEXT NOT NULL DEFAULT '',
    deregistered_ms     INTEGER,
    tags_json           TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE commands (
    command_id          TEXT PRIMARY KEY,
    document_name       TEXT NOT NULL,
    document_version    TEXT NOT NULL,
    document_hash       TEXT NOT NULL,
    document_content    TEXT NOT NULL,
    parameters_json     TEXT NOT NULL,   -- as the operator gave them
    resolved_json       TEXT NOT NULL,   -- after defaults: what the agent receives
    comment             TEXT NOT NULL DEFAULT '',
    requested_ms        INTEGER NOT NULL,
    timeout_seconds     INTEGER NOT NULL,
    max_concurrency     TEXT NOT NULL,
    max_errors          TEXT NOT NULL,
    concurrency_limit   INTEGER NOT NULL,  -- MaxConcurrency resolved against the target count
    instance_ids_json   TEXT NOT NULL,
    targets_json        TEXT NOT NULL DEFAULT '[]',
    status              TEXT NOT NULL,
    status_details      TEXT NOT NULL,
    target_count        INTEGER NOT NULL,
    completed_count     INTEGER NOT NULL DEFAULT 0,
    error_count         INTEGER NOT NULL DEFAULT 0,
    delivery_timed_out_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX commands_requested ON commands (requested_ms DESC);

CREATE TABLE invocations (
    command_id          TEXT NOT NULL REFERENCES commands (command_id),
    instance_id         TEXT NOT NULL,
    instance_name       TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL,
    status_details      TEXT NOT NULL,
    requested_ms        INTEGER NOT NULL,
    delivered_ms        INTEGER,          -- last time an envelope was handed to the agent
    acked_ms            INTEGER,          -- the agent said it accepted the envelope
    deliveries          INTEGER NOT NULL DEFAULT 0,
    envelope_payload    BLOB,             -- the last signed envelope, for audit
    envelope_signature  BLOB,
    start_ms            INTEGER,
    end_ms              INTEGER,
    response_code       INTEGER NOT NULL DEFAULT -1,
    PRIMARY KEY (command_id, instance_id)
);
CREATE INDEX invocations_by_instance ON invocations (instance_id, status);

CREATE TABLE invocation_plugins (
    command_id          TEXT NOT NULL,
    instance_id         TEXT NOT NULL,
    seq                 INTEGER NOT NULL,
    name                TEXT NOT NULL,
    status              TEXT NOT NULL,
    status_details      TEXT NOT NULL,
    response_code       INTEGER NOT NULL DEFAULT -1,
    start_ms            INTEGER,
    end_ms              INTEGER,
    stdout              BLOB NOT NULL DEFAULT x'',
    stderr              BLOB NOT NULL DEFAULT x'',
    stdout_truncated    INTEGER NOT NULL DEFAULT 0,
    stderr_truncated    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (command_id, instance_id, seq)
);
