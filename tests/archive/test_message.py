"""Parsing for display and indexing: headers, body choice, parts, attachments."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive.conftest import PDF, PNG, make_mail, sample_mails
from axsync.archive import message as mm
from axsync.archive.document import make_doc


def test_headers_decoded_from_raw_lines() -> None:
    mails = sample_mails()
    msg = mm.parse(mails["badcharset"].raw)
    assert mm.header(msg, "subject") == "café crème"
    assert mm.header(msg, "from") == "René <rene@example.fr>"
    assert mm.header(msg, "x-missing") == ""
    assert mm.sender_name(mm.header(msg, "from")) == "René"
    assert mm.body_text(msg) == "déjà vu\n"


def test_japanese_subject_and_body() -> None:
    msg = mm.parse(sample_mails()["japanese"].raw)
    assert mm.header(msg, "subject") == "日本語のテスト"
    assert mm.body_text(msg).startswith("東京で会議")


def test_parts_numbered_in_document_order_and_attachments_listed() -> None:
    msg = mm.parse(sample_mails()["hostile"].raw)
    types = [(i, mm.meta(p).ctype) for i, p in mm.walk(msg)]
    assert types == [(0, "multipart/mixed"), (1, "multipart/related"), (2, "text/html"),
                     (3, "image/png"), (4, "application/pdf"), (5, "text/plain"), (6, "text/html")]
    atts = {a.index: a for a in mm.attachments(msg)}
    assert atts[3].inline and atts[3].content_id == "logo@example.com"
    assert atts[4].filename == "report.pdf" and atts[4].size == len(PDF)
    assert atts[5].filename == "../../../etc/passwd"
    assert mm.part_bytes(mm.part_at(msg, 3)) == PNG  # type: ignore[arg-type]
    assert mm.part_at(msg, 99) is None
    assert mm.has_attachment(msg)
    body = mm.body_part(msg, ("html", "plain"))
    assert body is not None and mm.meta(body).ctype == "text/html"


def test_inline_image_alone_is_no_attachment() -> None:
    raw = make_mail("img", (
        "--R\nContent-Type: text/html\n\n<img src=cid:a@b>\n--R\nContent-Type: image/png\n"
        "Content-ID: <a@b>\nContent-Disposition: inline; filename=\"image001.png\"\n\nxx\n--R--\n"
    ), content_type="multipart/related; boundary=R")
    msg = mm.parse(raw)
    assert not mm.has_attachment(msg)
    assert [a.inline for a in mm.attachments(msg)] == [True]


def test_alternative_prefers_plain_for_text_and_html_for_display() -> None:
    raw = make_mail("alt", (
        "--A\nContent-Type: text/plain\n\nplain version\n"
        "--A\nContent-Type: text/html\n\n<p>html version</p>\n--A--\n"
    ), content_type="multipart/alternative; boundary=A")
    msg = mm.parse(raw)
    assert mm.body_text(msg) == "plain version"
    html = mm.body_part(msg, ("html", "plain"))
    assert html is not None and "html version" in mm.part_html(html)
    assert mm.attachments(msg) == []


def test_rfc2231_and_encoded_word_file_names() -> None:
    raw = make_mail("names", (
        "--M\nContent-Type: text/plain\n\nbody\n"
        "--M\nContent-Type: application/pdf\nContent-Disposition: attachment;\n"
        " filename*0*=UTF-8''%C3%A9tude%20;\n filename*1*=r%C3%A9sum%C3%A9.pdf\n\nx\n"
        "--M\nContent-Type: application/pdf; name=\"=?utf-8?B?w6l0w6kucGRm?=\"\n\nx\n--M--\n"
    ), content_type="multipart/mixed; boundary=M")
    names = [a.filename for a in mm.attachments(mm.parse(raw))]
    assert names == ["étude résumé.pdf", "été.pdf"]


def test_forwarded_message_is_an_attachment_and_its_text_is_indexed() -> None:
    inner = make_mail("Inner subject", "inner words here\n").decode()
    raw = make_mail("Fwd", (
        "--F\nContent-Type: text/plain\n\nsee below\n"
        "--F\nContent-Type: message/rfc822\n\n" + inner.replace("\r\n", "\n") + "\n--F--\n"
    ), content_type="multipart/mixed; boundary=F")
    msg = mm.parse(raw)
    (att,) = mm.attachments(msg)
    assert att.content_type == "message/rfc822" and att.display_name().endswith(".eml")
    assert b"Inner subject" in mm.part_bytes(mm.part_at(msg, att.index))  # type: ignore[arg-type]
    doc = make_doc(raw)
    assert "inner words here" in doc.body and "Inner subject" in doc.body
    assert doc.has_attachment


def test_document_fields() -> None:
    mails = sample_mails()
    doc = make_doc(mails["t3"].raw)
    assert doc.refs[0] == "<t3@example.com>" and "<t1@example.com>" in doc.refs
    assert doc.sent_date == 1700000000
    doc = make_doc(mails["hostile"].raw)
    assert "report.pdf" in doc.filenames and "Hostile body marker" in doc.body
    assert "__pwned" not in doc.body  # script text is not indexed
    assert make_doc(mails["budget"].raw).cc.startswith("Carol")


def test_message_ids() -> None:
    assert mm.message_ids("<a@b> <c@d>\n <a@b>") == ["<a@b>", "<c@d>"]
    assert mm.message_ids("bare@id") == ["<bare@id>"]
    assert mm.message_ids("") == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mangled_messages_never_raise(data: st.DataObject) -> None:
    """Cut, spliced and bit-flipped real messages: parsing, text, parts, doc never raise."""
    raw = data.draw(st.sampled_from([m.raw for m in sample_mails().values()]))
    cut = data.draw(st.integers(0, len(raw)))
    junk = data.draw(st.binary(max_size=40))
    mangled = raw[:cut] + junk + raw[cut:][: data.draw(st.integers(0, 200))]
    msg = mm.parse(mangled)
    mm.body_text(msg)
    for info in mm.attachments(msg):
        info.display_name()
    for _, part in mm.walk(msg):
        mm.part_bytes(part)
    make_doc(mangled)


def test_part_metadata_shared_by_header_lines_is_what_each_part_would_get() -> None:
    """meta() reuses the Meta of parts with the same Content-Type, Content-Disposition and
    Content-ID lines (and default type): over the generated corpus and the hand-made
    mails, every part's Meta equals the one made for that part alone."""
    from axsync.fake.corpus import generate

    raws = [m.raw for seed in (1, 2) for m in generate(seed, 200, big_messages=1).messages]
    raws += [m.raw for m in sample_mails().values()]
    mm._META_BY_HEADERS.clear()
    checked = 0
    for raw in raws:
        for _, part in mm.walk(mm.parse(raw)):
            assert mm.meta(part) == mm._make_meta(part)
            checked += 1
    assert checked > len(raws) and 0 < len(mm._META_BY_HEADERS) < checked / 2


def test_part_metadata_keeps_apart_what_only_the_default_type_tells_apart() -> None:
    digest = (b"Content-Type: multipart/digest; boundary=D\r\n\r\n--D\r\n\r\n"
              b"Subject: inner\r\n\r\nhi\r\n--D--\r\n")
    mixed = (b"Content-Type: multipart/mixed; boundary=M\r\n\r\n--M\r\n\r\n"
             b"just text\r\n--M--\r\n")
    in_digest = mm.children_of(mm.parse(digest))[0]
    in_mixed = mm.children_of(mm.parse(mixed))[0]
    assert mm.meta(in_digest).ctype == "message/rfc822"
    assert mm.meta(in_mixed).ctype == "text/plain"
    again = mm.children_of(mm.parse(digest))[0]
    assert mm.meta(again).ctype == "message/rfc822"
