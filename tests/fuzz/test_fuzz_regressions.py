"""Inputs the fuzz harnesses of this directory found, minimised, kept as plain tests."""

from __future__ import annotations

import pytest

from axsync.archive import message as mm
from axsync.archive.document import make_doc
from axsync.archive.textify import decode_bytes
from axsync.errors import UnsafeName
from axsync.store import names

# fuzz_mime_text.py: the ``email`` package decodes an 8-bit leaf payload with the part's
# charset parameter when asked for ``get_payload()``; a NUL in it raised ValueError, an RFC
# 2231 charset TypeError, out of the indexer's text extraction and of ``axsync show``.
BAD_CHARSET_PARTS = [
    b'Content-Type: multipart/mixed; charset="a\x00"\n\n\xff\n',
    b"Content-Type: multipart/mixed; charset*=us-ascii'en'utf-8\n\n\xff\n",
    b'Content-Type: image/png; charset="a\x00"\n\n\xff\n',
    b'Content-Type: message/rfc822; charset="a\x00"\n\n\xff\n',
]


@pytest.mark.parametrize("raw", BAD_CHARSET_PARTS)
def test_a_bad_charset_parameter_on_a_non_text_part(raw: bytes) -> None:
    doc = make_doc(raw)
    assert all(isinstance(c, str) for c in doc.columns())
    msg = mm.parse(raw)
    assert isinstance(mm.body_text(msg), str)
    inner = mm.inner_message(msg)
    assert inner is None or isinstance(mm.body_text(inner), str)
    assert isinstance(mm.children_of(msg), list)


def test_multipart_children_are_still_found() -> None:
    raw = (b'Content-Type: multipart/mixed; boundary="b"; charset="a\x00"\n\n--b\n'
           b"Content-Type: text/plain\n\nhello \xff\n--b--\n")
    assert "hello" in make_doc(raw).body


# fuzz_mime_text.py: codecs that raise UnicodeError (not UnicodeDecodeError) or refuse the
# "replace" handler escaped decode_bytes, which promises never to raise.
@pytest.mark.parametrize("charset", ["idna", "punycode", "undefined"])
def test_decode_bytes_with_codecs_that_refuse(charset: str) -> None:
    assert isinstance(decode_bytes(b"a..b \xff\xfe", charset), str)
    raw = b"Content-Type: text/plain; charset=" + charset.encode() + b"\n\na..b \xff\n"
    assert "a..b" in make_doc(raw).body


# fuzz_filenames_keywords.py: check_unique measures the name with "surrogateescape", which
# cannot encode a lone surrogate outside U+DC80..U+DCFF, so format_name raises
# UnicodeEncodeError instead of UnsafeName. Names read from disk never hold such
# characters (os.fsdecode only yields U+DC80..U+DCFF), so no caller reaches it today.
def test_format_name_refuses_a_lone_surrogate_with_unsafe_name() -> None:
    with pytest.raises(UnsafeName):
        names.format_name("\ud800", 1, 1, "")
