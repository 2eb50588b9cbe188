-- Signatures of SigV4 requests that changed something, kept while a replay of
-- them could still pass the clock check (issue 13): a request is refused when
-- its signature is here. Shared by every replica on the database; pruned by
-- the sweep once past `expires_ms`.
CREATE TABLE sigv4_signatures (
    signature_hash  TEXT PRIMARY KEY,
    expires_ms      BIGINT NOT NULL
);
CREATE INDEX sigv4_signatures_expiry ON sigv4_signatures (expires_ms);
