"""The fake mailbox's internal records, public copies, errors, sync tokens and primitives.

Change tracking: every modification takes the next global sequence number (``_tick``).
Each folder keeps an append-only log of ``(seq, mail id, created_seq-if-removed)`` entries
and ``latest[mail id]`` = the seq of that id's newest entry, so a mails delta walks only
the entries after the token (O(changes)); an entry older than ``latest`` is superseded.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass, field

from axsync.fake.knobs import Knobs
from axsync.fake.mime import MailContent, MailInfo
from axsync.fake.threads import Threader

OWNER = "80"
SPECIAL_ROLES = ("inbox", "drafts", "sent", "trash", "junk")
FOLDER_ROLES = frozenset({"", "inbox", "drafts", "sent", "trash", "junk", "archive", "filtered"})
FOLDER_TYPES = frozenset({"mails", "events", "tasks", "notes", "contacts"})
REFW_VALUES = frozenset({"", "re", "fw", "refw"})
HIDDEN_LABELS = frozenset({"junk", "notjunk", "nonjunk"})
MAX_LABEL_NAME = 128
MAX_FOLDER_NAME = 255
VALIDITY_BASE = 1_700_000_000

# ---------------------------------------------------------------------------- errors


class FakeError(Exception):
    """An error the HTTP layer turns into a status code and an error body."""

    status = 400
    code = "BAD_PARAMETER"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidError(FakeError, ValueError):
    status = 400
    code = "BAD_PARAMETER"


class TokenError(InvalidError):
    code = "INVALID_SYNC_TOKEN"


class NotFoundError(FakeError, LookupError):
    status = 404
    code = "NOT_FOUND"


class ForbiddenError(FakeError):
    status = 403
    code = "OPERATION_NOT_PERMITTED"


# ---------------------------------------------------------------------------- public copies


@dataclass(frozen=True, slots=True)
class FakeFolder:
    id: str
    name: str
    parent_id: str
    role: str
    id_validity: int
    folder_type: str = "mails"
    total: int = 0
    unread: int = 0
    size: int = 0
    sync_token: str = ""  # the folder's content token (mails list / delta)


@dataclass(frozen=True, slots=True)
class FakeMail:
    id: str
    folder_id: str
    raw: bytes
    date: int
    unread: bool
    flagged: bool
    draft: bool
    refw: str
    deleted: bool
    label_ids: tuple[str, ...]
    message_id: str
    conversation_id: str | None
    content: MailContent = field(repr=False, compare=False)
    refw_type: str = ""
    refw_mail_id: str = ""

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def info(self) -> MailInfo:
        return self.content.info


# ---------------------------------------------------------------------------- records


@dataclass(eq=False, slots=True)
class _Mail:
    uid: int
    id: str
    folder: _Folder
    content: MailContent
    date: int
    unread: bool = True
    flagged: bool = False
    draft: bool = False
    refw: str = ""
    deleted: bool = False
    labels: set[str] = field(default_factory=set)
    created_seq: int = 0  # when it entered its current folder (under its current id)
    replaced_seq: int = 0
    refw_type: str = ""
    refw_mail_id: str = ""


@dataclass(eq=False, slots=True)
class _Folder:
    num: int
    id: str
    name: str
    parent_id: str
    role: str
    folder_type: str
    id_validity: int
    created_seq: int
    content_seq: int
    path_seq: int = 0
    parent_history: list[tuple[int, str]] = field(default_factory=list)  # (seq, parent before)
    next_num: int = 1
    mails: dict[str, _Mail] = field(default_factory=dict)
    log: list[tuple[int, str, int]] = field(default_factory=list)
    latest: dict[str, int] = field(default_factory=dict)
    total: int = 0
    unread: int = 0
    size: int = 0
    excluded: bool = False  # Spam or Trash or below: outside conversations
    in_trash: bool = False  # Trash or below: deletes are permanent
    sort_cache: dict[tuple[str, str], tuple[int, list[_Mail]]] = field(default_factory=dict)


# ---------------------------------------------------------------------------- tokens


def encode_token(*parts: object) -> str:
    text = "|".join(str(p) for p in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(token: str, kind: str, count: int) -> list[int]:
    """The integer fields of a token of ``kind``; TokenError if it is not one."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        head, *rest = text.split("|")
        values = [int(v) for v in rest]
    except (ValueError, UnicodeDecodeError):
        raise TokenError("invalid sync token") from None
    if head != kind or len(values) != count:
        raise TokenError("invalid sync token")
    return values


def mail_id_for(folder_num: int, number: int) -> str:
    text = f"{OWNER}_{folder_num}_{number}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# ---------------------------------------------------------------------------- primitives


class MailboxBase:
    """State and the low-level moves every operation is built from. Callers hold ``_lock``."""

    def __init__(self, knobs: Knobs | None = None) -> None:
        self.knobs = knobs if knobs is not None else Knobs()
        self._lock = threading.RLock()
        self._seq = 0
        self._epoch = 0
        self._next_obj = 2  # folder and label numbers; the container is 1
        self._next_uid = 1
        self._next_validity = 1
        self.container_id = f"{OWNER}_1"
        self._folders: dict[str, _Folder] = {}
        self._folder_tombs: list[tuple[int, str, int]] = []  # (seq, folder id, created_seq)
        self._folders_seq = 0
        self._special: dict[str, str] = {}  # role -> folder id
        self._mails: dict[str, _Mail] = {}
        self._by_uid: dict[int, _Mail] = {}
        self._labels: dict[str, str] = {}
        self._label_mails: dict[str, set[int]] = {}
        self._labels_seq = 0
        self._threader = Threader(OWNER)

    # ------------------------------------------------------------------ lookups

    def _tick(self) -> int:
        self._seq += 1
        return self._seq

    def _folder(self, folder_id: str) -> _Folder:
        try:
            return self._folders[folder_id]
        except KeyError:
            raise NotFoundError(f"no folder {folder_id!r}") from None

    def _mail(self, mail_id: str) -> _Mail:
        try:
            return self._mails[mail_id]
        except KeyError:
            raise NotFoundError(f"no mail {mail_id!r}") from None

    def _label(self, label_id: str) -> str:
        try:
            return self._labels[label_id]
        except KeyError:
            raise NotFoundError(f"no label {label_id!r}") from None

    def _new_obj_id(self) -> tuple[int, str]:
        num = self._next_obj
        self._next_obj += 1
        return num, f"{OWNER}_{num}"

    def _new_validity(self) -> int:
        value = VALIDITY_BASE + self._next_validity
        self._next_validity += 1
        return value

    def _new_mail_id(self, folder: _Folder) -> str:
        number = folder.next_num
        folder.next_num += 1
        return mail_id_for(folder.num, number)

    def _children(self, parent_id: str) -> list[_Folder]:
        return [f for f in self._folders.values() if f.parent_id == parent_id]

    def _subtree(self, folder: _Folder) -> list[_Folder]:
        """``folder`` and every folder below it, parents before children."""
        out = [folder]
        for item in out:
            out.extend(self._children(item.id))
        return out

    def _path(self, folder: _Folder) -> tuple[str, ...]:
        names: list[str] = []
        current: _Folder | None = folder
        while current is not None:
            names.append(current.name)
            current = self._folders.get(current.parent_id)
        return tuple(reversed(names))

    def _is_role(self, folder: _Folder, *roles: str) -> bool:
        return any(self._special.get(role) == folder.id for role in roles)

    # ------------------------------------------------------------------ tokens

    def _content_token(self, folder: _Folder) -> str:
        seq = folder.content_seq
        return encode_token("m", folder.num, folder.id_validity, self._epoch, seq, seq)

    def _folders_token(self) -> str:
        return encode_token("f", self._epoch, self._folders_seq)

    # ------------------------------------------------------------------ copies

    def _copy_folder(self, folder: _Folder) -> FakeFolder:
        return FakeFolder(
            id=folder.id,
            name=folder.name,
            parent_id=folder.parent_id,
            role=folder.role,
            id_validity=folder.id_validity,
            folder_type=folder.folder_type,
            total=folder.total,
            unread=folder.unread,
            size=folder.size,
            sync_token=self._content_token(folder),
        )

    def _conversation_id(self, mail: _Mail) -> str | None:
        if mail.folder.excluded:
            return None
        return self._threader.conversation_of(mail.uid)

    def _copy_mail(self, mail: _Mail) -> FakeMail:
        return FakeMail(
            id=mail.id,
            folder_id=mail.folder.id,
            raw=mail.content.raw,
            date=mail.date,
            unread=mail.unread,
            flagged=mail.flagged,
            draft=mail.draft,
            refw=mail.refw,
            deleted=mail.deleted,
            label_ids=tuple(sorted(mail.labels, key=self._label_order)),
            message_id=mail.content.message_id,
            conversation_id=self._conversation_id(mail),
            content=mail.content,
            refw_type=mail.refw_type,
            refw_mail_id=mail.refw_mail_id,
        )

    def _label_order(self, label_id: str) -> tuple[int, str]:
        _, _, number = label_id.rpartition("_")
        return (int(number) if number.isdigit() else 0, label_id)

    # ------------------------------------------------------------------ change log

    def _log(self, folder: _Folder, mail_id: str, seq: int, removed_created: int = -1) -> None:
        folder.log.append((seq, mail_id, removed_created))
        folder.latest[mail_id] = seq
        folder.content_seq = seq
        self._folders_seq = seq

    def _place(self, mail: _Mail, folder: _Folder, seq: int, *, new_id: bool) -> None:
        """Put ``mail`` into ``folder`` (a new id when ``new_id``) as of ``seq``."""
        if new_id:
            mail.id = self._new_mail_id(folder)
        mail.folder = folder
        mail.created_seq = seq
        folder.mails[mail.id] = mail
        self._mails[mail.id] = mail
        folder.total += 1
        folder.unread += mail.unread
        folder.size += len(mail.content.raw)
        self._log(folder, mail.id, seq)
        self._threader.touch(mail.uid, seq)

    def _unplace(self, mail: _Mail, seq: int) -> None:
        folder = mail.folder
        del folder.mails[mail.id]
        del self._mails[mail.id]
        folder.total -= 1
        folder.unread -= mail.unread
        folder.size -= len(mail.content.raw)
        self._log(folder, mail.id, seq, mail.created_seq)
        self._threader.touch(mail.uid, seq)

    def _changed(self, mail: _Mail, seq: int) -> None:
        self._log(mail.folder, mail.id, seq)
        self._threader.touch(mail.uid, seq)

    def _forget(self, mail: _Mail, seq: int) -> None:
        """Remove ``mail`` for good (permanent delete)."""
        self._unplace(mail, seq)
        self._threader.remove(mail.uid, seq)
        for label_id in mail.labels:
            self._label_mails[label_id].discard(mail.uid)
        del self._by_uid[mail.uid]

    def _new_mail(self, folder: _Folder, content: MailContent, date: int, seq: int) -> _Mail:
        mail = _Mail(uid=self._next_uid, id="", folder=folder, content=content, date=date)
        self._next_uid += 1
        self._by_uid[mail.uid] = mail
        self._threader.add(mail.uid, content.message_id, content.parents, seq)
        return mail

    def _set_labels(self, mail: _Mail, labels: set[str]) -> None:
        for label_id in mail.labels - labels:
            self._label_mails[label_id].discard(mail.uid)
        for label_id in labels - mail.labels:
            self._label_mails[label_id].add(mail.uid)
        mail.labels = labels

    def _set_unread(self, mail: _Mail, unread: bool) -> None:
        mail.folder.unread += int(unread) - int(mail.unread)
        mail.unread = unread

    # ------------------------------------------------------------------ tree flags

    def _refresh_tree(self, seq: int) -> None:
        """Recompute ``excluded``/``in_trash`` after the tree changed; a folder entering or
        leaving Spam/Trash changes the conversations of its mails."""
        roots = {self._special[r]: r for r in ("trash", "junk") if r in self._special}
        for folder in self._folders.values():
            in_trash = excluded = False
            current: _Folder | None = folder
            while current is not None:
                role = roots.get(current.id)
                if role is not None:
                    excluded = True
                    in_trash = in_trash or role == "trash"
                current = self._folders.get(current.parent_id)
            if excluded != folder.excluded:
                for mail in folder.mails.values():
                    self._threader.touch(mail.uid, seq)
            folder.excluded, folder.in_trash = excluded, in_trash
