"""File names from mail data (folder names, subjects) that are safe on every common file
system, and writing below a destination directory without ever leaving it."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from axsync.errors import UnsafeName

MAX_COMPONENT_BYTES = 200
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)]
)


def _cut(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def safe_component(name: str, fallback: str = "_") -> str:
    """One path component: no separators, control or Windows-special characters, no
    leading dot, not empty, not a reserved device name, at most 200 UTF-8 bytes (NFC)."""
    text = _FORBIDDEN.sub("_", unicodedata.normalize("NFC", name)).strip().rstrip(". ")
    if not text:
        text = fallback
    if text.startswith("."):
        text = "_" + text
    if text.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        text = "_" + text
    return _cut(text, MAX_COMPONENT_BYTES)


def slug(text: str, limit: int = 60) -> str:
    """A short file-name-friendly version of ``text`` (letters, digits, ``-``)."""
    words = re.findall(r"\w+", unicodedata.normalize("NFC", text))
    return _cut("-".join(words), limit).strip("-_") or "message"


class NameTable:
    """Assigns each folder path a relative directory path made of safe components;
    names that would collide on a case-insensitive file system get `` (2)``, `` (3)``…"""

    def __init__(self) -> None:
        self._assigned: dict[tuple[str, ...], str] = {}
        self._used: dict[tuple[str, ...], set[str]] = {}

    def path(self, folder: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for depth in range(1, len(folder) + 1):
            key = folder[:depth]
            name = self._assigned.get(key)
            if name is None:
                name = self._new(tuple(out), folder[depth - 1])
                self._assigned[key] = name
            out.append(name)
        return tuple(out)

    def _new(self, parent: tuple[str, ...], raw: str) -> str:
        used = self._used.setdefault(parent, set())
        base = safe_component(raw)
        name, n = base, 1
        while name.casefold() in used:
            n += 1
            name = f"{_cut(base, MAX_COMPONENT_BYTES - 8)} ({n})"
        used.add(name.casefold())
        return name


class Destination:
    """A directory everything is written below. Paths are joined from safe components
    only and checked: nothing is created through a symlink or outside the root."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = Path(os.path.realpath(root))

    def directory(self, parts: tuple[str, ...]) -> Path:
        path = self.root
        for part in parts:
            if part in ("", ".", "..") or "/" in part or "\0" in part:
                raise UnsafeName(f"unsafe path component {part!r}")
            path = path / part
            if path.is_symlink():
                raise UnsafeName(f"{path} is a symlink; not writing through it")
            path.mkdir(mode=0o700, exist_ok=True)
        if os.path.commonpath([self.root, os.path.realpath(path)]) != str(self.root):
            raise UnsafeName(f"{path} is outside {self.root}")
        return path

    @staticmethod
    def create(directory: Path, name: str) -> int:
        """A new file's descriptor (never overwrites, never follows a symlink)."""
        if name in ("", ".", "..") or "/" in name:
            raise UnsafeName(f"unsafe file name {name!r}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_BINARY", 0)
        return os.open(directory / name, flags, 0o600)
