-- axsync state DB, version 8: the search index's FTS5 table without prefix indexes
-- (0002 had `prefix = '2 3'`). Every message is indexed again by the next sync.
--
-- Why: a prefix index is a second and a third copy of every token (its first 2 and 3
-- characters). Indexing 100k messages cost 8.4 CPU-s with them and 3.6 without, and the
-- table took 282 MB instead of 179 MB. What they sped up is a query for a prefix of 2 or 3
-- characters: over 100k messages, `th*` (97k matches) 74 -> 195 ms and `re*` 61 -> 130 ms;
-- a prefix of 3 characters or more costs the same either way (docs/performance.md).
--
-- FTS5 options cannot be changed in place: the table is made again and emptied, and
-- deleting the documents puts every message back on search_queue (trigger of 0006).
DROP TABLE search_fts;
CREATE VIRTUAL TABLE search_fts USING fts5(
    subject,        -- Subject
    sender,         -- From, Sender, Reply-To (display names and addresses)
    recipients,     -- To
    cc,             -- Cc, Bcc
    msgid,          -- Message-ID
    filenames,      -- attachment file names
    body,           -- decoded text of the body parts (HTML reduced to text), capped
    tokenize = 'unicode61 remove_diacritics 2'
);
DELETE FROM search_refs;
DELETE FROM search_docs;
