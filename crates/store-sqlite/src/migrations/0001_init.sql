-- Rampart schema, version 1.
--
-- Times are Unix seconds (INTEGER). Public keys and event ids are lower-case
-- hex (TEXT). Structured values are JSON text so the file stays readable with
-- the sqlite3 shell. Key and token ids are AUTOINCREMENT so that an id is
-- never reused after a key is removed: audit rows keep pointing at the key
-- they were written for.

CREATE TABLE keys (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL UNIQUE,
    user_pubkey      TEXT    NOT NULL,
    -- Requests are routed by the signer pubkey, so it must name one key.
    signer_pubkey    TEXT    NOT NULL UNIQUE,
    -- NIP-49 ncryptsec: encrypted, but still never logged.
    user_ncryptsec   TEXT    NOT NULL,
    signer_ncryptsec TEXT    NOT NULL,
    created_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id      INTEGER NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    -- SHA-256 of the connection secret; the secret itself is never stored.
    secret_hash BLOB    NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    -- PermissionSet text, e.g. `get_public_key,sign_event:1`.
    grant_perms TEXT    NOT NULL,
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL,
    used_at     INTEGER,
    used_by     TEXT,
    label       TEXT,
    CHECK ((used_at IS NULL) = (used_by IS NULL))
) STRICT;

CREATE INDEX tokens_key ON tokens (key_id);

CREATE TABLE sessions (
    key_id          INTEGER NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    client_pubkey   TEXT    NOT NULL,
    -- JSON list of {"permission": "sign_event:1", "effect": "allow"|"deny", "expires_at": int|null}.
    rules           TEXT    NOT NULL,
    expires_at      INTEGER,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER,
    request_count   INTEGER NOT NULL DEFAULT 0,
    -- JSON {"name":..,"url":..,"image":..}, absent fields omitted.
    metadata        TEXT    NOT NULL,
    requested_perms TEXT    NOT NULL,
    origin          TEXT    NOT NULL CHECK (origin IN ('bunker', 'nostrconnect')),
    -- JSON list of relay URLs.
    relays          TEXT    NOT NULL,
    revoked_at      INTEGER,
    connect_reply   TEXT,
    -- Set by the writer of each change (RevokeSession adds one), so the
    -- running bunker can tell whether the stored copy is newer than its own.
    revision        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, client_pubkey)
) STRICT;

CREATE TABLE approvals (
    id            TEXT    PRIMARY KEY,
    key_id        INTEGER NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    client_pubkey TEXT    NOT NULL,
    metadata      TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    method        TEXT    NOT NULL,
    kind          INTEGER,
    summary       TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    -- JSON of ApprovalStatus, e.g. {"status":"pending"} or
    -- {"status":"decided","allow":true,"scope":{"scope":"always","until":null}}.
    status        TEXT    NOT NULL
) STRICT;

CREATE INDEX approvals_key ON approvals (key_id);
CREATE INDEX approvals_created ON approvals (created_at);

-- No foreign key on key_id: audit rows outlive the keys they name.
CREATE TABLE audit (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
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

-- Time ranges and "newest first" (the rowid, i.e. seq, breaks ties in the index).
CREATE INDEX audit_at ON audit (at);
-- Replay protection across restarts and tracing a request event to its row.
CREATE INDEX audit_event ON audit (event_id);
