from __future__ import annotations

import gzip
import io
import os
import sys
from pathlib import Path

import pytest
import zstandard
from hypothesis import example, given, settings
from hypothesis import strategies as st

from axsync.errors import StoreError
from axsync.store import compress
from axsync.store.compress import (
    Compressor,
    compress_bytes,
    detect,
    open_message,
    open_stream,
    read_message,
)


def test_detect() -> None:
    assert detect(b"\x28\xb5\x2f\xfd\x00") == "zstd"
    assert detect(b"\x1f\x8b\x08") == "gzip"
    assert detect(b"From: x") == "none"
    assert detect(b"") == "none"


@settings(max_examples=50)
@given(st.binary(max_size=5000), st.sampled_from(["zstd", "gzip", "none"]))
def test_round_trip(data: bytes, method: str) -> None:
    packed = compress_bytes(data, method)
    assert open_stream(io.BytesIO(packed)).read() == data


def test_zstd_is_one_standard_frame_without_dictionary() -> None:
    data = os.urandom(1000) + b"text\n" * 50_000
    c = Compressor("zstd", 3)
    packed = b"".join(c.compress(data[i : i + 7000]) for i in range(0, len(data), 7000)) + c.flush()
    params = zstandard.get_frame_parameters(packed)
    assert params.dict_id == 0
    assert packed.startswith(b"\x28\xb5\x2f\xfd")
    # exactly one frame: decompressing the first frame consumes everything
    obj = zstandard.ZstdDecompressor().decompressobj()
    assert obj.decompress(packed) == data and obj.eof and obj.unused_data == b""


ZSTD_MAGIC_BYTES = b"\x28\xb5\x2f\xfd"


@settings(max_examples=40)
@given(st.binary(max_size=200_000), st.integers(min_value=1, max_value=300_000),
       st.sampled_from(["zstd", "none"]))
@example(os.urandom(3000) + b"a message far larger than its hint\n" * 20_000, 1000, "zstd")
@example(ZSTD_MAGIC_BYTES + b"starts like a zstd frame\n" * 3000, 10, "none")
def test_size_hint_round_trips_whatever_the_real_size(data: bytes, hint: int, method: str) -> None:
    """The hint (the server's idea of the size) only sizes the compressor; a message larger
    or smaller than it is stored whole, as one standard frame with its checksum."""
    c = Compressor(method, 3, size_hint=hint)
    packed = b"".join(c.compress(data[i : i + 65536]) for i in range(0, len(data), 65536)) + c.flush()
    assert open_stream(io.BytesIO(packed)).read() == data
    if c.method == "zstd":
        assert zstandard.get_frame_parameters(packed).has_checksum
        obj = zstandard.ZstdDecompressor().decompressobj()
        assert obj.decompress(packed) == data and obj.eof and obj.unused_data == b""


def test_size_hint_keeps_the_compressor_small() -> None:
    """A level-3 context sized for a small message: a small window (memory of many
    downloads in flight) and no loss of ratio on it."""
    message = b"Subject: hello\r\n\r\n" + b"a line of a small message\r\n" * 150
    sized, plain = Compressor("zstd", 3, size_hint=len(message)), Compressor("zstd", 3)
    small = sized.compress(message) + sized.flush()
    big = plain.compress(message) + plain.flush()
    assert zstandard.get_frame_parameters(small).window_size <= 32 * 1024
    assert zstandard.get_frame_parameters(big).window_size >= 1024 * 1024
    assert len(small) <= len(big) + 8


def _fresh_frame(data: bytes, hint: int | None) -> bytes:
    """``data`` compressed by a context made for it alone, with the pool's parameters."""
    _level, size = compress._size_class(3, hint)
    if size is None:
        cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
    else:
        cctx = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters.from_level(
            3, source_size=size, write_checksum=1))
    obj = cctx.compressobj()
    return obj.compress(data) + obj.flush()


def _stream(c: Compressor, data: bytes, step: int = 3000) -> bytes:
    return b"".join(c.compress(data[i : i + step]) for i in range(0, len(data), step)) + c.flush()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40_000), st.sampled_from([None, 100, 20_000, 70_000])),
                min_size=1, max_size=6))
def test_a_pooled_context_writes_the_frame_a_new_one_writes(items: list[tuple[bytes, int | None]]) -> None:
    """Contexts are reused from one message to the next (compressobj() resets them): each
    frame is byte for byte what a context made for it alone writes."""
    for data, hint in items:
        packed = _stream(Compressor("zstd", 3, size_hint=hint), data)
        assert packed == _fresh_frame(data, hint)
        assert zstandard.ZstdDecompressor().decompressobj().decompress(packed) == data


def test_compressors_alive_at_once_have_their_own_contexts() -> None:
    """Many downloads are in flight at once: interleaved streams never share a context,
    and a finished compressor's context serves the next one."""
    messages = [os.urandom(500) + (b"line %d of message\n" % k) * (200 + 37 * k) for k in range(8)]
    compressors = [Compressor("zstd", 3, size_hint=len(m)) for m in messages]
    assert all(c._cctx is None for c in compressors)  # none held before the first bytes
    outs = [c.compress(m[:1]) for c, m in zip(compressors, messages, strict=True)]
    assert len({id(c._cctx) for c in compressors}) == len(compressors)
    for start in range(1, max(map(len, messages)), 997):  # round robin, chunk by chunk
        for k, (c, m) in enumerate(zip(compressors, messages, strict=True)):
            outs[k] += c.compress(m[start : start + 997])
    outs = [o + c.flush() for o, c in zip(outs, compressors, strict=True)]
    for o, m in zip(outs, messages, strict=True):
        assert o == _fresh_frame(m, len(m))
    for m in messages:  # the next messages, on the contexts given back
        assert _stream(Compressor("zstd", 3, size_hint=len(m)), m) == _fresh_frame(m, len(m))


def test_an_empty_message_is_one_empty_frame() -> None:
    c = Compressor("zstd", 3, size_hint=100)
    packed = c.flush()
    assert packed == _fresh_frame(b"", 100)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(packed) == b""


def test_a_finished_compressor_refuses_more_work() -> None:
    for method in ("zstd", "gzip", "none"):
        c = Compressor(method, 3)
        c.compress(b"Subject: x\r\n\r\nbody\r\n")
        c.flush()
        with pytest.raises(StoreError):
            c.compress(b"more")
        with pytest.raises(StoreError):
            c.flush()


def test_the_pool_holds_idle_contexts_up_to_its_budget() -> None:
    key = compress._size_class(3, 5000)
    probe = compress._ContextPool(budget=0).take(key)
    obj = probe.compressobj()
    obj.compress(b"x" * 5000)
    obj.flush()
    size = probe.memory_size()
    assert 0 < size < 1024 * 1024  # sized for a small message
    pool = compress._ContextPool(budget=3 * size + size // 2)
    taken = [pool.take(key) for _ in range(10)]
    for cctx in taken:
        obj = cctx.compressobj()
        obj.compress(b"x" * 5000)
        obj.flush()
    for cctx in taken:
        pool.give(key, cctx)
    assert pool._held == 3 * size  # the budget: three idle contexts, the others dropped
    again = [pool.take(key) for _ in range(3)]
    assert {id(c) for c in again} <= {id(c) for c in taken}
    assert pool._held == 0
    fresh = pool.take(key)  # empty now: a new one
    assert all(fresh is not c for c in taken)


def test_size_classes() -> None:
    assert compress._size_class(3, None) == (3, None)
    assert compress._size_class(3, 1) == (3, 16 * 1024)
    assert compress._size_class(3, 16 * 1024) == (3, 16 * 1024)
    assert compress._size_class(3, 16 * 1024 + 1) == (3, 32 * 1024)
    assert compress._size_class(5, 4 * 1024 * 1024) == (5, 4 * 1024 * 1024)
    assert compress._size_class(3, 4 * 1024 * 1024 + 1) == (3, None)


def test_gzip_is_standard() -> None:
    assert gzip.decompress(compress_bytes(b"hello\n" * 100, "gzip", 9)) == b"hello\n" * 100


def test_several_frames_and_members(tmp_path: Path) -> None:
    z = compress_bytes(b"one ") + compress_bytes(b"") + compress_bytes(b"two", level=19)
    (tmp_path / "z").write_bytes(z)
    assert read_message(tmp_path / "z") == b"one two"
    g = compress_bytes(b"one ", "gzip") + compress_bytes(b"two", "gzip")
    (tmp_path / "g").write_bytes(g)
    assert read_message(tmp_path / "g") == b"one two"


def test_frames_written_by_other_tools_are_read(tmp_path: Path) -> None:
    data = b"Subject: x\n\nbody\n" * 1000
    with_size = zstandard.ZstdCompressor(level=19, write_checksum=True).compress(data)
    (tmp_path / "m").write_bytes(with_size)
    assert read_message(tmp_path / "m") == data


@pytest.mark.parametrize("method", ["zstd", "gzip"])
def test_truncated_or_corrupt_data_raises(tmp_path: Path, method: str) -> None:
    data = os.urandom(50_000)
    packed = compress_bytes(data, method)
    (tmp_path / "cut").write_bytes(packed[:-10])
    with pytest.raises(StoreError):
        read_message(tmp_path / "cut")
    corrupt = bytearray(packed)
    corrupt[len(corrupt) // 2] ^= 0xFF
    corrupt[len(corrupt) // 2 + 1] ^= 0xFF
    (tmp_path / "bad").write_bytes(bytes(corrupt))
    with pytest.raises(StoreError):
        read_message(tmp_path / "bad")


def test_streaming_reads_in_pieces(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    (tmp_path / "m").write_bytes(compress_bytes(data))
    with open_message(tmp_path / "m") as f:
        pieces = []
        while piece := f.read(10_000):
            assert len(piece) <= 10_000
            pieces.append(piece)
    assert b"".join(pieces) == data


def test_missing_file_and_bad_method(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        open_message(tmp_path / "nope")
    with pytest.raises(StoreError):
        Compressor("xz")


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300_000), limit=st.integers(min_value=0, max_value=400_000),
       method=st.sampled_from(["zstd", "gzip", "none"]), frames=st.integers(1, 3))
@example(data=b"x" * 200_000, limit=70_000, method="zstd", frames=1)
@example(data=b"", limit=0, method="none", frames=1)
def test_read_message_with_a_limit_is_a_prefix_of_the_stream(
        tmp_path_factory: pytest.TempPathFactory, data: bytes, limit: int, method: str,
        frames: int) -> None:
    """read_message(path, limit) (the search index's read) gives exactly what the stream
    of open_message gives, cut at ``limit``, over several frames or members too."""
    path = tmp_path_factory.mktemp("lim") / "m"
    cut = [len(data) * i // frames for i in range(frames + 1)]
    pieces = [data[a:b] for a, b in zip(cut, cut[1:], strict=False)]
    path.write_bytes(b"".join(compress_bytes(p, method) for p in pieces) if method != "none"
                     else compress_bytes(data, method))
    with open_message(path) as stream:
        whole = stream.read()
    assert whole == data
    assert read_message(path) == data
    assert read_message(path, limit) == data[:limit]


@pytest.mark.parametrize("method", ["zstd", "gzip"])
def test_read_message_with_a_limit_still_reports_a_cut_file(tmp_path: Path, method: str) -> None:
    data = os.urandom(50_000)
    blob = compress_bytes(data, method)
    (tmp_path / "cut").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(StoreError):
        read_message(tmp_path / "cut", 1 << 24)
    if method == "zstd":  # decoded in small steps: a prefix before the cut is readable
        assert read_message(tmp_path / "cut", 10) == data[:10]


def test_reads_left_midway_and_open_streams_do_not_disturb_each_other(tmp_path: Path) -> None:
    """read_message reuses its thread's zstd decompressor: a read stopped at its limit
    mid-frame, a stream open at the same time, and other threads still read correctly."""
    import threading

    datas = [os.urandom(40_000) + bytes(60_000) + os.urandom(n) for n in range(6)]
    paths = []
    for i, data in enumerate(datas):
        path = tmp_path / f"m{i}"
        path.write_bytes(compress_bytes(data[:30_000], "zstd") + compress_bytes(data[30_000:], "zstd"))
        paths.append(path)
    with open_message(paths[0]) as stream:
        head = stream.read(1000)
        assert read_message(paths[1], 5000) == datas[1][:5000]  # left in the first frame
        assert read_message(paths[2], 35_000) == datas[2][:35_000]  # left in the second
        assert read_message(paths[3]) == datas[3]
        assert head + stream.read() == datas[0]
    errors: list[str] = []

    def reader(k: int) -> None:
        for _ in range(30):
            for i in (k, (k + 1) % 6):
                try:
                    if read_message(paths[i]) != datas[i] or read_message(paths[i], 777) != datas[i][:777]:
                        errors.append(f"thread {k}: message {i} read wrong")
                except StoreError as exc:
                    errors.append(f"thread {k}: {exc}")

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns within each read
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
