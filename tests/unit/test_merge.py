"""Three-way merge per flag and per label."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from axsync.sync.merge import local_change, merge

flagsets = st.sets(st.sampled_from("DFRST")).map(lambda s: "".join(sorted(s)))
labelsets = st.sets(st.sampled_from(["a", "b", "c"])).map(lambda s: tuple(sorted(s)))


def test_one_side_changed_takes_that_side() -> None:
    m = merge("S", "FS", "S", ("a",), ("a", "b"), ("a",))
    assert m.flags == "FS" and m.labels == ("a", "b") and not m.conflicts
    m = merge("S", "S", "", ("a",), ("a",), ())
    assert m.flags == "" and m.labels == () and not m.conflicts


def test_both_changed_same_way_is_no_conflict() -> None:
    m = merge("", "F", "F", (), ("a",), ("a",))
    assert m.flags == "F" and m.labels == ("a",) and not m.conflicts


def test_real_conflict_follows_policy() -> None:
    # base seen; local unseen; server... seen stays but flagged conflicts need both sides
    m = merge("F", "", "FS", (), (), ())  # local unflagged, server kept F and added S
    assert m.flags == "S" and not m.conflicts
    m = merge("S", "", "SF", ("a",), (), ("a", "b"))
    assert not m.conflicts  # S: local removed, server kept -> local; a: local removed -> local
    assert m.flags == "F" and m.labels == ("b",)


def test_conflict_policies() -> None:
    # label a: base has it, local removed it, server... can't "change differently" for a bool
    # unless both moved away from base to different values, which needs a non-boolean; for
    # booleans a conflict is base=X, local!=X, server!=X but local==server -> no conflict.
    m = merge("", "S", "S", (), (), ())
    assert not m.conflicts


def test_read_only_flags_follow_the_server() -> None:
    m = merge("", "DRT", "", (), (), ())
    assert m.flags == ""
    m = merge("", "", "DRT", (), (), ())
    assert m.flags == "DRT"


@given(flagsets, flagsets, flagsets, labelsets, labelsets, labelsets, st.sampled_from(["server", "local"]))
def test_merge_properties(bf: str, lf: str, sf: str, bl: tuple[str, ...], ll: tuple[str, ...],
                          sl: tuple[str, ...], policy: str) -> None:
    m = merge(bf, lf, sf, bl, ll, sl, policy=policy)
    for letter in "SF":
        if (letter in lf) == (letter in bf):
            assert (letter in m.flags) == (letter in sf)
        elif (letter in sf) == (letter in bf):
            assert (letter in m.flags) == (letter in lf)
    for letter in "DRT":
        assert (letter in m.flags) == (letter in sf)
    for label in "abc":
        if (label in ll) == (label in bl):
            assert (label in m.labels) == (label in sl)
        elif (label in sl) == (label in bl):
            assert (label in m.labels) == (label in ll)
    # merging is idempotent once both sides agree
    again = merge(m.flags, m.flags, m.flags, m.labels, m.labels, m.labels)
    assert again.flags == m.flags and again.labels == m.labels and not again.conflicts


def test_local_change_calls() -> None:
    c = local_change("S", ("a",), "F", ("b",))
    assert c.is_unread is True and c.is_flagged is True
    assert c.add_labels == ("b",) and c.remove_labels == ("a",)
    assert local_change("S", (), "S", ()).empty
