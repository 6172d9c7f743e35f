"""``axsync restore``: parse, call :func:`axsync.restore.restore`, print."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from axsync.config import load_config
from axsync.errors import StateError
from axsync.restore import (
    RestoreOptions,
    RestoreReport,
    imap_password,
    parse_as_of,
    parse_imap_url,
    restore,
)
from axsync.statedb import StateDB
from axsync.store import Store


class TqdmRestoreProgress:
    """One bar in bytes on stderr; the postfix counts messages and names the folder."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: tqdm[Any] | None = None
        self.total = 0
        self.done = 0

    def start(self, messages: int, nbytes: int) -> None:
        self.total = messages
        if messages:
            self.bar = tqdm(total=nbytes, desc=f"{self.label} restore", unit="B",
                            unit_scale=True, unit_divisor=1024, file=sys.stderr)

    def advance(self, nbytes: int, folder: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.done}/{self.total} msgs, {folder}", refresh=False)
            self.bar.update(nbytes)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _print(report: RestoreReport) -> None:
    when = ""
    if report.as_of is not None:
        when = " as of " + dt.datetime.fromtimestamp(report.as_of, dt.UTC).isoformat()
    if report.dry_run:
        click.echo(f"{report.account} -> {report.target}{when}: plan (dry run, nothing changed)")
        for item in report.plan:
            create = " (create)" if item["create"] else ""
            click.echo(f"  {item['folder']}{create}: append {item['append']} "
                       f"({item['bytes']} bytes), already there {item['skip']}")
    if report.fatal:
        click.echo(f"{report.account}: FAILED (exit {report.exit_code}): {report.fatal}", err=True)
    if not report.dry_run:
        click.echo(
            f"{report.account} -> {report.target}{when}: appended {report.appended} "
            f"({report.bytes} bytes), already there {report.skipped_existing}, "
            f"folders created {report.folders_created}, failed {len(report.failures)} "
            f"in {report.seconds:.1f}s"
        )
    for note in report.notes:
        click.echo(f"  note: {note}")
    for f in report.failures[:50]:
        click.echo(f"  failed: {f['item']}: {f['error']}", err=True)
    if len(report.failures) > 50:
        click.echo(f"  … and {len(report.failures) - 50} more (use --json for all)", err=True)


@click.command()
@click.argument("name")
@click.option("--imap", "imap_url", required=True, metavar="URL",
              help="imaps://USER@HOST[:PORT], or imap://USER@HOST[:PORT] (STARTTLS).")
@click.option("--folder", default=None, metavar="F",
              help="Only this folder (server path, levels joined by /, e.g. Archive/2024).")
@click.option("--as-of", "as_of", default=None, metavar="DATE",
              help="Restore the archive as it was then: 2026-11-21 (end of that day, UTC) "
                   "or 2026-11-21T09:51:11+00:00.")
@click.option("--imap-password-command", default=None, metavar="CMD",
              help="Command printing the IMAP password (env AXSYNC_IMAP_PASSWORD wins).")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="CA certificates to verify the server with "
                                 "(default: the account's ca_bundle, else the system's).")
@click.option("--insecure", is_flag=True,
              help="Do not verify the certificate (loopback hosts only, for testing).")
@click.option("--with-deleted-flag", is_flag=True,
              help="Also restore \\Deleted on messages that had it (default: left off).")
@click.option("--dry-run", is_flag=True, help="Show what would be appended; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="A JSON summary on stdout.")
@click.pass_context
def restore_cmd(ctx: click.Context, name: str, imap_url: str, folder: str | None,
                as_of: str | None, imap_password_command: str | None, ca_bundle: Path | None,
                insecure: bool, with_deleted_flag: bool, dry_run: bool, as_json: bool) -> None:
    """Upload account NAME's archive to any IMAP server, idempotently.

    Every archived message is APPENDed with its flags, labels (as keywords) and
    internal date into the folder of the same name, created when missing. Running it
    again, or after an interruption, appends only what is not there yet.
    """
    account = load_config(ctx.obj.config_path).account(name)
    target = parse_imap_url(imap_url, insecure=insecure, ca_bundle=ca_bundle or account.ca_bundle)
    instant = parse_as_of(as_of) if as_of else None
    password = imap_password(imap_password_command)
    options = RestoreOptions(folder=folder, as_of=instant, keep_deleted=with_deleted_flag,
                             dry_run=dry_run, timeout=account.timeout)
    progress = TqdmRestoreProgress(name) if sys.stderr.isatty() and not as_json else None
    if not account.state_path.exists():
        raise StateError(f"no archive state at {account.state_path}; run `axsync sync {name}` first")
    db = StateDB.open(account.state_path)
    try:
        report = restore(db, Store(account.maildir, compression=account.compression), target,
                         password, account=name, options=options, progress=progress)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        _print(report)
    sys.exit(report.exit_code)


def register(group: click.Group) -> None:
    group.add_command(restore_cmd, name="restore")
