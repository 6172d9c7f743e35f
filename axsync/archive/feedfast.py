"""A cheaper multipart boundary test for the standard ``email`` parser.

``email.feedparser`` compiles a regular expression for every multipart it meets,
``(?P<sep>--BOUNDARY)(?P<end>--)?(?P<ws>[ \\t]*)(?P<linesep>\\r\\n|\\r|\\n)?$``, and
boundaries are unique per message, so Python's pattern cache never helps: compiling was a
quarter of the search index's parsing time. :func:`install` gives the feedparser module a
``re`` whose ``compile`` recognises exactly that pattern and returns a matcher that checks
the literal separator with ``str.startswith`` and the rest with one pattern compiled once.
It returns the same match groups (``end``, ``ws``, ``linesep``) for the same lines; any
other pattern, or one this module does not recognise (another Python's feedparser), is
compiled by :mod:`re` as before. tests/archive/test_feedfast.py parses the test corpus and
generated boundaries both ways and compares the trees.
"""

from __future__ import annotations

import re
from email import feedparser
from typing import Any

_HEAD = "(?P<sep>"
_TAIL = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
_REST = re.compile(r"(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$")


def unescape(escaped: str) -> str | None:
    """The string :func:`re.escape` made ``escaped`` from (it prefixes special characters
    with a backslash), or None if ``escaped`` is not such an output."""
    out: list[str] = []
    chars = iter(escaped)
    for c in chars:
        if c == "\\":
            nxt = next(chars, None)
            if nxt is None:
                return None
            out.append(nxt)
        else:
            out.append(c)
    text = "".join(out)
    return text if re.escape(text) == escaped else None


class BoundaryMatcher:
    """``match(line)`` as the compiled boundary pattern's: a match object with the groups
    ``end``, ``ws`` and ``linesep`` when ``line`` starts with the separator and the rest
    fits; None otherwise."""

    __slots__ = ("sep",)

    def __init__(self, sep: str) -> None:
        self.sep = sep

    def match(self, line: str) -> re.Match[str] | None:
        if not line.startswith(self.sep):
            return None
        return _REST.match(line, len(self.sep))


class _Re:
    """The :mod:`re` module as feedparser sees it once :func:`install` ran."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    @staticmethod
    def compile(pattern: Any, flags: int = 0) -> Any:
        if (flags == 0 and isinstance(pattern, str) and pattern.startswith(_HEAD)
                and pattern.endswith(_TAIL)):
            sep = unescape(pattern[len(_HEAD):-len(_TAIL)])
            if sep is not None:
                return BoundaryMatcher(sep)
        return re.compile(pattern, flags)


def install() -> None:
    """Give ``email.feedparser`` the cheaper boundary matcher (idempotent)."""
    if getattr(feedparser, "re", None) is re:
        setattr(feedparser, "re", _Re())  # noqa: B010 (the stubs do not list it)


def uninstall() -> None:
    """Back to :mod:`re` (for tests that compare both)."""
    setattr(feedparser, "re", re)  # noqa: B010
