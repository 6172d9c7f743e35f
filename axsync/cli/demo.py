"""``axsync demo``: run everything on the embedded fake server."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from axsync.cli.syncing import TqdmProgress, _print_summary
from axsync.demo import run_demo


@click.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to put the demo archive and config (default: a new temp dir).")
@click.option("--messages", default=400, show_default=True, help="Size of the generated mailbox.")
@click.option("--api-version", type=click.Choice(["10.4", "10.6"]), default="10.6", show_default=True)
def demo(workdir: Path | None, messages: int, api_version: str) -> None:
    """Run the whole thing on the embedded fake server, no setup."""
    tty = sys.stderr.isatty()
    click.echo(f"Starting a fake Axigen {api_version} server with {messages} generated messages…")
    result = run_demo(workdir, messages=messages, api_version=api_version,
                      progress_factory=lambda label: TqdmProgress(label, tty))
    click.echo("\nFirst sync (the whole mailbox):")
    _print_summary(result.first)
    click.echo("\nMeanwhile, on the server:")
    for change in result.changes:
        click.echo(f"  - {change}")
    click.echo("\nSecond sync (only what changed):")
    _print_summary(result.second)
    click.echo("\nThe archive now holds:")
    for path, count in result.folders:
        click.echo(f"  {path:<50} {count:>6}")
    click.echo(f"labels (Maildir keywords): {', '.join(result.labels)}")
    maildir = result.workdir / "Mail"
    click.echo(f"\nArchive: {maildir} (zstd Maildir++, Dovecot can serve it as is)")
    click.echo(f"Config:  {result.config_path}")
    click.echo(f"Try:     axsync --config {result.config_path} status demo")
    code = max(result.first.exit_code, result.second.exit_code)
    sys.exit(code)


def register(group: click.Group) -> None:
    group.add_command(demo)
