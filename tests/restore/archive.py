"""Build a source archive for restore tests with the real store writer and StateDB.

``build_archive(root, corpus)`` writes every corpus message the way a pull does: folder
directories by :func:`assign_dirname`, labels as keywords in ``dovecot-keywords``, the
file compressed into ``cur/`` with its flags and internal date as mtime, one
``messages`` row (and so one ``message_history`` row) per message. History times can be
set afterwards with :func:`set_history_time` to simulate changes made on given days.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

from axsync.fake.corpus import Corpus, CorpusFolder, CorpusMessage
from axsync.statedb import FolderRow, StateDB
from axsync.store import Store, assign_dirname, label_to_atom

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z: when the archive was first filled


@dataclass
class Archive:
    root: Path
    store: Store
    db: StateDB
    folder_ids: dict[tuple[str, ...], str] = field(default_factory=dict)
    dirnames: dict[tuple[str, ...], str] = field(default_factory=dict)
    label_ids: dict[str, str] = field(default_factory=dict)
    uids: list[int] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        return self.root / "axsync.sqlite"


def letters_of(msg: CorpusMessage) -> str:
    out = ""
    if msg.draft:
        out += "D"
    if msg.flagged:
        out += "F"
    if "re" in msg.refw:
        out += "R"
    if not msg.unread:
        out += "S"
    return out


def header_message_id(raw: bytes) -> str:
    value = BytesHeaderParser(policy=compat32).parsebytes(raw).get("Message-ID")
    return str(value).strip() if value else ""


def build_archive(root: Path, corpus: Corpus, *, compression: str = "zstd") -> Archive:
    store = Store(root, compression=compression)
    store.ensure_folder("")
    db = StateDB.open(root / "axsync.sqlite")
    db.ensure_account("t", "https://axigen.invalid", "alice@example.com")
    arc = Archive(root, store, db)
    folders: list[CorpusFolder] = list(corpus.folders)
    if not any(f.path == ("INBOX",) for f in folders):
        folders.insert(0, CorpusFolder(("INBOX",), "inbox"))
    with db.transaction():
        for i, folder in enumerate(folders):
            fid = f"F{i}"
            dirname = "" if folder.path == ("INBOX",) else assign_dirname(
                folder.path, {d: p for p, d in arc.dirnames.items()})
            store.ensure_folder(dirname, folder.path)
            arc.folder_ids[folder.path] = fid
            arc.dirnames[folder.path] = dirname
            db.upsert_folder(FolderRow(fid, None, folder.path[-1], folder.path, dirname,
                                       folder.role, None, None, None, None, False, "present"), T0)
        arc.label_ids = {name: f"L{i}" for i, name in enumerate(corpus.labels)}
        db.replace_labels((lid, name, label_to_atom(name)) for name, lid in arc.label_ids.items())
        for msg in corpus.messages:
            arc.uids.append(add_message(arc, msg))
        db.execute("UPDATE message_history SET at = ?", (T0,))
    return arc


def add_message(arc: Archive, msg: CorpusMessage) -> int:
    dirname = arc.dirnames[msg.folder]
    atoms = [label_to_atom(name) for name in msg.labels]
    mapping = arc.store.ensure_keywords(dirname, atoms) if atoms else {}
    letters = letters_of(msg)
    with arc.store.writer(dirname) as writer:
        writer.write(msg.raw)
        stored = writer.commit(letters + "".join(mapping.values()), msg.date)
    now = int(time.time())
    return arc.db.insert_message({
        "mail_id": f"M{len(arc.uids)}", "folder_id": arc.folder_ids[msg.folder],
        "dirname": dirname, "base": stored.base, "filename": stored.filename,
        "size": stored.size, "server_size": stored.size, "vsize": stored.vsize,
        "sha256": stored.sha256, "compression": arc.store.compression, "flags": letters,
        "refw": msg.refw, "label_ids": [arc.label_ids[name] for name in msg.labels],
        "internal_date": msg.date, "message_id": header_message_id(msg.raw),
        "subject": "", "from_addr": "", "state": "present", "first_seen": now, "last_seen": now,
    })


def set_history_time(db: StateDB, uid: int, at: int) -> None:
    """Date the newest history row of ``uid`` (the change just made) to ``at``."""
    db.execute("UPDATE message_history SET at = ? WHERE rowid = "
               "(SELECT max(rowid) FROM message_history WHERE uid = ?)", (at, uid))
