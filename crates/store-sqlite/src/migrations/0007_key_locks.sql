-- The kill switch (issue 15): a locked key answers every request with
-- `unauthorized: key locked` until it is unlocked.
ALTER TABLE keys ADD COLUMN locked_at INTEGER;
