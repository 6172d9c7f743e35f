-- Push bookkeeping: changes sent to the server whose outcome is not confirmed yet
-- (asynchronous batches answer 201 + jobKey, and no status endpoint is documented).
CREATE TABLE push_pending (
    uid        INTEGER NOT NULL REFERENCES messages(uid),
    op         TEXT NOT NULL,        -- update | label_add | label_remove | move | delete
    value      TEXT NOT NULL,        -- JSON: what was asked (flags, label id, folder id)
    job_key    TEXT,
    attempts   INTEGER NOT NULL DEFAULT 1,
    first_at   INTEGER NOT NULL,
    last_at    INTEGER NOT NULL,
    PRIMARY KEY (uid, op, value)
);
