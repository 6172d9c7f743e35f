"""ASGI middleware of the browse UI: the Host check (DNS rebinding) and security headers."""

from __future__ import annotations

import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The UI itself: its own script and style only; message bodies come in a same-origin frame.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# A message body (shown in a sandboxed iframe): no script at all, inline styles, images
# as data: URLs only (inline cid: images are embedded so), unless remote images were asked for.
BODY_CSP = (
    "default-src 'none'; img-src 'self' data:{remote}; style-src 'unsafe-inline'; "
    "font-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)
# A downloaded part: never rendered as a document of this origin.
DOWNLOAD_CSP = "default-src 'none'; sandbox"

_COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


_HOST = re.compile(r"(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?", re.IGNORECASE)


def host_allowed(host: str) -> bool:
    """True for ``127.0.0.1``, ``localhost`` and ``[::1]``, with or without a port."""
    return _HOST.fullmatch(host) is not None


def cross_site_subresource(headers: Headers) -> bool:
    """True for a request another web site's page makes in the background (an image,
    a fetch, a frame): browsers say so in ``Sec-Fetch-*``. Following a link from
    elsewhere (a top-level navigation) and non-browser clients are fine."""
    site = headers.get("sec-fetch-site", "")
    if site in ("", "same-origin", "none"):
        return False
    return not (headers.get("sec-fetch-mode") == "navigate"
                and headers.get("sec-fetch-dest") == "document")


async def _refuse(send: Send, status: int, text: str) -> None:
    body = text.encode() + b"\n"
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]})
    await send({"type": "http.response.body", "body": body})


class HostCheck:
    """Answer 421 to any request whose Host is not a loopback name (a web page cannot
    reach this server through a DNS name someone re-pointed at 127.0.0.1), and 403 to
    other sites' background requests (no probing the archive from a web page)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            if not host_allowed(headers.get("host", "")):
                await _refuse(send, 421, "Misdirected request: this server only answers to "
                                         "127.0.0.1 / localhost.")
                return
            if cross_site_subresource(headers):
                await _refuse(send, 403, "Forbidden: a request from another site.")
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds the common headers to every response, and the page CSP plus
    ``X-Frame-Options: DENY`` to responses that did not set their own CSP."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _COMMON.items():
                    headers.setdefault(name, value)
                if "content-security-policy" not in headers:
                    headers["content-security-policy"] = PAGE_CSP
                    headers["x-frame-options"] = "DENY"
                headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
