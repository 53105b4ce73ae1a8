-- Approval summaries become tagged JSON (`RequestSummary`, with a "type"
-- field) instead of an object whose shape said what it was. Rows written
-- before this migration get the tag their shape implies.
UPDATE approvals
SET summary = json_set(summary, '$.type',
    CASE
        WHEN json_type(summary, '$.kind') IS NOT NULL THEN 'sign_event'
        WHEN json_type(summary, '$.plaintext') IS NOT NULL THEN 'encrypt'
        WHEN json_type(summary, '$.ciphertext_len') IS NOT NULL THEN 'decrypt'
        ELSE 'other'
    END)
WHERE json_valid(summary) AND json_type(summary) = 'object'
  AND json_type(summary, '$.type') IS NULL;

-- Anything else (not JSON, or JSON that is not an object) says nothing
-- readable: it becomes "other", and the method column still names the call.
UPDATE approvals SET summary = '{"type":"other"}'
WHERE NOT json_valid(summary) OR json_type(summary) != 'object';
