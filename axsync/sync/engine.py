"""One account's run: wire the rooms (API client, store, state DB), pull, push, record.

``run_account`` never raises for item failures (they are in the report, exit 1); fatal
errors are caught, recorded in the run row and reported with their exit code, so many
accounts can run side by side and one failing does not stop the others.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from axsync.api import ApiClient
from axsync.config import Account, resolve_password
from axsync.errors import AxsyncError, PartialFailure, StateError, exit_code_for
from axsync.statedb import StateDB
from axsync.store import Store
from axsync.sync.local import LocalView, detect, dir_fingerprint
from axsync.sync.pull import Puller, PullOptions
from axsync.sync.push import Pusher, clear_confirmed
from axsync.sync.report import NullProgress, Progress, RunReport

if TYPE_CHECKING:
    from axsync.archive.index import IndexAlongside

log = logging.getLogger("axsync.sync")


@dataclass
class SyncOptions:
    pull_only: bool = False
    push_only: bool = False
    dry_run: bool = False
    force: bool = False
    stop_after: int | None = None  # tests: pull stops after this many actions
    push_stop_after: int | None = None  # tests: push stops after this many steps
    async_wait: float = 10.0  # seconds to wait for 201 (asynchronous) batches to land


class AccountLock:
    """One run per archive at a time (a second concurrent run would race on the DB)."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = os.fspath(path)
        self.fd: int | None = None

    def __enter__(self) -> AccountLock:
        import fcntl

        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise StateError(f"another axsync run holds {self.path}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


SCAN_EVERY = 24 * 3600  # a full scan for local changes at least this often


def _local_unchanged(db: StateDB, fingerprint: str, now: int, first: bool) -> bool:
    """Nothing was renamed, added or deleted in the archive since the end of the last run
    that left archive and state DB in agreement (and that is recent), so there is nothing
    to push: the whole-archive scan can be skipped. A ``first`` sync (no message archived
    yet) has nothing to push either."""
    if first:
        return True
    acc = db.account() or {}
    if acc.get("local_fingerprint") != fingerprint or not acc.get("local_scan_at"):
        return False
    if now - int(acc["local_scan_at"]) > SCAN_EVERY:
        return False
    return db.execute("SELECT 1 FROM push_pending LIMIT 1").fetchone() is None


def _record_fingerprint(db: StateDB, store: Store, report: RunReport, scanned: bool, now: int) -> None:
    """After a clean sync-mode run the archive and the DB agree: remember how the folders
    looked, so the next run can skip the scan if nothing moved on disk."""
    if report.failures or report.fatal or report.local_new:
        return
    fields: dict[str, object] = {"local_fingerprint": dir_fingerprint(store)}
    if scanned:
        fields["local_scan_at"] = now
    with db.transaction():
        db.update_account(**fields)


def _push(api: ApiClient, store: Store, db: StateDB, account: Account, options: SyncOptions,
          report: RunReport, pull_opts: PullOptions) -> None:
    """Send local changes, then pull the touched folders again to learn the new ids."""
    labels = db.labels()
    by_atom = {atom: lid for lid, (_name, atom) in labels.items()}
    # detect() streams the listing through the DB: its memory does not grow with the archive.
    changes = detect(db, LocalView.scan(store), by_atom)
    if not (changes.edits or changes.unknown or changes.adopted):
        # Nothing to push: no Pusher (its planning context reads every conversation of the
        # archive), only the pending 201 rows the previous pulls confirmed are cleared.
        if not options.dry_run:
            clear_confirmed(db, set())
        return
    total = db.count_messages("state = 'present'")
    pusher = Pusher(api, store, db, report, conflict_policy=account.conflict,
                    max_delete=account.max_delete.limit(total), force=options.force,
                    dry_run=options.dry_run, stop_after=options.push_stop_after,
                    async_wait=options.async_wait)
    plan = pusher.run(changes)
    if options.dry_run:
        return
    if plan.batches:
        if pusher.async_pending:
            pusher.wait_for_jobs(pusher.touched_folders)
        confirm = RunReport(account=report.account, mode=report.mode, run_id=report.run_id)
        # The names the scan saw: a file renamed here whose change is still pending keeps
        # its old name in the row, and a missed name makes the pull list the folder.
        hints = {e.row.base: e.file.filename for e in changes.edits if e.file is not None}
        Puller(api, store, db, pull_opts, confirm, NullProgress(), name_hints=hints).run()
        report.failures.extend(confirm.failures)
        report.notes.extend(confirm.notes)
        report.conflicts += confirm.conflicts
        # What the confirming pull downloaded is real traffic (e.g. the copy in Trash of a
        # mail deleted here); its moves and updates are the echo of this push.
        report.pulled.new += confirm.pulled.new
        report.pulled.bytes += confirm.pulled.bytes
        changes = detect(db, LocalView.scan(store), {a: i for i, (_n, a) in db.labels().items()})
        # A change the server accepted for later (201) and that the confirming pull does not
        # show applied yet stays pending: the next run confirms it, or sends it again (and
        # reports it failed after MAX_ATTEMPTS). Said in the report, never silent.
        waiting = sum(1 for e in changes.edits if e.differs and e.row.uid in pusher.accepted_later)
        if waiting:
            report.notes.append(
                f"{waiting} change(s) accepted by the server for later (HTTP 201) were not "
                "applied yet when this run ended; the next run confirms them or sends them again")
    clear_confirmed(db, {e.row.uid for e in changes.edits if e.differs})


class _IndexHook:
    """The pull's DownloadObserver for the search index. The index (its module, the
    message parser, worker processes) is loaded only once the pull has something to
    download: a run with nothing to do does not import it (about 20 ms of start-up)."""

    def __init__(self, db: StateDB, store: Store) -> None:
        self.db = db
        self.store = store
        self.alongside: IndexAlongside | None = None

    def downloads_started(self, count: int) -> None:
        if self.alongside is None:
            from axsync.archive.index import SearchIndex

            # parsed for the search index while the downloads go on (design.md)
            self.alongside = SearchIndex(self.db, self.store).alongside()
        self.alongside.downloads_started(count)

    def recorded(self) -> None:
        if self.alongside is not None:
            self.alongside.recorded()

    def tick(self) -> None:
        if self.alongside is not None:
            self.alongside.tick()

    def keep_limit(self) -> int:
        return self.alongside.keep_limit() if self.alongside is not None else 0

    def keep(self, dirname: str, filename: str, sha256: str, data: bytes) -> None:
        if self.alongside is not None:
            self.alongside.keep(dirname, filename, sha256, data)

    def finish(self) -> None:
        if self.alongside is not None:
            self.alongside.finish()

    def close(self) -> None:
        if self.alongside is not None:
            self.alongside.close()


def _index(db: StateDB, store: Store, report: RunReport, progress: Progress,
           hook: _IndexHook | None = None) -> None:
    """Keep the offline search index in step (only new or changed messages are read).
    Its work list (``search_queue``) empty and nothing parsed alongside: nothing to do,
    and the index is not even imported."""
    try:
        if (hook is None or hook.alongside is None) and not db.search_pending():
            return
        from axsync.archive.index import SearchIndex

        progress.phase("index")
        if hook is not None:
            hook.finish()
        SearchIndex(db, store).catch_up()  # what the workers could not do, gone messages
    except AxsyncError as exc:  # the archive is fine; searching is behind until next run
        report.notes.append(f"search index not updated: {exc}")


def open_client(account: Account, password: str | None = None,
                transport: object | None = None) -> ApiClient:
    password = password if password is not None else resolve_password(account)
    return ApiClient(
        account.server, account.username, password, concurrency=account.concurrency,
        timeout=account.timeout, verify=account.verify,
        transport=transport,  # type: ignore[arg-type]
    )


def run_account(
    account: Account,
    options: SyncOptions,
    *,
    progress: Progress | None = None,
    client_factory: Callable[[Account], ApiClient] | None = None,
) -> RunReport:
    """One incremental run for ``account``. Returns the report; never raises AxsyncError."""
    progress = progress or NullProgress()
    report = RunReport(account=account.name, mode=account.mode, dry_run=options.dry_run)
    started = time.monotonic()
    api: ApiClient | None = None
    db: StateDB | None = None
    index_hook: _IndexHook | None = None
    run_id = None
    try:
        account.maildir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with AccountLock(account.maildir / "axsync.lock"):
            db = StateDB.open(account.state_path)
            db.ensure_account(account.name, account.server, account.username)
            run_id = db.start_run(account.mode, options.dry_run)
            report.run_id = run_id
            store = Store(account.maildir, compression=account.compression)
            store.ensure_folder("")
            if not options.dry_run:
                # We hold the account lock: any axsync temp file is a killed run's leftover.
                store.cleanup_tmp(max_age_s=0)
            api = client_factory(account) if client_factory else open_client(account)
            pull_opts = PullOptions(
                mode=account.mode, dry_run=options.dry_run, force=options.force,
                concurrency=account.concurrency, excludes=account.exclude,
                max_delete=account.max_delete.limit, stop_after=options.stop_after,
                conflict=account.conflict,
            )
            now = int(time.time())
            first = not db.any_message("state = 'present'")
            unchanged = (account.mode == "sync" and not options.dry_run
                         and _local_unchanged(db, dir_fingerprint(store), now, first))
            # A first sync into an empty archive: everything in it at the end was written
            # by this run, so it counts as a scan (the next run need not list everything).
            fresh = unchanged and first and next(iter(store.scan()), None) is None
            if not options.push_only:
                puller = Puller(api, store, db, pull_opts, report, progress)
                if not options.dry_run and account.index:
                    index_hook = puller.observer = _IndexHook(db, store)
                puller.run()
            if account.mode == "sync" and not options.pull_only:
                if not unchanged or options.push_only:
                    _push(api, store, db, account, options, report, pull_opts)
                if not options.dry_run:
                    _record_fingerprint(db, store, report,
                                        not unchanged or options.push_only or fresh, now)
            if not options.dry_run and account.index:
                _index(db, store, report, progress, index_hook)
            if report.failures:
                report.exit_code = PartialFailure.exit_code
    except AxsyncError as exc:
        report.fatal = str(exc)
        report.exit_code = exc.exit_code
        log.error("account %s: %s", account.name, exc)
    except Exception as exc:  # a bug: record it, keep other accounts going
        log.exception("account %s: unexpected error", account.name)
        report.fatal = f"internal error: {exc.__class__.__name__}: {exc}"
        report.exit_code = exit_code_for(exc)
    finally:
        if index_hook is not None:
            index_hook.close()  # after a failure: keep what was parsed, stop the workers
        progress.close()
        if api is not None:
            report.requests = api.requests
            api.close()
        report.seconds = time.monotonic() - started
        if db is not None:
            if run_id is not None:
                try:
                    db.finish_run(run_id, ok=report.ok, exit_code=report.exit_code,
                                  summary=report.to_json(), errors=report.failures[:1000])
                except AxsyncError as exc:
                    log.error("could not record the run: %s", exc)
            db.close()
    return report
