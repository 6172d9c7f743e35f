"""The Store: axsync's compressed Maildir++ archive on disk (spec: docs/maildir-format.md).

Pure file system. Every path the Store touches is built by :meth:`Store._folder_path`
from a checked directory name, so nothing is ever read or written outside the root and
no symlink is followed out of it. Every change is tmp → fsync → rename → fsync directory.
OSError is translated to StoreError (``details["missing"]`` is True when the file or
folder was not there); unsafe names raise UnsafeName.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from axsync.errors import StoreError, UnsafeName
from axsync.store import compress, keywords
from axsync.store.fsutil import atomic_write, dotlock, fsync_dir, remove_old_files
from axsync.store.names import (
    FLAG_COMPRESSED,
    KEYWORD_LETTERS,
    ROOT,
    check_filename,
    folder_dirname,
    folder_path,
    is_safe_dirname,
    needs_name_record,
    normalize_flags,
    parse_name,
    subscription_name,
    with_flags,
)
from axsync.store.writer import MessageWriter, StoredFile

__all__ = ["LocalFile", "MessageWriter", "Store", "StoredFile", "is_message_name"]

FOLDER_NAME_FILE = "axsync-folder-name"
QUARANTINE_DIR = "axsync-quarantine"
SUBSCRIPTIONS_FILE = "subscriptions"
MAILDIRFOLDER_FILE = "maildirfolder"
SUBDIRS = ("cur", "new", "tmp")
DEFAULT_TMP_AGE_S = 3600

_NOT_MESSAGES = frozenset({MAILDIRFOLDER_FILE, SUBSCRIPTIONS_FILE})
_OUR_TMP = re.compile(r"\d+\.M\d+P\d+Q\d+R[0-9a-f]{8}\.")


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A message file found on disk. ``flags`` are normalized; ``size``/``vsize`` come from
    the name (None when absent); ``subdir`` is ``cur`` or ``new``."""

    dirname: str
    subdir: str
    filename: str
    base: str
    flags: str
    size: int | None
    vsize: int | None


def is_message_name(name: str) -> bool:
    """False for dotfiles, ``dovecot*``, ``axsync*``, ``maildirfolder``, ``subscriptions``."""
    return not (name.startswith((".", "dovecot", "axsync")) or name in _NOT_MESSAGES or not name)


@contextlib.contextmanager
def _fs(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        raise StoreError(f"{what}: {exc.strerror or exc}", missing=missing) from exc


class Store:
    """A Maildir++ tree at ``root`` whose new messages are written with ``compression``
    (zstd | gzip | none) at ``level``. Creating a Store touches nothing on disk; a bad
    compression or level raises StoreError."""

    def __init__(self, root: Path | str, compression: str = "zstd", level: int = 3) -> None:
        self.root = Path(os.path.abspath(root))
        self.compression = compress.check_method(compression)
        self.level = level
        compress.Compressor(self.compression, level)  # StoreError now for a bad level
        # writer(): folders already checked by this Store (a pull writes thousands of
        # messages per folder; four lstat calls each). Forgotten when this Store renames or
        # removes a folder.
        self._checked: dict[str, Path] = {}

    # ------------------------------------------------------------------ paths

    def _folder_path(self, dirname: str) -> Path:
        """The folder directory for ``dirname``; UnsafeName unless the name is safe, the
        directory is not a symlink and it resolves directly inside the root."""
        if not is_safe_dirname(dirname):
            raise UnsafeName(f"unsafe folder directory name {dirname!r}")
        if dirname == ROOT:
            return self.root
        # A safe name is one path component, so the folder is a direct child of the root
        # and only its own entry can lead elsewhere: one lstat (this runs for every message
        # written or read; resolving the whole path took a dozen system calls).
        path = self.root / dirname
        if os.path.islink(path):
            raise UnsafeName(f"folder {dirname!r} is a symlink or leaves the maildir")
        return path

    def _subdir(self, dirname: str, subdir: str) -> Path:
        if subdir not in SUBDIRS:
            raise UnsafeName(f"{subdir!r} is not cur, new or tmp")
        path = self._folder_path(dirname) / subdir
        if os.path.islink(path):
            raise UnsafeName(f"{path} is a symlink")
        return path

    def path_of(self, dirname: str, subdir: str, filename: str) -> Path:
        """The path of a message file (not checked for existence). UnsafeName for bad
        names."""
        check_filename(filename)
        return self._subdir(dirname, subdir) / filename

    def _find(self, dirname: str, filename: str) -> tuple[str, Path]:
        for sub in ("cur", "new"):
            path = self.path_of(dirname, sub, filename)
            if os.path.lexists(path):
                return sub, path
        raise StoreError(f"no message {filename} in folder {dirname!r}", missing=True)

    # ------------------------------------------------------------------ folders

    def ensure_folder(self, dirname: str, path: tuple[str, ...] | None = None) -> Path:
        """Create the folder (and the root) if missing: ``cur/ new/ tmp/`` (0700) and, for a
        non-root folder, an empty ``maildirfolder``. With ``path`` given for a name that
        does not decode back to it (:func:`names.needs_name_record`: a disambiguated name,
        or a ``/`` in a level, stored as ``∕``), also write ``axsync-folder-name`` holding
        the path. Idempotent. Returns the folder dir."""
        folder = self._folder_path(dirname)
        with _fs(f"cannot create folder {dirname!r}"):
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            created = False
            for target in (folder, *(folder / sub for sub in SUBDIRS)):
                if target.is_symlink():
                    raise UnsafeName(f"{target} is a symlink")
                if not target.is_dir():
                    os.mkdir(target, 0o700)
                    created = True
            if dirname != ROOT:
                flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
                os.close(os.open(folder / MAILDIRFOLDER_FILE, flags, 0o600))
            if path is not None and needs_name_record(dirname, path):
                record = {"dirname": dirname, "path": list(path)}
                data = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
                name_file = folder / FOLDER_NAME_FILE
                if not name_file.is_file() or name_file.read_bytes() != data:
                    atomic_write(folder, FOLDER_NAME_FILE, data)
            if created:
                fsync_dir(folder)
                fsync_dir(self.root)
        return folder

    def folders(self) -> list[str]:
        """Directory names of every folder present (root ``""`` first): the root if it has
        ``cur/``, and each ``.name`` directory with ``cur/``. A folder that is a symlink is
        listed (so it is not mistaken for deleted) but any use of it raises UnsafeName."""
        out: list[str] = []
        with _fs(f"cannot list {self.root}"):
            if not self.root.is_dir():
                return out
            if (self.root / "cur").is_dir():
                out.append(ROOT)
            with os.scandir(self.root) as it:
                for entry in it:
                    if (
                        entry.name.startswith(".")
                        and is_safe_dirname(entry.name)
                        and entry.is_dir()  # a symlinked folder is listed; using it raises
                        and os.path.isdir(os.path.join(entry.path, "cur"))
                    ):
                        out.append(entry.name)
        return [out[0], *sorted(out[1:])] if out and out[0] == ROOT else sorted(out)

    def _recorded_path(self, dirname: str) -> tuple[str, ...] | None:
        """The path in the folder's ``axsync-folder-name`` if that names this directory."""
        try:
            data = json.loads((self._folder_path(dirname) / FOLDER_NAME_FILE).read_text("utf-8"))
            path = data["path"]
            if data["dirname"] == dirname and all(isinstance(c, str) for c in path):
                return tuple(path)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def folder_path_of(self, dirname: str, *, strict: bool = True) -> tuple[str, ...]:
        """The folder path of a directory: from its ``axsync-folder-name`` file when that
        names this very directory, else :func:`names.folder_path` (UnsafeName in strict
        mode for names it cannot decode exactly)."""
        return self._recorded_path(dirname) or folder_path(dirname, strict=strict)

    def rename_folder(
        self, old_dirname: str, new_dirname: str, path: tuple[str, ...] | None = None
    ) -> None:
        """Rename one folder directory (sub-folders are separate directories: rename them
        too). StoreError if ``new_dirname`` exists or either is the root. ``path`` as in
        :meth:`ensure_folder`; a stale ``axsync-folder-name`` is removed."""
        if ROOT in (old_dirname, new_dirname):
            raise StoreError("the root folder (INBOX) cannot be renamed")
        self._checked.clear()
        src, dst = self._folder_path(old_dirname), self._folder_path(new_dirname)
        if os.path.lexists(dst):
            raise StoreError(f"folder {new_dirname!r} already exists")
        with _fs(f"cannot rename folder {old_dirname!r}"):
            os.rename(src, dst)
            fsync_dir(self.root)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dst / FOLDER_NAME_FILE)
        if path is not None:
            self.ensure_folder(new_dirname, path)

    def remove_folder(self, dirname: str) -> None:
        """Delete a folder directory that holds no message in ``cur/``/``new/`` and nothing
        in ``tmp/`` (Dovecot's index files go with it). StoreError otherwise."""
        if dirname == ROOT:
            raise StoreError("the root folder (INBOX) cannot be removed")
        self._checked.clear()
        folder = self._folder_path(dirname)
        with _fs(f"cannot remove folder {dirname!r}"):
            for sub in SUBDIRS:
                directory = self._subdir(dirname, sub)
                with contextlib.suppress(FileNotFoundError), os.scandir(directory) as it:
                    if any(sub == "tmp" or is_message_name(e.name) for e in it):
                        raise StoreError(f"folder {dirname!r} is not empty ({sub}/)")
            shutil.rmtree(folder)
            fsync_dir(self.root)

    def write_subscriptions(self, folders: Iterable[tuple[str, ...] | str]) -> None:
        """Replace Dovecot's ``subscriptions`` file at the root (``V\t2\n\n`` then one
        storage name per line, levels joined by TAB). Each item is a directory name as on
        disk, or a folder path: a path is looked up among the folders present that record
        it in ``axsync-folder-name`` (disambiguated ones, and names with ``/``), else its
        plain dirname is used;
        a path with neither (a plain name over 255 bytes and no folder) is left out."""
        recorded: dict[tuple[str, ...], str] = {}
        for dirname in self.folders():
            if path := self._recorded_path(dirname):
                recorded[path] = dirname
        lines: dict[str, None] = {}
        for item in folders:
            if isinstance(item, str):
                if not is_safe_dirname(item):
                    raise UnsafeName(f"unsafe folder directory name {item!r}")
                dirname = item
            else:
                dirname = recorded.get(item) or folder_dirname(item)
                if not is_safe_dirname(dirname):
                    continue
            lines[subscription_name(dirname)] = None
        data = b"V\t2\n\n" + b"".join(os.fsencode(line) + b"\n" for line in lines)
        with _fs(f"cannot write {self.root / SUBSCRIPTIONS_FILE}"):
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            atomic_write(self.root, SUBSCRIPTIONS_FILE, data)

    # ------------------------------------------------------------------ keywords

    def keywords(self, dirname: str) -> dict[int, str]:
        """The folder's ``dovecot-keywords``: index (0 = ``a``) → atom."""
        return keywords.read_keywords(self._folder_path(dirname))

    def ensure_keywords(self, dirname: str, atoms: Iterable[str]) -> dict[str, str]:
        """atom → letter in this folder, appending what is missing (see
        :func:`keywords.ensure_keywords`: atoms absent from the result did not fit)."""
        return keywords.ensure_keywords(self._folder_path(dirname), atoms)

    def folder_lock(self, dirname: str) -> contextlib.AbstractContextManager[None]:
        """Dovecot's ``dovecot-uidlist.lock`` for the folder; hold it (briefly: others
        break it after 2 min) around renames Dovecot must not see half-done."""
        return dotlock(self._folder_path(dirname) / keywords.UIDLIST_LOCK)

    # ------------------------------------------------------------------ reading

    def scan(self) -> Iterator[LocalFile]:
        """Every message file in ``cur/`` and ``new/`` of every folder, from directory
        listings only (no file reads, no stat). Skips non-message entries and
        symlinks."""
        for dirname in self.folders():
            yield from self.scan_folder(dirname)

    def scan_folder(self, dirname: str) -> Iterator[LocalFile]:
        """:meth:`scan` for one folder (nothing if it has no ``cur/``/``new/``)."""
        for sub in ("cur", "new"):
            directory = self._subdir(dirname, sub)
            try:
                it = os.scandir(directory)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"cannot list {directory}: {exc.strerror}") from exc
            with it:
                for entry in it:
                    name = entry.name
                    if is_message_name(name) and entry.is_file(follow_symlinks=False):
                        p = parse_name(name)
                        flags = normalize_flags(p.flags)
                        yield LocalFile(dirname, sub, name, p.base, flags, p.size, p.vsize)

    def locate(self, dirname: str, base: str, hint: str | None = None) -> LocalFile | None:
        """The file whose base is ``base`` (flags may have changed), in ``cur/`` then
        ``new/``; None if absent. ``hint`` (a likely file name) is tried first; otherwise
        this lists the folder, so use :meth:`scan` for many look-ups."""
        if hint is not None and parse_name(hint).base == base:
            for sub in ("cur", "new"):
                if os.path.lexists(self.path_of(dirname, sub, hint)):
                    p = parse_name(hint)
                    flags = normalize_flags(p.flags)
                    return LocalFile(dirname, sub, hint, base, flags, p.size, p.vsize)
        for found in self.scan_folder(dirname):
            if found.base == base:
                return found
        return None

    def open_message(self, dirname: str, subdir: str, filename: str) -> BinaryIO:
        """A stream of the uncompressed message (compression detected by magic bytes)."""
        return compress.open_message(self.path_of(dirname, subdir, filename))

    def read_message(self, dirname: str, subdir: str, filename: str,
                     limit: int | None = None) -> bytes:
        """The whole uncompressed message (or its first ``limit`` bytes)."""
        return compress.read_message(self.path_of(dirname, subdir, filename), limit)

    def digest(self, dirname: str, subdir: str, filename: str) -> tuple[str, int, int]:
        """(sha256 hex, size, vsize) of the uncompressed message, streamed: what the
        writer recorded when the file was committed (vsize counts bare LF as CRLF)."""
        h = hashlib.sha256()
        size = vsize = 0
        prev = b""
        with self.open_message(dirname, subdir, filename) as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
                crlf = chunk.count(b"\r\n") + (1 if prev == b"\r" and chunk[:1] == b"\n" else 0)
                vsize += len(chunk) + chunk.count(b"\n") - crlf
                prev = chunk[-1:]
        return h.hexdigest(), size, vsize

    # ------------------------------------------------------------------ writing

    def writer(self, dirname: str, unique: str | None = None,
               size_hint: int | None = None) -> MessageWriter:
        """A :class:`MessageWriter` into the existing folder ``dirname`` (see
        :meth:`ensure_folder`); StoreError if the folder is missing. ``unique``: the
        message's unique part (default: :func:`names.new_unique`); a caller's own must
        not already be used in the folder (check with :meth:`locate`); UnsafeName if it
        cannot be one. ``size_hint``: the expected size, which sizes the compressor (memory)."""
        folder = self._checked.get(dirname)
        if folder is None:
            self._subdir(dirname, "tmp")
            folder = self._checked[dirname] = self._subdir(dirname, "cur").parent
        return MessageWriter(dirname, folder, self.compression, self.level, unique, size_hint)

    def set_flags(self, dirname: str, filename: str, flags: str,
                  unsynced: set[Path] | None = None) -> str:
        """Rename the file to carry ``flags`` (normalized), keeping its base; a file in
        ``new/`` moves to ``cur/``. ``Z`` describes the file, not the message: a name that
        has it keeps it. Returns the new name (unchanged name: no-op). StoreError with
        ``missing`` if the file is gone (look it up with :meth:`locate`).

        The rename is made durable (directory fsync) before returning, unless ``unsynced``
        is given: the directories to sync are added to it instead, and the caller syncs
        them (:meth:`sync_dirs`) before it records the new name anywhere."""
        sub, src = self._find(dirname, filename)
        if FLAG_COMPRESSED in parse_name(filename).flags:
            flags += FLAG_COMPRESSED
        name = with_flags(filename, flags)
        if sub == "cur" and name == filename:
            return filename
        dst = self.path_of(dirname, "cur", name)
        with _fs(f"cannot rename {filename}"):
            if os.path.lexists(dst):
                raise StoreError(f"{dst} already exists")
            os.rename(src, dst)
            touched = (dst.parent,) if sub == "cur" else (dst.parent, src.parent)
            if unsynced is None:
                for path in touched:
                    fsync_dir(path)
            else:
                unsynced.update(touched)
        return name

    def sync_dirs(self, paths: set[Path]) -> None:
        """fsync each directory in ``paths`` (and empty the set): the renames
        :meth:`set_flags` left to the caller are durable after this."""
        while paths:
            path = paths.pop()
            try:
                fsync_dir(path)
            except OSError as exc:
                paths.add(path)
                raise StoreError(f"cannot sync {path}: {exc.strerror}") from exc

    def move(self, src_dirname: str, filename: str, dst_dirname: str) -> str:
        """Move a message into ``dst_dirname``/cur keeping its base; returns the new name.
        Keyword letters are re-mapped to the destination's ``dovecot-keywords`` (letters
        without a meaning, or beyond its 26 keywords, are dropped). Both dirs fsynced."""
        sub, src = self._find(src_dirname, filename)
        flags = parse_name(filename).flags
        if src_dirname == dst_dirname:
            return filename if sub == "cur" else self.set_flags(src_dirname, filename, flags)
        letters = [c for c in flags if c in KEYWORD_LETTERS]
        if letters:
            atoms = keywords.keywords_of(flags, self.keywords(src_dirname))
            mapped = self.ensure_keywords(dst_dirname, atoms).values()
            flags = "".join(c for c in flags if c not in KEYWORD_LETTERS) + "".join(mapped)
        name = with_flags(filename, flags)
        dst = self.path_of(dst_dirname, "cur", name)
        if not dst.parent.is_dir():
            raise StoreError(f"folder {dst_dirname!r} does not exist")
        with _fs(f"cannot move {filename} to {dst_dirname!r}"):
            if os.path.lexists(dst):
                raise StoreError(f"{dst} already exists")
            os.rename(src, dst)
            fsync_dir(dst.parent)
            fsync_dir(src.parent)
        return name

    def delete(self, dirname: str, filename: str) -> bool:
        """Remove a message file from ``cur/`` or ``new/``. False if it was already gone."""
        try:
            _, path = self._find(dirname, filename)
        except StoreError as exc:
            if exc.details.get("missing"):
                return False
            raise
        with _fs(f"cannot delete {filename}"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            fsync_dir(path.parent)
        return True

    def quarantine(self, dirname: str, filename: str, reason: str) -> Path:
        """Move a message out of the Maildir into
        ``<root>/axsync-quarantine/<UTC time>-<random>/<filename>``, next to a
        ``reason.json`` (reason, folder, subdir, file name, time). Returns the new path."""
        sub, src = self._find(dirname, filename)
        if (self.root / QUARANTINE_DIR).is_symlink():
            raise UnsafeName(f"{self.root / QUARANTINE_DIR} is a symlink")
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        qdir = self.root / QUARANTINE_DIR / f"{stamp}-{os.urandom(4).hex()}"
        info = {"reason": reason, "dirname": dirname, "subdir": sub, "filename": filename}
        data = json.dumps({**info, "time": now}).encode("ascii") + b"\n"
        with _fs(f"cannot quarantine {filename}"):
            os.makedirs(qdir, mode=0o700)
            atomic_write(qdir, "reason.json", data)
            target = qdir / filename
            os.rename(src, target)
            fsync_dir(qdir)
            fsync_dir(qdir.parent)
            fsync_dir(src.parent)
        return target

    def cleanup_tmp(self, max_age_s: float = DEFAULT_TMP_AGE_S) -> int:
        """Remove axsync's own leftovers older than ``max_age_s``: message files in
        ``tmp/`` named by axsync's writer and ``axsync-tmp.*`` files in folder dirs and
        the root. Dovecot's tmp files are left alone. Returns how many were removed."""
        cutoff = time.time() - max_age_s
        removed = 0
        for dirname in self.folders():
            folder = self._folder_path(dirname)
            for directory, pattern in ((self._subdir(dirname, "tmp"), _OUR_TMP), (folder, None)):
                with _fs(f"cannot clean {directory}"):
                    removed += remove_old_files(directory, pattern, cutoff)
        return removed
