"""What the search index stores about one message (:class:`Doc`), made from its bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message

from axsync.archive import message as mm
from axsync.archive.textify import cjk_split

BODY_LIMIT = 1_000_000  # characters of body text indexed per message
_TEXT_ATTACHMENT_LIMIT = 200_000  # bytes of a text/* attachment (calendar, csv...) indexed


@dataclass(slots=True)
class Doc:
    subject: str = ""
    sender: str = ""
    recipients: str = ""
    cc: str = ""
    msgid: str = ""
    filenames: str = ""
    body: str = ""
    has_attachment: bool = False
    sent_date: int | None = None
    refs: list[str] = field(default_factory=list)  # own Message-ID first, then references

    def columns(self) -> tuple[str, ...]:
        """The FTS column values, in table order, CJK split for the tokenizer."""
        return tuple(cjk_split(v) for v in (
            self.subject, self.sender, self.recipients, self.cc, self.msgid, self.filenames,
            self.body,
        ))


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        if self.left > 0 and text:
            piece = text[: self.left]
            self.parts.append(piece)
            self.left -= len(piece)


def _collect(part: Message, depth: int, out: _Budget, names: list[str]) -> None:
    """Text of ``part`` into ``out`` (one alternative only), attachment names into
    ``names``; attached messages contribute their headers and text."""
    m = mm.meta(part)
    if m.maintype == "multipart":
        children = mm.children_of(part)
        if m.subtype == "alternative" and children:
            plain = [c for c in children if mm.meta(c).ctype == "text/plain"]
            children = plain[:1] or children[-1:]
        for child in children:
            _collect(child, depth, out, names)
        return
    if m.filename:
        names.append(m.filename)
    if m.ctype == "message/rfc822":
        inner = mm.inner_message(part)
        if inner is not None and depth < mm.MAX_DEPTH:
            for h in ("from", "to", "cc", "subject"):
                out.add(mm.header(inner, h) + "\n")
            _collect(inner, depth + 1, out, names)
        return
    if m.maintype != "text":
        return
    attached = bool(m.filename) or m.disposition == "attachment"
    if attached and len(mm.part_bytes(part)) > _TEXT_ATTACHMENT_LIMIT:
        return
    out.add(mm.part_text(part, out.left) + "\n")


def make_doc(data: bytes) -> Doc:
    """The index document of a message's bytes (possibly cut short: big messages are only
    read up to a limit, and the parser copes with the missing end)."""
    msg = mm.parse(data)
    table = mm.header_table(msg)

    def header(name: str) -> str:
        return mm.header_text(table.get(name))

    doc = Doc(
        subject=header("subject"),
        sender=" ".join(header(h) for h in ("from", "sender", "reply-to")).strip(),
        recipients=header("to"),
        cc=" ".join(header(h) for h in ("cc", "bcc")).strip(),
        msgid=header("message-id"),
    )
    body = _Budget(BODY_LIMIT)
    names: list[str] = []
    _collect(msg, 0, body, names)
    doc.body = "".join(body.parts).strip()
    doc.filenames = " ".join(dict.fromkeys(names))
    doc.has_attachment = mm.has_attachment(msg)
    when = mm.header_date(msg)
    doc.sent_date = int(when.timestamp()) if when is not None else None
    own = mm.message_ids(doc.msgid)[:1]
    refs = mm.message_ids(header("in-reply-to")) + mm.message_ids(header("references"))
    doc.refs = list(dict.fromkeys(own + refs))[:100]
    return doc
