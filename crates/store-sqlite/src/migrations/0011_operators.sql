-- Operators (issue 15): named people with a role and the keys they cover;
-- who each dashboard login link and session belongs to (NULL: the store's
-- owner); the answers given so far to a held request (a quorum of distinct
-- people for sensitive kinds); and who decided or acted, in the audit log.
CREATE TABLE operators (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    all_keys INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE operator_keys (
    operator_id INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    key_id INTEGER NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    PRIMARY KEY (operator_id, key_id)
);
ALTER TABLE dashboard_logins ADD COLUMN operator_id INTEGER REFERENCES operators (id) ON DELETE CASCADE;
ALTER TABLE dashboard_sessions ADD COLUMN operator_id INTEGER REFERENCES operators (id) ON DELETE CASCADE;
ALTER TABLE approvals ADD COLUMN votes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN quorum INTEGER NOT NULL DEFAULT 1;
-- Hashed into the row's chain link only when set: older rows keep theirs.
ALTER TABLE audit ADD COLUMN operator TEXT;
