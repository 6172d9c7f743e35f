"""Finding message files by their recorded names (:class:`Locator`), for readers of many
messages: the search index's worker processes and exports. Kept apart from
:mod:`axsync.archive.access` so that a worker process imports no state DB code."""

from __future__ import annotations

from axsync.errors import StoreError
from axsync.store import LocalFile, Store
from axsync.store.names import normalize_flags, parse_name

__all__ = ["Locator"]


class Locator:
    """Finds many messages' files: the recorded name first, else one listing per folder
    (kept for the folders seen last, at most ``max_entries`` names in all)."""

    def __init__(self, store: Store, max_entries: int = 200_000) -> None:
        self.store = store
        self.max_entries = max_entries
        self._listings: dict[str, dict[str, LocalFile]] = {}
        self._entries = 0

    def find(self, dirname: str, base: str, filename: str) -> LocalFile | None:
        try:
            for sub in ("cur", "new"):
                path = self.store.path_of(dirname, sub, filename)
                if path.is_file() and not path.is_symlink():
                    p = parse_name(filename)
                    return LocalFile(dirname, sub, filename, base, normalize_flags(p.flags),
                                     p.size, p.vsize)
            return self._listing(dirname).get(base)
        except StoreError:
            return None

    def _listing(self, dirname: str) -> dict[str, LocalFile]:
        listing = self._listings.get(dirname)
        if listing is None:
            if self._entries > self.max_entries:
                self._listings.clear()
                self._entries = 0
            listing = {f.base: f for f in self.store.scan_folder(dirname)}
            self._listings[dirname] = listing
            self._entries += len(listing)
        return listing
