"""What the browse templates show, computed from the archive (no HTTP here)."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from markupsafe import Markup, escape

from axsync.archive import message as mm
from axsync.archive import search
from axsync.archive.access import Archive, FolderInfo
from axsync.archive.message import sender_name
from axsync.archive.query import QueryError
from axsync.archive.show import FLAG_NAMES, MAX_SHOW_BYTES, human_size
from axsync.archive.textify import cjk_join, one_line
from axsync.archive.threads import thread_of
from axsync.statedb import MessageRow

PAGE_SIZE = 50
_LIST_COLUMNS = (
    "m.uid, m.dirname, m.internal_date, m.from_addr, m.subject, m.flags, m.label_ids, "
    "coalesce(d.has_attachment, 0)"
)


def short_date(ts: int, now: float | None = None) -> str:
    """``14:05`` today, ``14 Nov`` this year, ``14 Nov 2021`` before."""
    now = time.time() if now is None else now
    t, n = time.localtime(ts), time.localtime(now)
    if t[:3] == n[:3]:
        return time.strftime("%H:%M", t)
    return time.strftime("%d %b" if t.tm_year == n.tm_year else "%d %b %Y", t).lstrip("0")


def full_date(ts: int) -> str:
    return time.strftime("%a %d %b %Y, %H:%M", time.localtime(ts))


def snippet_html(snippet: str) -> Markup:
    """A search snippet with its match markers as ``<mark>``, everything else escaped."""
    text = str(escape(snippet))
    return Markup(text.replace(search.MARK_START, "<mark>").replace(search.MARK_END, "</mark>"))


@dataclass(slots=True)
class ListRow:
    uid: int
    sender: str
    subject: str
    date: str
    date_title: str
    folder: str
    unread: bool
    flagged: bool
    attachment: bool
    labels: list[str]
    snippet: Markup = field(default_factory=Markup)


@dataclass(slots=True)
class ListView:
    title: str
    rows: list[ListRow]
    page: int
    has_next: bool
    total: int | None = None
    error: str = ""
    searching: bool = False

    @property
    def first(self) -> int:
        return (self.page - 1) * PAGE_SIZE + 1

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1


def _make_row(archive: Archive, uid: int, dirname: str, date: int, sender: str, subject: str,
              flags: str, labels: list[str], attachment: bool, snippet: str = "") -> ListRow:
    return ListRow(uid, sender_name(sender), one_line(subject) or "(no subject)",
                   short_date(date), full_date(date), archive.folder_name(dirname),
                   "S" not in flags, "F" in flags, attachment, labels, snippet_html(snippet))


def _row(archive: Archive, values: Sequence[Any]) -> ListRow:
    uid, dirname, date, sender, subject, flags, labels, attachment = values
    return _make_row(archive, uid, dirname, date, sender, subject, flags,
                     archive.label_names(json.loads(labels)), bool(attachment))


def folder_list(archive: Archive, folder: FolderInfo, page: int) -> ListView:
    rows = archive.db.execute(
        f"SELECT {_LIST_COLUMNS} FROM messages m LEFT JOIN search_docs d ON d.uid = m.uid "
        "WHERE m.dirname = ? AND m.state != 'tombstoned' "
        "ORDER BY m.internal_date DESC, m.uid DESC LIMIT ? OFFSET ?",
        (folder.dirname, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE),
    ).fetchall()
    items = [_row(archive, r) for r in rows[:PAGE_SIZE]]
    _add_previews(archive, items)
    return ListView(folder.name, items, page, len(rows) > PAGE_SIZE, folder.total)


def _add_previews(archive: Archive, items: list[ListRow]) -> None:
    if not items:
        return
    marks = ",".join("?" * len(items))
    found = dict(archive.db.execute(
        f"SELECT rowid, substr(body, 1, 200) FROM search_fts WHERE rowid IN ({marks})",
        [i.uid for i in items],
    ).fetchall())
    for item in items:
        item.snippet = snippet_html(cjk_join(one_line(found.get(item.uid) or "")))


def search_list(archive: Archive, query: str, page: int) -> ListView:
    title = f"Search: {query}"
    try:
        results = search.run(archive, query, limit=PAGE_SIZE, page=page, count_unindexed=False)
    except QueryError as exc:
        return ListView(title, [], page, False, error=str(exc), searching=True)
    attachments = _attachment_flags(archive, [h.uid for h in results.hits])
    rows = [
        _make_row(archive, h.uid, h.dirname, h.date, h.from_addr, h.subject, h.flags, h.labels,
                  bool(attachments.get(h.uid)), h.snippet)
        for h in results.hits
    ]
    return ListView(title, rows, page, results.has_more, searching=True)


def _attachment_flags(archive: Archive, uids: list[int]) -> dict[int, int]:
    if not uids:
        return {}
    marks = ",".join("?" * len(uids))
    return dict(archive.db.execute(
        f"SELECT uid, has_attachment FROM search_docs WHERE uid IN ({marks})", uids).fetchall())


# ---------------------------------------------------------------------------- folders


@dataclass(slots=True)
class TreeNode:
    name: str
    folder: FolderInfo | None  # None: a parent that is no folder of its own
    children: list[TreeNode] = field(default_factory=list)


def folder_tree(folders: Sequence[FolderInfo]) -> list[TreeNode]:
    roots: list[TreeNode] = []
    nodes: dict[tuple[str, ...], TreeNode] = {}
    for info in folders:
        for depth in range(1, len(info.path) + 1):
            key = info.path[:depth]
            node = nodes.get(key)
            if node is None:
                node = TreeNode(key[-1], None)
                nodes[key] = node
                siblings = roots if depth == 1 else nodes[key[:-1]].children
                siblings.append(node)
            if depth == len(info.path) and node.folder is None:
                node.folder = info
    return roots


# ---------------------------------------------------------------------------- messages


class MessageCache:
    """The last few parsed messages (a message page loads its body frame right after)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[int, Message] = OrderedDict()

    def get(self, archive: Archive, row: MessageRow) -> Message:
        msg = self._items.get(row.uid)
        if msg is None:
            msg = mm.parse(archive.read_raw(row, MAX_SHOW_BYTES))
            self._items[row.uid] = msg
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        self._items.move_to_end(row.uid)
        return msg


@dataclass(slots=True)
class MessageView:
    row: MessageRow
    subject: str
    sender: str
    to: str
    cc: str
    date: str
    folder: str
    labels: list[str]
    flags: list[str]
    attachments: list[tuple[mm.PartInfo, str]]  # part, human size
    thread_size: int
    is_html: bool


def message_view(archive: Archive, row: MessageRow, msg: Message) -> MessageView:
    body = mm.body_part(msg, ("html", "plain"))
    parts = [(p, human_size(p.size)) for p in mm.attachments(msg) if not p.inline]
    return MessageView(
        row, mm.header(msg, "subject") or one_line(row.subject) or "(no subject)",
        mm.header(msg, "from") or one_line(row.from_addr), mm.header(msg, "to"),
        mm.header(msg, "cc"), full_date(row.internal_date), archive.folder_name(row.dirname),
        archive.label_names(row.label_ids), [FLAG_NAMES[f] for f in row.flags if f in FLAG_NAMES],
        parts, len(thread_of(archive, row)), body is not None and mm.meta(body).subtype == "html",
    )


@dataclass(slots=True)
class ThreadItem:
    row: MessageRow
    sender: str
    date: str
    text: str
    current: bool


def thread_view(archive: Archive, row: MessageRow, cache: MessageCache,
                bodies: int = 30) -> tuple[str, list[ThreadItem]]:
    """The conversation's subject and messages (texts of the last ``bodies`` only)."""
    members = thread_of(archive, row)
    items = []
    for n, member in enumerate(members):
        text = ""
        if n >= len(members) - bodies:
            try:
                text = mm.body_text(cache.get(archive, member))
            except Exception as exc:  # one unreadable file must not hide the conversation
                text = f"(cannot read this message: {exc})"
        items.append(ThreadItem(member, sender_name(member.from_addr),
                                full_date(member.internal_date), text, member.uid == row.uid))
    subject = one_line(members[0].subject) if members else one_line(row.subject)
    return subject or "(no subject)", items
