"""axsync against mbsync and OfflineIMAP on the same mail, the same network and the same machine.

Run through ``tests/bench/peers.sh`` (which installs the Debian packages first). For each
size it generates one corpus (:func:`axsync.fake.corpus.generate`, same seed for every
tool) and serves it twice: by Dovecot from a plain Maildir (for mbsync and OfflineIMAP,
over IMAP) and by the fake Axigen server (for axsync, over the REST API), each behind the
same TCP latency proxy (:mod:`axsync.netproxy`). Then, per added round-trip time:

1. initial pull into an empty local Maildir (every tool; ``--repeat`` times, median). The
   tools take turns (the first run of each, then the second...): the machine's speed
   drifts by more than the differences measured, and a tool's runs done one after the
   other would all fall in a fast or a slow hour. Each tool's ``ratio_to_axsync`` lists
   its time over axsync's for each turn;
2. a run with nothing changed;
3. a run after 1 % of the messages had their flagged flag toggled on the server.

Each tool runs as its own command under ``/usr/bin/time -v`` (wall, user + sys CPU, peak
RSS). axsync runs ``axsync sync`` with its default settings (sync mode, zstd, 8
connections); mbsync and OfflineIMAP run with their defaults too (mbsync: one
connection, unlimited pipelining, fsync on; OfflineIMAP: one connection per account,
fsync on), the options needed to reach a plain-text IMAP server on loopback aside.

Prints a table and writes the results as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import json
import os
import platform
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from axsync.bench import PASSWORD, USER, ServerProcess, machine_info, precompile, retire  # noqa: E402
from axsync.fake.corpus import Corpus, generate  # noqa: E402
from axsync.netproxy import LatencyProxy  # noqa: E402
from tests.interop.dovecot import (  # noqa: E402
    TEST_USER,
    DovecotServer,
    dovecot_version,
    session_members,
)

SEED = 20260101
#: "axsync-noindex": axsync with ``index = false`` (no search index; what mbsync and
#: OfflineIMAP do too).
TOOLS = ("axsync", "axsync-noindex", "mbsync", "offlineimap")
TIME = "/usr/bin/time"
MB = 1_000_000


# ---------------------------------------------------------------------------- corpus -> Dovecot

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]*$")


def dovecot_folder_names(corpus: Corpus) -> dict[tuple[str, ...], str]:
    """Folder path -> Maildir++ directory name (``""`` for INBOX). The generator's hostile
    names (``a/b``, ``..``, tabs, NFD twins ...) are test material for axsync's own naming,
    not for this benchmark: components that are not plain ASCII words become ``hNN``."""
    names: dict[tuple[str, ...], str] = {}
    hostile: dict[str, str] = {}
    for f in corpus.folders:
        if f.path == ("INBOX",):
            names[f.path] = ""
            continue
        parts = []
        for comp in f.path:
            if _SAFE.match(comp) and comp.lower() not in ("cur", "new", "tmp", "inbox"):
                parts.append(comp)
            else:
                parts.append(hostile.setdefault(comp, f"h{len(hostile):02d}"))
        names[f.path] = "." + ".".join(parts)
    lowered: dict[str, str] = {}
    for path, name in list(names.items()):  # "Work" and "work": distinct on disk, keep both
        key = name.lower()
        if key in lowered and lowered[key] != name:
            names[path] = name + "_2"
        lowered.setdefault(key, name)
    return names


def write_dovecot_maildir(corpus: Corpus, root: Path) -> int:
    """The corpus as a plain (uncompressed) Maildir++ with flags in the file names and the
    internal date as mtime. Labels are left out (mbsync cannot sync keywords)."""
    names = dovecot_folder_names(corpus)
    for name in set(names.values()):
        for sub in ("cur", "new", "tmp"):
            (root / name / sub).mkdir(parents=True, exist_ok=True)
        if name:
            (root / name / "maildirfolder").touch()
    for i, m in enumerate(corpus.messages):
        flags = "".join(sorted(
            ("S" if not m.unread else "") + ("F" if m.flagged else "") + ("D" if m.draft else "")
            + ("R" if "re" in m.refw else "") + ("P" if "fw" in m.refw else "")))
        path = root / names[m.folder] / "cur" / f"{m.date}.M{i}P1.bench,S={len(m.raw)}:2,{flags}"
        path.write_bytes(m.raw)
        os.utime(path, (m.date, m.date))
    (root / "subscriptions").write_text(
        "".join(f"{'/'.join(p)}\n" for p in names if p != ("INBOX",)), "utf-8")
    return len(corpus.messages)


def chown_tree(root: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for n in filenames:
            os.chown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)


def imap_folders(imap: imaplib.IMAP4) -> list[str]:
    typ, data = imap.list('""', "*")
    out = []
    for raw in data:
        if not isinstance(raw, bytes):
            continue
        m = re.match(rb'\((?P<flags>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$', raw)
        if not m or b"\\Noselect" in m.group("flags"):
            continue
        name = m.group("name").decode()
        out.append(name[1:-1] if name.startswith('"') else name)
    return out


def warm_dovecot(dv: DovecotServer) -> int:
    """Open every folder once (Dovecot builds its indexes on first access; no tool should
    pay for that). Returns the number of messages Dovecot serves."""
    imap = dv.imap()
    total = 0
    for name in imap_folders(imap):
        typ, data = imap.select(f'"{name}"', readonly=True)
        count = int(data[0] or 0)
        total += count
        if count:
            imap.fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE)")
    imap.logout()
    return total


def toggle_flags_dovecot(dv: DovecotServer, fraction: float, offset: int) -> int:
    """Toggle \\Flagged on every 1/fraction-th message of every folder (by UID order)."""
    step = max(1, round(1 / fraction))
    imap = dv.imap()
    changed = 0
    for name in imap_folders(imap):
        typ, data = imap.select(f'"{name}"')
        if not int(data[0] or 0):
            continue
        typ, data = imap.uid("SEARCH", "ALL")
        uids = [int(u) for u in (data[0] or b"").split()]
        pick = uids[offset % step::step]
        for uid in pick:
            typ, fdata = imap.uid("FETCH", str(uid), "(FLAGS)")
            flagged = b"\\Flagged" in b"".join(x if isinstance(x, bytes) else b"" for x in fdata)
            imap.uid("STORE", str(uid), "-FLAGS.SILENT" if flagged else "+FLAGS.SILENT",
                     "(\\Flagged)")
            changed += 1
        imap.close()
    imap.logout()
    return changed


# ---------------------------------------------------------------------------- tool configs


def mbsync_config(work: Path, port: int, password: str) -> Path:
    local = work / "mbsync-mail"
    cfg = work / "mbsyncrc"
    cfg.write_text(f"""\
IMAPAccount far
Host 127.0.0.1
Port {port}
User {TEST_USER}
Pass {password}
SSLType None
AuthMechs LOGIN

IMAPStore far
Account far

MaildirStore near
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel bench
Far :far:
Near :near:
Patterns *
Create Near
SyncState *
""", "utf-8")
    return cfg


def offlineimap_config(work: Path, port: int, password: str) -> Path:
    cfg = work / "offlineimaprc"
    cfg.write_text(f"""\
[general]
accounts = bench
metadata = {work / "offlineimap-meta"}

[Account bench]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {work / "offlineimap-mail"}

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {port}
remoteuser = {TEST_USER}
remotepass = {password}
ssl = no
starttls = no
""", "utf-8")
    return cfg


AXSYNC_CONCURRENCY: int | None = None  # --axsync-concurrency; None: the account default (8)


def axsync_config(work: Path, url: str, *, index: bool = True) -> Path:
    name = "axsync" if index else "axsync-noindex"
    cfg = work / f"{name}.toml"
    extra = f"concurrency = {AXSYNC_CONCURRENCY}\n" if AXSYNC_CONCURRENCY else ""
    if not index:
        extra += "index = false\n"
    cfg.write_text(f"""\
[accounts.bench]
server = "{url}"
username = "{USER}"
maildir = "{work / f'{name}-mail'}"
password_command = "printf %s {PASSWORD}"
mode = "sync"
exclude = []
{extra}""", "utf-8")
    return cfg


def tool_dirs(tool: str, work: Path) -> list[Path]:
    return {"axsync": [work / "axsync-mail"], "axsync-noindex": [work / "axsync-noindex-mail"],
            "mbsync": [work / "mbsync-mail"],
            "offlineimap": [work / "offlineimap-mail", work / "offlineimap-meta"]}[tool]


def tool_argv(tool: str, cfg: Path) -> list[str]:
    if tool.startswith("axsync"):
        return [str(ROOT / ".venv" / "bin" / "axsync"), "--config", str(cfg), "sync", "--json"]
    if tool == "mbsync":
        return ["mbsync", "-q", "-c", str(cfg), "-a"]
    return ["offlineimap", "-c", str(cfg), "-u", "quiet", "-o"]


# ---------------------------------------------------------------------------- measuring


@dataclass
class Timed:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    exit_code: int


def timed(argv: Sequence[str], log: Path) -> Timed:
    stats = log.with_suffix(".time")
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # axsync runs from byte-compiled modules
    with log.open("ab") as out:
        res = subprocess.run([TIME, "-v", "-o", str(stats), *argv], stdout=out, stderr=out,
                             stdin=subprocess.DEVNULL, env=env)
    text = stats.read_text()

    def field(name: str) -> str:
        m = re.search(rf"^\s*{re.escape(name)}: (.+)$", text, re.M)
        if not m:
            raise RuntimeError(f"no {name!r} in /usr/bin/time output:\n{text}")
        return m.group(1).strip()

    wall_parts = [float(p) for p in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall = 0.0
    for p in wall_parts:
        wall = wall * 60 + p
    return Timed(wall, float(field("User time (seconds)")) + float(field("System time (seconds)")),
                 int(field("Maximum resident set size (kbytes)")) / 1024, res.returncode)


METER_KEYS = ("server_cpu_s", "proxy_cpu_s", "machine_busy_s", "steal_s")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_fields(pid: int) -> list[int]:
    """utime, stime, cutime, cstime of ``pid``, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    return [int(x) for x in fields[11:15]]


def process_cpu_s(pid: int) -> float:
    """CPU seconds used by ``pid`` and by the children it has reaped."""
    return sum(_cpu_fields(pid)) / CLK_TCK


def session_cpu_s(leader: int) -> float:
    """CPU seconds used by every process in ``leader``'s session (Dovecot: the master, its
    log, config, anvil, login and imap processes). A child's time moves into the leader's
    ``cutime`` once reaped, so the sum only grows."""
    total = process_cpu_s(leader)
    for pid in session_members(leader):
        if pid != leader:
            with contextlib.suppress(OSError):
                total += sum(_cpu_fields(pid)[:2]) / CLK_TCK
    return total


def machine_cpu_s() -> dict[str, float]:
    """Busy and stolen CPU seconds, summed over all CPUs, from /proc/stat."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    t = {k: int(v) / CLK_TCK for k, v in zip(names, first, strict=True)}
    return {"busy": t["user"] + t["nice"] + t["system"] + t["irq"] + t["softirq"],
            "steal": t["steal"]}


@dataclass
class Meters:
    """What else a run costs the machine: the server's CPU (the fake for axsync, Dovecot's
    whole session for the IMAP tools), the latency proxy's CPU, and the machine's busy and
    stolen CPU time over the run. The tool's own CPU is ``cpu_s``."""

    fake_pid: int
    dovecot_pid: int
    proxy_pids: dict[str, int]  # "fake" / "dovecot" -> the proxy's pid (none at 0 ms)

    def machine(self) -> dict[str, float]:
        m = machine_cpu_s()
        return {"machine_busy_s": m["busy"], "steal_s": m["steal"]}

    def processes(self, tool: str) -> dict[str, float]:
        side = "fake" if tool.startswith("axsync") else "dovecot"
        server = (process_cpu_s(self.fake_pid) if side == "fake"
                  else session_cpu_s(self.dovecot_pid))
        proxy = self.proxy_pids.get(side)
        return {"server_cpu_s": server, "proxy_cpu_s": process_cpu_s(proxy) if proxy else 0.0}

    def snapshot(self, tool: str) -> dict[str, float]:
        return {**self.processes(tool), **self.machine()}


def count_messages(root: Path) -> int:
    n = 0
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) in ("cur", "new"):
            n += sum(1 for f in files if not f.startswith("."))
    return n


def run_tool(tool: str, cfg: Path, work: Path, label: str,
             meters: Meters | None = None) -> dict[str, Any]:
    log = work / f"{tool}-{label}.log"
    before = meters.snapshot(tool) if meters else {}
    t = timed(tool_argv(tool, cfg), log)
    after: dict[str, float] = {}
    if meters:
        after = meters.machine()  # at once: the pause below is not the run's
        time.sleep(0.2)  # let Dovecot's master reap the imap process that just logged out
        after.update(meters.processes(tool))
    row: dict[str, Any] = {"wall_s": round(t.wall_s, 2), "cpu_s": round(t.cpu_s, 2),
                           "peak_rss_mb": round(t.peak_rss_mb, 1), "exit_code": t.exit_code}
    row.update({k: round(after[k] - before[k], 2) for k in after})
    if t.exit_code != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{tool} {label} exited {t.exit_code}:\n{tail}")
    return row


def median_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out = {k: round(statistics.median(r[k] for r in rows), 2)
           for k in ("wall_s", "cpu_s", "peak_rss_mb", *METER_KEYS) if k in rows[0]}
    out["runs"] = len(rows)
    out["all_wall_s"] = [r["wall_s"] for r in rows]
    return out


# ---------------------------------------------------------------------------- driver


@contextlib.contextmanager
def proxies(dv_port: int, fake_port: int,
            rtt: float) -> Iterator[tuple[int, int, dict[str, int]]]:
    if rtt <= 0:
        yield dv_port, fake_port, {}
        return
    with LatencyProxy(dv_port, rtt) as p1, LatencyProxy(fake_port, rtt) as p2:
        assert p1.proc is not None and p2.proc is not None
        yield p1.port, p2.port, {"dovecot": p1.proc.pid, "fake": p2.proc.pid}


def bench_size(n: int, args: argparse.Namespace, results: dict[str, Any]) -> None:
    log = print
    base = Path(tempfile.mkdtemp(prefix=f"axsync-peers-{n}-", dir=args.workdir))
    base.chmod(0o755)
    try:
        t0 = time.perf_counter()
        corpus = generate(seed=args.seed, messages=n)
        nbytes = sum(len(m.raw) for m in corpus.messages)
        maildir = base / "dovecot-maildir"
        write_dovecot_maildir(corpus, maildir)
        del corpus
        chown_tree(maildir, TEST_USER)
        log(f"[{n}] corpus: {nbytes / MB:.1f} MB, Dovecot Maildir written in "
            f"{time.perf_counter() - t0:.1f} s")
        with DovecotServer(maildir, base / "dovecot", copy=False) as dv, \
                ServerProcess(n, "10.6", args.seed) as fake:
            served = warm_dovecot(dv)
            if served != n:
                raise RuntimeError(f"Dovecot serves {served} messages, expected {n}")
            for rtt in args.latencies:
                with proxies(dv.port, fake.port, rtt) as (dv_port, fake_port, proxy_pids):
                    assert fake.proc is not None and dv.pid is not None
                    meters = Meters(fake.proc.pid, dv.pid, proxy_pids)
                    work = base / f"rtt{rtt:g}"
                    work.mkdir()
                    cfgs = {
                        "axsync": axsync_config(work, f"http://127.0.0.1:{fake_port}"),
                        "axsync-noindex": axsync_config(work, f"http://127.0.0.1:{fake_port}",
                                                        index=False),
                        "mbsync": mbsync_config(work, dv_port, dv.password),
                        "offlineimap": offlineimap_config(work, dv_port, dv.password),
                    }
                    rows: dict[str, dict[str, Any]] = {}
                    initial: dict[str, list[dict[str, Any]]] = {tool: [] for tool in args.tools}
                    for i in range(args.repeat):  # the tools take turns (module docstring)
                        for tool in args.tools:
                            for d in tool_dirs(tool, work):
                                retire(d)  # deleted at the end (see axsync.bench.retire)
                            if tool == "mbsync":  # mbsync wants its Maildir root to exist
                                tool_dirs(tool, work)[0].mkdir()
                            log(f"[{n}] +{rtt:g} ms: {tool} initial pull {i + 1}/{args.repeat}")
                            initial[tool].append(run_tool(tool, cfgs[tool], work, f"initial{i}", meters))
                    for tool, runs in initial.items():
                        got = count_messages(tool_dirs(tool, work)[0])
                        rows[tool] = {"initial": {**median_row(runs), "messages": got}}
                        if got != n:
                            raise RuntimeError(f"{tool} pulled {got} of {n} messages")
                        if "axsync" in initial and tool != "axsync":
                            rows[tool]["initial"]["ratio_to_axsync"] = [
                                round(r["wall_s"] / a["wall_s"], 3)
                                for r, a in zip(runs, initial["axsync"], strict=True)]
                    for tool in args.tools:
                        runs = [run_tool(tool, cfgs[tool], work, f"nochange{i}", meters)
                                for i in range(args.repeat)]
                        rows[tool]["nochange"] = median_row(runs)
                        log(f"[{n}] +{rtt:g} ms: {tool} no-change {rows[tool]['nochange']['wall_s']} s")
                    offset = int(rtt) + 1
                    changed = {"dovecot": toggle_flags_dovecot(dv, 0.01, offset),
                               "fake": int(fake.call("flags", fraction=0.01, offset=offset)["changed"])}
                    for tool in args.tools:
                        rows[tool]["flags1pct"] = median_row(
                            [run_tool(tool, cfgs[tool], work, "flags", meters)])
                        log(f"[{n}] +{rtt:g} ms: {tool} after 1% flag changes "
                            f"{rows[tool]['flags1pct']['wall_s']} s")
                    results["runs"].append({"messages": n, "bytes": nbytes, "rtt_ms": rtt,
                                            "flag_changes": changed, "tools": rows})
                    print(format_rows([results["runs"][-1]]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def format_rows(runs: Sequence[dict[str, Any]]) -> str:
    lines = []
    head = (f"{'messages':>8} {'+RTT':>5} {'tool':<12} {'run':<10} {'wall s':>8} {'cpu s':>8} "
            f"{'RSS MB':>7} {'server s':>8} {'proxy s':>7} {'busy s':>7} {'vs axsync':>9}")
    lines += [head, "-" * len(head)]
    for r in runs:
        for phase in ("initial", "nochange", "flags1pct"):
            ax = r["tools"].get("axsync", {}).get(phase, {}).get("wall_s")
            for tool, data in r["tools"].items():
                d = data.get(phase)
                if not d:
                    continue
                ratio = f"{d['wall_s'] / ax:.2f}x" if ax and tool != "axsync" else ""
                if d.get("ratio_to_axsync"):  # the median of the turns' ratios
                    ratio = f"{statistics.median(d['ratio_to_axsync']):.2f}x"
                lines.append(f"{r['messages']:>8} {r['rtt_ms']:>5g} {tool:<12} {phase:<10} "
                             f"{d['wall_s']:>8} {d['cpu_s']:>8} {d['peak_rss_mb']:>7} "
                             f"{d.get('server_cpu_s', ''):>8} {d.get('proxy_cpu_s', ''):>7} "
                             f"{d.get('machine_busy_s', ''):>7} {ratio:>9}")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    def out(argv: list[str]) -> str:
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError as exc:
            return f"unavailable: {exc}"
        return (res.stdout or res.stderr).strip().splitlines()[0] if (res.stdout or res.stderr) else ""

    def deb(pkg: str) -> str:
        return out(["dpkg-query", "-W", "-f=${Version}", pkg])

    return {"dovecot": dovecot_version(), "isync": deb("isync"), "mbsync": out(["mbsync", "--version"]),
            "offlineimap3": deb("offlineimap3"), "offlineimap": out(["offlineimap", "--version"]),
            "python": platform.python_version()}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,10000", help="comma-separated message counts")
    p.add_argument("--latencies", default="0,20", help="added round-trip times in ms")
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--axsync-concurrency", type=int, default=None,
                   help="connections axsync uses (default: the account default, 8)")
    p.add_argument("--repeat", type=int, default=3, help="initial and no-change runs per tool")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--out", type=Path, default=Path("peers-results.json"))
    p.add_argument("--workdir", default=None, help="where the mail goes (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the mail and logs")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.latencies = [float(s) for s in args.latencies.split(",") if s]
    args.tools = [t for t in args.tools.split(",") if t]
    global AXSYNC_CONCURRENCY
    AXSYNC_CONCURRENCY = args.axsync_concurrency
    unknown = set(args.tools) - set(TOOLS)
    if unknown:
        p.error(f"unknown tools: {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {"machine": machine_info(), "versions": versions(),
                               "seed": args.seed, "repeat": args.repeat, "runs": []}
    started = time.perf_counter()
    precompile()
    for n in args.sizes:
        bench_size(n, args, results)
        args.out.write_text(json.dumps(results, indent=2), "utf-8")
    results["total_s"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(results, indent=2), "utf-8")
    print()
    print(format_rows(results["runs"]))
    print(f"\nresults: {args.out}")


if __name__ == "__main__":
    main()
