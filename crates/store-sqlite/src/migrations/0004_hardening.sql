-- Hardening (round 2).
--
-- Audit rows record the request event's own created_at, so replay
-- protection remembers ids with their real time across a restart, and how
-- many events a row stands for (refusals of strangers are counted together,
-- one row per sender and minute, instead of a row per event).
ALTER TABLE audit ADD COLUMN event_created_at INTEGER;
ALTER TABLE audit ADD COLUMN events INTEGER NOT NULL DEFAULT 1;

-- A held sign_event keeps the complete unsigned event (id included) that is
-- signed if it is approved: what the user sees is exactly what is signed.
ALTER TABLE approvals ADD COLUMN event TEXT;
