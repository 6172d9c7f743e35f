"""``axsync bench``: speed and memory figures on the embedded fake server (see axsync.bench)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from axsync.config import MAX_CONCURRENCY

# The library is imported by the command itself: every axsync command pays for the imports
# made at registration, so this module keeps them to click and axsync.config (which every
# command loads anyway).
SCENARIOS = ("bandwidth", "pull", "nochange", "scan", "push", "memory", "compression")


def _ints(text: str | None, what: str) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated integers") from None
    if not values or any(v <= 0 for v in values):
        raise click.BadParameter(f"{what} must be positive")
    return values


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers") from None
    if any(v < 0 for v in values):
        raise click.BadParameter(f"{what} must not be negative")
    return values


@click.command("bench")
@click.option("--quick", is_flag=True, help="Small sizes and one run each (well under a minute).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the JSON report to this file.")
@click.option("--sizes", default=None, metavar="N,N",
              help="Mailbox sizes in messages (default 10000,100000; quick: 200,1000).")
@click.option("--latencies", default=None, metavar="MS,MS",
              help="Added round-trip times for the initial pull (default 0,10,20; quick: 0,20).")
@click.option("--only", "only", multiple=True, metavar="NAME",
              help=f"Run only these scenarios (repeatable or comma-separated): "
                   f"{', '.join(SCENARIOS)}.")
@click.option("--repeat", type=click.IntRange(1, 20), default=None,
              help="Runs per figure; the median is reported (default 3; quick: 1).")
@click.option("--concurrency", type=click.IntRange(1, MAX_CONCURRENCY), default=8, show_default=True,
              help="Connections axsync uses (the account default is 8).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where archives are written (default: a temporary directory).")
@click.option("--keep", is_flag=True, help="Keep the archives written.")
def bench(quick: bool, as_json: bool, out: Path | None, sizes: str | None, latencies: str | None,
          only: tuple[str, ...], repeat: int | None, concurrency: int, workdir: Path | None,
          keep: bool) -> None:
    """Measure pull, no-change, scan, push, memory and compression on the fake server.

    The fake server and every measured axsync run are separate processes, so the CPU time
    and peak RSS reported are axsync's own. See docs/performance.md for what each figure
    means."""
    from axsync.bench import BenchOptions, format_report, run_bench

    names = frozenset(n.strip() for item in only for n in item.split(",") if n.strip())
    unknown = names - set(SCENARIOS)
    if unknown:
        raise click.BadParameter(f"unknown scenario(s): {', '.join(sorted(unknown))}",
                                 param_hint="--only")

    def log(msg: str) -> None:
        click.echo(f"bench: {msg}", err=True)

    kw: dict[str, object] = {
        "sizes": _ints(sizes, "--sizes"), "latencies_ms": _floats(latencies, "--latencies"),
        "repeat": repeat, "only": names or None, "concurrency": concurrency,
        "workdir": workdir, "keep": keep, "log": log,
    }
    if quick:
        options = BenchOptions.quick_defaults(**kw)
    else:
        options = BenchOptions(**{k: v for k, v in kw.items() if v is not None})  # type: ignore[arg-type]
    report = run_bench(options)
    text = json.dumps(report, indent=2)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    click.echo(text if as_json else format_report(report))


def register(group: click.Group) -> None:
    group.add_command(bench)
