"""Just enough RFC 5322 / MIME for the fake server.

Two speeds: :func:`thread_ids` runs for every stored message (it must keep a 100k-message
load within seconds, so it is a regex over the header block), while :class:`MailInfo` (the
header fields, snippet and attachments a MailInstance shows) is computed lazily, once per
message content, by :class:`MailContent`.
"""

from __future__ import annotations

import base64
import binascii
import html
import quopri
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import collapse_rfc2231_value, decode_params, formatdate, unquote

_THREAD_HEADERS = re.compile(
    rb"^(message-id|in-reply-to|references)[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.I | re.M
)
_ANGLE_ID = re.compile(r"<([^<>]+)>")
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_ENCODED_GAP = re.compile(r"(\?=)\s+(?==\?[^?\s]+\?[bBqQ]\?)")
_SPACES = re.compile(r"\s+")
_TAGS = re.compile(r"<[^>]*>")
_INVISIBLE = re.compile(r"(?is)<(style|script|head)\b.*?</\1\s*>")

SNIPPET_CHARS = 200
SNIPPET_SOURCE_CHARS = 1000  # of plain body text looked at to make a snippet (HTML: 8x)
MAX_MIME_DEPTH = 32
IMPORTANCE_RANK = {"low": 0, "normal": 1, "high": 2}


def body_offset(raw: bytes) -> int:
    """Index where the body starts (just after the empty line); ``len(raw)`` if none."""
    if raw.startswith(b"\r\n"):
        return 2
    if raw.startswith(b"\n"):
        return 1
    crlf = raw.find(b"\n\r\n")
    lf = raw.find(b"\n\n", 0, crlf if crlf >= 0 else len(raw))
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else len(raw)


def header_block(raw: bytes) -> bytes:
    """The raw header block, including the terminating empty line when there is one."""
    return raw[: body_offset(raw)]


def normalize_id(value: str) -> str:
    """A Message-ID without angle brackets and surrounding whitespace."""
    match = _ANGLE_ID.search(value)
    return (match.group(1) if match else value).strip()


def thread_ids(raw: bytes) -> tuple[str, tuple[str, ...]]:
    """(normalized Message-ID or "", ids this message refers to: References + In-Reply-To)."""
    message_id = ""
    parents: list[str] = []
    for name, value in _THREAD_HEADERS.findall(raw[: body_offset(raw)]):
        text = value.decode("utf-8", "replace")
        key = name.lower()
        if key == b"message-id":
            if not message_id:
                message_id = normalize_id(text)
        else:
            parents.extend(m.strip() for m in _ANGLE_ID.findall(text))
    seen: set[str] = {message_id}
    unique = []
    for parent in parents:
        if parent and parent not in seen:
            seen.add(parent)
            unique.append(parent)
    return message_id, tuple(unique)


def parse_headers(raw: bytes) -> dict[str, str]:
    """First value of every header, lower-cased name, unfolded, undecoded."""
    out: dict[str, str] = {}
    current: str | None = None
    for line in raw[: body_offset(raw)].decode("utf-8", "replace").split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t":  # a continuation: unfolding removes only the line break
            if current is not None:
                out[current] += line
            continue
        name, sep, value = line.partition(":")
        name = name.rstrip()
        current = None
        if sep and name and " " not in name:
            key = name.lower()
            if key not in out:
                out[key] = value
                current = key
    return {key: value.strip() for key, value in out.items()}


def _decode_word(match: re.Match[str]) -> str:
    charset, encoding, text = match.group(1).split("*")[0], match.group(2).upper(), match.group(3)
    try:
        if encoding == "B":
            data = base64.b64decode(text + "=" * (-len(text) % 4))
        else:
            data = quopri.decodestring(text.encode("ascii", "replace"), header=True)
        return data.decode(charset, "replace")
    except (LookupError, ValueError, binascii.Error):
        return match.group(0)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; what cannot be decoded stays as it is."""
    if "=?" not in value:
        return value
    return _ENCODED_WORD.sub(_decode_word, _ENCODED_GAP.sub(r"\1", value))


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """(lower-cased main value, parameters) of a Content-Type/-Disposition value,
    RFC 2231 continuations and charsets included."""
    main = value.partition(";")[0].strip().lower()
    pairs: list[tuple[str, str]] = [(main, "")]
    pairs.extend((m.group(1).lower(), m.group(2).strip()) for m in _PARAM.finditer(value))
    decoded: Sequence[tuple[str, object]] = pairs
    try:
        decoded = decode_params(pairs)
    except (LookupError, ValueError, UnicodeError):
        pass
    params: dict[str, str] = {}
    for name, raw in decoded[1:]:
        text = collapse_rfc2231_value(raw) if isinstance(raw, tuple) else raw
        params[name] = decode_words(unquote(str(text)).strip())
    return main, params


def split_multipart(body: bytes, boundary: str) -> list[bytes]:
    """The parts of a multipart body (RFC 2046 delimiters, tolerant of a missing close)."""
    delim = b"--" + boundary.encode("ascii", "replace")
    parts: list[bytes] = []
    start: int | None = None
    pos = 0
    while True:
        if pos == 0 and body.startswith(delim):
            at = 0
        else:
            found = body.find(b"\n" + delim, pos)
            if found < 0:
                break
            at = found + 1
        end = body.find(b"\n", at)
        end = len(body) if end < 0 else end
        rest = body[at + len(delim) : end].rstrip(b"\r \t")
        pos = max(end, 1)
        if rest not in (b"", b"--"):
            continue  # a longer boundary that only starts like ours
        if start is not None:
            chunk = body[start:at]
            parts.append(chunk[:-2] if chunk.endswith(b"\r\n") else chunk[:-1])
        if rest == b"--":
            return parts
        start = end + 1
    if start is not None and start < len(body):
        parts.append(body[start:])
    return parts


def _decode_text(payload: bytes, charset: str | None) -> str:
    try:
        return payload.decode(charset or "utf-8", "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _snippet(text: str, is_html: bool) -> str:
    text = text[: SNIPPET_SOURCE_CHARS * (8 if is_html else 1)]
    if is_html:
        text = html.unescape(_TAGS.sub(" ", _INVISIBLE.sub(" ", text)))
    return _SPACES.sub(" ", text).strip()[:SNIPPET_CHARS].rstrip()


def _transfer_decode(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "base64":
        try:
            return base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            return body
    if encoding == "quoted-printable":
        return quopri.decodestring(body)
    return body


@dataclass(frozen=True, slots=True)
class Attachment:
    """One AttachmentInstance (``id`` is the part's position in a depth-first walk)."""

    id: int
    name: str
    content_type: str
    size: int
    content_id: str = ""
    is_inline: bool = False


@dataclass(frozen=True, slots=True)
class MailInfo:
    """What a MailInstance shows that comes from the message itself."""

    from_: str
    to: str
    cc: str
    bcc: str
    reply_to: str
    sender: str
    message_id: str
    subject: str
    snippet: str
    importance: str
    return_receipt: bool
    is_itip: bool
    attachments: tuple[Attachment, ...] = ()

    @property
    def has_attachments(self) -> bool:
        return any(not a.is_inline for a in self.attachments)


def _importance(headers: dict[str, str]) -> str:
    value = headers.get("importance", "").strip().lower()
    if value in IMPORTANCE_RANK:
        return value
    priority = headers.get("x-priority", "").strip()[:1]
    if priority in ("1", "2"):
        return "high"
    if priority in ("4", "5"):
        return "low"
    return "normal"


class _Walker:
    """Depth-first walk of a MIME tree: the first text bodies, attachments, iTIP parts."""

    def __init__(self) -> None:
        self.plain: str | None = None
        self.rich: str | None = None
        self.found: list[Attachment] = []
        self.itip = False
        self.index = 0

    def visit(self, raw: bytes, headers: dict[str, str], in_related: bool, depth: int) -> None:
        self.index += 1
        ctype, params = header_params(headers.get("content-type", "text/plain"))
        if "/" not in ctype:
            ctype = "text/plain"
        body = raw[body_offset(raw) :]
        boundary = params.get("boundary")
        if ctype.startswith("multipart/") and boundary and depth < MAX_MIME_DEPTH:
            related = in_related or ctype == "multipart/related"
            for part in split_multipart(body, boundary):
                self.visit(part, parse_headers(part), related, depth + 1)
            return
        disposition, dparams = header_params(headers.get("content-disposition", ""))
        filename = dparams.get("filename") or params.get("name") or ""
        encoding = headers.get("content-transfer-encoding", "")
        self.itip = self.itip or ctype == "text/calendar"
        if ctype == "text/calendar" and disposition != "attachment" and not filename:
            return  # an invitation's body part, not an attachment
        if disposition != "attachment" and not filename and ctype in ("text/plain", "text/html"):
            if (self.plain if ctype == "text/plain" else self.rich) is None:
                text = _decode_text(_transfer_decode(body, encoding), params.get("charset"))
                if ctype == "text/plain":
                    self.plain = text
                else:
                    self.rich = text
            return
        size = len(body) if ctype == "message/rfc822" else len(_transfer_decode(body, encoding))
        cid = normalize_id(headers.get("content-id", ""))
        self.found.append(
            Attachment(
                id=self.index,
                name=filename,
                content_type=ctype,
                size=size,
                content_id=cid,
                is_inline=in_related and bool(cid) and disposition != "attachment",
            )
        )

    def snippet(self) -> str:
        if self.plain is not None:
            return _snippet(self.plain, False)
        return _snippet(self.rich or "", True)


def parse_info(raw: bytes) -> MailInfo:
    headers = parse_headers(raw)
    walker = _Walker()
    walker.visit(raw, headers, False, 0)

    def get(name: str) -> str:
        return decode_words(headers.get(name, ""))

    from_ = get("from")
    return MailInfo(
        from_=from_,
        to=get("to"),
        cc=get("cc"),
        bcc=get("bcc"),
        reply_to=get("reply-to") or from_,
        sender=get("sender"),
        message_id=headers.get("message-id", ""),
        subject=get("subject"),
        snippet=walker.snippet(),
        importance=_importance(headers),
        return_receipt="disposition-notification-to" in headers,
        is_itip=walker.itip,
        attachments=tuple(walker.found),
    )


class MailContent:
    """The bytes of one message and what is derived from them (computed once)."""

    __slots__ = ("_info", "message_id", "parents", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.message_id, self.parents = thread_ids(raw)
        self._info: MailInfo | None = None

    @property
    def info(self) -> MailInfo:
        info = self._info
        if info is None:
            info = self._info = parse_info(self.raw)
        return info


def build_message(
    *,
    headers: dict[str, str],
    date: int,
    message_id: str,
    body_text: str | None,
    body_html: str | None,
) -> bytes:
    """A plain RFC 5322 message (CRLF) as ``POST /api/v1/mails`` stores it.

    ``headers`` maps header names to values (empty values are left out). Raises
    ``ValueError`` for values a header cannot hold (line breaks).
    """
    msg = EmailMessage(policy=policy.SMTP)
    msg["Date"] = formatdate(date, usegmt=True)
    msg["Message-ID"] = f"<{message_id}>"
    for name, value in headers.items():
        if value:
            msg[name] = value
    msg["MIME-Version"] = "1.0"
    if body_text is not None and body_html is not None:
        msg.set_content(body_text)
        msg.add_alternative(body_html, subtype="html")
    elif body_html is not None:
        msg.set_content(body_html, subtype="html")
    else:
        msg.set_content(body_text or "")
    return msg.as_bytes()
