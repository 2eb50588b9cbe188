-- Agent releases (issue 16): each agent binary the coordinator keeps, per
-- version and platform ("linux-x86_64"), uploaded in parts and, once whole
-- and checked against its announced size and SHA-256, signed with the
-- release key (kept in the secrets directory, never here): 'manifest' is
-- the encoded ReleaseManifest, 'signature' the release key's signature
-- over the release context and it. Agents verify both before they run it.
CREATE TABLE agent_releases (
    version         TEXT NOT NULL,
    platform        TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    -- Bytes received so far; 'Uploading' until they are all here.
    received        BIGINT NOT NULL DEFAULT 0,
    status          TEXT NOT NULL,
    manifest        BLOB,
    signature       BLOB,
    uploaded_ms     BIGINT NOT NULL,
    uploaded_by     TEXT NOT NULL,
    PRIMARY KEY (version, platform)
);

-- A release's bytes, in parts of at most 1 MiB keyed by where they start,
-- so that a download reads one part at a time.
CREATE TABLE agent_release_parts (
    version         TEXT NOT NULL,
    platform        TEXT NOT NULL,
    part_offset     BIGINT NOT NULL,
    data            BLOB NOT NULL,
    PRIMARY KEY (version, platform, part_offset)
);

-- The fleet's target version (one row): what Tether-UpdateAgent installs
-- when no version is given, and what IsLatestVersion compares with.
CREATE TABLE agent_target_version (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    version         TEXT NOT NULL,
    set_ms          BIGINT NOT NULL,
    set_by          TEXT NOT NULL
);
