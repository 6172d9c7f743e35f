"""The pure planner: folder trees, folder-delta folding, move matching, flags, guard."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st

from axsync.model import Folder, FolderEvent, Mail, MailFlags
from axsync.sync import plan as P


def assign(path: tuple[str, ...], taken: Mapping[str, tuple[str, ...]]) -> str:
    if path == ("INBOX",):
        return ""
    name = "." + ".".join(path)
    n = 1
    while name in taken:
        n += 1
        name = "." + ".".join(path) + f"\\#{n}"
    return name


def tree(*folders: tuple[str, str, str, str]) -> dict[str, P.TreeFolder]:
    return {fid: P.TreeFolder(fid, name, parent, role) for fid, name, parent, role in folders}


BASE = tree(("1", "Inbox", "C", "inbox"), ("2", "Archive", "C", ""), ("3", "2024", "2", ""),
            ("4", "Spam", "C", "junk"), ("5", "Old", "4", ""))


def test_paths_inbox_is_inbox_whatever_its_name() -> None:
    paths = P.folder_paths(BASE)
    assert paths["1"] == ("INBOX",)
    assert paths["3"] == ("Archive", "2024")


def test_paths_survive_cycles() -> None:
    cyc = tree(("a", "A", "b", ""), ("b", "B", "a", ""))
    paths = P.folder_paths(cyc)
    assert set(paths) == {"a", "b"}


def test_plan_creates_and_excludes_role_and_children() -> None:
    plan = P.plan_folders([], BASE, ["Junk"], assign)
    kinds = {(a.kind, a.folder_id) for a in plan.actions}
    assert ("create", "1") in kinds and ("create", "3") in kinds
    assert plan.targets["4"].excluded and plan.targets["5"].excluded
    assert ("create", "4") not in kinds and ("create", "5") not in kinds
    assert plan.targets["1"].dirname == ""


def known(fid: str, path: tuple[str, ...], dirname: str) -> P.KnownFolder:
    return P.KnownFolder(fid, path, dirname, 1, "t", False, "present")


def test_server_rename_is_a_directory_rename() -> None:
    renamed = dict(BASE)
    renamed["2"] = P.TreeFolder("2", "Attic", "C", "")
    k = [known("1", ("INBOX",), ""), known("2", ("Archive",), ".Archive"),
         known("3", ("Archive", "2024"), ".Archive.2024")]
    plan = P.plan_folders(k, renamed, [], assign)
    renames = {(a.old_dirname, a.dirname) for a in plan.actions if a.kind == "rename"}
    assert renames == {(".Archive", ".Attic"), (".Archive.2024", ".Attic.2024")}
    assert not [a for a in plan.actions if a.kind == "create" and a.folder_id in {"1", "2", "3"}]


def test_gone_folders() -> None:
    k = [known("9", ("Gone",), ".Gone")]
    plan = P.plan_folders(k, BASE, [], assign)
    assert [(a.kind, a.folder_id) for a in plan.actions if a.kind == "gone"] == [("gone", "9")]


def test_new_folder_never_takes_a_kept_folders_name() -> None:
    t = tree(("1", "Inbox", "C", "inbox"), ("2", "A", "C", ""), ("7", "A", "C", ""))
    k = [known("2", ("A",), ".A")]
    plan = P.plan_folders(k, t, [], assign)
    assert plan.targets["2"].dirname == ".A"
    assert plan.targets["7"].dirname != ".A"


def ev(kind: str, fid: str, **kw: object) -> FolderEvent:
    return FolderEvent(kind, fid, **kw)  # type: ignore[arg-type]


def test_fold_folder_events_order_and_validity() -> None:
    start = {"1": P.TreeFolder("1", "Inbox", "C", "inbox", 1, "a")}
    events = [
        ev("newFolder", "2", container_id="C", id_validity=1, sync_token="x",
           folder=Folder("2", "New", "C")),
        ev("changedFolder", "1", container_id="C", id_validity=2, sync_token="b"),
        ev("changedFolder", "2", container_id="C", path_changed=True, old_parent_id="C",
           folder=Folder("2", "Renamed", "1")),
        ev("removedFolder", "404"),
    ]
    out, changed = P.fold_folder_events(start, events)
    assert out["1"].content_token == "b" and changed == {"1"}
    assert out["2"].name == "Renamed" and out["2"].parent_id == "1"
    assert out["2"].content_token == "x"


def test_reset_container_revives_only_renewed_folders() -> None:
    start = {"a": P.TreeFolder("a", "A", "S", ""), "b": P.TreeFolder("b", "B", "S", "")}
    events = [ev("resetContainer", "S"),
              ev("newFolder", "a", container_id="S", folder=Folder("a", "A", "S"))]
    out, _ = P.fold_folder_events(start, events)
    assert set(out) == {"a"}


def test_remove_container() -> None:
    start = {"a": P.TreeFolder("a", "A", "S", ""), "z": P.TreeFolder("z", "Z", "C", "")}
    out, _ = P.fold_folder_events(start, [ev("removeContainer", "S")])
    assert set(out) == {"z"}


def mail(mid: str, msgid: str, size: int, date: int = 0, folder: str = "f") -> Mail:
    return Mail(mid, folder, size, date, message_id=msgid)


def km(uid: int, msgid: str, size: int, date: int = 0) -> P.KnownMail:
    return P.KnownMail(uid, f"old{uid}", "g", ".G", size, "sha", msgid, date)


def test_match_moves_by_message_id_and_size_one_to_one() -> None:
    new = [mail("n1", "<a>", 10, 5), mail("n2", "<a>", 10, 100), mail("n3", "<b>", 10)]
    removed = [km(1, "<a>", 10, 99), km(2, "<a>", 11), km(3, "", 10)]
    moves = P.match_moves(new, removed)
    assert [(m.uid, m.mail.id) for m in moves] == [(1, "n1")]


@given(st.lists(st.tuples(st.sampled_from(["<a>", "<b>", ""]), st.integers(1, 3)), max_size=12),
       st.lists(st.tuples(st.sampled_from(["<a>", "<b>", ""]), st.integers(1, 3)), max_size=12))
def test_match_moves_is_a_partial_injection(new_keys: list[tuple[str, int]],
                                            removed_keys: list[tuple[str, int]]) -> None:
    new = [mail(f"n{i}", m, s, i) for i, (m, s) in enumerate(new_keys)]
    removed = [km(i, m, s, i) for i, (m, s) in enumerate(removed_keys)]
    moves = P.match_moves(new, removed)
    assert len({m.uid for m in moves}) == len(moves)
    assert len({m.mail.id for m in moves}) == len(moves)
    by_uid = {k.uid: k for k in removed}
    for m in moves:
        k = by_uid[m.uid]
        assert (k.message_id, k.size) == (m.mail.message_id, m.mail.size) and k.message_id
    # maximal: no unmatched new mail has an unmatched partner
    used_new = {m.mail.id for m in moves}
    used_old = {m.uid for m in moves}
    for n in new:
        if n.id in used_new or not n.message_id:
            continue
        assert not any(k.uid not in used_old and (k.message_id, k.size) == (n.message_id, n.size)
                       for k in removed)


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.sampled_from(["", "re", "fw", "refw"]))
def test_server_letters_sorted_and_exact(unread: bool, flagged: bool, draft: bool, deleted: bool,
                                         refw: str) -> None:
    letters = P.server_letters(MailFlags(unread, flagged, draft, deleted, refw))
    assert letters == "".join(sorted(letters))
    assert ("S" in letters) == (not unread)
    assert ("F" in letters) == flagged
    assert ("D" in letters) == draft
    assert ("T" in letters) == deleted
    assert ("R" in letters) == ("re" in refw)


def test_file_flags() -> None:
    assert P.file_flags("FS", "ba", True) == "FSZab"
    assert P.file_flags("", "", False) == ""


def test_deletion_guard() -> None:
    assert P.check_deletions(5, 100, 10, False).allowed
    assert not P.check_deletions(11, 100, 10, False).allowed
    assert P.check_deletions(11, 100, 10, True).allowed


def test_excludes_match_path_and_role() -> None:
    assert P.is_excluded(("Spam",), "junk", ["Junk"])
    assert P.is_excluded(("Archive", "2024"), "", ["Archive/*"])
    assert not P.is_excluded(("Archive",), "", ["Archive/*"])
