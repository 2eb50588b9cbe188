-- Secrets in commands (issue 15).
-- The parameter references a command's parameters held ({{ssm:...}} and
-- {{ssm-secure:...}}), each with the version it resolved to when the
-- command was sent: a JSON list of {"Reference", "Name", "Version",
-- "Secure"}. Never a value: a SecureString's value is read again, at that
-- version, when the envelope is sealed to a node.
ALTER TABLE commands ADD COLUMN references_json TEXT NOT NULL DEFAULT '[]';

-- Each node's X25519 sealing public key, as its agent sends it on every
-- poll over its mutual-TLS channel (hex). The private half never leaves the
-- node; secrets for the node are sealed to this key.
CREATE TABLE instance_keys (
    instance_id TEXT PRIMARY KEY,
    sealing_public_key TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
