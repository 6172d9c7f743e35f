"""Running size / sha256 / vsize of a message body streamed in chunks (pure logic).

``vsize`` is the size the message has with every bare LF counted as CRLF: what Maildir's
``,W=`` field and IMAP's RFC822.SIZE report. A CR LF pair split across two chunks is still
one line ending, so the digest remembers whether the previous chunk ended with CR.
"""

from __future__ import annotations

import hashlib

from axsync.model import Download


class SourceDigest:
    """Feed chunks with :meth:`update`; read :meth:`result` at the end."""

    __slots__ = ("_bare_lf", "_ended_cr", "_sha", "size")

    def __init__(self) -> None:
        self.size = 0
        self._sha = hashlib.sha256()
        self._bare_lf = 0
        self._ended_cr = False

    def update(self, chunk: bytes) -> None:
        if not chunk:
            return
        pairs = chunk.count(b"\r\n")
        if self._ended_cr and chunk[0] == 0x0A:
            pairs += 1
        self._bare_lf += chunk.count(b"\n") - pairs
        self._ended_cr = chunk[-1] == 0x0D
        self.size += len(chunk)
        self._sha.update(chunk)

    @property
    def vsize(self) -> int:
        return self.size + self._bare_lf

    def result(self) -> Download:
        return Download(size=self.size, sha256=self._sha.hexdigest(), vsize=self.vsize)


def vsize_of(data: bytes) -> int:
    """Reference definition, used by tests: bytes with every bare LF counted as two."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")
