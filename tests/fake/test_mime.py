"""The fake's MIME helpers: header parsing, encoded words, multipart walking, building."""

from __future__ import annotations

import email
from email import policy

from axsync.fake.mime import (
    body_offset,
    build_message,
    decode_words,
    header_params,
    parse_headers,
    parse_info,
    split_multipart,
    thread_ids,
)

MULTI = (
    b"From: =?utf-8?q?J=C3=B6rg?= <j@x.de>\r\n"
    b"To: a@x, b@x\r\n"
    b"Cc: c@x\r\n"
    b"Subject: =?utf-8?B?SMOpbGxv?=\r\n =?utf-8?B?IHfDtnJsZA==?=\r\n"
    b"Message-ID: <id-1@x>\r\n"
    b"X-Priority: 1\r\n"
    b"Disposition-Notification-To: j@x.de\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/related; boundary="outerX"\r\n'
    b"\r\n"
    b"--outerX\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"<html><style>p{}</style><p>Gr=C3=BC=C3=9Fe &amp; hi <img src=3D\"cid:logo@x\"></p></html>\r\n"
    b"--outerX\r\n"
    b"Content-Type: image/png\r\n"
    b"Content-ID: <logo@x>\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"iVBORw0KGgo=\r\n"
    b"--outerX--\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pdf; name=\"r.pdf\"\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20rates.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--outer\r\n"
    b"Content-Type: text/calendar; method=REQUEST\r\n"
    b"\r\n"
    b"BEGIN:VCALENDAR\r\n"
    b"--outer--\r\n"
    b"epilogue\r\n"
)


def test_headers_unfold_and_first_value_wins() -> None:
    headers = parse_headers(b"Subject: a\r\n b\r\nX: 1\r\nX: 2\r\nBad Line\r\n\r\nSubject: body")
    assert headers == {"subject": "a b", "x": "1"}
    assert body_offset(b"A: b\n\nbody") == 6
    assert body_offset(b"\r\nbody") == 2
    assert body_offset(b"A: b\r\n") == 6


def test_encoded_words() -> None:
    assert decode_words("=?utf-8?q?J=C3=B6rg_M?= =?utf-8?B?w7xsbGVy?=") == "Jörg Müller"
    assert decode_words("=?iso-8859-1?q?caf=E9?= time") == "café time"
    assert decode_words("=?x-unknown?q?abc?=") == "=?x-unknown?q?abc?="
    assert decode_words("plain") == "plain"


def test_params_and_rfc2231() -> None:
    assert header_params('text/plain; charset="UTF-8"; format=flowed') == (
        "text/plain",
        {"charset": "UTF-8", "format": "flowed"},
    )
    main, params = header_params("attachment; filename*0*=utf-8''%E2%82%AC; filename*1=\"x.pdf\"")
    assert (main, params) == ("attachment", {"filename": "€x.pdf"})


def test_split_multipart_is_tolerant() -> None:
    assert split_multipart(b"--b\r\none\r\n--b\r\ntwo\r\n--b--\r\n", "b") == [b"one", b"two"]
    assert split_multipart(b"--b\none\n--bb\nstill one\n--b\ntwo", "b") == [b"one\n--bb\nstill one", b"two"]
    assert split_multipart(b"no delimiters", "b") == []


def test_parse_info_of_a_rich_message() -> None:
    info = parse_info(MULTI)
    assert info.from_ == "Jörg <j@x.de>"
    assert info.subject == "Héllo wörld"
    assert info.reply_to == info.from_
    assert info.importance == "high" and info.return_receipt and info.is_itip
    assert info.snippet == "Grüße & hi"
    names = [(a.name, a.content_type, a.is_inline, a.size) for a in info.attachments]
    assert names == [("", "image/png", True, 8), ("€ rates.pdf", "application/pdf", False, 9)]
    assert info.has_attachments


def test_snippet_of_plain_text_and_fallbacks() -> None:
    raw = b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9\r\n  au   lait"
    assert parse_info(raw).snippet == "Café au lait"
    assert parse_info(b"Subject: x\r\n\r\n" + b"word " * 200).snippet == ("word " * 40).strip()
    assert not parse_info(b"Subject: none\r\n\r\n").has_attachments
    whole = parse_info(b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK")
    assert [(a.content_type, a.size) for a in whole.attachments] == [("application/pdf", 9)]


def test_thread_ids() -> None:
    raw = b"Message-ID: <me@x>\r\nReferences: <a@x>\r\n <b@x>\r\nIn-Reply-To: <b@x>\r\n\r\nReferences: <no@x>"
    assert thread_ids(raw) == ("me@x", ("a@x", "b@x"))
    assert thread_ids(b"Subject: none\r\n\r\n") == ("", ())


def test_build_message_is_valid_rfc5322() -> None:
    raw = build_message(
        headers={"From": "Ann <a@x>", "To": "b@x", "Subject": "Grüße", "Cc": ""},
        date=1_700_000_000,
        message_id="abc@x",
        body_text="hello",
        body_html="<p>hello</p>",
    )
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Grüße" and msg["Message-ID"] == "<abc@x>" and "Cc" not in msg
    assert msg.get_content_type() == "multipart/alternative"
    assert parse_info(raw).snippet == "hello"
