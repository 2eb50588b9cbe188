-- List verbs read the newest invocations first without sorting the history:
-- all of it, or one instance's.
CREATE INDEX invocations_requested ON invocations (requested_ms DESC, command_id, instance_id);
CREATE INDEX invocations_by_instance_requested ON invocations (instance_id, requested_ms DESC);

-- How many invocations of each command are in each state, kept by triggers,
-- so a command's status and counts are recomputed from a handful of rows
-- instead of all its invocations (a 10,000-node fan-out would otherwise read
-- 10,000 rows per result).
CREATE TABLE command_counts (
    command_id      TEXT NOT NULL,
    status_details  TEXT NOT NULL,
    n               INTEGER NOT NULL,
    PRIMARY KEY (command_id, status_details)
) WITHOUT ROWID;

INSERT INTO command_counts (command_id, status_details, n)
    SELECT command_id, status_details, COUNT(*) FROM invocations GROUP BY command_id, status_details;

CREATE TRIGGER command_counts_insert AFTER INSERT ON invocations BEGIN
    INSERT INTO command_counts (command_id, status_details, n)
        VALUES (NEW.command_id, NEW.status_details, 1)
        ON CONFLICT (command_id, status_details) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER command_counts_update AFTER UPDATE OF status_details ON invocations
    WHEN OLD.status_details <> NEW.status_details BEGIN
    UPDATE command_counts SET n = n - 1
        WHERE command_id = OLD.command_id AND status_details = OLD.status_details;
    INSERT INTO command_counts (command_id, status_details, n)
        VALUES (NEW.command_id, NEW.status_details, 1)
        ON CONFLICT (command_id, status_details) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER command_counts_delete AFTER DELETE ON invocations BEGIN
    UPDATE command_counts SET n = n - 1
        WHERE command_id = OLD.command_id AND status_details = OLD.status_details;
END;
