-- Trust for teams (issue 14): an association remembers the principal that
-- created it or last updated it; its runs act for them (the signed
-- association's requested_by, which a node's own policy can restrict).
-- Empty for associations saved before this. (0010 and 0011 are taken by the
-- audit trail and Parameter Store branches.)
ALTER TABLE associations ADD COLUMN requested_by TEXT NOT NULL DEFAULT '';
