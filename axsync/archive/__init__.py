"""The archive offline: search index, queries, display, threads, export (docs/archive.md).

``index`` (SearchIndex: FTS5 tables in the state DB, kept up to date after every pull),
``query`` (the search language → SQL + FTS5), ``search`` (ranked, paged hits), ``message``
/ ``textify`` / ``document`` (MIME → text, never raising), ``show``, ``threads``,
``export`` / ``mbox`` / ``safepath``, ``access`` (read-only DB + Maildir access).
"""
