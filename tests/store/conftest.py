from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

from axsync.store import Store

REFERENCE_DIR = Path("/work/shared/dovecot-check")


def _reference(module: str) -> ModuleType:
    if not (REFERENCE_DIR / f"{module}.py").exists():
        pytest.skip("the Dovecot reference scripts are not on this machine")
    if str(REFERENCE_DIR) not in sys.path:
        sys.path.insert(0, str(REFERENCE_DIR))
    return importlib.import_module(module)


@pytest.fixture
def reference_mutf7() -> ModuleType:
    """The modified UTF-7 codec of the writer Dovecot accepted (shared/dovecot-check)."""
    return _reference("mutf7")


@pytest.fixture
def reference_checker() -> ModuleType:
    """shared/dovecot-check/imap_check.py: its file look-up and CRLF helpers."""
    return _reference("imap_check")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "Mail")
    s.ensure_folder("")
    return s
