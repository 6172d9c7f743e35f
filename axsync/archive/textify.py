"""Text out of mail: bytes in any (or a wrong) charset, HTML, CJK runs. Never raises.

Everything here is total: bad charsets, invalid byte sequences, lone surrogates (from the
``email`` package's surrogateescape handling of 8-bit headers) and broken HTML all give
some readable text instead of an exception.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re
from html.parser import HTMLParser

# Charsets that mail declares under names Python does not know, or gets wrong.
_CHARSET_ALIASES = {
    "x-unknown": "",
    "unknown-8bit": "",
    "x-user-defined": "cp1252",
    "iso-8859-8-i": "iso-8859-8",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",  # a superset; mail labelled gb2312 often holds GBK characters
    "gbk": "gb18030",
    "shift_jis": "cp932",  # Windows' Shift_JIS, what mail labelled shift_jis really is
    "iso-8859-1": "cp1252",  # the WHATWG rule: latin-1 labels mean windows-1252
    "us-ascii": "cp1252",
    "ascii": "cp1252",
}
_SURROGATES = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Han, kana, Hangul syllables: indexed one character per token (see cjk_split).
_CJK_CLASS = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\uff66-\uff9f"
)
_CJK = re.compile(f"([{_CJK_CLASS}])")
_JOINABLE = f"{_CJK_CLASS}\u3000-\u303f\uff00-\uff65\ue000\ue001"  # + CJK punctuation, markers
_CJK_GAP = re.compile(f"(?<=[{_JOINABLE}]) +(?=[{_JOINABLE}])")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")


def _codec(charset: str | None) -> str | None:
    """A Python codec name for a declared charset, or None when it is unusable."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    if not name:
        return None
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # bytes-to-bytes codecs (base64, zlib, rot13...) are no charsets
    return info.name if getattr(info, "_is_text_encoding", True) else None


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """``data`` as text: the declared charset if it decodes cleanly (UTF-8 first when the
    label is ASCII or Latin-1, which 8-bit mail often wrongly claims), else UTF-8, else
    windows-1252 (which maps almost every byte), U+FFFD for what still does not fit."""
    codec = _codec(charset)
    order = ("utf-8", codec) if codec in (None, "cp1252") else (codec, "utf-8")
    for name in order:
        if name is None:
            continue
        try:
            return data.decode(name)
        except (UnicodeError, LookupError):  # UnicodeError: idna, punycode, undefined...
            continue
    if codec is not None and codec != "cp1252":
        # A multi-byte charset with a few bad sequences beats mojibake.
        try:
            text = data.decode(codec, "replace")
        except (UnicodeError, LookupError):  # a codec without the "replace" handler (idna)
            text = ""
        if text and text.count("\ufffd") * 20 < len(text):
            return text
    # Mostly UTF-8 with a few stray bytes (most high bytes form valid sequences)?
    text = data.decode("utf-8", "replace")
    if text.count("\ufffd") * 4 <= sum(b >= 0x80 for b in data) // 2:
        return text
    return data.decode("cp1252", "replace")


def clean(text: str) -> str:
    """``text`` without lone surrogates (undecoded 8-bit bytes are decoded as UTF-8 or
    windows-1252) and without C0 control characters other than tab and newlines."""
    if _SURROGATES.search(text):
        try:
            text = decode_bytes(text.encode("utf-8", "surrogateescape"), None)
        except UnicodeEncodeError:  # surrogates that are no escaped bytes
            text = _SURROGATES.sub("\ufffd", text)
    return _CONTROL.sub("", text)


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(\?=)\s+(?==\?)")


def _word_bytes(encoding: str, payload: str) -> bytes:
    if encoding in "bB":
        data = re.sub(r"[^A-Za-z0-9+/]", "", payload)
        if len(data) % 4 == 1:  # one stray character: drop it
            data = data[:-1]
        try:
            return base64.b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            return payload.encode("ascii", "replace")
    raw = payload.replace("_", " ").encode("latin-1", "replace")
    return quopri.decodestring(raw, header=False)


def decode_rfc2047(value: str) -> str:
    """A header value with its RFC 2047 encoded words decoded. Lenient where mail is
    sloppy: words glued to text, multi-byte characters split across words (adjacent words
    of one charset are joined before decoding), unknown charsets, bad base64."""
    if "=?" not in value:
        return value
    value = _BETWEEN_WORDS.sub(r"\1", value)
    out: list[str] = []
    pos = 0
    run: list[bytes] = []
    run_charset = ""
    for m in _ENCODED_WORD.finditer(value):
        charset = m.group(1).split("*", 1)[0].lower()  # RFC 2231 language suffix
        if m.start() != pos or charset != run_charset:
            if run:
                out.append(decode_bytes(b"".join(run), run_charset))
                run = []
            out.append(value[pos:m.start()])
        run.append(_word_bytes(m.group(2), m.group(3)))
        run_charset = charset
        pos = m.end()
    if run:
        out.append(decode_bytes(b"".join(run), run_charset))
    out.append(value[pos:])
    return "".join(out)


def one_line(text: str) -> str:
    """Header text on one line: folding and runs of white space become one space."""
    return " ".join(clean(text).split())


def header_line(value: str) -> str:
    """``one_line(decode_rfc2047(clean(value)))``: a raw header value as one line of text.
    Most values are plain ASCII without encoded words, which only lose their control
    characters and white space runs (the search index reads a dozen headers of every
    message)."""
    if value.isascii() and "=?" not in value:
        return " ".join(_CONTROL.sub("", value).split())
    return one_line(decode_rfc2047(clean(value)))


def cjk_split(text: str) -> str:
    """Put spaces around every CJK character, so that the unicode61 tokenizer (which
    does not segment CJK) makes one token of each and a word is found as a phrase."""
    return _CJK.sub(r" \1 ", text) if _CJK.search(text) else text


def cjk_join(text: str) -> str:
    """Undo :func:`cjk_split` for display (also around snippet markers U+E000/E001)."""
    return _CJK_GAP.sub("", text).strip(" ") if _CJK.search(text) else text


def has_word(text: str) -> bool:
    """True if ``text`` holds at least one character the FTS tokenizer keeps."""
    return any(ch.isalnum() for ch in text)


# ---------------------------------------------------------------------------- HTML → text

_BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
})
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "svg", "object"})
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "wbr"})


class _TextExtractor(HTMLParser):
    def __init__(self, limit: int) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.skip = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP and tag not in _VOID:
            self.skip += 1
        elif tag == "pre":
            self.pre += 1
        if tag in _BLOCK:
            self._add("\n")
        elif tag in ("td", "th"):
            self._add("\t")
        elif tag == "img" and not self.skip:
            alt = dict(attrs).get("alt")
            if alt:
                self._add(f"[{alt}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self.skip:
            self.skip -= 1
        elif tag == "pre" and self.pre:
            self.pre -= 1
        if tag in _BLOCK:
            self._add("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self._add(data if self.pre else _SPACES.sub(" ", data.replace("\r", "").replace("\n", " ")))

    def _add(self, text: str) -> None:
        if self.size < self.limit:
            self.parts.append(text)
            self.size += len(text)


def html_to_text(markup: str, limit: int = 4_000_000) -> str:
    """Readable text of an HTML document (scripts, styles and the head left out, blocks
    on their own lines, image alt texts kept). At most about ``limit`` characters."""
    parser = _TextExtractor(limit)
    try:
        parser.feed(markup[: limit * 4])
        parser.close()
    except (AssertionError, ValueError, IndexError):  # very old HTMLParser failure modes
        pass
    text = "".join(parser.parts)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
