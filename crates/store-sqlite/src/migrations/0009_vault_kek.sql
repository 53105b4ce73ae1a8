-- Keys at scale (issue 15): one passphrase-derived key-encryption key per
-- process wraps every key's secrets (XChaCha20-Poly1305), instead of two
-- scrypt runs per key. Its parameters live here; `user_ncryptsec` and
-- `signer_ncryptsec` now hold either the wrapped secrets or, for keys from
-- before, NIP-49 text (rewrapped at the next unlock).
CREATE TABLE vault (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    salt        BLOB    NOT NULL CHECK (length(salt) = 32),
    log_n       INTEGER NOT NULL,
    check_value BLOB    NOT NULL
) STRICT;
