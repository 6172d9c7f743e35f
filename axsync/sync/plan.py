"""The pure planner: (server changes, local scan, last known state) -> actions. No I/O.

Everything here is a function of its arguments: the engine gathers (API, DB, directory
listings), calls these, then hands the actions to the executor. That is what makes
``--dry-run`` exact and the decisions testable without a server.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from axsync.model import FolderEvent, Mail, MailFlags

INBOX_PATH = ("INBOX",)
ROLE_NAMES = {"inbox": "INBOX", "drafts": "Drafts", "sent": "Sent", "trash": "Trash",
              "junk": "Junk", "archive": "Archive"}

# ---------------------------------------------------------------------------- flags


def server_letters(flags: MailFlags) -> str:
    """Maildir flag letters for the server's flags (sorted ASCII): D F R S T."""
    out = []
    if flags.is_draft:
        out.append("D")
    if flags.is_flagged:
        out.append("F")
    if "re" in flags.refw_flags:
        out.append("R")
    if not flags.is_unread:
        out.append("S")
    if flags.is_deleted:
        out.append("T")
    return "".join(out)


def file_flags(letters: str, keyword_letters: Iterable[str], compressed: bool) -> str:
    """The full info part after ``:2,``: system letters, Z when compressed, keyword letters."""
    chars = set(letters) | set(keyword_letters)
    if compressed:
        chars.add("Z")
    return "".join(sorted(chars))


# ---------------------------------------------------------------------------- folders


@dataclass(frozen=True, slots=True)
class TreeFolder:
    """A server folder as the planner sees it (from a listing or folded delta events)."""

    id: str
    name: str
    parent_id: str
    role: str = ""
    id_validity: int | None = None
    content_token: str | None = None
    folder_type: str = "mails"


@dataclass(frozen=True, slots=True)
class KnownFolder:
    id: str
    path: tuple[str, ...]
    dirname: str
    id_validity: int | None
    content_token: str | None
    excluded: bool
    state: str


@dataclass(frozen=True, slots=True)
class FolderTarget:
    """Where a server folder must live locally after this run."""

    id: str
    name: str
    parent_id: str
    role: str
    path: tuple[str, ...]
    dirname: str
    excluded: bool
    id_validity: int | None
    content_token: str | None


@dataclass(frozen=True, slots=True)
class FolderAction:
    kind: str  # create | rename | gone
    folder_id: str
    dirname: str
    old_dirname: str | None = None
    path: tuple[str, ...] = ()


@dataclass(slots=True)
class FolderPlan:
    targets: dict[str, FolderTarget] = field(default_factory=dict)
    actions: list[FolderAction] = field(default_factory=list)
    validity_reset: set[str] = field(default_factory=set)  # folders whose cached content is void


def fold_folder_events(
    tree: Mapping[str, TreeFolder], events: Sequence[FolderEvent]
) -> tuple[dict[str, TreeFolder], set[str]]:
    """Apply folders/delta events in order to a known tree (per the FLD processing rules).

    Returns the new tree and the ids whose ``idValidity`` changed. ``resetContainer`` marks the
    container's folders; a later ``newFolder`` revives a marked folder; marks left at the end
    are dropped. ``removeContainer`` removes the container's folders at once.
    """
    out = dict(tree)
    validity_changed: set[str] = set()
    marked: set[str] = set()
    for ev in events:
        if ev.event_type in ("newFolder", "changedFolder"):
            old = out.get(ev.id)
            f = ev.folder
            name = f.name if f else (old.name if old else "")
            parent = f.parent_id if f else (old.parent_id if old else ev.container_id)
            role = f.role if f else (old.role if old else "")
            validity = ev.id_validity if ev.id_validity is not None else (old.id_validity if old else None)
            if old is not None and old.id_validity is not None and validity != old.id_validity:
                validity_changed.add(ev.id)
            token = ev.sync_token if ev.sync_token is not None else (old.content_token if old else None)
            if old is None and f is None:
                continue  # a change to a folder we never saw described: wait for a newFolder
            ftype = f.folder_type if f else (old.folder_type if old else "mails")
            out[ev.id] = TreeFolder(ev.id, name, parent, role, validity, token, ftype)
            marked.discard(ev.id)
        elif ev.event_type == "removedFolder":
            out.pop(ev.id, None)
            marked.discard(ev.id)
        elif ev.event_type == "resetContainer":
            for fid, folder in out.items():
                if folder.parent_id == ev.id or _in_container(out, fid, ev.id):
                    marked.add(fid)
        elif ev.event_type == "removeContainer":
            for fid in [fid for fid in out if _in_container(out, fid, ev.id)]:
                out.pop(fid, None)
            out.pop(ev.id, None)
    for fid in marked:
        out.pop(fid, None)
    return out, validity_changed


def _in_container(tree: Mapping[str, TreeFolder], fid: str, container: str) -> bool:
    seen = set()
    cur = tree.get(fid)
    while cur is not None and cur.id not in seen:
        if cur.parent_id == container:
            return True
        seen.add(cur.id)
        cur = tree.get(cur.parent_id)
    return False


def folder_paths(tree: Mapping[str, TreeFolder]) -> dict[str, tuple[str, ...]]:
    """Path of every folder whose parent chain ends at a folder outside ``tree`` (the
    container). The inbox is ``("INBOX",)`` whatever its localized name. Cycles are cut."""
    paths: dict[str, tuple[str, ...]] = {}

    def resolve(fid: str, depth: int = 0) -> tuple[str, ...]:
        if fid in paths:
            return paths[fid]
        folder = tree[fid]
        own = "INBOX" if folder.role == "inbox" else folder.name
        if depth > 64 or folder.parent_id not in tree or folder.parent_id == fid:
            path: tuple[str, ...] = (own,)
        else:
            path = (*resolve(folder.parent_id, depth + 1), own)
        paths[fid] = path
        return path

    for fid in tree:
        resolve(fid)
    return paths


def is_excluded(path: tuple[str, ...], role: str, patterns: Sequence[str]) -> bool:
    """A folder is excluded when a glob matches its path (``/``-joined) or its role name
    (``Junk``, ``Trash``...), or when an ancestor is excluded (checked by the caller)."""
    joined = "/".join(path)
    role_name = ROLE_NAMES.get(role)
    for pattern in patterns:
        if fnmatch.fnmatchcase(joined, pattern):
            return True
        if role_name and fnmatch.fnmatchcase(role_name, pattern):
            return True
    return False


def plan_folders(
    known: Sequence[KnownFolder],
    tree: Mapping[str, TreeFolder],
    excludes: Sequence[str],
    assign_dirname: Callable[[tuple[str, ...], Mapping[str, tuple[str, ...]]], str],
) -> FolderPlan:
    """Decide where every server folder lives and which directories to create or rename.

    A folder keeps its directory while its path is unchanged; a renamed/moved folder gets a
    rename (never a re-download). Folders gone from the server yield ``gone`` actions."""
    plan = FolderPlan()
    paths = folder_paths(tree)
    known_by_id = {k.id: k for k in known if k.state == "present"}
    taken: dict[str, tuple[str, ...]] = {}
    # Directories of folders that keep their path stay reserved first, so a new folder can
    # never take a name a kept folder uses.
    for fid, path in paths.items():
        k = known_by_id.get(fid)
        if k is not None and k.path == path:
            taken[k.dirname] = path
    excluded_ids: set[str] = set()
    for fid in sorted(paths, key=lambda i: (len(paths[i]), paths[i])):
        folder, path = tree[fid], paths[fid]
        parent_excluded = folder.parent_id in excluded_ids
        excluded = parent_excluded or is_excluded(path, folder.role, excludes)
        if excluded:
            excluded_ids.add(fid)
        k = known_by_id.get(fid)
        if k is not None and k.path == path:
            dirname = k.dirname
        else:
            dirname = assign_dirname(path, taken)
            taken[dirname] = path
        plan.targets[fid] = FolderTarget(
            fid, folder.name, folder.parent_id, folder.role, path, dirname, excluded,
            folder.id_validity, folder.content_token,
        )
        if excluded:
            continue
        if k is None:
            plan.actions.append(FolderAction("create", fid, dirname, None, path))
        elif k.dirname != dirname:
            plan.actions.append(FolderAction("rename", fid, dirname, k.dirname, path))
        if k is not None and k.id_validity is not None and folder.id_validity is not None \
                and k.id_validity != folder.id_validity:
            plan.validity_reset.add(fid)
    for fid, k in known_by_id.items():
        if fid not in tree:
            plan.actions.append(FolderAction("gone", fid, k.dirname, None, k.path))
    return plan


# ---------------------------------------------------------------------------- mails


@dataclass(frozen=True, slots=True)
class KnownMail:
    uid: int
    mail_id: str | None
    folder_id: str
    dirname: str
    size: int
    sha256: str
    message_id: str
    internal_date: int


@dataclass(frozen=True, slots=True)
class Relocate:
    """The server moved a mail (new id, maybe new folder, same content): rename locally."""

    uid: int
    mail: Mail


def match_moves(new: Sequence[Mail], removed: Sequence[KnownMail]) -> list[Relocate]:
    """Pair mails that appeared with mails that vanished in the same run, by Message-ID and
    size (one to one, closest internal date first). Mails without a Message-ID are left to
    the sha256 check after download."""
    pool: dict[tuple[str, int], list[KnownMail]] = defaultdict(list)
    for k in removed:
        if k.message_id:
            pool[(k.message_id, k.size)].append(k)
    out: list[Relocate] = []
    for mail in sorted(new, key=lambda m: (m.date, m.id)):
        if not mail.message_id:
            continue
        candidates = pool.get((mail.message_id, mail.size))
        if not candidates:
            continue
        best = min(candidates, key=lambda k: (abs(k.internal_date - mail.date), k.uid))
        candidates.remove(best)
        out.append(Relocate(best.uid, mail))
    return out


@dataclass(frozen=True, slots=True)
class DeletionCheck:
    allowed: bool
    deletions: int
    limit: int


def check_deletions(deletions: int, total: int, limit: int, force: bool) -> DeletionCheck:
    """The deletion guard: more than ``limit`` deletions stop the run unless forced."""
    return DeletionCheck(force or deletions <= limit, deletions, limit)


@dataclass(slots=True)
class FolderCounts:
    downloads: int = 0
    bytes: int = 0
    relocations: int = 0
    updates: int = 0
    removals: int = 0
    renames: int = 0

    def empty(self) -> bool:
        return not (self.downloads or self.relocations or self.updates or self.removals or self.renames)


@dataclass(slots=True)
class PullPlan:
    """The whole pull, summarised per folder directory (what ``--dry-run`` prints)."""

    folders: FolderPlan
    per_folder: dict[str, FolderCounts] = field(default_factory=dict)
    relocations: list[Relocate] = field(default_factory=list)
    removals_mode: str = "keep"  # keep (backup) | delete (mirror, sync)

    def counts(self, dirname: str) -> FolderCounts:
        return self.per_folder.setdefault(dirname, FolderCounts())

    def totals(self) -> FolderCounts:
        t = FolderCounts()
        for c in self.per_folder.values():
            t.downloads += c.downloads
            t.bytes += c.bytes
            t.relocations += c.relocations
            t.updates += c.updates
            t.removals += c.removals
            t.renames += c.renames
        return t
