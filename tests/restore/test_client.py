"""Restore against a scripted IMAP server unlike Dovecot: no LITERAL+, no UIDPLUS, an
``INBOX.`` namespace with ``.`` separator, limited PERMANENTFLAGS, no STARTTLS."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from axsync.errors import AuthError, ServerUnreachable
from axsync.fake.corpus import Corpus, CorpusFolder, CorpusMessage
from axsync.restore import RestoreOptions, parse_imap_url, restore
from axsync.restore import client as client_module
from axsync.restore.client import ImapClient
from axsync.restore.wire import mutf7_decode

from .archive import T0, build_archive
from .fakeimap import FakeImap, State


def _corpus() -> Corpus:
    folders = [CorpusFolder(("INBOX",)), CorpusFolder(("Archive", "v1.2")), CorpusFolder(("Sent",))]
    msgs = [
        CorpusMessage(("INBOX",), b"Message-ID: <1@x>\nSubject: a\n\nbody\n", T0, unread=False,
                      labels=("work",)),
        CorpusMessage(("Archive", "v1.2"), b"Subject: no id\n\nx\n", T0, refw="fw"),
        CorpusMessage(("Sent",), b"Message-ID: <3@x>\r\n\r\nbin\0ary\r\n", T0, flagged=True),
    ]
    return Corpus(folders, ["work"], msgs)


def test_restore_into_a_plain_server(tmp_path: Path) -> None:
    arc = build_archive(tmp_path / "a", _corpus())
    with FakeImap() as srv:
        target = parse_imap_url(f"imap://u@127.0.0.1:{srv.port}")
        rep = restore(arc.db, arc.store, target, srv.state.password, account="t",
                      options=RestoreOptions())
        assert rep.exit_code == 0, rep.to_json()
        assert (rep.appended, rep.folders_created) == (3, 2)
        boxes = {mutf7_decode(name): box for name, box in srv.state.boxes.items()}
        assert sorted(boxes) == ["INBOX", "INBOX.Archive.v1\u20242", "INBOX.Sent"]
        (_uid, flags, date, data), = boxes["INBOX"].messages
        assert flags == ("\\Seen",) and date == "14-Nov-2023 22:13:20 +0000"
        assert data == b"Message-ID: <1@x>\r\nSubject: a\r\n\r\nbody\r\n"
        assert boxes["INBOX.Archive.v1\u20242"].messages[0][1] == ("$Forwarded",)
        assert boxes["INBOX.Sent"].messages[0][3] == b"Message-ID: <3@x>\r\n\r\nbin\0ary\r\n"
        assert rep.notes == ["keywords the target cannot store were left out: work"]
        # no LITERAL+: every literal was synchronizing; no BINARY: no ~{n}
        assert all(m.startswith(b"{") and not m.endswith(b"+}") for m in srv.state.literal_markers)
        rows = arc.db.execute("SELECT folder, target_uid FROM restore_log ORDER BY uid").fetchall()
        assert rows == [("INBOX", None), ("INBOX.Archive.v1\u20242", None), ("INBOX.Sent", None)]

        again = restore(arc.db, arc.store, target, srv.state.password, account="t",
                        options=RestoreOptions())
        assert (again.appended, again.skipped_existing) == (0, 3)
        arc.db.execute("DELETE FROM restore_log")
        lost = restore(arc.db, arc.store, target, srv.state.password, account="t",
                       options=RestoreOptions(dry_run=True))
        assert (lost.appended, lost.skipped_existing) == (0, 3)  # listing: Message-ID or fingerprint
        assert [p["append"] for p in lost.plan] == [0, 0, 0]
        assert srv.state.commands.count(b"LOGIN") == 3
    arc.db.close()


def test_login_failure_and_password_never_shown(tmp_path: Path) -> None:
    arc = build_archive(tmp_path / "a", _corpus())
    with FakeImap(State(capabilities="IMAP4rev1")) as srv:
        target = parse_imap_url(f"imap://u@127.0.0.1:{srv.port}")
        rep = restore(arc.db, arc.store, target, "wrong-s3cret", account="t",
                      options=RestoreOptions())
        assert rep.exit_code == 3 and "refused" in (rep.fatal or "")
        assert "wrong-s3cret" not in str(rep.to_json())
        client = ImapClient.connect(target)
        with pytest.raises(AuthError) as exc:
            client.login("u", "p\u00e4ss\r\nword")  # literal, not quoted
        assert "p\u00e4ss" not in str(exc.value)
        client.logout()
    arc.db.close()


def test_starttls_is_required_off_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeImap() as srv:
        real = socket.create_connection
        monkeypatch.setattr(client_module.socket, "create_connection",
                            lambda addr, timeout: real(("127.0.0.1", srv.port), timeout))
        with pytest.raises(ServerUnreachable, match="does not offer STARTTLS"):
            ImapClient.connect(parse_imap_url("imap://u@mail.example.com"))
        assert srv.state.commands == []  # nothing was sent, least of all a password


def test_unreachable(tmp_path: Path) -> None:
    arc = build_archive(tmp_path / "a", _corpus())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rep = restore(arc.db, arc.store, parse_imap_url(f"imaps://u@127.0.0.1:{port}"), "x",
                  account="t", options=RestoreOptions())
    assert rep.exit_code == 5 and "cannot connect" in (rep.fatal or "")
    arc.db.close()
