"""``axsync export --format maildir`` read by a real indexer: Debian's notmuch indexes the
exported plain Maildir++ and finds messages by subject, sender, folder and flag."""

from __future__ import annotations

import os
import shutil
import subprocess
from email.utils import parseaddr
from pathlib import Path

import pytest
from archive.conftest import Built, build_archive, corpus_mails, sample_mails

from axsync.archive import message as mm
from axsync.cli import main

from .dovecot import interop_required

pytestmark = pytest.mark.interop


def _notmuch() -> str:
    found = shutil.which("notmuch")
    if found:
        return found
    reason = "notmuch is not installed (Debian package notmuch; run ./.ci/setup-system)"
    if interop_required():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Path, dict[str, str]]:
    notmuch = _notmuch()
    mails, roles = corpus_mails(200, seed=5)
    samples = sample_mails()
    work = tmp_path_factory.mktemp("notmuch")
    built = build_archive(work, [*mails, *samples.values()], roles=roles)
    dest = work / "export"
    try:
        main(["--config", str(built.config_path), "export", "test", str(dest), "--format", "maildir"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    config = work / "notmuch-config"
    config.write_text(
        f"[database]\npath={dest}\n[user]\nname=Alex Morgan\nprimary_email=alex.morgan@example.com\n"
        "[new]\ntags=inbox;\nignore=dovecot-keywords;maildirfolder;subscriptions\n"
        "[maildir]\nsynchronize_flags=true\n"
    )
    env = {**os.environ, "NOTMUCH_CONFIG": str(config)}
    done = subprocess.run([notmuch, "new", "--quiet"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return built, dest, {"NOTMUCH_CONFIG": str(config), "BIN": notmuch}


def notmuch(env: dict[str, str], *args: str) -> list[str]:
    done = subprocess.run([env["BIN"], *args], env={**os.environ, "NOTMUCH_CONFIG": env["NOTMUCH_CONFIG"]},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_every_exported_file_is_indexed(exported: tuple[Built, Path, dict[str, str]]) -> None:
    _built, dest, env = exported
    files = [p for p in dest.rglob("*") if p.is_file() and p.parent.name == "cur"]
    alive = sum(m.state != "tombstoned" for m in sample_mails().values()) + 200
    assert len(files) == alive
    assert int(notmuch(env, "count", "--output=files", "*")[0]) == alive


def test_found_by_subject_and_sender(exported: tuple[Built, Path, dict[str, str]]) -> None:
    _built, dest, env = exported
    (path,) = notmuch(env, "search", "--output=files", 'subject:"Kiwi harvest report"')
    assert Path(path).parent == dest / "cur" and b"The harvest went well." in Path(path).read_bytes()
    (hostile,) = notmuch(env, "search", "--output=files", "from:mallory@evil.example")
    assert b"Hostile body marker" in Path(hostile).read_bytes()
    assert notmuch(env, "search", "--output=files", 'subject:"Quarterly budget review"')
    for mail in corpus_mails(200, seed=5)[0][:20]:  # generated mail, any sender and charset
        msg = mm.parse(mail.raw)
        addr = parseaddr(mm.header(msg, "from"))[1]
        if not addr or not mm.header(msg, "message-id"):
            continue
        found = notmuch(env, "search", "--output=files", f"from:{addr}")
        assert any(Path(p).read_bytes() == mail.raw for p in found), addr


def test_folders_and_flags_carry_over(exported: tuple[Built, Path, dict[str, str]]) -> None:
    _built, _dest, env = exported
    archived = notmuch(env, "search", "--output=files", "folder:.Archive.2024")
    assert any(b"Old archived note" in Path(p).read_bytes() for p in archived)
    flagged = notmuch(env, "search", "--output=files", "tag:flagged")
    assert any(b"Quarterly budget review" in Path(p).read_bytes() for p in flagged)
    unread = notmuch(env, "search", "--output=files", 'tag:unread and subject:"Old archived note"')
    assert len(unread) == 1
    read = notmuch(env, "search", "--output=files", 'tag:unread and subject:"Quarterly budget review"')
    assert read == []
