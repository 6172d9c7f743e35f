"""The restore planner: pure functions, no I/O.

Given the archived messages to restore (:class:`SourceItem`), what one target mailbox
holds (:class:`TargetFolder`) and the restore log's rows for it (:class:`LogEntry`),
:func:`plan_folder` decides which messages to APPEND and which are already there.

Matching (docs/migration.md, "Idempotency"). A message's :data:`MatchKey` is
``("msgid", <Message-ID without <>>, <CRLF size>)``, or for a message without
Message-ID ``("fp", <fingerprint>, <CRLF size>)`` (:func:`axsync.restore.wire.fingerprint`).
Both sides are multisets: two identical archived copies need two target copies.

1. A log row is trusted only while the mailbox's UIDVALIDITY is the one it was written
   under (a deleted and re-created mailbox, or another account behind the same name,
   starts from scratch).
2. A log row with the target's UID: skipped while that UID is still in the mailbox; if
   the UID is gone, the message is matched (3) or appended again.
3. A log row without a UID (server without UIDPLUS): skipped, consuming one equal message
   if there is one (the server may have changed the message on APPEND).
4. Everything else: skipped if an equal message is left unconsumed, else appended.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from axsync.store.keywords import is_atom, label_to_atom

MatchKey = tuple[str, str, int]

SYSTEM_FLAGS = (("D", "\\Draft"), ("F", "\\Flagged"), ("R", "\\Answered"), ("S", "\\Seen"))
FORWARDED = "$Forwarded"
DELETED = "\\Deleted"
_CONTROL_PICTURES = {i: chr(0x2400 + i) for i in range(0x20)} | {0x7F: "\u2421"}
_SEPARATOR_LOOKALIKES = {"/": "\u2215", ".": "\u2024", "\\": "\u2216"}


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One archived message to restore, as it is (or was, with ``--as-of``).

    ``folder`` is the source folder path (``("INBOX",)`` for the inbox); ``flags`` the
    IMAP flags and keywords to set; ``size`` the CRLF size on the wire (``W=``); the file
    is ``dirname``/``base`` (``filename`` the name last seen) with ``raw_size`` and
    ``sha256`` of the uncompressed bytes."""

    uid: int
    folder: tuple[str, ...]
    flags: tuple[str, ...]
    internal_date: int
    key: MatchKey
    size: int
    raw_size: int
    sha256: str
    dirname: str
    base: str
    filename: str


@dataclass(frozen=True, slots=True)
class TargetMessage:
    uid: int
    key: MatchKey


@dataclass(frozen=True, slots=True)
class TargetFolder:
    """One target mailbox: absent (``exists`` False) or its UIDVALIDITY and messages."""

    exists: bool
    uidvalidity: int | None = None
    messages: tuple[TargetMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class LogEntry:
    uid: int
    uidvalidity: int | None
    target_uid: int | None


@dataclass(slots=True)
class FolderPlan:
    """``append`` in UID order; ``skipped`` as (item, reason) with reason ``logged``
    (the restore log says it is there) or ``present`` (an equal message is there)."""

    append: list[SourceItem] = field(default_factory=list)
    skipped: list[tuple[SourceItem, str]] = field(default_factory=list)


def plan_folder(items: Iterable[SourceItem], target: TargetFolder,
                log: Mapping[int, LogEntry]) -> FolderPlan:
    """What to append into one target mailbox (see the module doc for the rules)."""
    ordered = sorted(items, key=lambda i: i.uid)
    plan = FolderPlan()
    if not target.exists:
        plan.append = ordered
        return plan
    by_uid = {m.uid: m for m in target.messages}
    pool: dict[MatchKey, list[int]] = defaultdict(list)
    for m in sorted(target.messages, key=lambda m: m.uid):
        pool[m.key].append(m.uid)

    def take(key: MatchKey, uid: int | None = None) -> bool:
        uids = pool.get(key)
        if not uids:
            return False
        uids.remove(uid if uid is not None and uid in uids else uids[0])
        return True

    def trusted(entry: LogEntry | None) -> bool:
        return entry is not None and (
            entry.uidvalidity is None or target.uidvalidity is None
            or entry.uidvalidity == target.uidvalidity)

    rest: list[SourceItem] = []
    unnumbered: list[SourceItem] = []
    for item in ordered:  # rule 2 first: a logged UID owns its target message
        entry = log.get(item.uid)
        if not trusted(entry):
            rest.append(item)
        elif entry is not None and entry.target_uid is None:
            unnumbered.append(item)
        elif entry is not None and entry.target_uid in by_uid:
            take(by_uid[entry.target_uid].key, entry.target_uid)
            plan.skipped.append((item, "logged"))
        else:
            rest.append(item)
    for item in unnumbered:  # rule 3
        take(item.key)
        plan.skipped.append((item, "logged"))
    for item in rest:  # rule 4
        if take(item.key):
            plan.skipped.append((item, "present"))
        else:
            plan.append.append(item)
    plan.append.sort(key=lambda i: i.uid)
    plan.skipped.sort(key=lambda s: s[0].uid)
    return plan


def imap_flags(letters: str, refw: str, labels: Iterable[str], *,
               keep_deleted: bool = False) -> tuple[str, ...]:
    """The flags to APPEND with: system flags from the Maildir letters (``T`` →
    ``\\Deleted`` only when ``keep_deleted``), ``$Forwarded`` when ``refw`` has ``fw``,
    and each label as a keyword: its name when that is an IMAP atom, else
    :func:`~axsync.store.keywords.label_to_atom` (the archive's reversible encoding)."""
    out = [flag for letter, flag in SYSTEM_FLAGS if letter in letters]
    if keep_deleted and "T" in letters:
        out.append(DELETED)
    if "fw" in refw:
        out.append(FORWARDED)
    for name in labels:
        out.append(name if is_atom(name) else label_to_atom(name))
    return tuple(dict.fromkeys(out))


def allowed_flags(flags: Sequence[str], permanent: frozenset[str] | None
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(kept, dropped): keywords the mailbox cannot keep (no ``\\*`` in PERMANENTFLAGS and
    not listed there) are dropped; system flags are always kept. ``None``: keep all."""
    if permanent is None or "\\*" in permanent:
        return tuple(flags), ()
    known = {f.lower() for f in permanent}
    kept = tuple(f for f in flags if f.startswith("\\") or f.lower() in known)
    return kept, tuple(f for f in flags if f not in kept)


def target_mailbox(path: Sequence[str], separator: str | None, prefix: str = "") -> str:
    """The target mailbox name for a source folder path. INBOX (any case) stays INBOX and
    keeps its children under it; other folders get the personal namespace ``prefix``.
    Inside a level, the server's separator becomes a look-alike (``/`` → ``∕``,
    ``.`` → ``․``, ``\\`` → ``∖``, others ``_``) and control characters their Unicode
    "control picture" (TAB → ``␉``), since no server takes them in a name."""
    parts = [_clean(p, separator) for p in path] or ["INBOX"]
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
        head = ""
    else:
        head = prefix
    joiner = separator or "/"
    return head + joiner.join(parts)


def _clean(component: str, separator: str | None) -> str:
    cleaned = component.translate(_CONTROL_PICTURES)
    if separator:
        cleaned = cleaned.replace(separator, _SEPARATOR_LOOKALIKES.get(separator, "_"))
    return cleaned or "_"
