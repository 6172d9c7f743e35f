"""Cross-checks with the writer and reader Dovecot accepted (shared/dovecot-check): files
axsync writes are found and understood the way the reference reader looks at them, and
axsync reads the reference writer's Maildir exactly."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from axsync.store import Store, assign_dirname, label_to_atom
from axsync.store.keywords import keywords_of

from .conftest import REFERENCE_DIR

LETTERS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}


def listescape_unescape(name: str) -> str:
    """Dovecot 2.3 listescape (escape char ``\\``): ``\\XX`` with hex digits → byte."""
    out, i = [], 0
    while i < len(name):
        if (
            name[i] == "\\"
            and len(name) > i + 2
            and all(c in "0123456789abcdefABCDEF" for c in name[i + 1 : i + 3])
        ):
            out.append(chr(int(name[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def test_reference_reader_understands_our_maildir(
    tmp_path: Path, reference_checker: ModuleType, reference_mutf7: ModuleType
) -> None:
    store = Store(tmp_path / "Maildir")
    taken: dict[str, tuple[str, ...]] = {}
    labels = ["$Label1", "work", "has space", "Ärger"]
    cases = [
        (("INBOX",), b"Subject: a\n\nLF body\n", "S", labels[:2]),
        (("Archive", "2024"), b"Subject: b\r\n\r\nCRLF body\r\n", "FR", []),
        (("Entwürfe",), b"Subject: c\n\nmixed\r\nline ends\n", "D", labels[2:]),
        (("Dotted.Name",), b"", "T", ["work"]),
    ]
    for path, data, flags, msg_labels in cases:
        dirname = assign_dirname(path, taken)
        taken[dirname] = path
        store.ensure_folder(dirname, path)
        letters = store.ensure_keywords(dirname, [label_to_atom(x) for x in msg_labels])
        with store.writer(dirname) as w:
            w.write(data)
            stored = w.commit(flags + "".join(letters.values()), 1_704_067_200)
        folder = store.root / dirname
        unique = stored.filename.split(",", 1)[0]
        # imap_check.find_file: the unique part is the text before the first "," or ":"
        hits = reference_checker.find_file(str(folder), unique)
        assert hits == [str(folder / "cur" / stored.filename)]
        size, vsize = len(data), len(reference_checker.crlf(data))
        assert stored.filename.startswith(f"{unique},S={size},W={vsize}:2,")
        info = stored.filename.split(":2,", 1)[1]
        assert list(info) == sorted(info) and "Z" in info
        assert {LETTERS[c] for c in info if c in LETTERS} == {LETTERS[c] for c in flags}
        with open(hits[0], "rb") as f:
            assert f.read(4) == reference_checker.ZSTD_MAGIC
        assert os.stat(hits[0]).st_mtime == 1_704_067_200
        # the reference's reading of dovecot-keywords
        kw_file = folder / "dovecot-keywords"
        kwfile = kw_file.read_text("utf-8") if kw_file.exists() else ""
        kwmap = {
            chr(ord("a") + int(x.split(" ", 1)[0])): x.split(" ", 1)[1]
            for x in kwfile.splitlines()
            if " " in x
        }
        assert sorted(kwmap[c] for c in info if c.islower()) == sorted(
            label_to_atom(x) for x in msg_labels
        )
        # what Dovecot shows as the folder name: mUTF-7 decoded, listescape undone
        if dirname:
            levels = [
                listescape_unescape(reference_mutf7.decode(p)) for p in dirname[1:].split(".")
            ]
            assert tuple(levels) == path


def test_we_read_the_reference_writers_maildir(
    tmp_path: Path, reference_checker: ModuleType
) -> None:
    manifest_path = tmp_path / "manifest.json"
    subprocess.run(
        [
            sys.executable,
            str(REFERENCE_DIR / "build_maildir.py"),
            str(tmp_path),
            str(manifest_path),
        ],
        check=True,
        capture_output=True,
    )
    manifest = json.loads(manifest_path.read_text("utf-8"))
    store = Store(tmp_path / "Maildir")
    found = list(store.scan())
    imap_names = {}
    for dirname in store.folders():
        imap_names[dirname] = "/".join(store.folder_path_of(dirname))
    checked = 0
    for m in manifest["messages"]:
        if m["folder"].startswith("FS/"):
            continue  # the LAYOUT=fs tree is not axsync's layout
        [hit] = [f for f in found if f.base.split(",", 1)[0] == m["unique"]]
        assert imap_names[hit.dirname] == m["folder"]
        assert hit.subdir == m["subdir"]
        if m["size_mode"] == "correct":
            assert (hit.size, hit.vsize) == (m["size"], m["vsize"])
        data = store.read_message(hit.dirname, hit.subdir, hit.filename)
        crlf = reference_checker.crlf(data)
        assert hashlib.sha256(crlf).hexdigest() == m["sha256_crlf"]
        assert len(data) == m["size"]
        assert sorted(LETTERS[c] for c in hit.flags if c in LETTERS) == m["flags"]
        if m["expect"] == "exact":
            assert sorted(keywords_of(hit.flags, store.keywords(hit.dirname))) == m["keywords"]
        checked += 1
    assert checked == len([m for m in manifest["messages"] if not m["folder"].startswith("FS/")])
    assert checked >= 10
