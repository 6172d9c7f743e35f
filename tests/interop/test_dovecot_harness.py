"""Proves tests/interop/dovecot.py against a Maildir++ built here by hand.

The Maildir is written the way the archive contract says axsync writes it: one zstd
file per message named ``<unique>,S=<size>,W=<vsize>:2,<flags>`` in ``cur/``, per-folder
``dovecot-keywords``, file mtime = internal date, folder names in modified UTF-7
(``.Entw&APw-rfe``), ``\\2e`` for a literal dot (``.v1\\2e2 notes``).  A real Dovecot must
serve every message byte-exact (LF -> CRLF), with its flags and keywords,
RFC822.SIZE = W and INTERNALDATE = mtime.

The tests at the end need no Dovecot: they pin the harness's parsing and skip policy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from .dovecot import (
    DovecotError,
    DovecotServer,
    FetchedMessage,
    _parse_fetch,
    _parse_internaldate,
    crlf,
    fetch_all,
    imap_body,
    imap_quote,
    interop_required,
    list_mailbox_entries,
    list_mailboxes,
    mutf7_decode,
    mutf7_encode,
    requires_dovecot,
    session_members,
    skip_reason,
)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
LETTER_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
                "T": "\\Deleted"}

# ---------------------------------------------------------------------------
# a hand-built Maildir++
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    folder: str  # IMAP name: unicode, "/" between levels
    path: Path
    raw: bytes  # the message as stored (before compression)
    flags: frozenset[str]  # expected IMAP flags: system flags + keywords
    mtime: int

    @property
    def vsize(self) -> int:
        return len(crlf(self.raw))


class MaildirBuilder:
    """Writes Maildir++ folders and zstd message files the way the contract describes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.planted: list[Planted] = []
        self.keywords: dict[str, list[str]] = {}
        self._n = 0
        for sub in ("cur", "new", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def folder(self, imap_name: str, disk_name: str, keywords: tuple[str, ...] = ()) -> Path:
        path = self.root if imap_name == "INBOX" else self.root / disk_name
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        if path != self.root:
            (path / "maildirfolder").touch()
        if keywords:
            self.keywords[imap_name] = list(keywords)
            (path / "dovecot-keywords").write_bytes(
                b"".join(f"{i} {kw}\n".encode() for i, kw in enumerate(keywords)))
        return path

    def add(self, imap_name: str, folder: Path, raw: bytes, letters: str, mtime: int,
            *, content_size: bool = True) -> Planted:
        self._n += 1
        unique = f"{mtime}.M{100000 + self._n}P4242Q{self._n}R{os.urandom(4).hex()}.testhost"
        info = "".join(sorted(set(letters + "Z")))
        name = f"{unique},S={len(raw)},W={len(crlf(raw))}:2,{info}"
        cctx = zstandard.ZstdCompressor(level=3, write_content_size=content_size)
        if content_size:
            data = cctx.compress(raw)
        else:  # a streamed frame without the content size in its header
            cobj = cctx.compressobj()
            data = cobj.compress(raw) + cobj.flush()
        assert data[:4] == ZSTD_MAGIC
        path = folder / "cur" / name
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
        kws = self.keywords.get(imap_name, [])
        flags = {LETTER_FLAGS[c] for c in info if c in LETTER_FLAGS}
        flags |= {kws[ord(c) - ord("a")] for c in info if c.islower()}
        planted = Planted(imap_name, path, raw, frozenset(flags), mtime)
        self.planted.append(planted)
        return planted


def _message(subject: str, body: str, *, eol: bytes = b"\n", extra: str = "") -> bytes:
    text = (f"From: Alice <alice@example.com>\nTo: Bob <bob@example.com>\n"
            f"Subject: {subject}\nDate: Mon, 01 Jan 2024 10:00:00 +0000\n"
            f"Message-ID: <{hashlib.sha1(subject.encode()).hexdigest()}@example.com>\n"
            f"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
            f"Content-Transfer-Encoding: 8bit\n{extra}\n{body}")
    return text.encode("utf-8").replace(b"\n", eol)


T0 = 1_704_103_200  # 2024-01-01 10:00:00 UTC
DAY = 86_400


def build_maildir(root: Path) -> MaildirBuilder:
    b = MaildirBuilder(root)
    inbox = b.folder("INBOX", "", ("$Label1", "work"))
    b.add("INBOX", inbox, _message("plain LF", "Hello.\nSecond line.\n"), "S", T0)
    b.add("INBOX", inbox, _message("CRLF, 8-bit: Grüße", "Grüße, ça va? 日本語\n", eol=b"\r\n"),
          "FRSab", T0 + DAY + 7)
    b.add("INBOX", inbox, _message("no final newline", "unread, no EOL at the end"), "",
          T0 + 2 * DAY + 11)
    b.add("INBOX", inbox, _message("draft, deleted", "x\n\n\n.\n"), "DTb", T0 + 3 * DAY,
          content_size=False)
    big = "".join(f"line {i:06d} " + "x" * 60 + "\n" for i in range(4000))  # ~290 KB
    b.add("INBOX", inbox, _message("big", big, extra="X-Big: yes\n"), "S", T0 + 4 * DAY)
    b.add("INBOX", inbox, _message("mixed EOL, bare CR", "a\r\nb\nc\rd\r\r\n"), "F",
          T0 + 5 * DAY)
    # Bytes that look like IMAP syntax inside the literal must not confuse the parser.
    b.add("INBOX", inbox, _message("tricky", 'x {12}\r\n) "q" BODY[] (\n* 1 FETCH (\n'), "R",
          T0 + 6 * DAY)
    b.add("INBOX", inbox, _message("NUL byte", "a\0b\n"), "S", T0 + 7 * DAY)

    archive = b.folder("Archive/2024", ".Archive.2024", ("archived",))
    b.add("Archive/2024", archive, _message("archived one", "old\n"), "RSa", T0 - DAY)
    b.add("Archive/2024", archive, _message("archived two", "older\n"), "", T0 - 2 * DAY)

    drafts = b.folder("Entwürfe", ".Entw&APw-rfe")
    b.add("Entwürfe", drafts, _message("Entwurf", "Schöne Grüße\n"), "D", T0 + 600)

    notes = b.folder("v1.2 notes", ".v1\\2e2 notes")
    b.add("v1.2 notes", notes, _message("notes", "1.2 released\n"), "FS", T0 + 1200)

    b.folder("Empty", ".Empty")
    return b


# Archive is listed as \Noselect: only .Archive.2024 exists on disk.
EXPECTED_FOLDERS = ["Archive", "Archive/2024", "Empty", "Entwürfe", "INBOX", "v1.2 notes"]

Snapshot = dict[str, tuple[int, int, int, int, int, str]]


def snapshot(root: Path) -> Snapshot:
    """Everything about a tree that serving it must not change."""
    out: Snapshot = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out[str(path.relative_to(root))] = (
            st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, digest)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def assert_served_exactly(served: dict[str, list[FetchedMessage]], planted: list[Planted]) -> None:
    for folder, messages in served.items():
        want = {imap_body(p.raw): p for p in planted if p.folder == folder}
        assert len(messages) == len(want), folder
        assert len({m.uid for m in messages}) == len(messages)
        for msg in messages:
            p = want.pop(msg.body, None)
            assert p is not None, f"{folder} UID {msg.uid}: body matches nothing planted"
            assert msg.flags == p.flags, (folder, p.path.name)
            assert msg.rfc822_size == p.vsize, (folder, p.path.name)
            assert msg.internaldate == p.mtime, (folder, p.path.name)
        assert not want, f"{folder}: not served: {[p.path.name for p in want.values()]}"


@pytest.fixture
def traversable_dir() -> Iterator[Path]:
    """A directory Dovecot's unprivileged processes can reach (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="axsync-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------
# against the real server
# ---------------------------------------------------------------------------


@pytest.mark.interop
@requires_dovecot
def test_serves_hand_built_maildir_from_a_copy(tmp_path: Path) -> None:
    built = build_maildir(tmp_path / "Maildir")
    before = snapshot(built.root)

    with DovecotServer(built.root, tmp_path / "dovecot") as dv:
        assert dv.maildir != built.root  # serves a copy
        imap = dv.imap()
        assert list_mailboxes(imap) == EXPECTED_FOLDERS
        assert list_mailboxes(imap, selectable_only=True) == [
            n for n in EXPECTED_FOLDERS if n != "Archive"]
        entries = {e.name: e for e in list_mailbox_entries(imap)}
        assert entries["Entwürfe"].wire_name == "Entw&APw-rfe"
        assert entries["v1.2 notes"].wire_name == "v1.2 notes"  # on disk: .v1\2e2 notes
        assert entries["Archive/2024"].delimiter == "/"
        assert not entries["Archive"].selectable

        served = {name: fetch_all(imap, name) for name in EXPECTED_FOLDERS if name != "Archive"}
        assert served["Empty"] == []
        assert_served_exactly(served, built.planted)
        # NUL is the one byte Dovecot does not serve as stored (0x80 instead).
        nul = next(m for m in served["INBOX"] if b"a\x80b" in m.body)
        assert nul.body != crlf(next(p.raw for p in built.planted if b"\0" in p.raw))
        # EXAMINE + BODY.PEEK[] changed nothing: a second session sees the same.
        again = fetch_all(dv.imap(), "INBOX")
        assert [(m.uid, m.flags, m.body) for m in again] == [
            (m.uid, m.flags, m.body) for m in served["INBOX"]]

        listed = dv.doveadm("mailbox", "list", "-u", dv.user).stdout.splitlines()
        assert sorted(listed) == EXPECTED_FOLDERS
        assert dv.log_problems() == []
        assert (dv.maildir / "dovecot-uidlist").exists()  # Dovecot wrote into the copy
        pid, port, copy_dir = dv.pid, dv.port, dv.maildir
        assert pid is not None

    assert not _alive(pid)
    assert session_members(pid) == []
    assert not _port_open(port)
    assert not copy_dir.exists()
    assert snapshot(built.root) == before  # the archive under test is untouched
    work = tmp_path / "dovecot"
    assert "zlib" in (work / "doveconf-n.txt").read_text()
    assert "starting up" in (work / "dovecot.log").read_text()


@pytest.mark.interop
@requires_dovecot
def test_stops_dovecot_when_the_test_fails(tmp_path: Path) -> None:
    built = build_maildir(tmp_path / "Maildir")
    with pytest.raises(RuntimeError, match="boom"), \
            DovecotServer(built.root, tmp_path / "dovecot") as dv:
        conn = dv.imap()
        pid, runtime = dv.pid, dv.maildir.parent
        assert pid is not None and _alive(pid)
        raise RuntimeError("boom")
    assert pid is not None
    assert not _alive(pid)
    assert session_members(pid) == []
    assert not runtime.exists()
    assert conn.state == "LOGOUT"
    dv.stop()  # idempotent


@pytest.mark.interop
@requires_dovecot
def test_in_place_mode_lets_dovecot_write_and_gives_ownership_back(
        tmp_path: Path, traversable_dir: Path) -> None:
    built = build_maildir(traversable_dir / "Maildir")
    target = next(p for p in built.planted if p.folder == "INBOX" and p.path.name.endswith(",SZ"))
    base = target.path.name.split(":2,")[0]

    with DovecotServer(built.root, tmp_path / "dovecot", copy=False) as dv:
        assert dv.maildir == built.root
        assert built.root.stat().st_uid == dv.uid != 0  # root-owned tree lent to axsynctest
        imap = dv.imap()
        uid = next(m.uid for m in fetch_all(imap, "INBOX") if m.body == imap_body(target.raw))
        imap.select("INBOX")
        typ, _ = imap.uid("STORE", str(uid), "+FLAGS", "(\\Flagged NewKw)")
        assert typ == "OK"
        imap.unselect()
        typ, status = imap.status("INBOX", "(UIDVALIDITY)")
        assert typ == "OK"
        assert dv.log_problems() == []

    # Dovecot renamed the file (same base name, F and keyword letter c added, Z kept),
    # left it compressed with its mtime, and appended the keyword.
    renamed = [p for p in (built.root / "cur").iterdir() if p.name.startswith(base + ":")]
    assert [p.name for p in renamed] == [f"{base}:2,FSZc"]
    assert renamed[0].read_bytes()[:4] == ZSTD_MAGIC
    assert renamed[0].stat().st_mtime == target.mtime
    assert (built.root / "dovecot-keywords").read_text().splitlines()[-1] == "2 NewKw"
    assert (built.root / "dovecot-uidlist").exists()
    # Every file, including the ones Dovecot created, belongs to root again.
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in built.root.rglob("*")} == {(0, 0)}

    # A second server on the same tree keeps UIDVALIDITY, UIDs and the new keyword.
    with DovecotServer(built.root, tmp_path / "dovecot2", copy=False) as dv:
        imap = dv.imap()
        assert imap.status("INBOX", "(UIDVALIDITY)") == (typ, status)
        again = {m.uid: m for m in fetch_all(imap, "INBOX")}
        assert again[uid].flags == {"\\Seen", "\\Flagged", "NewKw"}


@pytest.mark.interop
@requires_dovecot
def test_in_place_mode_refuses_an_unreachable_maildir(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    built = build_maildir(locked / "Maildir")
    before = snapshot(built.root)
    with pytest.raises(DovecotError, match="can't be traversed"):
        DovecotServer(built.root, tmp_path / "dovecot", copy=False).start()
    assert snapshot(built.root) == before


# ---------------------------------------------------------------------------
# the harness's own logic (no Dovecot needed)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "wire"), [
    ("Entwürfe", "Entw&APw-rfe"),
    ("A&B", "A&-B"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 5.1.3
    ("plain name", "plain name"),
])
def test_mutf7(name: str, wire: str) -> None:
    assert mutf7_encode(name) == wire
    assert mutf7_decode(wire) == name


def test_mutf7_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        mutf7_decode("Entw&APw")


def test_imap_quote() -> None:
    assert imap_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert imap_quote("Entwürfe") == '"Entw&APw-rfe"'


def test_imap_body_and_crlf() -> None:
    raw = b"a\nb\r\nc\rd\0\n"
    assert crlf(raw) == b"a\r\nb\r\nc\rd\0\r\n"
    assert imap_body(raw) == b"a\r\nb\r\nc\rd\x80\r\n"


def test_parse_fetch_handles_literals_in_any_position() -> None:
    # Shaped like imaplib's output: a literal splits a response into (head, literal)
    # plus a trailer; an unsolicited FLAGS update sits in between.
    data: list[object] = [
        (b'1 (UID 7 BODY[] {12}', b'he)llo {3}\r\n'),
        b' FLAGS (\\Seen $x) INTERNALDATE " 2-Jan-2024 10:00:00 +0100" RFC822.SIZE 12)',
        b"2 (FLAGS (\\Seen))",
        (b"3 (UID 9 RFC822.SIZE 0 BODY[] {0}", b""),
        b")",
        b'2 (UID 8 BODY[HEADER.FIELDS (FROM)] "x" BODY[] ~{2}\r\nab)',
    ]
    parsed = _parse_fetch(data)
    assert parsed[1]["BODY[]"] == b'he)llo {3}\r\n'
    assert parsed[1]["FLAGS"] == [b"\\Seen", b"$x"]
    assert parsed[1]["INTERNALDATE"] == b" 2-Jan-2024 10:00:00 +0100"
    assert parsed[2]["FLAGS"] == [b"\\Seen"] and parsed[2]["BODY[]"] == b"ab"
    assert parsed[2]["BODY[HEADER.FIELDS (FROM)]"] == b"x"
    assert parsed[3]["BODY[]"] == b"" and parsed[3]["UID"] == b"9"


def test_parse_internaldate() -> None:
    want = dt.datetime(2024, 1, 2, 9, 0, tzinfo=dt.UTC).timestamp()
    assert _parse_internaldate(" 2-Jan-2024 10:00:00 +0100") == want
    assert _parse_internaldate("02-Jan-2024 04:00:00 -0500") == want


def test_interop_required_in_ci_or_after_setup_system(tmp_path: Path) -> None:
    no_stamp = tmp_path / "missing"
    stamp = tmp_path / "setup-system.ok"
    stamp.write_text("ok\n")
    assert interop_required({"CI": "true"}, no_stamp)
    assert interop_required({"CI": "1"}, no_stamp)
    assert not interop_required({}, no_stamp)
    assert not interop_required({"CI": "false"}, no_stamp)
    assert not interop_required({"CI": "0"}, no_stamp)
    assert interop_required({}, stamp)


def test_skip_policy(tmp_path: Path) -> None:
    no_stamp = tmp_path / "missing"
    stamp = tmp_path / "setup-system.ok"
    stamp.write_text("ok\n")
    gone = ["the dovecot binary is not installed"]
    assert skip_reason([], True, {}, no_stamp) is None  # everything there: run
    # Outside CI: skip without Dovecot, or without root.
    reason = skip_reason(gone, True, {}, no_stamp)
    assert reason is not None and "dovecot binary" in reason and "setup-system" in reason
    reason = skip_reason([], False, {}, no_stamp)
    assert reason is not None and "not root" in reason
    assert skip_reason([], False, {}, stamp) is not None
    # In CI, or as root after setup-system succeeded once here: never skip, fail.
    assert skip_reason(gone, True, {"CI": "true"}, no_stamp) is None
    assert skip_reason(gone, False, {"CI": "1"}, no_stamp) is None
    assert skip_reason(gone, True, {}, stamp) is None
