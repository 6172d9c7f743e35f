"""IMAP modified UTF-7 (RFC 3501 5.1.3), the encoding of mailbox names on the wire and in
Maildir++ directory names. Shared by the corpus loader, the store's tests and restore."""

from __future__ import annotations

import base64


def mutf7_encode(name: str) -> str:
    """Unicode → modified UTF-7 (``&`` → ``&-``, non-ASCII runs in ``&…-`` base64)."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            raw = "".join(run).encode("utf-16-be", "surrogatepass")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(name: str, *, malformed: str = "keep") -> str:
    """Modified UTF-7 → unicode. A malformed ``&…-`` run is kept verbatim
    (``malformed="keep"``), or the whole name is returned unchanged (``"whole"``: some IMAP
    servers send raw UTF-8)."""
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        end = name.find("-", i + 1) if ch == "&" else -1
        if end < 0:
            out.append(ch)
            i += 1
            continue
        chunk = name[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            try:
                raw = base64.b64decode(chunk.replace(",", "/") + "=" * (-len(chunk) % 4), validate=True)
                out.append(raw.decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError):
                if malformed == "whole":
                    return name
                out.append(name[i : end + 1])
        i = end + 1
    return "".join(out)
