-- The tamper-evident audit log (issue 15): each row's hash covers its
-- columns and the previous row's hash (`store::chain`). Rows written before
-- this migration are chained by it, in order, in Rust, right after this
-- file runs. `audit_head` is where the next row chains on: every
-- transaction that appends audit rows locks it first, so replicas append
-- one after another and `seq` follows the chain. The checkpoint is the last
-- row retention pruned: the chain verifies from it.
ALTER TABLE audit ADD COLUMN row_hash BYTEA;

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash BYTEA  NOT NULL CHECK (length(hash) = 32)
);

CREATE TABLE audit_checkpoint (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash BYTEA  NOT NULL CHECK (length(hash) = 32)
);
