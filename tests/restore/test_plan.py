"""The pure restore planner: idempotency under reruns, lost logs, crashes, stale logs."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from axsync.restore.plan import (
    LogEntry,
    SourceItem,
    TargetFolder,
    TargetMessage,
    allowed_flags,
    imap_flags,
    plan_folder,
    target_mailbox,
)

KEYS = [("msgid", "a@x", 10), ("msgid", "b@x", 20), ("fp", "f1", 30), ("msgid", "a@x", 11)]


def item(uid: int, key: tuple[str, str, int]) -> SourceItem:
    return SourceItem(uid, ("INBOX",), (), 0, key, key[2], key[2], "", "", f"b{uid}", f"b{uid}")


items_st = st.lists(st.sampled_from(KEYS), max_size=12).map(
    lambda keys: [item(i + 1, k) for i, k in enumerate(keys)])
target_st = st.lists(st.sampled_from(KEYS), max_size=8)


def apply(target: list[TargetMessage], log: dict[int, LogEntry], appended: list[SourceItem],
          validity: int, *, logged: int | None = None) -> None:
    """Simulate the executor: each append lands with the next UID; the first ``logged``
    of them also get a log row (a crash loses the rest)."""
    for n, it in enumerate(appended):
        uid = max((m.uid for m in target), default=0) + 1
        target.append(TargetMessage(uid, it.key))
        if logged is None or n < logged:
            log[it.uid] = LogEntry(it.uid, validity, uid)


@given(items_st, target_st)
def test_without_log_appends_exactly_the_missing_multiset(items: list[SourceItem],
                                                          present: list[tuple[str, str, int]]) -> None:
    target = TargetFolder(True, 7, tuple(TargetMessage(100 + i, k) for i, k in enumerate(present)))
    plan = plan_folder(items, target, {})
    want = Counter(i.key for i in items) - Counter(present)
    assert Counter(i.key for i in plan.append) == want
    assert len(plan.append) + len(plan.skipped) == len(items)
    assert {r for _i, r in plan.skipped} <= {"present"}


@settings(max_examples=200)
@given(items_st, target_st, st.integers(min_value=0, max_value=12), st.integers(min_value=0, max_value=12),
       st.booleans())
def test_rerun_after_crash_or_lost_log_appends_nothing_twice(
        items: list[SourceItem], present: list[tuple[str, str, int]], done: int, logged: int,
        lose_log: bool) -> None:
    target = [TargetMessage(100 + i, k) for i, k in enumerate(present)]
    log: dict[int, LogEntry] = {}
    first = plan_folder(items, TargetFolder(True, 7, tuple(target)), log)
    done = min(done, len(first.append))
    apply(target, log, first.append[:done], 7, logged=min(logged, done))  # killed after `done`
    if lose_log:
        log.clear()
    second = plan_folder(items, TargetFolder(True, 7, tuple(target)), log)
    assert len(second.append) == len(first.append) - done
    apply(target, log, second.append, 7)
    third = plan_folder(items, TargetFolder(True, 7, tuple(target)), log)
    assert third.append == []
    # the target now holds at least every archived copy, and nothing more than needed
    assert Counter(m.key for m in target) == Counter(present) | Counter(i.key for i in items)


def test_log_rows_own_their_target_message() -> None:
    a1, a2 = item(1, KEYS[0]), item(2, KEYS[0])  # two identical archived copies
    target = TargetFolder(True, 7, (TargetMessage(50, KEYS[0]),))
    plan = plan_folder([a1, a2], target, {2: LogEntry(2, 7, 50)})
    assert [i.uid for i in plan.append] == [1]
    assert plan.skipped == [(a2, "logged")]


def test_stale_uidvalidity_or_vanished_uid_means_append_again() -> None:
    a = item(1, KEYS[1])
    empty = TargetFolder(True, 8, ())
    assert plan_folder([a], empty, {1: LogEntry(1, 7, 3)}).append == [a]  # re-created mailbox
    assert plan_folder([a], TargetFolder(True, 7, ()), {1: LogEntry(1, 7, 3)}).append == [a]
    # no UIDPLUS: the log row alone is trusted (the server may have altered the message)
    assert plan_folder([a], TargetFolder(True, 7, ()), {1: LogEntry(1, 7, None)}).append == []
    assert plan_folder([a], TargetFolder(False), {1: LogEntry(1, 7, 3)}).append == [a]


def test_imap_flags() -> None:
    assert imap_flags("DFRST", "refw", ["work", "To Do", "Ärger", "50~off"]) == (
        "\\Draft", "\\Flagged", "\\Answered", "\\Seen", "$Forwarded", "work", "To~20Do",
        "~C3~84rger", "50~off")
    assert "\\Deleted" in imap_flags("T", "", [], keep_deleted=True)
    assert imap_flags("T", "re", []) == ()  # \Answered comes from R, not from refw


def test_allowed_flags() -> None:
    flags = ("\\Seen", "work", "$Forwarded")
    assert allowed_flags(flags, None) == (flags, ())
    assert allowed_flags(flags, frozenset({"\\Seen", "\\*"})) == (flags, ())
    assert allowed_flags(flags, frozenset({"\\Seen", "$forwarded"})) == (
        ("\\Seen", "$Forwarded"), ("work",))


def test_target_mailbox_names() -> None:
    assert target_mailbox(("INBOX",), "/") == "INBOX"
    assert target_mailbox(("Inbox", "Sub"), ".", "INBOX.") == "INBOX.Sub"
    assert target_mailbox(("Sent",), ".", "INBOX.") == "INBOX.Sent"
    assert target_mailbox(("Archive", "2024"), "/") == "Archive/2024"
    assert target_mailbox(("a/b",), "/") == "a\u2215b"
    assert target_mailbox(("v1.2 notes",), ".") == "v1\u20242 notes"
    assert target_mailbox(("Tab\there", ""), "/") == "Tab\u2409here/_"
    assert target_mailbox(("x",), None) == "x"
