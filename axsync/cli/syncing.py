"""``axsync init``, ``sync``, ``status``, ``verify``: parse, call, print."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from axsync.config import Account, Config, default_path, load_config, save_account
from axsync.errors import UsageError
from axsync.statedb import StateDB
from axsync.store import Store
from axsync.sync.engine import SyncOptions, open_client, run_account
from axsync.sync.report import RunReport
from axsync.verify import status as build_status
from axsync.verify import verify_local, verify_remote

if TYPE_CHECKING:
    from tqdm import tqdm


class TqdmProgress:
    """Messages and bytes, overall; the postfix names the folder being written. tqdm is
    imported when a bar is shown (a cron run, without a terminal, does not pay for it)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.msgs: tqdm[Any] | None = None
        self.bytes: tqdm[Any] | None = None

    def phase(self, text: str) -> None:
        if self.enabled and self.msgs is None:
            from tqdm import tqdm

            tqdm.write(f"{self.label}: {text}…", file=sys.stderr)

    def add_total(self, messages: int, nbytes: int) -> None:
        if not self.enabled:
            return
        if self.msgs is None:
            from tqdm import tqdm

            self.msgs = tqdm(total=0, desc=f"{self.label} messages", unit="msg", file=sys.stderr,
                             disable=None, position=0)
            self.bytes = tqdm(total=0, desc=f"{self.label} bytes", unit="B", unit_scale=True,
                              unit_divisor=1024, file=sys.stderr, disable=None, position=1)
        assert self.bytes is not None
        self.msgs.total = (self.msgs.total or 0) + messages
        self.bytes.total = (self.bytes.total or 0) + nbytes
        self.msgs.refresh()
        self.bytes.refresh()

    def advance(self, messages: int, nbytes: int, folder: str) -> None:
        if self.msgs is not None and self.bytes is not None:
            self.msgs.update(messages)
            self.bytes.update(nbytes)
            self.msgs.set_postfix_str(folder or "INBOX", refresh=False)

    def close(self) -> None:
        for bar in (self.msgs, self.bytes):
            if bar is not None:
                bar.close()
        self.msgs = self.bytes = None


def _config(ctx: click.Context) -> Config:
    return load_config(ctx.obj.config_path)


def _pick(config: Config, names: tuple[str, ...]) -> list[Account]:
    if names:
        return [config.account(n) for n in names]
    if not config.accounts:
        raise UsageError(f"no accounts in {config.path}; add one with `axsync init`")
    return list(config.accounts.values())


def _one(config: Config, name: str | None) -> Account:
    if name:
        return config.account(name)
    if len(config.accounts) == 1:
        return next(iter(config.accounts.values()))
    raise UsageError("several accounts are configured; name one")


def shard_of(name: str, total: int) -> int:
    """Stable shard of an account name (sha256, not Python's salted hash)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % total


def _print_plan(report: RunReport) -> None:
    click.echo(f"{report.account}: plan (dry run, nothing changed)")
    if not report.plan:
        click.echo("  nothing to do")
    for item in report.plan:
        folder = item.get("folder") or "INBOX"
        if "action" in item:
            click.echo(f"  folder {item['action']}: {folder} -> {item['dirname'] or '(root)'}")
            continue
        parts = [f"{k.replace('_', ' ')} {v}" for k, v in item.items()
                 if k not in ("folder", "dirname") and v]
        click.echo(f"  {folder}: " + ", ".join(parts))


def _print_summary(report: RunReport) -> None:
    if report.fatal:
        click.echo(f"{report.account}: FAILED (exit {report.exit_code}): {report.fatal}", err=True)
        return
    p, q = report.pulled, report.pushed
    click.echo(
        f"{report.account}: pulled {p.new} new, {p.updated} updated, {p.moved} moved, "
        f"{p.deleted} deleted ({p.bytes} bytes); pushed {q.flags} flags, {q.labels} labels, "
        f"{q.moved} moved, {q.deleted} deleted; {report.conflicts} conflicts; "
        f"{report.requests} requests in {report.seconds:.1f}s"
    )
    for note in report.notes:
        click.echo(f"  note: {note}")
    for f in report.failures[:50]:
        click.echo(f"  failed: {f['item']}: {f['error']}", err=True)
    if len(report.failures) > 50:
        click.echo(f"  … and {len(report.failures) - 50} more failures (see `axsync status`)", err=True)


@click.command()
@click.argument("name")
@click.option("--server", required=True, help="Base URL of the Axigen server (https://…).")
@click.option("--user", "username", required=True, help="Account login, e.g. alice@example.com.")
@click.option("--maildir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--password-command", default=None, help="Command printing the password.")
@click.option("--mode", type=click.Choice(["backup", "mirror", "sync"]), default=None)
@click.option("--compression", type=click.Choice(["zstd", "gzip", "none"]), default=None)
@click.option("--no-check", is_flag=True, help="Do not try to log in.")
@click.pass_context
def init(ctx: click.Context, name: str, server: str, username: str, maildir: Path,
         password_command: str | None, mode: str | None, compression: str | None,
         no_check: bool) -> None:
    """Add or update account NAME in the config, then check that login works."""
    path = ctx.obj.config_path or default_path()
    save_account(path, name, {
        "server": server, "username": username, "maildir": str(maildir.expanduser().absolute()),
        "password_command": password_command, "mode": mode, "compression": compression,
    })
    config = load_config(path)
    account = config.account(name)
    click.echo(f"account {name} written to {path}")
    if no_check:
        return
    with open_client(account) as api:
        api.login()
        info = api.server_info()
    click.echo(f"login ok: {account.username} on {account.server} "
               f"(Axigen {info.server_version}, API {info.api_version})")


@click.command()
@click.argument("names", nargs=-1)
@click.option("--pull-only", is_flag=True, help="Only bring server changes into the archive.")
@click.option("--push-only", is_flag=True, help="Only send local changes to the server.")
@click.option("--dry-run", is_flag=True, help="Print the exact plan; change nothing.")
@click.option("--force", is_flag=True, help="Let this run pass the deletion guard.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per account on stdout.")
@click.option("--shard", default=None, metavar="K/N", help="Only accounts whose stable hash mod N is K.")
@click.option("--parallel", default=4, show_default=True, help="Accounts synced at the same time.")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a Prometheus textfile (node_exporter textfile collector).")
@click.option("--healthcheck-url", default=None,
              help="Ping this URL on success, URL/fail on failure (healthchecks.io style).")
@click.pass_context
def sync(ctx: click.Context, names: tuple[str, ...], pull_only: bool, push_only: bool,
         dry_run: bool, force: bool, as_json: bool, shard: str | None, parallel: int,
         metrics_file: Path | None, healthcheck_url: str | None) -> None:
    """One incremental run per account (all accounts when none is named)."""
    if pull_only and push_only:
        raise UsageError("--pull-only and --push-only exclude each other")
    accounts = _pick(_config(ctx), names)
    if shard:
        try:
            k, n = (int(x) for x in shard.split("/"))
            if not 0 <= k < n:
                raise ValueError
        except ValueError:
            raise UsageError(f"--shard expects K/N with 0 <= K < N, got {shard!r}") from None
        accounts = [a for a in accounts if shard_of(a.name, n) == k]
    options = SyncOptions(pull_only=pull_only, push_only=push_only, dry_run=dry_run, force=force)
    show_progress = not as_json and len(accounts) == 1 and sys.stderr.isatty()

    def one(account: Account) -> RunReport:
        progress = TqdmProgress(account.name, show_progress)
        return run_account(account, options, progress=progress)

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(accounts) or 1))) as pool:
        reports = list(pool.map(one, accounts))
    for report in reports:
        if as_json:
            click.echo(json.dumps(report.to_json(), ensure_ascii=False))
        elif dry_run and not report.fatal:
            _print_plan(report)
        else:
            _print_summary(report)
    code = max((r.exit_code for r in reports), default=0)
    if not dry_run:
        _report_out(reports, metrics_file, healthcheck_url, code)
    sys.exit(code)


def _report_out(reports: list[RunReport], metrics_file: Path | None,
                healthcheck_url: str | None, code: int) -> None:
    from axsync.ops import ping_healthcheck, write_metrics

    data = [r.to_json() for r in reports]
    if metrics_file is not None:
        try:
            write_metrics(metrics_file, data)
        except OSError as exc:
            click.echo(f"axsync: warning: cannot write {metrics_file}: {exc}", err=True)
    if healthcheck_url:
        failed = [r.account for r in reports if not r.ok]
        summary = (f"{len(reports)} account(s), exit {code}"
                   + (f"; failed: {', '.join(failed)}" if failed else ""))
        ping_healthcheck(healthcheck_url, code == 0 and not failed, summary)


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Last run, counts per folder, pending local changes, conflicts."""
    account = _one(_config(ctx), name)
    db = StateDB.open(account.state_path, readonly=True)
    try:
        data = build_status(db, Store(account.maildir, compression=account.compression))
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    last = data["last_run"]
    click.echo(f"{account.name}: {data['messages']} messages archived, "
               f"{data['deleted_on_server']} kept after deletion on the server")
    if last:
        ok = "ok" if last["ok"] else f"exit {last['exit_code']}"
        click.echo(f"last run #{last['id']} ({last['mode']}): {ok}")
        for err in last["errors"][:20]:
            click.echo(f"  failed: {err['item']}: {err['error']}")
    for f in data["folders"]:
        flag = " (excluded)" if f["excluded"] else (" (deleted on server)" if f["state"] != "present" else "")
        click.echo(f"  {f['folder']:<40} {f['messages']:>8}{flag}")
    pending = data["pending_local_changes"]
    click.echo("pending local changes: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in pending.items()))
    if data["conflicts"]:
        click.echo(f"recent conflicts: {len(data['conflicts'])}")
        for c in data["conflicts"][:10]:
            click.echo(f"  mail {c['mail_id']} {c['field']}: local {c['local']} server {c['server']} -> {c['resolution']}")


@click.command()
@click.argument("name", required=False)
@click.option("--remote", is_flag=True, help="Also compare ids, sizes and flags with the server.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify(ctx: click.Context, name: str | None, remote: bool, as_json: bool) -> None:
    """Check every archived file against its recorded size and sha256."""
    account = _one(_config(ctx), name)
    db = StateDB.open(account.state_path, readonly=True)
    try:
        report = verify_local(db, Store(account.maildir, compression=account.compression))
        if remote:
            with open_client(account) as api:
                verify_remote(db, api, report)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        click.echo(f"{account.name}: {report.ok}/{report.checked} files verified"
                   + (f", {report.remote_checked} server mails compared" if remote else ""))
        for label, items in (("missing", report.missing), ("corrupt", report.corrupt),
                             ("server", report.remote_problems), ("unknown file", report.unknown_files)):
            for item in items[:50]:
                click.echo(f"  {label}: {item}")
    sys.exit(0 if report.clean else 1)


def register(group: click.Group) -> None:
    for command in (init, sync, status, verify):
        group.add_command(command)
