"""The query language: tokenizer, parser, compiler; user text never reaches FTS raw."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axsync.archive.query import (
    And,
    Filter,
    Not,
    Or,
    QueryError,
    Text,
    compile_query,
    fts,
    parse,
    parse_date,
)
from axsync.errors import UsageError


class Names:
    def dirnames_for(self, value: str) -> list[str]:
        return {"inbox": [""], "archive/2024": [".Archive.2024"]}.get(value.lower(), [])

    def label_ids_for(self, value: str) -> list[str]:
        return {"work": ["L1"], "to do": ["L2"]}.get(value.lower(), [])


def test_words_fields_phrases_and_operators() -> None:
    assert parse("budget") == Text(None, "budget")
    assert parse('from:alice subject:"big launch"') == And((
        Text(("sender",), "alice"), Text(("subject",), "big launch")))
    assert parse("a OR b") == Or((Text(None, "a"), Text(None, "b")))
    assert parse("-spam") == Not(Text(None, "spam"))
    assert parse("NOT (a OR b) c") == And((Not(Or((Text(None, "a"), Text(None, "b")))), Text(None, "c")))
    assert parse("budg*") == Text(None, "budg", prefix=True)
    assert parse('"budg*"') == Text(None, "budg*")
    assert parse("is:unread has:attachment folder:Archive/2024") == And((
        Filter("is", "unread"), Filter("has", "attachment"), Filter("folder", "Archive/2024")))
    assert parse("in:INBOX tag:work") == And((Filter("folder", "INBOX"), Filter("label", "work")))
    assert parse('label:"To Do"') == Filter("label", "To Do")
    assert parse("") is None and parse("  - * ! ") is None


def test_unknown_field_and_lowercase_or_are_words() -> None:
    assert parse("re:budget") == Text(None, "re:budget")
    assert parse("http://example.com") == Text(None, "http://example.com")
    assert parse("this or that") == And((Text(None, "this"), Text(None, "or"), Text(None, "that")))


@pytest.mark.parametrize("query, message", [
    ('"open', "unbalanced quote"),
    ("(a b", "unbalanced parenthesis"),
    ("a b)", "unexpected"),
    ("a OR", "both sides"),
    ("is:sleepy", "is:sleepy"),
    ("has:kittens", "has:kittens"),
    ("before:2024-13-01", "no such date"),
    ("after:yesterday", "expected a date"),
    ("folder:", "needs a value"),
    ("a -", None),
    ("NOT", "nothing to negate"),
    ("x" * 2001, "too long"),
])
def test_malformed_queries_are_usage_errors(query: str, message: str | None) -> None:
    if message is None:
        assert parse(query) == Text(None, "a")
        return
    with pytest.raises(QueryError, match=message) as info:
        parse(query)
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2


def test_fts_expressions_quote_everything() -> None:
    assert fts(Text(None, 'say "hi" OR NEAR(x)')) == '"say ""hi"" OR NEAR(x)"'
    assert fts(Text(("recipients", "cc"), "bob")) == '{recipients cc} : "bob"'
    assert fts(Text(None, "東京")) == '" 東  京 "'
    assert fts(Text(None, "budg", prefix=True)) == '"budg"*'
    assert fts(And((Text(None, "a"), Not(Text(None, "b"))))) == '(("a")) NOT (("b"))'
    assert fts(Not(Text(None, "a"))) is None
    assert fts(And((Text(None, "a"), Filter("is", "unread")))) is None


def test_compile_ranks_text_and_filters_in_sql() -> None:
    c = compile_query(parse("budget from:alice is:unread -label:work folder:INBOX"), Names())
    assert c.match == '("budget") AND ({sender} : "alice")'
    assert "instr(m.flags, 'S') = 0" in c.where and "NOT (EXISTS" in c.where
    assert "m.dirname IN (?)" in c.where and c.params == ("L1", "")
    none = compile_query(parse("folder:Nowhere OR label:nothing"), Names())
    assert none.match is None and none.where == "(0 OR 0)"
    mixed = compile_query(parse("budget OR is:flagged"), Names())
    assert mixed.match is None and "search_fts MATCH ?" in mixed.where
    everything = compile_query(None, Names())
    assert everything.match is None and everything.where == "1"


def test_dates_are_local_midnight() -> None:
    import time

    assert parse_date("2024-03-05") == int(time.mktime((2024, 3, 5, 0, 0, 0, 0, 0, -1)))
    assert parse_date("2024") == parse_date("2024-01-01") == parse_date("2024-1")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*'ab "()-*:{}^+.\\日', " OR ", " AND ", "NOT ", "from:",
                                 "is:unread", "NEAR", "folder:"]), max_size=14).map("".join))
def test_any_input_parses_or_is_a_usage_error_and_fts_accepts_it(text: str) -> None:
    """Fuzz: every query either raises QueryError or compiles to SQL FTS5 accepts."""
    try:
        compiled = compile_query(parse(text), Names())
    except QueryError:
        return
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE search_fts USING fts5(subject, sender, recipients, cc, msgid, filenames, body)")
    db.execute("CREATE TABLE messages (uid INTEGER PRIMARY KEY, flags TEXT, label_ids TEXT, dirname TEXT, internal_date INT)")
    db.execute("CREATE TABLE search_docs (uid INTEGER PRIMARY KEY, has_attachment INT)")
    db.execute("INSERT INTO search_fts (rowid, subject, body) VALUES (1, 'a b', 'from NEAR or')")
    params = [compiled.match] if compiled.match else []
    match = "AND m.uid IN (SELECT rowid FROM search_fts WHERE search_fts MATCH ?)" if compiled.match else ""
    db.execute(f"SELECT m.uid FROM messages m WHERE ({compiled.where}) {match}",
               [*compiled.params, *params]).fetchall()
