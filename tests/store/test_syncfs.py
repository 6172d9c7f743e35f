"""syncfs(2) is used for group commits only on file systems whose syncfs reaches the disk."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from axsync.store import fsutil

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


@linux
def test_fs_type_reads_statfs(tmp_path: Path) -> None:
    # /proc is procfs (0x9fa0) on every Linux; the kernel has no other answer.
    assert fsutil.fs_type("/proc") == 0x9FA0
    assert fsutil.fs_type(tmp_path) is not None
    assert fsutil.fs_type(tmp_path / "missing") is None


@linux
def test_only_trusted_file_systems_use_syncfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not fsutil.can_syncfs("/proc")
    assert not fsutil.can_syncfs(tmp_path / "missing")
    assert fsutil.can_syncfs(tmp_path) == (fsutil.fs_type(tmp_path) in fsutil.SYNCFS_FILE_SYSTEMS)
    monkeypatch.setattr(fsutil, "fs_type", lambda path: 0x65735546)  # FUSE
    assert not fsutil.can_syncfs(tmp_path)
    monkeypatch.setattr(fsutil, "fs_type", lambda path: 0xEF53)  # ext4
    assert fsutil.can_syncfs(tmp_path)


@linux
def test_syncfs_reports_errors(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsutil.syncfs(fd)  # a directory descriptor is fine
    finally:
        os.close(fd)
    with pytest.raises(OSError) as info:
        fsutil.syncfs(fd)  # closed
    assert info.value.errno == errno.EBADF


def test_without_syncfs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    libc, _syncfs = fsutil._libc()
    monkeypatch.setattr(fsutil, "_libc", lambda: (libc, None))
    assert not fsutil.can_syncfs(tmp_path)
    assert fsutil.fs_type(tmp_path) is None
    with pytest.raises(NotImplementedError):
        fsutil.syncfs(0)
