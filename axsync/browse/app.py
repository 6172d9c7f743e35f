"""The browse UI: a local, read-only web app over one archive (starlette + jinja2).

Every route is a GET, every handler is ``async`` and so runs on the one event-loop thread,
one request at a time, over the one read-only SQLite connection. Pages are server-rendered
(they work without JavaScript; ``static/app.js`` only adds keyboard shortcuts). Message
bodies are rendered in a sandboxed iframe from their own route with a strict CSP; parts
are addressed by number, never by name. See docs/browse.md for the security model.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from email.message import Message
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from axsync.archive import message as mm
from axsync.archive.access import Archive, FolderInfo
from axsync.archive.safepath import safe_component, slug
from axsync.browse import views
from axsync.browse.sanitize import sanitize_html, text_to_html
from axsync.browse.security import BODY_CSP, DOWNLOAD_CSP, HostCheck, SecurityHeaders
from axsync.errors import StoreError
from axsync.statedb import MessageRow

_RENDERABLE_IMAGES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}
_CHUNK = 256 * 1024
_INLINE_IMAGE_LIMIT = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Context:
    """Where the message list is: a folder (its dirname) or a search, and the page."""

    folder: str
    q: str
    page: int

    @classmethod
    def of(cls, request: Request, default_folder: str = "") -> Context:
        """From the query string; a message opened without a list context shows its own
        folder (``default_folder``)."""
        params = request.query_params
        page = params.get("page", "1")
        folder = params.get("folder", "" if "q" in params else default_folder)
        return cls(folder, params.get("q", "").strip()[:2000],
                   int(page) if page.isdigit() and 0 < int(page) < 10**7 else 1)

    def query(self, **changes: Any) -> str:
        """This context's query string (``changes`` applied), defaults left out."""
        values = {"folder": self.folder, "q": self.q, "page": self.page, "images": 0, **changes}
        kept = {k: v for k, v in values.items() if v and not (k == "page" and v == 1)}
        return "?" + urlencode(kept) if kept else ""


def _filename_header(name: str) -> str:
    """``attachment; filename=...; filename*=UTF-8''...`` for any name (a safe one)."""
    base = re.split(r"[/\\]", name)[-1]
    safe = safe_component(base, "attachment")
    ascii_name = safe.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(safe, safe='')}"


class Browse:
    def __init__(self, archive: Archive, account: str) -> None:
        self.archive = archive
        self.account = account
        self.cache = views.MessageCache()
        self.env = Environment(
            loader=PackageLoader("axsync.browse", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
        )
        self.env.filters["initial"] = lambda value: (mm.sender_name(str(value))[:1] or "?").upper()

    # ------------------------------------------------------------------ helpers

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(account=self.account, **context)
        return HTMLResponse(html, status_code=status)

    def row(self, request: Request) -> MessageRow:
        row = self.archive.message(int(request.path_params["uid"]))
        if row is None:
            raise HTTPException(404, "There is no such message in this archive.")
        return row

    def parsed(self, row: MessageRow) -> Message:
        try:
            return self.cache.get(self.archive, row)
        except StoreError as exc:
            raise HTTPException(404, f"The file of this message cannot be read: {exc}") from exc

    def folder(self, ctx: Context) -> FolderInfo:
        for info in self.archive.folders():
            if info.dirname == ctx.folder:
                return info
        if ctx.folder == "":  # an archive without an INBOX yet (nothing synced)
            return FolderInfo("", ("INBOX",))
        raise HTTPException(404, "There is no such folder in this archive.")

    def mailbox(self, request: Request, **reader: Any) -> HTMLResponse:
        selected = reader.get("row") or reader.get("current")
        ctx = Context.of(request, selected.dirname if selected else "")
        folders = self.archive.folders()
        if ctx.q:
            listing = views.search_list(self.archive, ctx.q, ctx.page)
        else:
            listing = views.folder_list(self.archive, self.folder(ctx), ctx.page)
        return self.render("mailbox.html", ctx=ctx, listing=listing, tree=views.folder_tree(folders),
                           reader=reader.pop("kind", ""), selected=selected.uid if selected else 0,
                           **reader)

    # ------------------------------------------------------------------ routes

    async def index(self, request: Request) -> Response:
        return self.mailbox(request)

    async def message(self, request: Request) -> Response:
        row = self.row(request)
        images = request.query_params.get("images") == "1"
        try:
            msg = self.cache.get(self.archive, row)
        except StoreError as exc:
            return self.mailbox(request, kind="missing", missing=str(exc), row=row)
        view = views.message_view(self.archive, row, msg)
        remote = self.body(row, msg, images).remote if view.is_html else 0
        return self.mailbox(request, kind="message", message=view, images=images, remote=remote,
                            row=row)

    async def thread(self, request: Request) -> Response:
        row = self.row(request)
        subject, items = views.thread_view(self.archive, row, self.cache)
        return self.mailbox(request, kind="thread", subject=subject, items=items, current=row)

    def body(self, row: MessageRow, msg: Message, images: bool) -> Any:
        """The sanitized HTML of the message text (plain text as escaped HTML). Inline
        (``cid:``) images become data: URLs: the sandboxed frame, an opaque origin, then
        needs nothing from this server."""
        part = mm.body_part(msg, ("html", "plain"))
        if part is not None and mm.meta(part).subtype == "html":
            return sanitize_html(mm.part_html(part), _inline_images(msg), images)
        text = mm.part_text(part) if part is not None else ""
        return _Plain(Markup('<pre class="plain">') + Markup(text_to_html(text)) + Markup("</pre>"))

    async def message_body(self, request: Request) -> Response:
        row = self.row(request)
        images = request.query_params.get("images") == "1"
        result = self.body(row, self.parsed(row), images)
        response = self.render("body.html", body=Markup(result.html))
        remote = " https: http:" if images else ""
        response.headers["content-security-policy"] = BODY_CSP.format(remote=remote)
        response.headers["x-frame-options"] = "SAMEORIGIN"
        return response

    async def part(self, request: Request) -> Response:
        row = self.row(request)
        msg = self.parsed(row)
        index = int(request.path_params["index"])
        wanted = {p.index: p for p in mm.attachments(msg)}.get(index)
        part = mm.part_at(msg, index) if wanted is not None else None
        if wanted is None or part is None:
            raise HTTPException(404, "This message has no such attachment.")
        ctype = wanted.content_type if wanted.content_type in _RENDERABLE_IMAGES else "application/octet-stream"
        return Response(mm.part_bytes(part), media_type=ctype, headers={
            "content-disposition": _filename_header(wanted.display_name()),
            "content-security-policy": DOWNLOAD_CSP,
        })

    async def raw(self, request: Request) -> Response:
        row = self.row(request)
        try:
            stream = self.archive.open_raw(row)
        except StoreError as exc:
            raise HTTPException(404, f"The file of this message cannot be read: {exc}") from exc

        async def chunks() -> Any:
            with stream:
                while chunk := stream.read(_CHUNK):
                    yield chunk

        name = f"{slug(row.subject)}-{row.uid}.eml"
        return StreamingResponse(chunks(), media_type="message/rfc822", headers={
            "content-disposition": _filename_header(name),
            "content-security-policy": DOWNLOAD_CSP,
        })

    async def error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "Something went wrong."
        if status == 404 and detail == "Not Found":
            detail = "There is nothing at this address."
        return self.render("error.html", status=status, code=status, detail=detail)


def _inline_images(msg: Message) -> dict[str, str]:
    """Content-ID → data: URL of the message's inline images (each at most 10 MB)."""
    out: dict[str, str] = {}
    for _index, part in mm.attachment_parts(msg):
        m = mm.meta(part)
        if m.content_id and m.ctype in _RENDERABLE_IMAGES:
            data = mm.part_bytes(part)
            if len(data) <= _INLINE_IMAGE_LIMIT:
                out[m.content_id] = f"data:{m.ctype};base64,{base64.b64encode(data).decode()}"
    return out


@dataclass(frozen=True, slots=True)
class _Plain:
    html: str
    remote: int = 0


def create_app(archive: Archive, account: str) -> Starlette:
    """The ASGI app. ``archive`` must have been opened ``shared`` when it is served from
    another thread than the one that opened it (uvicorn, TestClient)."""
    browse = Browse(archive, account)
    static = str(resources.files("axsync.browse").joinpath("static"))
    uid = "{uid:int}"
    app = Starlette(
        routes=[
            Route("/", browse.index),
            Route(f"/message/{uid}", browse.message),
            Route(f"/message/{uid}/body", browse.message_body),
            Route(f"/message/{uid}/part/{{index:int}}", browse.part),
            Route(f"/message/{uid}/raw", browse.raw),
            Route(f"/thread/{uid}", browse.thread),
            Mount("/static", StaticFiles(directory=static), name="static"),
        ],
        exception_handlers={HTTPException: browse.error, Exception: browse.error},
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HostCheck)
    return app
