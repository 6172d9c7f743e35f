"""Pure JSON -> model parsing for the Axigen Mailbox API.

Rules, applied to every reply:

* **strict about types**: a field that is present must have the documented JSON type (a
  number is not a string, ``true`` is not a number) or :class:`MalformedReply` is raised,
  naming the endpoint and the field path (``GET /api/v1/mails: items[3].size: ...``);
* **tolerant about presence**: unknown fields are ignored, an optional field that is absent
  or ``null`` takes the model's default; only the fields axsync cannot work without are
  required (ids, sync tokens, a mail's size and date, paging totals);
* the documented string-typed numbers are accepted as strings: ``mailCount`` and ``date``
  (Unix seconds as a string; an int or an ISO-8601 string is also accepted for ``date``).

Nothing here raises anything but :class:`MalformedReply`: not ``KeyError``, ``TypeError``,
``ValueError``, ``UnicodeDecodeError`` nor ``RecursionError``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from axsync.api.jsonread import Obj, fail, kind
from axsync.model import (
    AccountInfo,
    BatchResult,
    Conversation,
    ConversationMember,
    ConversationPage,
    Folder,
    FolderDelta,
    FolderEvent,
    FolderList,
    IndexState,
    Label,
    LabelList,
    Mail,
    MailDelta,
    MailFlags,
    MailPage,
    MailUpdate,
    ServerInfo,
)

_NO_FLAGS = MailFlags()


# ---------------------------------------------------------------------------- account


def parse_sessid(data: object, where: str) -> str:
    return Obj(data, where).req_str("sessid")


def parse_server_info(data: object, where: str) -> ServerInfo:
    obj = Obj(data, where)
    return ServerInfo(
        api_version=obj.req_str("apiVersion"), server_version=obj.req_str("serverVersion")
    )


def parse_account_info(data: object, where: str) -> AccountInfo:
    obj = Obj(data, where)
    return AccountInfo(
        account_name=obj.req_str("accountName"),
        domain_name=obj.req_str("domainName"),
        folder_container_id=obj.req_str("folderContainerId"),
        full_name=obj.opt_str("fullName"),
        allow_conversation_view=obj.opt_bool("allowConversationView", True),
    )


def parse_index_info(data: object, where: str) -> list[IndexState]:
    """A bare array (documented) or an object with ``items`` (tolerated)."""
    if isinstance(data, dict):
        entries = list(Obj(data, where).objects("items", required=True))
    elif isinstance(data, list):
        entries = [Obj(item, where, f"[{i}]") for i, item in enumerate(data)]
    else:
        fail(where, "reply", f"expected an array, got {kind(data)}")
    return [
        IndexState(id=e.req_str("id"), state=e.req_str("state"), progress=e.opt_float("progress"))
        for e in entries
    ]


def parse_sync_token(data: object, where: str) -> str:
    """The ``syncToken`` of any reply (``syncTokenOnly=true`` calls)."""
    return Obj(data, where).req_str("syncToken")


# ---------------------------------------------------------------------------- folders


def _folder(obj: Obj) -> Folder:
    return Folder(
        id=obj.req_str("id"),
        name=obj.req_str("name", nonempty=False),
        parent_id=obj.req_str("parentId", nonempty=False),
        role=obj.opt_str("role"),
        folder_type=obj.opt_str("folderType", "mails"),
        access_mode=obj.opt_str("accessMode", "local"),
        total_items=obj.opt_int("totalItems"),
        unread_items=obj.opt_int("unreadItems"),
        folder_size=obj.opt_int("folderSize"),
    )


def parse_folder(data: object, where: str) -> Folder:
    return _folder(Obj(data, where))


def parse_folder_list(data: object, where: str) -> FolderList:
    obj = Obj(data, where)
    return FolderList(
        sync_token=obj.req_str("syncToken"),
        items=tuple(_folder(item) for item in obj.objects("items", required=True)),
    )


def _folder_event(obj: Obj) -> FolderEvent:
    folder = None
    if obj.has("name") and obj.has("parentId"):
        folder = _folder(obj)
    return FolderEvent(
        event_type=obj.req_str("eventType"),
        id=obj.req_str("id"),
        container_id=obj.opt_str("containerId"),
        id_validity=obj.req_int("idValidity", minimum=None) if obj.has("idValidity") else None,
        path_changed=obj.opt_bool("pathChanged", False),
        old_parent_id=obj.opt_str("oldParentId") if obj.has("oldParentId") else None,
        sync_token=obj.opt_str("syncToken") if obj.has("syncToken") else None,
        folder=folder,
    )


def parse_folder_delta(data: object, where: str) -> FolderDelta:
    obj = Obj(data, where)
    return FolderDelta(
        sync_token=obj.req_str("syncToken"),
        events=tuple(_folder_event(e) for e in obj.objects("events")),
    )


# ---------------------------------------------------------------------------- mails


def _flags(obj: Obj) -> MailFlags:
    return MailFlags(
        is_unread=obj.opt_bool("isUnread", _NO_FLAGS.is_unread),
        is_flagged=obj.opt_bool("isFlagged", _NO_FLAGS.is_flagged),
        is_draft=obj.opt_bool("isDraft", _NO_FLAGS.is_draft),
        is_deleted=obj.opt_bool("isDeleted", _NO_FLAGS.is_deleted),
        refw_flags=obj.opt_str("refwFlags"),
    )


def _folder_id(obj: Obj, default_folder: str | None) -> str:
    if default_folder is not None and not obj.has("folderId"):
        return default_folder
    return obj.req_str("folderId")


def _mail(obj: Obj, default_folder: str | None = None) -> Mail:
    return Mail(
        id=obj.req_str("id"),
        folder_id=_folder_id(obj, default_folder),
        size=obj.req_int("size"),
        date=obj.date("date"),
        flags=_flags(obj),
        label_ids=obj.str_tuple("labelIds"),
        message_id=obj.opt_str("messageId"),
        subject=obj.opt_str("subject"),
        from_=obj.opt_str("from"),
        has_attachments=obj.opt_bool("hasAttachments", False),
        conversation_id=obj.opt_str("conversationId") or None,
    )


def parse_mail(data: object, where: str, default_folder: str | None = None) -> Mail:
    """A MailInstance. ``default_folder`` fills a missing ``folderId`` when the caller knows
    the folder (listings of one folder)."""
    return _mail(Obj(data, where), default_folder)


def parse_mail_page(data: object, where: str, folder_id: str) -> MailPage:
    obj = Obj(data, where)
    sort = Obj(obj.data["sortInfo"], where, "sortInfo") if obj.has("sortInfo") else None
    return MailPage(
        sync_token=obj.req_str("syncToken"),
        total_items=obj.req_int("totalItems"),
        items=tuple(_mail(m, folder_id) for m in obj.objects("items", required=True)),
        sort_field=sort.opt_str("field") if sort else "",
        sort_direction=sort.opt_str("direction") if sort else "",
    )


def _mail_update(obj: Obj, folder_id: str) -> MailUpdate:
    return MailUpdate(
        id=obj.req_str("id"),
        folder_id=_folder_id(obj, folder_id),
        flags=_flags(obj),
        label_ids=obj.str_tuple("labelIds"),
        conversation_id=obj.opt_str("conversationId") or None,
    )


def _removed_ids(obj: Obj) -> Iterable[str]:
    for i, item in enumerate(obj.opt_list("removedItems")):
        if isinstance(item, str):  # tolerated: a bare id instead of {id, folderId}
            yield item
        else:
            yield Obj(item, obj.where, f"removedItems[{i}]").req_str("id")


def parse_mail_delta(data: object, where: str, folder_id: str) -> MailDelta:
    obj = Obj(data, where)
    return MailDelta(
        sync_token=obj.req_str("syncToken"),
        more_available=obj.opt_bool("moreAvailable", False),
        total_items=obj.opt_int("totalItems"),
        new=tuple(_mail(m, folder_id) for m in obj.objects("newItems")),
        replaced=tuple(_mail(m, folder_id) for m in obj.objects("replacedItems")),
        updated=tuple(_mail_update(m, folder_id) for m in obj.objects("updatedItems")),
        removed=tuple(_removed_ids(obj)),
    )


# ---------------------------------------------------------------------------- labels


def _label(obj: Obj) -> Label:
    return Label(id=obj.req_str("id"), name=obj.req_str("name", nonempty=False))


def parse_label(data: object, where: str) -> Label:
    return _label(Obj(data, where))


def synthetic_label_token(labels: Iterable[Label]) -> str:
    """A stand-in sync token for a server whose label list carries none: a digest of the
    sorted ``(id, name)`` pairs, prefixed ``axsync:`` so it never looks like a server token."""
    digest = hashlib.sha256()
    for label in sorted(labels, key=lambda lb: (lb.id, lb.name)):
        digest.update(f"{label.id}\x00{label.name}\x01".encode())
    return "axsync:" + digest.hexdigest()[:32]


def parse_label_list(data: object, where: str) -> LabelList:
    """``{syncToken, items}`` (fake, and what both third-party clients read), ``{items}``
    or a bare array; without a server token, :func:`synthetic_label_token` stands in."""
    if isinstance(data, list):
        items = tuple(_label(Obj(x, where, f"[{i}]")) for i, x in enumerate(data))
        return LabelList(sync_token=synthetic_label_token(items), items=items)
    obj = Obj(data, where)
    items = tuple(_label(x) for x in obj.objects("items", required=True))
    token = obj.req_str("syncToken") if obj.has("syncToken") else synthetic_label_token(items)
    return LabelList(sync_token=token, items=items)


# ---------------------------------------------------------------------------- conversations


def _member(obj: Obj) -> ConversationMember:
    return ConversationMember(
        mail_id=obj.req_str("mailId"),
        folder_id=obj.opt_str("folderId"),
        normalized_message_id=obj.opt_str("normalizedMessageId"),
    )


def _conversation(obj: Obj) -> Conversation:
    members = tuple(_member(m) for m in obj.objects("mails"))
    return Conversation(
        id=obj.req_str("id"),
        subject=obj.opt_str("subject"),
        mail_count=obj.opt_int("mailCount", len(members), numeric_str=True),
        members=members,
    )


def parse_conversation(data: object, where: str) -> Conversation:
    return _conversation(Obj(data, where))


def parse_conversation_page(data: object, where: str) -> ConversationPage:
    obj = Obj(data, where)
    return ConversationPage(
        sync_token=obj.req_str("syncToken"),
        total_items=obj.req_int("totalItems"),
        items=tuple(_conversation(c) for c in obj.objects("items", required=True)),
    )


def parse_conversation_members(
    data: object, where: str
) -> tuple[str, int, str, tuple[ConversationMember, ...]]:
    """One page of ``GET /api/v1/conversations/{id}``: ``(syncToken, totalItems, subject,
    members)``. The documented reply lists MailInstances in ``items``; a reply shaped like a
    ConversationInstance (``mails`` with ``mailId``, ``mailCount``) is read too, so the
    member list is never guessed from a shape the client does not know."""
    obj = Obj(data, where)
    token = obj.req_str("syncToken")
    if obj.has("items") or not obj.has("mails"):
        mails = tuple(_mail(m) for m in obj.objects("items", required=True))
        members = tuple(ConversationMember(mail_id=m.id, folder_id=m.folder_id) for m in mails)
        return token, obj.req_int("totalItems"), mails[0].subject if mails else "", members
    conv = _conversation(obj)
    total = obj.req_int("totalItems") if obj.has("totalItems") else conv.mail_count
    return token, total, conv.subject, conv.members


def parse_conversation_mails(data: object, where: str) -> tuple[str, int, tuple[Mail, ...]]:
    """``GET /api/v1/conversations/{id}``: ``(syncToken, totalItems, mails)``."""
    obj = Obj(data, where)
    return (
        obj.req_str("syncToken"),
        obj.req_int("totalItems"),
        tuple(_mail(m) for m in obj.objects("items", required=True)),
    )


# ---------------------------------------------------------------------------- batch


def _failed_items(obj: Obj) -> tuple[str, ...]:
    found: dict[str, None] = {}
    if obj.has("batchOperationDetails"):
        details = Obj(obj.data["batchOperationDetails"], obj.where, "batchOperationDetails")
        found.update(dict.fromkeys(details.str_tuple("failedItems")))
    found.update(dict.fromkeys(obj.str_tuple("failedItems")))  # flattened form (3rd-party note)
    return tuple(found)


def parse_batch(
    data: object, where: str, http_status: int, requested: tuple[str, ...]
) -> BatchResult:
    """A batch reply. ``data`` is None for an empty body (taken as a completed batch)."""
    if data is None:
        obj = Obj({}, where)
    else:
        obj = Obj(data, where)
    default_status = "inProgress" if http_status == 201 else "completed"
    status = obj.opt_str("status", default_status) or default_status
    return BatchResult(
        http_status=http_status,
        status=status,
        progress=obj.opt_float("progress", 100.0 if status == "completed" else 0.0),
        failed_items=_failed_items(obj),
        job_key=obj.opt_str("jobKey") or None,
        requested=requested,
    )
