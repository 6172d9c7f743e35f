"""The mail the fake Axigen server serves: generated (:func:`generate`) or loaded from disk
(:func:`load_corpus`).

A :class:`Corpus` is plain data: folders (with Axigen-style roles), label names and
messages (raw RFC 5322 bytes plus internal date, flags and label names). This module holds
the types and the loader; the generator is :mod:`axsync.fake.corpus_gen` (planning: who
writes what, where, when, threads, flags), :mod:`axsync.fake.corpus_kinds` and
:mod:`axsync.fake.corpus_render` (rendering each message kind to bytes),
:mod:`axsync.fake.corpus_mime` (MIME building blocks) and :mod:`axsync.fake.corpus_text`
(word lists and names).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import zlib
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import mktime_tz, parsedate_tz
from pathlib import Path

import zstandard

from axsync.errors import UsageError
from axsync.mutf7 import mutf7_decode as mutf7_decode
from axsync.mutf7 import mutf7_encode as mutf7_encode


@dataclass(frozen=True, slots=True)
class CorpusFolder:
    path: tuple[str, ...]  # components, top level first; ("INBOX",) is the inbox
    role: str = ""  # "inbox" | "drafts" | "sent" | "trash" | "junk" | "archive" | ""


@dataclass(frozen=True, slots=True)
class CorpusMessage:
    folder: tuple[str, ...]
    raw: bytes
    date: int  # internal (received) date, Unix seconds UTC
    unread: bool = True
    flagged: bool = False
    draft: bool = False
    refw: str = ""  # "" | "re" | "fw" | "refw"
    labels: tuple[str, ...] = ()  # label names


@dataclass(slots=True)
class Corpus:
    folders: list[CorpusFolder]
    labels: list[str]
    messages: list[CorpusMessage]


def generate(seed: int = 0, messages: int = 200, *, big_messages: int | None = None) -> Corpus:
    """A deterministic, realistic mailbox of exactly ``messages`` messages.

    The same ``(seed, messages, big_messages)`` gives a byte-identical corpus on every run
    and machine. ``big_messages`` (default 3 when ``messages >= 200``, else 0) of them are
    1-5 MB each. Every corpus of 200 or more messages contains every content kind listed in
    :mod:`axsync.fake.corpus_kinds`, threads of 2-15 messages (one of 15 spanning INBOX and
    Sent), a few messages without Message-ID, all folders of ``corpus_gen.FOLDERS`` but
    ``Projects`` holding mail, and every label in use. Messages are listed in internal-date
    order; internal dates lie in 2022-2024 (``corpus_gen.START_DATE`` to ``BASE_DATE``).
    """
    from axsync.fake import corpus_gen

    return corpus_gen.generate(seed, messages, big_messages=big_messages)


# ---------------------------------------------------------------------------- loading

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2})")
_TILDE = re.compile(r"~([0-9A-Fa-f]{2})")
# axsync's record of a folder's real path where the directory name does not give it: a
# shortened or disambiguated name, or a "/" in a name level (stored as "∕", U+2215)
FOLDER_NAME_FILE = "axsync-folder-name"
# Keywords that are no labels: the server refuses these names (any case).
_NOT_LABELS = frozenset({"junk", "notjunk", "nonjunk", "$junk", "$notjunk", "$nonjunk"})
_ROLE_ALIASES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("drafts", "Drafts", ("drafts", "draft")),
    ("sent", "Sent", ("sent", "sent items", "sent messages", "sent mail")),
    ("trash", "Trash", ("trash", "deleted items", "deleted messages", "bin")),
    ("junk", "Spam", ("spam", "junk", "junk e-mail", "junk email")),
)


def decode_folder_component(raw: str) -> str:
    """One Maildir++ name component: modified UTF-7, then Dovecot listescape ``\\2e``
    (``\\-`` alone is axsync's spelling of an empty component). ``a&IhU-b`` decodes to
    ``a∕b`` (the name Dovecot shows; it stands for ``a/b`` only by axsync's
    ``axsync-folder-name`` record), ``a\\2fb`` (how earlier axsync versions stored
    ``a/b``) to ``a/b``."""
    if raw == "\\-":
        return ""
    name = mutf7_decode(raw)
    if "\\" not in name:
        return name
    buf = bytearray()
    for k, piece in enumerate(_ESCAPE.split(name)):
        if k % 2:
            buf.append(int(piece, 16))
        else:
            buf += piece.encode("utf-8", "surrogatepass")
    return buf.decode("utf-8", "replace")


def decode_keyword(atom: str) -> str:
    """A ``dovecot-keywords`` name as a label: axsync writes labels that are no IMAP atom
    with ``~XX`` escapes per UTF-8 byte (``~C3~84rger`` is ``Ärger``, ``~`` alone is the
    empty label); anything that does not decode that way is taken literally."""
    if atom == "~":
        return ""
    if not _TILDE.search(atom):
        return atom
    data = bytearray()
    for k, piece in enumerate(_TILDE.split(atom)):
        if k % 2:
            data.append(int(piece, 16))
        else:
            data += piece.encode("utf-8", "surrogatepass")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return atom


def read_message_file(path: Path) -> bytes:
    """A message file's bytes, decompressed when it starts with a zstd or gzip magic."""
    data = path.read_bytes()
    try:
        if data[:4] == ZSTD_MAGIC:
            with zstandard.ZstdDecompressor().stream_reader(
                io.BytesIO(data), read_across_frames=True
            ) as reader:
                return reader.read()
        if data[:2] == GZIP_MAGIC:
            return gzip.decompress(data)
    except (zstandard.ZstdError, OSError, EOFError, zlib.error) as exc:
        raise UsageError(f"cannot decompress {path}: {exc}", path=str(path)) from exc
    return data


def load_corpus(path: Path) -> Corpus:
    """Load a Maildir++ (when ``path`` has ``cur/`` or ``new/``) or a tree of ``.eml`` files.

    Maildir: the root is INBOX, ``.A.B`` directories are folder ``("A", "B")`` (modified
    UTF-7 and listescape ``\\2e`` decoded, or the path in axsync's ``axsync-folder-name``,
    which is how ``.a&IhU-b`` loads as ``a/b`` rather than ``a∕b``);
    flags from ``:2,`` (S seen, F flagged, D draft, R replied -> "re", P passed -> "fw"),
    keyword letters through each folder's ``dovecot-keywords`` become labels (axsync's
    ``~XX`` atom escapes decoded); the internal date is the file mtime. An axsync archive
    therefore loads back as the mailbox it mirrors. ``.eml`` tree:
    one folder per directory, top-level files in INBOX, date from ``Date:`` (else mtime),
    all read and unflagged. Files may be zstd or gzip compressed (detected by magic bytes).

    Missing special folders (Drafts, Sent, Trash, Spam) are added empty, since an Axigen
    account always has them; roles are recognised by the usual names (``Junk``,
    ``Sent Items``, ...). Keywords the server would refuse as labels (junk/notjunk/nonjunk,
    longer than 128 characters) are dropped; ``$Forwarded`` counts as the P flag. Output
    order is deterministic: folders INBOX first then sorted, messages by folder then file
    name.
    """
    root = Path(path)
    if not root.exists():
        raise UsageError(f"corpus directory not found: {root}", path=str(root))
    if not root.is_dir():
        raise UsageError(f"corpus path is not a directory: {root}", path=str(root))
    if (root / "cur").is_dir() or (root / "new").is_dir():
        folders, labels, messages = _load_maildir(root)
    else:
        folders, labels, messages = _load_eml_tree(root)
    if not messages:
        raise UsageError(
            f"no messages found in corpus {root} (expected a Maildir with cur/ or new/, "
            "or a tree of .eml files)",
            path=str(root),
        )
    return Corpus(_finish_folders(folders), labels, messages)


def _finish_folders(paths: set[tuple[str, ...]]) -> list[CorpusFolder]:
    paths = set(paths) | {("INBOX",)}
    for p in list(paths):
        paths.update(p[:k] for k in range(1, len(p)))
    roles: dict[tuple[str, ...], str] = {("INBOX",): "inbox"}
    for role, canonical, aliases in _ROLE_ALIASES:
        top = sorted(p for p in paths if len(p) == 1 and p[0].lower() in aliases)
        if not top:
            paths.add((canonical,))
            roles[(canonical,)] = role
            continue
        best = min(top, key=lambda p: (aliases.index(p[0].lower()), p[0] != canonical, p))
        roles[best] = role
    ordered = sorted(paths, key=lambda p: (p != ("INBOX",), p))
    return [CorpusFolder(p, roles.get(p, "")) for p in ordered]


class _Labels:
    """Label names seen while loading, merged case-insensitively."""

    def __init__(self) -> None:
        self.by_lower: dict[str, str] = {}

    def add(self, name: str) -> str | None:
        if not name or len(name) > 128 or name.lower() in _NOT_LABELS:
            return None
        return self.by_lower.setdefault(name.lower(), name)

    def names(self) -> list[str]:
        return sorted(self.by_lower.values())


def _keywords(folder_dir: Path) -> dict[str, str]:
    """``dovecot-keywords`` of one folder: keyword letter -> name."""
    try:
        text = (folder_dir / "dovecot-keywords").read_text("utf-8", "replace")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        idx, _, name = line.partition(" ")
        if idx.isdigit() and int(idx) < 26 and name and name not in out.values():
            out.setdefault(chr(ord("a") + int(idx)), decode_keyword(name))
    return out


def _info(filename: str) -> str:
    for sep in (":2,", "!2,", ";2,"):
        i = filename.rfind(sep)
        if i >= 0:
            return filename[i + 3 :].split(",", 1)[0]
    return ""


def _recorded_path(folder_dir: Path, dirname: str) -> tuple[str, ...] | None:
    """The folder path axsync recorded for a directory whose name it had to shorten or
    disambiguate (``axsync-folder-name``: ``{"dirname": ..., "path": [...]}``)."""
    try:
        data = json.loads((folder_dir / FOLDER_NAME_FILE).read_text("utf-8"))
        path = data["path"]
        if data["dirname"] == dirname and path and all(isinstance(c, str) for c in path):
            return tuple(path)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _load_maildir(root: Path) -> tuple[set[tuple[str, ...]], list[str], list[CorpusMessage]]:
    dirs: list[tuple[tuple[str, ...], Path]] = [(("INBOX",), root)]
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        name = entry.name
        if not name.startswith(".") or name in (".", "..") or not entry.is_dir():
            continue
        sub = Path(entry.path)
        if not ((sub / "cur").is_dir() or (sub / "new").is_dir()):
            continue
        parts = name[1:].split(".")
        if any(not part for part in parts):
            continue
        recorded = _recorded_path(sub, name)
        dirs.append((recorded or tuple(decode_folder_component(part) for part in parts), sub))
    labels = _Labels()
    loaded: list[tuple[tuple[str, ...], str, CorpusMessage]] = []
    for folder, fdir in dirs:
        keywords = _keywords(fdir)
        for letter in sorted(keywords):
            if keywords[letter].lower() != "$forwarded":
                labels.add(keywords[letter])
        for sub_name in ("cur", "new"):
            sub_dir = fdir / sub_name
            if not sub_dir.is_dir():
                continue
            for entry in sorted(os.scandir(sub_dir), key=lambda e: e.name):
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                flags = _info(entry.name)
                names = [keywords[c] for c in sorted(set(flags)) if c in keywords]
                forwarded = "P" in flags or any(n.lower() == "$forwarded" for n in names)
                msg_labels = [labels.add(n) for n in names if n.lower() != "$forwarded"]
                msg = CorpusMessage(
                    folder=folder,
                    raw=read_message_file(Path(entry.path)),
                    date=int(entry.stat().st_mtime),
                    unread="S" not in flags,
                    flagged="F" in flags,
                    draft="D" in flags,
                    refw=("re" if "R" in flags else "") + ("fw" if forwarded else ""),
                    labels=tuple(sorted({n for n in msg_labels if n is not None})),
                )
                loaded.append((folder, entry.name, msg))
    loaded.sort(key=lambda t: (t[0] != ("INBOX",), t[0], t[1]))
    return {f for f, _ in dirs}, labels.names(), [m for _, _, m in loaded]


def _header_date(raw: bytes) -> int | None:
    try:
        value = BytesHeaderParser(policy=compat32).parsebytes(raw).get("Date")
        parsed = parsedate_tz(str(value)) if value is not None else None
        return mktime_tz(parsed) if parsed is not None else None
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def _load_eml_tree(root: Path) -> tuple[set[tuple[str, ...]], list[str], list[CorpusMessage]]:
    folders: set[tuple[str, ...]] = set()
    loaded: list[tuple[tuple[str, ...], str, CorpusMessage]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).parts
        folder: tuple[str, ...] = ("INBOX", *rel[1:]) if rel and rel[0].lower() == "inbox" else rel
        folder = folder or ("INBOX",)
        for name in sorted(filenames):
            if not name.lower().endswith(".eml"):
                continue
            file = Path(dirpath) / name
            raw = read_message_file(file)
            date = _header_date(raw)
            if date is None:
                date = int(file.stat().st_mtime)
            folders.add(folder)
            loaded.append((folder, name, CorpusMessage(folder, raw, date, unread=False)))
    loaded.sort(key=lambda t: (t[0] != ("INBOX",), t[0], t[1]))
    return folders, [], [m for _, _, m in loaded]
