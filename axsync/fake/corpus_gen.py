"""The deterministic corpus generator behind :func:`axsync.fake.corpus.generate`.

Generation runs in two passes. *Planning* decides, for every message, its folder, kind,
author, dates, flags, labels and thread links (:class:`Plan`). *Rendering*
(:mod:`axsync.fake.corpus_kinds`) turns each plan into bytes with string templates and
joins. All randomness comes from one ``random.Random`` seeded with a string derived from the
seed, so the output is byte-identical across runs, machines and ``PYTHONHASHSEED`` values.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from axsync.fake import corpus_text as txt
from axsync.fake.corpus import Corpus, CorpusFolder, CorpusMessage

BASE_DATE = 1735689600  # 2025-01-01T00:00:00Z: the corpus "now"
START_DATE = 1640995200  # 2022-01-01T00:00:00Z
YEAR_START = {2022: 1640995200, 2023: 1672531200, 2024: 1704067200, 2025: BASE_DATE}
DAY = 86400
T = TypeVar("T")

INBOX = ("INBOX",)
DRAFTS = ("Drafts",)
SENT = ("Sent",)
TRASH = ("Trash",)
SPAM = ("Spam",)
ARCHIVE = ("Archive",)
RECEIPTS = ("Receipts",)
ALPHA = ("Projects", "Alpha")

# Hostile single-component names, each a folder of its own.
HOSTILE_NAMES: tuple[str, ...] = (
    "Entwürfe", "日本語",
    "Caf\u00e9", "Cafe\u0301",  # NFC and NFD twins: different names, same glyphs
    "v1.2 notes", "a.b.c", "a/b", "..", ".", ".hidden", "~tilde", "cur", "new", "tmp",
    "Work", "work", txt.LONG_FOLDER_NAME, "Tab\there", "R&D",
)  # fmt: skip
FOLDERS: tuple[CorpusFolder, ...] = (
    CorpusFolder(INBOX, "inbox"),
    CorpusFolder(DRAFTS, "drafts"),
    CorpusFolder(SENT, "sent"),
    CorpusFolder(TRASH, "trash"),
    CorpusFolder(SPAM, "junk"),
    CorpusFolder(ARCHIVE),
    CorpusFolder(("Archive", "2023")),
    CorpusFolder(("Archive", "2024")),
    CorpusFolder(("Projects",)),  # a parent that holds no mail itself
    CorpusFolder(ALPHA),
    CorpusFolder(("Projects", "Alpha", "Specs")),
    CorpusFolder(RECEIPTS),
    *(CorpusFolder((name,)) for name in HOSTILE_NAMES),
)
# fmt: off
LABELS: tuple[str, ...] = (
    "work", "family", "$Important", "To Do", "Ärger", "a(b)", "100%", "back\\slash",
)
# Folders that get mail "by weight" (singles); Projects holds none on purpose.
_SINGLE_WEIGHTS: tuple[tuple[tuple[str, ...], float], ...] = (
    (INBOX, 40.0), (SENT, 8.0), (DRAFTS, 1.0), (TRASH, 3.0), (SPAM, 3.0), (ARCHIVE, 1.5),
    (("Archive", "2023"), 8.0), (("Archive", "2024"), 10.0), (ALPHA, 4.0),
    (("Projects", "Alpha", "Specs"), 1.0), (RECEIPTS, 4.0),
    *(((name,), 0.5) for name in HOSTILE_NAMES),
)
# Kinds every corpus of >= 200 messages contains: (kind, variant, has Message-ID).
MANDATORY: tuple[tuple[str, str, bool], ...] = (
    ("plain", "7bit", True), ("plain", "qp", True), ("plain", "8bit", True),
    ("plain", "base64", True), ("html", "", True), ("alt", "", True), ("attach", "pdf", True),
    ("attach", "png", True), ("calendar", "", True), ("forward", "", True), ("related", "", True),
    ("charset", "iso-8859-1", True), ("charset", "windows-1252", True),
    ("charset", "koi8-r", True), ("charset", "shift_jis", True), ("charset", "gb2312", True),
    ("longlines", "", True), ("nocharset", "latin1", True), ("nocharset", "utf8", True),
    ("odd", "", True), ("fromlines", "", True), ("hostile_html", "", True),
    ("hostile_name", "", True), ("newsletter", "", True), ("receipt", "", True),
    ("plain", "7bit", False), ("alt", "", False),
)
_GENERAL_KINDS: tuple[str, ...] = (
    "plain", "alt", "html", "newsletter", "attach", "receipt", "charset", "calendar", "forward",
    "related", "nocharset", "longlines", "fromlines", "hostile_html", "hostile_name",
)
_GENERAL_WEIGHTS: tuple[float, ...] = (
    40, 25, 5, 6, 5, 3, 4, 1.5, 1, 2, 0.2, 0.3, 0.2, 0.2, 0.1,
)
# fmt: on
_TZ = (-480, -420, -300, -240, -180, 0, 0, 60, 60, 120, 180, 330, 480, 540, 600)


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    addr: str
    first: str
    charset: str = "utf-8"
    tz: int = 0
    owner: bool = False

    @property
    def domain(self) -> str:
        return self.addr.rpartition("@")[2]


OWNER = Person(txt.OWNER_NAME, txt.OWNER_ADDR, "Alex", "utf-8", 60, owner=True)


@dataclass(slots=True)
class Plan:
    """Everything about one message except its bytes."""

    kind: str
    variant: str
    folder: tuple[str, ...]
    date: int  # the Date: header
    author: Person
    to: list[Person]
    subject: str
    crlf: bool
    msgid: str = ""
    cc: list[Person] = field(default_factory=list)
    parent: int = -1  # plan index this one replies to / forwards (quoted in the body)
    forward: bool = False
    references: tuple[str, ...] = ()
    subject_charset: str = "utf-8"
    subject_mode: str = "B"
    received: int = 0  # internal date
    unread: bool = False
    flagged: bool = False
    draft: bool = False
    replied: bool = False
    forwarded: bool = False
    labels: tuple[str, ...] = ()
    text: str = ""  # the plain text body, once rendered (quoted by replies)

    @property
    def refw(self) -> str:
        return ("re" if self.replied else "") + ("fw" if self.forwarded else "")


def pick(rng: random.Random, seq: Sequence[T]) -> T:
    """``rng.choice`` without its rejection loop: several times faster, equally stable."""
    return seq[int(rng.random() * len(seq))]


def randint(rng: random.Random, a: int, b: int) -> int:
    """``rng.randint`` the same way as :func:`pick` (float resolution is ample here)."""
    return a + int(rng.random() * (b - a + 1))


def wrap(text: str, width: int = 72) -> str:
    lines: list[str] = []
    cur = ""
    for word in text.split(" "):
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    lines.append(cur)
    return "\n".join(lines)


def _strip_reply_prefix(subject: str) -> str:
    while subject[:4] in ("Re: ", "RE: ", "AW: "):
        subject = subject[4:]
    return subject


class Planner:
    """Pass one: people, text pools and a :class:`Plan` per message."""

    def __init__(self, seed: int, messages: int, big: int) -> None:
        self.rng = random.Random(f"axsync-corpus/{seed}")
        self.n = messages
        self.big = big
        self.plans: list[Plan] = []
        self.seq = 0
        self.ascii_people, self.intl_people = self._people(max(24, min(300, messages // 40)))
        pool = max(48, min(4096, messages * 2))
        self.ascii_pool = [self._paragraph(False) for _ in range(pool)]
        self.utf8_pool = [self._paragraph(True) for _ in range(max(16, pool // 4))]
        weights = _SINGLE_WEIGHTS
        self._folder_choices = [f for f, _ in weights]
        self._folder_cum = list(_cumulative([w for _, w in weights]))
        self._kind_cum = list(_cumulative(_GENERAL_WEIGHTS))

    # ------------------------------------------------------------------ building blocks

    def _people(self, count: int) -> tuple[list[Person], list[Person]]:
        rng = self.rng
        seen: set[str] = set()
        ascii_people: list[Person] = []
        while len(ascii_people) < count:
            first = pick(rng, txt.FIRST_NAMES)
            last = pick(rng, txt.LAST_NAMES)
            domain = pick(rng, txt.DOMAINS)
            local = f"{first}.{''.join(c for c in last if c.isalnum())}".lower()
            if local + domain in seen:
                local += str(len(ascii_people))
            seen.add(local + domain)
            style = rng.random()
            if style < 0.70:
                name = f"{first} {last}"
            elif style < 0.82:
                name = f"{last}, {first}"
            elif style < 0.90:
                name = f"{first} {last} ({pick(rng, txt.COMPANIES)})"
            elif style < 0.95:
                name = f'{first} "{pick(rng, ("The Boss", "Jr", "Doc"))}" {last}'
            else:
                name = ""
            ascii_people.append(Person(name, f"{local}@{domain}", first, "utf-8", pick(rng, _TZ)))
        intl = [
            Person(
                name,
                f"{local}@{pick(rng, txt.DOMAINS)}",
                name.split()[0].rstrip(","),
                charset,
                pick(rng, _TZ),
            )
            for name, local, charset in txt.INTL_PEOPLE
        ]
        return ascii_people, intl

    def person(self) -> Person:
        if self.rng.random() < 0.12:
            return pick(self.rng, self.intl_people)
        return pick(self.rng, self.ascii_people)

    def _sentence(self) -> str:
        rng = self.rng
        words = rng.choices(txt.VOCAB, k=randint(rng, 6, 16))
        return words[0].capitalize() + " " + " ".join(words[1:]) + pick(rng, ".....?!")

    def _paragraph(self, utf8: bool) -> str:
        rng = self.rng
        count = randint(rng, 2, 5)
        fixed = rng.sample(txt.SENTENCES, count)  # no sentence twice in a paragraph
        sentences = [fixed[k] if rng.random() < 0.6 else self._sentence() for k in range(count)]
        if utf8:
            sentences[rng.randrange(len(sentences))] = pick(rng, txt.SENTENCES_UTF8)
        return wrap(" ".join(sentences))

    def subject(self) -> tuple[str, str, str]:
        """``(subject, charset, encoded-word mode)``."""
        rng = self.rng
        utf8 = rng.random() < 0.1
        template = pick(rng, txt.SUBJECTS_UTF8 if utf8 else txt.SUBJECTS)
        subject = template.format(
            weekday=pick(rng, txt.WEEKDAYS),
            project=pick(rng, txt.PROJECTS),
            q=randint(rng, 1, 4),
            company=pick(rng, txt.COMPANIES),
            year=randint(rng, 2022, 2025),
            n=f"#{randint(rng, 10000, 99999)}",
            first=pick(rng, txt.FIRST_NAMES),
        )
        return subject, "utf-8", pick(rng, "BQ")

    def msgid(self, domain: str) -> str:
        self.seq += 1
        r = self.rng.getrandbits(64)
        style = r & 3
        if style == 0:
            return f"<{r:016x}.{self.seq}@{domain}>"
        if style == 1:
            return f"<CA+{r:x}{self.seq:06d}Qx@mail.gmail.com>"
        if style == 2:
            h = f"{r:016x}{self.seq:016x}"
            return f"<{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}@{domain}>"
        return f"<{self.seq}.{r:x}.JavaMail.app@mx.{domain}>"

    def random_date(self, folder: tuple[str, ...]) -> int:
        rng = self.rng
        if folder == ("Archive", "2023"):
            return rng.randrange(YEAR_START[2023], YEAR_START[2024])
        if folder == ("Archive", "2024"):
            return rng.randrange(YEAR_START[2024], YEAR_START[2025])
        if folder == ARCHIVE:
            return rng.randrange(YEAR_START[2022], YEAR_START[2023])
        span = BASE_DATE - START_DATE
        return BASE_DATE - 1 - int(span * rng.random() ** 1.6)

    def pick_folder(self) -> tuple[str, ...]:
        return self.rng.choices(self._folder_choices, cum_weights=self._folder_cum)[0]

    def general_kind(self) -> str:
        return self.rng.choices(_GENERAL_KINDS, cum_weights=self._kind_cum)[0]

    # ------------------------------------------------------------------ flags

    def _flags(self, p: Plan) -> None:
        rng = self.rng
        age = BASE_DATE - p.date
        f = p.folder
        if f == DRAFTS:
            p.draft, p.unread = True, False
            return
        if f == SENT:
            p.unread = False
            p.flagged = rng.random() < 0.01
            return
        if f == INBOX:
            p.unread = rng.random() < (0.6 if age < 14 * DAY else 0.15 if age < 90 * DAY else 0.03)
        elif f == SPAM:
            p.unread = rng.random() < 0.7
        elif f == TRASH:
            p.unread = rng.random() < 0.1
        elif f[0] == "Archive":
            p.unread = rng.random() < 0.01
        else:
            p.unread = rng.random() < 0.08
        p.flagged = p.flagged or rng.random() < (0.02 if f in (SPAM, TRASH) else 0.05)
        if f != SPAM and p.parent < 0:
            r = rng.random()
            p.replied = p.replied or r < 0.08 or 0.10 <= r < 0.11
            p.forwarded = p.forwarded or 0.08 <= r < 0.11

    def add(self, p: Plan) -> int:
        if p.author.owner or p.folder == DRAFTS:
            p.received = p.date
        else:
            delay = randint(self.rng, 2, 240)
            if self.rng.random() < 0.02:
                delay += randint(self.rng, 3600, 2 * DAY)
            p.received = min(p.date + delay, BASE_DATE - 1)
        self.plans.append(p)
        return len(self.plans) - 1

    # ------------------------------------------------------------------ singles

    def single(
        self, kind: str, variant: str, folder: tuple[str, ...], has_msgid: bool = True
    ) -> None:
        rng = self.rng
        date = self.random_date(folder)
        subject, cs, mode = self.subject()
        outgoing = folder in (SENT, DRAFTS)
        if outgoing:
            author, to = OWNER, [self.person()]
            if folder == DRAFTS and rng.random() < 0.2:
                to = []
        else:
            ascii_only = kind == "plain" and variant == "7bit"
            author = pick(rng, self.ascii_people) if ascii_only else self.person()
            to = [OWNER]
        if kind == "charset" and not variant:
            variant = pick(rng, tuple(txt.LANG_TEXT))
        if kind == "charset":
            author = next(p for p in self.intl_people if p.charset == variant)
            subject, cs = txt.LANG_TEXT[variant][0], variant
            mode = "Q" if variant in ("iso-8859-1", "windows-1252") else "B"
        elif author.charset != "utf-8" and rng.random() < 0.5:
            mode = "Q" if author.charset in ("iso-8859-1", "windows-1252") else "B"
        p = Plan(
            kind,
            variant,
            folder,
            date,
            author,
            to,
            subject,
            rng.random() < 0.7,
            subject_charset=cs,
            subject_mode=mode,
        )
        if has_msgid:
            p.msgid = self.msgid(author.domain)
        if to and rng.random() < 0.15:
            p.cc = [self.person() for _ in range(randint(rng, 1, 3))]
        self._flags(p)
        self.add(p)

    # ------------------------------------------------------------------ threads

    def thread(self, length: int, force_span: bool = False) -> None:
        rng = self.rng
        others = [self.person() for _ in range(randint(rng, 1, 4))]
        subject, cs, mode = self.subject()
        gaps = [
            randint(rng, 300, 3 * DAY) if rng.random() < 0.8 else randint(rng, DAY, 10 * DAY)
            for _ in range(length - 1)
        ]
        t0 = rng.randrange(START_DATE, BASE_DATE - sum(gaps) - 2 * DAY)
        year = 2022 if t0 < YEAR_START[2023] else 2023 if t0 < YEAR_START[2024] else 2024
        r = rng.random()
        incoming: tuple[str, ...] = (
            INBOX
            if r < 0.7 or force_span
            else ALPHA
            if r < 0.8
            else ("Work",)
            if r < 0.84
            else ARCHIVE
            if year == 2022
            else ("Archive", str(year))
        )
        crlf = rng.random() < 0.7
        first = -1
        date = t0
        for i in range(length):
            parent = -1
            if i:
                parent = (
                    len(self.plans) - 1
                    if rng.random() < 0.75
                    else randint(rng, first, len(self.plans) - 1)
                )
            par = self.plans[parent] if parent >= 0 else None
            if par is None:
                author = OWNER if rng.random() < 0.2 and not force_span else others[0]
            elif par.author.owner:
                author = pick(rng, others)
            elif force_span or rng.random() < 0.55:
                author = OWNER
            else:
                author = pick(rng, others)
            forward = par is not None and author.owner and not force_span and rng.random() < 0.1
            if par is None:
                to = [others[0]] if author.owner else [OWNER]
                subj = subject
            elif forward:
                to = [self.person()]
                subj = pick(rng, ("Fwd: ", "Fwd: ", "FW: ")) + par.subject
            else:
                to = [par.author]
                subj = pick(rng, ("Re: ",) * 8 + ("RE: ", "AW: ")) + _strip_reply_prefix(
                    par.subject
                )
            folder: tuple[str, ...]
            if author.owner:
                folder = DRAFTS if i == length - 1 and rng.random() < 0.05 else SENT
            else:
                folder = TRASH if rng.random() < 0.03 else incoming
            kind = rng.choices(("plain", "alt", "attach"), weights=(60, 35, 5))[0]
            p = Plan(
                kind,
                "pdf" if kind == "attach" else "",
                folder,
                date,
                author,
                to,
                subj,
                crlf if rng.random() < 0.9 else not crlf,
                subject_charset=cs,
                subject_mode=mode,
                parent=parent,
                forward=forward,
            )
            p.msgid = self.msgid(author.domain)
            if par is not None:
                p.references = (*par.references[-12:], par.msgid)
                if folder == SENT and not par.author.owner:
                    if forward:
                        par.forwarded = True
                    else:
                        par.replied = True
            if len(others) > 1 and not forward and rng.random() < 0.3:
                p.cc = [o for o in others if o is not author and o not in to]
            self._flags(p)
            idx = self.add(p)
            if first < 0:
                first = idx
            if i < length - 1:
                date += gaps[i]

    # ------------------------------------------------------------------ the whole corpus

    def plan(self) -> None:
        rng = self.rng
        n_small = self.n - self.big
        full = self.n >= 200
        mandatory = list(MANDATORY)
        rng.shuffle(mandatory)
        if not full:
            mandatory = mandatory[: max(1, n_small // 2)] if n_small else []
        budget = n_small - len(mandatory)
        # threads: about a quarter of the mail
        lengths: list[int] = []
        thread_budget = int(n_small * 0.25) if n_small >= 8 else 0
        if full:
            lengths += [15, 2]
        while sum(lengths) + 2 <= thread_budget:
            lengths.append(
                min(
                    thread_budget - sum(lengths),
                    rng.choices(range(2, 16), weights=_THREAD_LEN_WEIGHTS)[0],
                )
            )
        budget -= sum(lengths)
        for i, length in enumerate(lengths):
            self.thread(length, force_span=full and i == 0)
        for kind, variant, has_msgid in mandatory:
            folder = INBOX if rng.random() < 0.7 else pick(rng, _MANDATORY_FOLDERS)
            self.single(kind, variant, folder, has_msgid)
        # one message in every folder that should hold mail, then by weight
        if full:
            for folder in self._folder_choices:
                self.single(self._kind_for(folder), "", folder)
                budget -= 1
        for _ in range(budget):
            folder = self.pick_folder()
            self.single(self._kind_for(folder), "", folder, rng.random() > 0.002)
        for _ in range(self.big):
            self.single("big", "", INBOX if rng.random() < 0.7 else ("Archive", "2024"))
        self._labels(full)

    def _kind_for(self, folder: tuple[str, ...]) -> str:
        if folder == SPAM:
            return "spam"
        if folder == RECEIPTS:
            return "receipt"
        if folder in (SENT, DRAFTS):
            return self.rng.choices(("plain", "alt", "attach"), weights=(55, 35, 10))[0]
        return self.general_kind()

    def _labels(self, full: bool) -> None:
        rng = self.rng
        for p in self.plans:
            if p.folder != SPAM and rng.random() < 0.12:
                p.labels = tuple(sorted(rng.sample(LABELS, randint(rng, 1, 3)), key=LABELS.index))
        if full:  # every label in use at least once
            for label in LABELS:
                if any(label in p.labels for p in self.plans):
                    continue
                candidates = [p for p in self.plans if p.folder != SPAM and not p.labels]
                p = pick(rng, candidates)
                p.labels = (label,)


_THREAD_LEN_WEIGHTS = (30, 20, 14, 10, 7, 5, 4, 3, 2, 2, 1, 1, 1, 1)
# fmt: off
_MANDATORY_FOLDERS: tuple[tuple[str, ...], ...] = (
    ("Archive", "2024"), ALPHA, ("Entwürfe",), ("日本語",), ("Work",), ("R&D",), ("a/b",),
)
# fmt: on


def _cumulative(weights: tuple[float, ...] | list[float]) -> list[float]:
    out: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def generate(seed: int = 0, messages: int = 200, *, big_messages: int | None = None) -> Corpus:
    from axsync.fake.corpus_kinds import Renderer

    if messages < 0:
        raise ValueError(f"messages must be >= 0, got {messages}")
    big = (3 if messages >= 200 else 0) if big_messages is None else big_messages
    if not 0 <= big <= messages:
        raise ValueError(f"big_messages must be between 0 and messages ({messages}), got {big}")
    # Generation allocates millions of short-lived objects and no cycles: the cyclic GC
    # would only rescan the growing heap again and again (about 20% of the run time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        planner = Planner(seed, messages, big)
        planner.plan()
        renderer = Renderer(planner)
        raws = [renderer.render(i) for i in range(len(planner.plans))]
    finally:
        if gc_was_enabled:
            gc.enable()
    order = sorted(range(len(planner.plans)), key=lambda i: (planner.plans[i].received, i))
    out: list[CorpusMessage] = []
    for i in order:
        p = planner.plans[i]
        out.append(
            CorpusMessage(
                p.folder, raws[i], p.received, p.unread, p.flagged, p.draft, p.refw, p.labels
            )
        )
    return Corpus(list(FOLDERS), list(LABELS), out)
