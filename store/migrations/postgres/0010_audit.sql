-- The audit trail (issue 14): one hash chain of records in one global order
-- across replicas, and the chain heads signed by the audit key (which lives
-- in the secrets directory, never here). Records are only ever appended;
-- the hashes and signatures are computed by the coordinator
-- (coordinator/src/audit/), the store only keeps them.

CREATE TABLE audit_records (
    seq             BIGINT PRIMARY KEY,  -- 1, 2, 3, … with no gap
    event_id        TEXT NOT NULL UNIQUE,
    request_id      TEXT NOT NULL,        -- an intent and its outcome share it
    time_ms         BIGINT NOT NULL,
    kind            TEXT NOT NULL,        -- intent | outcome | refused | read | agent
    principal_arn   TEXT NOT NULL,
    user_name       TEXT NOT NULL,        -- CloudTrail's Username ("root" for root)
    credential_id   TEXT,                 -- access key ID or operator token ID
    source          TEXT,                 -- the peer's address
    transport       TEXT NOT NULL,        -- grpc | https
    action          TEXT NOT NULL,        -- ssm:SendCommand, iam:CreateUser, tether:…
    event_name      TEXT NOT NULL,        -- SendCommand
    event_source    TEXT NOT NULL,        -- ssm.amazonaws.com, …
    read_only       BIGINT NOT NULL,
    resources_json  TEXT NOT NULL,        -- [{"ResourceType":..,"ResourceName":..}]
    request_json    TEXT NOT NULL,        -- the request, secrets redacted
    outcome_json    TEXT NOT NULL,        -- IDs created / answered, or {}
    error_code      TEXT,
    error_message   TEXT,
    replica         TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);
CREATE INDEX audit_records_by_time ON audit_records (time_ms);
CREATE INDEX audit_records_by_request ON audit_records (request_id);

-- Signed chain heads: the newest record's seq and hash, signed with the
-- audit key. The newest one is also kept beside the key (audit-head.json),
-- so that deleting rows here is caught.
CREATE TABLE audit_heads (
    seq             BIGINT PRIMARY KEY,
    hash            TEXT NOT NULL,
    signed_ms       BIGINT NOT NULL,
    replica         TEXT NOT NULL,
    signature       TEXT NOT NULL         -- hex Ed25519
);
