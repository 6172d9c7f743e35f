"""JSON shapes of the Mailbox API schemas (FolderInstance, MailInstance, ...), built from
the mailbox's copies. Field names follow the Schemas page exactly."""

from __future__ import annotations

from email.utils import getaddresses, parseaddr
from typing import Any

from axsync.fake.mime import IMPORTANCE_RANK, Attachment
from axsync.fake.queries import ConvView, FolderChange
from axsync.fake.state import SPECIAL_ROLES, FakeFolder, FakeMail
from axsync.fake.web import Service

JSON = dict[str, Any]
ALL_PERMISSIONS = ("l", "r", "s", "w", "i", "k", "x", "t", "e", "a")


def full_name(user: str) -> str:
    local = user.partition("@")[0]
    return " ".join(part.capitalize() for part in local.replace("_", ".").split(".") if part)


def folder_instance(folder: FakeFolder, service: Service) -> JSON:
    special = folder.role in SPECIAL_ROLES
    return {
        "id": folder.id,
        "name": folder.name,
        "parentId": folder.parent_id,
        "role": folder.role,
        "ownerUsername": service.user,
        "ownerFullname": full_name(service.user),
        "folderSize": folder.size,
        "folderType": folder.folder_type,
        "accessMode": "local",
        "totalItems": folder.total,
        "unreadItems": folder.unread,
        "permissions": [p for p in ALL_PERMISSIONS if not (special and p == "x")],
    }


def folder_event(change: FolderChange, service: Service) -> JSON:
    event: JSON = {
        "eventType": change.kind,
        "id": change.folder_id,
        "containerId": service.mailbox.container_id,
    }
    folder = change.folder
    if folder is None:
        return event
    event["idValidity"] = folder.id_validity
    event["pathChanged"] = change.path_changed
    if change.path_changed:
        event["oldParentId"] = change.old_parent_id
    event["syncToken"] = folder.sync_token
    if change.kind == "newFolder" or change.path_changed:
        instance = folder_instance(folder, service)
        event.update({k: v for k, v in instance.items() if k != "id"})
    else:
        event.update(
            folderSize=folder.size, totalItems=folder.total, unreadItems=folder.unread
        )
    return event


def attachment_instance(attachment: Attachment, mail_id: str) -> JSON:
    return {
        "id": attachment.id,
        "mailId": mail_id,
        "name": attachment.name,
        "contentId": attachment.content_id,
        "contentType": attachment.content_type,
        "size": attachment.size,
        "isInline": attachment.is_inline,
    }


def mail_instance(mail: FakeMail, service: Service) -> JSON:
    info = mail.info
    data: JSON = {
        "id": mail.id,
        "folderId": mail.folder_id,
        "size": mail.size,
        "from": info.from_,
        "to": info.to,
        "cc": info.cc,
        "bcc": info.bcc,
        "replyTo": info.reply_to,
        "replyToAll": ", ".join(x for x in (info.to, info.cc) if x),
        "sender": info.sender,
        "messageId": info.message_id,
        "subject": info.subject,
        "snippet": info.snippet,
        "date": str(mail.date),
        "isUnread": mail.unread,
        "isFlagged": mail.flagged,
        "isDraft": mail.draft,
        "refwFlags": mail.refw,
        "isDeleted": mail.deleted,
        "hasAttachments": info.has_attachments,
        "isItip": info.is_itip,
        "returnReceipt": info.return_receipt,
        "importance": info.importance,
        "attachments": [attachment_instance(a, mail.id) for a in info.attachments],
        "labelIds": list(mail.label_ids),
    }
    if mail.draft:
        data["refwType"] = mail.refw_type
        if mail.refw_type:
            data["refwMailId"] = mail.refw_mail_id
    if service.knobs.has_version((10, 6)):
        data["bimiLocation"] = ""
    return data


def _with_conversation(data: JSON, mail: FakeMail, service: Service) -> JSON:
    if mail.conversation_id is not None and service.knobs.conversations_enabled:
        data["conversationId"] = mail.conversation_id
    return data


def delta_item(mail: FakeMail, service: Service) -> JSON:
    """A ``newItems`` / ``replacedItems`` entry: MailInstance + conversationId."""
    return _with_conversation(mail_instance(mail, service), mail, service)


def updated_item(mail: FakeMail, service: Service) -> JSON:
    data: JSON = {
        "id": mail.id,
        "folderId": mail.folder_id,
        "isUnread": mail.unread,
        "isFlagged": mail.flagged,
        "isDraft": mail.draft,
        "isDeleted": mail.deleted,
        "isItip": mail.info.is_itip,
        "labelIds": list(mail.label_ids),
    }
    return _with_conversation(data, mail, service)


def _refw_union(values: list[str]) -> str:
    re = any("re" in v for v in values)
    fw = any("fw" in v for v in values)
    return ("re" if re else "") + ("fw" if fw else "")


def _participants(conv: ConvView, me: str) -> list[JSON]:
    seen: dict[str, JSON] = {}
    for mail in conv.members:
        full = mail.info.from_
        address = parseaddr(full)[1].lower()
        if not address:
            continue
        entry = seen.setdefault(
            address,
            {"fullEmailAddress": full, "isMe": address == me, "hasUnreadMessages": False},
        )
        entry["hasUnreadMessages"] = entry["hasUnreadMessages"] or mail.unread
    return list(seen.values())


def _my_recipients(conv: ConvView, me: str) -> list[JSON]:
    seen: dict[str, JSON] = {}
    for mail in conv.members:
        info = mail.info
        if parseaddr(info.from_)[1].lower() != me:
            continue
        for kind, header in (("isTo", info.to), ("isCc", info.cc), ("isBcc", info.bcc)):
            for name, address in getaddresses([header]):
                if not address:
                    continue
                entry = seen.setdefault(
                    address.lower(),
                    {
                        "fullEmailAddress": f"{name} <{address}>" if name else address,
                        "isMe": address.lower() == me,
                        "isTo": False,
                        "isCc": False,
                        "isBcc": False,
                    },
                )
                entry[kind] = True
    return list(seen.values())


def conversation_instance(conv: ConvView, service: Service) -> JSON:
    members = conv.members
    latest = conv.latest
    me = service.user.lower()
    labels = sorted({label for m in members for label in m.label_ids})
    importance = max((m.info.importance for m in members), key=IMPORTANCE_RANK.__getitem__)
    return {
        "id": conv.id,
        "subject": members[0].info.subject,
        "snippet": latest.info.snippet,
        "date": str(latest.date),
        "isUnread": any(m.unread for m in members),
        "isFlagged": any(m.flagged for m in members),
        "refwFlags": _refw_union([m.refw for m in members]),
        "hasAttachments": any(m.info.has_attachments for m in members),
        "importance": importance,
        "labelIds": labels,
        "attachments": [
            attachment_instance(a, m.id) for m in members for a in m.info.attachments if not a.is_inline
        ],
        "participants": _participants(conv, me),
        "myRecipients": _my_recipients(conv, me),
        "hasDrafts": any(m.draft for m in members),
        "mailCount": str(len(members)),
        "mails": [
            {
                "mailId": m.id,
                "normalizedMessageId": m.message_id,
                "folderId": m.folder_id,
                "isUnread": m.unread,
                "isFlagged": m.flagged,
                "isDraft": m.draft,
            }
            for m in members
        ],
    }
