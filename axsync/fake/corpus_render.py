"""The shared machinery of pass two of the corpus generator: envelope headers, body text,
HTML, text parts, multiparts and attachments. :class:`~axsync.fake.corpus_kinds.Renderer`
adds one method per message kind on top.
"""

from __future__ import annotations

import base64
import zlib
from abc import ABC, abstractmethod
from urllib.parse import quote

from axsync.fake import corpus_mime as m
from axsync.fake import corpus_text as txt
from axsync.fake.corpus_gen import OWNER, Person, Plan, Planner, pick, randint

_PARA_COUNTS = (1, 2, 3, 4, 5)
_PARA_CUM = (25, 60, 82, 94, 100)


class RenderBase(ABC):
    def __init__(self, planner: Planner) -> None:
        self.pl = planner
        self.rng = planner.rng
        self.plans = planner.plans
        self.bseq = 0
        self._addr_cache: dict[tuple[Person, str], str] = {}
        self._sig_cache: dict[Person, str] = {}

    @abstractmethod
    def content(self, p: Plan) -> m.Part:
        """The content headers and body of ``p`` (the kind-specific part)."""

    # ------------------------------------------------------------------ envelope

    def render(self, i: int) -> bytes:
        p = self.plans[i]
        headers, body = self.content(p)
        if p.msgid and p.kind in ("newsletter", "receipt", "spam"):
            p.msgid = self.pl.msgid(p.author.domain)  # the sender changed while rendering
        top = self.odd_envelope(p) if p.kind == "odd" else self.envelope(p)
        if not (p.kind == "nocharset" and p.variant == "latin1"):
            top.append("MIME-Version: 1.0")
        top += headers
        return m.message(top, body, p.crlf)

    def boundary(self) -> str:
        self.bseq += 1
        r = self.rng.getrandbits(64)
        style = r & 3
        if style == 0:
            return f"----=_Part_{self.bseq}_{r:x}"
        if style == 1:
            return f"=_{r:016x}{self.bseq}"
        if style == 2:
            return f"_000_{r:X}{self.bseq}_=_"
        return f"=-{self.bseq}-{base64.b32encode(r.to_bytes(8, 'big')).decode().rstrip('=')}=_"

    def addr(self, who: Person, mode: str = "B") -> str:
        key = (who, mode)
        out = self._addr_cache.get(key)
        if out is None:
            out = self._addr_cache[key] = m.address(who.name, who.addr, who.charset, mode)
        return out

    def subject_value(self, p: Plan) -> str:
        s = p.subject
        if s.isascii():
            return s
        words = s.split(" ")
        i = 0
        while i < len(words) - 1 and words[i].isascii():
            i += 1
        lead, rest = " ".join(words[:i]), " ".join(words[i:])
        enc = m.encoded_words(rest, p.subject_charset, p.subject_mode)
        return f"{lead} {enc}" if lead else enc

    def received(self, p: Plan, hop: int) -> str:
        rng = self.rng
        dom = p.author.domain
        ip = f"{pick(rng, ('192.0.2', '198.51.100', '203.0.113'))}.{randint(rng, 1, 254)}"
        rid = f"{rng.getrandbits(48):012X}"
        when = m.rfc2822_date(max(p.date, p.received - hop * 2))
        n = randint(rng, 1, 40)
        if hop == 0:
            return (
                f"Received: from mail{n}.{dom} (mail{n}.{dom} [{ip}])\n\tby mx.example.com "
                f"(Axigen) with ESMTPS id {rid}\n\tfor <{OWNER.addr}>; {when}"
            )
        return (
            f"Received: from [10.{hop}.0.{n}] (unknown [10.{hop}.0.{n}])\n\tby mail{n}.{dom} "
            f"(Postfix) with ESMTPSA id {rid};\n\t{when}"
        )

    def dkim(self, p: Plan) -> str:
        sig = base64.b64encode(self.rng.randbytes(128)).decode()
        bh = base64.b64encode(self.rng.randbytes(32)).decode()
        return (
            f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={p.author.domain};\n"
            f"\ts=selector1; h=from:to:subject:date:message-id;\n\tbh={bh};\n"
            f"\tb={sig[:64]}\n\t {sig[64:128]}\n\t {sig[128:]}"
        )

    def envelope(self, p: Plan) -> list[str]:
        rng = self.rng
        h: list[str] = []
        if not p.author.owner:
            h.append(f"Return-Path: <{p.author.addr}>")
            h += [self.received(p, hop) for hop in range(randint(rng, 1, 2))]
            if rng.random() < 0.2:
                h.append(self.dkim(p))
        h.append(f"Date: {m.rfc2822_date(p.date, p.author.tz, comment=rng.random() < 0.2)}")
        h.append(m.fold("From", self.addr(p.author, p.subject_mode)))
        if p.to:
            h.append(m.fold_list("To", [self.addr(t) for t in p.to]))
        if p.cc:
            h.append(m.fold_list("Cc", [self.addr(t) for t in p.cc]))
        h.append(m.fold("Subject", self.subject_value(p)))
        if p.msgid:
            h.append(f"Message-ID: {p.msgid}")
        if p.references:
            h.append(f"In-Reply-To: {p.references[-1]}")
            h.append(m.fold_ids("References", list(p.references)))
        if p.draft and rng.random() < 0.5:
            h.append("X-Mozilla-Draft-Info: internal/draft; vcard=0; receipt=0; DSN=0; uuencode=0")
        if p.author.owner:
            h.append(pick(rng, ("User-Agent: Roundcube Webmail/1.6.5", "X-Mailer: Axigen Webmail")))
        elif rng.random() < 0.6:
            h.append(pick(rng, txt.MAILERS))
        return h

    def odd_envelope(self, p: Plan) -> list[str]:
        other = self.pl.person()
        long_value = "\n\t".join(
            f"token-{k:03d}={self.rng.getrandbits(40):010x};" for k in range(40)
        )
        return [
            f"Return-Path: <{p.author.addr}>",
            *(self.received(p, hop) for hop in range(3)),
            f"Date:   {m.rfc2822_date(p.date, p.author.tz)}",
            f"From: {self.addr(p.author)}",
            f"To: {self.addr(OWNER)}",
            f"To: {self.addr(other)}",
            "Subject: This subject line is folded\n\tacross several lines\n    with   irregular"
            "   whitespace",
            "subject: A duplicate subject header, in lower case",
            "X-Duplicate: first",
            "X-Duplicate: second",
            "x-lower-case-header: value",
            "X-Empty:",
            "X-No-Space:value-without-a-space",
            f"X-Long-Folded: {long_value}",
            "Comments: (a (nested) comment) and text",
            *([f"Message-ID: {p.msgid}"] if p.msgid else []),
        ]

    # ------------------------------------------------------------------ text

    def compose(self, p: Plan, utf8: bool = False) -> str:
        """The plain-text body of ``p``; remembered on the plan for replies to quote."""
        rng = self.rng
        a = p.author
        if p.forward and p.parent >= 0:
            par = self.plans[p.parent]
            text = (
                f"FYI, see below.\n\n{a.first}\n\n---------- Forwarded message ---------\n"
                f"From: {par.author.name} <{par.author.addr}>\n"
                f"Date: {m.rfc2822_date(par.date, par.author.tz)}\nSubject: {par.subject}\n"
                f"To: {', '.join(t.addr for t in par.to)}\n\n{par.text}"
            )
            p.text = text
            return text
        who = p.to[0].first if p.to else "all"
        k = rng.choices(_PARA_COUNTS, cum_weights=_PARA_CUM)[0]
        paras = rng.choices(self.pl.ascii_pool, k=k)
        if utf8:
            paras[rng.randrange(k)] = pick(rng, self.pl.utf8_pool)
        parts = [
            pick(rng, txt.GREETINGS).format(first=who),
            "\n\n",
            "\n\n".join(paras),
            "\n\n",
            pick(rng, txt.CLOSINGS),
            "\n",
            a.first,
            "\n",
        ]
        if a.owner or rng.random() < 0.4:
            parts.append(self.signature(a))
        if p.parent >= 0:
            par = self.plans[p.parent]
            lines = par.text.split("\n")[:40]
            parts.append(
                f"\nOn {m.rfc2822_date(par.date, par.author.tz)}, "
                f"{par.author.name or par.author.addr} wrote:\n"
            )
            parts.append(
                "\n".join((">" if ln.startswith(">") else "> ") + ln if ln else ">" for ln in lines)
            )
            parts.append("\n")
        text = "".join(parts)
        p.text = text
        return text

    def signature(self, who: Person) -> str:
        """The same signature every time for the same person (crc32 is stable, unlike hash)."""
        sig = self._sig_cache.get(who)
        if sig is None:
            n = zlib.crc32(who.addr.encode())
            title, company = (
                txt.TITLES[n % len(txt.TITLES)],
                txt.COMPANIES[n % 7919 % len(txt.COMPANIES)],
            )
            sig = self._sig_cache[who] = f"\n-- \n{who.name or who.addr}\n{title} | {company}\n"
        return sig

    @staticmethod
    def html_of(text: str, charset: str = "utf-8", extra: str = "") -> str:
        esc = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        paras: list[str] = []
        for para in esc.split("\n\n"):
            inner = para.strip("\n").replace("\n", "<br>\n")
            if para.startswith("&gt;"):
                paras.append(f"<blockquote>{inner}</blockquote>")
            else:
                paras.append(f"<p>{inner}</p>")
        label = m.CHARSET_LABEL.get(charset, charset)
        return (
            txt.HTML_HEAD.format(charset=label)
            + "\n".join(paras)
            + "\n"
            + extra
            + "</body>\n</html>\n"
        )

    def text_part(self, text: str, subtype: str = "plain", cte: str = "") -> m.Part:
        if not cte:
            cte = (
                "7bit"
                if text.isascii()
                else self.rng.choices(
                    ("quoted-printable", "8bit", "base64"), cum_weights=(6, 9, 10)
                )[0]
            )
        elif cte == "7bit" and not text.isascii():
            cte = "quoted-printable"
        charset = "us-ascii" if cte == "7bit" and self.rng.random() < 0.3 else "utf-8"
        return m.text_part(subtype, text.encode("utf-8"), charset, cte)

    def alternative(self, text: str, html: str, html_cte: str = "") -> m.Part:
        if not html_cte:
            r = self.rng.random()
            html_cte = "quoted-printable" if r < 0.7 else "base64" if r < 0.8 else ""
        return m.multipart(
            "alternative",
            [self.text_part(text), self.text_part(html, "html", html_cte)],
            self.boundary(),
        )

    def mixed(self, parts: list[m.Part]) -> m.Part:
        return m.multipart("mixed", parts, self.boundary(), preamble=self.rng.random() < 0.5)

    # ------------------------------------------------------------------ attachments

    @staticmethod
    def attachment(ctype: str, filename: str, data: bytes, inline: str = "") -> m.Part:
        if filename.isascii():
            name_param = f'name="{filename}"'
            disp = f'filename="{filename}"'
        else:
            name_param = f'name="{m.encoded_words(filename)}"'
            disp = f"filename*=UTF-8''{quote(filename, safe='')}"
        headers = [
            f"Content-Type: {ctype};\n {name_param}",
            "Content-Transfer-Encoding: base64",
            f"Content-Disposition: {'inline' if inline else 'attachment'};\n {disp}",
        ]
        if inline:
            headers.append(f"Content-ID: <{inline}>")
        return headers, m.b64(data)

    def binary(self, kind: str, size: int, title: str = "Document") -> tuple[str, str, bytes]:
        """``(content type, file name, bytes)`` of a deterministic pseudo-random file."""
        rng = self.rng
        n = randint(rng, 1, 9999)
        if kind == "png":
            width = pick(rng, (16, 32, 48, 64))
            rows = max(1, min(size // (width * 3), 256))
            name = pick(rng, (f"IMG_{n:04d}.png", "screenshot.png", f"chart-{n}.png"))
            return "image/png", name, m.png(rng.randbytes(rows * width * 3), width)
        if kind == "docx":
            return (
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                pick(rng, ("Proposal v2.docx", f"minutes_{n}.docx")),
                m.zip_like(rng.randbytes(size)),
            )
        if kind == "zip":
            return "application/zip", f"archive-{n}.zip", m.zip_like(rng.randbytes(size))
        if kind == "csv":
            table = "\n".join(
                f"{k},{pick(rng, txt.VOCAB)},{randint(rng, 1, 999)}.{randint(rng, 0, 99):02d}"
                for k in range(max(2, size // 40))
            )
            return "text/csv", f"export_{n}.csv", ("id,item,amount\n" + table + "\n").encode()
        if kind == "jpeg":
            return (
                "image/jpeg",
                f"DSC_{n:04d}.jpg",
                b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rng.randbytes(size),
            )
        if kind == "mp4":
            return (
                "video/mp4",
                f"VID_{n:04d}.mp4",
                b"\x00\x00\x00\x18ftypmp42" + rng.randbytes(size),
            )
        name = pick(
            rng,
            (
                f"report_Q{randint(rng, 1, 4)}.pdf",
                f"scan_{n:04d}.pdf",
                "Invoice.pdf",
                "Übersicht 2024.pdf",
                "contract (signed).pdf",
            ),
        )
        return "application/pdf", name, m.pdf(rng.randbytes(size), title)

    def file_part(self, kind: str, size: int, title: str = "Document") -> m.Part:
        ctype, name, data = self.binary(kind, size, title)
        if ctype == "text/csv":
            return (
                [
                    f'Content-Type: text/csv; charset="us-ascii"; name="{name}"',
                    "Content-Transfer-Encoding: 7bit",
                    f'Content-Disposition: attachment; filename="{name}"',
                ],
                data,
            )
        return self.attachment(ctype, name, data)

    def small_size(self) -> int:
        return int(self.rng.triangular(1_000, 30_000, 4_000))
