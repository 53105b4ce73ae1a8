-- The tamper-evident audit log (issue 15): each row's hash covers its
-- columns and the previous row's hash (`store::chain`). Rows written before
-- this migration are chained by it, in order, in Rust, right after this
-- file runs. The checkpoint is the last row retention pruned: the chain
-- verifies from it.
ALTER TABLE audit ADD COLUMN row_hash BLOB;

CREATE TABLE audit_checkpoint (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;
