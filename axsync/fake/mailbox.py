"""The fake Axigen mailbox: folders, mails, labels and conversations in memory.

No HTTP here. Every public method takes the one lock, so tests can play "another client"
from their own thread while the server handles requests. The HTTP routes call the same
methods. Reads live in :mod:`axsync.fake.queries`, records and primitives in
:mod:`axsync.fake.state`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable

from axsync.fake.knobs import Knobs
from axsync.fake.loader import CorpusLike, CorpusLoader
from axsync.fake.mime import MailContent
from axsync.fake.queries import (
    ConversationList,
    ConvView,
    DeltaPage,
    FolderChange,
    MailboxQueries,
    MailList,
)
from axsync.fake.state import (
    FOLDER_ROLES,
    FOLDER_TYPES,
    HIDDEN_LABELS,
    MAX_FOLDER_NAME,
    MAX_LABEL_NAME,
    REFW_VALUES,
    SPECIAL_ROLES,
    FakeError,
    FakeFolder,
    FakeMail,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    TokenError,
    _Folder,
    _Mail,
)

__all__ = [
    "ConvView",
    "ConversationList",
    "CorpusLike",
    "DeltaPage",
    "FakeError",
    "FakeFolder",
    "FakeMail",
    "FolderChange",
    "ForbiddenError",
    "InvalidError",
    "MailList",
    "Mailbox",
    "NotFoundError",
    "TokenError",
]

SPECIAL_NAMES = {"inbox": "INBOX", "drafts": "Drafts", "sent": "Sent", "trash": "Trash", "junk": "Spam"}


class Mailbox(MailboxQueries):
    def __init__(self, corpus: CorpusLike | None = None, *, knobs: Knobs | None = None) -> None:
        super().__init__(knobs)
        with self._lock:
            for role in SPECIAL_ROLES:
                self._create_folder(SPECIAL_NAMES[role], self.container_id, role, "mails")
            if corpus is not None:
                CorpusLoader(self).load(corpus)

    def warm(self) -> int:
        """Work out now what the listings show of every message (headers, snippet,
        attachments; otherwise done at its first listing), as a real server has it in its
        index: a benchmark's first run must not pay for the fake's start-up. Returns the
        number of messages."""
        with self._lock:
            contents = [m.content for f in self._folders.values() for m in f.mails.values()]
        for content in contents:
            content.info  # noqa: B018 -- computed once, cached on the content
        return len(contents)

    # ------------------------------------------------------------------ folders (read)

    def folder_id(self, path: tuple[str, ...] | str) -> str:
        parts = tuple(path.split("/")) if isinstance(path, str) else path
        with self._lock:
            parent = self.container_id
            for name in parts:
                child = self._child_named(parent, name)
                if child is None:
                    raise NotFoundError(f"no folder {'/'.join(parts)!r}")
                parent = child.id
            return parent

    def folder_path(self, folder_id: str) -> tuple[str, ...]:
        with self._lock:
            return self._path(self._folder(folder_id))

    def folders(self) -> list[FakeFolder]:
        return self.list_folders()[1]

    def special_folder_id(self, role: str) -> str:
        """The id of the special folder with ``role`` (inbox, drafts, sent, trash, junk)."""
        return self._special[role]

    def _child_named(self, parent_id: str, name: str) -> _Folder | None:
        for child in self._children(parent_id):
            if child.name == name:
                return child
            if parent_id == self.container_id and child.role == "inbox" and name.upper() == "INBOX":
                return child
        return None

    # ------------------------------------------------------------------ folders (write)

    def _check_folder_name(self, name: str, parent_id: str, itself: str | None = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise InvalidError("folder name is empty")
        if len(name) > MAX_FOLDER_NAME:
            raise InvalidError("folder name too long")
        if any(ch in "\0\r\n" for ch in name):
            raise InvalidError("folder names cannot contain NUL, CR or LF")
        other = self._child_named(parent_id, name)
        if other is not None and other.id != itself:
            raise InvalidError(f"a folder named {name!r} already exists there")

    def _parent(self, parent_id: str | None) -> str:
        if parent_id is None or parent_id == self.container_id:
            return self.container_id
        self._folder(parent_id)
        return parent_id

    def _create_folder(self, name: str, parent_id: str, role: str, folder_type: str) -> _Folder:
        seq = self._tick()
        num, folder_id = self._new_obj_id()
        parent = self._folders.get(parent_id)
        folder = _Folder(
            num=num,
            id=folder_id,
            name=name,
            parent_id=parent_id,
            role=role,
            folder_type=folder_type,
            id_validity=self._new_validity(),
            created_seq=seq,
            content_seq=seq,
            in_trash=role == "trash" or (parent is not None and parent.in_trash),
            excluded=role in ("trash", "junk") or (parent is not None and parent.excluded),
        )
        self._folders[folder_id] = folder
        self._folders_seq = seq
        if role in SPECIAL_ROLES:
            self._special[role] = folder_id
        return folder

    def add_folder(
        self, name: str, parent_id: str | None = None, role: str = "", *, folder_type: str | None = None
    ) -> str:
        with self._lock:
            parent_id = self._parent(parent_id)
            if role not in FOLDER_ROLES or role in SPECIAL_ROLES:
                raise InvalidError(f"role {role!r} cannot be given to a new folder")
            parent = self._folders.get(parent_id)
            inherited = parent.folder_type if parent is not None else "mails"
            if folder_type is None:
                folder_type = inherited
            elif folder_type not in FOLDER_TYPES:
                raise InvalidError(f"unknown folder type {folder_type!r}")
            elif parent is not None and folder_type != inherited:
                raise InvalidError("folder type does not match the parent's")
            self._check_folder_name(name, parent_id)
            return self._create_folder(name, parent_id, role, folder_type).id

    def _movable(self, folder_id: str) -> _Folder:
        folder = self._folder(folder_id)
        if folder.role in SPECIAL_ROLES and self._special.get(folder.role) == folder.id:
            raise ForbiddenError("special folders cannot be renamed, moved or deleted")
        return folder

    def rename_folder(self, folder_id: str, name: str) -> None:
        with self._lock:
            folder = self._movable(folder_id)
            if name == folder.name:
                return
            self._check_folder_name(name, folder.parent_id, folder.id)
            seq = self._tick()
            folder.name = name
            folder.path_seq = self._folders_seq = seq

    def move_folder(self, folder_id: str, parent_id: str) -> None:
        with self._lock:
            folder = self._movable(folder_id)
            parent_id = self._parent(parent_id)
            if parent_id == folder.parent_id:
                return
            if any(f.id == parent_id for f in self._subtree(folder)):
                raise InvalidError("a folder cannot be moved below itself")
            parent = self._folders.get(parent_id)
            if parent is not None and parent.folder_type != folder.folder_type:
                raise InvalidError("folder type does not match the new parent's")
            self._check_folder_name(folder.name, parent_id, folder.id)
            self._reparent(folder, parent_id, folder.name)

    def _reparent(self, folder: _Folder, parent_id: str, name: str) -> None:
        seq = self._tick()
        folder.parent_history.append((seq, folder.parent_id))
        folder.parent_id, folder.name = parent_id, name
        folder.path_seq = self._folders_seq = seq
        self._refresh_tree(seq)

    def delete_folder(self, folder_id: str) -> None:
        """Into Trash (renamed "name (2)" etc. if Trash has one of that name already);
        permanent, with everything below it, when it is in Trash already."""
        with self._lock:
            folder = self._movable(folder_id)
            if not folder.in_trash:
                trash = self._special["trash"]
                name, n = folder.name, 1
                while self._child_named(trash, name) is not None:
                    n += 1
                    name = f"{folder.name} ({n})"
                self._reparent(folder, trash, name)
                return
            for item in reversed(self._subtree(folder)):
                for mail in list(item.mails.values()):
                    self._forget(mail, self._tick())
                seq = self._tick()
                self._folder_tombs.append((seq, item.id, item.created_seq))
                self._folders_seq = seq
                del self._folders[item.id]

    def reset_id_validity(self, folder_id: str) -> None:
        """Give every mail in the folder a new id and the folder a new idValidity."""
        with self._lock:
            folder = self._folder(folder_id)
            folder.id_validity = self._new_validity()
            mails = list(folder.mails.values())
            folder.mails.clear()
            folder.log.clear()
            folder.latest.clear()
            for mail in mails:
                seq = self._tick()
                del self._mails[mail.id]
                mail.id = self._new_mail_id(folder)
                mail.created_seq = seq
                folder.mails[mail.id] = mail
                self._mails[mail.id] = mail
                self._log(folder, mail.id, seq)
                self._threader.touch(mail.uid, seq)
            if not mails:
                folder.content_seq = self._folders_seq = self._tick()

    def expire_tokens(self) -> None:
        """Every delta token issued so far is refused from now on (400)."""
        with self._lock:
            self._epoch += 1

    # ------------------------------------------------------------------ mails (read)

    def mails(self, folder_id: str | None = None) -> list[FakeMail]:
        with self._lock:
            if folder_id is None:
                return [self._copy_mail(m) for f in self._folders.values() for m in f.mails.values()]
            return [self._copy_mail(m) for m in self._folder(folder_id).mails.values()]

    def get_mail(self, mail_id: str) -> FakeMail:
        with self._lock:
            return self._copy_mail(self._mail(mail_id))

    # ------------------------------------------------------------------ mails (write)

    def _mail_folder(self, folder_id: str) -> _Folder:
        folder = self._folder(folder_id)
        if folder.folder_type != "mails":
            raise InvalidError("the folder does not hold mails")
        return folder

    def add_mail(
        self,
        folder_id: str,
        raw: bytes,
        *,
        date: int | None = None,
        unread: bool = True,
        flagged: bool = False,
        draft: bool = False,
        refw: str = "",
        labels: Iterable[str] = (),
        refw_type: str = "",
        refw_mail_id: str = "",
    ) -> str:
        with self._lock:
            folder = self._mail_folder(folder_id)
            if not isinstance(raw, bytes):
                raise InvalidError("raw must be bytes")
            if refw not in REFW_VALUES:
                raise InvalidError(f"invalid refw {refw!r}")
            label_set = set(labels)
            for label_id in label_set:
                self._label(label_id)
            seq = self._tick()
            when = int(time.time()) if date is None else int(date)
            mail = self._new_mail(folder, MailContent(raw), when, seq)
            mail.unread, mail.flagged, mail.draft, mail.refw = unread, flagged, draft, refw
            mail.refw_type, mail.refw_mail_id = refw_type, refw_mail_id
            self._set_labels(mail, label_set)
            self._place(mail, folder, seq, new_id=True)
            return mail.id

    def _apply_flags(
        self,
        mail: _Mail,
        unread: bool | None = None,
        flagged: bool | None = None,
        draft: bool | None = None,
        refw: str | None = None,
        deleted: bool | None = None,
    ) -> None:
        if refw is not None and refw not in REFW_VALUES:
            raise InvalidError(f"invalid refw {refw!r}")
        before = (mail.unread, mail.flagged, mail.draft, mail.refw, mail.deleted)
        if unread is not None:
            self._set_unread(mail, unread)
        mail.flagged = mail.flagged if flagged is None else flagged
        mail.draft = mail.draft if draft is None else draft
        mail.refw = mail.refw if refw is None else refw
        mail.deleted = mail.deleted if deleted is None else deleted
        if before != (mail.unread, mail.flagged, mail.draft, mail.refw, mail.deleted):
            self._changed(mail, self._tick())

    def set_flags(
        self,
        mail_id: str,
        *,
        unread: bool | None = None,
        flagged: bool | None = None,
        draft: bool | None = None,
        refw: str | None = None,
        deleted: bool | None = None,
    ) -> None:
        with self._lock:
            self._apply_flags(self._mail(mail_id), unread, flagged, draft, refw, deleted)

    def _apply_label(self, mail: _Mail, label_id: str, present: bool) -> None:
        if (label_id in mail.labels) != present:
            self._set_labels(mail, mail.labels | {label_id} if present else mail.labels - {label_id})
            self._changed(mail, self._tick())

    def add_label_to_mail(self, mail_id: str, label_id: str) -> None:
        with self._lock:
            self._label(label_id)
            self._apply_label(self._mail(mail_id), label_id, True)

    def remove_label_from_mail(self, mail_id: str, label_id: str) -> None:
        with self._lock:
            self._label(label_id)
            self._apply_label(self._mail(mail_id), label_id, False)

    def _move(self, mail: _Mail, folder: _Folder) -> str:
        if mail.folder is not folder:
            seq = self._tick()
            self._unplace(mail, seq)
            self._place(mail, folder, seq, new_id=self.knobs.ids_change_on_move)
        return mail.id

    def move_mail(self, mail_id: str, folder_id: str) -> str:
        with self._lock:
            mail = self._mail(mail_id)
            return self._move(mail, self._mail_folder(folder_id))

    def copy_mail(self, mail_id: str, folder_id: str) -> str:
        with self._lock:
            source = self._mail(mail_id)
            folder = self._mail_folder(folder_id)
            seq = self._tick()
            mail = self._new_mail(folder, source.content, source.date, seq)
            mail.unread, mail.flagged, mail.draft = source.unread, source.flagged, source.draft
            mail.refw, mail.deleted = source.refw, source.deleted
            mail.refw_type, mail.refw_mail_id = source.refw_type, source.refw_mail_id
            self._set_labels(mail, set(source.labels))
            self._place(mail, folder, seq, new_id=True)
            return mail.id

    def _delete(self, mail: _Mail) -> str | None:
        if mail.folder.in_trash:
            self._forget(mail, self._tick())
            return None
        return self._move(mail, self._folders[self._special["trash"]])

    def delete_mail(self, mail_id: str) -> str | None:
        """Into Trash (returns the id there); permanent from Trash (returns None)."""
        with self._lock:
            return self._delete(self._mail(mail_id))

    def replace_mail(self, mail_id: str, raw: bytes) -> None:
        """New content under the same id (a ``replacedItems`` delta entry)."""
        with self._lock:
            mail = self._mail(mail_id)
            seq = self._tick()
            self._threader.remove(mail.uid, seq)
            mail.folder.size += len(raw) - len(mail.content.raw)
            mail.content = MailContent(raw)
            self._threader.add(mail.uid, mail.content.message_id, mail.content.parents, seq)
            mail.replaced_seq = seq
            self._changed(mail, seq)

    # ------------------------------------------------------------------ labels

    def _check_label_name(self, name: str, itself: str | None = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise InvalidError("label name is empty")
        if len(name) > MAX_LABEL_NAME:
            raise InvalidError(f"label names are limited to {MAX_LABEL_NAME} characters")
        if name.casefold() in HIDDEN_LABELS:
            raise InvalidError(f"the label name {name!r} is reserved")
        for label_id, other in self._labels.items():
            if other.casefold() == name.casefold() and label_id != itself:
                raise InvalidError(f"a label named {other!r} exists already")

    def create_label(self, name: str) -> str:
        with self._lock:
            self._check_label_name(name)
            _, label_id = self._new_obj_id()
            self._labels[label_id] = name
            self._label_mails[label_id] = set()
            self._labels_seq = self._tick()
            return label_id

    def rename_label(self, label_id: str, name: str) -> None:
        with self._lock:
            self._label(label_id)
            self._check_label_name(name, label_id)
            self._labels[label_id] = name
            self._labels_seq = self._tick()

    def delete_label(self, label_id: str) -> None:
        with self._lock:
            self._label(label_id)
            for uid in sorted(self._label_mails[label_id]):
                self._apply_label(self._by_uid[uid], label_id, False)
            del self._labels[label_id], self._label_mails[label_id]
            self._labels_seq = self._tick()

    def labels(self) -> list[tuple[str, str]]:
        return self.label_list()[1]

    def label_id(self, name: str) -> str:
        with self._lock:
            for label_id, other in self._labels.items():
                if other.casefold() == name.casefold():
                    return label_id
            raise NotFoundError(f"no label {name!r}")

    # ------------------------------------------------------------------ conversations

    def conversations(self) -> dict[str, list[str]]:
        """Conversation id -> member mail ids (Spam and Trash left out)."""
        with self._lock:
            out: dict[str, list[str]] = {}
            for root in self._threader.roots():
                members = self._live_members(root)
                if members:
                    out[self._threader.id_of_root(root)] = [m.id for m in members]
            return out

    def _conv_members(self, conv_id: str, *, skip_sent_drafts: bool) -> list[_Mail]:
        members = self._live_members(self._conv_root(conv_id))
        if not members:
            raise NotFoundError(f"no conversation {conv_id!r}")
        if skip_sent_drafts:
            return [m for m in members if not self._is_role(m.folder, "sent", "drafts")]
        return members

    def update_conversation(
        self, conv_id: str, *, unread: bool | None = None, flagged: bool | None = None
    ) -> None:
        """isUnread skips members in Sent and Drafts; isFlagged applies to all."""
        with self._lock:
            if unread is not None:
                for mail in self._conv_members(conv_id, skip_sent_drafts=True):
                    self._apply_flags(mail, unread=unread)
            if flagged is not None:
                for mail in self._conv_members(conv_id, skip_sent_drafts=False):
                    self._apply_flags(mail, flagged=flagged)

    def move_conversation(self, conv_id: str, folder_id: str) -> None:
        """Moves every member that is not in Sent or Drafts."""
        with self._lock:
            folder = self._mail_folder(folder_id)
            for mail in self._conv_members(conv_id, skip_sent_drafts=True):
                self._move(mail, folder)

    def delete_conversation(self, conv_id: str) -> None:
        with self._lock:
            for mail in self._conv_members(conv_id, skip_sent_drafts=False):
                self._delete(mail)

    def label_conversation(self, conv_id: str, label_id: str, present: bool) -> None:
        with self._lock:
            self._label(label_id)
            for mail in self._conv_members(conv_id, skip_sent_drafts=False):
                self._apply_label(mail, label_id, present)

    # ------------------------------------------------------------------ comparison

    def snapshot(self) -> dict[tuple[str, ...], list[tuple[object, ...]]]:
        """Folder path -> sorted (sha256, date, unread, flagged, draft, refw, deleted, labels)."""
        with self._lock:
            out: dict[tuple[str, ...], list[tuple[object, ...]]] = {}
            for folder in self._folders.values():
                rows = [
                    (
                        hashlib.sha256(m.content.raw).hexdigest(),
                        m.date,
                        m.unread,
                        m.flagged,
                        m.draft,
                        m.refw,
                        m.deleted,
                        tuple(sorted(self._labels[x] for x in m.labels)),
                    )
                    for m in folder.mails.values()
                ]
                out[self._path(folder)] = sorted(rows)
            return out
