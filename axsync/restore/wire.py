"""Pure IMAP4rev1 wire helpers for restore: no sockets here.

* strings: :func:`astring` (atom, quoted string or ``None`` = "needs a literal"),
  modified UTF-7 mailbox names (RFC 3501 5.1.3), INTERNALDATE, UID sets;
* responses: :func:`parse` turns one response (literals inline as ``{n}\\r\\n<n bytes>``)
  into values — :class:`Atom`, ``bytes`` (quoted string or literal), ``None`` (NIL), lists;
* message bytes: :class:`LfToCrlf` (bare LF → CRLF, streaming; bare CR stays),
  :func:`message_id_of`, :func:`normalize_message_id`, :func:`fingerprint`.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import time
from collections.abc import Iterable
from typing import TypeAlias

from axsync.errors import ApiError
from axsync.mutf7 import mutf7_decode as _mutf7_decode
from axsync.mutf7 import mutf7_encode as mutf7_encode

CRLF = b"\r\n"
FINGERPRINT_BYTES = 2048
"""How many leading bytes of the (CRLF) message go into :func:`fingerprint`."""

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE_RE = re.compile(
    r"^ ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$")
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')
_LITERAL_AT = re.compile(rb"~?\{(\d+)\+?\}\r\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")


class ImapProtocolError(ApiError):
    """The server said something this client cannot parse (exit 5)."""


# ---------------------------------------------------------------------------- strings


def is_atom(data: bytes) -> bool:
    """True for a non-empty IMAP atom (no specials, controls, 8-bit)."""
    return bool(data) and all(0x20 < b < 0x7F and b not in _ATOM_SPECIALS for b in data)


def astring(data: bytes) -> bytes | None:
    """``data`` as an atom or a quoted string; None when only a literal can carry it
    (CR, LF, NUL or 8-bit bytes)."""
    if is_atom(data) and data.upper() != b"NIL":
        return data
    if any(b in (0, 0x0A, 0x0D) or b > 0x7F for b in data):
        return None
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def mutf7_decode(name: str) -> str:
    """IMAP modified UTF-7 → unicode; text that is not valid modified UTF-7 is returned
    unchanged (some servers send raw UTF-8)."""
    return _mutf7_decode(name, malformed="whole")


def internaldate(ts: int) -> str:
    """Unix seconds → ``"dd-Mon-yyyy hh:mm:ss +0000"`` (UTC, quoted form's content)."""
    t = time.gmtime(ts)
    return (f"{t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")


def parse_internaldate(text: str) -> int:
    """INTERNALDATE text → Unix seconds. ImapProtocolError when malformed."""
    m = _DATE_RE.match(text)
    if not m or m.group(2).capitalize() not in _MONTHS:
        raise ImapProtocolError(f"bad INTERNALDATE {text!r}")
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    base = calendar.timegm((int(year), _MONTHS.index(mon.capitalize()) + 1, int(day),
                            int(hh), int(mm), int(ss), 0, 0, 0))
    offset = (int(oh) * 60 + int(om)) * 60
    return base - offset if sign == "+" else base + offset


def uid_set(uids: Iterable[int]) -> str:
    """Sorted UIDs as a compact sequence set: ``1:3,7,9:10``."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


# ---------------------------------------------------------------------------- responses


class Atom(bytes):
    """An IMAP atom, as opposed to a string with the same bytes."""


Value: TypeAlias = "Atom | bytes | None | list[Value]"


class _Parser:
    _ATOM_END = frozenset(b" ()\r\n")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def error(self, what: str) -> ImapProtocolError:
        around = self.data[max(0, self.pos - 30) : self.pos + 30]
        return ImapProtocolError(f"cannot parse the server's reply ({what} near {around!r})")

    def skip_space(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] == 0x20:
            self.pos += 1

    def values(self) -> list[Value]:
        out: list[Value] = []
        while True:
            self.skip_space()
            if self.pos >= len(self.data):
                return out
            out.append(self.value())

    def value(self) -> Value:
        ch = self.data[self.pos]
        if ch == 0x28:  # (
            self.pos += 1
            items: list[Value] = []
            while True:
                self.skip_space()
                if self.pos >= len(self.data):
                    raise self.error("unterminated list")
                if self.data[self.pos] == 0x29:
                    self.pos += 1
                    return items
                items.append(self.value())
        if ch == 0x22:  # "
            return self.quoted()
        if ch == 0x7B or self.data.startswith(b"~{", self.pos):
            m = _LITERAL_AT.match(self.data, self.pos)
            if not m:
                raise self.error("bad literal")
            end = m.end() + int(m.group(1))
            if end > len(self.data):
                raise self.error("short literal")
            self.pos = end
            return self.data[m.end() : end]
        atom = self.atom()
        return None if atom.upper() == b"NIL" else atom

    def quoted(self) -> bytes:
        self.pos += 1
        out = bytearray()
        while self.pos < len(self.data):
            ch = self.data[self.pos]
            if ch == 0x5C and self.pos + 1 < len(self.data):
                out.append(self.data[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if ch == 0x22:
                return bytes(out)
            out.append(ch)
        raise self.error("unterminated string")

    def atom(self) -> Atom:
        start = self.pos
        depth = 0
        while self.pos < len(self.data):
            ch = self.data[self.pos]
            if ch == 0x5B:  # [ : BODY[HEADER.FIELDS (A B)]<0> holds SP and parens
                depth += 1
            elif ch == 0x5D and depth:
                depth -= 1
            elif depth == 0 and ch in self._ATOM_END:
                break
            self.pos += 1
        if self.pos == start:
            raise self.error("unexpected character")
        return Atom(self.data[start : self.pos])


def parse(data: bytes) -> list[Value]:
    """All values of one response line (after the ``*``/tag), literals inline."""
    return _Parser(data).values()


def text(value: Value) -> str:
    """A string or atom value as text; ImapProtocolError for lists and NIL."""
    if not isinstance(value, bytes):
        raise ImapProtocolError(f"expected a string in the server's reply, got {value!r}")
    return value.decode("utf-8", "surrogateescape")


def literal_size(line: bytes) -> int | None:
    """The size of the literal announced at the end of a response line, if any."""
    m = re.search(rb"~?\{(\d+)\+?\}\r\n$", line)
    return int(m.group(1)) if m else None


def response_code(line: bytes) -> tuple[str, str]:
    """``[CODE args]`` at the start of a status text → (CODE upper case, args)."""
    m = re.match(rb"\s*\[([A-Za-z0-9.-]+)(?: ([^\]]*))?\]", line)
    if not m:
        return "", ""
    return m.group(1).decode("ascii").upper(), (m.group(2) or b"").decode("utf-8", "replace")


# ---------------------------------------------------------------------------- messages


class LfToCrlf:
    """Streaming bare-LF → CRLF conversion: what the ``W=`` size counts and what IMAP
    requires. Bare CR and CR CR LF pass unchanged; a CRLF split across chunks is seen."""

    def __init__(self) -> None:
        self._last_cr = False

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        out = _BARE_LF.sub(CRLF, chunk)
        if self._last_cr and chunk[:1] == b"\n":
            out = out[1:]  # the LF completes the CR of the previous chunk
        self._last_cr = chunk[-1:] == b"\r"
        return out


def crlf(data: bytes) -> bytes:
    """Every bare LF of ``data`` as CRLF (one-shot :class:`LfToCrlf`)."""
    return LfToCrlf().feed(data)


_MSGID_HEADER = re.compile(rb"(?im)^message-id[ \t]*:((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)")


def message_id_of(header: bytes) -> str:
    """The normalized Message-ID of a message's header block (``""`` if it has none).
    Looks only at the header (up to the first empty line)."""
    end = re.search(rb"\r?\n\r?\n", header)
    block = header[: end.start()] if end else header
    m = _MSGID_HEADER.search(block)
    if not m:
        return ""
    return normalize_message_id(m.group(1).decode("utf-8", "replace"))


def normalize_message_id(value: str) -> str:
    """The comparable form of a Message-ID: whitespace (folding) removed, then what is
    inside the first ``<…>``; text without brackets as it is. ``""`` for nothing."""
    compact = "".join(value.split())
    m = re.search(r"<([^<>]+)>", compact)
    return m.group(1) if m else compact.strip("<>")


def fingerprint(wire_size: int, internal_date: int, head: bytes) -> str:
    """The match key of a message without Message-ID: sha256 over its CRLF size, its
    internal date and its first :data:`FINGERPRINT_BYTES` bytes (CRLF form, NUL read as
    0x80 as IMAP servers serve it). 32 hex digits."""
    h = hashlib.sha256(b"%d\n%d\n" % (wire_size, internal_date))
    h.update(head[:FINGERPRINT_BYTES].replace(b"\0", b"\x80"))
    return h.hexdigest()[:32]
