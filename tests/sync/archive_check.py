"""The archive-versus-server oracle for pull tests.

:func:`assert_archive_equals_server` reads the fake server's mailbox directly (not over
HTTP) and the archive directly from disk (not through the engine), and fails with a
readable list of every difference. It is deliberately written without the engine's
planner or codecs for what it checks (flag letters, exclusion, sizes); it only uses the
store's *decoding* helpers (names.folder_path, parse_name, read_keywords, atom_to_label,
read_message), which have their own tests.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from axsync.fake.server import FakeAxigen
from axsync.statedb import StateDB
from axsync.store import atom_to_label, folder_path, parse_name, read_keywords, read_message
from axsync.store.maildir import FOLDER_NAME_FILE, is_message_name

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"
SYSTEM_LETTERS = "DFPRST"
# Axigen role -> the name a role glob matches (the contract's default exclude is "Junk").
ROLE_GLOB_NAMES = {"inbox": "INBOX", "drafts": "Drafts", "sent": "Sent", "trash": "Trash",
                   "junk": "Junk", "archive": "Archive"}


def vsize(raw: bytes) -> int:
    """Length with every bare LF counted as CRLF (the ``W=`` / RFC822.SIZE)."""
    return len(raw) + len(re.findall(rb"(?<!\r)\n", raw))


def expected_letters(*, unread: bool, flagged: bool, draft: bool, refw: str, deleted: bool) -> str:
    out = {"D"} if draft else set()
    if flagged:
        out.add("F")
    if "re" in refw:
        out.add("R")
    if not unread:
        out.add("S")
    if deleted:
        out.add("T")
    return "".join(sorted(out))


@dataclass(frozen=True, slots=True)
class ServerMail:
    id: str
    path: tuple[str, ...]
    sha256: str
    size: int
    vsize: int
    letters: str
    labels: tuple[str, ...]
    date: int
    raw: bytes


def server_folders(fake: FakeAxigen, excludes: Sequence[str]) -> dict[tuple[str, ...], tuple[str, bool]]:
    """Server folder path -> (folder id, excluded). Mail folders only."""
    mb = fake.mailbox
    folders = [f for f in mb.folders() if f.folder_type == "mails"]
    by_id = {f.id: f for f in folders}
    paths = {f.id: tuple(mb.folder_path(f.id)) for f in folders}

    def own_excluded(fid: str) -> bool:
        f = by_id[fid]
        joined = "/".join(paths[fid])
        role = ROLE_GLOB_NAMES.get(f.role)
        return any(fnmatch.fnmatchcase(joined, p) or (role is not None and fnmatch.fnmatchcase(role, p))
                   for p in excludes)

    def excluded(fid: str) -> bool:
        cur: str | None = fid
        while cur is not None and cur in by_id:
            if own_excluded(cur):
                return True
            cur = by_id[cur].parent_id
        return False

    return {paths[f.id]: (f.id, excluded(f.id)) for f in folders}


def server_mails(fake: FakeAxigen, excludes: Sequence[str] = ("Junk",)) -> dict[tuple[str, ...], list[ServerMail]]:
    """Every mail of every non-excluded server folder, by folder path (empty folders too)."""
    mb = fake.mailbox
    names = dict(mb.labels())
    out: dict[tuple[str, ...], list[ServerMail]] = {}
    for path, (fid, excluded) in server_folders(fake, excludes).items():
        if excluded:
            continue
        rows = []
        for m in mb.mails(fid):
            rows.append(ServerMail(
                m.id, path, hashlib.sha256(m.raw).hexdigest(), len(m.raw), vsize(m.raw),
                expected_letters(unread=m.unread, flagged=m.flagged, draft=m.draft, refw=m.refw,
                                 deleted=m.deleted),
                tuple(sorted(names[x] for x in m.label_ids)), m.date, m.raw,
            ))
        out[path] = rows
    return out


@dataclass(frozen=True, slots=True)
class LocalMail:
    dirname: str
    filename: str
    base: str
    sha256: str
    size: int
    vsize: int
    letters: str
    labels: tuple[str, ...]
    mtime: int


def local_folder_path(root: Path, dirname: str) -> tuple[str, ...]:
    """The folder path a directory stands for: the ``axsync-folder-name`` record for a
    disambiguated name, else the exact inverse of the Maildir++ name encoding."""
    record = root / dirname / FOLDER_NAME_FILE if dirname else None
    if record is not None and record.is_file():
        import json

        data = json.loads(record.read_text("utf-8"))
        assert data["dirname"] == dirname, f"{record}: records {data['dirname']!r}"
        return tuple(data["path"])
    return folder_path(dirname)


def local_dirs(root: Path) -> list[str]:
    out = [""] if (root / "cur").is_dir() else []
    out += sorted(e.name for e in os.scandir(root)
                  if e.name.startswith(".") and e.is_dir(follow_symlinks=False) and (root / e.name / "cur").is_dir())
    return out


def read_local_folder(root: Path, dirname: str, problems: list[str]) -> list[LocalMail]:
    folder = root / dirname if dirname else root
    where = dirname or "INBOX(root)"
    for sub in ("new", "tmp"):
        leftovers = os.listdir(folder / sub) if (folder / sub).is_dir() else []
        if sub == "new":
            leftovers = [n for n in leftovers if is_message_name(n)]
        if leftovers:
            problems.append(f"{where}/{sub}/ is not empty: {sorted(leftovers)[:5]}")
    mapping = read_keywords(folder)
    out = []
    for name in sorted(os.listdir(folder / "cur")):
        if not is_message_name(name):
            continue
        path = folder / "cur" / name
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{where}/cur/{name} is not a regular file")
            continue
        parsed = parse_name(name)
        if ":2," not in name:
            problems.append(f"{where}/cur/{name} has no :2, info part")
        with open(path, "rb") as fh:
            magic = fh.read(4)
        data = read_message(path)
        compressed = magic.startswith((ZSTD_MAGIC, GZIP_MAGIC))
        if ("Z" in parsed.flags) != compressed:
            problems.append(f"{where}/cur/{name}: Z flag {'Z' in parsed.flags} but compressed={compressed}")
        if parsed.flags != "".join(sorted(set(parsed.flags))):
            problems.append(f"{where}/cur/{name}: flags not sorted/unique")
        if parsed.extra:
            problems.append(f"{where}/cur/{name}: unexpected second info field {parsed.extra!r}")
        if parsed.size != len(data):
            problems.append(f"{where}/cur/{name}: S={parsed.size} but {len(data)} bytes")
        if parsed.vsize != vsize(data):
            problems.append(f"{where}/cur/{name}: W={parsed.vsize} but vsize {vsize(data)}")
        labels = []
        for ch in parsed.flags:
            if ch in KEYWORD_LETTERS:
                idx = KEYWORD_LETTERS.index(ch)
                if idx not in mapping:
                    problems.append(f"{where}/cur/{name}: keyword letter {ch!r} has no dovecot-keywords line")
                    continue
                labels.append(atom_to_label(mapping[idx]))
        letters = "".join(sorted(set(parsed.flags) & set(SYSTEM_LETTERS)))
        out.append(LocalMail(dirname, name, parsed.base, hashlib.sha256(data).hexdigest(), len(data),
                             vsize(data), letters, tuple(sorted(labels)), int(st.st_mtime)))
    return out


def assert_tree_inside(root: Path) -> None:
    """Nothing in the archive is a symlink and every path resolves inside ``root``."""
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            assert not os.path.islink(p), f"symlink in the archive: {p}"
            real = os.path.realpath(p)
            assert real.startswith(real_root + os.sep), f"{p} resolves outside the maildir: {real}"


def _fmt(c: Counter[tuple[object, ...]]) -> str:
    items = sorted(c.items(), key=repr)[:6]
    return "; ".join(f"{k[1:]!r} x{n}" for k, n in items)


def assert_archive_equals_server(
    fake: FakeAxigen,
    maildir: Path,
    db: StateDB | Path | None = None,
    *,
    excludes: Iterable[str] = ("Junk",),
    mode: str = "mirror",
) -> None:
    """The archive at ``maildir`` holds exactly the server's mail (see module doc).

    For every non-excluded server folder: a directory whose decoded name is the folder's
    path; in it, per message, decompressed bytes == server raw (sha256), ``S=`` == size,
    ``W=`` == size with bare LF as CRLF, system flags from the server flags, keyword letters
    (through the folder's ``dovecot-keywords``, decoded with atom_to_label) == the server's
    label names, mtime == internal date, every file in ``cur/``; each server mail exactly
    one file, no extra file. With ``db``: each server mail id has one present row pointing
    at that very file (same sha256), and no other row is present.

    ``mode="backup"``: extra files (and extra directories) are allowed only if the state DB
    records them as deleted on the server (``state='deleted'``)."""
    excludes = tuple(excludes)
    root = Path(maildir)
    problems: list[str] = []
    expected = server_mails(fake, excludes)
    excluded_paths = {p for p, (_, ex) in server_folders(fake, excludes).items() if ex}
    assert_tree_inside(root)

    statedb: StateDB | None
    own_db = False
    if db is None or isinstance(db, StateDB):
        statedb = db
    else:
        statedb = StateDB.open(Path(db), readonly=True)
        own_db = True
    try:
        kept_bases: set[str] = set()
        if statedb is not None:
            kept_bases = {r.base for r in statedb.messages_where("state = 'deleted'")}
            if mode != "backup" and kept_bases:
                problems.append(f"{len(kept_bases)} rows in state 'deleted' outside backup mode")

        dirs: dict[tuple[str, ...], str] = {}
        for dirname in local_dirs(root):
            try:
                path = local_folder_path(root, dirname)
            except Exception as exc:  # noqa: BLE001 - report, don't stop
                problems.append(f"directory {dirname!r} does not decode to a folder path: {exc}")
                continue
            if path in dirs:
                problems.append(f"two directories for {path}: {dirs[path]!r} and {dirname!r}")
            dirs[path] = dirname

        local: dict[str, list[LocalMail]] = {d: read_local_folder(root, d, problems) for d in dirs.values()}

        for path in sorted(set(dirs) - set(expected)):
            dirname = dirs[path]
            extra = [f for f in local[dirname] if f.base not in kept_bases]
            if path in excluded_paths:
                problems.append(f"excluded folder {path} has a directory {dirname!r}")
            elif mode != "backup" or extra:
                problems.append(f"directory {dirname!r} ({path}) is no server folder "
                                f"({len(local[dirname])} files)")
        for path in sorted(set(expected) - set(dirs)):
            problems.append(f"server folder {path} has no directory")

        for path, mails in sorted(expected.items()):
            dirname = dirs.get(path)
            if dirname is None:
                continue
            files = local[dirname]
            want = Counter((m.sha256, m.size, m.vsize, m.letters, m.labels, m.date) for m in mails)
            have = Counter((f.sha256, f.size, f.vsize, f.letters, f.labels, f.mtime)
                           for f in files if f.base not in kept_bases)
            missing, extra = want - have, have - want
            if missing:
                problems.append(f"{path}: {sum(missing.values())} server mails without their file: {_fmt(missing)}")
            if extra:
                problems.append(f"{path}: {sum(extra.values())} files not matching a server mail: {_fmt(extra)}")
            if statedb is None:
                continue
            by_base = {f.base: f for f in files}
            for m in mails:
                row = statedb.message_by_mail_id(m.id)
                if row is None:
                    problems.append(f"{path}: server mail {m.id} has no state row")
                    continue
                if row.state != "present" or row.dirname != dirname:
                    problems.append(f"{path}: mail {m.id} row state={row.state} dirname={row.dirname!r}")
                f = by_base.get(row.base)
                if f is None:
                    problems.append(f"{path}: mail {m.id} row points at {row.base!r}, not in {dirname!r}/cur")
                elif f.sha256 != m.sha256 or row.sha256 != m.sha256:
                    problems.append(f"{path}: mail {m.id} file content differs from the server")
        if statedb is not None:
            present = statedb.count_messages("state = 'present'")
            total = sum(len(v) for v in expected.values())
            if present != total:
                problems.append(f"{present} present rows in the state DB, {total} server mails")
            bases = [r.base for r in statedb.messages_where("state IN ('present', 'deleted')")]
            dup = [b for b, n in Counter(bases).items() if n > 1]
            if dup:
                problems.append(f"bases recorded twice: {dup[:5]}")
        all_files = Counter(f.base for fs in local.values() for f in fs)
        dup_files = [b for b, n in all_files.items() if n > 1]
        if dup_files:
            problems.append(f"the same base in several folders: {dup_files[:5]}")
    finally:
        if own_db and statedb is not None:
            statedb.close()
    assert not problems, "archive differs from the server:\n  " + "\n  ".join(problems[:40])


def archive_files(maildir: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``maildir`` (relative path) -> (size, mtime_ns, inode), for
    "nothing changed on disk" checks. The lock file is left out."""
    out = {}
    for dirpath, _dirs, files in os.walk(maildir):
        for name in files:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, maildir)
            if rel == "axsync.lock" or rel.startswith("axsync.sqlite"):
                continue
            st = os.lstat(p)
            out[rel] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def message_bases(maildir: Path) -> dict[str, str]:
    """Every message file's base -> its directory name."""
    out = {}
    for dirname in local_dirs(Path(maildir)):
        for name in os.listdir(Path(maildir) / dirname / "cur"):
            if is_message_name(name):
                out[parse_name(name).base] = dirname
    return out
