"""Running a query against the archive: ranked (bm25), paged, with snippets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from axsync.archive.access import Archive, iso_date
from axsync.archive.query import Compiled, compile_query, parse
from axsync.archive.textify import cjk_join, one_line

MARK_START, MARK_END = "\ue000", "\ue001"  # snippet highlight markers (private use)
_WEIGHTS = "4.0, 3.0, 1.5, 1.0, 1.0, 2.0, 1.0"  # subject sender recipients cc msgid filenames body
_BODY_COLUMN = 6
_SNIPPET_TOKENS = 20
MAX_LIMIT = 1000
_COLUMNS = (
    "m.uid, m.mail_id, m.dirname, m.internal_date, m.from_addr, m.subject, m.label_ids, "
    "m.flags, m.state, m.conversation_id"
)


@dataclass(slots=True)
class Hit:
    uid: int
    mail_id: str | None
    dirname: str
    folder: str
    date: int
    from_addr: str
    subject: str
    labels: list[str]
    flags: str
    state: str
    conversation_id: str | None
    snippet: str = ""  # with MARK_START/MARK_END around matched words

    def plain_snippet(self) -> str:
        return self.snippet.replace(MARK_START, "").replace(MARK_END, "")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.uid), "mail_id": self.mail_id, "folder": self.folder,
            "date": iso_date(self.date), "from": self.from_addr, "subject": self.subject,
            "snippet": self.plain_snippet(), "labels": self.labels, "flags": self.flags,
            "state": self.state, "conversation_id": self.conversation_id,
        }


@dataclass(slots=True)
class Results:
    hits: list[Hit]
    page: int
    limit: int
    has_more: bool
    unindexed: int  # messages not in the index yet (found only by filters)


def _hit(archive: Archive, row: Sequence[Any]) -> Hit:
    uid, mail_id, dirname, date, from_addr, subject, labels, flags, state, conv = row
    return Hit(uid, mail_id, dirname, archive.folder_name(dirname), date, one_line(from_addr),
               one_line(subject), archive.label_names(json.loads(labels)), flags, state, conv)


def run(archive: Archive, query: str, *, limit: int = 20, page: int = 1,
        count_unindexed: bool = True) -> Results:
    """The ``page``-th page (from 1) of ``limit`` hits for ``query``. QueryError for a
    malformed query; an empty query lists every message, newest first."""
    limit = max(1, min(limit, MAX_LIMIT))
    page = max(1, page)
    compiled = compile_query(parse(query), archive)
    rows = _page(archive, compiled, limit + 1, (page - 1) * limit)
    hits = [_hit(archive, r) for r in rows[:limit]]
    _add_snippets(archive, compiled, hits)
    unindexed = unindexed_count(archive) if count_unindexed else 0
    return Results(hits, page, limit, len(rows) > limit, unindexed)


def _page(archive: Archive, c: Compiled, limit: int, offset: int) -> list[Sequence[Any]]:
    base = f"FROM messages m {{join}} WHERE m.state != 'tombstoned' AND ({c.where})"
    if c.match is None:
        sql = f"SELECT {_COLUMNS} {base.format(join='')} ORDER BY m.internal_date DESC, m.uid DESC"
        params: tuple[object, ...] = c.params
    else:
        join = (
            f"JOIN (SELECT rowid AS uid, bm25(search_fts, {_WEIGHTS}) AS score FROM search_fts "
            "WHERE search_fts MATCH ?) f ON f.uid = m.uid"
        )
        sql = f"SELECT {_COLUMNS} {base.format(join=join)} ORDER BY f.score, m.internal_date DESC"
        params = (c.match, *c.params)
    return archive.db.execute(f"{sql} LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()


def _add_snippets(archive: Archive, c: Compiled, hits: list[Hit]) -> None:
    if not hits:
        return
    marks = ",".join("?" * len(hits))
    uids = [h.uid for h in hits]
    if c.match is not None:
        sql = (
            f"SELECT rowid, snippet(search_fts, {_BODY_COLUMN}, ?, ?, '…', {_SNIPPET_TOKENS}) "
            f"FROM search_fts WHERE search_fts MATCH ? AND rowid IN ({marks})"
        )
        params: list[object] = [MARK_START, MARK_END, c.match, *uids]
    else:
        sql = f"SELECT rowid, substr(body, 1, 240) FROM search_fts WHERE rowid IN ({marks})"
        params = list(uids)
    found = dict(archive.db.execute(sql, params).fetchall())
    for hit in hits:
        hit.snippet = one_line(cjk_join(found.get(hit.uid) or ""))


def unindexed_count(archive: Archive) -> int:
    row = archive.db.execute(
        "SELECT count(*) FROM messages m WHERE m.state IN ('present', 'deleted') AND NOT EXISTS "
        "(SELECT 1 FROM search_docs d WHERE d.uid = m.uid)"
    ).fetchone()
    return int(row[0])
