"""Building a :class:`~axsync.fake.mailbox.Mailbox` from a corpus (what
:mod:`axsync.fake.corpus` generates or loads), typed structurally so the mailbox does not
depend on the corpus module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from axsync.fake.state import FOLDER_ROLES, HIDDEN_LABELS, SPECIAL_ROLES, InvalidError

if TYPE_CHECKING:
    from axsync.fake.mailbox import Mailbox


class CorpusFolderLike(Protocol):
    @property
    def path(self) -> tuple[str, ...]: ...
    @property
    def role(self) -> str: ...


class CorpusMessageLike(Protocol):
    @property
    def folder(self) -> tuple[str, ...]: ...
    @property
    def raw(self) -> bytes: ...
    @property
    def date(self) -> int: ...
    @property
    def unread(self) -> bool: ...
    @property
    def flagged(self) -> bool: ...
    @property
    def draft(self) -> bool: ...
    @property
    def refw(self) -> str: ...
    @property
    def labels(self) -> tuple[str, ...]: ...


class CorpusLike(Protocol):
    """What :mod:`axsync.fake.corpus` produces (``Corpus``)."""

    @property
    def folders(self) -> Sequence[CorpusFolderLike]: ...
    @property
    def labels(self) -> Sequence[str]: ...
    @property
    def messages(self) -> Sequence[CorpusMessageLike]: ...


class CorpusLoader:
    """Builds the mailbox from a corpus. A top-level corpus folder with a special role (or
    a special folder's name) becomes that special folder, renamed to the corpus's name."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mb = mailbox
        self.paths: dict[tuple[str, ...], str] = {}
        self.labels: dict[str, str] = {}
        self.renamed: set[str] = set()

    def load(self, corpus: CorpusLike) -> None:
        for name in corpus.labels:
            self.label(name)
        for item in corpus.folders:
            self.folder(tuple(item.path), item.role)
        for msg in corpus.messages:
            label_ids = [x for x in (self.label(n) for n in msg.labels) if x is not None]
            self.mb.add_mail(
                self.folder(tuple(msg.folder)),
                msg.raw,
                date=msg.date,
                unread=msg.unread,
                flagged=msg.flagged,
                draft=msg.draft,
                refw=msg.refw,
                labels=label_ids,
            )

    def label(self, name: str) -> str | None:
        key = name.casefold()
        if key in HIDDEN_LABELS:
            return None  # the API hides these IMAP keywords
        if key not in self.labels:
            self.labels[key] = self.mb.create_label(name)
        return self.labels[key]

    def folder(self, path: tuple[str, ...], role: str = "") -> str:
        if not path:
            raise InvalidError("empty corpus folder path")
        if path in self.paths:
            return self.paths[path]
        mb = self.mb
        folder_id = self._special(path, role)
        if folder_id is None:
            parent = self.folder(path[:-1]) if len(path) > 1 else mb.container_id
            existing = mb._child_named(parent, path[-1])
            if existing is not None:
                folder_id = existing.id
            else:
                keep = role if role in FOLDER_ROLES and role not in SPECIAL_ROLES else ""
                folder_id = mb.add_folder(path[-1], parent, keep)
        self.paths[path] = folder_id
        return folder_id

    def _special(self, path: tuple[str, ...], role: str) -> str | None:
        if len(path) != 1:
            return None
        mb = self.mb
        if path[0].upper() == "INBOX" or role == "inbox":
            return mb._special["inbox"]
        if role in SPECIAL_ROLES and role not in self.renamed:
            folder = mb._folders[mb._special[role]]
            if mb._child_named(mb.container_id, path[0]) in (None, folder):
                self.renamed.add(role)
                folder.name = path[0]
                return folder.id
        for special in SPECIAL_ROLES:
            folder = mb._folders[mb._special[special]]
            if folder.name.casefold() == path[0].casefold():
                return folder.id
        return None
