"""Restore: archive → any IMAP server, idempotently (:func:`restore`).

1. :func:`~axsync.restore.source.load_source` picks the messages (``--folder``,
   ``--as-of``) with their target folder, flags and match key;
2. connect and log in; the personal namespace (prefix, separator) comes from NAMESPACE,
   else from ``LIST "" ""``;
3. every target mailbox concerned is SELECTed and listed (UID, RFC822.SIZE,
   INTERNALDATE, Message-ID; the first bytes of messages without Message-ID when the
   archive side has such messages) and :func:`~axsync.restore.plan.plan_folder` decides
   with the restore log what to append — all before the first APPEND, so the progress
   total and ``--dry-run`` are exact;
4. missing mailboxes are CREATEd; each message is APPENDed with its flags, keywords and
   INTERNALDATE, its bytes read back from the archive (sha256 checked first), bare LF
   sent as CRLF; each confirmed APPEND is logged at once.

Messages up to :data:`MEMORY_LIMIT` are read into memory; larger ones are streamed
twice from the archive (once to count and check, once to send) and never held whole.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from axsync.errors import ApiError, AuthError, IntegrityError, StoreError
from axsync.restore import wire
from axsync.restore.client import CommandFailed, ImapClient, Literal, Mailbox
from axsync.restore.journal import RestoreLog
from axsync.restore.plan import (
    FolderPlan,
    SourceItem,
    TargetFolder,
    TargetMessage,
    allowed_flags,
    plan_folder,
    target_mailbox,
)
from axsync.restore.source import load_source
from axsync.restore.target import ImapTarget
from axsync.statedb import StateDB
from axsync.store import Store

MEMORY_LIMIT = 16 * 1024 * 1024
"""Messages larger than this (uncompressed) are streamed instead of read whole."""
_CHUNK = 256 * 1024


class RestoreProgress(Protocol):
    def start(self, messages: int, nbytes: int) -> None: ...
    def advance(self, nbytes: int, folder: str) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    def start(self, messages: int, nbytes: int) -> None:
        pass

    def advance(self, nbytes: int, folder: str) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(slots=True)
class RestoreOptions:
    folder: str | None = None
    as_of: int | None = None
    keep_deleted: bool = False
    dry_run: bool = False
    timeout: float = 60.0


@dataclass(slots=True)
class RestoreReport:
    account: str
    target: str
    dry_run: bool = False
    as_of: int | None = None
    appended: int = 0
    skipped_existing: int = 0
    folders_created: int = 0
    bytes: int = 0
    seconds: float = 0.0
    unrestorable: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)
    fatal: str | None = None
    exit_code: int = 0

    def fail(self, item: str, error: str) -> None:
        self.failures.append({"item": item, "error": error})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "account": self.account, "target": self.target,
            "ok": self.exit_code == 0, "dry_run": self.dry_run, "as_of": self.as_of,
            "appended": self.appended, "skipped_existing": self.skipped_existing,
            "failed": len(self.failures), "unrestorable": self.unrestorable,
            "folders_created": self.folders_created, "bytes": self.bytes,
            "seconds": round(self.seconds, 3), "exit_code": self.exit_code,
        }
        if self.failures:
            out["failures"] = self.failures[:1000]
        if self.fatal:
            out["error"] = self.fatal
        if self.notes:
            out["notes"] = self.notes
        if self.dry_run:
            out["plan"] = self.plan
        return out


@dataclass(slots=True)
class _Folder:
    name: str
    items: list[SourceItem]
    exists: bool
    box: Mailbox | None = None
    plan: FolderPlan = field(default_factory=FolderPlan)


def restore(db: StateDB, store: Store, target: ImapTarget, password: str, *, account: str,
            options: RestoreOptions, progress: RestoreProgress | None = None) -> RestoreReport:
    """Run one restore; never raises for server or item problems: they end up in the
    report (``fatal`` + ``exit_code`` 3 or 5, or ``failures`` + exit 1)."""
    started = time.monotonic()
    report = RestoreReport(account, target.identity, dry_run=options.dry_run, as_of=options.as_of)
    progress = progress or NullProgress()
    source = load_source(db, store, as_of=options.as_of, folder=options.folder,
                         keep_deleted=options.keep_deleted)
    report.failures.extend(source.problems)
    report.unrestorable = source.unrestorable
    client: ImapClient | None = None
    try:
        client = ImapClient.connect(target, timeout=options.timeout)
        client.login(target.user, password)
        folders = _plan(client, source.items, RestoreLog(db, target.identity), report)
        if not options.dry_run:
            _execute(client, store, folders, RestoreLog(db, target.identity), report, progress)
    except (ApiError, AuthError) as exc:
        report.fatal = str(exc)
        report.exit_code = exc.exit_code
    finally:
        progress.close()
        if client is not None:
            client.logout()
    report.seconds = time.monotonic() - started
    if report.fatal is None:
        report.exit_code = 1 if report.failures else 0
    return report


def _plan(client: ImapClient, items: list[SourceItem], log: RestoreLog,
          report: RestoreReport) -> list[_Folder]:
    namespace = client.namespace()
    if namespace is not None:
        prefix, separator = namespace
    else:
        prefix, separator = "", next(iter(client.list_mailboxes("").values()), (None, None))[1]
    existing = {name.upper() if name.upper() == "INBOX" else name
                for name, (attrs, _sep) in client.list_mailboxes("*").items()
                if not attrs & {"\\noselect", "\\nonexistent"}}
    groups: dict[str, list[SourceItem]] = defaultdict(list)
    for item in items:
        groups[target_mailbox(item.folder, separator, prefix)].append(item)
    folders: list[_Folder] = []
    for name in sorted(groups, key=lambda n: (n != "INBOX", n)):
        folder = _Folder(name, groups[name], name in existing)
        try:
            target = _survey(client, folder)
        except CommandFailed as exc:
            for item in folder.items:
                report.fail(_describe(item, name), f"cannot open target mailbox: {exc}")
            continue
        folder.plan = plan_folder(folder.items, target, log.entries(name))
        report.skipped_existing += len(folder.plan.skipped)
        report.plan.append({
            "folder": name, "create": not folder.exists, "append": len(folder.plan.append),
            "skip": len(folder.plan.skipped),
            "bytes": sum(i.size for i in folder.plan.append),
        })
        folders.append(folder)
    return folders


def _survey(client: ImapClient, folder: _Folder) -> TargetFolder:
    if not folder.exists:
        return TargetFolder(exists=False)
    folder.box = client.select(folder.name)
    try:
        listed = client.listing() if folder.box.exists else []
        need_heads = any(i.key[0] == "fp" for i in folder.items)
        heads = client.heads(m.uid for m in listed if not m.message_id) if need_heads else {}
    finally:
        client.unselect()
    messages = []
    for m in listed:
        if m.message_id:
            key = ("msgid", m.message_id, m.size)
        else:
            key = ("fp", wire.fingerprint(m.size, m.internal_date, heads.get(m.uid, b"")), m.size)
        messages.append(TargetMessage(m.uid, key))
    return TargetFolder(True, folder.box.uidvalidity, tuple(messages))


def _execute(client: ImapClient, store: Store, folders: list[_Folder], log: RestoreLog,
             report: RestoreReport, progress: RestoreProgress) -> None:
    todo = [f for f in folders if f.plan.append]
    progress.start(sum(len(f.plan.append) for f in todo),
                   sum(i.size for f in todo for i in f.plan.append))
    limit = next((int(c.split("=", 1)[1]) for c in client.capabilities
                  if c.startswith("APPENDLIMIT=") and c.split("=", 1)[1].isdigit()), None)
    binary_ok = "BINARY" in client.capabilities
    dropped: set[str] = set()
    for index, folder in enumerate(todo):
        if not folder.exists:
            try:
                _create(client, folder)
                report.folders_created += 1
            except CommandFailed as exc:
                for item in folder.plan.append:
                    report.fail(_describe(item, folder.name), f"cannot create mailbox: {exc}")
                continue
        assert folder.box is not None
        for n, item in enumerate(folder.plan.append):
            flags, lost = allowed_flags(item.flags, folder.box.permanent)
            dropped.update(lost)
            try:
                if limit is not None and item.size > limit:
                    raise CommandFailed(f"larger than the server's APPENDLIMIT of {limit} bytes")
                literal = _literal(store, item, binary_ok)
                uid = client.append(folder.name, flags, item.internal_date, literal)
            except (StoreError, IntegrityError) as exc:
                report.fail(_describe(item, folder.name), f"archive: {exc}")
                continue
            except CommandFailed as exc:
                report.fail(_describe(item, folder.name), f"refused by the server: {exc}")
                if exc.code == "OVERQUOTA":
                    rest = [(f.name, i) for f in todo[index:] for i in f.plan.append
                            if f is not folder or i in folder.plan.append[n + 1 :]]
                    for name, other in rest:
                        report.fail(_describe(other, name), "not attempted: the target is over quota")
                    return
                continue
            validity = uid[0] if uid else folder.box.uidvalidity
            log.record(folder.name, item.uid, validity, uid[1] if uid else None)
            report.appended += 1
            report.bytes += item.size
            progress.advance(item.size, folder.name)
    if dropped:
        report.notes.append("keywords the target cannot store were left out: "
                            + " ".join(sorted(dropped)))


def _create(client: ImapClient, folder: _Folder) -> None:
    try:
        client.create(folder.name)
    except CommandFailed as exc:
        if exc.code != "ALREADYEXISTS":
            raise
    folder.box = client.select(folder.name)
    client.unselect()
    folder.exists = True


def _describe(item: SourceItem, folder: str) -> str:
    return f"uid {item.uid} -> {folder}"


def _literal(store: Store, item: SourceItem, binary_ok: bool) -> Literal:
    """The message as an APPEND literal (bare LF → CRLF), after checking its sha256."""
    if item.raw_size <= MEMORY_LIMIT:
        data = store.read_message(*_where(store, item))
        _check(item, len(data), hashlib.sha256(data).hexdigest())
        payload = wire.crlf(data)
        return Literal(len(payload), (payload,), binary=binary_ok and b"\0" in data)
    size, raw_size, digest, nul = 0, 0, hashlib.sha256(), False
    for raw, converted in _read(store, item):
        raw_size += len(raw)
        size += len(converted)
        digest.update(raw)
        nul = nul or b"\0" in raw
    _check(item, raw_size, digest.hexdigest())
    return Literal(size, (c for _r, c in _read(store, item)), binary=binary_ok and nul)


def _read(store: Store, item: SourceItem) -> Iterator[tuple[bytes, bytes]]:
    converter = wire.LfToCrlf()
    with store.open_message(*_where(store, item)) as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk, converter.feed(chunk)


def _where(store: Store, item: SourceItem) -> tuple[str, str, str]:
    """(dirname, subdir, filename) of the item's file now (flags may have renamed it)."""
    found = store.locate(item.dirname, item.base, hint=item.filename)
    if found is None:
        raise StoreError(f"{item.filename} vanished from {item.dirname or 'INBOX'}", missing=True)
    return found.dirname, found.subdir, found.filename


def _check(item: SourceItem, size: int, sha256: str) -> None:
    if size != item.raw_size or sha256 != item.sha256:
        raise IntegrityError(f"{item.filename} does not match its recorded size and sha256 "
                             "(run `axsync verify`)")
