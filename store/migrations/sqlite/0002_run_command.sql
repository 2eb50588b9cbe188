-- Command documents created by operators, every version kept. The built-in
-- AWS- documents live in the binary, not here.
CREATE TABLE documents (
    name                TEXT PRIMARY KEY,
    default_version     INTEGER NOT NULL,
    latest_version      INTEGER NOT NULL,
    created_ms          INTEGER NOT NULL,
    tags_json           TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE document_versions (
    name                TEXT NOT NULL REFERENCES documents(name) ON DELETE CASCADE,
    version             INTEGER NOT NULL,
    version_name        TEXT,
    content             TEXT NOT NULL,
    format              TEXT NOT NULL,      -- JSON | YAML
    hash                TEXT NOT NULL,      -- hex SHA-256 of content
    document_type       TEXT NOT NULL,
    schema_version      TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    target_type         TEXT,
    created_ms          INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX document_version_names ON document_versions(name, version_name)
    WHERE version_name IS NOT NULL;

-- CancelCommand on a delivered invocation: when it was asked for, and when a
-- signed cancel was last handed to the agent (resent until the agent reports).
ALTER TABLE invocations ADD COLUMN cancel_requested_ms INTEGER;
ALTER TABLE invocations ADD COLUMN cancel_sent_ms INTEGER;

-- An invocation ended by the coordinator because its agent fell silent while
-- running it: a result the agent sends later still replaces that verdict.
ALTER TABLE invocations ADD COLUMN presumed_lost INTEGER NOT NULL DEFAULT 0;
