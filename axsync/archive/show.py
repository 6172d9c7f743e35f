"""``axsync show``: one message's headers, text and attachments, as text or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from axsync.archive import message as mm
from axsync.archive.access import Archive, iso_date
from axsync.statedb import MessageRow

FLAG_NAMES = {"D": "draft", "F": "flagged", "R": "answered", "S": "seen", "T": "deleted"}
MAX_SHOW_BYTES = 64 * 1024 * 1024  # beyond this, attachments are cut (text comes first)


@dataclass(slots=True)
class Shown:
    row: MessageRow
    folder: str
    labels: list[str]
    headers: dict[str, str]
    body: str
    attachments: list[mm.PartInfo] = field(default_factory=list)


def flag_words(flags: str) -> list[str]:
    return [FLAG_NAMES[f] for f in flags if f in FLAG_NAMES]


def load(archive: Archive, row: MessageRow) -> Shown:
    """Read and parse the message (StoreError if its file is missing)."""
    msg = mm.parse(archive.read_raw(row, MAX_SHOW_BYTES))
    headers = {h: mm.header(msg, h) for h in ("from", "to", "cc", "date", "subject", "message-id")}
    return Shown(row, archive.folder_name(row.dirname), archive.label_names(row.label_ids),
                 headers, mm.body_text(msg), mm.attachments(msg))


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def to_text(shown: Shown) -> str:
    row, h = shown.row, shown.headers
    lines = [
        f"From:     {h['from']}",
        f"To:       {h['to']}",
        *([f"Cc:       {h['cc']}"] if h["cc"] else []),
        f"Date:     {h['date'] or iso_date(row.internal_date)}",
        f"Subject:  {h['subject']}",
        f"Folder:   {shown.folder}",
        f"Labels:   {', '.join(shown.labels) or '-'}",
        f"Flags:    {', '.join(flag_words(row.flags)) or '-'}",
        f"Id:       {row.uid}" + (f"  (server id {row.mail_id})" if row.mail_id else ""),
    ]
    if row.state == "deleted":
        lines.append("State:    deleted on the server, kept in the archive")
    if shown.attachments:
        lines.append("Attachments:")
        lines += [
            f"  [{a.index}] {a.display_name()} ({a.content_type}, {human_size(a.size)})"
            + (" inline" if a.inline else "")
            for a in shown.attachments
        ]
    return "\n".join(lines) + "\n\n" + shown.body.rstrip("\n") + "\n"


def to_json(shown: Shown) -> dict[str, Any]:
    row, h = shown.row, shown.headers
    return {
        "id": str(row.uid), "mail_id": row.mail_id, "folder": shown.folder,
        "date": iso_date(row.internal_date), "header_date": h["date"], "from": h["from"],
        "to": h["to"], "cc": h["cc"], "subject": h["subject"], "message_id": h["message-id"],
        "conversation_id": row.conversation_id, "labels": shown.labels, "flags": row.flags,
        "state": row.state, "size": row.size,
        "attachments": [
            {"part": a.index, "filename": a.display_name(), "content_type": a.content_type,
             "size": a.size, "inline": a.inline, "content_id": a.content_id or None}
            for a in shown.attachments
        ],
        "text": shown.body,
    }


def summary_json(archive: Archive, row: MessageRow) -> dict[str, Any]:
    """A thread member in the shape of a search hit."""
    return {
        "id": str(row.uid), "mail_id": row.mail_id, "folder": archive.folder_name(row.dirname),
        "date": iso_date(row.internal_date), "from": mm.one_line(row.from_addr),
        "subject": mm.one_line(row.subject), "labels": archive.label_names(row.label_ids),
        "flags": row.flags, "state": row.state, "conversation_id": row.conversation_id,
    }
