"""Per-run staging of server changes in TEMP tables of the state DB connection.

A run first gathers every changed folder's delta (or full listing) into these tables, so
memory stays flat whatever the mailbox size and cross-folder moves can be matched before
anything is downloaded or deleted. The tables die with the connection; a crashed run simply
gathers again from the tokens it had not yet advanced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from axsync.model import Mail, MailFlags, MailUpdate
from axsync.statedb import StateDB

_SCHEMA = """
CREATE TEMP TABLE IF NOT EXISTS st_new (
    mail_id TEXT PRIMARY KEY, folder_id TEXT NOT NULL, kind TEXT NOT NULL, size INTEGER NOT NULL,
    date INTEGER NOT NULL, unread INTEGER, flagged INTEGER, draft INTEGER, deleted INTEGER,
    refw TEXT, label_ids TEXT, message_id TEXT, subject TEXT, from_addr TEXT,
    conversation_id TEXT, has_attachments INTEGER,
    fed INTEGER NOT NULL DEFAULT 0  -- handed to the downloads already (see take_new)
);
CREATE TEMP TABLE IF NOT EXISTS st_upd (
    mail_id TEXT PRIMARY KEY, folder_id TEXT NOT NULL, unread INTEGER, flagged INTEGER,
    draft INTEGER, deleted INTEGER, refw TEXT, label_ids TEXT, conversation_id TEXT
);
CREATE TEMP TABLE IF NOT EXISTS st_rm (mail_id TEXT PRIMARY KEY, folder_id TEXT NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS st_listed (mail_id TEXT PRIMARY KEY);
CREATE INDEX IF NOT EXISTS temp.st_new_msgid ON st_new(message_id, size);
CREATE INDEX IF NOT EXISTS temp.st_new_order ON st_new(folder_id, date, mail_id);
"""
_NEW_COLUMNS = ("mail_id, folder_id, kind, size, date, unread, flagged, draft, deleted, refw, "
                "label_ids, message_id, subject, from_addr, conversation_id, has_attachments")


def _flags_cols(flags: MailFlags) -> tuple[int, int, int, int]:
    return int(flags.is_unread), int(flags.is_flagged), int(flags.is_draft), int(flags.is_deleted)


class Staging:
    def __init__(self, db: StateDB) -> None:
        self.db = db
        for stmt in _SCHEMA.strip().split(";"):
            if stmt.strip():
                db.execute(stmt)
        self.clear()

    def clear(self) -> None:
        for table in ("st_new", "st_upd", "st_rm", "st_listed"):
            self.db.execute(f"DELETE FROM {table}")

    # ------------------------------------------------------------- delta folding

    def add_new(self, mail: Mail, kind: str = "new") -> None:
        """A new (or replaced) mail. Later events for the same id override earlier ones."""
        self.add_new_many((mail,), kind)

    def add_new_many(self, mails: Iterable[Mail], kind: str = "new") -> None:
        """:meth:`add_new` of each of ``mails`` in turn, as three statements (a delta page
        holds up to a thousand new mails, and an initial pull stages every mail of the
        mailbox): the two deletions touch other tables than the insertion, so running
        each over all the mails is running the three for each mail."""
        rows = [
            (mail.id, mail.folder_id, kind, mail.size, mail.date, *_flags_cols(mail.flags),
             mail.flags.refw_flags, json.dumps(sorted(mail.label_ids)), mail.message_id,
             mail.subject, mail.from_, mail.conversation_id, int(mail.has_attachments))
            for mail in mails
        ]
        ids = [(row[0],) for row in rows]
        self.db.executemany("DELETE FROM st_rm WHERE mail_id = ?", ids)
        self.db.executemany("DELETE FROM st_upd WHERE mail_id = ?", ids)
        # A mail staged again (another folder's page: moved meanwhile) is not fed yet.
        self.db.executemany(f"INSERT OR REPLACE INTO st_new ({_NEW_COLUMNS}) "
                            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    def add_update(self, upd: MailUpdate, refw: str | None = None) -> None:
        self.db.execute("DELETE FROM st_rm WHERE mail_id = ?", (upd.id,))
        cur = self.db.execute("SELECT 1 FROM st_new WHERE mail_id = ? AND fed = 0", (upd.id,)).fetchone()
        unread, flagged, draft, deleted = _flags_cols(upd.flags)
        labels = json.dumps(sorted(upd.label_ids))
        if cur:  # new earlier in this run, not downloaded yet: fold the update into it
            self.db.execute(
                "UPDATE st_new SET unread=?, flagged=?, draft=?, deleted=?, label_ids=?, "
                "conversation_id=coalesce(?, conversation_id), refw=coalesce(?, refw) WHERE mail_id=?",
                (unread, flagged, draft, deleted, labels, upd.conversation_id, refw, upd.id),
            )
            return
        self.db.execute(
            "INSERT OR REPLACE INTO st_upd VALUES (?,?,?,?,?,?,?,?,?)",
            (upd.id, upd.folder_id, unread, flagged, draft, deleted, refw, labels,
             upd.conversation_id),
        )

    def add_removed(self, mail_id: str, folder_id: str) -> None:
        # A server that keeps the id on move reports it new (or updated) in the destination
        # and removed from the source, in whichever order the folders are gathered: the
        # removal from another folder does not cancel it (the move relocates the file).
        for table in ("st_new", "st_upd"):
            if self.db.execute(f"SELECT 1 FROM {table} WHERE mail_id = ? AND folder_id != ?",
                               (mail_id, folder_id)).fetchone():
                return
        self.db.execute("DELETE FROM st_new WHERE mail_id = ?", (mail_id,))
        self.db.execute("DELETE FROM st_upd WHERE mail_id = ?", (mail_id,))
        self.db.execute("INSERT OR REPLACE INTO st_rm VALUES (?, ?)", (mail_id, folder_id))

    def add_orphans(self, gone_folder_ids: Iterable[str]) -> None:
        """Mails archived in folders that are gone from the server (``gone_folder_ids``, or
        folders an interrupted run already marked deleted) are removed, unless this run
        already saw them elsewhere (a move by the same id)."""
        # The folders first, then only their messages: a run with no folder gone reads no
        # message row. The folder ids the messages refer to come from the folder index, one
        # seek per distinct id (a loose index scan), not from a pass over every row.
        present = {r[0] for r in self.db.execute("SELECT id FROM folders WHERE state = 'present'")}
        referenced = {r[0] for r in self.db.execute(
            "WITH RECURSIVE f(id) AS (SELECT min(folder_id) FROM messages UNION ALL "
            "SELECT (SELECT min(folder_id) FROM messages WHERE folder_id > f.id) FROM f "
            "WHERE f.id IS NOT NULL) SELECT id FROM f WHERE id IS NOT NULL")}
        orphaned = set(gone_folder_ids) | (referenced - present)
        for folder in sorted(orphaned):
            for mail_id, folder_id in self.db.execute(
                "SELECT mail_id, folder_id FROM messages WHERE folder_id = ? AND state = 'present' "
                "AND mail_id IS NOT NULL AND mail_id NOT IN (SELECT mail_id FROM st_new) "
                "AND mail_id NOT IN (SELECT mail_id FROM st_upd)",
                (folder,),
            ).fetchall():
                self.add_removed(mail_id, folder_id)

    # ------------------------------------------------------------- full listings

    def add_listing(self, folder_id: str, mails: Iterable[Mail]) -> None:
        """Diff a full listing of one folder against the state DB (10.4, or after a token
        was rejected): unknown ids are new, known ids are updates, unlisted known ids of
        this folder are removals."""
        self.db.execute("DELETE FROM st_listed")
        for mail in mails:
            self.db.execute("INSERT OR IGNORE INTO st_listed VALUES (?)", (mail.id,))
            known = self.db.execute(
                "SELECT server_size, message_id FROM messages WHERE mail_id = ? AND state = 'present'",
                (mail.id,),
            ).fetchone()
            if known and ((known[0] is not None and known[0] != mail.size)
                          or (known[1] or "") != (mail.message_id or "")):
                # Same id, other content (a listing has no replacedItems): download it again.
                self.add_new(mail, "replaced")
            elif known:
                self.add_update(
                    MailUpdate(mail.id, mail.folder_id, mail.flags, mail.label_ids,
                               mail.conversation_id),
                    refw=mail.flags.refw_flags,
                )
            else:
                self.add_new(mail)
        gone = self.db.execute(
            "SELECT mail_id FROM messages WHERE folder_id = ? AND state = 'present' "
            "AND mail_id IS NOT NULL AND mail_id NOT IN (SELECT mail_id FROM st_listed)",
            (folder_id,),
        ).fetchall()
        for (mail_id,) in gone:
            # Only if no other folder's listing/delta already reported it (a move by same id).
            if not self.db.execute(
                "SELECT 1 FROM st_new WHERE mail_id = ? UNION SELECT 1 FROM st_upd WHERE mail_id = ?",
                (mail_id, mail_id),
            ).fetchone():
                self.add_removed(mail_id, folder_id)

    # ------------------------------------------------------------- reading back

    def counts(self) -> tuple[int, int, int]:
        q = self.db.execute
        return (
            int(q("SELECT count(*) FROM st_new").fetchone()[0]),
            int(q("SELECT count(*) FROM st_upd").fetchone()[0]),
            int(q("SELECT count(*) FROM st_rm").fetchone()[0]),
        )

    def new_totals(self, skip: set[str] | frozenset[str] = frozenset(),
                   folder_id: str | None = None) -> tuple[int, int]:
        """(count, bytes) of the staged new mails not fed yet (of ``folder_id``, or all),
        leaving out the ids in ``skip``."""
        where, params = ("", ()) if folder_id is None else (" AND folder_id = ?", (folder_id,))
        count, size = self.db.execute(
            f"SELECT count(*), coalesce(sum(size), 0) FROM st_new WHERE fed = 0{where}",
            params).fetchone()
        for mail_id in skip:
            row = self.db.execute("SELECT size FROM st_new WHERE mail_id = ? AND fed = 0",
                                  (mail_id,)).fetchone()
            if row is not None:
                count, size = count - 1, size - int(row[0])
        return int(count), int(size)

    def new_counts(self) -> list[tuple[str, int, int]]:
        """(folder_id, count, bytes) of the staged new mails of each folder."""
        return [(str(f), int(n), int(b)) for f, n, b in self.db.execute(
            "SELECT folder_id, count(*), coalesce(sum(size), 0) FROM st_new WHERE fed = 0 "
            "GROUP BY folder_id")]

    def new_mails(self, where: str = "1", params: tuple[object, ...] = ()) -> Iterator[tuple[Mail, str]]:
        """(mail, kind) of the staged new mails not fed to the downloads yet, by folder and
        date (a cursor open meanwhile: no other statement may write ``st_new``)."""
        cur = self.db.execute(
            f"SELECT {_NEW_COLUMNS} FROM st_new "
            f"WHERE fed = 0 AND {where} ORDER BY folder_id, date, mail_id", params,
        )
        while True:
            rows = cur.fetchmany(500)
            if not rows:
                return
            for r in rows:
                yield _mail(r), r[2]

    def take_new(self, folder_id: str, after: tuple[int, str] | None, limit: int = 500
                 ) -> list[tuple[Mail, str]]:
        """The next ``limit`` staged new mails of ``folder_id`` not fed yet, after ``after``
        (a ``(date, mail_id)``), in :meth:`new_mails` order. For a pull that feeds a folder
        to the downloads while other folders are still gathered: each call is a query of
        its own, so no cursor stays open while their pages are staged."""
        date, mail_id = after if after is not None else (-(2**63), "")
        rows = self.db.execute(
            f"SELECT {_NEW_COLUMNS} FROM st_new WHERE folder_id = ? AND fed = 0 "
            "AND (date, mail_id) > (?, ?) ORDER BY date, mail_id LIMIT ?",
            (folder_id, date, mail_id, limit)).fetchall()
        return [(_mail(r), str(r[2])) for r in rows]

    def mark_fed(self, mail_ids: Iterable[str]) -> None:
        """These mails are downloaded (or being): planning and downloading leave them out,
        updates go to ``st_upd`` (applied to their rows), and a removal reported by
        another folder still does not cancel them. A mail staged again (a later page of
        another folder) gets a new row, not marked."""
        self.db.executemany("UPDATE st_new SET fed = 1 WHERE mail_id = ?", [(m,) for m in mail_ids])

    def new_label_sets(self, folder_id: str | None = None) -> Iterator[tuple[str, tuple[str, ...]]]:
        """(folder_id, label_ids) of each distinct non-empty label set of the new mails of
        each folder (or of ``folder_id``) not fed yet, in the order :meth:`new_mails` first
        meets it."""
        where, params = ("", ()) if folder_id is None else ("AND folder_id = ? ", (folder_id,))
        cur = self.db.execute(
            "SELECT folder_id, label_ids FROM (SELECT folder_id, label_ids, date, mail_id, "
            "row_number() OVER (PARTITION BY folder_id, label_ids ORDER BY date, mail_id) AS n "
            f"FROM st_new WHERE fed = 0 AND label_ids != '[]' {where}) WHERE n = 1 "
            "ORDER BY folder_id, date, mail_id", params,
        )
        for fid, labels in cur.fetchall():
            yield str(fid), tuple(json.loads(str(labels)))

    def updates(self) -> Iterator[tuple[str, str, MailFlags, tuple[str, ...], str | None, str | None]]:
        """(mail_id, folder_id, flags, label_ids, conversation_id, refw-or-None)."""
        cur = self.db.execute(
            "SELECT mail_id, folder_id, unread, flagged, draft, deleted, refw, label_ids, "
            "conversation_id FROM st_upd ORDER BY mail_id"
        )
        while True:
            rows = cur.fetchmany(500)
            if not rows:
                return
            for mid, fid, unread, flagged, draft, deleted, refw, labels, conv in rows:
                flags = MailFlags(bool(unread), bool(flagged), bool(draft), bool(deleted), refw or "")
                yield mid, fid, flags, tuple(json.loads(labels)), conv, refw

    def removed(self) -> list[tuple[str, str]]:
        return [(a, b) for a, b in self.db.execute("SELECT mail_id, folder_id FROM st_rm").fetchall()]


def _mail(r: tuple[object, ...]) -> Mail:
    (mid, fid, _kind, size, date, unread, flagged, draft, deleted, refw, labels, msgid, subject,
     from_addr, conv, att) = r
    flags = MailFlags(bool(unread), bool(flagged), bool(draft), bool(deleted), str(refw or ""))
    return Mail(
        id=str(mid), folder_id=str(fid), size=int(size), date=int(date),  # type: ignore[call-overload]
        flags=flags, label_ids=tuple(json.loads(str(labels))), message_id=str(msgid or ""),
        subject=str(subject or ""), from_=str(from_addr or ""), has_attachments=bool(att),
        conversation_id=str(conv) if conv else None,
    )
