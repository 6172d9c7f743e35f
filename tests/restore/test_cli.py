"""``axsync restore`` command line: usage errors exit 2, the JSON summary, dry run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from axsync.cli import main
from axsync.fake.corpus import Corpus, CorpusFolder, CorpusMessage

from .archive import T0, build_archive
from .fakeimap import FakeImap


def _setup(tmp_path: Path) -> Path:
    corpus = Corpus([CorpusFolder(("INBOX",))], [],
                    [CorpusMessage(("INBOX",), b"Message-ID: <1@x>\n\nhi\n", T0)])
    arc = build_archive(tmp_path / "arc", corpus)
    arc.db.close()
    config = tmp_path / "config.toml"
    config.write_text(f'[accounts.t]\nserver = "https://axigen.invalid"\nusername = "a@b"\n'
                      f'maildir = "{arc.root}"\n')
    return config


def cli(config: Path, *args: str) -> int:
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(config), "restore", *args])
    return int(exc.value.code or 0)


@pytest.mark.parametrize("args, message", [
    (["t", "--imap", "imaps://u:pw@example.com"], "password in the URL"),
    (["t", "--imap", "imaps://u@example.com", "--insecure"], "loopback"),
    (["t", "--imap", "imaps://u@example.com", "--as-of", "yesterday"], "ISO 8601"),
    (["nope", "--imap", "imaps://u@example.com"], "no account named"),
    (["t"], "Missing option '--imap'"),
])
def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch, args: list[str], message: str) -> None:
    monkeypatch.setenv("AXSYNC_IMAP_PASSWORD", "pw")
    assert cli(_setup(tmp_path), *args) == 2
    assert message in capsys.readouterr().err


def test_missing_password_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AXSYNC_IMAP_PASSWORD", raising=False)
    assert cli(_setup(tmp_path), "t", "--imap", "imaps://u@example.com") == 2
    assert "AXSYNC_IMAP_PASSWORD" in capsys.readouterr().err


def test_dry_run_then_json_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    config = _setup(tmp_path)
    with FakeImap() as srv:
        monkeypatch.delenv("AXSYNC_IMAP_PASSWORD", raising=False)
        pw_file = tmp_path / "pw"
        pw_file.write_text(srv.state.password + "\n")
        url = f"imap://u@127.0.0.1:{srv.port}"
        common = ["t", "--imap", url, "--imap-password-command", f"cat {pw_file}"]
        assert cli(config, *common, "--dry-run") == 0
        out = capsys.readouterr().out
        assert "plan (dry run" in out and "INBOX: append 1" in out
        assert srv.state.boxes["INBOX"].messages == []
        assert cli(config, *common, "--json") == 0
        report = json.loads(capsys.readouterr().out)
        assert {k: report[k] for k in ("appended", "skipped_existing", "failed",
                                       "folders_created", "bytes")} == {
            "appended": 1, "skipped_existing": 0, "failed": 0, "folders_created": 0,
            "bytes": len(b"Message-ID: <1@x>\r\n\r\nhi\r\n")}
        assert isinstance(report["seconds"], float)
        assert srv.state.password not in json.dumps(report)
