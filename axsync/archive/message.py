"""One message, parsed: headers as text, the body as text, parts by index. Never raises.

Parts are numbered in document order (pre-order over the MIME tree, ``0`` is the whole
message) *without* descending into attached messages (``message/rfc822``): the index is a
stable address of a part for as long as the bytes are the same, which they always are.
The browse UI and ``show`` address attachments by this number, never by file name.
"""

from __future__ import annotations

import mimetypes
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime, unquote
from typing import Any

from axsync.archive import feedfast, mimefast
from axsync.archive.textify import (
    clean,
    decode_bytes,
    decode_rfc2047,
    header_line,
    html_to_text,
    one_line,
)

feedfast.install()  # multipart boundaries without a regex compile each (feedfast.py)

# compat32: the structure parse is 5x faster than policy.default's, and headers are
# decoded here (header(), _param()) leniently; policy.default is only used to serialize.
_PARSER = BytesParser(policy=policy.compat32)
_SERIALIZE = policy.default.clone(refold_source="none", linesep="\r\n")
_MSGID = re.compile(r"<[^<>\s]+>")
MAX_DEPTH = 4  # attached messages inside attached messages: deeper ones are not read


@dataclass(frozen=True, slots=True)
class PartInfo:
    """A leaf part that is shown as an attachment (or an inline image)."""

    index: int
    content_type: str
    filename: str  # decoded, as the sender named it ('' when unnamed)
    size: int  # decoded bytes
    inline: bool  # an inline image the HTML body refers to by Content-ID
    content_id: str  # without the angle brackets

    def display_name(self) -> str:
        if self.filename:
            return self.filename
        ext = mimetypes.guess_extension(self.content_type) or ".bin"
        if self.content_type == "message/rfc822":
            ext = ".eml"
        return f"part-{self.index}{ext}"


def parse(data: bytes) -> Message:
    """The message in ``data``: the tree the ``email`` package's parser (which never gives
    up) builds: by :mod:`axsync.archive.mimefast` when the message is well-formed (48
    against 86 µs per message of the generated corpus), else by that parser."""
    fast = mimefast.parse(data)
    if fast is not None:
        return fast
    try:
        return _PARSER.parsebytes(data)
    except Exception:  # the parser is lenient; this is for the unknown unknowns
        msg = Message()
        msg.set_payload(data, None)
        return msg


def header(msg: Message, name: str) -> str:
    """Every ``name`` header of ``msg`` decoded (RFC 2047, any charset, 8-bit bytes as
    UTF-8 or windows-1252), joined by ", ", on one line ('' if none).

    Read from the raw header lines: the ``email`` package's structured header objects
    are slow to build and can raise on malformed values; display only needs the text."""
    return header_text(_header_table(msg).get(name.lower()))


def header_text(values: list[object] | None) -> str:
    """:func:`header` of the raw values of one header (from :func:`header_table`)."""
    if not values:
        return ""
    if len(values) == 1 and type(values[0]) is str:
        return header_line(values[0])
    return one_line(", ".join(decode_rfc2047(clean(str(v))) for v in values))


def header_table(msg: Message) -> dict[str, list[object]]:
    """The raw values of every header of ``msg`` by lower-case name (made once per
    message; do not modify): for a caller that reads many headers of one message."""
    return _header_table(msg)


# Raw header values by lower-case name, made once per message or part (parsed messages
# are never modified here): the index asks a dozen headers of every message.
_HEADERS: weakref.WeakKeyDictionary[Message, dict[str, list[object]]] = weakref.WeakKeyDictionary()


def _header_table(msg: Message) -> dict[str, list[object]]:
    table = _HEADERS.get(msg)
    if table is None:
        table = {}
        try:
            for k, v in msg.raw_items():
                table.setdefault(k.lower(), []).append(v)
        except Exception:
            table = {}
        _HEADERS[msg] = table
    return table


def addresses(value: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address header's text."""
    try:
        return [(clean(n), clean(a)) for n, a in getaddresses([value]) if n or a]
    except Exception:
        return []


def sender_name(value: str) -> str:
    """The display name of the first address in ``value``, else the address itself."""
    pairs = addresses(one_line(value))
    if pairs:
        name, addr = pairs[0]
        return one_line(name) or addr or one_line(value)
    return one_line(value) or "(unknown sender)"


def message_ids(value: str) -> list[str]:
    """The ``<id>`` items of a Message-ID, In-Reply-To or References value, in order."""
    found = _MSGID.findall(value)
    if not found and value.strip() and " " not in value.strip():
        found = [f"<{value.strip().strip('<>')}>"]
    return list(dict.fromkeys(found))


def header_date(msg: Message) -> datetime | None:
    """The Date: header as an aware datetime, or None if missing or unusable."""
    value = header(msg, "date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
        return when if when.tzinfo is not None else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# ---------------------------------------------------------------------------- parts


@dataclass(frozen=True, slots=True)
class Meta:
    """What the MIME headers of one part say (computed once per part: the ``email``
    package re-parses a header on every access)."""

    ctype: str
    disposition: str  # 'attachment' | 'inline' | ''
    filename: str
    content_id: str  # without the angle brackets
    charset: str | None

    @property
    def maintype(self) -> str:
        return self.ctype.partition("/")[0]

    @property
    def subtype(self) -> str:
        return self.ctype.partition("/")[2]


_META: weakref.WeakKeyDictionary[Message, Meta] = weakref.WeakKeyDictionary()


# Metas by what they are made of (the part's Content-Type, Content-Disposition and
# Content-ID lines as received, its default type and policy): most leaf parts of a
# mailbox share a few of these (``text/plain; charset=utf-8``...), and making a Meta
# was a quarter of making a search document. Cleared when full.
_META_BY_HEADERS: dict[tuple[object, ...], Meta] = {}
_META_BY_HEADERS_MAX = 4096


def meta(part: Message) -> Meta:
    found = _META.get(part)
    if found is None:
        key = _meta_key(part)
        found = _META_BY_HEADERS.get(key) if key is not None else None
        if found is None:
            found = _make_meta(part)
            if key is not None:
                if len(_META_BY_HEADERS) >= _META_BY_HEADERS_MAX:
                    _META_BY_HEADERS.clear()
                _META_BY_HEADERS[key] = found
        _META[part] = found
    return found


def _meta_key(part: Message) -> tuple[object, ...] | None:
    """Everything :func:`_make_meta` reads of ``part``, or None if a value is not the
    plain text received (a header object set by a program) or the headers cannot be
    read (then ``_header_table`` is empty, like a part without headers, but
    :func:`_make_meta` may answer otherwise)."""
    try:
        items = part.raw_items()
        values: dict[str, list[str]] = {"content-type": [], "content-disposition": [],
                                        "content-id": []}
        for k, v in items:
            group = values.get(k.lower())
            if group is not None:
                if type(v) is not str:
                    return None
                group.append(v)
        return (part.get_default_type(), part.policy,
                *(tuple(group) for group in values.values()))
    except Exception:
        return None


def _params(part: Message, header: str) -> dict[str, Any]:
    """The parameters of one header, by lower-case name (the first of duplicates, as
    ``Message.get_param`` picks), parsed once for all the parameters asked of it."""
    try:
        params = part.get_params(header=header)
    except Exception:
        return {}
    found: dict[str, Any] = {}
    for key, value in params or ():
        found.setdefault(str(key).lower(), value)
    return found


def _param(part: Message, name: str, header: str = "content-type",
           params: dict[str, Any] | None = None) -> str:
    """A header parameter, RFC 2231 decoded, else RFC 2047 decoded (sloppy mailers)."""
    value = (params if params is not None else _params(part, header)).get(name.lower())
    if value is None:
        return ""
    if isinstance(value, tuple):  # RFC 2231: (charset, language, text)
        charset, _lang, text = value
        return decode_bytes(str(text).encode("latin-1", "replace"), charset or "utf-8")
    return decode_rfc2047(clean(unquote(str(value))))


def _make_meta(part: Message) -> Meta:
    try:
        ctype = part.get_content_type()
        disposition = part.get_content_disposition() or ""
    except Exception:
        ctype, disposition = "application/octet-stream", ""
    ctype_params = _params(part, "content-type")
    name = (_param(part, "filename", "content-disposition")
            or _param(part, "name", params=ctype_params))
    cid = header(part, "content-id").strip().strip("<>") if "content-id" in part else ""
    return Meta(ctype, disposition if disposition in ("inline", "attachment") else "",
                one_line(name), cid, _param(part, "charset", params=ctype_params) or None)


def walk(msg: Message) -> Iterator[tuple[int, Message]]:
    """(index, part) in document order; attached messages are leaves."""
    stack: list[Message] = [msg]
    index = 0
    while stack:
        part = stack.pop()
        yield index, part
        index += 1
        if part.is_multipart() and meta(part).maintype == "multipart":
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend(reversed([c for c in children if isinstance(c, Message)]))


def part_at(msg: Message, index: int) -> Message | None:
    for i, part in walk(msg):
        if i == index:
            return part
        if i > index:
            break
    return None


def children_of(part: Message) -> list[Message]:
    """The sub-parts of a multipart (or the message of a ``message/rfc822`` part), else
    ``[]``. Never calls ``get_payload()`` on a leaf: for a leaf holding 8-bit bytes it
    decodes them with the part's ``charset`` parameter, and raises for a charset with a
    NUL (ValueError) or in RFC 2231 form (TypeError) instead of falling back."""
    if not part.is_multipart():
        return []
    payload = part.get_payload()
    return [c for c in payload if isinstance(c, Message)] if isinstance(payload, list) else []


def inner_message(part: Message) -> Message | None:
    """The message attached as a ``message/rfc822`` part, if any."""
    payload = children_of(part)
    if payload:
        return payload[0]
    return None


def part_bytes(part: Message) -> bytes:
    """The decoded content of a leaf part (an attached message as RFC 5322 bytes)."""
    if meta(part).ctype == "message/rfc822":
        inner = inner_message(part)
        if inner is None:
            return b""
        try:
            return inner.as_bytes(policy=_SERIALIZE)
        except Exception:
            return inner.as_string(policy=policy.compat32).encode("utf-8", "surrogateescape")
    if part.is_multipart():
        return b""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def part_text(part: Message, limit: int = 4_000_000) -> str:
    """A text part as text (HTML reduced to text), at most about ``limit`` characters."""
    text = decode_bytes(part_bytes(part)[: limit * 4], meta(part).charset)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if meta(part).subtype == "html":
        return html_to_text(text, limit)
    return clean(text[:limit])


def part_html(part: Message, limit: int = 8_000_000) -> str:
    """An HTML part's markup as text (unsanitized: see axsync.browse.sanitize)."""
    return clean(decode_bytes(part_bytes(part)[:limit], meta(part).charset))


def body_part(msg: Message, prefer: tuple[str, ...] = ("plain", "html")) -> Message | None:
    """The part holding the message text, ``prefer`` ranking the text subtypes: the
    algorithm of ``EmailMessage.get_body`` (attachments skipped, one path into
    multipart/related), over cached part metadata."""
    best: tuple[int, Message] | None = None
    for rank, part in _body_candidates(msg, prefer, 0):
        if best is None or rank < best[0]:
            best = (rank, part)
            if rank == 0:
                break
    if best is None and meta(msg).maintype == "text" and not msg.is_multipart():
        return msg
    return best[1] if best else None


def _body_candidates(part: Message, prefer: tuple[str, ...], depth: int) -> Iterator[tuple[int, Message]]:
    m = meta(part)
    if m.disposition == "attachment" or depth > 20:
        return
    if m.maintype == "text":
        if m.subtype in prefer:
            yield prefer.index(m.subtype), part
        return
    if m.maintype != "multipart" or not part.is_multipart():
        return
    children = children_of(part)
    if m.subtype == "related" and children:
        start = _param(part, "start").strip("<>")
        chosen = next((c for c in children if start and meta(c).content_id == start), children[0])
        children = [chosen]
    for child in children:
        yield from _body_candidates(child, prefer, depth + 1)


def body_text(msg: Message) -> str:
    """The text of the message: text/plain preferred, else its HTML reduced to text."""
    part = body_part(msg)
    return part_text(part) if part is not None else ""


def _is_body_like(m: Meta) -> bool:
    """Inline, unnamed text/plain or text/html: part of the message text, no attachment."""
    return m.ctype in ("text/plain", "text/html") and m.disposition != "attachment" and not m.filename


def attachment_parts(msg: Message) -> Iterator[tuple[int, Message]]:
    """(index, part) of every leaf that is an attachment or an inline image."""
    for index, part in walk(msg):
        if index == 0 and not msg.is_multipart():
            continue  # a single-part message is all body, whatever its type
        m = meta(part)
        if m.maintype == "multipart" or _is_body_like(m):
            continue
        yield index, part


def is_inline_image(m: Meta) -> bool:
    """An image the HTML body shows by Content-ID (not meant as a separate file)."""
    return bool(m.content_id) and m.maintype == "image" and m.disposition != "attachment"


def attachments(msg: Message) -> list[PartInfo]:
    out = []
    for index, part in attachment_parts(msg):
        m = meta(part)
        out.append(PartInfo(index, m.ctype, m.filename, len(part_bytes(part)),
                            is_inline_image(m), m.content_id))
    return out


def has_attachment(msg: Message) -> bool:
    """True if the message has an attachment that is not an inline image of the body."""
    return any(not is_inline_image(meta(part)) for _, part in attachment_parts(msg))
