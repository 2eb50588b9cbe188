-- Trust for teams (issue 14), first slice: the account's identity, users and
-- their inline policies; access keys and operator tokens gain an owner, a
-- status and an expiry; commands remember who sent them. (0008 is taken by
-- the sigv4 replay branch.)

-- Settings shared by every replica: account_id (12 digits, made on first start).
CREATE TABLE settings (
    name            TEXT PRIMARY KEY,
    value           TEXT NOT NULL
);

CREATE TABLE users (
    user_name       TEXT PRIMARY KEY,   -- unique without case, as IAM's
    user_name_lower TEXT NOT NULL UNIQUE,
    user_id         TEXT NOT NULL UNIQUE,
    path            TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    tags_json       TEXT NOT NULL       -- [{"Key":..,"Value":..}]
);

-- Inline policies, as the document was given (parsed again when evaluated).
CREATE TABLE user_policies (
    user_name       TEXT NOT NULL,
    policy_name     TEXT NOT NULL,
    document        TEXT NOT NULL,
    PRIMARY KEY (user_name, policy_name)
);

-- NULL user_name: the root principal's (every key issued before users existed).
ALTER TABLE access_keys ADD COLUMN user_name TEXT;
ALTER TABLE access_keys ADD COLUMN status TEXT NOT NULL DEFAULT 'Active';
ALTER TABLE access_keys ADD COLUMN expires_ms BIGINT;
CREATE INDEX access_keys_by_user ON access_keys (user_name);

-- NULL user_name: the bootstrap (root) token.
ALTER TABLE operator_tokens ADD COLUMN token_id TEXT;
ALTER TABLE operator_tokens ADD COLUMN user_name TEXT;
ALTER TABLE operator_tokens ADD COLUMN expires_ms BIGINT;
CREATE INDEX operator_tokens_by_user ON operator_tokens (user_name);

-- The ARN of the principal that sent the command (empty before this).
ALTER TABLE commands ADD COLUMN requested_by TEXT NOT NULL DEFAULT '';
