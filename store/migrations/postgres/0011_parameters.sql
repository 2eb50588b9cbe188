-- Parameter Store (issue 15): parameters, their versions and labels, and the
-- names of the key-encryption keys that wrap SecureString data keys. No key
-- material is ever stored here: a SecureString version holds its value
-- encrypted under a fresh data key, and that data key wrapped under a
-- key-encryption key kept in the secrets directory. A dump of this database,
-- or a read-only database user, carries no secret.

-- One row per parameter: its latest version, its tags.
CREATE TABLE parameters (
    name            TEXT PRIMARY KEY,
    version         BIGINT NOT NULL,    -- the latest version
    created_ms BIGINT NOT NULL,
    tags_json       TEXT NOT NULL       -- [{"Key":..,"Value":..}]
);

-- Every kept version (at most 100 per parameter, as SSM).
CREATE TABLE parameter_versions (
    name            TEXT NOT NULL,
    version         BIGINT NOT NULL,
    kind            TEXT NOT NULL,      -- String | StringList | SecureString
    data_type       TEXT NOT NULL,
    tier            TEXT NOT NULL,
    description     TEXT,
    allowed_pattern TEXT,
    value           TEXT,               -- String and StringList; NULL for SecureString
    key_id          TEXT,               -- SecureString: the key-encryption key's name
    key_generation  BIGINT,            -- ... and the generation that wraps data_key
    data_key        TEXT,               -- base64: nonce || the wrapped data key
    ciphertext      TEXT,               -- base64: nonce || the value under the data key
    modified_ms BIGINT NOT NULL,
    modified_by     TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX parameter_versions_by_key ON parameter_versions (key_id, key_generation);

-- A label names one version of a parameter; moving it moves it.
CREATE TABLE parameter_labels (
    name            TEXT NOT NULL,
    label           TEXT NOT NULL,
    version         BIGINT NOT NULL,
    PRIMARY KEY (name, label)
);

-- Key-encryption keys by name (alias/tether/default, and those operators
-- create), and a check value per generation: HMAC-SHA256 of a fixed text
-- under the key, so a wrong key file is told at start, never used.
CREATE TABLE parameter_keys (
    key_id          TEXT PRIMARY KEY,
    description     TEXT NOT NULL,
    generation      BIGINT NOT NULL,   -- the one new data keys are wrapped under
    created_ms BIGINT NOT NULL,
    rotated_ms BIGINT
);
CREATE TABLE parameter_key_generations (
    key_id          TEXT NOT NULL,
    generation      BIGINT NOT NULL,
    check_value     TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (key_id, generation)
);
