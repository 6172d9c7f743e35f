"""Each atheris harness of this directory, run for a bounded number of inputs in its own
process with a fixed seed: it must exit cleanly (any uncaught exception or failed property
makes libFuzzer exit non-zero and write the input to a ``crash-*`` file, shown here).

Longer runs: see docs/reliability.md."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
#: harness -> (runs, max input length): each well under 10 s on a loaded 2-CPU machine.
HARNESSES = {
    "fuzz_wire.py": (10000, 2048),
    "fuzz_folder_names.py": (2000, 1024),
    "fuzz_filenames_keywords.py": (10000, 1024),
    "fuzz_mime_text.py": (8000, 4096),
}

pytestmark = pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                                reason="atheris is not installed (pip install -e '.[test]' on Linux x86_64)")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("harness", sorted(HARNESSES))
def test_harness_runs_clean(harness: str, tmp_path: Path) -> None:
    runs, max_len = HARNESSES[harness]
    done = subprocess.run(
        [sys.executable, str(HERE / harness), f"-runs={runs}", "-seed=1", f"-max_len={max_len}",
         "-len_control=0", f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=110,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert done.returncode == 0 and not crashes, (crashes, done.stderr[-4000:])
    assert f"Done {runs} runs" in done.stderr, done.stderr[-2000:]
