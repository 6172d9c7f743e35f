"""Conversations: the server's conversation id, else Message-ID / In-Reply-To / References.

Without a conversation id, a thread is the connected group of messages linked by the ids
recorded in ``search_refs`` at indexing time (a message's own Message-ID and the ids it
refers to), found by a bounded breadth-first walk. A message that is not indexed yet is
linked through the headers of its file, and ``messages.message_id``.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from axsync.archive import message as mm
from axsync.archive.access import Archive
from axsync.errors import StoreError
from axsync.statedb import MessageRow

MAX_MEMBERS = 500
_ROUNDS = 6


def thread_of(archive: Archive, row: MessageRow) -> list[MessageRow]:
    """The messages of ``row``'s conversation, oldest first (``row`` included)."""
    if row.conversation_id:
        found = list(archive.rows("conversation_id = ?", (row.conversation_id,)))
        return sorted(found, key=lambda r: (r.internal_date, r.uid))[:MAX_MEMBERS] or [row]
    uids = _linked(archive, row)
    rows = [r for uid in uids if (r := archive.message(uid)) is not None]
    return sorted(rows, key=lambda r: (r.internal_date, r.uid))


def _own_ids(archive: Archive, row: MessageRow) -> set[str]:
    ids = {m for (m,) in archive.db.execute("SELECT msgid FROM search_refs WHERE uid = ?", (row.uid,))}
    if ids:
        return ids
    ids = set(mm.message_ids(row.message_id))
    try:
        with archive.open_raw(row) as stream:
            head = BytesHeaderParser(policy=compat32).parsebytes(stream.read(256 * 1024))
    except StoreError:
        return ids
    for name in ("message-id", "in-reply-to", "references"):
        ids.update(mm.message_ids(str(head.get(name, ""))))
    return ids


def _linked(archive: Archive, row: MessageRow) -> list[int]:
    uids = {row.uid}
    ids = _own_ids(archive, row)
    seen_ids: set[str] = set()
    for _ in range(_ROUNDS):
        fresh = sorted(ids - seen_ids)[:MAX_MEMBERS]
        if not fresh or len(uids) >= MAX_MEMBERS:
            break
        seen_ids.update(fresh)
        new_uids = _uids_for(archive, fresh) - uids
        if not new_uids:
            break
        uids |= new_uids
        ids |= _ids_of(archive, sorted(new_uids))
    return sorted(uids)[:MAX_MEMBERS]


def _uids_for(archive: Archive, ids: list[str]) -> set[int]:
    marks = ",".join("?" * len(ids))
    bare = [i.strip("<>") for i in ids]
    rows = archive.db.execute(
        f"SELECT uid FROM search_refs WHERE msgid IN ({marks}) UNION "
        f"SELECT uid FROM messages WHERE message_id IN ({marks}) OR message_id IN ({marks})",
        (*ids, *ids, *bare),
    ).fetchall()
    return {r[0] for r in rows}


def _ids_of(archive: Archive, uids: list[int]) -> set[str]:
    marks = ",".join("?" * len(uids))
    rows = archive.db.execute(f"SELECT msgid FROM search_refs WHERE uid IN ({marks})", uids)
    return {r[0] for r in rows.fetchall()}
