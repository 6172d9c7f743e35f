"""Restore: the archive (or one folder of it, as it was on a date) into any IMAP account.

The REST API cannot upload a raw message, so restore speaks IMAP. See docs/migration.md.
"""

from __future__ import annotations

from axsync.restore.executor import (
    MEMORY_LIMIT,
    NullProgress,
    RestoreOptions,
    RestoreProgress,
    RestoreReport,
    restore,
)
from axsync.restore.target import ImapTarget, imap_password, parse_as_of, parse_imap_url

__all__ = [
    "MEMORY_LIMIT",
    "ImapTarget",
    "NullProgress",
    "RestoreOptions",
    "RestoreProgress",
    "RestoreReport",
    "imap_password",
    "parse_as_of",
    "parse_imap_url",
    "restore",
]
