"""``axsync restore`` into a real Dovecot 2.3 on loopback.

The source archive is built here with the store writer and the StateDB (realistic mail
from ``axsync.fake.corpus.generate`` plus a few awkward messages: a NUL byte, a bare CR,
no Message-ID, no final newline). Dovecot starts on an EMPTY Maildir; every restored
message is compared byte for byte (as Dovecot serves it: LF → CRLF, NUL → 0x80), with its
flags, keywords, RFC822.SIZE and INTERNALDATE.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from restore.archive import T0, Archive, add_message, build_archive, set_history_time

from axsync.cli import main
from axsync.fake.corpus import Corpus, CorpusMessage, generate
from axsync.restore import executor
from axsync.restore.journal import RestoreLog
from axsync.store import is_atom, label_to_atom

from .dovecot import DovecotServer, _free_port, crlf, fetch_all, imap_body, requires_dovecot

pytestmark = [pytest.mark.interop, requires_dovecot]

ODD = [
    CorpusMessage(("INBOX",), b"Subject: nul\nMessage-ID: <nul@axsync.test>\n\nbefore\0after\n",
                  1_650_000_000, unread=False),
    CorpusMessage(("INBOX",), b"Subject: cr\r\nMessage-ID: <cr@axsync.test>\r\n\r\na\rb\r\n",
                  1_650_000_100, labels=("To Do",)),
    CorpusMessage(("Archive",), b"Subject: no id\n\nno message-id, no final newline",
                  1_650_000_200, flagged=True, refw="fw"),
    CorpusMessage(("Archive",), b"Subject: no id\n\nno message-id, no final newline",
                  1_650_000_200, flagged=True, refw="fw"),  # an exact duplicate: kept twice
]


def _corpus() -> Corpus:
    corpus = generate(11, 90, big_messages=1)
    corpus.messages.extend(ODD)
    corpus.labels.extend(n for m in ODD for n in m.labels if n not in corpus.labels)
    return corpus


def expected_folder(path: tuple[str, ...]) -> str:
    if path == ("INBOX",):
        return "INBOX"
    return "/".join(c.replace("/", "\u2215").replace("\t", "\u2409") for c in path)


def expected_flags(msg: CorpusMessage) -> frozenset[str]:
    flags = {f for f, on in (("\\Seen", not msg.unread), ("\\Flagged", msg.flagged),
                             ("\\Draft", msg.draft), ("\\Answered", "re" in msg.refw),
                             ("$Forwarded", "fw" in msg.refw)) if on}
    flags |= {n if is_atom(n) else label_to_atom(n) for n in msg.labels}
    return frozenset(flags)


Seen = tuple[bytes, frozenset[str], int, int]


def expected(messages: list[CorpusMessage]) -> dict[str, Counter[Seen]]:
    out: dict[str, Counter[Seen]] = defaultdict(Counter)
    for m in messages:
        out[expected_folder(m.folder)][
            (imap_body(m.raw), expected_flags(m), m.date, len(crlf(m.raw)))] += 1
    return out


def served(dv: DovecotServer, folders: list[str]) -> dict[str, Counter[Seen]]:
    imap = dv.imap()
    out: dict[str, Counter[Seen]] = {}
    for name in folders:
        out[name] = Counter((m.body, frozenset(m.flags), m.internaldate, m.rfc822_size)
                            for m in fetch_all(imap, name))
    imap.logout()
    return out


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    arc = build_archive(tmp_path / "archive", _corpus())
    yield arc
    arc.db.close()


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[DovecotServer]:
    empty = tmp_path / "target"
    for sub in ("cur", "new", "tmp"):
        (empty / sub).mkdir(parents=True)
    with DovecotServer(empty, tmp_path / "dovecot") as dv:
        yield dv


def _config(arc: Archive) -> Path:
    path = arc.root.parent / "config.toml"
    path.write_text(f'[accounts.t]\nserver = "https://axigen.invalid"\n'
                    f'username = "alice@example.com"\nmaildir = "{arc.root}"\nmode = "backup"\n')
    return path


def _url(dv: DovecotServer) -> str:
    return f"imap://{dv.user}@127.0.0.1:{dv.port}"


def run_main(arc: Archive, dv: DovecotServer, monkeypatch: pytest.MonkeyPatch,
             *args: str) -> int:
    monkeypatch.setenv("AXSYNC_IMAP_PASSWORD", dv.password)
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(_config(arc)), "restore", "t", "--imap", _url(dv), *args])
    return int(exc.value.code or 0)


def run(arc: Archive, dv: DovecotServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, dict[str, object]]:
    monkeypatch.setenv("AXSYNC_IMAP_PASSWORD", dv.password)
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(_config(arc)), "restore", "t", "--imap", _url(dv), "--json", *args])
    out = capsys.readouterr().out
    assert dv.password not in out
    return int(exc.value.code or 0), json.loads(out)


def test_restore_exact_then_idempotent(archive: Archive, dovecot: DovecotServer,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = _corpus()
    monkeypatch.setattr(executor, "MEMORY_LIMIT", 512 * 1024)  # stream the big message
    code, report = run(archive, dovecot, capsys, monkeypatch)
    assert code == 0, report
    total = len(corpus.messages)
    assert report["appended"] == total and report["failed"] == 0
    want = expected(corpus.messages)
    assert report["folders_created"] == len(want) - 1  # INBOX exists
    assert served(dovecot, sorted(want)) == want

    code, report = run(archive, dovecot, capsys, monkeypatch)  # again: nothing to do
    assert (code, report["appended"], report["skipped_existing"]) == (0, 0, total)

    archive.db.execute("DELETE FROM restore_log")  # the log is lost: the listing suffices
    code, report = run(archive, dovecot, capsys, monkeypatch)
    assert (code, report["appended"], report["skipped_existing"]) == (0, 0, total)

    imap = dovecot.imap()  # a mailbox deleted and re-created: its log rows are stale
    assert imap.delete('"Archive"')[0] == "OK"
    assert imap.create('"Archive"')[0] == "OK"
    code, report = run(archive, dovecot, capsys, monkeypatch)
    assert (code, report["appended"]) == (0, sum(want["Archive"].values()))
    assert served(dovecot, sorted(want)) == want
    assert dovecot.log_problems() == []


def test_killed_restore_resumes_without_duplicates(archive: Archive, dovecot: DovecotServer,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = _corpus()
    total = len(corpus.messages)
    # A real SIGKILL of the CLI process after some APPENDs (slowed down so it is mid-run).
    script = (
        "import sys, time\n"
        "from axsync.restore.journal import RestoreLog\n"
        "orig = RestoreLog.record\n"
        "def slow(self, *a, **k):\n"
        "    orig(self, *a, **k); time.sleep(0.05)\n"
        "RestoreLog.record = slow\n"
        "from axsync.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    env = {**os.environ, "AXSYNC_IMAP_PASSWORD": dovecot.password}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "--config", str(_config(archive)), "restore", "t",
         "--imap", _url(dovecot), "--json"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    logged = 0
    with sqlite3.connect(archive.db_path, timeout=10) as conn:
        while logged < 15 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
            logged = conn.execute("SELECT count(*) FROM restore_log").fetchone()[0]
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    assert 15 <= logged < total

    code, report = run(archive, dovecot, capsys, monkeypatch)
    assert code == 0, report
    assert report["appended"] + report["skipped_existing"] == total
    assert report["skipped_existing"] >= logged
    want = expected(corpus.messages)
    assert served(dovecot, sorted(want)) == want

    # In-process: APPEND confirmed, then killed before the log row: still no duplicate.
    archive.db.execute("DELETE FROM restore_log")
    imap = dovecot.imap()
    assert imap.delete('"Sent"')[0] == "OK"
    calls = {"n": 0}
    orig = RestoreLog.record

    def crash(self: RestoreLog, *a: object, **k: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed between APPEND and log")
        orig(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(RestoreLog, "record", crash)
    assert run_main(archive, dovecot, monkeypatch) == 5
    assert "killed between APPEND and log" in capsys.readouterr().err
    monkeypatch.setattr(RestoreLog, "record", orig)
    code, report = run(archive, dovecot, capsys, monkeypatch)
    assert (code, report["appended"]) == (0, sum(want["Sent"].values()) - 3)
    assert served(dovecot, sorted(want)) == want


def test_as_of_restores_deleted_message_and_old_flags(archive: Archive, dovecot: DovecotServer,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = _corpus()
    db = archive.db
    inbox = [(uid, m) for uid, m in zip(archive.uids, corpus.messages, strict=True)
             if m.folder == ("INBOX",)]
    t1 = T0 + 10 * 86400
    (a, ma), (b, _mb), (c, _mc), (d, _md) = inbox[:4]
    row_a, row_c, row_d = db.message_by_uid(a), db.message_by_uid(c), db.message_by_uid(d)
    assert row_a and row_c and row_d
    with db.transaction():
        toggled = set(row_a.flags) ^ {"S", "F"}
        db.update_message(a, flags="".join(sorted(toggled)))
        set_history_time(db, a, t1)  # seen and flagged toggled on day 10
        db.update_message(b, state="deleted", mail_id=None, deleted_at=t1)
        set_history_time(db, b, t1)  # deleted on the server on day 10 (backup: file kept)
        archive.store.delete(row_c.dirname, row_c.filename)
        db.update_message(c, state="tombstoned", mail_id=None, deleted_at=t1)
        set_history_time(db, c, t1)  # gone and its file removed (mirror)
        moved = archive.store.move(row_d.dirname, row_d.filename, archive.dirnames[("Sent",)])
        db.update_message(d, folder_id=archive.folder_ids[("Sent",)],
                          dirname=archive.dirnames[("Sent",)], filename=moved)
        set_history_time(db, d, t1)  # moved to Sent on day 10
        e = add_message(archive, CorpusMessage(("INBOX",), b"Subject: later\n\nnew\n", t1))
        set_history_time(db, e, t1)  # arrived on day 10

    code, report = run(archive, dovecot, capsys, monkeypatch, "--folder", "INBOX",
                       "--as-of", "2023-11-15")
    assert code == 1  # the tombstoned message could not be restored: listed
    assert report["unrestorable"] == 1 and report["failed"] == 1
    assert f"uid {c} " in json.dumps(report["failures"])
    want_msgs = [m for uid, m in inbox if uid != c]
    want = expected(want_msgs)
    assert set(want) == {"INBOX"}
    got = served(dovecot, ["INBOX"])
    assert got == want  # includes b (deleted later), d (moved later), a with its old flags
    assert expected_flags(ma) in {k[1] for k in got["INBOX"]}

    # Today's INBOX: only e is new there (restore adds messages; it never changes the flags
    # of a message that is already on the target, nor removes b and d).
    code, report = run(archive, dovecot, capsys, monkeypatch, "--folder", "INBOX")
    assert (code, report["appended"]) == (0, 1)


def _cert(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    key.chmod(0o644)
    return cert, key


def test_tls_verification_login_and_unreachable(tmp_path: Path, archive: Archive,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _cert(tmp_path)
    imaps = _free_port()
    extra = (f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\n"
             "service imap-login {\n  inet_listener imaps {\n    address = 127.0.0.1\n"
             f"    port = {imaps}\n    ssl = yes\n  }}\n}}\n")
    empty = tmp_path / "target"
    for sub in ("cur", "new", "tmp"):
        (empty / sub).mkdir(parents=True)
    config = _config(archive)
    with DovecotServer(empty, tmp_path / "dovecot", extra_config=extra) as dv:
        def cli(url: str, *args: str, password: str = dv.password) -> tuple[int, str, str]:
            monkeypatch.setenv("AXSYNC_IMAP_PASSWORD", password)
            with pytest.raises(SystemExit) as exc:
                main(["--config", str(config), "restore", "t", "--imap", url, "--folder",
                      "Archive", *args])
            out, err = capsys.readouterr()
            assert dv.password not in out + err
            return int(exc.value.code or 0), out, err

        starttls = f"imap://{dv.user}@127.0.0.1:{dv.port}"
        implicit = f"imaps://{dv.user}@127.0.0.1:{imaps}"
        code, _out, err = cli(starttls)  # self-signed: refused by default
        assert code == 5 and "certificate" in err
        code, _out, err = cli(implicit)
        assert code == 5 and "certificate" in err
        code, out, _err = cli(starttls, "--ca-bundle", str(cert))
        assert code == 0 and "appended" in out
        code, out, _err = cli(implicit, "--ca-bundle", str(cert))
        assert code == 0 and "appended 0 " in out
        code, out, _err = cli(implicit, "--insecure")
        assert code == 0
        code, _out, err = cli(implicit, "--ca-bundle", str(cert), password="wrong-password")
        assert code == 3 and "refused" in err
    code, _out, err = cli(f"imaps://u@127.0.0.1:{_free_port()}")
    assert code == 5 and "cannot connect" in err
