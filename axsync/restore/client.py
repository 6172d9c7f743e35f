"""A small IMAP4rev1 client for restore: TLS or STARTTLS, login, LIST, CREATE, SELECT,
UID FETCH and a streaming APPEND.

Why not ``imaplib``: its ``append`` holds the whole message in memory, rewrites bare CR
to CRLF (the archive's bytes must arrive as they are, only bare LF becoming CRLF), and
knows neither LITERAL+ (no round trip per message) nor BINARY's ``~{n}`` literal (the only
way to send a NUL byte). Everything that talks to the socket is here; parsing is in
:mod:`axsync.restore.wire`.

Errors: :class:`~axsync.errors.ServerUnreachable` (connect, TLS, lost connection; exit 5),
:class:`~axsync.errors.AuthError` (login refused; exit 3), :class:`CommandFailed` (a NO or
BAD to one command; the caller decides), :class:`ImapProtocolError`. No error message and
no log line ever contains the password.
"""

from __future__ import annotations

import base64
import logging
import re
import socket
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from axsync.errors import ApiError, AuthError, ServerUnreachable
from axsync.restore import wire
from axsync.restore.target import ImapTarget
from axsync.restore.wire import ImapProtocolError, Value

log = logging.getLogger("axsync.restore.imap")

_LITERAL_MINUS_MAX = 4096
_LISTING_ITEMS = b"(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"


class CommandFailed(ApiError):
    """The server answered NO or BAD. ``code`` is the response code (e.g. OVERQUOTA)."""

    def __init__(self, message: str, code: str = "", **details: object) -> None:
        super().__init__(message, **details)
        self.code = code


@dataclass(frozen=True, slots=True)
class Literal:
    """A literal to send: ``size`` bytes produced by ``chunks``; ``binary`` sends it as
    ``~{n}`` (RFC 3516) so NUL bytes survive."""

    size: int
    chunks: Iterable[bytes]
    binary: bool = False


@dataclass(slots=True)
class Mailbox:
    """What SELECT told about a mailbox. ``permanent`` None: the server did not say."""

    name: str
    exists: int = 0
    uidvalidity: int | None = None
    permanent: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Listed:
    """One message of a target mailbox: UID, RFC822.SIZE, INTERNALDATE, Message-ID."""

    uid: int
    size: int
    internal_date: int
    message_id: str


@dataclass(slots=True)
class _Reply:
    status: str
    text: bytes
    untagged: list[bytes] = field(default_factory=list)


class ImapClient:
    """One logged-in session. Use :meth:`connect`, then :meth:`login`; close with
    :meth:`logout` (also as a context manager)."""

    def __init__(self, sock: socket.socket, target: ImapTarget) -> None:
        self.target = target
        self._sock = sock
        self._file: BinaryIO = sock.makefile("rb")
        self._tag = 0
        self.capabilities: frozenset[str] = frozenset()
        self.tls = isinstance(sock, ssl.SSLSocket)

    # ------------------------------------------------------------------ connection

    @classmethod
    def connect(cls, target: ImapTarget, *, timeout: float = 60.0) -> ImapClient:
        """Connect, do TLS (implicit or STARTTLS) and read the capabilities."""
        where = f"{target.host}:{target.port}"
        try:
            raw = socket.create_connection((target.host, target.port), timeout=timeout)
        except OSError as exc:
            raise ServerUnreachable(f"cannot connect to IMAP server {where}: {exc}") from None
        sock: socket.socket = raw
        try:
            if target.tls == "implicit":
                sock = cls._wrap(raw, target)
            client = cls(sock, target)
            greeting = client._read_response()
            if not greeting.startswith((b"* OK", b"* PREAUTH")):
                raise ServerUnreachable(f"IMAP server {where} refused the connection: "
                                        f"{greeting[:200].decode('utf-8', 'replace')}")
            client._capability(greeting)
            if target.tls == "starttls":
                client._starttls()
            return client
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _wrap(sock: socket.socket, target: ImapTarget) -> ssl.SSLSocket:
        try:
            return target.ssl_context().wrap_socket(sock, server_hostname=target.host)
        except ssl.SSLCertVerificationError as exc:
            raise ServerUnreachable(
                f"TLS certificate of {target.host}:{target.port} not accepted "
                f"({exc.verify_message}); give the CA with --ca-bundle or ca_bundle"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise ServerUnreachable(f"TLS with {target.host}:{target.port} failed: {exc}") from None

    def _starttls(self) -> None:
        if "STARTTLS" not in self.capabilities:
            if self.target.loopback:
                log.info("%s offers no STARTTLS: plain text (loopback only)", self.target.host)
                return
            raise ServerUnreachable(
                f"IMAP server {self.target.host} does not offer STARTTLS; refusing to send "
                "the password in clear (use imaps:// if it has TLS on port 993)"
            )
        self._simple(b"STARTTLS")
        self._sock = self._wrap(self._sock, self.target)
        self._file = self._sock.makefile("rb")
        self.tls = True
        self.capabilities = frozenset()
        self._capability(b"")

    def _capability(self, line: bytes) -> None:
        m = re.search(rb"\[CAPABILITY ([^\]]*)\]", line)
        if m:
            self.capabilities = frozenset(m.group(1).decode("ascii", "replace").upper().split())
            return
        reply = self._simple(b"CAPABILITY")
        for untagged in reply.untagged:
            if untagged[:13].upper() == b"* CAPABILITY ":
                self.capabilities = frozenset(untagged[13:].decode("ascii", "replace").upper().split())

    def login(self, user: str, password: str) -> None:
        """AUTHENTICATE PLAIN when offered, else LOGIN. AuthError when refused."""
        try:
            if "AUTH=PLAIN" in self.capabilities:
                token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
                if "SASL-IR" in self.capabilities:
                    reply = self._run([b"AUTHENTICATE PLAIN " + token], secret=True)
                else:
                    reply = self._run([b"AUTHENTICATE PLAIN"], continuation=token, secret=True)
            elif "LOGINDISABLED" in self.capabilities:
                raise AuthError(f"{self.target.identity}: the server allows no login here")
            else:
                reply = self._run([b"LOGIN ", _arg(user.encode()), b" ", _arg(password.encode())],
                                  secret=True)
        except CommandFailed as exc:
            raise AuthError(f"IMAP login as {self.target.user} on {self.target.host} refused: "
                            f"{exc}") from None
        self._capability(reply.text)

    def logout(self) -> None:
        try:
            self._simple(b"LOGOUT")
        except (ApiError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        for closable in (self._file, self._sock):
            try:
                closable.close()
            except OSError:
                pass

    def __enter__(self) -> ImapClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.logout()

    # ------------------------------------------------------------------ mailboxes

    def namespace(self) -> tuple[str, str | None] | None:
        """The first personal namespace (prefix, separator), or None without NAMESPACE."""
        if "NAMESPACE" not in self.capabilities:
            return None
        for line in self._simple(b"NAMESPACE").untagged:
            if line[:12].upper() == b"* NAMESPACE ":
                values = wire.parse(line[12:])
                personal = values[0] if values else None
                if isinstance(personal, list) and personal and isinstance(personal[0], list):
                    prefix, sep = [*personal[0], None, None][:2]
                    return (wire.mutf7_decode(wire.text(prefix)),
                            wire.text(sep) if isinstance(sep, bytes) else None)
        return None

    def list_mailboxes(self, pattern: str = "*") -> dict[str, tuple[frozenset[str], str | None]]:
        """``LIST "" pattern`` → unicode name → (attributes, separator)."""
        out: dict[str, tuple[frozenset[str], str | None]] = {}
        reply = self._run([b'LIST "" ', _mbox(pattern)])
        for line in reply.untagged:
            if line[:7].upper() != b"* LIST ":
                continue
            attrs, sep, name = [*wire.parse(line[7:]), None, None, None][:3]
            if not isinstance(attrs, list) or not isinstance(name, bytes):
                raise ImapProtocolError(f"unexpected LIST reply {line[:200]!r}")
            flags = frozenset(wire.text(a).lower() for a in attrs)
            out[wire.mutf7_decode(wire.text(name))] = (
                flags, wire.text(sep) if isinstance(sep, bytes) else None)
        return out

    def create(self, name: str) -> None:
        self._run([b"CREATE ", _mbox(name)])

    def select(self, name: str) -> Mailbox:
        """SELECT (read-write: PERMANENTFLAGS is only reported there). Nothing is stored
        or expunged; leave with :meth:`unselect`, never CLOSE."""
        reply = self._run([b"SELECT ", _mbox(name)])
        box = Mailbox(name)
        for line in reply.untagged:
            m = re.match(rb"\* (\d+) EXISTS", line, re.I)
            if m:
                box.exists = int(m.group(1))
            code, args = wire.response_code(line[4:] if line[:5].upper() == b"* OK " else b"")
            if code == "UIDVALIDITY" and args.isdigit():
                box.uidvalidity = int(args)
            elif code == "PERMANENTFLAGS":
                box.permanent = frozenset(args.strip("()").split())
        return box

    def unselect(self) -> None:
        """Leave the selected mailbox without expunging (UNSELECT, else a no-op)."""
        if "UNSELECT" in self.capabilities:
            self._simple(b"UNSELECT")

    def listing(self) -> list[Listed]:
        """UID, RFC822.SIZE, INTERNALDATE and Message-ID of every message of the selected
        mailbox, in one round trip."""
        out: list[Listed] = []
        for attrs in self._fetch(b"1:*", _LISTING_ITEMS):
            header = next((v for k, v in attrs.items() if k.startswith("BODY[")), b"")
            out.append(Listed(
                uid=int(wire.text(attrs["UID"])),
                size=int(wire.text(attrs["RFC822.SIZE"])),
                internal_date=wire.parse_internaldate(wire.text(attrs["INTERNALDATE"])),
                message_id=wire.message_id_of(header if isinstance(header, bytes) else b""),
            ))
        return out

    def heads(self, uids: Iterable[int], size: int = wire.FINGERPRINT_BYTES) -> dict[int, bytes]:
        """The first ``size`` bytes (BODY.PEEK[]<0.size>) of each given message."""
        wanted = list(uids)
        if not wanted:
            return {}
        out: dict[int, bytes] = {}
        items = b"(UID BODY.PEEK[]<0.%d>)" % size
        for attrs in self._fetch(wire.uid_set(wanted).encode("ascii"), items):
            body = next((v for k, v in attrs.items() if k.startswith("BODY[")), b"")
            out[int(wire.text(attrs["UID"]))] = body if isinstance(body, bytes) else b""
        return out

    def _fetch(self, uids: bytes, items: bytes) -> Iterator[dict[str, Value]]:
        reply = self._run([b"UID FETCH " + uids + b" " + items])
        for line in reply.untagged:
            m = re.match(rb"\* \d+ FETCH ", line, re.I)
            if not m:
                continue
            values = wire.parse(line[m.end():])
            pairs = values[0] if values else None
            if not isinstance(pairs, list) or len(pairs) % 2:
                raise ImapProtocolError(f"unexpected FETCH reply {line[:200]!r}")
            attrs = {wire.text(k).upper(): v for k, v in zip(pairs[::2], pairs[1::2], strict=True)}
            if "UID" in attrs:
                yield attrs

    def append(self, mailbox: str, flags: Iterable[str], internal_date: int,
               literal: Literal) -> tuple[int, int] | None:
        """APPEND one message; returns (uidvalidity, uid) from APPENDUID when given.
        Uses LITERAL+ (no wait for the server's "+") when offered."""
        flag_list = " ".join(flags).encode("ascii")
        head = (b"APPEND " + _mbox(mailbox) + b" (" + flag_list
                + b') "' + wire.internaldate(internal_date).encode("ascii") + b'" ')
        reply = self._run([head, literal])
        code, args = wire.response_code(reply.text)
        if code == "APPENDUID":
            parts = args.split()
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                return int(parts[0]), int(parts[1])
        return None

    # ------------------------------------------------------------------ protocol

    def _simple(self, command: bytes) -> _Reply:
        return self._run([command])

    def _run(self, parts: list[bytes | Literal], *, continuation: bytes | None = None,
             secret: bool = False) -> _Reply:
        """Send one command (literals streamed) and read up to its tagged reply."""
        self._tag += 1
        tag = b"A%04d" % self._tag
        name = next(p for p in parts if isinstance(p, bytes)).split(b" ", 1)[0]
        log.debug("C: %s %s%s", tag.decode(), name.decode("ascii", "replace"),
                  " ***" if secret else "")
        untagged: list[bytes] = []
        try:
            pending = tag + b" "
            for part in parts:
                if isinstance(part, Literal):
                    self._send_literal(pending, part, untagged)
                    pending = b""
                else:
                    pending += part
            self._sock.sendall(pending + wire.CRLF)
            while True:
                line = self._read_response()
                if line.startswith(tag + b" "):
                    break
                if line.startswith(b"+") and continuation is not None:
                    self._sock.sendall(continuation + wire.CRLF)
                    continuation = None
                    continue
                untagged.append(line)
        except (OSError, EOFError) as exc:
            raise ServerUnreachable(f"connection to {self.target.host} lost: "
                                    f"{exc.__class__.__name__}: {exc}") from None
        status, _, rest = line[len(tag) + 1 :].partition(b" ")
        reply = _Reply(status.decode("ascii", "replace").upper(), rest, untagged)
        if reply.status != "OK":
            code, _args = wire.response_code(rest)
            raise CommandFailed(rest.decode("utf-8", "replace").strip() or reply.status, code=code)
        return reply

    def _send_literal(self, head: bytes, lit: Literal, untagged: list[bytes]) -> None:
        plus = "LITERAL+" in self.capabilities or (
            "LITERAL-" in self.capabilities and lit.size <= _LITERAL_MINUS_MAX)
        marker = b"%s{%d%s}" % (b"~" if lit.binary else b"", lit.size, b"+" if plus else b"")
        self._sock.sendall(head + marker + wire.CRLF)
        if not plus:
            while True:
                line = self._read_response()
                if line.startswith(b"+"):
                    break
                if not line.startswith(b"*"):  # tagged NO/BAD instead of a continuation
                    status = line.split(b" ", 2)
                    text = status[2] if len(status) > 2 else line
                    raise CommandFailed(text.decode("utf-8", "replace").strip(),
                                        code=wire.response_code(text)[0])
                untagged.append(line)
        sent = 0
        for chunk in lit.chunks:
            self._sock.sendall(chunk)
            sent += len(chunk)
        if sent != lit.size:  # the connection is now out of step: it cannot be used again
            self.close()
            raise ImapProtocolError(f"literal announced {lit.size} bytes but {sent} were sent")

    def _read_response(self) -> bytes:
        """One response line, with any literals inline, without the final CRLF."""
        buf = bytearray()
        while True:
            line = self._file.readline(1 << 20)
            if not line:
                raise EOFError("the server closed the connection")
            buf += line
            size = wire.literal_size(line)
            if size is None:
                if not line.endswith(b"\n"):
                    continue  # a very long line: keep reading
                return bytes(buf[:-2] if buf.endswith(b"\r\n") else buf[:-1])
            data = self._file.read(size)
            if len(data) != size:
                raise EOFError("the server closed the connection inside a literal")
            buf += data


def _arg(data: bytes) -> bytes | Literal:
    """An astring argument: atom or quoted string, else (8-bit, CR, LF: a password, say)
    a literal."""
    quoted = wire.astring(data)
    return Literal(len(data), (data,)) if quoted is None else quoted


def _mbox(name: str) -> bytes:
    """A mailbox name (or LIST pattern) in modified UTF-7, as an atom or quoted string."""
    quoted = wire.astring(wire.mutf7_encode(name).encode("ascii"))
    if quoted is None:
        raise ImapProtocolError(f"mailbox name {name!r} holds CR, LF or NUL")
    return quoted
