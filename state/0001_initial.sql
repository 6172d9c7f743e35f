-- axsync state DB, version 1. One database per account (default <maildir>/axsync.sqlite).
-- Append-only: never edit an applied migration; add 0002_*.sql instead.
-- Times are Unix seconds (UTC). JSON columns hold sorted arrays.

-- The account this database belongs to, and what we last learnt about its server.
CREATE TABLE accounts (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    name                TEXT NOT NULL,
    server              TEXT NOT NULL,
    username            TEXT NOT NULL,
    api_version         TEXT,               -- GET /api/ apiVersion
    server_version      TEXT,               -- GET /api/ serverVersion
    mail_delta          INTEGER,            -- 1/0: mails/delta usable (NULL: unknown)
    folder_delta        INTEGER,            -- 1/0: folders/delta usable
    capabilities_at     INTEGER,            -- when GET /api/ was last asked
    folder_container_id TEXT,
    folders_token       TEXT,               -- folder list syncToken (detect only)
    folders_delta_token TEXT,               -- folders/delta syncToken
    labels_token        TEXT,
    conversations       TEXT,               -- indexinfo state of the conversation index
    created_at          INTEGER NOT NULL
);

-- Server folders and where each lives on disk.
CREATE TABLE folders (
    id            TEXT PRIMARY KEY,           -- server folder id
    parent_id     TEXT,
    name          TEXT NOT NULL,
    path          TEXT NOT NULL,              -- JSON array of name components (top first)
    dirname       TEXT NOT NULL UNIQUE,       -- Maildir++ directory ('' = INBOX, the root)
    role          TEXT NOT NULL DEFAULT '',
    id_validity   INTEGER,                    -- from folders/delta; a change discards tokens
    content_token TEXT,                       -- last content syncToken seen (list or delta event)
    delta_token   TEXT,                       -- mails/delta syncToken to resume from
    conv_token    TEXT,                       -- conversations list syncToken for this folder
    excluded      INTEGER NOT NULL DEFAULT 0, -- matched an `exclude` glob: never synced
    state         TEXT NOT NULL DEFAULT 'present' CHECK (state IN ('present', 'deleted')),
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL
);

-- One row per archived message file. `uid` is the archive's own id (MAILREF).
CREATE TABLE messages (
    uid             INTEGER PRIMARY KEY,
    mail_id         TEXT,                      -- current server id (ids change on move)
    folder_id       TEXT NOT NULL,             -- server folder holding it (last known)
    dirname         TEXT NOT NULL,             -- local folder directory holding the file
    base            TEXT NOT NULL UNIQUE,      -- file name part before ':2,' (permanent)
    filename        TEXT NOT NULL,             -- last file name axsync wrote or saw
    size            INTEGER NOT NULL,          -- uncompressed bytes (S=)
    server_size     INTEGER,                   -- MailInstance.size as the server reports it
    vsize           INTEGER NOT NULL,          -- with bare LF counted as CRLF (W=)
    sha256          TEXT NOT NULL,             -- of the uncompressed bytes
    compression     TEXT NOT NULL,             -- zstd | gzip | none
    flags           TEXT NOT NULL DEFAULT '',  -- last agreed flag letters (D F R S T)
    refw            TEXT NOT NULL DEFAULT '',  -- server refwFlags: '' re fw refw
    label_ids       TEXT NOT NULL DEFAULT '[]',-- last agreed label ids (JSON)
    internal_date   INTEGER NOT NULL,
    message_id      TEXT NOT NULL DEFAULT '',
    conversation_id TEXT,
    subject         TEXT NOT NULL DEFAULT '',
    from_addr       TEXT NOT NULL DEFAULT '',
    state           TEXT NOT NULL DEFAULT 'present'
                    CHECK (state IN ('present', 'deleted', 'tombstoned')),
                    -- present: on the server; deleted: gone from the server, file kept (backup);
                    -- tombstoned: file removed locally too (mirror), row kept for history
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    deleted_at      INTEGER
);
CREATE UNIQUE INDEX messages_mail_id ON messages(mail_id) WHERE mail_id IS NOT NULL;
CREATE INDEX messages_folder ON messages(folder_id, state);
CREATE INDEX messages_dirname ON messages(dirname, state);
CREATE INDEX messages_msgid ON messages(message_id, server_size);
CREATE INDEX messages_sha ON messages(sha256);
CREATE INDEX messages_conversation ON messages(conversation_id);

-- Every change of a message's flags, labels, folder or state, for restore --as-of.
CREATE TABLE message_history (
    uid       INTEGER NOT NULL REFERENCES messages(uid),
    at        INTEGER NOT NULL,
    folder_id TEXT NOT NULL,
    dirname   TEXT NOT NULL,
    flags     TEXT NOT NULL,
    label_ids TEXT NOT NULL,
    state     TEXT NOT NULL
);
CREATE INDEX message_history_uid ON message_history(uid, at);

-- Server labels and the IMAP keyword atom each maps to.
CREATE TABLE labels (
    id    TEXT PRIMARY KEY,
    name  TEXT NOT NULL,
    atom  TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'present' CHECK (state IN ('present', 'deleted'))
);

-- Per folder directory: keyword letter -> atom, mirroring its dovecot-keywords file.
CREATE TABLE folder_keywords (
    dirname TEXT NOT NULL,
    letter  TEXT NOT NULL,
    atom    TEXT NOT NULL,
    PRIMARY KEY (dirname, letter)
);

-- Conversations (threads); members are messages.conversation_id.
CREATE TABLE conversations (
    id         TEXT PRIMARY KEY,
    sync_token TEXT,
    subject    TEXT NOT NULL DEFAULT '',
    mail_count INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);

-- One row per run, with its JSON summary (the `sync --json` object) and failures.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    mode        TEXT NOT NULL,
    dry_run     INTEGER NOT NULL DEFAULT 0,
    ok          INTEGER,
    exit_code   INTEGER,
    summary     TEXT,                    -- JSON
    errors      TEXT NOT NULL DEFAULT '[]' -- JSON list of {item, error}
);

-- Conflicts found while merging local and server changes, and how they were resolved.
CREATE TABLE conflicts (
    id         INTEGER PRIMARY KEY,
    run_id     INTEGER REFERENCES runs(id),
    uid        INTEGER,
    mail_id    TEXT,
    field      TEXT NOT NULL,            -- flag letter or 'label:<id>'
    base       TEXT,
    local      TEXT,
    server     TEXT,
    resolution TEXT NOT NULL,            -- server | local | newest:<side>
    created_at INTEGER NOT NULL
);
