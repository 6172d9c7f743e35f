"""``axsync export``: mboxrd, eml and Maildir copies, safe names, never outside DEST."""

from __future__ import annotations

import io
import mailbox
import os
import re
from pathlib import Path

import pytest

from archive.conftest import Built, build_archive, sample_mails
from axsync.archive import mbox
from axsync.cli import main
from axsync.store.names import parse_name

FROM_LINE = re.compile(rb"^From \S+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$")


def run(built: Built, *args: str) -> int:
    try:
        main(["--config", str(built.config_path), *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def inside(root: Path) -> list[Path]:
    files = [p for p in root.rglob("*") if p.is_file()]
    real = os.path.realpath(root)
    assert all(os.path.realpath(p).startswith(real + os.sep) for p in files)
    return files


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def test_mbox_is_mboxrd(sample: Built, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    assert run(sample, "export", "test", str(dest), "--format", "mbox") == 0
    names = {str(p.relative_to(dest)) for p in inside(dest)}
    assert names == {"INBOX.mbox", "Sent.mbox", "Archive/2024.mbox", "a_b.mbox", "_.mbox"}
    data = (dest / "INBOX.mbox").read_bytes()
    starts = [line for line in data.split(b"\n") if line.startswith(b"From ")]
    assert len(starts) == 10 and all(FROM_LINE.match(s) for s in starts)
    assert b"\r" not in data
    assert b"\n>From here on\n>>From quoted\n>>>From twice\n From indented\nFromage\n" in data
    box = mailbox.mbox(dest / "INBOX.mbox")
    by_subject = {str(m["subject"]): m for m in box}
    budget = by_subject["Quarterly budget review"]
    assert budget.get_from().startswith("alice@example.com ")
    assert (budget["status"], budget["x-status"], budget["x-keywords"]) == ("RO", "F", "work")
    assert by_subject["Hostile <script>alert(1)</script> & friends"]["status"] == "O"
    assert "Gone for good" not in by_subject and "Kept after server deletion" in by_subject


def test_mbox_messages_round_trip(sample: Built, tmp_path: Path) -> None:
    """Unquoting one '>' and dropping our status headers gives back every message."""
    dest = tmp_path / "out"
    assert run(sample, "export", "test", str(dest), "--format", "mbox", "--folder", "INBOX") == 0
    text = (dest / "INBOX.mbox").read_bytes()
    chunks = re.split(rb"(?m)^From \S+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n", text)[1:]
    got = set()
    for chunk in chunks:
        body = re.sub(rb"(?m)^>(>*From )", rb"\1", chunk[:-1])  # one blank line separates
        body = re.sub(rb"(?m)^(Status|X-Status|X-Keywords): .*\n", b"", body)
        got.add(body)
    mails = sample_mails()
    inbox = {n for n, m in mails.items() if m.folder == ("INBOX",) and m.state != "tombstoned"}
    assert got == {lf(mails[n].raw) for n in inbox}


def test_mbox_never_overwrites(sample: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "INBOX.mbox").write_bytes(b"precious")
    assert run(sample, "export", "test", str(dest), "--format", "mbox") == 2
    assert "not overwriting" in capsys.readouterr().err
    assert (dest / "INBOX.mbox").read_bytes() == b"precious"


def test_mbox_long_lines_quoted_only_at_line_starts() -> None:
    piece = 1024 * 1024
    line = b"x" * (piece - 1) + b"From not a line start\r\n"
    raw = b"Subject: long\r\n\r\n" + line + b"From the start\r\n" + b"y" * (3 * piece)
    out = io.BytesIO()
    mbox.write_message(out, io.BytesIO(raw), 0, "", [])
    data = out.getvalue()
    assert data.startswith(b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: long\nStatus: O\n\n")
    assert b"x" * (piece - 1) + b"From not a line start\n>From the start\n" in data
    assert data.endswith(b"y\n\n") and len(data) < len(raw) + 200


def test_eml_tree_exact_bytes_and_mtimes(sample: Built, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    assert run(sample, "export", "test", str(dest), "--format", "eml") == 0
    files = inside(dest)
    mails = sample_mails()
    alive = [m for m in mails.values() if m.state != "tombstoned"]
    assert sorted(f.read_bytes() for f in files) == sorted(m.raw for m in alive)
    assert {f.parent.relative_to(dest).as_posix() for f in files} == {
        "INBOX", "Sent", "Archive/2024", "a_b", "_"}
    budget = next(f for f in files if "Quarterly-budget-review" in f.name)
    assert budget.stat().st_mtime == mails["budget"].date
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d_\d{6}_\d+_[\w-]+\.eml", f.name) for f in files)
    assert run(sample, "export", "test", str(dest), "--format", "eml") == 0  # again: skipped
    assert len(inside(dest)) == len(files)


def test_maildir_is_plain_and_faithful(sample: Built, tmp_path: Path) -> None:
    dest = tmp_path / "md"
    assert run(sample, "export", "test", str(dest), "--format", "maildir") == 0
    for folder in ("", ".Sent", ".Archive.2024"):
        assert all((dest / folder / sub).is_dir() for sub in ("cur", "new", "tmp"))
    assert (dest / ".Sent" / "maildirfolder").is_file()
    keywords = (dest / ".Archive.2024" / "dovecot-keywords").read_text()
    assert sorted(keywords.split()[1::2]) == ["To~20Do", "work"]
    files = list(dest.rglob("cur/*"))
    mails = sample_mails()
    assert sorted(f.read_bytes() for f in files) == sorted(
        m.raw for m in mails.values() if m.state != "tombstoned")
    for f in files:
        parsed = parse_name(f.name)
        assert parsed.size == f.stat().st_size and "Z" not in parsed.flags
    archived = next(iter((dest / ".Archive.2024" / "cur").iterdir()))
    assert parse_name(archived.name).flags == "ab"  # unread, two labels
    assert archived.stat().st_mtime == mails["archived"].date
    budget = next(f for f in (dest / "cur").iterdir() if b"Quarterly budget" in f.read_bytes())
    assert parse_name(budget.name).flags.startswith("FS")
    assert not list(dest.rglob("tmp/*"))
    assert run(sample, "export", "test", str(dest), "--format", "maildir") == 0
    assert len(list(dest.rglob("cur/*"))) == len(files)


def test_folder_option(sample: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "one"
    assert run(sample, "export", "test", str(dest), "--format", "eml", "--folder", "Archive/2024") == 0
    assert [p.parent.relative_to(dest).as_posix() for p in inside(dest)] == ["Archive/2024"]
    assert run(sample, "export", "test", str(tmp_path / "x"), "--format", "eml", "--folder", "Nope") == 2
    assert "no folder 'Nope'" in capsys.readouterr().err


def test_missing_files_are_reported_and_the_rest_exported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    built = build_archive(tmp_path, list(sample_mails().values())[:2])
    victim = next((built.maildir / "cur").iterdir())
    victim.unlink()
    assert run(built, "export", "test", str(tmp_path / "out"), "--format", "eml") == 1
    assert "missing file" in capsys.readouterr().err
    assert len(inside(tmp_path / "out")) == 1


def test_never_writes_through_a_symlink(sample: Built, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "INBOX").symlink_to(outside)
    assert run(sample, "export", "test", str(dest), "--format", "eml") == 5
    assert list(outside.iterdir()) == []
