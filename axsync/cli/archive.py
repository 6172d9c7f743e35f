"""``axsync search``, ``show``, ``export``, ``browse``, ``reindex``: the offline archive.

All but ``reindex`` open the state DB read-only and never write a message file; they
work on a copy of the archive without network.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from axsync.archive import search as search_mod
from axsync.archive import show as show_mod
from axsync.archive.access import Archive, iso_date
from axsync.archive.export import FORMATS, Exporter
from axsync.archive.index import SearchIndex
from axsync.archive.message import sender_name
from axsync.archive.threads import thread_of
from axsync.config import Account, load_config
from axsync.errors import PartialFailure, StateError, UsageError
from axsync.statedb import StateDB
from axsync.store import Store

DEFAULT_PORT = 8731


def _account(ctx: click.Context, name: str | None) -> Account:
    config = load_config(ctx.obj.config_path)
    if name:
        return config.account(name)
    if len(config.accounts) == 1:
        return next(iter(config.accounts.values()))
    if not config.accounts:
        raise UsageError(f"no accounts in {config.path}; add one with `axsync init`")
    raise UsageError(f"several accounts are configured ({', '.join(sorted(config.accounts))}); name one")


@contextmanager
def _archive(ctx: click.Context, name: str | None) -> Iterator[Archive]:
    archive = Archive.open(_account(ctx, name))
    try:
        yield archive
    finally:
        archive.close()


def _highlight(snippet: str, color: bool) -> str:
    start, end = (("\x1b[1m", "\x1b[0m") if color else ("", ""))
    return snippet.replace(search_mod.MARK_START, start).replace(search_mod.MARK_END, end)


def _hit_line(hit: search_mod.Hit, color: bool) -> str:
    date = iso_date(hit.date)[:10]
    sender = sender_name(hit.from_addr)[:22].ljust(22)
    line = f"{hit.uid:>8}  {date}  {hit.folder[:18]:<18}  {sender}  {hit.subject}"
    snippet = _highlight(hit.snippet[:160], color)
    return line + (f"\n{'':>10}{snippet}" if snippet else "")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("query", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit per line.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="Hits per page.")
@click.option("--page", default=1, show_default=True, type=click.IntRange(1), help="Page number.")
@click.pass_context
def search(ctx: click.Context, name: str, query: tuple[str, ...], as_json: bool, limit: int,
           page: int) -> None:
    """Search the archive of account NAME offline.

    QUERY is words and filters: from: to: cc: subject: body: filename: folder: label:
    before:YYYY-MM-DD after:YYYY-MM-DD has:attachment is:unread is:flagged, "quoted
    phrases", prefix*, -negation, OR, parentheses (see docs/archive.md).
    """
    unknown = [a for a in query if a.startswith("--") and len(a) > 2]
    if unknown:  # QUERY takes "-word"; "--word" is a mistyped option
        raise UsageError(f"no such option: {unknown[0]}")
    with _archive(ctx, name) as archive:
        results = search_mod.run(archive, " ".join(query), limit=limit, page=page)
        color = not as_json and sys.stdout.isatty()
        for hit in results.hits:
            click.echo(json.dumps(hit.to_json(), ensure_ascii=False) if as_json else _hit_line(hit, color))
        if results.unindexed:
            click.echo(f"axsync: note: {results.unindexed} messages are not indexed yet; "
                       f"run `axsync reindex {name} --catch-up`", err=True)
        if not as_json:
            if not results.hits:
                click.echo("no messages found", err=True)
            elif results.has_more:
                click.echo(f"page {page}; more with --page {page + 1}", err=True)


@click.command()
@click.argument("name")
@click.argument("mailref")
@click.option("--raw", is_flag=True, help="Write the exact archived message (bytes) to stdout.")
@click.option("--json", "as_json", is_flag=True, help="Metadata, text and attachments as JSON.")
@click.option("--thread", is_flag=True, help="List the message's conversation.")
@click.pass_context
def show(ctx: click.Context, name: str, mailref: str, raw: bool, as_json: bool, thread: bool) -> None:
    """Show message MAILREF (archive id from `search --json`, or server mail id)."""
    if raw and (as_json or thread):
        raise UsageError("--raw cannot be combined with --json or --thread")
    with _archive(ctx, name) as archive:
        row = archive.resolve(mailref)
        if raw:
            out = sys.stdout.buffer
            with archive.open_raw(row) as stream:
                shutil.copyfileobj(stream, out, 256 * 1024)
            out.flush()
            return
        if thread:
            for member in thread_of(archive, row):
                summary = show_mod.summary_json(archive, member)
                if as_json:
                    click.echo(json.dumps(summary, ensure_ascii=False))
                else:
                    mark = "*" if member.uid == row.uid else " "
                    click.echo(f"{mark}{member.uid:>8}  {summary['date'][:16].replace('T', ' ')}  "
                               f"{summary['folder'][:18]:<18}  {sender_name(summary['from'])[:22]:<22}  "
                               f"{summary['subject']}")
            return
        shown = show_mod.load(archive, row)
        if as_json:
            click.echo(json.dumps(show_mod.to_json(shown), ensure_ascii=False))
        else:
            click.echo(show_mod.to_text(shown), nl=False)


@click.command()
@click.argument("name")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="mbox (mboxrd, one file per folder), eml (one file per message) or maildir.")
@click.option("--folder", default=None, metavar="PATH",
              help="Only this server folder, e.g. Archive/2024 (Archive/* adds sub-folders).")
@click.pass_context
def export(ctx: click.Context, name: str, dest: Path, fmt: str, folder: str | None) -> None:
    """Write plain, uncompressed copies of account NAME's archive into DEST."""
    from tqdm import tqdm

    with _archive(ctx, name) as archive, \
            tqdm(desc="export", unit="msg", file=sys.stderr, disable=None) as bar:
        result = Exporter(archive, fmt, dest, progress=bar.update).run(folder)
    click.echo(f"exported {result.messages} messages from {result.folders} folders to "
               f"{result.dest} ({show_mod.human_size(result.bytes)}, {fmt})"
               + (f"; {result.skipped} already there" if result.skipped else ""))
    if result.missing:
        for item in result.missing[:50]:
            click.echo(f"  missing file: message {item}", err=True)
        raise PartialFailure(f"{len(result.missing)} messages could not be exported (files missing)")


@click.command()
@click.argument("name", required=False)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--no-open", is_flag=True, help="Do not open a web browser.")
@click.pass_context
def browse(ctx: click.Context, name: str | None, port: int, no_open: bool) -> None:
    """Read the archive in a local web UI (read-only, 127.0.0.1 only)."""
    from axsync.browse.server import serve

    account = _account(ctx, name)
    archive = Archive.open(account, shared=True)
    try:
        serve(archive, account.name, port=port, open_browser=not no_open)
    finally:
        archive.close()


@click.command()
@click.argument("name")
@click.option("--catch-up", is_flag=True, help="Only index what is not indexed yet.")
@click.pass_context
def reindex(ctx: click.Context, name: str, catch_up: bool) -> None:
    """Rebuild the search index of account NAME (the only archive command that writes)."""
    from tqdm import tqdm

    account = _account(ctx, name)
    if not account.state_path.exists():
        raise StateError(f"state DB {account.state_path} does not exist; run `axsync sync` first")
    db = StateDB.open(account.state_path)
    try:
        index = SearchIndex(db, Store(account.maildir))
        started = time.monotonic()
        total = index.pending() if catch_up else db.count_messages("state != 'tombstoned'")
        with tqdm(total=total, desc="index", unit="msg", file=sys.stderr, disable=None) as bar:
            count = index.catch_up(progress=bar.update) if catch_up else index.rebuild(bar.update)
        seconds = time.monotonic() - started
    finally:
        db.close()
    rate = f", {count / seconds:.0f} messages/s" if seconds > 0 and count else ""
    click.echo(f"indexed {count} messages in {seconds:.1f}s{rate}")


def register(group: click.Group) -> None:
    for command in (search, show, export, browse, reindex):
        group.add_command(command)
