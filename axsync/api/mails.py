"""Mail endpoints of :class:`axsync.api.ApiClient`: listings, delta, source download, updates."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

import httpx

from axsync.api import paging, wire
from axsync.api.base import (
    MAIL,
    MAIL_COPY,
    MAIL_CREATE,
    MAIL_DELETE,
    MAIL_LABEL_ADD,
    MAIL_LABEL_REMOVE,
    MAIL_MOVE,
    MAIL_SOURCE,
    MAIL_UPDATE,
    MAILS,
    MAILS_DELTA,
    TRUE,
    ClientBase,
)
from axsync.api.download import SourceDigest
from axsync.api.transport import RetryableBody
from axsync.errors import (
    HttpStatusError,
    IntegrityError,
    MalformedReply,
    ServerUnreachable,
    StoreError,
)
from axsync.model import Download, Mail, MailDelta, MailPage

if TYPE_CHECKING:
    from axsync.api.aio import AsyncSource

CHUNK = 64 * 1024
#: Mails per page of ``GET /api/v1/mails/delta``: an initial pull lists every mail this
#: way, one page after another per folder. 1000 instead of 500 took a 10k pull at 20 ms
#: from 6.74-7.02 to 6.56-6.70 s (medians of two batches of four alternating runs): half
#: the round trips before the first download. A server that allows fewer clamps it.
DELTA_PAGE = 1000
_CAMEL = re.compile(r"_([a-z])")


def camel_case(name: str) -> str:
    """``body_text`` -> ``bodyText``; ``from_`` -> ``from``; camelCase passes unchanged."""
    return _CAMEL.sub(lambda m: m.group(1).upper(), name.rstrip("_"))


class MailsMixin(ClientBase):
    # ------------------------------------------------------------------ listings

    def mails_token(self, folder_id: str) -> str:
        """The folder's content sync token (``GET /api/v1/mails?syncTokenOnly=true``).
        NotFound or BadRequest for an unknown folder."""
        params: dict[str, str | int] = {
            "folderId": folder_id,
            "syncTokenOnly": TRUE,
            "sort": "date",
            "dir": "ASC",
            "start": 0,
            "limit": 1,
        }
        return wire.parse_sync_token(self._json(MAILS, params=params), MAILS.key)

    def mails_page(
        self, folder_id: str, start: int, limit: int, sort: str = "date", direction: str = "ASC"
    ) -> MailPage:
        """One page of ``GET /api/v1/mails``. ``sort``, ``dir``, ``start`` and ``limit`` are
        always sent (the server's defaults are sticky per session). The server may return
        fewer than ``limit`` items (it clamps silently). NotFound or BadRequest for an unknown
        folder (servers differ)."""
        params: dict[str, str | int] = {
            "folderId": folder_id,
            "start": start,
            "limit": limit,
            "sort": sort,
            "dir": direction.upper(),
        }
        return wire.parse_mail_page(self._json(MAILS, params=params), MAILS.key, folder_id)

    def list_all_mails(self, folder_id: str, page_size: int = 500) -> tuple[str, list[Mail]]:
        """Every mail of a folder as a consistent snapshot: ``(sync_token, mails)``.

        Pages by date ascending with explicit sort/dir/limit, advancing ``start`` by the
        number of items actually returned, deduplicating by id. If any page carries a token
        different from the first page's, or the listing comes up short of ``totalItems``,
        the folder is listed again (4 attempts). Raises ApiError if no consistent listing
        was obtained; never returns a listing that may be missing mails.
        """

        def fetch(start: int, limit: int) -> tuple[str, int, tuple[Mail, ...]]:
            page = self.mails_page(folder_id, start, limit)
            return page.sync_token, page.total_items, page.items

        return paging.snapshot(fetch, max(1, page_size), lambda m: m.id, what=f"folder {folder_id}")

    # ------------------------------------------------------------------ delta

    def mails_delta(self, folder_id: str, sync_token: str | None, limit: int = DELTA_PAGE) -> MailDelta:
        """One page of ``GET /api/v1/mails/delta`` (Axigen >= 10.6.6). ``sync_token`` None
        starts a full round (every mail reported new). When ``more_available`` is set, call
        again with the returned (intermediate) token.

        Raises EndpointMissing on 404 (and the client stops using mails delta for good),
        TokenRejected on 400/410 when a token was sent, BadRequest otherwise.
        """
        self._require("mail_delta", MAILS_DELTA)
        params: dict[str, str | int] = {"folderId": folder_id, "limit": limit}
        if sync_token is not None:
            params["syncToken"] = sync_token
        try:
            data = self._json(MAILS_DELTA, params=params)
        except HttpStatusError as exc:
            self._raise_delta_error(exc, "mail_delta", MAILS_DELTA, sync_token)
        return wire.parse_mail_delta(data, MAILS_DELTA.key, folder_id)

    def iter_mails_delta(
        self, folder_id: str, sync_token: str | None, limit: int = DELTA_PAGE
    ) -> Iterator[MailDelta]:
        """Every page of the delta since ``sync_token``, following ``moreAvailable``; the
        last page's ``sync_token`` is the one to store. MalformedReply if the server says
        more is available without handing out a new token (asking again would loop)."""
        token = sync_token
        while True:
            page = self.mails_delta(folder_id, token, limit)
            yield page
            if not page.more_available:
                return
            if page.sync_token == token:  # the same request again would loop forever
                raise MalformedReply(
                    f"{MAILS_DELTA.key}: moreAvailable=true without a new sync token",
                    endpoint=MAILS_DELTA.key,
                )
            token = page.sync_token

    # ------------------------------------------------------------------ one mail

    def get_mail(self, mail_id: str) -> Mail:
        """``GET /api/v1/mails/{id}``. NotFound if it no longer exists."""
        return wire.parse_mail(self._json(MAIL, mail_id), MAIL.key)

    def source_fetcher(self) -> AsyncSource | None:
        """An :class:`axsync.api.aio.AsyncSource` doing what :meth:`download_source` does,
        for an asyncio event loop; None when downloads must go through
        :meth:`download_source` (a caller-given HTTP transport or a proxy, or a subclass
        that replaces it)."""
        if not self._http.lean or type(self).download_source is not MailsMixin.download_source:
            return None
        from axsync.api.aio import AsyncSource

        return AsyncSource(self._http, MAIL_SOURCE)

    def download_source(
        self, mail_id: str, out: BinaryIO, *, expected_size: int | None = None
    ) -> Download:
        """Stream the raw message (``GET /api/v1/mails/{id}/source``) into ``out`` in 64 KiB
        chunks and return its size, sha256 and vsize (bare LF counted as CRLF).

        Safe to call from many threads at once. When a retry follows an attempt that already
        wrote bytes (dropped connection, body shorter than Content-Length), ``out`` is first
        seeked back to where it was at the call (0 for a fresh file) and truncated; a
        non-seekable ``out`` cannot be rewound, so such a failure raises ServerUnreachable.

        Raises IntegrityError if the bytes received disagree with Content-Length (after the
        retries) or with ``expected_size``; NotFound if the mail is gone; StoreError if
        ``out`` cannot be written.
        """
        output = SourceOutput(out, mail_id)

        def handle(resp: httpx.Response) -> Download:
            output.start()
            for chunk in resp.iter_bytes(CHUNK):
                output.write(chunk)
            return output.check(resp.headers, resp.num_bytes_downloaded, expected_size)

        result = self._http.call(MAIL_SOURCE, mail_id, handle=handle)
        output.flush()
        return result

    # ------------------------------------------------------------------ changes

    def update_mail(
        self, mail_id: str, *, is_unread: bool | None = None, is_flagged: bool | None = None
    ) -> Mail:
        """Set flags to absolute values (``PATCH /api/v1/mails/{id}``; retried like a GET).
        With no flag given, nothing is sent and the current mail is returned."""
        body = {
            k: v for k, v in (("isUnread", is_unread), ("isFlagged", is_flagged)) if v is not None
        }
        if not body:
            return self.get_mail(mail_id)
        data = self._optional_json(MAIL_UPDATE, mail_id, json=body)
        return self.get_mail(mail_id) if data is None else wire.parse_mail(data, MAIL_UPDATE.key)

    def move_mail(self, mail_id: str, folder_id: str) -> Mail:
        """Move to ``folder_id``; returns the mail *as it is now* (its id may have changed).
        Never blindly retried: ServerUnreachable if the outcome is unknown."""
        data = self._json(MAIL_MOVE, mail_id, json={"destinationFolderId": folder_id})
        return wire.parse_mail(data, MAIL_MOVE.key, folder_id)

    def copy_mail(self, mail_id: str, folder_id: str) -> Mail:
        """Copy into ``folder_id``; returns the new copy. Never blindly retried."""
        data = self._json(MAIL_COPY, mail_id, json={"destinationFolderId": folder_id})
        return wire.parse_mail(data, MAIL_COPY.key, folder_id)

    def delete_mail(self, mail_id: str) -> None:
        """``DELETE /api/v1/mails/{id}`` (to Trash or permanent, per the account's
        ``deleteToTrash``). Not retried after an ambiguous failure: repeating it could turn a
        move-to-Trash into a permanent delete. NotFound if it does not exist."""
        self._empty(MAIL_DELETE, mail_id)

    def add_mail_label(self, mail_id: str, label_id: str) -> None:
        """Put a label on a mail. Sets an absolute state, so it is retried like a GET."""
        self._empty(MAIL_LABEL_ADD, mail_id, json={"labelId": label_id})

    def remove_mail_label(self, mail_id: str, label_id: str) -> None:
        """Take a label off a mail (absolute state; retried; a 404 after an ambiguous
        attempt counts as done)."""
        self._empty(MAIL_LABEL_REMOVE, mail_id, label_id, gone_ok=True)

    def create_mail(self, folder_id: str, **fields: object) -> Mail:
        """Append a new mail built from structured fields (``POST /api/v1/mails``; there is
        no raw-MIME upload). Field names may be snake_case (``body_text``, ``is_unread``,
        ``from_``) or the API's camelCase. Never blindly retried."""
        body: dict[str, object] = {camel_case(k): v for k, v in fields.items()}
        body["folderId"] = folder_id
        return wire.parse_mail(self._json(MAIL_CREATE, json=body), MAIL_CREATE.key, folder_id)


class SourceOutput:
    """Where the attempts of one source download write (threaded and asyncio paths alike):
    ``out`` is rewound before an attempt that follows a partial body, every chunk is written
    and hashed, and the lengths are checked at the end."""

    def __init__(self, out: BinaryIO, mail_id: str) -> None:
        self.out, self.mail_id = out, mail_id
        try:
            self.origin: int | None = out.tell() if out.seekable() else None
        except (OSError, ValueError):
            self.origin = None
        self.written = False
        self.digest = SourceDigest()

    def start(self) -> None:
        """Before a 2xx body: start over if an earlier attempt wrote part of one."""
        if self.written:
            rewind(self.out, self.origin, self.mail_id)
        self.digest = SourceDigest()

    def write(self, chunk: bytes) -> None:
        self.written = True
        try:
            self.out.write(chunk)
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot write the source of mail {self.mail_id}: {exc}") from exc
        self.digest.update(chunk)

    def check(self, headers: httpx.Headers, raw_bytes: int, expected_size: int | None) -> Download:
        """The body is complete: its size, sha256 and vsize, once :func:`check_lengths` agrees."""
        check_lengths(headers, raw_bytes, self.digest, expected_size, self.mail_id)
        return self.digest.result()

    def flush(self) -> None:
        try:
            self.out.flush()
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot write the source of mail {self.mail_id}: {exc}") from exc


def rewind(out: BinaryIO, origin: int | None, mail_id: str) -> None:
    """Seek ``out`` back to ``origin`` and truncate it, before a retry writes again."""
    if origin is None:
        raise ServerUnreachable(
            f"{MAIL_SOURCE.key}: download of mail {mail_id} was interrupted and the output "
            "stream cannot be rewound for another attempt",
            endpoint=MAIL_SOURCE.key,
        )
    try:
        out.seek(origin)
        out.truncate()
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot rewind the output for mail {mail_id}: {exc}") from exc


def check_lengths(
    headers: httpx.Headers, raw_bytes: int, digest: SourceDigest, expected_size: int | None,
    mail_id: str,
) -> None:
    """Content-Length and the caller's expected size must match what arrived. Content-Length
    counts the bytes on the wire: the decoded size when there is no Content-Encoding, else
    ``raw_bytes``, the count of bytes received before decoding."""
    where = MAIL_SOURCE.key
    declared = headers.get("Content-Length", "").strip()
    length = int(declared) if declared.isdigit() else None
    encoded = headers.get("Content-Encoding", "identity").strip().lower() not in (
        "",
        "identity",
    )
    received = raw_bytes if encoded else digest.size
    if length is not None and received != length:
        raise RetryableBody(
            IntegrityError(
                f"{where}: mail {mail_id}: Content-Length {length} but {received} bytes arrived",
                endpoint=where,
                expected=length,
                received=received,
            )
        )
    if expected_size is not None and digest.size != expected_size:
        error = IntegrityError(
            f"{where}: mail {mail_id}: expected {expected_size} bytes, received {digest.size}",
            endpoint=where,
            expected=expected_size,
            received=digest.size,
        )
        if length is None:  # nothing proves the body complete: maybe it was cut short
            raise RetryableBody(error)
        raise error
