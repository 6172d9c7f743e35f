"""The search query language: a tokenizer, a recursive-descent parser and a compiler to
SQL over ``messages`` plus one FTS5 ``MATCH`` expression.

User text never reaches FTS5 raw: every term becomes a double-quoted FTS5 string (quotes
doubled), so FTS5 operators and column names typed by a user are just words.

Grammar (``docs/archive.md``)::

    query   := or
    or      := and ( "OR" and )*
    and     := unary ( ["AND"] unary )*
    unary   := ( "-" | "NOT" ) unary | primary
    primary := "(" or ")" | field ":" value | word | '"' phrase '"'
    value   := word | '"' phrase '"'

A ``word`` ending in ``*`` is a prefix. Fields: ``from: to: cc: subject: body:
filename: msgid:`` (text, searched in the index) and ``folder: label: before: after:
has:attachment is:unread|read|flagged|answered|draft`` (filters). ``name:value`` with an
unknown name is an ordinary word.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from axsync.archive.textify import cjk_split, has_word
from axsync.errors import UsageError

TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "from": ("sender",),
    "to": ("recipients", "cc"),
    "cc": ("cc",),
    "subject": ("subject",),
    "body": ("body",),
    "filename": ("filenames",),
    "msgid": ("msgid",),
}
_ALIASES = {"in": "folder", "tag": "label", "attachment": "filename", "message-id": "msgid"}
FILTER_FIELDS = ("folder", "label", "before", "after", "has", "is")
_IS = {
    "unread": "instr(m.flags, 'S') = 0",
    "read": "instr(m.flags, 'S') > 0",
    "seen": "instr(m.flags, 'S') > 0",
    "flagged": "instr(m.flags, 'F') > 0",
    "starred": "instr(m.flags, 'F') > 0",
    "answered": "instr(m.flags, 'R') > 0",
    "replied": "instr(m.flags, 'R') > 0",
    "draft": "instr(m.flags, 'D') > 0",
}
_HAS = {
    "attachment": "m.uid IN (SELECT uid FROM search_docs WHERE has_attachment = 1)",
}
_DATE = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?")
_FIELD = re.compile(r"([A-Za-z][A-Za-z-]*):")


class QueryError(UsageError):
    """A query that cannot be parsed (exit code 2)."""


class Resolver(Protocol):
    def dirnames_for(self, value: str) -> list[str]: ...

    def label_ids_for(self, value: str) -> list[str]: ...


# ---------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Text:
    columns: tuple[str, ...] | None  # None: every column
    value: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Filter:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


Node = Text | Filter | Not | And | Or


# ---------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "(" ")" OR AND NOT TERM
    field: str = ""
    value: str = ""
    quoted: bool = False
    pos: int = 0


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The phrase starting at the quote ``text[start]``; returns (phrase, end)."""
    end = text.find('"', start + 1)
    if end < 0:
        raise QueryError(f"unbalanced quote at position {start + 1} of the query")
    return text[start + 1:end], end + 1


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(Token(ch, pos=i))
            i += 1
        elif ch == "-" and i + 1 < n and not text[i + 1].isspace():
            tokens.append(Token("NOT", pos=i))
            i += 1
        elif ch == '"':
            phrase, i = _quoted(text, i)
            tokens.append(Token("TERM", value=phrase, quoted=True, pos=i))
        else:
            token, i = _word(text, i)
            tokens.append(token)
    return tokens


def _word(text: str, start: int) -> tuple[Token, int]:
    m = _FIELD.match(text, start)
    if m:
        name = m.group(1).lower()
        name = _ALIASES.get(name, name)
        after = m.end()
        if name in TEXT_FIELDS or name in FILTER_FIELDS:
            if after < len(text) and text[after] == '"':
                value, end = _quoted(text, after)
                return Token("TERM", name, value, True, start), end
            end = _word_end(text, after)
            return Token("TERM", name, text[after:end], False, start), end
    end = _word_end(text, start)
    word = text[start:end]
    if word in ("OR", "AND", "NOT"):
        return Token(word, pos=start), end
    return Token("TERM", value=word, pos=start), end


def _word_end(text: str, i: int) -> int:
    while i < len(text) and not text[i].isspace() and text[i] not in '()"':
        i += 1
    return i


# ---------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Node | None:
        node = self.or_()
        token = self.peek()
        if token is not None:
            raise QueryError(f"unexpected {token.kind!r} at position {token.pos + 1} of the query")
        return node

    def or_(self) -> Node | None:
        items = [self.and_()]
        while (t := self.peek()) is not None and t.kind == "OR":
            self.take()
            items.append(self.and_())
        kept = tuple(x for x in items if x is not None)
        if len(items) > 1 and len(kept) < len(items):
            raise QueryError("OR needs something to search on both sides")
        return kept[0] if len(kept) == 1 else (Or(kept) if kept else None)

    def and_(self) -> Node | None:
        items: list[Node] = []
        while (t := self.peek()) is not None and t.kind not in (")", "OR"):
            if t.kind == "AND":
                self.take()
                continue
            node = self.unary()
            if node is not None:
                items.append(node)
        return items[0] if len(items) == 1 else (And(tuple(items)) if items else None)

    def unary(self) -> Node | None:
        token = self.take()
        if token.kind == "NOT":
            if self.peek() is None or self.peek().kind in (")", "OR", "AND"):  # type: ignore[union-attr]
                raise QueryError(f"nothing to negate at position {token.pos + 1} of the query")
            child = self.unary()
            return Not(child) if child is not None else None
        if token.kind == "(":
            node = self.or_()
            closing = self.peek()
            if closing is None or closing.kind != ")":
                raise QueryError(f"unbalanced parenthesis at position {token.pos + 1} of the query")
            self.take()
            return node
        if token.kind == ")":
            raise QueryError(f"unbalanced parenthesis at position {token.pos + 1} of the query")
        return _term(token)


def _term(token: Token) -> Node | None:
    value = token.value
    if token.field in FILTER_FIELDS:
        if not value:
            raise QueryError(f"{token.field}: needs a value")
        _check_filter(token.field, value)
        return Filter(token.field, value)
    prefix = not token.quoted and value.endswith("*")
    value = value.rstrip("*") if prefix else value
    if not has_word(value):
        return None  # only punctuation: the index has no token for it
    columns = TEXT_FIELDS[token.field] if token.field else None
    return Text(columns, value, prefix)


def _check_filter(name: str, value: str) -> None:
    if name == "is" and value.lower() not in _IS:
        raise QueryError(f"is:{value}: expected one of {', '.join(sorted(_IS))}")
    if name == "has" and value.lower().rstrip("s") not in _HAS:
        raise QueryError(f"has:{value}: only has:attachment is known")
    if name in ("before", "after"):
        parse_date(value, name)


def parse_date(value: str, name: str = "date") -> int:
    """Local midnight at the start of ``YYYY-MM-DD`` (or ``YYYY-MM``, ``YYYY``)."""
    m = _DATE.fullmatch(value)
    if not m:
        raise QueryError(f"{name}:{value}: expected a date like 2024-03-31")
    year, month, day = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
    try:
        time.strptime(f"{year:04d}-{month:02d}-{day:02d}", "%Y-%m-%d")
        return int(time.mktime((year, month, day, 0, 0, 0, 0, 0, -1)))
    except (ValueError, OverflowError):
        raise QueryError(f"{name}:{value}: no such date") from None


def parse(text: str) -> Node | None:
    """The query's syntax tree; None for a query that matches everything. QueryError for
    a malformed query."""
    if len(text) > 2000:
        raise QueryError("the query is too long (at most 2000 characters)")
    return _Parser(tokenize(text)).parse()


# ---------------------------------------------------------------------------- compiler


def fts_phrase(text: Text) -> str:
    phrase = '"' + cjk_split(text.value).replace('"', '""') + '"' + ("*" if text.prefix else "")
    if text.columns is None:
        return phrase
    return "{" + " ".join(text.columns) + "} : " + phrase


def fts(node: Node) -> str | None:
    """The node as one FTS5 expression, or None if it needs SQL (filters, lone NOTs)."""
    if isinstance(node, Text):
        return fts_phrase(node)
    if isinstance(node, Or):
        parts = [fts(c) for c in node.children]
        return None if None in parts else " OR ".join(f"({p})" for p in parts)
    if isinstance(node, And):
        pos = [fts(c) for c in node.children if not isinstance(c, Not)]
        neg = [fts(c.child) for c in node.children if isinstance(c, Not)]
        if not pos or None in pos or None in neg:
            return None
        expr = " AND ".join(f"({p})" for p in pos)
        return f"({expr}) NOT ({' OR '.join(f'({n})' for n in neg)})" if neg else expr
    return None


@dataclass(frozen=True, slots=True)
class Compiled:
    match: str | None  # FTS5 expression every hit matches (ranks the hits), or None
    where: str  # SQL over ``messages m``
    params: tuple[object, ...]


def compile_query(node: Node | None, resolver: Resolver) -> Compiled:
    children: Sequence[Node] = node.children if isinstance(node, And) else ([node] if node else [])
    texts = [c for c in children if fts(c) is not None]
    rest = [c for c in children if fts(c) is None]
    match = None
    if texts:
        match = fts(texts[0]) if len(texts) == 1 else " AND ".join(f"({fts(t)})" for t in texts)
    params: list[object] = []
    where = " AND ".join(_sql(c, resolver, params) for c in rest) or "1"
    return Compiled(match, where, tuple(params))


def _sql(node: Node, resolver: Resolver, params: list[object]) -> str:
    expr = fts(node)
    if expr is not None:
        params.append(expr)
        return "m.uid IN (SELECT rowid FROM search_fts WHERE search_fts MATCH ?)"
    if isinstance(node, Not):
        return f"NOT ({_sql(node.child, resolver, params)})"
    if isinstance(node, And):
        return "(" + " AND ".join(_sql(c, resolver, params) for c in node.children) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(_sql(c, resolver, params) for c in node.children) + ")"
    assert isinstance(node, Filter)
    return _filter_sql(node, resolver, params)


def _in(column: str, values: Sequence[object], params: list[object]) -> str:
    if not values:
        return "0"
    params.extend(values)
    return f"{column} IN ({','.join('?' * len(values))})"


def _filter_sql(node: Filter, resolver: Resolver, params: list[object]) -> str:
    value = node.value
    if node.name == "folder":
        return _in("m.dirname", resolver.dirnames_for(value), params)
    if node.name == "label":
        ids = resolver.label_ids_for(value)
        inner = _in("j.value", ids, params)
        return f"EXISTS (SELECT 1 FROM json_each(m.label_ids) j WHERE {inner})" if ids else "0"
    if node.name in ("before", "after"):
        params.append(parse_date(value, node.name))
        return "m.internal_date < ?" if node.name == "before" else "m.internal_date >= ?"
    if node.name == "is":
        return _IS[value.lower()]
    return _HAS[value.lower().rstrip("s")]
