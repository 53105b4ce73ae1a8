-- Sensitive kinds (issue 15): per key, the event kinds that always ask the
-- user, whatever a session's grant (`0,3,5,10002`); NULL: the bunker's
-- default set.
ALTER TABLE keys ADD COLUMN sensitive_kinds TEXT;
