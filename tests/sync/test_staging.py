"""The staging tables: a page of new mails staged at once is staged as one by one, and the
plan's per-folder counts are those of the staged rows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from axsync.model import Mail, MailFlags, MailUpdate
from axsync.statedb import StateDB
from axsync.sync.staging import Staging

_IDS = st.sampled_from(["m1", "m2", "m3", "m4", "m5"])
_FOLDERS = st.sampled_from(["f1", "f2", "f3"])
_MAILS = st.builds(
    Mail, id=_IDS, folder_id=_FOLDERS, size=st.integers(0, 10_000), date=st.integers(0, 10**9),
    flags=st.builds(MailFlags, st.booleans(), st.booleans(), st.booleans(), st.booleans(),
                    st.sampled_from(["", "re", "fw"])),
    label_ids=st.lists(st.sampled_from(["l1", "l2", "l3"]), unique=True).map(tuple),
    message_id=st.sampled_from(["", "<a@x>", "<b@x>"]), subject=st.text(max_size=5),
    from_=st.text(max_size=5), has_attachments=st.booleans(),
    conversation_id=st.sampled_from([None, "c1"]))
# What may be staged before a page arrives: updates and removals of the same ids.
_BEFORE = st.lists(st.one_of(
    st.tuples(st.just("upd"), _IDS, _FOLDERS),
    st.tuples(st.just("rm"), _IDS, _FOLDERS),
    st.tuples(st.just("new"), _MAILS, st.sampled_from(["new", "replaced"])),
), max_size=6)


def _tables(db: StateDB) -> dict[str, list[tuple[object, ...]]]:
    return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
            for t in ("st_new", "st_upd", "st_rm")}


def _staged(before: list[tuple[object, ...]]) -> tuple[StateDB, Staging]:
    db = StateDB.open(None)
    staging = Staging(db)
    for kind, a, b in before:
        if kind == "upd":
            staging.add_update(MailUpdate(str(a), str(b), MailFlags(is_unread=True)))
        elif kind == "rm":
            staging.add_removed(str(a), str(b))
        else:
            assert isinstance(a, Mail)
            staging.add_new(a, str(b))
    return db, staging


@settings(max_examples=40, deadline=None)
@given(_BEFORE, st.lists(_MAILS, max_size=8), st.sampled_from(["new", "replaced"]))
def test_a_page_staged_at_once_is_staged_as_one_by_one(
        before: list[tuple[object, ...]], page: list[Mail], kind: str) -> None:
    one_db, one = _staged(before)
    many_db, many = _staged(before)
    for mail in page:
        one.add_new(mail, kind)
    many.add_new_many(page, kind)
    assert _tables(many_db) == _tables(one_db)


@settings(max_examples=15, deadline=None)
@given(st.lists(_MAILS, max_size=12))
def test_new_counts_are_those_of_the_staged_mails(page: list[Mail]) -> None:
    _db, staging = _staged([])
    staging.add_new_many(page)
    expected: dict[str, list[int]] = {}
    for mail, _kind in staging.new_mails():
        counts = expected.setdefault(mail.folder_id, [0, 0])
        counts[0] += 1
        counts[1] += mail.size
    assert {f: [n, b] for f, n, b in staging.new_counts()} == expected
