"""Steady-state runs on one archive (API 10.6), one process per run: an initial pull, three
no-change runs, a no-change run forced to scan, 10,000 flag changes pushed, the run after.

    .venv/bin/python tests/bench/steady.py 100000 [OUT.json]

Prints one JSON object per run; the list is written to OUT.json when given.
"""
import json
import shutil
import sys
import tempfile
from pathlib import Path

from axsync import bench as B


def row(tag, r):
    d = {"tag": tag, "wall_s": round(r.wall_s, 3), "seconds": r.seconds, "requests": r.requests,
         "cpu_s": round(r.cpu_s, 3), "peak_rss_mb": round(r.peak_rss_mb, 1),
         "pulled": r.report["pulled"], "pushed": r.report["pushed"]}
    print(json.dumps(d), flush=True)
    return d


def main():
    n = int(sys.argv[1])
    B.precompile()
    work = Path(tempfile.mkdtemp(prefix="axsync-steady-"))
    out = []
    with B.ServerProcess(n, "10.6") as server:
        archive = work / "a"
        out.append(row("initial", B.run_axsync(server.url, archive)))
        for i in range(3):
            out.append(row(f"nochange{i+1}", B.run_axsync(server.url, archive)))
        B.force_scan(archive)
        out.append(row("nochange-scan", B.run_axsync(server.url, archive)))
        changed = B.flip_local_flags(archive, 10000)
        out.append(row(f"push{changed}", B.run_axsync(server.url, archive)))
        out.append(row("after-push", B.run_axsync(server.url, archive)))
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(json.dumps(out, indent=1), "utf-8")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
