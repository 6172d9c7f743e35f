"""What a run reports (the contract's ``sync --json`` object) and how it shows progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class Progress(Protocol):
    """Progress sink; the CLI implements it with tqdm, tests and cron use ``NullProgress``."""

    def phase(self, text: str) -> None: ...
    def add_total(self, messages: int, nbytes: int) -> None: ...
    def advance(self, messages: int, nbytes: int, folder: str) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    def phase(self, text: str) -> None:
        pass

    def add_total(self, messages: int, nbytes: int) -> None:
        pass

    def advance(self, messages: int, nbytes: int, folder: str) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(slots=True)
class Pulled:
    new: int = 0
    updated: int = 0
    moved: int = 0
    deleted: int = 0
    bytes: int = 0


@dataclass(slots=True)
class Pushed:
    flags: int = 0
    labels: int = 0
    moved: int = 0
    deleted: int = 0


@dataclass(slots=True)
class RunReport:
    account: str
    mode: str = "sync"
    dry_run: bool = False
    pulled: Pulled = field(default_factory=Pulled)
    pushed: Pushed = field(default_factory=Pushed)
    conflicts: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    fatal: str | None = None
    exit_code: int = 0
    notes: list[str] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)  # dry-run: per-folder plan
    local_new: int = 0  # files with no state row (kept; see `restore`)
    run_id: int = 0

    def fail(self, item: str, error: str) -> None:
        self.failures.append({"item": item, "error": error})

    @property
    def ok(self) -> bool:
        return self.fatal is None and not self.failures and self.exit_code == 0

    def to_json(self) -> dict[str, Any]:
        p, q = self.pulled, self.pushed
        out: dict[str, Any] = {
            "account": self.account,
            "ok": self.ok,
            "pulled": {"new": p.new, "updated": p.updated, "moved": p.moved,
                       "deleted": p.deleted, "bytes": p.bytes},
            "pushed": {"flags": q.flags, "labels": q.labels, "moved": q.moved, "deleted": q.deleted},
            "conflicts": self.conflicts,
            "failed": len(self.failures),
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "mode": self.mode,
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
        }
        if self.failures:
            out["failures"] = self.failures[:1000]
        if self.fatal:
            out["error"] = self.fatal
        if self.notes:
            out["notes"] = self.notes
        if self.dry_run:
            out["plan"] = self.plan
        if self.local_new:
            out["local_unknown_files"] = self.local_new
        return out
