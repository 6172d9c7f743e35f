-- axsync state DB, version 2: the offline search index (axsync.archive.index).
-- Only `axsync reindex` and SearchIndex.catch_up() (run at the end of every pull) write
-- these tables; search, show, export and browse only read them.

-- Full text of every indexed message; rowid = messages.uid. Text is stored (not
-- contentless) so that snippets work and a row can be deleted by rowid. CJK ideographs and
-- kana are indexed one character per token (see axsync/archive/textify.py: cjk_split), so
-- a CJK word is found as a phrase inside a longer run of text.
CREATE VIRTUAL TABLE search_fts USING fts5(
    subject,        -- Subject
    sender,         -- From, Sender, Reply-To (display names and addresses)
    recipients,     -- To
    cc,             -- Cc, Bcc
    msgid,          -- Message-ID
    filenames,      -- attachment file names
    body,           -- decoded text of the body parts (HTML reduced to text), capped
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);

-- One row per message that has been indexed (the "indexed" marker).
CREATE TABLE search_docs (
    uid            INTEGER PRIMARY KEY,          -- messages.uid (no FK: rows may go)
    sha256         TEXT NOT NULL,                -- messages.sha256 it was indexed from
    has_attachment INTEGER NOT NULL DEFAULT 0,   -- 1: at least one attachment part
    sent_date      INTEGER,                      -- Date: header (Unix s), NULL if unusable
    error          TEXT,                         -- why the file could not be read (kept out of
                                                 -- the FTS until `axsync reindex`)
    indexed_at     INTEGER NOT NULL
);
CREATE INDEX search_docs_attachment ON search_docs(has_attachment) WHERE has_attachment = 1;

-- The message's own Message-ID and those it refers to (In-Reply-To, References): a
-- conversation is a connected group; used for messages without a server conversation id.
CREATE TABLE search_refs (
    msgid TEXT NOT NULL,                         -- '<local@domain>', as written, brackets added
    uid   INTEGER NOT NULL,
    PRIMARY KEY (msgid, uid)
) WITHOUT ROWID;
CREATE INDEX search_refs_uid ON search_refs(uid);

-- Folder listings in the browse UI page by date without sorting a whole folder.
CREATE INDEX messages_browse ON messages(dirname, internal_date, uid);
