"""Clamp-safe paging and consistent snapshots over ``start``/``limit`` listings (pure logic).

A page fetcher is any callable ``fetch(start, limit) -> (sync_token, total_items, items)``.
The rules, which hold whatever the server does with ``limit``:

* ``start`` advances by the number of items the server actually returned, never by the
  ``limit`` asked for (a server may clamp ``limit`` silently);
* items are deduplicated by id, first occurrence wins;
* paging stops at ``total_items``, at the first empty page, or at the first page that
  holds nothing new (a server ignoring ``start`` would otherwise be paged forever).

:func:`snapshot` adds the consistency check used for full listings: every page must carry
the same sync token, and the listing must not come up short of ``total_items``; otherwise
the whole listing starts again, a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from axsync.errors import ApiError

T = TypeVar("T")
PageFetcher = Callable[[int, int], tuple[str, int, Sequence[T]]]


@dataclass(frozen=True, slots=True)
class Pass(Generic[T]):
    """One complete walk over a listing."""

    first_token: str
    token_moved: bool
    total: int
    items: tuple[T, ...]
    requests: int

    @property
    def short(self) -> bool:
        """Fewer distinct items than the server said it holds."""
        return len(self.items) < self.total

    @property
    def consistent(self) -> bool:
        return not self.token_moved and not self.short


def iter_pages(
    fetch: PageFetcher[T], page_size: int, key: Callable[[T], str]
) -> Iterator[tuple[str, int, list[T]]]:
    """Yield ``(token, total, new_items)`` page by page; ``new_items`` excludes ids already
    seen. Stops at ``total``, at an empty page, or at a page with nothing new."""
    seen: set[str] = set()
    start = 0
    while True:
        token, total, items = fetch(start, page_size)
        fresh = []
        for item in items:
            ident = key(item)
            if ident not in seen:
                seen.add(ident)
                fresh.append(item)
        yield token, total, fresh
        if not fresh:  # an empty page, or one that only repeats: no progress is possible
            return
        start += len(items)
        if start >= total:
            return


def one_pass(fetch: PageFetcher[T], page_size: int, key: Callable[[T], str]) -> Pass[T]:
    """Walk the listing once, stopping early as soon as a page's token differs from the first."""
    first: str | None = None
    total = 0
    items: list[T] = []
    requests = 0
    for token, total, fresh in iter_pages(fetch, page_size, key):
        requests += 1
        if first is None:
            first = token
        elif token != first:
            return Pass(first, True, total, tuple(items), requests)
        items.extend(fresh)
    assert first is not None
    return Pass(first, False, total, tuple(items), requests)


def snapshot(
    fetch: PageFetcher[T],
    page_size: int,
    key: Callable[[T], str],
    *,
    what: str,
    attempts: int = 4,
) -> tuple[str, list[T]]:
    """A consistent full listing: ``(sync_token, items)`` from a pass whose pages all carried
    the same token and which holds at least ``total_items`` distinct items.

    Raises ApiError (naming ``what``) when no such pass was obtained in ``attempts`` tries:
    a listing that may be missing items is never returned, because the sync engine would
    take the missing items for deletions.
    """
    last: Pass[T] | None = None
    for _ in range(max(1, attempts)):
        last = one_pass(fetch, page_size, key)
        if last.consistent:
            return last.first_token, list(last.items)
    assert last is not None
    why = (
        "its sync token kept changing while it was being listed"
        if last.token_moved
        else f"the listing returned {len(last.items)} distinct items but the server reports "
        f"{last.total}"
    )
    raise ApiError(
        f"{what}: no consistent listing after {attempts} attempts: {why}",
        attempts=attempts,
        total=last.total,
        listed=len(last.items),
    )
