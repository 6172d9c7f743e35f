-- axsync state DB, version 3: the restore log (axsync.restore.journal).
-- One row per archived message appended to an IMAP target by `axsync restore`, written right
-- after the server confirmed the APPEND. It is one of two pieces of evidence a later restore
-- uses to append nothing twice; the other is the target's own listing (Message-ID + size, or
-- a fingerprint), so a restore whose log was lost or never written still creates no
-- duplicates (docs/migration.md, "Idempotency").

CREATE TABLE restore_log (
    target      TEXT NOT NULL,      -- identity of the IMAP account: user@host:port (host lower case)
    folder      TEXT NOT NULL,      -- target mailbox, unicode, levels joined by the server's separator
    uid         INTEGER NOT NULL,   -- messages.uid of the archived message
    uidvalidity INTEGER,            -- UIDVALIDITY of the target mailbox at the time (NULL: unknown)
    target_uid  INTEGER,            -- the message's UID on the target, from APPENDUID (UIDPLUS);
                                    -- NULL when the server did not say
    appended_at INTEGER NOT NULL,   -- Unix seconds
    PRIMARY KEY (target, folder, uid)
);
CREATE INDEX restore_log_uid ON restore_log(uid);
