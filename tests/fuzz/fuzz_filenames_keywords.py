"""Fuzz the message file-name codec (``axsync.store.names``) and the label/keyword codec
with ``dovecot-keywords`` parsing (``axsync.store.keywords``).

Properties:

* ``parse_name`` takes any name apart without raising; ``format_name`` output parses back
  to its unique part, sizes and normalised flags and is a safe file name;
  ``with_flags`` keeps the base and the extra info field and sets exactly the normalised
  flags; ``normalize_flags`` is idempotent and only keeps printable ASCII that cannot end
  the info part;
* ``label_to_atom`` gives a valid IMAP atom for any label and ``atom_to_label`` inverts it
  exactly; ``atom_to_label`` never raises on atoms written by others;
* ``dovecot-keywords`` content of any bytes parses (as Dovecot does) to indices 0..25 with
  distinct non-empty names; ``keywords_of`` only names mapped letters.

    python tests/fuzz/fuzz_filenames_keywords.py -runs=200000 [-seed=N] [CORPUS_DIR]
"""

from __future__ import annotations

import sys

import atheris
import fuzzlib

with atheris.instrument_imports(include=["axsync"]):
    from axsync.errors import UnsafeName
    from axsync.store import keywords, names

FLAG_CHARS = "DFPRSTZabcz:,/\\ \t\u00e4-2"


def check_file_names(fdp: atheris.FuzzedDataProvider) -> None:
    name = fuzzlib.text(fdp, 80)
    p = names.parse_name(name)
    assert isinstance(p.base, str) and name.startswith(p.base)
    assert p.size is None or p.size >= 0
    flags = "".join(FLAG_CHARS[fdp.ConsumeIntInRange(0, len(FLAG_CHARS) - 1)]
                    for _ in range(fdp.ConsumeIntInRange(0, 10)))
    if fdp.ConsumeBool():
        flags += fuzzlib.text(fdp, 6)
    norm = names.normalize_flags(flags)
    assert names.normalize_flags(norm) == norm
    assert all(0x21 <= ord(c) <= 0x7E and c not in "/:,\\" for c in norm), norm
    renamed = names.with_flags(name, flags)
    q = names.parse_name(renamed)
    assert (q.base, q.flags) == (p.base, norm), (name, flags, renamed, q)
    if p.flags or p.extra or names.INFO_SEP in name:
        assert q.extra == p.extra, (name, flags, renamed)
    unique = fuzzlib.text(fdp, 60)
    size = fdp.ConsumeIntInRange(0, 2**40)
    vsize = size + fdp.ConsumeIntInRange(0, 2**20)
    try:
        made = names.format_name(unique, size, vsize, flags)
    except UnsafeName:
        try:
            too_long = len(unique.encode("utf-8", "surrogateescape")) > names.MAX_UNIQUE_BYTES
        except UnicodeEncodeError:  # a lone surrogate that is no escaped byte: refused
            too_long = True
        assert (not unique or unique.startswith(".") or any(c in unique for c in "/:,\0")
                or too_long), unique
        return
    r = names.parse_name(made)
    assert (r.base, r.size, r.vsize, r.flags, r.extra) == (f"{unique},S={size},W={vsize}", size, vsize, norm, ""), made
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in unique):
        names.check_filename(made)


def check_keywords(fdp: atheris.FuzzedDataProvider) -> None:
    label = fuzzlib.text(fdp, 40)
    atom = keywords.label_to_atom(label)
    assert keywords.is_atom(atom), (label, atom)
    assert keywords.atom_to_label(atom) == label, (label, atom)
    assert isinstance(keywords.atom_to_label(fuzzlib.text(fdp, 40)), str)
    content = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    if fdp.ConsumeBool():  # mostly well-formed lines
        lines = [f"{fdp.ConsumeIntInRange(0, 30)} {fuzzlib.text(fdp, 12)}" for _ in range(fdp.ConsumeIntInRange(0, 8))]
        content = "\n".join(lines).encode("utf-8", "surrogatepass") + content
    mapping = keywords._parse(content)
    assert all(0 <= i < keywords.MAX_KEYWORDS for i in mapping), mapping
    assert all(mapping.values()) and len(set(mapping.values())) == len(mapping), mapping
    found = keywords.keywords_of(fuzzlib.text(fdp, 30), mapping)
    assert set(found) <= set(mapping.values())


def TestOneInput(raw: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(raw)
    if fdp.ConsumeBool():
        check_file_names(fdp)
    else:
        check_keywords(fdp)


if __name__ == "__main__":
    fuzzlib.run(TestOneInput)
    sys.exit(0)
