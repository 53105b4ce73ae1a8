-- Replicas (issue 14): heartbeats, claims of answered request events with
-- their sealed answers, and the dashboard's login links and sessions (so a
-- link minted on one host works on every replica).
CREATE TABLE replicas (
    replica TEXT PRIMARY KEY,
    -- Random per process: a different one under a live name is another
    -- process (refused), or this replica restarted (its previous run died).
    incarnation TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    beat_ms INTEGER NOT NULL
);
CREATE TABLE answers (
    request_event TEXT PRIMARY KEY,
    replica TEXT NOT NULL,
    answer TEXT,
    at INTEGER NOT NULL
);
CREATE INDEX answers_at ON answers (at);
CREATE TABLE dashboard_logins (
    digest BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE TABLE dashboard_sessions (
    digest BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
-- A held request's holder and the request event it came in, so that when
-- the holder dies a survivor adopts it (and answers it once decided).
CREATE TABLE held_requests (
    approval_id TEXT PRIMARY KEY REFERENCES approvals (id) ON DELETE CASCADE,
    holder TEXT NOT NULL,
    request_event_id TEXT NOT NULL,
    request_event TEXT NOT NULL
);
CREATE INDEX held_requests_holder ON held_requests (holder);
