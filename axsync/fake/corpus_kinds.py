"""Pass two of the corpus generator: one method per message kind turns a
:class:`~axsync.fake.corpus_gen.Plan` into bytes.

Kinds: ``plain`` (variants 7bit / qp / 8bit / base64, or chosen from the text), ``alt``,
``html``, ``attach`` (pdf / png / docx / csv / zip), ``calendar``, ``forward``
(message/rfc822), ``related`` (inline cid image), ``charset`` (a legacy charset body with
RFC 2047 headers in the same charset), ``longlines``, ``nocharset`` (8-bit body, no charset),
``odd`` (folded and duplicate headers), ``fromlines`` (mbox "From " lines), ``hostile_html``,
``hostile_name`` (attachment names with ``../`` and non-ASCII), ``newsletter``, ``receipt``,
``spam`` and ``big`` (1-5 MB of attachments).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from axsync.fake import corpus_mime as m
from axsync.fake import corpus_text as txt
from axsync.fake.corpus_gen import DAY, OWNER, Person, Plan, Planner, pick, randint, wrap
from axsync.fake.corpus_render import RenderBase


class Renderer(RenderBase):
    def __init__(self, planner: Planner) -> None:
        super().__init__(planner)
        self.kinds: dict[str, Callable[[Plan], m.Part]] = {
            "plain": self.k_plain, "alt": self.k_alt, "html": self.k_html,
            "attach": self.k_attach, "calendar": self.k_calendar, "forward": self.k_forward,
            "related": self.k_related, "charset": self.k_charset,
            "longlines": self.k_longlines, "nocharset": self.k_nocharset, "odd": self.k_odd,
            "fromlines": self.k_fromlines, "hostile_html": self.k_hostile_html,
            "hostile_name": self.k_hostile_name, "newsletter": self.k_newsletter,
            "receipt": self.k_receipt, "spam": self.k_spam, "big": self.k_big,
        }  # fmt: skip

    def content(self, p: Plan) -> m.Part:
        return self.kinds[p.kind](p)

    # ------------------------------------------------------------------ kinds

    def k_plain(self, p: Plan) -> m.Part:
        v = p.variant
        utf8 = v in ("quoted-printable", "qp", "8bit", "base64") or (
            not v and self.rng.random() < 0.25
        )
        cte = {"qp": "quoted-printable"}.get(v, v)
        return self.text_part(self.compose(p, utf8), "plain", cte)

    def k_alt(self, p: Plan) -> m.Part:
        text = self.compose(p, self.rng.random() < 0.25)
        return self.alternative(text, self.html_of(text))

    def k_html(self, p: Plan) -> m.Part:
        text = self.compose(p, self.rng.random() < 0.4)
        return self.text_part(self.html_of(text), "html")

    def k_attach(self, p: Plan) -> m.Part:
        rng = self.rng
        kind = (
            p.variant
            or rng.choices(("pdf", "png", "docx", "csv", "zip"), weights=(45, 30, 10, 10, 5))[0]
        )
        text = self.compose(p, rng.random() < 0.2)
        body = (
            self.alternative(text, self.html_of(text))
            if rng.random() < 0.3
            else self.text_part(text)
        )
        files = [self.file_part(kind, self.small_size(), p.subject)]
        if rng.random() < 0.15:
            files.append(self.file_part(pick(rng, ("pdf", "png")), self.small_size(), p.subject))
        return self.mixed([body, *files])

    def k_calendar(self, p: Plan) -> m.Part:
        rng = self.rng
        start = (p.date + randint(rng, 1, 14) * DAY) // 3600 * 3600
        org = p.author
        uid = f"{rng.getrandbits(64):016x}@{org.domain}"
        summary = p.subject.replace(",", "\\,").replace(";", "\\;")
        ics = (
            "BEGIN:VCALENDAR\nPRODID:-//Example Corp//Calendar 1.0//EN\nVERSION:2.0\nMETHOD:REQUEST\n"
            "BEGIN:VEVENT\n"
            f"UID:{uid}\nDTSTAMP:{m.ics_time(p.date)}\nDTSTART:{m.ics_time(start)}\n"
            f"DTEND:{m.ics_time(start + 3600 * randint(rng, 1, 3))}\nSUMMARY:{summary}\n"
            f"LOCATION:Room {randint(rng, 1, 5)}.{randint(rng, 10, 40)}\n"
            f'ORGANIZER;CN="{org.name or org.addr}":mailto:{org.addr}\n'
            f"ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;\n"
            f' CN="{OWNER.name}":mailto:{OWNER.addr}\n'
            "DESCRIPTION:Agenda to follow.\nSEQUENCE:0\nSTATUS:CONFIRMED\nEND:VEVENT\nEND:VCALENDAR\n"
        )
        text = self.compose(p)
        cal_cte = "7bit" if ics.isascii() else "quoted-printable"
        cal = m.text_part("calendar", ics.encode(), "utf-8", cal_cte)
        cal = ([cal[0][0] + "; method=REQUEST", *cal[0][1:]], cal[1])
        alt = m.multipart(
            "alternative",
            [self.text_part(text), self.text_part(self.html_of(text), "html"), cal],
            self.boundary(),
        )
        return self.mixed([alt, self.attachment("application/ics", "invite.ics", ics.encode())])

    def inner_message(self, p: Plan) -> tuple[str, bytes]:
        """A complete message to forward: ``(its subject, its LF bytes)``."""
        rng = self.pl.rng
        author = self.pl.person()
        subject, cs, mode = self.pl.subject()
        inner = Plan(
            "alt",
            "",
            p.folder,
            p.date - randint(rng, 3600, 20 * DAY),
            author,
            [OWNER],
            subject,
            False,
            msgid=self.pl.msgid(author.domain),
            subject_charset=cs,
            subject_mode=mode,
        )
        text = self.compose(inner, rng.random() < 0.3)
        headers, body = (
            self.alternative(text, self.html_of(text))
            if rng.random() < 0.5
            else self.text_part(text)
        )
        top = [
            f"Date: {m.rfc2822_date(inner.date, author.tz)}",
            m.fold("From", self.addr(author, mode)),
            f"To: {self.addr(OWNER)}",
            m.fold("Subject", self.subject_value(inner)),
            f"Message-ID: {inner.msgid}",
            "MIME-Version: 1.0",
            *headers,
        ]
        return subject, m.message(top, body, False)

    def k_forward(self, p: Plan) -> m.Part:
        subject, raw = self.inner_message(p)
        p.subject = pick(self.rng, ("Fwd: ", "FW: ")) + subject
        cte = "7bit" if raw.isascii() else "8bit"
        rfc822 = (
            [
                "Content-Type: message/rfc822",
                f"Content-Transfer-Encoding: {cte}",
                'Content-Disposition: attachment; filename="forwarded message.eml"',
            ],
            raw,
        )
        note = self.text_part(f"Forwarding this, see the attached message.\n\n{p.author.first}\n")
        return self.mixed([note, rfc822])

    def k_related(self, p: Plan) -> m.Part:
        rng = self.rng
        cid = f"logo.{rng.getrandbits(32):08x}@{p.author.domain}"
        text = self.compose(p)
        img = f'<p><img src="cid:{cid}" alt="Company logo" width="48" height="16"></p>\n'
        html = self.html_of(text, extra=img)
        png = m.png(rng.randbytes(48 * 16 * 3), 48)
        alt = self.alternative(text, html, "quoted-printable")
        return m.multipart(
            "related",
            [alt, self.attachment("image/png", "logo.png", png, inline=cid)],
            self.boundary(),
            params='; type="multipart/alternative"',
        )

    def k_charset(self, p: Plan) -> m.Part:
        rng = self.rng
        cs = p.variant
        sentences = list(txt.LANG_TEXT[cs][1])
        picked = rng.sample(sentences, randint(rng, 3, len(sentences)))
        sep = "\n" if cs in ("shift_jis", "gb2312") else " "
        text = (
            sentences[0]
            + "\n\n"
            + _wrap_lang(sep.join(picked[1:]), sep)
            + f"\n\n-- \n{p.author.name}\n"
        )
        p.text = text
        data = text.encode(cs)
        cte = {
            "iso-8859-1": "quoted-printable",
            "windows-1252": pick(rng, ("quoted-printable", "8bit")),
            "koi8-r": "8bit",
            "shift_jis": "base64",
            "gb2312": pick(rng, ("base64", "8bit")),
        }[cs]
        plain = m.text_part("plain", data, cs, cte)
        if cs != "windows-1252":
            return plain
        html = self.html_of(text, cs).encode(cs)
        return m.multipart(
            "alternative",
            [plain, m.text_part("html", html, cs, "quoted-printable")],
            self.boundary(),
        )

    def k_longlines(self, p: Plan) -> m.Part:
        rng = self.rng
        text = self.compose(p)
        query = "&".join(f"p{k}={rng.getrandbits(64):016x}" for k in range(randint(rng, 50, 180)))
        flat = " ".join(para.replace("\n", " ") for para in rng.sample(self.pl.ascii_pool, 6))
        text += f"\nTracking link: https://tracker.example.com/view?{query}\n\n{flat} {flat}\n"
        if rng.random() < 0.7:
            return self.text_part(text, "plain", "8bit")
        html = self.html_of(text).replace("\n", " ")
        return m.multipart(
            "alternative",
            [self.text_part(text, "plain", "8bit"), self.text_part(html, "html", "8bit")],
            self.boundary(),
        )

    def k_nocharset(self, p: Plan) -> m.Part:
        rng = self.rng
        if not p.variant:
            p.variant = pick(rng, ("latin1", "utf8"))
        text = self.compose(p) + "\n" + pick(rng, txt.LANG_TEXT["iso-8859-1"][1]) + "\n"
        if p.variant == "latin1":
            return [], text.encode("iso-8859-1", "replace")
        return ["Content-Type: text/plain", "Content-Transfer-Encoding: 8bit"], text.encode("utf-8")

    def k_odd(self, p: Plan) -> m.Part:
        text = self.compose(p)
        return (
            [
                'Content-Type: text/plain;\n\tcharset="utf-8";\n\tformat=flowed',
                "CONTENT-TRANSFER-ENCODING: 7bit"
                if text.isascii()
                else "Content-Transfer-Encoding: 8bit",
            ],
            text.encode(),
        )

    def k_fromlines(self, p: Plan) -> m.Part:
        p.text = txt.FROM_LINES
        return m.text_part("plain", txt.FROM_LINES.encode(), "us-ascii", "7bit")

    def k_hostile_html(self, p: Plan) -> m.Part:
        text = self.compose(p)
        html = self.html_of(text, extra=txt.HOSTILE_HTML.format(uid=self.rng.getrandbits(48)))
        return self.alternative(text, html, "quoted-printable")

    def k_hostile_name(self, p: Plan) -> m.Part:
        rng = self.rng
        text = self.compose(p)
        names = (
            ("application/pdf", "../../Überweisung/../../étude résumé.pdf"),
            ("text/plain", "../../../etc/passwd"),
            ("application/octet-stream", "..\\..\\Windows\\System32\\évil.exe"),
        )
        files: list[m.Part] = []
        for ctype, name in names:
            data = (
                m.pdf(rng.randbytes(3000), "x")
                if ctype == "application/pdf"
                else rng.randbytes(512)
            )
            files.append(self.attachment(ctype, name, data))
        long_name = "Très long nom de fichier " * 4 + "../x.pdf"
        enc = quote(long_name, safe="")
        pieces = [enc[k : k + 60] for k in range(0, len(enc), 60)]
        cont = ";\n ".join(
            f"filename*{k}*=UTF-8''{s}" if k == 0 else f"filename*{k}*={s}"
            for k, s in enumerate(pieces)
        )
        files.append(
            (
                [
                    "Content-Type: application/pdf",
                    "Content-Transfer-Encoding: base64",
                    f"Content-Disposition: attachment;\n {cont}",
                ],
                m.b64(m.pdf(rng.randbytes(800), "y")),
            )
        )
        return self.mixed([self.text_part(text), *files])

    def k_newsletter(self, p: Plan) -> m.Part:
        rng = self.rng
        name, domain = pick(rng, txt.LIST_NAMES)
        p.author = Person(name, f"newsletter@{domain}", name.split()[0], "utf-8", 0)
        p.to = [OWNER]
        p.subject = f"{name} #{randint(rng, 1, 400)}: {pick(rng, txt.SUBJECTS).split('{')[0].strip() or 'News'}"
        text = self.compose(p, rng.random() < 0.3)
        uid = rng.getrandbits(40)
        extra = (
            f'<p><img src="https://{domain}/img/header-{uid:x}.png" alt="header"></p>\n'
            f'<p><a href="https://{domain}/unsubscribe?u={uid:x}">Unsubscribe</a></p>\n'
            f'<img src="https://{domain}/open/{uid:x}.gif" width="1" height="1">\n'
        )
        headers, body = self.alternative(text, self.html_of(text, extra=extra))
        headers += [
            f"List-Id: {name} <{domain}>",
            f"List-Unsubscribe: <https://{domain}/unsubscribe?u={uid:x}>,\n <mailto:unsubscribe@{domain}>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "Precedence: bulk",
        ]
        return headers, body

    def k_receipt(self, p: Plan) -> m.Part:
        rng = self.rng
        shop = pick(rng, txt.SHOPS)
        domain = shop.lower().replace(" ", "") + ".example"
        p.author = Person(shop, f"no-reply@{domain}", shop, "utf-8", 0)
        p.to = [OWNER]
        order = randint(rng, 100000, 999999)
        p.subject = pick(
            rng,
            (
                f"Your receipt from {shop} #{order}",
                f"Order confirmation {order}",
                f"Your {shop} order has shipped",
            ),
        )
        items = [
            (pick(rng, txt.VOCAB).capitalize(), randint(rng, 1, 3), randint(rng, 199, 19999))
            for _ in range(randint(rng, 1, 6))
        ]
        total = sum(q * c for _, q, c in items)
        lines = "\n".join(f"{n:<20} x{q}  {c / 100:>10.2f} EUR" for n, q, c in items)
        text = (
            f"Thank you for your order!\n\nOrder: {order}\n\n{lines}\n\n"
            f"{'Total':<24}{total / 100:>10.2f} EUR\n\n{shop}\n"
        )
        p.text = text
        rows = "".join(
            f"<tr><td>{n}</td><td>{q}</td><td>{c / 100:.2f} &euro;</td></tr>\n" for n, q, c in items
        )
        html = (
            txt.HTML_HEAD.format(charset="UTF-8") + f"<h1>{shop}</h1>\n<table>\n{rows}</table>\n"
            f"<p><b>Total: {total / 100:.2f} &euro;</b></p>\n</body>\n</html>\n"
        )
        alt = self.alternative(text, html)
        if rng.random() < 0.2:
            return self.mixed([alt, self.file_part("pdf", self.small_size(), f"Invoice {order}")])
        return alt

    def k_spam(self, p: Plan) -> m.Part:
        rng = self.rng
        dom = (
            f"{pick(rng, ('promo', 'win', 'secure-login', 'deals'))}{randint(rng, 1, 999)}.example"
        )
        p.author = Person(
            pick(rng, txt.SPAM_SENDERS),
            f"noreply{randint(rng, 1, 99)}@{dom}",
            "Team",
            "utf-8",
            pick(rng, (-300, 0, 480)),
        )
        p.subject = pick(rng, txt.SPAM_SUBJECTS)
        if rng.random() < 0.2:
            p.subject = "💰💰 " + p.subject + " 💰💰"
            p.subject_mode = "B"
        text = f"Dear customer,\n\n{p.subject}\n\nClick the link below to claim.\n"
        p.text = text
        html = self.html_of(
            text, extra=f'<p><a href="http://{dom}/claim"><img src="http://{dom}/b.png"></a></p>\n'
        )
        headers, body = (
            self.text_part(html, "html") if rng.random() < 0.5 else self.alternative(text, html)
        )
        headers += ["X-Spam-Flag: YES", f"X-Spam-Score: {randint(rng, 60, 250) / 10:.1f}"]
        return headers, body

    def k_big(self, p: Plan) -> m.Part:
        rng = self.rng
        target = randint(rng, 1_100_000, 4_900_000)
        per_line = 78 if p.crlf else 77
        raw_total = (target - 6_000) * 57 // per_line
        count = randint(rng, 1, 3)
        cuts = sorted(randint(rng, raw_total // 5, raw_total * 4 // 5) for _ in range(count - 1))
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, raw_total], strict=True)]
        files = [
            self.file_part(
                pick(rng, ("pdf", "zip", "jpeg", "mp4")), max(size - 700, 1000), "Large file"
            )
            for size in sizes
        ]
        return self.mixed([self.text_part(self.compose(p)), *files])


def _wrap_lang(text: str, sep: str) -> str:
    return text if sep == "\n" else wrap(text)
