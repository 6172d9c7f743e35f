"""Finding message files by their recorded names (:class:`Locator`), for readers of many
messages: the search index's worker processes and exports. Kept apart from
:mod:`axsync.archive.access` so that a worker process imports no state DB code."""

from __future__ import annotations

from types import TracebackType

from axsync.errors import StoreError
from axsync.store import LocalFile, Store
from axsync.store.names import normalize_flags, parse_name
from axsync.store.reader import FileReader

__all__ = ["Locator"]


class Locator:
    """Finds many messages' files: the recorded name first, else one listing per folder
    (kept for the folders seen last, at most ``max_entries`` names in all), and reads
    them. Holds directory descriptors (:class:`FileReader`): close it, or use it as a
    context manager."""

    def __init__(self, store: Store, max_entries: int = 200_000) -> None:
        self.store = store
        self.max_entries = max_entries
        self.files = FileReader(store.root)  # reopens what it needs after close()
        self._listings: dict[str, dict[str, LocalFile]] = {}
        self._entries = 0

    def __enter__(self) -> Locator:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.files.close()

    def read(self, found: LocalFile, limit: int | None = None) -> bytes:
        """The uncompressed message of a file :meth:`find` found (its first ``limit``
        bytes); StoreError if it cannot be read."""
        return self.files.read(found.dirname, found.subdir, found.filename, limit)

    def find(self, dirname: str, base: str, filename: str) -> LocalFile | None:
        try:
            for sub in ("cur", "new"):
                if self.files.is_file(dirname, sub, filename):
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
