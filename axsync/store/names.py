"""Pure codecs for names on disk: Maildir++ folder directories and message file names.

No I/O here except reading the clock, pid and host name in :func:`new_unique`. The full
rules, with examples, are in ``docs/maildir-format.md``.

Folder directory names (Maildir++ with Dovecot's listescape convention)
    INBOX is the root (``""``); any other folder path ``(c1, c2, …)`` is
    ``"." + ".".join(encode(c) for c in path)``. Each component is IMAP modified UTF-7
    (RFC 3501 5.1.3: printable ASCII as is, ``&`` → ``&-``, everything else, control
    characters included, base64 of UTF-16) in which ``.``, ``\\`` and a leading ``~``
    are written as ``\\`` + two lowercase hex digits (``\\2e``), and an empty component
    is ``\\-``. A ``/`` inside a component (which no IMAP name can hold: it is the
    hierarchy separator) is first replaced by its look-alike ``∕`` (U+2215 DIVISION
    SLASH, :data:`SLASH_LOOKALIKE`), so ``a/b`` is stored ``.a&IhU-b`` and Dovecot shows
    and opens it as ``a∕b``. This is exactly the name Dovecot derives from the folder
    name it shows, so Dovecot can open every folder whose name IMAP can carry (once
    ``/`` is ``∕``). The real path of a folder whose name
    does not decode back to it (:func:`needs_name_record`: a ``/`` in a component, or a
    name that :func:`assign_dirname` disambiguated with ``~<12 hex>`` because it is too
    long for the file system or collides on a case- or normalization-insensitive one,
    ``a/b`` next to a real ``a∕b`` included) is kept by the caller (state DB and the
    folder's ``axsync-folder-name`` file).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import socket
import threading
import time
import unicodedata
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from axsync.errors import UnsafeName

ROOT = ""  # the dirname of INBOX: the Maildir root itself
MAX_NAME_BYTES = 255
MAX_UNIQUE_BYTES = 160  # leaves room for ",S=…,W=…:2,<flags>" within 255 bytes
DISAMBIGUATION_MARK = "~"  # + 12 hex digits of sha256 of the path, in the last level
EMPTY_COMPONENT = "\\-"
SLASH_LOOKALIKE = "\u2215"  # DIVISION SLASH: what a "/" inside a folder name level becomes

FLAG_DRAFT = "D"
FLAG_FLAGGED = "F"
FLAG_PASSED = "P"
FLAG_ANSWERED = "R"
FLAG_SEEN = "S"
FLAG_DELETED = "T"
FLAG_COMPRESSED = "Z"
SYSTEM_FLAGS = "DFPRST"
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"

INFO_SEP = ":2,"

_ESCAPED_ANYWHERE = frozenset(".\\")
_HEX_ESCAPE = re.compile(r"\\([0-9a-f]{2})")
_FLAG_FORBIDDEN = frozenset("/:,\\")
_DIGITS = re.compile(r"[0-9]*")


# ---------------------------------------------------------------------------- folders


def _escape(ch: str) -> str:
    return f"\\{ord(ch):02x}"


def _b64_run(chars: list[str]) -> str:
    raw = "".join(chars).encode("utf-16-be")
    return "&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-"


def encode_component(component: str) -> str:
    """One folder name level → its storage form (mUTF-7 + listescape, see module doc).

    A ``/`` is stored as :data:`SLASH_LOOKALIKE` (so ``a/b`` and ``a∕b`` have one storage
    form). Raises UnsafeName for text that has no UTF-16 form (lone surrogates)."""
    if component == "":
        return EMPTY_COMPONENT
    out: list[str] = []
    run: list[str] = []
    for i, ch in enumerate(component.replace("/", SLASH_LOOKALIKE)):
        code = ord(ch)
        if 0x20 <= code <= 0x7E:
            if run:
                out.append(_b64_run(run))
                run.clear()
            if ch in _ESCAPED_ANYWHERE or (i == 0 and ch == "~"):
                out.append(_escape(ch))
            else:
                out.append("&-" if ch == "&" else ch)
        else:
            if 0xD800 <= code <= 0xDFFF:
                raise UnsafeName(f"folder name {component!r} contains a lone surrogate")
            run.append(ch)
    if run:
        out.append(_b64_run(run))
    return "".join(out)


def _decode_b64(chunk: str) -> str:
    b64 = chunk.replace(",", "/")
    raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    return raw.decode("utf-16-be")


def decode_component(text: str, *, strict: bool = True) -> str:
    """Inverse of :func:`encode_component`: the level as Dovecot shows it, so ``a&IhU-b``
    gives ``a∕b`` (whether the server name had ``/`` or ``∕`` there is known only from
    the folder's ``axsync-folder-name`` file, never from the name).

    ``strict``: raise UnsafeName unless ``text`` is exactly what encoding produces (so a
    strictly decoded level never holds ``/``; an earlier version's ``\\2f`` is refused).
    Lenient mode decodes what it can (like Dovecot: bad escapes stay literal; ``\\2f``
    gives ``/``)."""
    if text == EMPTY_COMPONENT:
        return ""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        m = _HEX_ESCAPE.match(text, i) if ch == "\\" else None
        if m:
            out.append(chr(int(m.group(1), 16)))
            i = m.end()
            continue
        end = text.find("-", i) if ch == "&" else -1
        if end > i:
            try:
                out.append("&" if end == i + 1 else _decode_b64(text[i + 1 : end]))
                i = end + 1
                continue
            except (ValueError, UnicodeDecodeError):
                if strict:
                    raise UnsafeName(f"bad modified UTF-7 in folder name {text!r}") from None
        out.append(ch)
        i += 1
    decoded = "".join(out)
    if strict and encode_component(decoded) != text:
        raise UnsafeName(f"folder name {text!r} is not in canonical storage form")
    return decoded


def folder_dirname(path: tuple[str, ...]) -> str:
    """Folder path → Maildir++ directory name. ``()`` and ``("INBOX",)`` → ``""`` (root).

    Pure and unbounded: the result may exceed 255 bytes or collide with another folder
    on a case-insensitive file system; :func:`assign_dirname` handles both."""
    if path in ((), ("INBOX",)):
        return ROOT
    return "." + ".".join(encode_component(c) for c in path)


def folder_path(dirname: str, *, strict: bool = True) -> tuple[str, ...]:
    """Directory name → folder path: the name Dovecot shows for the directory, ``""`` →
    ``("INBOX",)``. ``folder_dirname(folder_path(d)) == d`` for every canonical ``d``,
    and ``folder_path(folder_dirname(p)) == shown_path(p)``: the exact inverse for paths
    without ``/`` in a level.

    Where that is not the folder's real path (:func:`needs_name_record`: a name
    :func:`assign_dirname` disambiguated comes back with its ``~<hash>`` suffix, and a
    ``/`` in a level as ``∕``) the real path is in the caller's DB and the folder's
    ``axsync-folder-name`` file. Strict mode raises UnsafeName for any name that
    :func:`folder_dirname` cannot produce; lenient mode (for folders other tools made)
    never raises for a name starting with ``.``."""
    if dirname == ROOT:
        return ("INBOX",)
    if not dirname.startswith(".") or dirname in (".", ".."):
        raise UnsafeName(f"{dirname!r} is not a Maildir++ folder directory name")
    return tuple(decode_component(c, strict=strict) for c in dirname[1:].split("."))


def shown_path(path: tuple[str, ...]) -> tuple[str, ...]:
    """The path Dovecot shows for ``folder_dirname(path)``: each ``/`` inside a level
    becomes :data:`SLASH_LOOKALIKE`; ``()`` → ``("INBOX",)``."""
    return tuple(c.replace("/", SLASH_LOOKALIKE) for c in path) or ("INBOX",)


def needs_name_record(dirname: str, path: tuple[str, ...]) -> bool:
    """True when the directory ``dirname`` of folder ``path`` does not decode back to
    ``path`` (a disambiguated name, or a ``/`` in a level), so that the path must be
    recorded next to it (``axsync-folder-name``). False for the root."""
    if dirname == ROOT:
        return False
    return any("/" in c for c in path) or folder_dirname(path) != dirname


def is_canonical_dirname(dirname: str) -> bool:
    """True when ``dirname`` is a name the current encoding produces (``""`` included):
    :func:`folder_path` decodes it strictly. False, for example, for an earlier version's
    ``.a\\2fb`` (now ``.a&IhU-b``), which Dovecot cannot open."""
    if dirname == ROOT:
        return True
    try:
        folder_path(dirname)
    except UnsafeName:
        return False
    return True


def fold_key(dirname: str) -> str:
    """The key under which two names are the same file on a case- and
    normalization-insensitive file system."""
    return unicodedata.normalize("NFC", dirname).casefold()


def _suffixed(path: tuple[str, ...], suffix: str) -> str:
    """The dirname of ``path`` cut (at a character) so that, with ``suffix`` appended to
    its last kept level, it fits in 255 bytes; canonical, so Dovecot can open it."""

    def encode_first(k: int) -> str:
        kept: list[str] = []
        for comp in path:
            if k <= 0:
                break
            kept.append(comp[:k])
            k -= len(comp)
        if not kept:
            kept.append("")
        kept[-1] += suffix
        return "." + ".".join(encode_component(c) for c in kept)

    lo, hi = 0, sum(len(c) for c in path)
    while lo < hi:  # the encoded length never decreases as k grows
        mid = (lo + hi + 1) // 2
        if len(encode_first(mid)) <= MAX_NAME_BYTES:
            lo = mid
        else:
            hi = mid - 1
    return encode_first(lo)


def assign_dirname(path: tuple[str, ...], taken: Mapping[str, tuple[str, ...]]) -> str:
    """The directory name for ``path``, given the names already assigned (dirname → path).

    Returns the name ``taken`` already holds for ``path`` if any; else
    :func:`folder_dirname` when it fits in 255 bytes and no taken name has the same
    :func:`fold_key` (``("a/b",)`` and ``("a∕b",)`` have the same plain name: the first
    one assigned keeps it); else the dirname of the path cut to fit with
    ``~<12 hex of sha256(path as JSON)>`` (``-<n>`` added on a further collision)
    appended to its last level. Deterministic for equal inputs. The result is always a
    canonical name (Dovecot can open it) that no taken name folds to."""
    for dirname, owner in taken.items():
        if owner == path:
            return dirname
    plain = folder_dirname(path)
    if plain == ROOT:
        return ROOT
    keys = {fold_key(d) for d in taken}
    if len(plain.encode("utf-8")) <= MAX_NAME_BYTES and fold_key(plain) not in keys:
        return plain
    identity = json.dumps(list(path), ensure_ascii=True).encode("ascii")
    digest = hashlib.sha256(identity).hexdigest()[:12]
    for n in itertools.count():
        candidate = _suffixed(path, DISAMBIGUATION_MARK + digest + (f"-{n}" if n else ""))
        if fold_key(candidate) not in keys:
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def is_safe_dirname(name: str) -> bool:
    """True for ``""`` (root) or one path component that starts with ``.``, is not
    ``.``/``..``, holds no ``/`` or NUL and is at most 255 bytes."""
    if name == ROOT:
        return True
    if not name.startswith(".") or name in (".", "..") or "/" in name or "\0" in name:
        return False
    try:
        return len(os.fsencode(name)) <= MAX_NAME_BYTES
    except UnicodeEncodeError:
        return False


def subscription_name(dirname: str) -> str:
    """A folder's line in Dovecot's ``subscriptions`` file: storage names of the levels
    joined by TAB (``""`` → ``INBOX``)."""
    return "INBOX" if dirname == ROOT else "\t".join(dirname[1:].split("."))


# ---------------------------------------------------------------------------- messages


class ParsedName(NamedTuple):
    """A message file name taken apart. ``base`` is the permanent identity (text before
    the last ``:2,``); ``extra`` is a second ``,``-separated info part, kept on renames."""

    base: str
    size: int | None
    vsize: int | None
    flags: str
    extra: str = ""


_counter = itertools.count(1)
_counter_lock = threading.Lock()


def safe_host() -> str:
    """The host name for unique parts: djb's escapes plus ``,``; kept short so that a whole
    file name stays far below 255 bytes."""
    host = (socket.gethostname() or "localhost")[:64]
    return host.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")[:100]


class _Process:
    """The pid and host name of unique parts, looked up once per process (two system calls
    per message otherwise); a forked child looks them up again."""

    pid = 0
    host = ""

    @classmethod
    def refresh(cls) -> None:
        cls.pid, cls.host = os.getpid(), safe_host()


_Process.refresh()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Process.refresh)


def new_unique() -> str:
    """A fresh djb-style unique part: ``<secs>.M<usecs>P<pid>Q<n>R<8 hex>.<host>``.

    Thread-safe; never contains ``/``, ``:`` or ``,`` and never starts with ``.``."""
    with _counter_lock:
        n = next(_counter)
    now = time.time()
    secs = int(now)
    usecs = int((now - secs) * 1_000_000)
    return f"{secs}.M{usecs}P{_Process.pid}Q{n}R{os.urandom(4).hex()}.{_Process.host}"


def normalize_flags(flags: str | Iterable[str]) -> str:
    """Flag letters sorted by ASCII value, without duplicates.

    Unknown letters are kept (as Dovecot does); characters that would break the name or
    start a second info field (``/ : , \\``, space, controls, non-ASCII) are dropped."""
    chars = flags if isinstance(flags, str) else "".join(flags)
    return "".join(
        sorted({c for c in chars if 0x21 <= ord(c) <= 0x7E and c not in _FLAG_FORBIDDEN})
    )


def check_unique(unique: str) -> None:
    """Raise UnsafeName unless ``unique`` can start a message file name."""
    try:
        encoded = len(unique.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        raise UnsafeName(f"{unique!r} cannot be a Maildir unique name") from None
    if (
        not unique
        or unique.startswith(".")
        or any(c in unique for c in "/:,\0")
        or encoded > MAX_UNIQUE_BYTES
    ):
        raise UnsafeName(f"{unique!r} cannot be a Maildir unique name")


def format_name(unique: str, size: int, vsize: int, flags: str | Iterable[str]) -> str:
    """``<unique>,S=<size>,W=<vsize>:2,<flags>`` with the flags normalized."""
    check_unique(unique)
    if size < 0 or vsize < size:
        raise ValueError(f"bad sizes S={size} W={vsize}")
    return f"{unique},S={size},W={vsize}{INFO_SEP}{normalize_flags(flags)}"


def _size_field(base: str, key: str) -> int | None:
    """Dovecot's maildir_filename_get_size: the first ``,<key>=``, then digits (possibly
    none) that must end at ``:``, ``,`` or the end of the text."""
    start = base.find("," + key + "=")
    if start < 0:
        return None
    i = start + 3
    digits = _DIGITS.match(base, i)
    j = digits.end() if digits else i
    if j < len(base) and base[j] not in ":,":
        return None
    return int(base[i:j]) if j > i else 0


def parse_name(name: str) -> ParsedName:
    """Take a message file name apart (any Maildir writer's names, not only ours).

    ``base`` = everything before the last ``:2,`` (the whole name when there is none, as
    in ``new/``); flags = the info text up to a further ``,``, unchanged (not normalized);
    sizes per Dovecot's ``,S=``/``,W=`` rules applied to the base."""
    cut = name.rfind(INFO_SEP)
    if cut < 0:
        base, flags, extra = name, "", ""
    else:
        base = name[:cut]
        flags, sep, rest = name[cut + 3 :].partition(",")
        extra = sep + rest
    return ParsedName(base, _size_field(base, "S"), _size_field(base, "W"), flags, extra)


def with_flags(name: str, flags: str | Iterable[str]) -> str:
    """``name`` with its flags replaced by the normalized ``flags`` (base and any extra
    info field kept); a name without info part gets one."""
    parsed = parse_name(name)
    return f"{parsed.base}{INFO_SEP}{normalize_flags(flags)}{parsed.extra}"


def check_filename(name: str) -> None:
    """Raise UnsafeName unless ``name`` is a single, non-hidden file name ≤ 255 bytes."""
    if not name or name.startswith(".") or "/" in name or "\0" in name:
        raise UnsafeName(f"{name!r} is not a safe message file name")
    try:
        too_long = len(os.fsencode(name)) > MAX_NAME_BYTES
    except UnicodeEncodeError:
        too_long = True
    if too_long:
        raise UnsafeName(f"{name[:40]!r}… is not a safe message file name")
