-- Where the bunker serves (issue 13): one row, replaced at every start, so
-- `rampart uri` and the other processes on this database mint tokens that
-- name the relays the bunker is on.
CREATE TABLE served_relays (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    relays TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
);
