"""Fuzz the search indexer's text extraction (``axsync.archive.document.make_doc``, the
function ``axsync.archive.index`` runs on every archived message's bytes, and
``Doc.columns`` which feeds the FTS table).

Properties: for any bytes (also a message cut short, as big messages are read only up to a
limit), ``make_doc`` returns a Doc whose columns are strings, and never raises; and
``axsync.archive.mimefast.parse`` either declines (None) or builds the very tree the
standard parser (compat32 feedparser) builds.

Inputs are either raw bytes or a MIME message assembled from fuzzed parts: headers with
RFC 2047 words and odd charsets, nested multiparts with good, bad and missing
boundaries, base64 / quoted-printable / uuencode / unknown transfer encodings, HTML,
attached messages, filenames with RFC 2231 parameters, and random bytes anywhere.

    python tests/fuzz/fuzz_mime_text.py -runs=50000 [-seed=N] [CORPUS_DIR]
"""

from __future__ import annotations

import sys

import atheris
import fuzzlib

# the email and html packages too: coverage of their parsers steers the mutations
with atheris.instrument_imports(include=["axsync", "email", "html"]):
    from email import policy
    from email.message import Message
    from email.parser import BytesParser

    from axsync.archive import mimefast
    from axsync.archive.document import make_doc

_STOCK = BytesParser(policy=policy.compat32)


def tree(msg: Message) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for p in msg.walk():
        payload = p._payload if not p.is_multipart() else len(p.get_payload())  # raw: no decoding
        out.append((p.get_content_type(), p.get_default_type(), p.get_unixfrom(), p.preamble,
                    p.epilogue, payload, [type(d).__name__ for d in p.defects], p.items()))
    return out

CHARSETS = ["utf-8", "us-ascii", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", "gb2312",
            "iso-2022-jp", "utf-16", "utf-7", "x-unknown", "", "utf-8\"", "cp65001", "unicode-1-1-utf-7",
            "hz-gb-2312", "big5", "euc-kr", "idna", "rot13", "base64", "zlib", "uu", "hex", "punycode"]
ENCODINGS = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "uuencode",
             "x-uue", "bogus", ""]
TYPES = ["text/plain", "text/html", "text/calendar", "text/x-vcard", "application/octet-stream",
         "image/png", "message/rfc822", "message/delivery-status", "multipart/mixed",
         "multipart/alternative", "multipart/related", "multipart/signed", "multipart/digest",
         "text", "/", "multipart/", "text/plain/extra"]
HEADERS = ["Subject", "From", "To", "Cc", "Bcc", "Sender", "Reply-To", "Message-ID", "In-Reply-To",
           "References", "Date", "Content-Disposition", "X-Other"]
SNIPPETS = [b"=?utf-8?b?SGVsbG8=?=", b"=?iso-8859-1?q?caf=E9?=", b"=?bogus?x?zz?=", b"=?utf-8?q?",
            b"<html><body><p>hi &amp; &#x1F600; &#99999999; <script>x</script>", b"=\r\n", b"=ZZ",
            b"begin 644 f.txt\n#86)C\n`\nend\n", b"\x00\xff\xfe", b"\xe6\x97\xa5\xe6\x9c\xac",
            b"Tue, 1 Jul 2003 10:52:37 +0200", b"99 Foo 99999 99:99:99 +9999", b"<a@b> <c@d>",
            b"filename*=utf-8''%E2%82%AC.txt", b"filename*0*=us-ascii'en'a; filename*1=b",
            b"\r\n\r\n", b"--", b"\t", b" " * 10]


def chunk(fdp: atheris.FuzzedDataProvider) -> bytes:
    pick = fdp.ConsumeIntInRange(0, 3)
    if pick == 0:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
    if pick == 1:
        return SNIPPETS[fdp.ConsumeIntInRange(0, len(SNIPPETS) - 1)]
    return fuzzlib.text(fdp, 30).encode("utf-8", "surrogatepass")


def part(fdp: atheris.FuzzedDataProvider, depth: int) -> bytes:
    lines: list[bytes] = []
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        name = HEADERS[fdp.ConsumeIntInRange(0, len(HEADERS) - 1)]
        lines.append(name.encode() + b": " + b"".join(chunk(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))))
    ctype = TYPES[fdp.ConsumeIntInRange(0, len(TYPES) - 1)]
    if depth >= 3 and ctype.startswith(("multipart", "message")):
        ctype = "text/plain"
    boundary = fuzzlib.text(fdp, 12).encode("utf-8", "surrogatepass") if fdp.ConsumeBool() else b"b%d" % depth
    params = b""
    if fdp.ConsumeBool():
        params += b'; charset="' + CHARSETS[fdp.ConsumeIntInRange(0, len(CHARSETS) - 1)].encode() + b'"'
    if ctype.startswith("multipart") and fdp.ConsumeIntInRange(0, 5):
        params += b'; boundary="' + boundary + b'"'
    if fdp.ConsumeBool():
        params += b"; name=" + chunk(fdp)
    lines.append(b"Content-Type: " + ctype.encode() + params)
    if fdp.ConsumeBool():
        cte = ENCODINGS[fdp.ConsumeIntInRange(0, len(ENCODINGS) - 1)]
        lines.append(b"Content-Transfer-Encoding: " + cte.encode())
    if fdp.ConsumeBool():
        lines.append(b"Content-Disposition: attachment; " + chunk(fdp))
    newline = b"\r\n" if fdp.ConsumeBool() else b"\n"
    head = newline.join(lines) + newline + newline
    if ctype.startswith("multipart"):
        body = b""
        for _ in range(fdp.ConsumeIntInRange(0, 3)):
            body += b"--" + boundary + newline + part(fdp, depth + 1) + newline
        if fdp.ConsumeBool():
            body += b"--" + boundary + b"--" + newline
        return head + body + chunk(fdp)
    if ctype == "message/rfc822":
        return head + part(fdp, depth + 1)
    return head + b"".join(chunk(fdp) for _ in range(fdp.ConsumeIntInRange(0, 6)))


def TestOneInput(raw: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(raw)
    if fdp.ConsumeIntInRange(0, 3) == 0:
        data = fdp.ConsumeBytes(fdp.remaining_bytes())
    else:
        data = part(fdp, 0)
        if fdp.ConsumeIntInRange(0, 4) == 0:
            data = data[: fdp.ConsumeIntInRange(0, len(data))]  # read only up to a limit
    doc = make_doc(data)
    columns = doc.columns()
    assert len(columns) == 7 and all(isinstance(c, str) for c in columns)
    assert doc.sent_date is None or isinstance(doc.sent_date, int)
    assert all(isinstance(r, str) for r in doc.refs)
    fast = mimefast.parse(data)
    if fast is not None:
        assert tree(fast) == tree(_STOCK.parsebytes(data))


if __name__ == "__main__":
    fuzzlib.run(TestOneInput)
    sys.exit(0)
