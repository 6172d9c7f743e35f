"""mboxrd: one message after another, each after a ``From_`` line, body lines matching
``^>*From `` quoted with one more ``>``; line ends become LF, as mbox readers expect.

Streaming: a message is copied line by line (long lines in bounded pieces), only its
header block (at most 1 MiB) is held in memory, to find the envelope sender.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr
from typing import BinaryIO

_PIECE = 1024 * 1024
_HEADER_LIMIT = 1024 * 1024
_FROM = re.compile(rb"^>*From ")
_OUR_HEADERS = (b"status:", b"x-status:", b"x-keywords:")
_ADDR_OK = re.compile(r"[^\x21-\x7e]")


def from_line(sender: str, when: int) -> bytes:
    """``From <sender> <asctime in UTC>``: the sender without spaces, MAILER-DAEMON if
    there is none."""
    sender = _ADDR_OK.sub("", sender) or "MAILER-DAEMON"
    return f"From {sender} {time.asctime(time.gmtime(when))}\n".encode("ascii", "replace")


def envelope_sender(header_block: bytes) -> str:
    """Return-Path, else From: the address only."""
    head = BytesHeaderParser(policy=compat32).parsebytes(header_block)
    for name in ("return-path", "from", "sender"):
        value = head.get(name)
        if value:
            addr = parseaddr(str(value))[1]
            if addr:
                return addr
    return ""


def status_headers(flags: str, keywords: Iterable[str]) -> list[bytes]:
    """mutt's ``Status``/``X-Status`` and Dovecot's ``X-Keywords`` for the flags."""
    status = b"RO" if "S" in flags else b"O"
    xstatus = "".join(c for f, c in (("R", "A"), ("F", "F"), ("D", "T"), ("T", "D")) if f in flags)
    out = [b"Status: " + status + b"\n"]
    if xstatus:
        out.append(b"X-Status: " + xstatus.encode() + b"\n")
    words = " ".join(keywords)
    if words:
        out.append(b"X-Keywords: " + words.encode("ascii", "replace") + b"\n")
    return out


def _lines(stream: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """(piece, starts_a_line) for the stream, each piece at most 1 MiB, without line end."""
    at_start = True
    while True:
        piece = stream.readline(_PIECE)
        if not piece:
            return
        ends = piece.endswith(b"\n")
        text = piece[:-1] if ends else piece
        if ends and text.endswith(b"\r"):
            text = text[:-1]
        yield text + (b"\n" if ends else b""), at_start
        at_start = ends


def _read_header(stream: BinaryIO) -> tuple[list[bytes], bool]:
    """The header lines (each ending in LF) up to and without the blank line, and
    whether the blank line was found."""
    lines: list[bytes] = []
    size = 0
    for piece, _start in _lines(stream):
        if piece in (b"\n", b""):
            return lines, True
        lines.append(piece if piece.endswith(b"\n") else piece + b"\n")
        size += len(piece)
        if size > _HEADER_LIMIT:
            break
    return lines, False


def _without_ours(lines: list[bytes]) -> list[bytes]:
    """Drop Status/X-Status/X-Keywords (and their continuation lines): ours replace them."""
    out: list[bytes] = []
    skipping = False
    for line in lines:
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.lower().startswith(_OUR_HEADERS)
        if not skipping:
            out.append(line)
    return out


def quote(piece: bytes, at_line_start: bool) -> bytes:
    return b">" + piece if at_line_start and _FROM.match(piece) else piece


def write_message(out: BinaryIO, stream: BinaryIO, when: int, flags: str,
                  keywords: Iterable[str]) -> int:
    """Append one message (read from ``stream``) to the mbox ``out``; returns the bytes
    written."""
    header, complete = _read_header(stream)
    written = 0

    def put(data: bytes) -> None:
        nonlocal written
        out.write(data)
        written += len(data)

    put(from_line(envelope_sender(b"".join(header)), when))
    for line in _without_ours(header):
        put(quote(line, True))
    if complete:
        for line in status_headers(flags, keywords):
            put(line)
        put(b"\n")
    last = b"\n"
    for piece, start in _lines(stream):
        put(quote(piece, start))
        last = piece[-1:] or last
    if last != b"\n":
        put(b"\n")
    put(b"\n")
    return written
