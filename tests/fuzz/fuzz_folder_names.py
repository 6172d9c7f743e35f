"""Fuzz the folder-name codec (``axsync.store.names``).

Properties, for any folder path (levels of any text):

* ``assign_dirname`` gives one safe directory entry: it starts with ``.``, is not ``.`` or
  ``..``, holds no ``/`` or NUL, fits in 255 bytes, and ``root/<name>`` resolves to a
  direct child of ``root`` (no path escape); it is canonical (strict decoding accepts it);
* ``folder_path(folder_dirname(p)) == shown_path(p)``: the exact inverse for levels without
  ``/`` (a ``/`` comes back as its look-alike ``∕``), whenever the plain name was used;
* ``decode_component(encode_component(c)) == c`` for levels without ``/``;
* a lone surrogate (no UTF-16 form) is refused with UnsafeName, nothing else;
* for any directory name found on disk, ``folder_path(name, strict=False)`` returns a path
  or raises UnsafeName; strict decoding, when it succeeds, re-encodes to the same name.

    python tests/fuzz/fuzz_folder_names.py -runs=200000 [-seed=N] [CORPUS_DIR]
"""

from __future__ import annotations

import os
import sys

import atheris
import fuzzlib

with atheris.instrument_imports(include=["axsync"]):
    from axsync.errors import UnsafeName
    from axsync.store import names

ROOT = "/srv/archive/Mail"


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def check_path(path: tuple[str, ...], taken: dict[str, tuple[str, ...]]) -> None:
    try:
        dirname = names.assign_dirname(path, taken)
    except UnsafeName:
        assert any(has_surrogate(c) for c in path), path
        return
    assert not any(has_surrogate(c) for c in path), path
    if path in ((), ("INBOX",)):
        assert dirname == names.ROOT
        return
    assert names.is_safe_dirname(dirname) and dirname not in ("", ".", ".."), (path, dirname)
    assert "/" not in dirname and "\0" not in dirname, (path, dirname)
    assert len(dirname.encode("utf-8")) <= names.MAX_NAME_BYTES, (path, dirname)
    joined = os.path.normpath(os.path.join(ROOT, dirname))
    assert os.path.dirname(joined) == ROOT and joined != ROOT, (path, dirname, joined)
    assert names.is_canonical_dirname(dirname), (path, dirname)
    assert names.folder_dirname(names.folder_path(dirname)) == dirname, (path, dirname)
    if dirname == names.folder_dirname(path):
        assert names.folder_path(dirname) == names.shown_path(path), (path, dirname)
        assert names.needs_name_record(dirname, path) == any("/" in c for c in path)
    else:
        assert names.needs_name_record(dirname, path), (path, dirname)
    for component in path:
        if "/" not in component:
            assert names.decode_component(names.encode_component(component)) == component, component


def check_disk_name(name: str) -> None:
    for strict in (True, False):
        try:
            path = names.folder_path(name, strict=strict)
        except UnsafeName:
            continue
        assert isinstance(path, tuple) and all(isinstance(c, str) for c in path)
        if strict and name != names.ROOT:
            assert names.folder_dirname(path) == name, (name, path)
    names.is_safe_dirname(name)
    names.subscription_name(name)


def TestOneInput(raw: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(raw)
    path = tuple(fuzzlib.text(fdp, 30 if fdp.ConsumeBool() else 120) for _ in range(fdp.ConsumeIntInRange(1, 4)))
    taken: dict[str, tuple[str, ...]] = {}
    if fdp.ConsumeBool():  # a folder that is already there, maybe folding to the same name
        other = tuple(c.upper() if fdp.ConsumeBool() else c.replace("/", names.SLASH_LOOKALIKE) for c in path)
        try:
            taken[names.assign_dirname(other, {})] = other
        except UnsafeName:
            pass
    check_path(path, taken)
    check_disk_name("." + fuzzlib.text(fdp, 60) if fdp.ConsumeBool() else fuzzlib.text(fdp, 60))


if __name__ == "__main__":
    fuzzlib.run(TestOneInput)
    sys.exit(0)
