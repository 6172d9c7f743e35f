"""``axsync export``: plain, uncompressed copies of the archive for other tools.

* ``mbox``: mboxrd, one file per folder (``DEST/Archive/2024.mbox``), flags as
  ``Status``/``X-Status``, labels as ``X-Keywords``.
* ``eml``: one ``.eml`` per message (the exact archived bytes) in a folder tree.
* ``maildir``: a plain Maildir++ (same directory and file names, flags, keyword letters,
  ``dovecot-keywords``, ``subscriptions`` and mtimes; no ``Z`` flag) that mutt, notmuch
  and mu read.

Streaming: messages are copied one at a time through bounded buffers, folders are read
from the DB with a cursor. Flags and keywords come from each file's current name (what
the user sees in a mail client), the date from the DB. Everything is written below DEST
(see :mod:`axsync.archive.safepath`); existing files are never overwritten.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from axsync.archive import mbox
from axsync.archive.access import Archive
from axsync.archive.locate import Locator
from axsync.archive.safepath import Destination, NameTable, safe_component, slug
from axsync.errors import StoreError, UnsafeName, UsageError
from axsync.store import LocalFile, keywords_of
from axsync.store.keywords import KEYWORDS_FILE
from axsync.store.names import FLAG_COMPRESSED, ROOT, is_safe_dirname, parse_name

FORMATS = ("mbox", "eml", "maildir")
_COPY_BUFFER = 256 * 1024


@dataclass(slots=True)
class ExportResult:
    dest: Path
    messages: int = 0
    folders: int = 0
    bytes: int = 0
    skipped: int = 0  # already in DEST (eml, maildir: same file name)
    missing: list[str] = field(default_factory=list)  # messages whose file is gone


@dataclass(frozen=True, slots=True)
class _Item:
    uid: int
    date: int
    subject: str
    file: LocalFile


def _copy(src: BinaryIO, fd: int) -> int:
    total = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_COPY_BUFFER):
            out.write(chunk)
            total += len(chunk)
    return total


class Exporter:
    def __init__(self, archive: Archive, fmt: str, dest: Path,
                 progress: Callable[[int], None] | None = None) -> None:
        if fmt not in FORMATS:
            raise UsageError(f"unknown export format {fmt!r} (mbox, eml or maildir)")
        self.archive = archive
        self.fmt = fmt
        self.dest_path = dest
        self.progress = progress
        self.names = NameTable()
        self.locator = Locator(archive.store)

    def dirnames(self, folder: str | None) -> list[str]:
        if folder is None:
            return list(self.archive.folder_paths())
        found = self.archive.dirnames_for(folder)
        if not found:
            known = ", ".join(sorted(self.archive.folder_name(d) for d in self.archive.folder_paths()))
            raise UsageError(f"no folder {folder!r} in the archive (folders: {known})")
        return found

    def _path(self, dirname: str) -> tuple[str, ...]:
        return self.archive.folder_paths().get(dirname) or (dirname,)

    def run(self, folder: str | None = None) -> ExportResult:
        try:
            return self._run(folder)
        finally:
            self.locator.close()  # its open directories (it opens them again if used again)

    def _run(self, folder: str | None) -> ExportResult:
        dirnames = self.dirnames(folder)
        for dirname in dirnames:  # names first, so they do not depend on what is empty
            self.names.path(self._path(dirname))
        if self.fmt == "mbox":
            self._check_mbox_targets(dirnames)
        dest = Destination(self.dest_path)
        result = ExportResult(dest.root)
        if self.fmt == "maildir":
            _maildir_folder(dest, ROOT)
            _copy_subscriptions(self.archive, dest)
        for dirname in dirnames:
            if self._export_folder(dest, dirname, result):
                result.folders += 1
        return result

    def _items(self, dirname: str, result: ExportResult) -> Iterator[_Item]:
        cur = self.archive.db.execute(
            "SELECT uid, dirname, base, filename, internal_date, subject FROM messages "
            "WHERE dirname = ? AND state != 'tombstoned' ORDER BY internal_date, uid", (dirname,)
        )
        while rows := cur.fetchmany(500):
            for uid, dname, base, filename, date, subject in rows:
                found = self.locator.find(dname, base, filename)
                if found is None:
                    result.missing.append(f"{uid} ({self.archive.folder_name(dname)}/{base})")
                    continue
                yield _Item(uid, date, subject, found)

    def _export_folder(self, dest: Destination, dirname: str, result: ExportResult) -> bool:
        path = self._path(dirname)
        items = self._items(dirname, result)
        if self.fmt == "maildir":
            _maildir_folder(dest, dirname)
            _copy_keywords(self.archive, dest, dirname)
            return self._each(items, result, lambda it: self._to_maildir(dest, dirname, it))
        first = next(items, None)
        if first is None:
            return False
        items = _chain(first, items)
        if self.fmt == "eml":
            directory = dest.directory(self.names.path(path))
            return self._each(items, result, lambda it: self._to_eml(directory, it))
        return self._to_mbox(dest, path, dirname, items, result)

    def _each(self, items: Iterator[_Item], result: ExportResult,
              write: Callable[[_Item], int | None]) -> bool:
        for item in items:
            written = write(item)
            if written is None:
                result.skipped += 1
            else:
                result.messages += 1
                result.bytes += written
            if self.progress is not None:
                self.progress(1)
        return True

    def _open(self, item: _Item) -> BinaryIO:
        f = item.file
        return self.archive.store.open_message(f.dirname, f.subdir, f.filename)

    # ------------------------------------------------------------------ formats

    def _to_eml(self, directory: Path, item: _Item) -> int | None:
        stamp = time.strftime("%Y-%m-%d_%H%M%S", time.gmtime(item.date))
        name = safe_component(f"{stamp}_{item.uid}_{slug(item.subject)}.eml")
        if os.path.lexists(directory / name):
            return None
        with self._open(item) as src:
            written = _copy(src, Destination.create(directory, name))
        os.utime(directory / name, (item.date, item.date))
        return written

    def _to_maildir(self, dest: Destination, dirname: str, item: _Item) -> int | None:
        folder = dest.directory(() if dirname == ROOT else (dirname,))
        flags = "".join(c for c in item.file.flags if c != FLAG_COMPRESSED)
        name = f"{parse_name(item.file.filename).base}:2,{flags}"
        if any(os.path.lexists(folder / sub / name) for sub in ("cur", "new")):
            return None
        tmp_name = f"axsync-export.{item.uid}.{os.getpid()}"
        with self._open(item) as src:
            written = _copy(src, Destination.create(folder / "tmp", tmp_name))
        mtime = self._mtime(item)
        os.utime(folder / "tmp" / tmp_name, (mtime, mtime))
        os.rename(folder / "tmp" / tmp_name, folder / "cur" / name)
        return written

    def _mtime(self, item: _Item) -> float:
        try:
            f = item.file
            return self.archive.store.path_of(f.dirname, f.subdir, f.filename).stat().st_mtime
        except OSError:
            return float(item.date)

    def _check_mbox_targets(self, dirnames: list[str]) -> None:
        for dirname in dirnames:
            parts = self.names.path(self._path(dirname))
            target = self.dest_path.joinpath(*parts[:-1], parts[-1] + ".mbox")
            if os.path.lexists(target):
                raise UsageError(f"{target} exists; not overwriting it (export into a new directory)")

    def _to_mbox(self, dest: Destination, path: tuple[str, ...], dirname: str,
                 items: Iterator[_Item], result: ExportResult) -> bool:
        parts = self.names.path(path)
        directory = dest.directory(parts[:-1])
        keywords = self.archive.store.keywords(dirname)
        fd = Destination.create(directory, parts[-1] + ".mbox")
        with os.fdopen(fd, "wb", buffering=_COPY_BUFFER) as out:
            for item in items:
                with self._open(item) as src:
                    atoms = keywords_of(item.file.flags, keywords)
                    result.bytes += mbox.write_message(out, src, item.date, item.file.flags, atoms)
                result.messages += 1
                if self.progress is not None:
                    self.progress(1)
        return True


def _chain(first: _Item, rest: Iterator[_Item]) -> Iterator[_Item]:
    yield first
    yield from rest


def _maildir_folder(dest: Destination, dirname: str) -> None:
    if not is_safe_dirname(dirname):
        raise UnsafeName(f"unsafe folder directory name {dirname!r}")
    folder = dest.directory(() if dirname == ROOT else (dirname,))
    for sub in ("cur", "new", "tmp"):
        dest.directory((() if dirname == ROOT else (dirname,)) + (sub,))
    if dirname != ROOT and not (folder / "maildirfolder").exists():
        os.close(Destination.create(folder, "maildirfolder"))


def _copy_keywords(archive: Archive, dest: Destination, dirname: str) -> None:
    try:
        mapping = archive.store.keywords(dirname)
    except StoreError:
        return
    target = dest.directory(() if dirname == ROOT else (dirname,)) / KEYWORDS_FILE
    if mapping and not os.path.lexists(target):
        data = "".join(f"{i} {name}\n" for i, name in sorted(mapping.items()))
        with os.fdopen(Destination.create(target.parent, KEYWORDS_FILE), "w", encoding="utf-8") as fh:
            fh.write(data)


def _copy_subscriptions(archive: Archive, dest: Destination) -> None:
    source = archive.store.root / "subscriptions"
    target = dest.root / "subscriptions"
    if source.is_file() and not source.is_symlink() and not os.path.lexists(target):
        with open(source, "rb") as src, os.fdopen(Destination.create(dest.root, "subscriptions"), "wb") as out:
            shutil.copyfileobj(src, out)
