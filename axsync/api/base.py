"""Shared state and helpers of :class:`axsync.api.ApiClient` and its endpoint mixins, plus the
table of every route the client uses."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import NoReturn

from axsync.api.transport import Http, Params, Route, discard, read_json, read_optional_json
from axsync.errors import (
    BadRequest,
    EndpointMissing,
    HttpStatusError,
    NotFound,
    TokenRejected,
)
from axsync.model import ServerInfo

# ---------------------------------------------------------------------------- routes

SERVER = Route("GET", "/api/")
ACCOUNT_INFO = Route("GET", "/api/v1/account/info")
INDEX_INFO = Route("GET", "/api/v1/account/indexinfo")

FOLDERS = Route("GET", "/api/v1/folders/")
FOLDERS_DELTA = Route("GET", "/api/v1/folders/delta")
FOLDER_CREATE = Route("POST", "/api/v1/folders/")
FOLDER_RENAME = Route("PATCH", "/api/v1/folders/{id}")
FOLDER_MOVE = Route("POST", "/api/v1/folders/{id}/move")
FOLDER_DELETE = Route("DELETE", "/api/v1/folders/{id}")

MAILS = Route("GET", "/api/v1/mails")
MAILS_DELTA = Route("GET", "/api/v1/mails/delta")
MAIL_CREATE = Route("POST", "/api/v1/mails")
MAIL = Route("GET", "/api/v1/mails/{id}")
MAIL_UPDATE = Route("PATCH", "/api/v1/mails/{id}")
MAIL_DELETE = Route("DELETE", "/api/v1/mails/{id}")
MAIL_MOVE = Route("POST", "/api/v1/mails/{id}/move")
MAIL_COPY = Route("POST", "/api/v1/mails/{id}/copy")
# The raw message (its Content-Type is undocumented): ask for anything, not JSON.
MAIL_SOURCE = Route("GET", "/api/v1/mails/{id}/source", accept="message/rfc822, */*")
MAIL_LABEL_ADD = Route("POST", "/api/v1/mails/{id}/labels")
MAIL_LABEL_REMOVE = Route("DELETE", "/api/v1/mails/{id}/labels/{label}")
MAIL_CONVERSATION = Route("GET", "/api/v1/mails/{id}/conversation")

LABELS = Route("GET", "/api/v1/labels")
LABEL_CREATE = Route("POST", "/api/v1/labels")
LABEL_UPDATE = Route("PATCH", "/api/v1/labels/{id}")
LABEL_UPDATE_PUT = Route("PUT", "/api/v1/labels/{id}")
LABEL_DELETE = Route("DELETE", "/api/v1/labels/{id}")

CONVERSATIONS = Route("GET", "/api/v1/conversations")
CONVERSATION = Route("GET", "/api/v1/conversations/{id}")

TRUE = "true"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the client will use. Derived from ``GET /api/`` (mails delta from Axigen 10.6.6,
    folders delta from 10.6.18) and downgraded for the client's life once a delta endpoint
    answers 404."""

    mail_delta: bool
    folder_delta: bool


class ClientBase:
    """State shared by the endpoint mixins: the transport, and what is known of the server."""

    _http: Http
    _state_lock: threading.Lock
    _server_info: ServerInfo | None
    _missing: set[str]  # "mail_delta" / "folder_delta" after a 404

    def _init_state(self, http: Http) -> None:
        self._http = http
        self._state_lock = threading.Lock()
        self._server_info = None
        self._missing = set()

    # ------------------------------------------------------------------ calls

    def _json(
        self,
        route: Route,
        *ids: str,
        params: Params | None = None,
        json: object = None,
        session: bool = True,
    ) -> object:
        """The decoded JSON body of a 2xx reply (MalformedReply if not JSON)."""
        return self._http.call(
            route, *ids, handle=read_json(route), params=params, json=json, session=session
        )

    def _optional_json(self, route: Route, *ids: str, json: object = None) -> object:
        """Like :meth:`_json`, but an empty 2xx body gives None."""
        return self._http.call(route, *ids, handle=read_optional_json(route), json=json)

    def _empty(self, route: Route, *ids: str, json: object = None, gone_ok: bool = False) -> None:
        """Send a call whose reply is documented as empty.

        ``gone_ok``: a 404 that follows an attempt which may already have been applied (the
        connection failed after sending) counts as success, since the goal state (absent)
        holds. A 404 on a first, clean attempt still raises NotFound.
        """
        try:
            self._http.call(route, *ids, handle=discard, json=json)
        except NotFound as exc:
            if not (gone_ok and exc.details.get("after_ambiguous_failure")):
                raise

    # ------------------------------------------------------------------ capabilities

    def _capability(self, feature: str) -> bool:
        with self._state_lock:
            return feature not in self._missing

    def _require(self, feature: str, route: Route) -> None:
        if feature in self._missing:
            raise EndpointMissing(
                f"{route.key}: not supported by this server (it answered 404 earlier)",
                status=404,
                endpoint=route.key,
            )

    def _raise_delta_error(
        self, exc: HttpStatusError, feature: str, route: Route, token: str | None
    ) -> NoReturn:
        """Translate a delta call's failure (call inside ``except``): 404 -> EndpointMissing
        and the feature is disabled for this client's life; 400/410 when a token was sent ->
        TokenRejected. Anything else is re-raised unchanged."""
        if isinstance(exc, NotFound):
            with self._state_lock:
                self._missing.add(feature)
            raise EndpointMissing(
                f"{route.key}: not supported by this server (HTTP 404); not used again by this "
                "client",
                status=404,
                body=exc.body,
                endpoint=route.key,
            ) from exc
        if token and (isinstance(exc, BadRequest) or exc.status == 410):
            raise TokenRejected(
                f"{route.key}: the server does not accept this sync token (HTTP {exc.status}); "
                "a full listing is needed",
                status=exc.status,
                body=exc.body,
                endpoint=route.key,
            ) from exc
        raise exc
