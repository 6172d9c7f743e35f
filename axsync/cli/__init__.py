"""The command line: parses, calls the library, prints. Nothing else lives here.

Every command module under ``axsync.cli`` defines click commands and a ``register(group)``
function; ``main`` wires them and maps every exception to its exit code in one place
(``run_cli``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from axsync.errors import AxsyncError, exit_code_for

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("axsync")


class AppContext:
    """What the root command hands to every subcommand."""

    def __init__(self, config_path: Path | None, verbose: int) -> None:
        self.config_path = config_path
        self.verbose = verbose


def setup_logging(verbose: int) -> None:
    level = logging.WARNING
    if verbose == 1:
        level = logging.INFO
    elif verbose >= 2:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    # journald adds its own timestamps; keep lines short and greppable.
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("axsync")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


#: command name -> the module under axsync.cli that defines it. Modules are imported only
#: when their command runs, so `axsync sync` does not pay for the web UI or the fake server.
COMMANDS = {
    "init": "syncing", "sync": "syncing", "status": "syncing", "verify": "syncing",
    "search": "archive", "show": "archive", "export": "archive", "browse": "archive",
    "reindex": "archive", "restore": "restore", "demo": "demo", "fake-server": "fake",
    "bench": "bench",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            import importlib

            importlib.import_module(f"axsync.cli.{COMMANDS[cmd_name]}").register(self)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (default: $AXSYNC_CONFIG, else $XDG_CONFIG_HOME/axsync/config.toml).",
)
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v info, -vv debug).")
@click.version_option(package_name="axsync")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """axsync keeps an Axigen mailbox and a local compressed Maildir archive in step."""
    setup_logging(verbose)
    ctx.obj = AppContext(config_path, verbose)


def fail(exc: BaseException) -> None:
    """Print an error the way every command does, and exit with its code."""
    code = exit_code_for(exc)
    if isinstance(exc, AxsyncError):
        click.echo(f"axsync: error: {exc}", err=True)
    else:  # a bug: keep the traceback for -v, one line otherwise
        log.debug("unexpected error", exc_info=exc)
        click.echo(f"axsync: internal error: {exc.__class__.__name__}: {exc}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="axsync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
        fail(exc)
