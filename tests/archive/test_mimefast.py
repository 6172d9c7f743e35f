"""mimefast builds the tree the standard parser (compat32 feedparser) builds, or declines.

Checked on the generated corpus (every content kind; the fast path must take nearly all of
it) and on generated MIME structures with hostile boundaries, line ends, preambles,
epilogues, headers and truncation (where it may decline, never differ)."""

from __future__ import annotations

from email import feedparser, policy
from email.message import Message
from email.parser import BytesParser
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from axsync.archive import mimefast
from axsync.archive.document import make_doc
from axsync.fake.corpus import generate

_STOCK = BytesParser(policy=policy.compat32)


def _tree(msg: Message) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for part in msg.walk():
        payload = part._payload if not part.is_multipart() else len(part.get_payload())  # raw
        out.append((type(part), part.get_content_type(), part.get_default_type(),
                    part.get_unixfrom(), part.preamble, part.epilogue, payload,
                    [type(d).__name__ for d in part.defects], part.items()))
    return out


def _check(data: bytes) -> bool:
    """Same tree as the standard parser, or None; returns whether the fast path took it."""
    fast = mimefast.parse(data)
    if fast is None:
        return False
    assert _tree(fast) == _tree(_STOCK.parsebytes(data))
    return True


def test_the_patterns_are_the_feedparsers() -> None:
    for name in ("NLCRE", "NLCRE_bol", "NLCRE_eol", "headerRE"):
        assert getattr(mimefast, name).pattern == getattr(feedparser, name).pattern, name


def test_the_corpus_parses_to_the_same_trees_and_the_same_documents() -> None:
    taken = total = multipart = 0
    for seed in (11, 12):
        for m in generate(seed, 300, big_messages=2).messages:
            total += 1
            if _check(m.raw):
                taken += 1
                multipart += m.raw.count(b"boundary=") > 0
            # what the index stores is the same either way
            assert make_doc(m.raw) == _doc_stock(m.raw)
    assert taken >= 0.9 * total, (taken, total)
    assert multipart > 50


def _doc_stock(data: bytes) -> object:
    """make_doc with the standard parser only (mimefast declining everything)."""
    with mock.patch.object(mimefast, "parse", lambda data: None):
        return make_doc(data)


# ------------------------------------------------------------------ generated structures

_EOL = st.sampled_from(["\r\n", "\n", "\r"])
_WORD = st.text(st.sampled_from([*"abcXYZ019 -=:.;\t\"'", "\u00e9", "\udce9"]), max_size=12)
# Often one of a few related boundaries, so that nested multiparts' boundary lines collide.
_BOUNDARY = st.one_of(
    st.sampled_from(["a", "a--", "ab", "a -", "b"]),
    st.text(st.sampled_from(list("abcXYZ019'()+_,-./:=? *")), min_size=1, max_size=20))


@st.composite
def _header_lines(draw: st.DrawFn, eol: str) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["Subject", "X-A", "From", "To", "Date", "Subject", "X-A",
                                     "From", "To", "Date", "Subject", "X-A", "From", "To",
                                     "Date", ":", "Bad Name", "From x", "\tcontinued"]))
        value = draw(_WORD)
        if name in (":", "Bad Name", "From x", "\tcontinued"):
            lines.append(f"{name}{value}{eol}")
        else:
            lines.append(f"{name}: {value}{eol}")
        if draw(st.booleans()):
            lines.append(f"\t{draw(_WORD)}{eol}")
    return "".join(lines)


@st.composite
def _part(draw: st.DrawFn, depth: int = 0) -> str:
    eol = draw(_EOL)
    heads = draw(_header_lines(eol))
    if depth < 3 and draw(st.integers(0, 2)) == 0:
        boundary = draw(_BOUNDARY)
        quoted = draw(st.booleans())
        ctype = draw(st.sampled_from(["multipart/mixed", "multipart/alternative", "multipart/mixed",
                                      "multipart/related", "multipart/digest", "message/rfc822"]))
        cte = draw(st.sampled_from(["", "", "", f"Content-Transfer-Encoding: base64{eol}",
                                    f"Content-Transfer-Encoding: 7bit{eol}"]))
        head = (f"{heads}Content-Type: {ctype}; boundary="
                f"{chr(34) + boundary + chr(34) if quoted else boundary}{eol}{cte}")
        children = draw(st.lists(_part(depth + 1), min_size=0, max_size=3))
        sep_eol = draw(_EOL)
        body = draw(st.sampled_from(["", f"preamble{eol}", f"pre{eol}amble{eol}{eol}"]))
        for child in children:
            body += f"--{boundary}{draw(st.sampled_from(['', ' ', chr(9)]))}{sep_eol}{child}{sep_eol}"
        if draw(st.integers(0, 4)):
            body += f"--{boundary}--{draw(st.sampled_from(['', sep_eol]))}"
        body += draw(st.sampled_from(["", f"epilogue{eol}", f"{eol}epi{eol}", eol]))
        return f"{head}{draw(st.sampled_from([eol, '']))}{body}"
    text = draw(st.lists(st.one_of(_WORD, st.just("--"), _BOUNDARY.map(lambda b: "--" + b)),
                         max_size=5))
    return f"{heads}{eol}{eol.join(text)}"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_part(), cut=st.integers(0, 10_000))
@example(text="Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n", cut=10_000)
@example(text="Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\nA: 1\r\n\r\nx\r\n"
              "--b \r\n\r\ny\r\n--b--\r\nepi\r\n", cut=10_000)
@example(text="Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/mixed;"
              " boundary=ab\n\n--ab\n\nx\n--ab--\n--a--\n", cut=10_000)
@example(text="Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/mixed;"
              " boundary=a--\n\n--a--\n\nx\n--a----\n--a--\n", cut=10_000)
@example(text="Content-Type: multipart/mixed; boundary=a--\n\n--a--\nContent-Type: multipart/mixed;"
              " boundary=a\n\n--a\n\nx\n--a--\n--a----\n", cut=10_000)
def test_generated_structures_parse_the_same_or_are_declined(text: str, cut: int) -> None:
    data = text.encode("utf-8", "surrogateescape")
    event("fast path" if _check(data) else "declined")
    _check(data[:cut])  # the index reads big messages only up to a limit


@pytest.mark.parametrize("data", [
    b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n",
    b"Subject: plain\r\n\r\nbody\r\n",
    b"Content-Type: multipart/alternative; boundary=\"q r\"\r\n\r\n--q r\r\n"
    b"Content-Type: text/plain\r\n\r\nplain\r\n--q r\r\nContent-Type: text/html\r\n\r\n"
    b"<p>html</p>\r\n--q r--\r\n",
])
def test_common_shapes_take_the_fast_path(data: bytes) -> None:
    assert _check(data)


@pytest.mark.parametrize("data", [
    b"From someone Sat Nov 21\nSubject: x\n\nbody\n",  # envelope line
    b"Subject: x\nno colon here\n\nbody\n",  # MissingHeaderBodySeparatorDefect
    b"\tcontinued\nSubject: x\n\nbody\n",  # FirstHeaderLineIsContinuationDefect
    b"Content-Type: multipart/mixed\n\nno boundary\n",
    b"Content-Type: multipart/mixed; boundary=b\n\nno start\n",
    b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nno close\n",
    b"Content-Type: message/rfc822\n\nSubject: inner\n\nx\n",
    b"Content-Type: multipart/digest; boundary=b\n\n--b\n\nx\n--b--\n",
])
def test_what_the_feedparser_treats_specially_is_declined(data: bytes) -> None:
    assert mimefast.parse(data) is None
    _STOCK.parsebytes(data)  # and the standard parser (the fallback) takes it


@given(st.lists(st.text(st.sampled_from(list("ab: \t\r\n\u00e9")), min_size=1, max_size=12),
                min_size=1, max_size=3).map(lambda ls: ["N:" + ls[0], *("\t" + x for x in ls[1:])]))
def test_the_inlined_header_source_parse_is_compat32s(lines: list[str]) -> None:
    assert mimefast._source_parse(lines) == policy.compat32.header_source_parse(lines)


@given(st.lists(st.sampled_from([
    "text/plain", "TEXT/HTML", " multipart/mixed ", "multipart/alternative; boundary=x", "a/b/c",
    "nosubtype", "", ";", "text/plain;charset=utf-8", "image/png ;name=x", "\udce9/\udce9",
    "text/\udcff", "message/rfc822",
]), max_size=3), st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE", "Content-Type "]))
def test_the_content_type_is_what_the_message_says(values: list[str], name: str) -> None:
    """_content_type (from the first Content-Type value, without a header lookup) is
    ``Message.get_content_type()``: none, several, odd, non-ASCII (escaped bytes) values."""
    msg = Message(policy=policy.compat32)
    for value in values:
        msg._headers.append((name, value))  # type: ignore[attr-defined]
    msg._headers.append(("X-Other", "text/html"))  # type: ignore[attr-defined]
    first = next((v for n, v in msg._headers if n.lower() == "content-type"), None)  # type: ignore[attr-defined]
    assert mimefast._content_type(msg, first) == msg.get_content_type()


@given(st.text(alphabet=st.sampled_from("ab: \t\r\n\x0bé\udce9"), max_size=20))
def test_a_one_line_header_is_split_as_the_parser_splits_it(line: str) -> None:
    if line.find(":") <= 0:
        return  # not a header line: the fast path declines it before this
    assert mimefast._one_line(line) == mimefast._source_parse([line])
