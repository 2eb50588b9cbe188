-- State Manager associations and inventory (issue 4).
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE associations (
    association_id              TEXT PRIMARY KEY,
    association_name            TEXT NOT NULL DEFAULT '',
    document_name               TEXT NOT NULL,
    document_version            TEXT NOT NULL,
    document_hash               TEXT NOT NULL,
    document_content            TEXT NOT NULL,
    association_version         INTEGER NOT NULL DEFAULT 1,
    parameters_json             TEXT NOT NULL DEFAULT '{}',   -- as the operator gave them
    resolved_json               TEXT NOT NULL DEFAULT '{}',   -- after defaults: what agents receive
    targets_json                TEXT NOT NULL DEFAULT '[]',
    instance_id                 TEXT NOT NULL DEFAULT '',     -- the legacy InstanceId member
    schedule_expression         TEXT NOT NULL DEFAULT '',
    apply_only_at_cron_interval INTEGER NOT NULL DEFAULT 0,
    max_concurrency             TEXT NOT NULL DEFAULT '',
    max_errors                  TEXT NOT NULL DEFAULT '',
    compliance_severity         TEXT NOT NULL DEFAULT '',
    created_ms                  INTEGER NOT NULL,
    updated_ms                  INTEGER NOT NULL,
    last_execution_ms           INTEGER,
    last_success_ms             INTEGER
);

-- One row per (association, instance): the latest run's outcome.
CREATE TABLE association_status (
    association_id      TEXT NOT NULL REFERENCES associations(association_id) ON DELETE CASCADE,
    instance_id         TEXT NOT NULL,
    association_version TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL,            -- Pending, Success, Failed
    detail              TEXT NOT NULL DEFAULT '',
    output              TEXT NOT NULL DEFAULT '',
    execution_ms        INTEGER NOT NULL,
    PRIMARY KEY (association_id, instance_id)
);

-- The current inventory: one row per (instance, type).
CREATE TABLE inventory (
    instance_id     TEXT NOT NULL,
    type_name       TEXT NOT NULL,
    schema_version  TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    capture_ms      INTEGER NOT NULL,
    content_json    TEXT NOT NULL,
    PRIMARY KEY (instance_id, type_name)
);

-- Every distinct content an instance's type has had, in capture order.
CREATE TABLE inventory_history (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id     TEXT NOT NULL,
    type_name       TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    capture_ms      INTEGER NOT NULL,
    content_json    TEXT NOT NULL
);
CREATE INDEX inventory_history_by_instance ON inventory_history (instance_id, type_name, capture_ms);
