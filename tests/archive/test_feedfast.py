"""feedfast: the email parser with the cheap boundary matcher builds the same trees as with
:mod:`re`, on the generated corpus (every content kind) and on hostile boundaries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import feedparser
from email.message import Message

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from axsync.archive import feedfast
from axsync.archive import message as mm
from axsync.fake.corpus import generate


@pytest.fixture
def stock_re() -> Iterator[None]:
    yield
    feedfast.install()


def _tree(msg: Message) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for part in msg.walk():
        payload = part.get_payload() if not part.is_multipart() else None
        out.append((part.get_content_type(), part.preamble, part.epilogue, payload,
                    [type(d).__name__ for d in part.defects], part.items()))
    return out


def _both(data: bytes) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    assert not isinstance(feedparser.re, type(re))  # installed by axsync.archive.message
    fast = _tree(mm.parse(data))
    feedfast.uninstall()
    try:
        slow = _tree(mm.parse(data))
    finally:
        feedfast.install()
    return fast, slow


def test_the_corpus_parses_to_the_same_trees(stock_re: None) -> None:
    corpus = generate(11, 400, big_messages=0)
    multipart = 0
    for m in corpus.messages:
        fast, slow = _both(m.raw)
        assert fast == slow
        multipart += len(fast) > 1
    assert multipart > 50


_BOUNDARY_CHARS = st.sampled_from(list("abcXYZ019'()+_,-./:=? \t*[]{}^$|\\&~#\u00e9"))


@settings(max_examples=300, deadline=None)
@given(boundary=st.text(_BOUNDARY_CHARS, min_size=1, max_size=70),
       tail=st.sampled_from(["", "--", "  ", "--\t", " x", "-- trailing"]),
       eol=st.sampled_from(["\r\n", "\n", "\r"]),
       nested=st.booleans())
@example(boundary="a.b*c", tail="--", eol="\n", nested=True)
@example(boundary="==_x_$", tail=" ", eol="\r\n", nested=False)
def test_generated_boundaries_parse_the_same(boundary: str, tail: str, eol: str,
                                             nested: bool) -> None:
    quoted = boundary.replace("\\", "\\\\").replace('"', '\\"')
    inner = ""
    if nested:
        inner = (f"Content-Type: multipart/alternative; boundary=\"in{quoted}\"{eol}{eol}"
                 f"--in{boundary}{eol}Content-Type: text/plain{eol}{eol}inner{eol}"
                 f"--in{boundary}--{eol}")
    body = (f"preamble{eol}--{boundary}{eol}Content-Type: text/plain{eol}{eol}one{eol}"
            f"--{boundary}{tail}{eol}{inner or f'Content-Type: text/html{eol}{eol}<b>two</b>{eol}'}"
            f"--{boundary}x{eol}--{boundary[:-1]}%{eol}not boundaries{eol}"
            f"--{boundary}--{tail}{eol}epilogue{eol}")
    data = (f"Subject: t{eol}MIME-Version: 1.0{eol}Content-Type: multipart/mixed; "
            f"boundary=\"{quoted}\"{eol}{eol}{body}").encode("utf-8", "surrogateescape")
    fast, slow = _both(data)
    assert fast == slow
    if tail in ("", "  ") and boundary.strip() == boundary and boundary.isascii() \
            and "\\" not in boundary:  # not closed early, not cut, plain
        assert len(fast) >= 3, fast  # the input did exercise the boundary matching


@given(st.text(max_size=80))
def test_unescape_inverts_re_escape(text: str) -> None:
    assert feedfast.unescape(re.escape(text)) == text


@pytest.mark.parametrize("bad", ["\\", "a\\", "a\\b"])  # \b is no re.escape output
def test_unescape_refuses_what_re_escape_cannot_make(bad: str) -> None:
    assert feedfast.unescape(bad) is None


def test_other_patterns_are_compiled_by_re() -> None:
    shim = feedparser.re
    assert shim.compile(r"(\r\n|\r|\n)\Z").pattern == r"(\r\n|\r|\n)\Z"
    matcher = shim.compile("(?P<sep>" + re.escape("--a.b") +
                           r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$")
    assert isinstance(matcher, feedfast.BoundaryMatcher)
    mo = matcher.match("--a.b-- \r\n")
    assert mo is not None and mo.group("end") == "--" and mo.group("linesep") == "\r\n"
    assert matcher.match("--aXb\n") is None and matcher.match("--a.bc\n") is None
    assert shim.escape is re.escape
