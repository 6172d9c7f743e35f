"""The fake server's mail corpus: generated (determinism, content mix, MIME validity, threads,
folders, flags, labels, sizes, speed) and loaded from a Maildir or a tree of .eml files."""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import inspect
import os
import re
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from functools import cache
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axsync.errors import UsageError
from axsync.fake import corpus_gen, corpus_mime, corpus_text
from axsync.fake.corpus import (
    Corpus,
    CorpusFolder,
    CorpusMessage,
    decode_folder_component,
    decode_keyword,
    generate,
    load_corpus,
    mutf7_decode,
    mutf7_encode,
)

MIB = 1024 * 1024
PARSER = BytesParser(policy=policy.default)
ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([BbQq])\?[^?\s]*\?=")
# Every corpus of >= 200 messages has all of these (see ``features``).
REQUIRED = frozenset(
    {
        "plain:7bit", "plain:quoted-printable", "plain:8bit", "html-only", "alternative",
        "attach:application/pdf", "attach:image/png", "part:text/calendar",
        "part:message/rfc822", "related-cid",
        "charset:utf-8", "charset:iso-8859-1", "charset:windows-1252", "charset:koi8-r",
        "charset:shift_jis", "charset:gb2312",
        "ew:subject:B", "ew:subject:Q", "ew:from:B", "ew:from:Q",
        "ew:iso-8859-1", "ew:windows-1252", "ew:koi8-r", "ew:shift_jis", "ew:gb2312",
        "ew:utf-8", "crlf", "lf", "long-line", "8bit-no-charset", "duplicate-header",
        "folded-subject", "no-message-id", "mbox-from-line", "hostile-html",
        "hostile-filename", "reply", "forward-subject",
    }
)  # fmt: skip


# ---------------------------------------------------------------------------- helpers


def parse(raw: bytes) -> EmailMessage:
    msg = PARSER.parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def payload(part: EmailMessage) -> bytes:
    """A leaf part's decoded body."""
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data


def check_message(raw: bytes) -> EmailMessage:
    """Parse with the ``email`` package and verify the MIME structure in depth."""
    msg = parse(raw)
    for _name, value in msg.items():
        assert not getattr(value, "defects", ()), (_name, value.defects)
        str(value)
    crlf = b"\r\n" in raw
    if crlf:
        assert raw.count(b"\n") == raw.count(b"\r\n"), "mixed line endings"
    else:
        assert b"\r" not in raw
    assert b"\x00" not in raw
    for part in msg.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
        if part.get_content_maintype() == "multipart":
            assert part.get_boundary() and part.get_payload(), "multipart without boundary or parts"
            continue
        if part.get_content_type() == "message/rfc822":
            inner = part.get_content()
            assert inner["Message-ID"] and inner["Subject"]
            continue
        cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        body = part.get_payload(decode=False)
        if cte == "base64":
            assert isinstance(body, str)
            binascii.a2b_base64(body.encode("ascii"), strict_mode=False)
            base64.b64decode("".join(body.split()), validate=True)
            assert all(len(line) <= 76 for line in body.splitlines())
        data = part.get_payload(decode=True)
        if cte == "7bit" and "Content-Transfer-Encoding" in part:
            assert isinstance(data, bytes) and data.isascii(), "7bit part with 8-bit bytes"
        charset = part.get_param("charset")
        if part.get_content_maintype() == "text" and isinstance(charset, str):
            assert isinstance(data, bytes)
            data.decode(charset)  # strict: the declared charset matches the bytes
        part.get_content()
    return msg


def features(raw: bytes) -> set[str]:
    """What a message contains, found by inspecting the bytes (not the generator's plan)."""
    msg = parse(raw)
    out: set[str] = {"crlf" if b"\r\n" in raw else "lf"}
    head = raw.split(b"\r\n\r\n" if b"\r\n" in raw else b"\n\n", 1)[0]
    names = [name.lower() for name in msg]
    if any(n != "received" and c > 1 for n, c in Counter(names).items()):
        out.add("duplicate-header")
    if re.search(rb"(?im)^subject:[^\n]*\n[ \t]", head):
        out.add("folded-subject")
    for line in (
        head.replace(b"\r\n", b"\n").replace(b"\n ", b" ").replace(b"\n\t", b" ").split(b"\n")
    ):
        field = line.split(b":", 1)[0].lower()
        if field in (b"subject", b"from"):
            for charset, enc in ENCODED_WORD.findall(line):
                out.add(f"ew:{field.decode()}:{enc.decode().upper()}")
                out.add(f"ew:{charset.decode().lower()}")
    if msg["Message-ID"] is None:
        out.add("no-message-id")
    if msg["In-Reply-To"]:
        out.add("reply")
    if re.match(r"(?i)(fwd?|fw):", str(msg["Subject"] or "")):
        out.add("forward-subject")
    if any(len(line) > 998 for line in raw.split(b"\n")):
        out.add("long-line")
    top = msg.get_content_type()
    if not msg.is_multipart() and top == "text/plain":
        out.add(f"plain:{str(msg.get('Content-Transfer-Encoding', '7bit')).lower()}")
    if top == "text/html":
        out.add("html-only")
    if top == "multipart/alternative":
        out.add("alternative")
    cids: set[str] = set()
    html_all = ""
    for part in msg.walk():
        ctype = part.get_content_type()
        out.add(f"part:{ctype}")
        if part.is_multipart():
            continue
        charset = part.get_param("charset")
        if isinstance(charset, str):
            out.add(f"charset:{charset.lower()}")
        filename = part.get_filename()
        if filename:
            out.add(f"attach:{ctype}")
            if "../" in filename and not filename.isascii():
                out.add("hostile-filename")
        if part["Content-ID"]:
            cids.add(str(part["Content-ID"]).strip("<>"))
        data = payload(part)
        if ctype.startswith("text/") and charset is None and not data.isascii():
            out.add("8bit-no-charset")
        if ctype == "text/html":
            html = part.get_content()
            html_all += html
            if "<script" in html and "javascript:" in html and re.search(r'src="https?://', html):
                out.add("hostile-html")
        if ctype == "text/plain" and re.search(rb"(?m)^From ", data):
            out.add("mbox-from-line")
    if top == "multipart/related" and any(f"cid:{cid}" in html_all for cid in cids):
        out.add("related-cid")
    return out


def corpus_features(corpus: Corpus) -> set[str]:
    out: set[str] = set()
    for m in corpus.messages:
        out |= features(m.raw)
    return out


def digest(corpus: Corpus) -> str:
    h = hashlib.sha256()
    for f in corpus.folders:
        h.update(repr(f).encode())
    h.update(repr(corpus.labels).encode())
    for m in corpus.messages:
        h.update(repr((m.folder, m.date, m.unread, m.flagged, m.draft, m.refw, m.labels)).encode())
        h.update(hashlib.sha256(m.raw).digest())
    return h.hexdigest()


def invariants(corpus: Corpus) -> None:
    """What must hold for any generated corpus, whatever the size."""
    paths = {f.path for f in corpus.folders}
    assert len(paths) == len(corpus.folders)
    for path in paths:
        assert all(path[:k] in paths for k in range(1, len(path)))
    roles = [f.role for f in corpus.folders if f.role]
    assert sorted(roles) == ["drafts", "inbox", "junk", "sent", "trash"]
    assert {f.path: f.role for f in corpus.folders if f.role} == {
        ("INBOX",): "inbox", ("Drafts",): "drafts", ("Sent",): "sent",
        ("Trash",): "trash", ("Spam",): "junk",
    }  # fmt: skip
    lower = [name.lower() for name in corpus.labels]
    assert len(set(lower)) == len(lower)
    assert not set(lower) & {"junk", "notjunk", "nonjunk"}
    label_set = set(corpus.labels)
    dates = [m.date for m in corpus.messages]
    assert dates == sorted(dates), "messages come in internal-date order"
    for m in corpus.messages:
        assert m.folder in paths
        assert m.raw
        assert corpus_gen.START_DATE <= m.date < corpus_gen.BASE_DATE
        assert m.draft == (m.folder == ("Drafts",))
        assert m.refw in ("", "re", "fw", "refw")
        assert len(m.labels) <= 3 and len(set(m.labels)) == len(m.labels)
        assert set(m.labels) <= label_set
        if m.folder in (("Sent",), ("Drafts",)):
            assert not m.unread


# ---------------------------------------------------------------------------- fixtures


@cache
def main_corpus() -> Corpus:
    return generate(0, 400)


@cache
def main_parsed() -> list[EmailMessage]:
    return [check_message(m.raw) for m in main_corpus().messages]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return main_corpus()


@pytest.fixture(scope="module")
def parsed() -> list[EmailMessage]:
    return main_parsed()


# ---------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes() -> None:
    a, b = generate(7, 250), generate(7, 250)
    assert a == b
    assert digest(a) == digest(b)


def test_different_seeds_differ() -> None:
    a, b = generate(1, 50), generate(2, 50)
    assert [m.raw for m in a.messages] != [m.raw for m in b.messages]
    assert generate(-1, 20) != generate(1, 20)


def test_independent_of_hash_seed_and_process() -> None:
    code = (
        "from __future__ import annotations\nimport hashlib\n"
        "from axsync.fake.corpus import generate\n"
        + inspect.getsource(digest)
        + "print(digest(generate(3, 220)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == digest(generate(3, 220))


def test_pinned_digest() -> None:
    """Catches accidental changes (and platform differences). If you change the generator on
    purpose, update the value and say so in the commit: tests elsewhere may pin content."""
    assert digest(generate(0, 200)) == PINNED_DIGEST_0_200


PINNED_DIGEST_0_200 = "cb30e71b7355c4bf474b54ce9d5e62481e2e8ae87b613bec9983dd40cd7301a1"


def test_default_size_has_every_kind() -> None:
    corpus = generate(9)
    assert len(corpus.messages) == 200
    assert sum(len(m.raw) >= MIB for m in corpus.messages) == 3
    assert not REQUIRED - corpus_features(corpus)


# ---------------------------------------------------------------------------- content


def test_every_message_parses_cleanly(parsed: list[EmailMessage], corpus: Corpus) -> None:
    assert len(parsed) == len(corpus.messages) == 400


def test_every_content_kind_present(corpus: Corpus) -> None:
    missing = REQUIRED - corpus_features(corpus)
    assert not missing


def test_message_ids_unique_and_a_few_missing(parsed: list[EmailMessage]) -> None:
    ids = [str(m["Message-ID"]) for m in parsed if m["Message-ID"] is not None]
    assert len(ids) == len(set(ids))
    assert 2 <= len(parsed) - len(ids) <= 10


def test_charsets_consistent_with_text(corpus: Corpus) -> None:
    seen: dict[str, str] = {}
    for m in corpus.messages:
        for part in parse(m.raw).walk():
            charset = part.get_param("charset")
            if isinstance(charset, str) and charset.lower() in corpus_text.LANG_TEXT:
                seen[charset.lower()] = part.get_content()
    for cs, (_subject, sentences) in corpus_text.LANG_TEXT.items():
        assert any(s in seen[cs] for s in sentences), cs


def test_encoded_words_decode_to_the_original_text(parsed: list[EmailMessage]) -> None:
    subjects = {str(m["Subject"]) for m in parsed}
    for _cs, (subject, _sentences) in corpus_text.LANG_TEXT.items():
        assert subject in subjects
    senders = {str(m["From"]) for m in parsed}
    assert any("Дмитрий Иванов" in s or "Наталья Смирнова" in s for s in senders)


def test_text_tables_encodable_in_their_charsets() -> None:
    for cs, (subject, sentences) in corpus_text.LANG_TEXT.items():
        for text in (subject, *sentences):
            text.encode(cs)
    for name, _local, cs in corpus_text.INTL_PEOPLE:
        name.encode(cs)
    assert len(corpus_text.LONG_FOLDER_NAME) == 200


def test_big_messages(corpus: Corpus) -> None:
    big = [m for m in corpus.messages if len(m.raw) >= MIB]
    assert len(big) == 3
    for m in big:
        assert len(m.raw) <= 5_000_000
        parts = list(parse(m.raw).iter_attachments())
        assert parts and sum(len(p.get_payload(decode=True)) for p in parts) > 700_000
    rest = [len(m.raw) for m in corpus.messages if len(m.raw) < MIB]
    assert sum(rest) / len(rest) < 8_000, "the average message should be a few KB"
    small = generate(0, 150)
    assert max(len(m.raw) for m in small.messages) < MIB
    assert sum(len(m.raw) >= MIB for m in generate(0, 30, big_messages=2).messages) == 2


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate(0, -1)
    with pytest.raises(ValueError):
        generate(0, 3, big_messages=4)
    empty = generate(0, 0)
    assert empty.messages == [] and empty.folders and empty.labels


def test_png_and_pdf_attachments_are_well_formed(parsed: list[EmailMessage]) -> None:
    kinds: Counter[str] = Counter()
    for msg in parsed:
        for part in msg.iter_attachments():
            assert isinstance(part, EmailMessage)
            ctype = part.get_content_type()
            data = payload(part) if ctype in ("image/png", "application/pdf") else b""
            if ctype == "image/png":
                assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
                kinds["png"] += 1
            elif ctype == "application/pdf":
                assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
                kinds["pdf"] += 1
    assert kinds["png"] and kinds["pdf"]


def test_png_decodes() -> None:
    import zlib

    png = corpus_mime.png(bytes(range(96)) * 2, 8)
    idat = png[png.index(b"IDAT") + 4 : png.index(b"IEND") - 8]
    raw = zlib.decompress(idat)
    assert len(raw) == 8 * (1 + 8 * 3)


def test_encoded_words_helper_round_trips() -> None:
    from email.header import decode_header, make_header

    for cs in ("utf-8", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", "gb2312"):
        text = corpus_text.LANG_TEXT.get(cs, ("Grüße – 日本 " * 8, ()))[0]
        for mode in "BQ":
            enc = corpus_mime.encoded_words(text, cs, mode)
            assert all(len(w) <= 75 for w in enc.split("\n "))
            assert str(make_header(decode_header(enc))) == text


# ---------------------------------------------------------------------------- threads


def test_threads_link_correctly(parsed: list[EmailMessage], corpus: Corpus) -> None:
    by_id: dict[str, tuple[EmailMessage, CorpusMessage]] = {}
    for msg, cm in zip(parsed, corpus.messages, strict=True):
        if msg["Message-ID"] is not None:
            by_id[str(msg["Message-ID"])] = (msg, cm)
    threads: dict[str, list[tuple[EmailMessage, CorpusMessage]]] = {}
    for mid, (msg, cm) in by_id.items():
        irt = msg["In-Reply-To"]
        if irt is None:
            threads.setdefault(mid, []).append((msg, cm))
            continue
        refs = str(msg["References"]).split()
        assert refs[-1] == str(irt)
        assert all(r in by_id for r in refs), "every reference is in the corpus"
        parent, _parent_cm = by_id[str(irt)]
        parent_refs = str(parent["References"] or "").split()
        assert parent_refs[-len(refs) + 1 :] == refs[:-1] if len(refs) > 1 else not parent_refs
        assert parsedate_to_datetime(str(msg["Date"])) > parsedate_to_datetime(str(parent["Date"]))
        subject = str(msg["Subject"])
        assert re.match(r"(Re|RE|AW|Fwd|FW): ", subject), subject
        threads.setdefault(refs[0], []).append((msg, cm))
    sizes = [len(t) for t in threads.values() if len(t) > 1]
    assert sizes and min(sizes) >= 2 and max(sizes) == 15
    spanning = [
        t for t in threads.values() if {cm.folder for _m, cm in t} >= {("INBOX",), ("Sent",)}
    ]
    assert spanning
    refw = Counter(cm.refw for _m, cm in by_id.values())
    assert refw["re"] and refw["fw"] or refw["refw"]


# ---------------------------------------------------------------------------- folders, flags, labels


def test_invariants(corpus: Corpus) -> None:
    invariants(corpus)


def test_hostile_folder_names(corpus: Corpus) -> None:
    names = {f.path[-1] for f in corpus.folders}
    wanted = {
        "Entwürfe", "日本語", "v1.2 notes", "a.b.c", "a/b", "..", ".", ".hidden", "~tilde",
        "cur", "new", "tmp", "Work", "work", "R&D",
    }  # fmt: skip
    assert wanted <= names
    nfc, nfd = "Caf\u00e9", "Cafe\u0301"
    assert nfc in names and nfd in names and unicodedata.normalize("NFC", nfd) == nfc
    assert any(len(n) == 200 for n in names)
    assert any("\t" in n for n in names)
    assert {("Archive", "2023"), ("Archive", "2024"), ("Projects", "Alpha"), ("Receipts",)} <= {
        f.path for f in corpus.folders
    }


def test_folder_skew_and_coverage(corpus: Corpus) -> None:
    counts = Counter(m.folder for m in corpus.messages)
    assert counts.most_common(1)[0][0] == ("INBOX",)
    empty = {f.path for f in corpus.folders} - set(counts)
    assert empty == {("Projects",)}
    for m in corpus.messages:
        if m.folder == ("Archive", "2023"):
            assert corpus_gen.YEAR_START[2023] <= m.date < corpus_gen.YEAR_START[2024] + 2 * 86400


def test_flags_realistic(corpus: Corpus) -> None:
    msgs = corpus.messages
    unread = sum(m.unread for m in msgs)
    assert 0 < unread < len(msgs) // 2
    assert 0 < sum(m.flagged for m in msgs) < len(msgs) // 5
    assert any(m.draft for m in msgs)
    assert Counter(m.refw for m in msgs).keys() >= {"", "re", "fw"}


def test_labels(corpus: Corpus) -> None:
    assert len(corpus.labels) == 8
    for name in ("To Do", "Ärger", "a(b)", "100%", "back\\slash", "work", "family", "$Important"):
        assert name in corpus.labels
    used = Counter(label for m in corpus.messages for label in m.labels)
    assert set(used) == set(corpus.labels)
    labelled = [m for m in corpus.messages if m.labels]
    assert 0.05 < len(labelled) / len(corpus.messages) < 0.4


def test_dates_spread_over_three_years(corpus: Corpus) -> None:
    dates = [m.date for m in corpus.messages]
    assert min(dates) < corpus_gen.BASE_DATE - 2 * 365 * 86400
    assert max(dates) > corpus_gen.BASE_DATE - 30 * 86400


# ---------------------------------------------------------------------------- property tests


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(-(2**64), 2**64), n=st.integers(0, 50))
def test_any_seed_small_corpus_is_valid(seed: int, n: int) -> None:
    corpus = generate(seed, n)
    assert len(corpus.messages) == n
    invariants(corpus)
    for m in corpus.messages:
        check_message(m.raw)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), extra=st.integers(0, 40))
def test_any_seed_full_corpus_has_every_kind(seed: int, extra: int) -> None:
    corpus = generate(seed, 200 + extra, big_messages=0)
    assert len(corpus.messages) == 200 + extra
    invariants(corpus)
    for m in corpus.messages:
        check_message(m.raw)
    assert not REQUIRED - corpus_features(corpus)


# ---------------------------------------------------------------------------- scale


def test_100k_messages() -> None:
    t0 = time.perf_counter()
    corpus = generate(5, 100_000)
    elapsed = time.perf_counter() - t0
    assert len(corpus.messages) == 100_000
    total = sum(len(m.raw) for m in corpus.messages)
    assert total / 100_000 < 6_000
    assert elapsed < 60, f"generation took {elapsed:.1f}s"
    counts = Counter(m.folder for m in corpus.messages)
    assert counts[("INBOX",)] > 25_000
    assert sum(len(m.raw) >= MIB for m in corpus.messages) == 3


# ---------------------------------------------------------------------------- loading: Maildir


def maildir_component(name: str) -> str:
    """Dovecot listescape + modified UTF-7, as a Maildir++ writer stores a name component."""
    out = mutf7_encode(name).replace("\\", "\\5c").replace(".", "\\2e").replace("/", "\\2f")
    return "\\7e" + out[1:] if out.startswith("~") else out


def label_atom(label: str) -> str:
    """A label as axsync writes it into ``dovecot-keywords`` (contract: ``~XX`` escapes)."""
    safe = set(map(chr, range(0x21, 0x7F))) - set('(){ %*"\\]~')
    return "".join(c if c in safe else "".join(f"~{b:02X}" for b in c.encode()) for c in label)


def folder_dir(root: Path, path: tuple[str, ...]) -> Path:
    if path == ("INBOX",):
        return root
    return root / ("." + ".".join(maildir_component(c) for c in path))


def write_maildir(root: Path, corpus: Corpus) -> None:
    for folder in corpus.folders:
        d = folder_dir(root, folder.path)
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        used = [
            n
            for n in corpus.labels
            if any(n in m.labels for m in corpus.messages if m.folder == folder.path)
        ]
        if used:
            lines = "".join(f"{i} {label_atom(n)}\n" for i, n in enumerate(used))
            (d / "dovecot-keywords").write_text(lines)
    zstd = zstandard.ZstdCompressor()
    for i, m in enumerate(corpus.messages):
        d = folder_dir(root, m.folder)
        kw = [
            n
            for n in corpus.labels
            if any(n in x.labels for x in corpus.messages if x.folder == m.folder)
        ]
        flags = "".join(
            sorted(
                ("D" if m.draft else "") + ("F" if m.flagged else "") + ("P" if "fw" in m.refw else "")
                + ("R" if "re" in m.refw else "") + ("" if m.unread else "S")
                + "".join(chr(97 + kw.index(n)) for n in m.labels)
            )
        )  # fmt: skip
        vsize = len(m.raw) + m.raw.count(b"\n") - m.raw.count(b"\r\n")
        name = f"{1_700_000_000 + i}.M{i}P42Q{i}.testhost,S={len(m.raw)},W={vsize}:2,{flags}"
        data = (zstd.compress(m.raw), gzip.compress(m.raw), m.raw)[i % 3]
        path = d / "cur" / name
        path.write_bytes(data)
        os.utime(path, (m.date, m.date))


def message_key(m: CorpusMessage) -> tuple[object, ...]:
    return (m.folder, m.date, m.raw, m.unread, m.flagged, m.draft, m.refw, tuple(sorted(m.labels)))


def test_load_maildir_round_trip(tmp_path: Path) -> None:
    original = generate(11, 120)
    write_maildir(tmp_path, original)
    loaded = load_corpus(tmp_path)
    assert sorted(map(message_key, loaded.messages)) == sorted(map(message_key, original.messages))
    assert {f.path for f in loaded.folders} == {f.path for f in original.folders}
    assert {(f.path, f.role) for f in loaded.folders if f.role} == {
        (f.path, f.role) for f in original.folders if f.role
    }
    assert set(loaded.labels) == {n for m in original.messages for n in m.labels}
    assert loaded.folders[0].path == ("INBOX",)
    assert load_corpus(tmp_path) == loaded, "loading is deterministic"


def test_load_maildir_details(tmp_path: Path) -> None:
    raw = b"From: a@example.com\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n"
    inbox_cur = tmp_path / "cur"
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "dovecot-keywords").write_text("0 work\n1 To Do\n2 $Forwarded\n3 Junk\n4 Work\n")
    f1 = inbox_cur / "1700000001.M1P1.host,S=63,W=63:2,FSabcde"
    f1.write_bytes(zstandard.ZstdCompressor(write_content_size=False).compress(raw))
    os.utime(f1, (1_700_000_001, 1_700_000_001))
    (tmp_path / "new" / "1700000002.M2P1.host").write_bytes(gzip.compress(raw))
    (tmp_path / "cur" / ".hidden-file").write_bytes(b"ignored")
    (tmp_path / "tmp" / "1700000003.M3P1.host").write_bytes(raw)  # tmp/ is never read
    (tmp_path / "dovecot-uidlist").write_text("3 V1 N3\n")
    names = {
        ".Entw&APw-rfe": ("Entwürfe",),
        ".&ZeVnLIqe-": ("日本語",),
        ".a\\2eb": ("a.b",),
        ".Archive.2024": ("Archive", "2024"),
        ".R&-D": ("R&D",),
        ".x\\2fy.\\2e\\2e": ("x/y", ".."),
        ".Junk": ("Junk",),
    }
    for dirname, _path in names.items():
        d = tmp_path / dirname
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True)
        (d / "cur" / "1700000005.M5P1.host:2,DRP").write_bytes(raw)
    (tmp_path / ".NotAFolder").mkdir()  # no cur/new: not a folder
    loaded = load_corpus(tmp_path)
    paths = {f.path: f.role for f in loaded.folders}
    for path in names.values():
        assert path in paths
    assert ("Archive",) in paths and ("x/y",) in paths
    assert paths[("Junk",)] == "junk" and ("Spam",) not in paths
    assert paths[("Drafts",)] == "drafts" and paths[("Sent",)] == "sent"
    assert ("NotAFolder",) not in paths
    inbox = [m for m in loaded.messages if m.folder == ("INBOX",)]
    assert len(inbox) == 2
    first, second = inbox
    assert first.raw == raw and second.raw == raw
    assert first.date == 1_700_000_001
    assert (first.unread, first.flagged, first.draft) == (False, True, False)
    assert first.refw == "fw"  # $Forwarded keyword
    assert set(first.labels) == {"work", "To Do"}  # Junk dropped, Work merged with work
    assert second.unread and not second.labels and second.refw == ""
    other = next(m for m in loaded.messages if m.folder == ("Entwürfe",))
    assert (other.unread, other.draft, other.refw) == (True, True, "refw")
    assert loaded.labels == ["To Do", "work"]


def test_load_corrupt_compressed_file(tmp_path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "cur" / "1.M1.host:2,S").write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage")
    with pytest.raises(UsageError, match="1.M1.host"):
        load_corpus(tmp_path)


def test_keyword_decoding() -> None:
    assert decode_keyword("~C3~84rger") == "Ärger"
    assert decode_keyword("has~20space") == "has space"
    assert decode_keyword("50~25~7Eoff") == "50%~off"
    assert decode_keyword("~") == ""
    assert decode_keyword("plain$Label") == "plain$Label"
    assert decode_keyword("~ZZ~") == "~ZZ~"
    assert decode_keyword("bad~FFutf8") == "bad~FFutf8"
    for label in ("To Do", "Ärger", "a(b)", "100%", "back\\slash", "~tilde", "日本"):
        assert decode_keyword(label_atom(label)) == label


def test_load_axsync_archive_names(tmp_path: Path) -> None:
    raw = b"Subject: x\n\nbody\n"
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "cur" / "1.M1.host,S=17,W=19:2,Sa").write_bytes(raw)
    (tmp_path / "dovecot-keywords").write_text("0 ~C3~84rger\n")
    short = tmp_path / ".case~df8e79815b0e"
    for sub in ("cur", "new", "tmp"):
        (short / sub).mkdir(parents=True)
    (short / "cur" / "2.M2.host:2,").write_bytes(raw)
    (short / "axsync-folder-name").write_text(
        '{"dirname": ".case~df8e79815b0e", "path": ["case"]}\n'
    )
    stale = tmp_path / ".moved"
    for sub in ("cur", "new", "tmp"):
        (stale / sub).mkdir(parents=True)
    (stale / "cur" / "3.M3.host:2,").write_bytes(raw)
    (stale / "axsync-folder-name").write_text('{"dirname": ".elsewhere", "path": ["x"]}\n')
    loaded = load_corpus(tmp_path)
    assert [m.labels for m in loaded.messages if m.folder == ("INBOX",)] == [("Ärger",)]
    assert {m.folder for m in loaded.messages} == {("INBOX",), ("case",), ("moved",)}
    assert decode_folder_component("\\-") == ""


def test_reads_names_as_axsync_store_writes_them() -> None:
    """The loader and the archive writer agree on the on-disk name formats."""
    names = pytest.importorskip("axsync.store.names")
    keywords = pytest.importorskip("axsync.store.keywords")
    for folder in main_corpus().folders:
        dirname = names.folder_dirname(folder.path)
        if dirname:
            path = tuple(decode_folder_component(c) for c in dirname[1:].split("."))
            # a "/" in a level is stored as "∕": the real path is in axsync-folder-name
            # (tests/store/test_slash_names.py checks that load_corpus reads it)
            assert path == names.shown_path(folder.path)
    for label in main_corpus().labels:
        assert decode_keyword(keywords.label_to_atom(label)) == label


def test_folder_component_decoding() -> None:
    assert decode_folder_component("Entw&APw-rfe") == "Entwürfe"
    assert decode_folder_component("a\\2eb\\2Fc") == "a.b/c"
    assert decode_folder_component("\\c3\\a9t\\c3\\a9") == "été"
    assert decode_folder_component("&-amp\\5c") == "&amp\\"
    assert mutf7_decode("bad&!!!-x") == "bad&!!!-x"
    assert mutf7_decode("dangling&") == "dangling&"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_mutf7_round_trip(name: str) -> None:
    enc = mutf7_encode(name)
    assert enc.isascii() and mutf7_decode(enc) == name
    assert decode_folder_component(maildir_component(name)) == name


# ---------------------------------------------------------------------------- loading: .eml tree


def test_load_eml_tree(tmp_path: Path) -> None:
    def write(rel: str, data: bytes, mtime: int = 1_600_000_000) -> None:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, (mtime, mtime))

    dated = b"Date: Tue, 14 Nov 2023 22:13:20 +0000\nSubject: x\n\nbody\n"
    undated = b"Subject: no date\n\nbody\n"
    baddate = b"Date: yesterday-ish\nSubject: bad\n\nbody\n"
    write("top.eml", dated)
    write("Inbox/inner.eml", undated, 1_650_000_000)
    write("Work/a.eml", baddate, 1_660_000_000)
    write("Archive/2024/b.EML", zstandard.ZstdCompressor().compress(dated))
    write("Archive/2024/notes.txt", b"not mail")
    write("Empty/readme.md", b"no mail here")
    loaded = load_corpus(tmp_path)
    got = [(m.folder, m.date, m.unread, m.flagged, m.raw) for m in loaded.messages]
    assert got == [
        (("INBOX",), 1_650_000_000, False, False, undated),
        (("INBOX",), 1_700_000_000, False, False, dated),
        (("Archive", "2024"), 1_700_000_000, False, False, dated),
        (("Work",), 1_660_000_000, False, False, baddate),
    ]
    paths = [f.path for f in loaded.folders]
    assert paths[0] == ("INBOX",)
    assert ("Archive",) in paths and ("Empty",) not in paths
    assert {"drafts", "sent", "trash", "junk"} <= {f.role for f in loaded.folders}
    assert loaded.labels == []


def test_loaded_messages_parse(tmp_path: Path) -> None:
    original = generate(4, 60)
    write_maildir(tmp_path, original)
    loaded = load_corpus(tmp_path)
    for m in loaded.messages:
        check_message(m.raw)
    assert all(isinstance(f, CorpusFolder) for f in loaded.folders)


# ---------------------------------------------------------------------------- loading: errors


def test_load_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(UsageError, match="nope"):
        load_corpus(missing)
    with pytest.raises(UsageError, match=re.escape(str(tmp_path))):
        load_corpus(tmp_path)  # empty directory
    (tmp_path / "cur").mkdir()
    with pytest.raises(UsageError, match="no messages"):
        load_corpus(tmp_path)  # a Maildir without mail
    f = tmp_path / "file.eml"
    f.write_bytes(b"Subject: x\n\ny\n")
    with pytest.raises(UsageError, match="not a directory"):
        load_corpus(f)
