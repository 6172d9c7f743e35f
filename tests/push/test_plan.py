"""``plan_push`` (pure): grouping by target, per label, per destination; conversation
batches only when safe; chunks of CHUNK; flags and labels before moves and deletions."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from axsync.statedb import MessageRow
from axsync.store import LocalFile
from axsync.sync.local import Edit
from axsync.sync.push import CHUNK, Batch, MailOp, PushContext, Pusher, plan_push

FOLDERS = {"": "f-inbox", ".Archive": "f-archive", ".Sent": "f-sent", ".Trash": "f-trash"}
ROLES = {"f-inbox": "inbox", "f-archive": "", "f-sent": "sent", "f-trash": "trash"}


def row(uid: int, *, dirname: str = "", flags: str = "", labels: tuple[str, ...] = (),
        conv: str | None = None) -> MessageRow:
    return MessageRow(uid, f"mail-{uid}", FOLDERS[dirname], dirname, f"base{uid}", f"base{uid}:2,{flags}Z",
                      10, 10, 10, "0" * 64, "zstd", flags, "", labels, 0, f"<{uid}@x>", conv, "", "",
                      "present", 0, 0, None)


def edit(r: MessageRow, *, letters: str | None = None, labels: tuple[str, ...] | None = None,
         dirname: str | None = None, new_atoms: tuple[str, ...] = ()) -> Edit:
    d = r.dirname if dirname is None else dirname
    flags = r.flags if letters is None else letters
    f = LocalFile(d, "cur", f"{r.base}:2,{flags}Z", r.base, flags + "Z", 10, 10)
    return Edit(r, f, flags, r.label_ids if labels is None else labels, new_atoms)


def ctx(convs: dict[str, frozenset[int]] | None = None) -> PushContext:
    return PushContext(FOLDERS, ROLES, convs or {}, {"Todo": "l-todo", "Work": "l-work"})


def ops(batch: Batch) -> list[tuple[int, str, str]]:
    return [(m.uid, m.kind, m.value) for m in batch.members]


def test_flags_grouped_by_target_labels_by_label_moves_by_destination() -> None:
    edits = [
        edit(row(1), letters="S"),                       # read
        edit(row(2), letters="S"),                       # read
        edit(row(3, flags="S"), letters="FS"),           # flagged
        edit(row(4), letters="FS"),                      # read + flagged
        edit(row(5), labels=("l-todo",)),
        edit(row(6, labels=("l-todo",)), labels=()),
        edit(row(7), dirname=".Archive"),
        edit(row(8), dirname=".Archive", letters="S"),   # moved and read
        Edit(row(9), None),                              # deleted
    ]
    plan = plan_push(edits, ctx())
    got = [(b.op, b.params, b.ids) for b in plan.batches]
    assert got == [
        ("mails/update", {"is_unread": False}, ["mail-1", "mail-2", "mail-8"]),
        ("mails/update", {"is_flagged": True}, ["mail-3"]),
        ("mails/update", {"is_unread": False, "is_flagged": True}, ["mail-4"]),
        ("mails/labels/add", {"label_id": "l-todo"}, ["mail-5"]),
        ("mails/labels/remove", {"label_id": "l-todo"}, ["mail-6"]),
        ("mails/move", {"destination_folder_id": "f-archive"}, ["mail-7", "mail-8"]),
        ("mails/delete", {}, ["mail-9"]),
    ]
    assert plan.count("update") == 5 and plan.count("move") == 2 and plan.deletions == 1
    # the flag change of a moved mail goes first: a move changes the mail's id
    assert [b.op for b in plan.batches].index("mails/move") > 0


def test_new_folder_and_new_keyword_are_announced() -> None:
    plan = plan_push([edit(row(1), dirname=".Projects"), edit(row(2), new_atoms=("Fresh",))], ctx())
    assert plan.new_folders == {".Projects": [1]}
    assert plan.new_labels == {"Fresh": [2]}
    assert plan.batches[0].params == {"destination_folder_id": "new:.Projects"}


def test_renamed_without_pushable_change_is_unchanged() -> None:
    e = edit(row(1, flags="S"), letters="ST")  # \\Deleted set locally: not pushable
    plan = plan_push([e], ctx())
    assert plan.batches == [] and plan.unchanged == [e]


def test_whole_conversation_goes_as_one_conversation_batch() -> None:
    rows = [row(1, conv="c1"), row(2, conv="c1"), row(3, conv="c2"), row(4, conv="c2")]
    edits = [edit(r, letters="S") for r in rows[:3]]  # c2 only partly read
    plan = plan_push(edits, ctx({"c1": frozenset({1, 2}), "c2": frozenset({3, 4})}))
    got = [(b.op, b.ids) for b in plan.batches]
    assert got == [("mails/update", ["mail-3"]), ("conversations/update", ["c1"])]
    assert [m.conversation for m in plan.batches[1].members] == ["c1", "c1"]


def test_no_conversation_batch_with_a_member_in_trash() -> None:
    """The server leaves Trash and Spam out of conversations: the batch would miss it."""
    rows = [row(1, conv="c1"), row(2, dirname=".Trash", conv="c1")]
    plan = plan_push([edit(r, letters="F") for r in rows], ctx({"c1": frozenset({1, 2})}))
    assert [(b.op, b.ids) for b in plan.batches] == [("mails/update", ["mail-1", "mail-2"])]


def test_no_conversation_unread_batch_with_a_member_in_sent() -> None:
    rows = [row(1, conv="c1"), row(2, dirname=".Sent", conv="c1")]
    plan = plan_push([edit(r, letters="S") for r in rows], ctx({"c1": frozenset({1, 2})}))
    assert [b.op for b in plan.batches] == ["mails/update"]
    plan = plan_push([edit(r, letters="F") for r in rows], ctx({"c1": frozenset({1, 2})}))
    assert [b.op for b in plan.batches] == ["conversations/update"]  # isFlagged reaches Sent


def test_moves_never_go_as_conversations() -> None:
    rows = [row(1, conv="c1"), row(2, conv="c1")]
    plan = plan_push([edit(r, dirname=".Archive") for r in rows], ctx({"c1": frozenset({1, 2})}))
    assert [b.op for b in plan.batches] == ["mails/move"]


def test_chunks() -> None:
    edits = [edit(row(i), letters="S") for i in range(1, 2 * CHUNK + 2)]
    plan = plan_push(edits, ctx())
    assert [len(b.ids) for b in plan.batches] == [CHUNK, CHUNK, 1]


def test_split_failed_items_of_a_conversation_batch() -> None:
    """Only the members of the conversation the server failed are failed."""
    members = [MailOp(1, "m1", "update", "{}", "c1"), MailOp(2, "m2", "update", "{}", "c1"),
               MailOp(3, "m3", "update", "{}", "c2")]
    batch = Batch("conversations/update", {"is_unread": False}, ["c1", "c2"], members)
    ok, bad = Pusher._split(batch, {"c2"})
    assert [m.uid for m in ok] == [1, 2] and [m.uid for m in bad] == [3]
    mails = Batch("mails/update", {}, ["m1", "m3"], [members[0], MailOp(3, "m3", "update", "{}")])
    ok, bad = Pusher._split(mails, {"m3"})
    assert [m.uid for m in ok] == [1] and [m.uid for m in bad] == [3]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["", "S", "F", "FS"]), st.sampled_from(["", "S", "F", "FS"]),
                          st.sets(st.sampled_from(["l-todo", "l-work"])), st.sets(st.sampled_from(["l-todo", "l-work"])),
                          st.sampled_from(["", ".Archive", None]), st.sampled_from([None, "c1", "c2"])),
                max_size=12))
def test_plan_carries_exactly_each_change(items: list[tuple[str, str, set[str], set[str], str | None, str | None]]) -> None:
    """Applying the plan's member ops to each row's state gives the file's state, and
    every batch's ids name exactly its members (mail ids, or their conversations)."""
    edits: list[Edit] = []
    convs: dict[str, set[int]] = {}
    for uid, (base_flags, local_flags, base_labels, local_labels, dest, conv) in enumerate(items, 1):
        r = row(uid, flags=base_flags, labels=tuple(sorted(base_labels)), conv=conv)
        if dest is None:
            edits.append(Edit(r, None))
        else:
            edits.append(edit(r, letters=local_flags, labels=tuple(sorted(local_labels)), dirname=dest))
        if conv:
            convs.setdefault(conv, set()).add(uid)
    plan = plan_push(edits, ctx({c: frozenset(u) for c, u in convs.items()}))
    flags = {e.row.uid: set(e.row.flags) for e in edits}
    labels = {e.row.uid: set(e.row.label_ids) for e in edits}
    where = {e.row.uid: e.row.dirname for e in edits}
    alive = {e.row.uid: True for e in edits}
    for b in plan.batches:
        assert len(b.ids) <= CHUNK
        if b.op.startswith("conversations/"):
            assert sorted(b.ids) == sorted({m.conversation or "" for m in b.members})
        else:
            assert b.ids == [m.mail_id for m in b.members]
        for m in b.members:
            value = json.loads(m.value)
            if m.kind == "update":
                if value["isUnread"] is not None:
                    (flags[m.uid].discard if value["isUnread"] else flags[m.uid].add)("S")
                if value["isFlagged"] is not None:
                    (flags[m.uid].add if value["isFlagged"] else flags[m.uid].discard)("F")
            elif m.kind == "label_add":
                labels[m.uid].add(value)
            elif m.kind == "label_remove":
                labels[m.uid].discard(value)
            elif m.kind == "move":
                where[m.uid] = next(d for d, f in FOLDERS.items() if f == value)
            elif m.kind == "delete":
                alive[m.uid] = False
    for e in edits:
        uid = e.row.uid
        if e.file is None:
            assert alive[uid] is False
            continue
        assert flags[uid] == set(e.letters) & {"S", "F"} | set(e.row.flags) - {"S", "F"}
        assert labels[uid] == set(e.label_ids)
        assert where[uid] == e.file.dirname
