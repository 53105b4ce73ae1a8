-- The audit log, cheaper to append to.
--
-- Every request writes an audit row, and its answer waits for the commit, so
-- every page an insert touches is on the request path:
--
-- * AUTOINCREMENT made each insert also update sqlite_sequence. Audit rows
--   are never deleted from the end of the log, so plain rowids (the largest
--   plus one) are never reused either: `seq` keeps its meaning.
-- * The index on event_id dirtied one random page per row (event ids are
--   random), about a tenth of the bunker's CPU per request beside the
--   signatures, and no query used it: replay protection reads the last ten
--   minutes by time (audit_at). A request event is still found quickly by
--   its id within its time window — the bunker only accepts events created
--   at most 10 minutes before (or 5 minutes after) it processes them:
--   `WHERE at BETWEEN created_at - 300 AND created_at + 600 AND event_id = ?`.

CREATE TABLE audit_v2 (
    seq             INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    key_id          INTEGER NOT NULL,
    client_pubkey   TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    request_id      TEXT    NOT NULL,
    method          TEXT    NOT NULL,
    kind            INTEGER,
    decision        TEXT    NOT NULL,
    outcome         TEXT    NOT NULL,
    signed_event_id TEXT
) STRICT;

INSERT INTO audit_v2 (seq, at, key_id, client_pubkey, event_id, request_id, method, kind,
                      decision, outcome, signed_event_id)
SELECT seq, at, key_id, client_pubkey, event_id, request_id, method, kind,
       decision, outcome, signed_event_id
FROM audit;

DROP TABLE audit;
ALTER TABLE audit_v2 RENAME TO audit;

-- Time ranges and "newest first" (the rowid, i.e. seq, breaks ties in the index).
CREATE INDEX audit_at ON audit (at);
