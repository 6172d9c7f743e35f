"""Low-level, allocation-light MIME building blocks for the corpus generator.

Everything works on LF line ends; :func:`message` converts a finished message to CRLF in one
pass when asked. Binary payloads are always base64, so that conversion never touches them.
Nothing here looks at the clock, the environment or ``hash()``: output depends only on the
arguments.
"""

from __future__ import annotations

import base64
import binascii
import struct
import time
import zlib

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Characters allowed unencoded in a "Q" encoded word that sits in a phrase (RFC 2047 5(3)).
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_TABLE = tuple(
    "_" if b == 0x20 else (chr(b) if b in _Q_SAFE else f"={b:02X}") for b in range(256)
)
# Python codec name -> the label written into MIME headers.
CHARSET_LABEL = {
    "utf-8": "UTF-8",
    "iso-8859-1": "ISO-8859-1",
    "windows-1252": "windows-1252",
    "koi8-r": "KOI8-R",
    "shift_jis": "Shift_JIS",
    "gb2312": "GB2312",
    "us-ascii": "us-ascii",
}
_SPECIALS = frozenset('()<>[]:;@\\,."')


def rfc2822_date(ts: int, offset_min: int = 0, *, comment: bool = False) -> str:
    """``Date:`` value for Unix time ``ts`` shown in a zone ``offset_min`` minutes east."""
    t = time.gmtime(ts + offset_min * 60)
    sign = "+" if offset_min >= 0 else "-"
    off = abs(offset_min)
    out = (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{off // 60:02d}{off % 60:02d}"
    )
    return out + " (UTC)" if comment and offset_min == 0 else out


def ics_time(ts: int) -> str:
    t = time.gmtime(ts)
    return (
        f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}T{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}Z"
    )


def encoded_words(text: str, charset: str = "utf-8", mode: str = "B") -> str:
    """``text`` as RFC 2047 encoded words (each at most 75 characters, never splitting a
    character), separated by folding whitespace. ``mode`` is ``"B"`` or ``"Q"``."""
    prefix = f"=?{CHARSET_LABEL.get(charset, charset)}?{mode}?"
    budget = 75 - len(prefix) - 2
    words: list[str] = []
    if mode == "B":
        limit = (budget // 4) * 3
        cur = b""
        for ch in text:
            enc = ch.encode(charset)
            if cur and len(cur) + len(enc) > limit:
                words.append(prefix + base64.b64encode(cur).decode("ascii") + "?=")
                cur = b""
            cur += enc
        if cur:
            words.append(prefix + base64.b64encode(cur).decode("ascii") + "?=")
    else:
        parts: list[str] = []
        used = 0
        for ch in text:
            piece = "".join(_Q_TABLE[b] for b in ch.encode(charset))
            if parts and used + len(piece) > budget:
                words.append(prefix + "".join(parts) + "?=")
                parts, used = [], 0
            parts.append(piece)
            used += len(piece)
        if parts:
            words.append(prefix + "".join(parts) + "?=")
    return "\n ".join(words)


def header_text(text: str, charset: str = "utf-8", mode: str = "B") -> str:
    """An unstructured header value: as is when ASCII, else encoded words."""
    return text if text.isascii() else encoded_words(text, charset, mode)


def address(name: str, addr: str, charset: str = "utf-8", mode: str = "B") -> str:
    """One mailbox: ``Name <addr>``, quoting or encoding the display name as needed."""
    if not name:
        return addr
    if not name.isascii():
        return f"{encoded_words(name, charset, mode)} <{addr}>"
    if any(ch in _SPECIALS for ch in name):
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{addr}>'
    return f"{name} <{addr}>"


def fold(name: str, value: str) -> str:
    """``Name: value`` folded at spaces so that lines stay within 78 characters where
    possible. ``value`` may already contain folds (``\\n `` from :func:`encoded_words`)."""
    line = f"{name}: {value}"
    if len(line) <= 78 or "\n" in value:
        return line
    out: list[str] = []
    cur = f"{name}:"
    for word in value.split(" "):
        if len(cur) + 1 + len(word) > 78 and cur.strip() and not cur.endswith(":"):
            out.append(cur)
            cur = " " + word
        else:
            cur = f"{cur} {word}"
    out.append(cur)
    return "\n".join(out)


def fold_list(name: str, items: list[str]) -> str:
    """An address or id list, one fold after each comma once the line gets long."""
    line = f"{name}: " + ", ".join(items)
    if len(line) <= 78:
        return line
    return f"{name}: " + ",\n ".join(items)


def fold_ids(name: str, ids: list[str]) -> str:
    """``References``-style list of message ids, folded one id per line when long."""
    line = f"{name}: " + " ".join(ids)
    if len(line) <= 78:
        return line
    return f"{name}: " + "\n ".join(ids)


def qp(data: bytes) -> bytes:
    out = binascii.b2a_qp(data, quotetabs=False, istext=True)
    return out if out.endswith(b"\n") else out + b"=\n"


def b64(data: bytes) -> bytes:
    """Base64 in 76-character lines, each ending in LF (same bytes as
    ``base64.encodebytes``, about twice as fast on large inputs)."""
    if not data:
        return b""
    enc = base64.b64encode(data)
    return b"\n".join([enc[i : i + 76] for i in range(0, len(enc), 76)]) + b"\n"


def encode_body(data: bytes, cte: str) -> bytes:
    """``data`` in transfer encoding ``cte`` (7bit, 8bit, quoted-printable, base64)."""
    if cte == "base64":
        return b64(data)
    if cte == "quoted-printable":
        return qp(data)
    return data if data.endswith(b"\n") else data + b"\n"


Part = tuple[list[str], bytes]
"""A body part or whole-message content: its header lines and its encoded body."""


def part_bytes(part: Part) -> bytes:
    """A part as it sits inside a multipart: headers, blank line, body."""
    headers, body = part
    if not body.endswith(b"\n"):
        body += b"\n"
    return ("\n".join(headers) + "\n\n").encode("ascii") + body


def text_part(
    subtype: str, data: bytes, charset: str | None, cte: str, extra: tuple[str, ...] = ()
) -> Part:
    ctype = f"Content-Type: text/{subtype}"
    if charset:
        ctype += f'; charset="{CHARSET_LABEL.get(charset, charset)}"'
    return [ctype, f"Content-Transfer-Encoding: {cte}", *extra], encode_body(data, cte)


def multipart(
    subtype: str,
    parts: list[Part],
    boundary: str,
    *,
    params: str = "",
    preamble: bool = False,
    extra: tuple[str, ...] = (),
) -> Part:
    """A multipart made of ``parts``; ``boundary`` must not occur in any of them."""
    bnd = boundary.encode("ascii")
    chunks: list[bytes] = []
    if preamble:
        chunks.append(b"This is a multi-part message in MIME format.\n\n")
    for part in parts:
        chunks += (b"--", bnd, b"\n", part_bytes(part))
    chunks += (b"--", bnd, b"--\n")
    ctype = f'Content-Type: multipart/{subtype};\n boundary="{boundary}"{params}'
    return [ctype, *extra], b"".join(chunks)


def message(headers: list[str], body: bytes, crlf: bool) -> bytes:
    """A whole message from LF-separated header lines and body; CRLF throughout if asked."""
    raw = ("\n".join(headers) + "\n\n").encode("ascii") + body
    return raw.replace(b"\n", b"\r\n") if crlf else raw


# ---------------------------------------------------------------------------- binary files


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(noise: bytes, width: int) -> bytes:
    """A valid RGB PNG whose pixels are ``noise`` (len a multiple of ``width * 3``).

    The zlib stream uses stored (uncompressed) deflate blocks, so the bytes do not depend
    on the zlib build the way compressed output can."""
    row = width * 3
    height = len(noise) // row
    raw = b"".join(b"\x00" + noise[i * row : (i + 1) * row] for i in range(height))
    blocks: list[bytes] = []
    for start in range(0, len(raw), 65535):
        piece = raw[start : start + 65535]
        final = 1 if start + 65535 >= len(raw) else 0
        blocks.append(struct.pack("<BHH", final, len(piece), len(piece) ^ 0xFFFF) + piece)
    stream = b"\x78\x01" + b"".join(blocks) + struct.pack(">I", zlib.adler32(raw))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", stream)
        + _chunk(b"IEND", b"")
    )


def pdf(noise: bytes, title: str) -> bytes:
    """A small PDF skeleton (one page with a line of text) carrying ``noise`` as an extra
    binary stream object."""
    text = title.encode("latin-1", "replace").replace(b"(", b"[").replace(b")", b"]")
    content = b"BT /F1 18 Tf 72 720 Td (" + text + b") Tj ET"
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(noise) + noise + b"\nendstream",
    ]
    out = [b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"]
    offsets: list[int] = []
    pos = len(out[0])
    for n, body in enumerate(objs, start=1):
        chunk = b"%d 0 obj\n" % n + body + b"\nendobj\n"
        offsets.append(pos)
        pos += len(chunk)
        out.append(chunk)
    xref = [b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)]
    xref += [b"%010d 00000 n \n" % off for off in offsets]
    out += xref
    out.append(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, pos)
    )
    return b"".join(out)


def zip_like(noise: bytes) -> bytes:
    """Bytes that start like a ZIP/OOXML file (local file header) followed by noise."""
    return b"PK\x03\x04\x14\x00\x06\x00\x08\x00" + noise
