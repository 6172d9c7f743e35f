"""Three-way merge of flags and labels, per flag and per label (pure).

``base`` is what both sides agreed on at the end of the last run (the state DB), ``local``
what the file name says now, ``server`` what the server says now. A side that did not move
away from ``base`` takes the other side's value; when both moved to different values the
configured policy decides and a ``Conflict`` is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Flags the REST API can change (PATCH / batch update): S via isUnread, F via isFlagged.
PUSHABLE_FLAGS = frozenset("SF")
#: Letters that belong to the server's flag set (refwFlags, isDraft, isDeleted are read-only
#: through the REST API).
SERVER_FLAGS = frozenset("DFRST")


@dataclass(frozen=True, slots=True)
class Conflict:
    field: str  # a flag letter, or "label:<id>"
    base: bool
    local: bool
    server: bool
    resolution: str  # "server" | "local"


@dataclass(frozen=True, slots=True)
class Merged:
    flags: str  # merged server-flag letters (sorted)
    labels: tuple[str, ...]  # merged label ids (sorted)
    conflicts: tuple[Conflict, ...]


def _pick(field: str, base: bool, local: bool, server: bool, policy: str,
          local_newer: bool) -> tuple[bool, Conflict | None]:
    if local == base:
        return server, None
    if server in (base, local):
        return local, None
    winner = policy
    if policy == "newest":
        winner = "local" if local_newer else "server"
    value = local if winner == "local" else server
    return value, Conflict(field, base, local, server, winner)


def merge(
    base_flags: str, local_flags: str, server_flags: str,
    base_labels: tuple[str, ...], local_labels: tuple[str, ...], server_labels: tuple[str, ...],
    *, policy: str = "server", local_newer: bool = False,
) -> Merged:
    """Merge every server flag letter and every label id independently.

    Letters outside ``SERVER_FLAGS`` are ignored here (keyword letters are labels, ``Z``
    describes the file). Flags the API cannot change (D, R, T) always take the server's
    value: a local change to them cannot be pushed, so keeping it would diverge forever.
    """
    conflicts: list[Conflict] = []
    flags: list[str] = []
    for letter in sorted(SERVER_FLAGS):
        b, lo, s = letter in base_flags, letter in local_flags, letter in server_flags
        if letter not in PUSHABLE_FLAGS:
            if s:
                flags.append(letter)
            continue
        value, conflict = _pick(letter, b, lo, s, policy, local_newer)
        if conflict:
            conflicts.append(conflict)
        if value:
            flags.append(letter)
    labels: list[str] = []
    for label in sorted(set(base_labels) | set(local_labels) | set(server_labels)):
        b, lo, s = label in base_labels, label in local_labels, label in server_labels
        value, conflict = _pick(f"label:{label}", b, lo, s, policy, local_newer)
        if conflict:
            conflicts.append(conflict)
        if value:
            labels.append(label)
    return Merged("".join(flags), tuple(labels), tuple(conflicts))


@dataclass(frozen=True, slots=True)
class Change:
    """What to send for one mail: flag fields to set, labels to add and remove."""

    is_unread: bool | None
    is_flagged: bool | None
    add_labels: tuple[str, ...]
    remove_labels: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return (self.is_unread is None and self.is_flagged is None and not self.add_labels
                and not self.remove_labels)


def local_change(server_flags: str, server_labels: tuple[str, ...], wanted_flags: str,
                 wanted_labels: tuple[str, ...]) -> Change:
    """The API calls that turn the server's state into the wanted one."""
    is_unread = None
    if ("S" in wanted_flags) != ("S" in server_flags):
        is_unread = "S" not in wanted_flags
    is_flagged = None
    if ("F" in wanted_flags) != ("F" in server_flags):
        is_flagged = "F" in wanted_flags
    add = tuple(sorted(set(wanted_labels) - set(server_labels)))
    remove = tuple(sorted(set(server_labels) - set(wanted_labels)))
    return Change(is_unread, is_flagged, add, remove)
