"""Labels as IMAP keywords: the label ↔ atom codec and Dovecot's ``dovecot-keywords``.

Atom encoding (the same everywhere; see ``docs/maildir-format.md``)
    A label is written as one IMAP atom. Printable ASCII characters other than the atom
    specials ``( ) { SP % * " \\ ]`` and the escape character ``~`` stay as they are;
    every other character becomes ``~XX`` (two uppercase hex digits) per UTF-8 byte. The
    empty label is ``~`` alone. ``Work`` → ``Work``, ``has space`` → ``has~20space``,
    ``Ärger`` → ``~C3~84rger``, ``50%~off`` → ``50~25~7Eoff``.

``dovecot-keywords`` (one per folder directory)
    Lines ``<index> <name>``; index 0..25 is the file-name letter ``a``..``z``. Read with
    Dovecot's rules; changed only by appending lines, by atomic replace, under Dovecot's
    ``dovecot-uidlist.lock`` dotlock.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from axsync.errors import StoreError, UnsafeName
from axsync.store.fsutil import LOCK_TIMEOUT_S, atomic_write, dotlock
from axsync.store.names import KEYWORD_LETTERS

KEYWORDS_FILE = "dovecot-keywords"
UIDLIST_LOCK = "dovecot-uidlist.lock"
MAX_KEYWORDS = 26
ESCAPE = "~"

_ATOM_SPECIALS = frozenset('(){ %*"\\]')
_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F)) - _ATOM_SPECIALS - {ESCAPE}
_HEX2 = re.compile(r"~([0-9A-Fa-f]{2})")


def is_atom(text: str) -> bool:
    """True if ``text`` is a valid IMAP keyword atom (RFC 3501 ``flag-keyword``)."""
    return bool(text) and all(0x21 <= ord(c) <= 0x7E and c not in _ATOM_SPECIALS for c in text)


def label_to_atom(label: str) -> str:
    """Encode a label name as one IMAP atom (reversible; see module doc)."""
    if label == "":
        return ESCAPE
    out: list[str] = []
    for ch in label:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"~{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def atom_to_label(atom: str) -> str:
    """Decode an atom written by :func:`label_to_atom` (exact inverse).

    Atoms written by others are decoded leniently: a ``~`` not followed by two hex digits
    stays literal, and if the bytes are not UTF-8 the atom is returned unchanged."""
    if atom == ESCAPE:
        return ""
    if ESCAPE not in atom:
        return atom
    data = bytearray()
    i = 0
    while i < len(atom):
        m = _HEX2.match(atom, i)
        if m:
            data.append(int(m.group(1), 16))
            i = m.end()
        else:
            data.extend(atom[i].encode("utf-8", "surrogatepass"))
            i += 1
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return atom


def _parse(raw: bytes) -> dict[int, str]:
    """Dovecot's maildir_keywords_sync: skip lines without a space, with a non-numeric or
    ≥ 26 index, an empty name, or a name seen before; a later line for an index wins."""
    result: dict[int, str] = {}
    seen: set[str] = set()
    for line in raw.split(b"\n"):
        idx_text, sep, name_bytes = line.rstrip(b"\r").partition(b" ")
        if not sep or not idx_text.isdigit() or not name_bytes:
            continue
        idx = int(idx_text)
        name = name_bytes.decode("utf-8", "replace")
        if idx >= MAX_KEYWORDS or name in seen:
            continue
        seen.add(name)
        result[idx] = name
    return result


def _read_raw(folder_dir: Path) -> bytes:
    try:
        return (folder_dir / KEYWORDS_FILE).read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise StoreError(f"cannot read {folder_dir / KEYWORDS_FILE}: {exc.strerror}") from exc


def read_keywords(folder_dir: Path) -> dict[int, str]:
    """Index (0 = ``a``) → keyword name from the folder's ``dovecot-keywords``, read as
    Dovecot reads it. Missing file → ``{}``. StoreError if it cannot be read."""
    return _parse(_read_raw(folder_dir))


def letter(index: int) -> str:
    """The file-name letter of keyword index 0..25."""
    return KEYWORD_LETTERS[index]


def keywords_of(flags: str, mapping: Mapping[int, str]) -> list[str]:
    """The keyword names the letters a–z in ``flags`` stand for, in letter order. Letters
    without a mapping are ignored, as Dovecot ignores them."""
    out: list[str] = []
    for ch in sorted(set(flags)):
        idx = KEYWORD_LETTERS.find(ch)
        if idx >= 0 and idx in mapping:
            out.append(mapping[idx])
    return out


def ensure_keywords(
    folder_dir: Path, atoms: Iterable[str], *, lock_timeout_s: float = LOCK_TIMEOUT_S
) -> dict[str, str]:
    """Make sure each atom has a letter in ``folder_dir/dovecot-keywords``; return
    atom → letter for every atom that has one (at most 26 per folder: atoms missing from
    the result did not fit, and the caller reports them).

    Existing lines are never changed or renumbered: new atoms are appended after the
    highest index in use, as Dovecot does. The file is replaced atomically while holding
    ``dovecot-uidlist.lock``. Raises UnsafeName for an atom that is not a valid IMAP atom
    and StoreError if the folder is missing, unwritable or the lock stays busy."""
    wanted = list(dict.fromkeys(atoms))
    for atom in wanted:
        if not is_atom(atom):
            raise UnsafeName(f"{atom!r} is not an IMAP atom; encode it with label_to_atom")
    try:
        with dotlock(folder_dir / UIDLIST_LOCK, timeout_s=lock_timeout_s):
            raw = _read_raw(folder_dir)
            current = _parse(raw)
            by_name = {name: idx for idx, name in current.items()}
            next_idx = max(current, default=-1) + 1
            added: list[str] = []
            for atom in wanted:
                if atom not in by_name and next_idx < MAX_KEYWORDS:
                    by_name[atom] = next_idx
                    added.append(f"{next_idx} {atom}\n")
                    next_idx += 1
            if added:
                if raw and not raw.endswith(b"\n"):
                    raw += b"\n"
                mode = _mode_of(folder_dir / KEYWORDS_FILE)
                atomic_write(folder_dir, KEYWORDS_FILE, raw + "".join(added).encode(), mode)
    except OSError as exc:
        raise StoreError(f"cannot update {folder_dir / KEYWORDS_FILE}: {exc}") from exc
    return {atom: letter(by_name[atom]) for atom in wanted if atom in by_name}


def _mode_of(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return 0o600
