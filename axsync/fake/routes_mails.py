"""Routes: mails (list, delta, get, update, move, copy, delete, source, labels, create)."""

from __future__ import annotations

import hashlib
import time

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from axsync.fake.mime import build_message, header_block, parse_headers
from axsync.fake.queries import MAIL_SORT_FIELDS
from axsync.fake.state import InvalidError, NotFoundError
from axsync.fake.views import (
    attachment_instance,
    conversation_instance,
    delta_item,
    mail_instance,
    updated_item,
)
from axsync.fake.web import DEFAULT_SORT, Call, empty_response, endpoint

IMPORTANCE = ("normal", "low", "high")
CREATE_FIELDS = (
    "folderId", "from", "to", "cc", "bcc", "replyTo", "refwType", "refwMailId", "subject",
    "isUnread", "isFlagged", "importance", "bodyText", "bodyHtml", "temporaryAttachments",
)


def _mail_reply(call: Call, mail_id: str) -> Response:
    return JSONResponse(mail_instance(call.mailbox.get_mail(mail_id), call.service))


@endpoint(query=("folderId", "sort", "dir", "start", "limit", "activeMailId", "syncTokenOnly"))
def list_mails(call: Call) -> Response:
    folder_id = call.folder_arg(call.q("folderId"), "folderId")
    field, direction = call.sort("mail", MAIL_SORT_FIELDS)
    if call.q_bool("syncTokenOnly"):
        return JSONResponse({"syncToken": call.mailbox.content_token(folder_id)})
    start, limit = call.paging()
    page = call.mailbox.list_mails(folder_id, field, direction, start, limit, call.q("activeMailId"))
    return JSONResponse(
        {
            "syncToken": page.sync_token,
            "totalItems": page.total,
            "sortInfo": {"field": field, "direction": direction, "activeRowIndex": page.active_index},
            "items": [mail_instance(m, call.service) for m in page.items],
        }
    )


@endpoint(query=("folderId", "syncToken", "limit"), since=(10, 6, 6))
def mail_delta(call: Call) -> Response:
    folder_id = call.folder_arg(call.q("folderId"), "folderId")
    limit = call.q_int("limit", None, minimum=1)
    if limit is not None:
        limit = min(limit, call.knobs.max_page_size)
    page = call.mailbox.mail_delta(folder_id, call.q("syncToken"), limit)
    field, direction = call.session.last_sort("mail") if call.session else DEFAULT_SORT
    service = call.service
    return JSONResponse(
        {
            "syncToken": page.sync_token,
            "totalItems": page.total,
            "sortInfo": {"field": field, "direction": direction, "activeRowIndex": -1},
            "moreAvailable": page.more,
            "newItems": [delta_item(m, service) for m in page.new],
            "replacedItems": [delta_item(m, service) for m in page.replaced],
            "updatedItems": [updated_item(m, service) for m in page.updated],
            "removedItems": [{"id": i, "folderId": f} for i, f in page.removed],
        }
    )


@endpoint()
def get_mail(call: Call) -> Response:
    return _mail_reply(call, call.path["mailId"])


@endpoint(fields=("isUnread", "isFlagged"))
def update_mail(call: Call) -> Response:
    mail_id = call.path["mailId"]
    call.mailbox.get_mail(mail_id)
    unread, flagged = call.field_bool("isUnread"), call.field_bool("isFlagged")
    if unread is None and flagged is None:
        raise InvalidError("one of isUnread or isFlagged is required")
    call.mailbox.set_flags(mail_id, unread=unread, flagged=flagged)
    return _mail_reply(call, mail_id)


@endpoint()
def delete_mail(call: Call) -> Response:
    call.mailbox.delete_mail(call.path["mailId"])
    return empty_response()


def _destination(call: Call, default: str | None = None) -> tuple[str, str]:
    mail_id = call.path["mailId"]
    call.mailbox.get_mail(mail_id)  # an unknown mail is 404 whatever the body says
    value = call.field_str("destinationFolderId") or default
    return mail_id, call.folder_arg(value, "destinationFolderId")


@endpoint(fields=("destinationFolderId",))
def move_mail(call: Call) -> Response:
    mail_id, folder_id = _destination(call)
    return _mail_reply(call, call.mailbox.move_mail(mail_id, folder_id))


@endpoint(fields=("destinationFolderId",))
def copy_mail(call: Call) -> Response:
    mail_id, folder_id = _destination(call)
    return _mail_reply(call, call.mailbox.copy_mail(mail_id, folder_id))


@endpoint(since=(10, 5, 25))
def spam_mail(call: Call) -> Response:
    junk = call.mailbox.special_folder_id("junk")
    return _mail_reply(call, call.mailbox.move_mail(call.path["mailId"], junk))


@endpoint(fields=("destinationFolderId",), since=(10, 5, 25))
def notspam_mail(call: Call) -> Response:
    mail_id, folder_id = _destination(call, call.mailbox.special_folder_id("inbox"))
    return _mail_reply(call, call.mailbox.move_mail(mail_id, folder_id))


@endpoint()
def source(call: Call) -> Response:
    raw = call.mailbox.get_mail(call.path["mailId"]).raw
    return Response(raw, media_type="message/rfc822")


@endpoint()
def source_download(call: Call) -> Response:
    mail_id = call.path["mailId"]
    raw = call.mailbox.get_mail(mail_id).raw
    headers = {"Content-Disposition": f'attachment; filename="{mail_id}.eml"'}
    return Response(raw, media_type="message/rfc822", headers=headers)


@endpoint()
def source_headers(call: Call) -> Response:
    raw = call.mailbox.get_mail(call.path["mailId"]).raw
    return Response(header_block(raw), media_type="text/plain")


@endpoint()
def attachments(call: Call) -> Response:
    mail = call.mailbox.get_mail(call.path["mailId"])
    return JSONResponse({"items": [attachment_instance(a, mail.id) for a in mail.info.attachments]})


@endpoint(fields=("labelId",))
def add_label(call: Call) -> Response:
    mail_id = call.path["mailId"]
    call.mailbox.get_mail(mail_id)
    call.mailbox.add_label_to_mail(mail_id, call.label_arg(call.field_str("labelId")))
    return empty_response()


@endpoint()
def remove_label(call: Call) -> Response:
    call.mailbox.remove_label_from_mail(call.path["mailId"], call.path["labelId"])
    return empty_response()


@endpoint()
def mail_conversation(call: Call) -> Response:
    call.require_conversations()
    mail = call.mailbox.get_mail(call.path["mailId"])
    conv_id = call.mailbox.conversation_of_mail(mail.id)
    view = call.mailbox.conversation_view(conv_id, mail.folder_id)
    return JSONResponse(conversation_instance(view, call.service))


def _reply_headers(call: Call, refw_type: str | None, refw_mail_id: str | None) -> dict[str, str]:
    """In-Reply-To / References for a reply, after checking the refw pair."""
    if refw_type is None:
        if refw_mail_id is not None:
            raise InvalidError("refwMailId must not be sent without refwType")
        return {}
    if refw_type not in ("re", "fw"):
        raise InvalidError("refwType must be re or fw")
    if refw_mail_id is None:
        raise InvalidError("refwMailId is required when refwType is set")
    try:
        original = call.mailbox.get_mail(refw_mail_id)
    except NotFoundError:
        raise InvalidError(f"unknown refwMailId {refw_mail_id!r}") from None
    if refw_type != "re":
        return {}
    message_id = original.info.message_id
    references = " ".join(x for x in (parse_headers(original.raw).get("references", ""), message_id) if x)
    return {"In-Reply-To": message_id, "References": references} if message_id else {}


@endpoint(fields=CREATE_FIELDS)
def create_mail(call: Call) -> Response:
    mailbox, service = call.mailbox, call.service
    drafts = mailbox.special_folder_id("drafts")
    folder_id = call.folder_arg(call.field_str("folderId") or drafts, "folderId")
    refw_type, refw_mail_id = call.field_str("refwType"), call.field_str("refwMailId")
    importance = call.field_str("importance") or "normal"
    if importance not in IMPORTANCE:
        raise InvalidError("importance must be normal, low or high")
    if call.field("temporaryAttachments", list):
        raise InvalidError("unknown temporary attachment")
    headers = {
        "From": call.field_str("from") or service.user,
        "To": call.field_str("to") or "",
        "Cc": call.field_str("cc") or "",
        "Bcc": call.field_str("bcc") or "",
        "Reply-To": call.field_str("replyTo") or "",
        "Subject": call.field_str("subject") or "",
        **_reply_headers(call, refw_type, refw_mail_id),
    }
    if importance != "normal":
        headers["Importance"] = importance.capitalize()
    now = int(time.time())
    number = service.next_created()
    domain = service.user.partition("@")[2] or "localhost"
    digest = hashlib.sha256(f"{service.user}\0{number}\0{now}".encode()).hexdigest()[:16]
    try:
        raw = build_message(
            headers=headers,
            date=now,
            message_id=f"{digest}.{number}@{domain}",
            body_text=call.field_str("bodyText"),
            body_html=call.field_str("bodyHtml"),
        )
    except ValueError as exc:
        raise InvalidError(f"cannot build the message: {exc}") from None
    is_draft = folder_id == drafts
    mail_id = mailbox.add_mail(
        folder_id,
        raw,
        date=now,
        unread=bool(call.field_bool("isUnread")),
        flagged=bool(call.field_bool("isFlagged")),
        draft=is_draft,
        refw_type=(refw_type or "") if is_draft else "",
        refw_mail_id=(refw_mail_id or "") if is_draft else "",
    )
    return _mail_reply(call, mail_id)


V1 = "/api/v1"
M = f"{V1}/mails/{{mailId}}"
ROUTES = [
    Route(f"{V1}/mails", list_mails, methods=["GET"]),
    Route(f"{V1}/mails", create_mail, methods=["POST"]),
    Route(f"{V1}/mails/delta", mail_delta, methods=["GET"]),
    Route(M, get_mail, methods=["GET"]),
    Route(M, update_mail, methods=["PATCH"]),
    Route(M, delete_mail, methods=["DELETE"]),
    Route(f"{M}/move", move_mail, methods=["POST"]),
    Route(f"{M}/copy", copy_mail, methods=["POST"]),
    Route(f"{M}/spam", spam_mail, methods=["POST"]),
    Route(f"{M}/notspam", notspam_mail, methods=["POST"]),
    Route(f"{M}/source", source, methods=["GET"]),
    Route(f"{M}/source/download", source_download, methods=["GET"]),
    Route(f"{M}/source/headers", source_headers, methods=["GET"]),
    Route(f"{M}/attachments", attachments, methods=["GET"]),
    Route(f"{M}/labels", add_label, methods=["POST"]),
    Route(f"{M}/labels/{{labelId}}", remove_label, methods=["DELETE"]),
    Route(f"{M}/conversation", mail_conversation, methods=["GET"]),
]
