-- Issue 6: SigV4 access keys for the SSM-compatible HTTP API, and the AWS bridge.
--
-- Access keys: the secret is needed in clear to verify a signature, so it cannot be hashed:
-- it is sealed with AES-256-GCM under the data directory's access-keys.key
-- (nonce || ciphertext || tag, the access key ID as associated data). The
-- database alone does not reveal it.

CREATE TABLE access_keys (
    access_key_id   TEXT PRIMARY KEY,
    secret_sealed   BLOB NOT NULL,
    created_ms      INTEGER NOT NULL,
    last_used_ms    INTEGER
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
    registration_ms     INTEGER,
    last_ping_ms        INTEGER,
    tags_json           TEXT NOT NULL DEFAULT '[]',
    seen_ms             INTEGER NOT NULL
);

CREATE TABLE aws_invocations (
    command_id          TEXT NOT NULL,
    instance_id         TEXT NOT NULL,
    account             TEXT NOT NULL,
    aws_command_id      TEXT NOT NULL,
    next_poll_ms        INTEGER NOT NULL,
    throttled           INTEGER NOT NULL DEFAULT 0,   -- consecutive throttled polls (backoff)
    PRIMARY KEY (command_id, instance_id)
);
