from __future__ import annotations

import re
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from axsync.errors import UnsafeName
from axsync.store.names import (
    MAX_NAME_BYTES,
    ParsedName,
    assign_dirname,
    check_filename,
    fold_key,
    folder_dirname,
    folder_path,
    format_name,
    is_safe_dirname,
    new_unique,
    normalize_flags,
    parse_name,
    shown_path,
    subscription_name,
    with_flags,
)

components = st.text(max_size=40)  # any code points but surrogates, NUL and controls included
paths = st.lists(components, min_size=1, max_size=5).map(tuple)


@pytest.mark.parametrize(
    ("path", "dirname"),
    [
        ((), ""),
        (("INBOX",), ""),
        (("Archive", "2024"), ".Archive.2024"),
        (("Entwürfe",), ".Entw&APw-rfe"),
        (("Dotted.Name",), ".Dotted\\2eName"),
        (("A&B",), ".A&-B"),
        (("~x", "y~"), ".\\7ex.y~"),
        ((".",), ".\\2e"),
        (("..",), ".\\2e\\2e"),
        (("",), ".\\-"),
        (("back\\slash",), ".back\\5cslash"),
        (("nul\0tab\tdel\x7f",), ".nul&AAA-tab&AAk-del&AH8-"),
        (("INBOX", "Sub"), ".INBOX.Sub"),
        (("日本語",), ".&ZeVnLIqe-"),
        (("cur",), ".cur"),
    ],
)
def test_folder_dirname_examples(path: tuple[str, ...], dirname: str) -> None:
    assert folder_dirname(path) == dirname
    assert folder_path(dirname) == (path or ("INBOX",))


@given(paths)
def test_folder_codec_round_trip(path: tuple[str, ...]) -> None:
    # exact for paths without "/" in a level; see test_slash_names.py for the others
    dirname = folder_dirname(path)
    assert folder_path(dirname) == shown_path(path)
    if not any("/" in c for c in path):
        assert folder_path(dirname) == (("INBOX",) if path == ("INBOX",) else path)


@given(paths)
def test_encoded_names_are_one_safe_ascii_component(path: tuple[str, ...]) -> None:
    dirname = folder_dirname(path)
    if dirname == "":
        return
    assert dirname.isascii() and dirname.isprintable()
    assert "/" not in dirname and "\0" not in dirname
    assert all(part not in ("", ".", "..") for part in dirname[1:].split("."))
    assert not any(part.startswith("~") for part in dirname[1:].split("."))
    assert all(c not in dirname for c in "\0\t\n\x7f")
    if len(dirname) <= MAX_NAME_BYTES:
        assert is_safe_dirname(dirname)


def test_reference_mutf7_agrees(reference_mutf7: object) -> None:
    for name in ["Entwürfe", "A&B", "日本語 メール", "plain", "😀 emoji", "ü&ü"]:
        assert folder_dirname((name,)) == "." + reference_mutf7.encode(name)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "bad",
    [".a..b", ".\\2E", ".&AGE-", ".&AOk", ".ü", ".x\\#abc", "x", ".", "..", ".a\\zz", ".t\\09"],
)
def test_folder_path_rejects_non_canonical(bad: str) -> None:
    with pytest.raises(UnsafeName):
        folder_path(bad)


def test_folder_path_lenient_reads_foreign_names() -> None:
    assert folder_path(".Entwürfe", strict=False) == ("Entwürfe",)
    assert folder_path(".a..b", strict=False) == ("a", "", "b")
    assert folder_path(".bad\\zz&x", strict=False) == ("bad\\zz&x",)


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(UnsafeName):
        folder_dirname(("a\ud800",))


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("", True),
        (".Archive", True),
        (".", False),
        ("..", False),
        ("Archive", False),
        (".a/b", False),
        ("./x", False),
        (".a\0", False),
        ("." + "x" * 254, True),
        ("." + "x" * 255, False),
        ("/etc", False),
    ],
)
def test_is_safe_dirname(name: str, ok: bool) -> None:
    assert is_safe_dirname(name) is ok


def test_assign_dirname_plain_and_stable() -> None:
    taken: dict[str, tuple[str, ...]] = {}
    d = assign_dirname(("Archive",), taken)
    assert d == ".Archive"
    taken[d] = ("Archive",)
    assert assign_dirname(("Archive",), taken) == ".Archive"
    assert assign_dirname(("INBOX",), taken) == ""


def test_assign_dirname_case_and_normalization_twins() -> None:
    taken = {".Foo": ("Foo",)}
    twin = assign_dirname(("foo",), taken)
    assert re.fullmatch(r"\.foo~[0-9a-f]{12}", twin) and fold_key(twin) != fold_key(".Foo")
    assert assign_dirname(("foo",), taken) == twin  # deterministic
    # NFC and NFD spellings encode to different ASCII names: no collision.
    nfc, nfd = "\u00e9t\u00e9", "e\u0301te\u0301"
    assert fold_key(folder_dirname((nfc,))) != fold_key(folder_dirname((nfd,)))


def test_assign_dirname_base64_case_collision() -> None:
    # Two different names whose modified UTF-7 differs only in letter case.
    seen: dict[str, str] = {}
    pair = None
    for code in range(0xA0, 0x3000):
        enc = folder_dirname((chr(code),))
        key = enc.casefold()
        if key in seen:
            pair = (seen[key], enc)
            break
        seen[key] = enc
    assert pair is not None
    first_path, second_path = folder_path(pair[0]), folder_path(pair[1])
    second = assign_dirname(second_path, {pair[0]: first_path})
    assert second != pair[1] and second.startswith(pair[1] + "~")


@given(paths, st.lists(paths, max_size=4))
def test_assign_dirname_properties(path: tuple[str, ...], others: list[tuple[str, ...]]) -> None:
    taken: dict[str, tuple[str, ...]] = {}
    for other in others:
        if other != path:
            taken.setdefault(assign_dirname(other, taken), other)
    d = assign_dirname(path, taken)
    assert d == assign_dirname(path, dict(taken))
    if d == "":
        assert path == ("INBOX",)
        return
    assert is_safe_dirname(d)
    assert fold_key(d) not in {fold_key(t) for t in taken}
    shown = folder_path(d)  # canonical: what Dovecot derives from the name it shows
    assert folder_dirname(shown) == d
    if d != folder_dirname(path):
        assert re.search(r"~[0-9a-f]{12}(-\d+)?$", shown[-1])


def test_assign_dirname_long_names() -> None:
    for path in [("x" * 300,), ("ä" * 200, "b" * 100), tuple("abc" for _ in range(100))]:
        d = assign_dirname(path, {})
        assert len(d.encode()) <= 255 and is_safe_dirname(d)
        assert re.search(r"~[0-9a-f]{12}$", d)
        # the cut never splits an escape or a modified UTF-7 run: the name is canonical
        shown = folder_path(d)
        last = shown[-1][: -len("~0123456789ab")]
        assert path[: len(shown) - 1] == shown[:-1] and path[len(shown) - 1].startswith(last)


def test_subscription_name() -> None:
    assert subscription_name("") == "INBOX"
    assert subscription_name(".Archive.2024") == "Archive\t2024"
    assert subscription_name(".Dotted\\2eName") == "Dotted\\2eName"


# ---------------------------------------------------------------------------- file names

UNIQUE_RE = re.compile(r"^\d+\.M\d+P\d+Q\d+R[0-9a-f]{8}\.[^/:,]+$")


def test_new_unique_format_and_uniqueness() -> None:
    results: list[str] = []

    def work() -> None:
        results.extend(new_unique() for _ in range(500))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 2000
    assert all(UNIQUE_RE.match(u) for u in results)
    counters = sorted(int(re.search(r"Q(\d+)R", u).group(1)) for u in results)  # type: ignore[union-attr]
    assert len(set(counters)) == 2000


def test_new_unique_escapes_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from axsync.store import names

    monkeypatch.setattr("socket.gethostname", lambda: "a/b:c,d")
    names._Process.refresh()  # host and pid are looked up once per process
    try:
        assert new_unique().endswith(".a\\057b\\072c\\054d")
    finally:
        monkeypatch.undo()
        names._Process.refresh()
    assert new_unique().endswith("." + names.safe_host())


def test_new_unique_pid_follows_fork() -> None:
    import os

    from axsync.store import names

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_unique().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as stream:
        child = stream.read().decode()
    assert f"P{pid}Q" in child
    assert f"P{os.getpid()}Q" in new_unique()
    assert names._Process.pid == os.getpid()


def test_format_and_parse() -> None:
    name = format_name("1.M2P3Q4R0011aabb.host", 621, 640, "SaZ")
    assert name == "1.M2P3Q4R0011aabb.host,S=621,W=640:2,SZa"
    assert parse_name(name) == ParsedName("1.M2P3Q4R0011aabb.host,S=621,W=640", 621, 640, "SZa")
    with pytest.raises(UnsafeName):
        format_name("a:b", 1, 1, "")
    with pytest.raises(UnsafeName):
        format_name(".hidden", 1, 1, "")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1.M2P3.host", ParsedName("1.M2P3.host", None, None, "")),
        ("1.M2P3.host,S=12,W=14", ParsedName("1.M2P3.host,S=12,W=14", 12, 14, "")),
        ("u,S=5:2,", ParsedName("u,S=5", 5, None, "")),
        ("u,W=7,S=5:2,FS", ParsedName("u,W=7,S=5", 5, 7, "FS")),
        ("u,S=12a,W=3:2,S", ParsedName("u,S=12a,W=3", None, 3, "S")),
        ("u,S=:2,S", ParsedName("u,S=", 0, None, "S")),  # Dovecot reads no digits as 0
        ("u,S=1,S=2:2,S", ParsedName("u,S=1,S=2", 1, None, "S")),
        ("u:2,FS,extra", ParsedName("u", None, None, "FS", ",extra")),
        ("u:2,S:2,T", ParsedName("u:2,S", None, None, "T")),  # the last ":2," counts
        ("u:1,xyz", ParsedName("u:1,xyz", None, None, "")),
    ],
)
def test_parse_name_rules(name: str, expected: ParsedName) -> None:
    assert parse_name(name) == expected


@given(
    st.from_regex(r"\A[0-9]{1,10}\.M[0-9]{1,6}P[0-9]{1,7}Q[0-9]{1,5}R[0-9a-f]{8}\.[a-z.-]{1,20}\Z"),
    st.integers(0, 10**12),
    st.integers(0, 10**6),
    st.text("DFPRSTZabcxyz", max_size=12),
)
def test_name_round_trip(unique: str, size: int, extra: int, flags: str) -> None:
    name = format_name(unique, size, size + extra, flags)
    parsed = parse_name(name)
    assert parsed == ParsedName(
        f"{unique},S={size},W={size + extra}", size, size + extra, normalize_flags(flags)
    )
    assert with_flags(name, parsed.flags) == name


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("SFRD", "DFRS"),
        ("SSZa", "SZa"),
        (["b", "a", "T"], "Tab"),
        ("S,x/y:z\\ \t\n\x00ü", "Sxyz"),
        ("P!", "!P"),  # unknown letters are kept, sorted
        ("", ""),
    ],
)
def test_normalize_flags(flags: str | list[str], expected: str) -> None:
    assert normalize_flags(flags) == expected


def test_with_flags_keeps_base_and_extra() -> None:
    assert with_flags("u,S=1,W=1:2,SF,x", "ST") == "u,S=1,W=1:2,ST,x"
    assert with_flags("u,S=1,W=1", "S") == "u,S=1,W=1:2,S"


@pytest.mark.parametrize("bad", ["", ".hidden", "a/b", "..", "a\0b", "x" * 256])
def test_check_filename_rejects(bad: str) -> None:
    with pytest.raises(UnsafeName):
        check_filename(bad)
