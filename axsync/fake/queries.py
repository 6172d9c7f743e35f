"""Read side of the fake mailbox: listings, sorting, ranges, deltas, conversations."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from axsync.fake.mime import IMPORTANCE_RANK
from axsync.fake.state import (
    FakeFolder,
    FakeMail,
    InvalidError,
    MailboxBase,
    NotFoundError,
    TokenError,
    _Folder,
    _Mail,
    decode_token,
    encode_token,
)

MAIL_SORT_FIELDS = frozenset(
    {"subject", "from", "to", "date", "size", "isUnread", "isFlagged", "importance",
     "hasAttachments", "folderName"}
)
CONVERSATION_SORT_FIELDS = frozenset(
    {"subject", "from", "to", "date", "isUnread", "isFlagged", "importance", "hasAttachments"}
)
DIRECTIONS = frozenset({"ASC", "DESC"})
_REPLY_PREFIXES = ("re:", "fw:", "fwd:", "aw:", "wg:", "tr:")


def subject_key(subject: str) -> str:
    """A subject for sorting: case-folded, reply/forward prefixes removed."""
    text = subject.strip().casefold()
    while text.startswith(_REPLY_PREFIXES):
        text = text.split(":", 1)[1].strip()
    return text


def _mail_key(name: str) -> Callable[[_Mail], tuple[Any, ...]]:
    keys: dict[str, Callable[[_Mail], Any]] = {
        "size": lambda m: len(m.content.raw),
        "subject": lambda m: subject_key(m.content.info.subject),
        "from": lambda m: m.content.info.from_.casefold(),
        "to": lambda m: m.content.info.to.casefold(),
        "isUnread": lambda m: m.unread,
        "isFlagged": lambda m: m.flagged,
        "importance": lambda m: IMPORTANCE_RANK[m.content.info.importance],
        "hasAttachments": lambda m: m.content.info.has_attachments,
    }
    if name == "date":
        return lambda m: (m.date, m.uid)
    if name == "folderName":
        raise InvalidError("sort by folderName is only valid for search folders")
    primary = keys[name]
    return lambda m: (primary(m), m.date, m.uid)


@dataclass(slots=True)
class MailList:
    sync_token: str
    total: int
    items: list[FakeMail]
    active_index: int = -1


@dataclass(slots=True)
class DeltaPage:
    sync_token: str
    total: int
    more: bool = False
    new: list[FakeMail] = field(default_factory=list)
    replaced: list[FakeMail] = field(default_factory=list)
    updated: list[FakeMail] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)  # (mail id, folder id)


@dataclass(frozen=True, slots=True)
class FolderChange:
    """One folders-delta event. ``folder`` is None for removedFolder."""

    kind: str  # newFolder | changedFolder | removedFolder
    folder_id: str
    folder: FakeFolder | None = None
    path_changed: bool = False
    old_parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConvView:
    """A conversation as seen from one folder: ``members`` are every member outside Spam and
    Trash (oldest first); ``focus`` those in the requested folder (all when none)."""

    id: str
    members: tuple[FakeMail, ...]
    focus: tuple[FakeMail, ...]
    sync_token: str

    @property
    def latest(self) -> FakeMail:
        return max(self.focus, key=lambda m: (m.date, m.id))


@dataclass(slots=True)
class ConversationList:
    sync_token: str
    total: int
    items: list[ConvView]
    active_index: int = -1


def _conv_key(name: str) -> Callable[[ConvView], tuple[Any, ...]]:
    if name == "date":
        return lambda c: (c.latest.date, c.id)
    keys: dict[str, Callable[[ConvView], Any]] = {
        "subject": lambda c: subject_key(c.members[0].info.subject),
        "from": lambda c: c.latest.info.from_.casefold(),
        "to": lambda c: c.latest.info.to.casefold(),
        "isUnread": lambda c: any(m.unread for m in c.members),
        "isFlagged": lambda c: any(m.flagged for m in c.members),
        "importance": lambda c: max(IMPORTANCE_RANK[m.info.importance] for m in c.members),
        "hasAttachments": lambda c: any(m.info.has_attachments for m in c.members),
    }
    primary = keys[name]
    return lambda c: (primary(c), c.latest.date, c.id)


class MailboxQueries(MailboxBase):
    # ------------------------------------------------------------------ folders

    def _ordered_folders(self) -> list[_Folder]:
        """Every folder, parents before children, siblings in creation order."""
        out: list[_Folder] = []
        for top in self._children(self.container_id):
            out.extend(self._subtree(top))
        return out

    def list_folders(self) -> tuple[str, list[FakeFolder]]:
        with self._lock:
            return self._folders_token(), [self._copy_folder(f) for f in self._ordered_folders()]

    def folder(self, folder_id: str) -> FakeFolder:
        with self._lock:
            return self._copy_folder(self._folder(folder_id))

    def usage(self) -> tuple[int, int]:
        """(number of mails, their total size in bytes) over the whole mailbox."""
        with self._lock:
            folders = self._folders.values()
            return sum(f.total for f in folders), sum(f.size for f in folders)

    def unread_in(self, role: str) -> int:
        with self._lock:
            return self._folders[self._special[role]].unread

    def folders_token(self) -> str:
        with self._lock:
            return self._folders_token()

    def folder_delta(self, token: str | None) -> tuple[str, list[FolderChange]]:
        """Folder events since ``token`` (everything as newFolder without one)."""
        with self._lock:
            base = -1
            if token:
                epoch, base = decode_token(token, "f", 2)
                if epoch != self._epoch or base > self._seq:
                    raise TokenError("sync token is no longer valid")
                retention = self.knobs.delta_retention
                if retention is not None and self._seq - base > retention:
                    raise TokenError("sync token expired")
            ordered = self._ordered_folders()
            events = [
                FolderChange("newFolder", f.id, self._copy_folder(f))
                for f in ordered
                if f.created_seq > base
            ]
            changed: list[tuple[int, FolderChange]] = []
            for f in ordered:
                if f.created_seq > base or max(f.path_seq, f.content_seq) <= base:
                    continue
                moved = f.path_seq > base
                old_parent = None
                if moved:
                    old_parent = next((p for s, p in f.parent_history if s > base), f.parent_id)
                change = FolderChange("changedFolder", f.id, self._copy_folder(f), moved, old_parent)
                changed.append((max(f.path_seq, f.content_seq), change))
            changed.sort(key=itemgetter(0))
            events.extend(change for _, change in changed)
            events.extend(
                FolderChange("removedFolder", folder_id)
                for seq, folder_id, created in self._folder_tombs
                if seq > base and created <= base
            )
            return self._folders_token(), events

    # ------------------------------------------------------------------ mails

    def _sorted(self, folder: _Folder, sort: str, direction: str) -> list[_Mail]:
        cached = folder.sort_cache.get((sort, direction))
        if cached is not None and cached[0] == folder.content_seq:
            return cached[1]
        ordered = sorted(folder.mails.values(), key=_mail_key(sort), reverse=direction == "DESC")
        folder.sort_cache[(sort, direction)] = (folder.content_seq, ordered)
        return ordered

    def list_mails(
        self,
        folder_id: str,
        sort: str = "date",
        direction: str = "DESC",
        start: int = 0,
        limit: int = 20,
        active_id: str | None = None,
    ) -> MailList:
        with self._lock:
            folder = self._folder(folder_id)
            ordered = self._sorted(folder, sort, direction)
            items = [self._copy_mail(m) for m in ordered[start : start + limit]]
            active = -1
            if active_id is not None and active_id in folder.mails:
                active = ordered.index(folder.mails[active_id])
            return MailList(self._content_token(folder), len(ordered), items, active)

    def content_token(self, folder_id: str) -> str:
        """The folder's content sync token (changes iff its content changes)."""
        with self._lock:
            return self._content_token(self._folder(folder_id))

    def mail_range(self, start_id: str, limit: int, sort: str, direction: str) -> list[str]:
        """``limit`` mail ids from ``start_id`` on, in its folder sorted by (sort, direction)."""
        with self._lock:
            mail = self._mail(start_id)
            ordered = self._sorted(mail.folder, sort, direction)
            index = ordered.index(mail)
            return [m.id for m in ordered[index : index + limit]]

    def mail_delta(self, folder_id: str, token: str | None, limit: int | None = None) -> DeltaPage:
        with self._lock:
            folder = self._folder(folder_id)
            log = folder.log
            base = pos = -1
            start = 0
            if token:
                num, validity, epoch, base, pos = decode_token(token, "m", 5)
                if (num, validity, epoch) != (folder.num, folder.id_validity, self._epoch):
                    raise TokenError("sync token is no longer valid for this folder")
                if base > pos or pos > self._seq:
                    raise TokenError("invalid sync token")
                start = bisect_right(log, pos, key=itemgetter(0))
                retention = self.knobs.delta_retention
                if retention is not None and len(log) - start > retention:
                    raise TokenError("sync token expired")
            page = DeltaPage(sync_token="", total=folder.total)
            emitted, last = 0, pos
            for index in range(start, len(log)):
                seq, mail_id, removed_created = log[index]
                if folder.latest.get(mail_id) != seq or removed_created > base:
                    continue  # superseded, or added and removed since the token
                if limit is not None and emitted >= limit:
                    page.more = True
                    break
                if removed_created >= 0:
                    page.removed.append((mail_id, folder.id))
                else:
                    mail = folder.mails[mail_id]
                    if mail.created_seq > base:
                        page.new.append(self._copy_mail(mail))
                    elif mail.replaced_seq > base:
                        page.replaced.append(self._copy_mail(mail))
                    else:
                        page.updated.append(self._copy_mail(mail))
                emitted, last = emitted + 1, seq
            if page.more:
                page.sync_token = encode_token(
                    "m", folder.num, folder.id_validity, self._epoch, base, last
                )
            else:
                page.sync_token = self._content_token(folder)
            return page

    # ------------------------------------------------------------------ labels

    def label_list(self) -> tuple[str, list[tuple[str, str]]]:
        with self._lock:
            return encode_token("l", self._labels_seq), list(self._labels.items())

    # ------------------------------------------------------------------ conversations

    def _live_members(self, root: str) -> list[_Mail]:
        members = (self._by_uid[uid] for uid in self._threader.members(root))
        return sorted((m for m in members if not m.folder.excluded), key=lambda m: (m.date, m.uid))

    def _conv_view(self, root: str, folder: _Folder | None = None) -> ConvView:
        live = self._live_members(root)
        if not live:
            raise NotFoundError("no such conversation")
        members = tuple(self._copy_mail(m) for m in live)
        focus = members
        if folder is not None:
            focus = tuple(c for m, c in zip(live, members, strict=True) if m.folder is folder)
        conv_id = self._threader.id_of_root(root)
        token = encode_token("c", conv_id, self._epoch, self._threader.seq(root))
        return ConvView(conv_id, members, focus or members, token)

    def _conv_root(self, conv_id: str) -> str:
        root = self._threader.root_for(conv_id)
        if root is None:
            raise NotFoundError(f"no conversation {conv_id!r}")
        return root

    def conversation_view(self, conv_id: str, folder_id: str | None = None) -> ConvView:
        with self._lock:
            folder = self._folder(folder_id) if folder_id is not None else None
            return self._conv_view(self._conv_root(conv_id), folder)

    def conversation_of_mail(self, mail_id: str) -> str:
        with self._lock:
            mail = self._mail(mail_id)
            if mail.folder.excluded:
                raise NotFoundError("mails in Spam and Trash have no conversation")
            return self._threader.conversation_of(mail.uid)

    def _conversations_in(
        self, folder: _Folder, sort: str, direction: str
    ) -> tuple[list[ConvView], int]:
        """The folder's conversations, sorted, and the newest change among them."""
        if folder.excluded:
            raise InvalidError("conversations do not cover Spam, Trash and their subfolders")
        roots = dict.fromkeys(self._threader.root_of(m.uid) for m in folder.mails.values())
        views = [self._conv_view(root, folder) for root in roots]
        views.sort(key=_conv_key(sort), reverse=direction == "DESC")
        return views, max((self._threader.seq(root) for root in roots), default=0)

    def conversation_list(
        self,
        folder_id: str,
        sort: str = "date",
        direction: str = "DESC",
        start: int = 0,
        limit: int = 20,
        active_id: str | None = None,
    ) -> ConversationList:
        with self._lock:
            folder = self._folder(folder_id)
            views, newest = self._conversations_in(folder, sort, direction)
            token = encode_token("cl", folder.num, self._epoch, folder.content_seq, newest)
            ids = [v.id for v in views]
            active = ids.index(active_id) if active_id in ids else -1
            return ConversationList(token, len(views), views[start : start + limit], active)

    def conversation_range(
        self, start_id: str, limit: int, folder_id: str, sort: str, direction: str
    ) -> list[str]:
        with self._lock:
            views, _ = self._conversations_in(self._folder(folder_id), sort, direction)
            ids = [v.id for v in views]
            if start_id not in ids:
                raise NotFoundError(f"conversation {start_id!r} is not in folder {folder_id!r}")
            index = ids.index(start_id)
            return ids[index : index + limit]
