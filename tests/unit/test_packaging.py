"""The wheel ships the state migrations (read from there once installed) and the UI assets."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_carries_migrations_and_assets(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("axsync-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for sql in sorted((ROOT / "state").glob("*.sql")):
            member = f"axsync/_state/{sql.name}"
            assert member in names, member
            assert zf.read(member) == sql.read_bytes()
        assert any(n.startswith("axsync/browse/templates/") for n in names)
        assert any(n.startswith("axsync/browse/static/") for n in names)
