"""``axsync bench``: speed and memory of axsync against the embedded fake Axigen server.

Every measured axsync run happens in a child process (``python -m axsync.bench run``) so its
peak RSS (``VmHWM`` of that process) and CPU time (user + sys) are axsync's alone; the
fake server runs in another child process (``python -m axsync.bench serve``), driven over
its stdin/stdout with one JSON object per line, and added latency comes from the TCP proxy
of :mod:`axsync.netproxy` (also a child process), the same proxy ``tests/bench/peers.sh``
puts in front of Dovecot.

Scenarios (``--only`` names):

``bandwidth``    loopback HTTP bandwidth: one big streamed download with httpx (the client
                 stack axsync uses) from a plain asyncio HTTP server in a child process.
``pull``         (a) initial pull of N messages at each added round-trip latency: messages/s,
                 MB/s, and the ratio to the ideal bound ``bytes / bandwidth + requests x
                 latency / concurrency``.
``nochange``     (b) a run right after a pull, nothing changed: requests and wall time, on
                 both API generations (10.6 with delta endpoints, 10.4 without).
``scan``         (c) ``Store.scan()`` over the N files of the pulled archive (warm cache).
``push``         (d) a run that pushes K local flag changes (K = min(10000, N)).
``memory``       (e) peak RSS of the initial pull, of the no-change run, and of a no-change
                 run that scans the archive for local changes (a folder's ``cur/`` mtime is
                 moved first, as any rename would, so the scan cannot be skipped), per size.
``compression``  (f) zstd vs gzip on the generated corpus, message by message as the store
                 writes them: ratio, compression and decompression MB/s (in this process).

Medians: every timed figure is the median of ``repeat`` runs, except initial pulls of more
than ``PULL_REPEAT_LIMIT`` messages, which run once (their count is in the report).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

SEED = 20260101
USER = "bench@example.com"
PASSWORD = "bench-password"
DEFAULT_SIZES = (10_000, 100_000)
QUICK_SIZES = (200, 1000)
DEFAULT_LATENCIES = (0.0, 10.0, 20.0)
QUICK_LATENCIES = (0.0, 20.0)
SCENARIOS = ("bandwidth", "pull", "nochange", "scan", "push", "memory", "compression")
PUSH_CHANGES = 10_000
PULL_REPEAT_LIMIT = 20_000
#: Latency pulls run on sizes up to this (a 100k pull at 20 ms takes minutes per run).
LATENCY_SIZE_LIMIT = 20_000
BANDWIDTH_BYTES = 512 * 1024 * 1024
QUICK_BANDWIDTH_BYTES = 64 * 1024 * 1024
COMPRESSION_SAMPLE = 10_000
MB = 1_000_000


# ============================================================================ options


@dataclass
class BenchOptions:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    latencies_ms: tuple[float, ...] = DEFAULT_LATENCIES
    only: frozenset[str] = frozenset(SCENARIOS)
    repeat: int = 3
    concurrency: int = 8
    quick: bool = False
    seed: int = SEED
    workdir: Path | None = None
    keep: bool = False
    latency_size_limit: int = LATENCY_SIZE_LIMIT
    push_changes: int = PUSH_CHANGES
    log: Callable[[str], None] = field(default=lambda _msg: None, repr=False)

    @classmethod
    def quick_defaults(cls, **kw: Any) -> BenchOptions:
        base: dict[str, Any] = {"sizes": QUICK_SIZES, "latencies_ms": QUICK_LATENCIES,
                                "repeat": 1, "quick": True, "latency_size_limit": QUICK_SIZES[0],
                                "push_changes": 300}
        base.update({k: v for k, v in kw.items() if v is not None})
        if "latency_size_limit" not in kw:
            base["latency_size_limit"] = min(base["sizes"])
        return cls(**base)

    def wants(self, name: str) -> bool:
        return name in self.only


# ============================================================================ child roles


def _peak_rss_kb() -> float:
    """This process's own peak RSS. On Linux ``VmHWM``: ``ru_maxrss`` also counts the
    parent's peak at the moment it spawned us (exec keeps the larger of the two), so a
    bench parent that had listed a big archive would set a floor under every child."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _rusage_self() -> dict[str, float]:
    """CPU of this process and of the children it waited for (the search index's worker
    processes, which the run stops before it reports), and this process's peak RSS."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"user_s": ru.ru_utime + kids.ru_utime, "sys_s": ru.ru_stime + kids.ru_stime,
            "maxrss_kb": _peak_rss_kb()}


def _reply(out: IO[str], payload: dict[str, Any]) -> None:
    out.write(json.dumps(payload) + "\n")
    out.flush()


def serve_role(argv: Sequence[str]) -> None:
    """``python -m axsync.bench serve``: a fake server with a JSON-lines control channel.

    First line out: ``{"url", "generate_s", "mailbox_s", "warm_s", "warmed", "messages",
    "bytes"}`` (``warmed``: messages :meth:`Mailbox.warm` prepared). Then one reply per
    command line read: ``counters``, ``reset``, ``latency`` (seconds), ``flags``
    (toggle the flagged flag on ``fraction`` of the mails, deterministic), ``flagged``
    (how many are flagged), ``rss``, ``quit``.
    """
    p = argparse.ArgumentParser(prog="axsync.bench serve")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--api-version", default="10.6")
    args = p.parse_args(list(argv))
    from axsync.fake.corpus import generate
    from axsync.fake.server import FakeAxigen, Knobs

    out = sys.stdout
    t0 = time.perf_counter()
    corpus = generate(seed=args.seed, messages=args.messages)
    t1 = time.perf_counter()
    nbytes = sum(len(m.raw) for m in corpus.messages)
    fake = FakeAxigen(corpus, user=USER, password=PASSWORD,
                      knobs=Knobs(api_version=args.api_version))
    del corpus
    t2 = time.perf_counter()
    warmed = fake.mailbox.warm()  # every measured run, the first too, finds it ready
    t3 = time.perf_counter()
    fake.start()
    _reply(out, {"url": fake.url, "generate_s": t1 - t0, "mailbox_s": t2 - t1,
                 "warm_s": t3 - t2, "warmed": warmed, "messages": args.messages,
                 "bytes": nbytes})
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd.get("op")
            if op == "quit":
                _reply(out, {"ok": True})
                break
            if op == "counters":
                _reply(out, {"total": fake.total_requests(), "by_route": fake.counters})
            elif op == "reset":
                fake.reset_counters()
                _reply(out, {"ok": True})
            elif op == "latency":
                fake.knobs.latency = float(cmd["seconds"])
                _reply(out, {"ok": True})
            elif op == "flags":
                mails = sorted(fake.mailbox.mails(), key=lambda m: m.id)
                step = max(1, round(1 / max(1e-9, float(cmd["fraction"]))))
                changed = 0
                for m in mails[int(cmd.get("offset", 0)) % step::step]:
                    fake.mailbox.set_flags(m.id, flagged=not m.flagged)
                    changed += 1
                _reply(out, {"changed": changed})
            elif op == "flagged":
                _reply(out, {"flagged": sum(1 for m in fake.mailbox.mails() if m.flagged)})
            elif op == "rss":
                _reply(out, _rusage_self())
            else:
                _reply(out, {"error": f"unknown op {op!r}"})
    finally:
        fake.stop()


def run_role(argv: Sequence[str]) -> None:
    """``python -m axsync.bench run URL MAILDIR [--mode M] [--concurrency C]``: one
    ``run_account``; prints its report plus this process's rusage as one JSON line."""
    p = argparse.ArgumentParser(prog="axsync.bench run")
    p.add_argument("url")
    p.add_argument("maildir", type=Path)
    p.add_argument("--mode", default="sync")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--pull-only", action="store_true")
    args = p.parse_args(list(argv))
    from axsync.api import ApiClient
    from axsync.config import Account
    from axsync.sync.engine import SyncOptions, run_account

    account = Account(name="bench", server=args.url, username=USER, maildir=args.maildir,
                      mode=args.mode, exclude=(), concurrency=args.concurrency)

    def client(acc: Account) -> ApiClient:
        return ApiClient(acc.server, acc.username, PASSWORD, concurrency=acc.concurrency)

    report = run_account(account, SyncOptions(pull_only=args.pull_only), client_factory=client)
    _reply(sys.stdout, {"report": report.to_json(), "rusage": _rusage_self()})


def scan_role(argv: Sequence[str]) -> None:
    """``python -m axsync.bench scan MAILDIR``: time ``Store.scan()`` (files, seconds)."""
    from axsync.store import Store

    store = Store(Path(argv[0]))
    t0 = time.perf_counter()
    files = sum(1 for _ in store.scan())
    seconds = time.perf_counter() - t0
    _reply(sys.stdout, {"files": files, "seconds": seconds, "rusage": _rusage_self()})


def blob_role(argv: Sequence[str]) -> None:
    """``python -m axsync.bench blob``: HTTP/1.1 server answering every GET with
    ``--bytes`` bytes (for the bandwidth measure). Prints its port, serves until killed."""
    p = argparse.ArgumentParser(prog="axsync.bench blob")
    p.add_argument("--bytes", type=int, required=True)
    args = p.parse_args(list(argv))
    block = os.urandom(1 << 20)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             + f"Content-Length: {args.bytes}\r\n\r\n".encode())
                left = args.bytes
                while left > 0:
                    chunk = block[: min(left, len(block))]
                    writer.write(chunk)
                    left -= len(chunk)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


ROLES: dict[str, Callable[[Sequence[str]], None]] = {
    "serve": serve_role, "run": run_role, "scan": scan_role, "blob": blob_role,
}


# ============================================================================ parent side


def precompile() -> None:
    """Byte-compile the axsync package, as ``pip install`` does: an editable install run
    with PYTHONDONTWRITEBYTECODE would compile every module at each start-up, which no
    user pays for."""
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parent), quiet=1, workers=1)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class ServerProcess:
    """The fake server in a child process (``serve`` role)."""

    def __init__(self, messages: int, api_version: str = "10.6", seed: int = SEED) -> None:
        self.messages, self.api_version, self.seed = messages, api_version, seed
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "axsync.bench", "serve", "--seed", str(self.seed),
             "--messages", str(self.messages), "--api-version", self.api_version],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_child_env())
        self.info = self._read()
        return self

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fake server process exited ({self.proc.poll()})")
        data: dict[str, Any] = json.loads(line)
        return data

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write('{"op": "quit"}\n')
                proc.stdin.flush()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class RunResult:
    """One axsync run in a child process."""

    wall_s: float  # the child process, start to exit
    seconds: float  # run_account's own clock
    requests: int
    report: dict[str, Any]
    cpu_s: float  # user + sys of the child
    peak_rss_mb: float

    @property
    def ok(self) -> bool:
        return bool(self.report.get("ok"))


def run_axsync(url: str, maildir: Path, *, concurrency: int = 8, mode: str = "sync",
               pull_only: bool = False) -> RunResult:
    argv = [sys.executable, "-m", "axsync.bench", "run", url, str(maildir), "--mode", mode,
            "--concurrency", str(concurrency)]
    if pull_only:
        argv.append("--pull-only")
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, env=_child_env())
    wall = time.perf_counter() - t0
    if res.returncode != 0 or not res.stdout.strip():
        raise RuntimeError(f"axsync run failed ({res.returncode}): {res.stderr[-3000:]}")
    data = json.loads(res.stdout.strip().splitlines()[-1])
    rep, ru = data["report"], data["rusage"]
    if not rep.get("ok"):
        raise RuntimeError(f"axsync run was not clean: {json.dumps(rep)[:3000]}")
    return RunResult(wall, float(rep["seconds"]), int(rep["requests"]), rep,
                     ru["user_s"] + ru["sys_s"], ru["maxrss_kb"] / 1024)


def _sig(x: float, digits: int = 3) -> float:
    """``x`` to ``digits`` significant digits (ratios far below 1 stay non-zero)."""
    return float(f"{x:.{digits}g}")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _medians(results: Sequence[RunResult]) -> dict[str, Any]:
    return {
        "runs": len(results),
        "seconds": round(median([r.seconds for r in results]), 3),
        "wall_s": round(median([r.wall_s for r in results]), 3),
        "requests": int(median([r.requests for r in results])),
        "cpu_s": round(median([r.cpu_s for r in results]), 3),
        "peak_rss_mb": round(median([r.peak_rss_mb for r in results]), 1),
    }


# ---------------------------------------------------------------------------- bandwidth


def measure_bandwidth(nbytes: int, repeat: int) -> dict[str, Any]:
    """Loopback HTTP bandwidth as axsync's client stack sees it (httpx, 64 KiB chunks)."""
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "axsync.bench", "blob", "--bytes", str(nbytes)],
                            stdout=subprocess.PIPE, text=True, env=_child_env())
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        rates = []
        with httpx.Client(timeout=60) as client:
            for _ in range(max(1, repeat)):
                t0 = time.perf_counter()
                got = 0
                with client.stream("GET", f"http://127.0.0.1:{port}/blob") as resp:
                    for chunk in resp.iter_bytes(64 * 1024):
                        got += len(chunk)
                rates.append(got / (time.perf_counter() - t0))
                if got != nbytes:
                    raise RuntimeError(f"bandwidth download got {got} of {nbytes} bytes")
        return {"bytes": nbytes, "runs": len(rates), "mb_per_s": round(median(rates) / MB, 1)}
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


# ---------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _workdir(options: BenchOptions) -> Iterator[Path]:
    if options.workdir is not None:
        options.workdir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="run-", dir=options.workdir))
    else:
        path = Path(tempfile.mkdtemp(prefix="axsync-bench-"))
    try:
        yield path
    finally:
        if not options.keep:
            shutil.rmtree(path, ignore_errors=True)


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def retire(path: Path) -> None:
    """Put a finished run's directory aside, to be deleted with the work directory at the
    end. Deleting it now would slow the next measured run: ext4 scans the inode table past
    recently freed inodes when it creates files (``recently_deleted`` in its allocator
    took a third of a 10k pull's CPU time after an rmtree of the previous archive)."""
    if not path.exists():
        return
    shelf = path.parent / ".retired"
    shelf.mkdir(exist_ok=True)
    path.rename(shelf / f"{path.name}-{time.monotonic_ns()}")


def ideal_seconds(nbytes: int, requests: int, latency_s: float, concurrency: int,
                  bandwidth_bps: float) -> float:
    """The bound no client can beat: the bytes at loopback bandwidth, plus one round trip
    per request spread over ``concurrency`` connections."""
    return nbytes / bandwidth_bps + requests * latency_s / max(1, concurrency)


def flip_local_flags(maildir: Path, count: int) -> int:
    """Toggle the F (flagged) flag of ``count`` archived files (deterministic order), the
    way a mail client would: by renaming. Returns the number changed."""
    from axsync.store import Store

    store = Store(maildir)
    files = sorted(store.scan(), key=lambda f: (f.dirname, f.base))
    changed = 0
    for f in files[:count]:
        flags = set(f.flags)
        flags ^= {"F"}
        store.set_flags(f.dirname, f.filename, "".join(sorted(flags)))
        changed += 1
    return changed


def force_scan(maildir: Path) -> None:
    """Make the next sync-mode run scan the archive for local changes: move the INBOX
    ``cur/`` modification time forward (as any rename there would), so the folders'
    fingerprint differs from the one the last run recorded."""
    cur = maildir / "cur"
    t = max(time.time_ns(), cur.stat().st_mtime_ns + 1_000_000_000)
    os.utime(cur, ns=(t, t))


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cores": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        root = Path(__file__).resolve().parent.parent
        res = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
        if res.returncode == 0:
            info["git"] = res.stdout.strip()
    with contextlib.suppress(OSError, ValueError):
        load = os.getloadavg()
        info["loadavg_at_start"] = [round(x, 2) for x in load]
    return info


# ---------------------------------------------------------------------------- compression


def compression_figures(seed: int, messages: int, repeat: int) -> list[dict[str, Any]]:
    """zstd vs gzip, message by message (as the store writes them), on a generated corpus."""
    from axsync.fake.corpus import generate
    from axsync.store.compress import DEFAULT_LEVEL, compress_bytes

    corpus = generate(seed=seed, messages=messages)
    raws = [m.raw for m in corpus.messages]
    del corpus
    total = sum(len(r) for r in raws)
    import zstandard

    def zstd_dec(blob: bytes) -> bytes:
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)

    def gzip_dec(blob: bytes) -> bytes:
        return zlib.decompress(blob, 31)

    out = []
    for method, level, dec in (("zstd", DEFAULT_LEVEL, zstd_dec), ("gzip", DEFAULT_LEVEL, gzip_dec),
                               ("gzip", 6, gzip_dec)):
        ctimes, dtimes = [], []
        packed: list[bytes] = []
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            packed = [compress_bytes(r, method, level) for r in raws]
            ctimes.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            back = [dec(b) for b in packed]
            dtimes.append(time.perf_counter() - t0)
            if sum(len(b) for b in back) != total:
                raise RuntimeError(f"{method} round trip lost bytes")
            del back
        stored = sum(len(b) for b in packed)
        out.append({
            "method": method, "level": level, "messages": len(raws), "bytes": total,
            "stored_bytes": stored, "ratio": round(total / stored, 3),
            "compress_mb_s": round(total / median(ctimes) / MB, 1),
            "decompress_mb_s": round(total / median(dtimes) / MB, 1),
        })
    return out


# ---------------------------------------------------------------------------- one size


def bench_size(n: int, options: BenchOptions, bandwidth_bps: float, work: Path,
               report: dict[str, Any]) -> None:
    """Every scenario that needs a server of ``n`` messages."""
    from axsync.netproxy import LatencyProxy

    log = options.log
    conc = options.concurrency
    need_pull = options.only & {"pull", "nochange", "scan", "push", "memory"}
    if not need_pull:
        return
    pull_runs = options.repeat if n <= PULL_REPEAT_LIMIT else 1
    for api in ("10.6", "10.4"):
        if api == "10.4" and not options.only & {"nochange", "pull"}:
            continue
        log(f"[{n}] starting fake server (API {api})")
        with ServerProcess(n, api, options.seed) as server:
            report["setup"].append({
                "messages": n, "api": api, "bytes": server.info["bytes"],
                "generate_s": round(server.info["generate_s"], 2),
                "mailbox_s": round(server.info["mailbox_s"], 2),
                "warm_s": round(server.info["warm_s"], 2), "warmed": server.info["warmed"],
            })
            nbytes = int(server.info["bytes"])
            # Always a pull without added latency first: its archive is the one the later
            # scenarios use (a run through another URL would reconcile, not be a no-change run).
            latencies = tuple(sorted({0.0, *options.latencies_ms})) \
                if (api == "10.6" and n <= options.latency_size_limit) else (0.0,)
            archive = work / f"a{n}-{api}"
            for lat in latencies:
                results = []
                for i in range(pull_runs):
                    maildir = _fresh(work / f"pull-{n}-{api}-{lat:g}-{i}")
                    log(f"[{n}] initial pull, API {api}, +{lat:g} ms RTT, run {i + 1}/{pull_runs}")
                    if lat > 0:
                        with LatencyProxy(server.port, lat) as proxy:
                            r = run_axsync(proxy.url, maildir, concurrency=conc)
                    else:
                        r = run_axsync(server.url, maildir, concurrency=conc)
                    if r.report["pulled"]["new"] != n:
                        raise RuntimeError(f"pull got {r.report['pulled']['new']} of {n} messages")
                    results.append(r)
                    if lat == 0 and i == 0:
                        maildir.rename(_fresh(archive))
                    else:
                        retire(maildir)
                row = _medians(results)
                secs = row["seconds"]
                ideal = ideal_seconds(nbytes, row["requests"], lat / 1000, conc, bandwidth_bps)
                row.update({
                    "messages": n, "api": api, "latency_ms": lat, "bytes": nbytes,
                    "concurrency": conc,
                    "msgs_per_s": round(n / secs, 1) if secs else None,
                    "mb_per_s": round(nbytes / secs / MB, 2) if secs else None,
                    "ideal_s": _sig(ideal),
                    "ideal_ratio": _sig(ideal / secs) if secs else None,
                })
                report["pull"].append(row)
            # (b) no change, (e) memory of it
            runs = [run_axsync(server.url, archive, concurrency=conc)
                    for _ in range(max(1, options.repeat))]
            for r in runs:
                if any(r.report["pulled"][k] for k in ("new", "updated", "moved", "deleted")):
                    raise RuntimeError(f"no-change run changed something: {r.report}")
            row = _medians(runs)
            row.update({"messages": n, "api": api})
            report["nochange"].append(row)
            log(f"[{n}] no-change run, API {api}: {row['requests']} requests, {row['seconds']} s")
            if api == "10.6":
                first = next(p for p in report["pull"]
                             if p["messages"] == n and p["api"] == api and p["latency_ms"] == 0)
                mem = {"messages": n, "initial_pull_rss_mb": first["peak_rss_mb"],
                       "nochange_rss_mb": row["peak_rss_mb"]}
                if options.wants("memory"):
                    scans = []
                    for _ in range(max(1, options.repeat)):
                        force_scan(archive)
                        scans.append(run_axsync(server.url, archive, concurrency=conc))
                    srow = _medians(scans)
                    mem.update({"scan_rss_mb": srow["peak_rss_mb"], "scan_s": srow["seconds"],
                                "scan_cpu_s": srow["cpu_s"]})
                    log(f"[{n}] no-change run with local scan: {srow['peak_rss_mb']} MB, "
                        f"{srow['seconds']} s")
                report["memory"].append(mem)
                if options.wants("scan"):
                    report["scan"].append(_scan(archive, options.repeat))
                    log(f"[{n}] scan: {report['scan'][-1]}")
                if options.wants("push"):
                    report["push"].append(_push(server, archive, n, options))
                    log(f"[{n}] push: {report['push'][-1]}")
            retire(archive)


def _scan(archive: Path, repeat: int) -> dict[str, Any]:
    times, files = [], 0
    for _ in range(max(1, repeat)):
        res = subprocess.run([sys.executable, "-m", "axsync.bench", "scan", str(archive)],
                             capture_output=True, text=True, env=_child_env(), check=True)
        data = json.loads(res.stdout.strip().splitlines()[-1])
        times.append(float(data["seconds"]))
        files = int(data["files"])
    secs = median(times)
    return {"files": files, "runs": len(times), "seconds": round(secs, 3),
            "files_per_s": round(files / secs) if secs else None}


def _push(server: ServerProcess, archive: Path, n: int, options: BenchOptions) -> dict[str, Any]:
    k = min(options.push_changes, n)
    before = int(server.call("flagged")["flagged"])
    runs = []
    flagged_ok = True
    for i in range(max(1, options.repeat)):
        changed = flip_local_flags(archive, k)
        r = run_axsync(server.url, archive, concurrency=options.concurrency)
        if r.report["pushed"]["flags"] != changed:
            raise RuntimeError(f"pushed {r.report['pushed']['flags']} of {changed} flag changes")
        runs.append(r)
        # Every run toggles the same files: the server flips between two states.
        now = int(server.call("flagged")["flagged"])
        flagged_ok = flagged_ok and ((now != before) if i % 2 == 0 else (now == before))
    after = run_axsync(server.url, archive, concurrency=options.concurrency)
    row = _medians(runs)
    row.update({"messages": n, "changes": k, "verified_on_server": flagged_ok,
                "requests_after": after.requests})
    return row


# ---------------------------------------------------------------------------- entry point


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Run the selected scenarios; returns the report (see module doc and docs/performance.md)."""
    started = time.perf_counter()
    report: dict[str, Any] = {
        "version": 1, "quick": options.quick, "sizes": list(options.sizes),
        "latencies_ms": list(options.latencies_ms), "concurrency": options.concurrency,
        "repeat": options.repeat, "scenarios": sorted(options.only), "seed": options.seed,
        "machine": machine_info(), "bandwidth": None, "setup": [], "pull": [], "nochange": [],
        "scan": [], "push": [], "memory": [], "compression": [],
    }
    log = options.log
    precompile()
    needs_bw = options.only & {"bandwidth", "pull"}
    bandwidth_bps = 1e9
    if needs_bw:
        nbytes = QUICK_BANDWIDTH_BYTES if options.quick else BANDWIDTH_BYTES
        log(f"loopback bandwidth ({nbytes // (1 << 20)} MiB download)")
        report["bandwidth"] = measure_bandwidth(nbytes, options.repeat)
        bandwidth_bps = report["bandwidth"]["mb_per_s"] * MB
    with _workdir(options) as work:
        for n in options.sizes:
            bench_size(n, options, bandwidth_bps, work, report)
    if options.wants("memory") and len(report["memory"]) >= 2:
        lo, hi = report["memory"][0], report["memory"][-1]
        report["memory_growth"] = {
            "from_messages": lo["messages"], "to_messages": hi["messages"],
            "initial_pull_mb": round(hi["initial_pull_rss_mb"] - lo["initial_pull_rss_mb"], 1),
            "nochange_mb": round(hi["nochange_rss_mb"] - lo["nochange_rss_mb"], 1),
        }
        if "scan_rss_mb" in lo and "scan_rss_mb" in hi:
            report["memory_growth"]["scan_mb"] = round(hi["scan_rss_mb"] - lo["scan_rss_mb"], 1)
    if options.wants("compression"):
        sample = min(COMPRESSION_SAMPLE, max(options.sizes))
        log(f"compression on {sample} generated messages")
        report["compression"] = compression_figures(options.seed, sample, options.repeat)
    report["total_s"] = round(time.perf_counter() - started, 1)
    with contextlib.suppress(OSError):
        report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


# ---------------------------------------------------------------------------- text


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A titled, right-aligned text table followed by an empty line."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out = [title, "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)),
           "  ".join("-" * w for w in widths)]
    out.extend("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells)
    out.append("")
    return out


def format_report(report: dict[str, Any]) -> str:
    """The report as text tables (what ``axsync bench`` prints without ``--json``)."""
    m = report["machine"]
    lines = [f"axsync bench ({'quick' if report['quick'] else 'full'}): {m.get('cpu', '?')}, "
             f"{m.get('cores')} cores, Python {m['python']}, {report['concurrency']} connections, "
             f"medians of up to {report['repeat']} runs", ""]
    bw = report.get("bandwidth")
    if bw:
        lines += [f"loopback HTTP bandwidth: {bw['mb_per_s']} MB/s "
                  f"({bw['bytes'] // (1 << 20)} MiB download, median of {bw['runs']})", ""]
    if report["setup"]:
        lines += _table("setup (fake server process: generate the corpus, load the mailbox)",
                        ["messages", "api", "MB", "generate s", "mailbox s"],
                        [(s["messages"], s["api"], round(s["bytes"] / MB, 1), s["generate_s"],
                          s["mailbox_s"]) for s in report["setup"]])
    if report["pull"]:
        lines += _table("(a) initial pull",
                        ["messages", "api", "+RTT ms", "runs", "s", "msg/s", "MB/s", "requests",
                         "ideal s", "ideal/actual", "cpu s", "peak RSS MB"],
                        [(p["messages"], p["api"], f"{p['latency_ms']:g}", p["runs"], p["seconds"],
                          p["msgs_per_s"], p["mb_per_s"], p["requests"], p["ideal_s"],
                          p["ideal_ratio"], p["cpu_s"], p["peak_rss_mb"]) for p in report["pull"]])
    if report["nochange"]:
        lines += _table("(b) no-change run",
                        ["messages", "api", "runs", "requests", "s", "process s", "cpu s",
                         "peak RSS MB"],
                        [(r["messages"], r["api"], r["runs"], r["requests"], r["seconds"],
                          r["wall_s"], r["cpu_s"], r["peak_rss_mb"]) for r in report["nochange"]])
    if report["scan"]:
        lines += _table("(c) Store.scan() of the archive (warm cache)",
                        ["files", "runs", "s", "files/s"],
                        [(r["files"], r["runs"], r["seconds"], r["files_per_s"])
                         for r in report["scan"]])
    if report["push"]:
        lines += _table("(d) push of local flag changes",
                        ["messages", "changes", "runs", "requests", "s", "cpu s", "peak RSS MB",
                         "on server", "next run requests"],
                        [(r["messages"], r["changes"], r["runs"], r["requests"], r["seconds"],
                          r["cpu_s"], r["peak_rss_mb"], "ok" if r["verified_on_server"] else "WRONG",
                          r["requests_after"]) for r in report["push"]])
    if report["memory"]:
        lines += _table("(e) peak RSS, MB",
                        ["messages", "initial pull", "no-change run", "no-change run with scan"],
                        [(r["messages"], r["initial_pull_rss_mb"], r["nochange_rss_mb"],
                          r.get("scan_rss_mb", "-")) for r in report["memory"]])
        g = report.get("memory_growth")
        if g:
            scan = f", with scan {g['scan_mb']:+} MB" if "scan_mb" in g else ""
            lines += [f"growth {g['from_messages']} -> {g['to_messages']} messages: initial pull "
                      f"{g['initial_pull_mb']:+} MB, no-change run {g['nochange_mb']:+} MB{scan}", ""]
    if report["compression"]:
        lines += _table("(f) compression, message by message",
                        ["method", "level", "messages", "MB", "ratio", "compress MB/s",
                         "decompress MB/s"],
                        [(c["method"], c["level"], c["messages"], round(c["bytes"] / MB, 1),
                          c["ratio"], c["compress_mb_s"], c["decompress_mb_s"])
                         for c in report["compression"]])
    lines.append(f"total {report['total_s']} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ROLES:
        sys.exit(f"usage: python -m axsync.bench {{{','.join(ROLES)}}} ...")
    ROLES[args[0]](args[1:])


if __name__ == "__main__":
    main()


