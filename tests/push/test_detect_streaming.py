"""``detect()`` streams the archive listing into a TEMP table and compares it with the state
DB in SQL: it must give exactly what the former in-memory version gave (that version is kept
below as the reference), and its Python memory must not grow with the archive."""

from __future__ import annotations

import hashlib
import tempfile
import tracemalloc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axsync.errors import AxsyncError
from axsync.statedb import MessageRow, StateDB
from axsync.store import LocalFile, Store
from axsync.sync.local import Edit, LocalChanges, LocalView, _compare, detect, fold_labels

# ----------------------------------------------------------------------------- reference


class RefView(LocalView):
    """The former LocalView: every file by base in a dict, further files of a base in a list."""

    files_by_base: dict[str, LocalFile]
    copies: list[LocalFile]

    @classmethod
    def scan(cls, store: Store) -> RefView:
        view = cls(store)
        view.files_by_base, view.copies = {}, []
        for f in store.scan():
            if f.base in view.files_by_base:
                view.copies.append(f)
            else:
                view.files_by_base[f.base] = f
        return view


def reference_detect(db: StateDB, view: RefView, by_atom: Mapping[str, str]) -> LocalChanges:
    """The in-memory detect() as it was before the streaming one (same semantics, same order)."""
    out = LocalChanges()
    folded = fold_labels(by_atom)
    files = dict(view.files_by_base)
    copies: dict[str, list[LocalFile]] = {}
    for c in view.copies:
        copies.setdefault(c.base, []).append(c)
    missing: list[MessageRow] = []
    for row in db.messages_where("state = 'present'"):
        f = files.pop(row.base, None)
        if f is None:
            missing.append(row)
            continue
        others = copies.pop(row.base, None)
        if others:
            candidates = [f, *others]
            f = next((c for c in candidates if c.dirname == row.dirname), f)
            out.unknown.extend(c for c in candidates if c is not f)
        _compare(row, f, view, folded, out)
    known = {b for (b,) in db.execute("SELECT base FROM messages WHERE state != 'tombstoned'").fetchall()}
    strays = [f for b, f in files.items() if b not in known]
    strays += [c for b, cs in copies.items() if b not in known for c in cs]
    if strays and missing:
        by_content: dict[tuple[str, int], list[MessageRow]] = {}
        for r in missing:
            by_content.setdefault((r.sha256, r.size), []).append(r)
        for f in strays:
            try:
                digest, size, _vsize = view.store.digest(f.dirname, f.subdir, f.filename)
            except (AxsyncError, OSError, ValueError, EOFError):
                out.unknown.append(f)
                continue
            rows = by_content.get((digest, size))
            if not rows:
                out.unknown.append(f)
                continue
            match = next((r for r in rows if r.dirname == f.dirname), rows[0])
            rows.remove(match)
            out.adopted.append((match, f))
            missing.remove(match)
            _compare(match, f, view, folded, out, force=True)
    else:
        out.unknown.extend(strays)
    for row in missing:
        out.edits.append(Edit(row, None))
    return out


# ----------------------------------------------------------------------------- archives

DIRS = ("", ".A", ".B")
KEYWORDS = {"": ["work", "home"], ".A": ["home", "newkw", "work"], ".B": []}
BY_ATOM = {"work": "L1", "home": "L2", "gone": "L3"}
LABELS = ("L1", "L2", "L3")
FATES = ("same", "reflag", "move", "delete", "rewrite", "copy", "copy_elsewhere", "new_subdir")


def content(cid: int) -> bytes:
    return f"Subject: {cid}\r\n\r\nbody {cid}\r\n".encode()


@dataclass(frozen=True)
class Msg:
    dirname: str
    state: str
    cid: int
    row_flags: str
    row_labels: tuple[str, ...]
    row_letters: str  # keyword letters of the recorded file name
    fate: str
    file_dir: str
    file_flags: str  # system letters and keyword letters of the file on disk


@dataclass(frozen=True)
class Stray:
    dirname: str
    cid: int
    flags: str
    in_new: bool
    also_in: tuple[str, ...] = ()  # further folders holding the same file (a copy)


letters = st.text(alphabet="DFRSTabcd", max_size=5).map(lambda s: "".join(sorted(set(s))))
msgs = st.builds(
    Msg,
    dirname=st.sampled_from(DIRS),
    state=st.sampled_from(("present", "present", "present", "deleted", "tombstoned")),
    cid=st.integers(0, 5),
    row_flags=st.sampled_from(("", "S", "F", "FS", "RS")),
    row_labels=st.lists(st.sampled_from(LABELS), unique=True, max_size=2).map(tuple),
    row_letters=st.sampled_from(("", "a", "b", "ab")),
    fate=st.sampled_from(FATES),
    file_dir=st.sampled_from(DIRS),
    file_flags=letters,
)
strays = st.builds(Stray, dirname=st.sampled_from(DIRS), cid=st.integers(0, 7), flags=letters,
                   in_new=st.booleans(),
                   also_in=st.lists(st.sampled_from(DIRS), unique=True, max_size=2).map(tuple))


def build(root: Path, messages: list[Msg], extra: list[Stray]) -> tuple[Store, StateDB]:
    store = Store(root / "mail", compression="none")
    for d in DIRS:
        store.ensure_folder(d)
        if KEYWORDS[d]:
            store.ensure_keywords(d, KEYWORDS[d])
    db = StateDB.open(root / "state.sqlite")

    def write(dirname: str, sub: str, name: str, data: bytes) -> None:
        store.path_of(dirname, sub, name).write_bytes(data)

    with db.transaction():
        for i, m in enumerate(messages):
            data = content(m.cid)
            base = f"17600{i:05d}.M{i}P1.test,S={len(data)},W={len(data)}"
            filename = f"{base}:2,{''.join(sorted(m.row_flags + m.row_letters))}"
            db.insert_message({
                "mail_id": f"m{i}", "folder_id": f"f{m.dirname}", "dirname": m.dirname, "base": base,
                "filename": filename, "size": len(data), "server_size": len(data), "vsize": len(data),
                "sha256": hashlib.sha256(data).hexdigest(), "compression": "none",
                "flags": m.row_flags, "label_ids": list(m.row_labels), "internal_date": i,
                "state": m.state, "first_seen": 1, "last_seen": 1,
            })
            named = f"{base}:2,{m.file_flags}"
            if m.fate == "same":
                write(m.dirname, "cur", filename, data)
            elif m.fate == "reflag":
                write(m.dirname, "cur", named, data)
            elif m.fate == "move":
                write(m.file_dir, "cur", named, data)
            elif m.fate == "rewrite":  # Dovecot re-wrote it under a name of its own
                write(m.file_dir, "cur", f"18600{i:05d}.M{i}P2.other:2,{m.file_flags}", data)
            elif m.fate == "copy":  # COPY with hardlinks: same name in another folder too
                write(m.dirname, "cur", filename, data)
                write(m.file_dir, "cur", named, data)
            elif m.fate == "copy_elsewhere":  # two files, possibly neither in the row's folder
                write(m.file_dir, "cur", named, data)
                other = DIRS[(DIRS.index(m.file_dir) + 1) % len(DIRS)]
                write(other, "new", base, data)
            elif m.fate == "new_subdir":
                write(m.file_dir, "new", base, data)
            # "delete": no file
        for j, s in enumerate(extra):
            data = content(s.cid)
            base = f"19600{j:05d}.M{j}P3.stray"
            for d in (s.dirname, *s.also_in):
                if s.in_new:
                    write(d, "new", base, data)
                else:
                    write(d, "cur", f"{base}:2,{s.flags}", data)
    # A file that cannot be read as a message: hashing it fails, it stays unknown.
    if extra:
        write("", "cur", "19700.M1P1.broken:2,", b"\x28\xb5\x2f\xfd garbage")
    return store, db


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(msgs, max_size=25), extra=st.lists(strays, max_size=8))
def test_streaming_detect_equals_in_memory_reference(messages: list[Msg], extra: list[Stray]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store, db = build(Path(tmp), messages, extra)
        try:
            expected = reference_detect(db, RefView.scan(store), BY_ATOM)
            got = detect(db, LocalView.scan(store), BY_ATOM)
            assert got.edits == expected.edits
            assert got.unknown == expected.unknown
            assert got.adopted == expected.adopted
            # the TEMP table is gone: nothing of the listing outlives the call
            assert db.execute("SELECT count(*) FROM sqlite_temp_master WHERE name LIKE 'lv_%'").fetchone()[0] == 0
        finally:
            db.close()


def test_detect_inside_a_transaction_and_twice(tmp_path: Path) -> None:
    """detect() may run inside a caller's transaction and any number of times per connection."""
    ms = [Msg("", "present", i % 3, "S", (), "", fate, ".A", "F")
          for i, fate in enumerate(("same", "reflag", "move", "delete", "rewrite", "copy"))]
    store, db = build(tmp_path, ms, [Stray(".B", 9, "", False)])
    expected = reference_detect(db, RefView.scan(store), BY_ATOM)
    with db.transaction():
        got = detect(db, LocalView.scan(store), BY_ATOM)
    again = detect(db, LocalView.scan(store), BY_ATOM)
    for changes in (got, again):
        assert (changes.edits, changes.unknown, changes.adopted) == \
            (expected.edits, expected.unknown, expected.adopted)
    assert expected.adopted and expected.unknown and expected.edits
    db.close()


# ----------------------------------------------------------------------------- memory


def synthetic(root: Path, n: int) -> tuple[Store, StateDB]:
    """``n`` archived messages as empty files (detect only lists names) spread over 4
    folders, each with its state row; 40 of them changed (the same 40 whatever ``n``)."""
    store = Store(root / "mail", compression="none")
    dirs = ("", ".A", ".B", ".C")
    for d in dirs:
        store.ensure_folder(d)
    db = StateDB.open(root / "state.sqlite")
    with db.transaction():
        for i in range(n):
            d = dirs[i % len(dirs)]
            base = f"17{i:08d}.M{i}P1.synthetic,S=100,W=102"
            filename = f"{base}:2,S"
            db.insert_message({
                "mail_id": f"m{i}", "folder_id": f"f{d}", "dirname": d, "base": base,
                "filename": filename, "size": 100, "vsize": 102, "sha256": "0" * 64,
                "compression": "zstd", "flags": "S", "label_ids": [], "internal_date": i,
                "first_seen": 1, "last_seen": 1,
            })
            on_disk = filename if i >= 40 else f"{base}:2,FS"  # 40 flagged locally
            (store.path_of(d, "cur", on_disk)).touch()
    return store, db


def python_peak(store: Store, db: StateDB) -> tuple[int, LocalChanges]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        changes = detect(db, LocalView.scan(store), {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base, changes


def test_python_memory_of_detect_does_not_grow_with_the_archive(tmp_path: Path) -> None:
    peaks = {}
    for n in (5_000, 50_000):
        store, db = synthetic(tmp_path / str(n), n)
        try:
            # SQLite's own memory: TEMP tables must be file-backed (spilled past a bounded
            # page cache), not an in-memory database that grows with the listing.
            assert db.execute("PRAGMA temp_store").fetchone()[0] != 2
            opts = {r[0] for r in db.execute("PRAGMA compile_options")}
            assert not opts & {"TEMP_STORE=2", "TEMP_STORE=3"}
            peak, changes = python_peak(store, db)
            assert len(changes.edits) == 40 and not changes.unknown and not changes.adopted
            peaks[n] = peak
        finally:
            db.close()
    # The former version held ~430 bytes per file plus a set of every base: ~25 MB here.
    assert peaks[50_000] - peaks[5_000] < 2_000_000, peaks
    assert peaks[50_000] < 5_000_000, peaks
