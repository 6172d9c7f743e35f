"""Routes: ``/api/v1/batch/mails/...`` and ``/api/v1/batch/conversations/...``.

A batch names its items by ``ids`` and/or ``ranges`` (a range is ``limit`` items from
``start`` on, in the start item's folder sorted by ``sortInfo``). Items the operation
cannot be applied to are returned in ``batchOperationDetails.failedItems``. A batch with
more items than the ``async_batch_threshold`` knob is answered 201 with a ``jobKey`` and
applied after ``async_batch_delay`` seconds; no status endpoint exists (none is documented).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from axsync.fake.queries import CONVERSATION_SORT_FIELDS, DIRECTIONS, MAIL_SORT_FIELDS
from axsync.fake.state import FakeError, InvalidError, NotFoundError
from axsync.fake.web import Call, Endpoint, endpoint

Action = Callable[[str], object]
COMMON_FIELDS = ("ids", "ranges", "sortInfo")


def _flags(call: Call) -> tuple[bool | None, bool | None]:
    unread, flagged = call.field_bool("isUnread"), call.field_bool("isFlagged")
    if unread is None and flagged is None:
        raise InvalidError("one of isUnread or isFlagged is required")
    return unread, flagged


def _destination(call: Call) -> str:
    value = call.field_str("destinationFolderId", required=True)
    return call.folder_arg(value, "destinationFolderId")


def _mail_action(call: Call, op: str) -> Action:
    mb = call.mailbox
    if op in ("copy", "move"):
        dest = _destination(call)
        return (lambda i: mb.copy_mail(i, dest)) if op == "copy" else (lambda i: mb.move_mail(i, dest))
    if op == "delete":
        return mb.delete_mail
    if op == "update":
        unread, flagged = _flags(call)
        return lambda i: mb.set_flags(i, unread=unread, flagged=flagged)
    label = call.label_arg(call.field_str("labelId"))
    if op == "labels/add":
        return lambda i: mb.add_label_to_mail(i, label)
    return lambda i: mb.remove_label_from_mail(i, label)


def _conversation_action(call: Call, op: str) -> Action:
    mb = call.mailbox
    call.require_conversations()
    if op == "move":
        dest = _destination(call)
        return lambda i: mb.move_conversation(i, dest)
    if op == "delete":
        return mb.delete_conversation
    if op == "update":
        unread, flagged = _flags(call)
        return lambda i: mb.update_conversation(i, unread=unread, flagged=flagged)
    label = call.label_arg(call.field_str("labelId"))
    present = op == "labels/add"
    return lambda i: mb.label_conversation(i, label, present)


def _sort_info(call: Call, fields: frozenset[str]) -> tuple[str, str]:
    info = call.field("sortInfo", dict)
    if info is None:
        raise InvalidError("sortInfo is required with ranges")
    if set(info) - {"field", "direction"}:
        raise InvalidError("sortInfo takes field and direction only")
    field, direction = info.get("field"), info.get("direction")
    if field not in fields:
        raise InvalidError(f"invalid sortInfo.field {field!r}")
    if direction not in DIRECTIONS:
        raise InvalidError("sortInfo.direction must be ASC or DESC")
    return str(field), str(direction)


def _range(call: Call, item: Any, conversations: bool) -> tuple[str, int, str | None]:
    keys = {"start", "limit", "sourceFolderId"} if conversations else {"start", "limit"}
    if not isinstance(item, dict) or set(item) - keys:
        raise InvalidError(f"a range is an object with {', '.join(sorted(keys))}")
    start, limit = item.get("start"), item.get("limit")
    if not isinstance(start, str) or not start:
        raise InvalidError("range start must be an id")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidError("range limit must be a positive number")
    folder = None
    if conversations:
        folder = call.folder_arg(item.get("sourceFolderId"), "sourceFolderId")
    return start, limit, folder


def _items(call: Call, conversations: bool) -> tuple[list[str], list[str]]:
    """(the items named by ids and ranges, in order and without repeats; range starts that
    could not be resolved)."""
    ids = call.field("ids", list)
    ranges = call.field("ranges", list)
    if not ids and not ranges:
        raise InvalidError("one of ids or ranges is required")
    if ids and not all(isinstance(i, str) and i for i in ids):
        raise InvalidError("ids must be strings")
    out: list[str] = list(ids or [])
    failed: list[str] = []
    if ranges:
        fields = CONVERSATION_SORT_FIELDS if conversations else MAIL_SORT_FIELDS
        sort, direction = _sort_info(call, fields)
        for start, limit, folder in [_range(call, r, conversations) for r in ranges]:
            try:
                if folder is not None:
                    out.extend(call.mailbox.conversation_range(start, limit, folder, sort, direction))
                else:
                    out.extend(call.mailbox.mail_range(start, limit, sort, direction))
            except NotFoundError:
                failed.append(start)
    return list(dict.fromkeys(out)), failed


def _apply(items: list[str], action: Action) -> list[str]:
    failed = []
    for item in items:
        try:
            action(item)
        except FakeError:
            failed.append(item)
    return failed


def _batch(kind: str, op: str, extra: tuple[str, ...]) -> Endpoint:
    conversations = kind == "conversations"

    @endpoint(fields=COMMON_FIELDS + extra)
    def run(call: Call) -> Response:
        action = _conversation_action(call, op) if conversations else _mail_action(call, op)
        items, failed = _items(call, conversations)
        knobs = call.knobs
        if len(items) > knobs.async_batch_threshold:

            def later() -> None:
                _apply(items, action)

            key = call.service.schedule(knobs.async_batch_delay, later)
            return JSONResponse(
                {
                    "batchOperationDetails": {"failedItems": failed},
                    "jobKey": key,
                    "status": "inProgress",
                    "progress": 0,
                },
                status_code=201,
            )
        failed.extend(_apply(items, action))
        return JSONResponse(
            {"batchOperationDetails": {"failedItems": failed}, "status": "completed", "progress": 100}
        )

    return run


_OPS: dict[str, tuple[str, ...]] = {
    "copy": ("destinationFolderId",),
    "move": ("destinationFolderId",),
    "delete": (),
    "update": ("isUnread", "isFlagged"),
    "labels/add": ("labelId",),
    "labels/remove": ("labelId",),
}
ROUTES = [
    Route(f"/api/v1/batch/{kind}/{op}", _batch(kind, op, extra), methods=["POST"])
    for kind in ("mails", "conversations")
    for op, extra in _OPS.items()
    if not (kind == "conversations" and op == "copy")
]
