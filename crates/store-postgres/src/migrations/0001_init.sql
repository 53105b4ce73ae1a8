-- Rampart on PostgreSQL: the schema of the SQLite backend at its version 5,
-- in one step (no PostgreSQL deployment predates it), plus what replicas
-- sharing the database need.
CREATE TABLE keys (
    id               BIGSERIAL PRIMARY KEY,
    name             TEXT   NOT NULL UNIQUE,
    user_pubkey      TEXT   NOT NULL,
    signer_pubkey    TEXT   NOT NULL UNIQUE,
    user_ncryptsec   TEXT   NOT NULL,
    signer_ncryptsec TEXT   NOT NULL,
    created_at       BIGINT NOT NULL
);

CREATE TABLE tokens (
    id          BIGSERIAL PRIMARY KEY,
    key_id      BIGINT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    secret_hash BYTEA  NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    grant_perms TEXT   NOT NULL,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL,
    used_at     BIGINT,
    used_by     TEXT,
    label       TEXT,
    CHECK ((used_at IS NULL) = (used_by IS NULL))
);
CREATE INDEX tokens_key ON tokens (key_id);

CREATE TABLE sessions (
    key_id          BIGINT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    client_pubkey   TEXT   NOT NULL,
    rules           TEXT   NOT NULL,
    expires_at      BIGINT,
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT,
    request_count   BIGINT NOT NULL DEFAULT 0,
    metadata        TEXT   NOT NULL,
    requested_perms TEXT   NOT NULL,
    origin          TEXT   NOT NULL CHECK (origin IN ('bunker', 'nostrconnect')),
    relays          TEXT   NOT NULL,
    revoked_at      BIGINT,
    connect_reply   TEXT,
    revision        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, client_pubkey)
);

CREATE TABLE approvals (
    seq           BIGSERIAL,
    id            TEXT   PRIMARY KEY,
    key_id        BIGINT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    client_pubkey TEXT   NOT NULL,
    metadata      TEXT   NOT NULL,
    request_id    TEXT   NOT NULL,
    method        TEXT   NOT NULL,
    kind          INTEGER,
    summary       TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    status        TEXT   NOT NULL,
    event         TEXT
);
CREATE INDEX approvals_key ON approvals (key_id);
CREATE INDEX approvals_created ON approvals (created_at);

CREATE TABLE audit (
    seq              BIGSERIAL PRIMARY KEY,
    at               BIGINT  NOT NULL,
    key_id           BIGINT  NOT NULL,
    client_pubkey    TEXT    NOT NULL,
    event_id         TEXT    NOT NULL,
    request_id       TEXT    NOT NULL,
    method           TEXT    NOT NULL,
    kind             INTEGER,
    decision         TEXT    NOT NULL,
    outcome          TEXT    NOT NULL,
    signed_event_id  TEXT,
    event_created_at BIGINT,
    events           BIGINT  NOT NULL DEFAULT 1
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_event ON audit (event_id);

CREATE TABLE served_relays (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    relays      TEXT   NOT NULL,
    recorded_at BIGINT NOT NULL
);

-- Every write transaction moves this on, so a process can tell that
-- another one wrote (SQLite's `data_version`).
CREATE TABLE store_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO store_version (id, version) VALUES (1, 0);
