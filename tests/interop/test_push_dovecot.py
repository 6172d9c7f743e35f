"""Changes made over IMAP through a REAL Dovecot 2.3 serving the archive in place reach the
Axigen server with ``axsync sync``.

Dovecot serves the archive itself (``copy=False``): an IMAP client sets ``\\Flagged`` and
``\\Seen``, stores a keyword that is an existing label's atom and a brand-new keyword,
MOVEs messages to other folders, copies one within its folder and expunges the original,
copies one to another folder, and expunges one. Dovecot is stopped, ``axsync sync`` runs,
and the fake server's mailbox is checked.

What Dovecot 2.3.19 does on disk (maildir_copy_with_hardlinks, the default), as observed
and asserted here: a MOVE or COPY to another folder links the file there under the SAME
base name (flags re-written: keyword letters through the destination's dovecot-keywords,
``Z`` dropped); a COPY within the folder links it under a NEW base name. So a COPY + EXPUNGE
in one folder is the adoption path (same content, new name: adopted, not re-uploaded or
re-downloaded), and a COPY to another folder leaves one base in two folders (the copy is
kept and reported as a local file with no server copy; the original is not "moved").
"""

from __future__ import annotations

import imaplib
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from push.harness import (
    PushEnv,
    assert_in_step,
    local_by_msgid,
    local_mails,
    start_env,
)

from axsync.store import label_to_atom

from .dovecot import DovecotServer, requires_dovecot

pytestmark = [pytest.mark.interop, requires_dovecot, pytest.mark.timeout(300)]


@pytest.fixture
def traversable_dir() -> Iterator[Path]:
    """Dovecot's unprivileged processes must reach the archive (tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="axsync-push-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def uids_by_msgid(imap: imaplib.IMAP4, mailbox: str) -> dict[str, int]:
    typ, _ = imap.select(f'"{mailbox}"')
    assert typ == "OK", mailbox
    typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert typ == "OK"
    out: dict[str, int] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, body = item
        uid = re.search(rb"UID (\d+)", head)
        mid = re.search(rb"<([^>]+)>", body)
        if uid and mid:
            out[mid.group(1).decode()] = int(uid.group(1))
    return out


def ok(result: tuple[str, object]) -> None:
    assert result[0] == "OK", result


@pytest.mark.parametrize("api_version", ["10.6", "10.4"])
def test_imap_changes_through_dovecot_reach_the_server(traversable_dir: Path, api_version: str) -> None:
    env: PushEnv = start_env(traversable_dir, api_version, messages=24)
    try:
        loc = local_by_msgid(env.maildir)
        inbox = sorted((m for m in loc.values() if m.folder == ("INBOX",)),
                       key=lambda m: int(m.msgid[1:].split("@")[0]))
        work = sorted((m for m in loc.values() if m.folder == ("Work",)), key=lambda m: m.msgid)
        flag_me = next(m for m in inbox if "F" not in m.letters)
        read_me = next(m for m in inbox if "S" not in m.letters and m is not flag_me)
        rest = [m for m in inbox if m not in (flag_me, read_me)]
        label_me = next(m for m in rest if "Project X" not in m.labels)
        rest.remove(label_me)
        new_kw, move_me, expunge_me, rewrite_me, copy_me = rest[:5]
        move_tagged = next(m for m in work if m.atoms)  # keywords must follow the move
        px = label_to_atom("Project X")

        with DovecotServer(env.maildir, traversable_dir / "dovecot", copy=False) as dv:
            imap = dv.imap()
            uids = uids_by_msgid(imap, "INBOX")
            assert set(uids) == {m.msgid for m in inbox}
            ok(imap.uid("STORE", str(uids[flag_me.msgid]), "+FLAGS", "(\\Flagged)"))
            ok(imap.uid("STORE", str(uids[read_me.msgid]), "+FLAGS", "(\\Seen)"))
            ok(imap.uid("STORE", str(uids[label_me.msgid]), "+FLAGS", f"({px})"))
            ok(imap.uid("STORE", str(uids[new_kw.msgid]), "+FLAGS", "(Brandneu)"))
            ok(imap.uid("MOVE", str(uids[move_me.msgid]), "Archive"))
            ok(imap.uid("COPY", str(uids[copy_me.msgid]), "Work"))
            ok(imap.uid("COPY", str(uids[rewrite_me.msgid]), "INBOX"))
            ok(imap.uid("STORE", f"{uids[expunge_me.msgid]},{uids[rewrite_me.msgid]}", "+FLAGS", "(\\Deleted)"))
            ok(imap.expunge())
            rewritten = uids_by_msgid(imap, "INBOX")[rewrite_me.msgid]
            ok(imap.uid("STORE", str(rewritten), "+FLAGS", "(\\Flagged)"))
            work_uids = uids_by_msgid(imap, "Work")
            ok(imap.uid("MOVE", str(work_uids[move_tagged.msgid]), "Work/Sub"))
            imap.logout()
            assert dv.log_problems() == []

        files = local_mails(env.maildir)
        after = {(m.msgid, m.folder): m for m in files}
        moved = after[(move_me.msgid, ("Archive",))]
        assert moved.base == move_me.base  # linked under the same name
        assert after[(move_tagged.msgid, ("Work", "Sub"))].labels == move_tagged.labels  # translated
        assert after[(rewrite_me.msgid, ("INBOX",))].base != rewrite_me.base  # a new name
        assert after[(copy_me.msgid, ("Work",))].base == copy_me.base  # one base, two folders
        assert (copy_me.msgid, ("INBOX",)) in after
        assert not any(m.msgid == expunge_me.msgid for m in files)

        env.record_downloads()
        env.fake.reset_counters()
        report = env.ok()
        j = report.to_json()
        assert j["pushed"] == {"flags": 3, "labels": 2, "moved": 2, "deleted": 1}, j
        assert j.get("local_unknown_files") == 1, j  # the copy in Work, and nothing else
        assert not any("mails/copy" in k or k.startswith("POST /api/v1/mails") for k in env.fake.counters)
        srv = env.server()
        assert srv[flag_me.msgid].flagged
        assert not srv[read_me.msgid].unread
        assert "Project X" in srv[label_me.msgid].labels
        assert "Brandneu" in srv[new_kw.msgid].labels
        assert srv[move_me.msgid].path == ("Archive",)
        assert srv[move_tagged.msgid].path == ("Work", "Sub")
        assert srv[move_tagged.msgid].labels == move_tagged.labels
        assert srv[rewrite_me.msgid].path == ("INBOX",) and srv[rewrite_me.msgid].flagged
        assert srv[copy_me.msgid].path == ("INBOX",)  # copied locally: not moved on the server
        assert srv[expunge_me.msgid].path == ("Trash",)
        # nothing uploaded or fetched again but the expunged mail's copy in Trash
        assert env.downloads == [(expunge_me.msgid, ("Trash",))]
        assert_in_step(env.fake, env.maildir, unknown={(copy_me.msgid, ("Work",))})
        env.noop()

        # Dovecot still serves the archive after axsync's run, with the server's state
        with DovecotServer(env.maildir, traversable_dir / "dovecot2", copy=False) as dv:
            imap = dv.imap()
            uids = uids_by_msgid(imap, "Archive")
            assert move_me.msgid in uids
            typ, data = imap.uid("FETCH", str(uids[move_me.msgid]), "(FLAGS)")
            assert typ == "OK"
            imap.logout()
            assert dv.log_problems() == []
    finally:
        env.fake.stop()
