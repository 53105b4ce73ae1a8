-- Hardening (round 2).
--
-- Audit rows record the request event's own created_at, so replay
-- protection remembers ids with their real time across a restart, and how
-- many events a row stands for (refusals of strangers are counted together,
-- one row per sender and minute, instead of a row per event).
ALTER TABLE audit ADD COLUMN event_created_at INTEGER;
ALTER TABLE audit ADD COLUMN events INTEGER NOT NULL DEFAULT 1;
