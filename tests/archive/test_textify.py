"""Text out of mail: charsets with fallbacks, RFC 2047, HTML, CJK. Nothing may raise."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from axsync.archive.textify import (
    cjk_join,
    cjk_split,
    clean,
    decode_bytes,
    decode_rfc2047,
    has_word,
    header_line,
    html_to_text,
    one_line,
)


def test_declared_charset_wins_when_it_decodes() -> None:
    assert decode_bytes("Привет".encode("koi8-r"), "koi8-r") == "Привет"
    assert decode_bytes("日本語".encode("shift_jis"), "Shift_JIS") == "日本語"
    assert decode_bytes("‘quotes’".encode("cp1252"), "iso-8859-1") == "‘quotes’"


def test_utf8_mislabelled_as_latin1_or_ascii_is_read_as_utf8() -> None:
    assert decode_bytes("café".encode(), "us-ascii") == "café"
    assert decode_bytes("café".encode(), "iso-8859-1") == "café"


def test_unknown_missing_and_non_text_charsets_fall_back() -> None:
    assert decode_bytes("café".encode("latin-1"), "x-nonsense") == "café"
    assert decode_bytes("café".encode(), None) == "café"
    assert decode_bytes(b"plain", "base64") == "plain"  # a bytes codec is no charset
    assert decode_bytes(b"\x81\x8d", "windows-1252")  # undefined bytes: still text


@given(st.binary(max_size=200), st.sampled_from([None, "utf-8", "shift_jis", "koi8-r", "bogus", "utf-16", "gb2312"]))
def test_decode_bytes_never_raises(data: bytes, charset: str | None) -> None:
    assert isinstance(decode_bytes(data, charset), str)


def test_rfc2047_words_joined_and_lenient() -> None:
    assert decode_rfc2047("=?utf-8?B?5pel5pys?= =?utf-8?B?6Kqe?=") == "日本語"  # split character
    assert decode_rfc2047("=?UTF-8?Q?caf=C3=A9?= au lait") == "café au lait"
    assert decode_rfc2047("=?x-nonsense?Q?Ren=E9?=") == "René"
    assert decode_rfc2047("=?utf-8?B?####?=") == ""
    assert decode_rfc2047("no words") == "no words"


@given(st.text(max_size=80))
def test_rfc2047_never_raises(text: str) -> None:
    assert isinstance(decode_rfc2047("=?utf-8?q?" + text + "?= " + text), str)


def test_clean_turns_escaped_bytes_into_text_and_drops_controls() -> None:
    utf8 = "été à Zürich".encode().decode("utf-8", "surrogateescape")
    raw = utf8.encode("utf-8", "surrogateescape").decode("ascii", "surrogateescape")
    assert clean(raw + "\udcff\x00\x07ok\tfine\n") == "été à Zürich\ufffdok\tfine\n"
    latin1 = "café".encode("latin-1").decode("ascii", "surrogateescape")
    assert clean(latin1) == "café"
    assert clean("\ud800 lone") == "\ufffd lone"


def test_html_to_text_skips_scripts_styles_and_keeps_blocks() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<p>Hello&nbsp;<b>world</b> &amp; you</p><script>evil()</script>"
        "<table><tr><td>a</td><td>b</td></tr></table><img alt='logo'><pre>  keep\n  this</pre>"
        "</body></html>"
    )
    text = html_to_text(html)
    assert "Hello world & you" in text
    assert "evil" not in text and "p{}" not in text and "T" not in text.split()
    assert "[logo]" in text and "keep\nthis" in text
    assert html_to_text("<p>unclosed <b>tags <i>everywhere") == "unclosed tags everywhere"


def test_cjk_is_split_for_the_tokenizer_and_joined_for_display() -> None:
    split = cjk_split("東京で会議 and more")
    assert split.split()[:3] == ["東", "京", "で"]
    assert " ".join(cjk_join(split).split()) == "東京で会議 and more"
    assert cjk_split("no cjk") == "no cjk"


def test_has_word() -> None:
    assert has_word("a") and has_word("日") and not has_word("-*!") and not has_word("")


_HEADER_PIECES = st.sampled_from([
    "plain words", "  runs   of\tblanks ", "\r\n folded", "\x00\x07\x0b\x0c\x1b\x7f", "=?",
    "=?utf-8?q?caf=C3=A9?=", "=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=", "?=", "\udce9", "\udcc3\udca9",
    "\u00e9t\u00e9", "\u65e5\u672c", "<id@host>", ",", ":", "\n", "\r", "\t",
])


@given(st.one_of(st.lists(_HEADER_PIECES, max_size=8).map("".join), st.text(max_size=60)))
def test_header_line_is_the_general_decoding_with_a_fast_path(value: str) -> None:
    """The ASCII fast path gives what the general decoding gives, whatever the value."""
    assert header_line(value) == one_line(decode_rfc2047(clean(value)))
