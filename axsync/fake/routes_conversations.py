"""Routes: conversations (list, get, update, move, delete, labels, spam)."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from axsync.fake.queries import CONVERSATION_SORT_FIELDS
from axsync.fake.state import InvalidError, NotFoundError
from axsync.fake.views import conversation_instance, mail_instance
from axsync.fake.web import Call, empty_response, endpoint


def _conversation_reply(call: Call, conv_id: str) -> Response:
    try:
        view = call.mailbox.conversation_view(conv_id)
    except NotFoundError:  # every member went to Spam or Trash: the conversation is gone
        return empty_response()
    return JSONResponse(conversation_instance(view, call.service))


def _conversation(call: Call) -> str:
    call.require_conversations()
    conv_id = call.path["conversationId"]
    call.mailbox.conversation_view(conv_id)  # 404 for an unknown one
    return conv_id


@endpoint(
    query=("folderId", "sort", "dir", "start", "limit", "activeConversationId", "syncTokenOnly")
)
def list_conversations(call: Call) -> Response:
    call.require_conversations()
    folder_id = call.folder_arg(call.q("folderId"), "folderId")
    field, direction = call.sort("conversation", CONVERSATION_SORT_FIELDS)
    start, limit = call.paging()
    page = call.mailbox.conversation_list(
        folder_id, field, direction, start, limit, call.q("activeConversationId")
    )
    if call.q_bool("syncTokenOnly"):
        return JSONResponse({"syncToken": page.sync_token})
    return JSONResponse(
        {
            "syncToken": page.sync_token,
            "totalItems": page.total,
            "sortInfo": {"field": field, "direction": direction, "activeRowIndex": page.active_index},
            "items": [conversation_instance(v, call.service) for v in page.items],
        }
    )


@endpoint(query=("start", "limit", "mailIds", "syncTokenOnly"))
def get_conversation(call: Call) -> Response:
    conv_id = _conversation(call)
    view = call.mailbox.conversation_view(conv_id)
    if call.q_bool("syncTokenOnly"):
        return JSONResponse({"syncToken": view.sync_token})
    wanted = call.q_list("mailIds")
    if wanted:
        items = [m for m in view.members if m.id in wanted]
    else:
        start, limit = call.paging()
        items = list(view.members[start : start + limit])
    return JSONResponse(
        {
            "syncToken": view.sync_token,
            "totalItems": len(view.members),
            "items": [mail_instance(m, call.service) for m in items],
        }
    )


@endpoint(fields=("isUnread", "isFlagged"))
def update_conversation(call: Call) -> Response:
    conv_id = _conversation(call)
    unread, flagged = call.field_bool("isUnread"), call.field_bool("isFlagged")
    if unread is None and flagged is None:
        raise InvalidError("one of isUnread or isFlagged is required")
    call.mailbox.update_conversation(conv_id, unread=unread, flagged=flagged)
    return _conversation_reply(call, conv_id)


@endpoint(fields=("destinationFolderId",))
def move_conversation(call: Call) -> Response:
    conv_id = _conversation(call)
    folder_id = call.folder_arg(call.field_str("destinationFolderId"), "destinationFolderId")
    call.mailbox.move_conversation(conv_id, folder_id)
    if folder_id == call.mailbox.special_folder_id("junk"):
        return empty_response()  # documented: 200 with an empty body
    return _conversation_reply(call, conv_id)


@endpoint()
def delete_conversation(call: Call) -> Response:
    call.mailbox.delete_conversation(_conversation(call))
    return empty_response()


@endpoint(fields=("labelId",))
def add_label(call: Call) -> Response:
    conv_id = _conversation(call)
    call.mailbox.label_conversation(conv_id, call.label_arg(call.field_str("labelId")), True)
    return empty_response()


@endpoint()
def remove_label(call: Call) -> Response:
    call.mailbox.label_conversation(_conversation(call), call.path["labelId"], False)
    return empty_response()


@endpoint(since=(10, 5, 27))
def spam_conversation(call: Call) -> Response:
    conv_id = _conversation(call)
    call.mailbox.move_conversation(conv_id, call.mailbox.special_folder_id("junk"))
    return empty_response()


C = "/api/v1/conversations/{conversationId}"
ROUTES = [
    Route("/api/v1/conversations", list_conversations, methods=["GET"]),
    Route(C, get_conversation, methods=["GET"]),
    Route(C, update_conversation, methods=["PATCH"]),
    Route(C, delete_conversation, methods=["DELETE"]),
    Route(f"{C}/move", move_conversation, methods=["POST"]),
    Route(f"{C}/labels", add_label, methods=["POST"]),
    Route(f"{C}/labels/{{labelId}}", remove_label, methods=["DELETE"]),
    Route(f"{C}/spam", spam_conversation, methods=["POST"]),
]
