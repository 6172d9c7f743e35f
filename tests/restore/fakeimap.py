"""A small scripted IMAP server for restore tests of behaviour Dovecot does not show:
no LITERAL+ (every literal waits for "+"), no UIDPLUS, a ``.`` separator under an
``INBOX.`` namespace, PERMANENTFLAGS without ``\\*``, no STARTTLS."""

from __future__ import annotations

import re
import socketserver
import threading
from dataclasses import dataclass, field
from types import TracebackType

from axsync.restore import wire


@dataclass
class Box:
    validity: int
    messages: list[tuple[int, tuple[str, ...], str, bytes]] = field(default_factory=list)
    next_uid: int = 1


@dataclass
class State:
    user: str = "u"
    password: str = "pässword \"q\""
    capabilities: str = "IMAP4rev1 NAMESPACE"
    prefix: str = "INBOX."
    separator: str = "."
    permanent: str = "(\\Seen \\Answered \\Flagged \\Draft \\Deleted $Forwarded)"
    boxes: dict[str, Box] = field(default_factory=lambda: {"INBOX": Box(1)})
    commands: list[bytes] = field(default_factory=list)
    literal_markers: list[bytes] = field(default_factory=list)


class _Handler(socketserver.StreamRequestHandler):
    state: State

    def send(self, text: str | bytes) -> None:
        self.wfile.write((text.encode() if isinstance(text, str) else text) + b"\r\n")

    def read_command(self) -> bytes | None:
        buf = b""
        while True:
            line = self.rfile.readline()
            if not line:
                return None
            buf += line
            m = re.search(rb"(~?\{(\d+)(\+?)\})\r\n$", line)
            if not m:
                return buf[:-2] if buf.endswith(b"\r\n") else buf.rstrip(b"\n")
            self.state.literal_markers.append(m.group(1))
            if not m.group(3):
                self.send("+ go ahead")
            buf += self.rfile.read(int(m.group(2)))

    def handle(self) -> None:
        st = self.state
        self.send(f"* OK [CAPABILITY {st.capabilities}] fake ready")
        while (raw := self.read_command()) is not None:
            tag, _, rest = raw.partition(b" ")
            values = wire.parse(rest)
            name = wire.text(values[0]).upper()
            args = values[1:]
            st.commands.append(name.encode() if name == "LOGIN" else rest[:200])
            reply = getattr(self, f"cmd_{name.lower()}", None)
            text = reply(args) if reply else "BAD unknown"
            self.send(tag + b" " + text.encode())
            if name == "LOGOUT":
                return

    def cmd_capability(self, args: list[wire.Value]) -> str:
        self.send(f"* CAPABILITY {self.state.capabilities}")
        return "OK done"

    def cmd_login(self, args: list[wire.Value]) -> str:
        user, password = (wire.text(a) for a in args)
        ok = (user, password) == (self.state.user, self.state.password)
        return "OK logged in" if ok else "NO [AUTHENTICATIONFAILED] Authentication failed."

    def cmd_logout(self, args: list[wire.Value]) -> str:
        self.send("* BYE bye")
        return "OK"

    def cmd_namespace(self, args: list[wire.Value]) -> str:
        self.send(f'* NAMESPACE (("{self.state.prefix}" "{self.state.separator}")) NIL NIL')
        return "OK"

    def cmd_list(self, args: list[wire.Value]) -> str:
        pattern = wire.text(args[1])
        if pattern == "":
            self.send(f'* LIST (\\Noselect) "{self.state.separator}" ""')
        else:
            for name in self.state.boxes:
                self.send(f'* LIST () "{self.state.separator}" "{name}"')
        return "OK"

    def cmd_create(self, args: list[wire.Value]) -> str:
        name = wire.text(args[0])
        if name in self.state.boxes:
            return "NO [ALREADYEXISTS] exists"
        self.state.boxes[name] = Box(len(self.state.boxes) + 1)
        return "OK created"

    def cmd_select(self, args: list[wire.Value]) -> str:
        box = self.state.boxes.get(wire.text(args[0]))
        if box is None:
            return "NO no such mailbox"
        self.selected = box
        self.send(f"* {len(box.messages)} EXISTS")
        self.send(f"* OK [UIDVALIDITY {box.validity}] ok")
        self.send(f"* OK [PERMANENTFLAGS {self.state.permanent}] ok")
        return "OK [READ-WRITE] selected"

    def cmd_uid(self, args: list[wire.Value]) -> str:
        items = " ".join(wire.text(a) for a in args[2] if isinstance(a, bytes)) \
            if isinstance(args[2], list) else ""
        wanted = None if wire.text(args[1]) == "1:*" else {
            int(x) for x in wire.text(args[1]).split(",") if x.isdigit()}
        for seq, (uid, _flags, date, data) in enumerate(self.selected.messages, 1):
            if wanted is not None and uid not in wanted:
                continue
            if "BODY.PEEK[]<0." in items:
                part = data[:2048]
                self.send(b"* %d FETCH (UID %d BODY[]<0> {%d}\r\n%s)" % (seq, uid, len(part), part))
                continue
            header = data.split(b"\r\n\r\n", 1)[0]
            mid = re.search(rb"(?im)^message-id:.*\r\n", header + b"\r\n")
            field_ = (mid.group(0) if mid else b"") + b"\r\n"
            self.send(b'* %d FETCH (UID %d RFC822.SIZE %d INTERNALDATE "%s" '
                      b"BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n%s)"
                      % (seq, uid, len(data), date.encode(), len(field_), field_))
        return "OK fetched"

    def cmd_append(self, args: list[wire.Value]) -> str:
        box = self.state.boxes.get(wire.text(args[0]))
        if box is None:
            return "NO [TRYCREATE] no such mailbox"
        flags = tuple(wire.text(f) for f in args[1]) if isinstance(args[1], list) else ()
        date, data = wire.text(args[2]), args[3]
        assert isinstance(data, bytes)
        box.messages.append((box.next_uid, flags, date, data))
        box.next_uid += 1
        return "OK appended"


class FakeImap:
    def __init__(self, state: State | None = None) -> None:
        self.state = state or State()
        handler = type("H", (_Handler,), {"state": self.state})
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeImap:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
