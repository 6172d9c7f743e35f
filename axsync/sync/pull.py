"""Pull: server -> archive. Gather (API) -> stage (TEMP tables) -> plan (pure) -> execute.

Order of execution inside one run, chosen so that a kill at any point loses nothing and
the next run converges without duplicates:

1. folder rows are recorded, then their directories created/renamed (a server rename is a
   directory rename; one an interrupted run already did on disk counts as done); folders
   gone from the server are marked deleted first, so a new folder can take their name;
2. relocations (server moves: new id, same content) rename files, no download (a file an
   interrupted run moved without recording it is found in the folder it was moved to);
3. flag/label updates rename files;
4. downloads: one event loop (or worker threads) streams each source into ``tmp/`` and
   seals it there; the group commit (:class:`GroupCommit`) makes groups of them durable,
   renames them into ``cur/`` and makes the names durable; the main thread (the only DB
   writer) then records the rows. A file whose row was not
   recorded (killed in between) carries a deterministic unique name and is adopted by the
   next run (with the mail's current flags) instead of being downloaded twice; after a run
   that did not end cleanly, such files nobody adopted (their mail moved or went since)
   are quarantined;
5. removals (mirror/sync: delete the file; backup: keep it, mark the row deleted), the
   mails of folders gone from the server included (also when an interrupted run already
   marked the folder deleted);
6. tokens are saved last, per folder, only when every item of that folder succeeded.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import queue
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from axsync.api import ApiClient
from axsync.errors import (
    AxsyncError,
    DeletionGuardError,
    EndpointMissing,
    IntegrityError,
    NotFound,
    StoreError,
    TokenRejected,
)
from axsync.model import Download, Mail, MailFlags
from axsync.statedb import FolderRow, MessageRow, StateDB
from axsync.store import Store
from axsync.store.commit import GroupCommit
from axsync.store.keywords import atom_to_label, keywords_of, label_to_atom
from axsync.store.maildir import StoredFile
from axsync.store.names import assign_dirname, is_canonical_dirname, safe_host
from axsync.store.writer import SealedFile
from axsync.sync import plan as P
from axsync.sync.fetch import End, LoopRunner, fan_in, in_threads
from axsync.sync.local import SYSTEM, label_ids_for
from axsync.sync.merge import merge
from axsync.sync.report import Progress, RunReport
from axsync.sync.staging import Staging

if TYPE_CHECKING:
    from axsync.api.aio import AsyncSource

log = logging.getLogger("axsync.pull")

CAPABILITY_TTL = 24 * 3600
# refwFlags of updated mails: one GET each (all in flight at once), or one listing of the
# folder when that is fewer requests by far. A listing page (up to 500 mails, fetched one
# after another) costs about as much as REFW_PAGE_COST lookups; folders with at most
# REFW_LOOKUPS updated mails are never listed.
REFW_LOOKUPS = 30
REFW_PAGE_COST = 30
LISTING_PAGE = 500
# Downloaded files (durable already) are recorded in one transaction per RECORD_ROWS
# rows or RECORD_EVERY_S seconds. Each transaction rewrites every page it touches of the
# messages table's indexes on random keys (mail id, base, Message-ID, sha256...): 1000
# rows / 2 s wrote 2.74 GB for a 100k pull with the index, 5000 rows / 6 s 2.39 GB, with
# 10 % less CPU (20000 / 15 s: no better). At those rates 5000 rows come before 5 s. A
# kill loses the rows of one transaction at most; the next run adopts their files
# (verified, not downloaded again).
RECORD_ROWS = 5000
RECORD_EVERY_S = 5.0
#: How often the observer (the search index) is told that downloads go on.
TICK_S = 0.2


@dataclass
class PullOptions:
    mode: str = "sync"  # backup | mirror | sync
    dry_run: bool = False
    force: bool = False
    concurrency: int = 8
    excludes: tuple[str, ...] = ()
    max_delete: Callable[[int], int] = lambda total: total
    conflict: str = "server"  # sync mode: who wins a real conflict
    stop_after: int | None = None  # tests: raise after this many executed actions


class Interrupted(AxsyncError):
    """Raised by the ``stop_after`` test hook to simulate a crash between actions."""


def unique_for(mail: Mail, host: str, salt: str = "") -> str:
    """A deterministic Maildir unique part for a mail's first download, so a file written
    just before a kill is recognised (and adopted) by the next run. ``salt`` (the base of
    the file a replaced mail's new content supersedes) keeps a same-size replacement from
    reusing the old file's name."""
    key = f"{mail.id}\0{mail.folder_id}\0{mail.size}\0{mail.date}" + (f"\0{salt}" if salt else "")
    h = hashlib.sha1(key.encode()).hexdigest()
    return f"{max(mail.date, 0)}.R{h[:20]}.{host}"


def _host() -> str:
    return safe_host()


class _Sink:
    """A file-like target for ``download_source`` over a store writer: ``seek(0)`` +
    ``truncate()`` (what the client does before a retry) start a fresh writer."""

    def __init__(self, store: Store, dirname: str, unique: str, size_hint: int | None = None,
                 keep: int = 0) -> None:
        self.store, self.dirname, self.unique, self.size_hint = store, dirname, unique, size_hint
        self._cm = store.writer(dirname, unique=unique, size_hint=size_hint)
        self.writer = self._cm.__enter__()
        # The bytes written, while they are at most ``keep`` (for the search index:
        # DownloadObserver.keep); None once they are more.
        self._keep = keep
        self._kept: list[bytes] | None = [] if keep > 0 else None

    def write(self, data: bytes) -> int:
        self.writer.write(data)
        if self._kept is not None:
            if self.writer.size <= self._keep:
                self._kept.append(data)
            else:
                self._kept = None
        return len(data)

    def kept(self) -> bytes | None:
        """Every byte written, if they were kept (see ``keep``)."""
        return b"".join(self._kept) if self._kept is not None else None

    def seek(self, pos: int, whence: int = 0) -> int:
        if pos != 0 or whence != 0:
            raise OSError("sink only rewinds to the start")
        return 0

    def truncate(self, size: int | None = None) -> int:
        self.abort()
        self._cm = self.store.writer(self.dirname, unique=self.unique, size_hint=self.size_hint)
        self.writer = self._cm.__enter__()
        self._kept = [] if self._keep > 0 else None
        return 0

    def tell(self) -> int:
        return int(self.writer.size)

    def seekable(self) -> bool:
        return True

    def flush(self) -> None:
        return None

    def abort(self) -> None:
        self._cm.__exit__(StoreError, StoreError("aborted"), None)

    def seal(self, mail: Mail, letters: str, received: Download) -> SealedFile:
        """Finish the file in ``tmp/`` for the group commit (:class:`GroupCommit`: content
        made durable, renamed into ``cur/``, the name made durable, then handed to the DB
        thread) and check it holds the bytes received."""
        try:
            sealed = self.writer.seal(letters, mail.date)
        except BaseException:
            self.abort()
            raise
        stored = sealed.stored
        if stored.sha256 != received.sha256 or stored.size != received.size:
            sealed.discard()
            raise IntegrityError(f"mail {mail.id}: bytes written differ from bytes received")
        return sealed


class DownloadObserver(Protocol):
    def downloads_started(self, count: int) -> None: ...

    def recorded(self) -> None: ...

    def tick(self) -> None: ...  # every TICK_S while downloads are in flight

    # The bytes of downloaded messages of at most keep_limit() bytes (0: none) are given to
    # keep() once their file is sealed, from the thread that downloaded them.
    def keep_limit(self) -> int: ...

    def keep(self, dirname: str, filename: str, sha256: str, data: bytes) -> None: ...


@dataclass
class _FolderState:
    target: P.FolderTarget
    row: FolderRow | None
    new_content_token: str | None = None
    new_delta_token: str | None = None
    new_conv_token: str | None = None
    failed: bool = False
    needs_sync: bool = False
    reconciled: bool = False


@dataclass
class _Start:
    """How one folder's changes are gathered: a delta from ``token`` (None: a full delta),
    or a listing; ``listed`` once a listing replaced the delta."""
    delta: bool
    token: str | None = None
    listed: bool = False


#: One finished download as the DB thread receives it: the mail, its kind ("new",
#: "replaced"), its folder, the stored file or None, the error or None.
_Done = tuple[Mail, str, str, StoredFile | None, BaseException | None]

_NO_DELTA = "no delta endpoint"  # fan_in events of _gather_folders besides pages/listings
_TOKEN_REJECTED = "delta token rejected"


@dataclass
class Puller:
    api: ApiClient
    store: Store
    db: StateDB
    options: PullOptions
    report: RunReport
    progress: Progress
    host: str = field(default_factory=_host)
    _actions: int = 0
    _labels: dict[str, tuple[str, str]] = field(default_factory=dict)
    _keywords: dict[str, dict[str, str]] = field(default_factory=dict)
    _unlettered: dict[str, set[str]] = field(default_factory=dict)  # past 26, this run
    _local: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    _relocated_new: set[str] = field(default_factory=set)
    _relocated_uids: set[int] = field(default_factory=set)
    _everywhere: dict[str, str] | None = None  # base -> dirname, for _find_elsewhere
    _renamed: dict[str, str] = field(default_factory=dict)  # label id -> old atom
    _uniques: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    _downgraded: set[str] = field(default_factory=set)
    _downloads: _Downloads | None = None  # a streamed pull's, from the gathering on
    _kept: set[str] = field(default_factory=set)  # stale removals: see _still_there
    #: Told how many downloads start, and after every batch of rows recorded (outside any
    #: transaction): the engine's search index parses them meanwhile in other processes.
    observer: DownloadObserver | None = None
    #: base -> a file name it may have now (the push's scan saw it), tried like the name on
    #: record before a folder is listed.
    name_hints: dict[str, str] = field(default_factory=dict)

    # ================================================================ entry point

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            if self._downloads is not None:  # a streamed pull's downloads: stop them
                downloads, self._downloads = self._downloads, None
                downloads.abort(exc)
            raise

    def _run(self) -> None:
        now = int(time.time())
        mail_delta, folder_delta = self._capabilities(now)
        self.progress.phase("folders")
        tree, folders_token, delta_token = self._gather_tree(folder_delta)
        # A folder keeps its recorded dirname while its path is unchanged, unless the name
        # encoding no longer produces that dirname (an earlier version's ".a\2fb" for a "/"
        # in a name, which Dovecot cannot open): no path matches (), so it is planned like
        # a server rename: one directory rename, no download.
        known = [
            P.KnownFolder(r.id, r.path if r.id not in tree or is_canonical_dirname(r.dirname) else (),
                          r.dirname, r.id_validity, r.content_token, r.excluded, r.state)
            for r in self.db.folders()
        ]
        fplan = P.plan_folders(known, tree, self.options.excludes, assign_dirname)
        rows = {r.id: r for r in self.db.folders()}
        states = {fid: _FolderState(t, rows.get(fid)) for fid, t in fplan.targets.items()}
        labels_token = self._gather_labels()
        self._decide_content_sync(states, fplan, folder_delta)
        staging = Staging(self.db)
        stream = self._can_stream(mail_delta)
        if stream:
            # Nothing archived yet: each folder's mails are downloaded as soon as it is
            # gathered, while the others still are (an initial pull spent the gathering of
            # a 100k mailbox, 5 s, with one CPU idle). The folders must exist for that.
            self._execute_folders(fplan, states, now)
            self._execute_label_renames()
            self._downloads = _Downloads(self, staging, states)
        self.progress.phase("changes")
        self._gather_folders([st for st in states.values() if st.needs_sync], staging,
                             mail_delta, fplan.validity_reset)
        with self.db.transaction():  # folders deleted for good on the server, with their mails
            staging.add_orphans(a.folder_id for a in fplan.actions if a.kind == "gone")
        if self._downloads is not None:
            # Recorded before planning: a mail fed, then staged again by another folder
            # (moved meanwhile, same id), is planned as a move of its file.
            self._downloads.drain()
        self._gather_conversations(states, mail_delta)
        pplan = self._plan(fplan, states, staging)
        if self.options.dry_run:
            self._describe(pplan, states)
            return
        self._guard(pplan)
        if not stream:
            self._execute_folders(fplan, states, now)
        self._execute_relocations(pplan, states)
        self._execute_updates(staging, states)
        if not stream:
            self._execute_label_renames()
        self._execute_downloads(staging, states, pplan)
        self._sweep_orphans()  # before removals: a gone folder's directory must be empty
        self._execute_removals(staging, states, pplan)
        self._save_tokens(states, folders_token, delta_token, labels_token, now)

    # ================================================================ gather

    def _can_stream(self, mail_delta: bool) -> bool:
        """Whether this pull may download each folder's mails as soon as it is gathered:
        an initial pull (no message archived, so no mail of it can be a move, an update
        or a removal of one) from a server with mail deltas (which carry each mail's
        conversation: 10.4's conversation lists are read after the gathering)."""
        return mail_delta and not self.options.dry_run and not self.db.any_message()

    def _capabilities(self, now: int) -> tuple[bool, bool]:
        acc = self.db.account() or {}
        fresh = acc.get("capabilities_at") and now - int(acc["capabilities_at"]) < CAPABILITY_TTL
        if fresh and acc.get("mail_delta") is not None:
            return bool(acc["mail_delta"]), bool(acc["folder_delta"])
        info = self.api.server_info()
        if not self.options.dry_run:
            with self.db.transaction():
                self.db.update_account(
                    api_version=info.api_version, server_version=info.server_version,
                    mail_delta=int(info.has_mail_delta), folder_delta=int(info.has_folder_delta),
                    capabilities_at=now,
                )
        return info.has_mail_delta, info.has_folder_delta

    def _downgrade(self, what: str) -> None:
        if what in self._downgraded:
            return
        self._downgraded.add(what)
        self.report.notes.append(f"server has no {what} endpoint; using listings")
        if not self.options.dry_run:
            with self.db.transaction():
                self.db.update_account(**{what: 0})

    def _gather_tree(self, folder_delta: bool) -> tuple[dict[str, P.TreeFolder], str | None, str | None]:
        """The server's folder tree now, plus the tokens to save at the end."""
        acc = self.db.account() or {}
        known = {
            r.id: P.TreeFolder(r.id, r.name, r.parent_id or "", r.role, r.id_validity, r.content_token)
            for r in self.db.folders() if r.state == "present"
        }
        if folder_delta:
            token = acc.get("folders_delta_token") or ""
            try:
                delta = self.api.folders_delta(token)
            except EndpointMissing:
                self._downgrade("folder_delta")
            except TokenRejected:
                log.info("folder delta token rejected; starting a fresh folder delta")
                delta = self.api.folders_delta("")
                tree, _ = P.fold_folder_events({}, delta.events)
                return self._mail_folders_only(tree), None, delta.sync_token
            else:
                base = known if token else {}
                tree, _ = P.fold_folder_events(base, delta.events)
                return self._mail_folders_only(tree), None, delta.sync_token
        token = self.api.folders_token()
        if token == acc.get("folders_token") and known:
            # Tree unchanged; content tokens are checked per folder below.
            return {k: P.TreeFolder(v.id, v.name, v.parent_id, v.role, v.id_validity, None)
                    for k, v in known.items()}, token, None
        listing = self.api.list_folders()
        tree = {f.id: P.TreeFolder(f.id, f.name, f.parent_id, f.role, None, None)
                for f in listing.items if f.folder_type in ("mails", "")}
        return tree, listing.sync_token, None

    @staticmethod
    def _mail_folders_only(tree: dict[str, P.TreeFolder]) -> dict[str, P.TreeFolder]:
        """Calendars, contacts, tasks and notes folders are not mail: never synced."""
        return {k: v for k, v in tree.items() if v.folder_type in ("mails", "")}

    def _gather_labels(self) -> str | None:
        acc = self.db.account() or {}
        self._labels = self.db.labels()
        token = self.api.labels_token()
        if token == acc.get("labels_token") and (self._labels or token):
            return None
        listing = self.api.list_labels()
        old = self._labels
        self._labels = {lb.id: (lb.name, label_to_atom(lb.name)) for lb in listing.items}
        # A label renamed on the server: the files carrying its old keyword get the new one
        # (_execute_label_renames); the DB keeps the old name until they have it, so a run
        # killed in between renames the rest next time.
        self._renamed = {lid: old[lid][1] for lid, (_n, atom) in self._labels.items()
                         if lid in old and old[lid][1] != atom}
        if not self.options.dry_run:
            with self.db.transaction():
                self.db.replace_labels((i, *(old[i] if i in self._renamed else v)) for i, v in self._labels.items())
        return listing.sync_token

    def _execute_label_renames(self) -> None:
        """Swap the old keyword for the new one in every file whose mail has a label that
        was renamed on the server (only where the file still has the old keyword: one a
        mail client removed stays removed, for the push to send)."""
        if not self._renamed:
            return
        old_names = {lid: atom_to_label(a).casefold() for lid, a in self._renamed.items()}
        marks = ",".join("?" for _ in self._renamed)
        rows = list(self.db.messages_where(
            f"state != 'tombstoned' AND EXISTS (SELECT 1 FROM json_each(label_ids) WHERE value IN ({marks}))",
            tuple(self._renamed)))
        with self.db.transaction():
            for row in rows:
                where, current = row.dirname, self._local_name(row.dirname, row.base, row.filename)
                if current is None and self.options.mode == "sync":
                    where, current = self._find_elsewhere(row.base) or (where, None)
                if current is None:
                    continue
                info = current.rsplit(":2,", 1)[1] if ":2," in current else ""
                mapping = self.store.keywords(where)
                names = {ch: atom_to_label(mapping.get(ord(ch) - 97, "")).casefold()
                         for ch in info if ch in "abcdefghijklmnopqrstuvwxyz"}
                present = tuple(lid for lid in row.label_ids
                                if lid in old_names and old_names[lid] in names.values())
                if not present:
                    continue
                drop = {ch for ch, n in names.items() if n in {old_names[lid] for lid in present}}
                letters = "".join(ch for ch in info if ch not in drop) + self._keyword_letters(where, present)
                name = self.store.set_flags(where, current, letters)
                self._note_local(where, row.base, name)
                if current == row.filename:
                    self.db.update_message(row.uid, filename=name, history=False)
            for lid in self._renamed:
                name, atom = self._labels[lid]
                self.db.execute("UPDATE labels SET name = ?, atom = ? WHERE id = ?", (name, atom, lid))
        self._renamed = {}

    def _decide_content_sync(self, states: dict[str, _FolderState], fplan: P.FolderPlan,
                             folder_delta: bool) -> None:
        by_delta = bool(folder_delta and (self.db.account() or {}).get("folders_delta_token"))
        ask: list[str] = []
        for fid, st in states.items():
            if st.target.excluded:
                continue
            row = st.row
            if fid in fplan.validity_reset or row is None or row.state != "present":
                st.needs_sync = True
            elif by_delta:
                st.new_content_token = st.target.content_token
                st.needs_sync = st.new_content_token is None or st.new_content_token != row.content_token
            else:
                ask.append(fid)
        if not ask:
            return
        # One token request per folder (no folder delta): all in flight at once.
        with ThreadPoolExecutor(max(1, min(self.options.concurrency, len(ask))),
                                thread_name_prefix="axsync-gather") as pool:
            tokens = list(pool.map(self.api.mails_token, ask))
        for fid, token in zip(ask, tokens, strict=True):
            st, row = states[fid], states[fid].row
            assert row is not None
            st.new_content_token = token
            st.needs_sync = token is None or token != row.content_token

    def _gather_folders(self, todo: list[_FolderState], staging: Staging, mail_delta: bool,
                        validity_reset: set[str]) -> None:
        """Every folder's changes since its tokens: a delta (10.6) or a whole listing. The
        requests of many folders are in flight at once (:func:`fan_in`, one thread per
        folder, its pages in order); this thread applies each page to the staging tables
        as it arrives (it is the only DB writer)."""
        starts: dict[str, _Start] = {}
        for st in todo:
            fid, row = st.target.id, st.row
            start = _Start(delta=mail_delta and fid not in validity_reset)
            if start.delta:
                start.token = row.delta_token if row and row.state == "present" and fid != "" else None
                if row is not None and row.delta_token is None and row.content_token is not None:
                    start.delta = False  # known folder without a delta token: listing diff
            starts[fid] = start

        def produce(st: _FolderState, put: Callable[[Any], None]) -> None:
            fid, start = st.target.id, starts[st.target.id]
            if start.delta:
                try:
                    for page in self.api.iter_mails_delta(fid, start.token):
                        put(page)
                    return
                except EndpointMissing:
                    put(_NO_DELTA)
                except TokenRejected:
                    put(_TOKEN_REJECTED)
            put(self.api.list_all_mails(fid))

        downloads = self._downloads
        idle = downloads.pump if downloads is not None else None
        refw_folders: list[str] = []
        for st, event in fan_in(todo, produce, workers=self.options.concurrency, idle=idle):
            fid, start = st.target.id, starts[st.target.id]
            if isinstance(event, End):
                if event.error is not None:
                    raise event.error
                if start.delta and not start.listed:
                    if start.token is None and st.row is not None:
                        # A first full delta of a folder we already hold: drop what it lacks.
                        with self.db.transaction():
                            self._stage_unlisted(staging, fid)
                    refw_folders.append(fid)
                    if st.new_content_token is None:
                        st.new_content_token = st.target.content_token
                if downloads is not None:  # its mails are all staged
                    downloads.feed_folder(fid)
            elif event is _NO_DELTA:
                self._downgrade("mail_delta")
            elif event is _TOKEN_REJECTED:
                log.warning("mails delta token for folder %s rejected; reconciling by listing", fid)
                self.report.notes.append(f"folder {'/'.join(st.target.path)}: token expired, reconciled")
                st.reconciled = True
            elif isinstance(event, tuple):  # a whole listing
                token_before, mails = event
                start.listed = True
                with self.db.transaction():
                    staging.add_listing(fid, mails)
                st.new_content_token = st.new_content_token or token_before
                if start.delta or st.reconciled:
                    # Start a fresh delta chain from "now": take the listing token if the
                    # server accepts it, else the next run starts from a full delta.
                    st.new_delta_token = token_before
            else:  # one page of a delta
                with self.db.transaction():
                    staging.add_new_many(event.new)
                    staging.add_new_many(event.replaced, "replaced")
                    for u in event.updated:
                        staging.add_update(u)
                    for mid in event.removed:
                        staging.add_removed(mid, fid)
                st.new_delta_token = event.sync_token
            if downloads is not None:
                downloads.pump()
        self._resolve_refw(refw_folders)

    def _resolve_refw(self, folder_ids: list[str]) -> None:
        """Delta ``updatedItems`` carry no ``refwFlags``, so a reply or forward mark set on
        the server would never reach the archive. For updated mails, ask the server: one
        ``GET /mails/{id}`` each, or one listing of a folder where most of it changed
        (see REFW_PAGE_COST); all of these requests in flight at once (up to
        ``concurrency``)."""
        lookups: list[str] = []
        listings: list[tuple[str, set[str]]] = []
        for folder_id in folder_ids:
            ids = [mid for (mid,) in self.db.execute(
                "SELECT u.mail_id FROM st_upd u CROSS JOIN messages m ON m.mail_id = u.mail_id "
                "WHERE u.folder_id = ? AND u.refw IS NULL AND m.state = 'present'", (folder_id,)
            ).fetchall()]
            if len(ids) <= REFW_LOOKUPS:  # few: not worth counting the folder
                lookups.extend(ids)
                continue
            pages = -(-self.db.count_messages("folder_id = ? AND state = 'present'", (folder_id,))
                      // LISTING_PAGE)
            if len(ids) <= REFW_PAGE_COST * pages:
                lookups.extend(ids)
            else:
                listings.append((folder_id, set(ids)))
        if not lookups and not listings:
            return

        def lookup(mid: str) -> dict[str, str]:
            try:
                return {mid: self.api.get_mail(mid).flags.refw_flags}
            except AxsyncError as exc:  # gone meanwhile, or a transient failure
                log.info("refwFlags of mail %s not known: %s", mid, exc)
                return {}

        def listing(job: tuple[str, set[str]]) -> dict[str, str]:
            folder_id, wanted = job
            _token, mails = self.api.list_all_mails(folder_id, LISTING_PAGE)
            return {m.id: m.flags.refw_flags for m in mails if m.id in wanted}

        found: dict[str, str] = {}
        jobs = len(lookups) + len(listings)
        with ThreadPoolExecutor(max(1, min(self.options.concurrency, jobs)),
                                thread_name_prefix="axsync-gather") as pool:
            for part in [*pool.map(lookup, lookups), *pool.map(listing, listings)]:
                found.update(part)
        with self.db.transaction():
            for mid, refw in found.items():
                self.db.execute("UPDATE st_upd SET refw = ? WHERE mail_id = ?", (refw, mid))

    def _stage_unlisted(self, staging: Staging, folder_id: str) -> None:
        cur = self.db.execute(
            "SELECT mail_id FROM messages WHERE folder_id=? AND state='present' AND mail_id IS NOT NULL "
            "AND mail_id NOT IN (SELECT mail_id FROM st_new) AND mail_id NOT IN (SELECT mail_id FROM st_upd)",
            (folder_id,),
        )
        for (mid,) in cur.fetchall():
            staging.add_removed(mid, folder_id)

    def _gather_conversations(self, states: dict[str, _FolderState], mail_delta: bool) -> None:
        """10.4: map mails to conversations from the per-folder conversation lists (token-gated).
        10.6 deltas carry ``conversationId`` already. Then forget the stored token of every
        conversation a staged change touches (see the end)."""
        changed = [st for st in states.values() if st.needs_sync and not st.target.excluded
                   and st.target.role not in ("junk", "trash")]
        if changed and not mail_delta and self._conversations_available():
            for st in changed:
                token = self.api.conversations_token(st.target.id)
                if st.row is not None and token == st.row.conv_token:
                    continue
                for conv in self.api.iter_conversations(st.target.id):
                    for member in conv.members:
                        self.db.execute(
                            "UPDATE st_new SET conversation_id=? WHERE mail_id=?", (conv.id, member.mail_id))
                        self.db.execute(
                            "UPDATE st_upd SET conversation_id=? WHERE mail_id=?", (conv.id, member.mail_id))
                        self.db.execute(
                            "INSERT OR IGNORE INTO st_upd (mail_id, folder_id, unread, flagged, draft, deleted, "
                            "refw, label_ids, conversation_id) SELECT mail_id, folder_id, "
                            "CASE WHEN instr(flags,'S') THEN 0 ELSE 1 END, instr(flags,'F')>0, instr(flags,'D')>0, "
                            "instr(flags,'T')>0, refw, label_ids, ? FROM messages WHERE mail_id=? AND state='present' "
                            "AND coalesce(conversation_id,'') != ?",
                            (conv.id, member.mail_id, conv.id))
                    if not self.options.dry_run:
                        # No listing carries a per-conversation token (ConversationInstance has
                        # none): the stored one is kept here and cleared below if need be.
                        self.db.upsert_conversation(conv.id, None, conv.subject, conv.mail_count)
                st.new_conv_token = token
        if self.options.dry_run or self.db.execute(
                "SELECT 1 FROM conversations WHERE sync_token IS NOT NULL LIMIT 1").fetchone() is None:
            return
        # A stored conversation token vouches that the server's member list is the state DB's
        # (the push relies on it to send conversation batches). Any member this pull sees change
        # (new, replaced, moved, removed, flags, labels, another conversation) voids it, before
        # anything is executed, so a crash later cannot leave it vouching for a changed one.
        # Updates are compared with the row: the echo of our own push (already in the row) is
        # not a change.
        differs = (
            "m.uid IS NULL OR m.folder_id != u.folder_id "
            "OR coalesce(m.conversation_id, '') != coalesce(u.conversation_id, m.conversation_id, '') "
            "OR (instr(m.flags, 'S') = 0) != (u.unread != 0) OR (instr(m.flags, 'F') > 0) != (u.flagged != 0) "
            "OR (instr(m.flags, 'D') > 0) != (u.draft != 0) OR (instr(m.flags, 'T') > 0) != (u.deleted != 0) "
            "OR m.label_ids != coalesce(u.label_ids, m.label_ids)"
        )
        with self.db.transaction():
            self.db.execute(
                "UPDATE conversations SET sync_token = NULL WHERE sync_token IS NOT NULL AND id IN ("
                "SELECT conversation_id FROM st_new "
                "UNION SELECT m.conversation_id FROM st_rm r CROSS JOIN messages m ON m.mail_id = r.mail_id "
                "UNION SELECT m.conversation_id FROM st_upd u LEFT JOIN messages m "
                f"ON m.mail_id = u.mail_id AND m.state = 'present' WHERE {differs} "
                "UNION SELECT u.conversation_id FROM st_upd u LEFT JOIN messages m "
                f"ON m.mail_id = u.mail_id AND m.state = 'present' WHERE {differs})"
            )

    def _conversations_available(self) -> bool:
        acc = self.db.account() or {}
        container = acc.get("folder_container_id")
        try:
            if not container:
                container = self.api.account_info().folder_container_id
                if not self.options.dry_run:
                    with self.db.transaction():
                        self.db.update_account(folder_container_id=container)
            states = self.api.index_info(container, ("conversation",))
        except AxsyncError as exc:
            self.report.notes.append(f"conversation index not checked ({exc}); conversations skipped")
            return False
        state = next((s.state for s in states if s.id == "conversation"), "unavailable")
        if state in ("unavailable", "uninitialized"):
            self.report.notes.append(f"conversation index is {state} on the server; conversations skipped")
            return False
        return True

    # ================================================================ plan

    def _plan(self, fplan: P.FolderPlan, states: dict[str, _FolderState], staging: Staging) -> P.PullPlan:
        mode = "keep" if self.options.mode == "backup" else "delete"
        pplan = P.PullPlan(fplan, removals_mode=mode)
        dir_of = {fid: st.target.dirname for fid, st in states.items()}
        # Moves with the same id (server kept the id): st_new rows already known in the DB.
        # (Here and below, CROSS JOIN keeps the small staging table as the outer loop: the
        # planner, without statistics on temp tables, read every message row instead.)
        cur = self.db.execute(
            "SELECT s.mail_id, m.uid FROM st_new s CROSS JOIN messages m ON m.mail_id = s.mail_id "
            "WHERE m.state = 'present' AND s.kind = 'new' AND s.fed = 0"  # replaced: download it
        )
        same_id = dict(cur.fetchall())
        # Moves with a new id: Message-ID + server size against rows vanishing in this run.
        removed_rows = [
            P.KnownMail(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])
            for r in self.db.execute(
                "SELECT m.uid, m.mail_id, m.folder_id, m.dirname, coalesce(m.server_size, m.size), "
                "m.sha256, m.message_id, m.internal_date FROM st_rm r CROSS JOIN messages m ON r.mail_id = m.mail_id "
                "WHERE m.state = 'present' AND m.message_id != '' AND EXISTS (SELECT 1 FROM st_new s "
                "WHERE s.message_id = m.message_id AND s.size = coalesce(m.server_size, m.size) "
                "AND s.fed = 0)"
            ).fetchall()
        ]
        candidates = []
        if removed_rows:
            keys = {(k.message_id, k.size) for k in removed_rows}
            for mail, _kind in staging.new_mails():
                if (mail.message_id, mail.size) in keys and mail.id not in same_id:
                    candidates.append(mail)
        pplan.relocations = P.match_moves(candidates, removed_rows)
        for mid, uid in same_id.items():
            mail = next(m for m, _ in staging.new_mails("mail_id = ?", (mid,)))
            pplan.relocations.append(P.Relocate(uid, mail))
        relocated_new = {r.mail.id for r in pplan.relocations}
        relocated_uids = {r.uid for r in pplan.relocations}
        self._relocated_new, self._relocated_uids = relocated_new, relocated_uids
        for r in pplan.relocations:
            pplan.counts(dir_of.get(r.mail.folder_id, "?")).relocations += 1
        for folder_id, count, size in staging.new_counts():  # all, then less the relocated
            c = pplan.counts(dir_of.get(folder_id, "?"))
            c.downloads += count
            c.bytes += size
        for mail in {r.mail.id: r.mail for r in pplan.relocations}.values():  # staged rows
            c = pplan.counts(dir_of.get(mail.folder_id, "?"))
            c.downloads -= 1
            c.bytes -= mail.size
        for mid, fid, flags, labels, _conv, refw in staging.updates():
            # A listing (10.4, reconciliation) stages every known mail: count real changes only.
            row = self.db.message_by_mail_id(mid)
            if row is None or row.state != "present":
                continue
            refw = row.refw if refw is None else refw
            letters = P.server_letters(MailFlags(flags.is_unread, flags.is_flagged, flags.is_draft,
                                                 flags.is_deleted, refw))
            if letters == row.flags and sorted(labels) == sorted(row.label_ids) and refw == row.refw \
                    and dir_of.get(fid, row.dirname) == row.dirname:
                continue
            pplan.counts(dir_of.get(fid, "?")).updates += 1
        elsewhere: dict[tuple[str, str], str] = {}  # (mail id, folder id) -> dirname
        for mid, fid in staging.removed():
            row = self.db.message_by_mail_id(mid)
            if row is None or row.uid in relocated_uids:
                continue
            if row.folder_id != fid and row.state == "present":
                elsewhere[(mid, fid)] = row.dirname
                continue
            pplan.counts(row.dirname).removals += 1
        self._kept = self._still_there(list(elsewhere), states)
        for (mid, _fid), dirname in elsewhere.items():
            if mid not in self._kept:
                pplan.counts(dirname).removals += 1
        for a in fplan.actions:
            if a.kind == "rename":
                pplan.counts(a.dirname).renames += 1
        return pplan

    def _still_there(self, removals: list[tuple[str, str]], states: dict[str, _FolderState]) -> set[str]:
        """Of mails a folder reports removed while the archive has them in another folder
        (and no move matched them), those the server still has: their removal is stale.

        A mail moved, keeping its id, from folder A to folder B while a pull gathers them,
        B after A: A's token predates the move, B's listing has the mail. The next run,
        A reports it removed, and B reports nothing. Deleting it would lose it from the
        archive for good. A removal after a local move the push sent is real: the server
        no longer has that id. One ``GET /mails/{id}`` each, in flight at once; when the
        server cannot say, the mail is kept and the folder gathered again next run."""
        if not removals:
            return set()

        def lookup(job: tuple[str, str]) -> AxsyncError | bool:
            try:
                self.api.get_mail(job[0])
                return True
            except NotFound:
                return False
            except AxsyncError as exc:
                return exc

        kept: set[str] = set()
        answers = in_threads(lookup, removals, "axsync-gather", workers=self.options.concurrency)
        for (mid, fid), there in zip(removals, answers, strict=True):
            if there is False:
                continue
            kept.add(mid)
            if there is True:
                log.info("mail %s reported removed from folder %s, which it had left: kept", mid, fid)
                continue
            self.report.fail(f"mail {mid}", f"reported removed, not checked: {there}")
            st = states.get(fid)
            if st is not None:
                st.failed = True  # its token stays: the removal comes again next run
        return kept

    def _guard(self, pplan: P.PullPlan) -> None:
        if pplan.removals_mode != "delete":
            return
        deletions = pplan.totals().removals
        if not deletions:  # nothing to guard: no need to count the archive
            return
        total = self.db.count_messages("state = 'present'")
        check = P.check_deletions(deletions, total, self.options.max_delete(total), self.options.force)
        if not check.allowed:
            raise DeletionGuardError(
                f"the server side deleted {deletions} of {total} archived messages, more than "
                f"max_delete allows ({check.limit}); nothing was deleted. Check the server, then "
                "run again with --force to apply the deletions"
            )

    def _describe(self, pplan: P.PullPlan, states: dict[str, _FolderState]) -> None:
        paths = {st.target.dirname: "/".join(st.target.path) for st in states.values()}
        for a in pplan.folders.actions:
            self.report.plan.append({"folder": "/".join(a.path), "action": a.kind,
                                     "dirname": a.dirname, "from": a.old_dirname})
        for dirname, c in sorted(pplan.per_folder.items()):
            if c.empty():
                continue
            self.report.plan.append({
                "folder": paths.get(dirname, dirname), "dirname": dirname,
                "downloads": c.downloads, "bytes": c.bytes, "renames": c.relocations + c.renames,
                "flag_updates": c.updates,
                ("deletes" if pplan.removals_mode == "delete" else "marked_deleted"): c.removals,
            })
        t = pplan.totals()
        self.report.pulled.new = t.downloads
        self.report.pulled.bytes = t.bytes
        self.report.pulled.moved = t.relocations
        self.report.pulled.updated = t.updates
        self.report.pulled.deleted = t.removals

    # ================================================================ execute

    def _tick(self) -> None:
        self._actions += 1
        if self.options.stop_after is not None and self._actions > self.options.stop_after:
            raise Interrupted(f"stopped after {self.options.stop_after} actions (test hook)")

    def _execute_folders(self, fplan: P.FolderPlan, states: dict[str, _FolderState], now: int) -> None:
        with self.db.transaction():
            for a in fplan.actions:
                if a.kind == "gone":  # first, so its name can go to a new folder of this run
                    self.db.set_folder_tokens(a.folder_id, state="deleted", content_token=None,
                                              delta_token=None)
        stale = {f.dirname: f for f in self.db.folders() if f.state != "present"}
        live = {st.target.dirname for st in states.values()}
        renames = [a for a in fplan.actions if a.kind == "rename"]
        # Two phases when a target name is still used by another renamed folder (swaps).
        pending: dict[str, P.FolderAction] = {a.old_dirname or "": a for a in renames}
        for a in renames:
            if a.dirname in pending and pending[a.dirname] is not a:
                tmp = f".axsync-rename-{a.folder_id}"
                self._rename_dir(a.old_dirname or "", tmp, a.path)
                pending.pop(a.old_dirname or "", None)
                pending[tmp] = a
                with self.db.transaction():
                    self.db.move_folder_dirname(a.old_dirname or "", tmp)
                    self.db.set_folder_tokens(a.folder_id, dirname=tmp)
        for old, a in list(pending.items()):
            self._tick()
            self._free_dirname(a.dirname, a.folder_id, stale, live)
            self._rename_dir(old, a.dirname, a.path)
            with self.db.transaction():
                self.db.move_folder_dirname(old, a.dirname)
                self.db.set_folder_tokens(a.folder_id, dirname=a.dirname, path=_json(a.path))
            self._keywords.pop(old, None)
            self._unlettered.pop(old, None)
            self._local.pop(old, None)
        # The rows first, then the directories: a run killed in between leaves rows whose
        # directories the next run creates, never directories no row knows about.
        with self.db.transaction():
            for fid, st in states.items():
                t = st.target
                row = st.row
                keep = row is not None and fid not in fplan.validity_reset
                self._free_dirname(t.dirname, fid, stale, live)
                self.db.upsert_folder(FolderRow(
                    fid, t.parent_id, t.name, t.path, t.dirname, t.role, t.id_validity,
                    row.content_token if keep and row else None,
                    row.delta_token if keep and row else None,
                    row.conv_token if keep and row else None,
                    t.excluded, "present",
                ), now)
        create = [st.target for st in states.values() if not st.target.excluded
                  and not self.store.root.joinpath(st.target.dirname).joinpath("cur").is_dir()]
        # each one two fsyncs: a few at once (an initial pull creates them all)
        in_threads(lambda t: self.store.ensure_folder(t.dirname, t.path), create, "axsync-mkdir")
        if not fplan.actions and all(st.row is not None for st in states.values()):
            return
        paths = [st.target.path for st in states.values() if not st.target.excluded]
        self.store.write_subscriptions(sorted(p for p in paths if p != P.INBOX_PATH))

    def _rename_dir(self, old: str, new: str, path: tuple[str, ...]) -> None:
        """Rename a folder directory; a rename an interrupted run already did is done."""
        old_there = self.store.root.joinpath(old).exists()
        if self.store.root.joinpath(new).exists():
            if old_there:
                raise StoreError(f"cannot rename folder {old!r} to {new!r}: target exists")
            return
        if old_there:
            self.store.rename_folder(old, new, path)

    def _free_dirname(self, dirname: str, owner: str, stale: dict[str, FolderRow], live: set[str]) -> None:
        """A folder deleted on the server may still hold ``dirname``: its state row, and (in
        backup mode, or until its mails are removed) its directory. Give the name to
        ``owner``: drop the row, or move the directory aside to "<name> (deleted)"."""
        f = stale.pop(dirname, None)
        if f is None or f.id == owner or not dirname:
            return
        with self.db.transaction():
            if not self.store.root.joinpath(dirname).is_dir():
                self.db.delete_folder_row(f.id)
                return
            for n in range(1, 1000):
                leaf = f"{f.path[-1]} (deleted{f' {n}' if n > 1 else ''})"
                path = (*f.path[:-1], leaf)
                aside = assign_dirname(path, dict.fromkeys(live, ()))
                if aside not in live and aside not in stale and not self.store.root.joinpath(aside).exists():
                    break
            self.store.rename_folder(dirname, aside, path)
            self.db.move_folder_dirname(dirname, aside)
            self.db.set_folder_tokens(f.id, dirname=aside, path=_json(path))
        stale[aside] = f
        self._keywords.pop(dirname, None)
        self._unlettered.pop(dirname, None)
        self._local.pop(dirname, None)

    def _local_name(self, dirname: str, base: str, fallback: str) -> str | None:
        """Current file name of ``base`` (Dovecot or a mail client may have renamed it).
        ``fallback``: the name on record; when it is still in ``cur/``, that is the answer
        without listing the folder (a folder's name index grows with the folder)."""
        index = self._local.get(dirname)
        if index is None:
            for name in (fallback, self.name_hints.get(base)):
                if not name or name.rpartition(":2,")[0] != base:
                    continue
                try:
                    if self.store.path_of(dirname, "cur", name).is_file():
                        return name
                except AxsyncError:
                    pass
        hit = self._local_entry(dirname, base)
        return hit[1] if hit else None

    def _local_entry(self, dirname: str, base: str) -> tuple[str, str] | None:
        """(subdir, file name) of ``base`` from the folder's name index (listed once)."""
        index = self._local.get(dirname)
        if index is None:
            index = {f.base: (f.subdir, f.filename) for f in self.store.scan_folder(dirname)}
            self._local[dirname] = index
        return index.get(base)

    def _find_elsewhere(self, base: str) -> tuple[str, str] | None:
        """(dirname, filename) of ``base`` in any folder: a file moved by a mail client.
        One scan of the archive per run; the per-folder index confirms each hit."""
        if self._everywhere is None:
            self._everywhere = {f.base: f.dirname for f in self.store.scan()}
        where = self._everywhere.get(base)
        if where is not None:
            name = self._local_name(where, base, "")
            if name is not None:
                return where, name
            for f in self.store.scan():  # moved again during this run
                if f.base == base:
                    return f.dirname, f.filename
        return None

    def _pending(self, uid: int, op: str) -> bool:
        """A change of ``uid`` this archive pushed that the server answered 201 for."""
        return self.db.execute("SELECT 1 FROM push_pending WHERE uid = ? AND op = ?",
                               (uid, op)).fetchone() is not None

    def _note_local(self, dirname: str, base: str, filename: str | None) -> None:
        index = self._local.get(dirname)
        if index is None:
            return
        if filename is None:
            index.pop(base, None)
        else:
            index[base] = ("cur", filename)

    def _keyword_letters(self, dirname: str, label_ids: tuple[str, ...]) -> str:
        if not label_ids:
            return ""
        mapping, atoms, missing = self._missing_atoms(dirname, label_ids)
        if missing:
            self._lettered(dirname, missing, self.store.ensure_keywords(dirname, missing))
        return "".join(sorted(mapping[a] for a in atoms if a in mapping))

    def _missing_atoms(self, dirname: str, label_ids: tuple[str, ...]
                       ) -> tuple[dict[str, str], list[str], list[str]]:
        """The folder's letters (atom -> letter), the atoms of ``label_ids``, and those
        of them without a letter that were not refused one in this run."""
        mapping = self._keywords.get(dirname)
        if mapping is None:
            mapping = self.db.folder_keywords(dirname)
            self._keywords[dirname] = mapping
        atoms = [self._labels[i][1] for i in label_ids if i in self._labels]
        unlettered = self._unlettered.setdefault(dirname, set())
        return mapping, atoms, [a for a in atoms if a not in mapping and a not in unlettered]

    def _lettered(self, dirname: str, missing: list[str], new: dict[str, str]) -> None:
        """Record the letters ``ensure_keywords`` gave the ``missing`` atoms."""
        self._keywords[dirname].update(new)
        self.db.set_folder_keywords(dirname, new)
        lost = [a for a in missing if a not in new]
        if lost:  # asked once per run (the file stays full), reported once
            self._unlettered[dirname].update(lost)
            self.report.notes.append(
                f"folder {dirname or 'INBOX'}: more than 26 keywords; {len(lost)} label(s) kept "
                "only in the state DB")

    def _prepare_keywords(self, staging: Staging, dir_of: dict[str, str],
                          folder_id: str | None = None) -> None:
        """Give the labels of the mails to download their keyword letters before the
        downloads start: one ``dovecot-keywords`` write (two fsyncs) per folder, the
        folders' files written at once by a few threads (one after the other, a mailbox's
        30 folders took 0.3-0.5 s before the first download). At each label's first mail,
        it was one write per label and folder, on the thread that records the downloads.
        Letters come in the same order either way. ``folder_id``: only that folder's
        mails (a streamed pull feeds a folder at a time; letters are per folder)."""
        wanted: dict[str, dict[str, None]] = {}
        for fid, label_ids in staging.new_label_sets(folder_id):
            dirname = dir_of.get(fid)
            if dirname is not None:
                wanted.setdefault(dirname, {}).update(dict.fromkeys(label_ids))
        work = {dirname: missing for dirname, ids in wanted.items()
                if (missing := self._missing_atoms(dirname, tuple(ids))[2])}
        if not work:
            return
        dirnames = list(work)
        letters = in_threads(lambda d: self.store.ensure_keywords(d, work[d]), dirnames, "axsync-kw")
        with self.db.transaction():
            for dirname, new in zip(dirnames, letters, strict=True):
                self._lettered(dirname, work[dirname], new)

    def _flags_for(self, dirname: str, flags: MailFlags, label_ids: tuple[str, ...]) -> str:
        return P.file_flags(P.server_letters(flags), self._keyword_letters(dirname, label_ids),
                            self.store.compression != "none")

    def _target_flags(self, row: MessageRow, dirname: str, current: str | None,
                      flags: MailFlags, labels: tuple[str, ...]) -> str:
        """File flags after a server change. In sync mode, a change made locally since the
        last run (the file name differs from the state row) is merged per flag and per label
        (three-way, base = the state row) so the push that follows can send it."""
        if self.options.mode != "sync" or current is None or current == row.filename:
            return self._flags_for(dirname, flags, labels)
        info = current.rsplit(":2,", 1)[1] if ":2," in current else ""
        local_letters = "".join(sorted(set(info) & SYSTEM))
        mapping = self.store.keywords(dirname)
        atoms = keywords_of(info, mapping)
        by_atom = {atom: lid for lid, (_n, atom) in self._labels.items()}
        local_labels, new_atoms = label_ids_for(atoms, by_atom)
        merged = merge(row.flags, local_letters, P.server_letters(flags), row.label_ids,
                       local_labels, labels, policy=self.options.conflict)
        for c in merged.conflicts:
            self.report.conflicts += 1
            self.db.record_conflict(self.report.run_id, row.uid, row.mail_id, c.field, str(c.base), str(c.local),
                                    str(c.server), c.resolution)
        if new_atoms and row.label_ids:
            # a keyword of a label this mail had at the last run, deleted on the server
            # since: the server's deletion wins (it is not a new label to push)
            gone = {n.casefold() for lid, (n, _a) in self.db.all_labels().items() if lid in row.label_ids}
            new_atoms = tuple(a for a in new_atoms if atom_to_label(a).casefold() not in gone)
        keep = {ch for ch in info if ch in "abcdefghijklmnopqrstuvwxyz"
                and mapping.get(ord(ch) - 97) in new_atoms}
        letters = self._keyword_letters(dirname, merged.labels) + "".join(sorted(keep))
        return P.file_flags(merged.flags, letters, self.store.compression != "none")

    def _execute_relocations(self, pplan: P.PullPlan, states: dict[str, _FolderState]) -> None:
        dir_of = {fid: st.target.dirname for fid, st in states.items()}
        for reloc in pplan.relocations:
            self._tick()
            row = self.db.message_by_uid(reloc.uid)
            if row is None:
                continue
            mail = reloc.mail
            dest = dir_of.get(mail.folder_id)
            if dest is None:
                continue
            current = self._local_name(row.dirname, row.base, row.filename)
            src = row.dirname
            if current is None and self.options.mode != "sync" \
                    and (found := self._find_elsewhere(row.base)) is not None:
                src, current = found  # moved by an interrupted run that did not record it
            filename = row.filename
            if current is not None:
                renamed = current != row.filename
                if dest != src:
                    filename = self.store.move(src, current, dest)
                    self._note_local(src, row.base, None)
                    self._note_local(dest, row.base, filename)
                else:
                    filename = current
                flags = self._target_flags(row, dest, filename if renamed else row.filename,
                                           mail.flags, mail.label_ids)
                filename = self.store.set_flags(dest, filename, flags)
                self._note_local(dest, row.base, filename)
            elif (moved_here := self._find_elsewhere(row.base) if self.options.mode == "sync" else None) is None \
                    and (self.options.mode != "sync" or self.options.conflict == "server"
                         or states[mail.folder_id].target.role == "trash" or self._pending(row.uid, "delete")):
                # The archive lost this file; or, in sync mode, it was deleted here while the
                # server moved it: with conflict = server, or when the server's move was a
                # deletion too (into Trash), or is the echo of a deletion this archive pushed
                # (201, applied later): fetch it again at its new place.
                agreed = states[mail.folder_id].target.role == "trash" or self._pending(row.uid, "delete")
                if self.options.mode == "sync" and not agreed:
                    self.report.conflicts += 1
                    with self.db.transaction():
                        self.db.record_conflict(self.report.run_id, row.uid, mail.id, "delete",
                                                "present", "deleted", "moved", "server")
                log.info("file of uid %s is missing; downloading mail %s again", row.uid, mail.id)
                with self.db.transaction():
                    self.db.update_message(row.uid, mail_id=None, state="tombstoned",
                                           deleted_at=int(time.time()))
                self._relocated_new.discard(mail.id)
                continue
            elif moved_here is not None:
                # Moved by a mail client: to the same folder (no conflict), or to another one.
                where, name = moved_here
                if where != dest:
                    self.report.conflicts += 1
                    policy = "local" if self.options.conflict == "local" else "server"
                    with self.db.transaction():
                        self.db.record_conflict(self.report.run_id, row.uid, mail.id, "folder", row.dirname,
                                                where, dest, policy)
                    if policy == "server":
                        name = self.store.move(where, name, dest)
                        self._note_local(where, row.base, None)
                        where = dest
                # flags and labels merge as for any relocation (the push sends the rest,
                # and the move when the local side won)
                flags = self._target_flags(row, where, name, mail.flags, mail.label_ids)
                filename = self.store.set_flags(where, name, flags)
                self._note_local(where, row.base, filename)
            else:
                # Deleted locally while the server moved it, conflict = local (or newest: the
                # local deletion is the newer change): the deletion is pushed next, against
                # the mail's new id.
                self.report.conflicts += 1
                with self.db.transaction():
                    self.db.record_conflict(self.report.run_id, row.uid, mail.id, "delete", "present", "deleted",
                                            "moved", "local")
            with self.db.transaction():
                self.db.update_message(
                    row.uid, mail_id=mail.id, folder_id=mail.folder_id, dirname=dest, filename=filename,
                    flags=P.server_letters(mail.flags), refw=mail.flags.refw_flags,
                    label_ids=mail.label_ids, state="present", deleted_at=None,
                    conversation_id=mail.conversation_id or row.conversation_id,
                    last_seen=int(time.time()),
                )
            self.report.pulled.moved += 1

    def _execute_updates(self, staging: Staging, states: dict[str, _FolderState]) -> None:
        dir_of = {fid: st.target.dirname for fid, st in states.items()}
        batch = 0
        # Renamed files' directories, synced once per batch before its rows are committed
        # (not once per file: 1,000 flag changes were 1,000 directory fsyncs).
        unsynced: set[Path] = set()
        refetch: list[tuple[str, str]] = []  # (mail id, folder id) to download again
        self.db.execute("BEGIN")
        try:
            for mid, fid, flags, labels, conv, refw in staging.updates():
                row = self.db.message_by_mail_id(mid)
                if row is None or row.state != "present":
                    continue
                if refw is None:
                    flags = MailFlags(flags.is_unread, flags.is_flagged, flags.is_draft,
                                      flags.is_deleted, row.refw)
                letters = P.server_letters(flags)
                dest = dir_of.get(fid, row.dirname)
                if dest != row.dirname:  # same-id move seen through a listing
                    current = self._local_name(row.dirname, row.base, row.filename)
                    found = self._find_elsewhere(row.base) \
                        if current is None and self.options.mode == "sync" else None
                    if current is not None:
                        moved = self.store.move(row.dirname, current, dest)
                        self._note_local(row.dirname, row.base, None)
                        self._note_local(dest, row.base, moved)
                    elif found is None and (
                            self.options.mode != "sync" or self.options.conflict == "server"
                            or states[fid].target.role == "trash" or self._pending(row.uid, "delete")):
                        # as for a relocation: the file is gone (deleted here while the server
                        # moved it, or our own deletion landing in Trash): fetch it again at
                        # its new place, never delete it on the server from there
                        agreed = states[fid].target.role == "trash" or self._pending(row.uid, "delete")
                        if self.options.mode == "sync" and not agreed:
                            self.report.conflicts += 1
                            self.db.record_conflict(self.report.run_id, row.uid, mid, "delete", "present",
                                                    "deleted", "moved", "server")
                        self.db.update_message(row.uid, mail_id=None, state="tombstoned",
                                               deleted_at=int(time.time()))
                        refetch.append((mid, fid))
                        continue
                    elif found is None:
                        # deleted here while the server moved it, conflict = local: the
                        # deletion is pushed next, against its new place
                        self.report.conflicts += 1
                        self.db.record_conflict(self.report.run_id, row.uid, mid, "delete", "present",
                                                "deleted", "moved", "local")
                    elif found[0] != dest:
                        # moved here by a mail client, there by the server: the policy decides
                        # (local: the file stays, the push moves the mail)
                        where, name = found
                        policy = "local" if self.options.conflict == "local" else "server"
                        self.report.conflicts += 1
                        self.db.record_conflict(self.report.run_id, row.uid, mid, "folder", row.dirname,
                                                where, dest, policy)
                        if policy == "server":
                            moved = self.store.move(where, name, dest)
                            self._note_local(where, row.base, None)
                            self._note_local(dest, row.base, moved)
                    self.db.update_message(row.uid, dirname=dest, folder_id=fid)
                    row = self.db.message_by_uid(row.uid)
                    assert row is not None
                    self.report.pulled.moved += 1
                if letters == row.flags and tuple(sorted(labels)) == tuple(sorted(row.label_ids)) \
                        and flags.refw_flags == row.refw:
                    if conv and conv != row.conversation_id:
                        self.db.update_message(row.uid, conversation_id=conv, history=False)
                    continue
                self._tick()
                where = row.dirname
                current = self._local_name(row.dirname, row.base, row.filename)
                if current is None and self.options.mode == "sync":
                    # moved by a mail client (the push moves it next): merge where it is
                    found = self._find_elsewhere(row.base)
                    if found is not None:
                        where, current = found
                filename = None
                if current is not None:
                    filename = self.store.set_flags(where, current,
                                                    self._target_flags(row, where, current, flags, labels),
                                                    unsynced)
                    self._note_local(where, row.base, filename)
                self.db.update_message(
                    row.uid, flags=letters, refw=flags.refw_flags, label_ids=labels,
                    filename=filename or row.filename, conversation_id=conv or row.conversation_id,
                    last_seen=int(time.time()),
                )
                self.report.pulled.updated += 1
                batch += 1
                if batch >= 500:
                    self.store.sync_dirs(unsynced)
                    self.db.execute("COMMIT")
                    self.db.execute("BEGIN")
                    batch = 0
            self.store.sync_dirs(unsynced)
            self.db.execute("COMMIT")
        except BaseException:
            try:
                self.store.sync_dirs(unsynced)
            except StoreError:  # the renames may not be durable: record none of them
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")  # what was renamed on disk is recorded
            raise
        for mid, fid in refetch:  # staged as new: the downloads below fetch them
            try:
                mail = self.api.get_mail(mid)
            except AxsyncError as exc:
                self.report.fail(f"mail {mid}", str(exc))
                states[fid].failed = True
                continue
            with self.db.transaction():
                staging.add_new(mail)

    # ---------------------------------------------------------------- downloads

    def _execute_downloads(self, staging: Staging, states: dict[str, _FolderState], pplan: P.PullPlan) -> None:
        """Download the staged new mails (those a streamed pull fed already are done)."""
        downloads = self._downloads or _Downloads(self, staging, states)
        self._downloads = None
        try:
            downloads.feed_rest()
            downloads.finish()
        except BaseException as exc:
            downloads.abort(exc)
            raise

    def _fail_mail(self, mail: Mail, states: dict[str, _FolderState], exc: Exception) -> None:
        log.warning("mail %s failed: %s", mail.id, exc)
        self.report.fail(f"mail {mail.id} ({mail.subject[:60]!r})", str(exc))
        st = states.get(mail.folder_id)
        if st is not None:
            st.failed = True

    def _download_to(self, done: queue.SimpleQueue[list[_Done]],
                     commit: GroupCommit[tuple[Mail, str, str]],
                     mail: Mail, kind: str, dirname: str, unique: str, letters: str) -> None:
        """Worker thread: :meth:`_download_one`, its sealed file to the group commit or
        its exception put on ``done`` (always exactly one of the two per call)."""
        try:
            commit.add((mail, kind, dirname), self._download_one(mail, dirname, unique, letters))
        except BaseException as exc:
            done.put([(mail, kind, dirname, None, exc)])

    async def _download_async(self, source: AsyncSource, done: queue.SimpleQueue[list[_Done]],
                              commit: GroupCommit[tuple[Mail, str, str]],
                              mail: Mail, kind: str, dirname: str, unique: str, letters: str) -> None:
        """On the event loop: :meth:`_download_one`'s work; the sealed file to the group
        commit, or the exception put on ``done`` (exactly one of the two per call)."""
        try:
            sink = self._sink(dirname, unique, mail)
            try:
                dl = await source.download(mail.id, sink)  # type: ignore[arg-type]
            except BaseException:
                sink.abort()
                raise
            commit.add((mail, kind, dirname), self._seal(sink, mail, letters, dl))
        except BaseException as exc:
            done.put([(mail, kind, dirname, None, exc)])
            if not isinstance(exc, Exception):
                raise

    def _download_one(self, mail: Mail, dirname: str, unique: str, letters: str) -> SealedFile:
        """Worker thread: network and file only; never touches the DB."""
        sink = self._sink(dirname, unique, mail)
        try:
            dl = self.api.download_source(mail.id, sink)  # type: ignore[arg-type]
        except BaseException:
            sink.abort()
            raise
        return self._seal(sink, mail, letters, dl)

    def _sink(self, dirname: str, unique: str, mail: Mail) -> _Sink:
        """Where a mail's download goes: its file, and its bytes for the observer if it
        wants them (DownloadObserver.keep)."""
        keep = self.observer.keep_limit() if self.observer is not None else 0
        return _Sink(self.store, dirname, unique, mail.size or None, keep)

    def _seal(self, sink: _Sink, mail: Mail, letters: str, dl: Download) -> SealedFile:
        """``sink.seal``, then its bytes to the observer if kept."""
        sealed = sink.seal(mail, letters, dl)
        data = sink.kept()
        if data is not None and self.observer is not None:
            stored = sealed.stored
            self.observer.keep(stored.dirname, stored.filename, stored.sha256, data)
        return sealed

    def _adopt(self, mail: Mail, dirname: str, unique: str, letters: str,
               unsynced: set[Path]) -> Any:
        """A file written by a killed run (no state row yet): verify and adopt it, with the
        mail's flags as they are now (they may have changed since it was written). Its
        directory goes into ``unsynced``: the killed run may not have made its name
        durable, and the caller syncs it before recording the row."""
        by_unique = self._uniques.get(dirname)
        if by_unique is None:
            # Built once per folder from one listing (a scan per mail made initial pulls
            # quadratic). Files added later in this run are downloads that already have a
            # state row. The folder's name index (_local) is not loaded for this: during a
            # pull it would grow with every download (memory of a 100k pull).
            by_unique = {}
            listing = self._local.get(dirname)
            bases = listing.keys() if listing is not None else (f.base for f in self.store.scan_folder(dirname))
            for known in bases:
                by_unique.setdefault(known.split(",", 1)[0], []).append(known)
            self._uniques[dirname] = by_unique
        for base in by_unique.get(unique, ()):
            entry = self._local_entry(dirname, base)  # rare: a killed run's file
            if entry is None:
                continue
            subdir, filename = entry
            if self.db.message_by_base(base) is not None:
                return None
            data_sha, size, vsize = self.store.digest(dirname, subdir, filename)
            log.info("adopting %s/%s written by an interrupted run", dirname, filename)
            filename = self.store.set_flags(dirname, filename, letters, unsynced)
            unsynced.add(self.store.path_of(dirname, "cur", filename).parent)
            self._note_local(dirname, base, filename)
            return StoredFile(dirname, filename, base, size, vsize, data_sha)
        return None

    def _record_download(self, mail: Mail, kind: str, dirname: str, stored: Any) -> None:
        now = int(time.time())
        if kind == "replaced":
            old = self.db.message_by_mail_id(mail.id)
            if old is not None and old.sha256 == stored.sha256 and old.size == stored.size \
                    and self._local_name(old.dirname, old.base, old.filename) is not None:
                # Same content as archived (a resumed run replaying the replacement): keep
                # the old file, drop the new copy.
                self.store.delete(dirname, stored.filename)
                self._note_local(dirname, stored.base, None)
                return
            if old is not None:
                self._retire(old, replaced=True)
        existing = self.db.message_by_mail_id(mail.id)
        if existing is not None:  # e.g. adopted twice
            return
        same = self.db.execute(
            "SELECT m.uid FROM messages m JOIN st_rm r ON r.mail_id = m.mail_id "
            "WHERE m.state='present' AND m.sha256=? AND m.size=?", (stored.sha256, stored.size)
        ).fetchone()
        if same is not None and kind == "new":
            # A move the Message-ID could not reveal: keep the old file, drop the new copy.
            old = self.db.message_by_uid(int(same[0]))
            assert old is not None
            src = old.dirname
            current = self._local_name(old.dirname, old.base, old.filename)
            if current is None and (found := self._find_elsewhere(old.base)) is not None:
                src, current = found  # moved by an interrupted run that did not record it
            if current is not None:
                self.store.delete(dirname, stored.filename)
                self._note_local(dirname, stored.base, None)
                moved = self.store.move(src, current, dirname) if src != dirname else current
                self._note_local(src, old.base, None)
                moved = self.store.set_flags(dirname, moved, stored.filename.rsplit(":2,", 1)[-1])
                self._note_local(dirname, old.base, moved)
                self.db.update_message(
                    old.uid, mail_id=mail.id, folder_id=mail.folder_id, dirname=dirname, filename=moved,
                    flags=P.server_letters(mail.flags), label_ids=mail.label_ids, last_seen=now,
                    refw=mail.flags.refw_flags, conversation_id=mail.conversation_id,
                )
                self.report.pulled.moved += 1
                return
        self.db.insert_message(self._new_row(mail, kind, dirname, stored))

    def _new_row(self, mail: Mail, kind: str, dirname: str, stored: Any) -> dict[str, Any]:
        """The state row of a downloaded mail, counted in the report; the caller inserts it
        (:meth:`StateDB.insert_message`, or many at once with ``insert_messages``)."""
        now = int(time.time())
        self._note_local(dirname, stored.base, stored.filename)
        if kind == "new":
            self.report.pulled.new += 1
        else:
            self.report.pulled.updated += 1
        self.report.pulled.bytes += stored.size
        return {
            "mail_id": mail.id, "folder_id": mail.folder_id, "dirname": dirname, "base": stored.base,
            "filename": stored.filename, "size": stored.size, "server_size": mail.size,
            "vsize": stored.vsize, "sha256": stored.sha256, "compression": self.store.compression,
            "flags": P.server_letters(mail.flags), "refw": mail.flags.refw_flags,
            "label_ids": mail.label_ids, "internal_date": mail.date, "message_id": mail.message_id,
            "conversation_id": mail.conversation_id, "subject": mail.subject, "from_addr": mail.from_,
            "state": "present", "first_seen": now, "last_seen": now,
        }

    # ---------------------------------------------------------------- removals

    def _execute_removals(self, staging: Staging, states: dict[str, _FolderState], pplan: P.PullPlan) -> None:
        removed = staging.removed()
        with self.db.transaction():
            for mid, _fid in removed:
                row = self.db.message_by_mail_id(mid)
                if row is None or row.state != "present" or row.uid in self._relocated_uids:
                    continue
                if mid in self._kept:  # removed from a folder it had left: see _still_there
                    continue
                self._tick()
                self._retire(row, replaced=False)
                self.report.pulled.deleted += 1
        # Folders gone from the server (now, or in a run that was interrupted): in
        # mirror/sync their now-empty directories go too.
        if pplan.removals_mode == "delete":
            live = {st.target.dirname for st in states.values()}
            for f in self.db.folders():
                if f.state == "present" or not f.dirname or f.dirname in live \
                        or not self.store.root.joinpath(f.dirname).is_dir():
                    continue
                left = self.db.count_messages("dirname = ? AND state != 'tombstoned'", (f.dirname,))
                if left == 0:
                    try:
                        self.store.remove_folder(f.dirname)
                    except StoreError as exc:
                        self.report.notes.append(f"kept folder {f.dirname}: {exc}")

    def _sweep_orphans(self) -> None:
        """After a killed run: files it downloaded but could not record, for mails this run
        no longer wants (moved, deleted or re-downloaded since), would stay as duplicates
        (and look like local additions). Only this host's download names without a state
        row qualify; they are quarantined, not deleted. Runs only when the previous run
        did not end cleanly, and only after a run without failures."""
        if self.report.failures:
            return
        prev = self.db.execute(
            "SELECT ok FROM runs WHERE id < ? AND dry_run = 0 ORDER BY id DESC LIMIT 1",
            (self.report.run_id,),
        ).fetchone()
        if prev is None or prev[0]:
            return
        ours = re.compile(r"\d+\.R[0-9a-f]{20}\." + re.escape(self.host))
        known = {b for (b,) in self.db.execute("SELECT base FROM messages").fetchall()}
        for f in list(self.store.scan()):
            if f.base not in known and ours.fullmatch(f.base.split(",", 1)[0]):
                log.info("quarantining %s/%s left by an interrupted run", f.dirname, f.filename)
                self.store.quarantine(f.dirname, f.filename, "downloaded by an interrupted run; "
                                      "its mail changed on the server before it was recorded")
                self._note_local(f.dirname, f.base, None)
                self.report.notes.append(f"quarantined {f.dirname or 'INBOX'}/{f.filename} "
                                         "(left by an interrupted run)")

    def _retire(self, row: MessageRow, *, replaced: bool) -> None:
        now = int(time.time())
        if self.options.mode == "backup":
            self.db.update_message(row.uid, state="deleted", mail_id=None, deleted_at=now)
            return
        where = row.dirname
        current = self._local_name(row.dirname, row.base, row.filename)
        if current is None:  # moved by a mail client, or by an interrupted run
            found = self._find_elsewhere(row.base)
            if found is not None:
                where, current = found
        if current is not None:
            self.store.delete(where, current)
            self._note_local(where, row.base, None)
        self.db.update_message(row.uid, state="tombstoned", mail_id=None, deleted_at=now)

    # ---------------------------------------------------------------- tokens

    def _save_tokens(self, states: dict[str, _FolderState], folders_token: str | None,
                     delta_token: str | None, labels_token: str | None, now: int) -> None:
        any_failed = any(st.failed for st in states.values())
        with self.db.transaction():
            for fid, st in states.items():
                if st.failed or not st.needs_sync:
                    continue
                self.db.set_folder_tokens(
                    fid, content_token=st.new_content_token, delta_token=st.new_delta_token,
                    **({"conv_token": st.new_conv_token} if st.new_conv_token else {}),
                )
            fields: dict[str, Any] = {}
            if labels_token is not None:
                fields["labels_token"] = labels_token
            if not any_failed:
                if folders_token is not None:
                    fields["folders_token"] = folders_token
                if delta_token is not None:
                    fields["folders_delta_token"] = delta_token
            self.db.update_account(**fields)
        self._update_conversations()

    def _update_conversations(self) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO conversations (id, subject, mail_count, updated_at) "
                "SELECT conversation_id, min(subject), count(*), ? FROM messages "
                "WHERE conversation_id IS NOT NULL AND state = 'present' AND conversation_id IN "
                "(SELECT conversation_id FROM st_new UNION SELECT conversation_id FROM st_upd) "
                "GROUP BY conversation_id ON CONFLICT(id) DO UPDATE SET mail_count=excluded.mail_count, "
                "updated_at=excluded.updated_at",
                (int(time.time()),),
            )


class _Downloads:
    """The downloads of one pull, and the recording of what they bring.

    Mails are fed in folder-sized runs: all staged ones after planning
    (:meth:`feed_rest`), or, in a streamed pull (:meth:`Puller._can_stream`), each folder
    as soon as its gathering ends while other folders are still gathered
    (:meth:`feed_folder`). :meth:`pump` hands fed mails to the network while fewer than
    ``limit`` are in flight and records the finished ones; :meth:`finish` runs until all
    are done. Downloads run on one event loop (or a thread per connection, see
    :meth:`ApiClient.source_fetcher`); files come back through the group commit, their
    names durable, and are recorded in transactions of ``RECORD_ROWS`` rows or
    ``RECORD_EVERY_S`` seconds, on the calling thread (the only DB writer)."""

    def __init__(self, puller: Puller, staging: Staging, states: dict[str, _FolderState]) -> None:
        self.p = puller
        self.staging = staging
        self.states = states
        self.dir_of = {fid: st.target.dirname for fid, st in states.items()}
        db = puller.db
        # An archive without a message yet (an initial pull) has nothing a mail could be
        # archived as already: no lookup per mail...
        self.archived = db.any_message()
        # ...nor a removal a download could be the other end of (a move matched by content,
        # see _record_download): then new mails' rows are inserted many at a time.
        self.in_bulk = not self.archived and db.execute("SELECT 1 FROM st_rm LIMIT 1").fetchone() is None
        # Results come back in lists through one queue: a group commit's files (one list per
        # group, see GroupCommit), or one failed download. Waiting on the set of in-flight
        # futures cost the main thread a pass over all of them per finished download.
        self.done: queue.SimpleQueue[list[_Done]] = queue.SimpleQueue()
        self.inflight = 0
        self.limit = max(1, puller.options.concurrency) * 4
        self.pending_rows: list[tuple[Mail, str, str, Any]] = []
        self.unsynced: set[Path] = set()  # directories of adopted files, fsynced at flush
        self.unrecorded: set[str] = set()  # mail ids handed out, not recorded nor failed yet
        self.sources: deque[Iterator[tuple[Mail, str]]] = deque()
        self.todo = 0  # mails fed so far
        self._told = 0  # ...of which the observer was told
        self._exits: contextlib.ExitStack | None = None
        self._submit: Callable[[list[tuple[Mail, str, str, str, str]]], None] | None = None
        self.last_flush = self.last_tick = time.monotonic()

    # ------------------------------------------------------------------ feeding

    def feed_folder(self, folder_id: str) -> None:
        """A streamed pull: ``folder_id`` is gathered; its staged new mails go now."""
        if folder_id not in self.dir_of:
            return
        count, nbytes = self.staging.new_totals(folder_id=folder_id)
        if count:
            self.p._prepare_keywords(self.staging, self.dir_of, folder_id)
            self._feed(self._folder_mails(folder_id), count, nbytes)

    def feed_rest(self) -> None:
        """After planning: every staged new mail not fed yet, but those relocated."""
        skip = self.p._relocated_new
        count, nbytes = self.staging.new_totals(skip)
        if count:
            self.p._prepare_keywords(self.staging, self.dir_of)
            self._feed(((m, k) for m, k in self.staging.new_mails() if m.id not in skip), count, nbytes)

    def _feed(self, mails: Iterator[tuple[Mail, str]], count: int, nbytes: int) -> None:
        if self._exits is None:
            self._start()
        self.p.progress.add_total(count, nbytes)
        self.todo += count
        self.sources.append(mails)

    def _folder_mails(self, folder_id: str) -> Iterator[tuple[Mail, str]]:
        """A gathered folder's new mails, a page at a time, each marked fed when taken. A
        mail already handed out (fed by another folder, then staged again here: moved
        meanwhile, same id) stays unfed: planning relocates its file."""
        after: tuple[int, str] | None = None
        while True:
            page = self.staging.take_new(folder_id, after)
            if not page:
                return
            after = (page[-1][0].date, page[-1][0].id)
            ids = [m.id for m, _k in page]
            taken = self.unrecorded.intersection(ids)
            marks = ",".join("?" * len(ids))
            taken.update(r[0] for r in self.p.db.execute(
                f"SELECT mail_id FROM messages WHERE mail_id IN ({marks})", ids))
            page = [(m, k) for m, k in page if m.id not in taken]
            with self.p.db.transaction():
                self.staging.mark_fed(m.id for m, _k in page)
            yield from page

    # ------------------------------------------------------------------ running

    def _start(self) -> None:
        p = self.p
        p.progress.phase("download")
        connections = max(1, p.options.concurrency)
        fetcher = getattr(p.api, "source_fetcher", None)
        source = fetcher() if fetcher is not None else None
        done = self.done
        commit: GroupCommit[tuple[Mail, str, str]] = GroupCommit(
            p.store.root, lambda results: done.put([(*key, stored, exc) for key, stored, exc in results]))
        submit: Callable[[list[tuple[Mail, str, str, str, str]]], None]
        with contextlib.ExitStack() as exits:  # kept open (pop_all) once all is set up
            exits.enter_context(commit)
            if source is not None:  # every download on one event loop (axsync.sync.fetch)
                loop_runner = exits.enter_context(LoopRunner(connections))
                loop_runner.on_close(source.close)

                def submit(calls: list[tuple[Mail, str, str, str, str]]) -> None:
                    loop_runner.submit_many(p._download_async,
                                            [(source, done, commit, *c) for c in calls])
            else:  # a thread per connection (a proxy, a caller's own HTTP transport)
                pool = exits.enter_context(
                    ThreadPoolExecutor(max_workers=connections, thread_name_prefix="axsync-dl"))

                def submit(calls: list[tuple[Mail, str, str, str, str]]) -> None:
                    for c in calls:
                        pool.submit(p._download_to, done, commit, *c)

            self._exits, self._submit = exits.pop_all(), submit

    def pump(self, wait: bool = False) -> None:
        """Hand out fed mails while fewer than ``limit`` are in flight, then record what
        came back (waiting up to a second for something when ``wait``)."""
        p = self.p
        calls: list[tuple[Mail, str, str, str, str]] = []
        while self.sources and self.inflight < self.limit:
            try:
                mail, kind = next(self.sources[0])
            except StopIteration:
                self.sources.popleft()
                continue
            dirname = self.dir_of.get(mail.folder_id)
            if dirname is None:
                continue
            known = p.db.message_by_mail_id(mail.id) if self.archived else None
            if known is not None and kind == "new":
                continue  # already archived (a resumed run)
            unique = unique_for(mail, p.host, known.base if known is not None else "")
            letters = p._flags_for(dirname, mail.flags, mail.label_ids)
            adopted = p._adopt(mail, dirname, unique, letters, self.unsynced)
            self.unrecorded.add(mail.id)
            if adopted is not None:
                self.pending_rows.append((mail, kind, dirname, adopted))
                continue
            p._tick()
            calls.append((mail, kind, dirname, unique, letters))
            self.inflight += 1
        if calls:
            assert self._submit is not None
            self._submit(calls)
        if p.observer is not None and self.todo > self._told:
            # Told once the first downloads are on their way: loading the search index
            # (its modules, the message parser) overlaps with their first round trip.
            p.observer.downloads_started(self.todo)
            self._told = self.todo
        finished: list[_Done] = []
        if self.inflight:
            with contextlib.suppress(queue.Empty):
                finished.extend(self.done.get(timeout=1.0) if wait else self.done.get_nowait())
                while True:
                    finished.extend(self.done.get_nowait())
        for mail, kind, dirname, stored, exc in finished:
            self.inflight -= 1
            if exc is not None:
                self.unrecorded.discard(mail.id)
                if not isinstance(exc, AxsyncError):
                    raise exc  # a bug: as fut.result() would have raised it
                if _archive_unwritable(exc):
                    with contextlib.suppress(StoreError):
                        self.flush()  # keep what is already on disk recorded
                    raise StoreError(
                        f"the archive cannot be written ({exc}); nothing was lost: free "
                        "space or make it writable, then run again") from exc
                p._fail_mail(mail, self.states, exc)
                p.progress.advance(1, 0, dirname)
                continue
            assert stored is not None
            self.pending_rows.append((mail, kind, dirname, stored))
            p.progress.advance(1, stored.size, dirname)
        now = time.monotonic()
        if len(self.pending_rows) >= RECORD_ROWS or now - self.last_flush > RECORD_EVERY_S:
            self.flush()
            self.last_flush = self.last_tick = time.monotonic()
        elif p.observer is not None and now - self.last_tick > TICK_S:
            p.observer.tick()  # outside any transaction, as after a flush
            self.last_tick = now

    def drain(self) -> None:
        """Run until every fed mail is downloaded (or failed) and recorded."""
        while self.sources or self.inflight:
            self.pump(wait=True)
        self.flush()

    def finish(self) -> None:
        """:meth:`drain`, then stop the network side."""
        self.drain()
        if self._exits is not None:
            exits, self._exits = self._exits, None
            exits.close()

    def abort(self, exc: BaseException) -> None:
        """After ``exc``: stop the network side as leaving ``with`` blocks would."""
        if self._exits is not None:
            exits, self._exits = self._exits, None
            exits.__exit__(type(exc), exc, exc.__traceback__)

    def flush(self) -> None:
        if not self.pending_rows:
            return
        p = self.p
        # Downloaded files came through the group commit (their names are durable); an
        # adopted file's name is made durable here, before any row says so.
        p.store.sync_dirs(self.unsynced)
        with p.db.transaction():
            fresh: list[dict[str, Any]] = []
            for mail, kind, dirname, stored in self.pending_rows:
                if self.in_bulk and kind == "new":
                    fresh.append(p._new_row(mail, kind, dirname, stored))
                else:
                    p._record_download(mail, kind, dirname, stored)
            p.db.insert_messages(fresh)
        self.unrecorded.difference_update(mail.id for mail, _k, _d, _s in self.pending_rows)
        self.pending_rows.clear()
        if p.observer is not None:
            p.observer.recorded()


def _archive_unwritable(exc: BaseException) -> bool:
    """Disk full, quota exceeded or a read-only file system: no later item can succeed,
    so the run stops (exit 5) instead of failing every remaining download one by one."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _json(path: tuple[str, ...]) -> str:
    return json.dumps(list(path))


