-- PostgreSQL: the schema SQLite reaches with migrations 0001-0006, in one step.
-- Later migrations keep the same number in both directories (sqlite/0007_x.sql
-- and postgres/0007_x.sql). Differences from SQLite's spelling: BIGINT for every
-- integer (flags are 0/1 as in SQLite, so the statements are the same), BYTEA
-- for blobs, BIGSERIAL for the autoincrementing key, PL/pgSQL triggers.

-- Core schema: activations, managed instances, commands and their invocations.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE operator_tokens (
    token_hash      TEXT PRIMARY KEY,   -- hex SHA-256 of the token
    created_ms      BIGINT NOT NULL
);

CREATE TABLE activations (
    activation_id           TEXT PRIMARY KEY,
    code_salt               BYTEA NOT NULL,
    code_hash               BYTEA NOT NULL,   -- SHA-256(salt || code)
    description             TEXT NOT NULL DEFAULT '',
    default_instance_name   TEXT NOT NULL DEFAULT '',
    iam_role                TEXT NOT NULL,
    registration_limit      BIGINT NOT NULL,
    registrations_count     BIGINT NOT NULL DEFAULT 0,
    expiration_ms           BIGINT NOT NULL,
    created_ms              BIGINT NOT NULL,
    deleted_ms              BIGINT,          -- kept as a tombstone so agents get a clear refusal
    tags_json               TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE instances (
    instance_id         TEXT PRIMARY KEY,
    activation_id       TEXT NOT NULL,
    name                TEXT NOT NULL DEFAULT '',
    iam_role            TEXT NOT NULL DEFAULT '',
    registration_ms     BIGINT NOT NULL,
    last_ping_ms        BIGINT,
    platform_type       TEXT NOT NULL DEFAULT '',
    platform_name       TEXT NOT NULL DEFAULT '',
    platform_version    TEXT NOT NULL DEFAULT '',
    computer_name       TEXT NOT NULL DEFAULT '',
    ip_address          TEXT NOT NULL DEFAULT '',
    agent_version       TEXT NOT NULL DEFAULT '',
    deregistered_ms     BIGINT,
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
    requested_ms        BIGINT NOT NULL,
    timeout_seconds     BIGINT NOT NULL,
    max_concurrency     TEXT NOT NULL,
    max_errors          TEXT NOT NULL,
    concurrency_limit   BIGINT NOT NULL,  -- MaxConcurrency resolved against the target count
    instance_ids_json   TEXT NOT NULL,
    targets_json        TEXT NOT NULL DEFAULT '[]',
    status              TEXT NOT NULL,
    status_details      TEXT NOT NULL,
    target_count        BIGINT NOT NULL,
    completed_count     BIGINT NOT NULL DEFAULT 0,
    error_count         BIGINT NOT NULL DEFAULT 0,
    delivery_timed_out_count BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX commands_requested ON commands (requested_ms DESC);

CREATE TABLE invocations (
    command_id          TEXT NOT NULL REFERENCES commands (command_id),
    instance_id         TEXT NOT NULL,
    instance_name       TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL,
    status_details      TEXT NOT NULL,
    requested_ms        BIGINT NOT NULL,
    delivered_ms        BIGINT,          -- last time an envelope was handed to the agent
    acked_ms            BIGINT,          -- the agent said it accepted the envelope
    deliveries          BIGINT NOT NULL DEFAULT 0,
    envelope_payload    BYTEA,             -- the last signed envelope, for audit
    envelope_signature  BYTEA,
    start_ms            BIGINT,
    end_ms              BIGINT,
    response_code       BIGINT NOT NULL DEFAULT -1,
    PRIMARY KEY (command_id, instance_id)
);
CREATE INDEX invocations_by_instance ON invocations (instance_id, status);

CREATE TABLE invocation_plugins (
    command_id          TEXT NOT NULL,
    instance_id         TEXT NOT NULL,
    seq                 BIGINT NOT NULL,
    name                TEXT NOT NULL,
    status              TEXT NOT NULL,
    status_details      TEXT NOT NULL,
    response_code       BIGINT NOT NULL DEFAULT -1,
    start_ms            BIGINT,
    end_ms              BIGINT,
    stdout              BYTEA NOT NULL DEFAULT ''::bytea,
    stderr              BYTEA NOT NULL DEFAULT ''::bytea,
    stdout_truncated    BIGINT NOT NULL DEFAULT 0,
    stderr_truncated    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (command_id, instance_id, seq)
);

-- Command documents created by operators, every version kept. The built-in
-- AWS- documents live in the binary, not here.
CREATE TABLE documents (
    name                TEXT PRIMARY KEY,
    default_version     BIGINT NOT NULL,
    latest_version      BIGINT NOT NULL,
    created_ms          BIGINT NOT NULL,
    tags_json           TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE document_versions (
    name                TEXT NOT NULL REFERENCES documents(name) ON DELETE CASCADE,
    version             BIGINT NOT NULL,
    version_name        TEXT,
    content             TEXT NOT NULL,
    format              TEXT NOT NULL,      -- JSON | YAML
    hash                TEXT NOT NULL,      -- hex SHA-256 of content
    document_type       TEXT NOT NULL,
    schema_version      TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    target_type         TEXT,
    created_ms          BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX document_version_names ON document_versions(name, version_name)
    WHERE version_name IS NOT NULL;

-- CancelCommand on a delivered invocation: when it was asked for, and when a
-- signed cancel was last handed to the agent (resent until the agent reports).
ALTER TABLE invocations ADD COLUMN cancel_requested_ms BIGINT;
ALTER TABLE invocations ADD COLUMN cancel_sent_ms BIGINT;

-- An invocation ended by the coordinator because its agent fell silent while
-- running it: a result the agent sends later still replaces that verdict.
ALTER TABLE invocations ADD COLUMN presumed_lost BIGINT NOT NULL DEFAULT 0;

-- State Manager associations and inventory (issue 4).
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE associations (
    association_id              TEXT PRIMARY KEY,
    association_name            TEXT NOT NULL DEFAULT '',
    document_name               TEXT NOT NULL,
    document_version            TEXT NOT NULL,
    document_hash               TEXT NOT NULL,
    document_content            TEXT NOT NULL,
    association_version         BIGINT NOT NULL DEFAULT 1,
    parameters_json             TEXT NOT NULL DEFAULT '{}',   -- as the operator gave them
    resolved_json               TEXT NOT NULL DEFAULT '{}',   -- after defaults: what agents receive
    targets_json                TEXT NOT NULL DEFAULT '[]',
    instance_id                 TEXT NOT NULL DEFAULT '',     -- the legacy InstanceId member
    schedule_expression         TEXT NOT NULL DEFAULT '',
    apply_only_at_cron_interval BIGINT NOT NULL DEFAULT 0,
    max_concurrency             TEXT NOT NULL DEFAULT '',
    max_errors                  TEXT NOT NULL DEFAULT '',
    compliance_severity         TEXT NOT NULL DEFAULT '',
    created_ms                  BIGINT NOT NULL,
    updated_ms                  BIGINT NOT NULL,
    last_execution_ms           BIGINT,
    last_success_ms             BIGINT
);

-- One row per (association, instance): the latest run's outcome.
CREATE TABLE association_status (
    association_id      TEXT NOT NULL REFERENCES associations(association_id) ON DELETE CASCADE,
    instance_id         TEXT NOT NULL,
    association_version TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL,            -- Pending, Success, Failed
    detail              TEXT NOT NULL DEFAULT '',
    output              TEXT NOT NULL DEFAULT '',
    execution_ms        BIGINT NOT NULL,
    PRIMARY KEY (association_id, instance_id)
);

-- The current inventory: one row per (instance, type).
CREATE TABLE inventory (
    instance_id     TEXT NOT NULL,
    type_name       TEXT NOT NULL,
    schema_version  TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    capture_ms      BIGINT NOT NULL,
    content_json    TEXT NOT NULL,
    PRIMARY KEY (instance_id, type_name)
);

-- Every distinct content an instance's type has had, in capture order.
CREATE TABLE inventory_history (
    seq             BIGSERIAL PRIMARY KEY,
    instance_id     TEXT NOT NULL,
    type_name       TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    capture_ms      BIGINT NOT NULL,
    content_json    TEXT NOT NULL
);
CREATE INDEX inventory_history_by_instance ON inventory_history (instance_id, type_name, capture_ms);

-- Issue 6: SigV4 access keys for the SSM-compatible HTTP API, and the AWS bridge.
--
-- Access keys: the secret is needed in clear to verify a signature, so it cannot be hashed:
-- it is sealed with AES-256-GCM under the data directory's access-keys.key
-- (nonce || ciphertext || tag, the access key ID as associated data). The
-- database alone does not reveal it.

CREATE TABLE access_keys (
    access_key_id   TEXT PRIMARY KEY,
    secret_sealed   BYTEA NOT NULL,
    created_ms      BIGINT NOT NULL,
    last_used_ms    BIGINT
);

-- The AWS bridge: instances that AWS SSM manages in a configured account, as
-- last described by it, and the AWS side of our invocations on them.
CREATE TABLE aws_instances (
    instance_id         TEXT PRIMARY KEY,
    account             TEXT NOT NULL,           -- the bridge account's name in the config
    resource_type       TEXT NOT NULL,           -- EC2Instance or ManagedInstance
    ping_status         TEXT NOT NULL,           -- as AWS reports it
    name                TEXT NOT NULL DEFAULT '',
    activation_id       TEXT NOT NULL DEFAULT '',
    iam_role            TEXT NOT NULL DEFAULT '',
    platform_type       TEXT NOT NULL DEFAULT '',
    platform_name       TEXT NOT NULL DEFAULT '',
    platform_version    TEXT NOT NULL DEFAULT '',
    computer_name       TEXT NOT NULL DEFAULT '',
    ip_address          TEXT NOT NULL DEFAULT '',
    agent_version       TEXT NOT NULL DEFAULT '',
    registration_ms     BIGINT,
    last_ping_ms        BIGINT,
    tags_json           TEXT NOT NULL DEFAULT '[]',
    seen_ms             BIGINT NOT NULL
);

CREATE TABLE aws_invocations (
    command_id          TEXT NOT NULL,
    instance_id         TEXT NOT NULL,
    account             TEXT NOT NULL,
    aws_command_id      TEXT NOT NULL,
    next_poll_ms        BIGINT NOT NULL,
    throttled           BIGINT NOT NULL DEFAULT 0,   -- consecutive throttled polls (backoff)
    PRIMARY KEY (command_id, instance_id)
);

-- List verbs read the newest invocations first without sorting the history.
CREATE INDEX invocations_requested ON invocations (requested_ms DESC, command_id, instance_id);
CREATE INDEX invocations_by_instance_requested ON invocations (instance_id, requested_ms DESC);

-- How many invocations of each command are in each state, kept by triggers
-- (see sqlite/0006_scale.sql).
CREATE TABLE command_counts (
    command_id      TEXT NOT NULL,
    status_details  TEXT NOT NULL,
    n               BIGINT NOT NULL,
    PRIMARY KEY (command_id, status_details)
);

CREATE FUNCTION command_counts_add(cmd TEXT, detail TEXT, delta BIGINT) RETURNS void AS $$
BEGIN
    INSERT INTO command_counts AS cc (command_id, status_details, n)
        VALUES (cmd, detail, delta)
        ON CONFLICT (command_id, status_details) DO UPDATE SET n = cc.n + delta;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION command_counts_track() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM command_counts_add(NEW.command_id, NEW.status_details, 1);
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.status_details <> NEW.status_details THEN
            PERFORM command_counts_add(OLD.command_id, OLD.status_details, -1);
            PERFORM command_counts_add(NEW.command_id, NEW.status_details, 1);
        END IF;
    ELSE
        PERFORM command_counts_add(OLD.command_id, OLD.status_details, -1);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER command_counts_insert AFTER INSERT ON invocations
    FOR EACH ROW EXECUTE FUNCTION command_counts_track();
CREATE TRIGGER command_counts_update AFTER UPDATE OF status_details ON invocations
    FOR EACH ROW EXECUTE FUNCTION command_counts_track();
CREATE TRIGGER command_counts_delete AFTER DELETE ON invocations
    FOR EACH ROW EXECUTE FUNCTION command_counts_track();
