"""Typed value objects shared by every room (API client, store, state DB, planner).

No I/O and no imports from the rest of axsync except ``errors``. Wire parsing lives in
``axsync.api.wire``; these classes are what it produces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """``GET /api/``: versions, and what the client concluded the server can do."""

    api_version: str
    server_version: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        out: list[int] = []
        for part in self.server_version.split("."):
            digits = "".join(ch for ch in part if ch.isdigit())
            if not digits:
                break
            out.append(int(digits))
        return tuple(out)

    @property
    def has_mail_delta(self) -> bool:
        """``GET /api/v1/mails/delta`` exists from Axigen 10.6.6."""
        return self.version_tuple >= (10, 6, 6)

    @property
    def has_folder_delta(self) -> bool:
        """``GET /api/v1/folders/delta`` exists from Axigen 10.6.18."""
        return self.version_tuple >= (10, 6, 18)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    account_name: str
    domain_name: str
    folder_container_id: str
    full_name: str = ""
    allow_conversation_view: bool = True


@dataclass(frozen=True, slots=True)
class IndexState:
    """One entry of ``GET /api/v1/account/indexinfo``."""

    id: str
    state: str  # uninitialized | initialized | uptodate | unavailable
    progress: float = 0.0


# ---------------------------------------------------------------------------- folders


@dataclass(frozen=True, slots=True)
class Folder:
    """A FolderInstance. ``parent_id`` is the container id for top-level folders."""

    id: str
    name: str
    parent_id: str
    role: str = ""
    folder_type: str = "mails"
    access_mode: str = "local"
    total_items: int = 0
    unread_items: int = 0
    folder_size: int = 0


@dataclass(frozen=True, slots=True)
class FolderList:
    sync_token: str
    items: tuple[Folder, ...] = ()


@dataclass(frozen=True, slots=True)
class FolderEvent:
    """One event of ``GET /api/v1/folders/delta``; ``folder`` is set when the event
    carries a FolderInstance (newFolder, or changedFolder with ``pathChanged``)."""

    event_type: str  # newFolder | removedFolder | changedFolder | resetContainer | removeContainer
    id: str
    container_id: str = ""
    id_validity: int | None = None
    path_changed: bool = False
    old_parent_id: str | None = None
    sync_token: str | None = None  # the folder's *content* token
    folder: Folder | None = None


@dataclass(frozen=True, slots=True)
class FolderDelta:
    sync_token: str
    events: tuple[FolderEvent, ...] = ()


# ---------------------------------------------------------------------------- mails


@dataclass(frozen=True, slots=True)
class MailFlags:
    """The flags the API exposes for a mail (MailInstance / delta updatedItems)."""

    is_unread: bool = True
    is_flagged: bool = False
    is_draft: bool = False
    is_deleted: bool = False
    refw_flags: str = ""  # "" | "re" | "fw" | "refw"

    @property
    def answered(self) -> bool:
        return "re" in self.refw_flags


@dataclass(frozen=True, slots=True)
class Mail:
    """A MailInstance, reduced to what axsync needs. ``date`` is the server's internal
    date in Unix seconds (UTC). ``conversation_id`` is only known from delta replies
    or conversation listings."""

    id: str
    folder_id: str
    size: int
    date: int
    flags: MailFlags = field(default_factory=MailFlags)
    label_ids: tuple[str, ...] = ()
    message_id: str = ""
    subject: str = ""
    from_: str = ""
    has_attachments: bool = False
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True)
class MailUpdate:
    """An ``updatedItems`` entry of the mails delta: flags and labels only."""

    id: str
    folder_id: str
    flags: MailFlags
    label_ids: tuple[str, ...] = ()
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True)
class MailPage:
    """One page of ``GET /api/v1/mails``."""

    sync_token: str
    total_items: int
    items: tuple[Mail, ...] = ()
    sort_field: str = ""
    sort_direction: str = ""


@dataclass(frozen=True, slots=True)
class MailDelta:
    """One page of ``GET /api/v1/mails/delta``."""

    sync_token: str
    more_available: bool = False
    total_items: int = 0
    new: tuple[Mail, ...] = ()
    replaced: tuple[Mail, ...] = ()
    updated: tuple[MailUpdate, ...] = ()
    removed: tuple[str, ...] = ()  # mail ids


@dataclass(frozen=True, slots=True)
class Download:
    """What ``ApiClient.download_source`` wrote: exact byte count, sha256, and the
    byte count with bare LF counted as CRLF (Maildir ``W=``)."""

    size: int
    sha256: str
    vsize: int


# ---------------------------------------------------------------------------- labels


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class LabelList:
    sync_token: str
    items: tuple[Label, ...] = ()


# ---------------------------------------------------------------------------- conversations


@dataclass(frozen=True, slots=True)
class ConversationMember:
    mail_id: str
    folder_id: str = ""
    normalized_message_id: str = ""


@dataclass(frozen=True, slots=True)
class Conversation:
    """A ConversationInstance. ``sync_token`` is set only by ``get_conversation``."""

    id: str
    subject: str = ""
    mail_count: int = 0
    members: tuple[ConversationMember, ...] = ()
    sync_token: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationPage:
    sync_token: str
    total_items: int
    items: tuple[Conversation, ...] = ()


# ---------------------------------------------------------------------------- batches


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Reply of one ``/api/v1/batch/...`` call. ``http_status`` 201 means the server
    runs it asynchronously: ``job_key`` is set and the outcome is not known yet (there
    is no documented status endpoint; confirm by listing)."""

    http_status: int
    status: str  # inProgress | completed
    progress: float
    failed_items: tuple[str, ...] = ()
    job_key: str | None = None
    requested: tuple[str, ...] = ()  # the ids this call carried

    @property
    def is_async(self) -> bool:
        return self.http_status == 201 or self.job_key is not None
