"""A real Dovecot 2.3 IMAP server on loopback, serving a (zstd-compressed) Maildir++.

Used by the interop tests to check that what axsync writes is what Dovecot serves::

    from .dovecot import DovecotServer, fetch_all, list_mailboxes, requires_dovecot

    pytestmark = [pytest.mark.interop, requires_dovecot]

    def test_served(tmp_path: Path) -> None:
        maildir = build_or_sync_something(tmp_path / "Maildir")
        with DovecotServer(maildir, tmp_path / "dovecot") as dv:
            imap = dv.imap()                        # logged in, closed at exit
            assert "Archive/2024" in list_mailboxes(imap)
            for msg in fetch_all(imap, "INBOX"):    # read-only: EXAMINE + BODY.PEEK[]
                ...                                 # msg.uid/.flags/.internaldate/.rfc822_size/.body
            assert dv.log_problems() == []

What the harness does (see docs/interop.md for the why):

* ``DovecotServer(maildir, work)`` writes a self-contained ``dovecot.conf`` (it includes
  nothing from /etc/dovecot): zlib plugin (reads zstd/gzip/bz2/lz4 message files),
  listescape plugin with ``\\`` as escape character (so an on-disk ``.v1\\2e2 notes``
  is the IMAP folder ``v1.2 notes``), one ``passwd-file`` user, a static userdb with the
  uid/gid of the system user ``axsynctest``, ``mail_location = maildir:<maildir>`` (Maildir++,
  Dovecot's default layout, indexes in the Maildir as in a default install), one inbox
  namespace with separator ``/``.  It starts ``dovecot -F`` on a free 127.0.0.1 port,
  waits for the IMAP greeting, and at exit (also when the test fails) logs out the
  connections it opened, stops the master by its pid and removes its runtime directory.
* By default it serves a **copy** of ``maildir`` (``copy=True``): Dovecot writes
  ``dovecot-uidlist``, ``dovecot-uidvalidity*``, ``dovecot.index*`` and maybe
  ``dovecot-keywords``/``subscriptions`` into every folder it opens, renames files whose
  flags change and moves ``new/`` files to ``cur/``; the copy (mtimes and modes preserved,
  owned by ``axsynctest``) keeps the archive under test byte-for-byte untouched.
  ``copy=False`` serves the Maildir in place (for tests of changes made through IMAP):
  see :class:`DovecotServer`.
* ``work`` receives what a human may want to read afterwards: ``dovecot.conf``,
  ``doveconf-n.txt``, ``dovecot.log`` and ``master.out``.  Everything Dovecot's
  unprivileged processes must reach (sockets, home, passwd file, the copy) lives in a
  private runtime directory under the system temp dir, because pytest's ``tmp_path`` sits
  below a mode-0700 directory that the ``dovecot``/``axsynctest`` users cannot traverse.

Needs root (the Dovecot master binds, forks and drops privileges), the ``dovecot`` binary
and the ``axsynctest`` user: ``.ci/setup-system`` installs them.  :data:`requires_dovecot`
skips a test when they are missing, but never in CI (``CI`` set), and not for missing
software on a machine where ``.ci/setup-system`` succeeded as root: there the test fails
(:func:`skip_reason`).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as _dt
import imaplib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeAlias

import pytest

__all__ = [
    "SETUP_STAMP",
    "TEST_USER",
    "DovecotError",
    "DovecotServer",
    "DovecotUnavailable",
    "FetchedMessage",
    "MailboxEntry",
    "crlf",
    "dovecot_unavailable_reason",
    "dovecot_version",
    "fetch_all",
    "imap_body",
    "imap_quote",
    "interop_required",
    "list_mailbox_entries",
    "list_mailboxes",
    "mutf7_decode",
    "mutf7_encode",
    "requires_dovecot",
    "skip_reason",
]

TEST_USER = "axsynctest"
"""System user Dovecot's mail processes run as (created by ``.ci/setup-system``)."""

SETUP_STAMP = Path("/var/lib/axsync-ci/setup-system.ok")
"""Written by ``.ci/setup-system`` after it ran as root and everything was installed."""

_DOVECOT_CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
_IMAP_BINARIES = ("/usr/lib/dovecot/imap", "/usr/libexec/dovecot/imap")
_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0


class DovecotError(RuntimeError):
    """Dovecot could not be configured, started or queried; the message has the log."""


class DovecotUnavailable(DovecotError):
    """The dovecot binary, root or the test user is missing."""


# ---------------------------------------------------------------------------
# availability, skip / fail policy
# ---------------------------------------------------------------------------


def _dovecot_binary() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    return next((c for c in _DOVECOT_CANDIDATES if os.access(c, os.X_OK)), None)


def _doveadm_binary(dovecot: str) -> str:
    sibling = Path(dovecot).parent.parent / "bin" / "doveadm"
    return shutil.which("doveadm") or str(sibling)


def _doveconf_binary(dovecot: str) -> str:
    sibling = Path(dovecot).parent.parent / "bin" / "doveconf"
    return shutil.which("doveconf") or str(sibling)


_NOT_ROOT = "not root (the Dovecot master must bind, fork and drop privileges)"


def _missing_software() -> list[str]:
    """What ``.ci/setup-system`` would install or create."""
    problems: list[str] = []
    if _dovecot_binary() is None:
        problems.append("the dovecot binary is not installed (Debian package dovecot-imapd)")
    elif not any(os.access(p, os.X_OK) for p in _IMAP_BINARIES):
        problems.append("Dovecot's imap binary is missing (Debian package dovecot-imapd)")
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        problems.append(f"system user {TEST_USER!r} does not exist")
    return problems


def _describe(problems: Sequence[str]) -> str:
    return "; ".join(problems) + " -- run ./.ci/setup-system as root (see docs/interop.md)"


def dovecot_unavailable_reason() -> str | None:
    """Why Dovecot can't be run here, or None when it can."""
    problems = _missing_software()
    if os.geteuid() != 0:
        problems.append(_NOT_ROOT)
    return _describe(problems) if problems else None


def interop_required(
    environ: Mapping[str, str] | None = None, stamp: Path | None = None
) -> bool:
    """True when a missing Dovecot must fail the tests instead of skipping them.

    That is in CI (``CI`` set to anything but ``""``/``0``/``false``/``no``) and on a machine
    where ``.ci/setup-system`` ran as root (it leaves :data:`SETUP_STAMP`).
    """
    env = os.environ if environ is None else environ
    return _ci(env) or (SETUP_STAMP if stamp is None else stamp).exists()


def _ci(env: Mapping[str, str]) -> bool:
    return env.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_reason(
    missing: Sequence[str],
    is_root: bool,
    environ: Mapping[str, str] | None = None,
    stamp: Path | None = None,
) -> str | None:
    """The reason to skip a Dovecot test, or None to run it (and let it fail if it can't).

    Runs always in CI. Elsewhere it skips when not root; as root it skips for missing
    software only until ``.ci/setup-system`` has succeeded once on this machine.
    """
    env = os.environ if environ is None else environ
    if (not missing and is_root) or _ci(env):
        return None
    if not is_root:
        return "Dovecot interop test skipped: " + _describe([*missing, _NOT_ROOT])
    if interop_required(env, stamp):
        return None
    return "Dovecot interop test skipped: " + _describe(missing)


_skip_reason = skip_reason(_missing_software(), os.geteuid() == 0)
_skip = _skip_reason is not None

requires_dovecot = pytest.mark.skipif(_skip, reason=_skip_reason or "")
"""Mark (also usable as ``pytestmark``): skip without Dovecot or root, see :func:`skip_reason`.
Where it does not skip although Dovecot can't run (CI), :class:`DovecotServer` raises
:class:`DovecotUnavailable` and the test fails with the reason."""


def dovecot_version() -> str:
    """``dovecot --version``, e.g. ``2.3.19.1 (9b53102964)``."""
    binary = _dovecot_binary()
    if binary is None:
        raise DovecotUnavailable(dovecot_unavailable_reason() or "dovecot not found")
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def crlf(data: bytes) -> bytes:
    """``data`` with every bare LF turned into CRLF (the ``W=`` size counts these bytes)."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def imap_body(raw: bytes) -> bytes:
    """What Dovecot serves as ``BODY[]`` for a message stored as ``raw``.

    Every bare LF becomes CRLF (bare CR and CR CR LF stay as they are), and every NUL
    byte becomes 0x80: IMAP forbids NUL in a literal, so Dovecot replaces it (only the
    BINARY extension would return it). ``len(imap_body(raw)) == len(crlf(raw))``.
    """
    return crlf(raw).replace(b"\0", b"\x80")


def mutf7_encode(name: str) -> str:
    """Unicode -> IMAP modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=")
            out.append("&" + b64.replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(name: str) -> str:
    """IMAP modified UTF-7 -> unicode. Raises ValueError on malformed input."""
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise ValueError(f"unterminated modified UTF-7 shift in {name!r}")
        chunk = name[i + 1 : end]
        if chunk == "":
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            out.append(base64.b64decode(b64, validate=True).decode("utf-16-be"))
        i = end + 1
    return "".join(out)


def imap_quote(name: str) -> str:
    """A mailbox name (unicode) as an IMAP quoted string in modified UTF-7."""
    encoded = mutf7_encode(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _conf_quote(value: str) -> str:
    """A Dovecot config value as a quoted string."""
    if "\n" in value or "\r" in value:
        raise DovecotError(f"newline in Dovecot config value {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------
# IMAP response parsing (literal-aware)
# ---------------------------------------------------------------------------


class _Atom(bytes):
    """An IMAP atom (as opposed to a quoted string or literal with the same bytes)."""


_Value: TypeAlias = "bytes | list[_Value]"


class _Parser:
    """Parses one untagged response that imaplib split at its literals."""

    _ATOM_END = frozenset(b" ()\r\n")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        self._skip_space()
        return self.pos >= len(self.data)

    def _skip_space(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] == 0x20:
            self.pos += 1

    def _error(self, what: str) -> DovecotError:
        around = self.data[max(0, self.pos - 40) : self.pos + 40]
        return DovecotError(f"IMAP parse error: {what} at byte {self.pos}: {around!r}")

    def value(self) -> _Value:
        self._skip_space()
        if self.pos >= len(self.data):
            raise self._error("unexpected end")
        ch = self.data[self.pos]
        if ch == 0x28:  # (
            self.pos += 1
            items: list[_Value] = []
            while True:
                self._skip_space()
                if self.pos >= len(self.data):
                    raise self._error("unterminated list")
                if self.data[self.pos] == 0x29:  # )
                    self.pos += 1
                    return items
                items.append(self.value())
        if ch == 0x22:  # "
            return self._quoted()
        if ch == 0x7B or self.data.startswith(b"~{", self.pos):  # literal or literal8
            return self._literal()
        return self._atom()

    def _quoted(self) -> bytes:
        self.pos += 1
        out = bytearray()
        while self.pos < len(self.data):
            ch = self.data[self.pos]
            if ch == 0x5C:  # backslash
                if self.pos + 1 >= len(self.data):
                    break
                out.append(self.data[self.pos + 1])
                self.pos += 2
                continue
            if ch == 0x22:
                self.pos += 1
                return bytes(out)
            out.append(ch)
            self.pos += 1
        raise self._error("unterminated quoted string")

    def _literal(self) -> bytes:
        m = re.compile(rb"~?\{(\d+)\+?\}\r\n").match(self.data, self.pos)
        if not m:
            raise self._error("bad literal header")
        size = int(m.group(1))
        start = m.end()
        if start + size > len(self.data):
            raise self._error(f"literal of {size} bytes is cut short")
        self.pos = start + size
        return self.data[start : self.pos]

    def _atom(self) -> _Atom:
        start = self.pos
        depth = 0
        while self.pos < len(self.data):
            ch = self.data[self.pos]
            if ch == 0x5B:  # [  section specs like BODY[HEADER.FIELDS (A B)] hold ( ) and SP
                depth += 1
            elif ch == 0x5D and depth:
                depth -= 1
            elif depth == 0 and ch in self._ATOM_END:
                break
            self.pos += 1
        if self.pos == start:
            raise self._error("empty atom")
        return _Atom(self.data[start : self.pos])


def _join_responses(data: Sequence[object], starts: re.Pattern[bytes]) -> list[bytes]:
    """Re-assemble imaplib's pieces into one wire-format buffer per untagged response.

    imaplib stores ``* 1 FETCH (... BODY[] {5}\\r\\nhello)`` as ``(b'1 (... BODY[] {5}',
    b'hello')`` followed by the trailer ``b')'``; a trailer never starts a new response
    (it begins with SP or ``)``), a new response matches ``starts``.
    """
    out: list[bytearray] = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            head, literal = item
            assert isinstance(head, bytes) and isinstance(literal, bytes)
            piece = head + b"\r\n" + literal
        elif isinstance(item, bytes):
            head = piece = item
        else:
            raise DovecotError(f"unexpected imaplib response item {item!r}")
        if not out or starts.match(head):
            out.append(bytearray(piece))
        else:
            out[-1] += piece
    return [bytes(b) for b in out]


def _text(value: _Value) -> str:
    if not isinstance(value, bytes):
        raise DovecotError(f"expected a string, got a list: {value!r}")
    return value.decode("utf-8", "surrogateescape")


_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_DATE_RE = re.compile(
    r"^ ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$")


def _parse_internaldate(text: str) -> int:
    m = _DATE_RE.match(text)
    if not m:
        raise DovecotError(f"bad INTERNALDATE {text!r}")
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    offset = _dt.timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
    when = _dt.datetime(
        int(year), _MONTHS[mon.capitalize()], int(day), int(hh), int(mm), int(ss),
        tzinfo=_dt.timezone(offset))
    return int(when.timestamp())


# ---------------------------------------------------------------------------
# LIST and FETCH helpers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MailboxEntry:
    """One LIST answer: ``name`` is unicode with ``/`` between levels."""

    name: str
    attributes: frozenset[str]
    delimiter: str | None
    wire_name: str

    @property
    def selectable(self) -> bool:
        attrs = {a.lower() for a in self.attributes}
        return not attrs & {"\\noselect", "\\nonexistent"}


def list_mailbox_entries(imap: imaplib.IMAP4, pattern: str = "*") -> list[MailboxEntry]:
    """``LIST "" <pattern>``, parsed (quoted, atom and literal names), in server order."""
    typ, data = imap.list('""', pattern)
    if typ != "OK":
        raise DovecotError(f"LIST failed: {typ} {data!r}")
    entries: list[MailboxEntry] = []
    for raw in _join_responses(data, re.compile(rb"\(")):
        p = _Parser(raw)
        attrs = p.value()
        delim = p.value()
        name = p.value()
        if not isinstance(attrs, list) or not isinstance(name, bytes):
            raise DovecotError(f"unexpected LIST response {raw!r}")
        if not isinstance(delim, bytes):
            raise DovecotError(f"unexpected LIST delimiter in {raw!r}")
        delimiter = None if isinstance(delim, _Atom) and delim.upper() == b"NIL" else _text(delim)
        wire = name.decode("ascii")  # modified UTF-7 is 7-bit
        decoded = mutf7_decode(wire)
        if delimiter and delimiter != "/":
            decoded = decoded.replace(delimiter, "/")
        entries.append(MailboxEntry(
            name=decoded,
            attributes=frozenset(_text(a) for a in attrs),
            delimiter=delimiter,
            wire_name=wire,
        ))
    return entries


def list_mailboxes(imap: imaplib.IMAP4, *, selectable_only: bool = False) -> list[str]:
    """Every mailbox name (unicode, ``/`` separator), sorted.

    Includes ``\\Noselect``/``\\NonExistent`` parents (e.g. ``Archive`` when only
    ``.Archive.2024`` exists on disk) unless ``selectable_only``.
    """
    return sorted(
        e.name for e in list_mailbox_entries(imap) if e.selectable or not selectable_only)


@dataclass(frozen=True)
class FetchedMessage:
    """One message as Dovecot served it (``BODY.PEEK[]`` and its attributes)."""

    uid: int
    flags: set[str]
    """System flags and keywords, without the session flag ``\\Recent``."""
    internaldate: int
    """INTERNALDATE as Unix seconds (Dovecot's Maildir: the file's mtime)."""
    rfc822_size: int
    body: bytes
    """The full message (``BODY[]``): for a Maildir file, the stored bytes with LF -> CRLF."""
    seq: int = 0
    recent: bool = False
    raw_flags: tuple[str, ...] = field(default=(), repr=False)

    @property
    def system_flags(self) -> set[str]:
        return {f for f in self.flags if f.startswith("\\")}

    @property
    def keywords(self) -> set[str]:
        return {f for f in self.flags if not f.startswith("\\")}


_FETCH_ITEMS = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"


def _parse_fetch(data: Sequence[object]) -> dict[int, dict[str, _Value]]:
    """FETCH responses -> {seq: {ITEM: value}}; several responses for a seq are merged."""
    by_seq: dict[int, dict[str, _Value]] = {}
    for raw in _join_responses(data, re.compile(rb"\d+ \(")):
        p = _Parser(raw)
        seq_v = p.value()
        items = p.value()
        if not isinstance(seq_v, _Atom) or not isinstance(items, list) or len(items) % 2:
            raise DovecotError(f"unexpected FETCH response {raw[:200]!r}")
        attrs = by_seq.setdefault(int(seq_v), {})
        for key, value in zip(items[::2], items[1::2], strict=True):
            if not isinstance(key, bytes):
                raise DovecotError(f"unexpected FETCH item name {key!r}")
            attrs[key.decode("ascii").upper()] = value
    return by_seq


def fetch_all(imap: imaplib.IMAP4, mailbox: str) -> list[FetchedMessage]:
    """Every message in ``mailbox`` (unicode name), sorted by UID.

    Opens it read-only (EXAMINE) and fetches ``UID FLAGS INTERNALDATE RFC822.SIZE
    BODY.PEEK[]``, so nothing changes on the server (no ``\\Seen``, no expunge); leaves
    it with UNSELECT.  Raises DovecotError when Dovecot refuses (see ``log_text()``);
    imaplib.IMAP4.abort when it drops the connection (e.g. on a wrong ``,S=``/``,W=``).
    """
    typ, data = imap.select(imap_quote(mailbox), readonly=True)
    if typ != "OK":
        raise DovecotError(f"EXAMINE {mailbox!r} failed: {data!r}")
    exists = int(data[0] or b"0")
    try:
        if exists == 0:
            return []
        typ, data = imap.uid("FETCH", "1:*", _FETCH_ITEMS)
        if typ != "OK":
            raise DovecotError(f"UID FETCH in {mailbox!r} failed: {typ} {data!r}")
        out: list[FetchedMessage] = []
        for seq, attrs in _parse_fetch(data).items():
            if "UID" not in attrs or "BODY[]" not in attrs:
                continue  # an unsolicited FLAGS update
            flags_v = attrs.get("FLAGS", [])
            if not isinstance(flags_v, list):
                raise DovecotError(f"FLAGS is not a list: {flags_v!r}")
            raw_flags = tuple(_text(f) for f in flags_v)
            body = attrs["BODY[]"]
            if not isinstance(body, bytes) or isinstance(body, _Atom):
                raise DovecotError(f"{mailbox!r} seq {seq}: BODY[] is {body!r}")
            out.append(FetchedMessage(
                uid=int(_text(attrs["UID"])),
                flags={f for f in raw_flags if f.lower() != "\\recent"},
                internaldate=_parse_internaldate(_text(attrs["INTERNALDATE"])),
                rfc822_size=int(_text(attrs["RFC822.SIZE"])),
                body=bytes(body),
                seq=seq,
                recent=any(f.lower() == "\\recent" for f in raw_flags),
                raw_flags=raw_flags,
            ))
        if len(out) != exists:
            raise DovecotError(
                f"{mailbox!r}: EXISTS {exists} but {len(out)} messages fetched")
        return sorted(out, key=lambda m: m.uid)
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            imap.unselect()


# ---------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------

_CONFIG = """\
# Written by tests/interop/dovecot.py. Self-contained: includes nothing from /etc/dovecot.
instance_name = axsync-test-{port}
base_dir = {base_dir}
state_dir = {state_dir}
log_path = {log_path}
# info_log_path and debug_log_path default to log_path: one file.

protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = {uid}
first_valid_gid = 1
mail_max_userip_connections = 200
mail_debug = {debug}
auth_verbose = {debug}

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd_file}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={home}
}}

# Maildir++ (Dovecot's default maildir layout): INBOX is the root, folders are
# ".Name.Sub" with names in modified UTF-7. Indexes, dovecot-uidlist, dovecot-keywords
# and subscriptions live in the Maildir, as with a default install.
mail_location = {mail_location}

# zlib: read compressed message files (detected by magic bytes). 2.4: mail_compress.
# listescape: "\\2e" in an on-disk folder name is a "." in the IMAP name.
mail_plugins = $mail_plugins zlib listescape
plugin {{
  listescape_char = "\\\\"
}}

namespace inbox {{
  inbox = yes
  separator = /
  prefix =
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
{extra}
"""


class DovecotServer:
    """Dovecot serving one Maildir++ on ``127.0.0.1:<free port>``; a context manager.

    ``maildir``: the Maildir++ root (INBOX) to serve.
    ``work``: a directory (created if missing) for dovecot.conf, doveconf-n.txt,
    dovecot.log and master.out; it may be under pytest's ``tmp_path``.

    ``copy=True`` (default): serve a copy made with mtimes and modes preserved and owned
    by ``axsynctest``; ``maildir`` is never written to.  ``.maildir`` is the copy.

    ``copy=False``: serve ``maildir`` itself, so that Dovecot's renames, flag changes,
    ``dovecot-keywords`` appends and expunges land in it.  If the Maildir root is owned
    by a user other than root, Dovecot runs as that uid/gid and no ownership changes;
    if it is owned by root (Dovecot refuses uid 0), the tree is chowned to
    ``axsynctest`` while the server runs and given back at stop: every file keeps its
    original owner (tracked by inode, so renamed files are found), files Dovecot created
    get the owner of the Maildir root.  Every directory above ``maildir`` must be
    traversable by that user (pytest's ``tmp_path`` is not: use
    ``tempfile.mkdtemp()`` + ``chmod 0o755``); DovecotError says so otherwise.

    ``extra_config`` is appended to dovecot.conf (e.g. ``plugin { zlib_save = zstd }``);
    ``debug=True`` sets ``mail_debug``/``auth_verbose``.

    Attributes after start: ``port``, ``user``, ``password``, ``maildir``, ``work``,
    ``uid``, ``gid``, ``pid``, ``config_path``, ``log_path``.
    """

    def __init__(
        self,
        maildir: Path,
        work: Path,
        *,
        copy: bool = True,
        extra_config: str = "",
        debug: bool = False,
    ) -> None:
        self.source = Path(maildir).resolve()
        self.work = Path(work).resolve()
        self.copy = copy
        self.extra_config = extra_config
        self.debug = debug
        self.user = TEST_USER
        self.password = "axsync-" + secrets.token_hex(8)
        self.maildir = self.source
        self.port = 0
        self.uid = -1
        self.gid = -1
        self.config_path = self.work / "dovecot.conf"
        self.log_path = self.work / "dovecot.log"
        self.master_out_path = self.work / "master.out"
        self._runtime: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._connections: list[imaplib.IMAP4] = []
        self._owners: dict[tuple[int, int], tuple[int, int]] | None = None
        self._root_owner: tuple[int, int] = (0, 0)
        self._dovecot = ""

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Prepare the Maildir, write the config, start Dovecot and wait for its greeting."""
        if self._proc is not None:
            raise DovecotError("already started")
        reason = dovecot_unavailable_reason()
        if reason is not None:
            raise DovecotUnavailable(reason)
        dovecot = _dovecot_binary()
        assert dovecot is not None
        self._dovecot = dovecot
        if not (self.source / "cur").is_dir():
            raise DovecotError(f"{self.source} is not a Maildir (no cur/)")
        atexit.register(self.stop)
        try:
            self._prepare()
            for attempt in range(3):
                self.port = _free_port()
                self._write_config()
                if self._launch(last_attempt=attempt == 2):
                    return
        except BaseException:
            self.stop()
            raise

    def _prepare(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        runtime = Path(tempfile.mkdtemp(prefix="axsync-dovecot-"))
        self._runtime = runtime
        if re.search(r"[\s:%\"\\]", str(runtime)):
            raise DovecotError(f"runtime dir {runtime} has characters Dovecot args can't take")
        runtime.chmod(0o755)
        test_pw = pwd.getpwnam(TEST_USER)
        if self.copy:
            self.uid, self.gid = test_pw.pw_uid, test_pw.pw_gid
            self.maildir = runtime / "Maildir"
            shutil.copytree(self.source, self.maildir, symlinks=True)
            self._chown_tree(self.maildir, self.uid, self.gid)
        else:
            self.maildir = self.source
            if ":" in str(self.maildir):
                raise DovecotError(f"Dovecot's mail_location can't hold ':' ({self.maildir})")
            st = self.maildir.stat()
            self._root_owner = (st.st_uid, st.st_gid)
            if st.st_uid != 0:  # run as the owner, change nothing
                self.uid, self.gid = st.st_uid, st.st_gid
            else:  # Dovecot refuses uid 0: lend the tree to axsynctest
                self.uid, self.gid = test_pw.pw_uid, test_pw.pw_gid
            self._check_traversable(self.maildir)  # before touching anything
            if st.st_uid == 0:
                self._owners = {}
                for path in [self.maildir, *self._walk(self.maildir)]:
                    s = path.lstat()
                    self._owners[(s.st_dev, s.st_ino)] = (s.st_uid, s.st_gid)
                self._chown_tree(self.maildir, self.uid, self.gid)
        home = runtime / "home"
        home.mkdir(mode=0o700)
        os.chown(home, self.uid, self.gid)
        passwd = runtime / "users.passwd"
        passwd.write_text(f"{self.user}:{{PLAIN}}{self.password}\n", encoding="utf-8")
        passwd.chmod(0o644)
        for sub in ("run", "state"):
            (runtime / sub).mkdir(mode=0o755)

    @staticmethod
    def _walk(root: Path) -> Iterator[Path]:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                yield Path(dirpath) / name

    def _chown_tree(self, root: Path, uid: int, gid: int) -> None:
        os.lchown(root, uid, gid)
        for path in self._walk(root):
            os.lchown(path, uid, gid)

    def _check_traversable(self, path: Path) -> None:
        groups = set(os.getgrouplist(pwd.getpwuid(self.uid).pw_name, self.gid)) \
            if self._uid_has_name() else {self.gid}
        for parent in path.parents:
            st = parent.stat()
            if st.st_uid == self.uid:
                ok = bool(st.st_mode & 0o100)
            elif st.st_gid in groups:
                ok = bool(st.st_mode & 0o010)
            else:
                ok = bool(st.st_mode & 0o001)
            if not ok:
                raise DovecotError(
                    f"{parent} (mode {st.st_mode & 0o7777:o}) can't be traversed by uid "
                    f"{self.uid}: Dovecot could not reach {path}. Serve a copy (copy=True) "
                    "or put the Maildir under a directory made with tempfile.mkdtemp() "
                    "and chmod 0o755.")

    def _uid_has_name(self) -> bool:
        try:
            pwd.getpwuid(self.uid)
        except KeyError:
            return False
        return True

    def _write_config(self) -> None:
        assert self._runtime is not None
        location = "maildir:" + str(self.maildir).replace("%", "%%")
        text = _CONFIG.format(
            port=self.port,
            base_dir=_conf_quote(str(self._runtime / "run")),
            state_dir=_conf_quote(str(self._runtime / "state")),
            log_path=_conf_quote(str(self.log_path)),
            uid=self.uid,
            gid=self.gid,
            debug="yes" if self.debug else "no",
            passwd_file=self._runtime / "users.passwd",
            home=self._runtime / "home",
            mail_location=_conf_quote(location),
            extra=self.extra_config,
        )
        self.config_path.write_text(text, encoding="utf-8")
        res = subprocess.run(
            [_doveconf_binary(self._dovecot), "-c", str(self.config_path), "-n"],
            capture_output=True, text=True)
        (self.work / "doveconf-n.txt").write_text(res.stdout + res.stderr, encoding="utf-8")
        if res.returncode != 0:
            raise DovecotError(f"doveconf rejected {self.config_path}:\n{res.stderr}")

    def _launch(self, *, last_attempt: bool) -> bool:
        """Start the master; True when it greets, False to retry on a port race."""
        before = len(self.log_text())
        with self.master_out_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [self._dovecot, "-c", str(self.config_path), "-F"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.settimeout(1)
                    greeting = s.recv(512)
                if greeting.startswith(b"* OK"):
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        self._terminate()
        if "Address already in use" in self.log_text()[before:] and not last_attempt:
            return False
        raise DovecotError(
            f"dovecot did not start listening on 127.0.0.1:{self.port}\n{self.log_text()}")

    def stop(self) -> None:
        """Stop Dovecot (by pid), close connections, give back the Maildir. Idempotent."""
        atexit.unregister(self.stop)
        for conn in self._connections:
            with contextlib.suppress(Exception):
                conn.logout()
        self._connections.clear()
        self._terminate()
        if self._owners is not None:
            owners, self._owners = self._owners, None
            default = self._root_owner
            for path in [self.maildir, *self._walk(self.maildir)]:
                s = path.lstat()
                os.lchown(path, *owners.get((s.st_dev, s.st_ino), default))
        if self._runtime is not None:
            runtime, self._runtime = self._runtime, None
            if os.environ.get("AXSYNC_KEEP_DOVECOT") == "1":
                return
            shutil.rmtree(runtime, ignore_errors=True)

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(_STOP_TIMEOUT)
        # Children (auth, log, imap ...) share the master's session; normally they exit
        # with it. Kill any straggler by pid.
        for pid in session_members(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- use -----------------------------------------------------------------

    def imap(self, *, login: bool = True, timeout: float = 30.0) -> imaplib.IMAP4:
        """A new IMAP connection to this server, logged in unless ``login=False``.

        The harness logs it out at stop; calling ``logout()`` yourself is fine too.
        """
        if not self.running:
            raise DovecotError("dovecot is not running")
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=timeout)
        self._connections.append(conn)
        if login:
            typ, data = conn.login(self.user, self.password)
            if typ != "OK":
                raise DovecotError(f"LOGIN failed: {data!r}\n{self.log_text()}")
        return conn

    def doveadm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``doveadm -c <this config> ARGS`` (e.g. ``"force-resync", "-u", dv.user, "*"``)."""
        return subprocess.run(
            [_doveadm_binary(self._dovecot or _dovecot_binary() or "dovecot"),
             "-c", str(self.config_path), *args],
            capture_output=True, text=True, check=check)

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self) -> str:
        """dovecot.log (errors, warnings, info), plus the master's stdout/stderr if any."""
        text = self._read(self.log_path)
        master = self._read(self.master_out_path)
        if master.strip():
            text += "\n--- dovecot -F stdout/stderr ---\n" + master
        return text

    def log_problems(self) -> list[str]:
        """Lines of the log that are Warning, Error, Fatal or Panic.

        Leaves out the master's ``Warning: Killed with signal 15`` that stopping it logs.
        """
        return [line for line in self.log_text().splitlines()
                if re.search(r"\b(Warning|Error|Fatal|Panic): ", line)
                and not re.search(r"master: Warning: Killed with signal 15 ", line)]


def session_members(sid: int) -> list[int]:
    """Pids of live processes in session ``sid`` (the one ``start_new_session`` made)."""
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # fields after "(comm)": state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 3 and fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids
