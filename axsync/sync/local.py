"""What changed in the archive since the last agreed state: a directory scan against the DB.

Only directory listings are read, except for files that have no state row: those are hashed
once, so a file Dovecot re-wrote under its own name (IMAP MOVE/COPY with hardlinks, dsync)
is recognised by content and adopted instead of being uploaded or lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from axsync.errors import AxsyncError
from axsync.statedb import MessageRow, StateDB
from axsync.store import LocalFile, Store
from axsync.store.keywords import keywords_of, read_keywords

SYSTEM = frozenset("DFRST")


@dataclass(frozen=True, slots=True)
class LocalState:
    """What a file name says: server flag letters, and keyword atoms."""

    letters: str
    atoms: tuple[str, ...]


@dataclass
class LocalView:
    """Every message file of the archive by base name, plus per-folder keyword maps."""

    store: Store
    files: dict[str, LocalFile] = field(default_factory=dict)
    _keywords: dict[str, dict[int, str]] = field(default_factory=dict)

    @classmethod
    def scan(cls, store: Store) -> LocalView:
        view = cls(store)
        for f in store.scan():
            view.files[f.base] = f
        return view

    def keywords(self, dirname: str) -> dict[int, str]:
        mapping = self._keywords.get(dirname)
        if mapping is None:
            folder = self.store.root / dirname if dirname else self.store.root
            mapping = read_keywords(Path(folder))
            self._keywords[dirname] = mapping
        return mapping

    def state_of(self, f: LocalFile) -> LocalState:
        info = f.filename.rsplit(":2,", 1)[1] if ":2," in f.filename else ""
        letters = "".join(sorted(set(info) & SYSTEM))
        atoms = tuple(keywords_of(info, self.keywords(f.dirname)))
        return LocalState(letters, atoms)

    def forget_keywords(self, dirname: str) -> None:
        self._keywords.pop(dirname, None)


def label_ids_for(atoms: Iterable[str], by_atom: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(known label ids, atoms with no label yet). Atoms compare case-insensitively, like
    IMAP keywords and Axigen labels."""
    folded = {a.casefold(): i for a, i in by_atom.items()}
    ids, unknown = [], []
    for atom in atoms:
        lid = folded.get(atom.casefold())
        if lid is None:
            unknown.append(atom)
        else:
            ids.append(lid)
    return tuple(sorted(set(ids))), tuple(sorted(set(unknown)))


@dataclass(frozen=True, slots=True)
class Edit:
    """One archived message whose file no longer matches its state row."""

    row: MessageRow
    file: LocalFile | None  # None: deleted locally
    letters: str = ""
    label_ids: tuple[str, ...] = ()
    new_atoms: tuple[str, ...] = ()  # keywords that are not labels yet


@dataclass
class LocalChanges:
    edits: list[Edit] = field(default_factory=list)
    unknown: list[LocalFile] = field(default_factory=list)  # no state row, no content match
    adopted: list[tuple[MessageRow, LocalFile]] = field(default_factory=list)


def _digest(store: Store, f: LocalFile) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with store.open_message(f.dirname, f.subdir, f.filename) as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def detect(db: StateDB, view: LocalView, by_atom: Mapping[str, str]) -> LocalChanges:
    """Compare every present row with the file that carries its base name."""
    out = LocalChanges()
    files = dict(view.files)
    missing: list[MessageRow] = []
    for row in db.messages_where("state = 'present'"):
        f = files.pop(row.base, None)
        if f is None:
            missing.append(row)
            continue
        _compare(row, f, view, by_atom, out)
    known = {b for (b,) in db.execute("SELECT base FROM messages").fetchall()}
    strays = [f for b, f in files.items() if b not in known]
    if strays and missing:
        by_content = {(r.sha256, r.size): r for r in missing}
        for f in strays:
            try:
                digest, size = _digest(view.store, f)
            except (AxsyncError, OSError, ValueError, EOFError):
                out.unknown.append(f)
                continue
            match = by_content.pop((digest, size), None)
            if match is None:
                out.unknown.append(f)
                continue
            out.adopted.append((match, f))
            missing.remove(match)
            _compare(match, f, view, by_atom, out, force=True)
    else:
        out.unknown.extend(strays)
    for row in missing:
        out.edits.append(Edit(row, None))
    return out


def _compare(row: MessageRow, f: LocalFile, view: LocalView, by_atom: Mapping[str, str],
             out: LocalChanges, force: bool = False) -> None:
    if not force and f.filename == row.filename and f.dirname == row.dirname:
        return  # nothing renamed since axsync last wrote or saw it
    state = view.state_of(f)
    ids, new_atoms = label_ids_for(state.atoms, by_atom)
    if (force or f.dirname != row.dirname or state.letters != row.flags
            or ids != tuple(sorted(row.label_ids)) or new_atoms):
        out.edits.append(Edit(row, f, state.letters, ids, new_atoms))
