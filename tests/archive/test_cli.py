"""The archive commands end to end through ``axsync.cli.main``: search, show, reindex."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from archive.conftest import Built, build_archive, sample_mails
from axsync.cli import main


def run(built: Built, *args: str) -> int:
    try:
        main(["--config", str(built.config_path), *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_search_json_lines(sample: Built, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(sample, "search", "test", "--json", "subject:thread", "-folder:Sent") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {h["id"] for h in lines} == {str(sample.names["t1"]), str(sample.names["t3"])}
    assert set(lines[0]) >= {"id", "mail_id", "folder", "date", "from", "subject", "snippet",
                             "labels", "flags"}


def test_search_text_paging_and_errors(sample: Built, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(sample, "search", "test", "", "--limit", "2") == 0
    out, err = capsys.readouterr()
    assert out.count("\n") >= 2 and "--page 2" in err
    assert run(sample, "search", "test", "(broken") == 2
    assert "unbalanced parenthesis" in capsys.readouterr().err
    assert run(sample, "search", "nobody", "x") == 2
    assert run(sample, "search", "test", "--jsn", "x") == 2
    assert "no such option: --jsn" in capsys.readouterr().err


def test_show_text_and_json(sample: Built, capsys: pytest.CaptureFixture[str]) -> None:
    uid = sample.names["hostile"]
    assert run(sample, "show", "test", str(uid)) == 0
    out = capsys.readouterr().out
    assert "Subject:  Hostile <script>alert(1)</script> & friends" in out
    assert "[4] report.pdf (application/pdf" in out and "[5] ../../../etc/passwd" in out
    assert "Flags:    -" in out and "Hostile body marker" in out
    mail_id = f"MAIL{list(sample.names).index('budget'):05d}x"
    assert run(sample, "show", "test", mail_id, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["id"] == str(sample.names["budget"]) and data["mail_id"] == mail_id
    assert data["labels"] == ["work"] and data["flags"] == "FS" and data["cc"].startswith("Carol")
    assert data["conversation_id"] and data["text"].startswith("The budget meeting")


def test_show_raw_is_the_exact_archived_bytes(sample: Built, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert run(sample, "show", "test", str(sample.names["japanese"]), "--raw") == 0
    assert capsysbinary.readouterr().out == sample_mails()["japanese"].raw


def test_show_thread_from_references(sample: Built, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(sample, "show", "test", str(sample.names["t2"]), "--thread") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].startswith("*")
    assert run(sample, "show", "test", str(sample.names["t1"]), "--thread", "--json") == 0
    ids = [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()]
    assert ids == [str(sample.names[n]) for n in ("t1", "t2", "t3")]


def test_show_errors(sample: Built, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(sample, "show", "test", "999999") == 2
    assert run(sample, "show", "test", str(sample.names["gone"])) == 2
    assert "removed" in capsys.readouterr().err
    assert run(sample, "show", "test", "1", "--raw", "--json") == 2


def test_show_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    built = build_archive(tmp_path, list(sample_mails().values())[:1])
    for path in (built.maildir / "cur").iterdir():
        os.unlink(path)
    assert run(built, "show", "test", str(built.uids[0])) == 5
    assert "missing" in capsys.readouterr().err


def test_reindex(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    built = build_archive(tmp_path, list(sample_mails().values()), index=False)
    assert run(built, "search", "test", "zurich") == 0
    assert "not indexed yet" in capsys.readouterr().err
    assert run(built, "reindex", "test", "--catch-up") == 0
    assert "indexed 14 messages" in capsys.readouterr().out
    assert run(built, "reindex", "test") == 0
    assert "indexed 14 messages" in capsys.readouterr().out
    assert run(built, "search", "test", "--json", "zurich") == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    (built.maildir / "axsync.sqlite").unlink()
    assert run(built, "reindex", "test") == 5
