"""Batch endpoints (``POST /api/v1/batch/...``) of :class:`axsync.api.ApiClient`."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from axsync.api import jsonread, wire
from axsync.api.base import ClientBase
from axsync.api.transport import Route
from axsync.errors import ApiError, UsageError
from axsync.model import BatchResult

_FLAGS = ("isUnread", "isFlagged")
#: op -> the body fields it requires (a tuple of alternatives means "at least one of").
BATCH_OPS: dict[str, tuple[str, ...]] = {
    "mails/copy": ("destinationFolderId",),
    "mails/move": ("destinationFolderId",),
    "mails/delete": (),
    "mails/update": _FLAGS,
    "mails/labels/add": ("labelId",),
    "mails/labels/remove": ("labelId",),
    "conversations/move": ("destinationFolderId",),
    "conversations/delete": (),
    "conversations/update": _FLAGS,
    "conversations/labels/add": ("labelId",),
    "conversations/labels/remove": ("labelId",),
}
#: keyword argument -> (JSON field, expected Python type)
BATCH_PARAMS: dict[str, tuple[str, type]] = {
    "destination_folder_id": ("destinationFolderId", str),
    "label_id": ("labelId", str),
    "is_unread": ("isUnread", bool),
    "is_flagged": ("isFlagged", bool),
}


def batch_body(op: str, params: dict[str, object]) -> dict[str, object]:
    """The documented camelCase body fields for ``op`` from snake_case ``params`` (None
    values dropped). UsageError for an unknown op, an unknown or mistyped parameter, or a
    missing required one."""
    if op not in BATCH_OPS:
        raise UsageError(f"unknown batch operation {op!r}; expected one of {sorted(BATCH_OPS)}")
    body: dict[str, object] = {}
    for name, value in params.items():
        if name not in BATCH_PARAMS:
            raise UsageError(f"batch {op}: unknown parameter {name!r}")
        field, kind = BATCH_PARAMS[name]
        if value is None:
            continue
        if not isinstance(value, kind):
            raise UsageError(f"batch {op}: {name} must be {kind.__name__}")
        body[field] = value
    needed = BATCH_OPS[op]
    if needed == _FLAGS:
        if not any(f in body for f in _FLAGS):
            raise UsageError(f"batch {op}: give is_unread and/or is_flagged")
        extra = set(body) - set(_FLAGS)
    else:
        missing = [f for f in needed if f not in body]
        if missing:
            raise UsageError(f"batch {op}: missing {', '.join(missing)}")
        extra = set(body) - set(needed)
    if extra:
        raise UsageError(f"batch {op}: does not take {', '.join(sorted(extra))}")
    return body


class BatchMixin(ClientBase):
    def batch(
        self, op: str, ids: Sequence[str], *, chunk_size: int = 1000, **params: object
    ) -> list[BatchResult]:
        """Run a batch operation over ``ids`` (deduplicated, order kept) in chunks of
        ``chunk_size``: one ``POST /api/v1/batch/{op}`` and one :class:`BatchResult` per chunk.

        ``op``: ``mails/copy|move|delete|update|labels/add|labels/remove`` or
        ``conversations/move|delete|update|labels/add|labels/remove``. ``params``:
        ``destination_folder_id``, ``label_id``, ``is_unread``, ``is_flagged`` as the op needs.

        A 200 reply is a synchronous result; a 201 reply means the server runs the chunk
        asynchronously (``job_key`` set, ``is_async``): no status endpoint is documented, so
        its outcome must be confirmed by listing. ``failed_items`` merges
        ``batchOperationDetails.failedItems`` and a top-level ``failedItems``.

        Never blindly retried (only on an explicit 503/429 or a connection that was never
        opened). If a chunk fails, the ApiError raised carries the results of the chunks
        already done in ``details["completed"]``. UsageError for bad arguments.
        """
        body = batch_body(op, params)
        if chunk_size < 1:
            raise UsageError("batch: chunk_size must be >= 1")
        unique = list(dict.fromkeys(ids))
        route = Route("POST", f"/api/v1/batch/{op}")
        results: list[BatchResult] = []
        for first in range(0, len(unique), chunk_size):
            chunk = tuple(unique[first : first + chunk_size])
            try:
                results.append(self._batch_chunk(route, chunk, body))
            except ApiError as exc:
                exc.details["completed"] = tuple(results)
                raise
        return results

    def _batch_chunk(
        self, route: Route, chunk: tuple[str, ...], body: dict[str, object]
    ) -> BatchResult:
        def handle(resp: httpx.Response) -> BatchResult:
            raw = resp.read()
            data = jsonread.decode_json(raw, route.key) if raw.strip() else None
            return wire.parse_batch(data, route.key, resp.status_code, chunk)

        return self._http.call(route, handle=handle, json={**body, "ids": list(chunk)})
