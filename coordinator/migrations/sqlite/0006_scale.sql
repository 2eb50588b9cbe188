-- List verbs read the newest invocations first without sorting the history:
-- all of it, or one instance's.
CREATE INDEX invocations_requested ON invocations (requested_ms DESC, command_id, instance_id);
CREATE INDEX invocations_by_instance_requested ON invocations (instance_id, requested_ms DESC);
