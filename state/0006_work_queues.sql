-- axsync state DB, version 6: what a run with nothing to do reads is no longer every row.

-- The search index's work list: messages whose search_docs row may not match the message
-- (added; content, state or removal changed; document deleted). Triggers fill it, so the
-- index finds out that there is nothing to do without reading every message row;
-- SearchIndex (axsync/archive/index.py) removes an entry once the document matches
-- (present or deleted message: a document of its sha256; gone or tombstoned: none).
CREATE TABLE search_queue (
    uid INTEGER PRIMARY KEY                      -- messages.uid (or a gone one's)
);
INSERT INTO search_queue (uid)
    SELECT m.uid FROM messages m WHERE m.state IN ('present', 'deleted') AND NOT EXISTS
        (SELECT 1 FROM search_docs d WHERE d.uid = m.uid AND d.sha256 = m.sha256)
    UNION
    SELECT d.uid FROM search_docs d LEFT JOIN messages m ON m.uid = d.uid
        WHERE m.uid IS NULL OR m.state = 'tombstoned';

CREATE TRIGGER search_queue_message_added AFTER INSERT ON messages BEGIN
    INSERT OR IGNORE INTO search_queue (uid) VALUES (new.uid);
END;
CREATE TRIGGER search_queue_message_changed AFTER UPDATE OF uid, sha256, state ON messages
    WHEN new.uid IS NOT old.uid OR new.sha256 IS NOT old.sha256 OR new.state IS NOT old.state BEGIN
    INSERT OR IGNORE INTO search_queue (uid) VALUES (old.uid);
    INSERT OR IGNORE INTO search_queue (uid) VALUES (new.uid);
END;
CREATE TRIGGER search_queue_message_removed AFTER DELETE ON messages BEGIN
    INSERT OR IGNORE INTO search_queue (uid) VALUES (old.uid);
END;
CREATE TRIGGER search_queue_doc_removed AFTER DELETE ON search_docs BEGIN
    INSERT OR IGNORE INTO search_queue (uid) VALUES (old.uid);
END;

-- "Does any conversation hold a sync token?" (asked by every pull) without a table scan.
CREATE INDEX conversations_with_token ON conversations(id) WHERE sync_token IS NOT NULL;
