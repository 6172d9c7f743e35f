"""What restore picks from the archive: now, and as it was at an instant (no IMAP)."""

from __future__ import annotations

from pathlib import Path

from axsync.fake.corpus import Corpus, CorpusFolder, CorpusMessage
from axsync.restore.source import load_source

from .archive import T0, add_message, build_archive, set_history_time

DAY = 86400


def _corpus() -> Corpus:
    folders = [CorpusFolder(("INBOX",), "inbox"), CorpusFolder(("Archive", "2024")),
               CorpusFolder(("a/b",))]
    msgs = [
        CorpusMessage(("INBOX",), b"Message-ID: <one@x>\nSubject: 1\n\nbody\n", T0 - DAY,
                      unread=False, labels=("To Do",)),
        CorpusMessage(("INBOX",), b"Subject: no id\n\nbody\n", T0 - DAY, refw="refw"),
        CorpusMessage(("Archive", "2024"), b"Message-ID: <three@x>\n\nbody\n", T0 - DAY),
        CorpusMessage(("a/b",), b"Message-ID: <four@x>\n\nbody\n", T0 - DAY, flagged=True),
    ]
    return Corpus(folders, ["To Do"], msgs)


def test_current_state(tmp_path: Path) -> None:
    arc = build_archive(tmp_path / "a", _corpus())
    src = load_source(arc.db, arc.store)
    assert src.problems == [] and len(src.items) == 4
    by_uid = {i.uid: i for i in src.items}
    one, noid, three, four = (by_uid[u] for u in arc.uids)
    assert one.flags == ("\\Seen", "To~20Do") and one.key == ("msgid", "one@x", len(
        b"Message-ID: <one@x>\r\nSubject: 1\r\n\r\nbody\r\n"))
    assert noid.key[0] == "fp" and noid.flags == ("\\Answered", "$Forwarded")
    assert three.folder == ("Archive", "2024") and four.folder == ("a/b",)
    assert [i.uid for i in load_source(arc.db, arc.store, folder="archive/2024").items] == []
    assert [i.uid for i in load_source(arc.db, arc.store, folder="Archive/2024").items] == [three.uid]
    assert [i.uid for i in load_source(arc.db, arc.store, folder="inbox").items] == arc.uids[:2]


def test_as_of(tmp_path: Path) -> None:
    arc = build_archive(tmp_path / "a", _corpus())
    db = arc.db
    one, noid, three, four = arc.uids
    with db.transaction():
        db.update_message(one, flags="F", label_ids=[])
        set_history_time(db, one, T0 + 2 * DAY)
        db.update_message(noid, state="deleted", mail_id=None, deleted_at=T0 + 2 * DAY)
        set_history_time(db, noid, T0 + 2 * DAY)
        row = db.message_by_uid(three)
        assert row is not None
        arc.store.delete(row.dirname, row.filename)
        db.update_message(three, state="tombstoned", mail_id=None, deleted_at=T0 + 2 * DAY)
        set_history_time(db, three, T0 + 2 * DAY)
        db.update_message(four, folder_id=arc.folder_ids[("INBOX",)], dirname="")  # file stays
        set_history_time(db, four, T0 + 2 * DAY)
        five = add_message(arc, CorpusMessage(("INBOX",), b"Subject: later\n\nx\n", T0 + 3 * DAY))
        set_history_time(db, five, T0 + 3 * DAY)

    now = load_source(db, arc.store)
    assert sorted(i.uid for i in now.items) == [one, four, five]
    assert {i.uid: i.flags for i in now.items}[one] == ("\\Flagged",)
    assert {i.uid: i.folder for i in now.items}[four] == ("INBOX",)  # found in its old dir

    then = load_source(db, arc.store, as_of=T0 + DAY)
    assert sorted(i.uid for i in then.items) == [one, noid, four]
    assert {i.uid: i.flags for i in then.items}[one] == ("\\Seen", "To~20Do")
    assert {i.uid: i.folder for i in then.items}[four] == ("a/b",)
    assert then.unrestorable == 1
    assert then.problems[0]["item"].startswith(f"uid {three} ")
    assert "unrestorable" in then.problems[0]["error"]

    before = load_source(db, arc.store, as_of=T0 - 1)
    assert before.items == [] and before.problems == []
