"""``axsync verify`` and ``axsync status``: what the archive holds against what the state DB
records (and, with ``--remote``, against the server). Read-only everywhere."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from axsync.api import ApiClient
from axsync.errors import AxsyncError
from axsync.statedb import StateDB
from axsync.store import Store
from axsync.sync.plan import server_letters


@dataclass
class VerifyReport:
    checked: int = 0
    ok: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    unknown_files: list[str] = field(default_factory=list)
    remote_checked: int = 0
    remote_problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.corrupt or self.remote_problems)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.clean, "checked": self.checked, "verified": self.ok,
            "missing": self.missing, "corrupt": self.corrupt,
            "unknown_files": self.unknown_files, "remote_checked": self.remote_checked,
            "remote_problems": self.remote_problems,
        }


def verify_local(db: StateDB, store: Store) -> VerifyReport:
    """Every archived file exists, decompresses, and matches its recorded size and sha256."""
    report = VerifyReport()
    index: dict[str, tuple[str, str, str]] = {}
    for f in store.scan():
        index[f.base] = (f.dirname, f.subdir, f.filename)
    seen: set[str] = set()
    for row in db.messages_where("state IN ('present', 'deleted')"):
        report.checked += 1
        seen.add(row.base)
        hit = index.get(row.base)
        ref = f"uid {row.uid} ({row.dirname or 'INBOX'}/{row.base})"
        if hit is None:
            report.missing.append(ref)
            continue
        try:
            digest, size, _vsize = store.digest(*hit)
        except (AxsyncError, OSError, EOFError, ValueError) as exc:
            report.corrupt.append(f"{ref}: {exc}")
            continue
        except Exception as exc:  # zstd/gzip raise their own error types on corrupt data
            report.corrupt.append(f"{ref}: {exc.__class__.__name__}: {exc}")
            continue
        if digest != row.sha256 or size != row.size:
            report.corrupt.append(f"{ref}: size/sha256 differ from the state DB")
            continue
        report.ok += 1
    for base, (dirname, subdir, filename) in index.items():
        if base not in seen:
            report.unknown_files.append(f"{dirname or 'INBOX'}/{subdir}/{filename}")
    return report


def verify_remote(db: StateDB, api: ApiClient, report: VerifyReport) -> None:
    """Compare ids, sizes and flags of every synced folder with a fresh server listing."""
    for folder in db.folders():
        if folder.state != "present" or folder.excluded:
            continue
        _token, mails = api.list_all_mails(folder.id)
        known = {r.mail_id: r for r in db.messages_in_folder(folder.id)}
        path = "/".join(folder.path)
        for mail in mails:
            report.remote_checked += 1
            row = known.pop(mail.id, None)
            if row is None:
                report.remote_problems.append(f"{path}: server mail {mail.id} is not archived")
                continue
            if row.server_size is not None and row.server_size != mail.size:
                report.remote_problems.append(f"{path}: mail {mail.id} size {mail.size} != {row.server_size}")
            letters = server_letters(mail.flags)
            if "R" not in letters and "R" in row.flags and not mail.flags.refw_flags:
                letters = letters  # refw may be missing from listings; compare the rest
            if set(letters) - {"R"} != set(row.flags) - {"R"}:
                report.remote_problems.append(
                    f"{path}: mail {mail.id} flags {letters!r} on the server, {row.flags!r} archived")
            if sorted(mail.label_ids) != sorted(row.label_ids):
                report.remote_problems.append(f"{path}: mail {mail.id} labels differ")
        for mail_id in known:
            report.remote_problems.append(f"{path}: archived mail {mail_id} is not on the server")


def status(db: StateDB, store: Store | None) -> dict[str, Any]:
    """Last run, counts per folder, pending local changes, recent conflicts."""
    folders = []
    counts: Counter[tuple[str, str]] = Counter()
    for dirname, state, n in db.execute(
        "SELECT dirname, state, count(*) FROM messages GROUP BY dirname, state"
    ).fetchall():
        counts[(dirname, state)] = n
    for f in db.folders():
        folders.append({
            "folder": "/".join(f.path), "dirname": f.dirname, "server_id": f.id,
            "excluded": f.excluded, "state": f.state,
            "messages": counts[(f.dirname, "present")],
            "deleted_on_server": counts[(f.dirname, "deleted")],
        })
    pending: dict[str, int] = {"flag_changes": 0, "moved": 0, "deleted": 0, "unknown_files": 0}
    if store is not None:
        index = {f.base: f for f in store.scan()}
        for row in db.messages_where("state = 'present'"):
            lf = index.pop(row.base, None)
            if lf is None:
                pending["deleted"] += 1
                continue
            if lf.dirname != row.dirname:
                pending["moved"] += 1
            if lf.filename != row.filename:
                pending["flag_changes"] += 1
        known_bases = {r[0] for r in db.execute("SELECT base FROM messages").fetchall()}
        pending["unknown_files"] = sum(1 for b in index if b not in known_bases)
    runs = db.last_runs(1)
    acc = db.account() or {}
    return {
        "account": acc.get("name"), "server": acc.get("server"),
        "server_version": acc.get("server_version"),
        "last_run": runs[0] if runs else None,
        "messages": db.count_messages("state = 'present'"),
        "deleted_on_server": db.count_messages("state = 'deleted'"),
        "folders": folders,
        "pending_local_changes": pending,
        "conflicts": db.conflicts(20),
    }
