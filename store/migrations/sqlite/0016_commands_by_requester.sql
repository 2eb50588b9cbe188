-- ListCommands' RequestedBy (a Tether extra; the console's history filter):
-- one principal's commands, newest first, from the index alone, however
-- long the history.
CREATE INDEX commands_by_requester ON commands (requested_by, requested_ms DESC, command_id);
