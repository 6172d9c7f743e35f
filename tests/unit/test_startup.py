"""What a run with nothing to do imports. A nightly run that finds nothing new spends
most of its time starting Python and importing modules, so the sync path imports the
heavy ones only where it uses them: asyncio and uvloop when it downloads, ctypes when it syncs a
file system, gzip for gzip archives, importlib.resources for a zipped install."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LAZY = ["asyncio", "ctypes", "gzip", "importlib.resources", "secrets", "uvloop"]


def test_the_sync_path_does_not_import_what_only_downloads_need() -> None:
    code = (
        "import json, sys\n"
        "import axsync.cli, axsync.cli.syncing, axsync.sync.engine\n"
        f"print(json.dumps(sorted(m for m in {LAZY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_they_are_imported_when_used(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from axsync.sync.fetch import LoopRunner\n"
        "from axsync.store import fsutil\n"
        "LoopRunner(1).close()\n"
        f"fsutil.can_syncfs({str(tmp_path)!r})\n"
        "print('asyncio' in sys.modules, 'ctypes' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
