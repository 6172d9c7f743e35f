"""The restore log (table ``restore_log``, ``state/0003_restore.sql``) in the state DB."""

from __future__ import annotations

import time

from axsync.restore.plan import LogEntry
from axsync.statedb import StateDB


class RestoreLog:
    """Rows of one target identity (``user@host:port``)."""

    def __init__(self, db: StateDB, target: str) -> None:
        self.db = db
        self.target = target

    def entries(self, folder: str) -> dict[int, LogEntry]:
        """messages.uid → log row, for one target mailbox."""
        cur = self.db.execute(
            "SELECT uid, uidvalidity, target_uid FROM restore_log WHERE target = ? AND folder = ?",
            (self.target, folder),
        )
        return {int(u): LogEntry(int(u), v, t) for u, v, t in cur.fetchall()}

    def record(self, folder: str, uid: int, uidvalidity: int | None, target_uid: int | None,
               now: int | None = None) -> None:
        """One APPEND the server confirmed; committed at once (a kill right after loses
        at most this row, and the target's listing still shows the message)."""
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO restore_log (target, folder, uid, uidvalidity, target_uid, appended_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(target, folder, uid) DO UPDATE SET "
                "uidvalidity = excluded.uidvalidity, target_uid = excluded.target_uid, "
                "appended_at = excluded.appended_at",
                (self.target, folder, uid, uidvalidity, target_uid,
                 int(time.time()) if now is None else now),
            )

    def count(self) -> int:
        cur = self.db.execute("SELECT count(*) FROM restore_log WHERE target = ?", (self.target,))
        return int(cur.fetchone()[0])
