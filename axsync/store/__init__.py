"""The Maildir store: axsync's zstd-compressed, Dovecot-compatible Maildir++ archive.

Pure file system (no network, no database). The on-disk format is specified in
``docs/maildir-format.md``.
"""

from __future__ import annotations

from axsync.store.compress import (
    Compressor,
    compress_bytes,
    detect,
    open_message,
    read_message,
)
from axsync.store.keywords import (
    atom_to_label,
    ensure_keywords,
    is_atom,
    keywords_of,
    label_to_atom,
    read_keywords,
)
from axsync.store.maildir import LocalFile, Store, is_message_name
from axsync.store.names import (
    FLAG_ANSWERED,
    FLAG_COMPRESSED,
    FLAG_DELETED,
    FLAG_DRAFT,
    FLAG_FLAGGED,
    FLAG_PASSED,
    FLAG_SEEN,
    KEYWORD_LETTERS,
    ParsedName,
    assign_dirname,
    check_unique,
    folder_dirname,
    folder_path,
    format_name,
    is_safe_dirname,
    new_unique,
    normalize_flags,
    parse_name,
    safe_host,
    with_flags,
)
from axsync.store.writer import MessageWriter, StoredFile

__all__ = [
    "FLAG_ANSWERED",
    "FLAG_COMPRESSED",
    "FLAG_DELETED",
    "FLAG_DRAFT",
    "FLAG_FLAGGED",
    "FLAG_PASSED",
    "FLAG_SEEN",
    "KEYWORD_LETTERS",
    "Compressor",
    "LocalFile",
    "MessageWriter",
    "ParsedName",
    "Store",
    "StoredFile",
    "assign_dirname",
    "atom_to_label",
    "check_unique",
    "compress_bytes",
    "detect",
    "ensure_keywords",
    "folder_dirname",
    "folder_path",
    "format_name",
    "is_atom",
    "is_message_name",
    "is_safe_dirname",
    "keywords_of",
    "label_to_atom",
    "new_unique",
    "normalize_flags",
    "open_message",
    "parse_name",
    "read_keywords",
    "read_message",
    "safe_host",
    "with_flags",
]
