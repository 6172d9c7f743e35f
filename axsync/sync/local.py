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
from axsync.store.keywords import atom_to_label, keywords_of, read_keywords

SYSTEM = frozenset("DFRST")
PUSHABLE = frozenset("SF")  # the flags the REST API can set (isUnread, isFlagged)


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
    # Further files with a base already seen: Dovecot's COPY to another folder links the
    # file there under the same name (maildir_copy_with_hardlinks), so a base can occur
    # in several folders.
    copies: list[LocalFile] = field(default_factory=list)
    _keywords: dict[str, dict[int, str]] = field(default_factory=dict)

    @classmethod
    def scan(cls, store: Store) -> LocalView:
        view = cls(store)
        for f in store.scan():
            if f.base in view.files:
                view.copies.append(f)
            else:
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


def fold_labels(by_atom: Mapping[str, str]) -> dict[str, str]:
    """Folded label name -> label id, for :func:`ids_for`."""
    return {atom_to_label(a).casefold(): i for a, i in by_atom.items()}


def ids_for(atoms: Iterable[str], folded: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(known label ids, atoms with no label yet) against :func:`fold_labels`' index."""
    ids, unknown = [], []
    for atom in atoms:
        lid = folded.get(atom_to_label(atom).casefold())
        if lid is None:
            unknown.append(atom)
        else:
            ids.append(lid)
    return tuple(sorted(set(ids))), tuple(sorted(set(unknown)))


def dir_fingerprint(store: Store) -> str:
    """A digest of every folder's ``cur/`` and ``new/`` modification times (nanoseconds)
    and of the set of folders. Renaming, adding or deleting a message file changes it; so
    does Dovecot moving mail. O(folders) ``stat`` calls, no listing of messages."""
    h = hashlib.sha256()
    for dirname in sorted(store.folders()):
        h.update(dirname.encode("utf-8", "surrogateescape") + b"\0")
        for sub in ("cur", "new"):
            try:
                h.update(str(store.path_of(dirname, sub, "x").parent.stat().st_mtime_ns).encode())
            except (OSError, AxsyncError):
                h.update(b"-")
            h.update(b"\0")
    return h.hexdigest()


def label_ids_for(atoms: Iterable[str], by_atom: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(known label ids, atoms with no label yet). A keyword stands for the label whose
    name it decodes to (``atom_to_label``), compared case-insensitively like IMAP keywords
    and Axigen labels; so a keyword a client spelled differently (``~41bc`` for ``Abc``)
    still finds its label."""
    return ids_for(atoms, fold_labels(by_atom))


@dataclass(frozen=True, slots=True)
class Edit:
    """One archived message whose file no longer matches its state row."""

    row: MessageRow
    file: LocalFile | None  # None: deleted locally
    letters: str = ""
    label_ids: tuple[str, ...] = ()
    new_atoms: tuple[str, ...] = ()  # keywords that are not labels yet

    @property
    def differs(self) -> bool:
        """Something the server must still be told (not a mere rename of the file)."""
        if self.file is None:
            return True
        return (self.file.dirname != self.row.dirname
                or set(self.letters) & PUSHABLE != set(self.row.flags) & PUSHABLE
                or self.label_ids != tuple(sorted(self.row.label_ids)) or bool(self.new_atoms))


@dataclass
class LocalChanges:
    edits: list[Edit] = field(default_factory=list)
    unknown: list[LocalFile] = field(default_factory=list)  # no state row, no content match
    adopted: list[tuple[MessageRow, LocalFile]] = field(default_factory=list)


def detect(db: StateDB, view: LocalView, by_atom: Mapping[str, str]) -> LocalChanges:
    """Compare every present row with the file that carries its base name.

    Several files with one base (a copy made by Dovecot into another folder): the one in
    the row's folder is the message, the others are copies with no server mail of their
    own (kept and reported like any unknown file). A row without a file may be a file
    another program re-wrote under a new name: adopted when its content matches."""
    out = LocalChanges()
    folded = fold_labels(by_atom)
    files = dict(view.files)
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
    # A file whose row is tombstoned (its mail is gone from the server) has no server copy
    # either: it is reported with the unknown files, never silently ignored.
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


def _compare(row: MessageRow, f: LocalFile, view: LocalView, folded: Mapping[str, str],
             out: LocalChanges, force: bool = False) -> None:
    """An Edit when the file differs from the row in anything that can be pushed (S, F,
    labels, folder), or was merely renamed (its new name is then recorded).

    The file name alone cannot tell: a pull that merged a server change with a local one
    records the merged name while the row keeps the server's flags until the push."""
    state = view.state_of(f)
    ids, new_atoms = ids_for(state.atoms, folded)
    differs = (f.dirname != row.dirname or set(state.letters) & PUSHABLE != set(row.flags) & PUSHABLE
               or ids != tuple(sorted(row.label_ids)) or bool(new_atoms))
    if force or differs or f.filename != row.filename:
        out.edits.append(Edit(row, f, state.letters, ids, new_atoms))
