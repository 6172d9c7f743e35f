"""axsync.restore.wire: strings, response parsing, CRLF streaming, match keys."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from interop.dovecot import crlf as harness_crlf
from interop.dovecot import mutf7_decode as harness_decode
from interop.dovecot import mutf7_encode as harness_encode

from axsync.restore import wire


@given(st.text())
def test_mutf7_round_trip_and_matches_the_harness(name: str) -> None:
    name = name.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    encoded = wire.mutf7_encode(name)
    assert encoded.isascii()
    assert wire.mutf7_decode(encoded) == name
    assert encoded == harness_encode(name)
    assert harness_decode(encoded) == name


def test_mutf7_examples() -> None:
    assert wire.mutf7_encode("Entwürfe") == "Entw&APw-rfe"
    assert wire.mutf7_encode("R&D") == "R&-D"
    assert wire.mutf7_decode("&ZeVnLIqe-") == "日本語"
    assert wire.mutf7_decode("bad&-x&Zz!-") == "bad&-x&Zz!-"  # not mUTF-7: as it came


@given(st.integers(min_value=0, max_value=2**33))
def test_internaldate_round_trip(ts: int) -> None:
    assert wire.parse_internaldate(wire.internaldate(ts)) == ts


def test_internaldate_offsets() -> None:
    assert wire.parse_internaldate("01-Jan-2020 12:00:00 +0200") == 1577872800
    assert wire.parse_internaldate(" 1-Jan-2020 10:00:00 +0000") == 1577872800
    assert wire.internaldate(1577872800) == "01-Jan-2020 10:00:00 +0000"


def test_astring() -> None:
    assert wire.astring(b"INBOX") == b"INBOX"
    assert wire.astring(b"NIL") == b'"NIL"'
    assert wire.astring(b'a "b"\\') == b'"a \\"b\\"\\\\"'
    assert wire.astring(b"") == b'""'
    for needs_literal in (b"p\xc3\xa4ss", b"a\r\nb", b"a\0"):
        assert wire.astring(needs_literal) is None


def test_uid_set() -> None:
    assert wire.uid_set([5, 1, 2, 3, 9, 10, 7]) == "1:3,5,7,9:10"
    assert wire.uid_set([4]) == "4"


def test_parse_fetch_with_literals_and_sections() -> None:
    line = (b'(UID 7 RFC822.SIZE 120 INTERNALDATE "01-Jan-2020 10:00:00 +0000" '
            b"BODY[HEADER.FIELDS (MESSAGE-ID)] {29}\r\nMessage-ID: <a@b>\r\n ) {9}\r\n\r\n FLAGS (\\Seen $x))")
    (pairs,) = wire.parse(line)
    assert isinstance(pairs, list)
    attrs = {wire.text(k).upper(): v for k, v in zip(pairs[::2], pairs[1::2], strict=True)}
    assert attrs["UID"] == b"7"
    assert attrs["BODY[HEADER.FIELDS (MESSAGE-ID)]"] == b"Message-ID: <a@b>\r\n ) {9}\r\n\r\n"
    assert attrs["FLAGS"] == [b"\\Seen", b"$x"]


def test_parse_list_nil_and_literal_name() -> None:
    assert wire.parse(b'(\\Noselect) NIL "a\\"b"') == [[b"\\Noselect"], None, b'a"b']
    assert wire.parse(b"() \"/\" {3}\r\nx y") == [[], b"/", b"x y"]


def test_response_code_and_literal_size() -> None:
    assert wire.response_code(b"[APPENDUID 38505 3955] Done") == ("APPENDUID", "38505 3955")
    assert wire.response_code(b"[OVERQUOTA] no") == ("OVERQUOTA", "")
    assert wire.response_code(b"plain text") == ("", "")
    assert wire.literal_size(b"* 1 FETCH (BODY[] {12}\r\n") == 12
    assert wire.literal_size(b"* OK done\r\n") is None


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_streaming_crlf_equals_one_shot(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    conv = wire.LfToCrlf()
    streamed = b"".join(conv.feed(data[a:b]) for a, b in zip(points, points[1:], strict=False))
    assert streamed == wire.crlf(data) == harness_crlf(data)


def test_message_id() -> None:
    head = b"Subject: x\r\nMessage-Id:\r\n  <abc@example.com> (comment)\r\n\r\nMessage-ID: <body@x>"
    assert wire.message_id_of(head) == "abc@example.com"
    assert wire.message_id_of(b"Subject: x\n\nMessage-ID: <in-body@x>\n") == ""
    assert wire.normalize_message_id(" <a@b> ") == wire.normalize_message_id("a@b") == "a@b"
    assert wire.normalize_message_id("") == ""


def test_fingerprint_reads_nul_as_0x80_and_depends_on_size_and_date() -> None:
    fp = wire.fingerprint(10, 5, b"a\0b")
    assert fp == wire.fingerprint(10, 5, b"a\x80b") and len(fp) == 32
    assert fp != wire.fingerprint(11, 5, b"a\0b") != wire.fingerprint(10, 6, b"a\0b")
    long = b"x" * wire.FINGERPRINT_BYTES
    assert wire.fingerprint(1, 1, long + b"tail") == wire.fingerprint(1, 1, long)
