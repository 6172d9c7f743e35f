"""``axsync fake-server``: the embedded fake Axigen Mailbox API server, in the foreground."""

from __future__ import annotations

from pathlib import Path

import click

from axsync.fake.knobs import SERVER_VERSIONS, Knobs


@click.command("fake-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port; the URL printed says which).")
@click.option("--api-version", type=click.Choice(sorted(SERVER_VERSIONS)), default="10.6",
              show_default=True, help="Axigen generation to play (10.4 has no delta endpoints).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the generated mail.")
@click.option("--messages", default=200, show_default=True, type=click.IntRange(0),
              help="Number of generated messages.")
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Load this Maildir (or tree of .eml files) instead of generating.")
@click.option("--user", default="alice@example.com", show_default=True, help="Account name.")
@click.option("--password", default="secret", show_default=True, help="Account password.")
@click.option("--latency-ms", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Milliseconds added to every request.")
@click.option("--fail-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Fraction of requests answered 503 with Retry-After.")
@click.option("--drop-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Fraction of replies whose connection is dropped mid-body.")
@click.option("--spike-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Fraction of requests held --spike-ms longer (latency spikes).")
@click.option("--spike-ms", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Milliseconds a latency spike adds.")
@click.option("--page-size", default=20, show_default=True, type=click.IntRange(1),
              help="Page size when a listing gives no limit.")
@click.option("--fault-seed", default=0, show_default=True, type=int,
              help="Seed of the fault draws (reproducible failures).")
def fake_server(
    host: str,
    port: int,
    api_version: str,
    seed: int,
    messages: int,
    corpus: Path | None,
    user: str,
    password: str,
    latency_ms: float,
    fail_rate: float,
    drop_rate: float,
    spike_rate: float,
    spike_ms: float,
    page_size: int,
    fault_seed: int,
) -> None:
    """Serve a fake Axigen mailbox until interrupted.

    Prints the base URL, the user and the password, one per line, then serves until
    SIGINT or SIGTERM.
    """
    from axsync.fake.corpus import generate, load_corpus
    from axsync.fake.server import serve_forever

    data = load_corpus(corpus) if corpus is not None else generate(seed=seed, messages=messages)
    knobs = Knobs(
        api_version=api_version,
        default_page_size=page_size,
        latency=latency_ms / 1000,
        fail_rate=fail_rate,
        drop_rate=drop_rate,
        spike_rate=spike_rate,
        spike_latency=spike_ms / 1000,
        fault_seed=fault_seed,
    )

    def ready(url: str) -> None:
        click.echo(url)
        click.echo(user)
        click.echo(password)

    serve_forever(data, host=host, port=port, user=user, password=password, knobs=knobs, on_ready=ready)


def register(group: click.Group) -> None:
    group.add_command(fake_server)
