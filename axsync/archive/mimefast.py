"""A faster way to the tree ``email.feedparser`` builds, for well-formed messages.

The search index parses every archived message with the standard parser (compat32), which
walks the text a line at a time through a stack of generators and a line buffer: half of
the cost of making a message's document. :func:`parse` builds the same tree (the same
``email.message.Message`` objects, headers, payloads, preambles and epilogues) with one
split of the text into lines and a loop per MIME level, calling the very functions the
feedparser calls for everything that is not line bookkeeping (``header_source_parse``,
``get_content_type``, ``get_boundary``...).

It only takes messages the feedparser would parse without noting a defect, and nothing it
treats specially: anything else (a header line without a colon, an envelope ``From``
line, a multipart without its boundary, its first or its closing boundary line, doubled
boundary lines, a boundary line of an enclosing multipart where this one's should be,
``message/*`` parts, ``multipart/digest``, nesting deeper than :data:`MAX_DEPTH`) makes :func:`parse`
return None, and the caller parses with the feedparser. tests/archive/test_mimefast.py
compares both parsers' trees on the test corpus and on generated MIME structures.

Which lines are which follows ``email/feedparser.py`` of Python 3.11-3.13: lines end at
CR, LF or CRLF; a part's headers end at the first line that is empty, not a header or a
continuation line, or a boundary line of an enclosing multipart; a boundary line is
``--boundary``, optionally ``--``, optional blanks, the line end; the line end before a
boundary line belongs to the boundary.
"""

from __future__ import annotations

import io
import re
from bisect import bisect_left
from email import policy as _policy
from email.message import Message

__all__ = ["MAX_DEPTH", "parse"]

MAX_DEPTH = 20
_POLICY = _policy.compat32
# email/feedparser.py's own patterns (the test checks that they still are).
NLCRE = re.compile(r"\r\n|\r|\n")
NLCRE_bol = re.compile(r"(\r\n|\r|\n)")
NLCRE_eol = re.compile(r"(\r\n|\r|\n)\Z")
headerRE = re.compile(r"^(From |[\041-\071\073-\176]*:|[\t ])")
_REST = re.compile(r"(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$")


class _Fallback(Exception):
    """The feedparser would note a defect or take a special path here."""


def parse(data: bytes) -> Message | None:
    """The message tree ``email.parser.BytesParser(policy=compat32)`` builds from
    ``data``, or None when this message needs that parser (see the module docstring)."""
    text = data.decode("ascii", "surrogateescape")
    lines = io.StringIO(text, newline="").readlines()
    try:
        msg, _, _ = _Parse(lines).part(0, (), 0)
    except _Fallback:
        return None
    except Exception:  # a case not foreseen here: the standard parser decides
        return None
    return msg


def _match(line: str, sep: str) -> re.Match[str] | None:
    """The feedparser's boundary match of ``line`` for the separator ``sep``, or None."""
    if not line.startswith(sep):
        return None
    return _REST.match(line, len(sep))


def _boundary(line: str, seps: tuple[str, ...]) -> bool:
    """Whether ``line`` is a boundary line of one of the multiparts ``seps`` separate."""
    return any(_match(line, sep) is not None for sep in seps)


def _strip_eol(text: str) -> str:
    """``text`` without one line end at its end (``NLCRE_eol``, which a regex search
    finds only after trying every position)."""
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith(("\n", "\r")):
        return text[:-1]
    return text


class _Parse:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.n = len(lines)
        self._dashes: list[int] | None = None

    def next_boundary(self, i: int, seps: tuple[str, ...]) -> int:
        """The index of the first boundary line of ``seps`` at or after ``i`` (else n)."""
        if seps:
            lines = self.lines
            dashes = self._dashes
            if dashes is None:  # only a line that starts with "--" can be a boundary line
                dashes = self._dashes = [k for k, line in enumerate(lines) if line.startswith("--")]
            for k in dashes[bisect_left(dashes, i):]:
                if _boundary(lines[k], seps):
                    return k
        return self.n

    def part(self, i: int, seps: tuple[str, ...], depth: int) -> tuple[Message, int, str]:
        """Parse the part starting at ``lines[i]``, which ends at a boundary line of
        ``seps`` (not consumed) or at the end. Returns it, the index after it and its
        content type."""
        if depth > MAX_DEPTH:
            raise _Fallback
        lines, n = self.lines, self.n
        msg = Message(policy=_POLICY)
        # Headers: up to an empty line (consumed), an enclosing boundary or the end.
        start = i
        blank = False
        while i < n:
            line = lines[i]
            if seps and line.startswith("--") and _boundary(line, seps):
                break
            if headerRE.match(line) is None:
                if NLCRE.match(line) is None:
                    raise _Fallback  # MissingHeaderBodySeparatorDefect
                blank = True
                break
            i += 1
        ctype = _content_type(msg, _headers(msg, lines, start, i))
        return self.body(msg, ctype, i + 1 if blank else i, seps, depth)

    def body(self, msg: Message, ctype: str, i: int, seps: tuple[str, ...],
             depth: int) -> tuple[Message, int, str]:
        lines, n = self.lines, self.n
        maintype = ctype.partition("/")[0]
        if maintype == "message":
            raise _Fallback  # an attached message: the feedparser parses it as such
        if maintype != "multipart":
            end = self.next_boundary(i, seps)
            msg.set_payload("".join(lines[i:end]))
            return msg, end, ctype
        if ctype == "multipart/digest":
            raise _Fallback  # its parts default to message/rfc822
        boundary = msg.get_boundary()
        if boundary is None:
            raise _Fallback  # NoBoundaryInMultipartDefect
        if str(msg.get("content-transfer-encoding", "8bit")).lower() not in ("7bit", "8bit", "binary"):
            raise _Fallback  # InvalidMultipartContentTransferEncodingDefect
        sep = "--" + boundary
        # A line that is a boundary line of this multipart and of an enclosing one counts
        # as the enclosing one's (the feedparser checks its stack of enclosing boundaries
        # first): every step here checks ``seps`` before ``sep``.
        inner = (*seps, sep)
        # Preamble: up to the first boundary line.
        first = self.next_boundary(i, inner)
        if first >= n or (seps and _boundary(lines[first], seps)):
            raise _Fallback  # StartBoundaryNotFoundDefect
        mo = _match(lines[first], sep)
        if mo is None or mo.group("end"):
            raise _Fallback  # closed before it started: StartBoundaryNotFoundDefect
        if first > i:
            preamble = lines[i:first]
            preamble[-1] = _strip_eol(preamble[-1])
            msg.preamble = "".join(preamble)
        i = first
        # Parts: lines[i] is a boundary line between parts.
        while True:
            i += 1
            if i >= n or (lines[i].startswith("--") and _boundary(lines[i], inner)):
                raise _Fallback  # doubled boundary lines, or nothing after one
            child, i, child_type = self.part(i, inner, depth + 1)
            msg.attach(child)
            # The line end before a boundary line belongs to the boundary.
            if child_type.startswith("multipart/"):
                epilogue = child.epilogue
                if epilogue == "":
                    child.epilogue = None
                elif epilogue is not None:
                    child.epilogue = _strip_eol(epilogue)
            else:
                payload = child._payload  # type: ignore[attr-defined]
                if isinstance(payload, str):
                    child._payload = _strip_eol(payload)  # type: ignore[attr-defined]
            if i >= n or (seps and _boundary(lines[i], seps)):
                raise _Fallback  # CloseBoundaryNotFoundDefect
            mo = _match(lines[i], sep)
            if mo is None:  # cannot happen: the part ended at one of our boundary lines
                raise _Fallback
            if mo.group("end"):
                i += 1
                break
        # Epilogue: the rest, up to an enclosing boundary line. (The feedparser strips a
        # line end off its front when the closing boundary line had none; such a line is
        # the last one, so there is nothing to strip.)
        end = self.next_boundary(i, seps)
        msg.epilogue = "".join(lines[i:end])
        return msg, end, ctype


def _headers(msg: Message, lines: list[str], start: int, end: int) -> str | None:
    """``FeedParser._parse_headers`` for ``lines[start:end]`` when it notes no defect:
    each header's lines through ``Compat32.header_source_parse`` into ``Message.set_raw``
    (both inlined: a dozen headers per part). Returns the first Content-Type value."""
    raw = msg._headers  # type: ignore[attr-defined]
    value: list[str] | None = None
    for k in range(start, end):
        line = lines[k]
        if line[0] in " \t":
            if value is None:
                raise _Fallback  # FirstHeaderLineIsContinuationDefect
            value.append(line)
            continue
        if value is not None:
            raw.append(_source_parse(value) if len(value) > 1 else _one_line(value[0]))
        if line.startswith("From ") or line.find(":") <= 0:
            raise _Fallback  # envelope line, or a header without a name
        value = [line]
    if value is not None:
        raw.append(_source_parse(value) if len(value) > 1 else _one_line(value[0]))
    for name, text in raw:
        if len(name) == 12 and name.lower() == "content-type":
            return text
    return None


def _content_type(msg: Message, value: str | None) -> str:
    """``msg.get_content_type()`` from its first Content-Type value (None: it has none),
    without the header lookups (``Message.get`` is a scan of the headers)."""
    if value is None:
        return msg.get_default_type()
    if not value.isascii():  # it may hold surrogates: compat32 makes a Header of it
        return msg.get_content_type()
    ctype = value.partition(";")[0].strip().lower()
    return ctype if ctype.count("/") == 1 else "text/plain"


def _one_line(line: str) -> tuple[str, str]:
    """:func:`_source_parse` of a header of one line (most are)."""
    name, _, value = line.partition(":")
    return name, value.lstrip(" \t").rstrip("\r\n")


def _source_parse(sourcelines: list[str]) -> tuple[str, str]:
    """``email._policybase.Compat32.header_source_parse``."""
    name, value = sourcelines[0].split(":", 1)
    value = value.lstrip(" \t") + "".join(sourcelines[1:])
    return name, value.rstrip("\r\n")
