"""Message HTML made safe to show: nh3 (ammonia) with a mail-friendly allow-list.

What comes out has no script, no event handler, no form, no frame, no ``javascript:`` or
relative URL; links open in a new tab without referrer. Images: ``cid:`` references
become URLs of the message's own parts, ``data:`` images stay, remote ones (and CSS
``url()``\\s) are removed unless the user asked for them. The page that shows it adds a
sandboxed iframe and a strict Content-Security-Policy on top (see app.py): sanitizing is
the second line of defence, not the only one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass
from html import escape
from urllib.parse import unquote

import nh3

_EXTRA_TAGS = {"style", "font", "big", "tfoot", "caption", "center"}
_TAGS = (set(nh3.ALLOWED_TAGS) | _EXTRA_TAGS) - {"area", "map"}
_CLEAN_CONTENT = {"script", "title", "noscript", "template", "iframe", "object", "embed",
                  "textarea", "select", "head"}
_ATTRIBUTES: dict[str, set[str]] = deepcopy(nh3.ALLOWED_ATTRIBUTES)
_ATTRIBUTES["*"] = {"style", "class", "dir", "lang", "title", "align", "valign", "width",
                    "height", "bgcolor"}
_ATTRIBUTES.setdefault("font", set()).update({"color", "face", "size"})
_ATTRIBUTES["img"] = {"src", "alt", "width", "height", "title", "align", "border"}
_ATTRIBUTES["table"] |= {"border", "cellpadding", "cellspacing"}
_ATTRIBUTES.pop("area", None)
_SCHEMES = {"http", "https", "mailto", "cid", "data"}
_SAFE_DATA_IMAGE = re.compile(r"data:image/(png|gif|jpe?g|webp|bmp);base64,[A-Za-z0-9+/=\s]*\Z", re.I)
_REMOTE = re.compile(r"\A\s*(https?:)?//", re.I)
_CSS_REMOTE_URL = re.compile(r"url\(\s*(['\"]?)\s*(https?:)?//[^)]*\)", re.I)
_CSS_IMPORT = re.compile(r"@import[^;]*;?", re.I)
_CSS_DANGER = re.compile(r"expression\s*\(|behavior\s*:|-moz-binding", re.I)
_URL = re.compile(r"https?://[^\s<>\"'()\[\]]+[^\s<>\"'()\[\].,;:!?]")


@dataclass(frozen=True, slots=True)
class Sanitized:
    html: str
    remote: int  # remote images / CSS urls found (shown or blocked)


class _Filter:
    def __init__(self, cid_urls: Mapping[str, str], allow_remote: bool) -> None:
        self.cid_urls = cid_urls
        self.allow_remote = allow_remote
        self.remote = 0

    def __call__(self, tag: str, attr: str, value: str) -> str | None:
        if attr == "src":
            return self.src(value)
        if attr == "style":
            return self.css(value)
        if attr == "href" and value.strip().lower().startswith(("cid:", "data:")):
            return None
        return value

    def src(self, value: str) -> str | None:
        url = value.strip()
        if url.lower().startswith("cid:"):
            return self.cid_urls.get(unquote(url[4:]).strip().strip("<>"))
        if _REMOTE.match(url):
            self.remote += 1
            return url if self.allow_remote else None
        if _SAFE_DATA_IMAGE.match(url):
            return url
        return None

    def css(self, value: str) -> str | None:
        if _CSS_DANGER.search(value):
            return None
        found = len(_CSS_REMOTE_URL.findall(value))
        if found:
            self.remote += found
            if not self.allow_remote:
                value = _CSS_REMOTE_URL.sub("none", value)
        return value


def _style_blocks(markup: str, flt: _Filter) -> str:
    """CSS inside ``<style>`` elements: no @import, remote url()s counted and removed."""

    def fix(m: re.Match[str]) -> str:
        css = _CSS_IMPORT.sub("", m.group(2))
        css = flt.css(css) or ""
        return m.group(1) + css + m.group(3)

    return re.sub(r"(<style[^>]*>)(.*?)(</style\s*>)", fix, markup, flags=re.I | re.S)


def sanitize_html(markup: str, cid_urls: Mapping[str, str], allow_remote: bool) -> Sanitized:
    """``markup`` (a whole mail HTML document or fragment) as a safe HTML fragment.
    ``cid_urls`` maps Content-IDs to the URLs that serve those parts."""
    flt = _Filter(cid_urls, allow_remote)
    markup = _style_blocks(markup, flt)
    clean = nh3.clean(
        markup,
        tags=_TAGS,
        clean_content_tags=_CLEAN_CONTENT,
        attributes=_ATTRIBUTES,
        attribute_filter=flt,
        url_schemes=_SCHEMES,
        url_relative="deny",
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )
    return Sanitized(clean, flt.remote)


def text_to_html(text: str) -> str:
    """Plain text as escaped HTML with its http(s) links made clickable."""
    out: list[str] = []
    pos = 0
    for m in _URL.finditer(text):
        out.append(escape(text[pos:m.start()]))
        url = escape(m.group(0))
        out.append(f'<a href="{url}" target="_blank" rel="noopener noreferrer nofollow">{url}</a>')
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out)
