-- Skip the whole-archive scan for local changes when nothing on disk moved: the
-- modification times of every folder's cur/ and new/ (any rename, new or deleted file
-- changes them) as they were when the archive and the state DB last agreed.
ALTER TABLE accounts ADD COLUMN local_fingerprint TEXT;
ALTER TABLE accounts ADD COLUMN local_scan_at INTEGER;   -- last full scan for local changes
