"""The Axigen Mailbox REST API client used by the sync engine.

One :class:`ApiClient` holds one pooled HTTP client and one Axigen session, and may be shared
between threads. Every method states its contract and the errors it raises; all failures
are :mod:`axsync.errors` exceptions (``raise ... from`` the original). The rules for
sessions, retries, paging and capability detection are in ``docs/client.md``.

Mail, conversation and batch endpoints live in the mixins of :mod:`axsync.api.mails`,
:mod:`axsync.api.conversations` and :mod:`axsync.api.batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import httpx

from axsync.api import wire
from axsync.api.base import (
    ACCOUNT_INFO,
    FOLDER_CREATE,
    FOLDER_DELETE,
    FOLDER_MOVE,
    FOLDER_RENAME,
    FOLDERS,
    FOLDERS_DELTA,
    INDEX_INFO,
    LABEL_CREATE,
    LABEL_DELETE,
    LABEL_UPDATE,
    LABEL_UPDATE_PUT,
    LABELS,
    SERVER,
    TRUE,
    Capabilities,
)
from axsync.api.batch import BatchMixin
from axsync.api.conversations import ConversationsMixin
from axsync.api.mails import MailsMixin
from axsync.api.retry import Backoff
from axsync.api.transport import Http
from axsync.errors import AuthError, HttpStatusError, MalformedReply
from axsync.model import (
    AccountInfo,
    Folder,
    FolderDelta,
    FolderList,
    IndexState,
    Label,
    LabelList,
    ServerInfo,
)

_FOLDER_PARAMS = {"type": "mails", "accessMode": "all"}


class ApiClient(MailsMixin, ConversationsMixin, BatchMixin):
    """Client for one Axigen mailbox.

    Each thread sends over its own connections and the pull's downloads over an event loop
    of their own (:meth:`source_fetcher`), so nothing needs sizing: ``concurrency`` (how
    many threads a caller will use) is accepted for callers that pass it, and unused.
    ``max_retries`` is the number of *re*-tries after the first attempt; backoff is
    exponential with full jitter between 0 and ``min(backoff_max, backoff_base * 2**n)``,
    or the server's ``Retry-After`` capped at ``backoff_max``. ``transport`` replaces the
    network (tests). Nothing is sent before the first call; the session is opened lazily.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        concurrency: int = 8,
        timeout: float = 60.0,
        verify: bool | str = True,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        http = Http(
            base_url,
            username,
            password,
            timeout=timeout,
            verify=verify,
            max_retries=max_retries,
            backoff=Backoff(base=backoff_base, maximum=backoff_max),
            transport=transport,
        )
        self._init_state(http)
        self._label_update = LABEL_UPDATE

    # ------------------------------------------------------------------ lifecycle

    @property
    def requests(self) -> int:
        """Every HTTP request sent so far, retries and logins included."""
        return self._http.counts()[0]

    @property
    def request_counts(self) -> dict[str, int]:
        """Requests sent by ``"METHOD /path/template"`` (a copy), retries and logins included."""
        return self._http.counts()[1]

    def close(self) -> None:
        """Close the connection pool. The server session is left to expire (no logout
        endpoint is documented)."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def login(self) -> None:
        """Open a session now (otherwise the first call does). AuthError on 401;
        ServerUnreachable / ServerError if the server cannot be reached."""
        self._http.login()

    # ------------------------------------------------------------------ server, account

    def server_info(self) -> ServerInfo:
        """``GET /api/``: API and server versions. Sent without a session; if the server
        wants one anyway (401), sent again inside the session. Cached for
        :meth:`capabilities`."""
        try:
            data = self._json(SERVER, session=False)
        except AuthError:
            data = self._json(SERVER)
        info = wire.parse_server_info(data, SERVER.key)
        with self._state_lock:
            self._server_info = info
        return info

    def capabilities(self) -> Capabilities:
        """What this server supports: from the version in ``GET /api/`` (fetched once), minus
        any delta endpoint that answered 404 during this client's life. If the version
        cannot be read (no ``/api/``, malformed reply), both deltas are assumed present until
        a 404 says otherwise. AuthError / ServerUnreachable like any call."""
        info = self._server_info
        if info is None:
            try:
                info = self.server_info()
            except (HttpStatusError, MalformedReply):
                info = None
        return Capabilities(
            mail_delta=(info.has_mail_delta if info else True) and self._capability("mail_delta"),
            folder_delta=(info.has_folder_delta if info else True)
            and self._capability("folder_delta"),
        )

    def account_info(self) -> AccountInfo:
        """``GET /api/v1/account/info`` (names, root folder container id)."""
        return wire.parse_account_info(self._json(ACCOUNT_INFO), ACCOUNT_INFO.key)

    def index_info(self, scope: str, ids: Sequence[str] = ("conversation",)) -> list[IndexState]:
        """``GET /api/v1/account/indexinfo``: state of the named indexes for ``scope`` (a folder
        id, or the folder container id for the whole mailbox). ``ids`` are sent as repeated
        ``ids=`` parameters."""
        data = self._json(INDEX_INFO, params={"ids": list(ids), "scope": scope})
        return wire.parse_index_info(data, INDEX_INFO.key)

    # ------------------------------------------------------------------ folders

    def list_folders(self) -> FolderList:
        """Every mail folder (``type=mails``, ``accessMode=all``), with the folder-list sync
        token. Folders the server reports with another ``folderType`` are dropped."""
        data = self._json(FOLDERS, params=_FOLDER_PARAMS)
        listing = wire.parse_folder_list(data, FOLDERS.key)
        mail_only = tuple(f for f in listing.items if f.folder_type == "mails")
        return FolderList(sync_token=listing.sync_token, items=mail_only)

    def folders_token(self) -> str:
        """The folder-list sync token alone (``syncTokenOnly=true``, same filters as
        :meth:`list_folders`). It only detects change; it cannot fetch the changes."""
        data = self._json(FOLDERS, params={**_FOLDER_PARAMS, "syncTokenOnly": TRUE})
        return wire.parse_sync_token(data, FOLDERS.key)

    def folders_delta(self, sync_token: str = "") -> FolderDelta:
        """``GET /api/v1/folders/delta`` (Axigen >= 10.6.18): ordered folder events since
        ``sync_token`` ("" = first round, every folder reported as newFolder). newFolder /
        changedFolder events whose ``folderType`` says they are not mail folders are dropped.

        Raises EndpointMissing on 404 (and the client stops using it for good),
        TokenRejected on 400/410 when a token was sent, BadRequest otherwise."""
        self._require("folder_delta", FOLDERS_DELTA)
        try:
            data = self._json(FOLDERS_DELTA, params={"accessMode": "all", "syncToken": sync_token})
        except HttpStatusError as exc:
            self._raise_delta_error(exc, "folder_delta", FOLDERS_DELTA, sync_token)
        delta = wire.parse_folder_delta(data, FOLDERS_DELTA.key)
        events = tuple(
            e for e in delta.events if e.folder is None or e.folder.folder_type == "mails"
        )
        return FolderDelta(sync_token=delta.sync_token, events=events)

    def create_folder(self, name: str, parent_id: str | None = None) -> Folder:
        """Create a mail folder under ``parent_id`` (None: top level). Never blindly retried.
        BadRequest for an invalid or clashing name, Forbidden if not permitted."""
        body: dict[str, str] = {"name": name}
        if parent_id is None:
            body["type"] = "mails"
        else:
            body["parentId"] = parent_id
        return wire.parse_folder(self._json(FOLDER_CREATE, json=body), FOLDER_CREATE.key)

    def rename_folder(self, folder_id: str, name: str) -> Folder:
        """Rename (absolute state, retried like a GET). Forbidden for special folders."""
        data = self._json(FOLDER_RENAME, folder_id, json={"name": name})
        return wire.parse_folder(data, FOLDER_RENAME.key)

    def move_folder(self, folder_id: str, parent_id: str) -> Folder:
        """Move under ``parent_id`` (the container id for top level). Never blindly retried."""
        data = self._json(FOLDER_MOVE, folder_id, json={"parentId": parent_id})
        return wire.parse_folder(data, FOLDER_MOVE.key)

    def delete_folder(self, folder_id: str) -> None:
        """Delete (to Trash, or permanently from Trash or without ``deleteToTrash``). Never
        blindly retried: a repeat could delete permanently what went to Trash."""
        self._empty(FOLDER_DELETE, folder_id)

    # ------------------------------------------------------------------ labels

    def list_labels(self) -> LabelList:
        """``GET /api/v1/labels``: every label and the label-list sync token. If the server's
        reply carries no token, a digest of the list stands in (see ``wire``)."""
        return wire.parse_label_list(self._json(LABELS), LABELS.key)

    def labels_token(self) -> str:
        """The label-list sync token (``syncTokenOnly=true``); the same stand-in digest as
        :meth:`list_labels` if the server has none."""
        data = self._json(LABELS, params={"syncTokenOnly": TRUE})
        if isinstance(data, dict) and data.get("syncToken") is not None:
            return wire.parse_sync_token(data, LABELS.key)
        return wire.parse_label_list(data, LABELS.key).sync_token

    def create_label(self, name: str) -> Label:
        """Create a label (names are case-insensitive; ``junk``/``notjunk``/``nonjunk`` and
        names over 128 characters are refused: BadRequest). Never blindly retried."""
        return wire.parse_label(self._json(LABEL_CREATE, json={"name": name}), LABEL_CREATE.key)

    def rename_label(self, label_id: str, name: str) -> Label:
        """Rename a label (absolute state, retried). Sent as PATCH; a server answering 405
        gets PUT from then on. An empty reply gives ``Label(label_id, name)``."""
        route = self._label_update
        try:
            data = self._optional_json(route, label_id, json={"name": name})
        except HttpStatusError as exc:
            if exc.status != 405 or route is LABEL_UPDATE_PUT:
                raise
            self._label_update = route = LABEL_UPDATE_PUT
            data = self._optional_json(route, label_id, json={"name": name})
        return Label(label_id, name) if data is None else wire.parse_label(data, route.key)

    def delete_label(self, label_id: str) -> None:
        """Delete a label (retried; a 404 after an ambiguous attempt counts as done)."""
        self._empty(LABEL_DELETE, label_id, gone_ok=True)
