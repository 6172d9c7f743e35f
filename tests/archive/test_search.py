"""Searching the sample archive: every filter, negation, OR, ranking, paging, snippets."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from archive.conftest import Built
from axsync.archive import search
from axsync.archive.access import Archive
from axsync.archive.query import QueryError


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(scope="module")
def archive(sample: Built) -> Iterator[Archive]:
    a = Archive.open(sample.account)
    yield a
    a.close()


def names(sample: Built, archive: Archive, query: str, **kw: int) -> set[str]:
    by_uid = {u: n for n, u in sample.names.items()}
    return {by_uid[h.uid] for h in search.run(archive, query, limit=kw.get("limit", 100)).hits}


@pytest.mark.parametrize("query, expected", [
    ("budget", {"budget"}),
    ("zurich", {"budget"}),  # diacritics folded
    ("BUDG*", {"budget"}),
    ("from:mallory", {"hostile"}),
    ("from:bob", {"t2"}),
    ("to:carol", {"budget"}),  # to: includes Cc
    ("cc:carol", {"budget"}),
    ("cc:bob", set()),
    ('subject:"thread topic"', {"t1", "t2", "t3"}),
    ("msgid:t2@example.com", {"t2"}),
    ("filename:report.pdf", {"hostile"}),
    ("filename:passwd", {"hostile"}),
    ("folder:Archive/2024", {"archived"}),
    ("folder:archive/2024", {"archived"}),
    ("folder:Archive/*", {"archived"}),
    ('folder:"a/b"', {"slashfolder"}),
    ("folder:..", {"dotdot"}),
    ("folder:Sent", {"t2"}),
    ("folder:Nowhere", set()),
    ('label:"to do"', {"japanese", "archived"}),
    ("label:work -is:unread", {"budget"}),
    ("label:unknown", set()),
    ("is:unread", {"hostile", "archived"}),
    ("is:flagged", {"budget"}),
    ("is:answered", {"t3"}),
    ("has:attachment", {"hostile"}),
    ("after:2024-01-01", {"archived"}),
    ("before:2023-03-03", {"budget", "hostile"}),
    ("after:2023-03-02 before:2023-03-04", {"hostile", "t1"}),
    ("東京", {"japanese"}),
    ("会議", {"japanese"}),
    ("日本語", {"japanese"}),
    ("déjà", {"badcharset"}),
    ("zurich OR dotdot", {"budget", "dotdot"}),
    ("(zurich OR dotdot) -folder:..", {"budget"}),
    ("budget OR is:answered", {"budget", "t3"}),
    ("tombstone", set()),  # tombstoned messages are gone
    ("server deletion", {"deleted"}),  # deleted on the server, kept in the archive
    ('"hostile body marker"', {"hostile"}),
    ("__pwned", set()),  # script text is not indexed
    ('budget" OR "x', set()),  # quotes in user text stay text
    ("NEAR(budget review)", set()),
])
def test_queries(sample: Built, archive: Archive, query: str, expected: set[str]) -> None:
    assert names(sample, archive, query) == expected


def test_negation_alone_lists_everything_else(sample: Built, archive: Archive) -> None:
    found = names(sample, archive, "-budget")
    assert "budget" not in found and "gone" not in found and "deleted" in found
    assert len(found) == len(sample.names) - 2


def test_subject_match_ranks_above_body_match(sample: Built, archive: Archive) -> None:
    hits = search.run(archive, "kiwi").hits
    assert [h.uid for h in hits] == [sample.names["kiwi_subject"], sample.names["kiwi_body"]]
    assert search.MARK_START + "kiwi" + search.MARK_END in hits[1].snippet


def test_paging(sample: Built, archive: Archive) -> None:
    first = search.run(archive, "", limit=4, page=1)
    second = search.run(archive, "", limit=4, page=2)
    assert first.has_more and len(first.hits) == 4
    assert not {h.uid for h in first.hits} & {h.uid for h in second.hits}
    dates = [h.date for h in first.hits + second.hits]
    assert dates == sorted(dates, reverse=True)  # no ranking: newest first
    last = search.run(archive, "", limit=100)
    assert not last.has_more and len(last.hits) == len(sample.names) - 1
    assert last.unindexed == 0


def test_hit_json(sample: Built, archive: Archive) -> None:
    (hit,) = search.run(archive, "label:work is:flagged").hits
    data = hit.to_json()
    assert data["id"] == str(sample.names["budget"]) and data["mail_id"]
    assert data["folder"] == "INBOX" and data["labels"] == ["work"] and data["flags"] == "FS"
    assert data["date"] == "2023-03-01T00:00:00Z" and data["subject"] == "Quarterly budget review"
    assert "\ue000" not in data["snippet"] and data["snippet"].startswith("The budget meeting")


def test_malformed_query_raises(archive: Archive) -> None:
    with pytest.raises(QueryError):
        search.run(archive, "(unclosed")


def test_corpus_smoke(corpus: Built) -> None:
    a = Archive.open(corpus.account)
    try:
        assert search.run(a, "has:attachment").hits
        assert search.run(a, "is:unread").hits
        assert search.run(a, "label:work").hits
        assert search.run(a, "folder:Projects/Alpha/Specs").hits
        for h in search.run(a, "folder:INBOX", limit=1000).hits:
            assert h.folder == "INBOX"
    finally:
        a.close()
